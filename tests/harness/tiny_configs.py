"""Tiny config.json dicts, one per supported model_type, for fast CPU measurements (hand-checkable sizes)."""

_DEC = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256, max_position_embeddings=128)

TINY_CONFIGS: dict[str, dict] = {
    "llama": dict(model_type="llama", tie_word_embeddings=False, **_DEC),
    "mistral": dict(model_type="mistral", tie_word_embeddings=False, sliding_window=None, **_DEC),
    "qwen2": dict(model_type="qwen2", tie_word_embeddings=False, **_DEC),
    "qwen3": dict(model_type="qwen3", tie_word_embeddings=False, head_dim=16, **_DEC),
    "gemma": dict(model_type="gemma", head_dim=16, **_DEC),
    "gemma2": dict(model_type="gemma2", head_dim=16, sliding_window=8, **_DEC),
    "gemma3_text": dict(model_type="gemma3_text", head_dim=16, sliding_window=8, **_DEC),
    "phi3": dict(model_type="phi3", tie_word_embeddings=False, pad_token_id=0, **_DEC),
    "olmo2": dict(model_type="olmo2", tie_word_embeddings=False, pad_token_id=0, **_DEC),
    "granite": dict(model_type="granite", tie_word_embeddings=False, **_DEC),
    "starcoder2": dict(model_type="starcoder2", **_DEC),
    "gpt2": dict(model_type="gpt2", n_embd=64, n_layer=2, n_head=4, vocab_size=256, n_positions=128),
    "gpt_neox": dict(model_type="gpt_neox", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, vocab_size=256, max_position_embeddings=128),
    "opt": dict(model_type="opt", hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                vocab_size=256, max_position_embeddings=128, word_embed_proj_dim=64),
}

# Llama-3.2-3B, the model of PEFT's MetaMathQA benchmark (meta-llama/Llama-3.2-3B config.json)
LLAMA_3_2_3B = dict(
    model_type="llama", hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
    num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=True, rope_theta=500000.0,
    max_position_embeddings=131072,
    rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                  "original_max_position_embeddings": 8192, "rope_type": "llama3"},
)

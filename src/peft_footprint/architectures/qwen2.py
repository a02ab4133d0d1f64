"""Qwen2ForCausalLM (transformers/models/qwen2): biases on q/k/v only."""

from .base import Architecture, llama_like


class Qwen2(Architecture):
    model_type = "qwen2"
    defaults = dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, head_dim=None,
        intermediate_size=22016, vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=False,
        hidden_act="silu", use_sliding_window=False, sliding_window=4096, max_window_layers=28,
    )

    @classmethod
    def layout(cls, cfg):
        return llama_like(cfg, qkv_bias=True)

    @classmethod
    def layer_types(cls, cfg):
        if cfg.get("layer_types"):
            return list(cfg["layer_types"])
        n = cfg["num_hidden_layers"]
        if cfg.get("use_sliding_window") and cfg.get("sliding_window"):
            return ["sliding_attention" if i >= cfg["max_window_layers"] else "full_attention" for i in range(n)]
        return ["full_attention"] * n

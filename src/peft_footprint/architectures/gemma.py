"""GemmaForCausalLM (transformers/models/gemma): GeGLU MLP, head_dim 256, tied embeddings scaled by sqrt(hidden)."""

from .base import Architecture, llama_like


class Gemma(Architecture):
    model_type = "gemma"
    head_dim_always_in_config = True
    defaults = dict(
        hidden_size=3072, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=16, head_dim=256,
        intermediate_size=24576, vocab_size=256000, max_position_embeddings=8192, tie_word_embeddings=True,
        attention_bias=False, hidden_act="gelu_pytorch_tanh",
    )

    @classmethod
    def layout(cls, cfg):
        b = bool(cfg["attention_bias"])
        return llama_like(cfg, qkv_bias=b, o_bias=b)

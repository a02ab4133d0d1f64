"""LlamaForCausalLM (transformers/models/llama): RMSNorm, SwiGLU MLP, optional attention/MLP biases."""

from .base import Architecture, llama_like


class Llama(Architecture):
    model_type = "llama"
    heads_divide_hidden = True  # (LlamaConfig.validate_architecture)
    head_dim_always_in_config = True
    defaults = dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=None, head_dim=None,
        intermediate_size=11008, vocab_size=32000, max_position_embeddings=2048, tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False, hidden_act="silu",
    )

    @classmethod
    def layout(cls, cfg):
        b = bool(cfg["attention_bias"])
        return llama_like(cfg, qkv_bias=b, o_bias=b, mlp_bias=bool(cfg["mlp_bias"]))

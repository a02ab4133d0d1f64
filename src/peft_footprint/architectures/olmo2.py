"""Olmo2ForCausalLM (transformers/models/olmo2): post-norms only, RMSNorm over the whole q and k projections."""

from .base import Architecture, llama_like


class Olmo2(Architecture):
    model_type = "olmo2"
    defaults = dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=None, head_dim=None,
        intermediate_size=11008, vocab_size=50304, max_position_embeddings=2048, tie_word_embeddings=False,
        attention_bias=False, hidden_act="silu",
    )

    @classmethod
    def layout(cls, cfg):
        b = bool(cfg["attention_bias"])
        return llama_like(cfg, qkv_bias=b, o_bias=b, norms=("post_attention_layernorm", "post_feedforward_layernorm"), qk_norm="full")

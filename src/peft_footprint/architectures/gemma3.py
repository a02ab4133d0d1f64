"""Gemma3ForCausalLM, model_type gemma3_text (transformers/models/gemma3): Gemma2's norms plus q/k RMSNorm,
five sliding-window layers for every full-attention layer."""

from .base import Architecture, llama_like
from .gemma2 import NORMS


class Gemma3Text(Architecture):
    model_type = "gemma3_text"
    heads_divide_hidden = True  # (Gemma3TextConfig.validate_architecture)
    head_dim_always_in_config = True
    defaults = dict(
        hidden_size=2304, num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
        intermediate_size=9216, vocab_size=262208, max_position_embeddings=131072, tie_word_embeddings=True,
        attention_bias=False, hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh", sliding_window=4096, query_pre_attn_scalar=256,
        sliding_window_pattern=6,
    )

    @classmethod
    def layout(cls, cfg):
        b = bool(cfg["attention_bias"])
        return llama_like(cfg, qkv_bias=b, o_bias=b, norms=NORMS, qk_norm="head")

    @classmethod
    def layer_types(cls, cfg):
        if cfg.get("layer_types"):
            return list(cfg["layer_types"])
        p = cfg.get("sliding_window_pattern") or 6
        return ["full_attention" if (i + 1) % p == 0 else "sliding_attention" for i in range(cfg["num_hidden_layers"])]

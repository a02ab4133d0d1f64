"""Qwen3ForCausalLM (transformers/models/qwen3): per-head RMSNorm on q and k, head_dim 128 by default."""

from .base import Architecture, llama_like
from .qwen2 import Qwen2


class Qwen3(Architecture):
    model_type = "qwen3"
    head_dim_always_in_config = True
    defaults = dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, head_dim=128,
        intermediate_size=22016, vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=False,
        attention_bias=False, hidden_act="silu", use_sliding_window=False, sliding_window=4096, max_window_layers=28,
    )
    layer_types = Qwen2.layer_types

    @classmethod
    def layout(cls, cfg):
        b = bool(cfg["attention_bias"])
        return llama_like(cfg, qkv_bias=b, o_bias=b, qk_norm="head")

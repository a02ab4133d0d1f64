"""MistralForCausalLM (transformers/models/mistral): Llama without biases, GQA, optional sliding window."""

from .base import Architecture, llama_like


class Mistral(Architecture):
    model_type = "mistral"
    head_dim_always_in_config = True
    defaults = dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=None,
        intermediate_size=14336, vocab_size=32000, max_position_embeddings=4096 * 32, tie_word_embeddings=False,
        sliding_window=4096, hidden_act="silu",
    )

    @classmethod
    def layout(cls, cfg):
        return llama_like(cfg)

    @classmethod
    def layer_types(cls, cfg):
        kind = "sliding_attention" if cfg.get("sliding_window") else "full_attention"
        return [kind] * cfg["num_hidden_layers"]

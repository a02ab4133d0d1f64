"""Gemma2ForCausalLM (transformers/models/gemma2): four RMSNorms per layer, alternating sliding/full attention."""

from .base import Architecture, llama_like

NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm")


class Gemma2(Architecture):
    model_type = "gemma2"
    heads_divide_hidden = True  # (Gemma2Config.validate_architecture)
    head_dim_always_in_config = True
    defaults = dict(
        hidden_size=2304, num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
        intermediate_size=9216, vocab_size=256000, max_position_embeddings=8192, tie_word_embeddings=True,
        attention_bias=False, hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh", sliding_window=4096, query_pre_attn_scalar=256,
        final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
    )
    # flash-attention 2 supports the softcapping since 2.6; transformers allows all three kernels
    @classmethod
    def layout(cls, cfg):
        b = bool(cfg["attention_bias"])
        return llama_like(cfg, qkv_bias=b, o_bias=b, norms=NORMS)

    @classmethod
    def layer_types(cls, cfg):
        if cfg.get("layer_types"):
            return list(cfg["layer_types"])
        return ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(cfg["num_hidden_layers"])]

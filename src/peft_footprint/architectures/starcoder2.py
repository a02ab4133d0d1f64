"""Starcoder2ForCausalLM (transformers/models/starcoder2): LayerNorm with bias, GELU MLP c_fc/c_proj, biases everywhere by default."""

from .base import Architecture, Layout, Linear, Param, layer_norms, lm_head, separate_qkvo


class Starcoder2(Architecture):
    model_type = "starcoder2"
    defaults = dict(
        hidden_size=3072, num_hidden_layers=30, num_attention_heads=24, num_key_value_heads=2, head_dim=None,
        intermediate_size=12288, vocab_size=49152, max_position_embeddings=4096, tie_word_embeddings=True,
        use_bias=True, hidden_act="gelu_pytorch_tanh", sliding_window=None,
    )

    @classmethod
    def layout(cls, cfg):
        h, i, b = cfg["hidden_size"], cfg["intermediate_size"], bool(cfg["use_bias"])
        linears = separate_qkvo(cfg, qkv_bias=b, o_bias=b) + [
            Linear("mlp.c_fc", h, i, b, role="up"),
            Linear("mlp.c_proj", i, h, b, role="down"),
        ]
        norms = ("input_layernorm", "post_attention_layernorm")
        return Layout(
            layer_prefix="model.layers",
            num_layers=cfg["num_hidden_layers"],
            layer_linears=tuple(linears),
            layer_params=tuple(layer_norms(cfg, *norms)),
            outer_linears=(lm_head(cfg),),
            outer_params=(
                Param("model.embed_tokens.weight", (cfg["vocab_size"], h), "embedding"),
                *[Param(f"model.norm.{w}", (h,)) for w in ("weight", "bias")],
            ),
            output_embedding="lm_head",
            input_embedding="model.embed_tokens",
            containers=("self_attn", "mlp", *norms),
        )

    @classmethod
    def layer_types(cls, cfg):
        kind = "sliding_attention" if cfg.get("sliding_window") else "full_attention"
        return [kind] * cfg["num_hidden_layers"]

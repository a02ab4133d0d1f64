"""GPTNeoXForCausalLM (transformers/models/gpt_neox, Pythia): fused query_key_value, LayerNorm with bias,
untied embed_out, partial rotary."""

from .base import Architecture, Layout, Linear, Param, layer_norms


class GPTNeoX(Architecture):
    model_type = "gpt_neox"
    defaults = dict(
        hidden_size=6144, num_hidden_layers=44, num_attention_heads=64, intermediate_size=24576, vocab_size=50432,
        max_position_embeddings=2048, tie_word_embeddings=False, attention_bias=True, hidden_act="gelu",
        use_parallel_residual=True, rotary_pct=0.25,
    )
    honors_head_dim = False
    has_kv_heads_field = False

    @classmethod
    def check(cls, cfg):
        cfg["num_key_value_heads"] = cfg["num_attention_heads"]

    @classmethod
    def layout(cls, cfg):
        h, i, b = cfg["hidden_size"], cfg["intermediate_size"], bool(cfg["attention_bias"])
        linears = (
            Linear("attention.query_key_value", h, 3 * h, b, role="qkv"),
            Linear("attention.dense", h, h, b, role="o"),
            Linear("mlp.dense_h_to_4h", h, i, True, role="up"),
            Linear("mlp.dense_4h_to_h", i, h, True, role="down"),
        )
        norms = ("input_layernorm", "post_attention_layernorm")
        return Layout(
            layer_prefix="gpt_neox.layers",
            num_layers=cfg["num_hidden_layers"],
            layer_linears=linears,
            layer_params=tuple(layer_norms(cfg, *norms)),
            outer_linears=(Linear("embed_out", h, cfg["vocab_size"], False, tied=cfg["tie_word_embeddings"], role="lm_head"),),
            outer_params=(
                Param("gpt_neox.embed_in.weight", (cfg["vocab_size"], h), "embedding"),
                *layer_norms(cfg, "gpt_neox.final_layer_norm"),
            ),
            output_embedding="embed_out",
            input_embedding="gpt_neox.embed_in",
            containers=("attention", "mlp", *norms),
            layer_order=(*norms, *(m.path for m in linears)),
        )

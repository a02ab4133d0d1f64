"""Phi3ForCausalLM (transformers/models/phi3): fused qkv_proj and gate_up_proj, no biases."""

from .base import Architecture, Layout, Linear, Param, lm_head, rms_norms


class Phi3(Architecture):
    model_type = "phi3"
    defaults = dict(
        hidden_size=3072, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=None, head_dim=None,
        intermediate_size=8192, vocab_size=32064, max_position_embeddings=4096, tie_word_embeddings=False,
        hidden_act="silu", sliding_window=None,
    )

    @classmethod
    def layer_types(cls, cfg):  # Phi3Model masks every layer with create_sliding_window_causal_mask when it has one
        kind = "sliding_attention" if cfg.get("sliding_window") else "full_attention"
        return [kind] * cfg["num_hidden_layers"]

    @classmethod
    def layout(cls, cfg):
        h, hd, nh, nkv, i = cfg["hidden_size"], cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"]
        linears = (  # in the order Phi3Attention registers them (o_proj first): what an optimizer steps through
            Linear("self_attn.o_proj", nh * hd, h, False, role="o"),
            Linear("self_attn.qkv_proj", h, (nh + 2 * nkv) * hd, False, role="qkv"),
            Linear("mlp.gate_up_proj", h, 2 * i, False, role="gate_up"),
            Linear("mlp.down_proj", i, h, False, role="down"),
        )
        norms = ("input_layernorm", "post_attention_layernorm")
        return Layout(
            layer_prefix="model.layers",
            num_layers=cfg["num_hidden_layers"],
            layer_linears=linears,
            layer_params=tuple(rms_norms(cfg, *norms)),
            outer_linears=(lm_head(cfg),),
            outer_params=(
                Param("model.embed_tokens.weight", (cfg["vocab_size"], h), "embedding"),
                Param("model.norm.weight", (h,)),
            ),
            output_embedding="lm_head",
            input_embedding="model.embed_tokens",
            containers=("self_attn", "mlp", *norms),
        )

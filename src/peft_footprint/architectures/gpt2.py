"""GPT2LMHeadModel (transformers/models/gpt2): Conv1D projections (weight stored (in, out)), learned positions,
LayerNorm with bias, tied head."""

from .base import Architecture, Layout, Linear, Param, layer_norms, lm_head


class GPT2(Architecture):
    model_type = "gpt2"
    defaults = dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=None, vocab_size=50257,
        max_position_embeddings=1024, tie_word_embeddings=True, activation_function="gelu_new",
    )
    aliases = dict(n_embd="hidden_size", n_layer="num_hidden_layers", n_head="num_attention_heads",
                   n_inner="intermediate_size", n_positions="max_position_embeddings")
    unread = frozenset({"intermediate_size"})  # (transformers' config ignores it)
    honors_head_dim = False
    has_kv_heads_field = False
    attn_implementations = ("eager", "sdpa", "flash_attention_2")

    @classmethod
    def check(cls, cfg):
        cfg["num_key_value_heads"] = cfg["num_attention_heads"]

    @classmethod
    def layout(cls, cfg):
        h, i = cfg["hidden_size"], cfg["intermediate_size"]
        linears = (
            Linear("attn.c_attn", h, 3 * h, True, conv1d=True, role="qkv"),
            Linear("attn.c_proj", h, h, True, conv1d=True, role="o"),
            Linear("mlp.c_fc", h, i, True, conv1d=True, role="up"),
            Linear("mlp.c_proj", i, h, True, conv1d=True, role="down"),
        )
        return Layout(
            layer_prefix="transformer.h",
            num_layers=cfg["num_hidden_layers"],
            layer_linears=linears,
            layer_params=tuple(layer_norms(cfg, "ln_1", "ln_2")),
            outer_linears=(lm_head(cfg),),
            outer_params=(
                Param("transformer.wte.weight", (cfg["vocab_size"], h), "embedding"),
                Param("transformer.wpe.weight", (cfg["max_position_embeddings"], h), "position_embedding"),
                *layer_norms(cfg, "transformer.ln_f"),
            ),
            output_embedding="lm_head",
            input_embedding="transformer.wte",
            containers=("attn", "mlp", "ln_1", "ln_2"),
            layer_order=("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"),
        )

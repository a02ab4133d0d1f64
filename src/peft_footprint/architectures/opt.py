"""OPTForCausalLM (transformers/models/opt): learned positions with an offset of 2, optional word-embedding
projection (project_in/project_out), LayerNorm, ReLU fc1/fc2, tied head of width word_embed_proj_dim."""

from .base import Architecture, Layout, Linear, Param, _positive_int, separate_qkvo


class OPT(Architecture):
    model_type = "opt"
    defaults = dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, vocab_size=50272,
        max_position_embeddings=2048, tie_word_embeddings=True, activation_function="relu", word_embed_proj_dim=None,
        do_layer_norm_before=True, enable_bias=True, layer_norm_elementwise_affine=True, _remove_final_layer_norm=False,
    )
    aliases = dict(ffn_dim="intermediate_size")
    unread = frozenset({"intermediate_size"})  # (transformers' config ignores it)
    honors_head_dim = False
    has_kv_heads_field = False
    POSITION_OFFSET = 2  # OPTLearnedPositionalEmbedding: num_embeddings + 2

    @classmethod
    def check(cls, cfg):
        cfg["num_key_value_heads"] = cfg["num_attention_heads"]
        if cfg.get("word_embed_proj_dim") is None:
            cfg["word_embed_proj_dim"] = cfg["hidden_size"]
        cfg["word_embed_proj_dim"] = _positive_int("word_embed_proj_dim", cfg["word_embed_proj_dim"])

    @classmethod
    def layout(cls, cfg):
        h, i, b = cfg["hidden_size"], cfg["intermediate_size"], bool(cfg["enable_bias"])
        p = cfg["word_embed_proj_dim"]
        linears = separate_qkvo(cfg, qkv_bias=b, o_bias=b, o_name="out_proj") + [
            Linear("fc1", h, i, b, role="up"),
            Linear("fc2", i, h, b, role="down"),
        ]
        affine = bool(cfg["layer_norm_elementwise_affine"])

        def ln(name):
            return [Param(f"{name}.weight", (h,)), Param(f"{name}.bias", (h,))] if affine else []

        outer_linears = [Linear("lm_head", p, cfg["vocab_size"], False, tied=cfg["tie_word_embeddings"], role="lm_head")]
        if p != h:
            outer_linears += [
                Linear("model.decoder.project_out", h, p, False, role="project_out"),
                Linear("model.decoder.project_in", p, h, False, role="project_in"),
            ]
        outer_params = [
            Param("model.decoder.embed_tokens.weight", (cfg["vocab_size"], p), "embedding"),
            Param("model.decoder.embed_positions.weight", (cfg["max_position_embeddings"] + cls.POSITION_OFFSET, h), "position_embedding"),
        ]
        if cfg["do_layer_norm_before"] and not cfg["_remove_final_layer_norm"]:
            outer_params += ln("model.decoder.final_layer_norm")
        return Layout(
            layer_prefix="model.decoder.layers",
            num_layers=cfg["num_hidden_layers"],
            layer_linears=tuple(linears),
            layer_params=tuple(ln("self_attn_layer_norm") + ln("final_layer_norm")),
            outer_linears=tuple(outer_linears),
            outer_params=tuple(outer_params),
            output_embedding="lm_head",
            input_embedding="model.decoder.embed_tokens",
            containers=("self_attn", "self_attn_layer_norm", "final_layer_norm"),
            layer_order=("self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj", "self_attn_layer_norm",
                         "fc1", "fc2", "final_layer_norm"),
        )

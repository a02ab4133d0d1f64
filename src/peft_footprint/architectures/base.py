"""What an architecture is made of: the modules transformers builds from a config.

An :class:`Architecture` reads a Hugging Face ``config.json`` (its field names, its aliases and
transformers' defaults for that ``model_type``) and returns a :class:`Layout`: the linear modules and
other parameters of one decoder layer (repeated ``num_layers`` times) and of the parts outside the
layers, with the exact module paths transformers uses (PEFT matches ``target_modules`` against them).
"""

from __future__ import annotations

import math
import warnings

from dataclasses import dataclass
from typing import Any, ClassVar

from ..act_fns import act_field, check_act
from ..errors import InvalidConfigError


@dataclass(frozen=True, slots=True)
class Linear:
    """A ``nn.Linear`` (or GPT-2 ``Conv1D``) module. ``path`` is relative to the layer for layer modules."""

    path: str
    in_features: int
    out_features: int
    bias: bool
    conv1d: bool = False  # transformers' Conv1D stores its weight as (in, out)
    tied: bool = False  # weight shared with the input embedding (not a parameter of its own)
    role: str = ""  # what it computes: "q", "k", "v", "qkv", "o", "gate", "up", "gate_up", "down", "lm_head", ...

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def weight_shape(self) -> tuple[int, int]:
        return (self.in_features, self.out_features) if self.conv1d else (self.out_features, self.in_features)

    @property
    def numel(self) -> int:
        return (0 if self.tied else self.in_features * self.out_features) + (self.out_features if self.bias else 0)


@dataclass(frozen=True, slots=True)
class Param:
    """A parameter that is not part of a linear module (embeddings, norm weights and biases)."""

    path: str
    shape: tuple[int, ...]
    kind: str = "norm"  # "embedding", "position_embedding", "norm"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True, slots=True)
class Layout:
    """The modules of a causal LM. Layer modules are listed once and repeat ``num_layers`` times."""

    layer_prefix: str  # e.g. "model.layers": layer i's modules live under f"{layer_prefix}.{i}."
    num_layers: int
    layer_linears: tuple[Linear, ...]
    layer_params: tuple[Param, ...]
    outer_linears: tuple[Linear, ...]  # lm_head (tied or not), OPT's project_in/out
    outer_params: tuple[Param, ...]  # embeddings, learned positions, final norm
    output_embedding: str  # path of the output embedding (excluded by PEFT's "all-linear")
    input_embedding: str
    containers: tuple[str, ...] = ()  # non-linear submodule names of a layer (e.g. "self_attn", "mlp")
    # a layer's modules with parameters in the order the layer registers them (what model.parameters() and so an
    # optimizer step through); empty: the linears in their order, then the other parameters' modules in theirs
    layer_order: tuple[str, ...] = ()

    @property
    def registration_order(self) -> tuple[str, ...]:
        """:attr:`layer_order`, or the linears then the other parameters' modules."""
        if self.layer_order:
            return self.layer_order
        mods = [m.path for m in self.layer_linears] + [q.path.rsplit(".", 1)[0] for q in self.layer_params]
        return tuple(dict.fromkeys(mods))

    def layer_path(self, i: int, rel: str) -> str:
        return f"{self.layer_prefix}.{i}.{rel}"

    @property
    def layer_numel(self) -> int:
        return sum(m.numel for m in self.layer_linears) + sum(p.numel for p in self.layer_params)

    @property
    def total_numel(self) -> int:
        return (
            self.num_layers * self.layer_numel
            + sum(m.numel for m in self.outer_linears)
            + sum(p.numel for p in self.outer_params)
        )


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InvalidConfigError(name, value, "expected a positive integer")
    if value <= 0:
        raise InvalidConfigError(name, value, "expected a positive integer")
    return value


def _int_at_least(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidConfigError(name, value, f"expected an integer >= {minimum}")
    return value


# float fields the estimate reads (dropouts decide whether masks are saved; rotary fractions size the rotation;
# soft-capping adds saved tensors): (lowest, highest) allowed
_DROPOUTS = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "dropout", "attention_dropout", "hidden_dropout", "residual_dropout",
             "embedding_dropout", "activation_dropout")
REAL_FIELDS: dict[str, tuple[float, float]] = {
    **{n: (0.0, 1.0) for n in _DROPOUTS},
    "rotary_pct": (0.0, 1.0), "partial_rotary_factor": (0.0, 1.0),
    "attn_logit_softcapping": (0.0, float("inf")), "final_logit_softcapping": (0.0, float("inf")),
    "query_pre_attn_scalar": (0.0, float("inf")),
}


def _real_in(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high) or value != value:
        raise InvalidConfigError(name, value, f"expected a number in [{low}, {high}]")
    return value


# transformers' configuration_utils.ALLOWED_LAYER_TYPES (the decoder-only kinds)
LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention", "linear_attention")


def _layer_types(value: Any, num_layers: int) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise InvalidConfigError("layer_types", value, f"expected a list of {num_layers} entries, each one of {', '.join(LAYER_TYPES)}")
    bad = [v for v in value if v not in LAYER_TYPES]
    if bad:
        raise InvalidConfigError("layer_types", bad[0], f"each entry must be one of {', '.join(LAYER_TYPES)}")
    if len(value) != num_layers:
        raise InvalidConfigError("layer_types", f"{len(value)} entries", f"expected one per layer (num_hidden_layers={num_layers})")
    return list(value)


class Architecture:
    """Base class: one subclass per transformers ``model_type``."""

    model_type: ClassVar[str]
    # transformers' config defaults for this model_type (configuration_<type>.py)
    defaults: ClassVar[dict[str, Any]]
    # the family's own spellings -> our canonical field names (transformers' attribute_map)
    aliases: ClassVar[dict[str, str]] = {}
    # canonical names this model type's transformers config does not read under that name (its own field is an
    # alias above): a config that gives them is built with the alias's value or default, as transformers builds it
    unread: ClassVar[frozenset[str]] = frozenset()
    # can transformers build it with these attention kernels?
    attn_implementations: ClassVar[tuple[str, ...]] = ("eager", "sdpa", "flash_attention_2")
    honors_head_dim: ClassVar[bool] = True
    # does transformers 5's config class refuse a hidden size that the attention heads do not divide, head_dim
    # given or not (its validate_architecture; transformers 4.x, which AdapterHub runs on, builds it)?
    heads_divide_hidden: ClassVar[bool] = False
    # does transformers' config.to_dict() carry these fields? (PEFT's prefix-tuning GQA rule reads them)
    has_kv_heads_field: ClassVar[bool] = True
    head_dim_always_in_config: ClassVar[bool] = False
    # fields where an explicit null means something other than the default (e.g. no sliding window)
    nullable: ClassVar[frozenset[str]] = frozenset({"sliding_window", "attn_logit_softcapping", "final_logit_softcapping"})

    # ---- reading a config -------------------------------------------------------------------
    @classmethod
    def normalize(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """Canonical fields from a config dict: aliases resolved, defaults filled, sizes validated."""
        cfg: dict[str, Any] = dict(cls.defaults)
        again = "_head_dim_in_config" in raw  # (a config this method returned, given again: its names are canonical)
        for key, value in raw.items():
            if key in cls.unread and not again:
                own = next(a for a, c in cls.aliases.items() if c == key)
                warnings.warn(f"{cls.model_type} reads {own}, not {key}: {key}={value!r} is ignored, as transformers "
                              f"ignores it (give {own})", stacklevel=4)
                continue
            key = cls.aliases.get(key, key)
            if value is None and key not in cls.nullable:
                continue  # null in a config.json means: the default
            cfg[key] = value
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
            cfg[name] = _positive_int(name, cfg.get(name))
        heads = cfg["num_attention_heads"]
        if cfg.get("num_key_value_heads") is None:
            cfg["num_key_value_heads"] = heads
        kv = cfg["num_key_value_heads"] = _positive_int("num_key_value_heads", cfg["num_key_value_heads"])
        if heads % kv:
            raise InvalidConfigError(
                "num_key_value_heads", kv, f"must divide num_attention_heads={heads} (grouped-query attention)"
            )
        if cls.honors_head_dim and cfg.get("head_dim") is not None:
            cfg["head_dim"] = _positive_int("head_dim", cfg["head_dim"])
        else:
            if cfg["hidden_size"] % heads:
                raise InvalidConfigError(
                    "num_attention_heads",
                    heads,
                    f"must divide hidden_size={cfg['hidden_size']} (or give head_dim explicitly)"
                    if cls.honors_head_dim
                    else f"must divide hidden_size={cfg['hidden_size']} ({cls.model_type} has no head_dim field)",
                )
            cfg["head_dim"] = cfg["hidden_size"] // heads
        if cfg.get("intermediate_size") is None:
            cfg["intermediate_size"] = 4 * cfg["hidden_size"]
        cfg["intermediate_size"] = _positive_int("intermediate_size", cfg["intermediate_size"])
        if cfg.get("max_position_embeddings") is not None:
            cfg["max_position_embeddings"] = _positive_int("max_position_embeddings", cfg["max_position_embeddings"])
        for name, minimum in (("sliding_window", 0), ("max_window_layers", 0), ("sliding_window_pattern", 1)):
            if cfg.get(name) is not None:
                cfg[name] = _int_at_least(name, cfg[name], minimum)
        if cfg.get("layer_types") is not None:
            cfg["layer_types"] = _layer_types(cfg["layer_types"], cfg["num_hidden_layers"])
        for name, (low, high) in REAL_FIELDS.items():
            if cfg.get(name) is not None:
                cfg[name] = _real_in(name, cfg[name], low, high)
        act = act_field(cls.model_type)  # the field the MLP reads its activation from
        cfg[act] = check_act(act, cfg.get(act))
        for name in ("rope_parameters", "rope_scaling"):
            if cfg.get(name) is not None and not isinstance(cfg[name], dict):
                raise InvalidConfigError(name, cfg[name], "expected a dict (or null)")
        if cfg.get("rope_parameters") and cfg["rope_parameters"].get("partial_rotary_factor") is not None:
            _real_in("rope_parameters.partial_rotary_factor", cfg["rope_parameters"]["partial_rotary_factor"], 0.0, 1.0)
        if "word_embed_proj_dim" not in cls.defaults:
            cfg.pop("word_embed_proj_dim", None)  # an OPT field; other families have no such width
        cfg["tie_word_embeddings"] = bool(cfg.get("tie_word_embeddings"))
        cfg["model_type"] = cls.model_type
        cfg["_has_kv_heads_field"] = cls.has_kv_heads_field
        cfg["_head_dim_in_config"] = cls.head_dim_always_in_config or raw.get("head_dim") is not None
        cls.check(cfg)
        return cfg

    @classmethod
    def check(cls, cfg: dict[str, Any]) -> None:
        """Family-specific validation (hook)."""

    # ---- modules ------------------------------------------------------------------------------
    @classmethod
    def layout(cls, cfg: dict[str, Any]) -> Layout:
        raise NotImplementedError

    @classmethod
    def layer_types(cls, cfg: dict[str, Any]) -> list[str]:
        """Per layer: "full_attention" or "sliding_attention"."""
        types = cfg.get("layer_types")
        if types:
            return list(types)
        return ["full_attention"] * cfg["num_hidden_layers"]


# ---- shared builders --------------------------------------------------------------------------


def lm_head(cfg: dict[str, Any], path: str = "lm_head", in_features: int | None = None, bias: bool = False) -> Linear:
    return Linear(
        path,
        in_features or cfg["hidden_size"],
        cfg["vocab_size"],
        bias,
        tied=cfg["tie_word_embeddings"],
        role="lm_head",
    )


def separate_qkvo(cfg: dict[str, Any], *, qkv_bias: bool, o_bias: bool, prefix: str = "self_attn", o_name: str = "o_proj") -> list[Linear]:
    h, hd, nh, nkv = cfg["hidden_size"], cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    return [
        Linear(f"{prefix}.q_proj", h, nh * hd, qkv_bias, role="q"),
        Linear(f"{prefix}.k_proj", h, nkv * hd, qkv_bias, role="k"),
        Linear(f"{prefix}.v_proj", h, nkv * hd, qkv_bias, role="v"),
        Linear(f"{prefix}.{o_name}", nh * hd, h, o_bias, role="o"),
    ]


def gated_mlp(cfg: dict[str, Any], *, bias: bool = False) -> list[Linear]:
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    return [
        Linear("mlp.gate_proj", h, i, bias, role="gate"),
        Linear("mlp.up_proj", h, i, bias, role="up"),
        Linear("mlp.down_proj", i, h, bias, role="down"),
    ]


def rms_norms(cfg: dict[str, Any], *names: str) -> list[Param]:
    return [Param(f"{n}.weight", (cfg["hidden_size"],)) for n in names]


def layer_norms(cfg: dict[str, Any], *names: str, bias: bool = True) -> list[Param]:
    out = []
    for n in names:
        out.append(Param(f"{n}.weight", (cfg["hidden_size"],)))
        if bias:
            out.append(Param(f"{n}.bias", (cfg["hidden_size"],)))
    return out


def llama_like(
    cfg: dict[str, Any],
    *,
    qkv_bias: bool = False,
    o_bias: bool = False,
    mlp_bias: bool = False,
    norms: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm"),
    qk_norm: str | None = None,  # "head" (qwen3, gemma3) or "full" (olmo2)
) -> Layout:
    linears = separate_qkvo(cfg, qkv_bias=qkv_bias, o_bias=o_bias) + gated_mlp(cfg, bias=mlp_bias)
    params = rms_norms(cfg, *norms)
    if qk_norm == "head":
        params += [Param("self_attn.q_norm.weight", (cfg["head_dim"],)), Param("self_attn.k_norm.weight", (cfg["head_dim"],))]
    elif qk_norm == "full":
        hd = cfg["head_dim"]
        params += [
            Param("self_attn.q_norm.weight", (cfg["num_attention_heads"] * hd,)),
            Param("self_attn.k_norm.weight", (cfg["num_key_value_heads"] * hd,)),
        ]
    return Layout(
        layer_prefix="model.layers",
        num_layers=cfg["num_hidden_layers"],
        layer_linears=tuple(linears),
        layer_params=tuple(params),
        outer_linears=(lm_head(cfg),),
        outer_params=(
            Param("model.embed_tokens.weight", (cfg["vocab_size"], cfg["hidden_size"]), "embedding"),
            Param("model.norm.weight", (cfg["hidden_size"],)),
        ),
        output_embedding="lm_head",
        input_embedding="model.embed_tokens",
        containers=("self_attn", "mlp", *norms, *(("self_attn.q_norm", "self_attn.k_norm") if qk_norm else ())),
        # (the attention registers its q/k norms after its projections; the layer, its norms after the MLP)
        layer_order=(*(m.path for m in linears if m.path.startswith("self_attn.")),
                     *(("self_attn.q_norm", "self_attn.k_norm") if qk_norm else ()),
                     *(m.path for m in linears if not m.path.startswith("self_attn.")), *norms),
    )

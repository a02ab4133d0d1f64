"""LoRA (peft/tuners/lora): ``lora_A`` (r x in) and ``lora_B`` (out x r) beside each target, kept in fp32 on a
bf16/fp16 base (``get_peft_model(..., autocast_adapter_dtype=True)``, PEFT's default)."""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..errors import InvalidConfigError, UnsupportedCombinationError
from .base import (Method, ParamTable, TargetMatch, Tensor, base_tensors, check_token_rows, nonnegative_rows, resolve_saved_modules,
                   resolve_targets, targets_list, token_delta, token_rows_of)
from .defaults import default_targets

ADAPTER_DTYPE = "fp32"


class LoRA(Method):
    name = "lora"
    peft_type = "LORA"
    label = "LoRA"
    mergeable = True

    r: int = Field(8, gt=0)
    lora_alpha: float = 8
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | str | None = None
    exclude_modules: list[str] | str | None = None
    layers_to_transform: list[int] | int | None = None
    bias: Literal["none", "all", "lora_only"] = "none"
    modules_to_save: list[str] | None = None
    use_dora: bool = False
    use_rslora: bool = False
    init_lora_weights: bool | str = True
    fan_in_fan_out: bool = False
    rank_pattern: dict[str, int] = Field(default_factory=dict)
    alpha_pattern: dict[str, float] = Field(default_factory=dict)
    lora_bias: bool = False  # lora_B gets a bias (nn.Linear(r, out, bias=True))
    # PEFT's TrainableTokensWrapper on the input embedding: those rows train (a list; or a dict keyed by the
    # embedding's name, and a tied lm_head's with the same rows)
    trainable_token_indices: list[int] | dict[str, list[int]] | None = None
    merge: bool = Field(False, alias="merged", description="serve with the adapter folded into the base weights")

    _targets = field_validator("target_modules", "exclude_modules", mode="before")(classmethod(lambda cls, v: targets_list(v)))

    @field_validator("rank_pattern")
    @classmethod
    def _positive_ranks(cls, v: dict[str, int]) -> dict[str, int]:
        for key, r in v.items():
            if r <= 0:
                raise ValueError(f"rank for {key!r} must be a positive integer, got {r}")
        return v

    @field_validator("trainable_token_indices", mode="before")
    @classmethod
    def _token_indices_shape(cls, v):
        def rows(x) -> bool:
            return isinstance(x, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in x)
        if v is None or rows(v) or (isinstance(v, dict) and all(isinstance(k, str) and rows(x) for k, x in v.items())):
            return v
        raise ValueError("give a list of token indices (rows of the input embedding), or a dict from the embedding's "
                         "module name to such a list, e.g. [32000, 32001] or {'embed_tokens': [32000, 32001]}")

    @field_validator("trainable_token_indices")
    @classmethod
    def _token_indices(cls, v):
        for rows in (v.values() if isinstance(v, dict) else [v] if v is not None else []):
            if not rows:
                raise ValueError("give at least one token index (PEFT wraps the embedding to train those rows)")
            nonnegative_rows(rows)
        return v

    @model_validator(mode="after")
    def _lora_bias(self):
        if self.lora_bias and self.use_dora:
            raise UnsupportedCombinationError(
                "lora_bias=True with use_dora=True: PEFT refuses it ('The argument lora_bias=True is not supported for DoRA')")
        if self.lora_bias and self.init_lora_weights not in (True, False):
            raise UnsupportedCombinationError(
                f"lora_bias=True with init_lora_weights={self.init_lora_weights!r}: PEFT allows it only with True or False")
        return self

    @model_validator(mode="after")
    def _patterns_are_regexes(self):
        for name in ("rank_pattern", "alpha_pattern"):
            for key in getattr(self, name):
                try:
                    _pattern_regex(key)
                except (re.error, RecursionError, OverflowError) as exc:
                    raise InvalidConfigError(f"{self.name}.{name}", key, f"a key is a regular expression that PEFT matches against the end of "
                                             f"each module's name, and this one is not valid ({exc})") from None
        return self

    @model_validator(mode="after")
    def _layers_need_module_names(self):
        if isinstance(self.target_modules, str) and self.layers_to_transform is not None:
            raise UnsupportedCombinationError(
                f"layers_to_transform={self.layers_to_transform!r} with target_modules={self.target_modules!r}: PEFT refuses it "
                "('`layers_to_transform` cannot be used when `target_modules` is a str'); give target_modules as a list "
                "of module names")
        return self

    @property
    def merged(self) -> bool:
        return self.merge

    def targets(self, layout, cfg):
        targets = self.target_modules
        if targets is None:
            targets = default_targets("lora", cfg["model_type"], "target_modules")
        self.saved_modules(layout, cfg)  # (what PEFT would refuse in modules_to_save, said first)
        return resolve_targets(
            layout, targets, model_type=cfg["model_type"], exclude_modules=self.exclude_modules,
            layers_to_transform=self.layers_to_transform, modules_to_save=self.modules_to_save,
        )

    def rank_for(self, key: str) -> int:
        """The rank of the module ``key`` (its full name, "model.layers.3.self_attn.q_proj"), as PEFT picks it:
        the first rank_pattern key that the name ends with, as a regex after a "." or at the start
        (peft.utils.other.get_pattern_key), else r."""
        pattern = self.rank_key(key)
        return self.r if pattern is None else self.rank_pattern[pattern]

    def rank_key(self, key: str) -> str | None:
        """The rank_pattern key that sets the rank of the module ``key`` (None: r does)."""
        for pattern in self.rank_pattern:
            if _pattern_regex(pattern).match(key):
                return pattern
        return None

    def rank_groups(self, layout, t: TargetMatch) -> list[tuple[int, tuple[int, ...] | None]]:
        """(rank, layers) for a target: one group unless rank_pattern gives its layers different ranks (layers
        None: the target's own, ``t.layers``)."""
        if not t.in_layer:
            return [(self.rank_for(t.path), None)]
        if not self.rank_pattern:
            return [(self.r, None)]
        layers = t.layers if t.layers is not None else tuple(range(layout.num_layers))
        rel = t.module.path
        by_key: dict[str | None, list[int]] = {}  # grouped by the pattern that sets the rank (r may be traced)
        for i in layers:
            by_key.setdefault(self.rank_key(layout.layer_path(i, rel)), []).append(i)
        ranks = [(self.r if k is None else self.rank_pattern[k], ls) for k, ls in by_key.items()]
        if len(ranks) == 1:
            return [(ranks[0][0], None)]
        return [(r, tuple(ls)) for r, ls in ranks]

    def layer_rank(self, layout, rel: str, layer: int | None) -> int:
        """The rank of the module at ``rel`` (relative to decoder layer ``layer``; a full path when None)."""
        if not self.rank_pattern:
            return self.r
        return self.rank_for(rel if layer is None else layout.layer_path(layer, rel))

    def input_embedding_target(self, layout, cfg) -> TargetMatch | None:
        """The input embedding, where LoRA wraps it: PEFT's lora.Embedding (with DoRA, its DoraEmbeddingVariant)."""
        return self.embedding_target(layout, cfg, layout.input_embedding)

    def embedding_target(self, layout, cfg, path: str) -> TargetMatch | None:
        """The embedding at ``path`` (the input embedding, GPT-2's position embedding), where LoRA wraps it."""
        return next((t for t in self.targets(layout, cfg) if t.is_embedding and t.path == path), None)

    def position_embedding_target(self, layout, cfg) -> TargetMatch | None:
        """The learned position embedding (GPT-2's wpe, OPT's embed_positions), where LoRA wraps it."""
        pos = next((q for q in layout.outer_params if q.kind == "position_embedding"), None)
        return None if pos is None else self.embedding_target(layout, cfg, pos.path.rsplit(".", 1)[0])

    def lora_tensors(self, layout, cfg, base_dtype: str) -> list[Tensor]:
        out: list[Tensor] = []
        for t in self.targets(layout, cfg):
            for r, group in self.rank_groups(layout, t):
                count, layers = (t.count, t.layers) if group is None else (len(group), group)
                if t.is_embedding:
                    if self.lora_bias:
                        raise UnsupportedCombinationError(
                            f"lora_bias=True with {t.path!r} in target_modules: PEFT refuses it for embedding layers "
                            "('lora_bias=True is not supported for Embedding')")
                    vocab, dim = t.module.shape
                    shapes = [("lora_embedding_A", (r, vocab)), ("lora_embedding_B", (dim, r))]
                    width = dim
                else:
                    m = t.module
                    shapes = [("lora_A.weight", (r, m.in_features)), ("lora_B.weight", (m.out_features, r))]
                    if self.lora_bias:
                        shapes.append(("lora_B.bias", (m.out_features,)))
                    width = m.out_features
                if self.use_dora:
                    shapes.append(("lora_magnitude_vector", (width,)))
                out += [Tensor(f"{t.path}.{leaf}", shape, ADAPTER_DTYPE, count, True, "adapter", layers=layers)
                        for leaf, shape in shapes]
        return out

    def build(self, layout, cfg, dtype):
        base = base_tensors(layout, dtype)
        lora = self.lora_tensors(layout, cfg, dtype)
        base, extra_saved = self._bias_and_modules_to_save(layout, cfg, base, dtype)
        tokens = self.token_rows(layout, cfg)
        if tokens:  # TrainableTokensLayer's delta: the rows, cloned from the embedding, cast to fp32 like the adapters
            lora.append(token_delta(layout, tokens, f"{layout.input_embedding}.token_adapter"))
        return ParamTable(tensors=base + lora, saved=lora + extra_saved + self._saved_embeddings(layout, cfg, dtype))

    def token_rows(self, layout, cfg) -> int:
        """How many rows of the input embedding ``trainable_token_indices`` trains (0: none), once checked as
        PEFT checks it. A tied lm_head follows the embedding's rows (PEFT wraps it with a tied adapter)."""
        v = self.trainable_token_indices
        if v is None:
            return 0
        field = f"{self.name}.trainable_token_indices"
        if isinstance(v, dict):
            rows = token_rows_of(layout, cfg, field, v)
        else:
            rows = v
        n = check_token_rows(layout, cfg, field, rows, self.modules_to_save)
        if self.input_embedding_target(layout, cfg) is not None or (
                cfg.get("tie_word_embeddings", False) and any(not t.is_embedding and t.path == layout.output_embedding
                                                              for t in self.targets(layout, cfg))):
            raise UnsupportedCombinationError(
                f"{field} with LoRA on the input embedding{' or its tied lm_head' if cfg.get('tie_word_embeddings') else ''}: "
                "not modelled; leave the embedding out of target_modules (its trainable rows train it)")
        return n

    def _saved_embeddings(self, layout, cfg, dtype: str) -> list[Tensor]:
        """PEFT's get_peft_model_state_dict(save_embedding_layers="auto"): when target_modules names "embed_tokens"
        or "lm_head" (a list holding either; a regex that matches such a module), the base weights of the input and
        output embeddings that LoRA wraps are saved with the adapter, as ``<module>.base_layer.weight`` -- but not with
        ``trainable_token_indices``, which is meant to save space (``using_trainable_tokens``)."""
        targets = self.target_modules
        if self.trainable_token_indices is not None:
            return []
        outer = [p.path.rsplit(".", 1)[0] for p in layout.outer_params if p.kind == "embedding"] + [m.path for m in layout.outer_linears]
        if targets is None or (isinstance(targets, str) and targets.lower() == "all-linear"):
            return []
        if isinstance(targets, str):
            named = any(re.fullmatch(targets, k) and re.match(r"(.*\.)?(embed_tokens|lm_head)$", k) for k in outer)
        else:
            named = "embed_tokens" in targets or "lm_head" in targets
        if not named:
            return []
        out = []
        for t in self.targets(layout, cfg):
            if t.is_embedding and t.path == layout.input_embedding:
                out.append(Tensor(f"{t.path}.base_layer.weight", t.module.shape, dtype, 1, False))
            elif not t.is_embedding and not t.in_layer and t.module.path == layout.output_embedding:
                out.append(Tensor(f"{t.path}.base_layer.weight", t.module.weight_shape, dtype, 1, False))
        return out

    # bias="all"/"lora_only" and modules_to_save make base tensors trainable or copy them
    def _bias_and_modules_to_save(self, layout, cfg, base: list[Tensor], dtype: str):
        saved: list[Tensor] = []
        if self.bias != "none":
            targets = {t.path: t for t in self.targets(layout, cfg)}
            covered = self.saved_modules(layout, cfg)
            new = []
            for t in base:
                is_bias = t.name.endswith(".bias") or t.name.endswith("bias")
                mod = t.name.rsplit(".", 1)[0]
                if is_bias and self.bias == "all" and covered is not None:
                    # a module that modules_to_save copies: its own bias is frozen again (the wrapper's
                    # original_module.requires_grad_(False)), and saved as "<module>.original_module.bias"
                    if "*" in mod:
                        layers = covered.layer.get(mod.split(".*.", 1)[1], frozenset())
                    else:
                        layers = frozenset({0}) if covered.covers(mod, None) else frozenset()
                    if layers:
                        which = None if "*" not in mod or len(layers) == t.count else tuple(sorted(layers))
                        orig = Tensor(f"{mod}.original_module.bias", t.shape, t.dtype, len(layers), False, t.group, layers=which)
                        new.append(orig)
                        saved.append(orig)
                        if len(layers) == t.count:
                            continue
                        t = Tensor(t.name, t.shape, t.dtype, t.count - len(layers), t.trainable, t.group,
                                   layers=tuple(i for i in range(t.count) if i not in layers))
                if is_bias and (self.bias == "all" or mod in targets):
                    # "lora_only": the biases of the modules LoRA wraps, in the layers it wraps them
                    wrapped = t.count if self.bias == "all" else targets[mod].count
                    if wrapped < t.count:
                        new.append(Tensor(t.name, t.shape, t.dtype, t.count - wrapped, False, t.group))
                    t = Tensor(t.name, t.shape, t.dtype, wrapped, True, t.group)
                    if self.bias == "all":  # get_peft_model_state_dict saves every key with "bias" in it. For
                        # "lora_only" it looks for "<module>.bias" next to "<module>.lora_A", but a wrapped module's
                        # bias is "<module>.base_layer.bias": none is saved (PEFT 0.19, utils/save_and_load.py)
                        saved += _as_saved(t, mod, targets.get(mod))
                new.append(t)
            base = new
        if self.modules_to_save:
            copies = modules_to_save_copies(layout, cfg, self.modules_to_save, dtype, saved)
            base = base + copies
            if self.bias == "all":  # every state-dict key with "bias" in it is saved too: a copy's bias a second
                # time, as "<module>.modules_to_save.bias" (storage._peft_key writes the marker so)
                saved += [dataclasses.replace(t, name=t.name.replace(".modules_to_save.", ".MODULES_TO_SAVE."))
                          for t in copies if t.name.endswith(".bias")]
        return base, saved


def _as_saved(t: Tensor, mod: str, target: TargetMatch | None) -> list[Tensor]:
    """A bias as bias="all" saves it: "<module>.base_layer.bias" in the layers where LoRA wraps the module."""
    if target is None:
        return [t]
    if "*" not in t.name:
        return [dataclasses.replace(t, name=f"{mod}.base_layer.bias")]
    layers = t.layers if t.layers is not None else tuple(range(t.count))
    wrapped = set(target.layers) if target.layers is not None else set(layers)
    inside = tuple(i for i in layers if i in wrapped)
    outside = tuple(i for i in layers if i not in wrapped)
    out = []
    if inside:
        out.append(dataclasses.replace(t, name=f"{mod}.base_layer.bias", count=len(inside), layers=inside))
    if outside:
        out.append(dataclasses.replace(t, count=len(outside), layers=outside))
    return out


def modules_to_save_copies(layout, cfg, names: list[str], dtype: str, saved: list[Tensor]) -> list[Tensor]:
    """PEFT's ModulesToSaveWrapper: a trainable deep copy of each module that modules_to_save covers
    (resolve_saved_modules), parameter by parameter: ``<module>.modules_to_save.<leaf>``, what PEFT's state dict
    saves as ``<module>.<leaf>``; a copy of a module inside a covered container is named as its own."""
    covered = resolve_saved_modules(layout, names, cfg["model_type"])
    copies: list[Tensor] = []
    for m in layout.outer_linears:
        if m.path in covered.outer:  # (a tied lm_head's copy has a weight of its own)
            copies += [Tensor(f"{m.path}.modules_to_save.weight", m.weight_shape, dtype, 1, True, "modules_to_save")]
            if m.bias:
                copies.append(Tensor(f"{m.path}.modules_to_save.bias", (m.out_features,), dtype, 1, True, "modules_to_save"))
    for p in layout.outer_params:
        mod, leaf = p.path.rsplit(".", 1)
        if mod in covered.outer:
            copies.append(Tensor(f"{mod}.modules_to_save.{leaf}", p.shape, dtype, 1, True, "modules_to_save"))
    n = layout.num_layers
    prefix = layout.layer_prefix
    for rel, layers in covered.layer.items():
        count, which = len(layers), (None if len(layers) == n else tuple(sorted(layers)))
        m = next((m for m in layout.layer_linears if m.path == rel), None)
        if m is not None:
            shapes = [("weight", m.weight_shape)] + ([("bias", (m.out_features,))] if m.bias else [])
        else:  # a norm: its parameters
            shapes = [(q.path.rsplit(".", 1)[1], q.shape) for q in layout.layer_params if q.path.rsplit(".", 1)[0] == rel]
        copies += [Tensor(f"{prefix}.*.{rel}.modules_to_save.{leaf}", shape, dtype, count, True, "modules_to_save", layers=which)
                   for leaf, shape in shapes]
    saved += copies
    return copies


@lru_cache(maxsize=1024)
def _pattern_regex(key: str) -> re.Pattern:
    return re.compile(rf"(.*\.)?({key})$")

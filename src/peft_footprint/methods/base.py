"""What a method adds to, or changes in, the base model's parameters.

Every method is a pydantic model with PEFT's (or AdapterHub's) field names. ``build()`` returns a
:class:`ParamTable`: each parameter tensor of the wrapped model with its dtype, whether it trains and
whether the method's checkpoint saves it; totals are exact Python integers.
"""

from __future__ import annotations

import math

import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

from .. import trace
from ..architectures import Layout, Linear, Param
from ..dtypes import nbytes
from ..errors import InvalidConfigError, UnsupportedCombinationError, did_you_mean

__all__ = ["Method", "ParamTable", "SavedModules", "Tensor", "TargetMatch", "base_tensors", "check_regex", "method_key",
           "resolve_saved_modules", "resolve_targets"]


@dataclass(frozen=True, slots=True)
class Tensor:
    """``count`` identical tensors (one per layer for layer modules)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    count: int = 1
    trainable: bool = False
    group: str = "base"  # base | adapter | prompt_encoder | modules_to_save | quantized
    counted_numel: int | None = None  # parameters as PEFT counts one tensor (4-bit: 2 per byte of storage)
    stored_bytes: int | None = None  # bytes of one tensor's storage when not numel x element size
    layers: tuple[int, ...] | None = None  # which layers "*" stands for (None: all ``count`` of them)

    def names(self, template: str | None = None) -> list[str]:
        """One name per tensor, with the layer index in place of ``*`` (in ``template``, by default the name)."""
        template = self.name if template is None else template
        if "*" not in self.name:
            return [template]
        idx = self.layers if self.layers is not None else range(self.count)
        return [template.replace("*", str(i)) for i in idx]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def params(self) -> int:
        return (self.numel if self.counted_numel is None else self.counted_numel) * self.count

    @property
    def bytes(self) -> int:
        one = self.numel * nbytes(self.dtype) if self.stored_bytes is None else self.stored_bytes
        return one * self.count


@dataclass(slots=True)
class ParamTable:
    """A method's tensors on a model. Built once and then only read: its totals are worked out on first use."""

    tensors: list[Tensor] = field(default_factory=list)
    # what the method's checkpoint writes (PEFT's get_peft_model_state_dict / AdapterHub's save_adapter)
    saved: list[Tensor] = field(default_factory=list)
    # persistent non-parameter tensors (4-bit quantization state), in bytes
    buffers: list[Tensor] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _file_bytes: int | None = None
    _totals: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def file_bytes(self, writer) -> int:
        """Size of the checkpoint file (computed once per table: sweeps reuse it)."""
        if self._file_bytes is None:
            self._file_bytes = writer(self.saved)
        return self._file_bytes

    def _total(self, name: str) -> Any:
        if self._totals is None:
            trainable = tuple(t for t in self.tensors if t.trainable)
            self._totals = {
                "total_params": sum(t.params for t in self.tensors),
                "trainable_params": sum(t.params for t in trainable),
                "weights_bytes": sum(t.bytes for t in self.tensors),
                "buffer_bytes": sum(t.bytes for t in self.buffers),
                "trainable": trainable,
                "trainable_bytes": sum(t.bytes for t in trainable),
                "base_bytes": sum(t.bytes for t in self.tensors if t.group in ("base", "quantized")),
                "adapter_bytes": sum(t.bytes for t in self.saved),
            }
        return self._totals[name]

    @property
    def total_params(self) -> int:
        return self._total("total_params")

    @property
    def trainable_params(self) -> int:
        return self._total("trainable_params")

    @property
    def weights_bytes(self) -> int:
        return self._total("weights_bytes")

    @property
    def buffer_bytes(self) -> int:
        return self._total("buffer_bytes")

    @property
    def trainable(self) -> list[Tensor]:
        return list(self._total("trainable"))

    @property
    def trainable_bytes(self) -> int:
        """Bytes of the trainable tensors (what their gradients take)."""
        return self._total("trainable_bytes")

    @property
    def base_bytes(self) -> int:
        """Bytes of the base model's own weights (4-bit ones included, their quantization state not)."""
        return self._total("base_bytes")

    @property
    def adapter_bytes(self) -> int:
        return self._total("adapter_bytes")


class Method(BaseModel):
    """Base class of the method specs. Subclasses declare PEFT's fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: ClassVar[str]
    peft_type: ClassVar[str | None] = None  # PEFT's PeftType value, for adapter_config.json import
    mergeable: ClassVar[bool] = False  # can the adaptation be folded into the base weights for serving?
    label: ClassVar[str] = ""

    def build(self, layout: Layout, cfg: dict[str, Any], dtype: str) -> ParamTable:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def merged(self) -> bool:
        return False

    def merge_warning(self) -> str | None:
        """What to warn about when this adaptation is merged into the base weights for serving (None: nothing)."""
        return None

    def virtual_tokens(self) -> int:
        """Virtual tokens prepended to every layer's sequence (prompt tuning, P-tuning)."""
        return 0

    def prefix_tokens(self) -> int:
        """Virtual key/value positions added to every attention (prefix tuning)."""
        return 0

    def token_rows(self, layout: Layout, cfg: dict[str, Any]) -> int:
        """Rows of the input embedding that train through PEFT's TrainableTokensLayer (0: none)."""
        return 0

    def saved_modules(self, layout: Layout, cfg: dict[str, Any]) -> SavedModules | None:
        """The modules its modules_to_save copies (None: none, or a method without the field)."""
        names = getattr(self, "modules_to_save", None)
        return resolve_saved_modules(layout, names, cfg["model_type"]) if names else None

    def describe(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.model_dump(exclude_defaults=True).items())
        return f"{self.name}({fields})"


_KEYS: dict[int, tuple[Method, str]] = {}


def method_key(method: Method) -> str:
    """The method's kind and fields as one string: what every per-method cache is keyed by. Worked out once per
    instance (methods are frozen); the instance is held so that its id is not reused."""
    hit = _KEYS.get(id(method))
    if hit is None or hit[0] is not method:
        if len(_KEYS) > 4096:
            _KEYS.clear()
        hit = _KEYS[id(method)] = (method, f"{type(method).__name__}:{method.model_dump_json()}")
    return hit[1]


# ---- the base model's own parameters --------------------------------------------------------------


def base_tensors(layout: Layout, dtype: str, *, trainable: bool = False) -> list[Tensor]:
    out: list[Tensor] = []
    n = layout.num_layers
    for m in layout.layer_linears:
        out.append(Tensor(f"{layout.layer_prefix}.*.{m.path}.weight", m.weight_shape, dtype, n, trainable))
        if m.bias:
            out.append(Tensor(f"{layout.layer_prefix}.*.{m.path}.bias", (m.out_features,), dtype, n, trainable))
    for p in layout.layer_params:
        out.append(Tensor(f"{layout.layer_prefix}.*.{p.path}", p.shape, dtype, n, trainable))
    for p in layout.outer_params:
        out.append(Tensor(p.path, p.shape, dtype, 1, trainable))
    for m in layout.outer_linears:
        if not m.tied:
            out.append(Tensor(f"{m.path}.weight", m.weight_shape, dtype, 1, trainable))
        if m.bias:
            out.append(Tensor(f"{m.path}.bias", (m.out_features,), dtype, 1, trainable))
    return out


# ---- PEFT's target_modules matching (peft/tuners/tuners_utils.py: check_target_module_exists) ------


@dataclass(frozen=True, slots=True)
class TargetMatch:
    module: Linear | Param  # a Linear, or an embedding Param
    path: str  # full path for outer modules, "<prefix>.*.<rel>" for layer modules
    count: int  # how many layers (1 for outer modules)
    in_layer: bool
    layers: tuple[int, ...] | None = None  # the matching layer indices, for layer modules

    @property
    def is_embedding(self) -> bool:
        return isinstance(self.module, Param)


def _matcher(targets: str | list[str] | tuple[str, ...] | frozenset[str]) -> Callable[[str], bool]:
    """PEFT's match of one module key: a str is a regex the key must fullmatch; names match a key equal to one of
    them or ending in "." + one of them."""
    if isinstance(targets, str):
        pattern = re.compile(targets)
        return lambda key: pattern.fullmatch(key) is not None
    names, suffixes = set(targets), tuple("." + t for t in targets)
    return lambda key: key in names or key.endswith(suffixes)


def _layer_counts(layout: Layout, rel: str, match, excluded, layers: set[int] | None, need_scan: bool,
                  exact: frozenset = frozenset()) -> tuple[int, ...]:
    """In which layers does the module at ``rel`` match? Without digits in the names (``need_scan`` False) the
    answer is all or none. ``exact``: full names listed as they are, which layers_to_transform does not filter."""
    n = layout.num_layers
    indices = range(n) if layers is None else [i for i in range(n) if i in layers or layout.layer_path(i, rel) in exact]
    if not need_scan:
        key = layout.layer_path(0, rel)
        hit = match(key) and not (excluded and excluded(key))
        return tuple(indices) if hit else ()
    return tuple(
        i for i in indices
        if match(layout.layer_path(i, rel)) and not (excluded and excluded(layout.layer_path(i, rel)))
    )


_RESOLVED: dict[tuple, tuple[Layout, list[TargetMatch], list[str]]] = {}


def resolve_targets(
    layout: Layout,
    target_modules: str | list[str] | tuple[str, ...],
    *,
    model_type: str,
    exclude_modules: str | list[str] | None = None,
    layers_to_transform: int | list[int] | None = None,
    allow_embedding: bool = True,
    field_name: str = "target_modules",
    modules_to_save: list[str] | None = None,
) -> list[TargetMatch]:
    """The modules PEFT would wrap for ``target_modules`` (list: exact or ``.``-suffix match; str: regex
    fullmatch; ``"all-linear"``: every Linear/Conv1D except the output embedding). Cached per (layout,
    arguments): a method's parameter table, FLOPs and activations all ask; the warnings come every time."""
    options = dict(model_type=model_type, exclude_modules=exclude_modules, layers_to_transform=layers_to_transform,
                   allow_embedding=allow_embedding, field_name=field_name,
                   modules_to_save=tuple(modules_to_save) if modules_to_save else None)
    key: tuple | None = (id(layout), *(tuple(a) if isinstance(a, list) else a for a in (target_modules, *options.values())))
    tape = trace.active()
    cache = _RESOLVED if tape is None else tape.memo  # a traced layout is made for one pass: not kept after it
    try:
        hit = cache.get(key)
    except TypeError:  # an unhashable entry: resolve (and report) it uncached
        hit = key = None
    if hit is None or hit[0] is not layout:
        hit = (layout, *_resolve_targets(layout, target_modules, **options))
        if key is not None:
            if len(cache) > 4096:
                cache.clear()
            cache[key] = hit
    for message in hit[2]:
        warnings.warn(message, stacklevel=4)
    return list(hit[1])


def _resolve_targets(layout: Layout, target_modules, *, model_type: str, exclude_modules, layers_to_transform,
                     allow_embedding: bool, field_name: str, modules_to_save: tuple | None) -> tuple[list[TargetMatch], list[str]]:
    """resolve_targets' matches, and the warnings to give about them."""
    exclude: Any = exclude_modules if isinstance(exclude_modules, (str, type(None))) else tuple(exclude_modules)
    if isinstance(exclude, str):
        check_regex("exclude_modules", exclude)
    excluded = _matcher(exclude) if exclude else None
    # exclusions that can differ from layer to layer (a regex, a name with a layer index)
    scan_excluded = isinstance(exclude, str) or (exclude is not None and any(any(map(str.isdigit, t)) for t in exclude))
    if modules_to_save:  # an adapter never goes on (or inside) a module that modules_to_save copies
        inside = saved_exclusion(modules_to_save)
        excluded = inside if excluded is None else (lambda key, _e=excluded: _e(key) or inside(key))
        scan_excluded = True
    if isinstance(target_modules, str) and target_modules.lower() == "all-linear":
        # every linear but the output embedding; PEFT still applies exclude_modules (check_target_module_exists)
        matches = []
        for m in layout.layer_linears:
            hit_layers = _layer_counts(layout, m.path, lambda key: True, excluded, None, scan_excluded)
            if hit_layers:
                matches.append(TargetMatch(m, f"{layout.layer_prefix}.*.{m.path}", len(hit_layers), True, hit_layers))
        matches += [TargetMatch(m, m.path, 1, False) for m in layout.outer_linears
                    if m.path != layout.output_embedding and not (excluded and excluded(m.path))]
        if not matches and modules_to_save and not exclude:
            raise UnsupportedCombinationError(
                f'target_modules="all-linear": every linear module is inside modules_to_save={list(modules_to_save)}, which '
                "PEFT never adapts; PEFT fails ('No modules were targeted for adaptation')")
        if not matches:
            raise InvalidConfigError("exclude_modules", exclude if isinstance(exclude, str) else list(exclude),
                                     f'excludes every linear module of {model_type} that target_modules="all-linear" selects')
        return matches, []
    if isinstance(target_modules, str):
        check_regex(field_name, target_modules)
        targets: Any = target_modules
    else:
        targets = tuple(target_modules)
        if not targets:
            raise InvalidConfigError(field_name, list(target_modules), "must name at least one module")
        bad = [t for t in targets if not isinstance(t, str)]
        if bad:
            raise InvalidConfigError(field_name, bad[0], "module names must be strings")
    layers = None
    if layers_to_transform is not None and not isinstance(targets, str):
        layers = {layers_to_transform} if isinstance(layers_to_transform, int) else set(layers_to_transform)

    match = _matcher(targets)
    need_scan = isinstance(targets, str) or scan_excluded or any(any(map(str.isdigit, t)) for t in targets)
    # with layers_to_transform, PEFT keeps only modules inside a numbered layer, but for a full name listed as it is
    exact = frozenset(targets) if layers is not None else frozenset()
    outer_ok = (lambda key: True) if layers is None else (lambda key: key in exact)
    matches: list[TargetMatch] = []
    for m in layout.layer_linears:
        hit_layers = _layer_counts(layout, m.path, match, excluded, layers, need_scan, exact)
        if hit_layers:
            matches.append(TargetMatch(m, f"{layout.layer_prefix}.*.{m.path}", len(hit_layers), True, hit_layers))
    for m in layout.outer_linears:
        if match(m.path) and not (excluded and excluded(m.path)) and outer_ok(m.path):
            matches.append(TargetMatch(m, m.path, 1, False))
    for p in layout.outer_params:
        mod = p.path.rsplit(".", 1)[0]
        if p.kind in ("embedding", "position_embedding") and match(mod) and outer_ok(mod) and not (excluded and excluded(mod)):
            if not allow_embedding:
                raise UnsupportedCombinationError(f"{field_name}: {mod!r} is an embedding; this method supports only linear layers")
            matches.append(TargetMatch(p, mod, 1, False))

    # names that exist but are not supported module types (norms, containers): PEFT raises
    unsupported = [layout.layer_path(0, c) for c in layout.containers]
    unsupported += [p.path.rsplit(".", 1)[0] for p in layout.outer_params if p.kind == "norm"]
    for key in unsupported:
        if match(key) and not isinstance(targets, str):
            raise UnsupportedCombinationError(
                f"Target module {key.split('.')[-1]!r} of {model_type} is not supported: PEFT can only wrap "
                f"Linear, Conv1D and Embedding layers here ({field_name}={list(targets)})."
            )
    if not matches and modules_to_save:
        plain = _resolve_targets(layout, target_modules, model_type=model_type, exclude_modules=exclude_modules,
                                 layers_to_transform=layers_to_transform, allow_embedding=allow_embedding,
                                 field_name=field_name, modules_to_save=None)[0]
        if plain:
            raise UnsupportedCombinationError(
                f"{field_name}={targets if isinstance(targets, str) else list(targets)}: every module it selects is inside "
                f"modules_to_save={list(modules_to_save)}, which PEFT never adapts; PEFT fails ('No modules were targeted "
                "for adaptation'). Target other modules, or save fewer")
    if not matches:
        available = sorted({m.name for m in layout.layer_linears} | {m.path for m in layout.outer_linears})
        hint = ""
        if not isinstance(targets, str):
            for t in targets:
                if t.rsplit(".", 1)[-1] in available:
                    continue
                hint = did_you_mean(t.rsplit(".", 1)[-1], available)
                if hint:
                    break
        if layers is not None:
            hint += f" (layers_to_transform={sorted(layers)} selects layers of 0..{layout.num_layers - 1})"
        raise InvalidConfigError(
            field_name,
            targets if isinstance(targets, str) else list(targets),
            f"none of these modules exists in {model_type}.{hint} Modules that can be targeted: {', '.join(available)}"
            ' (or "all-linear")',
        )
    messages = []
    if not isinstance(targets, str):
        for t in targets:
            one = _matcher((t,))
            hit = any(one(layout.layer_path(0, m.path)) for m in layout.layer_linears) or any(
                one(m.path) for m in layout.outer_linears
            ) or any(one(p.path.rsplit(".", 1)[0]) for p in layout.outer_params)
            if not hit and not any(c.isdigit() for c in t):
                messages.append(f"{field_name}: {t!r} matches no module of {model_type}; PEFT ignores it")
    return matches, messages


def saved_exclusion(modules_to_save) -> Callable[[str], bool]:
    """PEFT's check_target_module_exists: no adapter on a module that is, or sits inside, one that modules_to_save
    names (the name read as a regex between dots of the key: ``(^|.*\\.)name($|\\..*)``)."""
    patterns = []
    for m in modules_to_save:
        try:
            patterns.append(re.compile(rf"(^|.*\.){m}($|\..*)"))
        except (re.error, RecursionError, OverflowError) as exc:
            raise InvalidConfigError("modules_to_save", m, f"PEFT reads each name as a regular expression here ({exc})") from None
    return lambda key: any(p.match(key) for p in patterns)


@dataclass(frozen=True)
class SavedModules:
    """What PEFT's modules_to_save copies (ModulesToSaveWrapper: a trainable deep copy of each module whose full name
    ends with one of the names, as a plain string suffix): ``outer``, the covered modules outside the layers (their
    full paths); ``layer``, each covered module inside the layers (its path in the layer: a linear, or a norm) and
    the layers where it is covered (by its own match or a container's: the layer itself, "self_attn", "mlp")."""

    outer: frozenset
    layer: dict

    def covers(self, rel: str, layer: int | None) -> bool:
        """Is the module (``rel`` in layer ``layer``; a full path when ``layer`` is None) a trainable copy?"""
        if layer is None:
            return rel in self.outer
        return layer in self.layer.get(rel, ())

    def copies(self, layout: Layout, kind: str) -> bool:
        """Is an outer parameter of ``kind`` ("embedding", "position_embedding") in a copy?"""
        return any(q.path.rsplit(".", 1)[0] in self.outer for q in layout.outer_params if q.kind == kind)


_SAVED: dict[tuple, tuple] = {}
_ATTENTION = ("self_attn", "attn", "attention")  # attention containers
_ATTENTION_POSITIONAL = ("gpt2", "gpt_neox")  # whose decoder layers call their attention with a positional input
PEFT_KEY = "base_model.model."  # what PEFT's module names start with (the keys modules_to_save is matched against)


def resolve_saved_modules(layout: Layout, names, model_type: str) -> SavedModules:
    """The modules ``modules_to_save`` copies (:class:`SavedModules`), from every module name PEFT would see: the
    layers' linears and norms, their containers and the layers themselves, and the modules outside them. A name
    matching the decoder stack or above (it would copy the whole model), or one module inside another that
    is copied too (PEFT wraps the copy's module again), is refused; so are names that match nothing."""
    key = ("saved", id(layout), tuple(names) if isinstance(names, (list, tuple)) else names)
    tape = trace.active()
    cache = _SAVED if tape is None else tape.memo  # a traced layout is made for one pass: not kept after it
    hit = cache.get(key)
    if hit is not None and hit[0] is layout:
        return hit[1]
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise InvalidConfigError("modules_to_save", names, "a list of module names (non-empty strings)")
    suffixes = tuple(names)
    leaves = [m.path for m in layout.layer_linears] + [p.path.rsplit(".", 1)[0] for p in layout.layer_params if "." in p.path]
    inner = sorted(set(leaves) | set(layout.containers) | {c.rsplit(".", 1)[0] for c in leaves if "." in c})
    copied: dict[str, set] = {}
    for i in range(layout.num_layers):
        hits = [c for c in ["", *inner] if (PEFT_KEY + (layout.layer_path(i, c) if c else f"{layout.layer_prefix}.{i}")).endswith(suffixes)]
        for c in hits:
            above = [a for a in hits if a != c and (a == "" or c.startswith(a + "."))]
            if above:
                what = f"{layout.layer_prefix}.{i}" + (f".{above[0]}" if above[0] else "")
                raise UnsupportedCombinationError(
                    f"modules_to_save={list(names)}: {layout.layer_path(i, c)} and the {what} around it both match; PEFT "
                    "would wrap a module of the copy again (not modelled here); name one of them")
            if c in _ATTENTION and model_type not in _ATTENTION_POSITIONAL:
                raise UnsupportedCombinationError(
                    f"modules_to_save={list(names)}: {layout.layer_path(i, c)} is called by keyword (hidden_states=...), and "
                    "PEFT's ModulesToSaveWrapper.forward(x, ...) needs its input positionally: the training step fails "
                    "(TypeError); name its linear modules instead")
        for leaf in leaves:
            if any(c == "" or leaf == c or leaf.startswith(c + ".") for c in hits):
                copied.setdefault(leaf, set()).add(i)
    outer_modules = [m.path for m in layout.outer_linears] + [p.path.rsplit(".", 1)[0] for p in layout.outer_params]
    stack = layout.layer_prefix.split(".")
    for j in range(len(stack), 0, -1):  # the decoder stack and what holds it: a copy of the whole model
        path = ".".join(stack[:j])
        if (PEFT_KEY + path).endswith(suffixes) or (j == 1 and "base_model.model".endswith(suffixes)):
            raise UnsupportedCombinationError(
                f"modules_to_save={list(names)}: {path!r} holds the decoder layers; PEFT would train a copy of the whole "
                "model (use full fine-tuning, method 'full')")
    outer = frozenset(m for m in outer_modules if (PEFT_KEY + m).endswith(suffixes))
    if not outer and not copied:
        known = sorted({n.rsplit(".", 1)[-1] for n in outer_modules} | {c.rsplit(".", 1)[-1] for c in inner})
        hint = did_you_mean(str(names[0]).rsplit(".", 1)[-1], known)
        raise InvalidConfigError("modules_to_save", list(names), f"no such module in {model_type}.{hint} Modules: {', '.join(known)}")
    result = SavedModules(outer, {leaf: frozenset(ls) for leaf, ls in copied.items()})
    if len(cache) > 1024:
        cache.clear()
    cache[key] = (layout, result)
    return result


def targets_list(value: Any) -> Any:
    """PEFT stores target_modules as a set in adapter_config.json-derived objects; normalise to a sorted list
    (sorted by text, so a set holding a non-string reaches the type check instead of failing to sort)."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return value


def check_regex(field_name: str, pattern: str) -> None:
    """PEFT reads a string target_modules / exclude_modules / feedforward_modules as a regex (re.fullmatch)."""
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise InvalidConfigError(field_name, pattern, f"not a valid regular expression ({exc})") from None


# ---- PEFT's trainable tokens (TrainableTokensLayer) ----------------------------------------------


def names_module(path: str, key: str) -> bool:
    """Does ``key`` name the module at ``path`` (the full name, or its end after a dot)?"""
    return path == key or path.endswith("." + key)


def nonnegative_rows(rows: list[int]) -> list[int]:
    """Token indices as PEFT's trainable tokens take them: rows of the embedding (pydantic validators' check)."""
    if any(i < 0 for i in rows):
        raise ValueError(f"token indices are rows of the embedding, 0 or more; got {min(rows)}")
    return rows


def token_rows_of(layout: Layout, cfg: dict[str, Any], field: str, by_module: dict[str, list[int]]) -> list[int]:
    """The input embedding's rows from a dict keyed by module name: the embedding's, and a tied lm_head's with
    the same rows (PEFT ties that one to the embedding's adapter); any other module is not modelled."""
    emb, head = layout.input_embedding, layout.output_embedding
    tied = bool(cfg.get("tie_word_embeddings", False))
    rows = next((idx for key, idx in by_module.items() if names_module(emb, key)), None)
    for key, idx in by_module.items():
        if names_module(emb, key):
            continue
        if not (tied and names_module(head, key)):
            names = [emb.rsplit(".", 1)[-1]] + ([head.rsplit(".", 1)[-1]] if tied else [])
            raise UnsupportedCombinationError(
                f"{field}: {key!r} is not modelled; trainable tokens are estimated on the input embedding "
                f"({' or '.join(repr(n) for n in names)}{', the tied lm_head following it' if tied else ''})")
        if rows is not None and idx != rows:
            raise UnsupportedCombinationError(
                f"{field}: the tied lm_head with other rows than the embedding's ({idx} vs {rows}) is not modelled "
                "(PEFT then wraps both without tying them); give both the same rows")
    if rows is None:
        raise UnsupportedCombinationError(
            f"{field}={by_module!r}: name the input embedding ({emb.rsplit('.', 1)[-1]!r}) with the rows to train")
    return rows


def check_token_rows(layout: Layout, cfg: dict[str, Any], field: str, rows: list[int], modules_to_save) -> int:
    """The number of rows, once checked as PEFT and torch check them (rows of the vocabulary; the embedding not
    also trained whole; a tied lm_head not copied, which PEFT's tied adapter cannot wrap)."""
    vocab = next(p.shape[0] for p in layout.outer_params if p.kind == "embedding")
    if max(rows) >= vocab:
        raise InvalidConfigError(field, max(rows), f"a token index is a row of the {vocab}-row input embedding: 0 to {vocab - 1}")
    for m in modules_to_save or ():
        if names_module(layout.input_embedding, m):
            raise UnsupportedCombinationError(
                f"{field} with {m!r} in modules_to_save: PEFT refuses it ('The embedding layer is already marked to be "
                "trained fully'); train the whole embedding or some of its rows, not both")
        if cfg.get("tie_word_embeddings", False) and names_module(layout.output_embedding, m):
            raise UnsupportedCombinationError(
                f"{field} with the tied lm_head in modules_to_save: PEFT wraps the copy's wrapper with the tied token "
                "adapter and its forward fails ('TrainableTokensLayer wraps an unknown layer type'); leave lm_head out "
                "of modules_to_save (the tied head trains the same rows)")
    return len(rows)


def token_delta(layout: Layout, n: int, module: str) -> Tensor:
    """TrainableTokensLayer's ``trainable_tokens_delta``: the n rows, cloned from the embedding and cast to fp32
    (PEFT's autocast_adapter_dtype), at ``<module>.trainable_tokens_delta``."""
    width = next(p.shape[1] for p in layout.outer_params if p.kind == "embedding")
    return Tensor(f"{module}.trainable_tokens_delta", (n, width), "fp32", 1, True, "adapter")

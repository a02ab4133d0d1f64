"""Training activations and peak memory, from a symbolic forward pass of the architecture (graph.py).

Each architecture's forward is written out op by op, as transformers 5.13.1 runs it; a method changes what
its target modules do (LoRA's two fp32 matmuls beside a frozen linear, IA3's scaling vectors, bottleneck
adapters) and what goes in (prompt tuning's longer sequence, prefix tuning's longer keys and values). What
survives to the end of forward is what autograd saved, plus the logits and loss: a polynomial in (b, s) for
each named storage. See docs/notes/activations.md for the measured inventory this follows.
"""

from __future__ import annotations

import dataclasses
import gc as _gc
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import cache as _cache
from . import trace
from .act_fns import act_field, act_fn

from .architectures import Layout, Linear
from .graph import Graph, Node, Storage, T, backward, esize, forward, promote, winners_matrix
from .methods import Method
from .methods.adapter import HOOKED, Adapter
from .methods.ia3 import IA3
from .methods.lora import LoRA
from .methods.p_tuning import PTuning
from .methods.qlora import BLOCKSIZE as QLORA_BLOCKSIZE, QLoRA
import numpy as np

from .poly import ZERO, Poly, B, S, coefficient_matrix

__all__ = ["ActivationModel", "activation_model", "structured_activation_model"]

# models whose forward returns the cache it was given even with use_cache=False (the others return
# `past_key_values if use_cache else None`, transformers 5.13.1): prefix tuning's keys/values stay alive there
RETURNS_CACHE = frozenset({"llama", "gemma2", "gemma3_text", "gpt_neox", "opt", "olmo2", "granite"})
# model types whose forward builds the attention mask of both kinds (full and sliding) whatever their layers use
BOTH_MASKS = frozenset({"gemma2", "gemma3_text"})
# model types whose two-layer cache PEFT fills crosswise from the prefix (get_prompt: past_key_values[0][layer_idx])
GEMMA_PREFIX = frozenset({"gemma2", "gemma3_text"})


@dataclass
class ActivationModel:
    """Polynomials in (b, s): bytes alive at the end of forward, and the moments that can set the step's peak."""

    activations: Poly
    terms: dict[str, Poly]  # activations by component: "layers", "embeddings", "final_norm", "logits", "loss", ...
    per_layer: Poly  # a typical (steady-state) decoder layer
    layer_terms: dict[str, Poly] = field(default_factory=dict)  # the top decoder layer's saved tensors by component
    notes: list[str] = field(default_factory=list)
    # every simulated moment: (the plan of their names, _plan; their packed integers; their degrees)
    moments: tuple = field(default=None, repr=False)
    labels: tuple = field(default=(), repr=False)  # which of ``moments``' top moments hold the loss's labels
    _cands: dict | None = field(default=None, repr=False, compare=False)
    _rows: tuple | None = field(default=None, repr=False, compare=False)  # live_at's coefficient rows
    _live: dict = field(default_factory=dict, repr=False, compare=False)  # live_at by (b, s)

    @property
    def peak_candidates(self) -> dict[str, Poly]:
        """Live bytes beyond weights + optimizer state, as polynomials, at the end of forward and at every moment
        that is the largest somewhere on a wide (batch, seq) grid (what :func:`sweep` takes the maximum of).
        Worked out on first use."""
        if self._cands is None:
            plan, packed, degrees = self.moments
            self._cands = _candidates(self.activations, plan.names, list(zip(packed[:plan.nm], degrees[:plan.nm])),
                                      [(ops, list(zip(packed[p0:p1], degrees[p0:p1])),
                                        [(j, v, d) for j, v, d in zip(js, packed[s0:s1], degrees[s0:s1])])
                                       for ops, (p0, p1), (s0, s1), js in plan.blocks])
        return self._cands

    def with_batch_one_labels(self, virtual_tokens: int) -> ActivationModel:
        """This model (of batch sizes above 1) turned into the batch-1 model of a pass where nothing else
        depends on the batch being 1 (sdpa and flash attention; eager attention's matmuls do): at batch 1 the
        loss's shifted labels are a contiguous slice, so the padded labels themselves, one position longer, are
        kept. The difference, (s + 1) - b*s positions of int64, is added wherever the labels are alive; the
        result is exact at batch 1, where it is used."""
        d, both = _batch_one_labels(virtual_tokens)
        plan, packed, degrees = self.moments
        flags = self.labels + (0,) * (len(packed) - len(self.labels))
        by_flag = {1: d, 2: both}
        loss_term = _component("shift_labels")
        return ActivationModel(
            activations=self.activations + d, terms={k: p_ + d if k == loss_term else p_ for k, p_ in self.terms.items()},
            per_layer=self.per_layer, layer_terms=self.layer_terms, notes=self.notes, labels=self.labels,
            moments=(plan, tuple(v + by_flag[f].v if f else v for v, f in zip(packed, flags)),
                     tuple((max(db, by_flag[f].db), max(ds, by_flag[f].ds)) if f else (db, ds) for (db, ds), f in zip(degrees, flags))))

    def at(self, b: int, s: int) -> dict[str, Any]:
        """The activations at batch ``b`` and length ``s``: in all, by component, of a steady layer, and of the top
        layer by component (what estimate() reports)."""
        return {"activations": int(self.activations(b, s)), "terms": {k: int(p_(b, s)) for k, p_ in self.terms.items()},
                "per_layer": int(self.per_layer(b, s)), "layer_terms": {k: int(p_(b, s)) for k, p_ in self.layer_terms.items()}}

    def live_at(self, b: int, s: int) -> dict[str, int]:
        """Live bytes beyond weights + optimizer state at batch ``b`` and length ``s``, exactly: at the end of
        forward, and at the largest moment of each phase there (the forward of the top layer and the head, their
        backward, the backward of each kind of layer below). The largest of them is the step's activation peak:
        every simulated moment is compared, at this shape."""
        hit = self._live.get((b, s))
        if hit is not None:
            return dict(hit)
        out = {"end of forward": int(self.activations(b, s))}
        plan, packed, degrees = self.moments
        if not packed:
            return out
        if self._rows is None:  # once per model: the exact coefficient rows, as floats and their magnitudes
            rows = coefficient_matrix(packed)
            m = rows.astype(np.float64)
            self._rows = (rows, m, np.abs(m))
        rows, m, m_abs = self._rows
        ints = [b**i * s**j for i in range(4) for j in range(4)]
        mono = np.array(ints, dtype=np.float64)
        approx = m @ mono
        err = m_abs @ mono * 1e-14 + 1.0  # float64 rounding of the sums, generously
        # each group's (phase's, profile's, starts') largest shortlisted in float64, decided on exact integers
        floor = np.maximum.reduceat(approx - err, plan.firsts)
        close = np.flatnonzero(approx + err >= floor[plan.group])
        group = plan.group_list
        best: dict[int, tuple[int, int]] = {}
        for k, row in zip(close.tolist(), rows[close].tolist()):  # ascending: a tie keeps the first
            v = sum([c * x for c, x in zip(row, ints) if c])
            g = group[k]
            if g not in best or v > best[g][1]:
                best[g] = (k, v)
        _put_largest(out, plan, best)
        if len(self._live) > 64:
            self._live.clear()
        self._live[(b, s)] = out
        return dict(out)


def _batch_one_labels(virtual_tokens: int) -> tuple[Poly, Poly]:
    """The batch-1 model's differences (:meth:`ActivationModel.with_batch_one_labels`): where the shifted labels are
    alive, and where the padded labels are alive too (while the loss function runs: they are the batch-1 labels,
    and the copy goes)."""
    seq = S + virtual_tokens
    return (seq + 1) * 8 - B * seq * 8, B * seq * -8


def _put_largest(out: dict, plan: _Plan, best: dict[int, tuple[int, Any]]) -> None:
    """Each phase's largest moment, and each kind of lower layer's (its profile's largest plus its layers' largest
    start), into ``out``; ``best``: each group of ``plan`` (phases, then each block's profile and starts) as
    (the moment's index, its value)."""
    g = 0
    for kind, _, _ in plan.kinds:
        k, v = best[g]
        _put(out, kind, plan.names[k][1], v)
        g += 1
    for ops, (p0, _), (s0, _), js in plan.blocks:
        (m_k, m_v), (s_k, s_v) = best[g], best[g + 1]
        _put(out, _below(js[s_k - s0]), ops[m_k - p0], s_v + m_v)
        g += 2


@dataclass(eq=False)
class _Plan:
    """Where the moments sit in the pass's flattened outputs (after the totals and terms): ``names`` the top
    layer's and the head's (kind, op), ``nm`` of them; ``kinds`` (kind, first, end) of each run of one phase among
    them; ``blocks`` each kind of layer below as (op names, its profile's (first,
    end), its layers' starts' (first, end), those layers' indices)."""

    names: tuple
    nm: int
    kinds: list
    blocks: list
    firsts: np.ndarray = None  # the first moment of each group (each phase; each block's profile, its starts)
    group: np.ndarray = None  # each moment's group
    group_list: list = None  # the same, as a list

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Plan) and (self.names, self.kinds, self.blocks) == (other.names, other.kinds, other.blocks)


_PLANS: dict[int, tuple] = {}


def _plan(moment_names: tuple, block_names: tuple) -> _Plan:
    key = id(moment_names)
    hit = _PLANS.get(key)
    if hit is not None and hit[0] is moment_names and hit[1] is block_names:
        return hit[2]
    kinds: list = []
    for k, (kind, _) in enumerate(moment_names):
        if kinds and kinds[-1][0] == kind:
            kinds[-1][2] = k + 1
        else:
            kinds.append([kind, k, k + 1])
    nm, at, blocks = len(moment_names), len(moment_names), []
    for ops, js in block_names:
        blocks.append((ops, (at, at + len(ops)), (at + len(ops), at + len(ops) + len(js)), js))
        at += len(ops) + len(js)
    bounds = [(lo, hi) for _, lo, hi in kinds] + [r for _, p_, s_, _ in blocks for r in (p_, s_)]
    group = np.repeat(np.arange(len(bounds)), [hi - lo for lo, hi in bounds])
    plan = _Plan(moment_names, nm, [tuple(k) for k in kinds], blocks, np.array([lo for lo, _ in bounds], dtype=np.intp),
                 group, group.tolist())
    if len(_PLANS) > 4096:
        _PLANS.clear()
    _PLANS[key] = (moment_names, block_names, plan)
    return plan


def _below(j: int) -> str:
    """The label of a moment in the backward of layer ``j`` below the top one."""
    return "backward of the bottom layer: " if j == 0 else f"backward of layer {j}: "


def _put(out: dict, kind: str, name: str, value: Any) -> None:
    """``out[kind + name] = value``; a moment of a layer below is named without the index of the layer it was
    simulated on; a label already taken gets a number."""
    if kind.startswith("backward of "):
        name = name.split(".", 2)[-1]
    label = base = kind + name
    n = 1
    while label in out:
        n += 1
        label = f"{base} #{n}"
    out[label] = value


# ---- what the method does to a linear module ----------------------------------------------------


@dataclass
class Ctx:
    g: Graph
    cfg: dict[str, Any]
    layout: Layout
    method: Method
    dtype: str  # compute dtype of the base model
    rows: Poly  # b * S tokens
    seq: Poly  # S, the sequence every layer sees (s + prompt-tuning virtual tokens)
    kv_extra: int  # prefix-tuning virtual positions added to keys/values
    device: str
    full: bool
    lora: dict[str, tuple[int, ...]] = field(default_factory=dict)  # layer path template -> layers
    lora_outer: set[str] = field(default_factory=set)
    ia3: dict[str, tuple[tuple[int, ...], bool]] = field(default_factory=dict)  # path -> (layers, feedforward)
    trainable_bias: dict[str, tuple[int, ...] | None] = field(default_factory=dict)  # path -> its layers (None: all)
    saved: Any = None  # what modules_to_save copies (methods.base.SavedModules): trainable copies of those modules
    lora_dropout: float = 0.0
    attn: str = "sdpa"
    sliding_active: bool = False  # sequence reaches the sliding window: transformers builds a mask
    # a query of one token (sequence length 1, no virtual tokens; api._query_one): eager's matmuls fold it (and the
    # keys, without a prefix) into (b * heads, 1, d) as views, and the attention output's transpose is contiguous
    # already
    query_one: bool = False
    # ... under sdpa, unpadded, with a prefix: transformers skips the mask it would build for the prefix's cache
    # (_ignore_causal_mask_sdpa) where no window slides
    one_token_unmasked: bool = False
    batch_one: bool = False  # batch size 1: eager attention's matmuls fold (1, heads) without copying; the loss's labels
    padding_mask: bool = False  # batches come with an attention_mask
    q4: str | None = None  # QLoRA: the 4-bit layers' compute dtype
    q4_storage: str | None = None  # ... and the dtype their weights were loaded in (what dequantize_4bit returns)
    q4_nested: bool = False  # ... with double quantization: each dequantization first dequantizes the absmax
    labels: int = -1  # the loss's shifted labels' storage
    padded_labels_until: int = -1  # the last storage made while the loss's padded labels live
    # AdapterHub's adapters run on transformers 4.x, whose decoders build the causal mask even without padding:
    # (batch, 1, s, s), bool for sdpa (which then has no GQA path, and keeps its own additive copy in each
    # layer whose attention has inputs that require grad), additive in the model's dtype for eager
    mask_always: bool = False
    adapter_hooked: bool = False  # adapters runs through its plugin interface's hooks (methods.adapter.HOOKED)
    # the scaled up-projection of the adapter just run, which AdapterHub's BottleneckState holds (bottleneck_up)
    # until bottleneck_layer_forward returns: through post_forward's residual add in its own integrations
    adapter_up: T | None = None
    layer: int = 0  # the decoder layer being built
    norm_bias: bool = False  # LoRA bias="all": the LayerNorms' biases train too
    cache: list = field(default_factory=list)  # prefix tuning's keys/values, held by the cache until forward returns
    # use_cache=True (without checkpointing, which turns it off): the model returns its cache, which holds what it
    # cached until the outputs go, after backward (prefix tuning's keys and values too, on every model). Without a
    # prefix the model builds that cache itself: each layer's cache.update cats its keys and values onto an empty
    # entry (copies, which attention then reads)
    returns_cache: bool = False
    # eager attention returns its probabilities (attn_weights), which the decoder layer holds until it returns
    # (`hidden_states, _ = self.self_attn(...)`): what the last attention() left there (None for sdpa and flash)
    attn_weights: T | None = None
    scope: list = field(default_factory=list)  # what the base model's forward holds until it returns (embeddings, masks)
    positions: T | None = None  # the position ids the base model makes (an input of every checkpointed layer)
    position_indices: int = -1  # the storage a trained learned-position embedding keeps for its backward
    position_node: int = -1  # ... and its autograd node (OPT's, made before project_in's)
    position_lora: bool = False  # LoRA wraps GPT-2's position embedding
    token_weight: T | None = None  # the input embedding's merged weight under trainable tokens
    prefix: T | None = None  # prefix tuning's past_key_values for all layers

    def drop(self, x: T, p: float, name: str) -> T:
        return self.g.dropout(x, p, "bool" if self.device == "cuda" else x.dtype, name)


def bottleneck(ctx: Ctx, x: T, place: str, residual: T) -> T:
    """An AdapterHub bottleneck adapter on a layer output ``x`` (adapters' Adapter.pre_forward, forward): down
    (h -> h/rf), activation, up * scaling, dropout, gating, + its input, with the optional LayerNorms before and
    after. ``residual``: the residual stream the branch started from (what the plugin interface's hooks see)."""
    m = ctx.method
    if not isinstance(m, Adapter):
        return x
    if not _adapter_at(m, place, ctx.layer):
        return x
    g, h = ctx.g, ctx.cfg["hidden_size"]
    r = m.bottleneck(h)
    skip = given = x
    if m.setting("original_ln_before"):
        # the adapter's pre_forward adds the residual stream to its input and re-applies the model's norm where
        # adapters' plugin interface names one (Gemma2/3: post_attention_ / post_feedforward_layernorm, frozen)
        added = g.add(x, residual, f"{place}_adapter + residual")
        normed = (rms_norm(ctx, added, h, w_rg=False, style="gemma", name=f"{place}_adapter original_ln_before")
                  if HOOKED.get(ctx.cfg["model_type"]) else added)
        # what the adapter's output is added to: its input as it came (residual_before_ln True), after the add
        # ("post_add") or after the norm (False)
        skip = x if m.residual_before_ln is True else added if m.residual_before_ln == "post_add" else normed
        x = normed
    x_down = x  # adapter_down = [LayerNorm(h) (ln_before), Linear, activation]; the gate reads x itself
    if m.ln_before:
        x_down = layer_norm(ctx, x, w_rg=True, name=f"{place}_adapter norm_before", copied=True)
    down = g.linear(x_down, ctx.rows, r, w_rg=True, b_rg=True, name=f"{place}_adapter down", in_features=h)
    # Activation_Function_Class: F.leaky_relu, else transformers' get_activation (ACT2FN) by the lower-cased name
    act = (m.setting("non_linearity") or "relu").lower()
    a = act_fn(g, down, "leaky_relu" if act == "leakyrelu" else act, cuda_autocast=bool(g.autocast) and ctx.device == "cuda",
               label=f"{place}_adapter {act}")
    up = g.linear(a, ctx.rows, h, w_rg=True, b_rg=True, name=f"{place}_adapter up", in_features=r)
    # up * scaling: a Python float (a new tensor, nothing kept), or a learned scalar / per-channel vector, which
    # keeps ``up`` for its gradient
    scale = None if isinstance(m.scaling, float) else T(Poly.const(h if m.scaling == "channel" else 1), up.dtype, True, None)
    up = g.mul(up, scale, f"{place}_adapter scaling", numel=up.numel)
    out = ctx.drop(up, m.dropout, f"{place}_adapter dropout")
    if m.use_gating:  # sigmoid(gate(x)) (Linear(h, 1)), its mean over the sequence, times the output: both kept
        gate = g.linear(x, ctx.rows, 1, w_rg=True, b_rg=True, name=f"{place}_adapter gate", in_features=h)
        gate = g.unary_saves_output(gate, f"{place}_adapter gate sigmoid")
        mean = g.node(g.new(B, gate.dtype, True, f"{place}_adapter gate mean"), [gate], [("g", 0, gate.bytes())],
                      name=f"{place}_adapter gate mean")
        out = g.mul(out, mean, f"{place}_adapter gating", numel=out.numel)
    if not m.ln_after:
        out = g.add(out, skip, f"{place}_adapter residual")
    elif m.adapter_residual_before_ln:  # adapter_norm_after: LayerNorm(h), after the residual or before it
        out = layer_norm(ctx, g.add(out, skip, f"{place}_adapter residual"), w_rg=True, name=f"{place}_adapter norm_after", copied=True)
    else:
        out = g.add(layer_norm(ctx, out, w_rg=True, name=f"{place}_adapter norm_after", copied=True), skip, f"{place}_adapter residual")
    g.touch(given, a, up)  # the adapter layer's argument; what Adapter.forward returns besides its output
    ctx.adapter_up = None if ctx.adapter_hooked else up  # (hooked: no post_forward add; the hook returns now)
    return out


def _post_forward_done(ctx: Ctx) -> None:
    """bottleneck_layer_forward returns after post_forward's residual add: its state's ``bottleneck_up`` goes."""
    ctx.g.touch(ctx.adapter_up)
    ctx.adapter_up = None


def _adds_residual(ctx: Ctx, place: str) -> bool:
    """Is the block's residual added after the branch at ``place``? AdapterHub's post_forward adds it only with
    ``original_ln_after`` (the default) where an adapter ran there; without it the adapter's output goes on alone
    (its own residual add, of its input, is in :func:`bottleneck`)."""
    m = ctx.method
    return not (isinstance(m, Adapter) and _adapter_at(m, place, ctx.layer) and not m.original_ln_after)


def _adapter_at(m: Adapter, place: str, layer: int) -> bool:
    """Does the adapter have a bottleneck at ``place`` ("attention": mh_adapter, "output": output_adapter) of decoder
    layer ``layer`` (not in ``leave_out``)?"""
    return m.setting({"attention": "mh_adapter", "output": "output_adapter"}[place]) and m.in_layer(layer)


def _setup(ctx: Ctx) -> None:
    m, layout, cfg = ctx.method, ctx.layout, ctx.cfg
    ctx.saved = m.saved_modules(layout, cfg)
    if isinstance(m, LoRA):  # training always runs the adapter unmerged
        for t in m.targets(layout, cfg):
            if t.is_embedding:
                continue
            if t.in_layer:
                ctx.lora[t.module.path] = t.layers or ()
            else:
                ctx.lora_outer.add(t.module.path)
        ctx.lora_dropout = m.lora_dropout
        ctx.norm_bias = m.bias == "all"
        if m.bias != "none":  # "lora_only": the biases of the modules LoRA wraps, in the layers it wraps them
            for lin in layout.layer_linears:
                if lin.bias and (m.bias == "all" or lin.path in ctx.lora):
                    ctx.trainable_bias[lin.path] = None if m.bias == "all" else ctx.lora[lin.path]
    elif isinstance(m, IA3):
        from .methods.defaults import default_targets
        from .methods.base import resolve_targets
        import re

        targets = m.target_modules if m.target_modules is not None else default_targets("ia3", cfg["model_type"], "target_modules")
        ff = m.feedforward_modules
        if ff is None:
            ff = default_targets("ia3", cfg["model_type"], "feedforward_modules") if m.target_modules is None else []
        for t in resolve_targets(layout, targets, model_type=cfg["model_type"], exclude_modules=m.exclude_modules,
                                 layers_to_transform=m.layers_to_transform, allow_embedding=False,
                                 modules_to_save=m.modules_to_save):
            key = t.path.replace("*", "0")
            is_ff = re.fullmatch(ff, key) is not None if isinstance(ff, str) else any(key.endswith(k) for k in ff)
            ctx.ia3[t.module.path] = (t.layers or (), is_ff)


def linear(ctx: Ctx, x: T, lin: Linear, layer: int | None) -> T:
    """A linear module as the method wraps it (its input stays alive in the caller until it returns)."""
    out = _wrapped_linear(ctx, x, lin, layer)
    ctx.g.touch(x)
    return out


def _copied(ctx: Ctx, path: str, layer: int | None) -> bool:
    """Is the module a trainable copy (modules_to_save)? ``path``: its path in the layer, or its full path outside
    (``layer`` None)."""
    return ctx.saved is not None and ctx.saved.covers(path, layer)


def _wrapped_linear(ctx: Ctx, x: T, lin: Linear, layer: int | None) -> T:
    g = ctx.g
    path = lin.path
    copied = _copied(ctx, path, layer)
    w_rg = ctx.full or copied
    layers = ctx.trainable_bias.get(path, ())
    b_rg = lin.bias and (ctx.full or copied or layers is None or (layer is not None and layer in layers))
    ia3 = ctx.ia3.get(path)
    if ia3 is not None and (layer is None or layer in ia3[0]):
        # ia3_scaling = 1 * ia3_l.flatten(): a new tensor, made before the base layer runs (so its backward comes
        # after the base layer's); its gradient goes on to the parameter's .grad (under gradient accumulation:
        # added into it, then freed)
        width = lin.in_features if ia3[1] else lin.out_features
        param = T(Poly.const(width), "fp32", True, None, None)
        vec = g.node(g.new(Poly.const(width), "fp32", True, f"{path} ia3 scale"), [param],
                     [("g", 0, Poly.const(width * 4))], name=f"{path} ia3 scale")
        if ia3[1]:  # feed-forward: scale the input
            x32 = g.to(x, "fp32", f"{path} ia3 input")
            scaled = g.mul(x32, vec, f"{path} ia3 mul")
            return g.linear(g.to(scaled, x.dtype, f"{path} ia3 cast"), ctx.rows, lin.out_features, w_rg=w_rg, b_rg=b_rg, bias=lin.bias, name=path,
                            in_features=lin.in_features)
        out = g.linear(x, ctx.rows, lin.out_features, w_rg=w_rg, b_rg=b_rg, bias=lin.bias, name=path, in_features=lin.in_features)
        scaled = g.mul(out, vec, f"{path} ia3 mul")
        return g.to(scaled, out.dtype, f"{path} ia3 cast")
    in_lora = (layer is not None and layer in ctx.lora.get(path, ())) or (layer is None and path in ctx.lora_outer)
    q4 = bool(ctx.q4) and ctx.method.quantizes(ctx.layout, lin, layer is not None)  # type: ignore[attr-defined]
    if q4:
        out = _linear4bit(ctx, x, lin, b_rg)
        if in_lora:  # PEFT's 4-bit LoRA layer clones the base output "defensively"
            out = g.copy(out, f"{path} clone")
    else:
        out = g.linear(x, ctx.rows, lin.out_features, w_rg=w_rg, b_rg=b_rg, bias=lin.bias, name=path, in_features=lin.in_features)
    if not in_lora:
        return out
    r = ctx.method.layer_rank(ctx.layout, path, layer)  # type: ignore[attr-defined]
    x32 = g.to(x, "fp32", f"{path} lora input fp32")  # PEFT rebinds x to it: alive until the layer returns
    xa = ctx.drop(x32, ctx.lora_dropout, f"{path} lora_dropout")
    if getattr(ctx.method, "use_dora", False):
        res = _dora(ctx, lin, path, out, xa, r, b_rg, dropout=xa is not x32, q4=q4)
    else:
        a = g.linear(xa, ctx.rows, r, w_rg=True, name=f"{path} lora_A", dtype="fp32", in_features=lin.in_features)
        g.touch(xa)  # lora_A(dropout(x)): the dropped-out input is lora_A's argument until it returns
        bo = g.linear(a, ctx.rows, lin.out_features, w_rg=True, b_rg=bool(getattr(ctx.method, "lora_bias", False)),
                      name=f"{path} lora_B", dtype="fp32", in_features=r)
        scaled = g.mul(bo, None, f"{path} lora scaling")
        if q4:  # PEFT's bnb Linear4bit casts the LoRA output to the result's dtype, then adds
            res = g.add(out, g.to(scaled, out.dtype, f"{path} lora cast"), f"{path} lora add")
        else:
            res = g.to(g.add(out, scaled, f"{path} lora add"), out.dtype, f"{path} lora cast")
    g.touch(x32)
    return res


def _absmax(numel: int) -> Poly:
    """Elements of the absmax bitsandbytes' dequantize_4bit dequantizes first under double quantization
    (``dequantize_blockwise`` of the nested state, + offset): one fp32 per 64-element block of the weight."""
    return Poly.const(-(-numel // QLORA_BLOCKSIZE))


def _flat_tokens(ctx: Ctx, lin: Linear) -> bool:
    """Does the linear see the tokens flattened to 2-D, (batch * seq, in)? OPT's fc1 and fc2 (OPTDecoderLayer)."""
    return ctx.cfg["model_type"] == "opt" and lin.path in ("fc1", "fc2")


def _linear4bit(ctx: Ctx, x: T, lin: Linear, b_rg: bool) -> T:
    """bitsandbytes' Linear4bit: the input cast to the compute dtype, the 4-bit matmul (one op; in backward
    the weight is dequantized for the input's gradient, MatMul4Bit keeping only the packed weight), the
    output cast back. The dequantized weight comes in the dtype the model was loaded in and is cast to the
    gradient's (the compute dtype) when they differ: both at once, the first freed before the matmul. The
    bias was cast to the compute dtype in place (its gradient too, when it trains): MatMul4Bit's backward makes
    that gradient first, as ``grad_output.sum(0)``, which leaves (seq, out) of a (batch, seq, out) gradient,
    and the engine sums it to the bias's shape after the node returns; OPT's layer flattens the tokens before
    fc1 and fc2 (``reshape(-1, hidden)``), whose gradients are 2-D: the sum is the bias's gradient itself."""
    g, cd, path, ac = ctx.g, ctx.q4, lin.path, ctx.g.autocast
    numel = lin.in_features * lin.out_features
    weight = Poly.const(numel * esize(ctx.q4_storage))
    w = [("a", weight)]
    if ctx.q4_nested:  # dequantize_4bit first dequantizes the absmax: alive until the weight is made
        w = [("a", _absmax(numel) * 4), *w, ("f", _absmax(numel) * 4)]
    if ctx.q4_storage != cd:
        w += [("a", Poly.const(numel * esize(cd))), ("f", weight)]
    xc = g.to(x, cd, f"{path} 4bit input")
    # MatMul4Bit's forward is bitsandbytes' gemm_4bit op (bitsandbytes 0.50), which autocast has no rule for: it
    # runs in the compute dtype, and nothing is cast
    g.autocast = None
    try:
        out = g.linear(xc, ctx.rows, lin.out_features, w_rg=False, b_rg=b_rg, name=path, in_features=lin.in_features, extra_bwd=w,
                       bias_rows=1 if _flat_tokens(ctx, lin) else ctx.seq)  # grad_bias = grad_output.sum(0), before the weight is dequantized
    finally:
        g.autocast = ac
    out = g.to(out, x.dtype, f"{path} 4bit output")
    g.touch(xc)  # Linear4bit.forward rebinds x to the cast: it lives until the module returns
    return out


def _dora(ctx: Ctx, lin: Linear, path: str, base_out: T, xa: T, r: int, b_rg: bool, dropout: bool = False,
          q4: bool = False) -> T:
    """PEFT's DoraLinearLayer.forward: magnitude / ||W + s*BA|| (the norm is detached) rescales the base
    output and the LoRA branch; the identity-matrix pass that builds B@A is not kept (its result is detached).
    With an active lora_dropout the base output is computed again, on the dropped-out input (``dropout``).
    ``q4``: a 4-bit base layer, whose weight dequantize_module_weight makes in the dtype it was loaded in."""
    g, o, i = ctx.g, lin.out_features, lin.in_features
    # get_lora_weight: lora_B(lora_A(eye(in))) (under autocast bf16 matmuls of a bf16 copy of eye); forward
    # holds lora_weight (its autograd graph keeps eye and lora_A(eye)), lora_weight.to(fp32) and the base
    # weight .to(fp32) until it returns; get_weight_norm's ||W + s * lora_weight|| makes two (out, in) fp32
    # temporaries
    lo = g.autocast or "fp32"
    eye = g.new(Poly.const(i * i), "fp32", False, f"{path} dora eye")
    held = [eye]
    if g.autocast:  # lora_A keeps the bf16 copy, not eye itself: eye goes when get_lora_weight returns. The
        # matmuls cast lora_A's and lora_B's weights here, first: autocast caches those copies (leaves that require
        # grad) for lora_B(lora_A(x)) below
        g.weight_cast(f"{path} lora_A", r * i, True)
        held = [g.new(Poly.const(i * i), lo, False, f"{path} dora eye autocast")]
    held.append(g.new(Poly.const(i * r), lo, False, f"{path} dora lora_A(eye)"))
    if g.autocast:
        g.weight_cast(f"{path} lora_B", o * r, True)
    lw = g.new(Poly.const(i * o), lo, False, f"{path} dora lora_weight")
    g.touch(eye)
    if lo != "fp32":  # rebound to its fp32 copy
        held.append(g.new(Poly.const(i * o), "fp32", False, f"{path} dora lora_weight.to(fp32)"))
        g.touch(lw)
    else:
        held.append(lw)
    w32 = T(Poly.const(o * i), "fp32", False, None)  # weight.to(x.dtype): the parameter itself when it is fp32
    if q4:  # dequantized (a new tensor), then .to(fp32): the dequantized one goes as soon as it is cast
        absmax = g.new(_absmax(o * i), "fp32", False, f"{path} dora dequantize absmax") if ctx.q4_nested else None
        w32 = g.new(Poly.const(o * i), ctx.q4_storage, False, f"{path} dora dequantize_4bit")
        g.touch(absmax)
        if ctx.q4_storage != "fp32":
            dq, w32 = w32, g.new(Poly.const(o * i), "fp32", False, f"{path} dora weight.to(fp32)")
            g.touch(dq)
        held.append(w32)
    elif ctx.dtype != "fp32":
        w32 = g.new(Poly.const(o * i), "fp32", False, f"{path} dora weight.to(fp32)")
        held.append(w32)
    s_lw = g.new(Poly.const(o * i), "fp32", False, f"{path} dora scaling*lora_weight")
    w_sum = g.new(Poly.const(o * i), "fp32", False, f"{path} dora W + s*lora_weight")
    g.touch(s_lw)
    wn = g.new(Poly.const(o), "fp32", False, f"{path} dora weight_norm")
    g.touch(w_sum)
    # magnitude / weight_norm: its gradient (from both uses below, summed) becomes the magnitude's .grad; div
    # keeps the divisor (a checkpoint's recompute keeps it too)
    mns = g.node(g.new(Poly.const(o), "fp32", True, f"{path} dora magnitude/norm"), [None],
                 [("w", g.scope + path + " dora magnitude", Poly.const(o * 4))], (wn,), name=f"{path} dora magnitude/norm")
    # lora_B(lora_A(x)) exactly as plain LoRA runs it: under autocast both are autocast matmuls (bf16 outputs,
    # the bf16 copy of the fp32 input kept by lora_A) and each weight's bf16 copy is kept when its matmul's
    # input requires grad. The eye pass casts those weights first; autocast caches the copy of a leaf that
    # requires grad, so this pass reuses it: one copy per weight (Graph.linear keys it by name)
    a = g.linear(xa, ctx.rows, r, w_rg=True, name=f"{path} lora_A", dtype="fp32", in_features=i)
    lr = g.linear(a, ctx.rows, o, w_rg=True, name=f"{path} lora_B", dtype="fp32", in_features=r)
    base = base_out
    if dropout:  # DoraLinearVariant passes base_result=None: F.linear(dropout(x), weight.to(fp32)), no bias
        # (transpose() wraps Conv1D's W.T in a new Parameter only when W is still the parameter: not cast to
        # fp32 from the model's dtype, not dequantized)
        base = _dora_base(ctx, xa, w32, i, o, path, fresh=lin.conv1d and not q4 and ctx.dtype == "fp32")
    elif lin.bias:  # base_result - bias: the bias is a parameter in the model dtype (fp32 under autocast; a 4-bit
        # layer's, bitsandbytes cast to the compute dtype in place)
        bias_dtype = ctx.q4 if q4 else ctx.dtype
        bias = T(Poly.const(o), bias_dtype, b_rg, None)
        if b_rg:  # the same parameter as the linear's bias: one .grad, accumulated
            bias = g.node(bias, [None], [("w", g.scope + path + ".bias", Poly.const(o * esize(bias_dtype)))], name=f"{path} bias")
        # (bf16 with fp16 makes fp32, as torch promotes them: QLoRA's fp16 compute dtype on a bf16 model, or its bf16
        # compute dtype under fp16 autocast)
        base = g.add(base_out, bias, f"{path} dora base - bias")
    m1 = g.add(mns, None, f"{path} dora scale-1")
    t1 = g.mul(m1, base, f"{path} dora (scale-1)*base", numel=base.numel)
    t2 = g.mul(mns, lr, f"{path} dora scale*lora", numel=lr.numel)
    t3 = g.mul(t2, None, f"{path} dora *scaling")
    rd = g.add(t1, t3, f"{path} dora sum")
    g.touch(*held)
    res = g.add(base_out, rd, f"{path} dora add")
    g.touch(xa)  # (DoraLinearVariant.forward's x, the dropped-out input, until it returns)
    return g.to(res, base_out.dtype, f"{path} lora cast")


def _dora_base(ctx: Ctx, xa: T, w32: T, i: int, o: int, path: str, fresh: bool = False) -> T:
    """DoRA's own ``F.linear(x, weight.to(x.dtype))`` on the dropped-out fp32 input: it keeps the weight it
    multiplied (the fp32 copy, or the parameter itself in fp32 models) for the input's gradient. Under autocast
    both operands are cast to bf16 first (the weight's copy is not cached: it is not a leaf that requires grad).
    ``fresh``: GPT-2's Conv1D, whose ``W.T`` PEFT's transpose() wraps in a new ``nn.Parameter``. That leaf
    requires grad: the matmul keeps its input too, autocast caches the weight's copy, and backward computes the
    weight's gradient, which stays in the throwaway parameter's ``.grad`` until the graph is freed."""
    g, ac = ctx.g, ctx.g.autocast
    x, w = xa, w32
    key = f"{g.scope}{path} dora W.T"
    if fresh:
        g.fresh_leaves.add(key)
    w_in = None
    if ac:
        if x.dtype != ac:
            xc = g.new(x.numel, ac, x.rg, f"{path} dora base autocast input")
            x = g.node(xc, [x], [("g", 0, x.bytes())], name=f"{path} dora base autocast input")
        w = g.new(Poly.const(i * o), ac, fresh, f"{path} dora base autocast weight")
        if fresh:
            w_in = g.node(w, [None], [("w", key, Poly.const(i * o * 4))], name=f"{path} dora W.T cast")
            g.held.append(w)
        g.touch(w32)
    prog = [("g", 0, x.bytes())] if x.rg else []
    saved = (w,) if x.rg else ()
    if fresh:
        prog.append(("g", 1, Poly.const(i * o * esize(w.dtype))) if w_in is not None else ("w", key, Poly.const(i * o * 4)))
        saved += (x,)
    out = g.new(ctx.rows * o, x.dtype, x.rg or fresh, f"{path} dora base")
    return g.node(out, [x, w_in], prog, saved, name=f"{path} dora base")


# ---- building blocks ------------------------------------------------------------------------------


def rms_norm(ctx: Ctx, x: T, width: int, *, w_rg: bool, style: str = "llama", rows: Poly | None = None, name: str = "norm") -> T:
    """HF RMSNorm variants. llama: weight * x32*rsqrt .to(dtype); gemma: (x32*rsqrt) * (1 + w.float()) .type_as;
    olmo2: (weight * x32*rsqrt).to(dtype)."""
    g = ctx.g
    rows = rows if rows is not None else ctx.rows
    x32 = g.to(x, "fp32", f"{name} fp32")
    sq = g.unary_saves_input(x32, f"{name} pow", temps=2)  # pow(2) keeps its input; its output is transient
    mean = g.unary_no_save(sq, f"{name} mean", numel=rows)  # (rows, 1)
    var = g.add(mean, None, f"{name} +eps")
    r = g.unary_saves_output(var, f"{name} rsqrt", temps=2)
    normed = g.mul(x32, r, f"{name} x*rsqrt", numel=x32.numel)
    if style == "llama":
        nb = g.to(normed, x.dtype, f"{name} cast")
        # the weight is in the model's dtype: under autocast a bf16 input (q/k norms after a linear) meets an fp32
        # weight, and the product is fp32
        w = T(Poly.const(width), ctx.dtype, w_rg, None)
        out = g.mul(w, nb, f"{name} weight*x", numel=nb.numel)
        g.touch(x, mean, normed)  # `variance` and `hidden_states` (x * rsqrt) are locals of the module's
        # forward: alive until it returns
        return out
    if style == "gemma":
        if ctx.dtype == "fp32":  # weight.float() of an fp32 weight is the weight itself
            wf = T(Poly.const(width), "fp32", w_rg, None)
        else:
            wf = g.new(Poly.const(width), "fp32", w_rg, f"{name} weight.float()")
        if w_rg and ctx.dtype != "fp32":  # a copy: its backward casts the fp32 gradient into the weight's .grad
            wf = g.node(wf, [None], [("w", g.scope + name + ".weight", Poly.const(width * esize(ctx.dtype)))],
                        name=f"{name} weight.float()")
        w1 = g.unary_no_save(wf, f"{name} 1+weight")
        out = g.mul(normed, w1, f"{name} x*(1+w)", numel=normed.numel)
        out = g.to(out, x.dtype, f"{name} cast")
        g.touch(x)
        return out
    # olmo2 (the weight in the model's dtype, as llama's: under autocast an fp32 weight meets a bf16 input)
    w = T(Poly.const(width), ctx.dtype, w_rg, None)
    out = g.mul(w, normed, f"{name} weight*x", numel=normed.numel)
    out = g.to(out, x.dtype, f"{name} cast")
    g.touch(x, mean, normed)  # (variance and hidden_states, as llama's)
    return out


def layer_norm(ctx: Ctx, x: T, *, w_rg: bool, name: str = "ln", copied: bool = False) -> T:
    """F.layer_norm: keeps its input and the (rows,) mean and rstd (input dtype on CPU, fp32 on CUDA). ``w_rg``
    alone: the bias trains (LoRA's bias="all"); ``copied``: weight and bias (full fine-tuning, modules_to_save)."""
    w_rg = w_rg or copied
    g = ctx.g
    stat = "fp32" if ctx.device == "cuda" else x.dtype
    out = g.new(x.numel, x.dtype, x.rg or w_rg, name)
    mean = g.new(ctx.rows, stat, False, f"{name} mean")
    rstd = g.new(ctx.rows, stat, False, f"{name} rstd")
    prog: list = [("g", 0, x.bytes())] if x.rg else []
    if w_rg:
        w = Poly.const(ctx.cfg["hidden_size"] * esize(x.dtype))
        if ctx.full or copied:  # LoRA's bias="all" trains the biases only
            prog.append(("w", g.scope + name + ".weight", w))
        prog.append(("w", g.scope + name + ".bias", w))
    return g.node(out, [x], prog, (x, mean, rstd), name)


def _qk_norm(ctx: Ctx, x: T, heads: int, d: int, w_rg: bool, style: str, name: str) -> T:
    """Qwen3's and Gemma3's per-head RMSNorm of q or k, Olmo2's over all heads; other models have none."""
    mt = ctx.cfg["model_type"]
    if mt in ("qwen3", "gemma3_text"):
        return rms_norm(ctx, x, d, w_rg=w_rg, style=style, rows=ctx.rows * heads, name=name)
    if mt == "olmo2":
        return rms_norm(ctx, x, heads * d, w_rg=w_rg, style="olmo2", name=name)
    return x


def rotary(ctx: Ctx, x: T, heads: int, d: int, cos: T, sin: T, rot_dim: int) -> T:
    """x*cos + rotate_half(x)*sin (in the promoted dtype of x and cos); partial rotary rotates the first rot_dim
    channels and cats the rest."""
    g = ctx.g
    xr = x if rot_dim == d else g.view(x, ctx.rows * (heads * rot_dim), "rotary slice")
    out = _rotate(ctx, xr, heads, rot_dim, cos, sin)
    if rot_dim != d:
        out = _rotary_cat(ctx, out, g.view(x, ctx.rows * (heads * (d - rot_dim)), "rotary pass"), heads, d)
    return out


def _rotate(ctx: Ctx, xr: T, heads: int, rot_dim: int, cos: T, sin: T) -> T:
    """``xr * cos + rotate_half(xr) * sin`` on the rotated channels ``xr``."""
    g = ctx.g
    full, half = ctx.rows * (heads * rot_dim), ctx.rows * (heads * (rot_dim // 2))
    a = g.mul(xr, cos, "rotary x*cos", numel=full)
    x1, x2 = g.view(xr, half, "rotate_half x1"), g.view(xr, half, "rotate_half x2")
    neg = g.unary_no_save(x2, "rotate_half neg")
    rh = g.node(g.new(full, xr.dtype, xr.rg, "rotate_half cat"), [neg, x1], [("p", 0), ("p", 1)], name="rotate_half cat")
    return g.add(a, g.mul(rh, sin, "rotary rot*sin", numel=full), "rotary")


def _rotary_cat(ctx: Ctx, rotated: T, rest: T, heads: int, d: int) -> T:
    """``torch.cat([rotated, rest], -1)``: a new tensor (also when ``rest`` is empty); its gradient's parts are views."""
    g = ctx.g
    out = g.new(ctx.rows * (heads * d), rotated.dtype, rotated.rg or rest.rg, "rotary cat")
    return g.node(out, [rotated, rest], [("p", 0), ("p", 1)], name="rotary cat")


def rotary_sliced(ctx: Ctx, q: T, k: T, nh: int, nkv: int, d: int, cos: T, sin: T, rot_dim: int, cats_last: bool) -> tuple[T, T]:
    """GPT-NeoX's and Phi-3's apply_rotary_pos_emb, in their order: the four slices ``q[..., :rot]``,
    ``q[..., rot:]``, ``k[..., :rot]``, ``k[..., rot:]`` first (taken whether or not the rotation is partial:
    the pass-through slice is then empty), then the rotations and the cats -- GPT-NeoX rotates both before
    either cat (``cats_last``), Phi-3 cats each as it goes. Autograd runs the ready node made last first, so the
    slices' gradients (each scattered into a zero tensor of q's or k's size) come after all the rotations'."""
    g = ctx.g
    parts = [(g.view(x, ctx.rows * (heads * rot_dim), "rotary slice"), g.view(x, ctx.rows * (heads * (d - rot_dim)), "rotary pass"))
             for x, heads in ((q, nh), (k, nkv))]
    out = []
    for (xr, rest), heads in zip(parts, (nh, nkv)):
        out.append(_rotate(ctx, xr, heads, rot_dim, cos, sin))
        if not cats_last:
            out[-1] = _rotary_cat(ctx, out[-1], rest, heads, d)
    if cats_last:
        out = [_rotary_cat(ctx, o, rest, heads, d) for o, (_, rest), heads in zip(out, parts, (nh, nkv))]
    return out[0], out[1]


def _prefix_mask(ctx: Ctx) -> bool:
    """Does a prefix's cache make transformers build an sdpa mask (keys longer than the queries)? Not for a query
    of one token (:attr:`Ctx.one_token_unmasked`)."""
    return bool(ctx.kv_extra) and not ctx.one_token_unmasked


def attention(ctx: Ctx, q: T, k: T, v: T, *, nh: int, nkv: int, d: int, impl: str, mask: bool, softcap: bool = False,
              kv_len: Poly | None = None, gqa_ok: bool = True, contiguous: tuple[bool, bool, bool] = (False, False, False),
              softmax_fp32: bool = True, upcast: bool = False, folds: tuple[bool, bool, bool] = (True, True, True)) -> T:
    """Scaled dot-product attention as transformers calls it; returns the (b, s, nh*d) input of o_proj. ``upcast``:
    GPT-2's eager ``_upcast_and_reordered_attn`` (``reorder_and_upcast_attn``). ``folds``: whether q, k and v, one
    token long, fold (b, heads) into one dim as views: not where they are slices of a projection fused along its
    last dim (GPT-2's c_attn, Phi-3's qkv_proj: the batch's stride spans all three)."""
    g = ctx.g
    b_seq = ctx.rows  # b * S
    kvl = kv_len if kv_len is not None else ctx.seq
    kv_rows = B * kvl
    rep = nh // nkv
    use_gqa = (not mask) and d <= 256 and gqa_ok
    if rep > 1 and nkv == 1 and impl != "eager" and not use_gqa:
        # repeat_kv of a single kv head is a stride-0 view, which sdpa (without GQA) takes as it is: its kernel's
        # gradients of k and v are full-size, summed back by the expand's backward; autocast's cast of it is a
        # full-size copy
        k = g.view(k, kv_rows * (nh * d), "repeat_kv k (view)")
        v = g.view(v, kv_rows * (nh * d), "repeat_kv v (view)")
    viewed = [False, False]  # eager: k, v taken as the stride-0 view itself
    if rep > 1 and nkv == 1 and impl == "eager":
        # ... and eager's matmul at batch 1 too, or autocast's cast of the view where the dtype differs (a full-size
        # copy, matmul's operand as it is): its gradient is full-size until the expand's backward sums it
        viewed = [ctx.batch_one or bool(g.autocast and x.dtype != g.autocast) for x in (k, v)]
        if viewed[0]:
            k = g.view(k, kv_rows * (nh * d), "repeat_kv k (view)")
        if viewed[1]:
            v = g.view(v, kv_rows * (nh * d), "repeat_kv v (view)")
    rg = q.rg or k.rg or v.rg
    if impl == "eager":
        # matmul reshapes its operands to (b*nh, ., .): a tensor laid out (b, s, nh, d) (a transposed view of a
        # projection, or an elementwise rotary output) is copied; torch.cat outputs and repeat_kv clones are not
        # matmul folds (batch, heads) into one dim: a transposed (b, s, heads, d) layout, or repeat_kv's
        # expanded view of a single kv head, is copied first -- unless the batch is 1.
        # eager_attention_forward repeats k and v in their own dtype (key_states, value_states: held until it
        # returns); each matmul casts its operands under autocast when it runs
        # (a single head folds the same way at any batch: (b, 1, s, d) merges its first two dims as a view)
        one = ctx.batch_one or nh == 1
        # a one-token query: (b, heads, 1, d) folds into (b * heads, 1, d) as a view (but a slice of a projection
        # fused along its last dim: ``folds``); so do the keys and values where they have one token too (no
        # prefix), but a stride-0 repeat of one kv head
        q_one = ctx.query_one and folds[0]
        k_one, v_one = (ctx.query_one and not ctx.kv_extra and not (rep > 1 and nkv == 1) and f for f in folds[1:])
        held: list = []
        bound: list = []  # the upcast path's reshaped q and k
        # one kv head: repeat_kv is a stride-0 view, copied by each matmul when it runs (if b > 1)
        stride0 = rep > 1 and nkv == 1
        probs_n = b_seq * kvl * nh  # b * nh * s * kv
        def kv_copy(t: T, name: str) -> T:  # a (b, kv, heads, d) layout copied to (b * heads, kv, d)
            return g.copy(T(kv_rows * (nh * d), t.dtype, t.rg, t.sid, t.fn), name)

        if upcast:  # attn_weights = torch.empty(b * nh, s, kv, fp32); q, k = query.reshape(...), key.transpose(-1,
            # -2).reshape(...) (locals until it returns); with autocast off, baddbmm(attn_weights, q.float(), k.float(),
            # beta=0, alpha=scaling): no scaling op, and the preallocated tensor is bound until baddbmm returns
            empty = g.new(probs_n, "fp32", False, "upcast attn_weights (empty)")
            q2 = q if contiguous[0] or one or q_one else g.copy(q, "q reshape")
            k2 = k if contiguous[1] or one or k_one else kv_copy(k, "k transpose copy")
            bound = [q2, k2]
            q_dtype = v.dtype  # attn_weights.type(value.dtype)
            scores = _matmul(g, g.to(q2, "fp32", "q float"), g.to(k2, "fp32", "k float"), probs_n, "scores (baddbmm)")
            g.touch(empty)
        else:
            if rep > 1 and not stride0:
                held = [_repeat_kv(g, k, kv_rows * (nh * d), "repeat_kv k"), _repeat_kv(g, v, kv_rows * (nh * d), "repeat_kv v")]
                k2 = g.autocast_input(held[0], "k")
            else:
                k = g.autocast_input(k, "k")
                k2 = k if (contiguous[1] and not stride0) or one or viewed[0] or k_one else kv_copy(k, "k transpose copy")
            q_dtype = q.dtype  # softmax(...).to(query.dtype): fp32 where a q_norm with fp32 weights promoted it
            q = g.autocast_input(q, "q")
            q2 = q if contiguous[0] or one or q_one else g.copy(q, "q reshape")
            scores = _matmul(g, q2, k2, probs_n, "scores")  # keeps each operand for the other's gradient
            g.touch(q, k)  # matmul's arguments while it runs (under autocast its casts, copied by its reshapes)
        mask_value = None
        if isinstance(ctx.method, Adapter) and ctx.cfg["model_type"] == "gpt2":
            # transformers 4.57's GPT-2 (AdapterHub's stack): scores / torch.full([], sqrt(d)), whose backward keeps
            # the 0-dim divisor; then torch.where(causal, scores, mask_value), mask_value a 0-dim local
            if ctx.cfg.get("scale_attn_weights", True):
                scores = g.mul(scores, g.new(Poly.const(1), scores.dtype, False, "attn scale (0-dim)"), "scores / scale")
            if ctx.cfg.get("scale_attn_by_inverse_layer_idx"):  # / float(layer_idx + 1)
                scores = g.mul(scores, None, "scores / (layer_idx + 1)")
            mask_value = g.new(Poly.const(1), scores.dtype, False, "mask value (0-dim)")
            scores = g.unary_no_save(scores, "where(causal, scores, mask_value)")
        elif not upcast:
            scores = g.mul(scores, None, "scores * scaling")
        if softcap:
            t1 = g.unary_no_save(scores, "softcap div")
            th = g.unary_saves_output(t1, "softcap tanh")
            scores = g.unary_no_save(th, "softcap mul")
        scores = attn_weights = g.add(scores, None, "scores + mask")
        if softmax_fp32:  # softmax(dtype=float32) (and autocast's fp32 softmax) runs on an fp32 copy
            scores = g.to(scores, "fp32", "scores fp32")
        probs32 = g.unary_saves_output(scores, "softmax")
        probs = g.to(probs32, q_dtype, "probs cast")
        if (not g.autocast or probs is not probs32) and ctx.cfg["model_type"] != "gpt2":
            # softmax(...).to(query.dtype), one statement: the variable it was bound to lives until the cast returns
            # (under autocast a no-op where query is in the model's dtype, fp32; OLMo2's q_norm and rotary cast make
            # it the autocast dtype). GPT-2 rebinds attn_weights to the softmax first
            g.touch(attn_weights)
        probs = ctx.drop(probs, attention_dropout(ctx.cfg), "attn dropout")  # F.dropout(attn_weights, p=dropout)
        if held:
            v2 = g.autocast_input(held[1], "v")
        else:
            v = g.autocast_input(v, "v")
            v2 = v if (contiguous[2] and not stride0) or one or viewed[1] or v_one else kv_copy(v, "v reshape copy")
        out = _matmul(g, g.autocast_input(probs, "probs"), v2, b_seq * (nh * d), "attn out")
        g.touch(v, mask_value, *bound)  # (matmul's argument while it runs; locals of the attention function until it returns)
        if not ctx.query_one and nh != 1:  # ((b, heads, 1, d) or (b, 1, s, d) transposed is contiguous already)
            out = g.copy(out, "attn out transpose")
        g.touch(*held)
        ctx.attn_weights = probs
        return out
    ctx.attn_weights = None
    # sdpa / flash: keeps q, k, v, out and a fp32 logsumexp (b, nh, s); without its GQA path sdpa_attention_forward
    # repeats k and v first, in their own dtype (held until it returns), and sdpa casts its inputs under autocast
    held = []
    if rep > 1 and not use_gqa and nkv > 1:
        k = _repeat_kv(g, k, kv_rows * (nh * d), "repeat_kv k")
        v = _repeat_kv(g, v, kv_rows * (nh * d), "repeat_kv v")
        held = [k, v]
    q, k, v = g.autocast_input(q, "q"), g.autocast_input(k, "k"), g.autocast_input(v, "v")
    # the additive mask sdpa makes of the bool mask it is given (convert_boolean_attn_mask), before the kernel runs:
    # saved where it runs with autograd, else alive while it runs
    additive = g.new(b_seq * kvl, q.dtype, False, "sdpa additive mask") if mask and impl == "sdpa" else None
    out = g.new(b_seq * (nh * d), q.dtype, rg, "sdpa out")
    lse = g.new(b_seq * nh, "fp32", False, "sdpa logsumexp")
    saved = (q, k, v, out, lse) + ((additive,) if rg and additive is not None else ())
    # a flash kernel's backward returns the gradients of all three, those no input needs freed as it returns
    # (the CPU kernel's, measured; on CUDA, flash where nothing masks and the dtype is half, per derivatives.yaml:
    # the memory-efficient kernel takes a grad_input_mask)
    every = rg and (ctx.device == "cpu" or (not mask and q.dtype in ("bf16", "fp16")))
    prog = [("g", i, t.bytes()) if t.rg else ("a", t.bytes()) for i, t in enumerate((q, k, v)) if t.rg or every]
    out = g.node(out, [q, k, v], prog, saved, "sdpa")
    g.touch(additive)  # (made and freed inside the op)
    if contiguous[0] and impl == "sdpa" and not ctx.query_one and nh != 1:  # sdpa_attention_forward's ``attn_output.transpose(1,
        # 2).contiguous()``: the kernel's output follows q's layout, so a q laid out (b, heads, s, d) -- Phi-3's rotary
        # cat, adapters' own Llama/Mistral repeat -- gives an output whose transpose is copied, while repeat_kv's
        # copies are alive (but for a one-token query or a single head: contiguous already)
        out = g.copy(out, "attn out contiguous")
    g.touch(*held)
    return out


def attention_dropout_field(model_type: str) -> str:
    """The config field of the dropout on the attention probabilities."""
    return "attn_pdrop" if model_type == "gpt2" else "attention_dropout"


def attention_dropout(cfg: dict[str, Any]) -> float:
    """The dropout on the attention probabilities in training (GPT-2's attn_pdrop defaults to 0.1)."""
    mt = cfg["model_type"]
    return _p(cfg, attention_dropout_field(mt), default=0.1 if mt == "gpt2" else 0.0)


def _matmul(g: Graph, a: T, b: T, numel: Poly, name: str) -> T:
    """A batched matmul of two activations: keeps each operand for the other's gradient."""
    out = g.new(numel, a.dtype, a.rg or b.rg, name)
    prog = [("g", i, t.bytes()) for i, t in enumerate((a, b)) if t.rg]
    saved = ((b,) if a.rg else ()) + ((a,) if b.rg else ())
    return g.node(out, [a, b], prog, saved, name)


def _repeat_kv(g: Graph, x: T, numel: Poly, name: str) -> T:
    """repeat_kv: expand + reshape copies; its gradient is summed back over the repeats."""
    out = g.new(numel, x.dtype, x.rg, name)
    return g.node(out, [x], [("g", 0, x.bytes())], name=name)


# ---- the llama family ---------------------------------------------------------------------------


def _prefix_cat(ctx: Ctx, x: T, numel: Poly, name: str) -> T:
    """cache.update: torch.cat of the virtual keys/values (in the model's dtype; cat promotes) and x."""
    out = ctx.g.new(numel, promote(x.dtype, ctx.dtype), True, name)
    return ctx.g.node(out, [ctx.prefix, x], [("p", 0), ("p", 1)], name=name)


def _cache_update(ctx: Ctx, k: T, v: T, kv_len: Poly | None, width: int) -> tuple[T, T]:
    """A layer's cache.update, where there is a cache: the keys and values attention then reads (contiguous cats).

    - Prefix tuning: the cache PEFT passes in cats the virtual keys/values in front (``kv_len`` positions of
      ``width`` each, in the model's dtype; torch.cat promotes); it holds them until the forward returns, and
      through backward where the model returns that cache (RETURNS_CACHE, or any model with use_cache).
    - use_cache without a prefix (:attr:`Ctx.returns_cache`): the model's own cache cats them onto an empty entry,
      copies that the returned cache holds (outputs). Both empty entries take the keys' dtype
      (DynamicLayer.lazy_initialization) and cat promotes: values in bf16 beside keys that the rotary made fp32
      (autocast) are cached in fp32.

    The cats' gradients are views of the incoming ones."""
    if ctx.kv_extra:
        numel = B * kv_len * width
        k, v = _prefix_cat(ctx, k, numel, "prefix cat k"), _prefix_cat(ctx, v, numel, "prefix cat v")
        ctx.cache += [k, v]
        if ctx.cfg["model_type"] not in RETURNS_CACHE and not ctx.returns_cache:
            return k, v
    elif ctx.returns_cache:
        keys = k.dtype
        k, v = [ctx.g.node(ctx.g.new(x.numel, promote(keys, x.dtype), x.rg, name), [x], [("p", 0)], name=name)
                for x, name in ((k, "cache cat k"), (v, "cache cat v"))]
    else:
        return k, v
    ctx.g.keep(k)
    ctx.g.keep(v)
    return k, v


def _lin(layout: Layout, role: str) -> Linear | None:
    for m in layout.layer_linears:
        if m.role == role:
            return m
    return None


def _project_in(layout: Layout) -> Linear | None:
    """OPT's project_in (``word_embed_proj_dim`` != ``hidden_size``): the word embeddings' projection, or None."""
    return next((m for m in layout.outer_linears if m.role == "project_in"), None)


def llama_family_layer(ctx: Ctx, x: T, i: int, cos: T, sin: T, layer_type: str) -> T:
    cfg, layout, g = ctx.cfg, ctx.layout, ctx.g
    mt = cfg["model_type"]
    h, nh, nkv, d = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    style = {"gemma": "gemma", "gemma2": "gemma", "gemma3_text": "gemma", "olmo2": "olmo2"}.get(mt, "llama")
    norm_rg = ctx.full
    g.scope = f"layers.{i}."
    post_norm_only = mt == "olmo2"
    sandwich = mt in ("gemma2", "gemma3_text")

    ln = mt == "starcoder2"

    def norm(t: T, name: str) -> T:
        copied = _copied(ctx, name, i)
        if ln:
            return layer_norm(ctx, t, w_rg=norm_rg or ctx.norm_bias, name=name, copied=copied)
        return rms_norm(ctx, t, h, w_rg=norm_rg or copied, style=style, name=name)

    residual = x
    hs = x if post_norm_only else norm(x, "input_layernorm")
    # attention
    fused = None  # Phi3Attention's ``qkv``: bound until it returns, whatever reads its slices
    if mt == "phi3":
        qkv = fused = linear(ctx, hs, _lin(layout, "qkv"), i)
        # qkv[..., :q_pos] slices: each slice's gradient is scattered into a zero tensor of qkv's size
        q = g.view(qkv, ctx.rows * (nh * d), "q slice")
        k = g.view(qkv, ctx.rows * (nkv * d), "k slice")
        v = g.view(qkv, ctx.rows * (nkv * d), "v slice")
    elif mt == "gemma3_text":  # Gemma3 projects q, k and v first, then norms q and k
        q = linear(ctx, hs, _lin(layout, "q"), i)
        k = linear(ctx, hs, _lin(layout, "k"), i)
        v = linear(ctx, hs, _lin(layout, "v"), i)
        q, k = (_qk_norm(ctx, q, nh, d, norm_rg or _copied(ctx, "self_attn.q_norm", i), style, "q_norm"),
                _qk_norm(ctx, k, nkv, d, norm_rg or _copied(ctx, "self_attn.k_norm", i), style, "k_norm"))
    else:  # Qwen3 and Olmo2: q_norm(q_proj(x)), then k_norm(k_proj(x)), then v_proj(x)
        q = linear(ctx, hs, _lin(layout, "q"), i)
        q = _qk_norm(ctx, q, nh, d, norm_rg or _copied(ctx, "self_attn.q_norm", i), style, "q_norm")
        k = linear(ctx, hs, _lin(layout, "k"), i)
        k = _qk_norm(ctx, k, nkv, d, norm_rg or _copied(ctx, "self_attn.k_norm", i), style, "k_norm")
        v = linear(ctx, hs, _lin(layout, "v"), i)
    own = isinstance(ctx.method, Adapter) and not ctx.adapter_hooked  # adapters' own Llama/Mistral integration
    if own:  # adapters' own Llama/Mistral attention:
        # match_attn_matrices_for_parallel repeats q, k and v (by 1: copies) before the rotary
        q, k, v = g.copy(q, "q repeat"), g.copy(k, "k repeat"), g.copy(v, "v repeat")
    rot = _derived(cfg, "rotary_dim")
    back = q.dtype if mt == "olmo2" else None  # Olmo2 casts the rotated q/k back to their dtype
    q_in, k_in = q, k
    if mt == "phi3":
        q, k = rotary_sliced(ctx, q, k, nh, nkv, d, cos, sin, rot, cats_last=False)
    else:
        q = rotary(ctx, q, nh, d, cos, sin, rot)
        k = rotary(ctx, k, nkv, d, cos, sin, rot)
        if back:  # Olmo2's ``return q_embed.to(q_type), k_embed.to(k_type)``: both cast as it returns
            q_embed, k_embed = q, k
            q, k = g.to(q_embed, back, "rotary cast"), g.to(k_embed, back, "rotary cast")
            g.touch(q_embed, k_embed)
    g.touch(q_in, k_in)  # apply_rotary_pos_emb's arguments: alive until it returns both
    kv_len = ctx.seq + _prefix_kept(ctx, layer_type) if ctx.kv_extra else None  # (with a prefix's virtual positions)
    k, v = _cache_update(ctx, k, v, kv_len, nkv * d)
    cat_kv = bool(ctx.kv_extra) or ctx.returns_cache  # (k and v are a cat's contiguous output)
    impl = ctx.attn
    mask = _prefix_mask(ctx) or ctx.padding_mask or (layer_type == "sliding_attention" and ctx.sliding_active) or ctx.mask_always
    cat_rotary = mt == "phi3"  # phi3's rotary ends in torch.cat: contiguous q and k
    # (adapters' own Llama/Mistral attention copied q, k and v laid out (b, heads, s, d): eager's matmuls take them
    # as they are)
    a = attention(ctx, q, k, v, nh=nh, nkv=nkv, d=d, impl=impl, mask=mask, kv_len=kv_len,
                  softcap=mt == "gemma2" and bool(cfg.get("attn_logit_softcapping")),
                  contiguous=(cat_rotary or own, cat_rotary or own or cat_kv, own or cat_kv),
                  folds=(True, True, mt != "phi3"))  # (Phi-3's v: a slice of qkv_proj's output)
    def close(o: T, residual: T, norm_name: str, place: str) -> T:
        """A branch's output: Olmo2's / Gemma2's post-norm, Granite's residual multiplier, the residual add."""
        if post_norm_only:
            o = rms_norm(ctx, o, h, w_rg=norm_rg or _copied(ctx, norm_name, i), style="olmo2", name=norm_name)
        elif sandwich:
            o = rms_norm(ctx, o, h, w_rg=norm_rg or _copied(ctx, norm_name, i), style=style, name=norm_name)
        branch = o
        if mt == "granite":  # residual + hidden_states * residual_multiplier (a Python float): the branch's output
            o = g.mul(o, None, "residual_multiplier")  # stays bound to hidden_states until the add returns
        out = g.add(residual, o, "residual add") if _adds_residual(ctx, place) else o
        _post_forward_done(ctx)
        g.touch(branch)
        return out

    # residual dropouts: StarCoder2's inside its attention and MLP (after o_proj / c_proj), Phi-3's on what they
    # return (resid_attn_dropout / resid_mlp_dropout)
    inner_p = _p(cfg, "residual_dropout") if mt == "starcoder2" else 0.0
    outer_p = _p(cfg, "resid_pdrop") if mt == "phi3" else 0.0
    o = linear(ctx, a, _lin(layout, "o"), i)
    if not ctx.adapter_hooked:  # the attention returns before an adapter of AdapterHub's own integration runs
        o = ctx.drop(o, inner_p, "attn residual dropout")
        g.touch(hs, q, k, v, fused)
    o = bottleneck(ctx, o, "attention", residual)
    if ctx.adapter_hooked:  # the adapter ran in a hook of o_proj's call: the attention's locals and o_proj's
        o = ctx.drop(o, inner_p, "attn residual dropout")
        g.touch(hs, q, k, v, a, fused)  # argument were alive throughout
    o = ctx.drop(o, outer_p, "resid_attn_dropout")
    x = residual = close(o, residual, "post_attention_layernorm", "attention")
    if ctx.adapter_hooked:  # adapters' pre-hook on the next norm keeps it in the ForwardContext
        g.storages[x.sid].handed_on = True
    if post_norm_only:
        hs = x
    elif sandwich:
        hs = rms_norm(ctx, x, h, w_rg=norm_rg or _copied(ctx, "pre_feedforward_layernorm", i), style=style,
                      name="pre_feedforward_layernorm")
    else:
        hs = norm(x, "post_attention_layernorm")
    # MLP
    bound = None  # a local of the MLP's forward that is still bound when down_proj runs
    if mt == "phi3":  # Phi3MLP: gate, up_states = gate_up_proj(x).chunk(2): ``gate`` (a view of the fused output,
        # and with it all of its storage) stays bound until forward returns, after down_proj
        gu = linear(ctx, hs, _lin(layout, "gate_up"), i)
        gate, up = g.split(gu, [ctx.rows * cfg["intermediate_size"]] * 2, "gate_up chunk")
        act = _act(ctx, gate)
        m = g.mul(up, act, "gate*up")
        down = _lin(layout, "down")
        bound = gate
    elif mt == "starcoder2":
        up = linear(ctx, hs, _lin(layout, "up"), i)
        m = _act(ctx, up)
        down = _lin(layout, "down")
    else:  # down_proj(act_fn(gate_proj(x)) * up_proj(x)): the activation runs before up_proj
        gate = linear(ctx, hs, _lin(layout, "gate"), i)
        act = _act(ctx, gate)
        up = linear(ctx, hs, _lin(layout, "up"), i)
        m = g.mul(act, up, "act*up")
        down = _lin(layout, "down")
    o = linear(ctx, m, down, i)
    if not ctx.adapter_hooked:  # (the MLP returns first)
        o = ctx.drop(o, inner_p, "mlp residual dropout")
        g.touch(hs, bound)
    o = bottleneck(ctx, o, "output", residual)
    if ctx.adapter_hooked:  # (in a hook of down_proj's call)
        o = ctx.drop(o, inner_p, "mlp residual dropout")
        g.touch(hs, bound, m)
    o = ctx.drop(o, outer_p, "resid_mlp_dropout")
    out = close(o, residual, "post_feedforward_layernorm", "output")
    # the decoder layer's `hidden_states, _ = self.self_attn(...)`, and its `residual` (which an adapter with
    # original_ln_after=False does not add): until it returns
    g.touch(ctx.attn_weights, residual)
    g.scope = ""
    return out




# ---- LayerNorm families: gpt2, gpt_neox, opt -------------------------------------------------------


def _p(cfg: dict[str, Any], *names: str, default: float = 0.0) -> float:
    for n in names:
        if cfg.get(n) is not None:
            return float(cfg[n])
    return default


_LN_NAMES = {"gpt2": ("ln_1", "ln_2"), "gpt_neox": ("input_layernorm", "post_attention_layernorm"),
             "opt": ("self_attn_layer_norm", "final_layer_norm")}


def _ln_affine(cfg: dict[str, Any]) -> bool:
    """Do the LayerNorms have a weight and a bias? (OPT's layer_norm_elementwise_affine)"""
    return cfg["model_type"] != "opt" or bool(cfg.get("layer_norm_elementwise_affine", True))


def layernorm_family_layer(ctx: Ctx, x: T, i: int, cos: T, sin: T, layer_type: str) -> T:
    cfg, layout, g = ctx.cfg, ctx.layout, ctx.g
    mt = cfg["model_type"]
    nh, d = cfg["num_attention_heads"], cfg["head_dim"]
    norm_rg = ctx.full or ctx.norm_bias
    g.scope = f"layers.{i}."
    resid_p = {"gpt2": _p(cfg, "resid_pdrop", default=0.1), "opt": _p(cfg, "dropout", default=0.1)}.get(mt, _p(cfg, "hidden_dropout"))
    impl = ctx.attn
    residual = x
    # the layer's two norms, as modules (ln_1/ln_2, input_layernorm/post_attention_layernorm, OPT's
    # self_attn_layer_norm/final_layer_norm): copies when modules_to_save covers them. OPT's may have no weight
    # and bias (layer_norm_elementwise_affine=False), and OPT-350m's come after the residual adds
    # (do_layer_norm_before=False)
    affine = _ln_affine(cfg)
    norm_rg = norm_rg and affine
    attn_norm, mlp_norm = (affine and _copied(ctx, n_, i) for n_ in _LN_NAMES[mt])
    post_ln = mt == "opt" and not cfg.get("do_layer_norm_before", True)
    a = x if post_ln else layer_norm(ctx, x, w_rg=norm_rg, name="attn norm", copied=attn_norm)
    if mt in ("gpt2", "gpt_neox"):
        qkv = linear(ctx, a, _lin(layout, "qkv"), i)
        if mt == "gpt_neox" and qkv.rg:  # view -> transpose(1, 2) -> chunk: the chunks' gradients come back
            # concatenated and transposed, and the view's backward copies them contiguous (the cat freed after)
            qkv = g.view(qkv, qkv.numel, "qkv view+transpose")
        q, k, v = g.split(qkv, [ctx.rows * (nh * d)] * 3, "qkv split")  # split/chunk: views of the fused output
        if mt == "gpt_neox":
            rot = _derived(cfg, "rotary_dim")
            q_in, k_in = q, k
            q, k = rotary_sliced(ctx, q, k, nh, nh, d, cos, sin, rot, cats_last=True)
            g.touch(q_in, k_in)  # apply_rotary_pos_emb's arguments: alive until it returns both
    else:  # opt: q scaled by a Python float
        q = g.mul(linear(ctx, a, _lin(layout, "q"), i), None, "q * scaling")
        k = linear(ctx, a, _lin(layout, "k"), i)
        v = linear(ctx, a, _lin(layout, "v"), i)
    kv_len = ctx.seq + ctx.kv_extra if ctx.kv_extra else None
    k, v = _cache_update(ctx, k, v, kv_len, nh * d)
    cat_kv = bool(ctx.kv_extra) or ctx.returns_cache  # (k and v are a cat's contiguous output)
    neox = mt == "gpt_neox"  # rotary ends in torch.cat: contiguous q and k
    att = attention(ctx, q, k, v, nh=nh, nkv=nh, d=d, impl=impl, mask=_prefix_mask(ctx) or ctx.padding_mask or ctx.mask_always, kv_len=kv_len,
                    contiguous=(neox, neox or cat_kv, cat_kv),
                    softmax_fp32=mt != "gpt2" or bool(g.autocast),  # autocast runs softmax in fp32
                    upcast=mt == "gpt2" and impl == "eager" and bool(cfg.get("reorder_and_upcast_attn")),
                    folds=(mt != "gpt2",) * 3)  # (GPT-2's q, k, v: slices of c_attn's output; GPT-NeoX's fold)
    if mt == "gpt_neox" and impl == "sdpa" and not ctx.query_one and nh != 1:  # (a one-token query's or a single
        # head's output is contiguous already)
        att = g.copy(att, "attn out contiguous")
    o = linear(ctx, att, _lin(layout, "o"), i)
    # GPTNeoXAttention binds the fused projection (`qkv`) until it returns, after its dense: where nothing saves its
    # chunks (prefix tuning's keys and values are the cache's cat), it is still alive
    held = (qkv,) if mt == "gpt_neox" else ()
    if isinstance(ctx.method, Adapter):  # adapters' GPT-2 block runs its adapters on what the attention and
        # the MLP return (after their dropout); the adapter's last add is the residual add
        g.touch(a, q, k, v, *held)  # (the attention has returned)
        o = attn_output = ctx.drop(o, resid_p, "resid dropout")
        o = bottleneck(ctx, o, "attention", residual)
    elif mt == "gpt2":  # GPT2Attention drops out its output before it returns (q, k and v, views of c_attn's output,
        # are its locals until then); ln_1's output is the block's hidden_states until the residual add rebinds it
        o = attn_output = ctx.drop(o, resid_p, "resid dropout")
        g.touch(q, k, v)
    else:
        g.touch(a, q, k, v, *held)
        o = attn_output = ctx.drop(o, resid_p, "resid dropout")
    if mt == "gpt_neox" and cfg.get("use_parallel_residual", True):
        m_in = layer_norm(ctx, x, w_rg=norm_rg, name="mlp norm", copied=mlp_norm)
        mlp_out = _ln_mlp(ctx, m_in, i, resid_p)
        tmp = g.add(mlp_out, o, "mlp+attn")
        out = g.add(tmp, residual, "residual add")
        g.touch(ctx.attn_weights)  # the block holds what its attention returned until it returns
        g.scope = ""
        return out
    x = g.add(residual, o, "residual add") if _adds_residual(ctx, "attention") else o
    _post_forward_done(ctx)
    if mt == "gpt2" and not isinstance(ctx.method, Adapter):
        g.touch(a)
    if post_ln:
        x = layer_norm(ctx, x, w_rg=norm_rg, name="attn norm", copied=attn_norm)
    residual = x
    m_in = x if post_ln else layer_norm(ctx, x, w_rg=norm_rg, name="mlp norm", copied=mlp_norm)
    mlp_out = bottleneck(ctx, _ln_mlp(ctx, m_in, i, resid_p), "output", residual)
    out = g.add(residual, mlp_out, "residual add") if _adds_residual(ctx, "output") else mlp_out
    _post_forward_done(ctx)
    if post_ln:  # (the layer's `residual`, the first norm's output, is bound until the layer returns)
        out = layer_norm(ctx, out, w_rg=norm_rg, name="mlp norm", copied=mlp_norm)
        g.touch(residual)
    if mt == "gpt2":  # GPT2Block's attn_output (after its dropout) and ln_2's output live until the block returns
        g.touch(attn_output, m_in)
    g.touch(ctx.attn_weights)  # the block holds what its attention returned until it returns
    g.scope = ""
    return out


def _act(ctx: Ctx, x: T) -> T:
    """The MLP's activation function (act_fns.py), by the name in the field its model type reads."""
    name = ctx.cfg.get(act_field(ctx.cfg["model_type"]))
    return act_fn(ctx.g, x, name, cuda_autocast=bool(ctx.g.autocast) and ctx.device == "cuda")


def _ln_mlp(ctx: Ctx, x: T, i: int, resid_p: float) -> T:
    g, cfg, layout = ctx.g, ctx.cfg, ctx.layout
    up = linear(ctx, x, _lin(layout, "up"), i)
    o = linear(ctx, _act(ctx, up), _lin(layout, "down"), i)
    if cfg["model_type"] != "opt":  # GPT-2's hidden_states / GPT-NeoX's MLP module call hold the norm's output;
        g.touch(x)  # OPT's layer calls fc1 itself and rebinds it
    if cfg["model_type"] == "gpt2":
        return ctx.drop(o, resid_p, "mlp dropout")
    # OPT's dropout after fc2; GPT-NeoX's post_mlp_dropout on what the MLP returns
    return ctx.drop(o, resid_p, "ffn dropout" if cfg["model_type"] == "opt" else "post_mlp_dropout")


def _copies(ctx: Ctx, *kinds: str) -> Poly:
    """The bytes of the modules_to_save copies of the outer parameters of these kinds (embedding,
    position_embedding): their weight gradients' bytes."""
    return Poly.sum([Poly.const(math.prod(q.shape) * esize(ctx.dtype)) for q in ctx.layout.outer_params
                     if q.kind in kinds and _copied(ctx, q.path.rsplit(".", 1)[0], None)])


def _embedding_trains(ctx: Ctx, kind: str = "embedding") -> bool:
    """Does the word embedding (or GPT-2's / OPT's learned position embedding, ``kind="position_embedding"``)
    train: full fine-tuning, or a modules_to_save copy?"""
    return ctx.full or (ctx.saved is not None and ctx.saved.copies(ctx.layout, kind))


def _gpt2_positions(ctx: Ctx, emb: T) -> T:
    """GPT2Model's ``inputs_embeds + wpe(position_ids)``, made before it builds the attention mask (its dropout
    comes after, in :func:`_ln_embeddings`). LoRA on wpe (lora.Embedding on the (1, s) position ids): the sum's
    gradient, summed over the batch, flows into the adapter, and every layer's input requires grad."""
    g, cfg = ctx.g, ctx.cfg
    trains = _embedding_trains(ctx, "position_embedding")
    pos = ctx.positions = g.new(ctx.seq, "int64", False, "position ids")
    if trains:
        ctx.position_indices = pos.sid
    pe = g.new(ctx.seq * cfg["hidden_size"], ctx.dtype, False, "position embeddings")  # wpe: (1, s, h)
    pe_lora = _lora_embedding(ctx, pe, cfg["hidden_size"], positions=True)
    if trains or pe_lora is not None:  # the wpe embedding keeps its indices for its weight gradient (a copy's), or
        # the adapter's F.embedding for A's
        g.save(pos)
    ctx.scope += [pos, pe if pe_lora is None else pe_lora]
    if pe_lora is not None:
        ctx.position_lora = True
        return g.add(emb, pe_lora, "wte+wpe", numel=emb.numel)
    x = g.add(emb, None, "wte+wpe", numel=emb.numel)
    x.rg = emb.rg or trains
    return x


def _ln_embeddings(ctx: Ctx, emb: T) -> T:
    """Positions and input projections of gpt2 / opt; gpt_neox only looks up its embeddings."""
    g, cfg, layout = ctx.g, ctx.cfg, ctx.layout
    mt = cfg["model_type"]
    trains = _embedding_trains(ctx, "position_embedding")
    if mt == "gpt2":  # (the positions were added by _gpt2_positions, before the mask)
        return ctx.drop(emb, _p(cfg, "embd_pdrop", default=0.1), "embd dropout")
    if mt == "opt":
        # OPTDecoder without an attention_mask makes one of ones (fp32), and the position ids from its cumsum; both
        # cover the cached positions too (prefix tuning's), the position ids being a slice of them
        kv = ctx.seq + ctx.kv_extra
        if not ctx.padding_mask:
            ctx.scope.append(g.new(B * kv, "fp32", False, "attention mask ones"))
        pos = ctx.positions = g.new(B * kv, "int64", False, "position ids")
        if trains:  # OPTLearnedPositionalEmbedding looks up position_ids + 2: the embedding keeps those indices
            indices = g.new(B * ctx.seq, "int64", False, "position ids + offset")
            g.save(indices)
            ctx.position_indices = indices.sid
        pe = g.new(ctx.rows * cfg["hidden_size"], ctx.dtype, trains, "position embeddings")  # in the weights' dtype
        # (a trained copy's embedding backward takes the gradient; its weight gradient is counted with the copies'.
        # Its node is made before project_in's, which autograd therefore runs first)
        pe_in = g.node(T(pe.numel, pe.dtype, pe.rg, None), [None], [], name="embed_positions")
        ctx.position_node = pe_in.fn if pe_in.fn is not None else -1
        proj = _project_in(layout)
        x = linear(ctx, emb, proj, None) if proj else emb
        # inputs_embeds is rebound to project_in's output; the decoder holds it, the positions and the last layer's
        # LayerDrop draw (torch.rand([]) per layer in training) until it returns
        ctx.scope[:] = [t for t in ctx.scope if t is not emb] + [x, pos, pe, g.new(Poly.const(1), "fp32", False, "layerdrop rand")]
        return g.add(x, pe_in, "embeds+positions", numel=ctx.rows * cfg["hidden_size"])
    return ctx.drop(emb, _p(cfg, "hidden_dropout"), "emb_dropout")  # GPT-NeoX's emb_dropout(inputs_embeds)


# ---- whole model ---------------------------------------------------------------------------------


def _rotary_dim(cfg: dict[str, Any]) -> int:
    d = cfg["head_dim"]
    rope = cfg.get("rope_parameters") or {}
    factor = rope.get("partial_rotary_factor", cfg.get("partial_rotary_factor"))
    if cfg["model_type"] == "gpt_neox":
        factor = rope.get("partial_rotary_factor", cfg.get("rotary_pct", 0.25))
    if factor is None or factor == 1:
        return d
    # transformers' rope init takes inv_freq = arange(0, dim, 2): an odd dim gets cos/sin one wider, and
    # apply_rotary_pos_emb rotates cos.shape[-1] channels
    dim = int(d * float(factor))
    return dim + dim % 2


# sizes worked out from several config fields (not a polynomial of them): a traced pass takes each as a leaf
_DERIVED = {"rotary_dim": _rotary_dim}


def _derived(cfg: dict[str, Any], name: str) -> Any:
    if type(cfg) is _TracedCfg:
        return cfg.derived(name)
    return _DERIVED[name](cfg)


def hidden_dtype(method: Method, train) -> str:
    """The hidden states' dtype: the weights', but fp32 for QLoRA prepared for k-bit training, which casts the
    embeddings, norms and lm_head to fp32 (Linear4bit casts its input to the compute dtype and its output back)."""
    if isinstance(method, QLoRA) and method.prepare_model_for_kbit_training:
        return "fp32"
    return train.weight_dtype


def outputs_dtypes(model_type: str, method: Method, train) -> tuple[str, str]:
    """The dtypes of what a training forward returns: the logits (autocast's where it runs the head, else the
    hidden states') and the KV cache (use_cache), whose empty entries take the keys' dtype. Keys come out of the
    rotary in the hidden states' dtype (cos and sin are cast to it): fp32 under autocast on fp32 weights, but for
    GPT-2 and OPT (no rotary: k_proj's output) and Olmo2 (which casts the rotated keys back); prefix tuning's
    virtual keys, in the weights' dtype, promote them. Measured over every architecture
    (tests/test_activations_vs_harness.py::test_retained_outputs_are_what_the_forward_returns)."""
    hidden = hidden_dtype(method, train)
    cache = hidden
    if train.mixed_precision and model_type in ("gpt2", "opt", "olmo2") and not method.prefix_tokens():
        cache = train.mixed_precision
    return train.mixed_precision or hidden, cache


def returns_kv_cache(train) -> bool:
    """Does the model's forward return a KV cache (:attr:`Ctx.returns_cache`)? With use_cache=True, unless
    checkpointing turns it off (transformers: "use_cache=True is incompatible with gradient checkpointing")."""
    return bool(getattr(train, "use_cache", False)) and not train.gradient_checkpointing


def activation_model(spec, method: Method, train, sliding_active: bool = False, batch_one: bool = False,
                     query_one: bool = False) -> ActivationModel:
    """The activation polynomials of ``spec`` trained with ``method`` (the whole symbolic pass, nothing cached)."""
    return _finish(*_build(spec.cfg, spec.layout, spec.layer_types, method, train, sliding_active, batch_one, query_one))


def _build(cfg: dict[str, Any], layout: Layout, layer_types: list[str], method: Method, train, sliding_active: bool,
           batch_one: bool, query_one: bool = False) -> tuple:
    """The symbolic pass: (activations, their terms, a steady layer's, its terms, every moment of the step as
    (kind, op, live bytes)); the peak candidates are picked from the moments by :func:`_finish`."""
    mt = cfg["model_type"]
    dtype = hidden_dtype(method, train)
    device = getattr(train, "device", "cuda")
    n_virtual = method.virtual_tokens()
    seq = S + n_virtual
    rows = B * seq
    g = Graph(autocast=train.mixed_precision)
    ctx = Ctx(g=g, cfg=cfg, layout=layout, method=method, dtype=dtype, rows=rows, seq=seq,
              kv_extra=method.prefix_tokens(), device=device, full=method.name == "full",
              attn="eager" if train.attn_implementation == "eager" else "sdpa", sliding_active=sliding_active,
              padding_mask=train.padding_mask, batch_one=batch_one, query_one=query_one,
              one_token_unmasked=query_one and train.attn_implementation == "sdpa" and not train.padding_mask,
              returns_cache=returns_kv_cache(train))
    # (flash_attention_2 saves what sdpa's flash kernel saves)
    _setup(ctx)
    if isinstance(method, QLoRA):
        ctx.q4 = method.bnb_4bit_compute_dtype or train.weight_dtype
        ctx.q4_storage = train.weight_dtype
        ctx.q4_nested = method.bnb_4bit_use_double_quant
    h, v = cfg["hidden_size"], cfg["vocab_size"]

    if ctx.padding_mask and (n_virtual or ctx.kv_extra):
        # PEFT's forward prefixes the attention mask with ones for the virtual tokens (fp32: torch.ones, then cat
        # with the int mask) and holds both until it returns
        nv = n_virtual or ctx.kv_extra
        ctx.cache += [g.new(B * nv, "fp32", False, "prompt attention mask ones"),
                      g.new(B * (nv + S), "fp32", False, "prompt attention mask")]
    # embeddings (+ prompt tuning / p-tuning virtual tokens)
    emb_dim = cfg.get("word_embed_proj_dim") or h
    # the word embedding trains (full fine-tuning, or a modules_to_save copy): its output requires grad
    emb_trains = _embedding_trains(ctx)
    tokens = method.token_rows(layout, cfg)
    if tokens:  # trainable_token_indices: PEFT's TrainableTokensLayer
        emb = word_emb = _trainable_tokens(ctx, tokens, emb_dim, cfg["vocab_size"])
    else:
        emb = word_emb = g.new(B * S * emb_dim, dtype, emb_trains or train.gradient_checkpointing, "embed_tokens")
    if mt in ("gemma", "gemma2", "gemma3_text"):  # Gemma*TextScaledWordEmbedding: * embed_scale.to(weight.dtype);
        # the buffer stays in the dtype the model was loaded in: a 0-dim copy where the weight's differs (QLoRA's
        # fp32 embeddings), kept by the mul when the weight trains (checkpointing's hook makes the output require
        # grad only after the module returns)
        copied = (emb_trains or tokens > 0) and _buffer_dtype(ctx) != dtype
        scale = g.new(Poly.const(1), dtype, False, "embed scale (0-dim)").sid if copied else None
        emb = g.mul(emb, T(Poly.const(1), dtype, False, scale), "embed scale")
        if not (mt == "gemma2" and isinstance(method, Adapter)):  # (transformers 4.x's Gemma2Model scales it itself)
            word_emb = emb
    g.touch(ctx.token_weight)  # (TrainableTokensLayer's W, until its forward returns)
    emb_lora = _lora_embedding(ctx, emb, emb_dim)
    if emb_lora is not None:  # (under checkpointing, enable_input_require_grads' hook sits on the wrapped module:
        # the base's output is the leaf that requires grad)
        word_emb, emb = emb, emb_lora
    if ctx.kv_extra:  # PEFT's get_prompt: the prefix encoder's output for every layer, cast to the model dtype
        kv_dim = cfg["num_key_value_heads"] * cfg["head_dim"] if "num_key_value_heads" in cfg else h
        if getattr(method, "prefix_projection", False):
            ctx.prefix = _prefix_projection(ctx, method, dtype)
        else:
            ctx.prefix = g.new(B * (ctx.kv_extra * 2 * layout.num_layers * kv_dim), dtype, True, "prefix past_key_values")
        # the cache is filled by cache.update, whose cat with the empty entry copies each layer's keys and values:
        # the output goes once copied (its views' gradients still reach it), each copy when its layer's own
        # cat replaces it (the lower layers' copies in bulk, gone before the top layer)
        piece = B * (ctx.kv_extra * kv_dim)
        prefix_copies = (g.new(piece * (2 * (layout.num_layers - 1)), dtype, False, "prefix cache copies (lower layers)"),
                         g.new(piece, dtype, False, "prefix cache copy k"), g.new(piece, dtype, False, "prefix cache copy v"))
    if n_virtual:
        prompts = _prompt_encoder(ctx, method, n_virtual, emb_dim)  # (token_dim: OPT's projected embedding width)
        # PEFT's forward holds, until it returns: the prompts in the model's dtype, the labels padded with -100
        # for the virtual tokens, and those -100 labels themselves
        ctx.cache += [g.to(prompts, dtype, "prompts.to(dtype)"),
                      g.new(B * seq, "int64", False, "labels with the prompts'"), g.new(B * n_virtual, "int64", False, "prefix_labels")]
        # cat's backward hands each input a view of its gradient; the embeddings' output requires grad under
        # checkpointing (enable_input_require_grads: a leaf, whose .grad keeps that gradient)
        embeds_rg = emb.rg or (train.gradient_checkpointing and not emb_trains and not tokens)
        emb = g.node(g.new(rows * emb_dim, dtype, True, "cat(prompts, embeds)"), [ctx.cache[-3], emb if embeds_rg else None],
                     [("p", 0)] + ([("p", 1)] if embeds_rg else []), name="cat(prompts, embeds)")
        ctx.cache.append(emb)  # PEFT's forward passes it as inputs_embeds: held until it returns
    if mt == "granite":  # * embedding_multiplier (a Python float) in the model's forward: a new tensor
        emb = g.mul(emb, None, "embedding_multiplier")
    # the base model's forward holds inputs_embeds, the position ids and the attention masks until it returns
    # (transformers 4.x's Gemma2Model, under AdapterHub, scales inputs_embeds itself: it holds the unscaled ones)
    ctx.scope.append(word_emb if mt == "gemma2" and isinstance(method, Adapter) else emb)
    if mt not in ("gpt2", "opt"):  # (theirs: _ln_embeddings)
        ctx.positions = g.new(seq, "int64", False, "position ids")
        ctx.scope.append(ctx.positions)
        if mt == "mistral" and isinstance(method, Adapter) and not batch_one:
            # adapters' Mistral layer repeats the position ids (a view of the positions) to the batch, in place
            # (adjust_tensors_for_parallel_): every layer gets those, and the positions as cache_position
            if train.gradient_checkpointing:
                g.save(ctx.positions)
            ctx.positions = g.new(B * seq, "int64", False, "position ids repeated")
            ctx.scope.append(ctx.positions)
    if mt == "gpt2":  # GPT2Model adds the position embeddings before it builds the mask
        emb = _gpt2_positions(ctx, emb)
    # Gemma2/3 build the mask of both kinds (full and sliding) whatever their layers use; Qwen2/3 the full one
    # whatever their layers use, and the sliding one too where a layer slides
    kinds = set(layer_types) | ({"full_attention", "sliding_attention"} if mt in BOTH_MASKS else
                                {"full_attention"} if mt in ("qwen2", "qwen3") else set())
    masks: dict[str, T] = {}
    ctx.mask_always = isinstance(method, Adapter) and train.attn_implementation != "flash_attention_2"  # (flash: no mask)
    ctx.adapter_hooked = isinstance(method, Adapter) and mt in HOOKED
    for kind in sorted(kinds):
        kv = seq + _prefix_kept(ctx, kind)
        if ctx.attn == "eager":  # additive, in the model's dtype
            masks[kind] = g.new(B * seq * kv, dtype, False, f"causal mask ({kind})")
        elif _prefix_mask(ctx) or ctx.padding_mask or ctx.mask_always or (kind == "sliding_attention" and sliding_active):  # sdpa: bool, where built
            # no padding: batch dim 1 (but OPT always makes a 2-D mask of ones, which the mask is combined with)
            rows_mask = B * seq if (ctx.padding_mask or ctx.mask_always or mt == "opt") else seq
            masks[kind] = g.new(rows_mask * kv, "bool", False, f"attention mask ({kind})")
    ctx.scope += masks.values()
    # rotary cos/sin: (1, S, d) in the model dtype, shared by all layers
    rot_dim = _derived(cfg, "rotary_dim") if mt not in ("gpt2", "opt") else 0
    cos_dtype = "fp32" if mt == "olmo2" else dtype  # Olmo2's rotary keeps cos/sin in fp32 and casts q/k back
    # Gemma3 computes one pair per layer type (local and global rope bases), each passed to its layers
    # (transformers 4.x, under adapters: both pairs, each layer gets both)
    rope_kinds = [None] if mt != "gemma3_text" else sorted(
        {"full_attention", "sliding_attention"} if isinstance(method, Adapter) else set(layer_types))
    rope = {kind: (g.new(seq * rot_dim, cos_dtype, False, "rotary cos" + (f" ({kind})" if len(rope_kinds) > 1 else "")),
                   g.new(seq * rot_dim, cos_dtype, False, "rotary sin" + (f" ({kind})" if len(rope_kinds) > 1 else "")))
            for kind in rope_kinds}
    if rot_dim:  # position_embeddings: the model's forward holds them until it returns
        ctx.scope += [t for pair in rope.values() for t in pair]

    ln_family = mt in ("gpt2", "gpt_neox", "opt")
    if ln_family:
        emb = _ln_embeddings(ctx, emb)
    elif mt == "starcoder2":  # the model's forward: dropout(inputs_embeds, embedding_dropout)
        emb = ctx.drop(emb, _p(cfg, "embedding_dropout"), "embedding dropout")
    layer_fn = layernorm_family_layer if ln_family else llama_family_layer
    gc = train.gradient_checkpointing
    if gc and not emb_trains and not tokens:
        # enable_input_require_grads (HF / PEFT) marks the embeddings' output as requiring grad: a leaf that
        # autograd's AccumulateGrad node keeps alive
        word_emb.rg = True
        g.keep(word_emb)
        if word_emb.sid is not None:
            g.leaf_inputs.add(word_emb.sid)
    x = x_first = emb
    per_layer_polys: list[Poly] = []
    memo: dict[tuple, tuple] = {}
    sigs: list[tuple] = []  # each layer's kind
    instances: dict[tuple, tuple] = {}  # a kind's first layer, built op by op: nodes, storages, input, output
    top = layout.num_layers - 1
    below_layers, first_input, layer_nodes = len(g.storages), x.sid, len(g.nodes)  # what the layers find made before them
    layer_start: list[int] = []  # each layer's first storage
    for i in range(layout.num_layers):
        before = len(g.storages)
        layer_start.append(before)
        x_in = x
        first_node = len(g.nodes)
        if i == top:  # the top layer is op by op (built or copied): backward is simulated through it
            top_nodes, top_storages = first_node, before
        # layers that see the same input and the same method wrapping behave identically: replay the first
        sig = (x.rg, x.dtype, layer_types[i], tuple(i in v for v in ctx.lora.values()),
               tuple(i in v[0] for v in ctx.ia3.values()), isinstance(method, Adapter) and method.in_layer(i))
        ctx.layer = i
        if getattr(ctx.method, "rank_pattern", None):  # LoRA's rank can differ from layer to layer
            sig += tuple(ctx.method.rank_key(ctx.layout.layer_path(i, p_)) for p_ in ctx.lora)  # type: ignore[attr-defined]
        if sig in memo and i != top:
            x, layer_alive, last_layer = _replay(g, memo[sig], x_in, i, ctx.cache, gc)
        elif sig in memo:
            x, x_in, layer_alive, last_layer = _copy_layer(g, ctx, memo[sig], x_in, i)
        else:
            saved_before = {k for k in range(before) if g.storages[k].saved or g.storages[k].output}
            cache_before = len(ctx.cache)
            if x.rg:  # the layer's input gradients meet here, summed, and go on to the layers below
                x = x_in = g.node(T(x.numel, x.dtype, True, x.sid), [None], [("p", 0)], name=f"layers.{i} input")
            casts = len(g.input_casts)
            x = layer_fn(ctx, x, i, *rope[layer_types[i] if mt == "gemma3_text" else None], layer_types[i])
            g.touch(x_in)  # the model's loop holds the layer's input until the layer returns
            if len(g.input_casts) > casts:  # its matmuls shared autocast's cached copy of a leaf input (Olmo2's
                # first layer under checkpointing): unlike the layers above, which each cast their input
                sig += ("cached input cast",)
            ctx.cache += g.held  # autocast's cached casts live as long as the cache's entries: until the forward returns
            g.held.clear()
            outside = [k for k in range(before) if (g.storages[k].saved or g.storages[k].output) and k not in saved_before]
            layer_alive = Poly.sum(s_.nbytes for s_ in g.storages[before:] if s_.saved)
            last_layer = [Storage(s_.name, s_.nbytes, s_.saved, s_.output) for s_ in g.storages[before:] if s_.saved]
            memo[sig] = _record(g, before, outside, x_in, x, layer_alive, last_layer) + (
                _snapshot(g, i, before, first_node, x_in, x, ctx.cache[cache_before:]),)
            instances[sig] = (first_node, len(g.nodes), before, len(g.storages), x_in, x)
        sigs.append(sig)
        if i == top:
            top_end, top_in = len(g.nodes), x_in
        if gc:  # the checkpoint drops what the layer saved; backward recomputes it
            for s_ in g.storages[before:]:
                s_.saved = False
            g.save(x_in)  # ...and keeps the layer's input
        per_layer_polys.append(layer_alive)
    if ctx.adapter_hooked:  # the ForwardContext holds each layer's post-attention residual until the next layer's
        # pre-hook replaces it (what nothing saves, in a layer below the lowest adapter, lives that long)
        handed = [k for k in range(len(g.storages)) if g.storages[k].handed_on]
        for k, k_next in zip(handed, handed[1:]):
            g.last_use[k] = max(g.last_use.get(k, k), k_next)
    if ctx.kv_extra:  # (set after the loop: every layer's cat reads the output itself, for its gradient)
        lower, copy_k, copy_v = prefix_copies
        g.last_use[ctx.prefix.sid] = copy_v.sid
        g.last_use[lower.sid] = top_storages - 1
        for k in range(top_storages, len(g.storages)):
            name = g.storages[k].name
            if name.endswith("prefix cat k"):
                g.last_use[copy_k.sid] = k
            elif name.endswith("prefix cat v"):
                g.last_use[copy_v.sid] = k
    if gc and ctx.adapter_hooked:
        # each checkpoint's context_fn holds adapters' ForwardContext until its layer's backward: the residual
        # the top layer's hooks left in it outlives the forward
        for st in g.storages[top_storages:]:
            if st.handed_on:
                st.saved = st.pinned = True
    by_kind: dict[str, list] = {}  # what only the checkpoints of one kind of layer hold: gone after the lowest
    if gc:  # the position ids, the rotary cos/sin and the attention masks are inputs of every checkpointed layer
        for pair in rope.values():
            g.save(*pair)
        # (a mask of a kind no layer has is no checkpoint's input)
        g.save(ctx.positions, *[m for kind, m in masks.items() if kind in layer_types])
        if len(set(layer_types)) > 1:  # each layer gets its kind's mask (and Gemma3 its kind's rotary pair)
            for kind, m in masks.items():
                by_kind.setdefault(kind, []).append(m.bytes())
            if len(rope) > 1 and not isinstance(method, Adapter):
                for kind, pair in rope.items():
                    by_kind.setdefault(kind, []).extend(t.bytes() for t in pair)
    x = _final(ctx, x)
    g.touch(*ctx.scope)  # the base model's forward returns
    lm = next(m for m in layout.outer_linears if m.role == "lm_head")
    logits = _trainable_tokens_head(ctx, x, lm, tokens) if tokens and lm.tied else linear(ctx, x, lm, None)
    if mt == "granite":  # logits / logits_scaling
        logits = g.mul(logits, None, "logits / logits_scaling")
    if cfg.get("final_logit_softcapping"):
        t1 = g.unary_no_save(logits, "softcap div")
        th = g.unary_saves_output(t1, "softcap tanh")
        logits = g.unary_no_save(th, "softcap mul")
    g.keep(logits)
    if train.gradient_accumulation_steps > 1:  # (a tied lm_head's gradient waits for the embedding's; so does the
        # gradient the tied head's token adapter sends its delta, which the embedding's adapter shares)
        g.accumulating = frozenset(({lm.path} if lm.tied and ctx.full else set()) | ({_token_key(layout)} if tokens and lm.tied else set()))
    loss = _loss(ctx, logits, v)
    g.touch(*ctx.cache, *g.held)
    if ctx.adapter_hooked:  # AdapterHub's ForwardContext holds the top layer's input and its post-attention residual
        # (what its adapters were handed) until the CausalLM's forward returns
        g.touch(top_in, next((T(ZERO, "fp32", False, k) for k in range(top_storages, len(g.storages))
                              if g.storages[k].handed_on), None))
    g.touch(x)  # the CausalLM's forward holds the last hidden states (and the model's output) until it returns

    total = g.alive_bytes()
    groups: dict[str, list[Poly]] = {}
    for s_ in g.alive():
        groups.setdefault(_component(s_.name), []).append(s_.nbytes)
    terms = {name: Poly.sum(ps) for name, ps in groups.items()}
    steady = per_layer_polys[-1] if per_layer_polys else ZERO
    layer_groups: dict[str, list[Poly]] = {}
    for s_ in last_layer if per_layer_polys else []:
        layer_groups.setdefault(_layer_component(s_.name), []).append(s_.nbytes)
    layer_terms = {name: Poly.sum(ps) for name, ps in layer_groups.items()}

    # the forward of the top layer and the head, each storage freed after its last reader
    below = Poly.sum(st.nbytes for st in g.storages[:top_storages] if st.saved or st.output)
    kept = lambda k: g.storages[k].saved or g.storages[k].output  # noqa: E731
    fwd = forward(g, top_storages, len(g.storages), below, kept)
    moments = [("forward: ", g.storages[k].name, p_) for k, p_ in fwd]
    # the forward of each other kind of layer (a layer LoRA wraps below a frozen top one, the first layer), at the
    # highest layer of that kind, where the most is alive below it: the first of the kind, built op by op, shifted
    # by what the layers between leave alive
    # and of what comes before the layers (the embeddings: DoRA's vocab x width temporaries there)
    extra = [("forward: ", g.storages[k].name, p_) for k, p_ in forward(g, 0, below_layers, ZERO, kept)]
    for sig, (_, _, s0, s1, _, _) in instances.items():
        if sig == sigs[-1]:
            continue
        first, highest = sigs.index(sig), max(j for j, sj in enumerate(sigs) if sj == sig)
        base = Poly.sum([st.nbytes for st in g.storages[:layer_start[highest]] if st.saved or st.output])
        prefix, there = f"layers.{first}.", f"layers.{highest}."
        extra += [("forward: ", g.storages[k].name.replace(prefix, there, 1), p_) for k, p_ in forward(g, s0, s1, base, kept)]
    top_moments, blocks, end, labels, early, gone = _backward_moments(g, loss, total, gc, (top_nodes, top_end, top_storages), top_in,
                                                                sigs, instances, by_kind, (below_layers, first_input, layer_nodes))
    # by the end of the step every layer's backward has freed what it kept of what came before the layers (rotary
    # cos/sin, checkpoints' inputs): the simulation, which runs one layer of each kind, leaves it in ``end`` (but what
    # went after the lowest layer of a kind, ``early``)
    def held_before(skip) -> Poly:  # (what the top layer's backward freed is out of ``end`` already)
        return Poly.sum([st.nbytes for k, st in enumerate(g.storages[:below_layers])
                         if (st.saved or st.pinned) and not st.output and not skip(k, st) and k not in gone])

    proj = _project_in(layout)  # (OPT-350m's)
    copies = emb_trains or _embedding_trains(ctx, "position_embedding")  # modules_to_save copies of the embeddings
    proj_lora = proj is not None and proj.path in ctx.lora_outer
    positions_left = _copies(ctx, "position_embedding") if g.accumulating is None else ZERO
    if ctx.full:
        top_moments += _embedding_backward(ctx, end + early - held_before(lambda k, st: k == first_input), word_emb, lm.tied)
    elif ctx.kv_extra and mt in GEMMA_PREFIX and layout.num_layers == 2:  # (other depths: refused, PEFT fails)
        # (PEFT fills Gemma2/3's cache crosswise, two layers only: the keys of both from the first (2, b, heads, n, d)
        # chunk, the values from the second; each layer's concatenated keys' and values' gradients are alive)
        def cat_bytes(lo, hi) -> dict:
            return {kv: Poly.sum([st.nbytes for st in g.storages[lo:hi] if st.name.endswith(f"prefix cat {kv}")])
                    for kv in "kv"}
        cats = [cat_bytes(layer_start[0], layer_start[1]), cat_bytes(top_storages, len(g.storages))]
        shared = held_before(lambda k, st: st.name.startswith("prefix"))
        sliding = [t == "sliding_attention" for t in layer_types]  # (the cache slices, whatever the prefix's length)
        every = Poly.sum([c[kv] for c in cats for kv in "kv"])
        top_moments += _prefix_backward(ctx, method, end + early - shared - every, kv_dim, ZERO,
                                        crosswise=(every, cats, sliding))
    elif ctx.kv_extra and all(_prefix_kept(ctx, t) == ctx.kv_extra for t in layer_types):
        # (every layer's concatenated keys' and values' gradients: the top layer's, as many times as there are layers;
        # the prefix encoder's own saved tensors are still alive)
        cats = Poly.sum([st.nbytes for st in g.storages[top_storages:] if st.name.endswith(("prefix cat k", "prefix cat v"))])
        shared = held_before(lambda k, st: st.name.startswith("prefix"))
        top_moments += _prefix_backward(ctx, method, end + early - shared - cats * layout.num_layers, kv_dim, cats)
    elif copies and not proj_lora:  # modules_to_save copies of the word and/or position embeddings: their weight gradients come last
        # (the positions' first; untied: copies)
        if emb_trains:  # the word embedding's backward, the last: the positions' indices are gone
            base = end + early - held_before(lambda k, st: k == first_input)
            if proj is not None:  # OPT's project_in ran backward first: its input's gradient (the word embeddings'
                # output's) replaces the layers' input's
                base = base + ctx.rows * ((proj.in_features - proj.out_features) * esize(ctx.dtype))
        else:  # the positions' backward, with its indices and the gradient of the layers' input alive
            base = end + early - held_before(lambda k, st: k == first_input or k == ctx.position_indices)
            if word_emb.rg and proj is not None:  # project_in's backward ran first: its input's gradient is the
                # word embeddings' output's .grad (that output is a leaf under checkpointing)
                base = base + ctx.rows * (proj.in_features * esize(ctx.dtype))
            elif word_emb.rg and emb_lora is None:  # that leaf's AccumulateGrad ran first, on the gradient the sum
                # hands both of its inputs: shared, it is cloned
                base = base + word_emb.bytes()
        # (the word embedding's moment has the positions' copy's gradient made before it: kept as its .grad, or, with
        # gradient accumulation, added into the .grad in place and gone)
        made = _copies(ctx, "embedding") + (positions_left if emb_trains else _copies(ctx, "position_embedding"))
        top_moments.append(("backward: ", "embeddings' weight gradients", base + made))
    if (emb_lora is not None or proj_lora or ctx.position_lora or tokens or n_virtual) and x_first.fn is not None and not ctx.full:
        # LoRA on the input embedding, on GPT-2's positions or on OPT's project_in, trainable tokens, the virtual
        # tokens' prompts (prompt tuning, P-tuning): their backward,
        # after every layer's (and a position embedding copy's, whose gradient stays) with the gradient of the
        # layers' input still alive; what its own nodes saved is alive until they run (the simulated backward frees it)
        own = {sid for node in g.nodes[:layer_nodes] for sid in node.saved}
        pos_copy = proj_lora and _embedding_trains(ctx, "position_embedding")
        base = end + early - held_before(lambda k, st: k == first_input or k in own or (pos_copy and k == ctx.position_indices)) - x_first.bytes()
        if g.accumulating is None and not proj_lora:
            base = base + _copies(ctx, "position_embedding")
        run = backward(g, x_first.fn, 0, ZERO, g.alive_ids(), first_grad=x_first.bytes(), sum_leaves=proj_lora and copies)
        if proj_lora and copies:
            pe_node = ctx.position_node if pos_copy else -1
            indices = g.storages[ctx.position_indices].nbytes if pos_copy else ZERO
            after = positions_left - indices
            top_moments += [("backward: ", g.nodes[n].name, base + p_ + (after if n < pe_node else ZERO)) for n, p_ in run.moments]
            if pos_copy:
                top_moments.append(("backward: ", "embeddings' weight gradients", base + run.start_of[pe_node] + _copies(ctx, "position_embedding")))
            if emb_trains:
                top_moments.append(("backward: ", "embeddings' weight gradients",
                                    base + run.end - indices + _copies(ctx, "embedding") + positions_left))
        else:
            top_moments += [("backward: ", g.nodes[n].name, base + p_) for n, p_ in run.moments]
    # which moments hold the loss's labels (for the batch-1 model, :meth:`ActivationModel.with_batch_one_labels`)
    # (2: the padded labels too, while the loss function runs)
    hi = ctx.padded_labels_until
    labels = (tuple(2 if ctx.labels <= k <= hi else int(k >= ctx.labels) for k, _ in fwd) + (0,) * len(extra)
              + tuple(int(f) for f in labels) + (0,) * (len(top_moments) - len(labels)))
    return total, terms, steady, layer_terms, moments + extra + top_moments, blocks, labels


def _finish(*raw) -> ActivationModel:
    """The activation model of the symbolic pass's outputs (what _build returns)."""
    names, polys = _outputs(*raw)
    return _model(names, [(p_.db, p_.ds) for p_ in polys], [p_.v for p_ in polys])


def _outputs(total: Poly, terms: dict[str, Poly], steady: Poly, layer_terms: dict[str, Poly], moments: list,
             blocks: list, labels: tuple) -> tuple[tuple, list[Poly]]:
    """The pass's outputs flattened: their names, and the polynomials in the order :func:`_model` reads them
    (a recording replays this list)."""
    polys = [total, *terms.values(), steady, *layer_terms.values(), *(m[2] for m in moments)]
    for profile, starts in blocks:
        polys += [p_ for _, p_ in profile] + [s for _, s in starts]
    names = (tuple(terms), tuple(layer_terms), tuple((kind, name) for kind, name, _ in moments),
             tuple((tuple(name for name, _ in profile), tuple(j for j, _ in starts)) for profile, starts in blocks), labels)
    return names, polys


def _model(names: tuple, degrees: list, packed) -> ActivationModel:
    """The activation model from the outputs' packed integers and degrees (:func:`_outputs`); its moments stay
    packed until :meth:`ActivationModel.live_at` or ``peak_candidates`` reads them."""
    raw = Poly._raw
    term_names, layer_names, moment_names, block_names, labels = names
    nt, nl, nm = len(term_names), len(layer_names), len(moment_names)
    head = 2 + nt + nl
    polys = [raw(v, db, ds) for v, (db, ds) in zip(packed[:head], degrees)]
    return ActivationModel(activations=polys[0], terms=dict(zip(term_names, polys[1:1 + nt])), per_layer=polys[1 + nt],
                           layer_terms=dict(zip(layer_names, polys[2 + nt:])),
                           moments=(_plan(moment_names, block_names), tuple(packed[head:]), tuple(degrees[head:])),
                           labels=labels)


def _candidates(total: Poly, names: list, moments: list, blocks: list) -> dict[str, Poly]:
    """The end of forward and the moments that can set the peak (labelled only if they do). ``moments``: the
    top layer's and the head's, as (packed integer, degrees); ``blocks``: the layers below, by kind, as (op
    names, the profile's (packed, degrees), each layer's (index, start, degrees)). Of each kind, the layers
    that start their backward with the most live bytes somewhere on the grid are taken (the bottom one when
    every layer adds more than it frees); their moments are the start plus the profile, added as coefficient
    rows, so only the winners become polynomials."""
    ends = []
    for _, profile, starts in blocks:
        if len(starts) > 2 and all(starts[i + 1][1] - starts[i][1] == starts[1][1] - starts[0][1] for i in range(1, len(starts) - 1)):
            starts = [starts[0], starts[-1]]  # evenly spaced: the largest is at one end, wherever on the grid
        ends.append(starts)
    # every coefficient row decoded at once: the moments, then each kind's profile and its candidate starts
    flat = [v for v, _ in moments]
    for (_, profile, _), starts in zip(blocks, ends):
        flat += [v for v, _ in profile] + [s for _, s, _ in starts]
    m_all = coefficient_matrix(flat)
    rows = [m_all[:len(moments)]]
    where: list = [(k,) for k in range(len(moments))]
    at = len(moments)
    for b, ((_, profile, _), starts) in enumerate(zip(blocks, ends)):
        m_profile = m_all[at:at + len(profile)]
        m_starts = m_all[at + len(profile):at + len(profile) + len(starts)]
        at += len(profile) + len(starts)
        for k in winners_matrix(m_starts):
            j, s, s_deg = starts[k]
            rows.append(m_profile + m_starts[k])
            where += [(b, j, s, s_deg, m) for m in range(len(profile))]
    cands = {"end of forward": total}
    for k in winners_matrix(np.vstack(rows)):
        w = where[k]
        if len(w) == 1:
            kind, name = names[w[0]]
            v, (db, ds) = moments[w[0]]
        else:
            b, j, s, (sb, ss), m = w
            kind = _below(j)
            name = blocks[b][0][m]
            pv, (db, ds) = blocks[b][1][m]
            v, db, ds = s + pv, max(db, sb), max(ds, ss)
        _put(cands, kind, name, Poly._raw(v, db, ds))
    return cands


def _recompute(g: Graph, lo: int, hi: int, first_storage: int, end_storage: int, x_in: T) -> tuple:
    """What a checkpointed layer's first node that unpacks a saved tensor recomputes: (its nodes lo..hi, the
    storages it saved that the checkpoint dropped, its first storage, its end, the storages held past the
    layer's backward, the bytes the layer above held so: none, for the caller to set), the bytes this layer holds
    so, and whether its input is among them.

    A storage ``handed_on`` (the residual adapters' ForwardContext keeps) is recomputed too, but the copy the
    layer above left stands in for it until then. The recomputed copy comes with the recompute's own graph,
    whose nodes keep what they saved: what the layer saved before it (its attention block, the layer's input if
    its first norm saved it) is held until the layer below's recompute replaces it."""
    storages = g.storages
    sids = [k for k in range(first_storage, end_storage) if storages[k].savers and not storages[k].saved
            and not storages[k].handed_on]
    # non-reentrant checkpointing stops as soon as the last tensor of the original forward is packed again.
    # An op packs the inputs it saves before it runs (its output does not exist yet) and its own output after
    last = max((nd for nd in g.nodes[lo:hi] if nd.saved or nd.param), key=lambda nd: nd.at, default=None)
    end = first_storage if last is None else last.at + 1 if last.at in last.saved else last.at
    end = max(end, sids[-1] + 1 if sids else end)
    m = next((k for k in range(first_storage, end) if storages[k].handed_on), None)
    if m is None:
        return (lo, hi, sids, first_storage, end, (), ZERO), ZERO, False
    held = [k for k in sids if k < m]
    in_held = x_in.sid is not None and any(x_in.sid in nd.saved and nd.at < m for nd in g.nodes[lo:hi])
    held_bytes = Poly.sum([storages[k].nbytes for k in held]) + (x_in.bytes() if in_held else ZERO)
    return (lo, hi, sids, first_storage, end, held, ZERO), held_bytes, in_held


def _backward_moments(g: Graph, loss: T, total: Poly, gc: bool, top: tuple[int, int, int], top_in: T, sigs: list,
                      instances: dict, by_kind: dict | None = None, before_layers: tuple = (0, None, 0)) -> tuple:
    """Simulate backward from the loss through the head and the top decoder layer, node by node; returns (kind,
    op, live bytes) at every moment. The layers below repeat the profile of their kind's layer (the top one's,
    or the first of their kind simulated on its own), each starting from where the layer above left live bytes
    (its saved tensors freed, its weight gradients added): returned as blocks of (a kind's profile, the start
    of each layer of that kind), for :func:`_finish` to pick the layers that can set the peak. ``by_kind``: the
    bytes that only the checkpoints of one kind of layer (``sig[2]``, the layer type) hold, freed once the lowest
    layer of that kind is done; returned too, the sum of those freed before the bottom layer's backward ends.
    ``before_layers``: (how many storages were made before the layers, the first layer's input's, the first layer
    node): what only the layers' nodes save of those (rotary cos/sin, an sdpa mask) goes inside the bottom layer's
    backward, after the last of its nodes that saves it (without checkpointing)."""
    lo, hi, first_storage = top
    alive = g.alive_ids()
    rc, held, in_held = _recompute(g, lo, hi, first_storage, len(g.storages), top_in) if gc else (None, ZERO, False)
    run = backward(g, loss.fn, lo, total, alive, rc)
    # what was made before the layers and only the top layer's nodes saved is gone already (not held to the end)
    gone = {k for k in range(before_layers[0]) if k in alive and k not in run.alive}
    nodes = g.nodes
    out = [("backward: ", nodes[n].name, p) for n, p in run.moments]
    labels = [n == loss.fn for n, _ in run.moments]  # the loss node's own moments: it still keeps the labels
    first = max((n for n in run.start_of if lo <= n < hi), default=None)  # the top layer's first node in backward

    def kept_input(x_in: T, in_held: bool) -> Poly:  # a checkpoint keeps its layer's input until the layer's
        # backward is done (or the recompute's graph, until the layer below's recompute)
        return x_in.bytes() if gc and x_in.sid is not None and not in_held else ZERO

    if len(sigs) < 2 and first is not None:  # the one layer is the bottom one too: its checkpoint's input (the
        # embeddings' output) is gone once its backward is done, as the bottom layer's is below (``delta``)
        return out, [], run.end - kept_input(top_in, in_held), labels, ZERO, gone
    if len(sigs) < 2 or first is None:
        return out, [], run.end, labels, ZERO, gone

    start = run.start_of[first]
    top_delta = run.end - start - kept_input(top_in, in_held)
    # each kind's checkpoint recompute (and what it holds past its backward, for the layer below to free); where
    # kinds alternate (adapters' leave_out), a layer frees what the one above it held, not what it holds itself:
    # profiles are kept per (kind, kind above)
    recomputes = {sigs[-1]: (rc, held, in_held)}
    for sig in dict.fromkeys(sigs[:-1]):
        if sig not in recomputes:
            f0, f1, s0, s1, x_in, x_out = instances[sig]
            needs = x_out.fn is not None and f0 <= x_out.fn < f1
            recomputes[sig] = (_recompute(g, f0, f1, s0, s1, x_in) if gc else (None, ZERO, False)) if needs else None
    frees = {sig: rec[1] if rec is not None else ZERO for sig, rec in recomputes.items()}
    holds = {sig: bool(f) for sig, f in frees.items()}  # (one check per kind)

    def key_of(j: int) -> tuple:  # layer j's profile: its kind, and the kind above it where that one holds bytes
        return sigs[j], sigs[j + 1] if holds[sigs[j + 1]] else None

    profiles: dict[tuple, list] = {}
    at_node: dict[tuple, list] = {}
    ranges = {sigs[-1]: (lo, hi)}
    delta: dict[tuple, Poly] = {}
    # what was made before the layers and only one kind's nodes save (Gemma3's other rotary pair): the first of
    # the kind, run on its own, must not free it (its copies above save it too, uncounted); it goes once the
    # lowest layer of that kind is done
    savers_of: dict[int, list] = {}
    for n_, node in enumerate(nodes if not gc else ()):  # (checkpointing: ``by_kind``)
        for sid in node.saved:
            if sid < before_layers[0] and sid in alive and sid != before_layers[1]:  # (not the layers' input)
                savers_of.setdefault(sid, []).append(n_)
    kind_only: dict[tuple, set] = {}
    for j in range(len(sigs) - 1):
        sig, key = sigs[j], key_of(j)
        if key in profiles:
            continue
        freed = frees[key[1]] if key[1] is not None else ZERO
        if sig == sigs[-1]:  # the top's kind as a lower layer: its profile from the loss, as the top's
            rc_, _, in_held_ = recomputes[sig]
            r = backward(g, loss.fn, lo, total, alive, rc_[:6] + (freed,)) if freed else run
            profiles[key] = [(nodes[n].name, p - start) for n, p in r.moments if lo <= n < hi]
            at_node[key] = [n for n, _ in r.moments if lo <= n < hi]
            delta[key] = r.end - start - kept_input(top_in, in_held_)
            continue
        if recomputes[sig] is None:  # nothing in it requires grad
            profiles[key], delta[key] = [], ZERO
            continue
        f0, f1, s0, s1, x_in, x_out = instances[sig]
        rc_, _, in_held_ = recomputes[sig]
        own = kind_only.setdefault(sig, {k for k, ns in savers_of.items() if all(f0 <= n_ < f1 for n_ in ns)})
        r = backward(g, x_out.fn, f0, ZERO, alive - own, rc_[:6] + (freed,) if freed else rc_, first_grad=x_out.bytes())
        at = r.start_of[max(n for n in r.start_of if f0 <= n < f1)]
        profiles[key] = [(nodes[n].name, p - at) for n, p in r.moments if f0 <= n < f1]
        at_node[key], ranges[sig] = [n for n, _ in r.moments if f0 <= n < f1], (f0, f1)
        delta[key] = r.end - at - kept_input(x_in, in_held_)
    lowest: dict = {}
    lowest_sig: dict = {}
    for j, sig in enumerate(sigs):
        lowest.setdefault(sig[2], j)
        lowest_sig.setdefault(sig, j)
    # what was made before the layers and only the layers' nodes save goes inside the backward of the lowest layer
    # that saves it (without checkpointing): layer -> (the node after which each goes, its bytes)
    frees_at = _pre_layer_frees(g, sigs, ranges, before_layers) if not gc else {}
    lifted = {k for fr in frees_at.values() for _, _, k in fr}
    early = ZERO
    starts: dict[tuple, list] = {}
    for j in range(len(sigs) - 2, -1, -1):  # live bytes as layer j's backward starts
        start = start + (top_delta if j == len(sigs) - 2 else delta[key_of(j + 1)])
        gone_here = []  # the last checkpoint of that kind is gone, and what only that kind saved
        if by_kind and lowest[sigs[j + 1][2]] == j + 1:
            gone_here += by_kind.get(sigs[j + 1][2], [])
        if kind_only.get(sigs[j + 1]) and lowest_sig[sigs[j + 1]] == j + 1:
            gone_here += [g.storages[k].nbytes for k in sorted(kind_only[sigs[j + 1]]) if k not in lifted]
        gone_here += [b_ for _, b_, _ in frees_at.get(j + 1, ())]  # (the top layer's own run freed its own already)
        if gone_here:
            freed = Poly.sum(gone_here)
            start, early = start - freed, early + freed
        starts.setdefault(key_of(j), []).append((j, start))
    bottom_key = key_of(0)
    end = start + delta[bottom_key]  # the bottom layer's backward done
    blocks, own_blocks = [], []
    for key, js in starts.items():  # a layer that frees some of them gets a profile of its own
        if not profiles[key]:
            continue
        plain = [jp for jp in js[::-1] if jp[0] not in frees_at]
        if plain:
            blocks.append((profiles[key], plain))
        for jp in js[::-1]:
            if jp[0] in frees_at:
                fr = frees_at[jp[0]]
                own_blocks.append((jp[0], ([(name, p - Poly.sum([b_ for n_free, b_, _ in fr if n < n_free]))
                                            for (name, p), n in zip(profiles[key], at_node[key])], [jp])))
    blocks += [blk for _, blk in sorted(own_blocks, key=lambda o: -o[0])]  # (the bottom layer's last)
    return out, blocks, end, labels, early, gone


def _pre_layer_frees(g: Graph, sigs: list, ranges: dict, before_layers: tuple) -> dict[int, list]:
    """What was made before the layers and only the layers' nodes save (rotary cos/sin, an sdpa mask), by the layer
    whose backward frees it: the lowest layer whose kind saves it (its kind's nodes stand in for it), after the last
    of its nodes that saves it -- {layer: [(that node, the bytes, the storage)]}. What only the top layer saves is left
    out: its own simulation frees it. (Before, the bottom layer alone freed them, as its backward started where it
    saved none: a layer between it and the top that saved them held them to its end.)"""
    count, first_input, lo = before_layers
    if not count or not ranges:
        return {}
    nodes, storages = g.nodes, g.storages
    hi = max(r[1] for r in ranges.values())
    outer = {sid for n in [*range(lo), *range(hi, len(nodes))] for sid in nodes[n].saved}
    pre = {k for k in range(count) if storages[k].saved and not storages[k].output and not storages[k].pinned
           and k != first_input and k not in outer}
    if not pre:
        return {}
    last_saver: dict[tuple, dict[int, int]] = {}  # each kind: storage -> its last saver in backward (the lowest node)
    for sig, (f0, f1) in ranges.items():
        found = last_saver[sig] = {}
        for n in range(f1 - 1, f0 - 1, -1):
            for sid in nodes[n].saved:
                if sid in pre:
                    found[sid] = n
    out: dict[int, list] = {}
    top = len(sigs) - 1
    for k in sorted(pre):
        for j, sig in enumerate(sigs):
            n_free = last_saver.get(sig, {}).get(k)
            if n_free is not None:
                if j < top:
                    out.setdefault(j, []).append((n_free, storages[k].nbytes, k))
                break
    return out


def _embedding_backward(ctx: Ctx, end: Poly, word_emb: T, tied: bool) -> list:
    """The last moments of a full fine-tuning backward, after every layer's: the word embedding's backward makes
    its weight gradient, a (vocab, width) tensor, while the gradient of its output is still alive. With the
    lm_head tied to it, the lm_head's part of that gradient waits in autograd's input buffer, and the two are
    summed out of place (after the output's gradient is freed): three (vocab, width) tensors at once. Learned
    position embeddings (GPT-2, OPT) were looked up after the word embeddings: their backward comes first, and
    their weight gradient is there already (under gradient accumulation it was added into .grad and freed, as
    OPT's project_in's was)."""
    def size(kind: str) -> Poly:
        return Poly.sum([Poly.const(math.prod(q.shape) * esize(ctx.dtype)) for q in ctx.layout.outer_params if q.kind == kind])
    fresh = ctx.g.accumulating is None  # the weight gradients made before this one are still alive
    weight = size("embedding")
    if fresh:
        end = end + size("position_embedding")
    proj = _project_in(ctx.layout)
    if proj is not None:  # OPT's project_in ran backward before them: its weight gradient made, its input's gradient
        # (the word embeddings' output's) in place of the wider one the simulation leaves at the layers' input
        e = esize(ctx.dtype)
        end = end + ctx.rows * ((proj.in_features - proj.out_features) * e)
        if fresh:
            end = end + Poly.const(proj.in_features * proj.out_features * e)
    out = [("backward: ", "embed_tokens weight gradient", end + weight)]
    if tied:
        out.append(("backward: ", "embed_tokens + tied lm_head gradients summed", end - word_emb.bytes() + weight * 2))
    return out


def _prefix_backward(ctx: Ctx, method: Method, base: Poly, kv_dim: int, cats: Poly, crosswise=None) -> list:
    """The last moments of a prefix-tuning backward, after every layer's: each layer's keys' and values' gradients
    are gathered into one (2, b, heads, n, d) tensor (select_backward for each, then added), the top layer's
    first: its gathered gradient is made while every lower layer's whole concatenated key and value gradients
    (``cats`` each: the prefix's part is a view of them) are alive; the split's backward cats them all (b x n x
    2L x kv, in the model's dtype), the view's backward makes the permuted gradient contiguous (a clone), the
    cast's backward makes it fp32; then the prefix encoder's backward: the embedding's dense weight gradient, or
    with prefix_projection the two linears' (input gradient, weight, bias) and tanh's. ``base``: what else is
    alive after the bottom layer (outputs, the encoder's saved tensors, the other gradients): the simulation's
    live bytes then, less each layer's whole concatenated key/value gradients, which it holds where PyTorch
    holds the gathered (2, b, heads, n, d) ones."""
    e = esize(ctx.dtype)
    full = ctx.prefix.numel  # b x n x 2L x kv
    gathered = full * e
    one = B * (ctx.kv_extra * 2 * kv_dim * e)  # one layer's gathered gradient
    if crosswise is None:
        out = [("backward: ", "prefix gather (the top layer's key and value gradients added)",
                base + cats * (ctx.layout.num_layers - 1) + one * 3)]
    else:
        out = _crosswise_gather(base, one, B * (ctx.kv_extra * kv_dim * e), *crosswise)
    out += [("backward: ", "prefix split (cat of the layers' gradients)", base + gathered * 2),
           ("backward: ", "prefix view (contiguous)", base + gathered * 2)]
    grad = base + gathered
    if ctx.dtype != "fp32":
        out.append(("backward: ", "prefix cast to fp32", grad + full * 4))
        grad = base + full * 4
    if getattr(method, "prefix_projection", False):
        layers, td, _ = method.resolved(ctx.cfg)  # type: ignore[attr-defined]
        ehs = method.encoder_hidden_size or td  # type: ignore[attr-defined]
        rows = B * ctx.kv_extra
        width = layers * 2 * td
        grad_in = rows * (ehs * 4)
        w2 = Poly.const(ehs * width * 4 + width * 4)
        out.append(("backward: ", "prefix_encoder.transform.2 gradients", grad + grad_in + w2))
        # (under gradient accumulation transform.2's weight gradients were added into .grad and freed)
        kept = w2 if ctx.g.accumulating is None else ZERO
        after = base + grad_in + kept  # the fp32 gradient goes
        out.append(("backward: ", "prefix_encoder tanh backward", after + grad_in))
        w1 = Poly.const(td * ehs * 4 + ehs * 4)
        out.append(("backward: ", "prefix_encoder.transform.0 gradients", base + kept + grad_in + rows * (td * 4) + w1 - grad_in))
    else:
        out.append(("backward: ", "prefix_encoder embedding gradient",
                    grad + Poly.const(ctx.kv_extra * 2 * ctx.layout.num_layers * kv_dim * 4)))
    return out


def _crosswise_gather(base: Poly, one: Poly, half: Poly, every: Poly, cats: list, sliding: list) -> list:
    """The gather of Gemma2/3's two-layer prefix (GEMMA_PREFIX): layer l's keys are select(chunk 0, l), its values
    select(chunk 1, l), made in that order per layer; on a sliding layer each is then sliced to its last
    ``sliding_window - 1`` positions by the cache (DynamicSlidingWindowLayer: a slice node even where the prefix is
    shorter). The engine runs the later-made nodes first: the top layer's
    slices' backward (v, then k: each a zero-filled (b, heads, n, d) tensor, ``half``, its input -- a view of
    that cat's gradient, ``cats[l][kv]`` -- freed as it returns), then its selects' (``one`` each: the first
    gradient of each chunk); then the bottom layer's, whose selects' gradients are added into the chunks' (out of
    place: both and the sum alive at the add). ``base``: as in :func:`_prefix_backward`, every cat's gradient out."""
    cur = base + every
    out = []
    for layer, name in ((1, "top"), (0, "bottom")):
        freed = cats[layer]  # each cat's gradient (keys, values)
        if sliding[layer]:
            for kv in ("v", "k"):
                out.append(("backward: ", f"prefix {name} layer's {kv} slice backward", cur + half))
                cur = cur + half - freed[kv]
            freed = {"k": half, "v": half}
        for kv in ("v", "k"):
            out.append(("backward: ", f"prefix {name} layer's {kv} select backward", cur + one))
            cur = cur + one - freed[kv]
            if layer == 0:
                out.append(("backward: ", f"prefix {name} layer's {kv} gradients added", cur + one))
                cur = cur - one
    return out


def _prefix_kept(ctx: Ctx, layer_type: str) -> Any:
    """Prefix tuning's virtual tokens a layer's attention sees. PEFT builds Gemma2/3's cache from the config
    (DynamicCache(config=...)): a sliding layer's cache keeps only the last ``sliding_window - 1`` of them (the
    mask's key length follows, get_mask_sizes)."""
    if layer_type == "sliding_attention" and ctx.cfg["model_type"] in ("gemma2", "gemma3_text"):
        return min(ctx.kv_extra, ctx.cfg["sliding_window"] - 1)
    return ctx.kv_extra


def _final(ctx: Ctx, x: T) -> T:
    """The final norm (and OPT's project_out) before the lm_head."""
    mt = ctx.cfg["model_type"]
    copied = any(_copied(ctx, q.path.rsplit(".", 1)[0], None) for q in ctx.layout.outer_params if q.kind == "norm")
    if mt in ("gpt2", "gpt_neox", "starcoder2"):
        return layer_norm(ctx, x, w_rg=ctx.full or ctx.norm_bias, name="final norm", copied=copied)
    if mt == "opt":
        if ctx.cfg["do_layer_norm_before"] and not ctx.cfg["_remove_final_layer_norm"]:
            x = layer_norm(ctx, x, w_rg=_ln_affine(ctx.cfg) and (ctx.full or ctx.norm_bias), name="final norm", copied=copied)
        proj = next((m for m in ctx.layout.outer_linears if m.role == "project_out"), None)
        return linear(ctx, x, proj, None) if proj else x
    style = {"gemma": "gemma", "gemma2": "gemma", "gemma3_text": "gemma", "olmo2": "olmo2"}.get(mt, "llama")
    return rms_norm(ctx, x, ctx.cfg["hidden_size"], w_rg=ctx.full or copied, style=style, name="final norm")


_COMPONENTS = (
    ("layers.", "decoder layers"), ("rotary", "rotary cos/sin"), ("final norm", "final norm"),
    ("lm_head", "logits"), ("softcap", "logits"), ("log_softmax", "loss (log-softmax, labels)"),
    ("shift_labels", "loss (log-softmax, labels)"), ("loss", "loss (log-softmax, labels)"),
    ("total_weight", "loss (log-softmax, labels)"), ("embed", "embeddings"), ("wte", "embeddings"),
    ("position ids", "positions and masks"), ("causal mask", "positions and masks"), ("attention mask", "positions and masks"),
    ("mlp_head", "prompt encoder"), ("prompt_encoder", "prompt encoder"), ("cat(prompts", "embeddings"),
)


def _component(name: str) -> str:
    """The named term of the activations breakdown a storage belongs to."""
    for prefix, component in _COMPONENTS:
        if name.startswith(prefix):
            return component
    return "other (embedding projections, dropout masks)"


def _layer_component(name: str) -> str:
    """Component of a decoder layer's saved tensor (for the per-layer breakdown)."""
    rest = name.split(".", 2)[2] if name.startswith("layers.") else name
    if any(k in rest for k in ("lora input", "lora_A", "lora_B", "lora_dropout", "dora", "ia3", "_adapter")):
        return "adapter branches (LoRA/DoRA fp32 inputs, IA3, bottleneck)"
    if "norm" in rest or rest.startswith("ln") or " mean" in rest or " rstd" in rest:
        return "norms"
    if any(k in rest for k in ("sdpa", "rotary", "repeat_kv", "softmax", "probs", "q reshape", "k transpose", "v reshape",
                               "attn out", "prefix cat", "scores", "mask", "self_attn", "attention", "q * scaling", "qkv")):
        return "attention"
    if any(k in rest for k in ("mlp", "act", "gelu", "relu", "fc", "gate", "up_proj", "dense_h_to_4h", "c_fc", "pow", "tanh", "0.5*x", "1+tanh")):
        return "mlp"
    return "residual stream and dropout"


def _record(g: Graph, before: int, outside: list[int], x_in: T, x: T, layer_alive: Poly, last_layer: list) -> tuple:
    """What a later identical layer needs: its storages in bulk (saved; kept as outputs), its own output storage
    kept apart (the next layer may save it), and the storages outside it that it saved."""
    out_idx = x.sid if x.sid is not None and x.sid >= before else None
    inner = [s_ for k, s_ in enumerate(g.storages[before:], before) if k != out_idx]
    saved = Poly.sum(s_.nbytes for s_ in inner if s_.saved)
    kept = Poly.sum(s_.nbytes for s_ in inner if s_.output and not s_.saved)
    out_storage = None if out_idx is None else Storage(g.storages[out_idx].name, g.storages[out_idx].nbytes,
                                                       g.storages[out_idx].saved, g.storages[out_idx].output)
    return saved, kept, out_storage, outside, x_in.sid, x, layer_alive, last_layer


def _replay(g: Graph, rec: tuple, x_in: T, i: int, cache: list, gc: bool) -> tuple[T, Poly, list]:
    """Append a recorded layer again, in bulk (its input stands in for the recorded one's). What only the
    cache holds (prefix tuning's concatenated keys and values, when no node saved them; autocast's cached
    copies of trainable weights, under checkpointing, which drops what the layer saved) is one storage, added
    to ``cache``: it lives until the forward returns."""
    saved, kept, out_storage, outside, rec_in, out, layer_alive, last_layer, c = rec
    prefix = f"layers.{i}."
    if saved:
        g.storages.append(Storage(prefix + "replayed (saved)", saved, saved=True))
    if kept:
        g.storages.append(Storage(prefix + "replayed (kept)", kept, output=True))
    held = {t.sid for t in c.cache if t.sid is not None and 0 <= t.sid - c.before < len(c.storages)
            and (gc or not c.storages[t.sid - c.before][2]) and not c.storages[t.sid - c.before][3]}
    if held:
        g.storages.append(Storage(prefix + "replayed (cache)", Poly.sum(c.storages[k - c.before][1] for k in sorted(held))))
        cache.append(T(g.storages[-1].nbytes, "bool", False, len(g.storages) - 1))  # bytes only: numel x 1
    sid = out.sid
    if out_storage is not None:
        g.storages.append(Storage(prefix + out_storage.name.split(".", 2)[-1], out_storage.nbytes, out_storage.saved, out_storage.output))
        sid = len(g.storages) - 1
    for k in outside:
        target = x_in.sid if k == rec_in else k
        if target is not None:
            g.storages[target].saved = True
    return T(out.numel, out.dtype, out.rg, sid), layer_alive, last_layer


@dataclass
class _LayerCopy:
    """A layer built op by op, as a later identical layer (the top one) copies it: storages, nodes, reads."""

    prefix: str
    before: int
    first_node: int
    storages: list  # (name, nbytes, saved, output, savers, pinned, handed_on) as built
    nodes: list
    last_use: list  # (storage, last reader) with the reader inside the layer
    outside_savers: dict  # storage outside the layer -> nodes of the layer that saved it
    x_in: T
    out: T
    cache: list


def _snapshot(g: Graph, i: int, before: int, first_node: int, x_in: T, out: T, cache: list) -> _LayerCopy:
    after = len(g.storages)
    outside: dict[int, int] = {}
    for node in g.nodes[first_node:]:
        for sid in node.saved:
            if sid < before:
                outside[sid] = outside.get(sid, 0) + 1
    return _LayerCopy(
        f"layers.{i}.", before, first_node,
        [(s.name, s.nbytes, s.saved, s.output, s.savers, s.pinned, s.handed_on) for s in g.storages[before:]],
        g.nodes[first_node:], [(k, t) for k, t in g.last_use.items() if before <= t < after], outside, x_in, out, list(cache))


def _copy_layer(g: Graph, ctx: Ctx, rec: tuple, x_in: T, i: int) -> tuple:
    """Append an op-by-op copy of a recorded identical layer (cheaper than building it again)."""
    saved, kept, out_storage, outside, rec_in, out, layer_alive, last_layer, c = rec
    ds, dn = len(g.storages) - c.before, len(g.nodes) - c.first_node
    end_s, end_n = c.before + len(c.storages), c.first_node + len(c.nodes)
    prefix = f"layers.{i}."

    def sid(k):
        if k is None:
            return None
        if c.before <= k < end_s:
            return k + ds
        return x_in.sid if k == c.x_in.sid else k

    def fn(f):
        return f + dn if f is not None and c.first_node <= f < end_n else f

    def name(s):
        return prefix + s[len(c.prefix):] if s.startswith(c.prefix) else s

    g.storages += [Storage(name(n), *rest) for n, *rest in c.storages]
    g.nodes += [Node(tuple(fn(f) for f in nd.inputs), tuple(sid(k) for k in nd.saved), nd.prog, name(nd.name), nd.multi, nd.param,
                     nd.at + ds if nd.at >= c.before else nd.at) for nd in c.nodes]
    last_use = g.last_use
    for k, t in c.last_use:
        last_use[sid(k)] = t + ds
    for k, n in c.outside_savers.items():
        st = g.storages[sid(k)]
        st.savers += n
        st.saved = True
    ctx.cache += [T(t.numel, t.dtype, t.rg, sid(t.sid), fn(t.fn)) for t in c.cache]
    new_in = T(c.x_in.numel, c.x_in.dtype, c.x_in.rg, x_in.sid, fn(c.x_in.fn))
    return T(c.out.numel, c.out.dtype, c.out.rg, sid(c.out.sid), fn(c.out.fn)), new_in, layer_alive, last_layer


def _lora_embedding(ctx: Ctx, base: T, width: int, positions: bool = False) -> T | None:
    """PEFT's lora.Embedding on the input embedding (vanilla LoRA): ``after_A = F.embedding(ids, lora_embedding_A.T)``
    (fp32, kept for B's gradient), ``adapter_output = (after_A @ lora_embedding_B.T) * scaling`` (times the
    embedding's own scale where the module has one, Gemma's), ``result + adapter_output`` (fp32: the adapter's
    dtype wins), cast back to the base's dtype. ``adapter_output`` stays bound until the module returns. None when
    LoRA does not wrap the input embedding. ``positions``: on GPT-2's position embedding instead, which looks up
    the (1, s) position ids: one row per position, whatever the batch."""
    m, g, layout = ctx.method, ctx.g, ctx.layout
    if not isinstance(m, LoRA):
        return None
    hit = m.position_embedding_target(layout, ctx.cfg) if positions else m.input_embedding_target(layout, ctx.cfg)
    if hit is None:
        return None
    vocab = hit.module.shape[0]
    r = m.layer_rank(layout, hit.path, None)
    name = f"{hit.path} lora"
    rows = ctx.seq if positions else ctx.rows
    if m.use_dora:
        return _dora_embedding(ctx, base, width, vocab, r, name, hit.path, rows)
    out = _embedding_ab(g, rows, _embedding_views(g, vocab, r, width, name), vocab, r, width, name)
    adapter = g.mul(out, None, f"{name} scaling")
    if ctx.cfg["model_type"] in ("gemma", "gemma2", "gemma3_text"):  # * embed_scale.to(adapter_output.dtype): the
        # buffer is in the model's dtype; a 0-dim copy where that differs, kept by the mul
        sid = None if _buffer_dtype(ctx) == adapter.dtype else g.new(Poly.const(1), adapter.dtype, False, f"{name} embed_scale").sid
        adapter = g.mul(adapter, T(Poly.const(1), adapter.dtype, False, sid), f"{name} embed_scale", numel=adapter.numel)
    summed = g.add(base, adapter, f"{name} add")
    result = g.to(summed, base.dtype, f"{name} cast")
    g.touch(adapter)
    return result


def _token_key(layout: Layout) -> str:
    """The gradient key of the trainable tokens' delta (shared by the embedding's layer and a tied head's)."""
    return f"{layout.input_embedding} trainable_tokens_delta"


def _token_rows(ctx: Ctx, n: int, width: int, vocab: int, name: str) -> T:
    """TrainableTokensLayer.get_merged_weights: ``W.index_copy(0, index, delta.to(W))``, a whole vocab x width copy
    of the weight in its dtype with the delta's rows written in (``index``, a new int64 tensor of the rows on the
    device, is kept by its backward). Its gradient (vocab x width, the embedding's or the head's) is gathered back
    to the rows (``index_select``), cast to the fp32 delta and added into its .grad."""
    g = ctx.g
    wdt = ctx.dtype
    key = _token_key(ctx.layout)
    # (torch.tensor(indices).to(W.device): on the CPU the .to is the tensor itself, made outside any op)
    idx = g.new(Poly.const(n), "int64", False, f"{name} token indices") if ctx.device != "cpu" else None
    rows = Poly.const(n * width)
    if wdt != "fp32":  # the delta's cast, kept by index_copy's backward (its source)
        src = g.node(g.new(rows, wdt, True, f"{name} delta.to(weight)"), [None], [("w", key, rows * 4)], name=f"{name} delta.to(weight)")
        grad = ("g", 0, rows * esize(wdt))
    else:
        src, grad = None, ("w", key, rows * 4)
    return g.node(g.new(Poly.const(vocab * width), wdt, True, f"{name} weight.index_copy"), [src], [grad], (idx, src),
                  name=f"{name} weight.index_copy")


def _trainable_tokens(ctx: Ctx, n: int, width: int, vocab: int) -> T:
    """PEFT's TrainableTokensLayer on the input embedding (LoRA's ``trainable_token_indices``, the TrainableTokens
    method): ``F.embedding(ids, W)`` on the merged weight (:func:`_token_rows`), which goes once looked up; its
    backward makes the dense vocab x width gradient of W. The output requires grad whatever the checkpointing."""
    g = ctx.g
    w = ctx.token_weight = _token_rows(ctx, n, width, vocab, "embed_tokens")  # (the caller touches it once
    # the module has returned: after Gemma's embed_scale)
    out = g.new(B * S * width, w.dtype, True, "embed_tokens")
    return g.node(out, [w], [("g", 0, Poly.const(vocab * width * esize(w.dtype)))], name="embed_tokens (trainable tokens)")


def _trainable_tokens_head(ctx: Ctx, x: T, lm: Linear, n: int) -> T:
    """A tied lm_head under trainable tokens: PEFT wraps it with a TrainableTokensLayer tied to the
    embedding's, which runs ``F.linear(x, W)`` on its own merged weight (:func:`_token_rows`, the same delta). That
    weight requires grad: the matmul keeps it (a vocab x width copy, or autocast's cast of it) with its input
    through the backward of the head, and computes its vocab x width gradient (first, then the input's)."""
    g = ctx.g
    vocab, width = lm.out_features, lm.in_features
    w = _token_rows(ctx, n, width, vocab, "lm_head")
    ac = g.autocast
    merged = w
    if ac:  # (autocast casts the weight, then the input; neither is a leaf: not cached)
        w = g.to(w, ac, "lm_head autocast weight (merged)")
        x = g.to(x, ac, "lm_head autocast input")
    out = g.new(ctx.rows * vocab, w.dtype, True, "lm_head")
    prog = [("g", 1, Poly.const(vocab * width * esize(w.dtype)))] + ([("g", 0, x.bytes())] if x.rg else [])
    out = g.node(out, [x, w], prog, (x, w) if x.rg else (x,), name="lm_head (trainable tokens)")
    g.touch(x, merged)  # (forward_adapters' local W, until it returns)
    return out


def _embedding_views(g: Graph, vocab: int, r: int, width: int, name: str) -> tuple[T, T]:
    """PEFT's lora.Embedding reads its adapter through views made first, ``lora_embedding_A.T`` and
    ``lora_embedding_B.T``: each parameter's gradient reaches its AccumulateGrad only after every node made later
    has run (the embedding's backward among them). A's comes from embedding_dense_backward as a contiguous
    vocab x r tensor, the transposed view's layout: AccumulateGrad clones it in A's layout (the gradient layout
    contract) while it is still alive, two vocab x r fp32 tensors at once, which set the step's peak where
    batch x length is small. B's (from the matmul, in B's layout) waits there too: under gradient accumulation
    it is added into the .grad only then."""
    a_t = g.node(T(Poly.const(vocab * r), "fp32", True, None), [None], [("c", f"{name}_embedding_A", Poly.const(vocab * r * 4))],
                 name=f"{name} lora_embedding_A.T")
    b_t = g.node(T(Poly.const(r * width), "fp32", True, None), [None], [("s", f"{name}_embedding_B")],
                 name=f"{name} lora_embedding_B.T")
    return a_t, b_t


def _embedding_ab(g: Graph, rows: Poly, views: tuple[T, T], vocab: int, r: int, width: int, name: str) -> T:
    """``after_A = F.embedding(ids, lora_embedding_A.T)`` (fp32, kept for B's gradient), then ``after_A @
    lora_embedding_B.T``."""
    a_t, b_t = views
    after_a = g.node(g.new(rows * r, "fp32", True, f"{name} after_A"), [a_t], [("g", 0, Poly.const(vocab * r * 4))],
                     name=f"{name} embedding(A)")
    return g.linear(after_a, rows, width, w_rg=True, name=f"{name}_embedding_B", dtype="fp32", in_features=r, weight_view=b_t)


def _buffer_dtype(ctx: Ctx) -> str:
    """The dtype of the model's buffers (Gemma's embed_scale): the one it was loaded in
    (prepare_model_for_kbit_training casts the parameters to fp32, not the buffers)."""
    return ctx.q4_storage or ctx.dtype


def _dora_embedding(ctx: Ctx, base: T, width: int, vocab: int, r: int, name: str, path: str, rows: Poly) -> T:
    """PEFT's DoraEmbeddingVariant on the input embedding. DoraEmbeddingLayer.forward: ``lora_weight =
    (lora_embedding_A.T @ lora_embedding_B.T).T`` (vocab x width, in autocast's dtype under it, else fp32: the
    adapter's), then get_weight_norm, ``W.T + scaling * lora_weight`` (two more vocab x width temporaries, the sum
    fp32) and its row norm, detached; ``mag_norm_scale = magnitude / weight_norm`` (keeps the norm);
    ``result_dora = mag_norm_scale * (F.embedding(ids, A.T) @ B.T) * scaling`` (the product with the matmul's
    output keeps it). lora_weight, with the casts autocast made for its matmul (views: never cached), lives until
    that forward returns. Then ``mag_norm_scale * result + result_dora`` (keeps the base's output), fp32, cast
    back to the base's dtype."""
    g = ctx.g
    ac = g.autocast
    dt = ac or "fp32"
    casts = [g.new(Poly.const(vocab * r), ac, False, f"{name} autocast A.T"),
             g.new(Poly.const(r * width), ac, False, f"{name} autocast B.T")] if ac else []
    lora_weight = g.new(Poly.const(vocab * width), dt, False, f"{name} lora_weight")
    scaled = g.new(Poly.const(vocab * width), dt, False, f"{name} scaling * lora_weight")
    g.touch(lora_weight)
    # the sum is fp32 whatever the dtypes: an fp32 lora_weight, or under autocast the fp32 weight
    total = g.new(Poly.const(vocab * width), "fp32", False, f"{name} W + scaling * lora_weight")
    g.touch(scaled)
    norm = g.new(Poly.const(width), "fp32", False, f"{name} weight_norm")
    g.touch(total)
    views = _embedding_views(g, vocab, r, width, name)  # (made by the caller, before DoRA's forward)
    mag = g.node(g.new(Poly.const(width), "fp32", True, f"{name} mag_norm_scale"), [],
                 [("w", f"{path}.lora_magnitude_vector", Poly.const(width * 4))], (norm,), name=f"{name} magnitude / weight_norm")
    out = _embedding_ab(g, rows, views, vocab, r, width, name)
    scaled_out = g.mul(mag, out, f"{name} mag_norm_scale * (after_A @ B)", numel=out.numel)
    dora = g.mul(scaled_out, None, f"{name} scaling")
    g.touch(lora_weight, *casts)
    if ctx.cfg["model_type"] in ("gemma", "gemma2", "gemma3_text"):  # * embed_scale.to(result_dora.dtype), as LoRA's
        sid = None if _buffer_dtype(ctx) == dora.dtype else g.new(Poly.const(1), dora.dtype, False, f"{name} embed_scale").sid
        dora = g.mul(dora, T(Poly.const(1), dora.dtype, False, sid), f"{name} embed_scale", numel=dora.numel)
    mixed = g.mul(mag, base, f"{name} mag_norm_scale * result", numel=base.numel)
    summed = g.add(mixed, dora, f"{name} add")
    return g.to(summed, base.dtype, f"{name} cast")


def _prompt_encoder(ctx: Ctx, method: Method, n: int, h: int) -> T:
    """The virtual tokens' prompts, ``h`` wide (token_dim: the input embeddings' width), as PEFT's get_prompt makes
    them: the encoder on one sample of the prompt tokens (1, n) in fp32 (prompt tuning's embedding; P-tuning's
    embedding and MLP), then ``repeat(batch_size, 1, 1)``. Their backward runs after the layers' (the prompt
    embedding's gradient, the encoder's parameters' gradients)."""
    g = ctx.g
    e0 = g.node(g.new(Poly.const(n * h), "fp32", True, "prompt_encoder.embedding"), [None],
                [("w", "prompt_encoder.embedding.weight", Poly.const(n * h * 4))], name="prompt_encoder.embedding")
    x = e0
    if isinstance(method, PTuning) and method.encoder_reparameterization_type == "MLP":
        enc_h = method.encoder_hidden_size or h
        x = g.linear(e0, Poly.const(n), enc_h, w_rg=True, b_rg=True, name="mlp_head.0", in_features=h)
        x = g.unary_saves_output(x, "mlp_head.1 relu")
        x = g.linear(x, Poly.const(n), enc_h, w_rg=True, b_rg=True, name="mlp_head.2", in_features=enc_h)
        x = g.unary_saves_output(x, "mlp_head.3 relu")
        x = g.linear(x, Poly.const(n), h, w_rg=True, b_rg=True, name="mlp_head.4", in_features=enc_h)
    # repeat's backward sums the batch's copies back to (1, n, h)
    return g.node(g.new(B * (n * h), "fp32", True, "prompts repeat"), [x], [("g", 0, x.bytes())], name="prompts repeat")


def _prefix_projection(ctx: Ctx, method: Method, dtype: str) -> T:
    """PEFT's PrefixEncoder with prefix_projection, on the whole batch's prompt tokens (b, n): embedding (fp32,
    kept by the first linear), Linear -> Tanh (its output kept) -> Linear to every layer's keys and values, cast
    to the model dtype."""
    g = ctx.g
    layers, td, _ = method.resolved(ctx.cfg)  # type: ignore[attr-defined]
    ehs = method.encoder_hidden_size or td  # type: ignore[attr-defined]
    rows = B * ctx.kv_extra
    e0 = g.new(rows * td, "fp32", True, "prefix_encoder.embedding")
    x = g.linear(e0, rows, ehs, w_rg=True, b_rg=True, name="prefix_encoder.transform.0", dtype="fp32", in_features=td)
    x = g.unary_saves_output(x, "prefix_encoder tanh")
    x = g.linear(x, rows, layers * 2 * td, w_rg=True, b_rg=True, name="prefix_encoder.transform.2", dtype="fp32", in_features=ehs)
    return g.to(x, dtype, "prefix past_key_values")


def _loss(ctx: Ctx, logits: T, v: int) -> T:
    """transformers' ForCausalLMLoss: logits.float(), labels padded and shifted, cross_entropy(mean)."""
    g = ctx.g
    lf = g.to(logits, "fp32", "logits.float()")
    # the labels padded by one position (held until the loss function returns), shifted before the cross entropy:
    # labels[..., 1:].contiguous() copies them, except at batch 1, where the slice is already contiguous and the
    # padded labels themselves are kept
    padded = None if ctx.batch_one else g.new(B * (ctx.seq + 1), "int64", False, "padded labels")
    labels = g.new(ctx.seq + 1 if ctx.batch_one else B * ctx.seq, "int64", False, "shift_labels")
    ctx.labels = labels.sid
    ls = g.unary_saves_output(lf, "log_softmax")
    loss = g.new(Poly.const(1), "fp32", True, "loss")
    tw = g.new(Poly.const(1), "fp32", False, "total_weight")
    g.node(loss, [ls], [("g", 0, ls.bytes())], (labels, tw), "nll_loss")  # its backward: a full fp32 gradient
    g.touch(lf)  # `logits = logits.float()`: held until the loss function returns, past nll_loss's outputs
    if padded is not None:
        g.touch(padded)
        ctx.padded_labels_until = len(g.storages) - 1
    g.keep(loss)
    return loss


# ---- the same structure with other sizes: the recorded pass replayed ------------------------------

class _Sentinel:
    """A marker kept in a recording's reads; pickled by name (cache.py), so it is the same object when loaded."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return self.name


_MISSING, _PRESENT = _Sentinel("_MISSING"), _Sentinel("_PRESENT")


class _TracedCfg(dict):
    """The config as the traced pass reads it: integers come back as leaves of the tape; every other value read
    (or found missing) is remembered, and must read the same for a replay."""

    def __init__(self, cfg: dict, leaf) -> None:
        super().__init__(cfg)
        self.plain, self.leaf, self.syms, self.reads = cfg, leaf, {}, {}

    def derived(self, name: str) -> Any:
        """A size worked out from the config (_DERIVED): a leaf of its own, the fields it reads not recorded."""
        s = self.syms.get(("f", name))
        if s is None:
            s = self.syms[("f", name)] = self.leaf(("f", name), _DERIVED[name](self.plain))
        return s

    def _seen(self, k: str, v: Any) -> Any:
        if type(v) is int:
            s = self.syms.get(k)
            if s is None:
                s = self.syms[k] = self.leaf(("c", k), v)
            return s
        self.reads[k] = v
        return v

    def __getitem__(self, k: str) -> Any:
        if not dict.__contains__(self, k):
            self.reads.setdefault(k, _MISSING)
        return self._seen(k, dict.__getitem__(self, k))

    def get(self, k: str, default: Any = None) -> Any:
        if dict.__contains__(self, k):
            return self._seen(k, dict.__getitem__(self, k))
        self.reads.setdefault(k, _MISSING)
        return default

    def __contains__(self, k: object) -> bool:
        found = dict.__contains__(self, k)
        self.reads.setdefault(k, _PRESENT if found else _MISSING)
        return found

    def __iter__(self):
        _unchecked()
        return dict.__iter__(self)


def _unchecked() -> None:
    """The config was read or changed wholesale (iterated, its keys or items taken): the tape cannot check what
    the pass made of it."""
    tape = trace.active()
    if tape is not None:
        tape.opaque = True


def _wholesale(name: str) -> Any:
    """dict's method ``name``, marking the tape unchecked first."""
    method = getattr(dict, name)

    def unchecked(self, *args: Any, **kwargs: Any) -> Any:
        _unchecked()
        return method(self, *args, **kwargs)

    unchecked.__name__ = name
    return unchecked


# the dict methods that see the whole config, overridden one by one (a __getattribute__ hook would tax every
# lookup, the config's own attributes included)
for _name in ("keys", "items", "values", "copy", "pop", "setdefault", "update"):
    setattr(_TracedCfg, _name, _wholesale(_name))
del _name


def _layout_key(layout: Layout) -> tuple:
    def lins(ms: tuple) -> tuple:
        return tuple((m.path, m.bias, m.conv1d, m.tied, m.role) for m in ms)
    def params(ps: tuple) -> tuple:
        return tuple((q.path, q.kind, len(q.shape)) for q in ps)
    return (layout.layer_prefix, lins(layout.layer_linears), lins(layout.outer_linears), params(layout.layer_params),
            params(layout.outer_params), layout.output_embedding, layout.input_embedding, layout.containers)


# integer fields that are indices, not sizes (layers_to_transform=3: a layer): part of the structure, never leaves
_INDEX_FIELDS = frozenset({"layers_to_transform"})


def _is_size(field: str, value: Any) -> bool:
    """Is the method's field an integer size (a leaf of the tape: r, num_virtual_tokens)?"""
    return type(value) is int and field not in _INDEX_FIELDS and field not in _UNREAD_FIELDS


# fields that every pass reads only as on or off (graph.dropout: a mask when p > 0; compute: bool(lora_dropout))
_ON_OFF_FIELDS = frozenset({"lora_dropout"})
# fields that no pass reads (LoRA's scaling, alpha / r or alpha / sqrt(r), is a multiplication whatever its value;
# how the weights are initialised changes no size): one recording serves every lora_alpha (tests/test_replay.py
# holds each pass's output the same over these fields' values)
_UNREAD_FIELDS = frozenset({"lora_alpha", "alpha_pattern", "use_rslora", "init_lora_weights", "init_ia3_weights", "init_weights",
                            "prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path"})


def _method_key(method: Method) -> tuple:
    """The method's kind and fields, its integer sizes (leaves of the tape) by name only, its on/off fields as
    whether they are on (one recording serves lora_dropout=0.05 and 0.1), without the fields no pass reads."""
    ints = tuple(k for k, v in method if _is_size(k, v))
    on = tuple((k, bool(v)) for k, v in method if k in _ON_OFF_FIELDS)
    return type(method).__name__, method.model_dump_json(exclude=set(ints) | _ON_OFF_FIELDS | _UNREAD_FIELDS), ints, on


def _model_key(spec) -> tuple:
    """The model type, its layer types and its module layout."""
    return spec.cfg["model_type"], tuple(spec.layer_types), _layout_key(spec.layout)


_KEYS: dict[tuple, tuple] = {}


def _once_per(obj: Any, make) -> Any:
    """``make(obj)``, worked out once per instance of a spec or method (both are only read once made; the instance
    is held so that its id is not reused): a cold estimate() asks for the same keys three times."""
    key = (make, id(obj))
    hit = _KEYS.get(key)
    if hit is None or hit[0] is not obj:
        if len(_KEYS) > 8192:
            _KEYS.clear()
        hit = _KEYS[key] = (obj, make(obj))
    return hit[1]


@dataclass
class _Recording:
    replay: Any  # the compiled tape: leaves -> the outputs' packed integers (None: a guard failed)
    getters: list  # where each leaf's value comes from: ("c", key), ("m", field), ("n",), ("l", group, index, attr),
    # ("p", group, index, axis), ("f", derived size)
    reads: dict  # config keys read and what they held (or _MISSING / _PRESENT)
    names: tuple  # the terms', the layer terms' and the moments' names; the lower layers' blocks (profile names, layers)
    degrees: list  # the outputs' degrees in (b, s): total, terms, steady layer, layer terms, moments, blocks

    def leaves(self, cfg: dict, layout: Layout, method: Method) -> list | None:
        out = []
        for g in self.getters:
            kind = g[0]
            if kind == "c":
                v = cfg.get(g[1])
            elif kind == "m":
                v = getattr(method, g[1])
            elif kind == "n":
                v = layout.num_layers
            elif kind == "p":
                v = (layout.layer_params, layout.outer_params)[g[1]][g[2]].shape[g[3]]
            elif kind == "f":
                v = _DERIVED[g[1]](cfg)
            else:
                v = getattr((layout.layer_linears, layout.outer_linears)[g[1]][g[2]], g[3])
            if type(v) is not int or not 0 <= v < 1 << 31:
                return None
            out.append(v)
        for k, v in self.reads.items():
            if v is _PRESENT:
                if k not in cfg:
                    return None
            elif cfg.get(k, _MISSING) != v:
                return None
        return out

_STRUCTURES: dict[tuple, list[_Recording]] = {}
_SEEN: set[tuple] = set()  # structures computed once: the second one is recorded
_MAX_RECORDINGS = 4  # recordings of one structure (their guards differ); beyond, the pass runs in full


def structured_activation_model(spec, method: Method, train, sliding_active: bool, batch_one: bool, train_key: str,
                                query_one: bool = False) -> ActivationModel:
    """:func:`activation_model`, replaying the recorded pass of an earlier call with the same structure (model
    type, layer types, module layout, method and options; any sizes) when all its guards hold. A structure is
    recorded the second time it comes (recording costs about a third more than computing)."""

    def record() -> tuple:
        raw, rec = _record_pass(spec, method, train, sliding_active, batch_one, query_one)
        return _finish(*raw), rec

    key = (*structure_key(spec, method), sliding_active, batch_one, train_key) + (("query one",) if query_one else ())
    return replayed(_STRUCTURES, _SEEN, "activations", key, spec, method,
                    lambda: activation_model(spec, method, train, sliding_active, batch_one, query_one), record,
                    lambda rec, packed: _model(rec.names, rec.degrees, packed), lazy=_Replayed)


class _Replayed:
    """The activation model of a replayed structure, kept as its recording and leaves (their guards hold).
    estimate() reads it at one (batch, length): the recording is evaluated at that point (trace.Replay.point),
    no polynomial is made or decoded, and the answers are those of the full model at that point. Anything else
    (the polynomials: sweep(), ``peak_candidates``) makes the full model first (:class:`ActivationModel`)."""

    __slots__ = ("_rec", "_leaves", "_tokens", "_full", "_points")

    def __init__(self, rec: _Recording, leaves: list, tokens: int | None = None):
        self._rec, self._leaves, self._tokens = rec, leaves, tokens  # tokens: the batch-1 model's virtual tokens
        self._full: ActivationModel | None = None
        self._points: dict = {}

    def model(self) -> ActivationModel:
        if self._full is None:
            full = _model(self._rec.names, self._rec.degrees, self._rec.replay(*self._leaves))
            self._full = full if self._tokens is None else full.with_batch_one_labels(self._tokens)
        return self._full

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.model(), name)

    def __eq__(self, other: object) -> bool:
        return self.model() == (other.model() if isinstance(other, _Replayed) else other)

    __hash__ = None  # type: ignore[assignment]

    def with_batch_one_labels(self, virtual_tokens: int) -> _Replayed:
        """:meth:`ActivationModel.with_batch_one_labels`, at each point."""
        return _Replayed(self._rec, self._leaves, virtual_tokens)

    def _point(self, b: int, s: int) -> tuple[dict, dict]:
        """(:meth:`at`, :meth:`live_at`) at (b, s), from one evaluation of the recording there (kept for a few
        shapes; the outputs themselves are not)."""
        hit = self._points.get((b, s))
        if hit is None:
            values = self._rec.replay.point(self._leaves, b, s)
            if values is None:  # (cannot happen: what can fail ran in the check) the full model answers
                return self.model().at(b, s), self.model().live_at(b, s)
            d = both = 0
            if self._tokens is not None:  # the batch-1 labels' differences (as with_batch_one_labels adds them)
                d, both = (p_(b, s) for p_ in _batch_one_labels(self._tokens))
            if len(self._points) > 32:
                self._points.clear()
            hit = self._points[(b, s)] = (self._at(values, d), self._live(values, d, both))
        return hit

    def _at(self, values: tuple, d: int) -> dict[str, Any]:
        term_names, layer_names = self._rec.names[0], self._rec.names[1]
        nt, nl = len(term_names), len(layer_names)
        terms = dict(zip(term_names, values[1:1 + nt]))
        if d and _component("shift_labels") in terms:
            terms[_component("shift_labels")] += d
        return {"activations": values[0] + d, "terms": terms, "per_layer": values[1 + nt],
                "layer_terms": dict(zip(layer_names, values[2 + nt:2 + nt + nl]))}

    def _live(self, values: tuple, d: int, both: int) -> dict[str, int]:
        """Of each phase and each kind of layer's profile and starts, the first of the largest moments (as
        :meth:`ActivationModel.live_at` picks them)."""
        term_names, layer_names, moment_names, block_names, labels = self._rec.names
        head = 2 + len(term_names) + len(layer_names)
        out = {"end of forward": values[0] + d}
        if len(values) == head:
            return out
        moments = list(values[head:])
        if d:
            for k, flag in enumerate(labels):
                if flag:
                    moments[k] += d if flag == 1 else both
        plan = _plan(moment_names, block_names)
        bounds = plan.firsts.tolist() + [len(moments)]
        best = {}
        for g in range(len(bounds) - 1):  # max keeps the first of the largest
            k = max(range(bounds[g], bounds[g + 1]), key=moments.__getitem__)
            best[g] = (k, moments[k])
        _put_largest(out, plan, best)
        return out

    def at(self, b: int, s: int) -> dict[str, Any]:
        """:meth:`ActivationModel.at`, from the recording evaluated at this point."""
        at = self._point(b, s)[0]
        return {**at, "terms": dict(at["terms"]), "layer_terms": dict(at["layer_terms"])}

    def live_at(self, b: int, s: int) -> dict[str, int]:
        """:meth:`ActivationModel.live_at`, from the moments' values at this point."""
        return dict(self._point(b, s)[1])


def replayed(store: dict, seen: set, kind: str, key: tuple, spec, method: Method, plain, record, from_replay,
             lazy=None) -> Any:
    """The recording policy, for any pass with traced inputs (:func:`traced_inputs`): the first of a structure
    ``key`` runs ``plain()``, the second ``record()`` (its result and its :class:`_Recording`, None when the
    tape could not check what was read), later ones ``from_replay(recording, outputs)`` from the first
    recording whose guards hold (or, given ``lazy``, ``lazy(recording, leaves)`` once the guards are checked,
    the outputs not computed). A structure whose guards keep failing (``_MAX_RECORDINGS`` recordings) runs
    plainly again. The cyclic collector is paused while a pass runs. With the disk cache on (cache.py), "first"
    and "second" are on this machine, not in this process: a structure not in ``store`` is looked up on disk
    (its recordings of ``kind``; or an empty list, the mark its first call left), and each new recording is
    written there."""
    recordings = store.get(key)
    disk = _cache.directory() is not None
    if recordings is None and disk and key not in seen:
        found = _cache.load(kind, key)
        if found:
            if len(store) > 4096:
                store.clear()
            store[key] = recordings = found
        elif found is not None:  # computed once before, on this machine: recorded now
            seen.add(key)
        else:
            _cache.mark(kind, key)  # the next call, in whichever process, records it
    for rec in recordings or ():
        leaves = rec.leaves(spec.cfg, spec.layout, method)
        if leaves is None:
            continue
        if lazy is not None:
            if rec.replay.check(*leaves):
                return lazy(rec, leaves)
            continue
        outputs = rec.replay(*leaves)
        if outputs is not None:
            return from_replay(rec, outputs)
    if (recordings is None and key not in seen) or len(recordings or ()) >= _MAX_RECORDINGS:
        if len(seen) > 65536:
            seen.clear()
        seen.add(key)  # (a structure whose guards keep failing is no longer recorded)
        with _no_gc():
            return plain()
    with _no_gc():
        result, rec = record()
    if rec is not None:
        if len(store) > 4096:
            store.clear()
        kept = store.setdefault(key, [])
        kept.insert(0, rec)
        if disk:
            _cache.save(kind, key, kept)
    return result


@contextmanager
def _no_gc():
    """The cyclic garbage collector paused: a pass allocates tens of thousands of small objects (polynomials,
    tensors, nodes) that reference counting frees, and the collector's scans of them cost about a fifth of
    the pass. The collector's state is restored after."""
    was = _gc.isenabled()
    _gc.disable()
    try:
        yield
    finally:
        if was:
            _gc.enable()


def traced_inputs(spec, method: Method) -> tuple:
    """A new tape, and the model's config, module layout and method with their sizes as its leaves: (tape,
    getters, config, layout, method). ``getters`` says where each leaf's value comes from (:class:`_Recording`);
    the config remembers every other field read."""
    tape = trace.Tape()
    getters: list = []

    def leaf(getter: tuple, value: int) -> Any:
        if type(value) is not int:
            return value
        getters.append(getter)
        return tape.leaf(value)

    layout = spec.layout

    def lins(ms: tuple, group: int) -> tuple:
        return tuple(dataclasses.replace(m, in_features=leaf(("l", group, i, "in_features"), m.in_features),
                                         out_features=leaf(("l", group, i, "out_features"), m.out_features))
                     for i, m in enumerate(ms))

    def params(ps: tuple, group: int) -> tuple:
        return tuple(dataclasses.replace(q, shape=tuple(leaf(("p", group, i, a), n) for a, n in enumerate(q.shape)))
                     for i, q in enumerate(ps))

    cfg = _TracedCfg(spec.cfg, leaf)
    traced_layout = dataclasses.replace(layout, num_layers=leaf(("n",), layout.num_layers), layer_linears=lins(layout.layer_linears, 0),
                                        outer_linears=lins(layout.outer_linears, 1), layer_params=params(layout.layer_params, 0),
                                        outer_params=params(layout.outer_params, 1))
    traced_method = method.model_copy(update={k: leaf(("m", k), v) for k, v in method if _is_size(k, v)})
    return tape, getters, cfg, traced_layout, traced_method


def structure_key(spec, method: Method) -> tuple:
    """What a recording is kept under, besides the options of the computation: the model type, its layer types,
    the module layout and the method without its integer fields."""
    return (*_once_per(spec, _model_key), _once_per(method, _method_key))


def _record_pass(spec, method: Method, train, sliding_active: bool, batch_one: bool, query_one: bool = False) -> tuple:
    """The symbolic pass with the sizes as leaves of a tape; the recording (None if something was read that the
    tape cannot check)."""
    tape, getters, cfg, traced_layout, traced_method = traced_inputs(spec, method)
    trace.start(tape)
    try:
        raw = _build(cfg, traced_layout, list(spec.layer_types), traced_method, train, sliding_active, batch_one, query_one)
    finally:
        trace.stop()
    if tape.opaque:
        return raw, None
    names, polys = _outputs(*raw)
    replay = tape.compile([tape.slot(p_) for p_ in polys])
    return raw, _Recording(replay, getters, dict(cfg.reads), names, [(p_.db, p_.ds) for p_ in polys])

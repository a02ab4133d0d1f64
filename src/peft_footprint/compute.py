"""FLOPs of one forward pass and one training step, as ``torch.utils.flop_counter.FlopCounterMode`` counts them
with eager attention (DESIGN.md section 3), plus ``compute_terms`` (FLOPs, KV cache, latency, step time) for
``estimate()``.

Every matrix multiply counts ``2 * m * n * k``. A pass over ``batch`` sequences of ``seq`` tokens is a polynomial
in five units, so one walk over the modules gives coefficients and any shape is then a few multiplications:

``T``   tokens through the decoder, ``batch * (seq + virtual tokens)`` (linears, lm_head)
``A``   attention pairs, ``batch * S_q * S_k`` (``S_k`` includes prefix tuning's virtual keys)
``R``   rotary positions, ``S_q`` (transformers' rotary embedding is one bmm over position_ids of shape (1, S))
``Bn``  sequences (prompt encoders run on ``batch x num_virtual_tokens`` tokens)
``C``   constant per pass (DoRA's weight norm runs ``lora_B(lora_A(eye(in)))`` on every forward)

Backward: a frozen weight gets no weight-gradient matmul, and an input gradient is computed only where the input
requires grad, which is propagated module by module through the layer (``requires_grad`` follows trainable
weights, biases and norms, LoRA/IA3 deltas, trainable prefixes and prompts). Gradient checkpointing (transformers'
non-reentrant, one checkpoint per decoder layer, early stop on) re-runs each layer's forward in backward up to the
last op that saves a tensor: a layer ending in ``matmul -> residual add`` does not re-run that last matmul.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import activations, trace
from .dtypes import nbytes
from .methods.base import method_key

__all__ = ["FlopCoefficients", "flop_coefficients", "forward_flops", "step_flops", "compute_terms"]

UNITS = ("T", "A", "R", "Bn", "C")


@dataclass
class FlopTerms:
    T: int = 0
    A: int = 0
    R: int = 0
    Bn: int = 0
    C: int = 0

    def add(self, unit: str, v: int) -> None:
        setattr(self, unit, getattr(self, unit) + v)

    def __iadd__(self, o: FlopTerms) -> FlopTerms:
        self.T += o.T
        self.A += o.A
        self.R += o.R
        self.Bn += o.Bn
        self.C += o.C
        return self

    def copy(self) -> FlopTerms:
        return FlopTerms(self.T, self.A, self.R, self.Bn, self.C)

    def minus(self, o: FlopTerms) -> FlopTerms:
        return FlopTerms(self.T - o.T, self.A - o.A, self.R - o.R, self.Bn - o.Bn, self.C - o.C)

    def times(self, k: int) -> FlopTerms:
        return FlopTerms(self.T * k, self.A * k, self.R * k, self.Bn * k, self.C * k)

    def eval(self, T: int, A: int, R: int, Bn: int) -> int:
        return self.T * T + self.A * A + self.R * R + self.Bn * Bn + self.C


@dataclass
class FlopCoefficients:
    """Coefficients of one pass: forward, backward and checkpoint recomputation, plus the sequence shape rules."""

    forward: FlopTerms = field(default_factory=FlopTerms)
    backward: FlopTerms = field(default_factory=FlopTerms)
    recompute: FlopTerms = field(default_factory=FlopTerms)
    virtual_tokens: int = 0  # added to every sequence (prompt tuning, P-tuning)
    prefix_tokens: int = 0  # added to every key length (prefix tuning)
    rotary_on_virtual: bool = True  # position_ids cover the virtual tokens (prompt tuning) but not the prefix

    def shape_units(self, batch: int, seq: int) -> tuple[int, int, int, int]:
        s = seq + self.virtual_tokens
        return batch * s, batch * s * (s + self.prefix_tokens), s, batch

    def total(self, batch: int, seq: int, *, training: bool) -> int:
        u = self.shape_units(batch, seq)
        if not training:
            return self.forward.eval(*u)
        return self.forward.eval(*u) + self.backward.eval(*u) + self.recompute.eval(*u)


# ---- what a method does to the modules ---------------------------------------------------------------


class _MethodView:
    """The facts about ``method`` that matter for matmuls, resolved once per (model, method)."""

    def __init__(self, spec, method, table):
        from .methods.adapter import Adapter
        from .methods.ia3 import IA3
        from .methods.lora import LoRA

        cfg, layout = spec.cfg, spec.layout
        self.name = method.name
        self.full = method.name == "full"
        # LoRA / IA3 on a decoder layer's module (path relative to the layer) -> (rank / "ff" | "out", its layers);
        # on a module outside the layers (full path) -> rank / kind
        self.lora_layers: dict[str, tuple[int, frozenset[int]]] = {}
        self.lora_outer: dict[str, int] = {}
        self.lora_ranks: dict[str, dict[int, tuple[int, int]]] = {}  # layer -> (which rank group, rank) where they differ
        self.ia3_layers: dict[str, tuple[str, frozenset[int]]] = {}
        self.ia3_outer: dict[str, str] = {}
        self.dora = False
        self.bias_mode = "none"
        self.adapter = None
        self.trainable_names = {t.name for t in table.tensors if t.trainable}
        # what modules_to_save copies (trainable copies of those modules), methods.base.SavedModules
        self.saved = method.saved_modules(layout, cfg)
        # the word / position embedding trains (full fine-tuning, a copy): every layer's input requires grad
        self.embedding_trains, self.positions_train = (self.full or (self.saved is not None and self.saved.copies(layout, kind))
                                                       for kind in ("embedding", "position_embedding"))
        n = layout.num_layers
        self.lora_dropout = False
        self.lora_embedding = None  # (rank, width, vocab) of LoRA (or DoRA) on the input embedding
        self.lora_positions = None  # the same on GPT-2's position embedding (on the positions: batch 1)
        self.token_rows = method.token_rows(layout, cfg)  # trainable tokens: the embedding's output requires grad (a
        # tied head's weight too)
        if isinstance(method, LoRA):  # QLoRA too
            self.dora = bool(method.use_dora)
            self.lora_dropout = bool(method.lora_dropout)
            self.bias_mode = method.bias
            emb = method.input_embedding_target(layout, cfg)
            if emb is not None:
                self.lora_embedding = (method.layer_rank(layout, emb.path, None), emb.module.shape[1], emb.module.shape[0])
            pos = method.position_embedding_target(layout, cfg)
            if pos is not None:
                self.lora_positions = (method.layer_rank(layout, pos.path, None), pos.module.shape[1], pos.module.shape[0])
            for t in method.targets(layout, cfg):
                if t.is_embedding:
                    continue
                groups = method.rank_groups(layout, t)
                if not t.in_layer:
                    self.lora_outer[t.module.path] = groups[0][0]
                elif t.layers is None or t.layers:
                    self.lora_layers[t.module.path] = (groups[0][0], frozenset(t.layers if t.layers is not None else range(n)))
                    if len(groups) > 1:  # rank_pattern sets different ranks in different layers
                        self.lora_ranks[t.module.path] = {i: (j, r) for j, (r, ls) in enumerate(groups) for i in ls}
        elif isinstance(method, IA3):
            for t in table.tensors:
                if not t.name.endswith(".ia3_l"):
                    continue
                kind = "ff" if t.shape[0] == 1 else "out"
                path = t.name[: -len(".ia3_l")]
                if "*" not in path:
                    self.ia3_outer[path] = kind
                elif t.layers is None or t.layers:
                    self.ia3_layers[path.split(".*.", 1)[1]] = (kind, frozenset(t.layers if t.layers is not None else range(n)))
        elif isinstance(method, Adapter):
            self.adapter = method
        self.virtual = method.virtual_tokens()
        self.prefix = method.prefix_tokens()
        self.method = method
        # per module path: (rank, how many layers) / (kind, how many layers), for closed-form sums
        self.lora_paths: list[tuple[str, int, int]] = []
        for p, (r, layers) in self.lora_layers.items():
            by_group: dict[int, list] = {}
            for i, (j, rj) in self.lora_ranks.get(p, {}).items():
                by_group.setdefault(j, [rj, 0])[1] += 1
            self.lora_paths += [(p, rj, k) for rj, k in by_group.values()] or [(p, r, len(layers))]
        self.lora_paths += [(p, r, 1) for p, r in self.lora_outer.items()]
        self.ia3_paths: dict[str, tuple[str, int]] = {p: (k, len(layers)) for p, (k, layers) in self.ia3_layers.items()}
        self.ia3_paths.update((p, (k, 1)) for p, k in self.ia3_outer.items())
        self.layer_wraps = self._layer_wraps(layout)

    @property
    def lora(self) -> bool:
        """Does LoRA wrap any linear module?"""
        return bool(self.lora_layers or self.lora_outer)

    @property
    def ia3(self) -> bool:
        """Does IA3 scale any linear module?"""
        return bool(self.ia3_layers or self.ia3_outer)

    def lora_rank(self, path: str, layer: int | None) -> int | None:
        """LoRA's rank on the module at ``path`` (relative to the layer for layer modules), None where unwrapped."""
        if layer is None:
            return self.lora_outer.get(path)
        hit = self.lora_layers.get(path)
        if hit is None or layer not in hit[1]:
            return None
        ranks = self.lora_ranks.get(path)
        return hit[0] if ranks is None else ranks[layer][1]

    def ia3_kind(self, path: str, layer: int | None) -> str | None:
        """IA3's kind ("ff": scales the input, "out": the output) on the module at ``path``, None where unwrapped."""
        if layer is None:
            return self.ia3_outer.get(path)
        hit = self.ia3_layers.get(path)
        return hit[0] if hit is not None and layer in hit[1] else None

    def _layer_wraps(self, layout) -> list[tuple]:
        """Per decoder layer: which of its linears LoRA wraps, IA3's kind on each, and whose weight trains (and
        whether it has bottleneck adapters, where ``leave_out`` leaves some out). Layers with the same wrapping
        (and the same input grad state) add identical FLOPs."""
        wraps = self._linear_wraps(layout)
        if self.adapter is not None and self.adapter.leave_out:
            return [w + (self.adapter.in_layer(i),) for i, w in enumerate(wraps)]
        return wraps

    def _linear_wraps(self, layout) -> list[tuple]:
        n, rels = layout.num_layers, [m.path for m in layout.layer_linears]
        # weight_trainable(f"{layer_prefix}.{i}.{rel}"): every layer's for full fine-tuning, otherwise only a
        # trainable name spelled out with a layer index matches (the table's "*" names never do)
        weights: dict[str, set[int]] = {r: set(self.saved.layer[r]) for r in rels if self.saved and r in self.saved.layer}
        head = layout.layer_prefix + "."
        for name in () if self.full else self.trainable_names:
            idx, _, rest = name[len(head):].partition(".") if name.startswith(head) else ("", "", "")
            if idx.isascii() and idx.isdigit() and str(int(idx)) == idx and int(idx) < n:
                for rel in rels:
                    if rest == f"{rel}.weight":
                        weights.setdefault(rel, set()).add(int(idx))
        every = frozenset(range(n))
        wrapped = [layers for _, layers in [*self.lora_layers.values(), *self.ia3_layers.values()]]
        norms = [p.path.rsplit(".", 1)[0] for p in layout.layer_params if p.path.endswith(".weight")]
        copied_norms = [self.saved.layer[nm] for nm in norms if self.saved and nm in self.saved.layer]
        if not self.lora_ranks and all(layers >= every for layers in [*wrapped, *weights.values(), *copied_norms]):  # the usual case: every layer alike
            return [(tuple(r in self.lora_layers for r in rels), tuple(self.ia3_kind(r, 0) for r in rels),
                     tuple(self.full or r in weights for r in rels))] * n
        return [(tuple(self.lora_rank(r, i) is not None for r in rels), tuple(self.ia3_kind(r, i) for r in rels),
                 tuple(self.full or i in weights.get(r, ()) for r in rels),
                 tuple(self.lora_ranks[r].get(i, (-1,))[0] for r in rels if r in self.lora_ranks),
                 tuple(i in layers for layers in copied_norms)) for i in range(n)]

    def copied(self, path: str, layer: int | None) -> bool:
        """Is the module a modules_to_save copy? ``path``: relative to the layer ``layer``, or full (layer None)."""
        return self.saved is not None and self.saved.covers(path, layer)

    def weight_trainable(self, full_path: str, rel: str | None = None, layer: int | None = None) -> bool:
        if self.full or self.copied(full_path if layer is None else rel, layer):
            return True
        return f"{full_path}.weight" in self.trainable_names  # (a modules_to_save copy: ``copied``)

    def bias_trainable(self, full_path: str, has_bias: bool, lora_here: bool, rel: str | None = None, layer: int | None = None) -> bool:
        if not has_bias:
            return False
        if self.full or self.bias_mode == "all" or self.copied(full_path if layer is None else rel, layer):
            return True
        return self.bias_mode == "lora_only" and lora_here

    def norm_trainable(self, spec, rel: str | None, outer_path: str | None = None, layer: int | None = None) -> bool:
        if self.full or self.copied(outer_path if rel is None else rel, None if rel is None else layer):
            return True
        if self.bias_mode != "all":
            return False
        if rel is not None:
            return any(p.path == f"{rel}.bias" for p in spec.layout.layer_params)
        return any(p.path == f"{outer_path}.bias" for p in spec.layout.outer_params)



_VIEWS: dict[tuple, _MethodView] = {}


def method_view(spec, method, table) -> _MethodView:
    """The resolved method facts, cached per (model, method, table)."""
    key = (id(spec), method_key(method), id(table))
    hit = _VIEWS.get(key)
    if hit is None or hit.spec_ref is not spec or hit.table_ref is not table:
        if len(_VIEWS) > 4096:
            _VIEWS.clear()
        hit = _VIEWS[key] = _MethodView(spec, method, table)
        hit.spec_ref, hit.table_ref = spec, table
    return hit

class _Walker:
    def __init__(self, spec, mv: _MethodView, *, merged: bool, gc: bool, training: bool = False):
        self.spec, self.mv, self.merged, self.gc, self.training = spec, mv, merged, gc, training
        self.fwd, self.bwd, self.rec = FlopTerms(), FlopTerms(), FlopTerms()
        self.layer_mm: list[int] = []  # forward T-coefficients of this layer's matmuls, in order
        self.layer_fwd = FlopTerms()

    def _mm(self, unit: str, v: int) -> None:
        self.fwd.add(unit, v)
        self.layer_fwd.add(unit, v)
        if unit == "T":
            self.layer_mm.append(v)

    def linear(self, m, x_rg: bool, layer: int | None, path: str, *, unit: str = "T") -> bool:
        """One nn.Linear / Conv1D (with its LoRA / IA3 wrapper). Returns whether its output requires grad."""
        mv = self.mv
        r = mv.lora_rank(m.path if layer is not None else path, layer)
        ia3 = mv.ia3_kind(m.path if layer is not None else path, layer)
        w_t = mv.weight_trainable(path, m.path, layer)
        b_t = mv.bias_trainable(path, m.bias, r is not None, m.path, layer)
        io = 2 * m.in_features * m.out_features
        self._mm(unit, io)
        base_x_rg = x_rg or ia3 == "ff"
        if base_x_rg:
            self.bwd.add(unit, io)
        if w_t:
            self.bwd.add(unit, io)
        if r is not None and not self.merged:
            a, b = 2 * m.in_features * r, 2 * r * m.out_features
            self._mm(unit, a)
            self._mm(unit, b)
            self.bwd.add(unit, a + 2 * b + (a if x_rg else 0))
            if mv.dora:  # get_lora_weight: lora_B(lora_A(eye(in))), detached: forward only
                c = m.in_features * a + m.in_features * b
                self.fwd.add("C", c)
                self.layer_fwd.add("C", c)
                if self.training and mv.lora_dropout:  # an active dropout: DoRA runs F.linear(dropout(x), W) again
                    self._mm(unit, io)
                    if x_rg:
                        self.bwd.add(unit, io)
                    if m.conv1d:  # PEFT's transpose() wraps W.T of a Conv1D in a new nn.Parameter: it gets a gradient
                        self.bwd.add(unit, io)
                self.layer_mm.append(-1)  # DoRA's output mix saves tensors after the matmuls
        if ia3 == "out":
            self.layer_mm.append(-1)  # output scaling: the multiply after the matmul saves its inputs
        return x_rg or w_t or b_t or (r is not None and not self.merged) or ia3 is not None

    # ---- one decoder layer ----------------------------------------------------------------------
    def layer(self, i: int, h_rg: bool) -> bool:
        spec, mv, cfg = self.spec, self.mv, self.spec.cfg
        layout = spec.layout
        self.layer_mm, self.layer_fwd = [], FlopTerms()
        lin = {m.role: m for m in layout.layer_linears}
        pre = f"{layout.layer_prefix}.{i}."
        norms = [p.path.rsplit(".", 1)[0] for p in layout.layer_params if p.path.endswith(".weight")] or ["", ""]  # (OPT without affine LayerNorms: none named)
        attn_norm, mlp_norm = norms[0], norms[1]
        x_rg = h_rg or mv.norm_trainable(spec, attn_norm, layer=i)
        if "qkv" in lin:
            qkv = self.linear(lin["qkv"], x_rg, i, pre + lin["qkv"].path)
            q_rg = k_rg = v_rg = qkv
        else:
            q_rg = self.linear(lin["q"], x_rg, i, pre + lin["q"].path)
            k_rg = self.linear(lin["k"], x_rg, i, pre + lin["k"].path)
            v_rg = self.linear(lin["v"], x_rg, i, pre + lin["v"].path)
        if any("q_norm" in p.path for p in layout.layer_params):  # trainable q/k norms: q and k require grad
            q_rg = q_rg or mv.full or mv.copied("self_attn.q_norm", i)
            k_rg = k_rg or mv.full or mv.copied("self_attn.k_norm", i)
        if self.prefix_active:
            k_rg = v_rg = True
        nh, hd = cfg["num_attention_heads"], cfg["head_dim"]
        att = 2 * nh * hd
        self._mm("A", 2 * att)
        p_rg = q_rg or k_rg
        self.bwd.add("A", att * (int(q_rg) + int(k_rg) + int(p_rg) + int(v_rg)))
        o_rg = self.linear(lin["o"], p_rg or v_rg, i, pre + lin["o"].path)
        attn_out = o_rg or (len(norms) == 4 and mv.norm_trainable(spec, norms[1], layer=i))
        if self.mv.adapter is not None and self.mv.adapter.setting("mh_adapter") and self.mv.adapter.in_layer(i):
            attn_out = self._adapter(attn_out) or attn_out
        parallel = cfg["model_type"] == "gpt_neox" and cfg.get("use_parallel_residual", True)
        h2 = h_rg or attn_out
        mlp_norm = norms[2] if len(norms) == 4 else mlp_norm
        x_rg = (h_rg if parallel else h2) or mv.norm_trainable(spec, mlp_norm, layer=i)
        if "gate_up" in lin:
            mid = self.linear(lin["gate_up"], x_rg, i, pre + lin["gate_up"].path)
        elif "gate" in lin:
            g = self.linear(lin["gate"], x_rg, i, pre + lin["gate"].path)
            u = self.linear(lin["up"], x_rg, i, pre + lin["up"].path)
            mid = g or u
        else:
            mid = self.linear(lin["up"], x_rg, i, pre + lin["up"].path)
        out = self.linear(lin["down"], mid, i, pre + lin["down"].path)
        if self.mv.adapter is not None and self.mv.adapter.setting("output_adapter") and self.mv.adapter.in_layer(i):
            out = self._adapter(out) or out
        if self.gc:
            rec = self.layer_fwd.copy()
            if self._ends_in_matmul() and self.layer_mm and self.layer_mm[-1] > 0:
                rec.T -= self.layer_mm[-1]
            self.rec += rec
        return h2 or out

    def _adapter(self, x_rg: bool) -> bool:
        h = self.spec.cfg["hidden_size"]
        d = self.mv.adapter.bottleneck(h)
        self._mm("T", 2 * h * d)
        self._mm("T", 2 * d * h)
        self.bwd.add("T", 2 * h * d * (2 + int(x_rg)) + 2 * d * h * 2)
        return True

    def _ends_in_matmul(self) -> bool:
        """Does the layer's last tensor-saving op come before its last matmul (nothing after it saves)?"""
        cfg = self.spec.cfg
        mt = cfg["model_type"]
        if mt in ("gemma2", "gemma3_text", "olmo2"):  # post-feed-forward RMSNorm saves its input
            return False
        if mt == "gpt2" and (cfg.get("resid_pdrop", 0.1) or 0) > 0:  # training dropout saves its mask
            return False
        if mt == "opt" and (cfg.get("dropout", 0.1) or 0) > 0:
            return False
        if mt == "starcoder2" and (cfg.get("residual_dropout", 0.0) or 0) > 0:
            return False
        if mt == "gpt_neox" and (cfg.get("hidden_dropout", 0.0) or 0) > 0:
            return False
        if mt == "phi3" and (cfg.get("resid_pdrop", 0.0) or 0) > 0:
            return False
        return True

    # ---- the whole model ------------------------------------------------------------------------
    def run(self) -> None:
        spec, mv, cfg = self.spec, self.mv, self.spec.cfg
        layout = spec.layout
        self.prefix_active = mv.prefix > 0 and not self.gc  # transformers drops past_key_values under checkpointing
        self._encoder()
        h_rg = mv.embedding_trains or mv.virtual > 0 or self.gc  # checkpointing: enable_input_require_grads()
        for lora_emb, unit in ((mv.lora_embedding, "T"), (mv.lora_positions, "R")):
            if lora_emb is not None and not self.merged:  # lora.Embedding: (ids -> A) @ B on every token (GPT-2's
                # positions: on every position, once for the batch); its output, and every layer's input after it,
                # requires grad
                r, width, vocab = lora_emb
                self.fwd.add(unit, 2 * r * width)
                self.bwd.add(unit, 4 * r * width)
                if mv.dora:  # DoraEmbeddingLayer's lora_weight, (A.T @ B.T): detached, forward only
                    self.fwd.add("C", 2 * vocab * r * width)
                h_rg = True
        h_rg = h_rg or mv.token_rows > 0
        outer = {m.role: m for m in layout.outer_linears}
        if "project_in" in outer:
            h_rg = self.linear(outer["project_in"], h_rg, None, outer["project_in"].path)
        h_rg = h_rg or mv.positions_train  # (OPT adds its positions after project_in)
        if cfg["model_type"] not in ("gpt2", "opt"):
            rot_dim = activations._derived(cfg, "rotary_dim")
            n_rot = len(set(spec.layer_types)) if cfg["model_type"] == "gemma3_text" else 1
            self.fwd.add("R", 2 * (rot_dim // 2) * n_rot)
        # identical layers (same input grad state and method wrapping) add identical FLOPs: walk the first of each
        # kind, then add its FLOPs once per layer of that kind
        memo: dict[tuple, tuple] = {}
        counts: dict[tuple, int] = {}
        for i, wrap in enumerate(mv.layer_wraps):
            sig = (h_rg, wrap)
            hit = memo.get(sig)
            if hit is None:
                snap = (self.fwd.copy(), self.bwd.copy(), self.rec.copy())
                h_rg_out = self.layer(i, h_rg)
                hit = memo[sig] = ((self.fwd.minus(snap[0]), self.bwd.minus(snap[1]), self.rec.minus(snap[2])), h_rg_out)
                self.fwd, self.bwd, self.rec = snap
            counts[sig] = counts.get(sig, 0) + 1
            h_rg = hit[1]
        for sig, k in counts.items():
            df, db, dr = memo[sig][0]
            self.fwd += df.times(k)
            self.bwd += db.times(k)
            self.rec += dr.times(k)
        final_norm = [p.path.rsplit(".", 1)[0] for p in layout.outer_params if p.kind == "norm"]
        if final_norm and mv.norm_trainable(spec, None, final_norm[0]):
            h_rg = True
        if "project_out" in outer:
            h_rg = self.linear(outer["project_out"], h_rg, None, outer["project_out"].path)
        head = outer["lm_head"]
        # a tied lm_head trains with the embedding under full fine-tuning; a modules_to_save copy of either unties it
        mv_w = mv.full or mv.weight_trainable(head.path) or (mv.token_rows > 0 and head.tied)  # (a tied trainable-tokens
        # head multiplies by its merged weight, which requires grad)
        io = 2 * head.in_features * head.out_features
        self.fwd.add("T", io)
        if h_rg:
            self.bwd.add("T", io)
        if mv_w:
            self.bwd.add("T", io)
        r = mv.lora_rank(head.path, None)
        if r is not None and not self.merged:
            a, b = 2 * head.in_features * r, 2 * r * head.out_features
            self.fwd.add("T", a + b)
            self.bwd.add("T", a + 2 * b + (a if h_rg else 0))

    def _encoder(self) -> None:
        """Prompt encoders run on batch x num_virtual_tokens tokens, every forward (all trainable)."""
        m = self.mv.method
        name = self.mv.name
        if name == "p_tuning":
            d = m.resolved(self.spec.cfg)[1]
            h = m.encoder_hidden_size or d
            n = m.total_virtual_tokens
            if m.encoder_reparameterization_type == "MLP":
                mats = [(d, h), (h, h), (h, d)]
                f = sum(2 * a * b for a, b in mats)
                self.fwd.add("C", n * f)
                self.bwd.add("C", 2 * n * f)
            else:  # bidirectional LSTM + two-layer MLP head. FlopCounterMode has no formula for aten.lstm (it runs as one
                # op on CPU and as cuDNN's RNN kernel on GPU), so only the MLP head's matmuls count, as in the measurement.
                mats = [(2 * h, 2 * h), (2 * h, d)]
                mf = sum(2 * a * bb for a, bb in mats)
                self.fwd.add("C", n * mf)
                self.bwd.add("C", 2 * n * mf)
        elif name == "prefix_tuning" and m.prefix_projection:
            layers, td, _ = m.resolved(self.spec.cfg)
            ehs = m.encoder_hidden_size or td
            n = m.num_virtual_tokens
            f = 2 * td * ehs + 2 * ehs * layers * 2 * td
            self.fwd.add("Bn", n * f)
            if not self.gc:  # under checkpointing the prefix is dropped: nothing flows back into the encoder
                self.bwd.add("Bn", 2 * n * f)


_COEFFS: dict[tuple, FlopCoefficients] = {}


def flop_coefficients(spec, method, table, *, merged: bool = False, gradient_checkpointing: bool = False,
                      training: bool = False) -> FlopCoefficients:
    """Coefficients of forward / backward / recompute FLOPs, cached per (model, method, merged, checkpointing).
    ``training``: the module is in training mode (only DoRA with an active lora_dropout differs)."""
    training = training and bool(getattr(method, "use_dora", False) and getattr(method, "lora_dropout", 0))
    key = (id(spec), method_key(method), id(table), merged, gradient_checkpointing, training)
    hit = _COEFFS.get(key)
    if hit is not None and hit.spec_ref is spec and hit.table_ref is table:
        return hit
    values = _structured_walk(spec, method, table, merged, gradient_checkpointing, training)
    fwd, bwd, rec = (FlopTerms(*values[k:k + 5]) for k in (0, 5, 10))
    virtual, prefix = values[15], values[16]
    c = FlopCoefficients(fwd, bwd, rec, virtual, prefix if not gradient_checkpointing else 0)
    c.prefix_tokens = prefix
    c.gc_drops_prefix = gradient_checkpointing and prefix > 0
    c.spec_ref, c.table_ref = spec, table
    if len(_COEFFS) > 4096:
        _COEFFS.clear()
    _COEFFS[key] = c
    return c


def _walk(spec, mv: _MethodView, merged: bool, gc: bool, training: bool = False) -> list:
    """The walker's results, flattened: forward, backward and recompute terms (T, A, R, Bn, C each), then the
    virtual and prefix tokens."""
    w = _Walker(spec, mv, merged=merged, gc=gc, training=training)
    w.run()
    return [getattr(t, u) for t in (w.fwd, w.bwd, w.rec) for u in UNITS] + [mv.virtual, mv.prefix]


# The walk recorded per structure, replayed for new sizes, as the activation pass is (activations.py, trace.py):
# the first walk of a structure runs plainly, the second is recorded, later ones replay when their guards hold.
_WALKS: dict[tuple, list] = {}
_WALKED: set[tuple] = set()


class _TracedSpec:
    """The parts of a ModelSpec the walker reads, with traced sizes."""

    def __init__(self, cfg, layout, layer_types):
        self.cfg, self.layout, self.layer_types = cfg, layout, layer_types


def _structured_walk(spec, method, table, merged: bool, gc: bool, training: bool = False) -> list:
    key = (*activations.structure_key(spec, method), merged, gc, training, tuple(t.name for t in table.tensors if t.trainable))

    def record() -> tuple:
        tape, getters, cfg, layout, traced_method = activations.traced_inputs(spec, method)
        traced = _TracedSpec(cfg, layout, spec.layer_types)
        trace.start(tape)
        try:
            values = _walk(traced, _MethodView(traced, traced_method, table), merged, gc, training)
        finally:
            trace.stop()
        rec = None
        if not tape.opaque:
            rec = activations._Recording(tape.compile([tape.slot(v) for v in values]), getters, dict(cfg.reads), (), [])
        return [trace._concrete(v) for v in values], rec

    return activations.replayed(_WALKS, _WALKED, "flops", key, spec, method,
                                lambda: _walk(spec, method_view(spec, method, table), merged, gc, training), record,
                                lambda rec, values: list(values))


def forward_flops(spec, method, table, batch: int, seq: int, *, merged: bool | None = None) -> int:
    """FLOPs of one forward pass over ``batch`` x ``seq`` input tokens (eager attention, all positions' logits)."""
    if merged is None:
        merged = bool(getattr(method, "merged", False))
    return flop_coefficients(spec, method, table, merged=merged).total(batch, seq, training=False)


def step_flops(spec, method, table, training) -> int:
    """FLOPs of one training step (forward + backward + checkpoint recomputation) at the training shape."""
    if training.gradient_checkpointing and method.prefix_tokens():
        from .errors import UnsupportedCombinationError

        raise UnsupportedCombinationError(
            "prefix_tuning cannot be trained with gradient_checkpointing: PEFT 0.19.1 raises 'PREFIX_TUNING does not work "
            "with gradient checkpointing' (and transformers drops past_key_values inside checkpointed layers)"
        )
    c = flop_coefficients(spec, method, table, gradient_checkpointing=bool(training.gradient_checkpointing), training=True)
    return c.total(training.batch_size, training.seq_len, training=True) * training.gradient_accumulation_steps


# ---- training step time -----------------------------------------------------------------------------------
# ONE set of factors for every model, method and preset, fitted once on PEFT's MetaMathQA L40S runs
# (docs/compute.md): the matmul FLOPs run at ``mfu`` of the dense peak (this effective MFU also absorbs the base
# model's own elementwise work, which scales with tokens like the matmuls); the optimizer step and the separate
# adapters' elementwise ops are memory-bound; every kernel pays a launch overhead; each step pays host overhead.
TRAINING_EFFICIENCY = {
    "mfu": 0.365,
    "memory": 0.80,
    "kernel_launch_s": 5e-6,
    "host_overhead_s": 0.002,
}
# bytes moved per trainable element by one optimizer step, in units of the parameter's element size: torch's
# foreach AdamW reads/writes param, grad, exp_avg, exp_avg_sq and temporaries (weight decay 2, lerp 3,
# mul+addcmul 5, sqrt 2, div 2, add eps 2, addcdiv 4 = 20 passes), plus gradient-norm clipping (norm 1 + scale 2,
# on by default in HF Trainer and in PEFT's MetaMathQA script); the fused kernel reads param, grad and both states
# and writes param and both states once (7)
OPTIMIZER_PASSES = {"adamw": 20, "adam": 20, "adamw_fused": 7, "sgd": 3, "sgd_momentum": 6, "lion": 8, "adafactor": 12, "adamw_8bit": 10,
                    "paged_adamw_8bit": 10, "paged_adamw": 20, "adamw_32bit": 20, "lion_8bit": 6}
CLIP_PASSES = 3
BASE_KERNELS_PER_LAYER = 25  # elementwise kernels of one eager decoder layer's forward, besides its matmuls


def training_time_terms(spec, method, table, training, hardware, eff: dict | None = None) -> dict[str, Any]:
    from .inference import LORA_KERNELS, IA3_KERNELS, ADAPTER_KERNELS

    eff = eff or TRAINING_EFFICIENCY
    flops = step_flops(spec, method, table, training)
    out: dict[str, Any] = {"step_flops": flops, "step_time_s": None, "tokens_per_s": None}
    if hardware is None:
        return out
    mv = method_view(spec, method, table)
    compute_dtype = training.mixed_precision or training.dtype
    e = nbytes(compute_dtype)
    accum = training.gradient_accumulation_steps
    T = training.batch_size * (training.seq_len + mv.virtual)
    bw = hardware.memory_bandwidth_bytes_per_s * eff["memory"]
    matmul_s = flops / (hardware.flops(compute_dtype) * eff["mfu"])
    # separate adapters: dtype casts, scaling and adds over the activations (forward + backward), memory-bound
    layout = spec.layout
    mods = {m.path: m for m in layout.layer_linears} | {m.path: m for m in layout.outer_linears}
    adapter_bytes, kernels = 0, 0
    n = layout.num_layers
    fwd_k = n * (len(layout.layer_linears) + BASE_KERNELS_PER_LAYER + 3) + 10
    kernels += 3 * fwd_k + (fwd_k if training.gradient_checkpointing else 0)
    for path, r, count in mv.lora_paths:
        m = mods[path]
        adapter_bytes += count * T * (22 * m.in_features + 30 * m.out_features) * e // 2
        kernels += count * 3 * LORA_KERNELS
    for path, (kind, count) in mv.ia3_paths.items():
        m = mods[path]
        adapter_bytes += count * T * 24 * (m.in_features if kind == "ff" else m.out_features) * e // 2
        kernels += count * 3 * IA3_KERNELS
    if mv.adapter is not None:
        places = int(bool(mv.adapter.setting("mh_adapter"))) + int(bool(mv.adapter.setting("output_adapter")))
        with_adapters = len(mv.adapter.adapter_layers(n)) if mv.adapter.leave_out else n
        adapter_bytes += places * with_adapters * T * 12 * spec.cfg["hidden_size"] * e
        kernels += 3 * places * with_adapters * ADAPTER_KERNELS
    adapter_s = adapter_bytes * accum / bw
    passes = OPTIMIZER_PASSES.get(training.optimizer, 20) + CLIP_PASSES
    opt_bytes = sum(t.numel * t.count * nbytes(t.dtype) for t in table.trainable) * passes
    optimizer_s = opt_bytes / bw
    launch_s = (kernels * accum + 12 * 4) * eff["kernel_launch_s"]
    step = matmul_s + adapter_s + optimizer_s + launch_s + eff["host_overhead_s"]
    tokens = training.batch_size * training.seq_len * accum
    out.update({
        "step_time_s": step,
        "tokens_per_s": tokens / step,
        "step_time_breakdown_s": {"matmul": matmul_s, "adapter_elementwise": adapter_s, "optimizer": optimizer_s,
                                  "kernel_launch": launch_s, "host": eff["host_overhead_s"]},
        "assumptions": {
            "hardware": hardware.name, "compute_dtype": compute_dtype, "peak_flops": hardware.flops(compute_dtype),
            "mfu": eff["mfu"], "memory_efficiency": eff["memory"], "kernel_launch_s": eff["kernel_launch_s"],
            "host_overhead_s": eff["host_overhead_s"],
            "optimizer": f"{training.optimizer}: {passes} passes over the trainable bytes (incl. grad-norm clipping), memory-bound",
            "tokens": "batch_size x seq_len per optimizer step (padding counts; virtual tokens do not)",
        },
    })
    return out


_TERMS: dict[tuple, tuple] = {}


def compute_terms(spec, method, table, training, inference, hardware) -> dict[str, Any]:
    """FLOPs, KV cache, step time and latency for ``estimate()``. ``hardware`` is a Hardware or None (then the
    times are None). Cached per (model, method, table, training, inference, hardware); returns a fresh copy."""
    key = (id(spec), id(table), method_key(method), training, inference,
           None if hardware is None else hardware.model_dump_json())
    hit = _TERMS.get(key)
    if hit is not None and hit[0] is spec and hit[1] is table:
        return _fresh(hit[2])
    out = _compute_terms(spec, method, table, training, inference, hardware)
    if len(_TERMS) > 1024:  # (each (batch, length) is an entry: a sweep fills it with what it never asks again)
        _TERMS.clear()
    _TERMS[key] = (spec, table, out)
    return _fresh(out)


def _fresh(value: Any) -> Any:
    """A copy of nested dicts and lists of numbers and strings (what copy.deepcopy gives, without its memo)."""
    if type(value) is dict:
        return {k: _fresh(v) if type(v) in _NESTED else v for k, v in value.items()}
    if type(value) is list:
        return [_fresh(v) if type(v) in _NESTED else v for v in value]
    return value


_NESTED = (dict, list)


def _compute_terms(spec, method, table, training, inference, hardware) -> dict[str, Any]:
    from .inference import generate_kv_cache_bytes, latency_terms

    serve_dtype = inference.dtype or training.mixed_precision or training.weight_dtype
    merged = bool(method.merged if inference.merged is None else inference.merged)
    kv_dtype = inference.kv_cache_dtype or serve_dtype
    inf: dict[str, Any] = {
        "forward_flops": forward_flops(spec, method, table, inference.batch_size, inference.prompt_len, merged=merged),
        "kv_cache_bytes": generate_kv_cache_bytes(spec, method, inference.batch_size, inference.prompt_len,
                                                  inference.new_tokens, kv_dtype),
        "prefill_latency_s": None,
        "decode_latency_s": None,
        "assumptions": {"kv_cache_dtype": kv_dtype, "merged": merged},
    }
    if hardware is not None:
        inf.update(latency_terms(spec, method, table, inference, hardware, serve_dtype, merged))
    return {"training": training_time_terms(spec, method, table, training, hardware), "inference": inf}

"""A symbolic training step: which tensor storages the forward creates, which of them are still alive when it
returns (what autograd saved for backward, plus the outputs), and how backward walks back through them.

Tensors carry a size in elements as a :class:`~peft_footprint.poly.Poly` in batch ``b`` and sequence ``s``,
a dtype, whether they require grad, the storage they live in and the autograd node that made them. Each op
follows PyTorch's autograd formulas for what it saves *given which inputs require grad* (a frozen linear layer
keeps no input unless its weight trains; ``mul`` keeps the other operand of whichever side requires grad;
``rsqrt``/``softmax``/``relu`` keep their output; ``silu``/``gelu`` their input; views share storage; ``.to()``
to the same dtype is free), and records the node's backward: the gradients it allocates for its inputs, the
temporaries of its formula, the parameter gradients it leaves behind. :func:`backward` replays those nodes in
autograd's order (the ready node created last runs first), freeing each saved tensor after its last user and
each gradient after its consumer, and returns every moment's live bytes as a polynomial.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from .dtypes import BYTES
from .poly import Poly, ZERO, coefficient_matrix

# element sizes: the weight dtypes, a bool mask, integer indices
_SIZES = {**BYTES, "bool": 1, "int64": 8, "int32": 4}


def esize(dtype: str) -> int:
    return _SIZES[dtype]


def promote(a: str, b: str) -> str:
    if a == b:
        return a
    if "fp32" in (a, b) or {a, b} == {"bf16", "fp16"}:  # (torch: bf16 with fp16 gives fp32; QLoRA's fp16 compute
        return "fp32"  # dtype on a bf16 model)
    return a


@dataclass(slots=True)
class T:
    """A symbolic tensor: ``numel`` elements of ``dtype`` in storage ``sid`` (None: not created by the forward:
    parameters, inputs, buffers), made by autograd node ``fn`` (None: a leaf)."""

    numel: Poly
    dtype: str
    rg: bool
    sid: int | None
    fn: int | None = None

    def bytes(self) -> Poly:
        return self.numel * esize(self.dtype)


@dataclass(slots=True)
class Storage:
    name: str
    nbytes: Poly
    saved: bool = False
    output: bool = False
    savers: int = 0  # autograd nodes that saved it
    pinned: bool = False  # held by something other than a node (a checkpoint's inputs, a cache)
    # held by a reference outside autograd that each checkpointed layer's recompute in backward moves to its own
    # copy (AdapterHub's ForwardContext keeps the last residual its hooks saw): a recompute makes it, the copy
    # held before goes, and it stays past its readers
    handed_on: bool = False


# backward events of a node, in order:
#   ("a", bytes) a temporary of the formula;     ("f", bytes) that temporary freed early
#   ("g", k, bytes) the gradient of input k;     ("p", k) input k's gradient is the incoming one (or a view of it)
#   ("k", k, bytes, cast) input k's gradient, made in the output's dtype; the engine casts it to the input's
#                          (``cast`` bytes) after the node returns
#   ("r", k, bytes, small) input k's gradient, summed to its smaller shape (``small`` bytes) after the node returns
#   ("w", key, bytes) a parameter's gradient (kept in .grad the first time, accumulated after)
#   ("v", key, bytes, small) a parameter's gradient made larger than the parameter, summed to it (``small``
#                          bytes) after the node returns
#   ("s", key) the node is a view of a parameter, made before the op that read it (its AccumulateGrad runs once
#                          the nodes made after the view are done): the first gradient becomes the .grad (kept); a
#                          later one is added into the .grad in place and goes with the node
#   ("c", key, bytes) the same, for an incoming gradient of another layout: the first is cloned in the
#                          parameter's layout (kept as .grad) while the incoming one is alive
@dataclass(slots=True)
class Node:
    inputs: tuple
    saved: tuple
    prog: tuple
    name: str = ""
    multi: bool = False  # several outputs (split/chunk): their gradients are gathered, not summed
    param: bool = False  # it saved a parameter (a checkpoint's recompute starts at the first such node too)
    at: int = -1  # the last storage when it was recorded (its output's, if it made one)
    leaves: tuple | None = None  # the storage of each input that is a leaf requiring grad (None: not a leaf)


@dataclass
class Graph:
    storages: list[Storage] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    scope: str = ""
    # torch.autocast: matmuls (and sdpa) run in this dtype; their fp32 inputs and weights are cast copies
    autocast: str | None = None
    weight_casts: dict[str, T] = field(default_factory=dict)
    last_use: dict[int, int] = field(default_factory=dict)  # storage -> the last storage created by an op reading it
    # gradient accumulation: every parameter's .grad exists when backward starts, so a new gradient is added into it
    # in place and goes (a transient), except those of the parameters named here, whose gradients wait in
    # autograd's input buffer for another (a tied weight). None: no .grad exists (the first micro-batch)
    accumulating: frozenset | None = None
    # gradients of leaves made anew by each forward (PEFT's transpose() wraps a Conv1D's W.T in a new Parameter):
    # no .grad exists before their first gradient, under gradient accumulation too
    fresh_leaves: set = field(default_factory=set)
    # autocast's cached casts of leaves that require grad (trainable weights and biases): alive until autocast
    # exits at the end of the forward, whether or not a node saved them (the caller touches them then)
    held: list = field(default_factory=list)
    # leaves that require grad and feed matmuls (the embeddings' output under enable_input_require_grads): autocast
    # caches their low-precision copy too, one per storage, shared by every matmul that reads it
    leaf_inputs: set = field(default_factory=set)
    input_casts: dict[int, T] = field(default_factory=dict)

    # ---- storage bookkeeping --------------------------------------------------------------------
    def new(self, numel: Poly, dtype: str, rg: bool, name: str) -> T:
        self.storages.append(Storage(f"{self.scope}{name}", numel * esize(dtype)))
        return T(numel, dtype, rg, len(self.storages) - 1)

    def save(self, *tensors: T) -> None:
        """Kept alive by something other than an autograd node (a checkpoint's inputs, a returned cache)."""
        for t in tensors:
            if t.sid is not None:
                self.storages[t.sid].saved = True
                self.storages[t.sid].pinned = True

    def keep(self, t: T) -> None:
        """An output the caller holds (logits, loss)."""
        if t.sid is not None:
            self.storages[t.sid].output = True

    def alive(self) -> list[Storage]:
        return [s for s in self.storages if s.saved or s.output]

    def alive_ids(self) -> set[int]:
        """The ids of :meth:`alive`'s storages."""
        return {k for k, s in enumerate(self.storages) if s.saved or s.output}

    def alive_bytes(self) -> Poly:
        return Poly.sum(s.nbytes for s in self.storages if s.saved or s.output)

    def node(self, out: T, inputs: list, prog: list, saved: tuple = (), name: str = "") -> T:
        """Record the autograd node that made ``out`` from ``inputs`` (its backward ``prog``; it keeps ``saved``)."""
        now = len(self.storages) - 1
        for x in inputs:
            if x is not None and x.sid is not None:
                self.last_use[x.sid] = now
        if not out.rg:
            return out
        storages = self.storages
        sids = tuple(t.sid for t in saved if t is not None and t.sid is not None)
        for sid in sids:
            st = storages[sid]
            st.saved = True
            st.savers += 1
        # input slots: the producing node, None for a leaf that requires grad (its .grad stays), -2 for a parameter
        # (a leaf without a storage of its own), -1 for no gradient
        ins = tuple(-1 if x is None or not x.rg else -2 if x.fn is None and x.sid is None else x.fn for x in inputs)
        param = any(t is not None and t.sid is None for t in saved)
        leaves = tuple(x.sid if j is None else None for x, j in zip(inputs, ins)) if None in ins else None
        self.nodes.append(Node(ins, sids, tuple(prog), self.scope + name, param=param, at=now, leaves=leaves))
        out.fn = len(self.nodes) - 1
        return out

    def touch(self, *tensors: T) -> None:
        """A Python variable still holds these (a module's input, until the module returns)."""
        now = len(self.storages) - 1
        for x in tensors:
            if x is not None and x.sid is not None:
                self.last_use[x.sid] = max(self.last_use.get(x.sid, now), now)

    # ---- ops ------------------------------------------------------------------------------------
    def linear(self, x: T, rows: Poly, out_features: int, *, w_rg: bool, b_rg: bool = False, name: str = "linear",
               dtype: str | None = None, in_features: int | None = None, extra_bwd: list | None = None,
               bias_rows: Poly | None = None, bias: bool = False, weight_view: T | None = None) -> T:
        """``x @ W.T (+ b)``: keeps x for the weight gradient when W trains (W itself is a parameter). Under
        autocast the input and the weight are cast copies (the weight's cached once per forward), and the
        copies are what is kept. ``extra_bwd``: temporaries of the backward, as its events (a dequantized 4-bit
        weight). ``bias_rows``: the bias gradient is first made with that many rows, before the rest of the
        backward, and summed to the bias's shape by the engine once the node returns (bitsandbytes' MatMul4Bit:
        ``grad_output.sum(0)`` of a (batch, seq, out) gradient is (seq, out)); the int 1: made in the bias's shape
        (the sum of a 2-D gradient), the .grad as it is. ``bias``: the module has a bias (``b_rg``: a trainable
        one). ``weight_view``: the weight is read through a view made before the op (a node with an "s" event):
        its gradient goes there."""
        ac = self.autocast
        inf = in_features or 0
        key = self.scope + name  # a parameter's gradient key
        if ac and (x.dtype != ac or in_features):
            # autocast's linear casts its arguments last to first (the C++ argument order): bias, weight, input
            frozen_bias = bias_copy = None
            if b_rg:  # the bias is cast too, and cached (nothing saves it): its cast is a node of its own, made before
                # the weight's, so its backward (the fp32 .grad) runs after the weight cast's
                bias_copy = self.new(Poly.const(out_features), ac, True, name + " autocast bias")
                self.node(bias_copy, [None], [("w", key + ".bias", Poly.const(out_features * 4))], name=name + " bias cast")
                self.held.append(bias_copy)
            elif bias:  # a frozen bias's copy is not cached: it lives until the op returns
                frozen_bias = self.new(Poly.const(out_features), ac, False, name + " autocast bias (frozen)")
            wc = self.weight_cast(name, inf * out_features, w_rg, weight_view) if in_features else None
            if x.dtype != ac and x.sid in self.leaf_inputs:
                xc = self.input_casts.get(x.sid)
                if xc is None:
                    xc = self.input_casts[x.sid] = self.new(x.numel, ac, x.rg, name + " autocast input (cached)")
                    self.node(xc, [x], [("g", 0, x.bytes())], name=name + " autocast input (cached)")
                    self.held.append(xc)
                x = xc
            elif x.dtype != ac:
                xc = self.new(x.numel, ac, x.rg, name + " autocast input")
                self.node(xc, [x], [("g", 0, x.bytes())], name=name + " autocast input")
                x = xc
            out = self.new(rows * out_features, ac, x.rg or w_rg or b_rg, name)
            self.touch(frozen_bias, wc)  # (the op's arguments, alive while it runs, whether or not it saves them)
            prog = []
            if w_rg and wc is not None:
                prog.append(("g", 1, Poly.const(inf * out_features * esize(ac))))
            if x.rg:
                prog.append(("g", 0, x.bytes()))
            if b_rg:  # addmm's gradient of the bias's copy is the incoming one, summed to (out,) once the node returns
                prog.append(("r", 2, ZERO, Poly.const(out_features * esize(ac))))
            saved = ((x,) if w_rg else ()) + ((wc,) if x.rg and wc is not None else ())
            return self.node(out, [x, wc if w_rg else None, bias_copy], prog, saved, name)
        out = self.new(rows * out_features, dtype or x.dtype, x.rg or w_rg or b_rg, name)
        prog = []
        if w_rg and weight_view is not None:
            prog.append(("g", 1, Poly.const(inf * out_features * esize(out.dtype))))
        elif w_rg:
            prog.append(("w", key, Poly.const(inf * out_features * esize(out.dtype))))
        bias = Poly.const(out_features * esize(out.dtype)) if b_rg else None
        if bias is not None and type(bias_rows) is int and bias_rows == 1:
            prog.append(("w", key + ".bias", bias))
        elif bias is not None and bias_rows is not None:
            prog.append(("v", key + ".bias", bias_rows * bias, bias))
        if extra_bwd is not None and x.rg:
            prog += extra_bwd
        if x.rg:
            prog.append(("g", 0, x.bytes()))
        if bias is not None and bias_rows is None:  # addmm passes the gradient itself as the bias's: the engine
            # sums it to the bias's shape once the node has returned (a recomputed input already gone by then)
            prog.append(("v", key + ".bias", ZERO, bias))
        # the weight is kept for the input's gradient (bitsandbytes' MatMul4Bit keeps it on ctx, outside autograd's
        # saved tensors: a checkpoint does not recompute for it)
        weight = T(Poly.const(inf * out_features), out.dtype, w_rg, None)
        keeps = x.rg and extra_bwd is None
        return self.node(out, [x] if weight_view is None else [x, weight_view], prog, ((x,) if w_rg else ()) + ((weight,) if keeps else ()), name)

    def weight_cast(self, name: str, numel: int, w_rg: bool, view: T | None = None) -> T:
        """Autocast's low-precision copy of the fp32 weight of linear ``name``: made at its first matmul in the
        forward, then reused (cached, and alive until the forward returns, when the weight trains; a frozen
        weight's copy is made again by each matmul, but every module multiplies its weight once)."""
        key = self.scope + name
        wc = self.weight_casts.get(key)
        if wc is None:
            wc = self.weight_casts[key] = self.new(Poly.const(numel), self.autocast, w_rg, name + " autocast weight")
            grad = ("g", 0, Poly.const(numel * 4)) if view is not None else ("w", key, Poly.const(numel * 4))
            self.node(wc, [view], [grad], name=name + " weight cast")
            if w_rg:
                self.held.append(wc)
        return wc

    def autocast_input(self, x: T, name: str) -> T:
        """An op on autocast's low-precision list (sdpa) casts fp32 inputs."""
        if self.autocast and x.dtype != self.autocast:
            return self.to(x, self.autocast, name + " autocast")
        return x

    def to(self, x: T, dtype: str, name: str = "to") -> T:
        if x.dtype == dtype:
            return x
        out = self.new(x.numel, dtype, x.rg, name)
        return self.node(out, [x], [("g", 0, x.bytes())], name=name)

    def copy(self, x: T, name: str = "clone") -> T:
        out = self.new(x.numel, x.dtype, x.rg, name)
        return self.node(out, [x], [("p", 0)], name=name)

    def view(self, x: T, numel: Poly | None = None, name: str = "view") -> T:
        """A view of x's storage (a slice, a chunk): its gradient is scattered into a zero tensor of x's size."""
        if numel is None:
            return T(x.numel, x.dtype, x.rg, x.sid, x.fn)
        out = T(numel, x.dtype, x.rg, x.sid)
        return self.node(out, [x], [("g", 0, x.bytes())], name=name)

    def split(self, x: T, numels: list, name: str = "split") -> list[T]:
        """``chunk``/``split``: views of x; one node gathers their gradients into one gradient of x's size. Each
        view's gradients are summed first (a view read by two ops, GPT-NeoX's q by its rotated and its
        pass-through slice, gets one buffer): a pass-through node per view stands for that buffer."""
        if not x.rg:
            return [T(n, x.dtype, False, x.sid) for n in numels]
        self.nodes.append(Node((x.fn,), (), (("g", 0, x.bytes()),), self.scope + name, multi=True))
        gather = len(self.nodes) - 1
        out = []
        for n in numels:
            self.nodes.append(Node((gather,), (), (("p", 0),), self.scope + name))
            out.append(T(n, x.dtype, True, x.sid, len(self.nodes) - 1))
        return out

    def _grad_to(self, i: int, t: T, out: T, prog: list) -> None:
        """Gradient of input i of an elementwise op: the incoming one, or a cast / summed-to-shape copy."""
        if t.dtype == out.dtype and t.numel == out.numel:
            prog.append(("p", i))
        elif t.numel == out.numel:
            prog.append(("g", i, t.bytes()))
        else:
            prog.append(("r", i, out.numel * esize(t.dtype), t.bytes()))

    def add(self, a: T, b: T | None = None, name: str = "add", numel: Poly | None = None, dtype: str | None = None) -> T:
        dtype = dtype or (a.dtype if b is None else promote(a.dtype, b.dtype))
        rg = a.rg or (b is not None and b.rg)
        out = self.new(numel if numel is not None else a.numel, dtype, rg, name)
        prog: list = []
        for i, t in enumerate((a, b)):
            if t is not None and t.rg:
                self._grad_to(i, t, out, prog)
        return self.node(out, [a, b], prog, name=name)

    def mul(self, a: T, b: T | None = None, name: str = "mul", numel: Poly | None = None) -> T:
        """``a * b``: keeps b if a requires grad and a if b requires grad; ``b=None`` is a Python scalar."""
        if b is None:
            out = self.new(a.numel, a.dtype, a.rg, name)
            return self.node(out, [a], [("g", 0, a.bytes())], name=name)
        big = numel if numel is not None else a.numel
        out = self.new(big, promote(a.dtype, b.dtype), a.rg or b.rg, name)
        prog: list = []
        full = big * esize(out.dtype)
        for i, t in ((1, b), (0, a)):  # MulBackward0 computes the other operand's gradient first
            if not t.rg:
                continue
            if t.numel == big and t.dtype == out.dtype:
                prog.append(("g", i, full))
            elif t.numel == big:  # the product in the output's dtype, cast to the input's after the node returns
                prog.append(("k", i, full, t.bytes()))
            else:  # broadcast: summed to the input's shape after the node returns
                prog.append(("r", i, big * esize(t.dtype), t.bytes()))
        saved = ((b,) if a.rg else ()) + ((a,) if b.rg else ())
        return self.node(out, [a, b], prog, saved, name)

    def unary_saves_input(self, x: T, name: str, dtype: str | None = None, temps: int = 0) -> T:
        """silu, gelu (erf/tanh), pow: keep the input; ``temps`` full-size temporaries in the backward formula
        (pow: x.pow(1) and its product with the exponent)."""
        out = self.new(x.numel, dtype or x.dtype, x.rg, name)
        prog = [("a", x.bytes())] * temps + [("g", 0, x.bytes())]
        return self.node(out, [x], prog, (x,), name)

    def unary_saves_output(self, x: T, name: str, numel: Poly | None = None, dtype: str | None = None, temps: int = 0) -> T:
        """rsqrt, relu, softmax, tanh: keep the output."""
        out = self.new(numel if numel is not None else x.numel, dtype or x.dtype, x.rg, name)
        prog = [("a", out.bytes())] * temps + [("g", 0, x.bytes())]
        return self.node(out, [x], prog, (out,) if x.rg else (), name)

    def unary_no_save(self, x: T, name: str, numel: Poly | None = None, dtype: str | None = None) -> T:
        out = self.new(numel if numel is not None else x.numel, dtype or x.dtype, x.rg, name)
        return self.node(out, [x], [("g", 0, x.bytes())], name=name)

    def dropout(self, x: T, p: float, mask_dtype: str, name: str = "dropout") -> T:
        """``F.dropout`` in training: keeps the mask (bool on CUDA, the input dtype on CPU) when x requires grad."""
        if p <= 0:
            return x
        mask = self.new(x.numel, mask_dtype, False, name + " mask")
        out = self.new(x.numel, x.dtype, x.rg, name)
        self.touch(mask)  # alive with the output it makes (native_dropout returns both), even when nothing saves it
        return self.node(out, [x], [("g", 0, x.bytes())], (mask,) if x.rg else (), name)


# ---- backward ------------------------------------------------------------------------------------


@dataclass
class Backward:
    """Live bytes (everything alive, beyond weights and optimizer state) at the moments of a simulated backward."""

    moments: list  # (node index, Poly of live bytes)
    end: Poly  # live bytes when the simulated nodes are done
    start_of: dict  # node index -> live bytes when it started
    alive: set = field(default_factory=set)  # the storages alive then


def backward(g: Graph, root: int, lo: int, start: Poly, alive: set[int], recompute: tuple | None = None,
             first_grad: Poly | None = None, sum_leaves: bool = False) -> Backward:
    """Run autograd's engine over the nodes ``lo..`` reachable from node ``root`` (the loss).

    ``alive``: storage ids alive when backward starts (``start`` bytes in all). ``recompute``: (first node,
    end node, saved storage ids, first storage, end storage, held, released) of a checkpointed layer, whose
    forward reruns when its first node with saved tensors (or parameters) runs, up to the op that saves the last
    of them. ``held``: the recomputed storages that outlive the layer's backward (the recompute's own graph
    keeps them, :class:`Storage` ``handed_on``), ``released``: the bytes the layer above held so, freed when the
    recompute makes the storage handed on. Gradients sent to nodes before ``lo`` (or to leaves) stay alive;
    they belong to the layers below. ``first_grad``: the gradient sent into ``root``, released once it is used
    (None: the loss's, 4 bytes that torch.autograd.backward holds until it returns). ``sum_leaves``: a leaf that
    several nodes send gradients to keeps one, their sum (its AccumulateGrad's input buffer), not each of them.
    """
    nodes, storages, accumulating, fresh = g.nodes, g.storages, g.accumulating, g.fresh_leaves
    deps: dict[int, int] = {}
    seen = {root}
    stack = [root]
    while stack:
        n = stack.pop()
        for j in nodes[n].inputs:
            if j is not None and j >= lo:
                deps[j] = deps.get(j, 0) + 1
                if j not in seen:
                    seen.add(j)
                    stack.append(j)
    savers: dict[int, int] = {}
    alive = set(alive)
    live = start
    moments: list = []
    start_of: dict[int, Poly] = {}
    params: set[str] = set()
    if first_grad is None:  # the loss's gradient, ones_like(loss): torch.autograd.backward holds it (its
        # grad_tensors) until the engine returns, so it is never released here
        buffers: dict[int, list] = {root: [Poly.const(4), 2]}
    else:
        buffers = {root: [first_grad, 1]}
    live = live + buffers[root][0]
    ready = [-root]

    def in_place(key: str) -> bool:  # a parameter's gradient added into an existing .grad (and then freed)
        return key in params or (accumulating is not None and key not in accumulating and key not in fresh)

    leaf_grads: dict[int, list] = {}  # a leaf's gradient so far, by its storage
    grew = [False]  # nothing freed since the last moment: a new one bounds it and replaces it
    recomputed: set[int] = set()  # saved storages the checkpoint recomputed
    held = set(recompute[5]) if recompute else set()

    def unpacked(node: Node, live: Poly) -> Poly:
        """The node's formula has returned. A tensor the checkpoint recomputed is held by the node's unpacked
        local alone (non-reentrant checkpointing drops its own reference at unpack): it goes now if this node is
        its last saver, before the engine's casts and sum_to of the gradients."""
        for sid in node.saved:
            if sid in recomputed and sid in alive and savers.get(sid, storages[sid].savers) == 1 and sid not in held:
                st = storages[sid]
                if not st.pinned and not st.output:
                    alive.discard(sid)
                    live = live - st.nbytes
                    grew[0] = False
        return live

    def push(n: int, p: Poly) -> None:
        if grew[0]:
            moments[-1] = (n, p)
        else:
            moments.append((n, p))
            grew[0] = True

    def release(obj: list) -> None:
        nonlocal live
        obj[1] -= 1
        if obj[1] == 0:
            live = live - obj[0]
            grew[0] = False

    while ready:
        n = -heapq.heappop(ready)
        node = nodes[n]
        start_of[n] = live
        if recompute and recompute[0] <= n < recompute[1] and (node.saved or node.param):
            sids = recompute[2]
            if sids:  # the layer's forward reruns until the op that saves the last of its tensors has run
                for _, p in forward(g, recompute[3], recompute[4], live, lambda k: storages[k].savers > 0, held_before=False,
                                    recompute=True, released=recompute[6]):
                    grew[0] = False  # the forward's local maxima, with frees between them
                    push(n, p)
                live = live - recompute[6]  # (non-zero only where the recompute makes a storage handed on)
            for sid in sids:
                if sid not in alive:
                    alive.add(sid)
                    recomputed.add(sid)
                    live = live + storages[sid].nbytes
            grew[0] = False
            push(n, live)
            recompute = None
        gout = buffers.pop(n)
        gathered = gout if node.multi else None
        if gathered is not None:
            gout = [ZERO, 1]
        temps = ZERO
        added = ZERO  # parameters' gradients that AccumulateGrad adds into their .grad, once the node's outputs are handed on
        outs: list = []
        reduce: list = []  # (input, gradient, its bytes once summed or cast): validate_outputs, after the node returns
        summed: list = []  # parameters' gradients made larger than the parameter ("v" events)
        for ev in node.prog:
            kind = ev[0]
            if kind == "a":
                live = live + ev[1]
                temps = temps + ev[1]
                push(n, live)
            elif kind == "f":
                live = live - ev[1]
                grew[0] = False
                temps = temps - ev[1]
            elif kind == "g":
                obj = [ev[2], 1]
                live = live + ev[2]
                outs.append((ev[1], obj))
                push(n, live)
            elif kind == "r" or kind == "k":
                obj = [ev[2], 1]
                live = live + ev[2]
                outs.append((ev[1], obj))
                reduce.append((ev[1], obj, ev[3]))
                push(n, live)
            elif kind == "p":
                gout[1] += 1
                outs.append((ev[1], gout))
            elif kind == "v":  # a parameter's gradient, summed to its shape once the node returns
                live = live + ev[2]
                push(n, live)
                summed.append(ev)
            elif kind == "s" or kind == "c":
                if not in_place(ev[1]):
                    if kind == "s":
                        gout[1] += 1  # (the .grad's reference: never released)
                    else:
                        live = live + ev[2]
                        push(n, live)
                params.add(ev[1])
            else:  # "w"
                live = live + ev[2]
                push(n, live)
                if in_place(ev[1]):
                    added = added + ev[2]
                params.add(ev[1])
        live = unpacked(node, live)
        if temps:
            live = live - temps
            grew[0] = False
        # the engine sums broadcast gradients to their input's shape and casts them to its dtype, input by input
        # (validate_outputs, before call_function returns: the incoming gradient is still alive)
        for _, obj, small in sorted(reduce, key=lambda r: r[0]):
            live = live + small
            push(n, live)
            live = live - obj[0]
            grew[0] = False
            obj[0] = small
        for _, key, full, small in summed:  # (the parameters come after the inputs that flow on)
            live = live + small
            push(n, live)
            live = live - full
            grew[0] = False
            if key in params or accumulating is not None:  # accumulated into the .grad there
                added = added + small
            params.add(key)
        release(gout)
        for obj in gathered or ():
            release(obj)
        for sid in node.saved:
            left = savers.get(sid, storages[sid].savers) - 1
            savers[sid] = left
            st = storages[sid]
            if left == 0 and not st.pinned and not st.output and sid in alive and sid not in held:
                alive.discard(sid)
                live = live - st.nbytes
                grew[0] = False
        late = []  # gradients added into a parameter's .grad in place, by its AccumulateGrad
        for k, obj in outs:
            j = node.inputs[k]
            if j == -2 and accumulating is not None:
                late.append(obj)
                continue
            if j is None and sum_leaves and node.leaves is not None and node.leaves[k] is not None:
                # a leaf's .grad: stays; a second gradient for the same leaf is summed with the first in its
                # AccumulateGrad's input buffer (out of place: both go, the sum stays)
                old = leaf_grads.get(node.leaves[k])
                if old is not None:
                    new = [old[0], 1]
                    live = live + new[0]
                    push(n, live)
                    release(old)
                    release(obj)
                    obj = new
                leaf_grads[node.leaves[k]] = obj
                continue
            if j is None or j < lo:  # a leaf's .grad or the layers below: stays
                continue
            if j == -1:
                release(obj)
                continue
            old = buffers.get(j)
            if nodes[j].multi:
                buffers.setdefault(j, []).append(obj)
            elif old is None:
                buffers[j] = obj
            else:  # accumulated out of place (what autograd does when the buffer is shared or under a dispatch mode)
                new = [old[0], 1]
                live = live + new[0]
                push(n, live)
                release(old)
                release(obj)
                buffers[j] = new
            deps[j] -= 1
        # the engine hands every output on (adding into input buffers) before the parameters' AccumulateGrad run
        for obj in late:
            release(obj)
        if added:
            live = live - added
            grew[0] = False
        for k, _ in outs:
            j = node.inputs[k]
            if j is not None and j >= lo and deps.get(j) == 0:
                deps[j] = -1
                heapq.heappush(ready, -j)
    return Backward(moments, live, start_of, alive)


def forward(g: Graph, first: int, end: int, base: Poly, kept, held_before: bool = True,
            recompute: bool = False, released: Poly = ZERO) -> list[tuple[int, Poly]]:
    """Live bytes as a forward creates storages ``first..end-1``: each is freed after the last op that reads
    it, unless ``kept(sid)`` (saved for backward, an output). Returns (storage just created, live bytes) at
    each local maximum. ``held_before``: storages made before ``first`` and read after it are alive on top of
    ``base`` until their last reader (the original forward); a checkpoint's recompute in backward has them in
    ``base`` already, or not at all. ``recompute``: a storage ``handed_on`` replaces the copy ``base`` holds
    as soon as it is made (:class:`Storage`), and ``released`` bytes go with that copy."""
    storages, last_use = g.storages, g.last_use
    frees: dict[int, list[int]] = {}
    handed = {k for k in range(first, end) if storages[k].handed_on} if recompute else set()
    for k in range(first, end):
        if not kept(k) and k not in handed:
            frees.setdefault(max(last_use.get(k, k), k), []).append(k)
    for k, t in last_use.items() if held_before else ():  # made before, still to be read (the layer's input)
        if k < first and t >= first and not kept(k):
            base = base + storages[k].nbytes
            frees.setdefault(t, []).append(k)
    live, out = base, []
    grew = False  # nothing freed since the last moment: the new one bounds it and replaces it
    for k in range(first, end):
        live = live + storages[k].nbytes
        if grew:
            out[-1] = (k, live)
        else:
            out.append((k, live))
        grew = True
        if k in handed:  # the copy held before goes
            live = live - storages[k].nbytes - released
            grew = False
        for j in frees.get(k, ()):
            live = live - storages[j].nbytes
            grew = False
    return out


# shapes the peak candidates are compared at: batch 1..4096 (2^k), sequence 1..2M tokens (2^k and 3 x 2^k)
_GRID_B = np.array([2**k for k in range(13)], dtype=np.float64)
_GRID_S = np.array(sorted({m * 2**k for m in (1, 3) for k in range(22)}), dtype=np.float64)
_GB, _GS = (a.ravel() for a in np.meshgrid(_GRID_B, _GRID_S))


def winners(polys: list) -> list[int]:
    """Indices of the polynomials that are the largest at some (batch, seq) of a wide log-spaced grid: the
    only ones that can set a peak (two candidates that trade places between grid points differ by less
    than their change over a factor of 1.5 in one dimension). Polynomials or their packed integers."""
    if len(polys) < 2:
        return list(range(len(polys)))
    return winners_matrix(coefficient_matrix(polys))


def winners_matrix(m: np.ndarray) -> list[int]:
    """:func:`winners` from the polynomials' coefficient rows (poly.coefficient_matrix)."""
    if len(m) < 2:
        return list(range(len(m)))
    used = m.any(axis=0)  # the monomials that occur (a zero term adds nothing)
    key = used.tobytes()
    at = _AT_USED.get(key)
    if at is None:
        at = _AT_USED[key] = (np.ascontiguousarray(_AT[:, used]), np.flatnonzero(used))
    return sorted(set(np.argmax(at[0] @ m[:, at[1]].T.astype(np.float64), axis=1).tolist()))


# every monomial b**i * s**j (column 4*i + j of coefficient_matrix) at every grid point
_AT = np.array([_GB**i * _GS**j for i in range(4) for j in range(4)]).T
_AT_USED: dict[bytes, tuple] = {}  # _AT's columns of the monomials that occur, by which occur

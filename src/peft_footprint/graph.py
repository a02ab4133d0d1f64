"""A symbolic forward pass: which tensor storages a training forward creates and which of them are still
alive when it returns (what autograd saved for backward, plus the outputs).

Tensors carry a size in elements as a :class:`~peft_footprint.poly.Poly` in batch ``b`` and sequence ``s``,
a dtype, whether they require grad, and the storage they live in. Each op follows PyTorch's autograd
formulas for what it saves *given which inputs require grad* (a frozen linear layer keeps no input unless its
weight trains; ``mul`` keeps the other operand of whichever side requires grad; ``rsqrt``/``softmax``/``relu``
keep their output; ``silu``/``gelu`` their input; views share storage; ``.to()`` to the same dtype is free).
The result is a set of named storages, each a polynomial of bytes: exact for any (b, s) in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .dtypes import nbytes
from .poly import Poly

# a bool mask is 1 byte; "mask:<dtype>" is a dropout mask stored in <dtype> (CPU kernels)
_EXTRA = {"bool": 1, "int64": 8, "int32": 4}


def esize(dtype: str) -> int:
    return _EXTRA.get(dtype) or nbytes(dtype)


def promote(a: str, b: str) -> str:
    if a == b:
        return a
    if "fp32" in (a, b):
        return "fp32"
    return a  # bf16 x fp16 does not occur here


@dataclass(slots=True)
class T:
    """A symbolic tensor: ``numel`` elements of ``dtype`` in storage ``sid`` (None: not created by the forward:
    parameters, inputs, buffers)."""

    numel: Poly
    dtype: str
    rg: bool
    sid: int | None


@dataclass(slots=True)
class Storage:
    name: str
    nbytes: Poly
    saved: bool = False
    output: bool = False


@dataclass
class Graph:
    storages: list[Storage] = field(default_factory=list)
    scope: str = ""
    # torch.autocast: matmuls (and sdpa) run in this dtype; their fp32 inputs and weights are cast copies
    autocast: str | None = None
    weight_casts: dict[str, T] = field(default_factory=dict)

    # ---- storage bookkeeping --------------------------------------------------------------------
    def new(self, numel: Poly, dtype: str, rg: bool, name: str) -> T:
        self.storages.append(Storage(f"{self.scope}{name}", numel * esize(dtype)))
        return T(numel, dtype, rg, len(self.storages) - 1)

    def save(self, *tensors: T) -> None:
        for t in tensors:
            if t.sid is not None:
                self.storages[t.sid].saved = True

    def keep(self, t: T) -> None:
        """An output the caller holds (logits, loss)."""
        if t.sid is not None:
            self.storages[t.sid].output = True

    def alive(self) -> list[Storage]:
        return [s for s in self.storages if s.saved or s.output]

    def alive_bytes(self) -> Poly:
        return Poly.sum(s.nbytes for s in self.storages if s.saved or s.output)

    # ---- ops ------------------------------------------------------------------------------------
    def linear(self, x: T, rows: Poly, out_features: int, *, w_rg: bool, b_rg: bool = False, name: str = "linear",
               dtype: str | None = None, in_features: int | None = None) -> T:
        """``x @ W.T (+ b)``: keeps x for the weight gradient when W trains (W itself is a parameter). Under
        autocast the input and the weight are cast copies (the weight's cached once per forward), and the
        copies are what is kept."""
        ac = self.autocast
        if ac and (x.dtype != ac or in_features):
            if x.dtype != ac:
                x = self.new(x.numel, ac, x.rg, name + " autocast input")
            wc = None
            if in_features:
                key = self.scope + name
                wc = self.weight_casts.get(key)
                if wc is None:
                    wc = self.weight_casts[key] = self.new(Poly.const(in_features * out_features), ac, w_rg, name + " autocast weight")
            if w_rg:
                self.save(x)
            if x.rg and wc is not None:
                self.save(wc)
            return self.new(rows * out_features, ac, x.rg or w_rg or b_rg, name)
        if w_rg:
            self.save(x)
        return self.new(rows * out_features, dtype or x.dtype, x.rg or w_rg or b_rg, name)

    def autocast_input(self, x: T, name: str) -> T:
        """An op on autocast's low-precision list (sdpa) casts fp32 inputs."""
        if self.autocast and x.dtype != self.autocast:
            return self.new(x.numel, self.autocast, x.rg, name + " autocast")
        return x

    def to(self, x: T, dtype: str, name: str = "to") -> T:
        if x.dtype == dtype:
            return x
        return self.new(x.numel, dtype, x.rg, name)

    def copy(self, x: T, name: str = "clone") -> T:
        return self.new(x.numel, x.dtype, x.rg, name)

    def add(self, a: T, b: T | None = None, name: str = "add", numel: Poly | None = None) -> T:
        dtype = a.dtype if b is None else promote(a.dtype, b.dtype)
        rg = a.rg or (b is not None and b.rg)
        return self.new(numel if numel is not None else a.numel, dtype, rg, name)

    def mul(self, a: T, b: T | None = None, name: str = "mul", numel: Poly | None = None) -> T:
        """``a * b``: keeps b if a requires grad and a if b requires grad; ``b=None`` is a Python scalar."""
        if b is None:
            return self.new(a.numel, a.dtype, a.rg, name)
        if a.rg:
            self.save(b)
        if b.rg:
            self.save(a)
        big = numel if numel is not None else a.numel
        return self.new(big, promote(a.dtype, b.dtype), a.rg or b.rg, name)

    def unary_saves_input(self, x: T, name: str, dtype: str | None = None) -> T:  # silu, gelu(erf/tanh), pow, tanh-in
        if x.rg:
            self.save(x)
        return self.new(x.numel, dtype or x.dtype, x.rg, name)

    def unary_saves_output(self, x: T, name: str, numel: Poly | None = None, dtype: str | None = None) -> T:  # rsqrt, relu, softmax, tanh
        out = self.new(numel if numel is not None else x.numel, dtype or x.dtype, x.rg, name)
        if x.rg:
            self.save(out)
        return out

    def unary_no_save(self, x: T, name: str, numel: Poly | None = None, dtype: str | None = None) -> T:
        return self.new(numel if numel is not None else x.numel, dtype or x.dtype, x.rg, name)

    def dropout(self, x: T, p: float, mask_dtype: str, name: str = "dropout") -> T:
        """``F.dropout`` in training: keeps the mask (bool on CUDA, the input dtype on CPU) when x requires grad."""
        if p <= 0:
            return x
        mask = self.new(x.numel, mask_dtype, False, name + " mask")
        if x.rg:
            self.save(mask)
        return self.new(x.numel, x.dtype, x.rg, name)

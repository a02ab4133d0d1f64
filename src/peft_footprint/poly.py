"""Polynomials in batch size ``b`` and sequence length ``s`` with integer coefficients.

Every memory term of a training step is such a polynomial (a (b, s, h) activation is ``h*b*s`` elements,
eager attention's probabilities ``heads*b*s*s``), so one symbolic pass gives coefficients that evaluate
exactly for any shape, or over whole numpy grids at once.

A polynomial is held as one Python integer: the coefficient of ``b**i * s**j`` sits in the slot
``4*i + j`` (64 bits, signed digits), so sums, differences and products are single big-integer operations -- the
symbolic pass does thousands of them per model. Degrees up to 3 in each variable are allowed (memory is
linear in b and at most quadratic in s); coefficients must stay below 2**62 in magnitude.
"""

from __future__ import annotations

import operator
from typing import Any, Union

import numpy as np

from . import trace as _trace

Number = Union[int, "Poly"]

_W = 64  # bits per coefficient slot
_HALF = 1 << (_W - 1)
_MASK = (1 << _W) - 1
_MAXDEG = 3
_new = object.__new__


def _pack(terms: dict[tuple[int, int], int]) -> tuple[int, int, int]:
    v, db, ds = 0, 0, 0
    for (pb, ps), c in terms.items():
        if not c:
            continue
        if pb > _MAXDEG or ps > _MAXDEG or pb < 0 or ps < 0:
            raise ValueError(f"monomial b^{pb} s^{ps}: degrees above {_MAXDEG} are not supported")
        if not isinstance(c, int) or abs(c) >= _HALF >> 1:
            raise ValueError(f"coefficient {c!r}: an integer below 2**62 in magnitude is required")
        v += c << (_W * (4 * pb + ps))
        db, ds = max(db, pb), max(ds, ps)
    return v, db, ds


def _unpack(v: int) -> dict[tuple[int, int], int]:
    out: dict[tuple[int, int], int] = {}
    slot = 0
    while v:
        digit = v & _MASK
        if digit >= _HALF:
            digit -= 1 << _W
        if digit:
            out[divmod(slot, 4)] = digit
        v = (v - digit) >> _W
        slot += 1
    return out


class Poly:
    __slots__ = ("v", "db", "ds", "_terms", "r")

    def __init__(self, terms: dict[tuple[int, int], int] | None = None):
        self.v, self.db, self.ds = _pack(terms) if terms else (0, 0, 0)
        self._terms = self.r = None

    @classmethod
    def _raw(cls, v: int, db: int, ds: int) -> Poly:
        p = _new(cls)
        p.v, p.db, p.ds, p._terms, p.r = v, db, ds, None, None
        return p

    def untraced(self) -> Poly:
        """The value alone (``r``: its slot on the trace tape, see trace.py)."""
        return self if self.r is None else Poly._raw(self.v, self.db, self.ds)

    @property
    def terms(self) -> dict[tuple[int, int], int]:
        """Coefficient by (power of b, power of s)."""
        if self.r is not None:
            return _trace.specialize(self).terms
        t = self._terms
        if t is None:
            t = self._terms = _unpack(self.v)
        return t

    @staticmethod
    def const(c: int) -> Poly:
        if type(c) is _trace.Sym:
            return _trace.record(_trace._const, c, None)
        return Poly({(0, 0): c})

    @staticmethod
    def var(b: int = 0, s: int = 0, c: int = 1) -> Poly:
        return Poly({(b, s): c})

    @staticmethod
    def sum(polys) -> Poly:
        if type(polys) is not list:
            polys = list(polys)
        v, db, ds, traced = 0, 0, 0, False
        for p in polys:
            v += p.v
            if p.db > db:
                db = p.db
            if p.ds > ds:
                ds = p.ds
            if p.r is not None:
                traced = True
        out = Poly._raw(v, db, ds)
        tape = _trace.active() if traced else None
        if tape is not None:
            out.r = tape.sum(polys)
        return out

    def __bool__(self) -> bool:
        if self.r is not None:
            return _trace.check(operator.ne, self, 0)
        return self.v != 0

    def __add__(self, other: Number) -> Poly:
        t = type(other)
        if t is Poly:
            if self.r is not None or other.r is not None:
                return _traced(operator.add, self, other)
        elif (t is int and self.r is not None) or t is _trace.Sym:
            return _traced(operator.add, self, other)
        else:
            other = Poly.const(other)
        return Poly._raw(self.v + other.v, self.db if self.db > other.db else other.db,
                         self.ds if self.ds > other.ds else other.ds)

    __radd__ = __add__

    def __sub__(self, other: Number) -> Poly:
        t = type(other)
        if t is Poly:
            if self.r is not None or other.r is not None:
                return _traced(operator.sub, self, other)
        elif (t is int and self.r is not None) or t is _trace.Sym:
            return _traced(operator.sub, self, other)
        else:
            other = Poly.const(other)
        return Poly._raw(self.v - other.v, self.db if self.db > other.db else other.db,
                         self.ds if self.ds > other.ds else other.ds)

    def __neg__(self) -> Poly:
        if self.r is not None:
            return _trace.record(_trace._neg, self, 0)
        return Poly._raw(-self.v, self.db, self.ds)

    def __mul__(self, other: Number) -> Poly:
        if self.r is not None or type(other) is _trace.Sym or (type(other) is Poly and other.r is not None):
            if type(other) in (int, Poly, _trace.Sym):
                return _traced(operator.mul, self, other)
            return _trace.specialize(self) * other
        if type(other) is int:
            if abs(other) >= _HALF >> 1:
                raise ValueError(f"factor {other}: an integer below 2**62 in magnitude is required")
            return Poly._raw(self.v * other, self.db, self.ds) if other else Poly._raw(0, 0, 0)
        if type(other) is not Poly:
            return Poly({k: c * other for k, c in self.terms.items()})  # checks the result is integral
        db, ds = self.db + other.db, self.ds + other.ds
        if db > _MAXDEG or ds > _MAXDEG:
            raise ValueError(f"product of degree b^{db} s^{ds}: degrees above {_MAXDEG} are not supported")
        return Poly._raw(self.v * other.v, db, ds)

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        if self.r is not None or type(other) is _trace.Sym or (type(other) is Poly and other.r is not None):
            if type(other) in (int, Poly, _trace.Sym):
                return _trace.check(operator.eq, self, other)
            return _trace.specialize(self) == other
        if type(other) is Poly:
            return self.v == other.v
        return isinstance(other, int) and self.v == other  # a constant's slot 0 is the constant itself

    def __hash__(self) -> int:
        if self.r is not None:
            return hash(_trace.specialize(self))
        return hash(self.v)

    def __call__(self, b: Any, s: Any) -> Any:
        """Exact integers for ints; numpy int64/object arrays evaluate whole grids."""
        if self.r is not None:
            return _trace.specialize(self)(b, s)
        if type(b) is int and type(s) is int:
            return sum([c * b**pb * s**ps for (pb, ps), c in self.terms.items()])
        total: Any = 0
        for (pb, ps), c in self.terms.items():
            term: Any = c
            if pb:
                term = term * (b**pb if not isinstance(b, np.ndarray) else np.power(b, pb))
            if ps:
                term = term * (s**ps if not isinstance(s, np.ndarray) else np.power(s, ps))
            total = total + term
        return total

    def __repr__(self) -> str:
        if not self.v:
            return "0"
        parts = []
        for (pb, ps), c in sorted(self.terms.items(), reverse=True):
            mono = "*".join(["b"] * pb + ["s"] * ps)
            parts.append(f"{c}*{mono}" if mono else str(c))
        return " + ".join(parts)


def _traced(fn: Any, a: Poly, b: Any) -> Poly:
    """``a + b``, ``a - b`` or ``a * b`` (b a Poly, an int or a traced int) when one side is traced: the value as
    the untraced operation gives it, and the operation on the active tape (trace.record, with the slot lookups
    inline: the recorded pass does thousands)."""
    t = type(b)
    if t is Poly and fn is not operator.mul:  # a sum or difference of two polynomials, as Poly.__add__ makes it
        res = Poly._raw(fn(a.v, b.v), a.db if a.db > b.db else b.db, a.ds if a.ds > b.ds else b.ds)
    else:
        res = fn(a.untraced(), b.untraced() if t is Poly else b if t is int else b.v)
    tape = _trace.active()
    if tape is not None:
        i = a.r
        if i is None:
            i = tape.slot(a)
        j = None if t is int else b.r
        if j is None:
            j = tape.slot(b)
        init = tape.init
        res.r = k = len(init)
        init.append(None)
        tape.code.append((k, fn, i, j))
    return res


_SLOTS = 4 * (_MAXDEG + 1)


def coefficient_matrix(polys) -> np.ndarray:
    """The coefficients of many polynomials (or their packed integers) at once: an int64 array (len(polys), 16),
    column 4*i + j holding the coefficient of b**i * s**j. From the packed integers' two's-complement bytes:
    a slot's digit is its 64 bits plus one where the part below it is negative (the slot below has its sign
    bit set; every digit is below 2**62 in magnitude)."""
    n = len(polys)
    try:
        raw = b"".join([p.to_bytes(_SLOTS * 8, "little", signed=True) for p in polys])
    except AttributeError:  # polynomials, not packed integers
        raw = b"".join([(p if type(p) is int else p.v).to_bytes(_SLOTS * 8, "little", signed=True) for p in polys])
    u = np.frombuffer(raw, dtype=np.int64).reshape(n, _SLOTS)
    out = u.copy()
    out[:, 1:] += u[:, :-1] < 0
    return out


def evaluate(polys, b: Any, s: Any) -> list:
    """``[p(b, s) for p in polys]``, with each monomial's value worked out once for all of them (ints, or numpy
    arrays for whole grids)."""
    if type(b) is int and type(s) is int:
        def monomial(pb: int, ps: int) -> Any:
            return b**pb * s**ps
    elif isinstance(b, np.ndarray) and isinstance(s, np.ndarray):
        def monomial(pb: int, ps: int) -> Any:
            return (np.power(b, pb) if pb else 1) * (np.power(s, ps) if ps else 1)
    else:
        return [p(b, s) for p in polys]
    powers: dict[tuple[int, int], Any] = {}
    out = []
    for p in polys:
        total: Any = 0
        for k, c in p.terms.items():
            m = powers.get(k)
            if m is None:
                m = powers[k] = monomial(*k)
            total = total + c * m
        out.append(total)
    return out


ZERO = Poly()
B = Poly.var(b=1)
S = Poly.var(s=1)

"""Polynomials in batch size ``b`` and sequence length ``s`` with integer coefficients.

Every memory term of a training step is such a polynomial (a (b, s, h) activation is ``h*b*s`` elements,
eager attention's probabilities ``heads*b*s*s``), so one symbolic pass gives coefficients that evaluate
exactly for any shape, or over whole numpy grids at once.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np

Number = Union[int, "Poly"]


_new = object.__new__


class Poly:
    __slots__ = ("terms",)

    def __init__(self, terms: dict[tuple[int, int], int] | None = None):
        self.terms = {k: v for k, v in terms.items() if v} if terms else {}

    @classmethod
    def _of(cls, terms: dict[tuple[int, int], int]) -> Poly:
        """A polynomial around ``terms`` as given: the caller guarantees no zero coefficient (hot paths)."""
        p = _new(cls)
        p.terms = terms
        return p

    @staticmethod
    def const(c: int) -> Poly:
        return Poly._of({(0, 0): c}) if c else Poly()

    @staticmethod
    def var(b: int = 0, s: int = 0, c: int = 1) -> Poly:
        return Poly({(b, s): c})

    @staticmethod
    def sum(polys) -> Poly:
        """Sum of many polynomials in one pass (no intermediate objects)."""
        out: dict[tuple[int, int], int] = {}
        get = out.get
        for p in polys:
            for k, v in p.terms.items():
                out[k] = get(k, 0) + v
        if 0 in out.values():  # terms that cancelled
            out = {k: v for k, v in out.items() if v}
        return Poly._of(out)

    # sums and differences drop a term where it cancels, in place (both sides hold no zero coefficient)
    def __add__(self, other: Number) -> Poly:
        if not isinstance(other, Poly):
            other = Poly.const(other)
        out = dict(self.terms)
        get = out.get
        for k, v in other.terms.items():
            x = get(k, 0) + v
            if x:
                out[k] = x
            else:
                out.pop(k, None)
        p = _new(Poly)
        p.terms = out
        return p

    __radd__ = __add__

    def __sub__(self, other: Number) -> Poly:
        if not isinstance(other, Poly):
            return self + -other
        out = dict(self.terms)
        get = out.get
        for k, v in other.terms.items():
            x = get(k, 0) - v
            if x:
                out[k] = x
            else:
                out.pop(k, None)
        p = _new(Poly)
        p.terms = out
        return p

    def __mul__(self, other: Number) -> Poly:
        if type(other) is int:  # a non-zero int times a non-zero coefficient is never zero
            if not other:
                return Poly()
            p = _new(Poly)
            p.terms = {k: v * other for k, v in self.terms.items()}
            return p
        if not isinstance(other, Poly):
            return Poly({k: v * other for k, v in self.terms.items()})
        out: dict[tuple[int, int], int] = {}
        for (b1, s1), v1 in self.terms.items():
            for (b2, s2), v2 in other.terms.items():
                k = (b1 + b2, s1 + s2)
                out[k] = out.get(k, 0) + v1 * v2
        return Poly(out)

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        other = other if isinstance(other, Poly) else Poly.const(other)  # type: ignore[arg-type]
        return self.terms == other.terms

    def __hash__(self) -> int:
        return hash(frozenset(self.terms.items()))

    def __call__(self, b: Any, s: Any) -> Any:
        """Exact integers for ints; numpy int64/object arrays evaluate whole grids."""
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
        if not self.terms:
            return "0"
        parts = []
        for (pb, ps), c in sorted(self.terms.items(), reverse=True):
            mono = "*".join(["b"] * pb + ["s"] * ps)
            parts.append(f"{c}*{mono}" if mono else str(c))
        return " + ".join(parts)


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
            if type(c) is not int:  # the very product p(b, s) forms, rounding included
                total = total + Poly({k: c})(b, s)
                continue
            m = powers.get(k)
            if m is None:
                m = powers[k] = monomial(*k)
            total = total + c * m
        out.append(total)
    return out


ZERO = Poly()
B = Poly.var(b=1)
S = Poly.var(s=1)

"""Record the symbolic pass once per structure, replay it for new sizes.

The activation model of a (model, method, training options) combination is a long Python computation -- a few
thousand tensors and autograd nodes -- whose only numeric inputs are a handful of integers: the config's sizes,
each linear module's in/out features, the method's rank or virtual tokens. While it runs, those integers are
:class:`Sym` leaves and every polynomial derived from them carries a slot on a :class:`Tape`; each ``+``, ``-``,
``*``, ``//`` and sum is recorded as one instruction. Where the computation *looks at* a number -- a branch on
``nh // nkv > 1``, two sizes compared equal, ``range(num_layers)`` -- the outcome is recorded as a guard.
For another configuration of the same structure, the :class:`Replay` that :meth:`Tape.compile` makes re-runs
only those instructions (hundreds of big-integer operations instead of the whole pass) and checks every guard
on the way: any guard that comes out differently rejects the replay, and the pass runs in full. Replaying is
exact by construction: the same operations on the same kind of values. It can also check the guards alone (a
tenth of the instructions) and then evaluate the outputs at one (batch, length): the same instructions on plain
integers, each polynomial constant replaced by its value there, since evaluating a polynomial at a point
commutes with ``+``, ``-`` and ``*``. activations.structured_activation_model decides which integers are leaves
and keys the recordings by structure.
"""

from __future__ import annotations

import operator
import threading
from array import array
from typing import Any

__all__ = ["Replay", "Sym", "Tape", "active", "record", "start", "stop"]

_state = threading.local()  # the tape recording in this thread, if any


def active() -> Tape | None:
    return getattr(_state, "tape", None)


def start(tape: Tape) -> None:
    _state.tape = tape


def stop() -> None:
    _state.tape = None


def _neg(a: Any, _: Any) -> Any:
    return -a


def _concrete(x: Any) -> Any:
    if type(x) is Sym:
        return x.v
    r = getattr(x, "r", None)
    if r is not None:
        return x.untraced()
    return x


class Tape:
    """Instructions over numbered slots: ``(k, fn, i, j)`` sets slot k to ``fn(slot i, slot j)`` (``fn`` None: k is
    the sum of the slots in the tuple i); ``(-1, fn, i, j)`` is a guard, ``fn(slot i, slot j)`` must be true."""

    __slots__ = ("init", "code", "leaves", "_consts", "_polys", "opaque", "memo")

    def __init__(self) -> None:
        self.init: list = []  # a slot's value before replay: the constants (None for leaves and results)
        self.code: list[tuple] = []
        self.leaves: list[int] = []
        self._consts: dict[tuple, int] = {}
        self._polys: list[int] = []  # the slots of the polynomial constants
        self.opaque = False  # something was read that the tape cannot check: never replay it
        self.memo: dict = {}  # what caches keyed on the traced inputs keep while the pass runs (and no longer)

    def leaf(self, value: int) -> Sym:
        k = len(self.init)
        self.init.append(None)
        self.leaves.append(k)
        return Sym(value, k)

    def slot(self, x: Any) -> int:
        t = type(x)
        if t is int:
            key: tuple = ("int", x)
        else:
            r = x.r if t is Sym else getattr(x, "r", None)
            if r is not None:
                return r
            key = (t.__name__, x.v, x.db, x.ds) if hasattr(x, "db") else (t.__name__, x)
        k = self._consts.get(key)
        if k is None:
            k = self._consts[key] = len(self.init)
            self.init.append(x)
            if len(key) == 4:
                self._polys.append(k)
        return k

    def op(self, fn: Any, a: Any, b: Any) -> int:
        i, j = self.slot(a), self.slot(b)
        k = len(self.init)
        self.init.append(None)
        self.code.append((k, fn, i, j))
        return k

    def sum(self, items: list) -> int:
        k = len(self.init)
        self.init.append(None)
        self.code.append((k, None, tuple(self.slot(p) for p in items), None))
        return k

    def guard(self, fn: Any, a: Any, b: Any) -> None:
        self.code.append((-1, fn, self.slot(a), self.slot(b)))

    def compile(self, outputs: list[int]):
        """The instructions that the guards and ``outputs`` need, as a :class:`Replay` of the leaves over plain
        integers (a polynomial is its packed integer, see poly.py: ``+``, ``-`` and ``*`` are the same operations
        on it); it returns the outputs' packed integers, or None when a guard fails. Repeated instructions and
        guards are merged, guards that cannot fail dropped."""
        alias: dict[int, int] = {}
        canon = alias.get  # a merged slot's first copy: canon(i, i)
        seen: dict[tuple, int] = {}
        guards: set[tuple] = set()
        code: list[tuple] = []
        for k, fn, i, j in self.code:
            if fn is None:
                i = tuple(sorted([canon(a, a) for a in i]))
            else:
                i, j = canon(i, i), canon(j, j)
                if j < i and fn in _COMMUTATIVE:
                    i, j = j, i
            key = (fn, i, j)
            if k < 0:
                if key in guards or (i == j and fn in _REFLEXIVE):
                    continue
                guards.add(key)
            else:
                hit = seen.get(key)
                if hit is not None:
                    alias[k] = hit
                    continue
                seen[key] = k
            code.append((k, fn, i, j))
        outputs = [canon(k, k) for k in outputs]
        # in one pass backwards: what the outputs need, and what the guards need with every operation that can
        # fail (a division); what neither needs is dropped
        need_out, need_check = set(outputs), set()
        kept = []
        for ins in reversed(code):
            k, fn, i, j = ins
            out = k >= 0 and k in need_out
            checked = k < 0 or fn in _FALLIBLE or k in need_check
            if not (out or checked):
                continue
            kept.append((ins, checked, out))
            deps = i if fn is None else (i, j)
            if out:
                need_out.update(deps)
            if checked:
                need_check.update(deps)
        kept.reverse()
        live = [ins for ins, _, _ in kept]

        # slots renumbered densely, in order of first use (a dict keeps it); a polynomial constant becomes its
        # packed integer
        dense = _Numbering()  # dense[i]: i's dense slot, a new one the first time
        program = [(dense[k] if k >= 0 else -1, fn, tuple([dense[a] for a in i]) if fn is None else dense[i],
                    0 if fn is None else dense[j]) for k, fn, i, j in live]
        leaves = [dense[k] for k in self.leaves]
        results = [dense[k] for k in outputs]
        init = [getattr(v, "v", v) for v in map(self.init.__getitem__, dense)]
        polys = [(dense[k], self.init[k]) for k in self._polys if k in dense]  # the polynomial constants' slots
        return Replay(init, leaves, program, results, [(checked, out) for _, checked, out in kept], polys)


class _Numbering(dict):
    """Numbers in order of first use: ``d[x]`` is x's number, a new one the first time."""

    def __missing__(self, key: Any) -> int:
        n = self[key] = len(self)
        return n


class Replay:
    """A merged tape over plain integers: call it with the leaves' values. It runs the instructions as one
    uniform loop, ``slot k = f(slot i, slot j)``: a sum's items are gathered by an ``operator.itemgetter`` held
    in a slot, and each guard's outcome lands in a slot of its own, all checked at the end (an operation that
    fails on values some guard rejects, a division by zero, is a miss too). It returns None on a miss.
    :meth:`check` runs only what the guards and the divisions need; :meth:`point` then runs only what the
    outputs need, at one (batch, length). The loop itself dominates (on small integers at a point it is only
    15 % faster than on packed polynomials): a straight-line function generated from the same instructions ran
    15-30 % faster and cost 5-13 ms to compile. It keeps only what its calls run (not the program it was made from): every
    instruction kept is a tuple of four integers (its function by number), which the cyclic collector stops
    tracking at its first scan; with the functions in them, hundreds of thousands of them over a process's
    recordings were scanned at every full collection (gen-2 pauses of 50-120 ms in a sweep)."""

    __slots__ = ("leaves", "_ops", "_checks", "_outputs", "_fns", "_start", "_me", "_guards", "_out", "_polys", "_slots")

    def __init__(self, init: list, leaves: list, program: list, results: list, parts: list, polys: list):
        self.leaves = leaves
        start = list(init)
        me = len(start)  # the slot that holds the slot list itself (what a sum's getter reads)
        start.append(None)
        ops, checks, outputs, guards = [], [], [], []
        codes = _Numbering()  # each function's number: an instruction is a tuple of ints, which the collector untracks
        on_ints = _ON_INTS.get
        for (k, fn, i, j), (checked, out) in zip(program, parts):
            if fn is None:
                start.append(operator.itemgetter(*i) if len(i) > 1 else _One(i[0]))
                ins = (k, codes[_sum_of], len(start) - 1, me)
            else:
                if k < 0:
                    k = len(start)
                    start.append(None)
                    guards.append(k)
                ins = (k, codes[on_ints(fn, fn)], i, j)
            ops.append(ins)
            if checked:
                checks.append(ins)
            if out:
                outputs.append(ins)
        self._ops, self._checks, self._outputs = ops, checks, outputs
        self._fns, self._start, self._me = tuple(codes), start, me
        self._guards = getter(guards)
        self._out = getter(results)
        self._slots = (guards, list(results))  # (what the getters read: to keep the replay on disk)
        self._polys = [(k, p.untraced()) for k, p in polys]

    def __reduce__(self) -> tuple:
        """Pickled compactly (cache.py keeps recordings on disk): each list of instructions (all, the checks', the
        outputs') as four columns of 32-bit integers, read back as :class:`_Columns`."""
        cols = [[array("i", c).tobytes() for c in zip(*part)] for part in (self._ops, self._checks, self._outputs)]
        return _rebuild, (self.leaves, cols, self._fns, self._start, self._me, self._slots,
                          [(k, p.v, p.db, p.ds) for k, p in self._polys])

    def _run(self, vals: list, ops: list) -> bool:
        vals[self._me] = vals
        fns = self._fns
        try:
            for k, f, i, j in ops:
                vals[k] = fns[f](vals[i], vals[j])
        except (ValueError, ZeroDivisionError, OverflowError):  # on values some guard rejects
            return False
        finally:
            vals[self._me] = None  # no cycle through the list
        return True

    def _with(self, values: tuple) -> list:
        vals = self._start[:]
        for k, v in zip(self.leaves, values):
            vals[k] = v
        return vals

    def __call__(self, *values: int) -> tuple | None:
        vals = self._with(values)
        if not self._run(vals, self._ops) or not all(self._guards(vals)):
            return None
        return self._out(vals)

    def check(self, *values: int) -> bool:
        """Do the guards hold for these leaves? Only what the guards read runs (and every division): a small part
        of the program."""
        vals = self._with(values)
        return self._run(vals, self._checks) and all(self._guards(vals))

    def point(self, values: tuple, b: int, s: int) -> tuple | None:
        """The outputs at batch ``b`` and length ``s`` -- each polynomial's value there -- for leaves whose guards
        hold (:meth:`check`): evaluating at a point commutes with ``+``, ``-`` and ``*``, so the same instructions
        run on plain integers, each polynomial constant replaced by its value. No packed integer is made, and
        the outputs need no decoding."""
        vals = self._with(values)
        for k, p in self._polys:
            vals[k] = p(b, s)
        if not self._run(vals, self._outputs):
            return None
        return self._out(vals)


def _rebuild(leaves: list, cols: list, fns: tuple, start: list, me: int, slots: tuple, polys: list) -> Replay:
    """The :class:`Replay` that ``Replay.__reduce__`` pickled."""
    from .poly import Poly

    r = Replay.__new__(Replay)
    r.leaves, r._fns, r._start, r._me, r._slots = leaves, fns, start, me, slots
    r._ops, r._checks, r._outputs = (_Columns(part) for part in cols)
    r._guards, r._out = getter(slots[0]), getter(slots[1])
    r._polys = [(k, Poly._raw(v, db, ds)) for k, v, db, ds in polys]
    return r


class _Columns:
    """A list of instructions read from disk, as four columns of integers (arrays: no Python object per
    instruction until they are read). The first pass over it zips the columns; a later one makes the tuples once
    (what a recording made in the process holds), which later passes run a third faster."""

    __slots__ = ("cols", "rows")

    def __init__(self, raw: list) -> None:
        self.cols = []
        for b in raw:
            a = array("i")
            a.frombytes(b)
            self.cols.append(a)
        self.rows: list | None | bool = None  # None: not read yet; False: read once; then the tuples

    def __iter__(self) -> Any:
        rows = self.rows
        if rows is None:
            self.rows = False
            return zip(*self.cols)
        if rows is False:
            rows = self.rows = list(zip(*self.cols))
        return iter(rows)


def _const(c: Any, _: Any) -> Any:
    """A traced integer as a constant polynomial (its packed integer is the integer itself)."""
    from .poly import Poly

    return Poly.const(c)


def _first(a: Any, _: Any) -> Any:
    return a


def _sum_of(getter: Any, vals: list) -> Any:
    return sum(getter(vals))


class _One:
    """A getter of one slot, as a tuple (what operator.itemgetter gives for two or more); a class, not a closure,
    so that a recording can be kept on disk (cache.py)."""

    __slots__ = ("k",)

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, vals: list) -> tuple:
        return (vals[self.k],)


class _None:
    """A getter of no slot."""

    __slots__ = ()

    def __call__(self, vals: list) -> tuple:
        return ()


def getter(slots: list) -> Any:
    """``lambda vals: tuple(vals[k] for k in slots)``, at C speed for two or more."""
    if len(slots) > 1:
        return operator.itemgetter(*slots)
    if slots:
        return _One(slots[0])
    return _None()


_ON_INTS = {_const: _first}  # on packed integers (and at a point) a constant polynomial is the integer itself
_FALLIBLE = {operator.floordiv, operator.mod}  # what can fail on other values (a division by zero): checked first
_COMMUTATIVE = {operator.add, operator.mul, operator.eq, operator.ne}
_REFLEXIVE = {operator.eq, operator.le, operator.ge}


def record(fn: Any, a: Any, b: Any) -> Any:
    """``fn(a, b)`` on the concrete values; on the active tape, an instruction whose result is traced."""
    res = fn(_concrete(a), _concrete(b))
    tape = active()
    if tape is None:
        return res
    k = tape.op(fn, a, b)
    if type(res) is int:
        return Sym(res, k)
    res.r = k
    return res


def check(fn: Any, a: Any, b: Any) -> bool:
    """``fn(a, b)`` as a bool, recorded as a guard (its negation when false)."""
    res = bool(fn(_concrete(a), _concrete(b)))
    tape = active()
    if tape is not None:
        tape.guard(fn if res else _NOT[fn], a, b)
    return res


_NOT = {operator.eq: operator.ne, operator.ne: operator.eq, operator.lt: operator.ge, operator.ge: operator.lt,
        operator.gt: operator.le, operator.le: operator.gt}


def specialize(x: Any) -> Any:
    """The concrete value, with a guard that it stays exactly that."""
    c = _concrete(x)
    tape = active()
    if tape is not None:
        tape.guard(operator.eq, x, c)
    return c


class Sym:
    """An integer input of the traced pass (a size), or one computed from them."""

    __slots__ = ("v", "r")

    def __init__(self, v: int, r: int):
        self.v, self.r = v, r

    def _bin(self, other: Any, fn: Any, swap: bool = False) -> Any:
        t = type(other)
        if t is int or t is Sym:
            return record(fn, other, self) if swap else record(fn, self, other)
        if t is bool:
            return record(fn, int(other), self) if swap else record(fn, self, int(other))
        if hasattr(other, "db"):  # a Poly: its reflected method records it
            return NotImplemented
        v = specialize(self)
        return fn(other, v) if swap else fn(v, other)

    def __add__(self, o): return self._bin(o, operator.add)
    def __radd__(self, o): return self._bin(o, operator.add, True)
    def __sub__(self, o): return self._bin(o, operator.sub)
    def __rsub__(self, o): return self._bin(o, operator.sub, True)
    def __mul__(self, o): return self._bin(o, operator.mul)
    def __rmul__(self, o): return self._bin(o, operator.mul, True)
    def __floordiv__(self, o): return self._bin(o, operator.floordiv)
    def __rfloordiv__(self, o): return self._bin(o, operator.floordiv, True)
    def __mod__(self, o): return self._bin(o, operator.mod)
    def __rmod__(self, o): return self._bin(o, operator.mod, True)

    def __neg__(self):
        return record(_neg, self, 0)

    def __pos__(self):
        return self

    def _cmp(self, other: Any, fn: Any) -> Any:
        t = type(other)
        if t is int or t is Sym or t is bool:
            return check(fn, self, other)
        if hasattr(other, "db"):
            return NotImplemented
        return fn(specialize(self), other)

    def __eq__(self, o): return self._cmp(o, operator.eq)
    def __ne__(self, o): return self._cmp(o, operator.ne)
    def __lt__(self, o): return self._cmp(o, operator.lt)
    def __le__(self, o): return self._cmp(o, operator.le)
    def __gt__(self, o): return self._cmp(o, operator.gt)
    def __ge__(self, o): return self._cmp(o, operator.ge)

    def __bool__(self) -> bool:
        return check(operator.ne, self, 0)

    # anything else reads the exact value
    def __index__(self) -> int:
        return specialize(self)

    __int__ = __index__

    def __float__(self) -> float:
        return float(specialize(self))

    def __truediv__(self, o):
        return specialize(self) / _concrete(o)

    def __rtruediv__(self, o):
        return _concrete(o) / specialize(self)

    def __abs__(self):
        return abs(specialize(self))

    def __hash__(self) -> int:
        return hash(specialize(self))

    def __format__(self, spec: str) -> str:
        return format(specialize(self), spec)

    def __repr__(self) -> str:
        return repr(specialize(self))

    __str__ = __repr__

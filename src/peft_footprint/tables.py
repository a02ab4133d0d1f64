"""A method's parameter table, recorded once per structure and replayed for new sizes.

``Method.build`` lists every tensor of the wrapped model; for another configuration of the same structure (model
type, module layout, method and its non-integer fields, dtype) only the shapes and the totals change. The build
runs once with the config's and the method's sizes as leaves of a tape (activations.traced_inputs, trace.py); a
replay recomputes the shapes and totals from new sizes and fills them into the recorded tensors. Any guard that
fails (a branch that went another way, a layer count read as a number) falls back to the build itself. The
warnings the build gave (a target name that matches nothing) are given again on each replay.
"""

from __future__ import annotations

import warnings

from . import trace
from .activations import _Recording, replayed, structure_key, traced_inputs
from .methods.base import Method, ParamTable, Tensor

__all__ = ["build_table"]

_TOTALS = ("total_params", "trainable_params", "weights_bytes", "buffer_bytes", "trainable_bytes", "base_bytes",
           "adapter_bytes")
_RECORDINGS: dict[tuple, list] = {}
_SEEN: set[tuple] = set()


def build_table(spec, method: Method, dtype: str) -> ParamTable:
    """``method.build(spec.layout, spec.cfg, dtype)``: built the first time a structure comes, recorded the second,
    replayed after (activations.replayed)."""
    return replayed(_RECORDINGS, _SEEN, "tables", (*structure_key(spec, method), dtype), spec, method,
                    lambda: method.build(spec.layout, spec.cfg, dtype), lambda: _record(spec, method, dtype), _replay)


class _NotRecordable(Exception):
    """A value in the table that the tape cannot stand for (not an integer)."""


def _record(spec, method: Method, dtype: str) -> tuple:
    tape, getters, cfg, layout, traced = traced_inputs(spec, method)
    trace.start(tape)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = traced.build(layout, cfg, dtype)
            totals = [table._total(k) for k in _TOTALS]
    finally:
        trace.stop()
    said = tuple(w.message for w in caught)
    for message in said:  # what the build said, said again outside the catch (the user's filters apply)
        warnings.warn(message, stacklevel=7)  # (at the caller of estimate())
    outputs: list = []
    try:
        template = _template(table, totals, outputs, said)
    except _NotRecordable:
        return method.build(spec.layout, spec.cfg, dtype), None
    values = [trace._concrete(x) for x in outputs]
    rec = None
    if not tape.opaque:
        rec = _Recording(tape.compile([tape.slot(x) for x in outputs]), getters, dict(cfg.reads), template, [])
    return _filled(template, values), rec


def _template(table: ParamTable, totals: list, outputs: list, said: tuple) -> tuple:
    """The traced table with each traced size replaced by its place in ``outputs`` (appended to it): each distinct
    tensor once (the checkpoint's list shares the table's tensors), the three lists as indices into them, the totals,
    the notes, and the warnings ``said``."""

    def value(x):  # (True, output index) for a traced size; (False, x) for a constant
        if type(x) is trace.Sym:
            outputs.append(x)
            return True, len(outputs) - 1
        if x is None or type(x) is int:
            return False, x
        raise _NotRecordable

    where: dict[int, int] = {}
    made: list = []
    lists = []
    for tensors in (table.tensors, table.saved, table.buffers):
        at = []
        for t in tensors:
            k = where.get(id(t))
            if k is None:
                if t.layers is not None and any(type(i) is not int for i in t.layers):
                    raise _NotRecordable
                k = where[id(t)] = len(made)
                made.append((t.name, tuple(value(d) for d in t.shape), t.dtype, value(t.count), t.trainable, t.group,
                             value(t.counted_numel), value(t.stored_bytes), t.layers))
            at.append(k)
        lists.append(tuple(at))
    return tuple(made), tuple(lists), tuple(value(x) for x in totals), tuple(table.notes), said


def _replay(rec: _Recording, values) -> ParamTable:
    for message in rec.names[-1]:
        warnings.warn(message, stacklevel=6)
    return _filled(rec.names, values)


def _filled(template: tuple, values) -> ParamTable:
    """The table of ``template`` with the traced sizes' ``values``."""
    made, (ti, si, bi), totals, notes, _ = template
    tensors = [Tensor(name, tuple([values[v] if o else v for o, v in shape]), dtype, values[count[1]] if count[0] else count[1],
                      trainable, group, values[numel[1]] if numel[0] else numel[1], values[stored[1]] if stored[0] else stored[1],
                      layers)
               for name, shape, dtype, count, trainable, group, numel, stored, layers in made]
    table = ParamTable(tensors=[tensors[k] for k in ti], saved=[tensors[k] for k in si], buffers=[tensors[k] for k in bi],
                       notes=list(notes))
    got = {name: values[v] if o else v for name, (o, v) in zip(_TOTALS, totals)}
    got["trainable"] = tuple(t for t in table.tensors if t.trainable)
    table._totals = got
    return table

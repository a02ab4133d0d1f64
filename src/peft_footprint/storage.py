"""Checkpoint files: the bytes PEFT's ``save_pretrained`` writes (``adapter_model.safetensors``).

A safetensors file is an 8-byte header length, a compact JSON header (padded with spaces to a multiple of
8 bytes) naming every tensor with its dtype, shape and data offsets, then the tensor bytes. The header's
length is reproduced here exactly, so the file size is exact too: each entry is
``,"<name>":{"dtype":"<dtype>","shape":[<dims>],"data_offsets":[<start>,<end>]}``, and only the names and the
offsets' digits vary from entry to entry.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import replace
from itertools import accumulate, repeat

from .dtypes import nbytes
from .trace import getter

_ST_DTYPE = {"fp32": "F32", "bf16": "BF16", "fp16": "F16", "uint8": "U8", "int8": "I8", "fp8": "F8_E4M3"}
PEFT_PREFIX = "base_model.model."
_COMPACT = (",", ":")
# characters json.dumps writes as themselves (ensure_ascii): printable ASCII except the quote and the backslash
_ESCAPED = re.compile(r'[^ !#-\[\]-~]')
# an entry's text besides its name, dtype, dims and offsets: ,"":{"dtype":"","shape":,"data_offsets":[,]}
_ENTRY_CHARS = len(',"":{"dtype":"","shape":,"data_offsets":[,]}')


def _peft_key(name: str) -> str:
    """The state-dict key PEFT saves a tensor under: a modules_to_save copy's ``.modules_to_save.`` dropped
    (``.MODULES_TO_SAVE.`` marks a key saved as it is, methods/lora.py)."""
    if name == "prompt_embeddings":
        return name
    return PEFT_PREFIX + name.replace(".modules_to_save.", ".").replace(".MODULES_TO_SAVE.", ".modules_to_save.")


def safetensors_file_bytes(tensors, *, metadata: dict[str, str] | None = None, key=_peft_key) -> int:
    """Size of the safetensors file holding ``tensors`` (``Tensor`` entries; ``*`` expands to layer indices)."""
    tensors = list(tensors)
    if any(type(d) is not int for t in tensors for d in t.shape):
        counted = _counted(tensors, key)
    else:
        counted = _planned(tensors, key)
    if counted is None:  # names json escapes, or a repeated name (json keeps one entry)
        return _written_out(tensors, metadata, key)
    chars, sizes = counted
    chars += len('{"__metadata__":}') + len(json.dumps(metadata or {"format": "pt"}, separators=_COMPACT))
    ends = list(accumulate(sizes))
    if ends:  # the data offsets [start, end] of each entry; the starts are 0 and every end but the last
        chars += _digits(ends) * 2 - len(str(ends[-1])) + 1
    return 8 + (chars + 7) // 8 * 8 + (ends[-1] if ends else 0)


def _counted(tensors: list, key) -> tuple[int, list[int]] | None:
    """(characters of the entries besides their offsets, the tensors' sizes in file order), or None."""
    return (_in_layer_order(tensors) if key is _peft_key else None) or _in_name_order(tensors, key)


_PLANS: dict[tuple, tuple | None] = {}


def _planned(tensors: list, key) -> tuple[int, Sequence[int]] | None:
    """What _counted gives, from a plan kept per list of names (a table of the same structure with other sizes
    has the same names and order): the characters besides the shapes' digits, each tensor's number of entries,
    and which tensor each entry of the file is. The order is _counted's own, read off the tensors marked with
    their positions as sizes."""
    plan_key = (key, *[(t.name, t.dtype, t.count, t.layers, len(t.shape)) for t in tensors])
    plan = _PLANS.get(plan_key, False)
    if plan is False:
        counted = _counted(tensors, key)
        if counted is None:
            plan = None
        else:
            marked = _counted([replace(t, stored_bytes=k) for k, t in enumerate(tensors)], key)
            entries = [len(t.names()) for t in tensors]
            fixed = counted[0] - sum(n * _shape_digits(t) for n, t in zip(entries, tensors))
            plan = (fixed, entries, getter(marked[1]))
        if len(_PLANS) > 4096:
            _PLANS.clear()
        _PLANS[plan_key] = plan
    if plan is None:
        return None
    fixed, entries, order = plan
    return (fixed + sum([n * _shape_digits(t) for n, t in zip(entries, tensors)]),
            order([t.bytes // t.count for t in tensors]))


def _shape_digits(t) -> int:
    return sum(map(len, map(str, t.shape)))


def _entry_chars(t) -> int:
    """Characters of each of ``t``'s entries besides its name and offsets."""
    if all(type(d) is int for d in t.shape):  # [d0,d1,...] as json writes it
        shape = 2 + max(len(t.shape) - 1, 0) + sum(map(len, map(str, t.shape)))
    else:
        shape = len(json.dumps(list(t.shape), separators=_COMPACT))
    return _ENTRY_CHARS + len(_ST_DTYPE[t.dtype]) + shape


def _in_name_order(tensors, key) -> tuple[int, list[int]] | None:
    """(characters of the entries besides their offsets, the tensors' sizes in file order): safetensors orders
    tensors by decreasing dtype alignment, then by name. None where json would escape or merge names."""
    chars = 0
    by_alignment: dict[int, list[tuple[str, int]]] = {}  # (name, bytes) of each tensor, by its dtype's size
    for t in tensors:
        names = [key(name) for name in t.names()]
        if _ESCAPED.search("".join(names)):
            return None
        chars += len(names) * _entry_chars(t) + sum(map(len, names))
        by_alignment.setdefault(nbytes(t.dtype), []).extend(zip(names, repeat(t.bytes // t.count)))
    entries = [e for size in sorted(by_alignment, reverse=True) for e in sorted(by_alignment[size])]
    if len({name for name, _ in entries}) < len(entries):
        return None
    return chars, [size for _, size in entries]


def _in_layer_order(tensors) -> tuple[int, list[int]] | None:
    """What _in_name_order gives for PEFT's names, without writing out and sorting every layer's names: when each
    layer tensor's name is ``<prefix><i><suffix>`` with one prefix for all and a suffix that starts below "0"
    (".lora_A.weight"), names sort by the layer index as a string, then by suffix, and the other names sort
    before or after all of them. None where that does not hold (then the names are sorted one by one)."""
    prefix, chars = None, 0
    index_chars: dict[tuple[int, ...], int] = {}  # characters of the layer indices, per set of layers
    templates: set[str] = set()
    others: set[str] = set()
    by_alignment: dict[int, tuple[list, list]] = {}  # -> ([(suffix, layers, bytes)], [(name, bytes)])
    for t in tensors:
        name = _peft_key(t.name)
        if _ESCAPED.search(name):
            return None
        layered, other = by_alignment.setdefault(nbytes(t.dtype), ([], []))
        size = t.bytes // t.count
        if "*" not in t.name:
            if name in others:
                return None
            others.add(name)
            other.append((name, size))
            chars += _entry_chars(t) + len(name)
            continue
        head, _, tail = name.partition("*")
        layers = tuple(t.layers if t.layers is not None else range(t.count))
        if ("*" in tail or tail[:1] >= "0" or prefix not in (None, head) or name in templates
                or len(set(layers)) < len(layers)):
            return None
        prefix = head
        templates.add(name)
        layered.append((tail, layers, size))
        if layers not in index_chars:
            index_chars[layers] = sum(map(len, map(str, layers)))
        chars += len(layers) * (_entry_chars(t) + len(name) - 1) + index_chars[layers]
    if prefix is not None and any(name.startswith(prefix) for name in others):
        return None
    sizes: list[int] = []
    for alignment in sorted(by_alignment, reverse=True):
        layered, other = by_alignment[alignment]
        other.sort()
        layered.sort()
        sizes += [size for name, size in other if prefix is None or name < prefix]
        if layered and all(layers == layered[0][1] for _, layers, _ in layered):  # every layer holds the same tensors
            sizes += [size for _, _, size in layered] * len(layered[0][1])
        elif layered:
            for i in sorted({i for _, layers, _ in layered for i in layers}, key=str):
                sizes += [size for _, layers, size in layered if i in layers]
        sizes += [size for name, size in other if prefix is not None and name > prefix]
    return chars, sizes


def _digits(xs: list[int]) -> int:
    """Decimal digits of all of ``xs`` (non-negative, non-decreasing) together."""
    total, power = len(xs), 10
    while xs[-1] >= power:
        total += len(xs) - bisect_left(xs, power)
        power *= 10
    return total


def _written_out(tensors, metadata: dict[str, str] | None, key) -> int:
    """The same size from the header itself, as json.dumps writes it (a repeated name keeps one entry)."""
    entries = []
    for t in tensors:
        one = t.bytes // t.count
        for name in t.names():
            entries.append((key(name), t.dtype, list(t.shape), one))
    entries.sort(key=lambda e: (-nbytes(e[1]), e[0]))
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, dtype, shape, size in entries:
        header[name] = {"dtype": _ST_DTYPE[dtype], "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=_COMPACT)
    return 8 + (len(text) + 7) // 8 * 8 + offset

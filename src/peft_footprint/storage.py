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
from itertools import accumulate, repeat

from .dtypes import nbytes

_ST_DTYPE = {"fp32": "F32", "bf16": "BF16", "fp16": "F16", "uint8": "U8", "int8": "I8", "fp8": "F8_E4M3"}
PEFT_PREFIX = "base_model.model."
_COMPACT = (",", ":")
# characters json.dumps writes as themselves (ensure_ascii): printable ASCII except the quote and the backslash
_ESCAPED = re.compile(r'[^ !#-\[\]-~]')
# an entry's text besides its name, dtype, dims and offsets: ,"":{"dtype":"","shape":,"data_offsets":[,]}
_ENTRY_CHARS = len(',"":{"dtype":"","shape":,"data_offsets":[,]}')


def _peft_key(name: str) -> str:
    if name == "prompt_embeddings":
        return name
    return PEFT_PREFIX + name.replace(".modules_to_save.", ".")


def safetensors_file_bytes(tensors, *, metadata: dict[str, str] | None = None, key=_peft_key) -> int:
    """Size of the safetensors file holding ``tensors`` (``Tensor`` entries; ``*`` expands to layer indices)."""
    chars = len('{"__metadata__":}') + len(json.dumps(metadata or {"format": "pt"}, separators=_COMPACT))
    by_alignment: dict[int, list[tuple[str, int]]] = {}  # (name, bytes) of each tensor, by its dtype's size
    for t in tensors:
        if key is _peft_key:  # the default key commutes with the layer index: rename the template only
            template = key(t.name)
            names = t.names(template)
        else:
            names = [key(name) for name in t.names()]
            template = "".join(names)
        if _ESCAPED.search(template):
            return _written_out(tensors, metadata, key)
        shape = json.dumps(list(t.shape), separators=_COMPACT)
        chars += len(names) * (_ENTRY_CHARS + len(_ST_DTYPE[t.dtype]) + len(shape)) + sum(map(len, names))
        by_alignment.setdefault(nbytes(t.dtype), []).extend(zip(names, repeat(t.bytes // t.count)))
    # safetensors orders tensors by decreasing dtype alignment, then by name
    entries = [e for size in sorted(by_alignment, reverse=True) for e in sorted(by_alignment[size])]
    if len({name for name, _ in entries}) < len(entries):  # a repeated name: json keeps one entry
        return _written_out(tensors, metadata, key)
    ends = list(accumulate(size for _, size in entries))
    if ends:  # the data offsets [start, end] of each entry; the starts are 0 and every end but the last
        chars += _digits(ends) * 2 - len(str(ends[-1])) + 1
    return 8 + (chars + 7) // 8 * 8 + (ends[-1] if ends else 0)


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

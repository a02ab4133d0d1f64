"""Checkpoint files: the bytes PEFT's ``save_pretrained`` writes (``adapter_model.safetensors``).

A safetensors file is an 8-byte header length, a compact JSON header (padded with spaces to a multiple of
8 bytes) naming every tensor with its dtype, shape and data offsets, then the tensor bytes. The header is
reproduced here exactly, so the file size is exact too.
"""

from __future__ import annotations

import json

from .dtypes import nbytes

_ST_DTYPE = {"fp32": "F32", "bf16": "BF16", "fp16": "F16", "uint8": "U8", "int8": "I8", "fp8": "F8_E4M3"}
PEFT_PREFIX = "base_model.model."


def _peft_key(name: str) -> str:
    if name == "prompt_embeddings":
        return name
    return PEFT_PREFIX + name.replace(".modules_to_save.", ".")


def safetensors_file_bytes(tensors, *, metadata: dict[str, str] | None = None, key=_peft_key) -> int:
    """Size of the safetensors file holding ``tensors`` (``Tensor`` entries; ``*`` expands to layer indices)."""
    entries = []
    for t in tensors:
        one = t.bytes // t.count
        for name in t.names():
            entries.append((key(name), t.dtype, list(t.shape), one))
    # safetensors orders tensors by decreasing dtype alignment, then by name
    entries.sort(key=lambda e: (-nbytes(e[1]), e[0]))
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, dtype, shape, size in entries:
        header[name] = {"dtype": _ST_DTYPE[dtype], "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":"))
    return 8 + (len(text) + 7) // 8 * 8 + offset

"""Element sizes of the dtypes the library talks about, and the names users may spell them with."""

from __future__ import annotations

from .errors import UnknownNameError

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "uint8": 1}
ALIASES = {
    "float32": "fp32", "float": "fp32", "torch.float32": "fp32", "f32": "fp32", "32": "fp32",
    "bfloat16": "bf16", "torch.bfloat16": "bf16",
    "float16": "fp16", "half": "fp16", "torch.float16": "fp16", "f16": "fp16", "16": "fp16",
    "float8": "fp8", "fp8_e4m3": "fp8", "float8_e4m3fn": "fp8", "fp8_e5m2": "fp8",
    "int8": "int8", "uint8": "uint8",
}
WEIGHT_DTYPES = ("fp32", "bf16", "fp16")


def canonical_dtype(value: object, field: str = "dtype", allowed: tuple[str, ...] = WEIGHT_DTYPES) -> str:
    text = str(value).lower().strip() if isinstance(value, str) else str(value).replace("torch.", "").lower()
    name = ALIASES.get(text, text)
    if name not in allowed:
        raise UnknownNameError(field, value, list(allowed) + [a for a, c in ALIASES.items() if c in allowed and "." not in a])
    return name


def nbytes(dtype: str) -> int:
    return BYTES[dtype]

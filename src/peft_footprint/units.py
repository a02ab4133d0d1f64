"""Unit formatting: binary units (GiB = 2^30 bytes) for memory, decimal for counts; the unit is always named."""

from __future__ import annotations


def fmt_bytes(n: int | float | None) -> str:
    if n is None:
        return "n/a"
    n = float(n)
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{int(n):,} B"


def fmt_count(n: int | float | None) -> str:
    if n is None:
        return "n/a"
    n = float(n)
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:,.3g}{unit}"
    return f"{int(n):,}"


def fmt_flops(n: int | float | None) -> str:
    if n is None:
        return "n/a"
    n = float(n)
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if abs(n) >= scale:
            return f"{n / scale:,.3g} {unit}"
    return f"{int(n):,} FLOP"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    if s >= 1:
        return f"{s:,.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:,.3g} ms"
    return f"{s * 1e6:,.3g} µs"

"""Accelerators: ``Hardware`` and the bundled presets (``presets/hardware.yaml``, numbers from the vendors' data
sheets, cited there)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import presets
from .errors import InvalidConfigError, UnknownNameError
from .registry import Registry

__all__ = ["Hardware", "HARDWARE", "load_hardware", "list_hardware"]


class Hardware(BaseModel):
    """One accelerator. Units: bytes, bytes/s, FLOP/s (dense, no sparsity), watts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    vendor: str = ""
    architecture: str = ""
    memory_nominal: str = ""
    memory_bytes: int = Field(gt=0)
    memory_bytes_reported: int | None = None
    memory_bandwidth_bytes_per_s: float = Field(gt=0)
    peak_flops: dict[str, float | None] = Field(default_factory=dict)
    tdp_watts: float | None = None
    source: str = ""
    notes: str = ""

    def flops(self, dtype: str) -> float:
        """Dense peak FLOP/s for ``dtype`` (fp32 weights use TF32 tensor cores when the part has them only if
        enabled; PyTorch's default for matmuls is full fp32, so fp32 uses the fp32 rate)."""
        value = self.peak_flops.get(dtype)
        if value is None:
            if dtype == "bf16" and self.peak_flops.get("fp16"):
                return float(self.peak_flops["fp16"])  # parts without bf16 (V100, T4) run fp16 rates at best
            if self.peak_flops.get("fp32"):
                return float(self.peak_flops["fp32"])
            raise InvalidConfigError("hardware.peak_flops", self.peak_flops, f"no {dtype} peak for {self.name}")
        return float(value)

    @property
    def usable_memory_bytes(self) -> int:
        return self.memory_bytes_reported or self.memory_bytes


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(" ", "-")


HARDWARE: Registry[Hardware] = Registry("hardware", normalize=_norm)

_ALIASES = {
    "H200": "H200-SXM-141GB", "H100": "H100-SXM-80GB", "H100-SXM": "H100-SXM-80GB", "H100-PCIe": "H100-PCIe-80GB",
    "A100": "A100-SXM-80GB", "A100-80GB": "A100-SXM-80GB", "A100-40GB": "A100-SXM-40GB", "A100-SXM": "A100-SXM-80GB",
    "A100-PCIe": "A100-PCIe-80GB", "RTX4090": "RTX-4090", "4090": "RTX-4090", "RTX3090": "RTX-3090", "3090": "RTX-3090",
    "V100": "V100-SXM-32GB", "V100-32GB": "V100-SXM-32GB", "V100-16GB": "V100-PCIe-16GB", "L40S-48GB": "L40S",
}


@lru_cache(maxsize=1)
def _load() -> Registry[Hardware]:
    for name, entry in presets.load("hardware.yaml").items():
        fields = {k: v for k, v in entry.items() if not k.startswith("_")}
        fields["source"] = entry.get("_source", "")
        fields["notes"] = entry.get("_notes", "")
        HARDWARE.register(name, Hardware(name=name, **fields))
    for alias, target in _ALIASES.items():
        if target in HARDWARE:
            HARDWARE._aliases[_norm(alias)] = _norm(target)
    return HARDWARE


def list_hardware() -> list[str]:
    return [h.name for _, h in _load().items()]


def load_hardware(hardware: Any) -> Hardware | None:
    """A preset name (case-insensitive, e.g. ``"H100-SXM-80GB"``, ``"L40S"``), a dict of ``Hardware`` fields, a
    ``Hardware``, or ``None``."""
    if hardware is None or isinstance(hardware, Hardware):
        return hardware
    if isinstance(hardware, str):
        reg = _load()
        if hardware not in reg:
            raise UnknownNameError("hardware", hardware, list_hardware())
        return reg.get(hardware)
    if isinstance(hardware, dict):
        try:
            return Hardware(**hardware)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise InvalidConfigError(f"hardware.{loc}", err.get("input"), err["msg"]) from None
    raise InvalidConfigError("hardware", type(hardware).__name__, f"expected a preset name ({', '.join(list_hardware())}), a dict or a Hardware")

"""InferenceSpec: how the fine-tuned model is served."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .dtypes import WEIGHT_DTYPES, canonical_dtype

__all__ = ["InferenceSpec"]


class InferenceSpec(BaseModel):
    """``num_tasks`` task-specific adaptations served from one base model; ``merged`` folds a mergeable
    adapter (LoRA, IA3) into the base weights (``None``: as the method spec says)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(1, gt=0)
    prompt_len: int = Field(512, gt=0)
    new_tokens: int = Field(128, ge=0)
    num_tasks: int = Field(1, gt=0)
    merged: bool | None = None
    dtype: str | None = None
    kv_cache_dtype: str | None = None

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, v: Any) -> str | None:
        return None if v is None else canonical_dtype(v, "inference.dtype", WEIGHT_DTYPES)

    @field_validator("kv_cache_dtype", mode="before")
    @classmethod
    def _kv(cls, v: Any) -> str | None:
        return None if v is None else canonical_dtype(v, "inference.kv_cache_dtype", (*WEIGHT_DTYPES, "fp8", "int8"))


def kv_cache_bytes(cfg: dict[str, Any], batch: int, positions: int, dtype_bytes: int, *, prefix_tokens: int = 0,
                   sliding: bool = False, layer_types: list[str] | None = None) -> int:
    """Bytes of keys and values cached for ``positions`` tokens (+ prefix-tuning's virtual positions) in every layer.

    ``sliding=True`` caps sliding-window layers at the window (what transformers' sliding cache layers keep).
    """
    per_position = 2 * batch * cfg["num_key_value_heads"] * cfg["head_dim"] * dtype_bytes
    layers = layer_types or ["full_attention"] * cfg["num_hidden_layers"]
    window = cfg.get("sliding_window")
    total = 0
    for kind in layers:
        n = positions
        if sliding and kind == "sliding_attention" and window:
            n = min(n, window)
        total += per_position * (n + prefix_tokens)
    return total

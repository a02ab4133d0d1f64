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

"""Bottleneck adapters as AdapterHub's ``adapters`` library builds them (``adapters.BnConfig``):
``seq_bn`` (Pfeiffer: one adapter after the feed-forward block) and ``double_seq_bn`` (Houlsby: one after
attention and one after the feed-forward block). Each adapter is ``adapter_down`` Linear(hidden, hidden //
reduction_factor) + bias and ``adapter_up`` Linear(hidden // reduction_factor, hidden) + bias, cast to the base
dtype (their forward needs matching dtypes)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..errors import UnsupportedCombinationError
from .base import Method, ParamTable, Tensor, base_tensors

# model types AdapterHub adapters 1.3.0 can wrap (adapters/models/__init__.py; see docs/notes/adapters.md)
SUPPORTED = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "gpt2", "gpt_neox", "opt", "olmo2", "granite", "starcoder2")

PRESETS = {
    "seq_bn": dict(mh_adapter=False, output_adapter=True, reduction_factor=16, non_linearity="relu"),
    "pfeiffer": dict(mh_adapter=False, output_adapter=True, reduction_factor=16, non_linearity="relu"),
    "double_seq_bn": dict(mh_adapter=True, output_adapter=True, reduction_factor=16, non_linearity="swish"),
    "houlsby": dict(mh_adapter=True, output_adapter=True, reduction_factor=16, non_linearity="swish"),
}


class Adapter(Method):
    name = "adapter"
    label = "Bottleneck adapter"

    config: Literal["seq_bn", "double_seq_bn", "pfeiffer", "houlsby"] = "seq_bn"
    reduction_factor: float | None = Field(None, gt=0)
    non_linearity: str | None = None
    mh_adapter: bool | None = None
    output_adapter: bool | None = None
    ln_before: bool = False
    ln_after: bool = False
    original_ln_before: bool = True
    original_ln_after: bool = True
    residual_before_ln: bool | str = True
    adapter_residual_before_ln: bool = False
    init_weights: str = "bert"
    scaling: float | str = 1.0
    use_gating: bool = False
    dropout: float = 0.0

    @field_validator("config", mode="before")
    @classmethod
    def _lower(cls, v):
        return v.lower() if isinstance(v, str) else v

    def setting(self, key):
        value = getattr(self, key)
        return PRESETS[self.config][key] if value is None else value

    def bottleneck(self, hidden: int) -> int:
        return max(1, int(hidden // self.setting("reduction_factor")))

    def build(self, layout, cfg, dtype):
        mt = cfg["model_type"]
        if mt not in SUPPORTED:
            raise UnsupportedCombinationError(f"AdapterHub adapters has no bottleneck-adapter support for model_type {mt!r}")
        h = cfg["hidden_size"]
        d = self.bottleneck(h)
        places = [p for p, on in (("attention_adapters", self.setting("mh_adapter")), ("output_adapters", self.setting("output_adapter"))) if on]
        tensors = []
        for place in places:
            prefix = f"{layout.layer_prefix}.*.{place}.adapters.{{name}}"
            tensors += [
                Tensor(f"{prefix}.adapter_down.0.weight", (d, h), dtype, layout.num_layers, True, "adapter"),
                Tensor(f"{prefix}.adapter_down.0.bias", (d,), dtype, layout.num_layers, True, "adapter"),
                Tensor(f"{prefix}.adapter_up.weight", (h, d), dtype, layout.num_layers, True, "adapter"),
                Tensor(f"{prefix}.adapter_up.bias", (h,), dtype, layout.num_layers, True, "adapter"),
            ]
            if self.ln_before:
                tensors += [Tensor(f"{prefix}.adapter_norm_before.{w}", (h,), dtype, layout.num_layers, True, "adapter") for w in ("weight", "bias")]
            if self.ln_after:
                tensors += [Tensor(f"{prefix}.adapter_norm_after.{w}", (h,), dtype, layout.num_layers, True, "adapter") for w in ("weight", "bias")]
            if self.use_gating:
                tensors += [
                    Tensor(f"{prefix}.gate.weight", (1, h), dtype, layout.num_layers, True, "adapter"),
                    Tensor(f"{prefix}.gate.bias", (1,), dtype, layout.num_layers, True, "adapter"),
                ]
        return ParamTable(tensors=base_tensors(layout, dtype) + tensors, saved=list(tensors))

"""Bottleneck adapters as AdapterHub's ``adapters`` library builds them (``adapters.BnConfig``):
``seq_bn`` (Pfeiffer: one adapter after the feed-forward block) and ``double_seq_bn`` (Houlsby: one after
attention and one after the feed-forward block). Each adapter is ``adapter_down`` Linear(hidden, hidden //
reduction_factor) + bias and ``adapter_up`` Linear(hidden // reduction_factor, hidden) + bias, cast to the base
dtype (their forward needs matching dtypes)."""

from __future__ import annotations

import math
import warnings
from typing import Literal

from pydantic import Field, field_validator

from ..errors import InvalidConfigError, UnsupportedCombinationError
from .base import Method, ParamTable, Tensor, base_tensors

# model types AdapterHub adapters 1.3.0 can wrap: its own integrations (llama, mistral, gpt2) and its
# built-in plugin interfaces (qwen2, qwen3, gemma2, gemma3_text); the others fail in adapters.init with
# "Model <type> not pre-supported by adapters" (docs/notes/adapters.md)
SUPPORTED = ("llama", "mistral", "gpt2", "qwen2", "qwen3", "gemma2", "gemma3_text")
# the plugin-interface types (adapters/wrappers/interfaces.py): forward hooks on the attention's and the MLP's
# output projections run the adapters, with the residual stream that pre-hooks on the next norms left in the
# ForwardContext; True where the interface names the model's own norms (layer_ln_1/2), which an adapter with
# original_ln_before re-applies
HOOKED = {"qwen2": False, "qwen3": False, "gemma2": True, "gemma3_text": True}

PRESETS = {
    "seq_bn": dict(mh_adapter=False, output_adapter=True, reduction_factor=16, non_linearity="relu", original_ln_before=True),
    "pfeiffer": dict(mh_adapter=False, output_adapter=True, reduction_factor=16, non_linearity="relu", original_ln_before=True),
    "double_seq_bn": dict(mh_adapter=True, output_adapter=True, reduction_factor=16, non_linearity="swish", original_ln_before=False),
    "houlsby": dict(mh_adapter=True, output_adapter=True, reduction_factor=16, non_linearity="swish", original_ln_before=False),
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
    original_ln_before: bool | None = None
    original_ln_after: bool = True
    residual_before_ln: bool | str = True
    adapter_residual_before_ln: bool = False
    init_weights: str = "bert"
    scaling: float | str = 1.0
    use_gating: bool = False
    dropout: float = 0.0
    leave_out: list[int] = Field(default_factory=list)  # layers (from 0) that get no adapter (BnConfig.leave_out)

    @field_validator("config", mode="before")
    @classmethod
    def _lower(cls, v):
        return v.lower() if isinstance(v, str) else v

    @field_validator("non_linearity", mode="before")
    @classmethod
    def _activation(cls, v):
        """AdapterHub's Activation_Function_Class: ``leakyrelu``, else transformers' ``get_activation(name.lower())``."""
        if v is None:
            return v
        from ..act_fns import ACT_FNS
        from ..errors import did_you_mean

        if not isinstance(v, str):
            raise ValueError("expected the name of an activation function (a string)")
        name = v.lower()
        if name != "leakyrelu" and name not in ACT_FNS:
            raise ValueError(f"not an activation this estimate models (AdapterHub reads it as transformers' "
                             f"get_activation(name.lower()), or 'leakyrelu').{did_you_mean(name, [*ACT_FNS, 'leakyrelu'])} "
                             f"Available: {', '.join(sorted([*ACT_FNS, 'leakyrelu']))}")
        return name

    @field_validator("residual_before_ln", mode="before")
    @classmethod
    def _residual_place(cls, v):
        if v is True or v is False or v == "post_add":
            return v
        raise ValueError("AdapterHub takes True (the residual is the adapter's input), False (after the block's "
                         "LayerNorm) or 'post_add' (after the residual add, before the LayerNorm)")

    @field_validator("leave_out", mode="before")
    @classmethod
    def _layer_list(cls, v):
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v]
        if isinstance(v, (list, tuple)) and any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in v):
            bad = next(i for i in v if not isinstance(i, int) or isinstance(i, bool) or i < 0)
            raise ValueError(f"leave_out lists layer indices, integers from 0 (AdapterHub counts layers from 0); got {bad!r}")
        return sorted(set(v)) if isinstance(v, (list, tuple)) else v

    def in_layer(self, i: int) -> bool:
        """Does decoder layer ``i`` get adapters (it is not in ``leave_out``)?"""
        return i not in self.leave_out

    def adapter_layers(self, num_layers: int) -> list[int]:
        """The layers that get adapters."""
        return [i for i in range(num_layers) if i not in self.leave_out]

    def setting(self, key):
        value = getattr(self, key)
        return PRESETS[self.config][key] if value is None else value

    def bottleneck(self, hidden: int) -> int:
        rf = self.setting("reduction_factor")
        if isinstance(rf, float) and rf.is_integer():
            rf = int(rf)  # the same quotient; an integer one stays a polynomial of the hidden size when traced
        d = hidden // rf  # AdapterHub: int(hidden_size // reduction_factor)
        if isinstance(d, float):
            if not math.isfinite(d):
                raise InvalidConfigError("adapter.reduction_factor", rf, f"hidden_size={hidden} // reduction_factor is not a finite size")
            d = int(d)
        return max(1, d)

    def build(self, layout, cfg, dtype):
        mt = cfg["model_type"]
        if mt not in SUPPORTED:
            raise UnsupportedCombinationError(
                f"AdapterHub adapters 1.3.0 cannot wrap model_type {mt!r} (adapters.init: 'not pre-supported'); "
                f"bottleneck adapters are supported for: {', '.join(SUPPORTED)}"
            )
        if mt in HOOKED and not self.original_ln_after:
            raise UnsupportedCombinationError(
                f"adapter.original_ln_after=False on {mt}: AdapterHub's plugin interface for it (layer hooking) refuses "
                "it ('Unsupported configuration for bottleneck layer hooking mode: original_ln_after=False'); "
                f"it is supported on {', '.join(t for t in SUPPORTED if t not in HOOKED)}")
        if not (self.setting("mh_adapter") or self.setting("output_adapter")):
            raise UnsupportedCombinationError(
                f"adapter config {self.config!r} with mh_adapter=False and output_adapter=False places no adapter, so "
                "there is nothing to train (AdapterHub adds none; the optimizer gets an empty parameter list)")
        if self.residual_before_ln == "post_add" and not (self.setting("original_ln_before") and HOOKED.get(mt)):
            raise UnsupportedCombinationError(
                f"adapter.residual_before_ln='post_add' on {mt}"
                + (" with original_ln_before=False" if not self.setting("original_ln_before") else "")
                + ": AdapterHub's Adapter.pre_forward sets the residual after the add only where it re-applies the "
                "block's LayerNorm (original_ln_before=True, on a model whose integration names it: "
                f"{', '.join(t for t, named in HOOKED.items() if named)}); elsewhere the forward fails "
                "(UnboundLocalError: 'residual'). Use residual_before_ln=True or False")
        h = cfg["hidden_size"]
        d = self.bottleneck(h)
        n, which = layout.num_layers, None  # (a traced size where no layer is left out: any depth replays)
        if self.leave_out:
            layers = self.adapter_layers(layout.num_layers)
            if not layers:
                raise UnsupportedCombinationError(
                    f"adapter.leave_out={self.leave_out}: every layer of the {layout.num_layers} is left out, so there "
                    "is no adapter to train (AdapterHub adds none, and the backward has nothing that requires grad)")
            past = [i for i in self.leave_out if i >= layout.num_layers]
            if past:
                warnings.warn(f"adapter.leave_out: {past} past the last layer ({layout.num_layers - 1}); AdapterHub "
                              "ignores them", stacklevel=2)
            if len(layers) < layout.num_layers:
                n, which = len(layers), tuple(layers)
        places = [p for p, on in (("attention_adapters", self.setting("mh_adapter")), ("output_adapters", self.setting("output_adapter"))) if on]
        tensors = []
        for place in places:
            prefix = f"{layout.layer_prefix}.*.{place}.adapters.{{name}}"
            tensors += [
                Tensor(f"{prefix}.adapter_down.0.weight", (d, h), dtype, n, True, "adapter", layers=which),
                Tensor(f"{prefix}.adapter_down.0.bias", (d,), dtype, n, True, "adapter", layers=which),
                Tensor(f"{prefix}.adapter_up.weight", (h, d), dtype, n, True, "adapter", layers=which),
                Tensor(f"{prefix}.adapter_up.bias", (h,), dtype, n, True, "adapter", layers=which),
            ]
            if self.ln_before:
                tensors += [Tensor(f"{prefix}.adapter_norm_before.{w}", (h,), dtype, n, True, "adapter", layers=which) for w in ("weight", "bias")]
            if self.ln_after:
                tensors += [Tensor(f"{prefix}.adapter_norm_after.{w}", (h,), dtype, n, True, "adapter", layers=which) for w in ("weight", "bias")]
            if self.scaling == "learned":
                tensors.append(Tensor(f"{prefix}.scaling", (1,), dtype, n, True, "adapter", layers=which))
            elif self.scaling == "channel":
                tensors.append(Tensor(f"{prefix}.scaling", (h,), dtype, n, True, "adapter", layers=which))
            if self.use_gating:
                tensors += [
                    Tensor(f"{prefix}.gate.weight", (1, h), dtype, n, True, "adapter", layers=which),
                    Tensor(f"{prefix}.gate.bias", (1,), dtype, n, True, "adapter", layers=which),
                ]
        return ParamTable(tensors=base_tensors(layout, dtype) + tensors, saved=list(tensors))

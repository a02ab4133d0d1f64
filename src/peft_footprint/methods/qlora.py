"""QLoRA: LoRA on a bitsandbytes 4-bit base (transformers' BitsAndBytesConfig(load_in_4bit=True)).

Byte layout (docs/notes/qlora.md; bitsandbytes 0.50.2, transformers 5.13.1, peft 0.19.1):

- transformers' ``replace_with_bnb_linear`` swaps every ``nn.Linear`` and GPT-2 ``Conv1D`` for
  ``bnb.nn.Linear4bit`` except ``modules_to_not_convert`` (the output embedding, or ``llm_int8_skip_modules``).
- A weight of n values becomes a ``Params4bit`` of shape ``((n + 1) // (2 * s), 1)`` in
  ``bnb_4bit_quant_storage`` (itemsize s): ceil(n/2) bytes; bf16/fp32 storage needs n divisible by 2s.
- Its QuantState: fp32 absmax per block of 64 values and the 16-entry fp32 code (64 B, one per layer);
  with double quantization the absmax is uint8, plus one fp32 absmax per 256 blocks, a 4-byte fp32 offset,
  and the nested 256-entry fp32 code (1 KiB), one copy per layer (measured: bitsandbytes copies it into
  each QuantState).
- PEFT counts a Params4bit as ``numel * 2 * element_size`` parameters (n, or n + 1 for odd n in uint8).
- ``prepare_model_for_kbit_training`` casts every non-4-bit parameter to fp32.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Literal

from pydantic import field_validator, model_validator

from ..dtypes import WEIGHT_DTYPES, canonical_dtype, nbytes
from ..errors import UnsupportedCombinationError
from .base import ParamTable, Tensor
from .lora import LoRA

BLOCKSIZE = 64  # bitsandbytes quantize_4bit default blocksize for 4-bit weights
DQ_BLOCKSIZE = 256  # double quantization: blocksize of the nested absmax quantization
CODE_4BIT = 16 * 4  # fp32 NF4/FP4 lookup table kept in each QuantState
CODE_8BIT = 256 * 4  # fp32 dynamic map of the nested (double-quant) state, one per QuantState


def quant_state_bytes(numel: int, double_quant: bool) -> int:
    """Bytes of one Linear4bit's QuantState tensors (excluding the shared nested code)."""
    blocks = -(-numel // BLOCKSIZE)
    if not double_quant:
        return blocks * 4 + CODE_4BIT
    nested = -(-blocks // DQ_BLOCKSIZE)
    return blocks + nested * 4 + 4 + CODE_8BIT + CODE_4BIT


class QLoRA(LoRA):
    name = "qlora"
    label = "QLoRA"
    mergeable = True

    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_compute_dtype: str | None = None
    bnb_4bit_quant_storage: str = "uint8"
    llm_int8_skip_modules: list[str] | None = None
    # the QLoRA recipe calls peft.prepare_model_for_kbit_training, which casts every non-4-bit parameter to fp32
    prepare_model_for_kbit_training: bool = True

    @model_validator(mode="after")
    def _warn_merge(self):
        if self.merge:
            warnings.warn(self.merge_warning(), UserWarning, stacklevel=2)
        return self

    def merge_warning(self) -> str:
        return (
            "merging a QLoRA adapter dequantizes each 4-bit base weight, adds the LoRA update and re-quantizes it to "
            f"{self.bnb_4bit_quant_type}: the merged model differs slightly from base + adapter (rounding), and its size "
            "is the 4-bit base's"
        )

    @field_validator("bnb_4bit_quant_storage", mode="before")
    @classmethod
    def _storage(cls, v):
        return canonical_dtype(v, "bnb_4bit_quant_storage", ("uint8", "int8", *WEIGHT_DTYPES))

    @field_validator("bnb_4bit_compute_dtype", mode="before")
    @classmethod
    def _compute(cls, v):
        return None if v is None else canonical_dtype(v, "bnb_4bit_compute_dtype")

    @field_validator("bnb_4bit_quant_type", mode="before")
    @classmethod
    def _qt(cls, v):
        return v.lower() if isinstance(v, str) else v

    def quantizes(self, layout, lin, in_layer: bool) -> bool:
        """Does transformers' bitsandbytes integration make this linear a Linear4bit? Every one but the skipped
        modules, the output embedding and tied ones (OPT's project_in/out too)."""
        skip = (*(self.llm_int8_skip_modules or ()), layout.output_embedding)
        return not any(lin.path.endswith(s) for s in skip) and (in_layer or not lin.tied)

    def build(self, layout, cfg, dtype):
        table = super().build(layout, cfg, dtype)
        quantized = {
            f"{layout.layer_prefix}.*.{m.path}.weight": m for m in layout.layer_linears if self.quantizes(layout, m, True)
        } | {f"{m.path}.weight": m for m in layout.outer_linears if self.quantizes(layout, m, False)}
        esize = nbytes(self.bnb_4bit_quant_storage)
        other_dtype = "fp32" if self.prepare_model_for_kbit_training else dtype
        # Linear4bit.forward casts its bias, in place, to the compute dtype (the model's when none is given, as
        # the activations assume: ctx.q4), after prepare_model_for_kbit_training's fp32 cast
        biases = {name[: -len(".weight")] + ".bias" for name in quantized}
        bias_dtype = self.bnb_4bit_compute_dtype or dtype
        tensors, buffers = [], []
        for t in table.tensors:
            if t.name in quantized and t.group == "base":
                numel = t.numel
                if esize > 1 and numel % (2 * esize):
                    raise UnsupportedCombinationError(
                        f"bnb_4bit_quant_storage={self.bnb_4bit_quant_storage!r} cannot hold {t.name} ({numel} values, not a "
                        f"multiple of {2 * esize}): bitsandbytes fails to load it; use quant_storage 'uint8'"
                    )
                stored = (numel + 1) // (2 * esize)  # elements of quant_storage holding numel 4-bit codes
                tensors.append(Tensor(t.name, (stored, 1), self.bnb_4bit_quant_storage, t.count, False, "quantized",
                                      counted_numel=stored * 2 * esize, stored_bytes=stored * esize))
                buffers.append(Tensor(t.name + ".quant_state", (0,), "uint8", t.count, False, "quant_state",
                                      stored_bytes=quant_state_bytes(numel, self.bnb_4bit_use_double_quant)))
            elif t.group == "modules_to_save":  # a copy of what prepare_model_for_kbit_training left (fp32 there)
                source = t.name.replace(".modules_to_save.", ".")
                if source in quantized or source in biases:
                    raise UnsupportedCombinationError(
                        f"modules_to_save covers {source.rsplit('.', 1)[0]!r}, a 4-bit Linear4bit under QLoRA: its copy's "
                        "uint8 weight cannot require grad (PEFT fails); copy modules that stay in floating point (lm_head, "
                        "norms, embeddings) or skip it with llm_int8_skip_modules")
                tensors.append(Tensor(t.name, t.shape, other_dtype, t.count, t.trainable, t.group, layers=t.layers))
            elif t.name in biases:
                tensors.append(Tensor(t.name, t.shape, bias_dtype, t.count, t.trainable, t.group))
            elif t.group == "base" and other_dtype != t.dtype:
                tensors.append(Tensor(t.name, t.shape, other_dtype, t.count, t.trainable, t.group))
            else:
                tensors.append(t)
        # the embeddings' base weights PEFT saves with the adapter (LoRA._saved_embeddings), in the dtype they train in
        # (bias="all": the saved base biases as prepare_model_for_kbit_training left them, before a forward casts a
        # Linear4bit's own to the compute dtype: what get_peft_model_state_dict gives then)
        saved = [dataclasses.replace(t, dtype=other_dtype) if t.name.endswith(".base_layer.weight") or t.group in ("modules_to_save", "base")
                 else t for t in table.saved]
        return ParamTable(tensors=tensors, saved=saved, buffers=buffers, notes=table.notes)

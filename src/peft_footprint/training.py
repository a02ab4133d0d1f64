"""TrainingSpec, precision rules and the optimizer-state table."""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .dtypes import WEIGHT_DTYPES, canonical_dtype, nbytes
from .registry import Registry

__all__ = ["TrainingSpec", "OPTIMIZERS", "Optimizer", "optimizer_state_bytes"]


class TrainingSpec(BaseModel):
    """How the model is trained. ``dtype`` is the dtype the weights are stored in; ``mixed_precision``
    (``"bf16"``/``"fp16"``) runs the forward under ``torch.autocast`` on fp32 weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(1, gt=0)
    seq_len: int = Field(512, gt=0)
    dtype: str = "bf16"
    mixed_precision: str | None = None
    optimizer: str = "adamw"
    gradient_checkpointing: bool = False
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    gradient_accumulation_steps: int = Field(1, gt=0)
    # the forward's use_cache (transformers' default config.use_cache=True builds a KV cache even in training
    # unless gradient checkpointing is on; DESIGN.md's measurement passes use_cache=False)
    use_cache: bool = False
    # a training loop that keeps `outputs` referenced across optimizer.step() (PEFT's MetaMathQA run.py does)
    # keeps the logits (and the KV cache when use_cache) allocated between steps
    retain_outputs: bool = False
    # batches carry an attention_mask (padded batches, as data collators produce): transformers then hands sdpa
    # an explicit mask, which costs the GQA fast path (k/v repeated per head) and an additive mask per layer
    padding_mask: bool = False
    # where the step runs: "cuda" (default) or "cpu" (dropout masks and LayerNorm statistics are stored in the
    # input dtype by PyTorch's CPU kernels; bool / fp32 on CUDA)
    device: Literal["cuda", "cpu"] = "cuda"

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, v: Any) -> str:
        return canonical_dtype(v, "training.dtype", WEIGHT_DTYPES)

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _mp(cls, v: Any) -> str | None:
        if v in (None, False, "no", "none"):
            return None
        return canonical_dtype(v, "training.mixed_precision", ("bf16", "fp16"))

    @field_validator("optimizer", mode="before")
    @classmethod
    def _opt(cls, v: Any) -> str:
        return OPTIMIZERS.canonical(v) if isinstance(v, str) else OPTIMIZERS.canonical(str(v))

    @field_validator("attn_implementation", mode="before")
    @classmethod
    def _attn(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.lower()
            if v in ("flash_attention", "flash", "fa2", "flash_attn"):
                return "flash_attention_2"
        return v

    @property
    def weight_dtype(self) -> str:
        return "fp32" if self.mixed_precision else self.dtype


# ---- optimizers ---------------------------------------------------------------------------------
# Each rule maps one trainable tensor (shape, dtype) to the bytes of the optimizer state it gets.

BNB_MIN_8BIT_SIZE = 4096  # bitsandbytes Optimizer2State: tensors with fewer elements keep 32-bit state
BNB_BLOCKSIZE = 256  # bitsandbytes blockwise 8-bit optimizers: one fp32 absmax per 256 elements
BNB_QMAP_BYTES = 2 * 256 * 4  # the two 256-entry fp32 quantization maps, shared by all tensors of one device


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


@dataclass(frozen=True)
class Optimizer:
    name: str
    description: str
    per_tensor: Callable[[tuple[int, ...], str], int]
    fixed_bytes: int = 0  # state shared by all tensors (bitsandbytes' quantization maps)
    paged: bool = False
    source: str = ""


def _adam(shape, dtype):  # torch.optim.AdamW: exp_avg, exp_avg_sq like the parameter (step on CPU, excluded)
    return 2 * _numel(shape) * nbytes(dtype)


def _adam8(shape, dtype):
    n = _numel(shape)
    if n < BNB_MIN_8BIT_SIZE:
        return 2 * n * 4
    blocks = -(-n // BNB_BLOCKSIZE)
    return 2 * n + 2 * blocks * 4


def _sgd(shape, dtype):
    return 0


def _momentum(shape, dtype):
    return _numel(shape) * nbytes(dtype)


def _adafactor_factors(shape: tuple[int, ...]) -> int:
    """Elements of Adafactor's factored second moment of a tensor of 2 or more dimensions: a row and a column
    vector (a 1-D tensor's second moment is not factored)."""
    return _numel(shape[:-1]) + _numel(shape[:-2]) * shape[-1]


def _adafactor(shape, dtype):  # transformers.Adafactor defaults (beta1=None): factored second moment, in fp32
    # (the state follows the gradient, which step() upcasts), and state["RMS"], a 0-dim fp32 tensor
    return (_adafactor_factors(shape) if len(shape) >= 2 else _numel(shape)) * 4 + 4


def _lion(shape, dtype):  # bitsandbytes Lion (HF Trainer's lion_32bit): one fp32 momentum buffer
    return _numel(shape) * 4


def _lion8(shape, dtype):
    n = _numel(shape)
    if n < BNB_MIN_8BIT_SIZE:
        return n * 4
    return n + -(-n // BNB_BLOCKSIZE) * 4


OPTIMIZERS: Registry[Optimizer] = Registry("optimizer")
for _opt in (
    Optimizer("adamw", "torch.optim.AdamW: two states in the parameter dtype", _adam, source="torch/optim/adamw.py"),
    Optimizer("adam", "torch.optim.Adam: two states in the parameter dtype", _adam, source="torch/optim/adam.py"),
    Optimizer("adamw_fused", "torch.optim.AdamW(fused=True), HF Trainer's default on torch >= 2.8 (adamw_torch_fused): "
              "AdamW's state, updated in place by one kernel (no temporaries)", _adam, source="torch/optim/adamw.py _fused_adamw"),
    Optimizer("adamw_8bit", "bitsandbytes AdamW8bit: two uint8 states + fp32 absmax per 256; tensors < 4096 elements keep fp32 states",
              _adam8, BNB_QMAP_BYTES, source="bitsandbytes/optim/optimizer.py Optimizer2State.init_state"),
    Optimizer("paged_adamw_8bit", "bitsandbytes PagedAdamW8bit: as adamw_8bit, in paged (unified) memory", _adam8, BNB_QMAP_BYTES, True),
    Optimizer("paged_adamw", "bitsandbytes PagedAdamW (32-bit states)", lambda s, d: 2 * _numel(s) * 4, paged=True),
    Optimizer("adamw_32bit", "bitsandbytes AdamW (32-bit states)", lambda s, d: 2 * _numel(s) * 4),
    Optimizer("sgd", "torch.optim.SGD without momentum: no state", _sgd),
    Optimizer("sgd_momentum", "torch.optim.SGD with momentum: one buffer in the parameter dtype", _momentum),
    Optimizer("adafactor", "transformers.Adafactor (beta1=None): factored row/column second moments in fp32", _adafactor),
    Optimizer("lion", "bitsandbytes Lion (HF Trainer's lion_32bit): one fp32 momentum buffer", _lion),
    Optimizer("lion_8bit", "bitsandbytes Lion8bit: one uint8 state + fp32 absmax per 256", _lion8, 256 * 4),
):
    OPTIMIZERS.register(_opt.name, _opt)
for _alias, _name in (("adamw_torch", "adamw"), ("adamw_torch_fused", "adamw_fused"), ("adamw_bnb_8bit", "adamw_8bit"),
                      ("adam8bit", "adamw_8bit"), ("adamw8bit", "adamw_8bit"), ("paged_adamw_32bit", "paged_adamw"),
                      ("lion_32bit", "lion")):
    OPTIMIZERS._aliases[_alias] = _name


def optimizer_state_bytes(optimizer: str, tensors) -> int:
    """Bytes of optimizer state over the trainable tensors (exact integers)."""
    opt = OPTIMIZERS.get(optimizer)
    total = sum(opt.per_tensor(t.shape, t.dtype) * t.count for t in tensors)
    # bitsandbytes makes its quantization maps for the first tensor it quantizes: none when every tensor is
    # small enough to keep 32-bit states
    quantized = any(_numel(t.shape) >= BNB_MIN_8BIT_SIZE for t in tensors)
    return total + (opt.fixed_bytes if quantized else 0)


def optimizer_step_temporary_bytes(optimizer: str, tensors, layer_order: tuple[str, ...] = ()) -> int:
    """Transient bytes inside ``optimizer.step()``: torch's foreach Adam/AdamW (the CUDA default) builds one
    ``_foreach_sqrt(exp_avg_sq)`` list per (device, dtype) group, the size of that group's parameters. The loop
    over the groups never deletes it: a group's list is freed only once the next group's exists, so two
    consecutive groups (trainable tensors of two dtypes: LoRA's fp32 weights and a bf16 modules_to_save copy)
    are alive together. ``layer_order``: a layer's modules in the order it registers them (Layout.registration_order),
    which per-parameter optimizers follow."""
    name = OPTIMIZERS.canonical(optimizer)
    if name == "adafactor":
        return _adafactor_step_bytes(tensors, layer_order)
    if name not in ("adamw", "adam"):
        return 0
    groups: dict[str, int] = {}  # in the order torch groups them: each dtype's first tensor
    for t in tensors:
        groups[t.dtype] = groups.get(t.dtype, 0) + t.bytes
    sizes = list(groups.values())
    return max([a + b for a, b in zip(sizes, sizes[1:])] or sizes or [0])


# modules that models register before their decoder layers, in that order (GPT-NeoX's embed_out, the lm_head,
# comes after them; OPT's decoder registers its projections and final LayerNorm first)
_BEFORE_LAYERS = ("embed_tokens", "embed_in", "wte", "wpe", "embed_positions", "project_out", "project_in", "final_layer_norm")


def _adafactor_step_bytes(tensors, layer_order: tuple[str, ...] = ()) -> int:
    """Transient bytes inside transformers.Adafactor's step(), which updates one parameter at a time, in fp32:
    ``grad.float()`` and ``p.float()`` of a half-precision parameter, ``grad**2`` and ``+ eps``, then the
    factored estimate (its row and column factors alive while it is made) or ``rsqrt()``, then ``-update`` for
    the add: four fp32 copies at once, five with the row/column factors. The previous parameter's update is
    still bound to ``update`` until ``(grad**2) + eps`` replaces it. The parameters in the model's order: the input
    embeddings (and what else is registered before the layers), the decoder layers one after another, then the
    rest; a layer's in the order it registers its modules (``layer_order``; what it does not name, such as
    AdapterHub's adapters, added to the layer after, comes last)."""
    def own(t) -> tuple[int, int]:  # (fp32 copies at once, extra bytes) of one parameter's update
        n, half = _numel(t.shape), nbytes(t.dtype) < 4
        factors = _adafactor_factors(t.shape) * 4 if len(t.shape) >= 2 else 0
        return (4 if half else 2) * n * 4, factors

    def front(t) -> int | None:  # where a module registered before the decoder layers comes (None: after them)
        # (a trainable copy sits where its module is, and so do an adapter's tensors on it: LoRA on project_in)
        module = next((m for m in t.name.split(".") if m in _BEFORE_LAYERS), None)
        if "*" in t.name or module is None or (module == "final_layer_norm" and ".decoder." not in t.name):  # OPT's decoder: before
            return None
        return _BEFORE_LAYERS.index(module)

    embeddings = sorted((t for t in tensors if front(t) is not None), key=front)

    def registered(t) -> int:  # the position of a layer tensor's module in the layer (P-tuning's LSTM layers: none)
        rel = t.name.partition("*.")[2]
        return next((k for k, m in enumerate(layer_order) if rel.startswith(m + ".")), len(layer_order))

    layers = sorted((t for t in tensors if "*" in t.name), key=registered)
    # after the layers: what the base model registers (its final norm) before the causal-LM head (lm_head /
    # embed_out, registered after the base model)
    rest = sorted((t for t in tensors if front(t) is None and "*" not in t.name),
                  key=lambda t: t.name.split(".", 1)[0] in ("lm_head", "embed_out"))
    count = max((t.count for t in layers), default=0)
    best, prev = 0, 0
    # (two layers in a row show every consecutive pair of the layers')
    for t in embeddings + [t for _ in range(min(count, 2)) for t in layers] + rest:
        copies, factors = own(t)
        best = max(best, copies + max(prev, factors))
        prev = _numel(t.shape) * 4
    return best

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

    ``sliding=True`` caps sliding-window layers as transformers' ``DynamicSlidingWindowLayer`` does: it keeps the
    last ``sliding_window - 1`` positions.
    """
    per_position = 2 * batch * cfg["num_key_value_heads"] * cfg["head_dim"] * dtype_bytes
    layers = layer_types or ["full_attention"] * cfg["num_hidden_layers"]
    window = cfg.get("sliding_window")
    total = 0
    for kind in layers:
        n = positions + prefix_tokens
        if sliding and kind == "sliding_attention" and window:
            n = min(n, window - 1)
        total += per_position * n
    return total


# 8-bit caches (documented option): one byte per cached element. fp8 (e4m3) caches as vLLM / TensorRT-LLM keep
# them store no per-element scale; transformers' QuantizedCache (quanto int8) adds scales and keeps the most
# recent ``residual_length`` tokens in the model dtype, which this figure leaves out.
CACHE_ELEMENT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}


def cached_positions(prompt_len: int, new_tokens: int, virtual_tokens: int = 0) -> int:
    """Positions in the cache after ``generate`` (the last generated token is never fed back)."""
    return prompt_len + virtual_tokens + max(new_tokens - 1, 0)


def generate_kv_cache_bytes(spec, method, batch: int, prompt_len: int, new_tokens: int, dtype: str) -> int:
    """Bytes of the key/value tensors in the cache ``model.generate(use_cache=True)`` returns (transformers 5 /
    PEFT 0.19): ``DynamicCache(config=...)``, whose sliding-window layers keep ``sliding_window - 1`` positions;
    prompt tuning / P-tuning's virtual tokens are ordinary positions; prefix tuning's cache is built from the prefix
    (``DynamicCache(past_key_values)``, no sliding layers, except Gemma 2/3 which use ``DynamicCache(config=...)``)."""
    cfg = spec.cfg
    e = CACHE_ELEMENT_BYTES[dtype]
    n = cached_positions(prompt_len, new_tokens, method.virtual_tokens())
    prefix = method.prefix_tokens()
    sliding = not prefix or cfg["model_type"] in ("gemma2", "gemma3_text")
    types = spec.layer_types
    if prefix:
        from .methods.prompt_learning import PromptLearning

        layers = method.resolved(cfg)[0] if isinstance(method, PromptLearning) else cfg["num_hidden_layers"]
        types = types[:layers]
    return kv_cache_bytes(cfg, batch, n, e, prefix_tokens=prefix, sliding=sliding, layer_types=types)


# ---- latency roofline ------------------------------------------------------------------------------------
# One set of efficiency factors for every model, method and preset (docs/compute.md explains each):
EFFICIENCY = {
    "matmul": 0.70,  # fraction of the data-sheet dense peak a large cuBLAS GEMM sustains
    "memory": 0.80,  # fraction of the data-sheet DRAM bandwidth a streaming kernel sustains
    "kernel_launch_s": 5e-6,  # per-kernel launch + PyTorch eager dispatch overhead (no CUDA graphs)
}
ELEMENTWISE_KERNELS_PER_LAYER = 25  # norms, rotary, activation, residual adds, reshapes of one eager decoder layer
ELEMENTWISE_PASSES_PER_LAYER = 12  # (hidden-sized tensor reads + writes) of those kernels per token


def _op_time(flops: float, bytes_: float, hw, dtype: str, eff: dict) -> float:
    return max(flops / (hw.flops(dtype) * eff["matmul"]), bytes_ / (hw.memory_bandwidth_bytes_per_s * eff["memory"]))


def pass_time(spec, method, table, hw, *, batch: int, q_len: int, kv_len: int, dtype: str, merged: bool,
              head_tokens: int, prefill: bool, eff: dict | None = None) -> dict:
    """Roofline time of one decoder pass: every op's time is max(compute, memory traffic) at the stated
    efficiencies, plus one launch overhead per kernel. Returns the time and its parts."""
    from .compute import method_view

    eff = eff or EFFICIENCY
    cfg, layout = spec.cfg, spec.layout
    e = CACHE_ELEMENT_BYTES[dtype]
    T = batch * q_len
    mv = method_view(spec, method, table)
    t_mm = t_mem = 0.0
    kernels = 0
    n = layout.num_layers
    per_layer_mm = 0.0
    for m in layout.layer_linears:
        per_layer_mm += _op_time(2 * T * m.in_features * m.out_features,
                                 m.in_features * m.out_features * e + T * (m.in_features + m.out_features) * e, hw, dtype, eff)
    t_mm += n * per_layer_mm
    kernels += n * len(layout.layer_linears)
    # attention (sdpa, one fused kernel) + the cache update (torch.cat copies the whole cache every step)
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    kv_bytes = 2 * batch * nkv * hd * kv_len * e
    att = _op_time(4 * batch * nh * hd * q_len * kv_len, kv_bytes + 2 * T * nh * hd * e, hw, dtype, eff)
    t_mm += n * (att + 2 * kv_bytes / (hw.memory_bandwidth_bytes_per_s * eff["memory"]))
    kernels += n * 3
    # elementwise work of the layer
    t_mem += n * ELEMENTWISE_PASSES_PER_LAYER * T * cfg["hidden_size"] * e / (hw.memory_bandwidth_bytes_per_s * eff["memory"])
    kernels += n * ELEMENTWISE_KERNELS_PER_LAYER
    # the method's own ops (unmerged LoRA / IA3, bottleneck adapters)
    extra_t, extra_k = _method_ops(spec, mv, hw, T, dtype, merged, eff)
    # lm_head over the positions whose logits are kept (generate keeps only the last one)
    head = [m for m in layout.outer_linears if m.role == "lm_head"][0]
    t_mm += _op_time(2 * head_tokens * head.in_features * head.out_features,
                     head.in_features * head.out_features * e + head_tokens * head.out_features * 4, hw, dtype, eff)
    kernels += 8  # embedding, final norm, lm_head, sampling
    total = t_mm + t_mem + extra_t + kernels * eff["kernel_launch_s"]
    return {"time_s": total, "matmul_and_attention_s": t_mm, "elementwise_s": t_mem, "method_ops_s": extra_t,
            "kernels": kernels + extra_k, "launch_s": (kernels + extra_k) * eff["kernel_launch_s"],
            "time_with_method_launches_s": total + extra_k * eff["kernel_launch_s"]}


LORA_KERNELS = 6  # cast x to the adapter dtype, lora_A, lora_B, scale, add, cast back
IA3_KERNELS = 2  # multiply by the vector (promotes to fp32), cast back
ADAPTER_KERNELS = 5  # down, activation, up, scale, residual add


def _method_ops(spec, mv, hw, T: int, dtype: str, merged: bool, eff: dict) -> tuple[float, int]:
    """Time and kernels of the ops a separate (unmerged) adaptation adds to a forward pass."""
    e = CACHE_ELEMENT_BYTES[dtype]
    bw = hw.memory_bandwidth_bytes_per_s * eff["memory"]
    layout = spec.layout
    mods = {m.path: m for m in layout.layer_linears} | {m.path: m for m in layout.outer_linears}
    t, k = 0.0, 0
    if mv.lora and not merged:
        for path, r, count in mv.lora_paths:
            m = mods[path]
            t0, k0 = t, k
            a = 4  # adapters kept in fp32 (PEFT autocast_adapter_dtype)
            t += _op_time(2 * T * m.in_features * r, m.in_features * r * a + T * (m.in_features + r) * a, hw, "fp32", eff)
            t += _op_time(2 * T * r * m.out_features, r * m.out_features * a + T * (r + m.out_features) * a, hw, "fp32", eff)
            t += T * (m.in_features * (e + a) + m.out_features * (3 * a + 2 * a + e + a + 2 * e)) / bw
            k += LORA_KERNELS
            if mv.dora:
                t += _op_time(2 * m.in_features * m.in_features * r + 2 * m.in_features * r * m.out_features,
                              m.in_features * m.out_features * (e + 4), hw, "fp32", eff)
                k += 8
            t, k = t0 + (t - t0) * count, k0 + (k - k0) * count
    if mv.ia3 and not merged:
        for path, (kind, count) in mv.ia3_paths.items():
            m = mods[path]
            width = m.in_features if kind == "ff" else m.out_features
            t += count * T * width * (e + 4 + 4 + e) / bw
            k += count * IA3_KERNELS
    if mv.adapter is not None:
        h = spec.cfg["hidden_size"]
        d = mv.adapter.bottleneck(h)
        places = int(bool(mv.adapter.setting("mh_adapter"))) + int(bool(mv.adapter.setting("output_adapter")))
        per = (_op_time(2 * T * h * d, h * d * e + T * (h + d) * e, hw, dtype, eff) * 2 + 4 * T * h * e / bw)
        t += places * layout.num_layers * per
        k += places * layout.num_layers * ADAPTER_KERNELS
    return t, k


def latency_terms(spec, method, table, inference, hardware, dtype: str, merged: bool, eff: dict | None = None) -> dict:
    """Prefill time and mean per-token decode time of ``generate`` at ``inference``'s shape."""
    eff = eff or EFFICIENCY
    kv_dtype = inference.kv_cache_dtype or dtype
    v, p = method.virtual_tokens(), method.prefix_tokens()
    b, prompt = inference.batch_size, inference.prompt_len + v
    pre = pass_time(spec, method, table, hardware, batch=b, q_len=prompt, kv_len=prompt + p, dtype=dtype,
                    merged=merged, head_tokens=b, prefill=True, eff=eff)
    mid = prompt + p + max(inference.new_tokens - 1, 0) / 2  # decode cost is linear in context: mean = middle
    dec = pass_time(spec, method, table, hardware, batch=b, q_len=1, kv_len=int(round(mid)), dtype=dtype,
                    merged=merged, head_tokens=b, prefill=False, eff=eff)
    prefill_s = pre["time_with_method_launches_s"]
    decode_s = dec["time_with_method_launches_s"]
    return {
        "prefill_latency_s": prefill_s,
        "decode_latency_s": decode_s,
        "generate_latency_s": prefill_s + max(inference.new_tokens - 1, 0) * decode_s,
        "decode_tokens_per_s": b / decode_s,
        "assumptions": {
            "model": "roofline per op: max(FLOPs / (peak x matmul efficiency), bytes / (bandwidth x memory efficiency)) "
                     "+ one launch overhead per kernel; eager PyTorch, no CUDA graphs, batch padded, sdpa attention",
            "hardware": hardware.name,
            "peak_flops": hardware.flops(dtype),
            "memory_bandwidth_bytes_per_s": hardware.memory_bandwidth_bytes_per_s,
            "matmul_efficiency": eff["matmul"],
            "memory_efficiency": eff["memory"],
            "kernel_launch_s": eff["kernel_launch_s"],
            "dtype": dtype,
            "kv_cache_dtype": kv_dtype,
            "merged": merged,
            "decode_context": "mean over the generated tokens (cost is linear in context length)",
            "lm_head": "last position only (generate's logits_to_keep=1)",
            "kernels_prefill": pre["kernels"],
            "kernels_per_decode_step": dec["kernels"],
        },
    }

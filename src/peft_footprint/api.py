"""The public entry points: estimate() and its helpers."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

import warnings

from .errors import InvalidConfigError, PeftFootprintError, PeftFootprintWarning, UnsupportedCombinationError, did_you_mean
from .dtypes import nbytes
from .inference import InferenceSpec, kv_cache_bytes
from .methods import Method, ParamTable, load_method
from .methods.base import method_key
from .methods.lora import LoRA
from .poly import evaluate
from .model import ModelSpec, load_model
from .storage import safetensors_file_bytes
from .result import SCHEMA_VERSION, Estimate
from .activations import (BOTH_MASKS, ActivationModel, attention_dropout, attention_dropout_field, outputs_dtypes, returns_kv_cache,
                          structured_activation_model)
from .compute import compute_terms
from .tables import build_table
from .hardware import load_hardware
from .overheads import overheads_for, reserved_and_device
from .training import TrainingSpec, optimizer_state_bytes, optimizer_step_temporary_bytes

__all__ = ["estimate", "sweep"]


def _spec(cls, value: Any, field: str):
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise InvalidConfigError(field, type(value).__name__, f"expected a dict or a {cls.__name__}")
    known = set(cls.model_fields)
    for key in value:
        if key not in known:
            raise InvalidConfigError(f"{field}.{key}", value[key], f"unknown field.{did_you_mean(key, known)} Fields: {', '.join(sorted(known))}")
    try:
        return cls(**value)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, PeftFootprintError):
            raise cause from None
        raise InvalidConfigError(f"{field}.{loc}", err.get("input"), err["msg"]) from None


_TABLES: dict[tuple[int, str, str], tuple[ModelSpec, ParamTable]] = {}


def _table(spec: ModelSpec, method: Method, dtype: str) -> ParamTable:
    """The parameter table, cached per (model, method fields, dtype): sweeps rebuild nothing."""
    key = (id(spec), method_key(method), dtype)
    hit = _TABLES.get(key)
    if hit is not None and hit[0] is spec:
        return hit[1]
    if len(_TABLES) > 8192:
        _TABLES.clear()
    table = build_table(spec, method, dtype)
    _TABLES[key] = (spec, table)
    return table


_OPTIM: dict[tuple[int, str], tuple[ParamTable, tuple[int, int]]] = {}


def _optimizer_bytes(table: ParamTable, optimizer: str, layout) -> tuple[int, int]:
    """The optimizer's state over the table's trainable tensors, and its step's transient bytes (in the order of
    the model's parameters: Layout.registration_order); cached per (table, optimizer), like the table itself."""
    key = (id(table), optimizer)
    hit = _OPTIM.get(key)
    if hit is not None and hit[0] is table:
        return hit[1]
    if len(_OPTIM) > 8192:
        _OPTIM.clear()
    out = (optimizer_state_bytes(optimizer, table.trainable), optimizer_step_temporary_bytes(optimizer, table.trainable, layout.registration_order))
    _OPTIM[key] = (table, out)
    return out


_ACTS: dict[tuple, tuple[ModelSpec, ActivationModel]] = {}


def _sliding_active(spec: ModelSpec, method: Method, seq_len: int) -> bool:
    """Does the sequence reach a sliding window? Then transformers builds an explicit mask for those layers (Gemma 2
    and 3 build it whether or not a layer slides)."""
    window = spec.cfg.get("sliding_window")
    if not window or ("sliding_attention" not in spec.layer_types and spec.model_type not in BOTH_MASKS):
        return False
    return seq_len + method.virtual_tokens() + method.prefix_tokens() >= window


def _query_one(method: Method, train: TrainingSpec, seq_len: int) -> bool:
    """A query of one token (no virtual tokens): an activation model of its own (activations.Ctx.query_one), since
    a (b, heads, 1, d) tensor's transposes and reshapes are views (eager's matmuls copy none of q, k, v; the
    attention output's transpose is contiguous already), and with a prefix's cache under sdpa, unpadded,
    transformers builds no mask (_ignore_causal_mask_sdpa), where every longer query gets one."""
    return seq_len == 1 and method.virtual_tokens() == 0


def _activations(spec: ModelSpec, method: Method, train: TrainingSpec, sliding: bool | None = None,
                 batch_one: bool | None = None, query_one: bool | None = None) -> ActivationModel:
    """The activation polynomials, cached per (model, method, training options other than batch and length);
    batch size 1 has a second set (eager attention's matmuls need no copies then, and the loss keeps the padded
    labels themselves)."""
    if sliding is None:
        sliding = _sliding_active(spec, method, train.seq_len)
    if batch_one is None:
        batch_one = train.batch_size == 1
    if query_one is None:
        query_one = _query_one(method, train, train.seq_len)
    # (the pass reads gradient accumulation only as on or off: a tied lm_head's gradient waits for the embedding's)
    options = train.model_dump_json(exclude={"batch_size", "seq_len", "optimizer", "retain_outputs", "use_cache",
                                             "gradient_accumulation_steps"}) + ("+accumulating" if train.gradient_accumulation_steps > 1 else "")
    if returns_kv_cache(train):  # (read only where the model returns a cache)
        options += "+kv cache"
    key = (id(spec), method_key(method), sliding, batch_one, query_one, options)
    hit = _ACTS.get(key)
    if hit is not None and hit[0] is spec:
        return hit[1]
    if len(_ACTS) > 8192:
        _ACTS.clear()
    # only the loss's labels differ (but adapters' Mistral repeats its position ids to a batch > 1): no pass of its own
    if batch_one and train.attn_implementation != "eager" and not (method.name == "adapter" and spec.cfg["model_type"] == "mistral"):
        model = _activations(spec, method, train, sliding, False, query_one).with_batch_one_labels(method.virtual_tokens())
    else:
        model = structured_activation_model(spec, method, train, sliding, batch_one, options, query_one)
    _ACTS[key] = (spec, model)
    return model


def _with_step(live: dict[str, Any], step_bytes: int, grads: int, accumulating: bool, zero: Any = 0) -> dict[str, Any]:
    """The activation moments' live bytes, and the step's own: the optimizer step and the end of backward.
    With gradient accumulation the later micro-batches run forward and backward with every gradient alive.
    ``zero``: 0, or a zero array of the grid's shape."""
    if accumulating:
        live = {k: v + grads for k, v in live.items()}
    live["optimizer step"] = grads + step_bytes + zero
    live["end of backward (all gradients)"] = grads + zero
    return live


def _live_candidates(act: ActivationModel, step_bytes: int, grads: int, b, s, accumulating: bool = False) -> dict[str, Any]:
    """Live bytes (beyond weights + optimizer state) at each moment that can set the step's peak; ``b`` and
    ``s`` are ints, or numpy arrays for whole grids."""
    live = dict(zip(act.peak_candidates, evaluate(act.peak_candidates.values(), b, s)))
    return _with_step(live, step_bytes, grads, accumulating, 0 * b)


def _peak(act: ActivationModel, train: TrainingSpec, step_bytes: int, grads: int) -> tuple[int, str, dict[str, int]]:
    """Highest live bytes (beyond weights + optimizer state) over the step, where it happens, and the largest
    moment of each phase (ActivationModel.live_at: every simulated moment compared exactly at this shape)."""
    live = _with_step(act.live_at(train.batch_size, train.seq_len), step_bytes, grads, train.gradient_accumulation_steps > 1)
    where = max(live, key=live.__getitem__)
    return live[where], where, live


def _refuse(spec: ModelSpec, meth: Method, train: TrainingSpec) -> None:
    """Combinations transformers or PEFT refuse, or fail on, whatever the batch and length (estimate and sweep)."""
    if train.attn_implementation not in spec.arch.attn_implementations:
        raise UnsupportedCombinationError(
            f"training.attn_implementation={train.attn_implementation!r}: transformers has no such kernel for "
            f"{spec.model_type}; available: {', '.join(spec.arch.attn_implementations)}"
        )
    heads, hidden = spec.cfg["num_attention_heads"], spec.cfg["hidden_size"]
    if spec.arch.heads_divide_hidden and hidden % heads and meth.name != "adapter":
        raise InvalidConfigError(
            "num_attention_heads", heads,
            f"must divide hidden_size={hidden}: transformers' {spec.model_type} config refuses it (validate_architecture), "
            f"even with head_dim={spec.cfg['head_dim']} given (transformers 4.x, which AdapterHub's adapters run on, builds it)"
        )
    if (spec.model_type == "gpt2" and spec.cfg.get("reorder_and_upcast_attn") and train.attn_implementation == "eager"
            and meth.name == "adapter"):
        raise UnsupportedCombinationError(
            "reorder_and_upcast_attn=True with eager attention under AdapterHub's transformers 4.x: its GPT-2 upcast "
            "attention (an fp32 baddbmm, then torch.where with the causal mask) is not modelled by this estimate (it "
            "is with PEFT on transformers 5); use attn_implementation='sdpa', which ignores the option"
        )
    p_attn = attention_dropout(spec.cfg)
    if train.device == "cpu" and train.attn_implementation != "eager" and p_attn > 0:
        field = attention_dropout_field(spec.model_type)
        raise UnsupportedCombinationError(
            f"{field}={p_attn} with attn_implementation={train.attn_implementation!r} on device='cpu': PyTorch's CPU "
            "sdpa falls back to its math kernel when it drops out, which this estimate does not model (on CUDA the "
            f"fused kernels drop out without keeping a mask, and that is modelled); use attn_implementation='eager', "
            f"device='cuda', or {field}=0"
        )
    if meth.name == "adapter" and returns_kv_cache(train):
        raise UnsupportedCombinationError(
            "training.use_cache=True with AdapterHub adapters: the KV cache transformers 4.x builds in a training forward "
            "(which AdapterHub's own attention handles for some models) is not modelled; pass use_cache=False, as "
            "training scripts do, or turn gradient_checkpointing on, which turns the cache off"
        )
    if (spec.model_type == "opt" and isinstance(meth, LoRA)
            and meth.position_embedding_target(spec.layout, spec.cfg) is not None):
        raise UnsupportedCombinationError(
            "LoRA on OPT's embed_positions: OPTDecoder calls it with the attention mask, which PEFT's lora.Embedding "
            "hands its adapter as the indices to look up (without an attention_mask transformers fails on the float "
            "mask it makes; with one the adapter looks up the mask's 0/1 values, not positions); leave embed_positions "
            "out of target_modules, or train it whole with modules_to_save=['embed_positions']"
        )
    if meth.prefix_tokens() and train.gradient_checkpointing:
        raise UnsupportedCombinationError(
            "prefix_tuning with gradient_checkpointing: PEFT refuses it ('PREFIX_TUNING does not work with gradient "
            "checkpointing'); turn one of them off"
        )


def _check(spec: ModelSpec, meth: Method, train: TrainingSpec, infer: InferenceSpec, inference_given: bool) -> None:
    """Combinations transformers or PEFT refuse (errors) and ones that are allowed but suspicious (warnings)."""
    _refuse(spec, meth, train)
    limit = spec.cfg.get("max_position_embeddings")
    lengths = [("training.seq_len", train.seq_len)]
    if inference_given:
        lengths.append(("inference.prompt_len + new_tokens", infer.prompt_len + infer.new_tokens))
    for field, length in lengths:
        total = length + meth.virtual_tokens() + meth.prefix_tokens()
        if limit and total > limit and spec.model_type in ("gpt2", "opt") and field == "training.seq_len":
            raise UnsupportedCombinationError(
                f"{field}: {total} positions (with virtual tokens) exceed {spec.name or spec.model_type}'s "
                f"{limit} learned position embeddings; transformers fails with an IndexError"
            )
        if limit and total > limit:
            warnings.warn(
                f"{field} ({total} positions with virtual tokens) exceeds {spec.name or spec.model_type}'s "
                f"max_position_embeddings={limit}: the estimate is computed, but the model was not trained for it",
                PeftFootprintWarning, stacklevel=3,
            )
    merged = meth.merged if infer.merged is None else infer.merged
    if merged and meth.merge_warning() and not meth.merged:
        warnings.warn(meth.merge_warning(), PeftFootprintWarning, stacklevel=3)


def estimate(model: Any, method: Any = "lora", training: Any = None, inference: Any = None, hardware: Any = None) -> Estimate:
    """Estimate the memory, storage and compute of fine-tuning ``model`` with ``method`` (DESIGN.md section 2)."""
    spec = load_model(model)
    meth = load_method(method)
    train = _spec(TrainingSpec, training, "training")
    infer = _spec(InferenceSpec, inference, "inference")

    _check(spec, meth, train, infer, inference is not None)
    table = _table(spec, meth, train.weight_dtype)
    weights = table.weights_bytes
    grads = table.trainable_bytes
    optim, step_bytes = _optimizer_bytes(table, train.optimizer, spec.layout)

    # ---- storage ----------------------------------------------------------------------------------
    serve_dtype = infer.dtype or train.weight_dtype
    merged = meth.merged if infer.merged is None else infer.merged
    if merged and not meth.mergeable:
        raise InvalidConfigError("inference.merged", True, f"{meth.name} cannot be merged into the base weights; only {', '.join(n for n in ('full', 'lora', 'qlora', 'ia3'))} can")
    serve_table = table if serve_dtype == train.weight_dtype else _table(spec, meth, serve_dtype)
    base_bytes = serve_table.base_bytes + serve_table.buffer_bytes
    adapter = table.adapter_bytes
    if meth.name == "full":
        deploy_one = serve_table.weights_bytes
        deploy_all = infer.num_tasks * deploy_one
    elif merged:
        deploy_one = base_bytes
        deploy_all = infer.num_tasks * base_bytes
    else:
        deploy_one = base_bytes + adapter
        deploy_all = base_bytes + infer.num_tasks * adapter

    # ---- what the training loop keeps alive between steps ----------------------------------------
    retained = 0
    if train.retain_outputs:
        logits, cache = outputs_dtypes(spec.model_type, meth, train)
        seq = train.seq_len + meth.virtual_tokens()
        retained = train.batch_size * seq * spec.cfg["vocab_size"] * nbytes(logits)
        if returns_kv_cache(train):  # (checkpointing turns the cache off)
            retained += kv_cache_bytes(spec.cfg, train.batch_size, seq, nbytes(cache), prefix_tokens=meth.prefix_tokens())

    # ---- activations and peak ----------------------------------------------------------------
    act = _activations(spec, meth, train)
    b, s = train.batch_size, train.seq_len
    point = act.at(b, s)
    activations = point["activations"]
    peak_live, peak_at, candidates = _peak(act, train, step_bytes, grads)
    static = weights + table.buffer_bytes + optim
    peak = static + peak_live

    # ---- compute, GPU overheads ------------------------------------------------------------------
    hw = load_hardware(hardware)
    # times need the part's FLOP/s; a custom Hardware with memory only still answers the memory questions
    terms = compute_terms(spec, meth, table, train, infer, hw if hw is not None and any(hw.peak_flops.values()) else None)
    ov = overheads_for(hw)
    gpu = reserved_and_device(peak, ov)

    notes = list(table.notes)
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": {"name": spec.name or spec.model_type, "model_type": spec.model_type},
        "method": {"name": meth.name, "description": meth.describe(), "merged": bool(merged)},
        "total_params": table.total_params,
        "trainable_params": table.trainable_params,
        "training": {
            "dtype": train.weight_dtype,
            "optimizer": train.optimizer,
            "weights_bytes": weights,
            "quant_state_bytes": table.buffer_bytes,
            "gradients_bytes": grads,
            "optimizer_bytes": optim,
            "retained_outputs_bytes": retained,
            "persistent_bytes": weights + table.buffer_bytes + grads + optim + retained,
            "activations_bytes": activations,
            "activations_breakdown": point["terms"],
            "activations_per_layer_bytes": point["per_layer"],
            "activations_per_layer_breakdown": point["layer_terms"],
            "peak_bytes": peak,
            "peak_at": peak_at,
            "peak_candidates": candidates,
            "reserved_bytes": gpu["reserved_bytes"],
            "device_bytes": gpu["device_bytes"],
            "overheads": {**{k: v for k, v in gpu.items() if k not in ("reserved_bytes", "device_bytes")},
                          "allocator_fragmentation": ov.allocator_fragmentation},
            **terms["training"],
        },
        "storage": {
            "adapter_bytes": adapter,
            "checkpoint_file_bytes": None if meth.name == "full" else table.file_bytes(safetensors_file_bytes),
            "deploy_bytes": deploy_one,
            "num_tasks": infer.num_tasks,
            "deploy_bytes_all_tasks": deploy_all,
            "serve_dtype": serve_dtype,
        },
        "inference": terms["inference"],
        "hardware": None if hw is None else hw.name,
        "notes": notes,
    }
    return Estimate(data)


def sweep(model: Any, method: Any = "lora", training: Any = None, *, batch_sizes: Any, seq_lens: Any,
          hardware: Any = None) -> dict[str, Any]:
    """Training memory over a whole (batch size x sequence length) grid in one call: numpy int64 arrays of shape
    (len(batch_sizes), len(seq_lens)) for ``activations_bytes``, ``peak_bytes``, ``reserved_bytes`` and
    ``device_bytes`` (and a boolean ``fits`` with ``hardware``). The same polynomials as :func:`estimate`,
    evaluated by numpy: millions of configurations per second."""
    import numpy as np

    spec = load_model(model)
    meth = load_method(method)
    train = _spec(TrainingSpec, training, "training")
    _refuse(spec, meth, train)
    bs = np.asarray(batch_sizes, dtype=np.int64).reshape(-1)
    ss = np.asarray(seq_lens, dtype=np.int64).reshape(-1)
    if bs.size == 0 or ss.size == 0 or (bs <= 0).any() or (ss <= 0).any():
        raise InvalidConfigError("batch_sizes/seq_lens", "empty or non-positive", "give positive integers")
    b, s = np.meshgrid(bs, ss, indexing="ij")
    big = _activations(spec, meth, train, False, False, False).activations(int(bs.max()), int(ss.max())) + 4 * spec.num_params * 8
    if big > 2**62:  # beyond int64: exact Python integers in object arrays
        b, s = b.astype(object), s.astype(object)
    table = _table(spec, meth, train.weight_dtype)
    grads = table.trainable_bytes
    optim, step_bytes = _optimizer_bytes(table, train.optimizer, spec.layout)
    static = table.weights_bytes + table.buffer_bytes + optim
    window = spec.cfg.get("sliding_window") if "sliding_attention" in spec.layer_types else None
    extra = meth.virtual_tokens() + meth.prefix_tokens()
    acts = np.zeros_like(b)
    live = np.zeros_like(b)
    ones = (False, True) if (bs == 1).any() else (False,)
    queries = (False, True) if (ss == 1).any() and _query_one(meth, train, 1) else (False,)
    for sliding, one, query_one in ((sl, o, q) for sl in ((False, True) if window else (False,)) for o in ones for q in queries):
        mask = (s + extra >= window) if window else np.ones_like(b, dtype=bool)
        if not sliding and window:
            mask = ~mask
        if len(ones) > 1:
            mask = mask & ((b == 1) if one else (b != 1))
        if len(queries) > 1:
            mask = mask & ((s == 1) if query_one else (s != 1))
        if not mask.any():
            continue
        act = _activations(spec, meth, train, sliding, one, query_one)
        every = mask.all()
        bm, sm = (b, s) if every else (b[mask], s[mask])  # only the points this model covers
        cands = _live_candidates(act, step_bytes, grads, bm, sm, train.gradient_accumulation_steps > 1)
        peak_live = np.maximum.reduce([np.broadcast_to(v, bm.shape) for v in cands.values()])
        if every:
            acts, live = act.activations(bm, sm), peak_live
        else:
            acts[mask], live[mask] = act.activations(bm, sm), peak_live
    peak = static + live
    ov = overheads_for(load_hardware(hardware))
    allocated = peak + ov.cublas_workspace_bytes * ov.cublas_handles
    frag = np.vectorize(lambda a: int(a * ov.allocator_fragmentation), otypes=[object])(allocated) if allocated.dtype == object \
        else (allocated * ov.allocator_fragmentation).astype(np.int64)
    reserved = -(-(allocated + frag) // 2**21) * 2**21
    out = {"batch_sizes": bs, "seq_lens": ss, "activations_bytes": acts, "peak_bytes": peak,
           "reserved_bytes": reserved, "device_bytes": reserved + ov.cuda_context_bytes}
    hw = load_hardware(hardware)
    if hw is not None:
        out["fits"] = out["device_bytes"] <= hw.usable_memory_bytes
    return out

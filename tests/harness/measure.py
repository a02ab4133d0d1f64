"""Ground-truth measurement harness for peft_footprint (DESIGN.md section 3).

Builds the real ``transformers`` model from a config dict (random weights), wraps it with the real
PEFT method, runs real training steps on CPU and counts what PyTorch actually allocates.

    from tests.harness.measure import measure, measure_meta
    measure(config, {"name": "lora", "r": 8}, {"dtype": "bf16", "batch_size": 2, "seq_len": 16},
            what=("static", "activations", "peak", "saved", "flops", "kv_cache"),
            inference={"batch_size": 1, "prompt_len": 8, "new_tokens": 4})

CLI:
    python -m tests.harness.measure --config cfg.json --method '{"name":"lora","r":8}' \
        --training '{"dtype":"bf16","batch_size":2,"seq_len":16}' --what static,peak --json

Needs torch, transformers and peft (the optional test extra); never imported by the library.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
import weakref
from typing import Any, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["measure", "measure_meta", "build_model", "wrap_method", "LiveStorageTracker", "DTYPES", "METHODS"]

DTYPES = {
    "fp32": torch.float32, "float32": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16,
}

METHODS = ("full", "lora", "qlora", "prefix_tuning", "prompt_tuning", "p_tuning", "ia3", "trainable_tokens")
WHAT = ("static", "names", "activations", "peak", "saved", "flops", "kv_cache")

_METHOD_ALIASES = {
    "prompt_encoder": "p_tuning",  # PEFT's config class is PromptEncoderConfig, PeftType.P_TUNING
    "ptuning": "p_tuning",
    "prefix": "prefix_tuning",
}


# --------------------------------------------------------------------------------------------------
# building


def _dtype(name: str | None) -> torch.dtype:
    key = (name or "fp32").lower()
    if key not in DTYPES:
        raise ValueError(f"Unknown dtype {name!r}. Allowed: fp32, bf16, fp16")
    return DTYPES[key]


def _training_defaults(training: dict | None) -> dict:
    t = dict(training or {})
    t.setdefault("dtype", "fp32")
    t.setdefault("batch_size", 1)
    t.setdefault("seq_len", 8)
    t.setdefault("attn_implementation", "sdpa")
    t.setdefault("gradient_checkpointing", False)
    t.setdefault("optimizer", "adamw")
    t.setdefault("mixed_precision", False)
    t.setdefault("padding_mask", False)
    t.setdefault("gradient_accumulation_steps", 1)
    return t


def _hf_config(config: dict):
    from transformers import AutoConfig

    cfg = dict(config)
    model_type = cfg.pop("model_type", None)
    if not model_type:
        raise ValueError("config needs a 'model_type' (e.g. 'llama')")
    for k in ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        cfg.pop(k, None)
    return AutoConfig.for_model(model_type, **cfg)


def build_model(config: dict, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa"):
    """transformers model with random weights, in the current default device context."""
    from transformers import AutoModelForCausalLM

    cfg = _hf_config(config)
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation=attn_implementation)
    return model


def _method_name(method: dict | str) -> tuple[str, dict]:
    if isinstance(method, str):
        method = {"name": method}
    fields = dict(method)
    name = str(fields.pop("name", fields.pop("peft_type", "full"))).lower()
    name = _METHOD_ALIASES.get(name, name)
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}. Available: {', '.join(METHODS)} (adapter: other harness)")
    return name, fields


def wrap_method(model, method: dict | str):
    """Returns (model_or_peft_model, method_name). 'full' leaves every parameter trainable."""
    name, fields = _method_name(method)
    if name == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model, name
    import peft

    if name == "qlora":  # the base was already loaded in 4 bit by _build; here: optional prep + LoRA
        for k in _QLORA_LOAD_FIELDS:
            fields.pop(k, None)
        if fields.pop("prepare_model_for_kbit_training", True):
            model = peft.prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=bool(getattr(model, "is_gradient_checkpointing", False)),
                gradient_checkpointing_kwargs={"use_reentrant": False})
        name_for_cfg = "lora"
    else:
        name_for_cfg = name

    fields.setdefault("task_type", "CAUSAL_LM")
    if name_for_cfg == "lora":
        fields.setdefault("lora_dropout", 0.0)
        cfg = peft.LoraConfig(**fields)
    elif name == "ia3":
        cfg = peft.IA3Config(**fields)
    elif name == "prefix_tuning":
        cfg = peft.PrefixTuningConfig(**fields)
    elif name == "prompt_tuning":
        cfg = peft.PromptTuningConfig(**fields)
    elif name == "p_tuning":
        fields.setdefault("encoder_dropout", 0.0)
        cfg = peft.PromptEncoderConfig(**fields)
    elif name == "trainable_tokens":
        cfg = peft.TrainableTokensConfig(**fields)
    else:  # pragma: no cover
        raise AssertionError(name)
    return peft.get_peft_model(model, cfg), name


_QLORA_LOAD_FIELDS = ("bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype",
                      "bnb_4bit_quant_storage")


def _build_4bit(config, method, dtype, attn_implementation):
    """QLoRA base: random model saved to a temp dir, reloaded through bitsandbytes 4-bit (CPU backend)."""
    import tempfile

    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    _, fields = _method_name(method)
    compute = fields.get("bnb_4bit_compute_dtype", dtype)
    compute = _dtype(compute) if isinstance(compute, str) else compute
    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=fields.get("bnb_4bit_quant_type", "nf4"),
        bnb_4bit_use_double_quant=fields.get("bnb_4bit_use_double_quant", True),
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_quant_storage=_dtype(fields["bnb_4bit_quant_storage"]) if "bnb_4bit_quant_storage" in fields
        else torch.uint8,
    )
    base = build_model(config, dtype, attn_implementation)
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base.save_pretrained(d)
        del base
        return AutoModelForCausalLM.from_pretrained(d, quantization_config=bnb, dtype=dtype, device_map="cpu",
                                                    attn_implementation=attn_implementation)


def _build(config, method, t, device="cpu", seed=0):
    torch.manual_seed(seed)
    dtype = torch.float32 if t["mixed_precision"] else _dtype(t["dtype"])
    name, _ = _method_name(method)
    if name == "qlora" and device != "cpu":
        raise NotImplementedError("qlora is measured on cpu only (bitsandbytes 4-bit needs real weights, not meta)")
    with torch.device(device):
        if name == "qlora":
            model = _build_4bit(config, method, dtype, t["attn_implementation"])
        else:
            model = build_model(config, dtype, t["attn_implementation"])
        if t["gradient_checkpointing"]:
            # what Trainer / typical scripts do; HF also calls enable_input_require_grads() here, and PEFT
            # calls it again in get_peft_model when the base is checkpointing.
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model, name = wrap_method(model, method)
    model.train()
    return model, name


# --------------------------------------------------------------------------------------------------
# static counts


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _dtype_str(d: torch.dtype) -> str:
    return str(d).replace("torch.", "")


def _param_counts(model, name: str) -> tuple[int, int]:
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def _adapter_state(model, name: str) -> dict:
    if name == "full":
        sd = model.state_dict(keep_vars=True)
        seen, out = set(), {}
        for k, v in sd.items():
            key = _storage_key(v)
            if key in seen:
                continue
            seen.add(key)
            out[k] = v
        return out
    from peft import get_peft_model_state_dict

    with torch.no_grad(), _meta_safe_cpu(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Could not find a config file ..." (no hub model)
        return get_peft_model_state_dict(model)


@contextlib.contextmanager
def _meta_safe_cpu():
    """PEFT's get_prompt_embedding_to_save() ends in .cpu(); on meta tensors keep them on meta."""
    orig = torch.Tensor.cpu

    def cpu(self, *a, **k):
        return self if self.is_meta else orig(self, *a, **k)

    torch.Tensor.cpu = cpu
    try:
        yield
    finally:
        torch.Tensor.cpu = orig


def _storage_key(t: torch.Tensor):
    """Identity of the tensor's bytes: (storage ptr, offset, shape) on real devices, id() on meta."""
    if t.device.type == "meta":
        return ("meta", id(t))
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)


def static_counts(model, name: str, want_names: bool = False) -> dict:
    trainable, total = _param_counts(model, name)
    weights = 0
    by_dtype: dict[str, dict[str, int]] = {}
    names = []
    storages = set()
    storage_bytes = 0
    for pname, p in model.named_parameters():  # unique Parameter objects (tied counted once)
        b = _tensor_bytes(p)
        weights += b
        d = by_dtype.setdefault(_dtype_str(p.dtype), {"params": 0, "bytes": 0, "trainable_params": 0})
        d["params"] += p.numel()
        d["bytes"] += b
        if p.requires_grad:
            d["trainable_params"] += p.numel()
        if p.device.type != "meta":
            sk = p.untyped_storage().data_ptr()
            if sk not in storages:
                storages.add(sk)
                storage_bytes += p.untyped_storage().nbytes()
        if want_names:
            names.append({"name": pname, "shape": list(p.shape), "dtype": _dtype_str(p.dtype),
                          "requires_grad": bool(p.requires_grad), "bytes": b})
    buffers = sum(_tensor_bytes(b) for b in model.buffers())
    qs_tensors = _quant_state_tensors(model)
    state = _adapter_state(model, name)
    adapter = sum(_tensor_bytes(v) for v in state.values())
    out = {
        "total_params": int(total),
        "trainable_params": int(trainable),
        "weights_bytes": int(weights),
        "buffers_bytes": int(buffers),
        "adapter_bytes": int(adapter),
        "adapter_tensors": len(state),
        "params_by_dtype": by_dtype,
    }
    if qs_tensors:  # bitsandbytes 4-bit: absmax / code / nested-quant tensors held beside each Params4bit
        out["quant_state_bytes"] = int(sum(_tensor_bytes(x) for x in qs_tensors))
    if storages:
        out["weights_storage_bytes"] = int(storage_bytes)  # unique parameter storages, should equal weights
    if want_names:
        out["names"] = names
        out["adapter_names"] = {k: {"shape": list(v.shape), "dtype": _dtype_str(v.dtype)} for k, v in state.items()}
    return out


def _quant_state_tensors(model) -> list[torch.Tensor]:
    seen, out = set(), []

    def add(x):
        if torch.is_tensor(x) and x.device.type != "meta" and x.untyped_storage().data_ptr() not in seen:
            seen.add(x.untyped_storage().data_ptr())
            out.append(x)

    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        if qs is None:
            continue
        for attr in ("absmax", "code", "offset"):
            add(getattr(qs, attr, None))
        s2 = getattr(qs, "state2", None)
        if s2 is not None:
            for attr in ("absmax", "code"):
                add(getattr(s2, attr, None))
    return out


def _grad_bytes(model) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if p.grad is not None and id(p) not in seen:
            seen.add(id(p))
            total += _tensor_bytes(p.grad)
    return total


def _optimizer_state_tensors(opt) -> list[tuple[str, torch.Tensor]]:
    out = []
    for st in opt.state.values():
        for k, v in st.items():
            if torch.is_tensor(v):
                out.append((k, v))
    return out


def _optimizer_bytes(opt) -> tuple[int, int]:
    state, steps, seen = 0, 0, set()
    for k, v in _optimizer_state_tensors(opt):
        if id(v) in seen:  # (bitsandbytes' quantization maps: one pair of tensors shared by every parameter)
            continue
        seen.add(id(v))
        if k == "step":
            steps += _tensor_bytes(v)
        else:
            state += _tensor_bytes(v)
    return state, steps


def _make_optimizer(model, t):
    params = [p for p in model.parameters() if p.requires_grad]
    opt_name = str(t.get("optimizer", "adamw")).lower()
    if opt_name == "adamw":  # foreach, as on CUDA (CPU's default is the single-tensor loop)
        return torch.optim.AdamW(params, lr=1e-4, foreach=True)
    if opt_name == "sgd":
        return torch.optim.SGD(params, lr=1e-4)
    if opt_name == "sgd_momentum":
        return torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    if opt_name == "adam":
        return torch.optim.Adam(params, lr=1e-4, foreach=True)
    if opt_name == "adamw_fused":  # HF Trainer's adamw_torch_fused
        return torch.optim.AdamW(params, lr=1e-4, fused=True)
    if opt_name == "adafactor":  # as HF Trainer's optim="adafactor" makes it
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=1e-4, scale_parameter=False, relative_step=False)
    bnb_optimizers = {"adamw_8bit": "AdamW8bit", "adamw_32bit": "AdamW32bit", "lion": "Lion", "lion_8bit": "Lion8bit"}
    if opt_name in bnb_optimizers:  # HF Trainer's adamw_bnb_8bit, lion_32bit, lion_8bit (paged ones: unified memory)
        import bitsandbytes as bnb

        return getattr(bnb.optim, bnb_optimizers[opt_name])(params, lr=1e-4)
    raise ValueError(f"Unknown optimizer {opt_name!r}. Allowed: adamw, adamw_fused, adam, sgd, sgd_momentum, adafactor, "
                     f"{', '.join(bnb_optimizers)}")


# --------------------------------------------------------------------------------------------------
# live-storage tracking


class LiveStorageTracker(TorchDispatchMode):
    """Counts the bytes of untyped storages created by ops while the mode is active and still alive.

    Each op output's storage is recorded once (keyed by data pointer, while alive) and removed when a
    ``weakref.finalize`` on the storage object fires (torch preserves the storage's Python object for
    the storage's lifetime, so the finalizer fires exactly when the bytes are released; a later storage
    at the same address is therefore a new entry). Outputs that alias one of the op's inputs (views,
    in-place ops) and storages pre-marked as present (parameters, optimizer state, inputs) are never
    counted as created.
    """

    def __init__(self, premarked: Iterable[torch.Tensor] = ()):
        super().__init__()
        self.pre: set[int] = set()
        self.active = False
        for t in premarked:
            self.mark(t)
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self.peak_phase = None
        self.phase = None
        self.created_bytes = 0
        self.created_count = 0
        self.snapshots: dict[str, int] = {}
        self._gen = 0
        self._ids: dict[int, int] = {}
        self.info: dict[int, tuple] = {}  # ptr -> (op, shape, dtype, phase) of the op that created it
        self.keep_peak_listing = False
        self.peak_listing: list = []
        self.peak_op = None
        self._op = None

    def mark(self, t: torch.Tensor) -> None:
        if torch.is_tensor(t) and t.device.type != "meta":
            s = t.untyped_storage()
            ptr = s.data_ptr()
            if ptr not in self.pre:
                self.pre.add(ptr)
                weakref.finalize(s, self._pre_freed, ptr, s.nbytes())

    def _pre_freed(self, ptr: int, nbytes: int) -> None:
        """A pre-marked storage went while tracking (Adafactor rebinds its RMS state, a new 0-dim tensor, at
        every step): its bytes leave the total, and its address may hold a new storage."""
        if ptr in self.pre:
            self.pre.discard(ptr)
            if self.active:
                self.current -= nbytes

    def __enter__(self):
        self.active = True
        return super().__enter__()

    def __exit__(self, *exc):
        self.active = False
        return super().__exit__(*exc)

    def _freed(self, ptr: int, gen: int, nbytes: int) -> None:
        if self._ids.get(ptr) == gen:
            del self._ids[ptr]
            self.live.pop(ptr, None)
            self.info.pop(ptr, None)
            self.current -= nbytes

    def record(self, t: torch.Tensor) -> None:
        s = t.untyped_storage()
        ptr = s.data_ptr()
        nbytes = s.nbytes()
        if nbytes == 0 or ptr in self.pre or ptr in self.live:
            return
        self._gen += 1
        self._ids[ptr] = self._gen
        self.live[ptr] = nbytes
        self.info[ptr] = (str(self._op), tuple(t.shape), _dtype_str(t.dtype), self.phase)
        self.current += nbytes
        self.created_bytes += nbytes
        self.created_count += 1
        weakref.finalize(s, self._freed, ptr, self._gen, nbytes)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self._op = func
        in_ptrs = {a.untyped_storage().data_ptr() for a in tree_flatten((args, kwargs))[0]
                   if isinstance(a, torch.Tensor) and a.device.type != "meta"}
        for o in tree_flatten(out)[0]:
            if isinstance(o, torch.Tensor) and o.device.type != "meta":
                if o.untyped_storage().data_ptr() in in_ptrs:
                    continue
                self.record(o)
        if self.current > self.peak:
            self.peak = self.current
            self.peak_phase = self.phase
            if self.keep_peak_listing:
                self.peak_listing = [(self.info.get(p), n) for p, n in self.live.items()]
                self.peak_op = str(func)
        return out

    def live_listing(self) -> list[dict]:
        return [{"op": i[0], "shape": list(i[1]), "dtype": i[2], "phase": i[3], "bytes": self.live[p]}
                for p, i in self.info.items() if p in self.live]

    def snapshot(self, label: str) -> int:
        self.snapshots[label] = self.current
        return self.current


class SavedTensorsRecorder:
    """saved_tensors_hooks: bytes autograd saves for backward, deduplicated by storage."""

    def __init__(self, params_ptrs: set[int], preexisting_ptrs: set[int] = frozenset()):
        self.params_ptrs = params_ptrs
        self.preexisting_ptrs = set(preexisting_ptrs) - set(params_ptrs)
        self.seen: dict[int, int] = {}
        self.param_seen: dict[int, int] = {}
        self.pre_seen: dict[int, int] = {}
        self.count = 0
        self.entries: list[tuple[tuple, str, int]] = []

    def pack(self, t: torch.Tensor):
        self.count += 1
        if t.device.type != "meta":
            s = t.untyped_storage()
            ptr, nb = s.data_ptr(), s.nbytes()
            if ptr in self.params_ptrs:
                target = self.param_seen
            elif ptr in self.preexisting_ptrs:
                target = self.pre_seen  # inputs (input_ids), buffers, optimizer state
            else:
                target = self.seen
            if ptr not in target:
                target[ptr] = nb
                self.entries.append((tuple(t.shape), _dtype_str(t.dtype), nb))
        return t

    @staticmethod
    def unpack(t):
        return t

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


# --------------------------------------------------------------------------------------------------
# measuring


def _inputs(model, batch: int, seq: int, device, seed: int):
    vocab = _vocab_size(model)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    return ids.to(device)


def _vocab_size(model) -> int:
    emb = model.get_input_embeddings()
    return emb.weight.shape[0] if hasattr(emb, "weight") else model.config.vocab_size


def _autocast(t):
    if t["mixed_precision"]:  # "bf16" or "fp16" (True: bf16)
        return torch.autocast("cpu", dtype=torch.bfloat16 if t["mixed_precision"] is True else _dtype(t["mixed_precision"]))
    return contextlib.nullcontext()


def _padding_mask(ids, t):
    """The attention_mask of a padded batch (``padding_mask``), an input like the ids: ones with the first
    sample's last position padded (an all-ones mask is dropped by transformers, which then uses the causal
    kernel as without one). None without ``padding_mask``."""
    if not t.get("padding_mask"):
        return None
    mask = torch.ones_like(ids)
    mask[0, -1] = 0
    return mask


def _forward(model, ids, t, mask=None):
    with _autocast(t):
        return model(input_ids=ids, labels=ids, use_cache=bool(t.get("use_cache")), **({"attention_mask": mask} if mask is not None else {}))


def measure(config: dict, method: dict | str, training: dict | None = None, *, what=("static",),
            device: str = "cpu", seed: int = 0, inference: dict | None = None) -> dict:
    """Measure one configuration; see DESIGN.md section 3 for the meaning of every key.

    what: any of "static", "names", "activations", "peak", "saved", "flops", "kv_cache".
    Static keys (total_params, trainable_params, weights_bytes, gradients_bytes, optimizer_bytes,
    adapter_bytes, params_by_dtype) are always returned.
    """
    what = (what,) if isinstance(what, str) else tuple(what)
    bad = [w for w in what if w not in WHAT]
    if bad:
        raise ValueError(f"Unknown 'what' {bad}. Allowed: {', '.join(WHAT)}")
    t = _training_defaults(training)
    t0 = time.perf_counter()
    model, name = _build(config, method, t, device, seed)
    res: dict[str, Any] = {"method": name, "model_type": config.get("model_type")}
    res.update(static_counts(model, name, want_names="names" in what))
    res["build_s"] = round(time.perf_counter() - t0, 3)

    ids = _inputs(model, t["batch_size"], t["seq_len"], device, seed)
    mask = _padding_mask(ids, t)
    opt = _make_optimizer(model, t)

    # step 1: creates optimizer state
    out = _forward(model, ids, t, mask)
    out.loss.backward()
    res["gradients_bytes"] = _grad_bytes(model)
    opt.step()
    opt.zero_grad(set_to_none=True)
    del out
    res["optimizer_bytes"], res["optimizer_step_bytes"] = _optimizer_bytes(opt)
    # the parameters as training holds them from here on: bitsandbytes' Linear4bit casts its bias to the compute
    # dtype, in place, in its first forward
    after = static_counts(model, name)
    for key in ("weights_bytes", "params_by_dtype", "weights_storage_bytes"):
        if key in after:
            res[key] = after[key]

    need_step2 = any(w in what for w in ("activations", "peak", "saved"))
    if need_step2:
        params = [p for p in model.parameters()]
        accumulated = 0
        if t["gradient_accumulation_steps"] > 1:
            # gradient accumulation: a micro-batch's forward and backward first (untracked); the one measured
            # below then runs with every gradient alive, its own added into them in place
            out = _forward(model, ids, t, mask)
            out.loss.backward()
            del out
            accumulated = _grad_bytes(model)
            params += [q.grad for q in model.parameters() if q.grad is not None]
        pre = params + [v for _, v in _optimizer_state_tensors(opt)] + [ids] + ([mask] if mask is not None else [])
        pre += list(model.buffers()) + _quant_state_tensors(model)
        tracker = LiveStorageTracker(pre)
        del pre  # no references of ours: a state tensor the optimizer replaces (Adafactor's RMS) goes as in training
        tracker.keep_peak_listing = "names" in what
        saved = SavedTensorsRecorder({p.untyped_storage().data_ptr() for p in params}, tracker.pre)
        with tracker:
            tracker.phase = "forward"
            # saved_tensors_hooks only when asked: a node that saves its own output (linalg_vector_norm, exp,
            # tanh) holds it through the hook's return value, a reference cycle with its grad_fn, so a graph
            # that is garbage (DoRA's detached weight norm on Conv1D) stays alive until the cyclic GC runs;
            # without hooks autograd keeps no such cycle (docs/notes/harness.md)
            with saved.hooks() if "saved" in what else contextlib.nullcontext():
                out = _forward(model, ids, t, mask)
            loss = out.loss
            res["activations_bytes"] = tracker.snapshot("end_of_forward")
            if "names" in what:
                res["live_at_end_of_forward"] = tracker.live_listing()
            res["logits_bytes"] = _tensor_bytes(out.logits)
            tracker.phase = "backward"
            loss.backward()
            del loss, out
            tracker.snapshot("after_backward")
            res["gradients_bytes_step2"] = _grad_bytes(model)
            tracker.phase = "optimizer_step"
            opt.step()
            tracker.snapshot("after_step")
            tracker.phase = "zero_grad"
            opt.zero_grad(set_to_none=True)
            tracker.snapshot("after_zero_grad")
        res["optimizer_bytes_step2"] = _optimizer_bytes(opt)[0]
        # the 4-bit weights' quantization state is allocated memory like the weights (pre-marked, never created)
        res["peak_bytes"] = res["weights_bytes"] + res.get("quant_state_bytes", 0) + res["optimizer_bytes"] + accumulated + tracker.peak
        res["peak_live_bytes"] = tracker.peak
        res["peak_phase"] = tracker.peak_phase
        if "names" in what:
            res["live_at_peak"] = [{"op": i[0] if i else None, "shape": list(i[1]) if i else None, "dtype": i[2] if i else None,
                                    "phase": i[3] if i else None, "bytes": n} for i, n in tracker.peak_listing]
            res["peak_op"] = tracker.peak_op
        res["live_bytes"] = dict(tracker.snapshots)
        res["optimizer_step_counter_bytes_note"] = "step counters excluded from optimizer_bytes and peak"
        if "saved" in what:
            res["saved_bytes"] = int(sum(saved.seen.values()))
            res["saved_param_bytes"] = int(sum(saved.param_seen.values()))
            res["saved_preexisting_bytes"] = int(sum(saved.pre_seen.values()))
            res["saved_tensors_packed"] = saved.count
            if "names" in what:
                res["saved_entries"] = saved.entries
        res["step_s"] = round(time.perf_counter() - t0 - res["build_s"], 3)

    if "flops" in what:
        res.update(_measure_flops(config, method, t, inference, device, seed))
    if "kv_cache" in what:
        res.update(_measure_kv(config, method, t, inference, device, seed))
    res["total_s"] = round(time.perf_counter() - t0, 3)
    return res


def measure_checkpoint(config: dict, method: dict | str, training: dict | None = None, seed: int = 0) -> int:
    """Bytes of the ``adapter_model.safetensors`` that PEFT's ``save_pretrained`` writes for ``method`` on a model
    built from ``config`` (random weights, CPU)."""
    import tempfile

    t = _training_defaults(training)
    model, _ = _build(config, method, t, "cpu", seed)
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(d)
        return os.path.getsize(os.path.join(d, "adapter_model.safetensors"))


def _measure_flops(config, method, t, inference, device, seed) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    te = dict(t, attn_implementation="eager")
    model, _ = _build(config, method, te, device, seed)
    out: dict[str, Any] = {}
    # step: forward + backward (incl. recomputation under gradient checkpointing) at the training shape
    ids = _inputs(model, t["batch_size"], t["seq_len"], device, seed)
    fc = FlopCounterMode(display=False)
    with fc:
        o = _forward(model, ids, te)
        o.loss.backward()
    out["step_flops"] = int(fc.get_total_flops())
    out["step_flops_by_op"] = {str(k): int(v) for k, v in fc.get_flop_counts().get("Global", {}).items()}
    model.zero_grad(set_to_none=True)
    # forward: one forward over the prompt shape (inference) or the training shape
    if inference:
        b, s = int(inference.get("batch_size", 1)), int(inference.get("prompt_len", t["seq_len"]))
    else:
        b, s = t["batch_size"], t["seq_len"]
    model.eval()
    ids = _inputs(model, b, s, device, seed)
    fc = FlopCounterMode(display=False)
    with torch.no_grad(), fc, _autocast(te):
        model(input_ids=ids, use_cache=False)
    out["forward_flops"] = int(fc.get_total_flops())
    out["forward_flops_shape"] = [b, s]
    out["forward_flops_by_op"] = {str(k): int(v) for k, v in fc.get_flop_counts().get("Global", {}).items()}
    return out


def _cache_tensors(cache) -> list[torch.Tensor]:
    tensors = []
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for layer in layers:
            for attr in ("keys", "values"):
                v = getattr(layer, attr, None)
                if torch.is_tensor(v):
                    tensors.append(v)
        return tensors
    for attr in ("key_cache", "value_cache"):  # older DynamicCache
        tensors.extend(v for v in getattr(cache, attr, []) if torch.is_tensor(v))
    if not tensors and isinstance(cache, (tuple, list)):
        tensors = [x for x in tree_flatten(cache)[0] if torch.is_tensor(x)]
    return tensors


def _measure_kv(config, method, t, inference, device, seed) -> dict:
    inf = dict(inference or {})
    b = int(inf.get("batch_size", 1))
    prompt = int(inf.get("prompt_len", t["seq_len"]))
    new = int(inf.get("new_tokens", 1))
    model, _ = _build(config, method, dict(t, gradient_checkpointing=False), device, seed)
    model.eval()
    ids = _inputs(model, b, prompt, device, seed)
    with torch.no_grad(), _autocast(t):
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                             min_new_tokens=new, do_sample=False, use_cache=True,
                             return_dict_in_generate=True, pad_token_id=0)
    cache = gen.past_key_values
    tensors = _cache_tensors(cache)
    seen, total = set(), 0
    for x in tensors:
        k = x.untyped_storage().data_ptr()
        if k in seen:
            continue
        seen.add(k)
        total += _tensor_bytes(x)
    lens = sorted({int(x.shape[-2]) for x in tensors}) if tensors else []
    return {
        "kv_cache_bytes": int(total),
        "kv_cache_tensors": len(tensors),
        "kv_cache_seq_lens": lens,  # positions held per layer (prompt + generated - 1, + virtual tokens)
        "kv_cache_type": type(cache).__name__,
        "generated_len": int(gen.sequences.shape[1]),
    }


# --------------------------------------------------------------------------------------------------
# meta device: real sizes, no weights


def measure_meta(config: dict, method: dict | str, dtype: str = "bf16", *, try_step: bool = True) -> dict:
    """Static counts at real sizes on the meta device (no weights allocated).

    total_params, trainable_params, weights_bytes, adapter_bytes are counted on the real module tree.
    gradients_bytes: from a real forward/backward on meta tensors (batch 1, seq 4) when that runs, else
    numel x element size of the trainable parameters. optimizer_bytes: the state that
    torch.optim.AdamW itself creates (its state init runs on meta; its update math needs .item() and
    stops there). ``measured`` says which way each key was obtained.
    """
    t0 = time.perf_counter()
    t = _training_defaults({"dtype": dtype})
    model, name = _build(config, method, t, device="meta")
    res: dict[str, Any] = {"method": name, "model_type": config.get("model_type")}
    res.update(static_counts(model, name))
    measured = {"total_params": "count", "trainable_params": "count", "weights_bytes": "count",
                "adapter_bytes": "count"}
    trainable = [p for p in model.parameters() if p.requires_grad]
    if try_step:
        try:
            ids = torch.zeros((1, 4), dtype=torch.long, device="meta")
            with _meta_mask_as_tracing():
                out = model(input_ids=ids, labels=ids, use_cache=False)
            out.loss.backward()
            res["gradients_bytes"] = _grad_bytes(model)
            measured["gradients_bytes"] = "meta forward/backward"
        except Exception as e:  # noqa: BLE001
            measured["gradients_bytes_error"] = f"{type(e).__name__}: {str(e)[:200]}"
    if "gradients_bytes" not in res:
        res["gradients_bytes"] = sum(_tensor_bytes(p) for p in trainable)
        measured["gradients_bytes"] = "derived: trainable numel x element size"
        for p in trainable:
            p.grad = torch.zeros_like(p)
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    try:
        opt.step()
        measured["optimizer_bytes"] = "AdamW step on meta"
    except Exception as e:  # noqa: BLE001  (state is initialised before the math that fails on meta)
        measured["optimizer_bytes"] = f"AdamW state init on meta (step math raised {type(e).__name__})"
    res["optimizer_bytes"], res["optimizer_step_bytes"] = _optimizer_bytes(opt)
    res["measured"] = measured
    res["total_s"] = round(time.perf_counter() - t0, 3)
    return res


@contextlib.contextmanager
def _meta_mask_as_tracing():
    """transformers' mask helpers call .all()/.item() on data (skip-the-mask shortcuts) unless tracing;
    treat meta tensors as traced so the data-independent path is taken."""
    try:
        import transformers.masking_utils as mu
    except ImportError:  # pragma: no cover
        yield
        return
    orig = mu.is_tracing

    def is_tracing(tensor=None):
        return True if getattr(tensor, "is_meta", False) else orig(tensor)

    mu.is_tracing = is_tracing
    try:
        yield
    finally:
        mu.is_tracing = orig


# --------------------------------------------------------------------------------------------------
# CLI


def _load_json_arg(s: str | None):
    if s is None:
        return None
    if s.strip().startswith("{"):
        return json.loads(s)
    with open(s) as f:
        return json.load(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.harness.measure", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="config.json path (or a folder holding one) or inline JSON")
    ap.add_argument("--method", default='{"name":"full"}', help="JSON dict or method name")
    ap.add_argument("--training", default=None, help="JSON dict")
    ap.add_argument("--inference", default=None, help="JSON dict (kv_cache / forward_flops shape)")
    ap.add_argument("--what", default="static", help=f"comma list of {','.join(WHAT)}")
    ap.add_argument("--meta", action="store_true", help="measure_meta at real size (static only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print JSON")
    a = ap.parse_args(argv)
    import os

    cfg_arg = a.config
    if not cfg_arg.strip().startswith("{") and os.path.isdir(cfg_arg):
        cfg_arg = os.path.join(cfg_arg, "config.json")
    config = _load_json_arg(cfg_arg)
    method = a.method if not a.method.strip().startswith("{") else json.loads(a.method)
    training = _load_json_arg(a.training)
    if a.meta:
        res = measure_meta(config, method, (training or {}).get("dtype", "bf16"))
    else:
        res = measure(config, method, training, what=tuple(w for w in a.what.split(",") if w),
                      seed=a.seed, inference=_load_json_arg(a.inference))
    if a.json:
        print(json.dumps(res, indent=2, default=str))
    else:
        for k, v in res.items():
            print(f"{k:28s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

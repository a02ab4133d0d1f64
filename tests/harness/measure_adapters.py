"""Ground-truth measurement of AdapterHub bottleneck adapters (``adapters`` library).

AdapterHub's ``adapters`` pins transformers 4.x, so it cannot live in the main test
environment. This file has two halves:

* ``measure_adapter(config, method, training=None, what=("static",))`` -- importable from
  the main environment (needs only the standard library). It runs this file as a script
  with the interpreter from ``adapters_env.adapters_python()`` and returns the parsed dict.
* ``python measure_adapters.py '<json>'`` -- the script half; run with an interpreter that
  has ``torch`` + ``adapters``. Prints exactly one JSON line on stdout (everything else goes
  to stderr).

Request JSON::

    {"config": {... HF config.json dict incl. "model_type" ...},
     "method": {"name": "adapter", "config": "seq_bn" | "double_seq_bn" | ... | {full dict},
                "reduction_factor": 16, "non_linearity": "relu", ...other BnConfig fields...},
     "training": {"dtype": "fp32" | "bf16" | "fp16", "batch_size": 2, "seq_len": 16,
                  "attn_implementation": "sdpa" | "eager"},
     "what": ["static", "activations", "peak"]}

Set-up follows DESIGN.md section 3: ``AutoModelForCausalLM.from_config`` with random weights,
``adapters.init(model)``, ``model.add_adapter("task", config=...)``,
``model.train_adapter("task")``, the new adapter parameters cast to the base dtype,
``model.train()``, ``torch.optim.AdamW`` over the trainable parameters, input_ids of shape
(batch, seq) with ``labels=input_ids`` and ``use_cache=False``. One full step is run first
(creates gradients and optimizer state); activations/peak are measured on the second step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ADAPTER_NAME = "task"
_HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------------------
# Main-environment wrapper
# ---------------------------------------------------------------------------------------
def _adapters_python() -> str:
    try:  # imported as part of a package (tests.harness.measure_adapters)
        from .adapters_env import adapters_python  # type: ignore
    except ImportError:
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "_pf_adapters_env", os.path.join(_HERE, "adapters_env.py")
        )
        mod = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(mod)
        adapters_python = mod.adapters_python
    return adapters_python()


class AdapterMeasurementError(RuntimeError):
    pass


def measure_adapter(config, method, training=None, what=("static",), timeout=900, python=None):
    """Measure an AdapterHub bottleneck adapter in the isolated adapters venv.

    Returns the dict the script prints (see module docstring). Raises
    ``AdapterMeasurementError`` with the script's stderr tail on failure; if the model type
    is not supported by ``adapters`` the error message contains "not pre-supported".
    """
    request = {
        "config": dict(config),
        "method": dict(method),
        "training": dict(training or {}),
        "what": list(what),
    }
    exe = python or _adapters_python()
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    proc = subprocess.run(
        [exe, os.path.abspath(__file__), json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    if not lines:
        raise AdapterMeasurementError(
            f"measure_adapters.py failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    out = json.loads(lines[-1])
    if "error" in out:
        raise AdapterMeasurementError(f"{out['error']}\n{out.get('traceback', '')}")
    return out


def measure_adapters_batch(requests, timeout=1800, python=None):
    """Several measurements in one subprocess (the import of transformers/adapters dominates one run).

    ``requests``: list of dicts with config, method, training, what. Returns a list of result dicts; a case
    that failed has an "error" key instead of numbers.
    """
    exe = python or _adapters_python()
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    proc = subprocess.run([exe, os.path.abspath(__file__), json.dumps(list(requests))], capture_output=True,
                          text=True, timeout=timeout, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("[")]
    if not lines:
        raise AdapterMeasurementError(f"measure_adapters.py failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------
# Script half (runs inside the adapters venv)
# ---------------------------------------------------------------------------------------
_DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
           "fp16": "float16", "float16": "float16"}


def _storage_nbytes(t):
    return t.untyped_storage().nbytes()


def _build(request):
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    import adapters
    from adapters import AdapterConfig

    cfg_dict = dict(request["config"])
    method = dict(request.get("method") or {})
    training = dict(request.get("training") or {})
    dtype = getattr(torch, _DTYPES[training.get("dtype", "fp32")])
    attn = training.get("attn_implementation", "sdpa")

    model_type = cfg_dict.pop("model_type")
    cfg_dict.pop("transformers_version", None)
    cfg_dict.pop("architectures", None)
    cfg = AutoConfig.for_model(model_type, **cfg_dict)

    torch.manual_seed(int(training.get("seed", 0)))
    try:
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation=attn)
    except TypeError:
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=dtype, attn_implementation=attn)
    base_param_names = {n for n, _ in model.named_parameters()}

    adapters.init(model)

    mname = method.pop("name", "adapter")
    if mname not in ("adapter", "bottleneck", "bn"):
        raise ValueError(f"unsupported method name {mname!r} (only bottleneck adapters)")
    spec = method.pop("config", "seq_bn")
    adapter_config = AdapterConfig.load(spec, **method)
    model.add_adapter(ADAPTER_NAME, config=adapter_config)
    model.train_adapter(ADAPTER_NAME)

    # Adapter modules are created in the default dtype (fp32); their forward adds to the
    # base hidden states, so cast the *new* parameters to the base dtype.
    cast = []
    for n, p in model.named_parameters():
        if n not in base_param_names and p.dtype != dtype and p.is_floating_point():
            p.data = p.data.to(dtype)
            cast.append(n)
    model.train()
    if training.get("gradient_checkpointing"):  # non-reentrant, as the estimate models it (transformers 5's default)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": bool(training.get("use_reentrant", False))})
    return model, adapter_config, dtype, base_param_names, cast, transformers.__version__, adapters.__version__


def _batch(model, training):
    import torch

    bs = int(training.get("batch_size", 2))
    sl = int(training.get("seq_len", 16))
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, model.config.vocab_size, (bs, sl), generator=g)
    return ids


def _step(model, opt, ids, use_cache=False):
    out = model(input_ids=ids, labels=ids, use_cache=use_cache)
    out.loss.backward()
    return out


def _param_bytes(params):
    return sum(p.numel() * p.element_size() for p in params)


def _opt_state_tensors(opt):
    import torch

    for st in opt.state.values():
        for k, v in st.items():
            if k == "step":
                continue
            if isinstance(v, torch.Tensor):
                yield v


def _saved_adapter(model):
    """Save the adapter with model.save_adapter (defaults) and read the files back."""
    import tempfile

    import torch

    res = {}
    with tempfile.TemporaryDirectory() as d:
        model.save_adapter(d, ADAPTER_NAME)
        files = {}
        for fn in sorted(os.listdir(d)):
            files[fn] = os.path.getsize(os.path.join(d, fn))
        res["save_adapter_files"] = files
        sd = torch.load(os.path.join(d, "pytorch_adapter.bin"), map_location="cpu", weights_only=True)
        # ln_before=True registers the same LayerNorm twice (adapter_norm_before and
        # adapter_down.0), so the state dict has aliased keys; torch.save writes each storage
        # once, so adapter_bytes counts unique storages; adapter_bytes_by_key counts every key.
        uniq = {}
        for t in sd.values():
            uniq[(t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))] = t
        res["adapter_bytes"] = sum(t.numel() * t.element_size() for t in uniq.values())
        res["adapter_numel"] = sum(t.numel() for t in uniq.values())
        res["adapter_bytes_by_key"] = sum(t.numel() * t.element_size() for t in sd.values())
        res["adapter_file_bytes"] = files["pytorch_adapter.bin"]
        res["adapter_keys"] = sorted(sd.keys())
        head = os.path.join(d, "pytorch_model_head.bin")
        if os.path.exists(head):
            hsd = torch.load(head, map_location="cpu", weights_only=True)
            res["head_bytes"] = sum(t.numel() * t.element_size() for t in hsd.values())
            res["head_keys"] = sorted(hsd.keys())
            res["head_file_bytes"] = files["pytorch_model_head.bin"]
        with open(os.path.join(d, "adapter_config.json")) as f:
            res["saved_adapter_config"] = json.load(f).get("config")
    with tempfile.TemporaryDirectory() as d:
        try:  # fails for ln_before=True (aliased LayerNorm keys; safetensors refuses shared memory)
            model.save_adapter(d, ADAPTER_NAME, use_safetensors=True)
        except Exception as e:
            res["adapter_safetensors_error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
        p = os.path.join(d, "adapter.safetensors")
        if os.path.exists(p):
            from safetensors.torch import load_file

            sd2 = load_file(p)
            res["adapter_safetensors_bytes"] = sum(t.numel() * t.element_size() for t in sd2.values())
            res["adapter_safetensors_file_bytes"] = os.path.getsize(p)
    return res


def _live_storage_tracker(premarked):
    """The main harness's LiveStorageTracker (tests/harness/measure.py needs only torch at import time, which
    this venv has): the same DESIGN.md section 3 counting on both sides."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from measure import LiveStorageTracker

    return LiveStorageTracker(premarked)


def _measure(request):
    import gc

    import torch

    t0 = time.time()
    what = set(request.get("what") or ["static"])
    training = dict(request.get("training") or {})
    model, adapter_config, dtype, base_names, cast, tf_ver, ad_ver = _build(request)
    t_build = time.time() - t0

    named = list(model.named_parameters())
    params = [p for _, p in named]
    trainable = [p for p in params if p.requires_grad]
    res = {
        "transformers_version": tf_ver,
        "adapters_version": ad_ver,
        "torch_version": torch.__version__,
        "adapter_config": adapter_config.to_dict(),
        "model_class": type(model).__name__,
        "total_params": sum(p.numel() for p in params),
        "trainable_params": sum(p.numel() for p in trainable),
        "weights_bytes": _param_bytes(params),
        "cast_to_base_dtype": len(cast),
    }
    new_named = [(n, p) for n, p in named if n not in base_names]
    res["added_params"] = sum(p.numel() for _, p in new_named)
    res["trainable_base_params"] = [n for n, p in named if p.requires_grad and n in base_names]
    res["adapter_parameters"] = [
        {"name": n, "shape": list(p.shape), "dtype": str(p.dtype).replace("torch.", ""),
         "trainable": bool(p.requires_grad)}
        for n, p in new_named
    ]

    # Step 1: creates gradients and optimizer state.
    opt = torch.optim.AdamW(trainable, lr=1e-4, foreach=True)  # as on CUDA (and tests/harness/measure.py)
    ids = _batch(model, training)
    out = _step(model, opt, ids, bool(training.get("use_cache")))
    res["loss"] = float(out.loss.detach().float())
    del out
    res["gradients_bytes"] = sum(p.grad.numel() * p.grad.element_size() for p in trainable if p.grad is not None)
    res["params_without_grad"] = sum(1 for p in trainable if p.grad is None)
    opt.step()
    res["optimizer_bytes"] = sum(t.numel() * t.element_size() for t in _opt_state_tensors(opt))
    opt.zero_grad(set_to_none=True)

    res.update(_saved_adapter(model))
    trainable_names = {n for n, p in named if p.requires_grad}
    res["adapter_keys_match_trainable"] = set(res["adapter_keys"]) == trainable_names
    res["adapter_keys_cover_trainable"] = (trainable_names <= set(res["adapter_keys"])
                                           and res["adapter_numel"] == res["trainable_params"])
    res["static_seconds"] = round(time.time() - t0, 3)
    res["build_seconds"] = round(t_build, 3)

    if what & {"activations", "peak"}:
        # Step 2 (steady state), same protocol as tests/harness/measure.py.
        gc.collect()
        t1 = time.time()
        pre = list(params) + list(_opt_state_tensors(opt)) + list(model.buffers()) + [ids]
        tracker = _live_storage_tracker(pre)
        tracker.keep_peak_listing = "names" in what
        with tracker:
            tracker.phase = "forward"
            out = model(input_ids=ids, labels=ids, use_cache=bool(training.get("use_cache")))
            loss = out.loss
            res["activations_bytes"] = tracker.snapshot("end_of_forward")
            res["logits_bytes"] = out.logits.numel() * out.logits.element_size()
            tracker.phase = "backward"
            loss.backward()
            del loss, out
            tracker.snapshot("after_backward")
            tracker.phase = "optimizer_step"
            opt.step()
            tracker.snapshot("after_step")
            tracker.phase = "zero_grad"
            opt.zero_grad(set_to_none=True)
            tracker.snapshot("after_zero_grad")
        res["peak_bytes"] = res["weights_bytes"] + res["optimizer_bytes"] + tracker.peak
        res["peak_live_bytes"] = tracker.peak
        res["peak_phase"] = tracker.peak_phase
        if "names" in what:  # what was alive at the peak (as tests/harness/measure.py lists it)
            res["live_at_peak"] = [{"op": i[0] if i else None, "shape": list(i[1]) if i else None, "dtype": i[2] if i else None,
                                    "phase": i[3] if i else None, "bytes": n} for i, n in tracker.peak_listing]
            res["peak_op"] = tracker.peak_op
        res["live_bytes"] = dict(tracker.snapshots)
        res["step_seconds"] = round(time.time() - t1, 3)
    res["seconds"] = round(time.time() - t0, 3)
    return res


def _main(argv):
    arg = argv[1] if len(argv) > 1 else sys.stdin.read()
    if arg.startswith("@"):
        with open(arg[1:]) as f:
            arg = f.read()
    request = json.loads(arg)
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # keep library chatter off the result line

    def one(req):
        try:
            return _measure(req)
        except Exception as e:  # report as JSON so the wrapper can show a clean error
            import traceback

            return {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}

    try:
        res = [one(r) for r in request] if isinstance(request, list) else one(request)
    finally:
        sys.stdout = real_stdout
    real_stdout.write(json.dumps(res) + "\n")
    real_stdout.flush()
    return 0 if isinstance(res, list) or "error" not in res else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv))

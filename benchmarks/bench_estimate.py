"""Speed of peft-footprint against the way one would otherwise get the same numbers (run by hand):

    python benchmarks/bench_estimate.py            # needs the test extras for the peer columns

- estimate(): one call on a preset, warm (model parsed, tables cached), and cold: each call on a (model, method,
  training) combination never seen before in the process (median, 90th percentile and max over the calls), with
  the part of it spent building the activation model from scratch (activations.activation_model). A cold call
  whose structure (architecture, module layout, method and options; not the sizes) was seen before replays the
  recorded symbolic pass (trace.py); the first of a structure runs the full pass, the second records it (these
  three rows run in a fresh process, where no structure was seen before, with the disk cache off);
- the disk cache (cache.py): the first call of each structure in a fresh process, three times on one cache (an
  empty cache: the full pass, and a mark; the second process records and writes; the third reads); and the
  capacity-planning sweep run three times on one cache, each run a fresh process;
- sweep(): a batch x sequence-length grid evaluated by numpy;
- peer: building the same model with transformers + PEFT on the meta device and counting (tests/harness,
  measure_meta: static numbers only), and the CPU harness on a tiny config (activations and peak).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import peft_footprint as pf  # noqa: E402


def per_call(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def each_call(fn, calls) -> tuple[list[float], list[tuple]]:
    """Seconds of ``fn(*args)`` for each of ``calls``, and the calls themselves; calls the library refuses are left out."""
    seconds, done = [], []
    for args in calls:
        t = time.perf_counter()
        try:
            fn(*args)
        except pf.PeftFootprintError:
            continue
        seconds.append(time.perf_counter() - t)
        done.append(args)
    return seconds, done


def spread(seconds: list[float]) -> str:
    ms = np.sort(np.asarray(seconds)) * 1e3
    return f"median {np.median(ms):.2f} ms, p90 {ms[int(0.9 * (ms.size - 1))]:.2f} ms, max {ms[-1]:.2f} ms over {ms.size} calls"


def cold_calls() -> dict[str, list[tuple]]:
    """(model, method, training[, inference, hardware]) combinations, each new to the process."""
    cfg = pf.ModelSpec.from_any("meta-llama/Llama-3.1-8B").raw
    new_models = [({**cfg, "intermediate_size": 14336 + 8 * k}, {"name": "lora", "r": 16}, {"batch_size": 4, "seq_len": 2048})
                  for k in range(1, 201)]
    new_methods = []
    for i, (model, r) in enumerate((m, r) for m in pf.list_models() for r in (8, 16)):
        methods = [
            {"name": "lora", "r": r, "target_modules": "all-linear"},
            {"name": "qlora", "r": r, "target_modules": "all-linear"},
            {"name": "ia3", "target_modules": "all-linear", "feedforward_modules": []},
            {"name": "prompt_tuning", "num_virtual_tokens": r},
            {"name": "full"} if r == 8 else {"name": "lora", "r": r, "use_dora": True, "target_modules": "all-linear"},
        ]
        for j, method in enumerate(methods):
            training = {"batch_size": 2, "seq_len": 1024, "gradient_checkpointing": bool((i + j) % 2)}
            new_methods.append((model, method, training, {"prompt_len": 512}, "H100" if j % 2 else None))
    return {"new model config each call (Llama-3.1-8B variants, LoRA)": new_models,
            "new preset x method x options each call": new_methods}


def structure_calls() -> list[list[tuple]]:
    """For every preset x method x options: five model configs that differ in their sizes only (vocabulary and
    hidden size), in a row. The first is a structure never seen, the second records it, the rest replay it."""
    out = []
    for i, name in enumerate(pf.list_models()):
        cfg = pf.ModelSpec.from_any(name).raw
        h, heads = ("n_embd", "n_head") if "n_embd" in cfg else ("hidden_size", "num_attention_heads")
        for j, method in enumerate(({"name": "lora", "r": 16}, {"name": "qlora", "r": 8, "target_modules": "all-linear"},
                                    {"name": "prompt_tuning", "num_virtual_tokens": 20}, {"name": "full"})):
            training = {"batch_size": 2, "seq_len": 1024, "gradient_checkpointing": bool((i + j) % 2)}
            out.append([(dict(cfg, vocab_size=cfg["vocab_size"] + 64 * k, **{h: cfg[h] + cfg[heads] * 8 * k}), method, training)
                        for k in range(5)])
    return out


def planning_sweep() -> list[tuple]:
    """A capacity-planning sweep as a script would run it, in a fresh process: every preset x LoRA (r 8, 16, 32),
    QLoRA (r 8, 16), full fine-tuning and prompt tuning x checkpointing on and off x 16 (batch, length) shapes."""
    methods = [{"name": "lora", "r": r, "target_modules": "all-linear"} for r in (8, 16, 32)]
    methods += [{"name": "qlora", "r": r, "target_modules": "all-linear"} for r in (8, 16)]
    methods += [{"name": "full"}, {"name": "prompt_tuning", "num_virtual_tokens": 20}]
    return [(model, method, {"batch_size": b, "seq_len": s, "gradient_checkpointing": gc})
            for model in pf.list_models() for method in methods for gc in (False, True)
            for b in (1, 2, 4, 8) for s in (512, 1024, 2048, 4096)]


def activation_model_calls(calls) -> list[tuple]:
    """The activation model each of ``calls`` builds, as arguments of activation_model (uncached)."""
    from peft_footprint.api import _sliding_active
    from peft_footprint.methods import load_method
    from peft_footprint.model import load_model
    from peft_footprint.training import TrainingSpec

    out = []
    for model, method, training, *_ in calls:
        spec, meth, train = load_model(model), load_method(method), TrainingSpec(**training)
        out.append((spec, meth, train, _sliding_active(spec, meth, train.seq_len)))
    return out


def structures() -> str:
    """The three rows of structure_calls, timed in this (fresh) process: nothing seen or recorded before."""
    by_position: list[list[float]] = [[], [], []]
    for group in structure_calls():
        seconds, done = each_call(pf.estimate, group)
        if len(done) == len(group):
            by_position[0].append(seconds[0])
            by_position[1].append(seconds[1])
            by_position[2] += seconds[2:]
    return "\n".join(f"{name}\t{spread(s)}" for name, s in (
        ("estimate(), a structure (arch x method x options) never seen: the full pass", by_position[0]),
        ("estimate(), the same structure, other sizes: recorded", by_position[1]),
        ("estimate(), the same structure, other sizes again: replayed", by_position[2])))


def disk_firsts() -> str:
    """The first call of each structure of structure_calls, timed in this (fresh) process, the recordings on disk
    (run with $PEFT_FOOTPRINT_CACHE set: a cache that an earlier process filled, or an empty one)."""
    seconds = [each_call(pf.estimate, group[:1])[0] for group in structure_calls()]
    return spread([s[0] for s in seconds if s])


def planning() -> str:
    """The capacity-planning sweep, timed in this (fresh) process."""
    calls = planning_sweep()
    t = time.perf_counter()
    seconds, done = each_call(pf.estimate, calls)
    return (f"{(time.perf_counter() - t) / len(done) * 1e3:.3f} ms/call on average over {len(done):,} calls "
            f"({len(calls) - len(done)} refused), {spread(seconds)}")


def main() -> None:
    import os
    import subprocess  # the sweeps run in processes of their own, where nothing is cached yet
    import tempfile

    def fresh(mode: str, cache: str = "off") -> str:
        """The last line of this script run with ``mode`` in a fresh process, with that disk cache (cache.py)."""
        env = {**os.environ, "PEFT_FOOTPRINT_CACHE": cache}
        return subprocess.run([sys.executable, __file__, mode], capture_output=True, text=True, check=True,
                              env=env).stdout.strip().splitlines()[-1]

    planning_row = fresh("--planning")
    with tempfile.TemporaryDirectory() as tmp:
        planning_rows = [fresh("--planning", tmp) for _ in range(3)]
    with tempfile.TemporaryDirectory() as tmp:
        disk_rows = [fresh("--disk-firsts", tmp) for _ in range(3)]
    from peft_footprint import cache

    cache.configure(False)  # (this process: the rows below are the in-process behaviour)
    model, method, training = "meta-llama/Llama-3.1-8B", {"name": "lora", "r": 16}, {"batch_size": 4, "seq_len": 2048}
    pf.estimate(model, method, training)
    warm = per_call(lambda: pf.estimate(model, method, training), 2000)
    warm_hw = per_call(lambda: pf.estimate(model, method, training, hardware="H100"), 2000)
    cfg = pf.ModelSpec.from_any(model).raw
    from peft_footprint.activations import activation_model

    cold = []
    for name, calls in cold_calls().items():
        seconds, done = each_call(pf.estimate, calls)
        cold.append((f"estimate(), cold: {name}", spread(seconds)))
        cold.append(("  activation_model() alone, on the same calls", spread(each_call(activation_model, activation_model_calls(done))[0])))
    structures_run = subprocess.run([sys.executable, __file__, "--structures"], capture_output=True, text=True, check=True,
                                    env={**os.environ, "PEFT_FOOTPRINT_CACHE": "off"})
    cold += [tuple(line.split("\t")) for line in structures_run.stdout.strip().splitlines()[-3:]]
    cold += [("estimate(), disk cache on, a structure never seen on this machine: the full pass, marked", disk_rows[0]),
             ("estimate(), disk cache on, the same in a later process: recorded and written", disk_rows[1]),
             ("estimate(), disk cache on, the same in a third process: read from disk", disk_rows[2])]
    bs, ss = np.arange(1, 1001), np.arange(64, 8256, 8)
    t = time.perf_counter()
    pf.sweep(model, "lora", batch_sizes=bs, seq_lens=ss)
    sweep_s = time.perf_counter() - t
    rows = [
        ("estimate(), warm", f"{warm * 1e3:.3f} ms/call"),
        ("estimate() + hardware (latency, step time), warm", f"{warm_hw * 1e3:.3f} ms/call"),
        *cold,
        ("estimate(), a capacity-planning sweep (presets x 7 methods x checkpointing x 16 shapes)", planning_row),
        ("  the same sweep, disk cache on, first run on this machine", planning_rows[0]),
        ("  the same sweep, disk cache on, run again (a fresh process)", planning_rows[1]),
        ("  the same sweep, disk cache on, a third run", planning_rows[2]),
        (f"sweep(), {bs.size * ss.size:,} (batch, seq) points", f"{sweep_s:.3f} s ({bs.size * ss.size / sweep_s / 1e6:.1f} M configs/s)"),
    ]
    try:
        from tests.cases import TINY
        from tests.harness.measure import measure, measure_meta

        measure_meta(cfg, method, "bf16")
        t = time.perf_counter()
        measure_meta(cfg, method, "bf16")
        rows.append(("peer: transformers + PEFT on the meta device (static numbers only)", f"{(time.perf_counter() - t) * 1e3:.0f} ms/config"))
        measure(TINY["llama"], {"name": "lora", "r": 4}, {"batch_size": 2, "seq_len": 9}, what=("activations", "peak"))
        t = time.perf_counter()
        measure(TINY["llama"], {"name": "lora", "r": 4}, {"batch_size": 2, "seq_len": 9}, what=("activations", "peak"))
        rows.append(("peer: real CPU training step, tiny model (activations, peak)", f"{(time.perf_counter() - t) * 1e3:.0f} ms/config"))
    except ImportError:
        rows.append(("peer", "needs the test extras (torch, transformers, peft)"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--planning"]:
        print(planning())
    elif sys.argv[1:] == ["--structures"]:
        print(structures())
    elif sys.argv[1:] == ["--disk-firsts"]:
        print(disk_firsts())
    else:
        main()

"""Speed of peft-footprint against the way one would otherwise get the same numbers (run by hand):

    python benchmarks/bench_estimate.py            # needs the test extras for the peer columns

- estimate(): one call on a preset, warm (model parsed, tables cached) and cold (a new config dict each time);
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


def main() -> None:
    model, method, training = "meta-llama/Llama-3.1-8B", {"name": "lora", "r": 16}, {"batch_size": 4, "seq_len": 2048}
    pf.estimate(model, method, training)
    warm = per_call(lambda: pf.estimate(model, method, training), 2000)
    warm_hw = per_call(lambda: pf.estimate(model, method, training, hardware="H100"), 2000)
    cfg = pf.ModelSpec.from_any(model).raw
    k = iter(range(10**9))
    cold = per_call(lambda: pf.estimate({**cfg, "intermediate_size": 14336 + 8 * next(k)}, method, training), 200)
    bs, ss = np.arange(1, 1001), np.arange(64, 8256, 8)
    t = time.perf_counter()
    pf.sweep(model, "lora", batch_sizes=bs, seq_lens=ss)
    sweep_s = time.perf_counter() - t
    rows = [
        ("estimate(), warm", f"{warm * 1e3:.3f} ms/call"),
        ("estimate() + hardware (latency, step time), warm", f"{warm_hw * 1e3:.3f} ms/call"),
        ("estimate(), new architecture each call", f"{cold * 1e3:.3f} ms/call"),
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
    main()

"""Random setups against the harness (tests/draws.py): the estimate's static numbers, activations and peak held
to the byte on configurations nobody picked. Run by hand (needs the test extras):

    python tools/draw.py --seed 7 -n 200 --out draws.jsonl     # draw, measure, compare; one JSON line per setup
    python tools/draw.py --seed 7 -n 50 --wide                  # wider setups (64-2048 wide, 1k-8k vocabularies)
    python tools/draw.py --seed 7 -n 100 --adapters             # bottleneck adapters, measured by AdapterHub (own venv)
    python tools/draw.py --rescore draws.jsonl                  # the current estimate against stored measurements

Each line holds the setup, the measured numbers and the estimate's; ``--rescore`` re-estimates stored lines without
measuring again (seconds for thousands), which is how a change is checked against every draw kept so far. Exit
status 1 when any setup is off, when the estimate gives a number for a setup the real stack refuses, or when it
refuses one the stack runs without naming it a limit of its own ("not modelled"); the summary names each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import peft_footprint as pf  # noqa: E402
from tests.cases import STATIC_KEYS  # noqa: E402
from tests.draws import draws  # noqa: E402

KEYS = (*STATIC_KEYS, "activations_bytes", "peak_bytes")


def estimated(cfg: dict, method: dict, training: dict) -> dict:
    """The estimate's numbers under the harness's names (asked for device="cpu", as the harness runs)."""
    est = pf.estimate(cfg, method, {**training, "device": "cpu"}).to_dict()
    train = est["training"]
    return {"total_params": est["total_params"], "trainable_params": est["trainable_params"],
            **{k: train[k] for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes", "quant_state_bytes",
                                     "activations_bytes", "peak_bytes")},
            "adapter_bytes": est["storage"]["adapter_bytes"]}


def compare(est: dict, got: dict) -> dict:
    """Estimate minus measurement for each number both have (zero where exact)."""
    return {k: est[k] - got[k] for k in KEYS if k in est and k in got and got[k] is not None}


def _scored(row: dict, got: dict | Exception) -> dict:
    """The row with the estimate's numbers (or its refusal), the measurement's (or the real stack's refusal) and the
    difference where both gave numbers."""
    try:
        est = estimated(row["config"], row["method"], row["training"])
    except pf.PeftFootprintError as exc:
        row["refused"] = str(exc)
        est = None
    if isinstance(got, Exception):  # the real stack refuses the setup: recorded, not compared
        row["harness_error"] = f"{type(got).__name__}: {got}"[:400]
    else:
        row["measured"] = {k: got.get(k, 0) for k in KEYS}  # (no 4-bit layers: no quantization state)
    if est is not None:
        row["estimated"] = est
        if "measured" in row:
            row["diff"] = compare(est, row["measured"])
    return row


def _measured(cases: list, adapters: bool) -> list:
    """Each (label, config, method, training) measured: PEFT's harness in this process, or AdapterHub's in its own
    virtualenv (one subprocess for the lot); an exception where the real stack refuses the setup."""
    what = ("static", "activations", "peak")
    if adapters:
        from tests.harness.measure_adapters import measure_adapters_batch

        results = measure_adapters_batch([{"config": c, "method": m, "training": t, "what": list(what)} for _, c, m, t in cases])
        return [RuntimeError(r["error"]) if "error" in r else r for r in results]
    from tests.harness.measure import measure

    out = []
    for _, cfg, method, training in cases:
        try:
            out.append(measure(cfg, method, training, what=what))
        except Exception as exc:  # noqa: BLE001 - a refusal of the real stack is a result here
            out.append(exc)
    return out


def run(seed: int, n: int, out: Path | None, wide: bool = False, adapters: bool = False, chunk: int = 25) -> list[dict]:
    rows = []
    sink = out.open("a") if out else None
    cases = draws(seed, n, wide, adapters)
    for start in range(0, n, chunk if adapters else 1):
        part = cases[start:start + (chunk if adapters else 1)]
        t = time.perf_counter()
        results = _measured(part, adapters)
        seconds = round((time.perf_counter() - t) / len(part), 2)
        for i, ((label, cfg, method, training), got) in enumerate(zip(part, results), start):
            row = {"seed": seed, "index": i, "wide": wide, "adapters": adapters, "label": label, "config": cfg, "method": method,
                   "training": training}
            row = _scored(row, got)
            row["seconds"] = seconds
            rows.append(row)
            if sink:
                sink.write(json.dumps(row) + "\n")
                sink.flush()
            print(f"{i:4d} {label:<60} {_verdict(row)}", flush=True)
    if sink:
        sink.close()
    return rows


def rescore(path: Path) -> list[dict]:
    """Stored lines re-estimated with the current code (their measurements, or the harness's refusal, kept)."""
    rows = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        row.pop("refused", None), row.pop("diff", None), row.pop("estimated", None)
        got = row["measured"] if "measured" in row else RuntimeError(row.pop("harness_error"))
        rows.append(_scored(row, got))
    return rows


def _verdict(row: dict) -> str:
    if "harness_error" in row:
        return "harness refuses" + (" (so does the estimate)" if "refused" in row else ": " + row["harness_error"][:80])
    if "refused" in row:
        return "estimate refuses: " + row["refused"][:80]
    off = {k: v for k, v in row["diff"].items() if v}
    return "exact" if not off else "OFF " + ", ".join(f"{k} {v:+,}" for k, v in off.items())


def summary(rows: list[dict]) -> bool:
    """Print the counts; True when every setup both ran is exact, the estimate gave no number for a setup the real
    stack refuses, and it refused none that the stack runs but as a limit it names ("not modelled")."""
    compared = [r for r in rows if "diff" in r]
    off = [r for r in compared if any(r["diff"].values())]
    refused_only = [r for r in rows if "refused" in r and "measured" in r]
    both = [r for r in rows if "refused" in r and "harness_error" in r]
    harness_only = [r for r in rows if "harness_error" in r and "refused" not in r]
    print(f"\n{len(rows)} setups: {len(compared) - len(off)} exact to the byte (static numbers, activations, peak), "
          f"{len(off)} off; {len(refused_only)} refused by the estimate alone, {len(both)} refused by both, "
          f"{len(harness_only)} by the harness alone")
    for r in off:
        print(f"  OFF  {r['label']}: " + ", ".join(f"{k} {v:+,}" for k, v in r["diff"].items() if v))
    for r in refused_only:
        print(f"  refused by the estimate, run by the harness: {r['label']}: {r['refused'][:160]}")
    for r in harness_only:
        print(f"  refused by the harness, estimated: {r['label']}: {r['harness_error'][:160]}")
    return not off and not harness_only and all("not modelled" in r["refused"] for r in refused_only)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-n", type=int, default=50, help="setups to draw")
    ap.add_argument("--wide", action="store_true", help="64-2048 wide, vocabularies of 1k-8k, up to 200 tokens (tests/draws.py)")
    ap.add_argument("--adapters", action="store_true", help="bottleneck adapters, measured by AdapterHub in its own virtualenv")
    ap.add_argument("--out", type=Path, help="append each setup as a JSON line here")
    ap.add_argument("--rescore", type=Path, help="re-estimate the setups stored in this file (no measuring)")
    args = ap.parse_args(argv)
    rows = rescore(args.rescore) if args.rescore else run(args.seed, args.n, args.out, args.wide, args.adapters)
    return 0 if summary(rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Capacity planning: does a training run fit on a GPU, the largest batch / sequence that fits, and which
methods and settings fit (``recommend``).

"Fits" compares the training memory the GPU must hold with the memory the driver exposes
(``Hardware.usable_memory_bytes``: ``nvidia-smi memory.total``). The memory compared is the most complete
figure the estimate has: ``device_bytes`` (what ``nvidia-smi`` shows as used: reserved + CUDA context), else
``reserved_bytes`` (``torch.cuda.max_memory_reserved()``), else ``peak_bytes`` (``max_memory_allocated()``);
:class:`FitReport` says which one it used.

All searches call :func:`peft_footprint.estimate` (which caches per model and method, so a sweep of a few
hundred points takes well under a second) and assume memory grows with batch size and sequence length.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .api import _spec, estimate
from .compare import Column, Table, _pct, _plain, _with_default_targets, required_bytes
from .errors import InvalidConfigError, UnsupportedCombinationError
from .hardware import Hardware, list_hardware, load_hardware
from .methods import load_method
from .methods.adapter import SUPPORTED as ADAPTER_MODEL_TYPES
from .model import load_model
from .result import Estimate
from .training import TrainingSpec
from .units import fmt_bytes, fmt_count, fmt_seconds

__all__ = ["fits", "fit_report", "FitReport", "max_batch_size", "max_seq_len", "recommend", "Recommendation",
           "list_hardware", "load_hardware"]

Progress = Callable[[int, int, str], None]


def _progress_fn(progress: bool | Progress | None) -> Progress:
    """``None``/``False``: silent (the library default); ``True``: one updating line on stderr; a callable:
    called as ``progress(done, total, label)`` (``total`` is 0 when unknown, e.g. during a search)."""
    if not progress:
        return lambda done, total, label: None
    if callable(progress):
        return progress

    def to_stderr(done: int, total: int, label: str) -> None:
        end = "\n" if total and done >= total else ""
        count = f"{done}/{total}" if total else f"{done}"
        sys.stderr.write(f"\r\033[K[{count}] {label}{end}")
        sys.stderr.flush()

    return to_stderr


def _capacity(hw: Hardware) -> int:
    return int(hw.usable_memory_bytes)


def _hardware(hardware: Any) -> Hardware:
    hw = load_hardware(hardware)
    if hw is None:
        raise InvalidConfigError("hardware", None, f"capacity planning needs a GPU: a preset name ({', '.join(list_hardware())}), a dict or a Hardware")
    return hw


@dataclass(frozen=True)
class FitReport:
    """Why a run fits or not. ``bool(report)`` is ``fits``."""

    fits: bool
    required_bytes: int  # the training memory the GPU must hold (see ``basis``)
    basis: str  # "device_bytes" | "reserved_bytes" | "peak_bytes"
    capacity_bytes: int  # memory the driver exposes on the GPU
    hardware: str
    estimate: Estimate

    @property
    def headroom_bytes(self) -> int:
        """Capacity left over (negative: how much is missing)."""
        return self.capacity_bytes - self.required_bytes

    @property
    def utilization(self) -> float:
        return self.required_bytes / self.capacity_bytes

    def __bool__(self) -> bool:
        return self.fits

    def to_dict(self) -> dict[str, Any]:
        d = self.estimate.to_dict()
        return {"fits": self.fits, "required_bytes": self.required_bytes, "basis": self.basis,
                "capacity_bytes": self.capacity_bytes, "headroom_bytes": self.headroom_bytes,
                "utilization": self.utilization, "hardware": self.hardware,
                "model": d["model"]["name"], "method": d["method"]["description"], "peak_at": d["training"]["peak_at"],
                "estimate": d}

    def __str__(self) -> str:
        d = self.estimate.to_dict()
        verdict = "fits" if self.fits else "does NOT fit"
        what = {"device_bytes": "device memory used (reserved + CUDA context)",
                "reserved_bytes": "peak reserved by the caching allocator",
                "peak_bytes": "peak allocated (allocator rounding and CUDA context not included)"}[self.basis]
        left = (f"{fmt_bytes(self.headroom_bytes)} free" if self.fits else f"{fmt_bytes(-self.headroom_bytes)} short")
        return (f"{d['model']['name']} / {d['method']['description']} on {self.hardware}: {verdict} "
                f"({fmt_bytes(self.required_bytes)} of {fmt_bytes(self.capacity_bytes)}, {100 * self.utilization:.1f}%; {left}).\n"
                f"  compared: {what}; the step peaks at: {d['training']['peak_at']}")

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(str(self)) + "</pre>"


def fit_report(model: Any, method: Any = "lora", training: Any = None, hardware: Any = None, inference: Any = None) -> FitReport:
    """Does one training step of ``model`` with ``method`` fit on ``hardware``? With the numbers behind it."""
    hw = _hardware(hardware)
    est = estimate(model, method, training, inference, hw)
    need, basis = required_bytes(est.to_dict())
    cap = _capacity(hw)
    return FitReport(need <= cap, need, basis, cap, hw.name, est)


def fits(model: Any, method: Any = "lora", training: Any = None, hardware: Any = None, inference: Any = None) -> bool:
    """``True`` when one training step fits in the GPU's memory (:func:`fit_report` says why)."""
    return fit_report(model, method, training, hardware, inference).fits


def _largest(ok: Callable[[int], bool], limit: int, report: Progress, what: str) -> int:
    """Largest n in [1, limit] with ok(n) (ok assumed monotone: True then False), 0 when ok(1) is False."""
    calls = 0

    def probe(n: int) -> bool:
        nonlocal calls
        calls += 1
        report(calls, 0, f"{what} {n}")
        return ok(n)

    if not probe(1):
        return 0
    lo, hi = 1, 2
    while hi <= limit and probe(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)  # ok(lo) is True, ok(hi) False (or hi is past the limit)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _training_dict(training: Any) -> dict[str, Any]:
    return _spec(TrainingSpec, training, "training").model_dump()


def max_batch_size(model: Any, method: Any = "lora", training: Any = None, hardware: Any = None, inference: Any = None,
                   *, limit: int = 1 << 20, progress: bool | Progress | None = None) -> int:
    """The largest ``batch_size`` (at ``training``'s ``seq_len``) whose training step fits on ``hardware``;
    0 when not even batch 1 fits. Exact: ``fits`` is True at the answer and False at answer + 1 (below
    ``limit``)."""
    return _max_field("batch_size", model, method, training, hardware, inference, limit, progress)


def max_seq_len(model: Any, method: Any = "lora", training: Any = None, hardware: Any = None, inference: Any = None,
                *, limit: int = 1 << 22, progress: bool | Progress | None = None) -> int:
    """The largest ``seq_len`` (at ``training``'s ``batch_size``) whose training step fits on ``hardware``; 0
    when not even one token fits. Not capped at the model's ``max_position_embeddings`` (compare it yourself),
    except for learned position tables (GPT-2, OPT), past which transformers cannot run at all."""
    return _max_field("seq_len", model, method, training, hardware, inference, limit, progress)


def _max_field(field: str, model: Any, method: Any, training: Any, hardware: Any, inference: Any, limit: int,
               progress: bool | Progress | None) -> int:
    """Largest value of ``field`` for which the step fits (binary search over estimate())."""
    hw = _hardware(hardware)
    spec, meth, base = load_model(model), load_method(method), _training_dict(training)
    cap = _capacity(hw)
    report = _progress_fn(progress)

    def ok(value: int) -> bool:
        try:
            est = estimate(spec, meth, {**base, field: value}, inference, hw)
        except UnsupportedCombinationError:  # e.g. past a learned position table: cannot run, so does not fit
            return False
        return required_bytes(est.to_dict())[0] <= cap

    return _largest(ok, limit, report, field)


# ---- recommend() -----------------------------------------------------------------------------------------------

# methods tried by recommend(): one per kind (LoRA merged / separate train the same)
RECOMMEND_METHODS: tuple[tuple[str, Any], ...] = (
    ("Full fine-tuning", "full"),
    ("LoRA", "lora"),
    ("QLoRA", "qlora"),
    ("Adapter (Pfeiffer seq_bn)", {"name": "adapter", "config": "seq_bn"}),
    ("Prefix tuning", "prefix_tuning"),
    ("Prompt tuning", "prompt_tuning"),
    ("P-tuning", "p_tuning"),
    ("IA3", "ia3"),
)

_REC_COLUMNS = [
    Column("method", "Method", _plain),
    Column("gradient_checkpointing", "Gradient checkpointing", lambda x: "on" if x else "off", "Grad ckpt"),
    Column("optimizer", "Optimizer", _plain),
    Column("trainable_params", "Trainable parameters", fmt_count, "Trainable"),
    Column("required_bytes", "Memory needed", fmt_bytes, "Memory"),
    Column("utilization_percent", "Share of the GPU", _pct, "Used"),
    Column("headroom_bytes", "Headroom", fmt_bytes),
    Column("max_batch_size", "Largest batch that fits", _plain, "Max batch"),
    Column("step_time_s", "Step time", fmt_seconds, "Step"),
]


class Recommendation:
    """Result of :func:`recommend`: ``rows`` are the configurations that fit, cheapest (least memory) first;
    ``rejected`` the ones that do not."""

    def __init__(self, model_name: str, hardware: str, capacity: int, settings: dict[str, Any], rows: list[dict[str, Any]],
                 rejected: list[dict[str, Any]], notes: list[str]):
        self.model_name, self.hardware, self.capacity_bytes, self.settings = model_name, hardware, capacity, settings
        self.rows, self.rejected, self.notes = rows, rejected, notes

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __bool__(self) -> bool:
        return bool(self.rows)

    @property
    def best(self) -> dict[str, Any] | None:
        return self.rows[0] if self.rows else None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, "hardware": self.hardware, "capacity_bytes": self.capacity_bytes,
                "settings": self.settings, "fits": self.rows, "does_not_fit": self.rejected, "notes": self.notes}

    def to_json(self, **kw: Any) -> str:
        import json

        return json.dumps(self.to_dict(), **kw)

    def table(self, include_rejected: bool = False) -> Table:
        s = self.settings
        title = (f"{self.model_name} on {self.hardware} ({fmt_bytes(self.capacity_bytes)}): batch {s['batch_size']} x "
                 f"{s['seq_len']} tokens, {s['dtype']}: {len(self.rows)} configurations fit, least memory first")
        rows = self.rows + (self.rejected if include_rejected else [])
        table_rows = [{"label": str(i + 1), "values": r, "note": None} for i, r in enumerate(rows)]
        notes = list(self.notes)
        if not self.rows:
            notes.append("nothing fits: try a shorter seq_len, a smaller batch, or a GPU with more memory")
        return Table(title, _REC_COLUMNS, table_rows, notes, index_name="#")

    def __str__(self) -> str:
        return self.table().text()

    def _repr_html_(self) -> str:
        return self.table().html()

    def to_pandas(self, include_rejected: bool = False):
        return self.table(include_rejected).dataframe()


def recommend(model: Any, hardware: Any, training: Any = None, *, methods: Any = None,
              optimizers: tuple[str, ...] | None = None, gradient_checkpointing: tuple[bool, ...] = (False, True),
              with_max_batch: bool = True, progress: bool | Progress | None = None) -> Recommendation:
    """The methods and settings that fit ``model``'s training on ``hardware``, least memory first.

    Tries every method (default :data:`RECOMMEND_METHODS`, PEFT's defaults) x optimizer (``training``'s and
    ``adamw_8bit``) x gradient checkpointing off / on, at ``training``'s batch size and sequence length. Each
    fitting row carries the memory needed, the headroom and (``with_max_batch``) the largest batch that fits."""
    from .compare import _methods

    hw = _hardware(hardware)
    spec = load_model(model)
    base = _training_dict(training)
    cap = _capacity(hw)
    report = _progress_fn(progress)
    todo = list(RECOMMEND_METHODS) if methods is None else _methods(methods)
    opts = tuple(optimizers) if optimizers else tuple(dict.fromkeys((base["optimizer"], "adamw_8bit")))
    grid = [(label, m, o, gc) for label, m in todo for o in opts for gc in gradient_checkpointing]
    fit_rows, rejected, notes = [], [], []
    skipped: set[str] = set()
    for n, (label, method, opt, gc) in enumerate(grid):
        report(n, len(grid), f"{label}, {opt}, gradient checkpointing {'on' if gc else 'off'}")
        if label in skipped:
            continue
        meth, note = _with_default_targets(load_method(method), spec.model_type)
        if note and note not in notes:
            notes.append(note)
        if meth.name == "adapter" and spec.model_type not in ADAPTER_MODEL_TYPES:
            skipped.add(label)
            notes.append(f"{label} skipped: AdapterHub adapters do not support model_type {spec.model_type!r}")
            continue
        train = {**base, "optimizer": opt, "gradient_checkpointing": gc}
        try:
            est = estimate(spec, meth, train, None, hw)
        except UnsupportedCombinationError as exc:
            skipped.add(label)
            notes.append(f"{label} skipped: {exc}")
            continue
        d = est.to_dict()
        need, basis = required_bytes(d)
        row = {"method": label, "method_spec": d["method"]["description"], "optimizer": opt, "gradient_checkpointing": gc,
               "trainable_params": d["trainable_params"], "required_bytes": need, "basis": basis,
               "utilization_percent": 100.0 * need / cap, "headroom_bytes": cap - need, "fits": need <= cap,
               "max_batch_size": None, "step_time_s": d["training"].get("step_time_s")}
        if row["fits"] and with_max_batch:
            row["max_batch_size"] = max_batch_size(spec, meth, train, hw)
        (fit_rows if row["fits"] else rejected).append(row)
    report(len(grid), len(grid), "done")
    fit_rows.sort(key=lambda r: (r["required_bytes"], r["method"]))
    rejected.sort(key=lambda r: (r["required_bytes"], r["method"]))
    return Recommendation(spec.name or spec.model_type, hw.name, cap, base, fit_rows, rejected, notes)

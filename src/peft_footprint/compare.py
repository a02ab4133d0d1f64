"""compare(): one model, several fine-tuning methods, one row each.

``pf.compare("meta-llama/Llama-3.1-8B", training={"batch_size": 4, "seq_len": 1024})`` estimates every method
of the default set (full fine-tuning, LoRA merged and separate, QLoRA, a Pfeiffer bottleneck adapter, prefix
tuning, prompt tuning, P-tuning, IA3) with PEFT's defaults, on the same training and inference settings, and
returns a :class:`Comparison`: ``print()`` gives a text table, notebooks render it as HTML, ``to_dict()`` /
``to_json()`` give plain data (integers are bytes unless named otherwise), ``to_pandas()`` a DataFrame.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .api import estimate
from .errors import InvalidConfigError, UnsupportedCombinationError
from .methods import load_method
from .methods.adapter import SUPPORTED as ADAPTER_MODEL_TYPES
from .methods.defaults import IA3_TARGETS, LORA_TARGETS
from .model import load_model
from .result import Estimate
from .units import fmt_bytes, fmt_count, fmt_seconds

__all__ = ["compare", "Comparison", "DEFAULT_METHODS", "peak_breakdown", "Table"]

# (label, method) — the default comparison: PEFT's (and AdapterHub's) defaults for every method
DEFAULT_METHODS: tuple[tuple[str, Any], ...] = (
    ("Full fine-tuning", "full"),
    ("LoRA (merged)", {"name": "lora", "merged": True}),
    ("LoRA (separate)", {"name": "lora"}),
    ("QLoRA", {"name": "qlora"}),
    ("Adapter (Pfeiffer seq_bn)", {"name": "adapter", "config": "seq_bn"}),
    ("Prefix tuning", {"name": "prefix_tuning"}),
    ("Prompt tuning", {"name": "prompt_tuning"}),
    ("P-tuning", {"name": "p_tuning"}),
    ("IA3", {"name": "ia3"}),
)


def _get(d: dict[str, Any], path: str) -> Any:
    cur: Any = d
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _checkpoint(d: dict[str, Any]) -> int | None:
    """Checkpoint file size: the safetensors file PEFT writes, or the whole model for full fine-tuning."""
    s = d["storage"]
    return s.get("checkpoint_file_bytes") if s.get("checkpoint_file_bytes") is not None else s.get("adapter_bytes")


def required_bytes(d: dict[str, Any]) -> tuple[int, str]:
    """The training memory a GPU must hold and which figure it is: what the GPU shows as used
    (``device_bytes``: reserved + CUDA context) when known, else the allocator's reserved peak, else the
    allocated peak."""
    t = d["training"]
    for key in ("device_bytes", "reserved_bytes", "peak_bytes"):
        if t.get(key) is not None:
            return int(t[key]), key
    raise KeyError("peak_bytes")  # pragma: no cover - estimate() always gives peak_bytes


def peak_breakdown(est: Estimate | dict[str, Any]) -> dict[str, int]:
    """Training memory at its peak moment, by component, summing exactly to :func:`required_bytes`.

    ``weights`` (incl. 4-bit quantization state) and ``optimizer state`` are alive all the time; what else is
    alive depends on where the step peaks (``training.peak_at``): in the forward / start of backward it is the
    activations saved for backward plus everything else alive then (loss gradients, fp32 logits copies, gradients
    accumulated so far during backward: ``other at peak``); at
    the optimizer step it is the gradients plus the optimizer's temporaries. ``allocator overhead`` (reserved -
    allocated) and ``CUDA context`` (device - reserved) appear once the estimate has them."""
    d = est.to_dict() if isinstance(est, Estimate) else est
    t = d["training"]
    weights = t["weights_bytes"] + (t.get("quant_state_bytes") or 0)
    optim = t["optimizer_bytes"]
    live = max(0, t["peak_bytes"] - weights - optim)
    at = str(t.get("peak_at") or "")
    if "optimizer" in at or "end of backward" in at:
        grads, acts = min(t["gradients_bytes"], live), 0
    else:
        grads, acts = 0, min(t["activations_bytes"], live)
    out = {"weights": weights, "optimizer state": optim, "gradients": grads, "activations": acts,
           "other at peak": live - grads - acts}
    if t.get("reserved_bytes") is not None:
        out["allocator overhead"] = max(0, t["reserved_bytes"] - t["peak_bytes"])
        if t.get("device_bytes") is not None:
            out["CUDA context"] = max(0, t["device_bytes"] - t["reserved_bytes"])
    return out


# ---- a small table type shared by compare() and the planning helpers ----------------------------------------

@dataclass
class Column:
    key: str  # key in each row's ``values``
    label: str
    fmt: Callable[[Any], str]
    short: str = ""  # header in the text table

    @property
    def header(self) -> str:
        return self.short or self.label


def _pct(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3g}%" if x < 100 else "100%"


def _yesno(x: Any) -> str:
    return "n/a" if x is None else ("yes" if x else "no")


def _plain(x: Any) -> str:
    return "n/a" if x is None else str(x)


@dataclass
class Table:
    """Rows of named values with column formatters: the common text / HTML / pandas views."""

    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]  # each: {"label": str, "values": {key: value}, "note": str | None}
    notes: list[str] = field(default_factory=list)
    index_name: str = "method"

    def visible_columns(self) -> list[Column]:
        """Columns with a value in at least one row (latency columns disappear without hardware)."""
        return [c for c in self.columns if any(r["values"].get(c.key) is not None for r in self.rows)]

    def cells(self) -> tuple[list[str], list[list[str]]]:
        cols = self.visible_columns()
        header = [self.index_name] + [c.header for c in cols]
        body = []
        for r in self.rows:
            if r.get("values") or not r.get("note"):
                body.append([r["label"]] + [c.fmt(r["values"].get(c.key)) for c in cols])
            else:
                body.append([r["label"]] + ["—"] * len(cols))
        return header, body

    def text(self) -> str:
        header, body = self.cells()
        widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
        def line(row):
            return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        out = [self.title, "=" * len(self.title), line(header), "  ".join("-" * w for w in widths)]
        out += [line(row) for row in body]
        notes = [f"{r['label']}: {r['note']}" for r in self.rows if r.get("note")] + list(self.notes)
        if notes:
            out.append("")
            out += [f"note: {n}" for n in notes]
        out.append("Memory in GiB/MiB (2^30 / 2^20 bytes); parameters in K/M/B (10^3/10^6/10^9).")
        return "\n".join(out)

    def html(self) -> str:
        header, body = self.cells()
        e = html.escape
        head = "".join(f"<th>{e(h)}</th>" for h in header)
        trs = "".join(
            "<tr>" + "".join(
                f"<td style='text-align:{'left' if i == 0 else 'right'}'>{e(cell)}</td>" for i, cell in enumerate(row)
            ) + "</tr>"
            for row in body
        )
        notes = [f"{r['label']}: {r['note']}" for r in self.rows if r.get("note")] + list(self.notes)
        foot = "".join(f"<li>{e(n)}</li>" for n in notes)
        foot = f"<ul style='font-size:smaller'>{foot}</ul>" if foot else ""
        return f"<div><table><caption>{e(self.title)}</caption><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>{foot}</div>"

    def dataframe(self):
        try:
            import pandas as pd
        except ImportError as exc:  # optional extra
            raise ImportError("to_pandas() needs pandas: pip install 'peft-footprint[pandas]'") from exc
        records = []
        for r in self.rows:
            rec = {self.index_name: r["label"]}
            rec.update({c.key: r["values"].get(c.key) for c in self.columns})
            rec["note"] = r.get("note")
            records.append(rec)
        return pd.DataFrame.from_records(records).set_index(self.index_name)


# ---- compare() -------------------------------------------------------------------------------------------------

COLUMNS = [
    Column("trainable_params", "Trainable parameters", fmt_count, "Trainable"),
    Column("trainable_percent", "Trainable (% of total)", _pct, "Train %"),
    Column("weights_bytes", "Weights", fmt_bytes),
    Column("gradients_bytes", "Gradients", fmt_bytes, "Grads"),
    Column("optimizer_bytes", "Optimizer state", fmt_bytes, "Optimizer"),
    Column("activations_bytes", "Activations", fmt_bytes, "Activations"),
    Column("peak_bytes", "Peak allocated", fmt_bytes, "Peak"),
    Column("reserved_bytes", "Peak reserved", fmt_bytes, "Reserved"),
    Column("device_bytes", "Device memory used", fmt_bytes, "Device"),
    Column("fits", "Fits on the GPU", _yesno, "Fits"),
    Column("checkpoint_bytes", "Checkpoint file", fmt_bytes, "Checkpoint"),
    Column("deploy_bytes", "Deploy storage (1 task)", fmt_bytes, "Deploy 1"),
    Column("deploy_bytes_all_tasks", "Deploy storage (all tasks)", fmt_bytes, "Deploy N"),
    Column("step_time_s", "Training step time", fmt_seconds, "Step"),
    Column("prefill_latency_s", "Prefill latency", fmt_seconds, "Prefill"),
    Column("decode_latency_s", "Decode latency per token", fmt_seconds, "Decode/tok"),
]


def _values(d: dict[str, Any], capacity: int | None) -> dict[str, Any]:
    t, s, i = d["training"], d["storage"], d.get("inference") or {}
    total = d["total_params"]
    v = {
        "trainable_params": d["trainable_params"],
        "total_params": total,
        "trainable_percent": 100.0 * d["trainable_params"] / total if total else None,
        "weights_bytes": t["weights_bytes"] + (t.get("quant_state_bytes") or 0),
        "gradients_bytes": t["gradients_bytes"],
        "optimizer_bytes": t["optimizer_bytes"],
        "activations_bytes": t["activations_bytes"],
        "peak_bytes": t["peak_bytes"],
        "reserved_bytes": t.get("reserved_bytes"),
        "device_bytes": t.get("device_bytes"),
        "fits": None,
        "checkpoint_bytes": _checkpoint(d),
        "deploy_bytes": s["deploy_bytes"],
        "deploy_bytes_all_tasks": s["deploy_bytes_all_tasks"],
        "num_tasks": s.get("num_tasks"),
        "step_time_s": t.get("step_time_s"),
        "prefill_latency_s": i.get("prefill_latency_s"),
        "decode_latency_s": i.get("decode_latency_s"),
    }
    if capacity is not None:
        v["fits"] = required_bytes(d)[0] <= capacity
    return v


class Comparison:
    """Result of :func:`compare`: one row per method. ``rows`` hold the flat values (integers are bytes unless
    named otherwise); ``estimates`` the full :class:`Estimate` of each method that could be estimated."""

    def __init__(self, model_name: str, rows: list[dict[str, Any]], settings: dict[str, Any], capacity: int | None,
                 hardware_name: str | None):
        self.model_name = model_name
        self._rows = rows
        self.settings = settings
        self.capacity_bytes = capacity
        self.hardware_name = hardware_name

    # -- data --------------------------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return [r["label"] for r in self._rows]

    @property
    def estimates(self) -> dict[str, Estimate]:
        return {r["label"]: r["estimate"] for r in self._rows if r["estimate"] is not None}

    def __getitem__(self, label: str) -> Estimate:
        for r in self._rows:
            if r["label"] == label:
                if r["estimate"] is None:
                    raise KeyError(f"{label!r} was skipped: {r['note']}")
                return r["estimate"]
        raise KeyError(f"no row {label!r}; rows: {', '.join(self.labels)}")

    def __iter__(self):
        return iter(self.estimates.items())

    def __len__(self) -> int:
        return len(self._rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "settings": self.settings,
            "hardware": self.hardware_name,
            "capacity_bytes": self.capacity_bytes,
            "rows": [
                {
                    "label": r["label"],
                    "method": r["method"],
                    "skipped": r["estimate"] is None,
                    "note": r["note"],
                    "values": r["values"],
                    "estimate": r["estimate"].to_dict() if r["estimate"] is not None else None,
                }
                for r in self._rows
            ],
        }

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    # -- views -------------------------------------------------------------------------------------------------
    def table(self) -> Table:
        s = self.settings["training"]
        title = (f"{self.model_name}: batch {s['batch_size']} x {s['seq_len']} tokens, {s['dtype']}, {s['optimizer']}"
                 + (", gradient checkpointing" if s.get("gradient_checkpointing") else "")
                 + f"; deploy N = {self.settings['inference']['num_tasks']} tasks")
        if self.hardware_name:
            title += f"; {self.hardware_name} ({fmt_bytes(self.capacity_bytes)})"
        return Table(title, COLUMNS, [{"label": r["label"], "values": r["values"], "note": r["note"]} for r in self._rows])

    def __str__(self) -> str:
        return self.table().text()

    def __repr__(self) -> str:
        return f"<Comparison {self.model_name}: {', '.join(self.labels)}>"

    def _repr_html_(self) -> str:
        return self.table().html()

    def to_pandas(self):
        """A DataFrame indexed by method label; integers are bytes / parameter counts, times in seconds."""
        return self.table().dataframe()

    def plot(self, **kw: Any):
        """Stacked bars of training memory by component (see :func:`peft_footprint.plot.plot_memory`)."""
        from .plot import plot_memory

        return plot_memory(self, **kw)


def _methods(methods: Any) -> list[tuple[str, Any]]:
    if methods is None:
        return list(DEFAULT_METHODS)
    if isinstance(methods, (str, dict)) or not isinstance(methods, Iterable):
        if isinstance(methods, dict) and not any(k in methods for k in ("name", "method", "peft_type")):
            return list(methods.items())  # {label: method}
        methods = [methods]
    out = []
    for m in methods:
        if isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str):
            out.append(m)
        else:
            spec = load_method(m)
            label = spec.describe() if isinstance(m, dict) or not isinstance(m, str) else m
            out.append((label, spec))
    if not out:
        raise InvalidConfigError("methods", methods, "give at least one method")
    return out


def _with_default_targets(spec, model_type: str) -> tuple[Any, str | None]:
    """PEFT has no default target_modules for some model types (it raises); a comparison then uses
    ``"all-linear"`` for LoRA / QLoRA / IA3 and says so."""
    name = spec.name
    table = {"lora": LORA_TARGETS, "qlora": LORA_TARGETS, "ia3": IA3_TARGETS}.get(name)
    if table is None or getattr(spec, "target_modules", "x") is not None or model_type in table:
        return spec, None
    spec = type(spec).model_validate({**spec.model_dump(), "target_modules": "all-linear"})
    return spec, f"PEFT has no default target_modules for {name} on {model_type!r}; using target_modules='all-linear'"


def compare(model: Any, methods: Any = None, training: Any = None, inference: Any = None, hardware: Any = None,
            *, progress: bool | Callable[[int, int, str], None] | None = None) -> Comparison:
    """Estimate ``model`` under several methods with the same training / inference settings.

    ``methods``: ``None`` for the default set (:data:`DEFAULT_METHODS`), or a list of anything
    :func:`estimate` accepts as a method (names, dicts, PEFT configs), or ``(label, method)`` pairs, or a
    ``{label: method}`` dict. A method the model cannot take (AdapterHub adapters on an unsupported model
    type, prefix tuning on Gemma, ...) gives a row with a note instead of an error. ``hardware`` adds a
    "fits" column (and step time / latency where the estimator computes them)."""
    from .planning import _capacity, _progress_fn, load_hardware  # planning imports compare: lazy

    spec = load_model(model)
    hw = load_hardware(hardware)
    capacity = _capacity(hw) if hw is not None else None
    report = _progress_fn(progress)
    todo = _methods(methods)
    rows = []
    settings: dict[str, Any] | None = None
    for n, (label, method) in enumerate(todo):
        report(n, len(todo), label)
        meth = load_method(method)
        meth, note = _with_default_targets(meth, spec.model_type)
        if meth.name == "adapter" and spec.model_type not in ADAPTER_MODEL_TYPES:
            rows.append({"label": label, "method": meth.describe(), "estimate": None, "values": {},
                         "note": f"skipped: AdapterHub adapters do not support model_type {spec.model_type!r} "
                                 f"(supported: {', '.join(ADAPTER_MODEL_TYPES)})"})
            continue
        try:
            est = estimate(spec, meth, training, inference, hw)
        except UnsupportedCombinationError as exc:
            rows.append({"label": label, "method": meth.describe(), "estimate": None, "values": {}, "note": f"skipped: {exc}"})
            continue
        d = est.to_dict()
        if settings is None:
            settings = _settings(training, inference)
        rows.append({"label": label, "method": d["method"]["description"], "estimate": est, "values": _values(d, capacity),
                     "note": note})
    report(len(todo), len(todo), "done")
    return Comparison(spec.name or spec.model_type, rows, settings or _settings(training, inference), capacity,
                      hw.name if hw is not None else None)


def _settings(training: Any, inference: Any) -> dict[str, Any]:
    from .api import _spec
    from .inference import InferenceSpec
    from .training import TrainingSpec

    return {"training": _spec(TrainingSpec, training, "training").model_dump(),
            "inference": _spec(InferenceSpec, inference, "inference").model_dump()}

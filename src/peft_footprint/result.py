"""Estimate: the numbers for one (model, method, training, inference, hardware), as plain data and views."""

from __future__ import annotations

import copy
import html
import json
from typing import Any

from .units import fmt_bytes, fmt_count, fmt_flops, fmt_seconds

SCHEMA_VERSION = "1.0"

# (section, key, formatter, label)
_ROWS = [
    (None, "total_params", fmt_count, "Total parameters"),
    (None, "trainable_params", fmt_count, "Trainable parameters"),
    ("training", "weights_bytes", fmt_bytes, "Weights"),
    ("training", "gradients_bytes", fmt_bytes, "Gradients"),
    ("training", "optimizer_bytes", fmt_bytes, "Optimizer state"),
    ("training", "activations_bytes", fmt_bytes, "Activations"),
    ("training", "peak_bytes", fmt_bytes, "Peak allocated"),
    ("training", "reserved_bytes", fmt_bytes, "Peak reserved"),
    ("training", "device_bytes", fmt_bytes, "Device memory used"),
    ("training", "step_flops", fmt_flops, "Step FLOPs"),
    ("training", "step_time_s", fmt_seconds, "Step time"),
    ("storage", "adapter_bytes", fmt_bytes, "Checkpoint"),
    ("storage", "deploy_bytes", fmt_bytes, "Deploy (1 task)"),
    ("storage", "deploy_bytes_all_tasks", fmt_bytes, "Deploy (all tasks)"),
    ("inference", "forward_flops", fmt_flops, "Forward FLOPs"),
    ("inference", "kv_cache_bytes", fmt_bytes, "KV cache"),
    ("inference", "prefill_latency_s", fmt_seconds, "Prefill latency"),
    ("inference", "decode_latency_s", fmt_seconds, "Decode latency / token"),
]


class Estimate:
    """Result of :func:`peft_footprint.estimate`. ``to_dict()`` gives JSON-able data (integers are bytes
    unless named otherwise); ``print(est)`` a readable summary; in notebooks it renders as an HTML table."""

    def __init__(self, data: dict[str, Any]):
        self._data = data

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self._data, **kw)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    @property
    def training(self) -> dict[str, Any]:
        return self._data["training"]

    @property
    def storage(self) -> dict[str, Any]:
        return self._data["storage"]

    @property
    def inference(self) -> dict[str, Any]:
        return self._data["inference"]

    def rows(self) -> list[tuple[str, str, Any]]:
        out = []
        for section, key, fmt, label in _ROWS:
            value = self._data.get(key) if section is None else self._data.get(section, {}).get(key)
            if value is None and section is not None:
                continue
            out.append((label, fmt(value), value))
        return out

    def __str__(self) -> str:
        d = self._data
        head = f"peft-footprint estimate: {d['model']['name']} ({d['model']['model_type']}), {d['method']['description']}"
        width = max(len(label) for label, _, _ in self.rows())
        lines = [head, "-" * len(head)]
        lines += [f"{label:<{width}}  {text}" for label, text, _ in self.rows()]
        for note in d.get("notes", []):
            lines.append(f"note: {note}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        d = self._data
        t = d["training"]
        return (
            f"<Estimate {d['model']['name']} {d['method']['name']}: trainable {fmt_count(d['trainable_params'])}, "
            f"weights {fmt_bytes(t['weights_bytes'])}, optimizer {fmt_bytes(t['optimizer_bytes'])}>"
        )

    def _repr_html_(self) -> str:
        d = self._data
        title = html.escape(f"{d['model']['name']} — {d['method']['description']}")
        body = "".join(
            f"<tr><td style='text-align:left'>{html.escape(label)}</td><td style='text-align:right'>{html.escape(text)}</td></tr>"
            for label, text, _ in self.rows()
        )
        return f"<table><caption>{title}</caption><thead><tr><th>quantity</th><th>value</th></tr></thead><tbody>{body}</tbody></table>"

    def to_pandas(self):
        try:
            import pandas as pd
        except ImportError as exc:  # optional extra
            raise ImportError("to_pandas() needs pandas: pip install 'peft-footprint[pandas]'") from exc
        return pd.DataFrame([{"quantity": label, "value": value, "formatted": text} for label, text, value in self.rows()]).set_index("quantity")

"""Plots (matplotlib, the optional ``plot`` extra; imported only when a function here is called).

- :func:`plot_memory`: training memory per method, stacked by component at the step's peak, with the GPU's
  capacity as a horizontal line.
- :func:`plot_memory_vs_seq_len`: training memory against sequence length, one line per method.
- :func:`plot_storage`: deployment storage against the number of tasks served from one base.

Each returns a ``matplotlib.figure.Figure`` (made without pyplot, so nothing opens a window; in a notebook
the figure renders when it is the cell's value). Memory axes are in GiB (2^30 bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .compare import DEFAULT_METHODS, Comparison, _methods, _with_default_targets, compare, peak_breakdown, required_bytes
from .methods import load_method
from .model import load_model
from .planning import _capacity, _hardware

__all__ = ["plot_memory", "plot_memory_vs_seq_len", "plot_storage", "COMPONENT_COLORS"]

GIB = 2**30

COMPONENT_COLORS = {
    "weights": "#4C72B0",
    "optimizer state": "#DD8452",
    "gradients": "#55A868",
    "activations": "#C44E52",
    "other at peak": "#8172B3",
    "allocator overhead": "#937860",
    "CUDA context": "#8C8C8C",
}


def _figure(figsize):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # optional extra
        raise ImportError("plots need matplotlib: pip install 'peft-footprint[plot]'") from exc
    return Figure(figsize=figsize, layout="constrained")


def _capacity_line(ax, hardware: Any, capacity: int | None, name: str | None) -> None:
    if capacity is None and hardware is not None:
        hw = _hardware(hardware)
        capacity, name = _capacity(hw), hw.name
    if capacity is not None:
        ax.axhline(capacity / GIB, color="black", linestyle="--", linewidth=1.2,
                   label=f"{name or 'GPU'} capacity ({capacity / GIB:.1f} GiB)")


def plot_memory(comparison: Comparison | Any, methods: Any = None, training: Any = None, inference: Any = None,
                hardware: Any = None, *, ax=None, figsize=(10, 5.5), title: str | None = None):
    """Stacked bars of training memory per method by component at the step's peak (weights, optimizer state,
    gradients, activations, other live tensors, and allocator overhead / CUDA context when the estimate has
    them); each bar's height is the memory compared with the GPU in :func:`peft_footprint.fits`.

    ``comparison``: a :class:`Comparison`, or a model (then ``methods``, ``training``, ... go to
    :func:`compare`)."""
    comp = comparison if isinstance(comparison, Comparison) else compare(comparison, methods, training, inference, hardware)
    fig = ax.figure if ax is not None else _figure(figsize)
    ax = ax if ax is not None else fig.add_subplot()
    labels, parts = [], []
    for label, est in comp.estimates.items():
        labels.append(label)
        parts.append(peak_breakdown(est))
    components = [c for c in COMPONENT_COLORS if any(p.get(c) for p in parts)]
    bottoms = [0.0] * len(labels)
    for comp_name in components:
        heights = [p.get(comp_name, 0) / GIB for p in parts]
        ax.bar(labels, heights, bottom=bottoms, label=comp_name, color=COMPONENT_COLORS[comp_name], gid=comp_name)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    for i, est in enumerate(comp.estimates.values()):
        need, _ = required_bytes(est.to_dict())
        ax.annotate(f"{need / GIB:.1f}", (i, need / GIB), ha="center", va="bottom", fontsize=8)
    _capacity_line(ax, hardware if comp.capacity_bytes is None else None, comp.capacity_bytes, comp.hardware_name)
    s = comp.settings["training"]
    top = max([b for b in bottoms] + [(comp.capacity_bytes or 0) / GIB])
    ax.set_ylim(0, top * 1.3 if top else 1)
    ax.set_ylabel("training memory at the step's peak (GiB)")
    ax.set_title(title or f"{comp.model_name}: batch {s['batch_size']} x {s['seq_len']} tokens, {s['dtype']}, {s['optimizer']}")
    ax.tick_params(axis="x", labelrotation=30)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_memory_vs_seq_len(model: Any, methods: Any = None, training: Any = None, hardware: Any = None,
                           seq_lens: Sequence[int] | None = None, *, ax=None, figsize=(9, 5.5), title: str | None = None):
    """Training memory (the figure :func:`peft_footprint.fits` compares) against ``seq_len``, one line per
    method, at ``training``'s batch size; the GPU's capacity as a line when ``hardware`` is given."""
    from .api import estimate
    from .errors import UnsupportedCombinationError

    seq_lens = list(seq_lens or (128, 256, 512, 1024, 2048, 4096, 8192))
    base = dict(training or {})
    fig = ax.figure if ax is not None else _figure(figsize)
    ax = ax if ax is not None else fig.add_subplot()
    todo = _methods(methods) if methods is not None else [m for m in DEFAULT_METHODS if m[0] != "LoRA (merged)"]
    model = load_model(model)
    name = model.name or model.model_type
    for label, method in todo:
        method, _ = _with_default_targets(load_method(method), model.model_type)
        ys = []
        try:
            for s in seq_lens:
                est = estimate(model, method, {**base, "seq_len": s}, None, hardware)
                ys.append(required_bytes(est.to_dict())[0] / GIB)
        except UnsupportedCombinationError:
            continue
        ax.plot(seq_lens, ys, marker="o", markersize=3, label=label)
    _capacity_line(ax, hardware, None, None)
    ax.set_xscale("log", base=2)
    ax.set_xticks(seq_lens, [str(s) for s in seq_lens])
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("training memory at peak (GiB)")
    ax.set_title(title or f"{name}: batch {base.get('batch_size', 1)}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_storage(model: Any, methods: Any = None, training: Any = None, num_tasks: Sequence[int] | None = None, *,
                 ax=None, figsize=(9, 5.5), title: str | None = None, log: bool = True):
    """Disk storage to serve N task-specific adaptations of one base model (``deploy_bytes_all_tasks``):
    N full copies for full fine-tuning and merged LoRA, one base plus N adapters otherwise."""
    from .api import estimate
    from .errors import UnsupportedCombinationError

    ns = list(num_tasks or (1, 2, 5, 10, 20, 50, 100))
    fig = ax.figure if ax is not None else _figure(figsize)
    ax = ax if ax is not None else fig.add_subplot()
    todo = _methods(methods) if methods is not None else list(DEFAULT_METHODS)
    model = load_model(model)
    name = model.name or model.model_type
    for label, method in todo:
        method, _ = _with_default_targets(load_method(method), model.model_type)
        try:
            ys = []
            for n in ns:
                est = estimate(model, method, training, {"num_tasks": n})
                ys.append(est.storage["deploy_bytes_all_tasks"] / GIB)
        except UnsupportedCombinationError:
            continue
        ax.plot(ns, ys, marker="o", markersize=3, label=label)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("number of tasks served from one base")
    ax.set_ylabel("deployment storage (GiB)")
    ax.set_title(title or f"{name}: storage for N tasks")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig

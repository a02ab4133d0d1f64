"""Plots render to PNG (matplotlib's Agg backend, no display) and draw what they say."""

from __future__ import annotations

import pytest

import matplotlib  # noqa: E402,F401 - the test extras install matplotlib

import peft_footprint as pf
from peft_footprint.plot import COMPONENT_COLORS, plot_memory, plot_memory_vs_seq_len, plot_storage
from peft_footprint.compare import peak_breakdown, required_bytes

LLAMA8B = "meta-llama/Llama-3.1-8B"
GIB = 2**30


def _png(fig, path):
    fig.savefig(path, dpi=60)
    assert path.stat().st_size > 5000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_memory_bars(tmp_path):
    comp = pf.compare(LLAMA8B, training={"batch_size": 2, "seq_len": 512}, hardware="H100")
    fig = plot_memory(comp)
    _png(fig, tmp_path / "memory.png")
    ax = fig.axes[0]
    components = [c for c in COMPONENT_COLORS if any(peak_breakdown(e).get(c) for _, e in comp)]
    assert len(ax.patches) == len(comp.estimates) * len(components)
    assert [t.get_text() for t in ax.get_xticklabels()] == comp.labels
    # the stacked bar of each method reaches exactly its required memory
    tops = {}
    for p in ax.patches:
        x = round(p.get_x() + p.get_width() / 2)
        tops[x] = max(tops.get(x, 0), p.get_y() + p.get_height())
    for i, (_, est) in enumerate(comp):
        assert tops[i] == pytest.approx(required_bytes(est.to_dict())[0] / GIB)
    capacity = [line for line in ax.get_lines() if "capacity" in str(line.get_label())]
    assert len(capacity) == 1
    assert capacity[0].get_ydata()[0] == pytest.approx(pf.load_hardware("H100").usable_memory_bytes / GIB)


def test_memory_bars_from_model_without_hardware(tmp_path):
    fig = plot_memory("facebook/opt-125m", ["full", "lora"], training={"seq_len": 64})
    _png(fig, tmp_path / "opt.png")
    assert not [line for line in fig.axes[0].get_lines() if "capacity" in str(line.get_label())]


def test_memory_vs_seq_len(tmp_path):
    seq = [128, 256, 512, 1024]
    fig = plot_memory_vs_seq_len(LLAMA8B, ["full", "lora", "qlora"], {"batch_size": 1}, "A100-40GB", seq)
    _png(fig, tmp_path / "seq.png")
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if "capacity" not in str(line.get_label())]
    assert [line.get_label() for line in lines] == ["full", "lora", "qlora"]
    qlora = required_bytes(pf.estimate(LLAMA8B, "qlora", {"batch_size": 1, "seq_len": 1024}, None, "A100-40GB").to_dict())[0]
    assert lines[2].get_ydata()[-1] == pytest.approx(qlora / GIB)


def test_storage(tmp_path):
    fig = plot_storage(LLAMA8B, ["full", "lora"], num_tasks=[1, 10, 100])
    _png(fig, tmp_path / "storage.png")
    full, lora = fig.axes[0].get_lines()
    base = 2 * 8_030_261_248  # bf16 Llama-3.1-8B
    assert list(full.get_ydata()) == pytest.approx([base / GIB, 10 * base / GIB, 100 * base / GIB])
    assert lora.get_ydata()[-1] < full.get_ydata()[1]


def test_comparison_plot_method(tmp_path):
    comp = pf.compare("openai-community/gpt2", ["lora", "ia3"], training={"seq_len": 64})
    _png(comp.plot(), tmp_path / "gpt2.png")

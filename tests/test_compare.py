"""pf.compare(): one row per method, the same numbers as estimate(), storage arithmetic, views."""

from __future__ import annotations

import json

import pytest

import peft_footprint as pf
from peft_footprint.compare import DEFAULT_METHODS, peak_breakdown, required_bytes

LLAMA8B = "meta-llama/Llama-3.1-8B"
# Llama-3.1-8B has 8,030,261,248 parameters (Hugging Face model card / safetensors index); bf16 = 2 bytes each
LLAMA8B_PARAMS = 8_030_261_248
TRAIN = {"batch_size": 2, "seq_len": 256}


@pytest.fixture(scope="module")
def comp():
    return pf.compare(LLAMA8B, training=TRAIN, inference={"num_tasks": 10}, hardware="A100-80GB")


def test_default_rows(comp):
    assert comp.labels == [label for label, _ in DEFAULT_METHODS]
    assert all(r["note"] is None for r in comp.to_dict()["rows"])


def test_rows_equal_estimate(comp):
    d = comp.to_dict()
    for (label, method), row in zip(DEFAULT_METHODS, d["rows"]):
        est = pf.estimate(LLAMA8B, method, TRAIN, {"num_tasks": 10}, "A100-80GB").to_dict()
        assert row["estimate"] == est, label
        v = row["values"]
        assert v["peak_bytes"] == est["training"]["peak_bytes"]
        assert v["trainable_params"] == est["trainable_params"]
        assert v["deploy_bytes_all_tasks"] == est["storage"]["deploy_bytes_all_tasks"]


def test_storage_for_n_tasks(comp):
    v = {r["label"]: r["values"] for r in comp.to_dict()["rows"]}
    base = 2 * LLAMA8B_PARAMS  # bf16 base model on disk
    assert v["Full fine-tuning"]["deploy_bytes"] == base
    assert v["Full fine-tuning"]["deploy_bytes_all_tasks"] == 10 * base
    assert v["LoRA (merged)"]["deploy_bytes"] == base
    assert v["LoRA (merged)"]["deploy_bytes_all_tasks"] == 10 * base
    lora = comp["LoRA (separate)"].storage["adapter_bytes"]
    # PEFT defaults for llama: r=8 on q_proj, v_proj, fp32 adapter weights:
    # per layer q: 8*(4096+4096), v: 8*(4096+1024); 32 layers; 4 bytes
    assert lora == 32 * (8 * (4096 + 4096) + 8 * (4096 + 1024)) * 4
    assert v["LoRA (separate)"]["deploy_bytes_all_tasks"] == base + 10 * lora
    assert v["Full fine-tuning"]["trainable_percent"] == 100.0


def test_fits_column(comp):
    cap = pf.load_hardware("A100-80GB").usable_memory_bytes
    for r in comp.to_dict()["rows"]:
        need, _ = required_bytes(r["estimate"])
        assert r["values"]["fits"] == (need <= cap)


def test_peak_breakdown_sums_to_required(comp):
    for label, est in comp:
        parts = peak_breakdown(est)
        assert sum(parts.values()) == required_bytes(est.to_dict())[0], label
        assert all(v >= 0 for v in parts.values())


def test_views(comp):
    text = str(comp)
    for label in comp.labels:
        assert label in text
    assert "GiB" in text and "2^30" in text
    html = comp._repr_html_()
    assert html.count("<tr>") == 1 + len(comp)
    data = json.loads(comp.to_json())
    assert len(data["rows"]) == len(comp)
    df = comp.to_pandas()
    assert list(df.index) == comp.labels
    assert df.loc["QLoRA", "peak_bytes"] == comp["QLoRA"].training["peak_bytes"]


def test_skips_unsupported_with_note():
    c = pf.compare("facebook/opt-125m", training={"seq_len": 32})
    rows = {r["label"]: r for r in c.to_dict()["rows"]}
    assert rows["Adapter (Pfeiffer seq_bn)"]["skipped"]
    assert "opt" in rows["Adapter (Pfeiffer seq_bn)"]["note"]
    assert "Adapter (Pfeiffer seq_bn): skipped" in str(c)
    with pytest.raises(KeyError, match="skipped"):
        c["Adapter (Pfeiffer seq_bn)"]


def test_no_peft_default_targets_uses_all_linear():
    c = pf.compare("microsoft/Phi-3-mini-4k-instruct", ["ia3", "lora"], training={"seq_len": 32})
    rows = {r["label"]: r for r in c.to_dict()["rows"]}
    assert "all-linear" in rows["ia3"]["note"]
    assert rows["ia3"]["estimate"]["trainable_params"] == pf.estimate(
        "microsoft/Phi-3-mini-4k-instruct", {"name": "ia3", "target_modules": "all-linear"}, {"seq_len": 32})["trainable_params"]


def test_custom_methods_and_labels():
    c = pf.compare(LLAMA8B, {"r=8": {"name": "lora", "r": 8}, "r=64": {"name": "lora", "r": 64}}, training=TRAIN)
    assert c.labels == ["r=8", "r=64"]
    assert c["r=64"]["trainable_params"] == 8 * c["r=8"]["trainable_params"]
    c2 = pf.compare(LLAMA8B, ["full", {"name": "lora", "r": 4}], training=TRAIN)
    assert c2.labels[0] == "full" and c2.labels[1].startswith("lora(")


def test_bad_method_raises():
    with pytest.raises(pf.UnknownNameError, match="Did you mean 'lora'"):
        pf.compare(LLAMA8B, ["lroa"])


def test_progress_callback():
    calls = []
    pf.compare(LLAMA8B, ["full", "lora"], training=TRAIN, progress=lambda done, total, label: calls.append((done, total)))
    assert calls[0] == (0, 2) and calls[-1] == (2, 2)

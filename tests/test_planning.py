"""Capacity planning: fits / max_batch_size / max_seq_len are exact (the answer fits, one more does not)."""

from __future__ import annotations

import pytest

import peft_footprint as pf
from peft_footprint.compare import required_bytes

LLAMA8B = "meta-llama/Llama-3.1-8B"

CASES = [
    (LLAMA8B, "lora", {"seq_len": 1024}, "H100-SXM-80GB"),
    (LLAMA8B, "qlora", {"seq_len": 2048, "gradient_checkpointing": True}, "RTX-4090"),
    (LLAMA8B, "full", {"seq_len": 512, "optimizer": "adamw_8bit", "gradient_checkpointing": True}, "H200"),
    ("Qwen/Qwen2.5-0.5B", "prompt_tuning", {"seq_len": 4096}, "T4"),
]


@pytest.mark.parametrize("model,method,training,gpu", CASES)
def test_max_batch_size_is_exact(model, method, training, gpu):
    b = pf.max_batch_size(model, method, training, gpu)
    assert b >= 1
    assert pf.fits(model, method, {**training, "batch_size": b}, gpu) is True
    assert pf.fits(model, method, {**training, "batch_size": b + 1}, gpu) is False


@pytest.mark.parametrize("model,method,training,gpu", CASES)
def test_max_seq_len_is_exact(model, method, training, gpu):
    t = {k: v for k, v in training.items() if k != "seq_len"}
    s = pf.max_seq_len(model, method, t, gpu)
    assert s >= 1
    assert pf.fits(model, method, {**t, "seq_len": s}, gpu)
    assert not pf.fits(model, method, {**t, "seq_len": s + 1}, gpu)


def test_nothing_fits_gives_zero():
    assert pf.max_batch_size("meta-llama/Llama-3.1-70B", "full", {"seq_len": 512}, "RTX-4090") == 0
    assert pf.max_seq_len("meta-llama/Llama-3.1-70B", "full", None, "RTX-4090") == 0


def test_fit_report_explains():
    r = pf.fit_report(LLAMA8B, "lora", {"batch_size": 4, "seq_len": 1024}, "A10G")
    est = pf.estimate(LLAMA8B, "lora", {"batch_size": 4, "seq_len": 1024})
    need, basis = required_bytes(est.to_dict())
    hw = pf.load_hardware("A10G")
    assert r.required_bytes == need and r.basis == basis
    assert r.capacity_bytes == hw.usable_memory_bytes == 24146608128  # 23028 MiB, nvidia-smi on AWS g5
    assert r.fits is (need <= r.capacity_bytes) and bool(r) is r.fits
    assert r.headroom_bytes == r.capacity_bytes - need
    assert "does NOT fit" in str(r) and "A10G" in str(r) and "GiB" in str(r)
    assert r.to_dict()["required_bytes"] == need


def test_capacity_uses_reported_memory():
    # L40S: 48 GiB GDDR6, 46068 MiB visible with ECC on; the fit must use the visible amount
    r = pf.fit_report("Qwen/Qwen2.5-0.5B", "lora", None, "L40S")
    assert r.capacity_bytes == 46068 * 2**20


def test_recommend_sorted_and_consistent():
    rec = pf.recommend(LLAMA8B, "RTX-4090", {"seq_len": 1024})
    assert len(rec) > 0
    need = [r["required_bytes"] for r in rec.rows]
    assert need == sorted(need)
    assert all(r["fits"] and r["headroom_bytes"] >= 0 for r in rec.rows)
    assert all(not r["fits"] for r in rec.rejected)
    assert not any(r["method"] == "Full fine-tuning" for r in rec.rows)  # 8B full FT needs > 24 GiB
    best = rec.best
    assert best["method"] == "QLoRA" and best["gradient_checkpointing"]
    method = {"QLoRA": "qlora"}[best["method"]]
    training = {"seq_len": 1024, "optimizer": best["optimizer"], "gradient_checkpointing": True}
    assert best["max_batch_size"] == pf.max_batch_size(LLAMA8B, method, training, "RTX-4090")
    assert "QLoRA" in str(rec) and "<table>" in rec._repr_html_()
    assert len(rec.to_pandas(include_rejected=True)) == len(rec.rows) + len(rec.rejected)


def test_hardware_errors():
    with pytest.raises(pf.InvalidConfigError, match="hardware"):
        pf.fits(LLAMA8B, "lora", None, None)
    with pytest.raises(pf.UnknownNameError, match="Did you mean"):
        pf.fits(LLAMA8B, "lora", None, "H100-SXM-80G")


def test_custom_hardware_dict():
    hw = {"name": "tiny", "memory_bytes": 20 * 2**30, "memory_bandwidth_bytes_per_s": 1e12}
    b = pf.max_batch_size(LLAMA8B, "qlora", {"seq_len": 512}, hw)
    assert pf.fits(LLAMA8B, "qlora", {"seq_len": 512, "batch_size": b}, hw)
    assert not pf.fits(LLAMA8B, "qlora", {"seq_len": 512, "batch_size": b + 1}, hw)


def test_progress_off_by_default_and_on_request(capsys):
    pf.max_batch_size(LLAMA8B, "lora", {"seq_len": 512}, "H100")
    assert capsys.readouterr().err == ""
    pf.max_batch_size(LLAMA8B, "lora", {"seq_len": 512}, "H100", progress=True)
    assert "batch_size" in capsys.readouterr().err
    seen = []
    pf.max_seq_len(LLAMA8B, "lora", None, "H100", progress=lambda d, t, label: seen.append(label))
    assert seen and all(label.startswith("seq_len") for label in seen)


def test_max_seq_len_stops_at_a_learned_position_table():
    # GPT-2 cannot run past its 1024 learned positions (transformers raises IndexError), however much memory
    assert pf.max_seq_len("openai-community/gpt2", "lora", {"batch_size": 1}, "H100") == 1024
    with pytest.raises(pf.UnsupportedCombinationError, match="learned position"):
        pf.estimate("openai-community/gpt2", "lora", {"seq_len": 1025})

"""Against PEFT's own benchmark on a real GPU (../shared/reference/peft_metamathqa.yaml: Llama-3.2-3B, bf16,
one L40S, batch 4, MetaMathQA).

- trainable and total parameters: exact;
- checkpoint: the safetensors file size exactly (tensor bytes + the file's JSON header);
- memory allocated right after optimizer.step() (`train_memory_allocated_avg`): weights + gradients + AdamW
  state + what run.py keeps alive between steps. Its loop holds `outputs` across the step
  (docs/notes/metamathqa.md): bf16 logits (batch, seq + virtual tokens, vocab) and, since it leaves
  use_cache at the config's True, the KV cache. seq = 210: the benchmark's mean of 209.9 tokens per sample
  (no fitted parameter; padding to the longest of each length-sorted batch and the two cuBLAS workspaces,
  about 0.5 %, are left out).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import peft_footprint as pf

# shared/ lies beside the repository (in development and in CI)
REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "peft_metamathqa.yaml"
DATA = yaml.safe_load(REF.read_text())
METHOD = {"full_finetuning": "full"}
TRAINING = {"dtype": "bf16", "batch_size": 4, "seq_len": 210, "retain_outputs": True, "use_cache": True}


def _method(exp):
    return {"name": METHOD.get(exp["method"], exp["method"]), **exp["config"]}


@pytest.mark.parametrize("exp", DATA["experiments"], ids=lambda e: e["experiment"])
def test_params_exact(exp):
    est = pf.estimate("meta-llama/Llama-3.2-3B", _method(exp), TRAINING)
    assert est["trainable_params"] == exp["trainable_params"]
    assert est["total_params"] == exp["total_params"]


@pytest.mark.parametrize("exp", DATA["experiments"], ids=lambda e: e["experiment"])
def test_checkpoint_bytes(exp):
    storage = pf.estimate("meta-llama/Llama-3.2-3B", _method(exp), TRAINING).storage
    size = exp["checkpoint_file_size"]
    if exp["method"] == "full_finetuning":
        assert storage["adapter_bytes"] == size  # the benchmark reports params x 2 for full fine-tuning
        return
    assert storage["checkpoint_file_bytes"] == size
    header = size - storage["adapter_bytes"]
    assert 0 < header < 64 * 1024  # the tensor bytes are the file minus its JSON header


@pytest.mark.parametrize("exp", DATA["experiments"], ids=lambda e: e["experiment"])
def test_persistent_memory_after_optimizer_step(exp):
    est = pf.estimate("meta-llama/Llama-3.2-3B", _method(exp), TRAINING).training
    measured = exp["train_memory_allocated_avg"]
    assert est["persistent_bytes"] == pytest.approx(measured, rel=0.01)  # issue asks 5 %; we hold 1 %
    # without the retained outputs the static terms alone fall short: the term is real
    static = est["weights_bytes"] + est["gradients_bytes"] + est["optimizer_bytes"]
    assert static < measured * 0.99


# Reserved memory at the 99th percentile of steps (accelerator_memory_reserved_99th). The benchmark samples
# memory_reserved() after every step and empties the cache every 10 steps, so the 99th percentile is set by the
# longest batches. Their length is not published; we take 600 tokens (MetaMathQA's upper tail under its
# max_seq_length of 768) -- one assumed number for all 12 experiments. Batches are padded, so they carry an
# attention_mask (transformers then hands sdpa an explicit mask: k/v are repeated per head).
RESERVED_TRAINING = dict(TRAINING, seq_len=600, padding_mask=True)


def _reserved(exp):
    return pf.estimate("meta-llama/Llama-3.2-3B", _method(exp), RESERVED_TRAINING, hardware="L40S").training["reserved_bytes"]


@pytest.mark.parametrize("exp", DATA["experiments"], ids=lambda e: e["experiment"])
def test_reserved_memory_within_10_percent(exp):
    assert _reserved(exp) == pytest.approx(exp["accelerator_memory_reserved_99th"], rel=0.10)


def test_ordering_of_methods_by_reserved_memory():
    """Every pair of experiments whose measured reserved memory differs by more than 5 % is ordered the same
    way by the estimate (two measured near-ties, 3.0 % and 0.05 % apart, are not held to an order)."""
    pairs = [(exp, _reserved(exp), exp["accelerator_memory_reserved_99th"]) for exp in DATA["experiments"]]
    for a, est_a, meas_a in pairs:
        for b, est_b, meas_b in pairs:
            if meas_a > meas_b * 1.05:
                assert est_a > est_b, (a["experiment"], b["experiment"])


# The run's peak (accelerator_memory_max: the highest memory_reserved() over the whole run, which also covers the
# evaluation's generation at batch 50) against the training step at the longest batch, which the benchmark caps
# at max_seq_length = 768 tokens (published in the reference).
PEAK_TRAINING = dict(TRAINING, seq_len=768, padding_mask=True)


# The run peak covers the evaluation's generation at batch 50 (max_length 800) too. Prefix tuning with 200 virtual
# tokens and P-tuning with 20 carry those tokens in every sequence's cache there, and their measured run peaks differ
# by exactly what that cache differs by (0.961 GiB, to 0.04 %): generation, not the training step, sets them.
SET_BY_GENERATION = {"prefixtuning--llama-3.2-3B-lr_0.001", "prefixtuning--llama-3.2-3B-lr_0.005_zero_init",
                     "ptuning--llama-3.2-3B-default"}
GENERATION = {"batch_size": 50, "prompt_len": 500, "new_tokens": 300}


def test_ordering_of_methods_by_peak():
    """The twelve experiments ordered by estimated peak (at the longest batch) exactly as by their measured
    peak; ties in the measurement (same config, another learning rate) are ties in the estimate. Pairs of
    experiments whose run peaks the evaluation's generation sets are ordered by its KV cache instead, which
    explains their measured gap to 0.1 %."""
    rows = [(exp, pf.estimate("meta-llama/Llama-3.2-3B", _method(exp), PEAK_TRAINING, inference=GENERATION),
             exp["accelerator_memory_max"]) for exp in DATA["experiments"]]
    for a, est_a, meas_a in rows:
        for b, est_b, meas_b in rows:
            if a["experiment"] in SET_BY_GENERATION and b["experiment"] in SET_BY_GENERATION:
                gap = est_a.inference["kv_cache_bytes"] - est_b.inference["kv_cache_bytes"]
                assert gap == pytest.approx(meas_a - meas_b, rel=1e-3, abs=2**20), (a["experiment"], b["experiment"])
            elif meas_a > meas_b:
                assert est_a.training["peak_bytes"] > est_b.training["peak_bytes"], (a["experiment"], b["experiment"])
            elif meas_a == meas_b:
                assert est_a.training["peak_bytes"] == est_b.training["peak_bytes"], (a["experiment"], b["experiment"])


@pytest.mark.parametrize("exp", DATA["experiments"], ids=lambda e: e["experiment"])
def test_reserved_at_the_longest_batch_within_10_percent_of_the_run_peak(exp):
    est = pf.estimate("meta-llama/Llama-3.2-3B", _method(exp), PEAK_TRAINING, hardware="L40S").training
    assert est["reserved_bytes"] == pytest.approx(exp["accelerator_memory_max"], rel=0.10)

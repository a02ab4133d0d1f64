"""Activations and peak with a realistic vocabulary (32k): every architecture x six method variants
(gradient checkpointing, DoRA, IA3, eager prompt tuning, QLoRA, modules_to_save), held to the byte (the issue
asks 3 %); and at real widths: bundled presets with their layers cut."""

from __future__ import annotations

import pytest

import peft_footprint as pf
from tests.cases import real_width_cases, vocab_cases
from tests.harness.measure import measure

CASES = vocab_cases()


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_peak_with_real_vocabulary(case):
    _, _, cfg, method, training = case
    try:
        est = pf.estimate(cfg, method, {**training, "device": "cpu"}).training
    except pf.UnsupportedCombinationError:
        with pytest.raises(Exception):  # noqa: B017 - the real stack refuses it too
            measure(cfg, method, training, what=("activations", "peak"))
        return
    got = measure(cfg, method, training, what=("activations", "peak"))
    assert est["activations_bytes"] == got["activations_bytes"]
    assert est["peak_bytes"] == got["peak_bytes"]


WIDTHS = real_width_cases()


@pytest.mark.parametrize("case", WIDTHS, ids=[c[0] for c in WIDTHS])
def test_real_widths_with_layers_cut(case):
    """A bundled preset's own config with 1-3 layers (tests/cases.py real_width_cases): every model_type, the
    methods in turn, held to the byte against the real model at those widths and vocabularies."""
    _, cfg, method, training = case
    est = pf.estimate(cfg, method, {**training, "device": "cpu"}).training
    got = measure(cfg, method, training, what=("activations", "peak"))
    assert (est["activations_bytes"], est["peak_bytes"]) == (got["activations_bytes"], got["peak_bytes"])

"""Bottleneck adapters against AdapterHub's real `adapters` library (in its own virtualenv, since it pins
transformers 4.x: tests/harness/adapters_env.py builds it on first use)."""

from __future__ import annotations

import re
import warnings

import pytest

import peft_footprint as pf
from peft_footprint.methods.adapter import HOOKED, SUPPORTED
from tests.cases import ADAPTER_METHODS, ADAPTER_STEP_OPTIONS, TINY, adapter_drawn_cases, adapter_real_width_cases, leave_out_cases
from tests.harness.measure_adapters import measure_adapters_batch

METHODS = ADAPTER_METHODS
CASES = [(mt, mid, dtype) for mt in SUPPORTED for mid in METHODS for dtype in ("fp32", "bf16")]
KEYS = ("total_params", "trainable_params", "weights_bytes", "gradients_bytes", "optimizer_bytes", "adapter_bytes")


@pytest.fixture(scope="module")
def measured():
    requests = [
        {"config": TINY[mt], "method": METHODS[mid], "training": {"dtype": dtype, "batch_size": 2, "seq_len": 9}, "what": ["static"]}
        for mt, mid, dtype in CASES
    ]
    results = measure_adapters_batch(requests)
    return dict(zip(CASES, results))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c))
def test_adapter_static_exact(measured, case):
    mt, mid, dtype = case
    got = measured[case]
    assert "error" not in got, got.get("error")
    est = pf.estimate(TINY[mt], METHODS[mid], {"dtype": dtype, "batch_size": 2, "seq_len": 9}).to_dict()
    mine = {"total_params": est["total_params"], "trainable_params": est["trainable_params"],
            **{k: est["training"][k] for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes")},
            "adapter_bytes": est["storage"]["adapter_bytes"]}
    assert mine == {k: got[k] for k in KEYS}


@pytest.mark.parametrize("model_type", sorted(set(TINY) - set(SUPPORTED)))
def test_unsupported_types_refused_like_adapters(model_type):
    with pytest.raises(pf.UnsupportedCombinationError, match="not pre-supported"):
        pf.estimate(TINY[model_type], "adapter", {"seq_len": 9})


@pytest.fixture(scope="module")
def measured_hooked():
    requests = [{"config": TINY[mt], "method": {"name": "adapter", "config": "seq_bn", "original_ln_after": False},
                 "training": {"dtype": "fp32", "batch_size": 2, "seq_len": 9}, "what": ["static"]} for mt in sorted(HOOKED)]
    return dict(zip(sorted(HOOKED), measure_adapters_batch(requests)))


@pytest.mark.parametrize("model_type", sorted(HOOKED))
def test_original_ln_after_off_refused_where_adapters_hooks_layers(measured_hooked, model_type):
    """AdapterHub's plugin interface (layer hooking) refuses original_ln_after=False; so does the estimate."""
    assert "original_ln_after=False" in measured_hooked[model_type].get("error", "")
    with pytest.raises(pf.UnsupportedCombinationError, match="original_ln_after=False"):
        pf.estimate(TINY[model_type], {"name": "adapter", "config": "seq_bn", "original_ln_after": False}, {"seq_len": 9})


# Options AdapterHub accepts in its config but cannot run (stop 29's draws): 'post_add' where Adapter.pre_forward re-applies
# no LayerNorm leaves its residual unbound, and a config that places no adapter leaves nothing to train
REFUSED_TOO = {
    "post_add-llama": ("llama", {"name": "adapter", "config": "seq_bn", "residual_before_ln": "post_add"}, "UnboundLocalError",
                       "residual_before_ln='post_add'"),
    "post_add-gpt2-no-ln-before": ("gpt2", {"name": "adapter", "config": "double_seq_bn", "residual_before_ln": "post_add"},
                                   "UnboundLocalError", "original_ln_before=False"),
    "post_add-gemma2-no-ln-before": ("gemma2", {"name": "adapter", "config": "seq_bn", "residual_before_ln": "post_add",
                                                "original_ln_before": False}, "UnboundLocalError", "original_ln_before=False"),
    "no-place-qwen2": ("qwen2", {"name": "adapter", "config": "pfeiffer", "output_adapter": False}, "empty parameter list",
                       "places no adapter"),
}


@pytest.fixture(scope="module")
def measured_refused():
    requests = [{"config": TINY[mt], "method": method, "training": {"dtype": "fp32", "batch_size": 2, "seq_len": 9},
                 "what": ["static", "activations", "peak"]} for mt, method, _, _ in REFUSED_TOO.values()]
    return dict(zip(REFUSED_TOO, measure_adapters_batch(requests)))


@pytest.mark.parametrize("case", sorted(REFUSED_TOO))
def test_adapter_options_adapterhub_cannot_run_are_refused(measured_refused, case):
    mt, method, theirs, ours = REFUSED_TOO[case]
    assert theirs in measured_refused[case].get("error", ""), measured_refused[case]
    with pytest.raises(pf.UnsupportedCombinationError, match=re.escape(ours)):
        pf.estimate(TINY[mt], method, {"seq_len": 9})


def test_adapter_option_values_checked():
    """An activation AdapterHub would not find (or that is not modelled), and a residual place it does not know."""
    with pytest.raises(pf.InvalidConfigError, match="adapter.non_linearity='gelu_neww'.*Did you mean 'gelu_new'"):
        pf.estimate(TINY["llama"], {"name": "adapter", "non_linearity": "gelu_neww"}, {"seq_len": 9})
    with pytest.raises(pf.InvalidConfigError, match="adapter.residual_before_ln='before'.*'post_add'"):
        pf.estimate(TINY["llama"], {"name": "adapter", "residual_before_ln": "before"}, {"seq_len": 9})


# Activations and peak on the stack AdapterHub runs (transformers 4.57, adapters 1.3): every setup, with and
# without checkpointing, each held to the byte in activations and peak; ADAPTER_DRAWN adds model depths, shapes and
# adapter options drawn at random (docs/notes/adapters.md section 5c).
ACT_OPTIONS = ADAPTER_STEP_OPTIONS
ACT_CASES = [(mt, mid, oid) for mt in SUPPORTED for mid in METHODS for oid in ACT_OPTIONS]


@pytest.fixture(scope="module")
def measured_steps():
    requests = [{"config": TINY[mt], "method": METHODS[mid], "training": ACT_OPTIONS[oid], "what": ["static", "activations", "peak"]}
                for mt, mid, oid in ACT_CASES]
    return dict(zip(ACT_CASES, measure_adapters_batch(requests)))


@pytest.mark.parametrize("case", ACT_CASES, ids=lambda c: "-".join(c))
def test_adapter_activations_and_peak(measured_steps, case):
    """Activations and peak exact to the byte."""
    mt, mid, oid = case
    got = measured_steps[case]
    assert "error" not in got, got.get("error")
    est = pf.estimate(TINY[mt], METHODS[mid], {**ACT_OPTIONS[oid], "device": "cpu"}).training
    assert est["activations_bytes"] == got["activations_bytes"]
    assert est["peak_bytes"] == got["peak_bytes"]


DRAWN = adapter_drawn_cases() + adapter_real_width_cases()  # (then presets cut to 1-3 layers: real widths)


def _measure_steps(cases: list) -> dict:
    """Each (label, config, method, training) case measured by AdapterHub (static numbers, activations, peak)."""
    requests = [{"config": cfg, "method": method, "training": training, "what": ["static", "activations", "peak"]}
                for _, cfg, method, training in cases]
    return dict(zip([c[0] for c in cases], measure_adapters_batch(requests)))


@pytest.fixture(scope="module")
def measured_drawn():
    return _measure_steps(DRAWN)


@pytest.mark.parametrize("case", DRAWN, ids=lambda c: c[0])
def test_adapter_drawn_activations_and_peak(measured_drawn, case):
    """Other depths (the sdpa mask's copies are per layer), shapes and adapter options, and bundled presets' own
    configs cut to 1-3 layers (every model_type AdapterHub supports, at real widths and vocabularies): trainable
    parameters, adapter bytes, activations and peak exact to the byte."""
    label, cfg, method, training = case
    got = measured_drawn[label]
    assert "error" not in got, got.get("error")
    est = pf.estimate(cfg, method, {**training, "device": "cpu"}).to_dict()
    assert (est["trainable_params"], est["storage"]["adapter_bytes"]) == (got["trainable_params"], got["adapter_bytes"])
    assert est["training"]["activations_bytes"] == got["activations_bytes"]
    assert est["training"]["peak_bytes"] == got["peak_bytes"]


LEAVE_OUT = leave_out_cases()


@pytest.fixture(scope="module")
def measured_leave_out():
    return _measure_steps(LEAVE_OUT)


@pytest.mark.parametrize("case", LEAVE_OUT, ids=lambda c: c[0])
def test_leave_out_exact(measured_leave_out, case):
    """AdapterHub's leave_out: no adapters in the listed layers (an index past the last is ignored, with a
    warning). Parameters, gradients, optimizer state, adapter bytes, activations and peak exact to the byte."""
    label, cfg, method, training = case
    got = measured_leave_out[label]
    assert "error" not in got, got.get("error")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = pf.estimate(cfg, method, {**training, "device": "cpu"}).to_dict()
    past = [i for i in method["leave_out"] if i >= cfg.get("num_hidden_layers", cfg.get("n_layer"))]
    assert any("past the last layer" in str(w.message) for w in caught) == bool(past)
    mine = {"total_params": est["total_params"], "trainable_params": est["trainable_params"],
            **{k: est["training"][k] for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes")},
            "adapter_bytes": est["storage"]["adapter_bytes"]}
    assert mine == {k: got[k] for k in KEYS}
    assert est["training"]["activations_bytes"] == got["activations_bytes"]
    assert est["training"]["peak_bytes"] == got["peak_bytes"]


def test_leave_out_every_layer_or_a_negative_index_is_refused():
    with pytest.raises(pf.UnsupportedCombinationError, match="every layer of the 2 is left out"):
        pf.estimate(TINY["llama"], {"name": "adapter", "leave_out": [0, 1]}, {"seq_len": 9})
    with pytest.raises(pf.InvalidConfigError, match="leave_out lists layer indices"):
        pf.load_method({"name": "adapter", "leave_out": [-1]})
    assert pf.load_method({"name": "adapter", "leave_out": 1}).leave_out == [1]

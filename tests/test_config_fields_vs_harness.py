"""Architecture config fields that change what a training step keeps, against the harness (real transformers + PEFT
on CPU): every MLP activation function transformers offers that the estimate models, residual, embedding and
attention dropouts, OPT's post-LayerNorm layers and LayerNorms without weights, Gemma 2's soft-capping switched
off, Phi-3's sliding window. Activations and peak to the byte; the static numbers and FLOPs where the layout
changes. Found by drawing these fields at random (docs/notes/activations.md, stop 20)."""

from __future__ import annotations

import pytest

import peft_footprint as pf
from tests.cases import TINY, config_field_cases

from tests.harness.measure import measure  # noqa: E402 - the test extras install torch, transformers, peft

CASES = config_field_cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_config_fields(case):
    """Every activation function (a gated MLP, Llama; a plain one, GPT-2) and each config field, over steps with
    varied options: activations and peak to the byte."""
    _, cfg, method, training = case
    est = pf.estimate(cfg, method, {**training, "device": "cpu"}).training
    got = measure(cfg, method, training, what=("activations", "peak"))
    assert (est["activations_bytes"], est["peak_bytes"]) == (got["activations_bytes"], got["peak_bytes"])


@pytest.mark.parametrize("fields", [{"do_layer_norm_before": False}, {"layer_norm_elementwise_affine": False}])
def test_opt_layernorm_variants_static_and_flops(fields):
    """OPT-350m's post-LayerNorm layers and LayerNorms without weight and bias: parameter counts and FLOPs too."""
    from peft_footprint import compute
    from peft_footprint.methods import load_method
    from peft_footprint.model import load_model
    from peft_footprint.training import TrainingSpec

    cfg = dict(TINY["opt"], **fields)
    for method in ({"name": "full"}, {"name": "lora", "r": 4, "target_modules": "all-linear"}):
        training = {"batch_size": 2, "seq_len": 9, "gradient_checkpointing": method["name"] == "lora"}
        spec, m = load_model(cfg), load_method(method)
        table = m.build(spec.layout, spec.cfg, "fp32")
        step = compute.step_flops(spec, m, table, TrainingSpec(dtype="fp32", **training))
        fwd = compute.forward_flops(spec, m, table, 3, 5)
        got = measure(cfg, method, dict(training, dtype="fp32"), what=("flops", "static"),
                      inference={"batch_size": 3, "prompt_len": 5, "new_tokens": 4})
        est = pf.estimate(cfg, method, dict(training, dtype="fp32"))
        assert (step, fwd) == (got["step_flops"], got["forward_flops"])
        assert (est["total_params"], est["trainable_params"]) == (got["total_params"], got["trainable_params"])


def test_unknown_activation_is_refused_with_the_nearest_name():
    cfg = dict(TINY["llama"], hidden_act="gelu_neww")
    with pytest.raises(pf.InvalidConfigError, match=r"hidden_act='gelu_neww'.*Did you mean 'gelu_new'\?.*Available: .*silu"):
        pf.estimate(cfg, "lora")
    # Gemma 2 reads hidden_activation (hidden_act is not what its MLP runs)
    with pytest.raises(pf.InvalidConfigError, match="hidden_activation='xielu'"):
        pf.estimate(dict(TINY["gemma2"], hidden_activation="xielu"), "lora")


@pytest.mark.parametrize("model_type, own", [("opt", "ffn_dim"), ("gpt2", "n_inner")])
def test_intermediate_size_is_not_read_where_the_config_names_it_otherwise(model_type, own):
    """OPT's MLP width is ffn_dim and GPT-2's n_inner: their configs ignore intermediate_size (a stop 29 check found the
    estimate reading it), so the model is built at the default width; the estimate warns and does the same."""
    cfg = {k: v for k, v in TINY[model_type].items() if k != own}
    cfg["intermediate_size"] = 20
    with pytest.warns(UserWarning, match=f"reads {own}, not intermediate_size"):
        est = pf.estimate(cfg, "lora", {"batch_size": 2, "seq_len": 5, "dtype": "fp32"}).to_dict()
    got = measure(cfg, {"name": "lora"}, {"batch_size": 2, "seq_len": 5, "dtype": "fp32"}, what=("static",))
    assert (est["total_params"], est["trainable_params"]) == (got["total_params"], got["trainable_params"])
    assert est["total_params"] == pf.estimate({k: v for k, v in cfg.items() if k != "intermediate_size"}, "lora", {"seq_len": 5}).to_dict()["total_params"]


def test_what_is_not_modelled_is_refused():
    # CPU sdpa with attention dropout runs its math kernel
    with pytest.raises(pf.UnsupportedCombinationError, match=r"attn_pdrop=0.1 .*device='cpu'.*math kernel"):
        pf.estimate(dict(TINY["gpt2"], attn_pdrop=0.1), "lora", {"device": "cpu", "attn_implementation": "sdpa"})
    # GPT-2's upcast attention under AdapterHub's transformers 4.x, in any precision (with PEFT it is modelled)
    with pytest.raises(pf.UnsupportedCombinationError, match="reorder_and_upcast_attn=True"):
        pf.estimate(dict(TINY["gpt2"], reorder_and_upcast_attn=True), {"name": "adapter"},
                    {"attn_implementation": "eager", "dtype": "fp32", "seq_len": 16})
    # neither is refused where it is modelled
    short = {"seq_len": 16}
    pf.estimate(dict(TINY["gpt2"], attn_pdrop=0.1), "lora", {**short, "attn_implementation": "sdpa"})  # CUDA kernels
    pf.estimate(dict(TINY["gpt2"], reorder_and_upcast_attn=True), "lora", {**short, "attn_implementation": "sdpa", "dtype": "bf16"})
    pf.estimate(dict(TINY["gpt2"], reorder_and_upcast_attn=True), "lora", {**short, "attn_implementation": "eager", "dtype": "bf16"})


def test_cuda_autocast_runs_pow_in_fp32():
    """Under CUDA autocast ``pow`` is on the float32 list (PyTorch's autocast op reference; CPU autocast has no such
    rule): GPT-2's gelu_new casts its (b, s, 4h) bf16 input to fp32 for the cube, and the tanh, 1 + tanh and the
    product that follow are fp32. Per layer that keeps 6 bytes per element more than on CPU: the fp32 copy (4)
    instead of the input (2), tanh's and 1 + tanh's outputs at 4 bytes instead of 2, and the product's bf16 copy for
    c_proj (2) on top of the bf16 product (2) that CPU keeps -- 16 against 10."""
    cfg = dict(TINY["gpt2"], attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)  # (dropout masks differ by device)
    training = {"batch_size": 2, "seq_len": 9, "dtype": "fp32", "mixed_precision": "bf16", "attn_implementation": "eager"}
    cuda = pf.estimate(cfg, "lora", dict(training, device="cuda")).training["activations_bytes"]
    cpu = pf.estimate(cfg, "lora", dict(training, device="cpu")).training["activations_bytes"]
    elements = 2 * 9 * 4 * cfg["n_embd"]
    assert cuda - cpu == cfg["n_layer"] * 6 * elements
    # the CPU side is what the harness measures
    assert cpu == measure(cfg, {"name": "lora"}, training, what=("activations",))["activations_bytes"]


@pytest.mark.parametrize("method_id", ["full", "prefix_tuning", "prompt_tuning"])
def test_phi3_sliding_window_caps_the_generation_cache(method_id):
    """Phi-3 with a sliding_window (Phi-3-mini-4k has 2047): DynamicCache(config=...) makes every layer a sliding
    one, which keeps the last sliding_window - 1 positions (prefix tuning's cache is PEFT's own, uncapped)."""
    from peft_footprint.inference import generate_kv_cache_bytes
    from peft_footprint.methods import load_method
    from peft_footprint.model import load_model
    from tests.cases import peft_methods

    cfg = dict(TINY["phi3"], sliding_window=5)
    method = peft_methods("phi3")[method_id]
    spec, m = load_model(cfg), load_method(method)
    for b, prompt, new in ((3, 5, 4), (2, 11, 9)):
        got = measure(cfg, method, {"dtype": "fp32", "batch_size": 1, "seq_len": 4}, what=("kv_cache",),
                      inference={"batch_size": b, "prompt_len": prompt, "new_tokens": new})
        assert generate_kv_cache_bytes(spec, m, b, prompt, new, "fp32") == got["kv_cache_bytes"]

"""Architecture config fields that change what a training step keeps, against the harness (real transformers + PEFT
on CPU): every MLP activation function transformers offers that the estimate models, residual, embedding and
attention dropouts, OPT's post-LayerNorm layers and LayerNorms without weights, Gemma 2's soft-capping switched
off, Phi-3's sliding window. Activations and peak to the byte; the static numbers and FLOPs where the layout
changes. Found by drawing these fields at random (docs/notes/activations.md, stop 20)."""

from __future__ import annotations

import pytest

import peft_footprint as pf
from peft_footprint.act_fns import ACT_FNS, act_field
from tests.cases import TINY

from tests.harness.measure import measure  # noqa: E402 - the test extras install torch, transformers, peft

# one step each, options varied between them (method, dtype, autocast, kernel, checkpointing, batch 1)
STEPS = [
    ({"name": "lora", "r": 3, "target_modules": "all-linear"},
     {"batch_size": 2, "seq_len": 9, "dtype": "bf16", "attn_implementation": "sdpa"}),
    ({"name": "full"}, {"batch_size": 2, "seq_len": 7, "dtype": "fp32", "attn_implementation": "eager", "gradient_checkpointing": True}),
    ({"name": "ia3", "target_modules": "all-linear", "feedforward_modules": []},
     {"batch_size": 3, "seq_len": 6, "dtype": "fp32", "mixed_precision": "bf16", "attn_implementation": "eager"}),
    ({"name": "prompt_tuning", "num_virtual_tokens": 3}, {"batch_size": 1, "seq_len": 8, "dtype": "fp16", "attn_implementation": "sdpa"}),
]


def _exact(cfg: dict, method: dict, training: dict) -> None:
    est = pf.estimate(cfg, method, {**training, "device": "cpu"}).training
    got = measure(cfg, method, training, what=("activations", "peak"))
    assert (est["activations_bytes"], est["peak_bytes"]) == (got["activations_bytes"], got["peak_bytes"])


ACT_CASES = [pytest.param(mt, name, i % len(STEPS), id=f"{mt}-{name}")
             for mt in ("llama", "gpt2") for i, name in enumerate(sorted(ACT_FNS))]


@pytest.mark.parametrize("mt, act, step", ACT_CASES)
def test_every_activation_function(mt, act, step):
    """ACT2FN[name] as the MLP's activation: a gated MLP (Llama) and a plain one (GPT-2)."""
    cfg = dict(TINY[mt], **{act_field(mt): act})
    _exact(cfg, *STEPS[step])


FIELD_CASES = {
    "starcoder2-residual-dropout": ("starcoder2", {"residual_dropout": 0.1}),
    "starcoder2-embedding-dropout": ("starcoder2", {"embedding_dropout": 0.1}),
    "starcoder2-attention-dropout": ("starcoder2", {"attention_dropout": 0.1}),
    "gpt-neox-hidden-dropout-parallel": ("gpt_neox", {"hidden_dropout": 0.1}),
    "gpt-neox-hidden-dropout-sequential": ("gpt_neox", {"hidden_dropout": 0.1, "use_parallel_residual": False}),
    "phi3-resid-dropout": ("phi3", {"resid_pdrop": 0.1}),
    "phi3-sliding-window": ("phi3", {"sliding_window": 5}),
    "gemma2-no-final-softcapping": ("gemma2", {"final_logit_softcapping": None}),
    "gemma2-no-attention-softcapping": ("gemma2", {"attn_logit_softcapping": None}),
    "opt-post-layernorm": ("opt", {"do_layer_norm_before": False}),
    "opt-layernorm-without-weights": ("opt", {"layer_norm_elementwise_affine": False}),
    "gpt2-attention-dropout": ("gpt2", {"attn_pdrop": 0.1}),
    "llama-attention-dropout": ("llama", {"attention_dropout": 0.1}),
    "qwen2-attention-dropout": ("qwen2", {"attention_dropout": 0.1}),
    "gemma2-attention-dropout": ("gemma2", {"attention_dropout": 0.1}),
    "gpt2-upcast-attention-fp32": ("gpt2", {"reorder_and_upcast_attn": True, "scale_attn_by_inverse_layer_idx": True}),
}
CASES = [pytest.param(mt, fields, i, id=f"{label}-{i}") for label, (mt, fields) in FIELD_CASES.items() for i in range(len(STEPS))]


@pytest.mark.parametrize("mt, fields, step", CASES)
def test_config_fields(mt, fields, step):
    method, training = STEPS[step]
    cfg = dict(TINY[mt], **fields)
    if mt == "opt" and method["name"] == "prompt_tuning":
        method = dict(method, token_dim=cfg["word_embed_proj_dim"])  # (PEFT's token_dim is hidden_size)
    attn_dropout = fields.get("attn_pdrop", fields.get("attention_dropout", 0))
    if attn_dropout and training["attn_implementation"] == "sdpa":
        training = dict(training, attn_implementation="eager")  # (CPU sdpa drops out on its math kernel: refused below)
    if fields.get("reorder_and_upcast_attn"):  # (modelled in fp32, where it is the plain path; refused below)
        training = {k: v for k, v in training.items() if k != "mixed_precision"} | {"dtype": "fp32"}
    _exact(cfg, method, training)


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


def test_what_is_not_modelled_is_refused():
    # CPU sdpa with attention dropout runs its math kernel
    with pytest.raises(pf.UnsupportedCombinationError, match=r"attn_pdrop=0.1 .*device='cpu'.*math kernel"):
        pf.estimate(dict(TINY["gpt2"], attn_pdrop=0.1), "lora", {"device": "cpu", "attn_implementation": "sdpa"})
    # GPT-2's upcast attention in half precision
    with pytest.raises(pf.UnsupportedCombinationError, match="reorder_and_upcast_attn=True"):
        pf.estimate(dict(TINY["gpt2"], reorder_and_upcast_attn=True), "lora", {"attn_implementation": "eager", "dtype": "bf16"})
    # neither is refused where it is modelled
    short = {"seq_len": 16}
    pf.estimate(dict(TINY["gpt2"], attn_pdrop=0.1), "lora", {**short, "attn_implementation": "sdpa"})  # CUDA kernels
    pf.estimate(dict(TINY["gpt2"], reorder_and_upcast_attn=True), "lora", {**short, "attn_implementation": "sdpa", "dtype": "bf16"})


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

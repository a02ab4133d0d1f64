"""forward_flops / step_flops against torch's FlopCounterMode on the real transformers + PEFT models (eager
attention), every architecture x method, at two shapes (the second with gradient checkpointing)."""

from __future__ import annotations

import pytest

import peft_footprint as pf
from peft_footprint import compute
from peft_footprint.methods import load_method
from peft_footprint.model import load_model
from peft_footprint.training import TrainingSpec
from tests.cases import TINY, peft_methods

from tests.harness.measure import measure  # noqa: E402 - the test extras install torch, transformers, peft

SHAPES = {
    "b2s9": ({"batch_size": 2, "seq_len": 9, "gradient_checkpointing": False}, {"batch_size": 3, "prompt_len": 5, "new_tokens": 4}),
    "b1s12-gc": ({"batch_size": 1, "seq_len": 12, "gradient_checkpointing": True}, {"batch_size": 2, "prompt_len": 11, "new_tokens": 9}),
}
METHOD_IDS = ("full", "lora", "lora_all_linear_dora_bias", "lora_modules_to_save", "ia3", "prefix_tuning",
              "prefix_tuning_projection", "prompt_tuning", "p_tuning_mlp", "p_tuning_lstm")
CASES = [
    pytest.param(mt, mid, shape, id=f"{mt}-{mid}-{shape}")
    for mt in TINY for mid in METHOD_IDS if mid in peft_methods(mt) for shape in SHAPES
]


def _ours(mt, method, training, inference, merged=False):
    spec = load_model(TINY[mt])
    m = load_method(method)
    table = m.build(spec.layout, spec.cfg, "fp32")
    step = compute.step_flops(spec, m, table, TrainingSpec(dtype="fp32", **training))
    fwd = compute.forward_flops(spec, m, table, inference["batch_size"], inference["prompt_len"], merged=merged)
    return step, fwd


@pytest.mark.parametrize("model_type, method_id, shape", CASES)
def test_flops_match_flop_counter(model_type, method_id, shape):
    method = peft_methods(model_type)[method_id]
    training, inference = SHAPES[shape]
    try:
        step, fwd = _ours(model_type, method, training, inference)
    except pf.UnsupportedCombinationError as refusal:
        with pytest.raises(Exception):  # noqa: B017 - the real stack refuses too
            measure(TINY[model_type], method, dict(training, dtype="fp32"), what=("flops",), inference=inference)
        assert str(refusal)
        return
    got = measure(TINY[model_type], method, dict(training, dtype="fp32"), what=("flops",), inference=inference)
    assert abs(step - got["step_flops"]) <= 0.01 * got["step_flops"]
    assert abs(fwd - got["forward_flops"]) <= 0.01 * got["forward_flops"]
    assert (step, fwd) == (got["step_flops"], got["forward_flops"])  # in fact exact


@pytest.mark.parametrize("method", [{"name": "lora", "r": 3, "target_modules": ["wpe"]},
                                    {"name": "lora", "r": 5, "target_modules": ["wpe", "c_fc"], "use_dora": True}],
                         ids=["lora-wpe", "dora-wpe-c_fc"])
@pytest.mark.parametrize("shape", SHAPES)
def test_lora_on_gpt2_positions_flops(method, shape):
    """LoRA on GPT-2's wpe: the adapter's two matmuls on the positions (once for the batch), and every layer's
    input gradient below it (before stop 26 it was left out: step FLOPs without the layers' input gradients)."""
    training, inference = SHAPES[shape]
    step, fwd = _ours("gpt2", method, training, inference)
    got = measure(TINY["gpt2"], method, dict(training, dtype="fp32"), what=("flops",), inference=inference)
    assert (step, fwd) == (got["step_flops"], got["forward_flops"])


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "gpt2", "opt"])
@pytest.mark.parametrize("shape", SHAPES)
def test_trainable_token_indices_flops(model_type, shape):
    """trainable_token_indices: every layer computes its input's gradient (the embedding's output requires grad), and
    a tied lm_head computes its merged weight's gradient too."""
    training, inference = SHAPES[shape]
    method = {"name": "lora", "r": 4, "trainable_token_indices": [3, 5, 7], **({"target_modules": ["q_proj"]} if model_type == "opt" else {})}
    step, fwd = _ours(model_type, method, training, inference)
    got = measure(TINY[model_type], method, dict(training, dtype="fp32"), what=("flops",), inference=inference)
    assert (step, fwd) == (got["step_flops"], got["forward_flops"])


@pytest.mark.parametrize("model_type", list(TINY))
def test_merged_lora_forward_is_the_base_model(model_type):
    """Merged LoRA serves the base weights: its forward FLOPs are the base model's, as measured."""
    training, inference = SHAPES["b2s9"]
    lora = {"name": "lora", "r": 4, "target_modules": "all-linear", "use_dora": model_type == "llama"}
    _, merged = _ours(model_type, lora, training, inference, merged=True)
    _, separate = _ours(model_type, lora, training, inference, merged=False)
    base = measure(TINY[model_type], "full", dict(training, dtype="fp32"), what=("flops",), inference=inference)
    assert merged == base["forward_flops"]
    assert separate > merged


def test_real_size_ratios():
    """Full fine-tuning is about 3x the forward; frozen-base methods about 2x (no weight gradients)."""
    cfg = dict(model_type="llama", hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True)
    spec = load_model(cfg)
    t = TrainingSpec(batch_size=4, seq_len=512)
    out = {}
    for name in ("full", "lora", "prompt_tuning"):
        m = load_method(name)
        table = m.build(spec.layout, spec.cfg, "bf16")
        out[name] = compute.step_flops(spec, m, table, t) / compute.forward_flops(spec, m, table, 4, 512)
    assert 2.95 < out["full"] < 3.0
    assert 1.95 < out["lora"] < 2.05
    assert 1.95 < out["prompt_tuning"] < 2.05


DORA_DROPOUT = {"name": "lora", "r": 3, "target_modules": "all-linear", "use_dora": True, "lora_dropout": 0.1}


@pytest.mark.parametrize("model_type, shape", [(mt, shape) for mt in TINY for shape in SHAPES])
def test_dora_with_dropout(model_type, shape):
    """With an active lora_dropout DoRA computes the base output again on the dropped-out input (training only;
    GPT-2's Conv1D weight becomes a fresh Parameter there, which gets a gradient)."""
    training, inference = SHAPES[shape]
    step, fwd = _ours(model_type, DORA_DROPOUT, training, inference)
    got = measure(TINY[model_type], DORA_DROPOUT, dict(training, dtype="fp32"), what=("flops",), inference=inference)
    assert (step, fwd) == (got["step_flops"], got["forward_flops"])


# A rotated part of odd width: transformers' rope init takes inv_freq = arange(0, dim, 2), so cos/sin (and the
# channels apply_rotary_pos_emb rotates) are one wider; the rotary embedding's matmul counts that width too
ODD_ROTARY = {"gpt_neox": dict(TINY["gpt_neox"], rotary_pct=0.3125),  # head_dim 16: 5 channels -> 6
              "phi3": dict(TINY["phi3"], partial_rotary_factor=0.75)}  # head_dim 12: 9 channels -> 10


@pytest.mark.parametrize("model_type", list(ODD_ROTARY))
def test_odd_rotary_width(model_type):
    cfg = ODD_ROTARY[model_type]
    training, inference = SHAPES["b2s9"]
    spec, m = load_model(cfg), load_method({"name": "lora", "r": 2, "target_modules": "all-linear"})
    table = m.build(spec.layout, spec.cfg, "fp32")
    step = compute.step_flops(spec, m, table, TrainingSpec(dtype="fp32", **training))
    fwd = compute.forward_flops(spec, m, table, inference["batch_size"], inference["prompt_len"])
    got = measure(cfg, {"name": "lora", "r": 2, "target_modules": "all-linear"}, dict(training, dtype="fp32"), what=("flops",),
                  inference=inference)
    assert (step, fwd) == (got["step_flops"], got["forward_flops"])


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gemma", "opt"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_lora_on_the_input_embedding(model_type, shape):
    """lora.Embedding: (ids -> lora_embedding_A) @ lora_embedding_B on every token, forward and backward, and every
    layer's input requires grad after it (the layers' input gradients are computed): exact."""
    emb, other = ("wte", "c_attn") if model_type == "gpt2" else ("embed_tokens", "q_proj")
    method = {"name": "lora", "r": 4, "target_modules": [emb, other]}
    training, inference = SHAPES[shape]
    step, fwd = _ours(model_type, method, training, inference)
    got = measure(TINY[model_type], method, dict(training, dtype="fp32"), what=("flops",), inference=inference)
    assert (step, fwd) == (got["step_flops"], got["forward_flops"])


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gemma", "opt"])
def test_dora_on_the_input_embedding(model_type):
    """DoRA's embedding variant: lora.Embedding's two matmuls and the layers' input gradients, plus
    DoraEmbeddingLayer's lora_weight (A.T @ B.T, detached: forward only): exact."""
    emb = "wte" if model_type == "gpt2" else "embed_tokens"
    method = {"name": "lora", "r": 3, "use_dora": True, "target_modules": [emb]}
    training, inference = SHAPES["b2s9"]
    step, fwd = _ours(model_type, method, training, inference)
    got = measure(TINY[model_type], method, dict(training, dtype="fp32"), what=("flops",), inference=inference)
    assert (step, fwd) == (got["step_flops"], got["forward_flops"])

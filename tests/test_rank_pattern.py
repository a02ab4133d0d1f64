"""LoRA's rank_pattern, as PEFT applies it: each key is a regex that the end of a module's full name must match
(``(.*\\.)?(key)$``, peft.utils.other.get_pattern_key), the first key that matches sets the rank, and a key with a
layer index ("model.layers.0.self_attn.q_proj") sets it for that layer only. Parameters, adapter bytes,
activations, peak and FLOPs against the harness (real transformers + PEFT on CPU)."""

from __future__ import annotations

import pytest

import peft_footprint as pf
from peft_footprint import compute
from peft_footprint.methods import load_method
from peft_footprint.model import load_model
from peft_footprint.training import TrainingSpec
from tests.cases import STATIC_KEYS, TINY

from tests.harness.measure import measure  # noqa: E402 - the test extras install torch, transformers, peft

FOUR_LAYERS = {**TINY["llama"], "num_hidden_layers": 4}
THREE_LAYERS_GPT2 = {**TINY["gpt2"], "n_layer": 3}

CASES = {
    # plain names: the suffix after a "."
    "llama-names": (TINY["llama"], {"name": "lora", "r": 4, "target_modules": ["q_proj", "v_proj"], "rank_pattern": {"q_proj": 8, "v_proj": 2}}),
    # one layer's module by its full name: that layer only (the layers below and above keep r)
    "llama-one-layer": (FOUR_LAYERS, {"name": "lora", "r": 4, "target_modules": ["q_proj", "v_proj"],
                                      "rank_pattern": {"model.layers.2.self_attn.q_proj": 8}}),
    # a regex over layer indices, with all-linear
    "llama-regex-layers": (FOUR_LAYERS, {"name": "lora", "r": 3, "target_modules": "all-linear", "rank_pattern": {r"layers\.[12]\..*": 6}}),
    # GPT-2's fused c_attn (Conv1D), one layer
    "gpt2-one-layer": (THREE_LAYERS_GPT2, {"name": "lora", "r": 4, "target_modules": ["c_attn", "c_proj"], "rank_pattern": {"h.1.attn.c_attn": 8}}),
    # a key that is only a substring of the names matches nothing in PEFT ("proj" is not "q_proj")
    "opt-substring": (TINY["opt"], {"name": "lora", "r": 4, "target_modules": ["q_proj", "v_proj"], "rank_pattern": {"proj": 8}}),
    # "dense" ends attention.dense only, not mlp.dense_h_to_4h
    "gpt_neox-dense": (TINY["gpt_neox"], {"name": "lora", "r": 4, "target_modules": "all-linear", "rank_pattern": {"dense": 6}}),
    # the first key that matches wins
    "phi3-first-match": (TINY["phi3"], {"name": "lora", "r": 4, "target_modules": ["qkv_proj", "o_proj"],
                                        "rank_pattern": {"qkv_proj": 2, "self_attn.*": 8}}),
    # DoRA with per-layer ranks, and layers_to_transform
    "mistral-dora-layers": ({**TINY["mistral"], "num_hidden_layers": 3},
                            {"name": "lora", "r": 4, "target_modules": ["o_proj", "down_proj"], "use_dora": True,
                             "layers_to_transform": [0, 2], "rank_pattern": {"layers.0.mlp.down_proj": 2}}),
    # QLoRA: the 4-bit layers' LoRA follows the same rule
    "qwen2-qlora": ({**TINY["qwen2"], "num_hidden_layers": 3},
                    {"name": "qlora", "r": 4, "target_modules": ["q_proj", "down_proj"], "rank_pattern": {r"model\.layers\.1\.mlp\.down_proj": 8}}),
}
TRAINING = {"dtype": "bf16", "batch_size": 2, "seq_len": 9}


@pytest.mark.parametrize("case", list(CASES))
def test_rank_pattern_as_peft_applies_it(case):
    config, method = CASES[case]
    est = pf.estimate(config, method, {**TRAINING, "device": "cpu"}).to_dict()
    got = measure(config, method, TRAINING, what=("static", "activations", "peak"))
    assert {
        "total_params": est["total_params"],
        "trainable_params": est["trainable_params"],
        **{k: est["training"][k] for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes", "quant_state_bytes")},
        "adapter_bytes": est["storage"]["adapter_bytes"],
    } == {k: got.get(k, 0) for k in STATIC_KEYS}
    assert est["training"]["activations_bytes"] == got["activations_bytes"]
    assert est["training"]["peak_bytes"] == got["peak_bytes"]


@pytest.mark.parametrize("case", ["llama-one-layer", "llama-regex-layers", "gpt2-one-layer", "phi3-first-match"])
def test_rank_pattern_flops(case):
    config, method = CASES[case]
    training = {"batch_size": 2, "seq_len": 9, "gradient_checkpointing": False}
    inference = {"batch_size": 2, "prompt_len": 7, "new_tokens": 3}
    spec, m = load_model(config), load_method(method)
    table = m.build(spec.layout, spec.cfg, "fp32")
    step = compute.step_flops(spec, m, table, TrainingSpec(dtype="fp32", **training))
    fwd = compute.forward_flops(spec, m, table, inference["batch_size"], inference["prompt_len"])
    got = measure(config, method, dict(training, dtype="fp32"), what=("flops",), inference=inference)
    assert (step, fwd) == (got["step_flops"], got["forward_flops"])


def test_a_rank_pattern_key_that_is_no_regex_is_refused_like_peft():
    method = {"name": "lora", "r": 4, "target_modules": ["q_proj"], "rank_pattern": {"q_proj(": 8}}
    with pytest.raises(pf.InvalidConfigError, match=r"lora\.rank_pattern.*q_proj\("):
        pf.estimate(TINY["llama"], method)
    with pytest.raises(Exception, match="unterminated subpattern|missing \\)"):  # noqa: B017 - PEFT's own re.error
        measure(TINY["llama"], method, TRAINING, what=("static",))


@pytest.mark.parametrize("case", ["llama-one-layer", "gpt2-one-layer", "mistral-dora-layers", "qwen2-qlora"])
def test_rank_pattern_replayed_equals_the_full_pass(case, monkeypatch):
    """Recorded once, replayed for other sizes and another r (the pattern's ranks stay): the activation model and
    the FLOP walk equal their plain passes, and the replay is exercised."""
    import random
    import warnings

    from peft_footprint import activations, api
    from tests.test_replay import clear, method_variant, variant

    config, method = CASES[case]
    mt = config["model_type"]
    layers = {k: config[k] for k in ("num_hidden_layers", "n_layer") if k in config}
    rng = random.Random(case)
    train = pf.TrainingSpec(dtype="bf16")
    key = train.model_dump_json(exclude={"batch_size", "seq_len", "optimizer", "retain_outputs", "use_cache"})
    recorded: list = []
    original = activations._record_pass
    monkeypatch.setattr(activations, "_record_pass", lambda *a: recorded.append(1) or original(*a))
    clear()
    compute._WALKS.clear()
    compute._WALKED.clear()
    replayed = walks_replayed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(8):
            spec = api.load_model({**variant(mt, rng), **layers})
            meth = pf.load_method(method_variant(method, rng))
            before, walks = len(recorded), sum(len(v) for v in compute._WALKS.values())
            got = activations.structured_activation_model(spec, meth, train, False, False, key)
            assert got == activations.activation_model(spec, meth, train, False, False)
            table = api._table(spec, meth, "bf16")
            assert compute._structured_walk(spec, meth, table, False, False) == compute._walk(
                spec, compute._MethodView(spec, meth, table), False, False)
            replayed += k >= 2 and len(recorded) == before
            walks_replayed += k >= 2 and sum(len(v) for v in compute._WALKS.values()) == walks
    assert replayed >= 3 and walks_replayed >= 3, (replayed, walks_replayed)

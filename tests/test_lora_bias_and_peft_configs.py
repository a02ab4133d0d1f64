"""LoRA's ``lora_bias`` (lora_B = nn.Linear(r, out, bias=True)): the bias trains in fp32 and is saved; held against
the harness to the byte (parameters, adapter and checkpoint bytes, activations, peak, FLOPs). And a PEFT config
that sets a field changing what PEFT builds, which the estimate does not model, is refused rather than
estimated without it (a config's other fields -- task_type, inference_mode, init options -- are skipped)."""

from __future__ import annotations

import pytest

import peft_footprint as pf
from tests.cases import TINY
from tests.harness.measure import measure, measure_checkpoint

LORA_BIAS = [
    ("llama", {"name": "lora", "r": 4, "lora_bias": True}, {"dtype": "bf16"}),
    ("llama", {"name": "lora", "r": 4, "lora_bias": True, "target_modules": "all-linear"}, {"dtype": "fp32", "mixed_precision": "bf16"}),
    ("gpt2", {"name": "lora", "r": 4, "lora_bias": True}, {"dtype": "bf16", "gradient_checkpointing": True}),
    ("qwen2", {"name": "qlora", "r": 4, "lora_bias": True}, {"dtype": "bf16"}),
    ("opt", {"name": "lora", "r": 4, "lora_bias": True, "lora_dropout": 0.1}, {"dtype": "fp32", "mixed_precision": "fp16"}),
    ("gemma2", {"name": "lora", "r": 4, "lora_bias": True, "rank_pattern": {"q_proj": 2}}, {"dtype": "bf16", "attn_implementation": "eager"}),
]


@pytest.mark.parametrize("case", LORA_BIAS, ids=[f"{mt}-{m['name']}-{i}" for i, (mt, m, _) in enumerate(LORA_BIAS)])
def test_lora_bias(case):
    mt, method, options = case
    training = {"batch_size": 2, "seq_len": 9, **options}
    est = pf.estimate(TINY[mt], method, {**training, "device": "cpu"}).to_dict()
    what = ("static", "activations", "peak") + (() if method["name"] == "qlora" else ("flops",))  # (bnb's CPU eval path)
    got = measure(TINY[mt], method, training, what=what)
    assert (est["trainable_params"], est["storage"]["adapter_bytes"]) == (got["trainable_params"], got["adapter_bytes"])
    assert (est["training"]["activations_bytes"], est["training"]["peak_bytes"]) == (got["activations_bytes"], got["peak_bytes"])
    if "step_flops" in got:
        assert est["training"]["step_flops"] == got["step_flops"]
    assert est["storage"]["checkpoint_file_bytes"] == measure_checkpoint(TINY[mt], method, training)


@pytest.mark.parametrize("method, field", [
    ({"name": "lora", "lora_bias": True, "use_dora": True}, "DoRA"),
    ({"name": "lora", "lora_bias": True, "init_lora_weights": "pissa"}, "init_lora_weights"),
    ({"name": "lora", "lora_bias": True, "target_modules": ["embed_tokens", "q_proj"]}, "Embedding"),
])
def test_lora_bias_where_peft_refuses_it(method, field):
    with pytest.raises(pf.PeftFootprintError, match=field):
        pf.estimate(TINY["llama"], method, {"seq_len": 8})


def test_peft_config_fields_that_change_the_model_are_refused_not_dropped():
    peft = pytest.importorskip("peft")
    cases = [(peft.LoraConfig(r=4, layer_replication=[(0, 2), (0, 2)]), "layer_replication"),
             (peft.LoraConfig(r=4, target_modules=["q_proj"], use_qalora=True), "use_qalora"),
             (peft.PromptTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM", modules_to_save=["lm_head"]), "modules_to_save")]
    for config, field in cases:
        with pytest.raises(pf.UnsupportedCombinationError, match=field):
            pf.estimate(TINY["llama"], config, {"seq_len": 8})
    # lora_bias is read from a PEFT config as well; fields that change no memory are skipped
    plain = pf.estimate(TINY["llama"], peft.LoraConfig(r=4, init_lora_weights="gaussian"), {"seq_len": 8}).to_dict()
    biased = pf.estimate(TINY["llama"], peft.LoraConfig(r=4, lora_bias=True), {"seq_len": 8}).to_dict()
    # trainable_token_indices is modelled (stop 26): read from the config, its rows train
    tokens = pf.estimate(TINY["llama"], peft.LoraConfig(r=4, trainable_token_indices=[1, 2]), {"seq_len": 8}).to_dict()
    assert tokens["trainable_params"] - plain["trainable_params"] == 2 * TINY["llama"]["hidden_size"]
    assert biased["trainable_params"] - plain["trainable_params"] == sum(
        m.out_features for m in pf.ModelSpec.from_any(TINY["llama"]).layout.layer_linears if m.name in ("q_proj", "v_proj")
    ) * TINY["llama"]["num_hidden_layers"]

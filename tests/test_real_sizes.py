"""Real preset sizes, measured on the meta device (no weights allocated): the module tree transformers and
PEFT build, with a real forward/backward and AdamW state init on meta tensors (tests/harness/measure.py)."""

from __future__ import annotations

import pytest

import peft_footprint as pf
from peft_footprint.model import _presets
from tests.cases import HAS_PEFT_DEFAULTS, STATIC_KEYS

from tests.harness.measure import measure_meta  # noqa: E402

PRESETS = [
    "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.2-1B", "mistralai/Mistral-7B-v0.3", "Qwen/Qwen2.5-7B",
    "Qwen/Qwen3-4B", "google/gemma-7b", "google/gemma-2-9b", "google/gemma-3-1b-pt",
    "microsoft/Phi-3-mini-4k-instruct", "openai-community/gpt2-xl", "EleutherAI/pythia-1b", "facebook/opt-1.3b",
    "allenai/OLMo-2-1124-7B", "ibm-granite/granite-3.1-8b-base", "bigcode/starcoder2-3b",
]
ROTATION = [
    {"name": "prefix_tuning", "num_virtual_tokens": 30},
    {"name": "prompt_tuning", "num_virtual_tokens": 40},
    {"name": "p_tuning", "num_virtual_tokens": 20, "encoder_hidden_size": 512},
    {"name": "ia3"},
]


def _methods(i: int, model_type: str) -> list[dict]:
    lora = {"name": "lora", "r": 16, "lora_alpha": 32, "target_modules": "all-linear"}
    extra = dict(ROTATION[i % len(ROTATION)])
    if extra["name"] == "ia3" and model_type not in HAS_PEFT_DEFAULTS:
        extra = {"name": "ia3", "target_modules": "all-linear", "feedforward_modules": []}
    if extra["name"] == "prefix_tuning" and model_type in ("gemma2", "gemma3_text"):
        extra = {"name": "prompt_tuning", "num_virtual_tokens": 40}
    return [{"name": "full"}, lora, extra]


CASES = [
    pytest.param(name, method, dtype, id=f"{name}-{method['name']}-{dtype}")
    for i, name in enumerate(PRESETS)
    for method in _methods(i, _presets()[name]["model_type"])
    for dtype in (("bf16",) if method["name"] != "lora" else ("bf16", "fp32"))
]


@pytest.mark.parametrize("preset, method, dtype", CASES)
def test_real_size_static_exact(preset, method, dtype):
    measured = measure_meta(_presets()[preset], method, dtype)
    est = pf.estimate(preset, method, {"dtype": dtype}).to_dict()
    got = {
        "total_params": est["total_params"],
        "trainable_params": est["trainable_params"],
        **{k: est["training"][k] for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes")},
        "adapter_bytes": est["storage"]["adapter_bytes"],
    }
    assert got == {k: measured[k] for k in STATIC_KEYS if k != "quant_state_bytes"}

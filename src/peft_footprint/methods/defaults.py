"""PEFT's per-model default targets (peft/utils/constants.py, peft 0.19.1:
TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, ..._IA3_TARGET_MODULES_MAPPING,
..._IA3_FEEDFORWARD_MODULES_MAPPING). Model types missing here have no default: PEFT raises."""

from __future__ import annotations

from ..errors import UnsupportedCombinationError

_QV = ["q_proj", "v_proj"]
LORA_TARGETS = {
    "llama": _QV, "mistral": _QV, "qwen2": _QV, "qwen3": _QV, "gemma": _QV, "gemma2": _QV, "gemma3_text": _QV,
    "gpt2": ["c_attn"], "gpt_neox": ["query_key_value"], "opt": _QV,
}
IA3_TARGETS = {
    "llama": ["k_proj", "v_proj", "down_proj"], "mistral": ["k_proj", "v_proj", "down_proj"],
    "qwen2": ["q_proj", "v_proj", "down_proj"], "qwen3": ["q_proj", "v_proj", "down_proj"],
    "gemma": ["q_proj", "v_proj", "down_proj"], "gemma2": ["q_proj", "v_proj", "down_proj"],
    "gemma3_text": ["q_proj", "v_proj", "down_proj"], "gpt2": ["c_attn", "mlp.c_proj"],
    "gpt_neox": ["query_key_value", "dense_4h_to_h"], "opt": ["q_proj", "k_proj", "fc2"],
}
IA3_FEEDFORWARD = {
    "llama": ["down_proj"], "mistral": ["down_proj"], "qwen2": ["down_proj"], "qwen3": ["down_proj"],
    "gemma": ["down_proj"], "gemma2": ["down_proj"], "gemma3_text": ["down_proj"], "gpt2": ["mlp.c_proj"],
    "gpt_neox": ["dense_4h_to_h"], "opt": ["fc2"],
}
_TABLES = {("lora", "target_modules"): LORA_TARGETS, ("ia3", "target_modules"): IA3_TARGETS,
           ("ia3", "feedforward_modules"): IA3_FEEDFORWARD}


def default_targets(method: str, model_type: str, field: str) -> list[str]:
    table = _TABLES[(method, field)]
    if model_type not in table:
        raise UnsupportedCombinationError(
            f"PEFT has no default {field} for {method} on model_type {model_type!r}: give {field} explicitly "
            f'(for example {field}="all-linear" or a list of module names). Model types with defaults: {", ".join(sorted(table))}'
        )
    return list(table[model_type])

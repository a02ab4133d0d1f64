"""The adapter checkpoint's size (``storage.checkpoint_file_bytes``) against the file PEFT's ``save_pretrained``
writes for the same model and method (tiny configs, random weights, CPU): exact to the byte. The header is JSON
naming every saved tensor, so this holds the saved tensors' names as well as their sizes: LoRA with bias="all"
saves a wrapped module's bias as "<module>.base_layer.bias"; modules_to_save copies are saved under the module's own
name, and with bias="all" a copy's bias a second time ("<module>.modules_to_save.bias") and the frozen original's as
"<module>.original_module.bias"."""

from __future__ import annotations

import pytest

import peft_footprint as pf
from tests.cases import TINY
from tests.harness.measure import measure_checkpoint

CASES = [
    ("llama", {"name": "lora", "r": 4}),
    ("llama", {"name": "lora", "r": 4, "modules_to_save": ["norm"]}),  # every name ending in "norm": 2 per layer + 1
    ("llama", {"name": "lora", "r": 4, "target_modules": ["q_proj"], "modules_to_save": ["mlp", "lm_head"]}),
    ("llama", {"name": "lora", "r": 4, "target_modules": ["q_proj"], "modules_to_save": ["layers.0"]}),
    ("llama", {"name": "lora", "r": 4, "target_modules": ["q_proj", "embed_tokens"], "rank_pattern": {"q_proj": 2}}),
    ("gpt2", {"name": "lora", "r": 4, "target_modules": ["c_attn"], "bias": "all"}),
    ("gpt2", {"name": "lora", "r": 4, "target_modules": ["c_attn"], "modules_to_save": ["ln_1"], "bias": "all"}),
    ("gpt2", {"name": "lora", "r": 4, "target_modules": ["c_attn"], "modules_to_save": ["ln_f", "wte"], "bias": "all"}),
    ("opt", {"name": "lora", "r": 4, "modules_to_save": ["final_layer_norm"], "bias": "all"}),
    ("qwen2", {"name": "lora", "r": 4, "target_modules": "all-linear", "modules_to_save": ["k_proj", "embed_tokens"], "bias": "all"}),
    ("qwen2", {"name": "lora", "r": 4, "target_modules": ["q_proj", "k_proj"], "bias": "all", "layers_to_transform": [1]}),
    ("gpt_neox", {"name": "lora", "r": 4, "target_modules": ["dense"], "modules_to_save": ["dense_h_to_4h"], "bias": "all"}),
    ("gemma2", {"name": "ia3", "modules_to_save": ["lm_head", "input_layernorm"]}),
    ("llama", {"name": "qlora", "r": 4, "modules_to_save": ["lm_head", "norm"]}),
    ("mistral", {"name": "prefix_tuning", "num_virtual_tokens": 3}),
    ("qwen3", {"name": "p_tuning", "num_virtual_tokens": 3, "encoder_hidden_size": 8}),
    # trainable tokens: the delta; PEFT's own method on a tied model saves the tied lm_head's name for it too
    ("qwen2", {"name": "trainable_tokens", "token_indices": [3, 5, 7]}),
    ("llama", {"name": "trainable_tokens", "token_indices": [3, 5, 7]}),
    ("gpt2", {"name": "lora", "r": 4, "target_modules": ["c_attn"], "trainable_token_indices": [3, 9]}),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{mt}-{i}" for i, (mt, _) in enumerate(CASES)])
def test_checkpoint_file_bytes_as_save_pretrained_writes_them(case):
    mt, method = case
    training = {"dtype": "bf16", "seq_len": 8}
    est = pf.estimate(TINY[mt], method, training).to_dict()["storage"]["checkpoint_file_bytes"]
    assert est == measure_checkpoint(TINY[mt], method, training)

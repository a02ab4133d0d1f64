"""PEFT's modules_to_save, as PEFT applies it (peft/utils/other.py _set_trainable, ModulesToSaveWrapper): every
module whose full name ends with one of the names, as a plain string suffix ("norm" matches every
input_layernorm and post_attention_layernorm as well as the final norm; "layers.0" the whole first layer; OPT's
"final_layer_norm" each layer's norm of that name and the decoder's), gets a trainable deep copy, and no adapter
goes on a module inside one (check_target_module_exists). Held against the harness: trainable parameters and
adapter bytes, and activations and peak to the byte; FLOPs exact; the combinations PEFT fails on refused."""

from __future__ import annotations

import pytest

import peft_footprint as pf
from tests.cases import TINY
from tests.harness.measure import measure

CASES = [
    ("llama", {"name": "lora", "r": 4, "modules_to_save": ["norm"]}, {"dtype": "bf16"}),
    ("llama", {"name": "lora", "r": 4, "modules_to_save": ["input_layernorm"]}, {"dtype": "fp32", "mixed_precision": "bf16"}),
    ("llama", {"name": "lora", "r": 4, "modules_to_save": ["embed_tokens", "lm_head"]}, {"dtype": "bf16", "gradient_checkpointing": True}),
    ("llama", {"name": "lora", "r": 4, "target_modules": ["q_proj"], "modules_to_save": ["mlp"]}, {"dtype": "bf16"}),
    ("mistral", {"name": "lora", "r": 4, "modules_to_save": ["layers.0"]}, {"dtype": "bf16", "batch_size": 3}),
    ("qwen3", {"name": "lora", "r": 4, "modules_to_save": ["self_attn.q_norm", "up_proj"]}, {"dtype": "fp32"}),
    ("opt", {"name": "lora", "r": 4, "modules_to_save": ["final_layer_norm"]}, {"dtype": "bf16"}),
    ("opt", {"name": "ia3", "modules_to_save": ["embed_positions"]}, {"dtype": "fp32", "attn_implementation": "eager"}),
    ("gpt2", {"name": "lora", "r": 4, "target_modules": "all-linear", "modules_to_save": ["wpe", "ln_f"]}, {"dtype": "fp32"}),
    ("gpt2", {"name": "lora", "r": 4, "modules_to_save": ["ln_1"], "bias": "all"}, {"dtype": "bf16"}),
    ("gemma", {"name": "lora", "r": 4, "modules_to_save": ["embed_tokens"]}, {"dtype": "bf16", "batch_size": 1}),
    ("gemma2", {"name": "ia3", "modules_to_save": ["lm_head", "pre_feedforward_layernorm"]}, {"dtype": "bf16"}),
    ("gpt_neox", {"name": "qlora", "r": 4, "modules_to_save": ["final_layer_norm", "post_attention_layernorm"], "bias": "all"}, {"dtype": "bf16"}),
    ("llama", {"name": "qlora", "r": 4, "modules_to_save": ["lm_head"]}, {"dtype": "bf16"}),
    # an embedding both targeted and copied: the copy only (a drawn QLoRA setup was +0.13 % at peak)
    ("llama", {"name": "lora", "r": 4, "target_modules": ["q_proj", "embed_tokens", "lm_head"], "modules_to_save": ["embed_tokens", "lm_head"]},
     {"dtype": "bf16"}),
    ("llama", {"name": "qlora", "r": 1, "lora_dropout": 0.1, "target_modules": ["down_proj", "o_proj", "embed_tokens"],
               "modules_to_save": ["embed_tokens"]}, {"dtype": "fp32", "mixed_precision": "fp16", "gradient_checkpointing": True,
                                                      "padding_mask": True, "batch_size": 5, "seq_len": 40}),
]


def test_exclude_modules_excludes_an_embedding_target():
    """PEFT's exclude_modules applies to embeddings too (the estimate wrapped embed_tokens regardless)."""
    method = {"name": "lora", "r": 4, "target_modules": ["q_proj", "embed_tokens"], "exclude_modules": ["embed_tokens"]}
    training = {"batch_size": 2, "seq_len": 7, "dtype": "bf16"}
    est = pf.estimate(TINY["llama"], method, {**training, "device": "cpu"}).to_dict()
    got = measure(TINY["llama"], method, training, what=("static", "activations"))
    assert (est["trainable_params"], est["training"]["activations_bytes"]) == (got["trainable_params"], got["activations_bytes"])


@pytest.mark.parametrize("case", CASES, ids=[f"{mt}-{'-'.join(m['modules_to_save'])}" for mt, m, _ in CASES])
def test_modules_to_save_as_peft_applies_it(case):
    mt, method, options = case
    training = {"batch_size": 2, "seq_len": 9, **options}
    est = pf.estimate(TINY[mt], method, {**training, "device": "cpu"}).to_dict()
    got = measure(TINY[mt], method, training, what=("static", "activations", "peak"))
    assert (est["trainable_params"], est["storage"]["adapter_bytes"]) == (got["trainable_params"], got["adapter_bytes"])
    assert (est["training"]["activations_bytes"], est["training"]["peak_bytes"]) == (got["activations_bytes"], got["peak_bytes"])


FLOPS = [("gemma", ["embed_tokens"]), ("gpt2", ["wte"]), ("opt", ["embed_positions"]), ("llama", ["layers.1", "lm_head"]),
         ("qwen3", ["self_attn.k_norm"]), ("opt", ["final_layer_norm", "fc1"])]


@pytest.mark.parametrize("case", FLOPS, ids=[f"{mt}-{'-'.join(n)}" for mt, n in FLOPS])
def test_modules_to_save_flops(case):
    """A copy's weight gradients, and the input gradients its training needs (a copied embedding: every layer's; a
    copied embedding unties a tied lm_head, whose weight then gets none)."""
    mt, names = case
    method = {"name": "lora", "r": 3, "target_modules": "all-linear", "modules_to_save": names}
    training = {"batch_size": 2, "seq_len": 7, "dtype": "fp32"}
    est = pf.estimate(TINY[mt], method, {**training, "device": "cpu"}).training["step_flops"]
    assert est == measure(TINY[mt], method, training, what=("flops",))["step_flops"]


@pytest.mark.parametrize("mt, method, says", [
    ("llama", {"name": "lora", "r": 4, "modules_to_save": ["self_attn"]}, "keyword"),  # PEFT: TypeError in forward
    ("llama", {"name": "qlora", "r": 4, "modules_to_save": ["o_proj"]}, "Linear4bit"),  # PEFT: RuntimeError
    ("llama", {"name": "lora", "r": 4, "modules_to_save": ["layers.0", "mlp"]}, "both match"),
    ("llama", {"name": "lora", "r": 4, "modules_to_save": ["model"]}, "whole"),
    ("llama", {"name": "lora", "r": 4, "target_modules": ["q_proj"], "modules_to_save": ["q_proj"]}, "No modules were targeted"),
    ("llama", {"name": "lora", "r": 4, "target_modules": "all-linear", "modules_to_save": ["layers.0", "layers.1", "lm_head"]}, "No modules"),
    ("llama", {"name": "lora", "r": 4, "modules_to_save": ["mpl"]}, "mlp"),  # nothing matches: the nearest name
])
def test_modules_to_save_refused_where_peft_fails(mt, method, says):
    with pytest.raises(pf.PeftFootprintError, match=says):
        pf.estimate(TINY[mt], method, {"batch_size": 1, "seq_len": 8})

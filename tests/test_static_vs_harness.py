"""estimate() against the measurement harness (real transformers + real PEFT on CPU): static numbers must
agree exactly for every architecture x method x dtype."""

from __future__ import annotations

import pytest

import peft_footprint as pf
from tests.cases import STATIC_KEYS, TINY, drawn_cases, peft_methods

from tests.harness.measure import measure  # noqa: E402 - the test extras install torch, transformers, peft

CASES = [
    pytest.param(mt, mid, method, dtype, id=f"{mt}-{mid}-{dtype}")
    for mt in TINY
    for mid, method in peft_methods(mt).items()
    for dtype in ("fp32", "bf16")
]


@pytest.mark.parametrize("model_type, method_id, method, dtype", CASES)
def test_static_numbers_exact(model_type, method_id, method, dtype):
    config = TINY[model_type]
    training = {"dtype": dtype, "batch_size": 2, "seq_len": 9}
    try:
        est = pf.estimate(config, method, training).to_dict()
    except pf.UnsupportedCombinationError as refusal:
        # the estimator refuses only what the real stack refuses: the harness must fail too
        with pytest.raises(Exception):  # noqa: B017 - any failure of the real stack
            measure(config, method, training, what=("static",))
        assert str(refusal)
        return
    measured = measure(config, method, training, what=("static",))
    got = {
        "total_params": est["total_params"],
        "trainable_params": est["trainable_params"],
        **{k: est["training"][k] for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes")},
        "adapter_bytes": est["storage"]["adapter_bytes"],
        "quant_state_bytes": est["training"]["quant_state_bytes"],
    }
    want = {k: measured.get(k, 0) for k in STATIC_KEYS}
    assert got == want


@pytest.mark.parametrize("name", ["lora", "qlora"])
def test_layers_to_transform_with_a_target_string_is_refused_like_peft(name):
    method = {"name": name, "r": 2, "target_modules": "all-linear", "layers_to_transform": [0]}
    with pytest.raises(pf.UnsupportedCombinationError, match="layers_to_transform"):
        pf.estimate(TINY["llama"], method)
    with pytest.raises(ValueError, match="layers_to_transform"):
        measure(TINY["llama"], method, {"dtype": "bf16"})
    listed = dict(method, target_modules=["q_proj", "v_proj"])  # module names: PEFT takes it, and so does the estimate
    assert pf.estimate(TINY["llama"], listed)["trainable_params"] == measure(TINY["llama"], listed, {"dtype": "bf16"})["trainable_params"]


QLORA_DRAWN = [pytest.param(cfg, method, training, id=label) for label, cfg, method, training in drawn_cases() if method["name"] == "qlora"]


@pytest.mark.parametrize("config, method, training", QLORA_DRAWN)
def test_qlora_static_after_bitsandbytes_casts_the_biases(config, method, training):
    """bitsandbytes' Linear4bit casts its bias to the compute dtype, in place, in its first forward (after
    prepare_model_for_kbit_training's fp32 cast, or with a compute dtype of its own): the weights, gradients and
    optimizer state training holds from then on."""
    est = pf.estimate(config, method, training)["training"]
    measured = measure(config, method, training, what=("static",))
    for key in ("weights_bytes", "gradients_bytes", "optimizer_bytes"):
        assert est[key] == measured[key], key


LORA_ONLY = [(mt, name, layers) for mt in ("gpt_neox", "llama", "qwen2", "phi3") for name in ("lora", "qlora") for layers in (None, [1])]


@pytest.mark.parametrize("mt, name, layers", LORA_ONLY, ids=[f"{mt}-{n}-{'layer1' if l else 'all'}" for mt, n, l in LORA_ONLY])
def test_bias_lora_only_trains_the_wrapped_layers_biases_and_saves_none(mt, name, layers):
    """bias="lora_only" trains the biases of the modules LoRA wraps, in the layers it wraps them
    (layers_to_transform), and PEFT's state dict saves none of them (it looks for "<module>.bias", the bias is
    at "<module>.base_layer.bias"): trainable parameters, gradients, AdamW state and adapter bytes as measured."""
    targets = {"gpt_neox": ["dense"], "phi3": ["qkv_proj", "o_proj"]}.get(mt, ["q_proj", "v_proj"])
    method = {"name": name, "r": 4, "target_modules": targets, "bias": "lora_only",
              **({"layers_to_transform": layers} if layers else {})}
    est = pf.estimate(TINY[mt], method, {"dtype": "bf16"}).to_dict()
    got = measure(TINY[mt], method, {"dtype": "bf16"}, what=("static",))
    assert (est["trainable_params"], est["training"]["gradients_bytes"], est["training"]["optimizer_bytes"],
            est["storage"]["adapter_bytes"]) == (got["trainable_params"], got["gradients_bytes"], got["optimizer_bytes"],
                                                 got["adapter_bytes"])


LAYERS_AND_OUTER = [
    ("llama", {"name": "lora", "r": 4, "target_modules": ["embed_tokens", "lm_head", "q_proj"], "layers_to_transform": [1]}),
    ("llama", {"name": "lora", "r": 4, "target_modules": ["model.layers.0.self_attn.q_proj", "v_proj"], "layers_to_transform": [1]}),
    ("granite", {"name": "qlora", "r": 2, "target_modules": ["down_proj", "embed_tokens"], "layers_to_transform": [0]}),
]


@pytest.mark.parametrize("case", LAYERS_AND_OUTER, ids=[f"{mt}-{m['name']}-{len(m['target_modules'])}" for mt, m in LAYERS_AND_OUTER])
def test_layers_to_transform_keeps_only_numbered_layers_but_exact_names(case):
    """PEFT's check_target_module_exists with layers_to_transform: a module matched by a name suffix is kept only
    inside a numbered layer of those indices (embed_tokens is dropped); a full module name listed as it is
    ("lm_head", "model.layers.0.self_attn.q_proj") is kept whatever its layer. Static numbers as measured."""
    mt, method = case
    training = {"dtype": "bf16", "batch_size": 2, "seq_len": 9}
    est = pf.estimate(TINY[mt], method, training).to_dict()
    got = measure(TINY[mt], method, training, what=("static",))
    assert (est["trainable_params"], est["storage"]["adapter_bytes"], est["training"]["optimizer_bytes"]) == (
        got["trainable_params"], got["adapter_bytes"], got["optimizer_bytes"])


def test_ia3_has_no_layers_to_transform_in_peft():
    method = {"name": "ia3", "target_modules": ["c_attn"], "feedforward_modules": [], "layers_to_transform": 0}
    with pytest.raises(pf.UnsupportedCombinationError, match="IA3Config has no layers_to_transform"):
        pf.estimate(TINY["gpt2"], method)
    with pytest.raises(TypeError, match="layers_to_transform"):  # the real stack refuses it too
        measure(TINY["gpt2"], method, {"dtype": "bf16", "batch_size": 2, "seq_len": 9}, what=("static",))



# Heads that do not divide the hidden size, head_dim given (found drawing at random, tests/draws.py): transformers 5's
# LlamaConfig, Gemma2Config and Gemma3TextConfig refuse it (validate_architecture), the other configs that read
# head_dim build it. The estimate refuses what transformers refuses and is exact on the rest.
HEADS_NOT_DIVIDING = {"hidden_size": 44, "num_attention_heads": 5, "num_key_value_heads": 1, "head_dim": 10}
REFUSING = ("llama", "gemma2", "gemma3_text")


@pytest.mark.parametrize("mt", [*REFUSING, "mistral", "qwen3", "gemma"])
def test_heads_that_do_not_divide_the_hidden_size_with_head_dim(mt):
    cfg = dict(TINY[mt], **HEADS_NOT_DIVIDING)
    method = {"name": "lora", "r": 2, "target_modules": "all-linear"}
    training = {"dtype": "fp32", "batch_size": 2, "seq_len": 5}
    if mt in REFUSING:
        with pytest.raises(pf.InvalidConfigError, match="num_attention_heads=5: must divide hidden_size=44"):
            pf.estimate(cfg, method, training)
        with pytest.raises(Exception, match="not a multiple of the number of attention heads"):
            measure(cfg, method, training, what=("static",))
        return
    est = pf.estimate(cfg, method, {**training, "device": "cpu"})
    got = measure(cfg, method, training, what=("static", "activations", "peak"))
    assert (est["trainable_params"], est["total_params"], est.training["activations_bytes"], est.training["peak_bytes"]) == (
        got["trainable_params"], got["total_params"], got["activations_bytes"], got["peak_bytes"])


# LoRA on lm_head (untied) beside trainable_token_indices (found drawing at random, tests/draws.py): PEFT's
# get_peft_model_state_dict saves no embedding base weight when trainable tokens are used (``using_trainable_tokens``:
# they are meant to save space), where lm_head in target_modules alone saves lm_head.base_layer.weight.
@pytest.mark.parametrize("tokens", [[8, 28, 33], {"embed_tokens": [8, 28]}, None], ids=["list", "dict", "no-tokens"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_adapter_bytes_of_lora_on_lm_head_with_trainable_tokens(tokens, dtype):
    cfg = dict(TINY["llama"], tie_word_embeddings=False)
    method = {"name": "lora", "r": 8, "target_modules": ["down_proj", "lm_head"]}
    if tokens is not None:
        method["trainable_token_indices"] = tokens
    training = {"dtype": dtype, "batch_size": 2, "seq_len": 5}
    est = pf.estimate(cfg, method, training)
    got = measure(cfg, method, training, what=("static",))
    assert (est["storage"]["adapter_bytes"], est["trainable_params"]) == (got["adapter_bytes"], got["trainable_params"])

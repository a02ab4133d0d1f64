"""Bad input: a clear error naming the field, the value and what is allowed, with the nearest match."""

from __future__ import annotations

import pytest

import peft_footprint as pf
from tests.cases import TINY

LLAMA = TINY["llama"]


def _err(*args, **kw) -> pf.PeftFootprintError:
    with pytest.raises(ValueError) as info:
        pf.estimate(*args, **kw)
    assert isinstance(info.value, pf.PeftFootprintError), type(info.value)
    return info.value


def test_unknown_model_type_suggests_nearest():
    e = _err({**LLAMA, "model_type": "lama"}, "lora")
    assert "'lama'" in str(e) and "Did you mean 'llama'" in str(e) and "mistral" in str(e)


def test_unknown_method_suggests_nearest():
    e = _err(LLAMA, "lroa")
    assert "Unknown method 'lroa'" in str(e) and "Did you mean 'lora'" in str(e) and "prefix_tuning" in str(e)


def test_peft_spelling_is_accepted():
    assert pf.estimate(LLAMA, "LORA")["method"]["name"] == "lora"
    assert pf.estimate(LLAMA, {"name": "PREFIX_TUNING", "num_virtual_tokens": 3})["method"]["name"] == "prefix_tuning"


def test_unknown_preset_suggests_nearest():
    e = _err("meta-llama/Llama-3.1-8b", "lora")
    assert "Did you mean 'meta-llama/Llama-3.1-8B'" in str(e)


@pytest.mark.parametrize("name, preset", [("gpt2", "openai-community/gpt2"), ("pythia-1b", "EleutherAI/pythia-1b"),
                                          ("qwen3-8b", "Qwen/Qwen3-8B")])
def test_preset_without_its_organization_suggests_the_hub_id(name, preset):
    assert f"Did you mean {preset!r}" in str(_err(name, "lora"))


def test_unlike_name_suggests_nothing():
    assert "Did you mean" not in str(_err("no-such-model-anywhere", "lora"))


def test_target_module_missing_names_available_modules():
    e = _err(LLAMA, {"name": "lora", "target_modules": ["q_prj"]})
    assert "target_modules" in str(e) and "Did you mean 'q_proj'" in str(e) and "down_proj" in str(e)


def test_target_module_of_unsupported_type():
    e = _err(LLAMA, {"name": "lora", "target_modules": ["input_layernorm"]})
    assert isinstance(e, pf.UnsupportedCombinationError) and "input_layernorm" in str(e)


@pytest.mark.parametrize("field", ["hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size"])
@pytest.mark.parametrize("value", [0, -3, 2.5, "big"])
def test_non_positive_or_non_integer_sizes(field, value):
    e = _err({**LLAMA, field: value}, "full")
    assert field in str(e) and repr(value) in str(e) and "positive integer" in str(e)


def test_heads_must_divide_hidden_without_head_dim():
    cfg = {k: v for k, v in LLAMA.items() if k != "head_dim"}
    e = _err({**cfg, "hidden_size": 70, "num_attention_heads": 6, "num_key_value_heads": 2}, "full")
    assert "num_attention_heads" in str(e) and "hidden_size=70" in str(e)


def test_kv_heads_must_divide_heads():
    e = _err({**LLAMA, "num_key_value_heads": 4}, "full")
    assert "num_key_value_heads" in str(e) and "num_attention_heads=6" in str(e)


def test_unknown_training_field_suggests_nearest():
    e = _err(LLAMA, "lora", {"batchsize": 4})
    assert "training.batchsize" in str(e) and "Did you mean 'batch_size'" in str(e)


def test_unknown_dtype_and_optimizer():
    assert "Did you mean 'bf16'" in str(_err(LLAMA, "lora", {"dtype": "bf61"}))
    assert "Did you mean 'adamw'" in str(_err(LLAMA, "lora", {"optimizer": "adamww"}))


def test_method_field_typo_and_bad_value():
    e = _err(LLAMA, {"name": "lora", "lora_alpa": 16})
    assert "lora_alpa" in str(e) and "Did you mean 'lora_alpha'" in str(e)
    e = _err(LLAMA, {"name": "lora", "r": 0})
    assert "lora.r" in str(e) and "0" in str(e)


def test_no_default_targets_for_model_type():
    e = _err(TINY["phi3"], "ia3")
    assert isinstance(e, pf.UnsupportedCombinationError) and "target_modules" in str(e) and "phi3" in str(e)


def test_merging_a_method_that_cannot_merge():
    e = _err(LLAMA, {"name": "prefix_tuning", "num_virtual_tokens": 3}, inference={"merged": True})
    assert "inference.merged" in str(e)


def test_wrong_types_for_whole_arguments():
    assert "model" in str(_err(42, "lora"))
    assert "method" in str(_err(LLAMA, 3.5))
    assert "training" in str(_err(LLAMA, "lora", [1, 2]))


def test_missing_model_type():
    e = _err({"hidden_size": 64}, "lora")
    assert "model_type" in str(e)


def test_a_multimodal_config_points_at_its_text_config():
    """Gemma 3's checkpoints ship a multimodal config (model_type gemma3) whose text_config is the supported
    gemma3_text decoder: the error says to pass that, not the nearest name ('gemma')."""
    text = {"model_type": "gemma3_text", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 1, "head_dim": 32, "intermediate_size": 128, "vocab_size": 300}
    with pytest.raises(pf.UnsupportedCombinationError, match=r"multimodal.*text_config.*'gemma3_text'") as err:
        pf.estimate({"model_type": "gemma3", "text_config": text}, "lora")
    assert "Did you mean" not in str(err.value)
    assert pf.estimate(text, "lora").to_dict()["trainable_params"] > 0  # what it says to pass works
    with pytest.raises(pf.UnknownNameError, match="Unknown model_type 'gemma4'"):  # no usable text_config: as before
        pf.estimate({"model_type": "gemma4", "text_config": {"model_type": "vision"}}, "lora")


def test_a_required_method_field_is_named_with_what_it_is():
    """trainable_tokens needs its rows: by name alone, or a dict without them, the error names the field and gives an
    example (not pydantic's own traceback)."""
    for method in ("trainable_tokens", {"name": "trainable_tokens"}, {"name": "tokens", "target_modules": ["embed_tokens"]}):
        with pytest.raises(pf.InvalidConfigError, match=r"trainable_tokens\.token_indices.*needs it: the rows of the input embedding"):
            pf.estimate("meta-llama/Llama-3.2-1B", method)
    with pytest.raises(pf.InvalidConfigError, match="0 to 128255"):
        pf.estimate("meta-llama/Llama-3.2-1B", {"name": "trainable_tokens", "token_indices": [128256]})

"""Property-based tests (hypothesis) over random *valid* configurations of every architecture.

Invariants: trainable <= total; byte counts are non-negative Python ints (never floats); memory grows
monotonically with LoRA rank, virtual tokens, and (for retained outputs) batch and sequence length; merged
LoRA deploys exactly the base model; ``to_dict()`` is JSON and round-trips; results are deterministic; and
sizes from toys to multi-trillion-parameter models, 1M-entry vocabularies and 1M-token sequences stay exact
integers, equal to an independent closed-form parameter count written here from each architecture's definition.
"""

from __future__ import annotations

import json
import warnings

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import peft_footprint as pf
from peft_footprint.architectures import ARCHITECTURES

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

ARCHS = sorted(pf.ARCHITECTURES.names())
# transformers' config classes give these a head_dim default that is NOT hidden_size // heads
DEFAULT_HEAD_DIM = {"gemma": 256, "gemma2": 256, "gemma3_text": 256, "qwen3": 128}
NO_HEAD_DIM = {"gpt2", "gpt_neox", "opt"}  # the config class has no head_dim / num_key_value_heads field
HAS_PEFT_DEFAULTS = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt2", "gpt_neox", "opt"}
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


# ---- an independent closed-form parameter count ----------------------------------------------------


# the field a model type's config reads its MLP width from (GPT-2's and OPT's configs ignore intermediate_size)
MLP_FIELD = {"gpt2": "n_inner", "opt": "ffn_dim"}


def closed_form_params(c: dict) -> int:
    """Parameters of the causal LM transformers builds from ``c`` (every size field given explicitly)."""
    mt = c["model_type"]
    h, L, nh, V, i = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["vocab_size"], c[MLP_FIELD.get(mt, "intermediate_size")]
    kv = c.get("num_key_value_heads", nh) if mt not in NO_HEAD_DIM else nh
    d = c.get("head_dim") or DEFAULT_HEAD_DIM.get(mt) or h // nh
    if mt in NO_HEAD_DIM:
        d = h // nh
    tied = c["tie_word_embeddings"]
    q, k = nh * d, kv * d
    attn = h * q + 2 * h * k + q * h  # q, k, v, o weights
    head = 0 if tied else V * h
    if mt in ("llama", "granite", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo2"):
        ab = c.get("attention_bias", False)
        layer = attn + 3 * h * i  # gate, up, down
        if mt == "qwen2":
            layer += q + 2 * k  # q/k/v biases
        elif ab:
            layer += q + 2 * k + h
        if c.get("mlp_bias"):
            layer += 2 * i + h
        norms = {"gemma2": 4, "gemma3_text": 4}.get(mt, 2)
        layer += norms * h
        if mt in ("qwen3", "gemma3_text"):
            layer += 2 * d  # per-head q_norm, k_norm
        if mt == "olmo2":
            layer += q + k  # q_norm, k_norm over the whole projections
        return L * layer + V * h + head + h
    if mt == "phi3":
        layer = h * (q + 2 * k) + q * h + h * 2 * i + i * h + 2 * h
        return L * layer + V * h + head + h
    if mt == "starcoder2":
        b = c["use_bias"]
        layer = attn + h * i + i * h + 4 * h + (q + 2 * k + h + i + h if b else 0)
        return L * layer + V * h + head + 2 * h
    if mt == "gpt2":
        layer = (h * 3 * h + 3 * h) + (h * h + h) + (h * i + i) + (i * h + h) + 4 * h
        return L * layer + V * h + c["n_positions"] * h + 2 * h + head
    if mt == "gpt_neox":
        b = c["attention_bias"]
        layer = h * 3 * h + h * h + (3 * h + h if b else 0) + (h * i + i) + (i * h + h) + 4 * h
        return L * layer + V * h + head + 2 * h
    if mt == "opt":
        p, b = c["word_embed_proj_dim"], c["enable_bias"]
        layer = 4 * h * h + (4 * h if b else 0) + h * i + i * h + ((i + h) if b else 0) + 4 * h
        outer = V * p + (c["max_position_embeddings"] + 2) * h + 2 * h + (2 * h * p if p != h else 0) + (0 if tied else V * p)
        return L * layer + outer
    raise AssertionError(f"no closed form for {mt}")


# ---- strategies ------------------------------------------------------------------------------------


@st.composite
def configs(draw, model_type=None, *, big: bool = False):
    """A valid config dict with every size field explicit: odd sizes, GQA ratios, explicit head_dim."""
    mt = model_type or draw(st.sampled_from(ARCHS))
    if big:
        heads = draw(st.sampled_from([8, 16, 32, 64, 96, 128]))
        layers = draw(st.integers(1, 160))
        vocab = draw(st.integers(1, 2**20))
        inter = draw(st.integers(1, 2**18))
        head_dim = draw(st.sampled_from([64, 128, 256]))
    else:
        heads = draw(st.integers(1, 8))
        layers = draw(st.integers(1, 4))
        vocab = draw(st.integers(2, 300))
        inter = draw(st.integers(1, 200))
        head_dim = draw(st.integers(1, 24))
    divisors = [k for k in range(1, heads + 1) if heads % k == 0]
    kv = draw(st.sampled_from(divisors))
    c: dict = {"model_type": mt, "num_hidden_layers": layers, "num_attention_heads": heads, "vocab_size": vocab,
               MLP_FIELD.get(mt, "intermediate_size"): inter, "tie_word_embeddings": draw(st.booleans())}
    if mt in NO_HEAD_DIM:
        c["hidden_size"] = heads * head_dim
    else:
        c["num_key_value_heads"] = kv
        # (any hidden_size, but a multiple of the heads where transformers' config class requires one)
        step = heads if ARCHITECTURES.get(mt).heads_divide_hidden else 1
        if draw(st.booleans()):  # explicit head_dim, hidden_size need not be heads x head_dim
            c["head_dim"] = head_dim
            c["hidden_size"] = step * draw(st.integers(1, (2**16 if big else 160) // step))
        elif mt in DEFAULT_HEAD_DIM:  # the family's default head_dim applies; any hidden_size
            c["hidden_size"] = step * draw(st.integers(1, (2**16 if big else 160) // step))
        else:
            c["hidden_size"] = heads * head_dim
    if mt in ("llama", "granite", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo2"):
        c["attention_bias"] = draw(st.booleans())
    if mt in ("llama", "granite"):
        c["mlp_bias"] = draw(st.booleans())
    if mt == "starcoder2":
        c["use_bias"] = draw(st.booleans())
    if mt == "gpt_neox":
        c["attention_bias"] = draw(st.booleans())
    if mt == "opt":
        c["enable_bias"] = draw(st.booleans())
        c["word_embed_proj_dim"] = draw(st.sampled_from([c["hidden_size"], draw(st.integers(1, 2**16 if big else 160))]))
        c["max_position_embeddings"] = draw(st.integers(1, 2**20 if big else 300))
    if mt == "gpt2":
        c["n_positions"] = draw(st.integers(1, 2**20 if big else 300))
    return c


def _default_targets_ok(mt: str) -> bool:
    return mt in HAS_PEFT_DEFAULTS


@st.composite
def methods(draw, c: dict):
    """A random valid method for config ``c``."""
    mt = c["model_type"]
    name = draw(st.sampled_from(["full", "lora", "qlora", "adapter", "prefix_tuning", "prompt_tuning", "p_tuning", "ia3",
                                 "trainable_tokens"]))
    if name == "full":
        return {"name": "full"}
    if name == "trainable_tokens":
        return {"name": name, "token_indices": draw(st.lists(st.integers(0, c["vocab_size"] - 1), min_size=1, max_size=8))}
    if name in ("lora", "qlora"):
        m = {"name": name, "r": draw(st.integers(1, 64)), "lora_alpha": draw(st.integers(1, 64))}
        if draw(st.booleans()) or not _default_targets_ok(mt):
            m["target_modules"] = "all-linear"
        m["use_dora"] = draw(st.booleans())
        m["bias"] = draw(st.sampled_from(["none", "all", "lora_only"]))
        if draw(st.booleans()):  # PEFT's trainable tokens on the input embedding (and a tied head)
            m["trainable_token_indices"] = draw(st.lists(st.integers(0, c["vocab_size"] - 1), min_size=1, max_size=8))
        if mt == "gpt2" and draw(st.booleans()):  # LoRA on the position embedding
            m["target_modules"] = ["c_attn", "wpe"]
        return m
    if name == "adapter":
        return {"name": "adapter", "config": draw(st.sampled_from(["seq_bn", "double_seq_bn"])),
                "reduction_factor": draw(st.sampled_from([1, 2, 3, 16, 0.5, 7.5]))}
    if name == "ia3":
        if _default_targets_ok(mt) and draw(st.booleans()):
            return {"name": "ia3"}
        return {"name": "ia3", "target_modules": "all-linear", "feedforward_modules": []}
    m = {"name": name, "num_virtual_tokens": draw(st.integers(1, 64))}
    if name in ("prompt_tuning", "p_tuning") and mt == "opt":
        m["token_dim"] = c["word_embed_proj_dim"]  # the width of OPT's input embeddings
    if name == "p_tuning":
        m["encoder_hidden_size"] = draw(st.integers(1, 64))
        m["encoder_reparameterization_type"] = draw(st.sampled_from(["MLP", "LSTM"]))
    if name == "prefix_tuning":
        m["prefix_projection"] = draw(st.booleans())
    return m


# bitsandbytes' 8-bit optimizers keep fp32 state for tensors under 4096 elements and 8-bit state above, so their
# state legitimately shrinks when a tensor crosses that size: monotonicity holds for the others
MONOTONE_OPTIMIZERS = sorted(n for n in pf.OPTIMIZERS.names() if "8bit" not in n)
monotone_trainings = st.fixed_dictionaries(
    {"dtype": st.sampled_from(["bf16", "fp16", "fp32"]), "optimizer": st.sampled_from(MONOTONE_OPTIMIZERS),
     "batch_size": st.integers(1, 16), "seq_len": st.integers(1, 4096)}
)
trainings = st.fixed_dictionaries(
    {"dtype": st.sampled_from(["bf16", "fp16", "fp32"]), "optimizer": st.sampled_from(sorted(pf.OPTIMIZERS.names())),
     "batch_size": st.integers(1, 16), "seq_len": st.integers(1, 4096)}
)


def run(model, method, training=None, inference=None) -> dict:
    """``estimate(...).to_dict()``; a documented refusal (PEFT/transformers would refuse too) rejects the example."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pf.estimate(model, method, training, inference).to_dict()
        except pf.UnsupportedCombinationError:
            assume(False)
            raise


def walk(d, path=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from walk(v, f"{path}.{k}" if path else k)
    elif isinstance(d, list):
        for j, v in enumerate(d):
            yield from walk(v, f"{path}[{j}]")
    else:
        yield path, d


def assert_exact_ints(d: dict) -> None:
    """Every count and byte figure is a Python int (never a float or numpy scalar), and non-negative."""
    for path, v in walk(d):
        leaf = path.rsplit(".", 1)[-1]
        if leaf.endswith(("_bytes", "_params", "flops")) or leaf in ("num_tasks",):
            if v is None:
                continue
            assert type(v) is int, f"{path}={v!r} is {type(v).__name__}, not int"
            assert v >= 0, f"{path}={v} < 0"


# ---- properties ------------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data())
def test_invariants_of_any_valid_configuration(data):
    c = data.draw(configs())
    m = data.draw(methods(c))
    t = data.draw(trainings)
    d = run(c, m, t)
    tr = d["training"]
    assert 0 <= d["trainable_params"] <= d["total_params"]
    assert_exact_ints(d)
    if m["name"] == "full":
        assert d["trainable_params"] == d["total_params"] == closed_form_params(c)
        assert tr["weights_bytes"] == closed_form_params(c) * BYTES[t["dtype"]]
        assert tr["gradients_bytes"] == tr["weights_bytes"]
    elif m["name"] != "qlora":  # the base stays as it is; the method only adds parameters
        assert d["total_params"] > closed_form_params(c)
        assert d["total_params"] - d["trainable_params"] <= closed_form_params(c)
    assert tr["persistent_bytes"] >= tr["weights_bytes"] + tr["gradients_bytes"] + tr["optimizer_bytes"]
    if tr.get("peak_bytes") is not None:
        assert tr["peak_bytes"] >= tr["weights_bytes"] + tr["optimizer_bytes"]
    if tr.get("activations_bytes") is not None:
        assert tr["activations_bytes"] >= 0
    # JSON-serialisable, and round-trips unchanged
    assert json.loads(json.dumps(d)) == d
    assert d["schema_version"] == pf.SCHEMA_VERSION
    # deterministic: same inputs (fresh copies) -> identical result
    assert run(json.loads(json.dumps(c)), dict(m), dict(t)) == d


def _assert_more_trainable(a: dict, b: dict) -> None:
    """b trains more parameters than a: more of everything they cost."""
    assert b["trainable_params"] > a["trainable_params"]
    for key in ("persistent_bytes", "gradients_bytes", "weights_bytes"):
        assert b["training"][key] > a["training"][key], key
    assert b["training"]["optimizer_bytes"] >= a["training"]["optimizer_bytes"]
    assert b["storage"]["adapter_bytes"] > a["storage"]["adapter_bytes"]


@SETTINGS
@given(data=st.data())
def test_memory_grows_with_lora_rank(data):
    c = data.draw(configs())
    name = data.draw(st.sampled_from(["lora", "qlora"]))
    r1 = data.draw(st.integers(1, 128))
    r2 = data.draw(st.integers(r1 + 1, 256))
    t = data.draw(monotone_trainings)
    extra = {} if c["model_type"] in HAS_PEFT_DEFAULTS and data.draw(st.booleans()) else {"target_modules": "all-linear"}
    a = run(c, {"name": name, "r": r1, **extra}, t)
    b = run(c, {"name": name, "r": r2, **extra}, t)
    _assert_more_trainable(a, b)
    assert b["storage"]["checkpoint_file_bytes"] > a["storage"]["checkpoint_file_bytes"]
    # the exact increment: r x (in + out) fp32 values per target, per rank step
    per_rank = (b["trainable_params"] - a["trainable_params"]) // (r2 - r1)
    assert (b["trainable_params"] - a["trainable_params"]) == per_rank * (r2 - r1)
    assert b["training"]["gradients_bytes"] - a["training"]["gradients_bytes"] == 4 * per_rank * (r2 - r1)


@SETTINGS
@given(data=st.data())
def test_memory_grows_with_virtual_tokens(data):
    c = data.draw(configs())
    name = data.draw(st.sampled_from(["prefix_tuning", "prompt_tuning", "p_tuning"]))
    n1 = data.draw(st.integers(1, 200))
    n2 = data.draw(st.integers(n1 + 1, 400))
    t = {**data.draw(monotone_trainings), "retain_outputs": data.draw(st.booleans())}
    extra = {"token_dim": c["word_embed_proj_dim"]} if c["model_type"] == "opt" and name != "prefix_tuning" else {}
    a = run(c, {"name": name, "num_virtual_tokens": n1, **extra}, t)
    b = run(c, {"name": name, "num_virtual_tokens": n2, **extra}, t)
    _assert_more_trainable(a, b)
    for key in ("activations_bytes", "peak_bytes"):
        if a["training"].get(key) is not None:
            assert b["training"][key] >= a["training"][key], key


@SETTINGS
@given(data=st.data())
def test_retained_outputs_grow_with_batch_and_sequence(data):
    c = data.draw(configs())
    m = data.draw(methods(c))
    base = data.draw(trainings)
    use_cache = data.draw(st.booleans())
    grow = data.draw(st.sampled_from(["batch_size", "seq_len"]))
    t1 = {**base, "retain_outputs": True, "use_cache": use_cache}
    t2 = {**t1, grow: t1[grow] + data.draw(st.integers(1, 1000))}
    a, b = run(c, m, t1), run(c, m, t2)
    # the logits alone grow by batch x extra positions x vocab x element size
    assert b["training"]["retained_outputs_bytes"] > a["training"]["retained_outputs_bytes"]
    assert b["training"]["persistent_bytes"] > a["training"]["persistent_bytes"]
    # what does not depend on the shape does not move
    for key in ("weights_bytes", "gradients_bytes", "optimizer_bytes"):
        assert b["training"][key] == a["training"][key], key
    for key in ("activations_bytes", "peak_bytes", "step_flops"):
        if a["training"].get(key) is not None:
            assert b["training"][key] >= a["training"][key], key
    # without retain_outputs nothing is kept between steps
    off = run(c, m, {**t2, "retain_outputs": False})
    assert off["training"]["retained_outputs_bytes"] == 0


@SETTINGS
@given(data=st.data())
def test_merged_lora_deploys_exactly_the_base(data):
    c = data.draw(configs())
    t = data.draw(trainings)
    r = data.draw(st.integers(1, 64))
    extra = {} if c["model_type"] in HAS_PEFT_DEFAULTS and data.draw(st.booleans()) else {"target_modules": "all-linear"}
    bias = data.draw(st.sampled_from(["none", "all"]))
    merged = run(c, {"name": "lora", "r": r, "bias": bias, "merged": True, **extra}, t)
    separate = run(c, {"name": "lora", "r": r, "bias": bias, **extra}, t)
    full = run(c, "full", t)
    n = data.draw(st.integers(1, 50))
    many = run(c, {"name": "lora", "r": r, "bias": bias, **extra}, t, {"num_tasks": n})
    assert merged["method"]["merged"] is True
    assert merged["storage"]["deploy_bytes"] == full["storage"]["deploy_bytes"] == closed_form_params(c) * BYTES[t["dtype"]]
    assert separate["storage"]["deploy_bytes"] == full["storage"]["deploy_bytes"] + separate["storage"]["adapter_bytes"]
    assert many["storage"]["deploy_bytes_all_tasks"] == full["storage"]["deploy_bytes"] + n * separate["storage"]["adapter_bytes"]


# ---- huge sizes stay exact ------------------------------------------------------------------------


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_huge_models_stay_exact(data):
    c = data.draw(configs(big=True))
    t = data.draw(trainings)
    d = run(c, "full", t)
    n = closed_form_params(c)
    assert d["total_params"] == n and type(d["total_params"]) is int
    e = BYTES[t["dtype"]]
    assert d["training"]["weights_bytes"] == n * e
    assert d["training"]["gradients_bytes"] == n * e
    if t["optimizer"] in ("adamw", "adam"):
        assert d["training"]["optimizer_bytes"] == 2 * n * e
    assert_exact_ints(d)
    assert json.loads(json.dumps(d)) == d


@pytest.mark.parametrize("model_type", ["llama", "qwen3", "gpt2", "opt"])
def test_two_trillion_parameters_and_a_million_tokens_exact(model_type):
    """A ~2T-parameter model with a 1M-entry vocabulary and 1M-token sequences: every byte count exact."""
    L, h, nh, kv, i, V = 160, 32768, 256, 16, 100352, 2**20 + 3
    c = {"model_type": model_type, "num_hidden_layers": L, "hidden_size": h, "num_attention_heads": nh,
         MLP_FIELD.get(model_type, "intermediate_size"): i, "vocab_size": V, "tie_word_embeddings": False}
    if model_type in ("llama", "qwen3"):
        c.update(num_key_value_heads=kv, head_dim=128, attention_bias=False)
    if model_type == "opt":
        c.update(word_embed_proj_dim=h, max_position_embeddings=2**21, enable_bias=True)  # learned positions: room for 2^20 + 7
    if model_type == "gpt2":
        c.update(n_positions=2**21)
    n = closed_form_params(c)
    assert n > 1.5e12
    seq, batch = 2**20 + 7, 8191
    d = run(c, {"name": "lora", "r": 64, "target_modules": "all-linear"},
            {"dtype": "bf16", "batch_size": batch, "seq_len": seq, "retain_outputs": True})
    assert d["total_params"] - d["trainable_params"] == n
    assert d["training"]["retained_outputs_bytes"] == batch * seq * V * 2  # the bf16 logits, exactly
    assert d["training"]["retained_outputs_bytes"] > 2**53  # beyond float precision: must be an exact int
    assert_exact_ints(d)
    full = run(c, "full", {"dtype": "fp32"})
    assert full["training"]["weights_bytes"] == 4 * n
    assert full["training"]["optimizer_bytes"] == 8 * n
    assert full["training"]["persistent_bytes"] == 16 * n


@pytest.mark.parametrize("model_type", ARCHS)
def test_million_parameter_toy_exact(model_type):
    c = {"model_type": model_type, "num_hidden_layers": 2, "hidden_size": 96, "num_attention_heads": 4,
         MLP_FIELD.get(model_type, "intermediate_size"): 257, "vocab_size": 4099, "tie_word_embeddings": True}
    if model_type not in NO_HEAD_DIM:
        c.update(num_key_value_heads=2, head_dim=24)
    if model_type == "opt":
        c.update(word_embed_proj_dim=96, max_position_embeddings=512)
    if model_type == "gpt2":
        c.update(n_positions=512)
    if model_type == "starcoder2":
        c.update(use_bias=True)
    if model_type == "gpt_neox":
        c.update(attention_bias=True)
    if model_type == "opt":
        c.update(enable_bias=True)
    d = run(c, "full", {"dtype": "fp32"})
    assert d["total_params"] == closed_form_params(c)
    assert 0.5e6 < d["total_params"] < 2e6

"""Configurations drawn at random: architecture, sizes, head counts, method and its options, training options.

The estimate is checked on setups nobody picked: :func:`draw` makes one (label, config, method, training) from a
seeded generator, over every architecture's own fields (GQA ratios, explicit head_dim, tying, biases, windows,
dropouts, rotary widths), every PEFT method with its options (targets, rank, dropout, DoRA, bias, modules_to_save,
QLoRA's quantization options, prefix projection, virtual tokens, trainable tokens) and every training option
(dtype, autocast, attention kernel, checkpointing, padding, batch, length, optimizer, gradient accumulation),
at sizes a CPU runs in a second. ``tools/draw.py`` runs any number of them against the harness;
tests/test_random_draws.py runs a fixed few in CI.
"""

from __future__ import annotations

import random

from peft_footprint.architectures import ARCHITECTURES
from tests.cases import HAS_PEFT_DEFAULTS, IDS

MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "gpt2", "gpt_neox", "opt",
               "olmo2", "granite", "starcoder2")
_EXPLICIT_HEAD_DIM = {"llama", "mistral", "qwen3", "gemma", "gemma2", "gemma3_text"}  # (head_dim read from the config)
_GQA = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "olmo2", "granite", "starcoder2"}
_LAYER_FIELD = {"gpt2": "n_layer"}
_HEAD = {"gpt_neox": "embed_out"}  # the output layer's module name (else lm_head)


def _config(rng: random.Random, mt: str, wide: bool) -> dict:
    heads = rng.randint(1, 8) if not wide else rng.choice((4, 6, 8, 12, 16))
    kv = rng.choice([k for k in range(1, heads + 1) if heads % k == 0]) if mt in _GQA else heads
    d = rng.choice((2, 4, 6, 8, 10, 12, 16, 20, 24, 32)) if not wide else rng.choice((16, 32, 48, 64, 80, 96, 128))
    layers = rng.randint(1, 4) if not wide else rng.randint(1, 2)
    vocab = rng.randint(24, 400) if not wide else rng.randint(1000, 8000)
    inter = (rng.randint(8, 260) if rng.random() < 0.9 else rng.randint(1, 7)) if not wide else rng.randint(64, 1536)
    if mt == "gpt2":
        cfg = {"model_type": "gpt2", "n_embd": heads * d, "n_layer": layers, "n_head": heads, "n_positions": 512, "vocab_size": vocab,
               "attn_pdrop": 0.0, "tie_word_embeddings": rng.random() < 0.8}
        if rng.random() < 0.3:
            cfg["activation_function"] = rng.choice(("gelu_new", "gelu", "relu", "gelu_fast", "quick_gelu"))
        if rng.random() < 0.2:
            cfg["embd_pdrop"] = cfg["resid_pdrop"] = 0.0
        return cfg
    if mt == "opt":
        hidden = heads * d
        cfg = {"model_type": "opt", "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads, "ffn_dim": inter,
               "vocab_size": vocab, "max_position_embeddings": 512}
        if rng.random() < 0.3:
            cfg["word_embed_proj_dim"] = rng.choice((8, 16, 24, 32))
        if rng.random() < 0.2:
            cfg["do_layer_norm_before"] = False
        if rng.random() < 0.2:
            cfg["dropout"] = 0.0
        return cfg
    if mt == "gpt_neox":
        cfg = {"model_type": "gpt_neox", "hidden_size": heads * d, "num_hidden_layers": layers, "num_attention_heads": heads,
               "intermediate_size": inter, "vocab_size": vocab, "max_position_embeddings": 512,
               "rotary_pct": rng.choice((0.25, 0.5, 1.0)), "tie_word_embeddings": rng.random() < 0.2}
        if rng.random() < 0.3:
            cfg["use_parallel_residual"] = False
        return cfg
    hidden = heads * d if mt not in _EXPLICIT_HEAD_DIM or rng.random() < 0.5 else rng.randint(2, 24) * (4 if not wide else 32)
    if ARCHITECTURES.get(mt).heads_divide_hidden and hidden % heads:  # (transformers 5's config refuses it)
        hidden = heads * max(1, hidden // heads)
    cfg = {"model_type": mt, "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": kv, "intermediate_size": inter, "vocab_size": vocab, "max_position_embeddings": 512}
    if mt in _EXPLICIT_HEAD_DIM:
        cfg["head_dim"] = d
    if mt in ("llama", "qwen3", "olmo2", "granite", "gemma", "gemma2") and rng.random() < 0.3:
        cfg["attention_bias"] = True
    if mt == "llama" and rng.random() < 0.2:
        cfg["mlp_bias"] = True
    if mt in ("mistral", "gemma2", "gemma3_text"):
        cfg["sliding_window"] = rng.choice((4, 8, 16, 64))
    if mt == "phi3":
        cfg["original_max_position_embeddings"] = 512
        if rng.random() < 0.3:
            cfg["sliding_window"] = rng.choice((5, 9))
    if mt == "granite":
        cfg.update(embedding_multiplier=rng.choice((1.0, 12.0)), residual_multiplier=rng.choice((1.0, 0.22)),
                   attention_multiplier=rng.choice((1.0, 0.0078125)), logits_scaling=rng.choice((1.0, 8.0)))
    if mt == "gemma2" and rng.random() < 0.3:
        cfg["final_logit_softcapping"] = None
    if rng.random() < 0.3:
        cfg["tie_word_embeddings"] = rng.random() < 0.5
    return cfg


# config fields most setups leave at their defaults, per model type (dropouts in attention are drawn with eager only)
_RARE_FIELDS = {
    "gpt2": ({"resid_pdrop": 0.0}, {"embd_pdrop": 0.0}, {"reorder_and_upcast_attn": True}, {"scale_attn_by_inverse_layer_idx": True},
             {"scale_attn_weights": False}),
    "opt": ({"activation_dropout": 0.1}, {"layer_norm_elementwise_affine": False}, {"enable_bias": False}),
    "gpt_neox": ({"hidden_dropout": 0.1}, {"attention_bias": False}),
    "phi3": ({"resid_pdrop": 0.1}, {"embd_pdrop": 0.1}, {"partial_rotary_factor": 0.5}),
    "starcoder2": ({"residual_dropout": 0.1}, {"embedding_dropout": 0.1}, {"use_bias": False}),
    "gemma2": ({"attn_logit_softcapping": None}, {"query_pre_attn_scalar": 7}),
    "gemma3_text": ({"attn_logit_softcapping": 30.0}, {"query_pre_attn_scalar": 5}, {"final_logit_softcapping": 15.0}),
    "qwen2": ({"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1},),
    "qwen3": ({"use_sliding_window": True, "sliding_window": 5, "max_window_layers": 1},),
}
_ATTENTION_DROPOUT = {"gpt2": "attn_pdrop", "opt": "attention_dropout", "gpt_neox": "attention_dropout"}


def _rare_fields(rng: random.Random, mt: str, cfg: dict) -> None:
    """Now and then: another MLP activation (any the estimate models), and one of the model type's rarer fields."""
    from peft_footprint.act_fns import ACT_FNS, act_field

    if rng.random() < 0.15:
        cfg[act_field(mt)] = rng.choice(sorted(ACT_FNS))
    if mt in _RARE_FIELDS and rng.random() < 0.3:
        cfg.update(rng.choice(_RARE_FIELDS[mt]))


def _layout(cfg: dict):
    import peft_footprint as pf

    return pf.ModelSpec.from_any(cfg).layout


def _targets(rng: random.Random, mt: str, cfg: dict) -> object:
    """Default targets (where PEFT has them), all-linear, or a random subset of a layer's linear modules."""
    names = sorted({m.path.rsplit(".", 1)[-1] for m in _layout(cfg).layer_linears})
    roll = rng.random()
    if roll < 0.3 and mt in HAS_PEFT_DEFAULTS:
        return None
    if roll < 0.65:
        return "all-linear"
    subset = rng.sample(names, rng.randint(1, len(names)))
    if rng.random() < 0.15:
        subset.append(_HEAD.get(mt, "lm_head"))
    return subset


def _rare_lora_options(rng: random.Random, m: dict, mt: str, cfg: dict) -> None:
    """Options most setups leave alone: layer subsets, per-module ranks and alphas, rsLoRA, lora_bias, excluded
    modules, LoRA on the input embedding."""
    if rng.random() > 0.35:
        return
    layers = cfg.get(_LAYER_FIELD.get(mt, "num_hidden_layers"))
    names = sorted({x.path.rsplit(".", 1)[-1] for x in _layout(cfg).layer_linears})
    targets = m.get("target_modules")
    listed = isinstance(targets, list)
    roll = rng.random()
    if roll < 0.2 and listed and layers > 1:
        m["layers_to_transform"] = sorted(rng.sample(range(layers), rng.randint(1, layers - 1)))
    elif roll < 0.4:
        m["rank_pattern"] = {rng.choice(names): rng.choice((1, 3, 5))}
        if rng.random() < 0.5:
            m["alpha_pattern"] = {rng.choice(names): 4}
    elif roll < 0.55:
        m["use_rslora"] = True
    elif roll < 0.7 and m["name"] == "lora" and not m.get("use_dora"):
        m["lora_bias"] = True
        if m.get("bias", "none") != "none":
            m["bias"] = "none"
    elif roll < 0.85 and targets == "all-linear":
        m["exclude_modules"] = [rng.choice(names)]
    elif m["name"] == "lora" and listed and mt not in ("gpt2", "opt") and "trainable_token_indices" not in m:
        m["target_modules"] = [*targets, "embed_in" if mt == "gpt_neox" else "embed_tokens"]


def _method(rng: random.Random, mt: str, cfg: dict) -> dict:
    kind = rng.choice(("full", "lora", "lora", "lora", "qlora", "qlora", "ia3", "prefix_tuning", "prompt_tuning", "p_tuning",
                       "trainable_tokens"))
    vocab = cfg["vocab_size"]
    if kind == "full":
        return {"name": "full"}
    if kind in ("lora", "qlora"):
        m = {"name": kind, "r": rng.choice((1, 2, 4, 8, 16)), "lora_alpha": rng.choice((8, 16))}
        targets = _targets(rng, mt, cfg)
        if targets is not None:
            m["target_modules"] = targets
        if rng.random() < 0.3:
            m["lora_dropout"] = 0.1
        if rng.random() < 0.25:
            m["use_dora"] = True
        if rng.random() < 0.2:
            m["bias"] = rng.choice(("all", "lora_only"))
        if rng.random() < 0.15 and kind == "lora":
            m["modules_to_save"] = [_HEAD.get(mt, "lm_head")]
        _rare_lora_options(rng, m, mt, cfg)
        if kind == "qlora":
            if rng.random() < 0.4:
                m["bnb_4bit_quant_type"] = "fp4"
            if rng.random() < 0.4:
                m["bnb_4bit_use_double_quant"] = False
            if rng.random() < 0.25:
                m["prepare_model_for_kbit_training"] = False
            if rng.random() < 0.2:
                m["bnb_4bit_compute_dtype"] = "fp32"
        elif rng.random() < 0.1:
            m["trainable_token_indices"] = sorted(rng.sample(range(vocab), rng.randint(1, 4)))
        return m
    if kind == "ia3":
        if mt in HAS_PEFT_DEFAULTS and rng.random() < 0.5:
            return {"name": "ia3"}
        if rng.random() < 0.5:
            return {"name": "ia3", "target_modules": "all-linear", "feedforward_modules": []}
        names = sorted({x.path.rsplit(".", 1)[-1] for x in _layout(cfg).layer_linears})
        targets = rng.sample(names, rng.randint(1, len(names)))
        return {"name": "ia3", "target_modules": targets, "feedforward_modules": rng.sample(targets, rng.randint(0, len(targets)))}
    if kind == "trainable_tokens":
        return {"name": "trainable_tokens", "token_indices": sorted(rng.sample(range(vocab), rng.randint(1, 5)))}
    n = rng.randint(1, 10)
    m = {"name": kind, "num_virtual_tokens": n}
    if kind == "prefix_tuning" and rng.random() < 0.4:
        m.update(prefix_projection=True, encoder_hidden_size=rng.choice((8, 16, 33)))
    if kind == "p_tuning":
        m["encoder_hidden_size"] = rng.choice((8, 20, 32))
    if mt == "opt" and kind in ("prompt_tuning", "p_tuning") and cfg.get("word_embed_proj_dim"):
        m["token_dim"] = cfg["word_embed_proj_dim"]  # (PEFT's default token_dim is hidden_size)
    return m


def _training(rng: random.Random, method: dict, wide: bool) -> dict:
    precision = rng.choice(("bf16", "bf16", "fp32", "fp32", "autocast", "fp16") if not wide else ("fp32", "fp32", "bf16", "autocast"))
    t = {"batch_size": rng.randint(1, 4) if not wide else rng.randint(1, 3),
         "seq_len": rng.choice((1, 2, 5, 7, 9, 11, 16, 17, 23, 29, 33) if not wide else (1, 64, 96, 127, 128, 200)),
         "dtype": "fp32" if precision == "autocast" else precision,
         "attn_implementation": rng.choice(("sdpa", "eager")),
         "gradient_checkpointing": rng.random() < 0.4 and method["name"] != "prefix_tuning"}
    if precision == "autocast":
        t["mixed_precision"] = "bf16"
    if rng.random() < 0.2:
        t["padding_mask"] = True
    if rng.random() < 0.3:
        t["optimizer"] = rng.choice(("sgd", "sgd_momentum", "adafactor", "adamw_fused"))
    if rng.random() < 0.15:
        t["gradient_accumulation_steps"] = 2
    if rng.random() < 0.1 and not t["gradient_checkpointing"]:
        t["use_cache"] = True  # (transformers' default config.use_cache: the model's own cache, held through backward)
    return t


def draw(rng: random.Random, wide: bool = False) -> tuple[str, dict, dict, dict]:
    """One random setup: (label, config, method, training). ``wide``: 64-2048 wide, 1-2 layers, vocabularies of 1k-8k,
    up to 200 tokens (mostly fp32: this CPU emulates half-precision matmuls), where the tiny setups are 2-256 wide."""
    mt = rng.choice(MODEL_TYPES)
    cfg = {**_config(rng, mt, wide), **IDS}
    _rare_fields(rng, mt, cfg)
    method = _method(rng, mt, cfg)
    training = _training(rng, method, wide)
    if training["attn_implementation"] == "eager" and rng.random() < (0.3 if mt == "gpt2" else 0.1):
        # (sdpa with attention dropout runs CPU's math kernel, which CUDA does not: eager only)
        cfg[_ATTENTION_DROPOUT.get(mt, "attention_dropout")] = 0.1
    label = "-".join([mt, f"L{cfg.get(_LAYER_FIELD.get(mt, 'num_hidden_layers'))}", method["name"],
                      training["dtype"] + ("+autocast" if training.get("mixed_precision") else ""), training["attn_implementation"],
                      *(["ckpt"] if training["gradient_checkpointing"] else []), f"b{training['batch_size']}s{training['seq_len']}"])
    return label, cfg, method, training


def draws(seed: int, n: int, wide: bool = False, adapters: bool = False) -> list[tuple[str, dict, dict, dict]]:
    """``n`` setups from ``seed``: the same ones on every machine (bottleneck adapters with ``adapters``)."""
    rng = random.Random(seed)
    return [(adapter_draw if adapters else draw)(rng, wide) for _ in range(n)]


# ---- bottleneck adapters (AdapterHub 1.3 on transformers 4.57, measured in its own virtualenv) ---------------
_NON_LINEARITIES = ("relu", "swish", "gelu", "tanh", "gelu_new", "silu", "leakyrelu")


def _adapter_method(rng: random.Random, cfg: dict) -> dict:
    """A bottleneck adapter with AdapterHub's options drawn: preset, reduction factor, activation, the adapter's own
    LayerNorms, residual placement, the block's LayerNorms, gating, scaling, dropout, left-out layers."""
    m = {"name": "adapter", "config": rng.choice(("seq_bn", "pfeiffer", "double_seq_bn", "houlsby"))}
    layers = cfg.get(_LAYER_FIELD.get(cfg["model_type"], "num_hidden_layers"))
    for key, p, values in (("reduction_factor", 0.6, (2, 3, 4, 5, 8, 16, 1.5, 2.5)),
                           ("non_linearity", 0.4, _NON_LINEARITIES),
                           ("ln_before", 0.25, (True,)), ("ln_after", 0.25, (True,)),
                           ("residual_before_ln", 0.2, (False, "post_add")), ("adapter_residual_before_ln", 0.2, (True,)),
                           ("original_ln_before", 0.15, (True, False)), ("original_ln_after", 0.15, (False,)),
                           ("use_gating", 0.2, (True,)), ("scaling", 0.25, (0.5, 2.0, "learned", "channel")),
                           ("dropout", 0.1, (0.1,)), ("mh_adapter", 0.1, (True, False)), ("output_adapter", 0.1, (True, False)),
                           ("init_weights", 0.1, ("mam_adapter", "houlsby"))):
        if rng.random() < p:
            m[key] = rng.choice(values)
    if layers > 1 and rng.random() < 0.15:
        m["leave_out"] = sorted(rng.sample(range(layers), rng.randint(1, layers - 1)))
    return m


def adapter_draw(rng: random.Random, wide: bool = False) -> tuple[str, dict, dict, dict]:
    """One random bottleneck-adapter setup on a type AdapterHub supports: (label, config, method, training). The step is
    AdapterHub's harness's own (AdamW, no padding, no autocast, no cache: the estimate names the cache with adapters a limit):
    dtype, kernel, checkpointing, batch, length."""
    from peft_footprint.methods.adapter import SUPPORTED

    mt = rng.choice(SUPPORTED)
    cfg = {**_config(rng, mt, wide), **IDS}
    if mt in _EXPLICIT_HEAD_DIM and rng.random() < 0.3:  # (transformers 4.x builds heads that do not divide hidden_size)
        cfg["hidden_size"] = rng.randint(2, 24) * (4 if not wide else 32)
    method = _adapter_method(rng, cfg)
    training = {"dtype": rng.choice(("fp32", "fp32", "bf16") if wide else ("fp32", "bf16", "fp16")),
                "attn_implementation": rng.choice(("sdpa", "eager")),
                "gradient_checkpointing": rng.random() < 0.4,
                "batch_size": rng.randint(1, 4) if not wide else rng.randint(1, 3),
                "seq_len": rng.choice((1, 2, 5, 7, 9, 11, 16, 17, 23, 29, 33) if not wide else (1, 64, 96, 127, 128, 200))}
    if training["attn_implementation"] == "eager" and rng.random() < 0.2:  # (CPU's sdpa drops out in its math kernel)
        cfg["attn_pdrop" if mt == "gpt2" else "attention_dropout"] = 0.1
    label = "-".join([mt, f"L{cfg.get(_LAYER_FIELD.get(mt, 'num_hidden_layers'))}", m_label(method), training["dtype"],
                      training["attn_implementation"], *(["ckpt"] if training["gradient_checkpointing"] else []),
                      f"b{training['batch_size']}s{training['seq_len']}"])
    return label, cfg, method, training


def m_label(method: dict) -> str:
    """A method's name for a label: an adapter's preset and the options it sets."""
    if method["name"] != "adapter":
        return method["name"]
    return "+".join([method["config"], *(k for k in method if k not in ("name", "config"))])

"""The validation matrix: small odd-shaped configs of every architecture and a method set.

Shapes are deliberately irregular (odd hidden sizes, GQA ratios, explicit head_dim different from
hidden/heads, tied and untied heads, biases on and off) so nothing is tuned to one shape.
"""

from __future__ import annotations

IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}

TINY: dict[str, dict] = {
    "llama": dict(model_type="llama", hidden_size=72, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
                  head_dim=16, intermediate_size=136, vocab_size=131, attention_bias=True, max_position_embeddings=128),
    "mistral": dict(model_type="mistral", hidden_size=80, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=120, vocab_size=97, sliding_window=8, max_position_embeddings=128),
    "qwen2": dict(model_type="qwen2", hidden_size=56, num_hidden_layers=2, num_attention_heads=7, num_key_value_heads=1,
                  intermediate_size=100, vocab_size=113, tie_word_embeddings=True, max_position_embeddings=128),
    "qwen3": dict(model_type="qwen3", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  head_dim=24, intermediate_size=88, vocab_size=103, max_position_embeddings=128),
    "gemma": dict(model_type="gemma", hidden_size=48, num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=1,
                  head_dim=20, intermediate_size=96, vocab_size=89, max_position_embeddings=128),
    "gemma2": dict(model_type="gemma2", hidden_size=40, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                   head_dim=12, intermediate_size=72, vocab_size=91, sliding_window=8, max_position_embeddings=128),
    "gemma3_text": dict(model_type="gemma3_text", hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                        num_key_value_heads=1, head_dim=16, intermediate_size=80, vocab_size=95, sliding_window=8,
                        max_position_embeddings=128),
    "phi3": dict(model_type="phi3", hidden_size=60, num_hidden_layers=2, num_attention_heads=5, num_key_value_heads=5,
                 intermediate_size=92, vocab_size=107, max_position_embeddings=128, original_max_position_embeddings=128),
    # attn_pdrop=0: with attention dropout PyTorch's CPU sdpa falls back to its math kernel (CUDA's flash
    # kernel does not); the residual and embedding dropouts (0.1, GPT-2's defaults) stay on
    "gpt2": dict(model_type="gpt2", n_embd=48, n_layer=2, n_head=4, n_positions=64, vocab_size=99, attn_pdrop=0.0),
    "gpt_neox": dict(model_type="gpt_neox", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=120,
                     vocab_size=101, max_position_embeddings=64),
    "opt": dict(model_type="opt", hidden_size=48, num_hidden_layers=2, num_attention_heads=4, ffn_dim=88, vocab_size=97,
                word_embed_proj_dim=32, max_position_embeddings=64),
    "olmo2": dict(model_type="olmo2", hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4,
                  intermediate_size=104, vocab_size=93, max_position_embeddings=128),
    "granite": dict(model_type="granite", hidden_size=72, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=3,
                    intermediate_size=112, vocab_size=101, tie_word_embeddings=True, max_position_embeddings=128),
    "starcoder2": dict(model_type="starcoder2", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=96, vocab_size=87, max_position_embeddings=128),
}
for _cfg in TINY.values():
    _cfg.update(IDS)

HAS_PEFT_DEFAULTS = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt2", "gpt_neox", "opt"}


def peft_methods(model_type: str) -> dict[str, dict]:
    """Methods measured with real PEFT in the main environment, keyed by a readable id."""
    default_ok = model_type in HAS_PEFT_DEFAULTS
    lora_default = {"name": "lora", "r": 4, "lora_alpha": 8} if default_ok else {"name": "lora", "r": 4, "target_modules": "all-linear"}
    ia3 = {"name": "ia3"} if default_ok else {"name": "ia3", "target_modules": "all-linear", "feedforward_modules": []}
    return {
        "full": {"name": "full"},
        "lora": lora_default,
        "lora_all_linear_dora_bias": {"name": "lora", "r": 3, "target_modules": "all-linear", "use_dora": True, "bias": "all"},
        "lora_modules_to_save": {"name": "lora", "r": 5, "target_modules": "all-linear", "modules_to_save": ["lm_head" if model_type != "gpt_neox" else "embed_out"]},
        "ia3": ia3,
        "qlora": dict(lora_default, name="qlora"),
        "qlora_fp4_no_prepare": dict(lora_default, name="qlora", bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=False,
                                     prepare_model_for_kbit_training=False),
        "prefix_tuning": {"name": "prefix_tuning", "num_virtual_tokens": 5},
        "prefix_tuning_projection": {"name": "prefix_tuning", "num_virtual_tokens": 4, "prefix_projection": True, "encoder_hidden_size": 24},
        "prompt_tuning": {"name": "prompt_tuning", "num_virtual_tokens": 7},
        "p_tuning_mlp": {"name": "p_tuning", "num_virtual_tokens": 6, "encoder_hidden_size": 20},
        "p_tuning_lstm": {"name": "p_tuning", "num_virtual_tokens": 3, "encoder_hidden_size": 10, "encoder_reparameterization_type": "LSTM", "encoder_num_layers": 2},
        "trainable_tokens": {"name": "trainable_tokens", "token_indices": [1, 3, 4]},
    }


STATIC_KEYS = ("total_params", "trainable_params", "weights_bytes", "gradients_bytes", "optimizer_bytes", "adapter_bytes",
               "quant_state_bytes")


# ---- the activation / peak matrix ----------------------------------------------------------------
# every architecture x method, with attention kernel, dtype, gradient checkpointing and shape rotated
# deterministically so that each value of each axis meets every architecture
ACT_METHODS = ["full", "lora", "lora_all_linear_dora_bias", "lora_modules_to_save", "ia3", "prefix_tuning",
               "prompt_tuning", "p_tuning_mlp", "qlora", "lora_dropout"]
SHAPES = [(2, 9), (3, 40), (1, 23), (4, 17)]


def act_cases() -> list[tuple[str, str, dict, dict]]:
    out = []
    k = 0
    for mt in TINY:
        methods = peft_methods(mt)
        methods["lora_dropout"] = dict(methods["lora"], lora_dropout=0.1)
        for mid in ACT_METHODS:
            for rep in range(2):
                k += 1
                b, s = SHAPES[(k + rep) % len(SHAPES)]
                precision = ("bf16", "fp32", "autocast")[(k // 2 + rep) % 3]
                training = {
                    "batch_size": b, "seq_len": s,
                    # "autocast": fp32 weights under torch.autocast(bf16)
                    "dtype": "fp32" if precision == "autocast" else precision,
                    **({"mixed_precision": "bf16"} if precision == "autocast" else {}),
                    "attn_implementation": ("sdpa", "eager")[(k // 3 + rep) % 2],
                    "gradient_checkpointing": bool((k // 5 + rep) % 3 == 0) and mid != "prefix_tuning",
                }
                out.append((mt, mid, methods[mid], training))
    return out


# ---- realistic proportions: a real vocabulary ----------------------------------------------------------
# With a 32k vocabulary the logits and their gradients dominate the step's peak, as they do in real models;
# the tiny matrix above (vocab ~100) exaggerates the in-layer backward temporaries instead.
VOCAB_METHODS = [("full", {}), ("lora_all_linear_dora_bias", {}), ("ia3", {"gradient_checkpointing": True}),
                 ("prompt_tuning", {"attn_implementation": "eager"}), ("qlora", {}),
                 ("lora_modules_to_save", {"gradient_checkpointing": True})]


def vocab_cases() -> list[tuple[str, str, dict, dict, dict]]:
    out = []
    for mt in TINY:
        cfg = dict(TINY[mt], vocab_size=32000)
        methods = peft_methods(mt)
        for mid, extra in VOCAB_METHODS:
            out.append((mt, mid, cfg, methods[mid], {"dtype": "bf16", "batch_size": 2, "seq_len": 40, **extra}))
    return out


# ---- configurations outside the matrix ----------------------------------------------------------
# where the simulation once went wrong (docs/notes/activations.md); (model_type, method id, config, training)
GC = {"gradient_checkpointing": True}
AUTOCAST = {"dtype": "fp32", "mixed_precision": "bf16", "gradient_checkpointing": False}
_OUTSIDE = [
    ("phi3", "ia3", 2, {"batch_size": 2, "seq_len": 11, "dtype": "bf16", **GC}),
    ("granite", "ia3", 4, {"batch_size": 3, "seq_len": 20, "dtype": "bf16", **GC}),
    ("starcoder2", "ia3", 4, {"batch_size": 3, "seq_len": 20, "dtype": "bf16", **GC}),
    ("gemma2", "full", 2, {"batch_size": 5, "seq_len": 29, "dtype": "fp32", **GC}),
    ("gemma2", "lora", 4, {"batch_size": 3, "seq_len": 20, "dtype": "bf16", **GC}),
    ("gemma2", "prompt_tuning", 2, {"batch_size": 5, "seq_len": 29, "dtype": "bf16", **GC}),
    ("llama", "lora_modules_to_save", 4, {"batch_size": 3, "seq_len": 20, "dtype": "bf16", **GC}),
    ("gemma3_text", "ia3", 3, {"batch_size": 2, "seq_len": 11, "attn_implementation": "sdpa", **AUTOCAST}),
    ("qwen2", "lora_modules_to_save", 2, {"batch_size": 1, "seq_len": 29, "attn_implementation": "eager", **AUTOCAST}),
    ("gemma3_text", "ia3", 6, {"batch_size": 2, "seq_len": 11, "dtype": "fp32", "attn_implementation": "sdpa", **GC}),
    ("gemma3_text", "lora", 6, {"batch_size": 2, "seq_len": 11, "dtype": "bf16", "attn_implementation": "eager",
                                "gradient_checkpointing": False}),
    ("gpt_neox", "qlora", 3, {"batch_size": 2, "seq_len": 33, "dtype": "bf16", "attn_implementation": "eager", **GC}),
    ("starcoder2", "lora_all_linear_dora_bias", 3, {"batch_size": 2, "seq_len": 11, "dtype": "fp32", **GC}),
    ("starcoder2", "lora_all_linear_dora_bias", 2, {"batch_size": 8, "seq_len": 40, "dtype": "fp32", "mixed_precision": "bf16", **GC}),
]


def outside_cases() -> list[tuple[str, str, dict, dict]]:
    return [(mt, mid, dict(TINY[mt], **{k: layers for k in ("num_hidden_layers", "n_layer") if k in TINY[mt]}), training)
            for mt, mid, layers, training in _OUTSIDE]


# ---- random draws that found gaps ------------------------------------------------------------------
# Configurations drawn at random (sizes, head counts, methods, options; docs/notes/activations.md) on which the
# simulation was wrong, each traced against a real op-by-op run and fixed: (label, config, method, training)
_DRAWN = [
    ("llama-dora-dropout", {"model_type": "llama", "hidden_size": 20, "num_hidden_layers": 3, "num_attention_heads": 2,
                            "num_key_value_heads": 2, "head_dim": 12, "intermediate_size": 130, "vocab_size": 190,
                            "attention_bias": True, "max_position_embeddings": 128},
     {"name": "lora", "r": 16, "target_modules": "all-linear", "use_dora": True, "bias": "all", "lora_dropout": 0.1},
     {"batch_size": 3, "seq_len": 29, "dtype": "bf16", "attn_implementation": "sdpa", "gradient_checkpointing": False}),
    ("mistral-dora-dropout-eager", {"model_type": "mistral", "hidden_size": 36, "num_hidden_layers": 5, "num_attention_heads": 6,
                                    "num_key_value_heads": 2, "intermediate_size": 26, "vocab_size": 165, "sliding_window": 8,
                                    "max_position_embeddings": 128},
     {"name": "lora", "r": 1, "target_modules": "all-linear", "use_dora": True, "bias": "all", "lora_dropout": 0.1},
     {"batch_size": 3, "seq_len": 11, "dtype": "bf16", "attn_implementation": "eager", "gradient_checkpointing": False}),
    ("gpt2-prefix-projection", {"model_type": "gpt2", "n_embd": 36, "n_layer": 4, "n_head": 6, "n_positions": 64, "vocab_size": 396,
                                "attn_pdrop": 0.0},
     {"name": "prefix_tuning", "num_virtual_tokens": 9, "prefix_projection": True, "encoder_hidden_size": 33},
     {"batch_size": 2, "seq_len": 7, "dtype": "bf16", "attn_implementation": "eager", "gradient_checkpointing": False}),
    ("starcoder2-prefix-projection-6-layers-autocast", {"model_type": "starcoder2", "hidden_size": 36, "num_hidden_layers": 6,
                                                        "num_attention_heads": 6, "num_key_value_heads": 6, "intermediate_size": 189,
                                                        "vocab_size": 378, "max_position_embeddings": 128},
     {"name": "prefix_tuning", "num_virtual_tokens": 5, "prefix_projection": True, "encoder_hidden_size": 33},
     {"batch_size": 5, "seq_len": 40, "dtype": "fp32", "mixed_precision": "bf16", "attn_implementation": "sdpa", "gradient_checkpointing": False}),
    ("qwen2-prefix-projection-autocast-eager", {"model_type": "qwen2", "hidden_size": 48, "num_hidden_layers": 5, "num_attention_heads": 3,
                                                "num_key_value_heads": 3, "intermediate_size": 168, "vocab_size": 168,
                                                "tie_word_embeddings": True, "max_position_embeddings": 128},
     {"name": "prefix_tuning", "num_virtual_tokens": 1, "prefix_projection": True, "encoder_hidden_size": 8},
     {"batch_size": 1, "seq_len": 7, "dtype": "fp32", "mixed_precision": "bf16", "attn_implementation": "eager", "gradient_checkpointing": False}),
    ("qwen3-prompt-tuning-autocast-checkpointing",  # q/k norms: bf16 input, fp32 weight, fp32 output; rotary inputs held
     {"model_type": "qwen3", "hidden_size": 36, "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 6,
      "head_dim": 12, "intermediate_size": 36, "vocab_size": 175, "max_position_embeddings": 128},
     {"name": "prompt_tuning", "num_virtual_tokens": 5},
     {"batch_size": 5, "seq_len": 33, "dtype": "fp32", "attn_implementation": "sdpa", "gradient_checkpointing": True, "mixed_precision": "bf16"}),
    ("olmo2-modules-to-save-batch-1",  # two dtypes in the optimizer's foreach groups; the loss keeps padded labels at batch 1
     {"model_type": "olmo2", "hidden_size": 8, "num_hidden_layers": 5, "num_attention_heads": 2, "num_key_value_heads": 1,
      "intermediate_size": 65, "vocab_size": 164, "max_position_embeddings": 128},
     {"name": "lora", "r": 4, "target_modules": "all-linear", "modules_to_save": ["lm_head"]},
     {"batch_size": 1, "seq_len": 11, "dtype": "bf16", "attn_implementation": "sdpa", "gradient_checkpointing": True}),
    ("starcoder2-prefix-eager",  # the base model holds its embeddings, position ids and mask until it returns
     {"model_type": "starcoder2", "hidden_size": 48, "num_hidden_layers": 3, "num_attention_heads": 6, "num_key_value_heads": 3,
      "intermediate_size": 208, "vocab_size": 68, "max_position_embeddings": 128},
     {"name": "prefix_tuning", "num_virtual_tokens": 9},
     {"batch_size": 3, "seq_len": 40, "dtype": "fp32", "attn_implementation": "eager", "gradient_checkpointing": False}),
    ("phi3-qlora-without-prepare-checkpointing",  # bnb's LoRA layer casts the LoRA output to bf16 before adding it
     {"model_type": "phi3", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
      "intermediate_size": 76, "vocab_size": 227, "max_position_embeddings": 128, "original_max_position_embeddings": 128},
     {"name": "qlora", "r": 16, "target_modules": "all-linear", "bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": False,
      "prepare_model_for_kbit_training": False},
     {"batch_size": 3, "seq_len": 11, "dtype": "bf16", "attn_implementation": "sdpa", "gradient_checkpointing": True}),
    ("gpt2-modules-to-save-dropout-checkpointing",  # GPT2Block holds attn_output until it returns
     {"model_type": "gpt2", "n_embd": 32, "n_layer": 3, "n_head": 8, "n_positions": 64, "vocab_size": 177, "attn_pdrop": 0.0},
     {"name": "lora", "r": 2, "target_modules": "all-linear", "modules_to_save": ["lm_head"], "lora_dropout": 0.1},
     {"batch_size": 5, "seq_len": 29, "dtype": "fp32", "attn_implementation": "eager", "gradient_checkpointing": True}),
    ("opt-modules-to-save-checkpointing",  # OPT's layer calls fc1 itself: the norm's output goes after it (the matrix's case)
     dict(TINY["opt"]), {"name": "lora", "r": 5, "target_modules": "all-linear", "modules_to_save": ["lm_head"]},
     {"batch_size": 3, "seq_len": 40, "dtype": "bf16", "attn_implementation": "sdpa", "gradient_checkpointing": True}),
    ("gemma3-qlora-without-prepare-checkpointing",  # Gemma3 projects q, k, v before its q/k norms
     {"model_type": "gemma3_text", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 24, "intermediate_size": 21, "vocab_size": 96, "sliding_window": 8, "max_position_embeddings": 128},
     {"name": "qlora", "r": 1, "lora_alpha": 8, "bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": False, "prepare_model_for_kbit_training": False},
     {"batch_size": 5, "seq_len": 29, "dtype": "bf16", "attn_implementation": "sdpa", "gradient_checkpointing": True}),
    ("gpt2-dora-dropout-autocast-checkpointing",  # PEFT's transpose() makes Conv1D's W.T a Parameter: its .grad lives on
     {"model_type": "gpt2", "n_embd": 40, "n_layer": 6, "n_head": 4, "n_positions": 64, "vocab_size": 368, "attn_pdrop": 0.0},
     {"name": "lora", "r": 7, "target_modules": "all-linear", "use_dora": True, "bias": "all", "lora_dropout": 0.1},
     {"batch_size": 5, "seq_len": 7, "dtype": "fp32", "attn_implementation": "sdpa", "gradient_checkpointing": True, "mixed_precision": "bf16"}),
    ("gpt_neox-prefix-eager",  # q and k (views of the qkv split) each read by two slices: their gradients summed per view
     dict(TINY["gpt_neox"]), {"name": "prefix_tuning", "num_virtual_tokens": 5},
     {"batch_size": 3, "seq_len": 17, "dtype": "fp32", "attn_implementation": "eager", "gradient_checkpointing": False}),
    ("gpt_neox-odd-rotary-width-qlora",  # head_dim 10 x rotary_pct 0.5: 5 channels, cos/sin (and the rotated part) 6 wide
     {"model_type": "gpt_neox", "hidden_size": 30, "num_hidden_layers": 3, "num_attention_heads": 3, "intermediate_size": 91,
      "vocab_size": 59, "max_position_embeddings": 64, "rotary_pct": 0.5},
     {"name": "qlora", "r": 2, "lora_alpha": 8},
     {"batch_size": 3, "seq_len": 33, "dtype": "bf16", "attn_implementation": "eager", "gradient_checkpointing": False, "padding_mask": True}),
    ("gemma-ia3-autocast-eager-checkpointing",  # eager_attention_forward holds repeat_kv's fp32 k and v until it returns
     {'model_type': 'gemma', 'hidden_size': 32, 'num_hidden_layers': 5, 'num_attention_heads': 8, 'num_key_value_heads': 2, 'head_dim': 24, 'intermediate_size': 24, 'vocab_size': 299, 'max_position_embeddings': 128},
     {'name': 'ia3'},
     {'batch_size': 3, 'seq_len': 11, 'dtype': 'fp32', 'attn_implementation': 'eager', 'gradient_checkpointing': True, 'mixed_precision': 'bf16'}),
    ("qwen2-qlora-fp32-compute-checkpointing",  # the dequantized weight comes in bf16 and is cast to fp32: both at once
     {'model_type': 'qwen2', 'hidden_size': 30, 'num_hidden_layers': 4, 'num_attention_heads': 3, 'num_key_value_heads': 3, 'intermediate_size': 256, 'vocab_size': 54, 'tie_word_embeddings': True, 'max_position_embeddings': 128},
     {'name': 'qlora', 'r': 1, 'lora_alpha': 8, 'bnb_4bit_quant_type': 'fp4', 'bnb_4bit_use_double_quant': False, 'prepare_model_for_kbit_training': False, 'bnb_4bit_compute_dtype': 'fp32'},
     {'batch_size': 2, 'seq_len': 7, 'dtype': 'bf16', 'attn_implementation': 'sdpa', 'gradient_checkpointing': True}),
    ("llama-qlora-dora",  # DoRA on a 4-bit layer: the weight norm reads a dequantized weight cast to fp32
     dict(TINY["llama"]), {"name": "qlora", "r": 4, "target_modules": "all-linear", "use_dora": True},
     {"batch_size": 2, "seq_len": 11, "dtype": "bf16", "attn_implementation": "sdpa", "gradient_checkpointing": False}),
    ("phi3-qlora-dora-fp32-compute-checkpointing",
     dict(TINY["phi3"]), {"name": "qlora", "r": 4, "target_modules": "all-linear", "use_dora": True, "bnb_4bit_compute_dtype": "fp32"},
     {"batch_size": 2, "seq_len": 11, "dtype": "bf16", "attn_implementation": "sdpa", "gradient_checkpointing": True}),
    ("phi3-odd-rotary-width-ia3-checkpointing",  # head_dim 10 x 0.75: 7 channels rotated as 8
     {"model_type": "phi3", "hidden_size": 20, "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 2,
      "intermediate_size": 171, "vocab_size": 156, "max_position_embeddings": 128, "original_max_position_embeddings": 128,
      "partial_rotary_factor": 0.75},
     {"name": "ia3", "target_modules": "all-linear", "feedforward_modules": []},
     {"batch_size": 1, "seq_len": 40, "dtype": "bf16", "attn_implementation": "eager", "gradient_checkpointing": True}),
    ("gpt-neox-qdora-fp32-compute-bias",  # bitsandbytes casts the bias to the compute dtype in place: DoRA's base - bias in fp32
     {'model_type': 'gpt_neox', 'hidden_size': 36, 'num_hidden_layers': 2, 'num_attention_heads': 6, 'intermediate_size': 160, 'vocab_size': 67, 'max_position_embeddings': 64, 'rotary_pct': 0.25},
     {'name': 'qlora', 'r': 1, 'lora_alpha': 8, 'bnb_4bit_quant_type': 'fp4', 'bnb_4bit_use_double_quant': False, 'prepare_model_for_kbit_training': False, 'bias': 'lora_only', 'bnb_4bit_compute_dtype': 'fp32', 'use_dora': True},
     {'batch_size': 5, 'seq_len': 29, 'dtype': 'bf16', 'attn_implementation': 'eager', 'gradient_checkpointing': True, 'optimizer': 'adamw'}),
    ("llama-qlora-prepared-bias-lora-only",  # prepare_model_for_kbit_training's fp32 biases cast back to the compute dtype
     {'model_type': 'llama', 'hidden_size': 40, 'num_hidden_layers': 3, 'num_attention_heads': 4, 'num_key_value_heads': 1, 'head_dim': 12, 'intermediate_size': 162, 'vocab_size': 297, 'attention_bias': True, 'max_position_embeddings': 128},
     {'name': 'qlora', 'r': 1, 'lora_alpha': 8, 'lora_dropout': 0.1, 'bias': 'lora_only'},
     {'batch_size': 2, 'seq_len': 29, 'dtype': 'bf16', 'attn_implementation': 'eager', 'gradient_checkpointing': True, 'optimizer': 'sgd'}),
    ("starcoder2-p-tuning-autocast-eager",  # under autocast the masked scores go as soon as the fp32 softmax returns
     {'model_type': 'starcoder2', 'hidden_size': 40, 'num_hidden_layers': 5, 'num_attention_heads': 4, 'num_key_value_heads': 4, 'intermediate_size': 44, 'vocab_size': 118, 'max_position_embeddings': 128},
     {'name': 'p_tuning', 'num_virtual_tokens': 5, 'encoder_hidden_size': 33},
     {'batch_size': 2, 'seq_len': 40, 'dtype': 'fp32', 'attn_implementation': 'eager', 'gradient_checkpointing': True, 'optimizer': 'sgd', 'mixed_precision': 'bf16'}),
    ("olmo2-dora-fp16-layer-input-held",  # the model's loop holds each layer's input until the layer returns
     {'model_type': 'olmo2', 'hidden_size': 96, 'num_hidden_layers': 3, 'num_attention_heads': 6, 'num_key_value_heads': 3, 'intermediate_size': 113, 'vocab_size': 301, 'max_position_embeddings': 128},
     {'name': 'lora', 'r': 2, 'target_modules': ['gate_proj'], 'use_dora': True, 'bias': 'all'},
     {'batch_size': 3, 'seq_len': 11, 'dtype': 'fp16', 'attn_implementation': 'sdpa', 'gradient_checkpointing': False, 'optimizer': 'adam'}),
    ("gpt2-dora-autocast-padded-cast-after-return",  # a mixed-dtype product's gradient is cast after the node returns
     {'model_type': 'gpt2', 'n_embd': 32, 'n_layer': 5, 'n_head': 2, 'n_positions': 64, 'vocab_size': 60, 'attn_pdrop': 0.0},
     {'name': 'lora', 'r': 7, 'target_modules': ['c_fc'], 'use_dora': True, 'bias': 'all'},
     {'batch_size': 3, 'seq_len': 40, 'dtype': 'fp32', 'attn_implementation': 'sdpa', 'gradient_checkpointing': False, 'padding_mask': True, 'optimizer': 'adam', 'mixed_precision': 'bf16'}),
    ("olmo2-lora-autocast-ckpt-cached-leaf-cast",  # autocast caches the embeddings' (a leaf's) copy: layer 0 shares one
     {'model_type': 'olmo2', 'hidden_size': 24, 'num_hidden_layers': 4, 'num_attention_heads': 4, 'num_key_value_heads': 4, 'intermediate_size': 58, 'vocab_size': 239, 'max_position_embeddings': 128},
     {'name': 'lora', 'r': 4, 'target_modules': 'all-linear', 'bias': 'lora_only'},
     {'batch_size': 4, 'seq_len': 5, 'dtype': 'fp32', 'attn_implementation': 'sdpa', 'gradient_checkpointing': True, 'padding_mask': True, 'optimizer': 'sgd', 'mixed_precision': 'bf16'}),
    ("gpt2-dora-autocast-ckpt-recompute",  # the recompute keeps the weight norm div saved, with the cached casts
     # of lora_A/lora_B that get_lora_weight made
     {'model_type': 'gpt2', 'n_embd': 48, 'n_layer': 3, 'n_head': 3, 'n_positions': 64, 'vocab_size': 170, 'attn_pdrop': 0.0},
     {'name': 'lora', 'r': 16, 'target_modules': 'all-linear', 'use_dora': True, 'bias': 'all'},
     {'batch_size': 3, 'seq_len': 7, 'dtype': 'fp32', 'attn_implementation': 'sdpa', 'gradient_checkpointing': True, 'padding_mask': True, 'optimizer': 'sgd', 'mixed_precision': 'bf16'}),
    ("starcoder2-lora-dropout-autocast-ckpt-cast-order",  # autocast casts a linear's weight before its input, and
     # the dropped-out input is lora_A's argument until it returns
     {'model_type': 'starcoder2', 'hidden_size': 24, 'num_hidden_layers': 5, 'num_attention_heads': 4, 'num_key_value_heads': 4, 'intermediate_size': 248, 'vocab_size': 335, 'max_position_embeddings': 128},
     {'name': 'lora', 'r': 16, 'target_modules': 'all-linear', 'modules_to_save': ['lm_head'], 'lora_dropout': 0.1},
     {'batch_size': 5, 'seq_len': 29, 'dtype': 'fp32', 'attn_implementation': 'sdpa', 'gradient_checkpointing': True, 'padding_mask': False, 'optimizer': 'sgd', 'mixed_precision': 'bf16'}),
    ("gemma2-qlora-ckpt-mask-of-a-kind-freed",  # the full-attention mask goes with the last checkpoint of that kind
     {'model_type': 'gemma2', 'hidden_size': 48, 'num_hidden_layers': 2, 'num_attention_heads': 8, 'num_key_value_heads': 8, 'head_dim': 8, 'intermediate_size': 131, 'vocab_size': 140, 'sliding_window': 8, 'max_position_embeddings': 128},
     {'name': 'qlora', 'r': 7, 'lora_alpha': 8, 'bnb_4bit_quant_type': 'fp4', 'bnb_4bit_use_double_quant': False, 'prepare_model_for_kbit_training': False, 'bias': 'lora_only'},
     {'batch_size': 1, 'seq_len': 33, 'dtype': 'bf16', 'attn_implementation': 'eager', 'gradient_checkpointing': True, 'padding_mask': False, 'optimizer': 'sgd'}),
    ("gemma2-prefix-beyond-sliding-window",  # a sliding layer's cache keeps the last window - 1 virtual tokens
     {'model_type': 'gemma2', 'hidden_size': 40, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 2, 'head_dim': 12, 'intermediate_size': 72, 'vocab_size': 91, 'sliding_window': 8, 'max_position_embeddings': 128},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 20},
     {'batch_size': 2, 'seq_len': 13, 'dtype': 'bf16', 'attn_implementation': 'sdpa', 'gradient_checkpointing': False, 'padding_mask': False, 'optimizer': 'adamw'}),
    ("gemma-qdora-top-layer-only-eager-frozen-attention",  # the decoder layer holds the attention probabilities
     # it got back until it returns, and the model's forward the rotary cos/sin (nothing saves them here)
     {'model_type': 'gemma', 'hidden_size': 64, 'num_hidden_layers': 5, 'num_attention_heads': 4, 'num_key_value_heads': 4, 'head_dim': 16, 'intermediate_size': 142, 'vocab_size': 134, 'max_position_embeddings': 128},
     {'name': 'qlora', 'r': 4, 'lora_alpha': 8, 'target_modules': ['down_proj', 'o_proj'], 'layers_to_transform': [4], 'bnb_4bit_compute_dtype': 'bf16', 'use_dora': True},
     {'batch_size': 3, 'seq_len': 33, 'dtype': 'bf16', 'attn_implementation': 'eager', 'gradient_checkpointing': False, 'padding_mask': True, 'optimizer': 'adam'}),
    ("llama-dora-lower-layer-only-forward-peak",  # the forward of a kind of layer below a frozen top one: DoRA's
     # weight-norm temporaries in layer 0 (-67 % when only the top layer's forward was simulated)
     {'model_type': 'llama', 'hidden_size': 72, 'num_hidden_layers': 3, 'num_attention_heads': 6, 'num_key_value_heads': 2, 'head_dim': 16, 'intermediate_size': 600, 'vocab_size': 131, 'attention_bias': True, 'max_position_embeddings': 128},
     {'name': 'lora', 'r': 4, 'target_modules': ['down_proj'], 'use_dora': True, 'layers_to_transform': [0]},
     {'batch_size': 1, 'seq_len': 5, 'dtype': 'bf16', 'attn_implementation': 'eager', 'gradient_checkpointing': False, 'padding_mask': False, 'optimizer': 'sgd'}),
    ("llama-prefix-one-kv-head-sdpa-full-size-grads",  # sdpa without its GQA path gets repeat_kv's stride-0 view of
     # the single kv head: its k and v gradients are full-size, summed back by the expand's backward
     {'model_type': 'llama', 'hidden_size': 60, 'num_hidden_layers': 2, 'num_attention_heads': 6, 'num_key_value_heads': 1, 'head_dim': 24, 'intermediate_size': 54, 'vocab_size': 108, 'attention_bias': True, 'max_position_embeddings': 128},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 3, 'prefix_projection': True, 'encoder_hidden_size': 33},
     {'batch_size': 3, 'seq_len': 29, 'dtype': 'fp32', 'attn_implementation': 'sdpa', 'gradient_checkpointing': False, 'padding_mask': False, 'optimizer': 'adamw'}),
    ("gemma3-full-ckpt-norm-weight-float-copy",  # Gemma's norms multiply by (1 + weight.float()): a copy, whose
     # backward casts the fp32 gradient into the bf16 weight's .grad
     {'model_type': 'gemma3_text', 'hidden_size': 48, 'num_hidden_layers': 5, 'num_attention_heads': 6, 'num_key_value_heads': 1, 'head_dim': 8, 'intermediate_size': 189, 'vocab_size': 396, 'sliding_window': 8, 'max_position_embeddings': 128},
     {'name': 'full'},
     {'batch_size': 5, 'seq_len': 7, 'dtype': 'bf16', 'attn_implementation': 'eager', 'gradient_checkpointing': True, 'padding_mask': False, 'optimizer': 'sgd'}),
    ("starcoder2-prefix-padded-mask-and-labels-at-log-softmax",  # the forward's peak at log_softmax holds the
     # loss's padded labels and their shifted copy, and PEFT's attention mask prefixed with fp32 ones (-0.23 %)
     {'model_type': 'starcoder2', 'hidden_size': 24, 'num_hidden_layers': 3, 'num_attention_heads': 3, 'num_key_value_heads': 3, 'intermediate_size': 252, 'vocab_size': 103, 'max_position_embeddings': 128},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 3},
     {'batch_size': 3, 'seq_len': 40, 'dtype': 'fp32', 'attn_implementation': 'eager', 'gradient_checkpointing': False, 'padding_mask': True, 'optimizer': 'sgd', 'mixed_precision': 'bf16'}),
    ("starcoder2-prefix-labels-at-log-softmax",  # the same without padding: the labels alone (-0.15 %)
     {'model_type': 'starcoder2', 'hidden_size': 32, 'num_hidden_layers': 3, 'num_attention_heads': 2, 'num_key_value_heads': 2, 'intermediate_size': 149, 'vocab_size': 188, 'max_position_embeddings': 128},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 9},
     {'batch_size': 5, 'seq_len': 11, 'dtype': 'fp32', 'attn_implementation': 'sdpa', 'gradient_checkpointing': False, 'padding_mask': False, 'optimizer': 'sgd', 'mixed_precision': 'bf16'}),
    ("gemma-prefix-cache-copies-freed-per-layer",  # cache.update copies each layer's virtual keys/values (a cat
     # with the empty entry); each copy goes when its layer's own cat replaces it, the encoder's output at once (+0.46 %)
     {'model_type': 'gemma', 'hidden_size': 128, 'num_hidden_layers': 3, 'num_attention_heads': 8, 'num_key_value_heads': 8, 'head_dim': 24, 'intermediate_size': 17, 'vocab_size': 65, 'max_position_embeddings': 128},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 9},
     {'batch_size': 1, 'seq_len': 11, 'dtype': 'fp32', 'attn_implementation': 'sdpa', 'gradient_checkpointing': False, 'padding_mask': False, 'optimizer': 'sgd'}),
    ("gpt2-dora-dropout-bf16-transpose-of-a-cast",  # DoRA's base recompute: W.to(fp32) of a bf16 Conv1D is a new
     # tensor, whose transpose is a view, not a Parameter of its own (+240 B of activations)
     {'model_type': 'gpt2', 'n_embd': 20, 'n_layer': 4, 'n_head': 2, 'n_positions': 64, 'vocab_size': 160, 'attn_pdrop': 0.0},
     {'name': 'lora', 'r': 4, 'lora_alpha': 8, 'lora_dropout': 0.1, 'use_dora': True},
     {'batch_size': 1, 'seq_len': 40, 'dtype': 'bf16', 'attn_implementation': 'sdpa', 'gradient_checkpointing': False, 'padding_mask': False, 'optimizer': 'adam'}),
    ("granite-full-ckpt-autocast-accumulation-cached-weight-copies",  # autocast's cached copies of every layer's
     # trainable weights live until the forward returns, checkpointing or not (-8.2 % once accumulation made the
     # forward's log_softmax the peak)
     {'model_type': 'granite', 'hidden_size': 18, 'num_hidden_layers': 4, 'num_attention_heads': 3, 'num_key_value_heads': 1, 'intermediate_size': 220, 'vocab_size': 220, 'tie_word_embeddings': True, 'max_position_embeddings': 128},
     {'name': 'full'},
     {'batch_size': 2, 'seq_len': 7, 'dtype': 'fp32', 'attn_implementation': 'sdpa', 'gradient_checkpointing': True, 'padding_mask': False, 'optimizer': 'sgd', 'mixed_precision': 'bf16', 'gradient_accumulation_steps': 3}),
    ("gpt-neox-qlora-bias-grad-seq-rows",  # MatMul4Bit's grad_bias = grad_output.sum(0): (seq, out), summed after the node
     {'model_type': 'gpt_neox', 'hidden_size': 80, 'num_hidden_layers': 2, 'num_attention_heads': 8, 'intermediate_size': 199, 'vocab_size': 128, 'max_position_embeddings': 64, 'rotary_pct': 1.0},
     {'name': 'qlora', 'r': 16, 'lora_alpha': 8, 'bnb_4bit_quant_type': 'fp4', 'bnb_4bit_use_double_quant': False, 'prepare_model_for_kbit_training': False, 'bias': 'lora_only'},
     {'batch_size': 2, 'seq_len': 11, 'dtype': 'bf16', 'attn_implementation': 'eager', 'gradient_checkpointing': True, 'padding_mask': True, 'optimizer': 'adamw'}),
    # stop 16
    ('gemma-p-tuning-batch1-eager-one-kv-head', {'model_type': 'gemma', 'hidden_size': 48, 'num_hidden_layers': 3, 'num_attention_heads': 8, 'num_key_value_heads': 1, 'head_dim': 24, 'intermediate_size': 199, 'vocab_size': 123, 'max_position_embeddings': 128},
     {'name': 'p_tuning', 'num_virtual_tokens': 9, 'encoder_hidden_size': 20},
     {'batch_size': 1, 'seq_len': 40, 'dtype': 'bf16', 'attn_implementation': 'eager', 'gradient_checkpointing': True, 'padding_mask': False, 'optimizer': 'adamw'}),
    ('opt-lora-dropout-frozen-input', {'model_type': 'opt', 'hidden_size': 48, 'num_hidden_layers': 2, 'num_attention_heads': 6, 'ffn_dim': 298, 'vocab_size': 113, 'word_embed_proj_dim': 16, 'max_position_embeddings': 64},
     {'name': 'lora', 'r': 1, 'lora_alpha': 8, 'lora_dropout': 0.1, 'target_modules': ['fc2'], 'layers_to_transform': [1]},
     {'batch_size': 3, 'seq_len': 7, 'dtype': 'bf16', 'attn_implementation': 'sdpa', 'gradient_checkpointing': False, 'padding_mask': True, 'optimizer': 'sgd'}),
    ('gpt-neox-full-adafactor', {'model_type': 'gpt_neox', 'hidden_size': 24, 'num_hidden_layers': 3, 'num_attention_heads': 4, 'intermediate_size': 74, 'vocab_size': 124, 'max_position_embeddings': 64, 'rotary_pct': 1.0},
     {'name': 'full'},
     {'batch_size': 3, 'seq_len': 7, 'dtype': 'bf16', 'attn_implementation': 'eager', 'gradient_checkpointing': True, 'padding_mask': False, 'optimizer': 'adafactor'}),
    ('granite-qlora-embed-tokens-layers-to-transform', {'model_type': 'granite', 'hidden_size': 96, 'num_hidden_layers': 5, 'num_attention_heads': 6, 'num_key_value_heads': 2, 'intermediate_size': 195, 'vocab_size': 201, 'tie_word_embeddings': True, 'max_position_embeddings': 128},
     {'name': 'qlora', 'r': 2, 'target_modules': ['down_proj', 'embed_tokens'], 'lora_dropout': 0.1, 'layers_to_transform': [4]},
     {'batch_size': 5, 'seq_len': 11, 'dtype': 'fp32', 'attn_implementation': 'eager', 'gradient_checkpointing': False, 'padding_mask': False, 'optimizer': 'adamw'}),
    ('qwen3-dora-autocast-eager-q-norm', {'model_type': 'qwen3', 'hidden_size': 32, 'num_hidden_layers': 2, 'num_attention_heads': 2, 'num_key_value_heads': 2, 'head_dim': 12, 'intermediate_size': 113, 'vocab_size': 73, 'max_position_embeddings': 128},
     {'name': 'lora', 'r': 7, 'target_modules': ['gate_proj'], 'use_dora': True, 'bias': 'all', 'lora_dropout': 0.1, 'layers_to_transform': [1], 'rank_pattern': {'k_proj': 8}},
     {'batch_size': 2, 'seq_len': 7, 'dtype': 'fp32', 'attn_implementation': 'eager', 'gradient_checkpointing': False, 'padding_mask': False, 'optimizer': 'adamw_fused', 'mixed_precision': 'bf16'}),
    ('mistral-prefix-autocast-padding-rmsnorm-variance', {'model_type': 'mistral', 'hidden_size': 96, 'num_hidden_layers': 2, 'num_attention_heads': 6, 'num_key_value_heads': 6, 'intermediate_size': 23, 'vocab_size': 57, 'sliding_window': 8, 'max_position_embeddings': 128},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 9},
     {'batch_size': 5, 'seq_len': 11, 'dtype': 'fp32', 'attn_implementation': 'sdpa', 'gradient_checkpointing': False, 'padding_mask': True, 'optimizer': 'adamw', 'mixed_precision': 'bf16'}),
    ('gemma2-full-accumulation-fp32-norm-weight', {'model_type': 'gemma2', 'hidden_size': 64, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 4, 'head_dim': 12, 'intermediate_size': 169, 'vocab_size': 93, 'sliding_window': 8, 'max_position_embeddings': 128},
     {'name': 'full'},
     {'batch_size': 2, 'seq_len': 29, 'dtype': 'fp32', 'attn_implementation': 'sdpa', 'gradient_checkpointing': True, 'padding_mask': False, 'optimizer': 'sgd', 'mixed_precision': 'bf16', 'gradient_accumulation_steps': 2}),
    ('olmo2-norm-copies-autocast-checkpointing', {'model_type': 'olmo2', 'hidden_size': 48, 'num_hidden_layers': 4, 'num_attention_heads': 8, 'num_key_value_heads': 4, 'intermediate_size': 20, 'vocab_size': 333, 'max_position_embeddings': 128},
     {'name': 'lora', 'r': 2, 'target_modules': 'all-linear', 'lora_dropout': 0.1, 'modules_to_save': ['norm']},
     {'batch_size': 3, 'seq_len': 7, 'dtype': 'fp32', 'attn_implementation': 'eager', 'gradient_checkpointing': True, 'padding_mask': False, 'optimizer': 'adamw', 'mixed_precision': 'bf16'}),
    ('olmo2-prefix-projection-rmsnorm-hidden-states', {'model_type': 'olmo2', 'hidden_size': 60, 'num_hidden_layers': 4, 'num_attention_heads': 6, 'num_key_value_heads': 1, 'intermediate_size': 222, 'vocab_size': 64, 'max_position_embeddings': 128},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 9, 'prefix_projection': True, 'encoder_hidden_size': 20},
     {'batch_size': 1, 'seq_len': 40, 'dtype': 'fp32', 'attn_implementation': 'eager', 'gradient_checkpointing': False, 'padding_mask': False, 'optimizer': 'adamw', 'mixed_precision': 'fp16'}),
    ('qwen3-prefix-projection-end-of-step', {'model_type': 'qwen3', 'hidden_size': 30, 'num_hidden_layers': 5, 'num_attention_heads': 3, 'num_key_value_heads': 3, 'head_dim': 16, 'intermediate_size': 34, 'vocab_size': 121, 'max_position_embeddings': 128},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 9, 'prefix_projection': True, 'encoder_hidden_size': 33},
     {'batch_size': 1, 'seq_len': 7, 'dtype': 'bf16', 'attn_implementation': 'eager', 'gradient_checkpointing': False, 'padding_mask': False, 'optimizer': 'adamw_fused'}),
    ('gpt-neox-prefix-projection-fp16-qkv-bound', {'model_type': 'gpt_neox', 'hidden_size': 128, 'num_hidden_layers': 3, 'num_attention_heads': 8, 'intermediate_size': 21, 'vocab_size': 86, 'max_position_embeddings': 64, 'rotary_pct': 0.5},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 1, 'prefix_projection': True, 'encoder_hidden_size': 20},
     {'batch_size': 5, 'seq_len': 11, 'dtype': 'fp16', 'attn_implementation': 'eager', 'gradient_checkpointing': False, 'padding_mask': False, 'optimizer': 'adamw_fused'}),
    ('opt-qlora-fp32-bias-checkpointing-flat-fc', {'model_type': 'opt', 'hidden_size': 24, 'num_hidden_layers': 2, 'num_attention_heads': 6, 'ffn_dim': 133, 'vocab_size': 205, 'word_embed_proj_dim': 32, 'max_position_embeddings': 64},
     {'name': 'qlora', 'r': 6, 'lora_alpha': 8, 'lora_dropout': 0.1, 'target_modules': 'all-linear', 'bias': 'lora_only', 'rank_pattern': {'fc1': 5}},
     {'batch_size': 1, 'seq_len': 24, 'dtype': 'fp32', 'gradient_checkpointing': True, 'attn_implementation': 'sdpa', 'padding_mask': True}),
    ('opt-lora-bias-autocast-checkpointing-bias-cast-node', {'model_type': 'opt', 'hidden_size': 36, 'num_hidden_layers': 2, 'num_attention_heads': 6, 'ffn_dim': 212, 'vocab_size': 88, 'word_embed_proj_dim': 32, 'max_position_embeddings': 64},
     {'name': 'lora', 'r': 5, 'lora_alpha': 8, 'bias': 'all'},
     {'batch_size': 1, 'seq_len': 23, 'dtype': 'fp32', 'mixed_precision': 'bf16', 'gradient_checkpointing': True, 'attn_implementation': 'sdpa'}),
    ('gpt2-full-autocast-accumulation-bias-cast-node', {'model_type': 'gpt2', 'n_embd': 36, 'n_layer': 2, 'n_head': 6, 'n_positions': 64, 'vocab_size': 50, 'attn_pdrop': 0.0},
     {'name': 'full'},
     {'batch_size': 2, 'seq_len': 21, 'dtype': 'fp32', 'mixed_precision': 'bf16', 'gradient_checkpointing': True, 'attn_implementation': 'sdpa', 'gradient_accumulation_steps': 4}),
    ('starcoder2-full-autocast-accumulation-bias-after-weight-cast', {'model_type': 'starcoder2', 'hidden_size': 64, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 1, 'intermediate_size': 247, 'vocab_size': 153, 'max_position_embeddings': 128},
     {'name': 'full'},
     {'batch_size': 3, 'seq_len': 8, 'dtype': 'fp32', 'mixed_precision': 'bf16', 'gradient_checkpointing': False, 'attn_implementation': 'eager', 'gradient_accumulation_steps': 2}),
    ('opt-full-accumulation-position-and-project-in-grads-added', {'model_type': 'opt', 'hidden_size': 12, 'num_hidden_layers': 2, 'num_attention_heads': 3, 'ffn_dim': 39, 'vocab_size': 134, 'word_embed_proj_dim': 40, 'max_position_embeddings': 64},
     {'name': 'full'},
     {'batch_size': 1, 'seq_len': 12, 'dtype': 'fp32', 'gradient_checkpointing': False, 'attn_implementation': 'sdpa', 'padding_mask': True, 'gradient_accumulation_steps': 4}),
    ('gpt2-full-accumulation-position-grad-added', {'model_type': 'gpt2', 'n_embd': 48, 'n_layer': 2, 'n_head': 4, 'n_positions': 64, 'vocab_size': 900, 'attn_pdrop': 0.0},
     {'name': 'full'},
     {'batch_size': 1, 'seq_len': 12, 'dtype': 'fp32', 'gradient_checkpointing': False, 'attn_implementation': 'sdpa', 'padding_mask': True, 'gradient_accumulation_steps': 4}),
    ('mistral-qlora-tiny-shape-absmax-dequantized-first', {'model_type': 'mistral', 'hidden_size': 80, 'num_hidden_layers': 2, 'num_attention_heads': 8, 'num_key_value_heads': 2, 'intermediate_size': 287, 'vocab_size': 274, 'sliding_window': 8, 'max_position_embeddings': 128},
     {'name': 'qlora', 'r': 4, 'lora_alpha': 16, 'target_modules': '.*\\.(k_proj|q_proj)'},
     {'batch_size': 1, 'seq_len': 3, 'dtype': 'bf16', 'gradient_checkpointing': True, 'attn_implementation': 'sdpa', 'gradient_accumulation_steps': 2}),
    ('phi3-dora-one-layer-gate-bound-until-mlp-returns', {'model_type': 'phi3', 'hidden_size': 24, 'num_hidden_layers': 3, 'num_attention_heads': 3, 'num_key_value_heads': 1, 'intermediate_size': 156, 'vocab_size': 268, 'max_position_embeddings': 128, 'original_max_position_embeddings': 128},
     {'name': 'lora', 'r': 5, 'lora_alpha': 8, 'target_modules': ['embed_tokens', 'down_proj'], 'layers_to_transform': 1, 'bias': 'lora_only', 'use_dora': True},
     {'batch_size': 1, 'seq_len': 18, 'dtype': 'bf16', 'gradient_checkpointing': False, 'attn_implementation': 'sdpa'}),
    ('llama-prefix-projection-accumulation-encoder-grads-added', {'model_type': 'llama', 'hidden_size': 40, 'num_hidden_layers': 1, 'num_attention_heads': 4, 'num_key_value_heads': 4, 'head_dim': 24, 'intermediate_size': 196, 'vocab_size': 64, 'attention_bias': True, 'max_position_embeddings': 128},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 8, 'prefix_projection': True, 'encoder_hidden_size': 29},
     {'batch_size': 1, 'seq_len': 5, 'dtype': 'fp16', 'gradient_checkpointing': False, 'attn_implementation': 'sdpa', 'gradient_accumulation_steps': 4}),
    ('qwen2-full-one-layer-checkpointing-input-freed-before-embedding-backward', {'model_type': 'qwen2', 'hidden_size': 48, 'num_hidden_layers': 1, 'num_attention_heads': 6, 'num_key_value_heads': 6, 'intermediate_size': 56, 'vocab_size': 1146, 'tie_word_embeddings': True, 'max_position_embeddings': 128},
     {'name': 'full'},
     {'batch_size': 3, 'seq_len': 14, 'dtype': 'fp32', 'mixed_precision': 'bf16', 'gradient_checkpointing': True, 'attn_implementation': 'sdpa'}),
    ('gpt-neox-full-one-layer-rotary-freed-by-its-backward', {'model_type': 'gpt_neox', 'hidden_size': 32, 'num_hidden_layers': 1, 'num_attention_heads': 8, 'intermediate_size': 293, 'vocab_size': 224, 'max_position_embeddings': 64, 'tie_word_embeddings': True},
     {'name': 'full'},
     {'batch_size': 4, 'seq_len': 3, 'dtype': 'fp32', 'mixed_precision': 'bf16', 'gradient_checkpointing': False, 'attn_implementation': 'eager', 'optimizer': 'lion'}),
    ('olmo2-lora-one-kv-head-autocast-eager-batch-1-full-size-v-gradient', {'model_type': 'olmo2', 'hidden_size': 64, 'num_hidden_layers': 1, 'num_attention_heads': 8, 'num_key_value_heads': 1, 'intermediate_size': 87, 'vocab_size': 499, 'max_position_embeddings': 128},
     {'name': 'lora', 'r': 8, 'lora_alpha': 32, 'target_modules': ['q_proj', 'v_proj', 'gate_proj', 'k_proj', 'up_proj'], 'modules_to_save': ['norm', 'final_layer_norm']},
     {'batch_size': 1, 'seq_len': 69, 'dtype': 'fp32', 'mixed_precision': 'bf16', 'gradient_checkpointing': True, 'attn_implementation': 'eager'}),
    ('gemma-qlora-embedding-copy-fp32-embed-scale', {'model_type': 'gemma', 'hidden_size': 20, 'num_hidden_layers': 3, 'num_attention_heads': 2, 'num_key_value_heads': 2, 'head_dim': 16, 'intermediate_size': 44, 'vocab_size': 3218, 'max_position_embeddings': 128},
     {'name': 'qlora', 'r': 5, 'lora_alpha': 16, 'modules_to_save': ['embed_tokens', 'final_layer_norm']},
     {'batch_size': 4, 'seq_len': 78, 'dtype': 'bf16', 'gradient_checkpointing': True, 'attn_implementation': 'sdpa'}),
    ('gemma3-qlora-one-kv-head-autocast-casts-the-stride-0-view', {'model_type': 'gemma3_text', 'hidden_size': 96, 'num_hidden_layers': 3, 'num_attention_heads': 6, 'num_key_value_heads': 1, 'head_dim': 12, 'intermediate_size': 57, 'vocab_size': 130, 'sliding_window': 8, 'max_position_embeddings': 256},
     {'name': 'qlora', 'r': 12, 'target_modules': ['o_proj', 'up_proj', 'gate_proj'], 'layers_to_transform': [0], 'bnb_4bit_compute_dtype': 'fp16'},
     {'batch_size': 6, 'seq_len': 124, 'dtype': 'fp32', 'mixed_precision': 'bf16', 'gradient_checkpointing': False, 'attn_implementation': 'eager'}),
    ('gpt-neox-qdora-fp16-compute-on-bf16-promotes-base-minus-bias', {'model_type': 'gpt_neox', 'hidden_size': 60, 'num_hidden_layers': 3, 'num_attention_heads': 6, 'intermediate_size': 140, 'vocab_size': 381, 'max_position_embeddings': 256},
     {'name': 'qlora', 'r': 4, 'target_modules': 'all-linear', 'bnb_4bit_compute_dtype': 'fp16', 'prepare_model_for_kbit_training': False, 'use_dora': True},
     {'batch_size': 2, 'seq_len': 99, 'dtype': 'bf16', 'gradient_checkpointing': True, 'attn_implementation': 'eager'}),
    ('llama-lora-embedding-copy-adafactor-steps-it-before-the-layers', {'model_type': 'llama', 'hidden_size': 40, 'num_hidden_layers': 5, 'num_attention_heads': 4, 'num_key_value_heads': 4, 'head_dim': 12, 'intermediate_size': 258, 'vocab_size': 3176, 'attention_bias': True, 'max_position_embeddings': 128},
     {'name': 'lora', 'r': 6, 'lora_alpha': 3.5, 'lora_dropout': 0.1, 'bias': 'lora_only', 'modules_to_save': ['lm_head', 'embed_tokens']},
     {'batch_size': 1, 'seq_len': 28, 'dtype': 'bf16', 'gradient_checkpointing': True, 'attn_implementation': 'eager', 'optimizer': 'adafactor'}),
    ('mistral-ia3-gelu-fast-keeps-its-python-formula-products', {'model_type': 'mistral', 'hidden_size': 32, 'num_hidden_layers': 4, 'num_attention_heads': 8, 'num_key_value_heads': 2, 'intermediate_size': 179, 'vocab_size': 111, 'sliding_window': 3, 'max_position_embeddings': 128, 'hidden_act': 'gelu_fast'},
     {'name': 'ia3', 'target_modules': ['q_proj', 'down_proj', 'k_proj'], 'feedforward_modules': ['down_proj', 'k_proj', 'q_proj']},
     {'batch_size': 7, 'seq_len': 38, 'dtype': 'fp32', 'gradient_checkpointing': False, 'attn_implementation': 'eager', 'padding_mask': True}),
    ('starcoder2-prefix-gelu-new-residual-dropout-inside-attention-and-mlp', {'model_type': 'starcoder2', 'hidden_size': 48, 'num_hidden_layers': 1, 'num_attention_heads': 8, 'num_key_value_heads': 4, 'intermediate_size': 205, 'vocab_size': 159, 'max_position_embeddings': 128, 'hidden_act': 'gelu_new', 'use_bias': False, 'sliding_window': 5, 'residual_dropout': 0.1},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 20},
     {'batch_size': 4, 'seq_len': 10, 'dtype': 'fp32', 'gradient_checkpointing': False, 'attn_implementation': 'sdpa'}),
    ('gemma2-prompt-final-softcapping-null-is-off', {'model_type': 'gemma2', 'hidden_size': 32, 'num_hidden_layers': 2, 'num_attention_heads': 2, 'num_key_value_heads': 2, 'head_dim': 12, 'intermediate_size': 24, 'vocab_size': 398, 'sliding_window': 3, 'max_position_embeddings': 128, 'attention_bias': True, 'final_logit_softcapping': None},
     {'name': 'prompt_tuning', 'num_virtual_tokens': 30},
     {'batch_size': 1, 'seq_len': 32, 'dtype': 'fp32', 'gradient_checkpointing': True, 'attn_implementation': 'sdpa', 'optimizer': 'sgd'}),
    ('gemma3-ia3-gelu-fast-hidden-activation', {'model_type': 'gemma3_text', 'hidden_size': 40, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 2, 'head_dim': 8, 'intermediate_size': 275, 'vocab_size': 307, 'sliding_window': 3, 'max_position_embeddings': 128, 'attn_logit_softcapping': None, 'hidden_activation': 'gelu_fast', 'final_logit_softcapping': None},
     {'name': 'ia3', 'target_modules': ['o_proj', 'v_proj', 'k_proj', 'up_proj', 'gate_proj', 'down_proj'], 'feedforward_modules': ['up_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'down_proj'], 'modules_to_save': ['lm_head']},
     {'batch_size': 5, 'seq_len': 35, 'dtype': 'bf16', 'gradient_checkpointing': False, 'attn_implementation': 'sdpa', 'optimizer': 'sgd_momentum'}),
    ('gpt-neox-lora-quick-gelu-autocast', {'model_type': 'gpt_neox', 'hidden_size': 24, 'num_hidden_layers': 3, 'num_attention_heads': 6, 'intermediate_size': 293, 'vocab_size': 261, 'max_position_embeddings': 64, 'hidden_act': 'quick_gelu'},
     {'name': 'lora', 'r': 2, 'lora_alpha': 8, 'target_modules': ['dense_h_to_4h']},
     {'batch_size': 7, 'seq_len': 84, 'dtype': 'fp32', 'mixed_precision': 'fp16', 'gradient_checkpointing': False, 'attn_implementation': 'sdpa', 'padding_mask': True, 'optimizer': 'adamw_fused'}),
    ('opt-ia3-post-layernorm-checkpointing', {'model_type': 'opt', 'hidden_size': 16, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'ffn_dim': 103, 'vocab_size': 210, 'word_embed_proj_dim': 16, 'max_position_embeddings': 64, 'dropout': 0.0, 'do_layer_norm_before': False, 'enable_bias': False},
     {'name': 'ia3', 'modules_to_save': ['lm_head']},
     {'batch_size': 5, 'seq_len': 12, 'dtype': 'fp32', 'mixed_precision': 'bf16', 'gradient_checkpointing': True, 'attn_implementation': 'eager', 'optimizer': 'sgd_momentum'}),
    ('qwen2-qlora-lm-head-sliding-layers-build-the-full-mask-too', {'model_type': 'qwen2', 'hidden_size': 18, 'num_hidden_layers': 2, 'num_attention_heads': 3, 'num_key_value_heads': 1, 'intermediate_size': 77, 'vocab_size': 102, 'tie_word_embeddings': True, 'max_position_embeddings': 128, 'use_sliding_window': True, 'max_window_layers': 0},
     {'name': 'qlora', 'r': 2, 'lora_alpha': 32, 'target_modules': ['lm_head']},
     {'batch_size': 2, 'seq_len': 72, 'dtype': 'fp32', 'gradient_checkpointing': False, 'attn_implementation': 'eager', 'optimizer': 'adam'}),
    ('granite-prefix-attention-dropout-branch-bound-through-the-residual-add', {'model_type': 'granite', 'hidden_size': 64, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 1, 'intermediate_size': 40, 'vocab_size': 137, 'tie_word_embeddings': True, 'max_position_embeddings': 128, 'mlp_bias': False, 'attention_dropout': 0.1, 'attention_bias': False},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 25, 'prefix_projection': True, 'encoder_hidden_size': 19},
     {'batch_size': 5, 'seq_len': 50, 'dtype': 'fp32', 'mixed_precision': 'bf16', 'gradient_checkpointing': False, 'attn_implementation': 'eager', 'gradient_accumulation_steps': 4}),
    ('opt-ia3-post-layernorm-residual-bound-through-the-last-norm-recompute', {'model_type': 'opt', 'hidden_size': 48, 'num_hidden_layers': 2, 'num_attention_heads': 8, 'ffn_dim': 48, 'vocab_size': 163, 'word_embed_proj_dim': 16, 'max_position_embeddings': 64, 'do_layer_norm_before': False, 'activation_function': 'gelu', 'enable_bias': True},
     {'name': 'ia3'},
     {'batch_size': 7, 'seq_len': 12, 'dtype': 'fp32', 'mixed_precision': 'bf16', 'gradient_checkpointing': True, 'attn_implementation': 'eager', 'padding_mask': True, 'gradient_accumulation_steps': 4, 'optimizer': 'adamw_8bit'}),
    ('phi3-lora-adafactor-steps-the-final-norm-copy-before-lm-head', {'model_type': 'phi3', 'hidden_size': 64, 'num_hidden_layers': 1, 'num_attention_heads': 4, 'num_key_value_heads': 2, 'intermediate_size': 229, 'vocab_size': 100, 'max_position_embeddings': 128, 'original_max_position_embeddings': 128, 'hidden_act': 'silu', 'embd_pdrop': 0.0, 'resid_pdrop': 0.0, 'partial_rotary_factor': 1.0},
     {'name': 'lora', 'r': 7, 'lora_alpha': 32, 'target_modules': 'all-linear', 'bias': 'lora_only', 'modules_to_save': ['norm', 'lm_head']},
     {'batch_size': 2, 'seq_len': 4, 'dtype': 'fp32', 'gradient_checkpointing': True, 'attn_implementation': 'sdpa', 'padding_mask': True, 'optimizer': 'adafactor'}),
    ('opt-qlora-bias-gradient-accumulated-after-the-input-buffer-add', {'model_type': 'opt', 'hidden_size': 30, 'num_hidden_layers': 2, 'num_attention_heads': 3, 'ffn_dim': 144, 'vocab_size': 57, 'word_embed_proj_dim': 40, 'max_position_embeddings': 256},
     {'name': 'qlora', 'r': 4, 'target_modules': ['fc2'], 'bnb_4bit_use_double_quant': True, 'bnb_4bit_compute_dtype': 'fp32', 'bias': 'lora_only'},
     {'batch_size': 1, 'seq_len': 66, 'dtype': 'bf16', 'gradient_checkpointing': False, 'attn_implementation': 'sdpa', 'padding_mask': True, 'gradient_accumulation_steps': 2}),
    ('gpt-neox-qlora-relu2-input-bound-through-the-square', {'model_type': 'gpt_neox', 'hidden_size': 60, 'num_hidden_layers': 1, 'num_attention_heads': 6, 'intermediate_size': 280, 'vocab_size': 101, 'max_position_embeddings': 64, 'hidden_act': 'relu2', 'attention_bias': True, 'tie_word_embeddings': True},
     {'name': 'qlora', 'r': 11, 'lora_alpha': 16, 'lora_dropout': 0.1, 'target_modules': ['embed_out']},
     {'batch_size': 4, 'seq_len': 21, 'dtype': 'bf16', 'gradient_checkpointing': False, 'attn_implementation': 'eager', 'padding_mask': True, 'optimizer': 'adafactor'}),
    ('olmo2-lora-head-autocast-rotary-casts-both-back-as-it-returns', {'model_type': 'olmo2', 'hidden_size': 64, 'num_hidden_layers': 1, 'num_attention_heads': 4, 'num_key_value_heads': 4, 'intermediate_size': 164, 'vocab_size': 97, 'tie_word_embeddings': False, 'attention_bias': False, 'max_position_embeddings': 64},
     {'name': 'lora', 'r': 6, 'lora_alpha': 8, 'lora_dropout': 0.1, 'target_modules': ['lm_head']},
     {'batch_size': 2, 'seq_len': 51, 'dtype': 'fp32', 'mixed_precision': 'bf16', 'gradient_checkpointing': False, 'attn_implementation': 'sdpa'}),
    ('olmo2-lora-head-eager-fp16-autocast-softmax-cast-holds-the-scores', {'model_type': 'olmo2', 'hidden_size': 12, 'num_hidden_layers': 1, 'num_attention_heads': 2, 'num_key_value_heads': 2, 'intermediate_size': 99, 'vocab_size': 61, 'max_position_embeddings': 128, 'attention_bias': False, 'tie_word_embeddings': False},
     {'name': 'lora', 'r': 6, 'target_modules': ['lm_head']},
     {'batch_size': 5, 'seq_len': 61, 'dtype': 'fp32', 'mixed_precision': 'fp16', 'gradient_checkpointing': False, 'attn_implementation': 'eager'}),
    ('gpt2-lora-head-block-binds-ln1-output-attention-its-qkv-through-resid-dropout', {'model_type': 'gpt2', 'n_embd': 80, 'n_layer': 1, 'n_head': 8, 'n_positions': 64, 'vocab_size': 49, 'attn_pdrop': 0.0, 'tie_word_embeddings': True, 'n_inner': 37, 'scale_attn_by_inverse_layer_idx': False},
     {'name': 'lora', 'r': 7, 'target_modules': ['lm_head'], 'lora_dropout': 0.1, 'use_dora': False},
     {'batch_size': 2, 'seq_len': 29, 'dtype': 'fp32', 'gradient_checkpointing': False, 'attn_implementation': 'sdpa', 'padding_mask': True}),
    ('gemma-lora-head-padded-autocast-sdpa-additive-mask-while-the-kernel-runs', {'model_type': 'gemma', 'hidden_size': 32, 'num_hidden_layers': 1, 'num_attention_heads': 8, 'num_key_value_heads': 2, 'head_dim': 16, 'intermediate_size': 119, 'vocab_size': 59, 'max_position_embeddings': 128, 'attention_bias': True, 'tie_word_embeddings': True, 'attention_dropout': 0.0},
     {'name': 'lora', 'r': 2, 'target_modules': ['lm_head'], 'lora_dropout': 0.1},
     {'batch_size': 7, 'seq_len': 83, 'dtype': 'fp32', 'mixed_precision': 'bf16', 'gradient_checkpointing': False, 'attn_implementation': 'sdpa', 'padding_mask': True, 'optimizer': 'adamw_32bit'}),
    ('llama-qdora-bf16-compute-fp16-autocast-output-minus-bias-promotes-to-fp32', {'model_type': 'llama', 'hidden_size': 60, 'num_hidden_layers': 1, 'num_attention_heads': 6, 'num_key_value_heads': 6, 'head_dim': 24, 'intermediate_size': 108, 'vocab_size': 260, 'attention_bias': True, 'max_position_embeddings': 256},
     {'name': 'qlora', 'r': 2, 'target_modules': ['o_proj'], 'bnb_4bit_use_double_quant': True, 'bnb_4bit_compute_dtype': 'bf16', 'use_dora': True},
     {'batch_size': 6, 'seq_len': 34, 'dtype': 'fp32', 'mixed_precision': 'fp16', 'gradient_checkpointing': False, 'attn_implementation': 'eager', 'padding_mask': True, 'optimizer': 'lion_8bit'}),
    ('gemma2-lora-head-eager-fp16-autocast-matmul-holds-its-cast-arguments', {'model_type': 'gemma2', 'hidden_size': 96, 'num_hidden_layers': 1, 'num_attention_heads': 6, 'num_key_value_heads': 3, 'head_dim': 16, 'intermediate_size': 70, 'vocab_size': 71, 'sliding_window': 50, 'max_position_embeddings': 128, 'attention_bias': True, 'tie_word_embeddings': False, 'final_logit_softcapping': None},
     {'name': 'lora', 'r': 8, 'target_modules': ['lm_head']},
     {'batch_size': 4, 'seq_len': 12, 'dtype': 'fp32', 'mixed_precision': 'fp16', 'gradient_checkpointing': False, 'attn_implementation': 'eager'}),
    ('gemma3-lora-top-layer-no-sliding-layer-still-builds-the-sliding-mask', {'model_type': 'gemma3_text', 'hidden_size': 24, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 1, 'head_dim': 16, 'intermediate_size': 259, 'vocab_size': 57, 'sliding_window': 8, 'max_position_embeddings': 128, 'sliding_window_pattern': 1, 'attention_bias': True, 'attn_logit_softcapping': 20.0},
     {'name': 'lora', 'r': 7, 'target_modules': ['down_proj', 'up_proj', 'q_proj', 'gate_proj', 'k_proj', 'o_proj'], 'layers_to_transform': [1], 'lora_dropout': 0.1},
     {'batch_size': 4, 'seq_len': 86, 'dtype': 'fp32', 'gradient_checkpointing': False, 'attn_implementation': 'sdpa'}),
    # stop 28 (tools/draw.py): P-tuning's encoder is token_dim wide, OPT's projected embedding width, not hidden_size
    # (+352 B per virtual token before)
    ('opt-p-tuning-projected-embeddings-encoder-is-token-dim-wide', {'model_type': 'opt', 'hidden_size': 120, 'num_hidden_layers': 2, 'num_attention_heads': 5, 'ffn_dim': 172, 'vocab_size': 81, 'max_position_embeddings': 128, 'word_embed_proj_dim': 32},
     {'name': 'p_tuning', 'num_virtual_tokens': 10, 'encoder_hidden_size': 20, 'token_dim': 32},
     {'batch_size': 3, 'seq_len': 17, 'dtype': 'fp32', 'attn_implementation': 'eager', 'gradient_checkpointing': True}),
    # stop 28: a single attention head folds (b, 1, s, d) into (b, s, d) as a view at any batch, as batch 1 does: eager's
    # matmuls keep views of the projection (GPT-2's c_attn, GPT-NeoX's query_key_value: held whole) instead of
    # copies, and the output's transpose is contiguous already (-2 x b x s x head_dim bytes before)
    ('gpt2-prefix-single-head-eager-matmul-keeps-c-attn', {'model_type': 'gpt2', 'n_embd': 24, 'n_layer': 1, 'n_head': 1, 'n_positions': 128, 'vocab_size': 123, 'attn_pdrop': 0.0, 'tie_word_embeddings': True, 'embd_pdrop': 0.0, 'resid_pdrop': 0.0},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 4},
     {'batch_size': 2, 'seq_len': 9, 'dtype': 'fp32', 'attn_implementation': 'eager', 'gradient_checkpointing': False, 'optimizer': 'sgd_momentum'}),
    ('gpt-neox-lora-single-head-fp16-eager-value-a-view-of-qkv', {'model_type': 'gpt_neox', 'hidden_size': 24, 'num_hidden_layers': 2, 'num_attention_heads': 1, 'intermediate_size': 232, 'vocab_size': 145, 'max_position_embeddings': 128, 'rotary_pct': 0.25, 'tie_word_embeddings': False},
     {'name': 'lora', 'r': 4},
     {'batch_size': 2, 'seq_len': 23, 'dtype': 'fp16', 'attn_implementation': 'eager', 'gradient_checkpointing': False}),
    ('gpt-neox-prompt-single-head-sdpa-output-contiguous', {'model_type': 'gpt_neox', 'hidden_size': 20, 'num_hidden_layers': 2, 'num_attention_heads': 1, 'intermediate_size': 52, 'vocab_size': 101, 'max_position_embeddings': 128, 'rotary_pct': 0.5},
     {'name': 'prompt_tuning', 'num_virtual_tokens': 6},
     {'batch_size': 3, 'seq_len': 11, 'dtype': 'bf16', 'attn_implementation': 'sdpa', 'gradient_checkpointing': True}),
    ('phi3-lora-single-head-sdpa-rotary-cat-output-contiguous', {'model_type': 'phi3', 'hidden_size': 16, 'num_hidden_layers': 2, 'num_attention_heads': 1, 'num_key_value_heads': 1, 'intermediate_size': 40, 'vocab_size': 90, 'max_position_embeddings': 128, 'original_max_position_embeddings': 128, 'partial_rotary_factor': 0.5},
     {'name': 'lora', 'r': 4, 'target_modules': 'all-linear'},
     {'batch_size': 3, 'seq_len': 11, 'dtype': 'fp32', 'attn_implementation': 'sdpa', 'gradient_checkpointing': False}),
    # stop 28: what was made before the layers and only the layers save (rotary cos/sin) goes inside the backward of the
    # lowest layer that saves it, after its rotary: here layer 1 (the bottom layer's q and k need no grad), of the top's
    # kind, whose moments held the pair to its end (+128 B per token before)
    ('gpt-neox-qlora-mlp-rotary-pair-freed-inside-the-lowest-layer-that-saves-it', {'model_type': 'gpt_neox', 'hidden_size': 96, 'num_hidden_layers': 4, 'num_attention_heads': 3, 'intermediate_size': 150, 'vocab_size': 297, 'max_position_embeddings': 512, 'rotary_pct': 0.5, 'tie_word_embeddings': False, 'use_parallel_residual': False},
     {'name': 'qlora', 'r': 8, 'lora_alpha': 8, 'target_modules': ['dense_h_to_4h', 'dense_4h_to_h'], 'bias': 'lora_only', 'bnb_4bit_use_double_quant': False},
     {'batch_size': 1, 'seq_len': 5, 'dtype': 'fp16', 'attn_implementation': 'eager', 'gradient_checkpointing': False, 'padding_mask': True, 'optimizer': 'sgd_momentum', 'use_cache': True}),
    # stop 28: Phi3Attention binds ``qkv`` until it returns; with prefix tuning nothing saves its slices, and a 4-wide MLP
    # leaves the attention's forward to set the peak (-16,560 B before)
    ('phi3-prefix-eager-qkv-bound-until-the-attention-returns', {'model_type': 'phi3', 'hidden_size': 60, 'num_hidden_layers': 2, 'num_attention_heads': 6, 'num_key_value_heads': 6, 'intermediate_size': 4, 'vocab_size': 84, 'max_position_embeddings': 512, 'original_max_position_embeddings': 512},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 4},
     {'batch_size': 2, 'seq_len': 23, 'dtype': 'fp32', 'attn_implementation': 'eager', 'gradient_checkpointing': False}),
    # stop 29: the virtual tokens' prompts run backward after the layers (cat, cast, repeat, P-tuning's MLP, the
    # prompt embedding); at one token with SGD the encoder's gradients and the logits held through backward set the
    # peak there (-1,528 B before, -2,824 B in fp32 without checkpointing)
    ('llama-p-tuning-encoder-backward-after-the-layers', {'model_type': 'llama', 'hidden_size': 24, 'num_hidden_layers': 1, 'num_attention_heads': 1, 'num_key_value_heads': 1, 'intermediate_size': 117, 'vocab_size': 288, 'max_position_embeddings': 512, 'head_dim': 2},
     {'name': 'p_tuning', 'num_virtual_tokens': 1, 'encoder_hidden_size': 32},
     {'batch_size': 1, 'seq_len': 1, 'dtype': 'bf16', 'attn_implementation': 'eager', 'gradient_checkpointing': True, 'padding_mask': True, 'optimizer': 'sgd_momentum'}),
    ('llama-p-tuning-encoder-backward-after-the-layers-fp32', {'model_type': 'llama', 'hidden_size': 24, 'num_hidden_layers': 1, 'num_attention_heads': 1, 'num_key_value_heads': 1, 'intermediate_size': 117, 'vocab_size': 288, 'max_position_embeddings': 512, 'head_dim': 2},
     {'name': 'p_tuning', 'num_virtual_tokens': 1, 'encoder_hidden_size': 32},
     {'batch_size': 1, 'seq_len': 1, 'dtype': 'fp32', 'attn_implementation': 'eager', 'gradient_checkpointing': False, 'optimizer': 'sgd'}),
    # stop 30: PEFT fills Gemma2/3's two-layer cache crosswise (keys of both layers from the first chunk, values from
    # the second) and a sliding layer's cache slices what it is given (a slice node even where the prefix is shorter
    # than the window): the prefix's gather after the layers has other moments (-12,520, -3,072 and -2,428 B before)
    ('gemma3-prefix-sliding-cache-slices-the-virtual-tokens', {'model_type': 'gemma3_text', 'hidden_size': 16, 'num_hidden_layers': 2, 'num_attention_heads': 8, 'num_key_value_heads': 8, 'intermediate_size': 183, 'vocab_size': 332, 'max_position_embeddings': 512, 'head_dim': 6, 'sliding_window': 4, 'tie_word_embeddings': True},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 10},
     {'batch_size': 2, 'seq_len': 1, 'dtype': 'fp32', 'attn_implementation': 'eager', 'gradient_checkpointing': False}),
    ('gemma3-prefix-shorter-than-the-window-still-sliced', {'model_type': 'gemma3_text', 'hidden_size': 16, 'num_hidden_layers': 2, 'num_attention_heads': 8, 'num_key_value_heads': 8, 'intermediate_size': 183, 'vocab_size': 332, 'max_position_embeddings': 512, 'head_dim': 6, 'sliding_window': 64, 'tie_word_embeddings': True},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 10},
     {'batch_size': 2, 'seq_len': 1, 'dtype': 'fp32', 'attn_implementation': 'eager', 'gradient_checkpointing': False}),
    ('gemma2-prefix-crosswise-chunks-full-top-layer', {'model_type': 'gemma2', 'hidden_size': 24, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 2, 'intermediate_size': 37, 'vocab_size': 96, 'max_position_embeddings': 512, 'head_dim': 8, 'sliding_window': 8, 'tie_word_embeddings': False},
     {'name': 'prefix_tuning', 'num_virtual_tokens': 13},
     {'batch_size': 3, 'seq_len': 1, 'dtype': 'bf16', 'attn_implementation': 'sdpa', 'gradient_checkpointing': False, 'optimizer': 'sgd'}),
]


def drawn_cases() -> list[tuple[str, dict, dict, dict]]:
    return [(label, dict(cfg, pad_token_id=0, bos_token_id=1, eos_token_id=2), method, training) for label, cfg, method, training in _DRAWN]


# ---- architecture config fields (stop 20) --------------------------------------------------------------
# one step each, options varied between them (method, dtype, autocast, kernel, checkpointing, batch 1)
_FIELD_STEPS = [
    ({"name": "lora", "r": 3, "target_modules": "all-linear"},
     {"batch_size": 2, "seq_len": 9, "dtype": "bf16", "attn_implementation": "sdpa", "gradient_checkpointing": False}),
    ({"name": "full"}, {"batch_size": 2, "seq_len": 7, "dtype": "fp32", "attn_implementation": "eager", "gradient_checkpointing": True}),
    ({"name": "ia3", "target_modules": "all-linear", "feedforward_modules": []},
     {"batch_size": 3, "seq_len": 6, "dtype": "fp32", "mixed_precision": "bf16", "attn_implementation": "eager", "gradient_checkpointing": False}),
    ({"name": "prompt_tuning", "num_virtual_tokens": 3},
     {"batch_size": 1, "seq_len": 8, "dtype": "fp16", "attn_implementation": "sdpa", "gradient_checkpointing": False}),
    # frozen layers: only the head trains, so the layers run without autograd and the forward's own lifetimes (what
    # a statement or a function binds, what an op reads while it runs) set its moments
    ({"name": "lora", "r": 2, "target_modules": ["<head>"]},
     {"batch_size": 2, "seq_len": 9, "dtype": "fp32", "mixed_precision": "bf16", "attn_implementation": "eager", "gradient_checkpointing": False}),
]
_FIELDS = {
    "starcoder2-residual-dropout": ("starcoder2", {"residual_dropout": 0.1}),
    "starcoder2-embedding-dropout": ("starcoder2", {"embedding_dropout": 0.1}),
    "starcoder2-attention-dropout": ("starcoder2", {"attention_dropout": 0.1}),
    "gpt-neox-hidden-dropout-parallel": ("gpt_neox", {"hidden_dropout": 0.1}),
    "gpt-neox-hidden-dropout-sequential": ("gpt_neox", {"hidden_dropout": 0.1, "use_parallel_residual": False}),
    "phi3-resid-dropout": ("phi3", {"resid_pdrop": 0.1}),
    "phi3-sliding-window": ("phi3", {"sliding_window": 5}),
    "gemma2-no-final-softcapping": ("gemma2", {"final_logit_softcapping": None}),
    "gemma2-no-attention-softcapping": ("gemma2", {"attn_logit_softcapping": None}),
    "opt-post-layernorm": ("opt", {"do_layer_norm_before": False}),
    "opt-layernorm-without-weights": ("opt", {"layer_norm_elementwise_affine": False}),
    "gpt2-attention-dropout": ("gpt2", {"attn_pdrop": 0.1}),
    "llama-attention-dropout": ("llama", {"attention_dropout": 0.1}),
    "qwen2-attention-dropout": ("qwen2", {"attention_dropout": 0.1}),
    "gemma2-attention-dropout": ("gemma2", {"attention_dropout": 0.1}),
    "gpt2-upcast-attention": ("gpt2", {"reorder_and_upcast_attn": True, "scale_attn_by_inverse_layer_idx": True}),
}


def config_field_cases() -> list[tuple[str, dict, dict, dict]]:
    """Every MLP activation function the estimate models, on a gated MLP (Llama) and a plain one (GPT-2), and config
    fields that change what a step keeps, each over the steps above: (label, config, method, training)."""
    from peft_footprint.act_fns import ACT_FNS, act_field

    def step(mt: str, i: int) -> tuple[dict, dict]:
        method, training = _FIELD_STEPS[i]
        if method.get("target_modules") == ["<head>"]:
            method = dict(method, target_modules=["embed_out" if mt == "gpt_neox" else "lm_head"])
        return method, training

    out = [(f"{mt}-{act}", dict(TINY[mt], **{act_field(mt): act}), *step(mt, i % len(_FIELD_STEPS)))
           for mt in ("llama", "gpt2") for i, act in enumerate(sorted(ACT_FNS))]
    for label, (mt, fields) in _FIELDS.items():
        for i in range(len(_FIELD_STEPS)):
            method, training = step(mt, i)
            cfg = dict(TINY[mt], **fields)
            if mt == "opt" and method["name"] == "prompt_tuning":
                method = dict(method, token_dim=cfg["word_embed_proj_dim"])  # (PEFT's default token_dim is hidden_size)
            if fields.get("attn_pdrop", fields.get("attention_dropout")) and training["attn_implementation"] == "sdpa":
                training = dict(training, attn_implementation="eager")  # (CPU sdpa drops out on its math kernel: refused)
            if fields.get("reorder_and_upcast_attn"):  # (the option acts on eager attention only)
                training = dict(training, attn_implementation="eager")
            out.append((f"{label}-{i}", cfg, method, training))
    return out


# ---- padded batches, and the end of full fine-tuning's backward -------------------------------------
def padded_cases() -> list[tuple[str, dict, dict, dict]]:
    """A batch whose attention_mask pads (training.padding_mask): transformers builds an explicit mask, and sdpa
    loses its GQA path. (label, config, method, training)."""
    return [(f"{mt}-{mid}-padded", TINY[mt], peft_methods(mt)[mid],
             {"batch_size": 3, "seq_len": 13, "dtype": "bf16", "attn_implementation": "sdpa", "padding_mask": True,
              "gradient_checkpointing": mid == "full"})
            for mt in TINY for mid in ("lora", "full")]


def embedding_end_cases() -> list[tuple[str, dict, dict, dict]]:
    """Full fine-tuning at a small shape with SGD (nothing added at the optimizer step), tied and untied: the peak
    is the word embedding's backward at the very end of the step."""
    return [(f"{mt}-full-{'tied' if tie else 'untied'}-sgd", dict(TINY[mt], tie_word_embeddings=tie), {"name": "full"},
             {"batch_size": 1, "seq_len": 7, "dtype": "fp32", "attn_implementation": "sdpa", "optimizer": "sgd",
              "gradient_checkpointing": False})
            for mt in TINY for tie in (True, False)]


_EMBEDDING_BACKWARD = [
    ("llama", False, {"dtype": "bf16"}), ("llama", False, {"dtype": "bf16", "gradient_accumulation_steps": 2}),
    ("llama", True, {"dtype": "fp32", "gradient_checkpointing": True}), ("gpt2", False, {"dtype": "fp32", "mixed_precision": "bf16"}),
    ("gpt2", True, {"dtype": "bf16", "gradient_accumulation_steps": 4}), ("gemma", False, {"dtype": "fp16", "gradient_checkpointing": True}),
    ("opt", False, {"dtype": "fp32", "gradient_accumulation_steps": 2, "gradient_checkpointing": True}),
    ("qwen3", True, {"dtype": "fp32", "mixed_precision": "fp16", "gradient_accumulation_steps": 2}),
    # a modules_to_save copy of the learned positions: its embedding backward runs first, its gradient stays
    ("gpt2", False, {"dtype": "fp32", "modules_to_save": ["wpe"]}),
    ("opt", False, {"dtype": "bf16", "modules_to_save": ["embed_positions"], "gradient_checkpointing": True}),
    ("opt", False, {"dtype": "fp32", "modules_to_save": ["embed_positions"], "gradient_accumulation_steps": 2}),
]


def embedding_backward_cases() -> list[tuple[str, dict, dict, dict]]:
    """LoRA / DoRA on the input embedding with a 3,001-token vocabulary, 1 x 3 tokens and SGD: the embedding's
    backward, after every layer's, sets the peak (lora_embedding_A's gradient cloned in its layout). The rank
    is over DoRA's forward temporaries (vocab x width). (label, config, method, training)."""
    out = []
    for mt, dora, options in _EMBEDDING_BACKWARD:
        options = dict(options)
        emb, other = ("wte", "c_attn") if mt == "gpt2" else ("embed_tokens", "q_proj")
        method = {"name": "lora", "r": 256 if dora else 64, "use_dora": dora, "target_modules": [emb, other]}
        if "modules_to_save" in options:
            method["modules_to_save"] = options.pop("modules_to_save")
        tags = {"mixed_precision": "autocast-{}", "gradient_checkpointing": "ckpt", "gradient_accumulation_steps": "accum{}"}
        label = "-".join([mt, "dora" if dora else "lora", "embedding", options["dtype"],
                          *(tags[k].format(v) for k, v in options.items() if k in tags),
                          *("save-" + m for m in method.get("modules_to_save", []))])
        training = {"batch_size": 1, "seq_len": 3, "optimizer": "sgd", "attn_implementation": "sdpa",
                    "gradient_checkpointing": False, **options}
        out.append((label, dict(TINY[mt], vocab_size=3001), method, training))
    return out


_OPT_PROJ = {"model_type": "opt", "hidden_size": 24, "num_hidden_layers": 6, "num_attention_heads": 4, "ffn_dim": 32,
             "vocab_size": 844, "word_embed_proj_dim": 32, "max_position_embeddings": 4096, **IDS}
_GPT2_LONG = {"model_type": "gpt2", "n_embd": 24, "n_layer": 2, "n_head": 4, "n_positions": 4096, "vocab_size": 844,
              "attn_pdrop": 0.0, **IDS}
_POSITION_COPIES = [  # (label, config, modules_to_save, gradient_checkpointing)
    ("opt-proj-word-copy-ckpt", _OPT_PROJ, ["embed_tokens"], True),
    ("opt-proj-position-copy-ckpt", _OPT_PROJ, ["embed_positions"], True),
    ("opt-proj-position-copy", _OPT_PROJ, ["embed_positions"], False),
    ("opt-position-copy-ckpt", {k: v for k, v in _OPT_PROJ.items() if k != "word_embed_proj_dim"}, ["embed_positions"], True),
    ("gpt2-position-copy-ckpt", _GPT2_LONG, ["wpe"], True),
    ("gpt2-position-copy", _GPT2_LONG, ["wpe"], False),
]


def position_copy_cases() -> list[tuple[str, dict, dict, dict]]:
    """modules_to_save copies of the word or learned-position embedding with LoRA, 1 x 3 tokens, SGD, 4,096
    positions: the copies' weight gradients, after every layer's backward, set the peak. A positions-only copy's
    backward runs with its indices and the word embeddings' output gradient alive (OPT-350m's project_in: its
    input's gradient). (label, config, method, training)"""
    return [(label, cfg, {"name": "lora", "r": 1, "modules_to_save": saved},
             {"batch_size": 1, "seq_len": 3, "dtype": "bf16", "attn_implementation": "eager", "optimizer": "sgd",
              "gradient_checkpointing": gc}) for label, cfg, saved, gc in _POSITION_COPIES]


def one_token_query_cases() -> list[tuple[str, dict, dict, dict]]:
    """Prefix tuning on a sequence of one token: with the prefix's cache the keys are longer than the query, yet
    transformers builds no sdpa mask for a one-token query (_ignore_causal_mask_sdpa) unless a batch pads or a
    window slides. (label, config, method, training)"""
    out = []
    for mt, options in (("llama", {"dtype": "bf16"}), ("starcoder2", {"dtype": "bf16"}), ("qwen2", {"dtype": "fp16", "batch_size": 3}),
                        ("gpt2", {"dtype": "fp32", "mixed_precision": "bf16"}), ("opt", {"dtype": "bf16", "padding_mask": True}),
                        ("mistral", {"dtype": "bf16"}), ("phi3", {"dtype": "bf16", "gradient_accumulation_steps": 2})):
        cfg = dict(TINY[mt], sliding_window=4) if mt in ("mistral", "starcoder2") else TINY[mt]  # (the window: 11 + 1 keys)
        method = {"name": "prefix_tuning", "num_virtual_tokens": 11, "prefix_projection": mt == "gpt2"}
        training = {"batch_size": 2, "seq_len": 1, "attn_implementation": "sdpa", "gradient_checkpointing": False, **options}
        out.append((f"{mt}-prefix-one-token-{'-'.join(map(str, options.values()))}", cfg, method, training))
    return out



_ONE_TOKEN = [  # (model type, method, training options): batch 4 x 1 token
    ("gpt_neox", {"name": "ia3"}, {"dtype": "fp32", "attn_implementation": "eager", "gradient_checkpointing": True}),
    ("gpt_neox", {"name": "ia3"}, {"dtype": "fp32", "attn_implementation": "eager"}),
    ("gpt_neox", {"name": "ia3"}, {"dtype": "bf16", "attn_implementation": "eager", "gradient_checkpointing": True}),
    ("gpt_neox", {"name": "lora", "r": 4}, {"dtype": "fp32", "attn_implementation": "eager", "gradient_checkpointing": True}),
    ("llama", {"name": "lora", "r": 4}, {"dtype": "bf16", "attn_implementation": "eager"}),
    ("qwen3", {"name": "full"}, {"dtype": "fp32", "mixed_precision": "bf16", "attn_implementation": "eager"}),
    # sdpa: Phi-3's output transpose is contiguous already (its rotary cat lays q out (b, heads, s, d))
    ("phi3", {"name": "ia3", "target_modules": ["o_proj", "down_proj", "gate_up_proj", "qkv_proj"],
              "feedforward_modules": ["qkv_proj", "o_proj"]},
     {"dtype": "fp32", "attn_implementation": "sdpa", "padding_mask": True, "gradient_checkpointing": True, "optimizer": "lion"}),
    # GPT-NeoX under sdpa: its output's transpose needs no copy either (drawn: +960 B, QLoRA, stop 25)
    ("gpt_neox", {"name": "lora", "r": 4, "target_modules": ["dense", "dense_h_to_4h"]}, {"dtype": "fp32", "attn_implementation": "sdpa"}),
    ("gpt_neox", {"name": "qlora", "r": 10, "target_modules": ["dense", "dense_h_to_4h"]}, {"dtype": "fp16", "attn_implementation": "sdpa"}),
    # slices of a projection fused along its last dim do not fold (GPT-2's q, k, v; Phi-3's v)
    ("gpt2", {"name": "prefix_tuning", "num_virtual_tokens": 5}, {"dtype": "fp32", "attn_implementation": "eager"}),
    ("gpt2", {"name": "lora", "r": 4}, {"dtype": "bf16", "attn_implementation": "eager", "gradient_checkpointing": True}),
    ("phi3", {"name": "full"}, {"dtype": "bf16", "attn_implementation": "eager"}),
]


def one_token_cases() -> list[tuple[str, dict, dict, dict]]:
    """Sequences of one token (no virtual tokens), batch 4: a (b, heads, 1, d) tensor's transposes and reshapes are
    views, so eager attention's matmuls copy none of q, k, v (but slices of a projection fused along its last
    dim: GPT-2's, Phi-3's v) and the attention output's transpose is contiguous already. Found by random draws
    (GPT-NeoX: 0.02-8 % low). (label, config, method, training)"""
    out = []
    for mt, method, options in _ONE_TOKEN:
        training = {"batch_size": 4, "seq_len": 1, "gradient_checkpointing": False, "optimizer": "sgd", **options}
        tags = [options["dtype"], options.get("mixed_precision", ""), options["attn_implementation"],
                "padded" if options.get("padding_mask") else "", "ckpt" if options.get("gradient_checkpointing") else ""]
        out.append(("-".join([mt, method["name"], "one-token", *filter(None, tags)]), TINY[mt], method, training))
    return out


def prefix_gather_cases() -> list[tuple[str, dict, dict, dict]]:
    """Prefix tuning in fp32 with short sequences: the top layer's prefix gradients are gathered (select_backward
    for its keys and values, then added) while every lower layer's whole concatenated key and value gradients
    are alive, which sets the peak. (label, config, method, training)"""
    out = []
    for mt, layers, tokens, seq in (("llama", 2, 11, 1), ("phi3", 2, 11, 1), ("qwen3", 1, 11, 1), ("gpt_neox", 1, 5, 3),
                                    ("opt", 2, 3, 1), ("granite", 2, 11, 1)):
        cfg = dict(TINY[mt], num_hidden_layers=layers)
        out.append((f"{mt}-L{layers}-prefix{tokens}-gather-s{seq}", cfg, {"name": "prefix_tuning", "num_virtual_tokens": tokens},
                    {"batch_size": 2, "seq_len": seq, "dtype": "fp32", "attn_implementation": "sdpa", "gradient_checkpointing": False}))
    return out


_OPT_PROJ_LORA = {"model_type": "opt", "hidden_size": 128, "num_hidden_layers": 6, "num_attention_heads": 8, "ffn_dim": 147,
                  "vocab_size": 423, "word_embed_proj_dim": 16, "max_position_embeddings": 64, **IDS}


def project_in_cases() -> list[tuple[str, dict, dict, dict]]:
    """LoRA on OPT-350m's project_in (``word_embed_proj_dim`` != ``hidden_size``; all-linear takes it): its
    backward, after every layer's, sets the peak at a few tokens. Drawn (-2,852 B before), and around it.
    (label, config, method, training)"""
    out = []
    for label, method, options in (
            ("all-linear-bf16-ckpt", {"name": "lora", "r": 12, "lora_alpha": 32, "target_modules": "all-linear"},
             {"dtype": "bf16", "gradient_checkpointing": True, "optimizer": "sgd_momentum"}),
            ("project_in-fp16-ckpt-s1", {"name": "lora", "r": 12, "target_modules": ["project_in"]},
             {"dtype": "fp16", "gradient_checkpointing": True, "seq_len": 1}),
            ("project_in-out-fp16-ckpt-s1", {"name": "lora", "r": 12, "target_modules": ["project_in", "project_out"]},
             {"dtype": "fp16", "gradient_checkpointing": True, "seq_len": 1})):
        training = {"batch_size": 1, "seq_len": 2, "attn_implementation": "sdpa", "gradient_checkpointing": False, "optimizer": "sgd", **options}
        out.append((f"opt-proj-lora-{label}", _OPT_PROJ_LORA, method, training))
    return out


_OPT_PROJ_COPIES = {"model_type": "opt", "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "ffn_dim": 70,
                    "vocab_size": 301, "word_embed_proj_dim": 40, "max_position_embeddings": 64, **IDS}
_GPT2_COPIES = {"model_type": "gpt2", "n_embd": 48, "n_layer": 2, "n_head": 4, "vocab_size": 301, "n_positions": 64, **IDS}


def embedding_copies_cases() -> list[tuple[str, dict, dict, dict]]:
    """modules_to_save copies of the embeddings (their weight gradients come after every layer's backward) with
    LoRA on OPT-350m's project_in, whose backward runs before the copies' (drawn: 14 of 120 aimed draws, -511 to
    -2,464 B), and both embeddings copied with gradient accumulation, where the positions' gradient is added into
    its .grad and gone before the word embedding's backward (+6,144 to +12,672 B). (label, config, method, training)"""
    lora = {"name": "lora", "r": 10, "target_modules": ["project_in"]}
    both = {"modules_to_save": ["embed_tokens", "embed_positions"]}
    out = []
    for label, cfg, method, options in (
            ("opt-proj-positions-bf16-ckpt", _OPT_PROJ_COPIES, {**lora, "modules_to_save": ["embed_positions"]},
             {"dtype": "bf16", "gradient_checkpointing": True}),
            ("opt-proj-dora-tokens-fp32-ckpt", _OPT_PROJ_COPIES, {**lora, "target_modules": ["project_in", "project_out"], "use_dora": True,
                                                              "modules_to_save": ["embed_tokens"]},
             {"dtype": "fp32", "gradient_checkpointing": True}),
            ("opt-all-linear-both-fp16-eager", _OPT_PROJ_COPIES, {**lora, "r": 5, "target_modules": "all-linear", **both},
             {"dtype": "fp16", "attn_implementation": "eager", "batch_size": 1, "seq_len": 2}),
            ("opt-proj-tokens-lm_head-fp32-eager", _OPT_PROJ_COPIES, {**lora, "r": 3, "target_modules": ["project_in", "q_proj", "fc1"],
                                                                  "modules_to_save": ["embed_tokens", "lm_head"]},
             {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 3}),
            ("opt-proj-both-bf16-ckpt-accumulating", _OPT_PROJ_COPIES, {**lora, **both},
             {"dtype": "bf16", "gradient_checkpointing": True, "gradient_accumulation_steps": 2}),
            ("opt-both-fp32-accumulating", dict(_OPT_PROJ_COPIES, word_embed_proj_dim=48), {**lora, "target_modules": ["q_proj"], **both},
             {"dtype": "fp32", "gradient_accumulation_steps": 2}),
            ("gpt2-both-fp32-eager-accumulating", _GPT2_COPIES, {**lora, "target_modules": ["c_attn"], "modules_to_save": ["wte", "wpe"]},
             {"dtype": "fp32", "attn_implementation": "eager", "gradient_accumulation_steps": 2}),
            ("gpt2-both-bf16-eager-ckpt-accumulating", _GPT2_COPIES, {**lora, "target_modules": ["c_attn"], "modules_to_save": ["wte", "wpe"]},
             {"dtype": "bf16", "attn_implementation": "eager", "gradient_checkpointing": True, "seq_len": 3, "gradient_accumulation_steps": 2})):
        training = {"batch_size": 2, "seq_len": 1, "attn_implementation": "sdpa", "gradient_checkpointing": False, "optimizer": "sgd", **options}
        out.append((label, cfg, method, training))
    return out


def adafactor_order_cases() -> list[tuple[str, dict, dict, dict]]:
    """transformers' Adafactor steps one parameter at a time, in the order of model.parameters(); the previous
    parameter's update is alive while the next one's first copies are made, so the order sets the step's peak
    where a small tensor comes before a half-precision copy of the head. A layer's parameters come in the
    order it registers its modules (OPT's k, v, q, then its norm; GPT-2's ln_1 first; the Llama family's norms
    after the MLP), and LoRA on OPT's project_in comes before the layers, as project_in does. Drawn (OPT, +92 to
    +3,788 B; Llama, +6,404 B) and around it. (label, config, method, training)"""
    out = []
    for label, cfg, method in (
            ("opt-proj-lora-lm_head-copy", _OPT_PROJ_COPIES, {"name": "lora", "r": 11, "target_modules": "all-linear",
                                                              "modules_to_save": ["final_layer_norm", "lm_head", "embed_positions"]}),
            ("opt-final_layer_norm-after-fc2", TINY["opt"], {"name": "lora", "r": 9, "target_modules": ["q_proj", "fc2"],
                                                             "modules_to_save": ["final_layer_norm", "lm_head"]}),
            ("llama-norm-after-mlp", TINY["llama"], {"name": "lora", "r": 9, "target_modules": ["down_proj"],
                                                     "modules_to_save": ["input_layernorm", "lm_head"]}),
            ("gpt2-ln_2-after-attention", dict(TINY["gpt2"], attn_pdrop=0.0), {"name": "lora", "r": 12, "target_modules": ["c_attn"],
                                                                               "modules_to_save": ["ln_2", "lm_head"]}),
            ("phi3-norm-after-o_proj", TINY["phi3"], {"name": "lora", "r": 12, "target_modules": ["o_proj"],
                                                      "modules_to_save": ["post_attention_layernorm", "lm_head"]})):
        out.append((f"adafactor-{label}", cfg, method, {"batch_size": 1, "seq_len": 1, "dtype": "fp16", "attn_implementation": "sdpa",
                                                         "gradient_checkpointing": False, "optimizer": "adafactor"}))
    return out



def dora_conv1d_accumulation_cases() -> list[tuple[str, dict, dict, dict]]:
    """DoRA with lora_dropout on GPT-2's Conv1D computes F.linear(dropout(x), transpose(W)), and PEFT's transpose()
    wraps W.T in a new nn.Parameter: a leaf made by every forward, whose gradient stays in its .grad while the
    graph lives. Under gradient accumulation that .grad is new too (the leaf is), not added into an existing one;
    with checkpointing each layer's stays through the layers below. Drawn (-19,216 B at 1 x 2 tokens under fp16
    autocast) and around it: before stop 26, -18,464 to -96,788 B. (label, config, method, training)"""
    cfg = dict(TINY["gpt2"], attn_pdrop=0.0)
    out = []
    for label, targets, options in (
            ("c_attn-fp16-autocast", ["c_attn"], {"dtype": "fp32", "mixed_precision": "fp16", "seq_len": 2}),
            ("c_attn-fp32", ["c_attn"], {"dtype": "fp32", "seq_len": 2}),
            ("all-conv1d-bf16-autocast", ["c_attn", "c_fc", "c_proj"], {"dtype": "fp32", "mixed_precision": "bf16", "seq_len": 5}),
            ("c_proj-fp32-batch2", ["c_proj"], {"dtype": "fp32", "batch_size": 2, "seq_len": 9})):
        method = {"name": "lora", "r": 8, "lora_dropout": 0.1, "use_dora": True, "target_modules": targets}
        out.append((f"gpt2-dora-dropout-{label}-ckpt-accumulating", cfg, method,
                    {"batch_size": 1, "attn_implementation": "sdpa", "gradient_checkpointing": True, "optimizer": "sgd",
                     "gradient_accumulation_steps": 4, **options}))
    return out


# (label, method, training options): LoRA on GPT-2's position embedding
_POSITION_LORA = [
    ("wpe-only-fp32", {"name": "lora", "r": 4, "target_modules": ["wpe"]}, {"dtype": "fp32"}),
    ("c_attn-wpe-bf16-eager", {"name": "lora", "r": 5, "target_modules": ["c_attn", "wpe"]}, {"dtype": "bf16", "attn_implementation": "eager"}),
    ("dora-wte-wpe-fp16-autocast", {"name": "lora", "r": 3, "target_modules": ["wte", "wpe"], "use_dora": True},
     {"dtype": "fp32", "mixed_precision": "fp16"}),
    ("wpe-wte-copy-ckpt-accumulating", {"name": "lora", "r": 6, "target_modules": ["wpe", "c_fc"], "modules_to_save": ["wte"]},
     {"dtype": "fp32", "gradient_checkpointing": True, "gradient_accumulation_steps": 2}),
    ("qlora-wpe-c_proj", {"name": "qlora", "r": 4, "target_modules": ["wpe", "c_proj"]}, {"dtype": "bf16"}),
    # DoRA's n_positions x width temporaries at 1 x 2 tokens, before GPT2Model builds the mask: they set the peak
    ("dora-wpe-fp16-eager-1x2", {"name": "lora", "r": 4, "target_modules": ["wpe"], "use_dora": True},
     {"dtype": "fp16", "attn_implementation": "eager", "batch_size": 1, "seq_len": 2}),
]


def position_lora_cases() -> list[tuple[str, dict, dict, dict]]:
    """LoRA (and DoRA) on GPT-2's wpe: PEFT's lora.Embedding on the (1, s) position ids, added to every sample's
    word embeddings, so every layer's input requires grad, and the sum's gradient, summed over the batch, runs
    the adapter's backward below the layers. Before stop 26 the adapter was left out (a note said so): 75 of 200
    drawn exact, activations to -98 % where wpe was the only target. (label, config, method, training)"""
    cfg = dict(TINY["gpt2"], attn_pdrop=0.0)
    return [(f"gpt2-lora-{label}", cfg, method, {"batch_size": 2, "seq_len": 9, "attn_implementation": "sdpa", "gradient_checkpointing": False,
                                                  "optimizer": "adamw", **options}) for label, method, options in _POSITION_LORA]


# (label, model type, method fields, training options): LoRA with trainable_token_indices
_TOKENS = [
    ("llama-untied-bf16", "llama", {"trainable_token_indices": [3, 5, 7]}, {"dtype": "bf16"}),
    # the embedding's dense vocab x width gradient sets the peak at one token
    ("llama-untied-fp16-1x2", "llama", {"trainable_token_indices": [3, 5, 7]}, {"dtype": "fp16", "batch_size": 1, "seq_len": 2}),
    ("qwen2-tied-bf16", "qwen2", {"trainable_token_indices": {"embed_tokens": [0, 9, 40]}}, {"dtype": "bf16"}),
    # the tied head's merged fp32 weight alive through its autocast matmul
    ("qwen2-tied-autocast", "qwen2", {"trainable_token_indices": [3, 5, 7, 11]}, {"dtype": "fp32", "mixed_precision": "bf16"}),
    ("qwen2-tied-fp32-1x2", "qwen2", {"trainable_token_indices": [3]}, {"dtype": "fp32", "batch_size": 1, "seq_len": 2}),
    ("gemma-tied-scaled-fp16", "gemma", {"trainable_token_indices": [1, 2]}, {"dtype": "fp16"}),
    ("gpt2-tied-ckpt-accumulating", "gpt2", {"trainable_token_indices": [50, 51], "target_modules": ["c_attn"]},
     {"dtype": "bf16", "gradient_checkpointing": True, "gradient_accumulation_steps": 2}),
    ("opt-project_in-eager", "opt", {"trainable_token_indices": [4, 6], "target_modules": ["q_proj", "v_proj"]},
     {"dtype": "bf16", "attn_implementation": "eager"}),
    ("qlora-llama", "llama", {"name": "qlora", "trainable_token_indices": [2, 8]}, {"dtype": "bf16"}),
    # PEFT's own TrainableTokens method: nothing else trains
    ("method-llama-untied-bf16", "llama", {"name": "trainable_tokens", "token_indices": [3, 5, 7]}, {"dtype": "bf16"}),
    ("method-mistral-untied-fp16-1x2", "mistral", {"name": "trainable_tokens", "token_indices": [3]}, {"dtype": "fp16", "batch_size": 1, "seq_len": 2}),
    ("method-gemma2-tied-autocast-softcapped", "gemma2", {"name": "trainable_tokens", "token_indices": [3, 5, 7], "target_modules": ["embed_tokens"]},
     {"dtype": "fp32", "mixed_precision": "bf16"}),
    ("method-granite-tied-ckpt-accumulating", "granite", {"name": "trainable_tokens", "token_indices": [10, 20]},
     {"dtype": "bf16", "gradient_checkpointing": True, "gradient_accumulation_steps": 2}),
    # drawn (-1,680 B): with gradient accumulation the gradient the tied head's adapter sends the shared delta waits
    # in its AccumulateGrad's input buffer for the embedding's, through every layer's backward (not added into .grad)
    ("gemma3-tied-ckpt-accumulating", {"model_type": "gemma3_text", "hidden_size": 60, "num_hidden_layers": 1, "num_attention_heads": 6,
                                       "num_key_value_heads": 6, "head_dim": 24, "intermediate_size": 246, "vocab_size": 320,
                                       "sliding_window": 8, "max_position_embeddings": 128, **IDS},
     {"r": 10, "bias": "lora_only", "use_dora": True, "trainable_token_indices": [6, 9, 11, 33, 38, 45, 46]},
     {"dtype": "fp16", "batch_size": 1, "seq_len": 68, "gradient_checkpointing": True, "attn_implementation": "eager",
      "padding_mask": True, "gradient_accumulation_steps": 4, "optimizer": "adafactor"}),
]


def trainable_tokens_cases() -> list[tuple[str, dict, dict, dict]]:
    """LoRA with ``trainable_token_indices``: PEFT's TrainableTokensLayer merges its fp32 rows into a whole copy of
    the embedding weight every forward (``index_copy``), looks the ids up in it, and in backward gathers the
    embedding's dense vocab x width gradient back to the rows; a tied lm_head multiplies by its own merged copy,
    which its matmul keeps, and whose vocab x width gradient it computes. Not modelled before stop 26 (refused as
    an unknown field). (label, config, method, training)"""
    out = []
    for label, mt, fields, options in _TOKENS:
        cfg = mt if isinstance(mt, dict) else dict(TINY[mt], vocab_size=300, **({"attn_pdrop": 0.0} if mt == "gpt2" else {}))
        method = fields if fields.get("name") == "trainable_tokens" else {"name": "lora", "r": 4, **fields}
        out.append((f"tokens-{label}", cfg, method, {"batch_size": 2, "seq_len": 9, "attn_implementation": "sdpa",
                                                     "gradient_checkpointing": False, "optimizer": "adamw", **options}))
    return out

# (config, method, options): use_cache=True, where the model's cache changes what a training step holds
_USE_CACHE = [
    ("mistral", {"name": "lora", "r": 4}, {"dtype": "bf16", "attn_implementation": "eager"}),
    ("llama", {"name": "full"}, {"dtype": "fp32"}),
    ("llama", {"name": "lora", "r": 4, "target_modules": ["lm_head"]}, {"dtype": "bf16"}),
    ("gpt_neox", {"name": "full"}, {"dtype": "bf16"}),
    ("phi3", {"name": "lora", "r": 4, "target_modules": "all-linear"}, {"dtype": "bf16", "padding_mask": True}),
    ("gemma2", {"name": "lora", "r": 4}, {"dtype": "bf16", "attn_implementation": "eager"}),
    ("mistral", {"name": "prompt_tuning", "num_virtual_tokens": 5}, {"dtype": "bf16"}),
    # the empty entries take the keys' dtype: fp32 keys (the rotary under autocast) make the values' copy fp32
    ("starcoder2", {"name": "lora", "r": 4, "target_modules": ["q_proj", "c_fc"]}, {"dtype": "fp32", "mixed_precision": "bf16"}),
    ("granite", {"name": "lora", "r": 4, "use_dora": True, "target_modules": ["k_proj", "v_proj", "down_proj"]},
     {"dtype": "bf16", "attn_implementation": "eager"}),
    # prefix tuning: the cache PEFT passes in is returned (and held) on every model, not only those that return it anyway
    ("qwen2", {"name": "prefix_tuning", "num_virtual_tokens": 5}, {"dtype": "fp32", "attn_implementation": "eager"}),
    ("gpt2", {"name": "prefix_tuning", "num_virtual_tokens": 5}, {"dtype": "fp32", "attn_implementation": "eager"}),
    ("qwen3", {"name": "prefix_tuning", "num_virtual_tokens": 5, "prefix_projection": True, "encoder_hidden_size": 12},
     {"dtype": "bf16", "padding_mask": True}),
]


def use_cache_cases() -> list[tuple[str, dict, dict, dict]]:
    """A training step with use_cache=True (transformers' default config.use_cache; checkpointing turns it off):
    each layer's cache.update cats its keys and values onto an empty entry, copies that attention reads and that
    the returned cache holds through backward; extra where attention keeps other tensors (GQA's repeated k and
    v, eager's copies). Before stop 25 only the cache kept between steps was counted: 8 of 16 first cases off,
    -16,384 to +16,384 B. (label, config, method, training)"""
    out = []
    for mt, method, options in _USE_CACHE:
        cfg = dict(TINY[mt], attn_pdrop=0.0) if mt == "gpt2" else TINY[mt]
        training = {"batch_size": 2, "seq_len": 16, "optimizer": "sgd", "use_cache": True, "gradient_checkpointing": False,
                    "attn_implementation": "sdpa", **options}
        tags = [options["dtype"], options.get("mixed_precision", ""), options.get("attn_implementation", "sdpa"),
                "padded" if options.get("padding_mask") else ""]
        out.append(("-".join([mt, method["name"], "use-cache", *filter(None, tags)]), cfg, method, training))
    return out


_MISTRAL_V40 = {"model_type": "mistral", "hidden_size": 96, "num_hidden_layers": 3, "num_attention_heads": 6, "num_key_value_heads": 3,
                "intermediate_size": 120, "vocab_size": 40, "sliding_window": 8, "max_position_embeddings": 128,
                "tie_word_embeddings": False, **IDS}
_NO_QK = {"name": "lora", "r": 9, "lora_alpha": 8, "target_modules": ["lm_head", "o_proj", "up_proj", "v_proj", "gate_proj", "down_proj"],
          "bias": "lora_only"}


def bottom_layer_cases() -> list[tuple[str, dict, dict, dict]]:
    """LoRA that leaves q_proj and k_proj frozen, without checkpointing: in the bottom layer (its input needs no
    grad) q and k need none, so its rotary saves no cos/sin (the layers above freed them before its backward),
    and sdpa's flash kernel returns the gradients of q and k all the same (freed as it returns). The bottom
    layer's backward sets the peak here. Drawn (mistral, 1 token: +64 B, fp32 -1,408 B). (label, config,
    method, training)"""
    out = []
    for dtype, b, s, padded in (("bf16", 2, 2, True), ("bf16", 1, 4, True), ("bf16", 2, 2, False), ("fp32", 1, 2, True),
                                ("fp32", 4, 1, True)):
        training = {"batch_size": b, "seq_len": s, "dtype": dtype, "attn_implementation": "sdpa", "padding_mask": padded,
                    "gradient_checkpointing": False, "optimizer": "sgd_momentum"}
        out.append((f"mistral-lora-no-qk-{dtype}-b{b}s{s}{'-padded' if padded else ''}", _MISTRAL_V40, _NO_QK, training))
    return out


_GEMMA3_MIXED = {"model_type": "gemma3_text", "hidden_size": 80, "num_hidden_layers": 6, "num_attention_heads": 8,
                 "num_key_value_heads": 8, "head_dim": 24, "intermediate_size": 278, "vocab_size": 429, "sliding_window": 8,
                 "max_position_embeddings": 128, **IDS}


def rotary_kind_cases() -> list[tuple[str, dict, dict, dict]]:
    """Gemma3's two rotary pairs (local for sliding layers, global for full ones), full fine-tuning without
    checkpointing: a pair that only one kind of layer saves goes once the lowest layer of that kind is done,
    not once per layer of it. The embeddings' weight gradients, after every layer, set the peak. Drawn (-1,440 B:
    five sliding layers each freed the pair). (label, config, method, training)"""
    out = []
    for label, layers, extra, options in (
            ("L6-top-full-tied-bf16-eager", 6, {}, {"dtype": "bf16", "attn_implementation": "eager"}),
            ("L7-top-sliding-tied-fp32", 7, {}, {"dtype": "fp32", "attn_implementation": "sdpa"}),
            ("L6-untied-fp16", 6, {"tie_word_embeddings": False}, {"dtype": "fp16", "attn_implementation": "sdpa"}),
            ("L4-alternating-bf16", 4, {"layer_types": ["sliding_attention", "full_attention"] * 2},
             {"dtype": "bf16", "attn_implementation": "sdpa"})):
        cfg = dict(_GEMMA3_MIXED, num_hidden_layers=layers, **extra)
        training = {"batch_size": 3, "seq_len": 3, "gradient_checkpointing": False, "optimizer": "sgd", **options}
        out.append((f"gemma3-full-{label}", cfg, {"name": "full"}, training))
    return out


# ---- bottleneck adapters (AdapterHub, measured in its own virtualenv) ----------------------------------
ADAPTER_METHODS = {
    "seq_bn": {"name": "adapter", "config": "seq_bn"},
    "double_seq_bn_rf5": {"name": "adapter", "config": "double_seq_bn", "reduction_factor": 5},
    "seq_bn_gating_channel": {"name": "adapter", "config": "seq_bn", "reduction_factor": 3, "use_gating": True, "scaling": "channel"},
}
# training steps measured for activations and peak (checkpointing: non-reentrant, as the estimate models it)
ADAPTER_STEP_OPTIONS = {"bf16-sdpa-b2": {"dtype": "bf16", "attn_implementation": "sdpa", "batch_size": 2, "seq_len": 9},
                        "fp32-eager-b1": {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 1, "seq_len": 23},
                        "fp32-eager-ckpt-b3": {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 3, "seq_len": 17,
                                               "gradient_checkpointing": True}}
# drawn at random (model depth, shape, step options, adapter options), then the options the three above lack
_ADAPTER_DRAWN = [
    ("llama", 4, {"name": "adapter", "config": "seq_bn", "reduction_factor": 3, "use_gating": True, "scaling": "channel"},
     {"dtype": "bf16", "attn_implementation": "eager", "batch_size": 3, "seq_len": 9}),
    ("llama", 5, {"name": "adapter", "config": "seq_bn", "reduction_factor": 4, "non_linearity": "gelu"},
     {"dtype": "fp32", "attn_implementation": "sdpa", "gradient_checkpointing": True, "batch_size": 1, "seq_len": 9}),
    ("mistral", 5, {"name": "adapter", "config": "seq_bn", "reduction_factor": 3, "use_gating": True, "scaling": "channel"},
     {"dtype": "bf16", "attn_implementation": "sdpa", "batch_size": 3, "seq_len": 11}),
    ("mistral", 3, {"name": "adapter", "config": "double_seq_bn"},
     {"dtype": "bf16", "attn_implementation": "eager", "gradient_checkpointing": True, "batch_size": 1, "seq_len": 11}),
    ("gpt2", 5, {"name": "adapter", "config": "seq_bn"}, {"dtype": "fp32", "attn_implementation": "sdpa", "batch_size": 1, "seq_len": 12}),
    ("gpt2", 5, {"name": "adapter", "config": "double_seq_bn", "reduction_factor": 5, "scaling": "learned"},
     {"dtype": "fp32", "attn_implementation": "eager", "gradient_checkpointing": True, "batch_size": 2, "seq_len": 5}),
    ("qwen2", 5, {"name": "adapter", "config": "double_seq_bn"}, {"dtype": "fp32", "attn_implementation": "sdpa", "batch_size": 2, "seq_len": 23}),
    ("qwen2", 3, {"name": "adapter", "config": "seq_bn", "reduction_factor": 4, "non_linearity": "gelu"},
     {"dtype": "bf16", "attn_implementation": "eager", "gradient_checkpointing": True, "batch_size": 3, "seq_len": 8}),
    ("qwen3", 5, {"name": "adapter", "config": "seq_bn", "reduction_factor": 4, "non_linearity": "gelu"},
     {"dtype": "fp32", "attn_implementation": "sdpa", "batch_size": 3, "seq_len": 10}),
    ("qwen3", 5, {"name": "adapter", "config": "seq_bn", "reduction_factor": 3, "use_gating": True, "scaling": "channel"},
     {"dtype": "bf16", "attn_implementation": "eager", "gradient_checkpointing": True, "batch_size": 2, "seq_len": 9}),
    ("gemma2", 5, {"name": "adapter", "config": "double_seq_bn", "reduction_factor": 8, "use_gating": True},
     {"dtype": "bf16", "attn_implementation": "eager", "batch_size": 3, "seq_len": 12}),
    ("gemma2", 4, {"name": "adapter", "config": "seq_bn"},
     {"dtype": "bf16", "attn_implementation": "eager", "gradient_checkpointing": True, "batch_size": 1, "seq_len": 19}),
    ("gemma3_text", 5, {"name": "adapter", "config": "double_seq_bn"}, {"dtype": "fp32", "attn_implementation": "sdpa", "batch_size": 3, "seq_len": 5}),
    ("gemma3_text", 5, {"name": "adapter", "config": "seq_bn", "reduction_factor": 4, "non_linearity": "gelu"},
     {"dtype": "bf16", "attn_implementation": "eager", "gradient_checkpointing": True, "batch_size": 2, "seq_len": 9}),
    ("qwen2", 2, {"name": "adapter", "config": "seq_bn", "ln_after": True, "adapter_residual_before_ln": True},
     {"dtype": "fp32", "attn_implementation": "eager", "gradient_checkpointing": True, "batch_size": 3, "seq_len": 17}),
    ("gemma2", 3, {"name": "adapter", "config": "seq_bn", "dropout": 0.1},
     {"dtype": "fp32", "attn_implementation": "eager", "gradient_checkpointing": True, "batch_size": 3, "seq_len": 17}),
    ("llama", 2, {"name": "adapter", "config": "seq_bn", "ln_before": True}, {"dtype": "bf16", "attn_implementation": "sdpa", "batch_size": 2, "seq_len": 9}),
    ("gpt2", 2, {"name": "adapter", "config": "double_seq_bn", "ln_after": True},
     {"dtype": "fp32", "attn_implementation": "eager", "gradient_checkpointing": True, "batch_size": 3, "seq_len": 17}),
    ("qwen2", 2, {"name": "adapter", "config": "seq_bn", "residual_before_ln": False},
     {"dtype": "fp32", "attn_implementation": "eager", "gradient_checkpointing": True, "batch_size": 3, "seq_len": 17}),
    ("gemma2", 3, {"name": "adapter", "config": "double_seq_bn", "non_linearity": "tanh", "reduction_factor": 4},
     {"dtype": "bf16", "attn_implementation": "sdpa", "batch_size": 2, "seq_len": 9}),
    # stop 19's draws: the adapter's own LayerNorms train weight and bias; without original_ln_after the block's
    # residual is not added after the adapter
    ("gemma3_text", 3, {"name": "adapter", "config": "houlsby", "reduction_factor": 4, "ln_after": True, "scaling": "channel"},
     {"dtype": "bf16", "attn_implementation": "eager", "batch_size": 3, "seq_len": 28}),
    ("qwen2", 2, {"name": "adapter", "config": "seq_bn", "ln_before": True, "use_gating": True},
     {"dtype": "fp32", "attn_implementation": "sdpa", "gradient_checkpointing": True, "batch_size": 1, "seq_len": 6}),
    ("mistral", 2, {"name": "adapter", "config": "double_seq_bn", "original_ln_after": False},
     {"dtype": "fp32", "attn_implementation": "eager", "gradient_checkpointing": True, "batch_size": 1, "seq_len": 12}),
    ("gpt2", 3, {"name": "adapter", "config": "double_seq_bn", "original_ln_after": False},
     {"dtype": "fp32", "attn_implementation": "eager", "gradient_checkpointing": True, "batch_size": 2, "seq_len": 5}),
    # other sizes too: the attention's and the MLP's locals are gone before AdapterHub's own Llama/Mistral/GPT-2
    # integrations run the adapter; transformers 4.x's Gemma2Model holds the unscaled embeddings
    ('mistral', 1, {'name': 'adapter', 'config': 'pfeiffer', 'ln_before': True, 'adapter_residual_before_ln': True},
     {'dtype': 'fp32', 'attn_implementation': 'eager', 'batch_size': 2, 'seq_len': 11, 'gradient_checkpointing': True},
     {'hidden_size': 60, 'num_attention_heads': 6, 'num_key_value_heads': 3, 'intermediate_size': 91, 'vocab_size': 132}),
    ('gemma2', 1, {'name': 'adapter', 'config': 'pfeiffer', 'non_linearity': 'tanh', 'ln_before': True, 'ln_after': True, 'adapter_residual_before_ln': True},
     {'dtype': 'fp32', 'attn_implementation': 'eager', 'batch_size': 1, 'seq_len': 29},
     {'hidden_size': 32, 'num_attention_heads': 4, 'num_key_value_heads': 4, 'head_dim': 24, 'intermediate_size': 273, 'vocab_size': 153}),
    # stop 20: attention dropout in eager attention (adapters' own Llama attention takes its copied q, k and v as
    # they are), and GPT-2 with another activation and its dropouts
    ("llama", 2, {"name": "adapter", "config": "seq_bn", "scaling": "channel", "adapter_residual_before_ln": True},
     {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 2, "seq_len": 19},
     {"hidden_size": 32, "num_attention_heads": 8, "num_key_value_heads": 8, "head_dim": 16, "intermediate_size": 57,
      "vocab_size": 12, "attention_dropout": 0.1}),
    ("gpt2", 2, {"name": "adapter", "config": "pfeiffer", "reduction_factor": 3},
     {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 2, "seq_len": 11, "gradient_checkpointing": True},
     {"attn_pdrop": 0.1, "resid_pdrop": 0.1, "activation_function": "gelu_fast"}),
    ("mistral", 1, {"name": "adapter", "config": "pfeiffer", "ln_before": True},
     {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 3, "seq_len": 17, "gradient_checkpointing": True},
     {"intermediate_size": 8, "vocab_size": 40}),
    ("llama", 1, {"name": "adapter", "config": "double_seq_bn", "reduction_factor": 5, "ln_before": True, "original_ln_after": False},
     {"dtype": "bf16", "attn_implementation": "eager", "batch_size": 4, "seq_len": 21, "gradient_checkpointing": True},
     {"hidden_size": 80, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 90,
      "vocab_size": 248, "hidden_act": "gelu_python"}),
    # GPT-2's scale_attn_weights=False (transformers 4.x divides by no 0-dim tensor) and scale_attn_by_inverse_layer_idx
    ("gpt2", 5, {"name": "adapter", "config": "houlsby", "reduction_factor": 5, "ln_after": True, "scaling": 0.5, "original_ln_after": False},
     {"dtype": "bf16", "attn_implementation": "eager", "batch_size": 3, "seq_len": 22},
     {"n_embd": 80, "n_head": 8, "vocab_size": 258, "scale_attn_weights": False, "activation_function": "gelu_new", "embd_pdrop": 0.0,
      "tie_word_embeddings": False}),
    ("gpt2", 5, {"name": "adapter", "config": "pfeiffer", "ln_after": True},
     {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 2, "seq_len": 11, "gradient_checkpointing": True},
     {"n_embd": 18, "n_head": 3, "vocab_size": 135, "activation_function": "quick_gelu", "scale_attn_weights": False,
      "scale_attn_by_inverse_layer_idx": True}),
    # the plugin interface's ForwardContext holds the top layer's input and post-attention residual through the loss
    ("gemma2", 5, {"name": "adapter", "config": "pfeiffer", "reduction_factor": 2, "scaling": 0.5, "residual_before_ln": False},
     {"dtype": "bf16", "attn_implementation": "sdpa", "batch_size": 4, "seq_len": 28},
     {"hidden_size": 48, "num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 12, "intermediate_size": 110, "vocab_size": 71,
      "query_pre_attn_scalar": 7, "attention_bias": True, "tie_word_embeddings": False, "hidden_activation": "gelu"}),
    # stop 24: a one-token sequence under eager attention (q, k and v fold into (b * heads, 1, d) as views)
    ("gemma2", 2, {"name": "adapter", "config": "pfeiffer", "use_gating": True},
     {"dtype": "bf16", "attn_implementation": "eager", "batch_size": 4, "seq_len": 1, "gradient_checkpointing": True},
     {"hidden_size": 36, "num_attention_heads": 6, "num_key_value_heads": 6, "head_dim": 24, "intermediate_size": 124,
      "vocab_size": 178, "sliding_window": 3, "tie_word_embeddings": False, "attn_logit_softcapping": None,
      "hidden_activation": "tanh"}),
    # stop 28: heads that do not divide the hidden size, head_dim given: transformers 5's LlamaConfig refuses it (and so
    # does the estimate, with PEFT), transformers 4.x, which AdapterHub runs on, builds it
    ("llama", 2, {"name": "adapter", "config": "seq_bn", "reduction_factor": 4},
     {"dtype": "fp32", "attn_implementation": "sdpa", "batch_size": 2, "seq_len": 9},
     {"hidden_size": 44, "num_attention_heads": 5, "num_key_value_heads": 1, "head_dim": 10, "intermediate_size": 70}),
    # stop 29's adapter draws: the adapter's activation is transformers' ACT2FN (gelu_new's formula keeps three more
    # tensors than one that saves its input), the ForwardContext holds a frozen layer's post-attention residual until
    # the next layer's pre-hook replaces it, and 'post_add' where a LayerNorm is re-applied (Gemma2/3)
    ("gpt2", 1, {"name": "adapter", "config": "houlsby", "reduction_factor": 3, "non_linearity": "gelu_new", "ln_before": True},
     {"dtype": "fp16", "attn_implementation": "eager", "batch_size": 2, "seq_len": 33},
     {"n_embd": 40, "n_head": 4, "vocab_size": 96, "attn_pdrop": 0.0, "tie_word_embeddings": True}),
    ("mistral", 2, {"name": "adapter", "config": "houlsby", "reduction_factor": 2.5, "non_linearity": "gelu_new", "ln_after": True,
                    "mh_adapter": False},
     {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 1, "seq_len": 11},
     {"hidden_size": 60, "num_attention_heads": 6, "num_key_value_heads": 3, "intermediate_size": 165, "vocab_size": 146, "head_dim": 4,
      "sliding_window": 8}),
    ("qwen2", 2, {"name": "adapter", "config": "seq_bn", "reduction_factor": 4, "non_linearity": "gelu_python"},
     {"dtype": "fp32", "attn_implementation": "sdpa", "batch_size": 2, "seq_len": 9, "gradient_checkpointing": True}),
    ("llama", 2, {"name": "adapter", "config": "pfeiffer", "reduction_factor": 4, "non_linearity": "LeakyReLU"},
     {"dtype": "bf16", "attn_implementation": "eager", "batch_size": 2, "seq_len": 9}),
    ("gemma2", 2, {"name": "adapter", "config": "pfeiffer", "non_linearity": "gelu", "original_ln_before": False, "mh_adapter": True,
                   "leave_out": [0]},
     {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 4, "seq_len": 23},
     {"hidden_size": 36, "num_attention_heads": 8, "num_key_value_heads": 8, "intermediate_size": 1, "vocab_size": 42, "head_dim": 12,
      "attention_bias": True, "sliding_window": 4}),
    ("qwen3", 3, {"name": "adapter", "config": "seq_bn", "original_ln_before": False, "leave_out": [0, 1]},
     {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 4, "seq_len": 23},
     {"intermediate_size": 2}),
    # AdapterHub's BottleneckState holds the scaled up-projection through post_forward's residual add (its own
    # GPT-2 and Llama/Mistral integrations): where that add sets the forward's peak
    ("gpt2", 1, {"name": "adapter", "config": "double_seq_bn", "reduction_factor": 3, "non_linearity": "tanh", "ln_before": True},
     {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 2, "seq_len": 33},
     {"n_embd": 48, "n_head": 4, "vocab_size": 100, "activation_function": "gelu", "tie_word_embeddings": False}),
    ("llama", 1, {"name": "adapter", "config": "houlsby", "reduction_factor": 8, "non_linearity": "swish", "ln_before": True},
     {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 1, "seq_len": 100},
     {"hidden_size": 128, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 196,
      "vocab_size": 156}),
    ("gemma3_text", 2, {"name": "adapter", "config": "pfeiffer", "reduction_factor": 3, "residual_before_ln": "post_add"},
     {"dtype": "fp16", "attn_implementation": "eager", "batch_size": 2, "seq_len": 16, "gradient_checkpointing": True},
     {"hidden_size": 30, "num_attention_heads": 5, "num_key_value_heads": 1, "intermediate_size": 2, "vocab_size": 72, "head_dim": 6,
      "sliding_window": 64, "attention_dropout": 0.1}),
]


# AdapterHub's leave_out (layers with no adapters; those below the lowest adapter run without autograd): the two
# classes found at stop 22 -- sdpa_attention_forward's contiguous copy of the output of a kernel given adapters'
# repeated (b, heads, s, d) q (it shows where a frozen layer's attention sets the peak), and a checkpointed layer
# freeing what the layer above held in adapters' ForwardContext (hooked models: the layer above may be of the
# other kind) -- and the layouts around them
_LEAVE_OUT = [
    ("llama", 2, {"name": "adapter", "config": "seq_bn", "leave_out": [0, 5], "reduction_factor": 8},
     {"dtype": "fp32", "batch_size": 1, "seq_len": 9, "attn_implementation": "sdpa"},
     {"hidden_size": 72, "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 136, "vocab_size": 131}),
    ("mistral", 3, {"name": "adapter", "config": "double_seq_bn", "leave_out": [0, 1]},
     {"dtype": "bf16", "batch_size": 2, "seq_len": 9, "attn_implementation": "sdpa"}),
    ("qwen3", 3, {"name": "adapter", "config": "double_seq_bn", "leave_out": [2]},
     {"dtype": "fp32", "batch_size": 1, "seq_len": 5, "attn_implementation": "eager", "gradient_checkpointing": True}),
    ("qwen3", 3, {"name": "adapter", "config": "double_seq_bn", "leave_out": [1]},
     {"dtype": "fp32", "batch_size": 1, "seq_len": 5, "attn_implementation": "eager", "gradient_checkpointing": True}),
    ("qwen2", 3, {"name": "adapter", "config": "double_seq_bn", "leave_out": [0]},
     {"dtype": "fp32", "batch_size": 1, "seq_len": 5, "attn_implementation": "eager", "gradient_checkpointing": True}),
    ("gemma2", 3, {"name": "adapter", "config": "double_seq_bn", "leave_out": [2]},
     {"dtype": "fp32", "batch_size": 1, "seq_len": 5, "attn_implementation": "eager", "gradient_checkpointing": True}),
    ("gemma3_text", 4, {"name": "adapter", "config": "seq_bn", "leave_out": [0, 1, 2]},
     {"dtype": "bf16", "batch_size": 2, "seq_len": 9, "attn_implementation": "sdpa", "gradient_checkpointing": True}),
    ("gpt2", 3, {"name": "adapter", "config": "double_seq_bn", "leave_out": [1], "reduction_factor": 4},
     {"dtype": "fp32", "batch_size": 3, "seq_len": 7, "attn_implementation": "eager"}),
]


def leave_out_cases() -> list[tuple[str, dict, dict, dict]]:
    """(label, config, method, training) of the leave_out setups, as :func:`adapter_drawn_cases`."""
    return _drawn(_LEAVE_OUT)


def adapter_drawn_cases() -> list[tuple[str, dict, dict, dict]]:
    """(label, config, method, training) of the drawn adapter setups: TINY configs at another depth (and other sizes
    where given)."""
    return _drawn(_ADAPTER_DRAWN)


def _drawn(rows: list) -> list[tuple[str, dict, dict, dict]]:
    out = []
    for mt, layers, method, training, *sizes in rows:
        cfg = {k: v for k, v in TINY[mt].items() if k != "layer_types"}
        cfg["n_layer" if "n_layer" in cfg else "num_hidden_layers"] = layers
        cfg.update(*sizes)
        options = "-".join(f"{k}={v}" for k, v in method.items() if k not in ("name", "config"))
        label = f"{mt}-L{layers}-{method['config']}{'-' + options if options else ''}-{training['dtype']}-{training['attn_implementation']}"
        out.append((label + ("-ckpt" if training.get("gradient_checkpointing") else ""), cfg, method, training))
    return out


# ---- real widths: bundled presets with their layers cut ------------------------------------------------
# A preset's own config (widths, head counts and GQA, head_dim, vocabulary of 32k-262k, tying, rope, windows,
# biases) with its decoder cut to 1-3 layers, so that a CPU runs it: the recorded structures replayed at the
# sizes users ask about, where a term that is small at the tiny shapes (a vocab x width copy, a 4-bit layer's
# dequantized weight, a weight norm) is hundreds of megabytes. (label, config, method, training); every
# model_type once, and the methods in turn.
_REAL_WIDTHS = [
    ("meta-llama/Llama-3.2-1B", 1, {"name": "prefix_tuning", "num_virtual_tokens": 20},
     {"dtype": "fp32", "batch_size": 1, "seq_len": 12}),
    ("meta-llama/Llama-3.2-1B", 2, {"name": "lora", "r": 16, "trainable_token_indices": [3, 7, 11]},
     {"dtype": "fp32", "batch_size": 1, "seq_len": 9, "gradient_checkpointing": True}),
    ("mistralai/Mistral-7B-v0.3", 1, {"name": "lora", "r": 8, "target_modules": "all-linear", "use_dora": True},
     {"dtype": "fp32", "batch_size": 1, "seq_len": 16, "gradient_checkpointing": True}),
    ("Qwen/Qwen2.5-0.5B", 2, {"name": "qlora", "r": 16, "target_modules": "all-linear"},
     {"dtype": "fp32", "batch_size": 2, "seq_len": 33, "gradient_checkpointing": True}),
    ("Qwen/Qwen3-0.6B", 2, {"name": "p_tuning", "num_virtual_tokens": 10, "encoder_hidden_size": 256},
     {"dtype": "fp32", "batch_size": 3, "seq_len": 34, "attn_implementation": "eager"}),
    ("google/gemma-2b", 1, {"name": "ia3"}, {"dtype": "fp32", "batch_size": 1, "seq_len": 10, "attn_implementation": "eager"}),
    ("google/gemma-2-2b", 2, {"name": "prompt_tuning", "num_virtual_tokens": 4},
     {"dtype": "fp32", "batch_size": 1, "seq_len": 6, "gradient_checkpointing": True}),
    ("google/gemma-3-1b-pt", 2, {"name": "lora", "r": 8, "target_modules": "all-linear", "lora_dropout": 0.1},
     {"dtype": "fp32", "batch_size": 1, "seq_len": 12}),
    ("microsoft/Phi-3-mini-4k-instruct", 1, {"name": "lora", "r": 16, "target_modules": ["qkv_proj", "gate_up_proj"]},
     {"dtype": "fp32", "batch_size": 2, "seq_len": 9, "gradient_checkpointing": True}),
    ("openai-community/gpt2-medium", 2, {"name": "full"},  # (its attn_pdrop=0.1: eager keeps the dropout masks)
     {"dtype": "fp32", "batch_size": 2, "seq_len": 21, "attn_implementation": "eager"}),
    ("EleutherAI/pythia-1b", 2, {"name": "prefix_tuning", "num_virtual_tokens": 8, "prefix_projection": True,
                                 "encoder_hidden_size": 256}, {"dtype": "fp32", "batch_size": 1, "seq_len": 30}),
    ("EleutherAI/pythia-160m", 1, {"name": "trainable_tokens", "token_indices": [0, 5, 99]},
     {"dtype": "fp32", "batch_size": 1, "seq_len": 40}),
    ("facebook/opt-1.3b", 1, {"name": "prompt_tuning", "num_virtual_tokens": 10},
     {"dtype": "fp32", "batch_size": 2, "seq_len": 10, "attn_implementation": "eager", "gradient_checkpointing": True}),
    ("allenai/OLMo-2-1124-7B", 1, {"name": "lora", "r": 8, "target_modules": "all-linear"},
     {"dtype": "fp32", "batch_size": 1, "seq_len": 12, "gradient_checkpointing": True}),
    ("ibm-granite/granite-3.1-8b-base", 1, {"name": "ia3", "target_modules": "all-linear", "feedforward_modules": []},
     {"dtype": "fp32", "batch_size": 1, "seq_len": 12}),
    ("bigcode/starcoder2-3b", 1, {"name": "lora", "r": 16, "target_modules": ["q_proj", "v_proj", "c_fc"], "lora_dropout": 0.1},
     {"dtype": "fp32", "batch_size": 2, "seq_len": 12, "attn_implementation": "eager", "gradient_checkpointing": True}),
]  # (StarCoder2-3b's attention, residual and embedding dropouts are 0.1: eager attention keeps its masks)


def real_width_cases() -> list[tuple[str, dict, dict, dict]]:
    return _real_widths(_REAL_WIDTHS)


def _real_widths(rows: list) -> list[tuple[str, dict, dict, dict]]:
    from peft_footprint.model import _presets

    presets = _presets()  # (read once: each call parses or reads the bundled file)
    out = []
    for name, layers, method, training in rows:
        cfg = dict(presets[name])
        cfg["n_layer" if cfg["model_type"] == "gpt2" else "num_hidden_layers"] = layers
        out.append((f"{name} ({layers} layer{'s' if layers > 1 else ''})", cfg, method, training))
    return out


# AdapterHub's bottleneck adapters at real widths: every model_type it supports, a preset cut to 1-3 layers
_ADAPTER_REAL_WIDTHS = [
    ("meta-llama/Llama-3.2-1B", 3, {"name": "adapter", "config": "double_seq_bn", "reduction_factor": 16},
     {"dtype": "fp32", "attn_implementation": "sdpa", "batch_size": 2, "seq_len": 30}),
    ("mistralai/Mistral-7B-v0.1", 2, {"name": "adapter", "config": "seq_bn", "non_linearity": "relu"},
     {"dtype": "fp32", "attn_implementation": "sdpa", "batch_size": 1, "seq_len": 24}),
    ("openai-community/gpt2-medium", 3, {"name": "adapter", "config": "seq_bn", "reduction_factor": 16, "non_linearity": "tanh"},
     {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 2, "seq_len": 37}),
    ("Qwen/Qwen2.5-0.5B", 1, {"name": "adapter", "config": "double_seq_bn", "non_linearity": "swish", "ln_before": True},
     {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 1, "seq_len": 39, "gradient_checkpointing": True}),
    ("Qwen/Qwen3-0.6B", 3, {"name": "adapter", "config": "seq_bn", "reduction_factor": 64, "use_gating": True},
     {"dtype": "fp32", "attn_implementation": "sdpa", "batch_size": 1, "seq_len": 36, "gradient_checkpointing": True}),
    ("google/gemma-2-2b", 1, {"name": "adapter", "config": "seq_bn", "reduction_factor": 4},
     {"dtype": "fp32", "attn_implementation": "eager", "batch_size": 1, "seq_len": 16, "gradient_checkpointing": True}),
    ("google/gemma-3-1b-pt", 3, {"name": "adapter", "config": "double_seq_bn", "reduction_factor": 64},
     {"dtype": "fp32", "attn_implementation": "sdpa", "batch_size": 2, "seq_len": 38}),
]


def adapter_real_width_cases() -> list[tuple[str, dict, dict, dict]]:
    return _real_widths(_ADAPTER_REAL_WIDTHS)

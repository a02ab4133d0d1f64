"""Regenerate docs/validation.md: estimate() against the measurement harness on the activation/peak matrix
(tests/cases.py act_cases) and the static matrix summary. Run by hand: ``python tools/validation_table.py``."""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import peft_footprint as pf  # noqa: E402
from tests.harness.measure_adapters import measure_adapters_batch  # noqa: E402
from peft_footprint.methods.adapter import SUPPORTED as ADAPTER_TYPES  # noqa: E402
from tests.cases import ADAPTER_METHODS, ADAPTER_STEP_OPTIONS, adafactor_order_cases, dora_conv1d_accumulation_cases, position_lora_cases, real_width_cases, trainable_tokens_cases, adapter_drawn_cases, adapter_real_width_cases, embedding_copies_cases, use_cache_cases, leave_out_cases, config_field_cases, embedding_backward_cases, embedding_end_cases, bottom_layer_cases, one_token_cases, one_token_query_cases, padded_cases, position_copy_cases, prefix_gather_cases, project_in_cases, rotary_kind_cases, TINY, act_cases, drawn_cases, outside_cases, peft_methods, vocab_cases  # noqa: E402
from tests.harness.measure import measure  # noqa: E402


def _compare(cfg: dict, method, training: dict) -> tuple[float, float, dict, dict]:
    """The estimate (asked for device="cpu") against the harness: activations and peak errors in %, and both."""
    est = pf.estimate(cfg, method, {**training, "device": "cpu"}).training
    got = measure(cfg, method, training, what=("activations", "peak"))
    ea = 100 * (est["activations_bytes"] - got["activations_bytes"]) / got["activations_bytes"]
    ep = 100 * (est["peak_bytes"] - got["peak_bytes"]) / got["peak_bytes"]
    return ea, ep, est, got


def main() -> None:
    rows, act_err, peak_err = [], [], []
    t0 = time.time()
    for mt, mid, method, training in act_cases():
        tag = (f"{training['dtype']}{'+autocast' if training.get('mixed_precision') else ''} {training['attn_implementation']} {'ckpt' if training['gradient_checkpointing'] else '-'} "
               f"b{training['batch_size']} s{training['seq_len']}")
        try:
            ea, ep, est, got = _compare(TINY[mt], method, training)
        except pf.UnsupportedCombinationError as exc:
            rows.append(f"| {mt} | {mid} | {tag} | refused | refused | {str(exc)[:60]}... |")
            continue
        act_err.append(abs(ea))
        peak_err.append(abs(ep))
        rows.append(f"| {mt} | {mid} | {tag} | {ea:+.2f} % | {ep:+.2f} % | {est['peak_at']} / {got['peak_phase']} |")
    n = len(act_err)
    vocab_rows, vocab_act, vocab_peak = [], [], []
    for mt, mid, cfg, method, training in vocab_cases():
        try:
            ea, ep, est, got = _compare(cfg, method, training)
        except pf.UnsupportedCombinationError:
            continue
        vocab_act.append(abs(ea))
        vocab_peak.append(abs(ep))
        tag = f"bf16 {training.get('attn_implementation', 'sdpa')} {'ckpt' if training.get('gradient_checkpointing') else '-'} b2 s40"
        vocab_rows.append(f"| {mt} | {mid} | {tag} | {ea:+.2f} % | {ep:+.2f} % | {est['peak_at']} / {got['peak_phase']} |")

    width_rows, width_act, width_peak = [], [], []
    for label, cfg, method, training in real_width_cases():
        ea, ep, est, got = _compare(cfg, method, training)
        width_act.append(abs(ea))
        width_peak.append(abs(ep))
        tag = (f"{method['name']} {training['dtype']} {training.get('attn_implementation', 'sdpa')} "
               f"{'ckpt' if training.get('gradient_checkpointing') else '-'} b{training['batch_size']} s{training['seq_len']}")
        width_rows.append(f"| {label} | {tag} | {got['peak_bytes'] / 2**20:,.0f} MiB | {ea:+.2f} % | {ep:+.2f} % | {est['peak_at']} / {got['peak_phase']} |")

    outside_rows = []
    for mt, mid, cfg, training in outside_cases():
        ea, ep, est, got = _compare(cfg, peft_methods(mt)[mid], training)
        layers = cfg.get("num_hidden_layers", cfg.get("n_layer"))
        tag = (f"{training['dtype']}{'+autocast' if training.get('mixed_precision') else ''} {training.get('attn_implementation', 'sdpa')} "
               f"{'ckpt' if training['gradient_checkpointing'] else '-'} {layers} layers b{training['batch_size']} s{training['seq_len']}")
        outside_rows.append(f"| {mt} | {mid} | {tag} | {ea:+.2f} % | {ep:+.2f} % | {est['peak_at']} / {got['peak_phase']} |")

    for label, cfg, method, training in drawn_cases():
        ea, ep, est, got = _compare(cfg, method, training)
        tag = (f"{training['dtype']}{'+autocast' if training.get('mixed_precision') else ''} {training.get('attn_implementation', 'sdpa')} "
               f"{'ckpt' if training['gradient_checkpointing'] else '-'} b{training['batch_size']} s{training['seq_len']}")
        outside_rows.append(f"| {cfg['model_type']} | {label} (drawn) | {tag} | {ea:+.2f} % | {ep:+.2f} % | {est['peak_at']} / {got['peak_phase']} |")

    extra_rows = []
    for label, cfg, method, training in (padded_cases() + embedding_end_cases() + embedding_backward_cases() + position_copy_cases() + one_token_query_cases()
                                         + prefix_gather_cases() + one_token_cases() + project_in_cases() + bottom_layer_cases()
                                         + rotary_kind_cases() + embedding_copies_cases() + adafactor_order_cases()
                                         + use_cache_cases() + dora_conv1d_accumulation_cases() + position_lora_cases()
                                         + trainable_tokens_cases()):
        ea, ep, est, got = _compare(cfg, method, training)
        tag = (f"{training['dtype']} {training['attn_implementation']} {'ckpt' if training['gradient_checkpointing'] else '-'} "
               f"{training.get('optimizer', 'adamw')} b{training['batch_size']} s{training['seq_len']}")
        extra_rows.append(f"| {cfg['model_type']} | {label} | {tag} | {ea:+.2f} % | {ep:+.2f} % | {est['peak_at']} / {got['peak_phase']} |")

    field_rows = []
    for label, cfg, method, training in config_field_cases():
        ea, ep, est, got = _compare(cfg, method, training)
        tag = (f"{method['name']} {training['dtype']}{'+' + training['mixed_precision'] if training.get('mixed_precision') else ''} "
               f"{training['attn_implementation']} {'ckpt' if training['gradient_checkpointing'] else '-'} "
               f"b{training['batch_size']} s{training['seq_len']}")
        field_rows.append(f"| {cfg['model_type']} | {label} | {tag} | {ea:+.2f} % | {ep:+.2f} % | {est['peak_at']} / {got['peak_phase']} |")

    adapter_rows = []
    adapter_cases = [(mid, TINY[mt], ADAPTER_METHODS[mid], options) for mt in ADAPTER_TYPES for mid in ADAPTER_METHODS
                     for options in ADAPTER_STEP_OPTIONS.values()] + adapter_drawn_cases() + adapter_real_width_cases() + leave_out_cases()
    requests = [{"config": cfg, "method": method, "training": options, "what": ["static", "activations", "peak"]}
                for _, cfg, method, options in adapter_cases]
    for (mid, cfg, method, options), got in zip(adapter_cases, measure_adapters_batch(requests)):
        mt = cfg["model_type"]
        est = pf.estimate(cfg, method, {**options, "device": "cpu"}).training
        ea = 100 * (est["activations_bytes"] - got["activations_bytes"]) / got["activations_bytes"]
        ep = 100 * (est["peak_bytes"] - got["peak_bytes"]) / got["peak_bytes"]
        tag = (f"{options['dtype']} {options['attn_implementation']} {'ckpt' if options.get('gradient_checkpointing') else '-'} "
               f"b{options['batch_size']} s{options['seq_len']}")
        adapter_rows.append(f"| {mt} | {mid} | {tag} | {ea:+.2f} % | {ep:+.2f} % | {est['peak_at']} / {got.get('peak_phase')} |")

    def within(errs, tol):
        return sum(e <= tol for e in errs)

    head = [
        "# Validation: activations and peak against PyTorch",
        "",
        "Generated by `python tools/validation_table.py` (torch 2.13.0 CPU, transformers 5.13.1, peft 0.19.1). Each row builds",
        "the real model from a small odd-shaped config (tests/cases.py), wraps it with the real PEFT method, runs two",
        "training steps and counts live tensor storages (DESIGN.md section 3); the estimate is asked for `device=\"cpu\"`",
        "(PyTorch's CPU kernels store dropout masks and LayerNorm statistics in the input dtype).",
        "",
        f"- cases measured: {n} (+ {len(rows) - n} combinations that transformers/PEFT refuse, refused by the estimator too)",
        f"- activations: {within(act_err, 0.005)} exact (< 0.005 %), {within(act_err, 3)} within 3 %, median |error| "
        f"{statistics.median(act_err):.3f} %, max {max(act_err):.2f} %",
        f"- peak: {sum(e == 0 for e in peak_err)} exact to the byte, {within(peak_err, 3)} within 3 %, {within(peak_err, 10)} within 10 %, median |error| "
        f"{statistics.median(peak_err):.3f} %, max {max(peak_err):.2f} %",
        f"- time: {time.time() - t0:.0f} s",
        "",
        "",
        "## With a real vocabulary (32,000 tokens)",
        "",
        "The matrix below uses a vocabulary of about 100 tokens, which makes the in-layer moments of the simulated",
        "forward and backward a large share of the peak. With a real vocabulary the logits and their",
        f"gradients set the peak, as in real models: {len(vocab_act)} cases (every architecture x full, DoRA, IA3 +",
        "checkpointing, eager prompt tuning, QLoRA, modules_to_save + checkpointing):",
        f"activations max |error| {max(vocab_act):.3f} %, peak max |error| {max(vocab_peak):.3f} %.",
        "",
        "| model_type | method | dtype attention checkpointing shape | activations error | peak error | peak at (estimate / measured) |",
        "| --- | --- | --- | --- | --- | --- |",
        *vocab_rows,
        "",
        "## At real widths: bundled presets with their layers cut",
        "",
        "A preset's own config (its widths, head counts and head_dim, a vocabulary of 32k to 262k, tying, rope and",
        "windows) with its decoder cut to 1-3 layers so that this CPU runs it, every model_type once and the methods",
        f"in turn: {len(width_act)} cases, activations max |error| {max(width_act):.3f} %, peak max |error| {max(width_peak):.3f} %",
        "(tests/test_peak_realistic_vocab.py holds them to the byte).",
        "",
        "| preset (layers) | method dtype attention checkpointing shape | measured peak | activations error | peak error | peak at (estimate / measured) |",
        "| --- | --- | --- | --- | --- | --- |",
        *width_rows,
        "",
        "## Outside the matrix",
        "",
        "Configurations where the simulation once went wrong, found with random shapes and layer counts, and",
        "(drawn) random configurations with random sizes, head counts, methods and options",
        "(docs/notes/activations.md; tests/test_activations_vs_harness.py holds them to the byte):",
        "",
        "| model_type | method | dtype attention checkpointing layers shape | activations error | peak error | peak at (estimate / measured) |",
        "| --- | --- | --- | --- | --- | --- |",
        *outside_rows,
        "",
        "## Padded batches, and the end of the step's backward",
        "",
        "A batch with an attention_mask that pads (`padding_mask=True`; the harness pads the first sample's last",
        "position); full fine-tuning with SGD at a small shape, tied and untied, where the word embedding's",
        "backward at the very end of the step sets the peak; and LoRA / DoRA on the input embedding at 1 x 3 tokens",
        "with a 3,001-token vocabulary, where its backward (lora_embedding_A's gradient, cloned in its layout)",
        "does (tests/test_activations_vs_harness.py):",
        "",
        "| model_type | case | dtype attention checkpointing optimizer shape | activations error | peak error | peak at (estimate / measured) |",
        "| --- | --- | --- | --- | --- | --- |",
        *extra_rows,
        "",
        "## Architecture config fields",
        "",
        "Every MLP activation function the estimate models (transformers' ACT2FN names: a gated MLP, Llama, and a",
        "plain one, GPT-2), and config fields that change what a step keeps: residual, embedding and attention",
        "dropouts, OPT's post-LayerNorm layers and LayerNorms without weights, Gemma 2's soft-capping off, Phi-3's",
        "sliding window (tests/test_config_fields_vs_harness.py holds them to the byte):",
        "",
        "| model_type | case | method dtype attention checkpointing shape | activations error | peak error | peak at (estimate / measured) |",
        "| --- | --- | --- | --- | --- | --- |",
        *field_rows,
        "",
        "## Bottleneck adapters (AdapterHub)",
        "",
        "AdapterHub's `adapters` 1.3 runs on transformers 4.57, in its own virtualenv (tests/harness/adapters_env.py);",
        "checkpointing is the non-reentrant kind the estimate models, the optimizer foreach AdamW as on CUDA. The",
        "first 63 rows: every supported model type x three adapter setups x three steps; then setups drawn at other",
        "depths, shapes and adapter options (docs/notes/adapters.md section 5c); 7 at real widths (a bundled preset's",
        "own config cut to 1-3 layers, every supported model_type); the last 8, `leave_out` (layers with no adapters,",
        "section 5d). tests/test_adapters_vs_harness.py holds every row to the byte.",
        "",
        "| model_type | method | dtype attention checkpointing shape | activations error | peak error | peak at (estimate / measured) |",
        "| --- | --- | --- | --- | --- | --- |",
        *adapter_rows,
        "",
        "## Small vocabulary (the 280-case matrix)",
        "",
        "| model_type | method | dtype attention checkpointing shape | activations error | peak error | peak at (estimate / measured) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    (ROOT / "docs" / "validation.md").write_text("\n".join(head + rows) + "\n")
    print("\n".join(head[:12]))


if __name__ == "__main__":
    main()

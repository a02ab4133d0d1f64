"""Activations and peak against the harness (live storages counted as DESIGN.md section 3 says), over a
matrix of architectures x methods x attention kernels x dtypes x checkpointing x shapes (tests/cases.py).

The harness runs on CPU, so the estimate is asked for device="cpu": PyTorch's CPU kernels store dropout
masks and LayerNorm statistics in the input dtype (CUDA: bool and fp32); everything else is the same.
"""

from __future__ import annotations

import pytest

import peft_footprint as pf
from tests.cases import (TINY, act_cases, adafactor_order_cases, dora_conv1d_accumulation_cases, position_lora_cases, trainable_tokens_cases, bottom_layer_cases, drawn_cases, embedding_backward_cases,
                         embedding_copies_cases, embedding_end_cases, one_token_cases, one_token_query_cases, outside_cases,
                         padded_cases, position_copy_cases, prefix_gather_cases, project_in_cases, rotary_kind_cases,
                         use_cache_cases)

from tests.harness.measure import measure, measure_checkpoint  # noqa: E402 - the test extras install torch, transformers, peft

CASES = act_cases()
# activations and peak are held to the byte (docs/validation.md: every case exact since stop 16; the issue asks 3 %)


def _exact(case) -> dict:
    """The estimate of a (label, config, method, training) case, held to the byte against the harness (activations
    and peak); returns the estimate's training figures."""
    _, cfg, method, training = case
    est = pf.estimate(cfg, method, {**training, "device": "cpu"}).training
    got = measure(cfg, method, training, what=("activations", "peak"))
    assert (est["activations_bytes"], est["peak_bytes"]) == (got["activations_bytes"], got["peak_bytes"])
    return est


def _id(case):
    mt, mid, _, t = case
    return f"{mt}-{mid}-{t['dtype']}{'+autocast' if t.get('mixed_precision') else ''}-{t['attn_implementation']}-{'gc' if t['gradient_checkpointing'] else 'nogc'}-b{t['batch_size']}s{t['seq_len']}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_activations_and_peak_exact(case):
    mt, method_id, method, training = case
    try:
        est = pf.estimate(TINY[mt], method, {**training, "device": "cpu"}).training
    except pf.UnsupportedCombinationError:
        with pytest.raises(Exception):  # noqa: B017 - the real stack refuses it too
            measure(TINY[mt], method, training, what=("activations", "peak"))
        return
    got = measure(TINY[mt], method, training, what=("activations", "peak"))
    assert est["activations_bytes"] == got["activations_bytes"]
    assert est["peak_bytes"] == got["peak_bytes"]


# Batch size 1 with eager attention: matmul folds (1, heads) without copying the transposed q/k/v or repeat_kv's
# view of a single kv head, so the estimate switches to a second set of polynomials there.
B1_CASES = [(mt, mid, dt) for mt in TINY for mid, dt in (("lora", "bf16"), ("prompt_tuning", "autocast"))
            if not (mt == "opt" and mid == "prompt_tuning")]


@pytest.mark.parametrize("case", B1_CASES, ids=["-".join(c) for c in B1_CASES])
def test_batch_one_eager_activations_and_peak_exact(case):
    from tests.cases import peft_methods

    mt, mid, dt = case
    training = {"batch_size": 1, "seq_len": 19, "dtype": "fp32" if dt == "autocast" else dt, "attn_implementation": "eager",
                **({"mixed_precision": "bf16"} if dt == "autocast" else {})}
    method = peft_methods(mt)[mid]
    est = pf.estimate(TINY[mt], method, {**training, "device": "cpu"}).training
    got = measure(TINY[mt], method, training, what=("activations", "peak"))
    assert est["activations_bytes"] == got["activations_bytes"]
    assert est["peak_bytes"] == got["peak_bytes"]


# Configurations outside the matrix where the simulation once went wrong (docs/notes/activations.md): a
# checkpoint-recomputed tensor freed when its last saver's formula returns (IA3's fp32 scaling under
# checkpointing), the MLP's activation before up_proj, gemma2's sliding layers below a full-attention top layer
# once the sequence reaches the window, and autocast's full-size cast of a single kv head's repeat_kv view
# (sdpa with a mask; eager at batch 1). Each is exact.
OUTSIDE = outside_cases()


def _outside_id(c) -> str:
    t = c[3]
    layers = c[2].get("num_hidden_layers", c[2].get("n_layer"))
    return f"{c[0]}-{c[1]}-L{layers}-{'autocast' if t.get('mixed_precision') else t['dtype']}-{'gc' if t['gradient_checkpointing'] else 'nogc'}"


@pytest.mark.parametrize("case", OUTSIDE, ids=[_outside_id(c) for c in OUTSIDE])
def test_configurations_outside_the_matrix(case):
    from tests.cases import peft_methods

    mt, mid, cfg, training = case
    method = peft_methods(mt)[mid]
    est = pf.estimate(cfg, method, {**training, "device": "cpu"}).training
    got = measure(cfg, method, training, what=("activations", "peak"))
    assert est["activations_bytes"] == got["activations_bytes"]
    assert est["peak_bytes"] == got["peak_bytes"]


DRAWN = drawn_cases()


@pytest.mark.parametrize("case", DRAWN, ids=[c[0] for c in DRAWN])
def test_configurations_drawn_at_random(case):
    """Random draws (sizes, methods, options) that once found a gap: activations and peak to the byte."""
    _, cfg, method, training = case
    est = pf.estimate(cfg, method, {**training, "device": "cpu"}).training
    got = measure(cfg, method, training, what=("activations", "peak"))
    assert est["activations_bytes"] == got["activations_bytes"]
    assert est["peak_bytes"] == got["peak_bytes"]


@pytest.mark.parametrize("mt", ["llama", "gpt2"])
def test_p_tuning_lstm_gap_is_the_encoder_alone_and_noted(mt):
    """P-tuning's LSTM encoder is not modelled (docs/notes/activations.md): the estimate says so, and what it
    misses is the encoder's own, the same bytes whatever the batch size and sequence length."""
    from tests.cases import peft_methods

    method = peft_methods(mt)["p_tuning_lstm"]
    gaps = []
    # (Adafactor steps its tensors in model order: the LSTM's per-layer names, "weight_ih_l*", are no decoder layer's)
    for training in ({"batch_size": 2, "seq_len": 9, "dtype": "fp32"}, {"batch_size": 4, "seq_len": 33, "dtype": "bf16", "optimizer": "adafactor"}):
        est = pf.estimate(TINY[mt], method, {**training, "device": "cpu"})
        assert any("LSTM encoder" in n for n in est["notes"])
        got = measure(TINY[mt], method, training, what=("activations", "peak"))
        gaps.append(got["activations_bytes"] - est.training["activations_bytes"])
    assert gaps[0] == gaps[1] and 0 < gaps[0] < 200_000


PADDED = padded_cases()


@pytest.mark.parametrize("case", PADDED, ids=[c[0] for c in PADDED])
def test_padded_batches(case):
    """A batch with an attention_mask that pads (training.padding_mask; the harness pads the first sample's last
    position): transformers builds an explicit mask, and sdpa loses its GQA path. Activations to the byte."""
    _, cfg, method, training = case
    est = pf.estimate(cfg, method, {**training, "device": "cpu"}).training
    got = measure(cfg, method, training, what=("activations", "peak"))
    assert est["activations_bytes"] == got["activations_bytes"]
    assert est["peak_bytes"] == got["peak_bytes"]


EMBEDDING_END = embedding_end_cases()


@pytest.mark.parametrize("case", EMBEDDING_END, ids=[c[0] for c in EMBEDDING_END])
def test_full_fine_tuning_ends_with_the_embedding_gradient(case):
    """Full fine-tuning at a small shape with an optimizer that adds nothing at its step (SGD): the peak is the
    word embedding's backward at the very end, a (vocab, width) weight gradient; tied to the lm_head, whose part
    waits in autograd's buffer, the two are summed out of place (three at once). Before this was modelled the
    estimate was 3-8 % low (tied) and 0.6-0.9 % low (untied)."""
    _, cfg, method, training = case
    est = pf.estimate(cfg, method, {**training, "device": "cpu"}).training
    got = measure(cfg, method, training, what=("activations", "peak"))
    assert est["peak_at"].startswith("backward: embed_tokens")
    assert est["peak_bytes"] == got["peak_bytes"]


def test_broadcast_gradients_summed_while_the_incoming_gradient_lives():
    """IA3's vectors get a gradient of the full activation's shape, summed to theirs by autograd's engine
    (validate_outputs) before the node's incoming gradient is released: a drawn Mistral IA3 run, -0.38 % at peak
    while the simulation released it first, within 0.01 % since."""
    cfg = dict({'model_type': 'mistral', 'hidden_size': 32, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 2, 'intermediate_size': 225, 'vocab_size': 82, 'sliding_window': 8, 'max_position_embeddings': 128}, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    method, training = {'name': 'ia3'}, {'batch_size': 2, 'seq_len': 7, 'dtype': 'bf16', 'attn_implementation': 'sdpa', 'gradient_checkpointing': False, 'optimizer': 'adam'}
    est = pf.estimate(cfg, method, {**training, "device": "cpu"}).training
    got = measure(cfg, method, training, what=("activations", "peak"))
    assert est["activations_bytes"] == got["activations_bytes"]
    assert est["peak_bytes"] == got["peak_bytes"]


ACCUMULATION = [(mt, mid, {"batch_size": 2, "seq_len": 9, "dtype": "bf16", "gradient_accumulation_steps": 2, **options})
                for mt in TINY for mid, options in (("full", {"optimizer": "sgd"}),
                                                    ("lora", {"optimizer": "adamw", "gradient_checkpointing": True}))]


@pytest.mark.parametrize("case", ACCUMULATION, ids=[f"{c[0]}-{c[1]}" for c in ACCUMULATION])
def test_gradient_accumulation_runs_later_micro_batches_with_every_gradient_alive(case):
    """With gradient_accumulation_steps > 1 the micro-batches after the first run forward and backward with
    every parameter's .grad alive, each new gradient added into it in place (a transient); a tied weight's
    gradients still wait in autograd's buffer for each other. The harness measures such a micro-batch. The
    estimate ignored accumulation before: low by the gradients (LoRA: 2-3 % at these sizes; full fine-tuning
    with SGD: the whole model's gradients)."""
    from tests.cases import peft_methods

    mt, mid, training = case
    method = peft_methods(mt)[mid]
    est = pf.estimate(TINY[mt], method, {**training, "device": "cpu"}).training
    got = measure(TINY[mt], method, training, what=("activations", "peak"))
    assert est["activations_bytes"] == got["activations_bytes"]
    assert est["peak_bytes"] == got["peak_bytes"]
    single = pf.estimate(TINY[mt], method, {**training, "gradient_accumulation_steps": 1, "device": "cpu"}).training
    assert est["peak_bytes"] > single["peak_bytes"]


OPTIMIZER_CASES = [(opt, mt, mid) for opt in ("adamw_fused", "sgd_momentum", "adamw_8bit", "adamw_32bit", "lion", "lion_8bit", "adafactor")
                   for mt in ("llama", "gpt2", "opt") for mid in ("full", "lora")]


@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=["-".join(c) for c in OPTIMIZER_CASES])
def test_optimizers_state_exact_and_peak(case):
    """The optimizers beyond torch's foreach Adam/AdamW and SGD, as HF Trainer makes them (torch's fused AdamW, its
    default: no step temporaries, where the foreach one makes a square-root list the size of the parameters;
    bitsandbytes' AdamW8bit, AdamW32bit,
    Lion, Lion8bit; transformers' Adafactor), in the harness: state and peak to the byte. Measured
    first at stop 15: bitsandbytes' Lion keeps fp32 state (it was taken in the parameter dtype: -24 % at peak in
    bf16), its 8-bit optimizers make no quantization maps while every tensor is small enough for 32-bit state,
    and Adafactor's state is fp32 with a 0-dim RMS tensor per parameter, its step() four fp32 copies of the
    parameter it updates (-27 % at peak, bf16 full fine-tuning)."""
    from tests.cases import peft_methods

    opt, mt, mid = case
    training = {"batch_size": 2, "seq_len": 9, "dtype": "bf16", "optimizer": opt}
    method = peft_methods(mt)[mid]
    est = pf.estimate(TINY[mt], method, {**training, "device": "cpu"}).training
    got = measure(TINY[mt], method, training, what=("activations", "peak"))
    assert est["optimizer_bytes"] == got["optimizer_bytes"]
    assert est["peak_bytes"] == got["peak_bytes"]


ALL_LINEAR_EXCLUDED = [
    ("gpt2", {"name": "lora", "r": 4, "target_modules": "all-linear", "exclude_modules": ["c_fc"]}),
    ("llama", {"name": "lora", "r": 4, "target_modules": "all-linear", "exclude_modules": ["o_proj", "up_proj"]}),
    ("llama", {"name": "ia3", "target_modules": "all-linear", "feedforward_modules": ["down_proj"], "exclude_modules": ["q_proj"]}),
    ("llama", {"name": "qlora", "r": 4, "target_modules": "all-linear", "exclude_modules": "model.layers.0.*"}),
    ("opt", {"name": "lora", "r": 4, "target_modules": "all-linear", "exclude_modules": ["project_in", "layers.1.fc2"]}),
]


@pytest.mark.parametrize("case", ALL_LINEAR_EXCLUDED, ids=[f"{mt}-{m['name']}-{m['exclude_modules']}" for mt, m in ALL_LINEAR_EXCLUDED])
def test_all_linear_still_honours_exclude_modules(case):
    """target_modules="all-linear" with exclude_modules: PEFT expands all-linear to the linear modules' names and
    still excludes (check_target_module_exists). The estimate ignored exclude_modules there until stop 15
    (trainable parameters, adapter bytes and activations all too high)."""
    mt, method = case
    training = {"batch_size": 2, "seq_len": 9, "dtype": "bf16"}
    est = pf.estimate(TINY[mt], method, {**training, "device": "cpu"}).to_dict()
    got = measure(TINY[mt], method, training, what=("static", "activations", "peak"))
    assert est["trainable_params"] == got["trainable_params"]
    assert est["storage"]["adapter_bytes"] == got["adapter_bytes"]
    assert est["training"]["activations_bytes"] == got["activations_bytes"]
    assert est["training"]["peak_bytes"] == got["peak_bytes"]


SAVED_EMBEDDINGS = [
    ("llama", {"name": "lora", "r": 4, "target_modules": ["embed_tokens", "q_proj"]}),
    ("llama", {"name": "lora", "r": 4, "target_modules": ["lm_head", "q_proj"]}),
    ("llama", {"name": "lora", "r": 4, "target_modules": r".*(embed_tokens|lm_head|v_proj)"}),
    ("llama", {"name": "lora", "r": 4, "target_modules": ["model.embed_tokens", "q_proj"]}),  # not the name PEFT looks for
    ("granite", {"name": "lora", "r": 4, "target_modules": ["embed_tokens", "lm_head"]}),  # tied
    ("gpt2", {"name": "lora", "r": 4, "target_modules": ["wte", "c_attn"]}),  # GPT-2's wte: not looked for
    ("gpt2", {"name": "lora", "r": 4, "target_modules": ["lm_head", "c_attn"]}),
    ("opt", {"name": "qlora", "r": 4, "target_modules": ["embed_tokens", "lm_head", "q_proj"]}),
]


@pytest.mark.parametrize("case", SAVED_EMBEDDINGS, ids=[f"{mt}-{m['target_modules']}" for mt, m in SAVED_EMBEDDINGS])
def test_lora_on_embeddings_saves_their_base_weights_like_peft(case):
    """LoRA targeting embed_tokens or lm_head: PEFT's save_embedding_layers="auto" saves the base weights of the
    wrapped input and output embeddings with the adapter when target_modules names "embed_tokens" or "lm_head" (a
    list holding either, or a regex matching such a module). Adapter bytes and trainable parameters as measured."""
    mt, method = case
    training = {"batch_size": 2, "seq_len": 9, "dtype": "bf16"}
    est = pf.estimate(TINY[mt], method, {**training, "device": "cpu"}).to_dict()
    got = measure(TINY[mt], method, training, what=("static",))
    assert (est["trainable_params"], est["storage"]["adapter_bytes"]) == (got["trainable_params"], got["adapter_bytes"])
    assert not any("lora.Embedding" in n for n in est["notes"])  # simulated (test_lora_on_the_input_embedding)


LORA_EMBEDDING = [(mt, options) for mt, options in (
    ("llama", {"dtype": "bf16"}), ("llama", {"dtype": "bf16", "gradient_checkpointing": True}),
    ("gemma", {"dtype": "fp32", "mixed_precision": "bf16"}), ("gemma", {"dtype": "fp32", "attn_implementation": "eager"}),
    ("gemma2", {"dtype": "bf16", "gradient_checkpointing": True}), ("gpt2", {"dtype": "fp32", "mixed_precision": "bf16"}),
    ("opt", {"dtype": "bf16", "gradient_checkpointing": True}), ("qwen2", {"dtype": "fp32", "attn_implementation": "eager"}))]


@pytest.mark.parametrize("case", LORA_EMBEDDING, ids=[f"{mt}-{'-'.join(map(str, o.values()))}" for mt, o in LORA_EMBEDDING])
def test_lora_on_the_input_embedding(case):
    """PEFT's lora.Embedding on the input embedding: F.embedding of the ids into lora_embedding_A (fp32, kept for
    B's gradient), the product with B, scaled (and by Gemma's embed_scale), added in fp32 to the base output and
    cast back; every layer's input then requires grad. Under checkpointing enable_input_require_grads' hook sits
    on the wrapped nn.Embedding, whose output becomes the leaf the graph holds. Activations and peak to the byte."""
    mt, options = case
    emb, other = ("wte", "c_attn") if mt == "gpt2" else ("embed_tokens", "q_proj")
    method = {"name": "lora", "r": 4, "target_modules": [emb, other]}
    training = {"batch_size": 2, "seq_len": 9, **options}
    est = pf.estimate(TINY[mt], method, {**training, "device": "cpu"}).training
    got = measure(TINY[mt], method, training, what=("activations", "peak"))
    assert (est["activations_bytes"], est["peak_bytes"]) == (got["activations_bytes"], got["peak_bytes"])



DORA_EMBEDDING = [(mt, vocab, options) for mt, vocab, options in (
    ("llama", None, {"dtype": "bf16"}), ("llama", 3001, {"dtype": "bf16"}), ("llama", 3001, {"dtype": "fp32", "mixed_precision": "bf16"}),
    ("llama", 3001, {"dtype": "fp32", "mixed_precision": "fp16"}), ("gemma", 3001, {"dtype": "bf16", "gradient_checkpointing": True}),
    ("gemma", None, {"dtype": "fp32", "attn_implementation": "eager"}), ("gpt2", 3001, {"dtype": "fp32"}),
    ("opt", None, {"dtype": "fp32", "mixed_precision": "bf16"}), ("qwen2", None, {"dtype": "bf16", "gradient_checkpointing": True}))]


@pytest.mark.parametrize("case", DORA_EMBEDDING, ids=[f"{mt}-{v}-{'-'.join(map(str, o.values()))}" for mt, v, o in DORA_EMBEDDING])
def test_dora_on_the_input_embedding(case):
    """PEFT's DoraEmbeddingVariant: DoraEmbeddingLayer makes lora_weight = (A.T @ B.T).T, then W.T + scaling *
    lora_weight and its row norm (three vocab x width temporaries, the sum fp32), alive until its forward returns;
    mag_norm_scale * (embedding(ids, A.T) @ B.T) * scaling keeps the matmul's output; mag_norm_scale * result +
    result_dora keeps the base output. With a 3,001-token vocabulary those temporaries set the peak, in the
    forward before the layers (batch 1, 3 tokens). Activations and peak to the byte; the old code, which left
    the module out, was 2-5 % low at the default vocabulary and 25-70 % low at the peak with the larger one."""
    mt, vocab, options = case
    emb, other = ("wte", "c_attn") if mt == "gpt2" else ("embed_tokens", "q_proj")
    method = {"name": "lora", "r": 4, "use_dora": True, "target_modules": [emb, other]}
    cfg = dict(TINY[mt], **({"vocab_size": vocab} if vocab else {}))
    training = {"batch_size": 1, "seq_len": 3, **options} if vocab else {"batch_size": 2, "seq_len": 9, **options}
    est = pf.estimate(cfg, method, {**training, "device": "cpu"})
    got = measure(cfg, method, training, what=("activations", "peak"))
    assert (est.training["activations_bytes"], est.training["peak_bytes"]) == (got["activations_bytes"], got["peak_bytes"])
    if vocab:
        assert est.training["peak_at"].startswith("forward: ") and "scaling * lora_weight" in est.training["peak_at"]
    assert not any("lora.Embedding" in n for n in est.to_dict()["notes"])


@pytest.mark.parametrize("case", embedding_backward_cases(), ids=[c[0] for c in embedding_backward_cases()])
def test_lora_on_the_input_embedding_backward_sets_the_peak(case):
    """lora.Embedding reads lora_embedding_A.T and lora_embedding_B.T, views made before the embedding: A's
    gradient (embedding_dense_backward, vocab x r, the view's layout) is cloned in A's layout by its
    AccumulateGrad while still alive, and B's waits for its AccumulateGrad until after the embedding's backward
    (added there under gradient accumulation). With a 3,001-token vocabulary, a batch of 1 x 3 tokens and SGD,
    that moment, after every layer's backward, is the step's peak. Found by a random draw (-103,040 B, 9 %):
    the simulation stopped at the layers' input. (A learned position embedding's modules_to_save copy: its
    backward runs first, and its gradient stays; 8-25 % low before.)"""
    est = _exact(case)
    assert est["peak_at"].startswith("backward: ") and "embedding" in est["peak_at"]


@pytest.mark.parametrize("case", position_copy_cases(), ids=[c[0] for c in position_copy_cases()])
def test_embedding_copies_weight_gradients_set_the_peak(case):
    """modules_to_save copies of the embeddings: their weight gradients come after every layer's backward. A
    copy of the learned positions alone runs its backward while its saved indices live and, under checkpointing,
    after the word embeddings' output (a leaf then) got its .grad: a clone of the gradient the sum hands both
    its inputs, or OPT's project_in's input gradient (wider). Found by a random draw (-48 B); 24-168 B low
    before."""
    est = _exact(case)
    assert est["peak_at"] == "backward: embeddings' weight gradients"


@pytest.mark.parametrize("case", one_token_query_cases(), ids=[c[0] for c in one_token_query_cases()])
def test_prefix_tuning_with_a_one_token_query(case):
    """transformers builds no sdpa mask for a one-token query (no per-layer additive mask, and sdpa's GQA path)
    where nothing pads and no window slides, even with a prefix's cache. Found by a random draw: activations
    0.5-133 % high before."""
    _exact(case)


@pytest.mark.parametrize("case", prefix_gather_cases(), ids=[c[0] for c in prefix_gather_cases()])
def test_prefix_tuning_gathers_the_top_layers_gradients_at_the_peak(case):
    """Prefix tuning's gradients are gathered after every layer's backward, the top layer's first: its keys' and
    values' gradients (select_backward each, then added) are made while every lower layer's whole concatenated
    key and value gradients are still alive (the prefix's part is a view of them). In fp32, with a short
    sequence, that sets the peak (docs/notes/activations.md, stop 24; the estimate was 256-480 B per sequence low
    before, having only the split's cat of all the gathered gradients)."""
    est = _exact(case)
    assert est["peak_at"].startswith("backward: prefix gather")


@pytest.mark.parametrize("case", one_token_cases(), ids=[c[0] for c in one_token_cases()])
def test_one_token_sequences(case):
    """A one-token sequence is a point of its own (like batch 1): eager attention's matmuls fold q, k and v into
    (b * heads, 1, d) as views (not GPT-2's or Phi-3's slices of a fused projection), and the attention output's
    transpose needs no copy. Found by random draws (GPT-NeoX eager: activations 0.02-8 % low)."""
    _exact(case)


@pytest.mark.parametrize("case", bottom_layer_cases(), ids=[c[0] for c in bottom_layer_cases()])
def test_bottom_layer_with_q_and_k_frozen(case):
    """LoRA leaving q_proj and k_proj frozen: the bottom layer's rotary saves no cos/sin (gone before its backward)
    and sdpa's flash kernel returns the gradients of q and k anyway (freed as it returns). The bottom layer's
    backward sets the peak; 64-1,536 B off before."""
    est = _exact(case)
    assert est["peak_at"].startswith("backward of the bottom layer")


@pytest.mark.parametrize("case", rotary_kind_cases(), ids=[c[0] for c in rotary_kind_cases()])
def test_one_kinds_rotary_pair_goes_once(case):
    """Gemma3's rotary pair that only one kind of layer saves is freed once, after the lowest layer of that kind
    (the first of the kind, simulated on its own, used to free it for every layer of the kind)."""
    est = _exact(case)
    assert "embed_tokens" in est["peak_at"]


@pytest.mark.parametrize("case", project_in_cases(), ids=[c[0] for c in project_in_cases()])
def test_lora_on_opt_project_in_backward(case):
    """LoRA on OPT-350m's project_in: its backward runs after every layer's, below them, and is simulated (the
    graph's own engine over the nodes before the layers, as for LoRA on the input embedding)."""
    est = _exact(case)
    assert "project_in" in est["peak_at"]


@pytest.mark.parametrize("case", embedding_copies_cases(), ids=[c[0] for c in embedding_copies_cases()])
def test_embedding_copies_after_project_in_and_with_accumulation(case):
    """modules_to_save copies of the embeddings: LoRA on OPT's project_in runs its backward (the graph's engine)
    before the positions' copy, whose node autograd runs after it, and the word embeddings' output, a leaf, sums
    the gradients project_in hands it; with gradient accumulation the positions' copy's gradient is added into its
    .grad in place and gone when the word embedding's backward runs. The copies' backward sets the peak."""
    est = _exact(case)
    assert est["peak_at"] == "backward: embeddings' weight gradients"


@pytest.mark.parametrize("case", adafactor_order_cases(), ids=[c[0] for c in adafactor_order_cases()])
def test_adafactor_steps_the_parameters_in_registration_order(case):
    """Adafactor's step, one parameter after another in model.parameters() order (each layer's modules as the
    layer registers them; LoRA on OPT's project_in before the layers): the previous update, still bound, sets the
    peak with a half-precision head copy's four fp32 copies."""
    est = _exact(case)
    assert est["peak_at"] == "optimizer step"


@pytest.mark.parametrize("case", dora_conv1d_accumulation_cases(), ids=[c[0] for c in dora_conv1d_accumulation_cases()])
def test_dora_conv1d_transpose_leaf_gets_a_new_grad_under_accumulation(case):
    """DoRA with dropout on GPT-2's Conv1D: PEFT's transpose() makes W.T a new Parameter in every forward, so its
    gradient is a new .grad even under gradient accumulation (where the real parameters' are added in place), and
    under checkpointing each layer's stays alive through the backward of the layers below, which sets the peak."""
    est = _exact(case)
    assert est["peak_at"].startswith("backward")


@pytest.mark.parametrize("case", position_lora_cases(), ids=[c[0] for c in position_lora_cases()])
def test_lora_on_gpt2_position_embedding(case):
    """LoRA on GPT-2's wpe runs on the positions (one row per position, whatever the batch) and makes every layer's
    input require grad; its backward, below the layers, reduces the gradient over the batch first. DoRA's
    n_positions x width temporaries come before the attention mask is built."""
    est = _exact(case)
    if case[0].endswith("1x2"):
        assert est["peak_at"].startswith("forward: transformer.wpe")


def test_lora_on_opt_position_embedding_is_refused():
    """OPTDecoder calls embed_positions with the attention mask, which PEFT's lora.Embedding looks up as indices:
    transformers fails without a mask (the harness shows it), and with one the adapter reads 0/1 values."""
    method = {"name": "lora", "r": 4, "target_modules": ["q_proj", "embed_positions"]}
    with pytest.raises(pf.UnsupportedCombinationError, match="LoRA on OPT's embed_positions") as refusal:
        pf.estimate(TINY["opt"], method, {"batch_size": 2, "seq_len": 9})
    assert "modules_to_save=['embed_positions']" in str(refusal.value)
    with pytest.raises(RuntimeError, match="indices"):
        measure(TINY["opt"], method, {"batch_size": 2, "seq_len": 9, "dtype": "fp32"}, what=("activations",))
    # trained whole instead, it is estimated
    assert pf.estimate(TINY["opt"], dict(method, target_modules=["q_proj"], modules_to_save=["embed_positions"]),
                       {"batch_size": 2, "seq_len": 9}).training["peak_bytes"] > 0


@pytest.mark.parametrize("case", trainable_tokens_cases(), ids=[c[0] for c in trainable_tokens_cases()])
def test_trainable_token_indices(case):
    """trainable_token_indices: the merged vocab x width weight of each forward, the embedding's dense gradient
    gathered to the rows, a tied head's merged weight kept by its matmul and its weight gradient. Static numbers,
    the checkpoint and the FLOPs too."""
    label, cfg, method, training = case
    est = _exact(case)
    if label.endswith("1x2"):
        assert "weight.index_copy" in est["peak_at"] or "trainable tokens" in est["peak_at"]
    if label.endswith("autocast"):
        assert est["peak_at"] == "forward: lm_head"
    full = pf.estimate(cfg, method, {**training, "device": "cpu"})
    got = measure(cfg, method, training, what=("static",))
    assert (full.to_dict()["trainable_params"], full.training["weights_bytes"], full.training["optimizer_bytes"]) == (
        got["trainable_params"], got["weights_bytes"], got["optimizer_bytes"])
    assert full.storage["checkpoint_file_bytes"] == measure_checkpoint(cfg, method)


@pytest.mark.parametrize("fields, match", [
    ({"trainable_token_indices": {"q_proj": [1]}}, "'q_proj' is not modelled"),
    ({"trainable_token_indices": [1], "modules_to_save": ["embed_tokens"]}, "PEFT refuses it"),
    ({"trainable_token_indices": [1], "target_modules": ["embed_tokens", "q_proj"]}, "LoRA on the input embedding"),
    ({"trainable_token_indices": [1], "modules_to_save": ["lm_head"]}, "forward fails"),
])
def test_trainable_token_indices_refusals(fields, match):
    """What PEFT refuses or fails on (the embedding trained whole too; a tied head in modules_to_save) is refused
    with PEFT's reason, the harness failing as well; what is not modelled is refused saying so; a row outside the
    vocabulary names the field and the range."""
    cfg, method = TINY["qwen2"], {"name": "lora", "r": 4, **fields}
    with pytest.raises(pf.PeftFootprintError, match=match):
        pf.estimate(cfg, method, {"batch_size": 2, "seq_len": 9})
    if "PEFT" in match or "fails" in match:
        with pytest.raises(ValueError):
            measure(cfg, method, {"batch_size": 2, "seq_len": 9, "dtype": "fp32"}, what=("activations",))
    with pytest.raises(pf.InvalidConfigError, match=r"trainable_token_indices.*0 to 112"):
        pf.estimate(cfg, {"name": "lora", "trainable_token_indices": [113]})
    with pytest.raises(pf.InvalidConfigError, match="trainable_token_indices"):
        pf.estimate(cfg, {"name": "lora", "trainable_token_indices": []})
    for bad in ({"embed_tokens": "x"}, [1.5], "abc"):
        with pytest.raises(pf.InvalidConfigError, match="a list of token indices .* or a dict from the embedding's module name"):
            pf.estimate(cfg, {"name": "lora", "trainable_token_indices": bad})


@pytest.mark.parametrize("case", use_cache_cases(), ids=[c[0] for c in use_cache_cases()])
def test_a_training_step_with_the_models_own_kv_cache(case):
    """use_cache=True: the model's cache.update copies every layer's keys and values (a cat onto an empty entry)
    and the returned cache holds them until the outputs go, after backward."""
    _exact(case)


def test_use_cache_changes_nothing_under_checkpointing_and_is_refused_with_adapterhub():
    """transformers turns use_cache off under gradient checkpointing: the same estimate as without it (and as the
    harness measures). AdapterHub's transformers 4.x builds its cache differently per model (its own Llama/Mistral
    attention): not modelled, so refused, naming what to pass instead."""
    cfg, method = TINY["mistral"], {"name": "lora", "r": 4}
    training = {"batch_size": 2, "seq_len": 16, "dtype": "bf16", "attn_implementation": "eager", "gradient_checkpointing": True, "optimizer": "sgd"}
    on = pf.estimate(cfg, method, {**training, "use_cache": True, "device": "cpu"}).training
    off = pf.estimate(cfg, method, {**training, "device": "cpu"}).training
    assert (on["activations_bytes"], on["peak_bytes"]) == (off["activations_bytes"], off["peak_bytes"])
    got = measure(cfg, method, {**training, "use_cache": True}, what=("activations", "peak"))
    assert (got["activations_bytes"], got["peak_bytes"]) == (on["activations_bytes"], on["peak_bytes"])
    with pytest.raises(pf.UnsupportedCombinationError, match="use_cache=True with AdapterHub adapters"):
        pf.estimate(cfg, {"name": "adapter"}, {"use_cache": True})
    assert pf.estimate(cfg, {"name": "adapter"}, {"use_cache": True, "gradient_checkpointing": True}).training["peak_bytes"] > 0


_RETAINED = [(mt, setting) for mt in TINY for setting in ("autocast-lora", "qlora", "autocast-prefix", "bf16-lora-ckpt")
             if not (setting == "autocast-prefix" and mt in ("gemma2", "gemma3_text"))]


@pytest.mark.parametrize("mt,setting", _RETAINED, ids=[f"{mt}-{s}" for mt, s in _RETAINED])
def test_retained_outputs_are_what_the_forward_returns(mt, setting):
    """retain_outputs with use_cache: the logits and the KV cache a training forward returns, as the real model
    returns them: the cache in the keys' dtype (fp32 under autocast on fp32 weights where the rotary makes them,
    or with prefix tuning; QLoRA prepared for k-bit training: fp32 logits and cache), none under checkpointing."""
    import torch

    from tests.harness import measure as M

    cfg = dict(TINY[mt], attn_pdrop=0.0) if mt == "gpt2" else TINY[mt]
    method = {"lora": {"name": "lora", "r": 2, "target_modules": "all-linear"}, "qlora": {"name": "qlora", "r": 2, "target_modules": "all-linear"},
              "prefix": {"name": "prefix_tuning", "num_virtual_tokens": 3}}[setting.split("-")[1] if "-" in setting else setting]
    training = {"batch_size": 2, "seq_len": 8, "use_cache": True, "retain_outputs": True,
                "dtype": "fp32" if setting.startswith("autocast") else "bf16",
                "mixed_precision": "bf16" if setting.startswith("autocast") else None,
                "gradient_checkpointing": setting.endswith("ckpt")}
    est = pf.estimate(cfg, method, {**training, "device": "cpu"}).training["retained_outputs_bytes"]
    t = M._training_defaults({k: v for k, v in training.items() if k != "mixed_precision"} | {"mixed_precision": training["mixed_precision"] or False})
    model, _ = M._build(cfg, method, t, "cpu", 0)
    ids = M._inputs(model, 2, 8, "cpu", 0)
    if t["gradient_checkpointing"]:
        model.train()
    with M._autocast(t):
        out = model(input_ids=ids, labels=ids, use_cache=True)
    cache = out.past_key_values
    storages = {x.untyped_storage().data_ptr(): x.untyped_storage().nbytes()
                for layer in (cache.layers if cache is not None else ()) for x in (layer.keys, layer.values)}
    assert est == out.logits.untyped_storage().nbytes() + sum(storages.values())


@pytest.mark.parametrize("model_type", ["gemma2", "gemma3_text"])
def test_prefix_tuning_on_gemma_refused_where_peft_fails(model_type):
    """PEFT 0.19.1's get_prompt fills Gemma 2/3's cache from past_key_values[0][layer_idx] and
    past_key_values[1][layer_idx], a tuple of one tensor per layer: measured, it fails (IndexError) with 1 and 3
    layers and runs with 2. estimate() and sweep() refuse the first two, and estimate the third exactly."""
    method = {"name": "prefix_tuning", "num_virtual_tokens": 3}
    train = {"batch_size": 1, "seq_len": 5, "dtype": "bf16", "attn_implementation": "sdpa"}
    for n in (1, 2, 3):
        cfg = dict(TINY[model_type], num_hidden_layers=n)
        cfg.pop("layer_types", None)
        if n == 2:
            got = measure(cfg, method, train, what=("activations", "peak"))
            assert pf.estimate(cfg, method, {**train, "device": "cpu"}).training["peak_bytes"] == got["peak_bytes"]
            continue
        with pytest.raises(IndexError):
            measure(cfg, method, train, what=("activations",))
        with pytest.raises(pf.UnsupportedCombinationError, match="exactly 2 layers"):
            pf.estimate(cfg, method, train)
        with pytest.raises(pf.UnsupportedCombinationError, match="exactly 2 layers"):
            pf.sweep(cfg, method, batch_sizes=[1], seq_lens=[5])


def test_sweep_refuses_what_estimate_refuses():
    """sweep() refuses the combinations estimate() refuses whatever the shape (it gave numbers for them)."""
    with pytest.raises(pf.UnsupportedCombinationError, match="gradient_checkpointing"):
        pf.sweep("meta-llama/Llama-3.2-1B", "prefix_tuning", {"gradient_checkpointing": True}, batch_sizes=[1], seq_lens=[64])
    with pytest.raises(pf.UnsupportedCombinationError, match="exactly 2 layers"):
        pf.sweep("google/gemma-2-2b", "prefix_tuning", batch_sizes=[1], seq_lens=[64])

"""Self-checks of the measurement harness: hand-checkable cases and cited public numbers.

Run: python -m pytest tests/harness -q   (the test extras install torch, transformers, peft, bitsandbytes)
"""

from __future__ import annotations

import warnings

import pytest

import torch  # noqa: E402 - the test extras install torch, transformers, peft, bitsandbytes

from tests.harness.measure import LiveStorageTracker, SavedTensorsRecorder, measure, measure_meta  # noqa: E402
from tests.harness.tiny_configs import LLAMA_3_2_3B, TINY_CONFIGS  # noqa: E402

warnings.filterwarnings("ignore")

LLAMA = TINY_CONFIGS["llama"]  # hidden 64, inter 128, 2 layers, 4 heads (head_dim 16), 2 kv heads, vocab 256
# per layer: q 64*64 + k 64*32 + v 64*32 + o 64*64 + 3 * 64*128 + 2 norms * 64 = 36992
LLAMA_TOTAL = 2 * 36992 + 2 * 256 * 64 + 64  # + untied embed and lm_head + final norm = 106816
TRAIN = {"dtype": "bf16", "batch_size": 2, "seq_len": 8}


# ---------------------------------------------------------------- the tracker on bare tensors


def test_tracker_linear_forward_live_and_saved():
    lin = torch.nn.Linear(4, 8, bias=False)  # weight trainable, input not
    x = torch.randn(2, 4)
    tr = LiveStorageTracker(list(lin.parameters()) + [x])
    saved = SavedTensorsRecorder({lin.weight.untyped_storage().data_ptr()}, tr.pre)
    with tr, saved.hooks():
        out = lin(x)  # (2, 8) fp32 = 64 bytes
        loss = out.sum()  # 4 bytes; SumBackward saves no tensor
    assert tr.current == 64 + 4
    # mm saves its input x for the weight gradient; x existed before, so it is not "created"
    assert sum(saved.seen.values()) == 0
    assert sum(saved.pre_seen.values()) == 2 * 4 * 4
    with tr:
        del out  # not saved by anyone: freed at once
    assert tr.current == 4
    with tr:
        loss.backward()
    # the loss is still referenced; the weight grad (8*4*4 = 128 bytes) was created during backward
    assert tr.current == 4 + 128
    assert lin.weight.grad.numel() * 4 == 128


def test_tracker_views_inplace_and_reuse():
    base = torch.randn(8)
    tr = LiveStorageTracker([base])
    with tr:
        y = base * 2  # new 32 bytes
        y.add_(1)  # in place: nothing new
        v = y.view(2, 4)  # view: nothing new
        b = base.view(2, 4)  # view of a pre-existing storage: nothing new
        assert tr.current == 32
        del y, v
        assert tr.current == 0
        for _ in range(5):  # freed storages may come back at the same address: count each once
            a = torch.empty(1000)
            assert tr.current == 4000
            del a
        assert tr.current == 0
    assert tr.created_count == 6 and b.shape == (2, 4)


def test_tracker_peak():
    tr = LiveStorageTracker()
    with tr:
        a = torch.ones(1000)
        b = a * 2  # a and b alive: 8000
        del a
        c = torch.ones(500)  # b and c: 6000
        del b, c
    assert tr.peak == 8000 and tr.current == 0


# ---------------------------------------------------------------- static counts on a tiny llama


def test_tiny_llama_full_bf16_static():
    r = measure(LLAMA, {"name": "full"}, TRAIN)
    assert r["total_params"] == r["trainable_params"] == LLAMA_TOTAL == 106816
    assert r["weights_bytes"] == 2 * LLAMA_TOTAL
    assert r["gradients_bytes"] == 2 * LLAMA_TOTAL
    assert r["optimizer_bytes"] == 2 * 2 * LLAMA_TOTAL  # exp_avg + exp_avg_sq in the param dtype
    assert r["adapter_bytes"] == 2 * LLAMA_TOTAL
    assert r["params_by_dtype"] == {"bfloat16": {"params": LLAMA_TOTAL, "bytes": 2 * LLAMA_TOTAL,
                                                 "trainable_params": LLAMA_TOTAL}}


def test_tiny_llama_tied_embeddings_counted_once():
    cfg = dict(LLAMA, tie_word_embeddings=True)
    r = measure(cfg, {"name": "full"}, dict(TRAIN, dtype="fp32"))
    assert r["total_params"] == LLAMA_TOTAL - 256 * 64
    assert r["weights_bytes"] == r["adapter_bytes"] == 4 * (LLAMA_TOTAL - 256 * 64)


def test_tiny_llama_lora_static():
    r = measure(LLAMA, {"name": "lora", "r": 8, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}, TRAIN)
    per_layer = 8 * (64 + 64) + 8 * (64 + 32) * 2 + 8 * (64 + 64)  # A: r x in, B: out x r
    trainable = 2 * per_layer
    assert r["trainable_params"] == trainable
    assert r["total_params"] == LLAMA_TOTAL + trainable
    # PEFT keeps adapter weights in fp32 on a bf16 base (autocast_adapter_dtype=True)
    assert r["weights_bytes"] == 2 * LLAMA_TOTAL + 4 * trainable
    assert r["gradients_bytes"] == 4 * trainable
    assert r["optimizer_bytes"] == 8 * trainable
    assert r["adapter_bytes"] == 4 * trainable
    assert r["params_by_dtype"]["float32"]["trainable_params"] == trainable


def test_tiny_llama_default_lora_targets_q_v():
    r = measure(LLAMA, {"name": "lora", "r": 8}, TRAIN)
    assert r["trainable_params"] == 2 * (8 * (64 + 64) + 8 * (64 + 32))


# ---------------------------------------------------------------- live / peak consistency on a real step


def test_full_fp32_step_live_bytes():
    r = measure(LLAMA, {"name": "full"}, dict(TRAIN, dtype="fp32"), what=("static", "activations", "peak", "saved"))
    live = r["live_bytes"]
    # after backward every activation is freed and only the gradients are new and alive
    assert live["after_backward"] == r["gradients_bytes"] == 4 * LLAMA_TOTAL
    assert live["after_step"] == r["gradients_bytes"]  # AdamW temporaries freed; state updated in place
    assert live["after_zero_grad"] == 0
    assert r["optimizer_bytes_step2"] == r["optimizer_bytes"]
    assert 0 < r["saved_bytes"] <= r["activations_bytes"]
    assert r["activations_bytes"] >= r["logits_bytes"] == 2 * 8 * 256 * 4
    assert r["peak_live_bytes"] >= max(r["activations_bytes"], r["gradients_bytes"])
    assert r["peak_bytes"] == r["weights_bytes"] + r["optimizer_bytes"] + r["peak_live_bytes"]


def test_lora_activations_affine_in_batch():
    # batch-independent terms exist (rotary cos/sin of shape (1, s, d), the scalar loss), so the count is
    # affine, not proportional, in the batch size. Batch 1 is special: the shifted labels (b, s) int64 are a
    # contiguous view of the padded (b, s+1) labels there (kept: b*(s+1)*8 bytes), a clone for b > 1 (b*s*8).
    a = [measure(LLAMA, {"name": "lora", "r": 4}, dict(TRAIN, batch_size=b), what=("activations",))["activations_bytes"]
         for b in (2, 3, 4)]
    assert a[2] - a[1] == a[1] - a[0] > 0


def test_flops_linear_terms():
    # eager attention, seq 8, batch 1; forward = 2 * tokens * (matmul params) + attention terms
    r = measure(LLAMA, {"name": "full"}, dict(TRAIN, batch_size=1, dtype="fp32"), what=("flops",))
    tokens = 8
    linear_params = 2 * (36992 - 128) + 256 * 64  # all linear weights incl. lm_head (no embedding, no norms)
    heads, hd, s = 4, 16, 8
    attn = 2 * 2 * (heads * s * s * hd)  # QK^T and PV per layer
    rotary = 2 * (hd // 2) * 1 * s  # HF rotary: inv_freq (hd/2, 1) @ position_ids (1, s), a real matmul
    assert r["forward_flops"] == 2 * tokens * linear_params + 2 * attn + rotary
    assert r["step_flops"] == 3 * (r["forward_flops"] - rotary) + rotary  # rotary needs no backward


def test_kv_cache_tiny_llama():
    r = measure(LLAMA, {"name": "lora", "r": 4}, TRAIN, what=("kv_cache",),
                inference={"batch_size": 2, "prompt_len": 5, "new_tokens": 3})
    positions = r["kv_cache_seq_lens"]
    assert positions == [5 + 3 - 1]  # the last generated token is never fed back
    assert r["kv_cache_bytes"] == 2 * 2 * 2 * 2 * 16 * positions[0] * 2  # layers, k+v, batch, kv heads, hd, bf16


# ---------------------------------------------------------------- cited public numbers (meta device, real size)

# huggingface/peft method_comparison/MetaMathQA/results (Llama-3.2-3B)
PEFT_BENCHMARK = [
    ({"name": "full"}, 3212749824, 3212749824),
    ({"name": "lora", "r": 32, "target_modules": ["q_proj", "v_proj"]}, 9175040, 3221924864),
    ({"name": "ia3", "target_modules": ["k_proj", "v_proj", "down_proj"], "feedforward_modules": ["down_proj"]},
     286720, None),
    ({"name": "prefix_tuning", "num_virtual_tokens": 200}, 11468800, None),
    ({"name": "prompt_tuning", "num_virtual_tokens": 200}, 614400, None),
    ({"name": "p_tuning", "num_virtual_tokens": 20, "encoder_hidden_size": 3072}, 28382208, None),
]


@pytest.mark.parametrize("method,trainable,total", PEFT_BENCHMARK, ids=[m["name"] for m, _, _ in PEFT_BENCHMARK])
def test_llama_3_2_3b_peft_benchmark_params(method, trainable, total):
    r = measure_meta(LLAMA_3_2_3B, method, "bf16", try_step=method["name"] != "full")
    assert r["trainable_params"] == trainable
    if total is not None:
        assert r["total_params"] == total
    base = 3212749824
    if method["name"] != "full":
        assert r["total_params"] == base + trainable
        # adapters are fp32 on the bf16 base
        assert r["weights_bytes"] == 2 * base + 4 * trainable
        assert r["gradients_bytes"] == 4 * trainable
        assert r["optimizer_bytes"] == 8 * trainable
    else:
        assert r["weights_bytes"] == r["gradients_bytes"] == 2 * base


# ---------------------------------------------------------------- QLoRA (bitsandbytes 4-bit, CPU backend)


def test_tiny_llama_qlora_static():
    r = measure(LLAMA, {"name": "qlora", "r": 8, "prepare_model_for_kbit_training": False}, TRAIN)
    lora = 2 * (8 * (64 + 64) + 8 * (64 + 32))
    linear = 73728  # 2 layers x (q, k, v, o, gate, up, down) weights: quantised, two 4-bit values per byte
    unquantised = LLAMA_TOTAL - linear  # embed, lm_head, norms stay in bf16
    assert r["trainable_params"] == lora
    assert r["total_params"] == LLAMA_TOTAL + lora  # PEFT counts a Params4bit as 2 params per stored byte
    assert r["params_by_dtype"]["uint8"]["bytes"] == linear // 2
    assert r["weights_bytes"] == 2 * unquantised + linear // 2 + 4 * lora
    assert r["quant_state_bytes"] > 0
    assert r["gradients_bytes"] == 4 * lora and r["optimizer_bytes"] == 8 * lora
    # prepare_model_for_kbit_training (the default) upcasts every non-quantised parameter to fp32
    r2 = measure(LLAMA, {"name": "qlora", "r": 8}, TRAIN)
    assert r2["weights_bytes"] == 4 * unquantised + linear // 2 + 4 * lora


@pytest.mark.parametrize("mp,dtype", [("fp16", "float16"), ("bf16", "bfloat16")])
def test_autocast_runs_in_the_mixed_precision_asked_for(mp, dtype):
    """training.mixed_precision picks autocast's dtype: fp32 weights, the matmuls' outputs in fp16 or bf16."""
    r = measure(LLAMA, {"name": "full"}, {"batch_size": 2, "seq_len": 5, "dtype": "fp32", "mixed_precision": mp},
                what=("activations", "names"))
    dtypes = {e["dtype"] for e in r["live_at_end_of_forward"]}
    assert dtype in dtypes and ({"float16", "bfloat16"} - {dtype}).isdisjoint(dtypes)


_TORCH_NAME = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gemma2", "opt"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("method", [{"name": "full"}, {"name": "lora", "r": 4}, {"name": "prompt_tuning", "num_virtual_tokens": 3}])
def test_the_harness_runs_in_the_dtype_asked_for(model_type, dtype, method):
    """training.dtype sets the model's parameters and the forward's tensors: every frozen parameter in that dtype,
    trainable ones in it or fp32 (PEFT keeps adapters in fp32 on a half base), and the forward's floating tensors
    in it or fp32 (norm and loss upcasts) -- never the other half type. (Stop 21 found the harness running
    fp16 autocast as bf16, silent because both are 2 bytes; this holds the plain dtypes the same way.)"""
    want = _TORCH_NAME[dtype]
    r = measure(TINY_CONFIGS[model_type], method, {"batch_size": 2, "seq_len": 5, "dtype": dtype}, what=("activations", "names"))
    frozen = {d for d, v in r["params_by_dtype"].items() if v["params"] > v["trainable_params"]}
    trainable = {d for d, v in r["params_by_dtype"].items() if v["trainable_params"]}
    assert (frozen or {want}) == {want}, r["params_by_dtype"]
    assert trainable and trainable <= {want, "float32"}, r["params_by_dtype"]
    if method["name"] == "full":
        assert trainable == {want}
    floating = {e["dtype"] for e in r["live_at_end_of_forward"]} - {"int64", "bool", "int32", "uint8"}
    assert want in floating and floating <= {want, "float32"}, floating

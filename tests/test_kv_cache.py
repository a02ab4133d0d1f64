"""kv_cache_bytes against the cache tensors model.generate(use_cache=True) returns (transformers 5.13.1, PEFT 0.19.1):
GQA, explicit head_dim, sliding-window layers (mistral, gemma2, gemma3: DynamicSlidingWindowLayer keeps window - 1
positions), prefix / prompt virtual tokens."""

from __future__ import annotations

import pytest

import peft_footprint as pf
from peft_footprint.inference import CACHE_ELEMENT_BYTES, generate_kv_cache_bytes
from peft_footprint.methods import load_method
from peft_footprint.model import load_model
from tests.cases import TINY, peft_methods

from tests.harness.measure import measure  # noqa: E402 - the test extras install torch, transformers, peft

SHAPES = [(3, 5, 4), (2, 11, 9)]  # (batch, prompt_len, new_tokens): the second overflows the sliding windows (8)
CASES = [
    pytest.param(mt, mid, shape, dtype, id=f"{mt}-{mid}-{shape[1]}+{shape[2]}-{dtype}")
    for mt in TINY for mid in ("full", "prefix_tuning", "prompt_tuning") for shape in SHAPES
    for dtype in (("bf16",) if shape == SHAPES[0] else ("fp32",))
]


@pytest.mark.parametrize("model_type, method_id, shape, dtype", CASES)
def test_kv_cache_exact(model_type, method_id, shape, dtype):
    b, prompt, new = shape
    method = peft_methods(model_type)[method_id]
    spec = load_model(TINY[model_type])
    m = load_method(method)
    try:
        m.build(spec.layout, spec.cfg, dtype)
    except pf.UnsupportedCombinationError:  # refused: the real stack must refuse it too
        with pytest.raises(Exception):  # noqa: B017
            measure(TINY[model_type], method, {"dtype": dtype, "batch_size": 1, "seq_len": 4}, what=("kv_cache",),
                    inference={"batch_size": b, "prompt_len": prompt, "new_tokens": new})
        return
    ours = generate_kv_cache_bytes(spec, m, b, prompt, new, dtype)
    got = measure(TINY[model_type], method, {"dtype": dtype, "batch_size": 1, "seq_len": 4}, what=("kv_cache",),
                  inference={"batch_size": b, "prompt_len": prompt, "new_tokens": new})
    assert ours == got["kv_cache_bytes"]


def test_8bit_cache_halves_bf16():
    spec = load_model(TINY["llama"])
    m = load_method("lora")
    assert CACHE_ELEMENT_BYTES["int8"] == CACHE_ELEMENT_BYTES["fp8"] == 1
    assert 2 * generate_kv_cache_bytes(spec, m, 2, 100, 10, "fp8") == generate_kv_cache_bytes(spec, m, 2, 100, 10, "bf16")

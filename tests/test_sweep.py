"""pf.sweep evaluates the same polynomials as pf.estimate over whole grids: every grid point must agree
exactly with estimate(), including models whose sliding window switches on inside the grid."""

from __future__ import annotations

import numpy as np
import pytest

import peft_footprint as pf

BS = [1, 3, 8]
SS = [7, 300, 4096, 5000]


@pytest.mark.parametrize("model", ["meta-llama/Llama-3.2-1B", "mistralai/Mistral-7B-v0.1", "google/gemma-2-2b", "EleutherAI/pythia-160m"])
@pytest.mark.parametrize("method", ["full", "lora", "qlora", {"name": "prompt_tuning", "num_virtual_tokens": 13}, "ia3"])
def test_sweep_matches_estimate(model, method):
    grid = pf.sweep(model, method, {"gradient_checkpointing": method == "qlora"}, batch_sizes=BS, seq_lens=SS, hardware="A100-80GB")
    for i, b in enumerate(BS):
        for j, s in enumerate(SS):
            with pytest.warns(pf.PeftFootprintWarning) if s + 13 > pf.ModelSpec.from_any(model).cfg["max_position_embeddings"] else _none():
                est = pf.estimate(model, method, {"batch_size": b, "seq_len": s, "gradient_checkpointing": method == "qlora"}, hardware="A100-80GB").training
            for key in ("activations_bytes", "peak_bytes", "reserved_bytes", "device_bytes"):
                assert int(grid[key][i, j]) == est[key], (key, b, s)
    assert grid["fits"].dtype == bool and grid["peak_bytes"].shape == (len(BS), len(SS))


@pytest.mark.parametrize("model", ["meta-llama/Llama-3.2-1B", "mistralai/Mistral-7B-v0.1"])
@pytest.mark.parametrize("options", [{}, {"padding_mask": True}, {"attn_implementation": "eager"}])
def test_sweep_matches_estimate_at_a_one_token_query(model, options):
    """A prefix's cache with a one-token query: under sdpa, unpadded, transformers builds no mask (the activation
    model of length 1 is its own); sweep picks it at length 1 and the usual one elsewhere, as estimate() does."""
    method = {"name": "prefix_tuning", "num_virtual_tokens": 11}
    bs, ss = [1, 2], [1, 2, 9]
    grid = pf.sweep(model, method, options, batch_sizes=bs, seq_lens=ss)
    for i, b in enumerate(bs):
        for j, s in enumerate(ss):
            est = pf.estimate(model, method, {**options, "batch_size": b, "seq_len": s}).training
            for key in ("activations_bytes", "peak_bytes"):
                assert int(grid[key][i, j]) == est[key], (key, b, s)


def test_sweep_is_monotonic_and_rejects_bad_grids():
    grid = pf.sweep("meta-llama/Llama-3.1-8B", "lora", batch_sizes=np.arange(1, 9), seq_lens=np.arange(128, 4097, 128))
    assert (np.diff(grid["peak_bytes"], axis=0) > 0).all() and (np.diff(grid["peak_bytes"], axis=1) > 0).all()
    with pytest.raises(ValueError, match="batch_sizes"):
        pf.sweep("meta-llama/Llama-3.1-8B", "lora", batch_sizes=[0, 1], seq_lens=[128])


class _none:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_sweep_stays_exact_beyond_int64():
    cfg = {"model_type": "llama", "hidden_size": 32768, "num_hidden_layers": 200, "num_attention_heads": 256,
           "num_key_value_heads": 16, "intermediate_size": 131072, "vocab_size": 1_000_000, "max_position_embeddings": 2**23}
    grid = pf.sweep(cfg, "full", batch_sizes=[1, 20_000], seq_lens=[4_000_000], hardware="H200")
    est = pf.estimate(cfg, "full", {"batch_size": 20_000, "seq_len": 4_000_000}).training
    assert est["peak_bytes"] > 2**63  # past int64
    assert grid["peak_bytes"][1, 0] == est["peak_bytes"] and isinstance(grid["peak_bytes"][1, 0], int)
    assert grid["reserved_bytes"][1, 0] == pf.estimate(cfg, "full", {"batch_size": 20_000, "seq_len": 4_000_000},
                                                        hardware="H200").training["reserved_bytes"]

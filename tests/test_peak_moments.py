"""The step's activation peak at one shape compares every simulated moment exactly (ActivationModel.live_at):
each phase's entry in peak_candidates must be the largest of that phase's moments, evaluated one by one as
polynomials, and the peak the largest of all. sweep() compares the grid winners (peak_candidates): at the
points of its grid the two must agree."""

from __future__ import annotations

import numpy as np
import pytest

import peft_footprint as pf
from peft_footprint import api
from peft_footprint.activations import _Plan
from peft_footprint.poly import Poly

from .cases import TINY


def _every_moment(act) -> dict[str, list[int]]:
    """Each phase's moments at (b, s) one by one: the top layer's and the head's by kind, and each kind of
    layer below as every (layer start + profile op) pair."""
    plan, packed, degrees = act.moments
    assert isinstance(plan, _Plan)

    def poly(k: int) -> Poly:
        return Poly._raw(packed[k], *degrees[k])

    phases: dict[str, list] = {}
    for kind, lo, hi in plan.kinds:
        phases.setdefault(kind, []).extend(poly(k) for k in range(lo, hi))
    for n, (_, (p0, p1), (s0, s1), _) in enumerate(plan.blocks):
        phases[f"block {n}"] = [poly(j) + poly(m) for j in range(s0, s1) for m in range(p0, p1)]
    return phases


CASES = [
    ("meta-llama/Llama-3.1-8B", "lora", False), ("meta-llama/Llama-3.1-8B", "full", True), ("mistralai/Mistral-7B-v0.1", "lora", True),
    ("google/gemma-2-2b", "qlora", True), ("google/gemma-2-2b", {"name": "lora", "use_dora": True, "target_modules": "all-linear"}, False),
    ("openai-community/gpt2", {"name": "prompt_tuning", "num_virtual_tokens": 17}, False),
    ("EleutherAI/pythia-160m", "ia3", True), ("facebook/opt-125m", {"name": "prefix_tuning", "num_virtual_tokens": 9}, False),
    (dict(TINY["qwen3"], num_hidden_layers=5), {"name": "adapter", "config": "pfeiffer"}, True),
]


@pytest.mark.parametrize("model,method,gc", CASES)
@pytest.mark.filterwarnings("ignore::peft_footprint.PeftFootprintWarning")
@pytest.mark.parametrize("b,s", [(1, 7), (3, 300), (8, 1000), (4096, 1_000_000)])  # (the last: values beyond int64)
def test_each_phase_is_its_largest_moment(model, method, gc, b, s):
    spec, meth = api.load_model(model), pf.load_method(method)
    if s > spec.cfg.get("max_position_embeddings", s) and spec.model_type in ("gpt2", "opt"):  # learned positions
        with pytest.raises(pf.UnsupportedCombinationError, match="learned position embeddings"):
            pf.estimate(model, method, {"batch_size": b, "seq_len": s, "gradient_checkpointing": gc})
        return
    train = pf.TrainingSpec(batch_size=b, seq_len=s, gradient_checkpointing=gc)
    act = api._activations(spec, meth, train)
    live = act.live_at(b, s)
    phases = {k: max(int(p(b, s)) for p in ps) for k, ps in _every_moment(act).items()}
    # one entry per phase besides the end of forward, each the phase's maximum (labels differ: compare values)
    assert live["end of forward"] == act.activations(b, s)
    assert sorted(v for k, v in live.items() if k != "end of forward") == sorted(phases.values())
    est = pf.estimate(model, method, {"batch_size": b, "seq_len": s, "gradient_checkpointing": gc}).training
    table = api._table(spec, meth, train.weight_dtype)
    static = est["weights_bytes"] + est["quant_state_bytes"] + est["optimizer_bytes"]
    assert est["peak_bytes"] - static == max(max(phases.values()), act.activations(b, s), est["peak_candidates"]["optimizer step"])
    assert est["peak_candidates"][est["peak_at"]] == est["peak_bytes"] - static
    assert table.trainable_bytes == est["peak_candidates"]["end of backward (all gradients)"]


@pytest.mark.parametrize("model,method,gc", CASES[:5])
def test_sweep_on_its_grid_agrees_with_every_moment(model, method, gc):
    """The grid winners sweep() compares hold the largest moment at the points of their own grid."""
    bs, ss = np.array([1, 2, 16, 256]), np.array([1, 3, 48, 1024, 3 * 2**12])
    grid = pf.sweep(model, method, {"gradient_checkpointing": gc}, batch_sizes=bs, seq_lens=ss)
    for i, b in enumerate(bs.tolist()):
        for j, s in enumerate(ss.tolist()):
            est = pf.estimate(model, method, {"batch_size": b, "seq_len": s, "gradient_checkpointing": gc}).training
            assert int(grid["peak_bytes"][i, j]) == est["peak_bytes"], (b, s)


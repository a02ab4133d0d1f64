"""The recorded symbolic pass, replayed for other sizes (activations.structured_activation_model, trace.py), gives
exactly what the full pass gives, for every architecture and method; a structure that differs is never replayed.

Each case records the pass on one random variant of a tiny config and asks for another variant (other hidden,
intermediate, vocabulary, head and kv-head sizes, rank, virtual tokens); the answer must equal the full pass on
that variant, polynomial for polynomial, whether it was replayed or (a guard failing) computed again."""

from __future__ import annotations

import random
import warnings

import pytest

import peft_footprint as pf
from peft_footprint import activations, api, compute, storage, tables, trace
from peft_footprint.poly import B, S, Poly
from tests.cases import TINY, peft_methods

OPTIONS = [
    {"gradient_checkpointing": False, "attn_implementation": "sdpa", "dtype": "bf16"},
    {"gradient_checkpointing": True, "attn_implementation": "eager", "dtype": "fp32", "mixed_precision": "bf16"},
    {"gradient_checkpointing": True, "attn_implementation": "sdpa", "dtype": "fp32", "padding_mask": True},
    {"gradient_checkpointing": False, "attn_implementation": "eager", "dtype": "bf16"},
]


def variant(mt: str, rng: random.Random) -> dict:
    """The tiny config of ``mt`` with other sizes (head counts that divide, hidden a multiple of the heads)."""
    cfg = dict(TINY[mt])
    nh_key, h_key = ("n_head", "n_embd") if mt == "gpt2" else ("num_attention_heads", "hidden_size")
    nh = rng.choice([2, 3, 4, 6, 8])
    cfg[nh_key] = nh
    cfg[h_key] = nh * rng.choice([4, 6, 8, 10, 16])
    if "num_key_value_heads" in cfg:
        cfg["num_key_value_heads"] = rng.choice([k for k in range(1, nh + 1) if nh % k == 0])
    if "head_dim" in cfg:
        cfg["head_dim"] = rng.choice([4, 8, 12, 16, 24])
    for k in ("intermediate_size", "ffn_dim"):
        if k in cfg:
            cfg[k] = rng.randrange(16, 300)
    cfg["vocab_size"] = rng.randrange(50, 400)
    if "word_embed_proj_dim" in cfg:
        cfg["word_embed_proj_dim"] = rng.choice([16, 32, 40])
    return cfg


def method_variant(method: dict, rng: random.Random) -> dict:
    m = dict(method)
    for k, choices in (("r", [1, 2, 4, 7, 16]), ("num_virtual_tokens", [1, 3, 5, 9]), ("encoder_hidden_size", [8, 20, 33])):
        if k in m:
            m[k] = rng.choice(choices)
    return m


ADAPTERS = {"seq_bn": {"name": "adapter", "config": "seq_bn"},
            "double_seq_bn_rf5": {"name": "adapter", "config": "double_seq_bn", "reduction_factor": 5},
            "double_seq_bn_leave_out_0": {"name": "adapter", "config": "double_seq_bn", "leave_out": [0]}}


def _more(mt: str) -> dict:
    """DoRA on the input embedding, modules_to_save copies (norms, lm_head), lora_bias; LoRA and DoRA on GPT-2's
    position embedding."""
    layout = pf.ModelSpec.from_any(TINY[mt]).layout
    emb, lin = layout.input_embedding.rsplit(".", 1)[-1], layout.layer_linears[0].name
    positions = {"lora_positions": {"name": "lora", "r": 4, "target_modules": ["wpe", lin]},
                 "lora_dora_positions": {"name": "lora", "r": 3, "use_dora": True, "target_modules": ["wpe"]}} if mt == "gpt2" else {}
    return {**positions, "lora_tokens": {"name": "lora", "r": 2, "target_modules": [lin], "trainable_token_indices": [1, 4, 9]},
            "lora_dora_embedding": {"name": "lora", "r": 4, "use_dora": True, "target_modules": [emb, lin]},
            "lora_modules_to_save": {"name": "lora", "r": 4, "target_modules": "all-linear", "modules_to_save": ["norm", "lm_head"]},
            "lora_bias": {"name": "lora", "r": 4, "target_modules": [lin], "lora_bias": True},
            "lora_one_layer": {"name": "lora", "r": 4, "target_modules": [lin], "layers_to_transform": 1}}


def cases() -> list[tuple]:
    out = []
    for mt in TINY:
        for mid, method in {**peft_methods(mt), **ADAPTERS, **_more(mt)}.items():
            for k, options in enumerate(OPTIONS[:2] if mid not in ("lora", "full") else OPTIONS):
                out.append((mt, mid, method, options, 1000 * len(out) + k))
    return out


def clear() -> None:
    activations._STRUCTURES.clear()
    activations._SEEN.clear()
    api._ACTS.clear()


def _train(options: dict, prefix: bool) -> tuple:
    train = pf.TrainingSpec(**{**options, "gradient_checkpointing": options["gradient_checkpointing"] and not prefix})
    key = train.model_dump_json(exclude={"batch_size", "seq_len", "optimizer", "retain_outputs", "use_cache"})
    return train, key


def test_replay_equals_the_full_pass(monkeypatch):
    recorded = []
    original = activations._record_pass

    def counting(*args):
        recorded.append(args[0])
        return original(*args)

    monkeypatch.setattr(activations, "_record_pass", counting)
    replayed = compared = points_read = 0
    for mt, mid, method, options, seed in cases():
        rng = random.Random(seed)
        train, key = _train(options, "prefix" in mid)
        sliding = "sliding_window" in TINY[mt] and rng.random() < 0.5
        batch_one = options["attn_implementation"] == "eager" and rng.random() < 0.5
        clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec_a, meth_a = api.load_model(variant(mt, rng)), pf.load_method(method_variant(method, rng))
            try:
                for _ in range(2):  # computed the first time, recorded the second
                    activations.structured_activation_model(spec_a, meth_a, train, sliding, batch_one, key)
            except pf.PeftFootprintError:
                continue
            for _ in range(6):  # more variants: most replay the recording
                spec_b = api.load_model(variant(mt, rng))
                meth_b = pf.load_method(method_variant(method, rng))
                before = len(recorded)
                got = activations.structured_activation_model(spec_b, meth_b, train, sliding, batch_one, key)
                want = activations.activation_model(spec_b, meth_b, train, sliding, batch_one)
                if isinstance(got, activations._Replayed):  # read at points first, as estimate() does (no polynomial made)
                    points = [(rng.randint(1, 9), rng.randint(1, 5000)), (3, 10**7), (2**20, 2**30)]
                    ones = [got.with_batch_one_labels(meth_b.virtual_tokens()), want.with_batch_one_labels(meth_b.virtual_tokens())]
                    for b, s in points:
                        assert got.at(b, s) == want.at(b, s), (mt, mid, options, spec_b.cfg, meth_b, b, s)
                        assert got.live_at(b, s) == want.live_at(b, s), (mt, mid, options, spec_b.cfg, meth_b, b, s)
                        assert ones[0].at(1, s) == ones[1].at(1, s) and ones[0].live_at(1, s) == ones[1].live_at(1, s)
                    points_read += 1
                assert got == want, (mt, mid, options, spec_b.cfg, meth_b)
                compared += 1
                replayed += len(recorded) == before
    assert compared > 400
    assert replayed > compared // 2, (replayed, compared)  # most variants keep the structure: the replay is exercised
    assert points_read > compared // 2, (points_read, compared)


def test_a_changed_branch_is_not_replayed(monkeypatch):
    """Llama with as many kv heads as heads (no repeat_kv) recorded; a GQA variant must run the full pass."""
    recorded = []
    original = activations._record_pass
    monkeypatch.setattr(activations, "_record_pass", lambda *a: recorded.append(1) or original(*a))
    train, key = _train(OPTIONS[1], False)
    method = pf.load_method({"name": "lora", "r": 4})
    clear()
    mha = api.load_model(dict(TINY["llama"], num_key_value_heads=6))
    gqa = api.load_model(dict(TINY["llama"], num_key_value_heads=2))
    bigger = api.load_model(dict(TINY["llama"], num_key_value_heads=6, hidden_size=96, intermediate_size=200))
    activations.structured_activation_model(mha, method, train, False, False, key)
    assert not recorded  # the first of a structure is computed, not recorded
    activations.structured_activation_model(mha, method, train, False, False, key)
    assert len(recorded) == 1
    assert activations.structured_activation_model(gqa, method, train, False, False, key) == activations.activation_model(gqa, method, train)
    assert len(recorded) == 2  # the GQA guard failed: recorded anew
    assert activations.structured_activation_model(bigger, method, train, False, False, key) == activations.activation_model(bigger, method, train)
    assert len(recorded) == 2  # same structure, other sizes: replayed


def test_tape_guards_and_arithmetic():
    tape = trace.Tape()
    trace.start(tape)
    try:
        h, n = tape.leaf(4096), tape.leaf(32)
        x = B * S * h * 2 + Poly.const(h * n) - B * (h // n)
        wide = h // n > 64
    finally:
        trace.stop()
    assert wide and x == B * S * 8192 + 4096 * 32 - B * 128
    replay = tape.compile([x.r])
    (packed,) = replay(1024, 8)
    assert Poly._raw(packed, 1, 1) == B * S * 2048 + 1024 * 8 - B * 128
    assert replay(1024, 32) is None  # 1024 // 32 > 64 no longer holds
    assert replay(1024, 0) is None  # 1024 // 0 raises inside: a miss


def test_tape_checks_guards_alone_and_evaluates_at_a_point():
    """Replay.check runs what the guards and the divisions need; Replay.point the outputs on plain integers at one
    (batch, length), each polynomial constant replaced by its value there: equal to the packed outputs evaluated."""
    tape = trace.Tape()
    trace.start(tape)
    try:
        h, n, r = tape.leaf(4096), tape.leaf(32), tape.leaf(16)
        q = B * S * h
        same = q == B * S * (n * 128)  # a guard on polynomials (two sizes compared)
        x = q * 2 + Poly.const(h * r) - B * (h // n) + S * S * n
        y = Poly.sum([x, B * r, -(S * 3)])
    finally:
        trace.stop()
    assert same
    replay = tape.compile([x.r, y.r])
    assert len(replay._checks) < len(replay._ops)  # the outputs' arithmetic is not checked
    for leaves in [(4096, 32, 16), (8192, 64, 3), (1280, 10, 1)]:
        assert replay.check(*leaves)
        packed = replay(*leaves)
        for b, s in [(1, 1), (3, 17), (2**20, 2**31)]:
            assert replay.point(leaves, b, s) == tuple(Poly._raw(v, 1, 2)(b, s) for v in packed)
    assert not replay.check(4096, 16, 16)  # q == B*S*(n*128) no longer holds
    assert not replay.check(4096, 0, 16)  # 4096 // 0: a miss, found by the check


def test_a_config_read_wholesale_is_not_recorded():
    """Code that iterates the config could depend on anything in it: such a pass is computed, never replayed."""
    tape = trace.Tape()
    cfg = activations._TracedCfg({"model_type": "llama", "hidden_size": 8}, lambda g, v: tape.leaf(v))
    trace.start(tape)
    try:
        assert cfg["hidden_size"].v == 8 and not tape.opaque
        list(cfg.items())
    finally:
        trace.stop()
    assert tape.opaque


@pytest.mark.parametrize("preset", ["meta-llama/Llama-3.1-8B", "google/gemma-2-9b", "openai-community/gpt2-xl"])
def test_estimates_identical_replayed_or_not(preset):
    """estimate() on a model that shares a recorded structure equals the full pass on it."""
    cfg = pf.ModelSpec.from_any(preset).raw
    key, heads = ("hidden_size", "num_attention_heads") if "hidden_size" in cfg else ("n_embd", "n_head")
    clear()
    for k in (1, 2):  # computed, then recorded
        pf.estimate(dict(cfg, vocab_size=cfg["vocab_size"] + k), {"name": "lora", "r": 16}, {"batch_size": 2, "seq_len": 512})
    assert len(activations._STRUCTURES) == 1
    other = dict(cfg, vocab_size=cfg["vocab_size"] + 8, **{key: cfg[key] + 8 * cfg[heads]})
    est = pf.estimate(other, {"name": "lora", "r": 8}, {"batch_size": 2, "seq_len": 512}).training
    spec = api.load_model(other)
    direct = activations.activation_model(spec, pf.load_method({"name": "lora", "r": 8}), pf.TrainingSpec(batch_size=2, seq_len=512))
    assert est["activations_bytes"] == direct.activations(2, 512)
    live = direct.live_at(2, 512)
    assert {k: v for k, v in est["peak_candidates"].items() if k in live} == live


def test_layers_to_transform_one_index_is_structure_not_a_size():
    """layers_to_transform=1 is an index: a later config of the structure (recorded, then replayed) is estimated as
    the full pass estimates it, and another index is another structure. (It was a leaf of the tape like r: the
    recording failed with a TypeError from deep inside, 'Sym' object is not iterable.)"""
    cfg = TINY["llama"]
    train = {"batch_size": 2, "seq_len": 9}
    clear()
    got = []
    for k in range(4):  # computed, recorded, replayed twice
        for layer in (0, 1):
            model = dict(cfg, intermediate_size=cfg["intermediate_size"] + 8 * k)
            est = pf.estimate(model, {"name": "lora", "r": 4, "layers_to_transform": layer}, train).training
            spec, meth = api.load_model(model), pf.load_method({"name": "lora", "r": 4, "layers_to_transform": layer})
            direct = activations.activation_model(spec, meth, pf.TrainingSpec(**train))
            assert est["activations_bytes"] == direct.activations(2, 9)
            assert est["peak_candidates"]["end of forward"] == direct.activations(2, 9)
            got.append(est["activations_bytes"])
    assert len(activations._STRUCTURES) == 2 and got[0] != got[1]  # one structure per index


def _clear_everything() -> None:
    for cache in (activations._STRUCTURES, activations._SEEN, api._ACTS, api._TABLES, api._OPTIM, compute._WALKS,
                  compute._WALKED, compute._COEFFS, compute._TERMS, tables._RECORDINGS, tables._SEEN):
        cache.clear()


def test_on_off_options_share_a_structure():
    """lora_dropout's value and the number of accumulation steps are read only as on or off: configs that differ
    in them share one recording (and one activation model), and estimate exactly what each computed alone does."""
    cfg = TINY["qwen2"]
    runs = [({"name": "lora", "r": 4, "lora_dropout": p_}, {"batch_size": 2, "seq_len": 9, "gradient_accumulation_steps": n})
            for p_ in (0.05, 0.1, 0.3) for n in (2, 3, 8)]
    alone = []
    for method, train in runs:
        _clear_everything()
        alone.append(pf.estimate(dict(cfg, intermediate_size=cfg["intermediate_size"] + 8), method, train).to_dict())
    _clear_everything()
    for k in range(3):  # computed, recorded, replayed: a structure of its own
        pf.estimate(dict(cfg, intermediate_size=cfg["intermediate_size"] + 16 * k), runs[k][0], runs[k][1])
    assert len(activations._STRUCTURES) == 1
    shared = [pf.estimate(dict(cfg, intermediate_size=cfg["intermediate_size"] + 8), m, t).to_dict() for m, t in runs]
    assert shared == alone
    assert len(activations._STRUCTURES) == 1  # every config replayed the one recording
    assert alone[0]["training"]["peak_bytes"] != pf.estimate(dict(cfg, intermediate_size=cfg["intermediate_size"] + 8), {"name": "lora", "r": 4},
                                                             {"batch_size": 2, "seq_len": 9}).training["peak_bytes"]


_LORA_UNREAD = [{"lora_alpha": 16}, {"lora_alpha": 3.5}, {"alpha_pattern": {"q_proj": 64, "down_proj": 2.5}}, {"use_rslora": True},
                {"init_lora_weights": False}, {"init_lora_weights": "gaussian"}]


@pytest.mark.parametrize("mt,method,unread", [
    ("llama", {"name": "lora", "r": 4}, _LORA_UNREAD),
    ("phi3", {"name": "lora", "r": 3, "target_modules": "all-linear", "use_dora": True}, _LORA_UNREAD),
    ("gpt2", {"name": "lora", "r": 5, "lora_dropout": 0.1, "modules_to_save": ["wpe"]}, _LORA_UNREAD),
    ("opt", {"name": "qlora", "r": 2, "target_modules": "all-linear", "bias": "lora_only"}, _LORA_UNREAD),
    ("qwen3", {"name": "ia3"}, [{"init_ia3_weights": False}] * 3),
    ("gemma", {"name": "prompt_tuning", "num_virtual_tokens": 3},
     [{"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": "Classify:", "tokenizer_name_or_path": "google/gemma-2b"},
      {"prompt_tuning_init": "SAMPLE_VOCAB"}, {"prompt_tuning_init": "RANDOM", "tokenizer_name_or_path": "x"}]),
    ("mistral", {"name": "adapter", "config": "double_seq_bn"}, [{"init_weights": "mam_adapter"}, {"init_weights": "lora"}] * 2)])
def test_fields_no_pass_reads_share_a_structure(mt, method, unread):
    """LoRA's scaling (lora_alpha, alpha_pattern, use_rslora) and how a method's weights are initialised change no
    size: the structure key leaves them out (activations._UNREAD_FIELDS), so sweeping lora_alpha replays one
    recording. This holds only while no pass reads them: each plain pass (activations, the parameter table, the
    FLOP walk) gives the same output whatever their values, and the estimates equal those computed alone."""
    spec = api.load_model(TINY[mt])
    train = pf.TrainingSpec(batch_size=2, seq_len=9)
    outputs = []
    for extra in [{}] + unread:
        meth = pf.load_method({**method, **extra})
        table = meth.build(spec.layout, spec.cfg, "bf16")
        acts = activations._outputs(*activations._build(spec.cfg, spec.layout, spec.layer_types, meth, train, False, False))
        walk = compute._walk(spec, compute._MethodView(spec, meth, table), False, False)
        outputs.append((acts[0], [p_.v for p_ in acts[1]], table.tensors, table.saved, walk))
    assert all(o == outputs[0] for o in outputs[1:])
    alone = []
    for extra in unread:
        _clear_everything()
        alone.append(pf.estimate(TINY[mt], {**method, **extra}, {"batch_size": 2, "seq_len": 9}).to_dict())
    _clear_everything()
    for k, extra in enumerate(([{}] + unread)[:3]):  # computed, recorded, replayed: one structure
        pf.estimate(dict(TINY[mt], vocab_size=TINY[mt]["vocab_size"] + 8 * k), {**method, **extra}, {"batch_size": 2, "seq_len": 9})
    assert len(activations._STRUCTURES) == 1
    assert [pf.estimate(TINY[mt], {**method, **extra}, {"batch_size": 2, "seq_len": 9}).to_dict() for extra in unread] == alone
    assert len(activations._STRUCTURES) == 1


def _walk_cases() -> list[tuple]:
    return [(mt, mid, method) for mt in TINY for mid, method in {**peft_methods(mt), **ADAPTERS}.items()]


@pytest.mark.parametrize("mt,mid,method", _walk_cases())
def test_flop_walk_replayed_equals_the_plain_walk(mt, mid, method):
    """The FLOP walker is recorded per structure the same way (compute._structured_walk): replays for other
    sizes give the plain walk's coefficients, with LoRA merged or not and checkpointing on or off."""
    rng = random.Random(f"{mt}-{mid}")  # (a str seed: the same draws in every run)
    compared = replayed = 0
    for merged in (False, True):
        for gc in (False, True):
            compute._WALKS.clear()
            compute._WALKED.clear()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for k in range(6):  # computed, recorded, then (mostly) replayed
                    spec, meth = api.load_model(variant(mt, rng)), pf.load_method(method_variant(method, rng))
                    try:
                        table = api._table(spec, meth, "bf16")
                    except pf.PeftFootprintError:
                        break
                    walks = sum(len(v) for v in compute._WALKS.values())
                    got = compute._structured_walk(spec, meth, table, merged, gc)
                    want = compute._walk(spec, compute._MethodView(spec, meth, table), merged, gc)
                    assert got == want, (mt, mid, merged, gc, spec.cfg, meth)
                    compared += 1
                    replayed += k >= 2 and sum(len(v) for v in compute._WALKS.values()) == walks
    assert compared == 0 or replayed >= compared // 3, (replayed, compared)


@pytest.mark.parametrize("mt,mid,method", _walk_cases() + [(mt, mid, m) for mt in TINY for mid, m in _more(mt).items()])
def test_table_replayed_equals_the_build(mt, mid, method):
    """The parameter table is recorded per structure too (tables.build_table): a replay for other sizes gives what
    the method's build gives, tensor for tensor (names, shapes, dtypes, counts, layers; the checkpoint's list and
    the quantization state), with the same totals and notes, in every dtype."""
    rng = random.Random(f"{mt}-{mid}-table")
    compared = replayed = 0
    for dtype in ("bf16", "fp32"):
        tables._RECORDINGS.clear()
        tables._SEEN.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for k in range(6):  # built, recorded, then (mostly) replayed
                spec, meth = api.load_model(variant(mt, rng)), pf.load_method(method_variant(method, rng))
                try:
                    want = meth.build(spec.layout, spec.cfg, dtype)
                except pf.PeftFootprintError:
                    break
                recordings = sum(len(v) for v in tables._RECORDINGS.values())
                got = tables.build_table(spec, meth, dtype)
                assert (got.tensors, got.saved, got.buffers, got.notes) == (want.tensors, want.saved, want.buffers, want.notes), (mt, mid, spec.cfg, meth)
                for total in ("total_params", "trainable_params", "weights_bytes", "buffer_bytes", "trainable", "trainable_bytes",
                              "base_bytes", "adapter_bytes"):
                    assert getattr(got, total) == getattr(want, total), (total, mt, mid, spec.cfg, meth)
                # the checkpoint's size from the plan kept per list of names (storage._planned, made on the first
                # size of the structure) equals the header written out by json.dumps
                assert got.file_bytes(storage.safetensors_file_bytes) == storage._written_out(got.saved, None, storage._peft_key)
                compared += 1
                replayed += k >= 2 and sum(len(v) for v in tables._RECORDINGS.values()) == recordings
    assert compared == 0 or replayed >= compared // 3, (replayed, compared)


def test_table_replay_warns_as_the_build_does():
    """A target name that matches nothing is warned about on every config, built, recorded or replayed."""
    cfg = TINY["llama"]
    tables._RECORDINGS.clear()
    tables._SEEN.clear()
    for k in range(4):
        spec = api.load_model(dict(cfg, intermediate_size=cfg["intermediate_size"] + 8 * k))
        with pytest.warns(UserWarning, match="'nothere' matches no module of llama"):
            tables.build_table(spec, pf.load_method({"name": "lora", "r": 4, "target_modules": ["q_proj", "nothere"]}), "bf16")
    assert sum(len(v) for v in tables._RECORDINGS.values()) == 1


B1_OPTIONS = [{"attn_implementation": "sdpa", "dtype": "bf16", "gradient_checkpointing": False},
              {"attn_implementation": "flash_attention_2", "dtype": "fp32", "mixed_precision": "bf16", "gradient_checkpointing": True},
              {"attn_implementation": "sdpa", "dtype": "fp32", "padding_mask": True, "gradient_checkpointing": True}]


@pytest.mark.parametrize("model_type", list(TINY))
def test_batch_one_model_derived_equals_its_own_pass(model_type):
    """Batch 1 without eager attention: the model of batch sizes above 1 plus the longer labels the loss keeps
    (ActivationModel.with_batch_one_labels, what estimate() and sweep() use) equals a full batch-1 pass at batch
    1: activations, every term, and every phase's largest moment."""
    rng = random.Random(model_type)
    checked = 0
    for mid, method in peft_methods(model_type).items():
        for options in B1_OPTIONS:
            if "prefix" in mid and options["gradient_checkpointing"]:
                continue
            cfg = variant(model_type, rng)
            s = rng.choice([7, 11, 29, 40])
            train = pf.TrainingSpec(batch_size=1, seq_len=s, **options)
            spec, meth = api.load_model(cfg), api.load_method(method)
            try:
                api._check(spec, meth, train, pf.InferenceSpec(), False)
            except pf.PeftFootprintError:
                continue
            sliding = api._sliding_active(spec, meth, s)
            full = activations.activation_model(spec, meth, train, sliding, True)
            derived = activations.activation_model(spec, meth, train, sliding, False).with_batch_one_labels(meth.virtual_tokens())
            assert derived.activations(1, s) == full.activations(1, s)
            assert {k: p(1, s) for k, p in derived.terms.items()} == {k: p(1, s) for k, p in full.terms.items()}
            assert derived.live_at(1, s) == full.live_at(1, s)
            assert derived.activations(1, s) != activations.activation_model(spec, meth, train, sliding, False).activations(1, s)
            checked += 1
    assert checked >= 20

"""Recordings kept on disk (cache.py): a later process that reads them estimates exactly what the full pass does,
for every architecture and method; what is not a recording of this code is never used; the cache never makes an
estimate fail."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import pytest

import peft_footprint as pf
from peft_footprint import activations, cache, model, presets, tables
from tests.cases import TINY, peft_methods
from tests.test_replay import ADAPTERS, OPTIONS, _clear_everything, method_variant, variant


@pytest.fixture
def disk(tmp_path):
    """The disk cache on, in a directory of its own; off again after (conftest turns it off for the suite)."""
    _clear_everything()
    cache.configure(tmp_path / "cache")
    yield tmp_path / "cache"
    cache.configure(False)
    _clear_everything()


def _estimate(cfg: dict, method: dict, options: dict) -> dict | None:
    training = {"batch_size": 3, "seq_len": 21, **options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pf.estimate(cfg, method, training).to_dict()
        except pf.PeftFootprintError:
            return None


def _cases() -> list[tuple]:
    out = []
    for mt in TINY:
        for mid, method in {**peft_methods(mt), **ADAPTERS}.items():
            for options in OPTIONS[:2]:
                out.append((mt, mid, method, options, len(out)))
    return out


def test_a_later_process_reads_the_recordings_and_estimates_the_same(disk, monkeypatch):
    """Each case: a structure computed (and marked) at one config, then recorded (and written) by a second
    process (the memory cleared), then, the memory cleared again, another
    config of the structure (other vocabulary, feed-forward and rank sizes) estimated from what is on disk -- equal to that config's estimate with no cache at
    all, every field. Most of them must be answered without recording anything again."""
    recorded = []
    for name, mod in (("_record_pass", activations), ("_record", tables)):
        original = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _o=original, _n=name: recorded.append(_n) or _o(*a))
    compared = from_disk = 0
    for mt, mid, method, options, seed in _cases():
        rng = random.Random(seed)
        cfg_a = variant(mt, rng)
        cfg_b = {**cfg_a, "vocab_size": cfg_a["vocab_size"] + rng.randrange(1, 90)}  # (the same head layout)
        for k in ("intermediate_size", "ffn_dim"):
            if k in cfg_b:
                cfg_b[k] = rng.randrange(16, 300)
        meth_a, meth_b = method_variant(method, rng), method_variant(method, rng)
        cache.configure(False)
        _clear_everything()
        want = _estimate(cfg_b, meth_b, options)
        if want is None:
            continue
        cache.configure(disk)
        _clear_everything()
        _estimate(cfg_a, meth_a, options)  # computed, and marked on disk
        _clear_everything()  # (a new process: nothing in memory)
        _estimate(cfg_a, meth_a, options)  # the mark found: recorded, and written
        _clear_everything()
        before = len(recorded)
        got = _estimate(cfg_b, meth_b, options)
        assert got == want, (mt, mid, options, cfg_b, meth_b)
        compared += 1
        from_disk += len(recorded) == before
    assert compared > 150
    assert from_disk > 0.8 * compared, (from_disk, compared)
    assert {p.name for p in disk.glob("*/*")} == {"activations", "flops", "tables"}


def test_a_fresh_process_reads_what_another_wrote(tmp_path):
    """Real processes: no cache; one that computes and marks; one that records and writes; one that reads (it
    is forbidden to record): the same estimates."""
    script = (
        "import json, sys, warnings; warnings.simplefilter('ignore'); import peft_footprint as pf\n"
        "import os; from peft_footprint import activations, tables\n"
        "if os.environ.get('FORBID'): activations._record_pass = tables._record = None  # (recording would fail)\n"
        "calls = [('meta-llama/Llama-3.1-8B', {'name': 'lora', 'r': 16}, {'gradient_checkpointing': True}),\n"
        "         ('google/gemma-2-9b', 'ia3', {'attn_implementation': 'eager'}),\n"
        "         ('openai-community/gpt2', {'name': 'adapter', 'config': 'seq_bn'}, {'dtype': 'fp32'}),\n"
        "         ('Qwen/Qwen3-8B', {'name': 'qlora', 'r': 8, 'target_modules': 'all-linear'}, {'batch_size': 1}),\n"
        "         ('facebook/opt-1.3b', {'name': 'prefix_tuning', 'num_virtual_tokens': 12}, {})]\n"
        "out = [pf.estimate(m, meth, {'seq_len': 777, **t}, hardware='H100').to_dict() for m, meth, t in calls]\n"
        "print(json.dumps(out))\n"
    )

    def run(where: str, forbid: str = "") -> list:
        env = {**os.environ, "PEFT_FOOTPRINT_CACHE": where, "FORBID": forbid}
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    plain = run("off")
    assert run(str(tmp_path)) == plain  # computed, marked
    with pytest.raises(AssertionError, match="NoneType"):
        run(str(tmp_path), forbid="1")  # marked: this one records (the check can fail)
    assert run(str(tmp_path)) == plain  # recorded, written
    assert run(str(tmp_path), forbid="1") == plain  # read from disk: nothing recorded
    assert len(list(tmp_path.glob("*/activations/*.pkl"))) == 5
    assert len(list(tmp_path.glob("*/data/*.pkl"))) == 2  # the model and hardware presets, parsed once


def test_the_presets_are_parsed_once_per_machine(disk, monkeypatch):
    model._presets.cache_clear()
    first = model._presets()
    model._presets.cache_clear()
    monkeypatch.setattr(presets, "parse", lambda name: pytest.fail(f"{name} was parsed again"))
    assert model._presets() == first and len(first) == len(pf.list_models()) > 30
    model._presets.cache_clear()


def _written(disk: Path) -> list[Path]:
    for _ in range(2):  # computed and marked, then recorded and written
        _clear_everything()
        _estimate(TINY["llama"], {"name": "lora", "r": 4}, {})
    files = sorted(disk.glob("*/*/*.pkl"))
    assert files
    return files


def test_a_damaged_or_foreign_file_is_a_miss(disk):
    """Truncated files, garbage, and a pickle that would run a command: each is read as a miss (the command never
    runs), and the estimate is the one computed without the cache."""
    want = _estimate(TINY["llama"], {"name": "lora", "r": 4}, {})
    files = _written(disk)
    marker = disk / "ran"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    for how in ("truncated", "garbage", "evil", "other key"):
        for f in files:
            if how == "truncated":
                f.write_bytes(f.read_bytes()[:100])
            elif how == "garbage":
                f.write_bytes(b"\x80\x05not a pickle")
            elif how == "evil":  # (compressed as the cache writes its files: it reaches the reader)
                f.write_bytes(zlib.compress(pickle.dumps(("key", [Evil()]))))
            else:
                f.write_bytes(zlib.compress(pickle.dumps(("('another', 'key')", [1]))))
        _clear_everything()
        assert _estimate(TINY["llama"], {"name": "lora", "r": 4}, {}) == want, how
        assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="posix.system is not part of a recording"):
        cache._Reader(io.BytesIO(pickle.dumps(Evil()))).load()


def test_other_code_uses_another_directory(tmp_path, monkeypatch):
    """A recording belongs to the code that made it: a changed source file (size or mtime) or another version
    names another directory."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.yaml").write_text("a: 1\n")
    (pkg / "notes.txt").write_text("not code\n")
    monkeypatch.setattr(cache, "__file__", str(pkg / "cache.py"))
    base = cache._code_digest()
    assert cache._code_digest() == base
    (pkg / "notes.txt").write_text("still not code, longer\n")
    assert cache._code_digest() == base
    st = os.stat(pkg / "a.py")
    os.utime(pkg / "a.py", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    touched = cache._code_digest()
    assert touched != base
    (pkg / "sub" / "b.yaml").write_text("a: 12\n")
    assert cache._code_digest() not in (base, touched)
    monkeypatch.setattr(pf, "__version__", "9.9.9")
    assert cache._code_digest() not in (base, touched)


def test_old_version_directories_are_pruned(tmp_path):
    for k in range(6):
        d = tmp_path / f"v1-old{k}"
        d.mkdir()
        os.utime(d, (1_000_000 + k, 1_000_000 + k))
    (tmp_path / "unrelated").mkdir()
    here = cache.configure(tmp_path)
    try:
        kept = sorted(p.name for p in tmp_path.iterdir())
        assert kept == sorted([here.name, "v1-old5", "v1-old4", "v1-old3", "unrelated"])
        cache.clear()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["unrelated"]
    finally:
        cache.configure(False)


def test_a_directory_that_cannot_be_made_turns_the_cache_off(tmp_path):
    (tmp_path / "file").write_text("a file where the cache would go")
    try:
        assert cache.configure(tmp_path / "file" / "cache") is None
        _clear_everything()
        assert _estimate(TINY["llama"], {"name": "lora", "r": 4}, {})["training"]["peak_bytes"] > 0
    finally:
        cache.configure(False)


@pytest.mark.parametrize("env, want", [({"PEFT_FOOTPRINT_CACHE": "off"}, None), ({"PEFT_FOOTPRINT_CACHE": "0"}, None),
                                       ({"PEFT_FOOTPRINT_CACHE": "~/pfc"}, "HOME/pfc"),
                                       ({"XDG_CACHE_HOME": "XDG"}, "XDG/peft-footprint"),
                                       ({}, "HOME/.cache/peft-footprint")])
def test_where_the_cache_is(env, want, monkeypatch, tmp_path):
    monkeypatch.delenv("PEFT_FOOTPRINT_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for k, v in env.items():
        monkeypatch.setenv(k, v.replace("XDG", str(tmp_path / "xdg")))
    try:
        got = cache.configure(None)
        if want is None:
            assert got is None
        else:
            want = want.replace("HOME", str(tmp_path / "home")).replace("XDG", str(tmp_path / "xdg"))
            assert got is not None and got.parent == Path(want) and got.name.startswith(f"v{cache.FORMAT}-")
    finally:
        cache.configure(False)


def test_a_full_kind_writes_nothing_more(disk, monkeypatch):
    monkeypatch.setattr(cache, "_MAX_FILES", 1)
    _estimate(TINY["llama"], {"name": "lora", "r": 4}, {})
    _estimate(TINY["llama"], {"name": "ia3"}, {})
    assert len(list(disk.glob("*/activations/*.pkl"))) == 1
    assert len(list(disk.glob("*/tables/*.pkl"))) == 1


def test_the_compact_replay_pickle_round_trips():
    """Replay's own pickling (four columns of integers, checks and outputs by position) gives a replay that runs
    the same instructions: the same outputs, guards and points as the one in memory."""
    cache.configure(False)
    _clear_everything()
    spec, meth = pf.ModelSpec.from_any(TINY["qwen2"]), pf.load_method({"name": "lora", "r": 4})
    train = pf.TrainingSpec(batch_size=2, seq_len=9)
    raw, rec = activations._record_pass(spec, meth, train, False, False)
    again = pickle.loads(pickle.dumps(rec.replay))
    leaves = rec.leaves(spec.cfg, spec.layout, meth)
    assert again(*leaves) == rec.replay(*leaves) is not None
    for _ in range(3):  # read from the columns first, from the tuples made of them after
        assert again.check(*leaves) and again.point(leaves, 3, 77) == rec.replay.point(leaves, 3, 77)
    assert again._outputs.rows and len(again._outputs.rows) == len(rec.replay._outputs)
    twice = pickle.loads(pickle.dumps(again))  # (a recording read from disk is written again with a new one)
    assert twice(*leaves) == rec.replay(*leaves)
    bad = list(leaves)
    bad[0] += 1  # the layer count: a guard
    assert again(*bad) is None and rec.replay(*bad) is None


def test_the_cache_command(disk, capsys):
    from peft_footprint.cli import main

    _written(disk)
    assert main(["cache", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["directory"] == str(cache.directory()) and info["files"] == len(list(disk.glob("*/*/*.pkl"))) == 3
    assert info["bytes"] == sum(p.stat().st_size for p in disk.glob("*/*/*.pkl")) > 3_000
    assert main(["cache"]) == 0 and f"{info['files']} files, " in capsys.readouterr().out
    assert main(["cache", "--clear", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == 0 and not list(disk.glob("*/*/*.pkl"))
    cache.configure(False)
    assert main(["cache"]) == 0 and "off" in capsys.readouterr().out


def test_the_warnings_a_build_gave_are_given_again_from_disk(disk):
    """A parameter table's recording keeps the warnings its build gave (a target name that matches nothing);
    read from disk, it gives them again, as the uncached build does."""
    method = {"name": "lora", "r": 4, "target_modules": ["q_proj", "nothing_here"]}

    def said() -> list:
        _clear_everything()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pf.estimate(TINY["llama"], method, {"batch_size": 2, "seq_len": 9})
        return sorted({(type(w.message).__name__, str(w.message)) for w in caught})

    cache.configure(False)
    want = said()
    assert want and "nothing_here" in want[0][1]
    cache.configure(disk)
    assert said() == want  # computed, marked
    assert said() == want  # recorded, written
    original, tables._record = tables._record, None  # (recording again would fail: what follows is read from disk)
    try:
        assert said() == want
    finally:
        tables._record = original


def test_first_marks_second_records_third_reads(disk, monkeypatch):
    """On a machine, as in a process: a structure's first call runs the plain pass and leaves a mark (an empty
    file), the second records and writes, the third reads -- whichever processes they come in."""
    files = {}

    def stored() -> list:
        return [(p.stat().st_size, cache.load(kind, key)) for (kind, key), p in sorted(files.items(), key=str)]

    original_load = cache.load

    def loading(kind, key):
        files[(kind, key)] = Path(cache._file(kind, key)[0])
        return original_load(kind, key)

    monkeypatch.setattr(cache, "load", loading)
    plain = []
    monkeypatch.setattr(activations, "activation_model", lambda *a, _o=activations.activation_model: plain.append(1) or _o(*a))
    want = _estimate(TINY["gemma2"], {"name": "lora", "r": 4}, {})
    assert plain and len(files) >= 3 and all(size == 0 and got == [] for size, got in stored())
    _clear_everything()
    assert _estimate(TINY["gemma2"], {"name": "lora", "r": 2}, {}) is not None
    assert all(size > 1000 and len(got) == 1 and isinstance(got[0], activations._Recording) for size, got in stored())
    _clear_everything()
    n, before = len(plain), stored()
    original, activations._record_pass = activations._record_pass, None
    try:
        assert _estimate(TINY["gemma2"], {"name": "lora", "r": 4}, {}) == want
    finally:
        activations._record_pass = original
    assert len(plain) == n and [size for size, _ in stored()] == [size for size, _ in before]

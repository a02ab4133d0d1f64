"""Fuzzing estimate() and the CLI with random dicts, strings and numbers (hypothesis).

Bad input may only raise the library's documented errors: subclasses of ValueError (PeftFootprintError, or
pydantic's ValidationError). Never a TypeError/KeyError/AttributeError/ZeroDivisionError/IndexError/
RecursionError/OverflowError from inside. The CLI returns 0 or 2 (bad input, with a message on stderr), never a
traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import peft_footprint as pf
from peft_footprint import cli
from tests.cases import TINY

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- random values ---------------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(-3, 300),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.5, 1e-300, 5e-324, 1e308, float("nan"), float("inf"), True, False]),
)
words = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "all-linear", "q_proj", "v_proj", "lm_head", "([", ".*", "bf16", "fp32", "adamw", "LORA", "none",
                     "all", "MLP", "LSTM", "seq_bn", "sdpa", "eager", "full_attention", "~x/config.json", "a" * 300]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, words)
values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(words, kids, max_size=4),
                                                       st.frozensets(st.one_of(st.integers(0, 5), words), max_size=3)),
                      max_leaves=10)

ALL_MODEL_FIELDS = sorted({k for cls in (pf.ARCHITECTURES.get(n) for n in pf.ARCHITECTURES.names()) for k in (*cls.defaults, *cls.aliases)}
                          | {"layer_types", "num_key_value_heads", "head_dim"})
ALL_METHOD_FIELDS = sorted({k for n in pf.METHODS.names() for k in pf.METHODS.get(n).model_fields})
TRAINING_FIELDS = sorted(pf.TrainingSpec.model_fields)
INFERENCE_FIELDS = sorted(pf.InferenceSpec.model_fields)
SIZE_FIELDS = ("num_hidden_layers", "n_layer")  # kept small: time grows linearly with the layer count


def _small_layers(d: dict) -> dict:
    for k in SIZE_FIELDS:
        if isinstance(d.get(k), (int, float)) and not isinstance(d.get(k), bool) and (math.isnan(d[k]) or abs(d[k]) > 64):
            d[k] = 3
    return d


@st.composite
def models(draw):
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "random_dict", "string", "value"]))
    if kind == "mutated":  # a valid tiny config with a few fields replaced, added or removed
        cfg = dict(TINY[draw(st.sampled_from(sorted(TINY)))])
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.sampled_from(ALL_MODEL_FIELDS + ["model_type", "hidden_size", "num_attention_heads"]))
            if draw(st.integers(0, 5)) == 0:
                cfg.pop(key, None)
            else:
                cfg[key] = draw(values)
        return _small_layers(cfg)
    if kind == "random_dict":
        return _small_layers(draw(st.dictionaries(st.one_of(words, st.sampled_from(ALL_MODEL_FIELDS)), values, max_size=6)))
    if kind == "string":
        return draw(st.one_of(words, st.sampled_from(pf.list_models())))
    return draw(values)


@st.composite
def methods(draw):
    kind = draw(st.sampled_from(["dict", "dict", "dict", "peft", "string", "value"]))
    if kind in ("dict", "peft"):
        name = draw(st.one_of(st.sampled_from(pf.METHODS.names()), words, values))
        d = {"name": name} if kind == "dict" else {"peft_type": draw(st.one_of(st.sampled_from(["LORA", "IA3", "PREFIX_TUNING", "P_TUNING", "PROMPT_TUNING"]), values))}
        for _ in range(draw(st.integers(0, 4))):
            d[draw(st.one_of(st.sampled_from(ALL_METHOD_FIELDS), words))] = draw(values)
        return d
    if kind == "string":
        return draw(st.one_of(st.sampled_from(pf.METHODS.names()), words))
    return draw(values)


def _spec_dicts(fields):
    return st.one_of(st.none(), values, st.dictionaries(st.one_of(st.sampled_from(fields), words), values, max_size=4))


def _bounded(d):
    """Keep shapes small enough that a valid example runs in milliseconds (the point is the error path)."""
    if isinstance(d, dict):
        for k in ("batch_size", "seq_len", "prompt_len", "new_tokens"):
            v = d.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v) and abs(v) > 10**6:
                d[k] = 7
    return d


def _check_estimate(model, method, training=None, inference=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est = pf.estimate(model, method, training, inference)
        except ValueError as exc:  # PeftFootprintError or pydantic's ValidationError
            assert str(exc), "an error must say what was wrong"
            return None
    d = est.to_dict()
    assert json.loads(json.dumps(d)) == d
    str(est)  # the text view renders
    return d


# ---- estimate() ------------------------------------------------------------------------------------


@SETTINGS
@given(model=models(), method=st.one_of(st.just("lora"), st.just("full"), methods()))
def test_fuzz_model_argument(model, method):
    _check_estimate(model, method)


@SETTINGS
@given(model=st.sampled_from(sorted(TINY)), method=methods())
def test_fuzz_method_argument(model, method):
    _check_estimate(TINY[model], method)


@SETTINGS
@given(model=st.sampled_from(sorted(TINY)), method=st.sampled_from(["lora", "full", "prefix_tuning", "qlora", "ia3", "adapter"]),
       training=_spec_dicts(TRAINING_FIELDS), inference=_spec_dicts(INFERENCE_FIELDS))
def test_fuzz_training_and_inference_arguments(model, method, training, inference):
    if model == "phi3" and method == "ia3":
        method = "full"
    _check_estimate(TINY[model], method, _bounded(training), _bounded(inference))


@SETTINGS
@given(model=models(), method=methods(), training=_spec_dicts(TRAINING_FIELDS), inference=_spec_dicts(INFERENCE_FIELDS))
def test_fuzz_everything_at_once(model, method, training, inference):
    _check_estimate(model, method, _bounded(training), _bounded(inference))


def test_fuzz_catches_what_it_should():
    """The harness above must be able to fail: an internal TypeError is not swallowed by _check_estimate."""
    import pytest

    class Boom:
        peft_type = "LORA"

        def to_dict(self):
            raise TypeError("inside")

    with pytest.raises(TypeError):
        _check_estimate(TINY["llama"], Boom())


# ---- the CLI ---------------------------------------------------------------------------------------

arg_words = st.one_of(
    words.filter(lambda w: "\x00" not in w),
    st.sampled_from(["--json", "--method", "--method-arg", "-m", "--dtype", "--optimizer", "--batch-size", "--seq-len",
                     "--gradient-checkpointing", "r=16", "r=[1", "r=-1", "target_modules=[q_proj,zz]", "=5", "lora_alpha=x",
                     "r: 3", "r=!!python/object:os.system", "bias=all", "r=1e400", "num_virtual_tokens=0", "0", "-5", "1e9"]),
)


@st.composite
def argvs(draw):
    head = draw(st.sampled_from([["estimate"], ["estimate", "meta-llama/Llama-3.2-1B"], ["estimate", "gpt2-nonexistent"],
                                 ["list-models"], ["list-methods"], ["list-architectures"], ["list-optimizers"], []]))
    return head + draw(st.lists(arg_words, max_size=6))


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse's usage errors exit 2 (and --help exits 0)
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@SETTINGS
@given(argv=argvs())
def test_fuzz_cli(argv):
    code, out, err = run_cli(argv)
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.strip(), "bad input must say why on stderr"
        assert "Traceback" not in err
    if code == 0 and "--json" in argv and "--help" not in argv and "-h" not in argv and out.strip():
        json.loads(out)


def test_cli_bad_method_arg_is_a_clean_error():
    for bad in (["-m", "r=[1"], ["-m", "r=-1"], ["-m", "nokey"], ["-m", "lora_alpa=3"], ["--method", "lroa"], ["--dtype", "bf61"]):
        code, out, err = run_cli(["estimate", "meta-llama/Llama-3.2-1B", *bad])
        assert code == 2 and err.startswith("error:"), (bad, code, err)

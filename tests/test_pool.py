"""Pooling: adaptive average/max pooling, max-pool dilation, avg-pool divisor_override and TF "same"."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archcalc import kernels
from archcalc.errors import ArchcalcError
from archcalc.ops import get_op
from archcalc.ops.adaptive_pool import axis_window, largest_window, window_lengths_sum
from archcalc.passes import analyze, infer_shapes
from archcalc.spec import from_dict

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _windows(size, out):
    """PyTorch's adaptive windows, written out from its formula (ATen's start_index / end_index)."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


# ------------------------------------------------------------------------- adaptive: closed forms


@pytest.mark.parametrize("size", range(1, 40))
def test_window_sums_and_largest_window_match_the_windows(size):
    for out in range(1, 45):
        lengths = [end - start for start, end in _windows(size, out)]
        assert window_lengths_sum(size, out) == sum(lengths)
        assert largest_window(size, out) == max(lengths)


@pytest.mark.parametrize("size", range(1, 40))
def test_axis_window_field_contains_every_window(size):
    """Unit i's field [i*s - p, i*s - p + k - 1] holds its window; uniform ones are that window exactly,
    and the kernel is the largest window or one more (only when no smaller kernel would do)."""
    for out in range(1, 45):
        windows = _windows(size, out)
        kernel, stride, padding, uniform = axis_window(size, out)
        longest = max(end - start for start, end in windows)
        assert kernel in (longest, longest + 1)
        reach = []
        for i, (start, end) in enumerate(windows):
            low = i * stride - padding
            assert low <= start and low + kernel - 1 >= end - 1, (size, out, i)
            reach.append(end - low)
            if uniform:
                assert (low, low + kernel) == (start, end), (size, out, i)
        assert kernel == math.ceil(max(reach)), (size, out)  # the smallest that contains them all
        assert uniform == (len({e - s for s, e in windows}) == 1 and all(s == i * stride for i, (s, _) in enumerate(windows)))


def test_alexnet_13_to_6_is_the_ordinary_k3_s2_window():
    assert axis_window(13, 6) == (3, 2, 0, True)
    assert axis_window(14, 7) == (2, 2, 0, True)
    assert axis_window(1, 7) == (1, 0, 0, True)  # every output sees the one input
    assert axis_window(6, 4) == (3, 1.5, 0.5, False)  # [0,2) [1,3) [3,5) [4,6): no width-2 grid holds them


# ------------------------------------------------------------------------- adaptive: fields measured by torch


def _unit_fields(graph, name):
    """For every output unit, the input interval per axis its value depends on (torch's gradient)."""
    from tests.torch_oracle import TorchNet

    net = TorchNet(graph, avg_for_max=True).double()
    x = torch.rand((1, *graph.input_shape), dtype=torch.float64, requires_grad=True)
    out = net(x)[name]
    fields = {}
    for unit in np.ndindex(*out.shape[2:]):
        (grad,) = torch.autograd.grad(out[(0, 0, *unit)], x, retain_graph=True)
        nonzero = grad[0, 0].nonzero()
        fields[unit] = [(int(nonzero[:, a].min()), int(nonzero[:, a].max())) for a in range(nonzero.shape[1])]
    return fields


@pytest.mark.parametrize("op_type", ["adaptive_avgpool", "adaptive_maxpool"])
@pytest.mark.parametrize("index", range(len(get_op("adaptive_avgpool").examples)))
def test_every_units_measured_field_lies_in_the_analytic_one(op_type, index):
    example = get_op(op_type).examples[index]
    graph = from_dict({"name": "t", "input": list(example.inputs[0]), "layers": [{"type": op_type, **example.attrs}]})
    name = graph.nodes[-1].name
    field = analyze(graph).layer(name).receptive_field
    for unit, measured in _unit_fields(graph, name).items():
        for axis, (first, last) in enumerate(measured):
            if field.is_global:  # 1 -> 7: every output reads the one input value, the whole input
                assert (first, last) == (0, graph.input_shape[1 + axis] - 1)
                continue
            low = unit[axis] * field.stride[axis] - field.padding[axis]
            high = low + field.size[axis] - 1
            assert low <= first and last <= high, (unit, axis, measured, field)
            if field.uniform:  # exactly the whole pixels within [low, high] (rational after 4 -> 8), clipped
                size = graph.input_shape[1 + axis]
                assert (first, last) == (max(math.ceil(low), 0), min(math.floor(high), size - 1))


def test_non_uniform_fields_are_flagged_in_the_table_and_json():
    graph = from_dict({"name": "t", "input": [2, 5, 13], "layers": [{"type": "adaptive_avgpool", "output_size": [3, 6]}]})
    field = analyze(graph).layer(graph.nodes[-1].name).receptive_field
    # 5 -> 3: windows 2, 3, 2 (kernel 3); 13 -> 6: k3; ^: the windows follow from the input size
    assert not field.uniform and field.text() == "3x3 ~ ^"
    assert json.loads(json.dumps(field.to_dict()))["uniform"] is False


# ------------------------------------------------------------------------- adaptive: costs, shapes, errors


def test_other_ops_count_the_actual_windows():
    """Counted by hand over the windows: every value read is an add or the divide (avg); max compares
    window - 1 times."""
    layer = infer_shapes(from_dict({"name": "t", "input": [3, 5, 13], "layers": [
        {"type": "adaptive_avgpool", "name": "p", "output_size": [3, 6]}]}))["p"]
    reads = sum((e1 - s1) * (e2 - s2) for s1, e1 in _windows(5, 3) for s2, e2 in _windows(13, 6))
    assert reads == (2 + 3 + 2) * 18
    assert get_op("adaptive_avgpool").cost(layer).other_ops == 3 * reads
    assert get_op("adaptive_maxpool").cost(layer).other_ops == 3 * (reads - 18)


def test_vgg16_on_cifar_needs_the_adaptive_pool():
    """torchvision's vgg16 on 3x32x32: its AdaptiveAvgPool2d(7) replicates the 1x1 map, so the
    classifier keeps its 25088 inputs: 138,357,544 params (the issue's figure, torchvision's total)."""
    spec = json.loads((Path(__file__).parent.parent / "specs" / "vgg16.json").read_text())
    layers = spec["layers"]
    flatten = next(i for i, layer in enumerate(layers) if layer["type"] == "flatten")
    layers.insert(flatten, {"type": "adaptive_avgpool", "name": "avgpool", "output_size": 7})
    report = analyze(from_dict({**spec, "input": [3, 32, 32], "layers": layers}))
    assert report.layer("avgpool").output_shape == (512, 7, 7)
    assert report.totals.params == 138_357_544
    assert report.totals.macs == 436_830_208


def test_output_size_forms_and_errors():
    shape = infer_shapes(from_dict({"name": "t", "input": [2, 4, 5, 6], "layers": [
        {"type": "adaptive_maxpool", "name": "p", "output_size": [None, 2, None]}]}))["p"].out_shape
    assert shape == (2, 4, 2, 6)
    bad = [
        ({"output_size": 0}, (2, 4, 4), "output_size must be a positive int <= 2147483647 (2**31 - 1), or a list of 1 to 3"
                                         " of them where null keeps that axis, got 0"),
        ({"output_size": [2, True]}, (2, 4, 4), "got [2, true]"),
        ({"output_size": [2, 2]}, (2, 4), "adaptive_avgpool expects input (C, H, W), got (2, 4)"),
        ({"output_size": 2}, (8,), "adaptive_avgpool expects input (C, spatial) with 1 to 3 spatial axes, got (8,)"),
        ({"output_size": 2**31}, (2, 4), "<= 2147483647 (2**31 - 1)"),
    ]
    for attrs, shape, message in bad:
        with pytest.raises(ArchcalcError) as error:
            infer_shapes(from_dict({"name": "t", "input": list(shape), "layers": [{"type": "adaptive_avgpool", **attrs}]}))
        assert message in str(error.value), str(error.value)


# ------------------------------------------------------------------------- adaptive: kernels against torch

_ADAPTIVE_CASES = [((13,), (6,)), ((1,), (7,)), ((10,), (4,)), ((3,), (11,)), ((13, 13), (6, 6)), ((1, 1), (7, 7)),
                   ((5, 9), (3, 4)), ((6, 3), (4, 5)), ((5, 4, 3), (2, 3, 2)), ((7, 2, 9), (3, 5, 4)),
                   ((40,), (3,)), ((30, 5), (2, 5)), ((3, 25), (7, 1)), ((20, 3, 12), (1, 2, 1))]  # windows > _TAP_LOOP


@pytest.mark.parametrize(("size", "out"), _ADAPTIVE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_kernels_match_torch(size, out, dtype):
    rng = np.random.default_rng(sum(size) + len(out))
    x = rng.standard_normal((2, 3, *size)).astype(dtype)
    x.reshape(-1)[:: 5] = np.round(x.reshape(-1)[:: 5])  # some ties
    dy = rng.standard_normal((2, 3, *out)).astype(dtype)
    rank = len(size)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}
    for pool, ours in (("avg", kernels.adaptive_avgpool_forward), ("max", None)):
        xt = torch.tensor(x, requires_grad=True)
        function = getattr(F, f"adaptive_{pool}_pool{rank}d")
        yt = function(xt, out)
        yt.backward(torch.tensor(dy))
        if pool == "avg":
            y = ours(x, out)
            dx = kernels.adaptive_avgpool_backward(dy, x.shape, out)
        else:
            y, argmax = kernels.adaptive_maxpool_forward_argmax(x, out)
            _, indices = function(torch.tensor(x), out, return_indices=True)
            np.testing.assert_array_equal(argmax, indices.numpy())  # the same arg-max, ties included
            dx = kernels.adaptive_maxpool_backward(dy, argmax, x.shape)
        assert y.dtype == dx.dtype == dtype
        np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
        np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)


def test_adaptive_maxpool_nan_rule_is_torchs():
    """A NaN always takes over: NaN propagates and the last NaN in row-major order is the arg-max."""
    nan = np.nan
    cases = [np.array([[[1.0, nan, 2, nan, 5, 0, 0]]]), np.array([[[[1.0, nan], [nan, 5]]]]),
             np.array([[[[nan, 1.0], [7, nan]]]]), np.array([[[[nan, 3.0, 3], [3, 4, nan], [1, nan, 2]]]])]
    long = np.zeros((1, 1, 20, 3))  # windows of 20 values: the gathered path
    long[0, 0, [2, 17], [1, 0]] = nan
    cases.append(long)
    x3 = np.zeros((1, 1, 2, 2, 2))
    x3[0, 0, 0, 1, 1] = x3[0, 0, 1, 0, 0] = nan
    for x in [*cases, x3]:
        for out in (1, 2):
            rank = x.ndim - 2
            y, argmax = kernels.adaptive_maxpool_forward_argmax(x, out)
            yt, indices = getattr(F, f"adaptive_max_pool{rank}d")(torch.tensor(x), out, return_indices=True)
            np.testing.assert_array_equal(argmax, indices.numpy())
            np.testing.assert_array_equal(y, yt.numpy())


def test_adaptive_kernels_stay_bounded_on_large_inputs():
    """One gather per axis: a 1000x1000 plane to 7x7 or to 1000x999 runs in a moment, no loop per output."""
    x = np.random.default_rng(0).standard_normal((1, 1, 1000, 1000))
    for out in ((7, 7), (999, 1000), (3, 1000)):
        y = kernels.adaptive_avgpool_forward(x, out)
        xt = torch.tensor(x)
        np.testing.assert_allclose(y, F.adaptive_avg_pool2d(xt, out).numpy(), rtol=1e-10, atol=1e-12)
        y, argmax = kernels.adaptive_maxpool_forward_argmax(x, out)
        np.testing.assert_array_equal(argmax, F.adaptive_max_pool2d(xt, out, return_indices=True)[1].numpy())


def test_adaptive_kernels_reject_bad_arguments():
    with pytest.raises(ValueError, match="output_size must be positive"):
        kernels.adaptive_avgpool_forward(np.ones((1, 1, 4)), 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        kernels.adaptive_avgpool_forward(np.ones((1, 1, 4), dtype=np.int64), 2)
    with pytest.raises(ValueError, match="dy has shape"):
        kernels.adaptive_avgpool_backward(np.ones((1, 1, 3)), (1, 1, 4), 2)
    with pytest.raises(ValueError, match="outside a plane"):
        kernels.adaptive_maxpool_backward(np.ones((1, 1, 2)), np.array([[[0, 4]]]), (1, 1, 4))
    assert kernels.adaptive_avgpool_forward(np.ones((0, 2, 4)), 3).shape == (0, 2, 3)
    y, argmax = kernels.adaptive_maxpool_forward_argmax(np.ones((0, 2, 4)), 3)
    assert kernels.adaptive_maxpool_backward(y, argmax, (0, 2, 4)).shape == (0, 2, 4)


# ------------------------------------------------------------------------- max-pool dilation, avg-pool divisors


def _run(spec_layers, x):
    from archcalc.execute import Executor

    graph = from_dict({"name": "t", "input": list(x.shape[1:]), "layers": spec_layers})
    executor = Executor(graph, dtype="float64")
    return executor.forward(x), infer_shapes(graph)[graph.nodes[-1].name]


def test_avgpool_same_divides_by_the_real_inputs_as_tensorflow():
    """[1, 2, 3, 4], k3 s2 "same": TensorFlow pads 0 before and 1 after, and averages [1, 2, 3] = 2
    and [3, 4] = 3.5 (its divisor counts real inputs only); count_include_pad true gives 7/3."""
    x = np.array([[[1.0, 2, 3, 4]]])
    y, layer = _run([{"type": "avgpool", "kernel": 3, "stride": 2, "padding": "same"}], x)
    assert layer.attrs["padding"] == ((0, 1),) and layer.attrs["count_include_pad"] is False
    np.testing.assert_allclose(y, [[[2.0, 3.5]]])
    y, layer = _run([{"type": "avgpool", "kernel": 3, "stride": 2, "padding": "same", "count_include_pad": True}], x)
    np.testing.assert_allclose(y, [[[2.0, 7 / 3]]])
    for padding in (1, "valid", [1, 1]):  # every other padding keeps PyTorch's default
        attrs = {"type": "avgpool", "kernel": 3, "stride": 2, "padding": padding}
        layer = infer_shapes(from_dict({"name": "t", "input": [1, 6], "layers": [{**attrs, "name": "p"}]}))["p"]
        assert layer.attrs["count_include_pad"] is True


def test_avgpool_divisor_override_by_hand_and_its_1d_refusal():
    """A 2x2 window of ones over divisor 3: 4/3 everywhere; PyTorch's AvgPool1d has no divisor_override."""
    y, _ = _run([{"type": "avgpool", "kernel": 2, "divisor_override": 3}], np.ones((1, 1, 4, 4)))
    np.testing.assert_allclose(y, np.full((1, 1, 2, 2), 4 / 3))
    with pytest.raises(ArchcalcError) as error:
        infer_shapes(from_dict({"name": "t", "input": [1, 6], "layers": [{"type": "avgpool", "kernel": 2, "divisor_override": 2}]}))
    assert str(error.value).endswith(
        "divisor_override applies to 2D and 3D windows (PyTorch's AvgPool1d has none), got a 1D window")
    with pytest.raises(ArchcalcError, match="divisor_override must be a positive int"):
        from_dict({"name": "t", "input": [1, 6, 6], "layers": [{"type": "avgpool", "kernel": 2, "divisor_override": 0}]})
    with pytest.raises(ArchcalcError, match="unknown attribute 'dilation'"):
        from_dict({"name": "t", "input": [1, 6, 6], "layers": [{"type": "avgpool", "kernel": 2, "dilation": 2}]})


def test_dilated_maxpool_shape_summary_and_field():
    """k3 d2 spans 5: (9 + 2 - 5) // 2 + 1 = 4; the field of one unit is 5 wide."""
    graph = from_dict({"name": "t", "input": [1, 9, 9], "layers": [
        {"type": "maxpool", "name": "p", "kernel": 3, "stride": 2, "padding": 1, "dilation": 2}]})
    row = analyze(graph).layer("p")
    assert row.output_shape == (1, 4, 4) and row.summary == "3x3/2 p1 d2x2"
    assert row.receptive_field.size == (5, 5) and row.receptive_field.stride == (2, 2)
    assert row.other_ops == (9 - 1) * 16
    with pytest.raises(ArchcalcError) as error:
        infer_shapes(from_dict({"name": "t", "input": [1, 5, 1], "layers": [
            {"type": "maxpool", "kernel": 2, "stride": 1, "padding": 1, "dilation": 2}]}))
    assert str(error.value).endswith("dilation 2 with padding 1 puts the first window on the width axis wholly in the"
                                     " padding (its taps at -1, 1, ... miss the input's 1 values); PyTorch would return -inf")


@pytest.mark.parametrize("size", range(1, 8))
def test_only_the_first_window_can_read_only_padding_and_is_refused(size):
    """Brute force over small pooling geometries: a window whose taps all miss the input exists exactly
    when reads_only_padding says so (PyTorch returns -inf there; archcalc refuses it)."""
    from archcalc.ops.pool import reads_only_padding

    for kernel in range(1, 6):
        for dilation in range(1, 6):
            for before in range(kernel // 2 + 1):
                for stride in (1, 2, 3):
                    span = dilation * (kernel - 1) + 1
                    if span > size + 2 * before:
                        continue
                    for ceil_mode in (False, True):
                        out = kernels.geometry((1, 1, size), kernel, stride, (before, before), dilation, ceil_mode).out[0] \
                            if not reads_only_padding(size, dilation, before) else None
                        if out is None:
                            with pytest.raises(ValueError, match="reads only padding"):
                                kernels.maxpool_forward(np.ones((1, 1, size)), kernel, stride, before, ceil_mode, dilation)
                            y = F.max_pool1d(torch.ones(1, 1, size), kernel, stride, before, dilation, ceil_mode)
                            assert torch.isinf(y).any()  # torch's answer for the refused geometry
                            continue
                        empty = [o for o in range(out)
                                 if not any(0 <= o * stride - before + j * dilation < size for j in range(kernel))]
                        assert not empty, (size, kernel, dilation, before, stride, ceil_mode)


def test_explain_adaptive_pool():
    layer = infer_shapes(from_dict({"name": "t", "input": [2, 13, 5], "layers": [
        {"type": "adaptive_maxpool", "name": "p", "output_size": [6, 3]}]}))["p"]
    lines = dict(get_op("adaptive_maxpool").explain(layer))
    assert lines["output height"] == ("6: window i reads [floor(i*13/6), ceil((i+1)*13/6)); lengths sum to "
                                      "in + out - gcd = 13 + 6 - 1 = 18, the longest 3")
    assert lines["output shape"] == "(c=2, 6, 3) = (2, 6, 3)"


@settings(max_examples=60, derandomize=True, deadline=None)
@given(data=st.data())
def test_adaptive_kernels_match_torch_on_random_geometry(data):
    """Any sizes (out below, equal to or above in), dtype, ties and NaN: torch's values, arg-maxes and gradients."""
    rank = data.draw(st.integers(1, 3))
    size = tuple(data.draw(st.integers(1, 12)) for _ in range(rank))
    out = tuple(data.draw(st.integers(1, 12)) for _ in range(rank))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = np.round(rng.standard_normal((data.draw(st.integers(1, 2)), 2, *size)), 1).astype(dtype)  # ties
    if data.draw(st.booleans()):
        x.reshape(-1)[rng.integers(0, x.size, 2)] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    dy = rng.standard_normal((*x.shape[:2], *out)).astype(dtype)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(F, f"adaptive_avg_pool{rank}d")(xt, out)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(kernels.adaptive_avgpool_forward(x, out), yt.detach().numpy(), equal_nan=True, **tol)
    np.testing.assert_allclose(kernels.adaptive_avgpool_backward(dy, x.shape, out), xt.grad.numpy(), **tol)
    xt = torch.tensor(x, requires_grad=True)
    yt, indices = getattr(F, f"adaptive_max_pool{rank}d")(xt, out, return_indices=True)
    yt.backward(torch.tensor(dy))
    y, argmax = kernels.adaptive_maxpool_forward_argmax(x, out)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(argmax, indices.numpy())
    np.testing.assert_allclose(kernels.adaptive_maxpool_backward(dy, argmax, x.shape), xt.grad.numpy(), **tol)


def test_adaptive_pooling_to_one_is_global_as_global_avgpool_and_holds_at_any_size():
    """Output size 1 is one window over the whole axis: the field is global, as global_avgpool's,
    and nothing about it depends on the input size (no ^ mark)."""
    spec = {"name": "t", "input": [4, 9, 9], "layers": [
        {"type": "conv", "name": "conv", "filters": 4, "kernel": 3},
        {"type": "adaptive_avgpool", "name": "adaptive", "output_size": 1},
        {"type": "global_avgpool", "name": "global", "inputs": ["conv"]},
        {"type": "adaptive_maxpool", "name": "rows", "output_size": [1, None], "inputs": ["conv"]},
    ]}
    analysis = analyze(from_dict(spec))
    adaptive, pooled = analysis.layer("adaptive"), analysis.layer("global")
    assert adaptive.receptive_field.is_global and pooled.receptive_field.is_global
    assert adaptive.receptive_field.text() == pooled.receptive_field.text() == "global"
    assert not adaptive.resolution_dependent
    assert (adaptive.other_ops, adaptive.output_shape) == (pooled.other_ops, pooled.output_shape)
    rows = analysis.layer("rows").receptive_field  # the input's 9 rows seen whole (stride 0), width: the conv's 3
    assert (rows.size, rows.stride, rows.is_global) == ((9, 3), (0, 1), False)
    assert not analysis.layer("rows").resolution_dependent


@pytest.mark.parametrize("op_type", ["adaptive_avgpool", "adaptive_maxpool"])
def test_adaptive_pooling_to_a_multiple_of_the_input_has_nearest_upsamplings_exact_field(op_type):
    """4 -> 8 reads floor(i/2) for output i, as nearest upsampling by 2: the same exact field (3/2,
    uniform), not a containing bound."""
    spec = {"name": "t", "input": [2, 4, 4], "layers": [
        {"type": op_type, "name": "pool", "output_size": 8},
        {"type": "upsample", "name": "up", "scale_factor": 2, "inputs": ["input"]},
    ]}
    analysis = analyze(from_dict(spec))
    pool, up = analysis.layer("pool").receptive_field, analysis.layer("up").receptive_field
    assert (pool.size, pool.stride, pool.centre, pool.uniform) == (up.size, up.stride, up.centre, True)
    assert pool.size == (Fraction(3, 2),) * 2

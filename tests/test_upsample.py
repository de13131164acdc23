"""Upsample: PyTorch's interpolation rules exactly, every unit's receptive field, the counts, the errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from archcalc.errors import ArchcalcError
from archcalc.ops import get_op
from archcalc.ops.base import RunContext
from archcalc.passes import analyze, infer_shapes
from archcalc.spec import from_dict

torch = pytest.importorskip("torch")
OP = get_op("upsample")


def _layer(input_shape, **attrs):
    graph = from_dict({"name": "t", "input": list(input_shape), "layers": [{"type": "upsample", **attrs}]})
    return graph, infer_shapes(graph)[graph.nodes[-1].name]


def _run(layer, x, dy):
    y, cache = OP.forward(layer, [x], {}, RunContext(training=True, rng=None))
    (dx,), params = OP.backward(layer, dy, cache)
    assert params == {}
    return y, dx


def _torch(layer, x, dy):
    xt = torch.tensor(x, requires_grad=True)
    y = OP.torch_module(layer)(xt)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), xt.grad.numpy()


CASES = [  # input shape (C, *spatial), attributes
    *[((2, 5, 7), {"mode": "bilinear", "scale_factor": s, "align_corners": ac})
      for s in (2, 3, 1.5, 0.5, 1.7, 2.25, 0.3, 1) for ac in (False, True)],
    *[((2, 6, 5), {"mode": "bicubic", "scale_factor": s, "align_corners": ac})
      for s in (2, 3, 1.5, 0.6, 2.5, 1) for ac in (False, True)],
    *[((3, 7), {"mode": "linear", "size": m, "align_corners": ac}) for m in (1, 3, 7, 10, 14, 21, 30) for ac in (False, True)],
    *[((2, 9), {"scale_factor": s}) for s in (1, 2, 3, 1.5, 2.5, 0.5, 0.4, 3.3, 7)],
    *[((2, 9), {"size": m}) for m in (1, 4, 9, 13, 18, 27)],
    ((2, 3, 4, 5), {"mode": "trilinear", "scale_factor": [2, 1.5, 0.8]}),
    ((2, 3, 4, 5), {"mode": "trilinear", "size": [5, 8, 3], "align_corners": True}),
    ((1, 3, 4, 5), {"scale_factor": [2, 3, 1.25]}),
    ((1, 3, 4), {"mode": "bicubic", "size": [7, 11]}),
]
IDS = [f"{shape}-{'-'.join(f'{k}={v}' for k, v in attrs.items())}" for shape, attrs in CASES]


@pytest.mark.parametrize(("shape", "attrs"), CASES, ids=IDS)
def test_forward_and_backward_equal_torch_in_float64(shape, attrs):
    _, layer = _layer(shape, **attrs)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *shape))
    dy = rng.standard_normal((2, *layer.out_shape))
    y, dx = _run(layer, x, dy)
    y_torch, dx_torch = _torch(layer, x, dy)
    assert y.shape == y_torch.shape == (2, *layer.out_shape)
    np.testing.assert_allclose(y, y_torch, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx, dx_torch, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("shape", "attrs"), CASES[::5], ids=IDS[::5])
def test_float32_follows_torchs_float32_arithmetic(shape, attrs):
    _, layer = _layer(shape, **attrs)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    dy = rng.standard_normal((2, *layer.out_shape)).astype(np.float32)
    y, dx = _run(layer, x, dy)
    y_torch, dx_torch = _torch(layer, x, dy)
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(y, y_torch, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dx_torch, rtol=1e-5, atol=1e-5)


def _reads(layer):
    """Per output unit (by torch's Jacobian): the input pixels it reads with a non-zero weight, per axis."""
    shape = (1, *layer.in_shape[1:])
    module = OP.torch_module(layer)
    jacobian = torch.autograd.functional.jacobian(module, torch.rand((1, *shape), dtype=torch.float64))
    jacobian = jacobian.reshape(math.prod(layer.out_shape[1:]), -1).numpy()
    sizes, outs = layer.in_shape[1:], layer.out_shape[1:]
    for unit, row in zip(itertools.product(*(range(m) for m in outs)), jacobian):
        pixels = np.argwhere(row.reshape(sizes) != 0)
        yield unit, [sorted(set(pixels[:, axis])) for axis in range(len(sizes))]


@pytest.mark.parametrize(("shape", "attrs"), CASES, ids=IDS)
def test_every_units_field_holds_exactly_the_pixels_it_reads(shape, attrs):
    """Not only the centre unit (the registry-wide test): every unit, from torch's Jacobian.

    A uniform field holds exactly the pixels each unit reads with a non-zero weight (clipped to
    the input); a non-uniform one (flagged ~) holds them all within its reported size.
    """
    graph, layer = _layer(shape, **attrs)
    field = analyze(graph).layer(graph.nodes[-1].name).receptive_field
    sizes = layer.in_shape[1:]
    for unit, reads in _reads(layer):
        for axis, pixels in enumerate(reads):
            if field.is_global:  # every output reads from the whole input
                assert set(pixels) <= set(range(sizes[axis])), (unit, axis)
                continue
            low = unit[axis] * field.stride[axis] - field.padding[axis]
            high = low + field.size[axis] - 1
            inside = list(range(max(math.ceil(low), 0), min(math.floor(high), sizes[axis] - 1) + 1))
            if field.uniform:
                assert pixels == inside, (unit, axis, low, high)
            else:
                assert set(pixels) <= set(inside), (unit, axis, low, high)


def test_which_fields_are_exact():
    def uniform(shape, **attrs):
        graph, _ = _layer(shape, **attrs)
        return analyze(graph).layer(graph.nodes[-1].name).receptive_field.uniform

    assert uniform((1, 4, 4), scale_factor=3) and uniform((1, 4, 4), mode="bilinear", scale_factor=4)
    assert uniform((1, 4, 4), mode="bicubic", size=[8, 16]) and uniform((1, 8, 8), size=[4, 2])
    assert not uniform((1, 4, 4), mode="bicubic", scale_factor=3)  # some units read 1 pixel, others 4
    assert not uniform((1, 4, 4), mode="bilinear", scale_factor=2, align_corners=True)
    assert not uniform((1, 4, 4), mode="bilinear", scale_factor=1.5)
    assert not uniform((1, 5), scale_factor=2.1)  # 10 = 2*5 outputs, but torch samples at 1/2.1
    assert uniform((1, 5), scale_factor=3) and uniform((1, 5), scale_factor=64) and uniform((1, 3), mode="linear", size=6)
    assert not uniform((1, 5), scale_factor=41)  # float32(1/41) < 1/41: unit 41 reads pixel 0, not 1
    assert not uniform((1, 5), mode="linear", scale_factor=3)  # unit 1 samples pixel 0 exactly


def test_nearest_at_41_follows_torchs_forward_in_each_dtype():
    """float32(1/41) is below 1/41: in float32 PyTorch's unit 41 reads pixel 0, in float64 pixel 1
    (floor(41/41)); archcalc's forward does the same. PyTorch's float64 backward computes the
    index in float32 and sends unit 41's gradient to pixel 0, against its own forward;
    archcalc's backward is the adjoint of its forward, so gradient checks hold."""
    _, layer = _layer((1, 3), scale_factor=41)
    dy = np.zeros((1, 1, 123))
    dy[0, 0, 41] = 1
    for dtype, pixel in ((np.float32, 0), (np.float64, 1)):
        x = np.arange(3, dtype=dtype).reshape(1, 1, 3)
        y, dx = _run(layer, x, dy.astype(dtype))
        y_torch, dx_torch = _torch(layer, x, dy.astype(dtype))
        np.testing.assert_array_equal(y, y_torch)
        assert y[0, 0, 41] == pixel and dx[0, 0, pixel] == 1 and dx.sum() == 1
        assert dx_torch[0, 0, 0] == 1  # torch's backward, in float32 arithmetic whatever the dtype


def test_fields_of_the_lecture_cases():
    """Nearest x2 sees 1 pixel: size 3/2 with jump 1/2 (the unit's interval holds one whole pixel);
    bilinear x2 reads 2 pixels: size 5/2; a 3x3 conv after nearest x2 sees 2 pixels."""
    from fractions import Fraction

    graph = from_dict({"name": "t", "input": [1, 8, 8], "layers": [
        {"type": "upsample", "scale_factor": 2, "name": "up"},
        {"type": "conv", "filters": 1, "kernel": 3, "padding": 1, "name": "conv"},
        {"type": "upsample", "mode": "bilinear", "scale_factor": 2, "name": "up2"}]})
    analysis = analyze(graph)
    up, conv, up2 = (analysis.layer(name).receptive_field for name in ("up", "conv", "up2"))
    assert up.size == (Fraction(3, 2),) * 2 and up.stride == (Fraction(1, 2),) * 2
    assert conv.size == (Fraction(5, 2),) * 2  # 1 + 3/2: pixels {0, 1} or {1, 2} around the centre
    assert up2.size == (Fraction(5, 2) + 3 * Fraction(1, 4),) * 2


@pytest.mark.parametrize(("attrs", "other_ops"), [
    ({"scale_factor": 2}, 0),
    ({"mode": "bilinear", "scale_factor": 2}, 7 * 3 * 8 * 10),  # 4 taps: 4 multiplies + 3 adds per value
    ({"mode": "bicubic", "scale_factor": 2}, 31 * 3 * 8 * 10),  # 16 taps: 16 + 15
])
def test_macs_are_zero_and_other_ops_count_the_taps(attrs, other_ops):
    _, layer = _layer((3, 4, 5), **attrs)
    cost = OP.cost(layer)
    assert (cost.macs, cost.other_ops) == (0, other_ops)
    assert OP.params(layer) == {}


def test_linear_and_trilinear_count_3_and_15_per_value():
    assert OP.cost(_layer((2, 5), mode="linear", scale_factor=2)[1]).other_ops == 3 * 2 * 10
    assert OP.cost(_layer((1, 2, 2, 2), mode="trilinear", scale_factor=2)[1]).other_ops == 15 * 64


def test_output_size_is_floor_of_in_times_scale_as_torch():
    for n, scale in ((5, 1.5), (7, 0.3), (3, 2.9999), (10, 0.15), (9, 1 / 3)):
        _, layer = _layer((1, n), scale_factor=scale)
        y = torch.nn.Upsample(scale_factor=scale)(torch.zeros(1, 1, n))
        assert layer.out_shape == (1, math.floor(n * scale)) == tuple(y.shape[1:])


@pytest.mark.parametrize(("shape", "attrs", "message"), [
    ((2, 4, 4), {"scale_factor": 2, "size": 3}, "upsample takes exactly one of size and scale_factor, got both"),
    ((2, 4, 4), {}, "upsample takes exactly one of size and scale_factor, got neither"),
    ((2, 4, 4), {"scale_factor": 2, "align_corners": True},
     "align_corners can only be set with the interpolating modes (linear, bilinear, trilinear, bicubic)"),
    ((2, 4), {"mode": "bilinear", "scale_factor": 2}, "mode 'bilinear' expects a 2D input (C, H, W), got (2, 4); use mode 'linear'"),
    ((2, 4, 4, 4), {"mode": "bicubic", "scale_factor": 2}, "mode 'bicubic' expects a 2D input (C, H, W), got (2, 4, 4, 4)"),
    ((5,), {"scale_factor": 2}, "upsample expects input (C, L), (C, H, W) or (C, D, H, W), got (5,)"),
    ((2, 4, 4), {"scale_factor": 1e300}, "output height = floor(4 * 1e+300) must be at most 2,147,483,647 (2**31 - 1)"),
    ((2, 4, 4), {"scale_factor": 2**29}, "output height = floor(4 * 536870912) = 2,147,483,648 must be at most 2,147,483,647"),
    ((2, 4, 4), {"scale_factor": [2, 0.1]}, "output width = floor(4 * 0.1) = 0 < 1"),
    ((2, 4, 4), {"scale_factor": -1}, "scale_factor must be a finite number > 0 or a list of 1 to 3 of them, got -1"),
    ((2, 4, 4), {"scale_factor": [2, True]}, "scale_factor must be a finite number > 0 or a list of 1 to 3 of them"),
    ((2, 4, 4), {"scale_factor": [2, 2, 2]}, "scale_factor has 3 values for 2 spatial axes"),
    ((2, 4, 4), {"mode": "cubic", "scale_factor": 2}, "mode must be one of nearest, linear, bilinear, trilinear, bicubic, got 'cubic'"),
    ((2, 4, 4), {"size": [2**31, 3]}, "size must be a positive int <= 2147483647 (2**31 - 1)"),
    ((2, 4, 4), {"scale_factor": 2, "align_corners": 1}, "align_corners must be true, false or null, got 1"),
])
def test_errors_name_the_constraint(shape, attrs, message):
    with pytest.raises(ArchcalcError) as caught:
        _layer(shape, **attrs)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_summary_and_explain():
    _, layer = _layer((3, 4, 5), mode="bilinear", scale_factor=[2, 1.5])
    assert OP.summary(layer) == "bilinear x2x1.5"
    lines = dict(OP.explain(layer))
    assert lines["output height"] == "floor(in * scale_factor) = floor(4 * 2) = 8"
    assert lines["output width"] == "floor(in * scale_factor) = floor(5 * 1.5) = 7"
    assert lines["other ops"].startswith("(2T - 1) * prod(out) = (2*4 - 1) * 3*8*7 = 1176")
    _, sized = _layer((3, 4, 5), mode="bicubic", size=[9, 9], align_corners=True)
    assert OP.summary(sized) == "bicubic -> 9x9 ac"
    assert dict(OP.explain(sized))["output height"] == "size = 9"


def test_backward_memory_is_bounded_by_the_arrays():
    """A large upsample runs through per-axis gathers: no (out x in) matrix is ever built."""
    _, layer = _layer((1, 64, 64), mode="bicubic", scale_factor=8)
    x = np.ones((1, 1, 64, 64), dtype=np.float32)
    y, dx = _run(layer, x, np.ones((1, 1, 512, 512), dtype=np.float32))
    np.testing.assert_allclose(y, 1.0, rtol=1e-5)  # Keys' weights sum to 1
    np.testing.assert_allclose(dx.sum(), 512 * 512, rtol=1e-5)  # and so every output's gradient is spread whole


@settings(max_examples=30, deadline=None)
@given(
    mode=st.sampled_from(["nearest", "linear", "bicubic"]),
    n=st.integers(1, 9),
    by_size=st.booleans(),
    out=st.integers(1, 30),
    scale=st.one_of(st.integers(1, 9), st.sampled_from([12, 41, 47]), st.floats(0.2, 4.5).map(lambda v: round(v, 2))),
    align=st.booleans(),
)
def test_random_attributes_agree_with_torch_and_every_field_holds_its_reads(mode, n, by_size, out, scale, align):
    """Random size, scale and mode: forward == torch (float64) and every unit's reads lie in its field,
    exactly where the field is uniform."""
    attrs = {"mode": mode, "size": out} if by_size else {"mode": mode, "scale_factor": scale}
    if align and mode != "nearest":
        attrs["align_corners"] = True
    shape = (1, n) if mode != "bicubic" else (1, n, 1)
    if mode == "bicubic":
        attrs = {**attrs, **({"size": [out, 1]} if by_size else {"scale_factor": [scale, 1]})}
    assume(by_size or math.floor(n * scale) >= 1)
    graph, layer = _layer(shape, **attrs)
    x = np.random.default_rng(0).standard_normal((1, *shape))
    y, _ = _run(layer, x, np.zeros((1, *layer.out_shape)))
    np.testing.assert_allclose(y, _torch(layer, x, np.zeros((1, *layer.out_shape)))[0], rtol=1e-13, atol=1e-13)
    field = analyze(graph).layer(graph.nodes[-1].name).receptive_field
    for unit, reads in _reads(layer):
        if field.is_global:  # every output reads the whole input (1 -> 2: the one pixel)
            assert set(reads[0]) <= set(range(n)), (unit, reads[0])
            continue
        low = unit[0] * field.stride[0] - field.padding[0]
        inside = list(range(max(math.ceil(low), 0), min(math.floor(low + field.size[0] - 1), n - 1) + 1))
        assert reads[0] == inside if field.uniform else set(reads[0]) <= set(inside), (unit, reads[0], inside)


@pytest.mark.parametrize(("mode", "in_shape", "scale"), [
    ("linear", (2, 3), 1.25), ("linear", (2, 5), 1.1), ("bilinear", (2, 3, 4), (1.25, 1.5)), ("bilinear", (1, 5, 5), 1.19),
    ("trilinear", (1, 3, 3, 3), 1.25), ("nearest", (2, 3, 3), 1.25), ("nearest", (2, 3, 4), (1.5, 1.25)),
    ("nearest", (2, 3), 1.25), ("nearest", (1, 3, 3, 3), 1.25), ("bicubic", (1, 3, 3), 1.25),
])
def test_a_size_kept_at_a_scale_other_than_one_is_computed_as_torch_computes_it(mode, in_shape, scale):
    """PyTorch's CPU kernels copy where the output size equals the input's (floor(n * s) == n):
    the linear modes per axis, 2D nearest when both axes keep their size; 1D and 3D nearest and
    bicubic interpolate at 1/s all the same."""
    torch = pytest.importorskip("torch")
    op = get_op("upsample")
    layer = op.infer({"mode": mode, "scale_factor": scale, "size": None, "align_corners": None}, (in_shape,))
    x = np.random.default_rng(0).standard_normal((2, *in_shape))
    y, _ = op.forward(layer, [x], {}, RunContext(training=False, rng=None))
    expected = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=scale, mode=mode)
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-12, atol=1e-12)

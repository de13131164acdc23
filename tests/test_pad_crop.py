"""Crop (U-Net's crop-and-concat) and pad: hand arithmetic, torch as oracle, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archcalc
from archcalc.errors import ShapeError, SpecError
from archcalc.execute import Executor, gradcheck
from archcalc.spec import from_dict


def _net(input_shape, *layers):
    return from_dict({"name": "t", "input": list(input_shape), "layers": list(layers)})


#: A U-Net step in miniature: an encoder feature, a smaller decoder feature from it, the encoder's
#: centre cropped to the decoder's size, and the two concatenated.
UNET_STEP = (
    [2, 12, 12],
    {"type": "conv", "name": "enc", "filters": 3, "kernel": 3},  # (3, 10, 10)
    {"type": "conv", "name": "dec", "filters": 4, "kernel": 5},  # (4, 6, 6)
    {"type": "crop", "name": "crop", "inputs": ["enc", "dec"]},  # (3, 6, 6) from offset 2
    {"type": "concat", "name": "cat", "inputs": ["crop", "dec"]},
)


def test_unet_first_crop_by_hand():
    # Ronneberger et al. 2015, fig. 1: the 64-channel 568x568 feature is cropped to 392x392
    given = archcalc.analyze(_net([64, 568, 568], {"type": "crop", "size": 392, "name": "crop"})).layer("crop")
    assert given.output_shape == (64, 392, 392) and given.attrs["offset"] == ((568 - 392) // 2,) * 2 == (88, 88)
    # the same crop to the spatial size of a second input (a decoder feature of 392x392)
    net = _net([64, 568, 568], {"type": "conv", "name": "dec", "filters": 128, "kernel": 568 - 392 + 1},
               {"type": "crop", "name": "crop", "inputs": ["input", "dec"]})
    crop = archcalc.analyze(net).layer("crop")
    assert crop.output_shape == (64, 392, 392) and crop.attrs["offset"] == (88, 88) and crop.attrs["size"] == (392, 392)
    assert (crop.params, crop.macs, crop.other_ops) == (0, 0, 0)
    assert crop.summary == "392x392 from 88,88"


def test_crop_is_a_view_and_the_concat_stores():
    analysis = archcalc.analyze(_net(*UNET_STEP))
    assert not analysis.layer("crop").stores_output and analysis.layer("cat").stores_output
    assert analysis.layer("crop").attrs["offset"] == (2, 2)
    assert analysis.layer("cat").output_shape == (7, 6, 6)


def test_an_odd_difference_drops_the_extra_value_at_the_end():
    # (7 - 4) // 2 = 1: keeps 1..4 of 0..6, one value cut before and two after
    x = np.arange(7.0).reshape(1, 1, 7)
    y = Executor(_net([1, 7], {"type": "crop", "size": 4}), dtype="float64").forward(x)
    np.testing.assert_array_equal(y[0, 0], [1, 2, 3, 4])
    y = Executor(_net([1, 7], {"type": "crop", "size": 4, "offset": 2}), dtype="float64").forward(x)
    np.testing.assert_array_equal(y[0, 0], [2, 3, 4, 5])  # torchvision's center_crop: round(1.5) = 2


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_unet_step_matches_torch(dtype):
    oracle = pytest.importorskip("tests.torch_oracle")
    executor = Executor(_net(*UNET_STEP), seed=0, dtype=dtype)
    params = {k: v.copy() for k, v in executor.params.items()}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 12, 12)).astype(dtype)
    y = executor.forward(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads = executor.backward(dy)
    outputs, dx, torch_grads, _ = oracle.run_torch(executor.graph, params, x, dy, True, getattr(oracle.torch, dtype))
    rtol = 1e-10 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(y, outputs["cat"], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(executor.outputs["crop"], outputs["crop"], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(executor.input_grad, dx, rtol=rtol, atol=rtol)
    assert set(grads) == set(torch_grads)
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, torch_grads[name], rtol=rtol, atol=rtol * 10)
    executor.check_macs()
    assert gradcheck(_net(*UNET_STEP), batch=2).passed


def test_the_crop_of_one_input_has_the_exact_field():
    oracle = pytest.importorskip("tests.torch_oracle")
    graph = _net([1, 12, 12], {"type": "conv", "name": "conv", "filters": 2, "kernel": 3},
                 {"type": "crop", "name": "crop", "size": [4, 5], "offset": [1, 3]})
    field = archcalc.analyze(graph).layer("crop").receptive_field
    centre, measured = oracle.measured_fields(graph, ["crop"])["crop"]
    assert field.size == (3, 3)
    # unit c of the crop is unit c + offset of the conv, which sees input c + offset .. c + offset + 2
    assert measured == tuple((c + o, c + o + 2) for c, o in zip(centre, (1, 3)))


def test_the_crop_of_a_second_inputs_size_has_its_first_inputs_field():
    analysis = archcalc.analyze(_net(*UNET_STEP))
    crop, cat = analysis.layer("crop").receptive_field, analysis.layer("cat").receptive_field
    # the encoder's 3x3 field, its centre moved by the offset 2 onto the decoder's (7x7 about 3)
    assert (crop.size, crop.centre) == ((3, 3), (3, 3))
    assert (cat.size, cat.centre, cat.aligned) == ((7, 7), (3, 3), True)


@pytest.mark.parametrize(("layer", "input_shape", "error", "message"), [
    ({"type": "crop", "size": 9}, [2, 8, 8], ShapeError,
     'layers[0] (name="crop1", type="crop"): size 9 exceeds the input\'s height 8, got input (2, 8, 8)'),
    ({"type": "crop", "size": [4, 4], "offset": [0, 5]}, [2, 8, 8], ShapeError,
     'layers[0] (name="crop1", type="crop"): offset 5 + size 4 = 9 exceeds the input\'s width 8, got input (2, 8, 8)'),
    ({"type": "crop"}, [2, 8, 8], ShapeError,
     'layers[0] (name="crop1", type="crop"): needs size, or a second input whose spatial size to crop to'),
    ({"type": "crop", "size": [4, 4, 4]}, [2, 8, 8], ShapeError,
     'layers[0] (name="crop1", type="crop"): size has 3 values for 2 spatial axes, got [4, 4, 4]'),
    ({"type": "crop", "size": 2}, [8], ShapeError,
     'layers[0] (name="crop1", type="crop"): expects input (C, *spatial) with 1 to 3 spatial axes, got (8,)'),
    ({"type": "crop", "size": 0}, [2, 8, 8], SpecError,
     'layers[0] (name="crop1", type="crop"): size must be a positive int or a list of 1 to 3 of them, got 0'),
    ({"type": "crop", "size": 2, "offset": -1}, [2, 8, 8], SpecError,
     'layers[0] (name="crop1", type="crop"): offset must be a >= 0 int or a list of 1 to 3 of them, got -1'),
])
def test_bad_crops_are_one_clear_line(layer, input_shape, error, message):
    with pytest.raises(error) as caught:
        archcalc.analyze(_net(input_shape, layer))
    assert str(caught.value) == f"spec '<dict>': {message}"


@pytest.mark.parametrize(("second", "message"), [
    ({"type": "conv", "filters": 2, "kernel": 3, "name": "dec"},
     "takes size or a second input to crop to, not both; got size 4 and a second input (2, 6, 6)"),
    ({"type": "global_avgpool", "name": "pooled"}, None),
    ({"type": "flatten", "name": "flat"}, "the second input must have as many axes as the first, got (2, 8, 8) and (128,)"),
    ({"type": "conv", "filters": 2, "kernel": 1, "padding": 1, "name": "big"},
     "size 10 exceeds the input's height 8, got input (2, 8, 8)"),
])
def test_bad_second_inputs_are_one_clear_line(second, message):
    crop = {"type": "crop", "name": "crop", "inputs": ["input", second["name"]]}
    if "size 4" in (message or ""):
        crop["size"] = 4
    net = _net([2, 8, 8], second, crop)
    if message is None:  # a (2, 1, 1) reference: a 1x1 crop from the centre, (8 - 1) // 2 = 3
        assert archcalc.analyze(net).layer("crop").attrs["offset"] == (3, 3)
        return
    with pytest.raises(ShapeError) as caught:
        archcalc.analyze(net)
    assert str(caught.value) == f'spec \'<dict>\': layers[1] (name="crop", type="crop"): {message}'


@pytest.mark.parametrize(("mode", "expected"), [
    ("constant", [9, 9, 1, 2, 3, 4, 9]),
    ("reflect", [3, 2, 1, 2, 3, 4, 3]),  # the mirror without the edge value
    ("replicate", [1, 1, 1, 2, 3, 4, 4]),
    ("circular", [3, 4, 1, 2, 3, 4, 1]),
])
def test_pad_modes_by_hand(mode, expected):
    layer = {"type": "pad", "padding": [2, 1], "mode": mode, **({"value": 9} if mode == "constant" else {})}
    y = Executor(_net([1, 4], layer), dtype="float64").forward(np.array([[[1.0, 2, 3, 4]]]))
    np.testing.assert_array_equal(y[0, 0], expected)


def test_pad_figures_and_the_cyclegan_block_by_hand():
    # CycleGAN's ResNet generator opens with ReflectionPad2d(3) and a 7x7 valid conv on 256x256
    net = _net([3, 256, 256], {"type": "pad", "padding": 3, "mode": "reflect", "name": "pad"},
               {"type": "conv", "filters": 64, "kernel": 7, "name": "conv"})
    analysis = archcalc.analyze(net)
    pad, conv = analysis.layer("pad"), analysis.layer("conv")
    assert pad.output_shape == (3, 262, 262) and conv.output_shape == (64, 256, 256)
    assert (pad.params, pad.macs, pad.other_ops, pad.stores_output) == (0, 0, 0, True)
    assert pad.summary == "reflect p3" and pad.attrs["padding"] == ((3, 3), (3, 3))
    # the field: a 7x7 window, centred on the unit as a 'same' conv's; flagged non-uniform (borders mirror)
    assert conv.receptive_field.size == (7, 7) and not conv.receptive_field.uniform
    assert conv.receptive_field.centre == (0, 0)
    constant = archcalc.analyze(_net([3, 8, 8], {"type": "pad", "padding": [[1, 0], [2, 3]], "value": -1})).layers[-1]
    assert constant.receptive_field.uniform and constant.summary == "constant p1:0,2:3 value -1"
    assert constant.output_shape == (3, 9, 13)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_every_padded_unit_reads_one_value_where_the_rule_says(mode):
    """Torch's Jacobian of F.pad, unit by unit: each output reads the input value source_index
    names (interior: i - before; padding: mirrored, clamped, wrapped, or none for constant)."""
    oracle = pytest.importorskip("tests.torch_oracle")
    torch = oracle.torch
    from archcalc.ops.pad import source_index

    n, before, after = 5, 3, 4
    if mode == "reflect":
        before = after = 4
    module = archcalc.ops.get_op("pad").torch_module(
        archcalc.ops.Layer({"padding": ((before, after),), "mode": mode, "value": 0.0}, ((1, n),), (1, n + before + after)))
    jacobian = torch.autograd.functional.jacobian(module, torch.zeros((1, 1, n), dtype=torch.float64))[0, 0, :, 0, 0, :]
    for position in range(n + before + after):
        reads = jacobian[position].nonzero().flatten().tolist()
        source = source_index(position, n, before, mode)
        assert reads == ([] if source is None else [source]), position


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_a_window_after_reflect_or_replicate_reads_only_inside_its_field(mode):
    """When the padding is at most half the window (a "same" conv's), every unit's reads lie in its
    field; with more (padding 3 before a 3-window) unit 0's field lies wholly in the padding and it
    reads values outside it: hence the non-uniform flag."""
    oracle = pytest.importorskip("tests.torch_oracle")
    torch = oracle.torch
    graph = _net([1, 6], {"type": "pad", "padding": 2, "mode": mode}, {"type": "conv", "name": "conv", "filters": 1, "kernel": 5})
    field = archcalc.analyze(graph).layer("conv").receptive_field.path_max[0]
    net = oracle.TorchNet(graph).double()
    x = torch.rand((1, 1, 6), dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: net(v)["conv"], x)[0, 0, :, 0, 0, :]
    for unit in range(6):
        low = unit * field.jump - field.padding
        reads = jacobian[unit].nonzero().flatten().tolist()
        assert reads and min(reads) >= max(low, 0) and max(reads) <= min(low + field.size - 1, 5), unit
    wide = _net([1, 6], {"type": "pad", "padding": 3, "mode": mode}, {"type": "conv", "name": "conv", "filters": 1, "kernel": 3})
    field = archcalc.analyze(wide).layer("conv").receptive_field.path_max[0]
    assert (field.size, -field.padding) == (3, -3)  # unit 0 spans input -3 .. -1
    net = oracle.TorchNet(wide).double()
    jacobian = torch.autograd.functional.jacobian(lambda v: net(v)["conv"], x)[0, 0, :, 0, 0, :]
    assert jacobian[0].nonzero().flatten().tolist() == ([1, 2, 3] if mode == "reflect" else [0])


@pytest.mark.parametrize(("layer", "input_shape", "message"), [
    ({"type": "pad", "padding": 3, "mode": "reflect"}, [2, 3, 5],
     "reflect padding must be below the input's height 3 on each side (PyTorch's limit), got (3, 3)"),
    ({"type": "pad", "padding": [[0, 0], [1, 5]], "mode": "reflect"}, [2, 8, 5],
     "reflect padding must be below the input's width 5 on each side (PyTorch's limit), got (1, 5)"),
    ({"type": "pad", "padding": 4, "mode": "circular"}, [2, 3],
     "circular padding must be at most the input's length 3 on each side (it wraps around once: PyTorch's limit), got (4, 4)"),
    ({"type": "pad", "padding": 1, "mode": "reflect", "value": 1}, [2, 3, 3],
     "value applies to mode 'constant' only (F.pad refuses it with 'reflect'), got value=1"),
    ({"type": "pad", "padding": "same"}, [2, 3, 3],
     "padding must be given in values (an int, per axis, per side or pairs) for pad, got 'same'"),
    ({"type": "pad", "padding": 1}, [6], "expects input (C, *spatial) with 1 to 3 spatial axes (pad pads the spatial axes), got (6,)"),
    ({"type": "pad", "padding": [1, 2, 3]}, [2, 3, 3],
     "padding has 3 values; 2 spatial axes take 2 (per axis) or 4 (per side)"),
    ({"type": "pad", "padding": 2**31 - 1}, [2, 3],
     "output length = 3 + 2147483647 + 2147483647 = 4,294,967,297 exceeds 2,147,483,647 (2**31 - 1)"),
])
def test_bad_pads_are_one_clear_line(layer, input_shape, message):
    with pytest.raises(ShapeError) as caught:
        archcalc.analyze(_net(input_shape, layer))
    assert str(caught.value) == f"spec '<dict>': layers[0] (name=\"pad1\", type=\"pad\"): {message}"


@pytest.mark.parametrize(("layer", "message"), [
    ({"type": "pad", "padding": 1, "mode": "mirror"},
     "mode must be one of 'constant', 'reflect', 'replicate', 'circular', got 'mirror'"),
    ({"type": "pad", "padding": -1}, None),
    ({"type": "pad"}, "padding is required"),
])
def test_bad_pad_attributes_are_spec_errors(layer, message):
    with pytest.raises(SpecError) as caught:
        archcalc.analyze(_net([2, 3, 3], layer))
    assert str(caught.value).startswith("spec '<dict>': layers[0] (name=\"pad1\", type=\"pad\"): ")
    if message:
        assert message in str(caught.value)
    else:
        assert "padding must be an int >= 0" in str(caught.value)


def test_pad_float32_matches_torch():
    oracle = pytest.importorskip("tests.torch_oracle")
    graph = _net([2, 5, 6], {"type": "conv", "filters": 3, "kernel": 1},
                 {"type": "pad", "padding": [[2, 1], [0, 3]], "mode": "circular"})
    executor = Executor(graph, dtype="float32")
    params = {k: v.copy() for k, v in executor.params.items()}
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 6)).astype("float32")
    y = executor.forward(x)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype("float32")
    grads = executor.backward(dy)
    outputs, dx, torch_grads, _ = oracle.run_torch(graph, params, x, dy, True, oracle.torch.float32)
    assert y.dtype == np.float32 and executor.input_grad.dtype == np.float32
    np.testing.assert_allclose(y, outputs["pad1"], rtol=1e-6)
    np.testing.assert_allclose(executor.input_grad, dx, rtol=1e-5, atol=1e-5)
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, torch_grads[name], rtol=1e-5, atol=1e-5)


def test_channel_shuffle_by_hand_and_its_errors():
    # ShuffleNet: 3 groups of 2 channels, (a0 a1 | b0 b1 | c0 c1) -> (a0 b0 c0 a1 b1 c1)
    x = np.arange(6.0).reshape(1, 6, 1)
    executor = Executor(_net([6, 1], {"type": "channel_shuffle", "groups": 3}), dtype="float64")
    np.testing.assert_array_equal(executor.forward(x)[0, :, 0], [0, 2, 4, 1, 3, 5])
    executor.backward(np.arange(6.0).reshape(1, 6, 1))
    np.testing.assert_array_equal(executor.input_grad[0, :, 0], [0, 3, 1, 4, 2, 5])  # the inverse order
    row = archcalc.analyze(_net([116, 28, 28], {"type": "channel_shuffle", "groups": 2})).layers[-1]
    assert (row.params, row.macs, row.other_ops, row.stores_output, row.summary) == (0, 0, 0, True, "g2")
    assert row.receptive_field.size == (1, 1)
    for input_shape, message in [
        ([6, 4, 4], "channels must divide by groups, got 6 channels and groups=4 (input (6, 4, 4))"),
        ([8], "expects input (C, *spatial) as nn.ChannelShuffle does, got (8,)"),
    ]:
        with pytest.raises(ShapeError) as caught:
            archcalc.analyze(_net(input_shape, {"type": "channel_shuffle", "groups": 4}))
        assert str(caught.value).endswith(f'(name="channel_shuffle1", type="channel_shuffle"): {message}')


@st.composite
def _pads(draw):
    """A random valid pad: mode, input (C, *spatial) of 1 to 3 axes, and (before, after) per axis
    within PyTorch's limits (reflect < the size, circular <= the size)."""
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    sizes = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    limit = {"reflect": lambda n: n - 1, "circular": lambda n: n}.get(mode, lambda n: 6)
    pads = [[draw(st.integers(0, limit(n))), draw(st.integers(0, limit(n)))] for n in sizes]
    value = draw(st.sampled_from([0.0, -2.5])) if mode == "constant" else 0.0
    return mode, [draw(st.integers(1, 2)), *sizes], pads, value


@settings(max_examples=40, derandomize=True, deadline=None)
@given(case=_pads())
def test_random_pads_match_torch_forward_and_backward(case):
    oracle = pytest.importorskip("tests.torch_oracle")
    torch = oracle.torch
    mode, input_shape, pads, value = case
    graph = _net(input_shape, {"type": "pad", "padding": pads, "mode": mode, "value": value, "name": "pad"})
    executor = Executor(graph, dtype="float64")
    rng = np.random.default_rng(len(input_shape))
    x = rng.standard_normal((2, *input_shape))
    y = executor.forward(x)
    dy = rng.standard_normal(y.shape)
    executor.backward(dy)
    module = oracle.TorchNet(graph).layers["pad"]
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(executor.input_grad, xt.grad.numpy(), rtol=1e-12, atol=1e-12)

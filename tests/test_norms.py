"""Layer, group and instance norm: figures by hand, errors, and what the registry-wide tests
cannot reach (instance norm's running statistics, which need non-trivial starting values)."""

from __future__ import annotations

import numpy as np
import pytest

import archcalc
from archcalc.errors import ShapeError, SpecError
from archcalc.execute import Executor, gradcheck
from archcalc.spec import from_dict


def _net(input_shape, *layers):
    return from_dict({"name": "t", "input": list(input_shape), "layers": list(layers)})


def test_convnext_stem_layernorm_and_resnet_groupnorm_by_hand():
    # ConvNeXt-T: LayerNorm2d(96, eps=1e-6) after the 4x4/4 stem on 224x224: (96, 56, 56)
    net = _net([96, 56, 56], {"type": "layernorm", "eps": 1e-6, "name": "ln"},
               {"type": "groupnorm", "num_groups": 32, "name": "gn"},
               {"type": "groupnorm", "num_groups": 32, "affine": False, "name": "gn_plain"},
               {"type": "layernorm", "normalized_shape": [56, 56], "name": "ln_hw"},
               {"type": "layernorm", "normalized_shape": 56, "bias": False, "name": "ln_w"},
               {"type": "layernorm", "elementwise_affine": False, "name": "ln_plain"})
    rows = {row.name: row for row in archcalc.analyze(net).layers}
    values = 96 * 56 * 56
    assert rows["ln"].params == 2 * 96 == 192 and rows["ln"].buffers == 0
    assert rows["ln"].other_ops == 7 * values  # 5 for the statistics and division, a scale, a shift
    assert rows["gn"].params == 2 * 96 and rows["gn"].other_ops == 7 * values
    assert rows["gn_plain"].params == 0 and rows["gn_plain"].other_ops == 5 * values
    assert rows["ln_hw"].params == 2 * 56 * 56
    assert rows["ln_w"].params == 56 and rows["ln_w"].other_ops == 6 * values
    assert rows["ln_plain"].params == 0 and rows["ln_plain"].other_ops == 5 * values
    assert all(row.macs == 0 and row.stores_output for row in rows.values())
    assert rows["ln"].summary == "over C" and rows["ln_hw"].summary == "over 56x56" and rows["gn"].summary == "32 groups"


def test_instancenorm_figures_by_hand():
    net = _net([64, 32, 32], {"type": "instancenorm", "name": "plain"},
               {"type": "instancenorm", "affine": True, "name": "affine"},
               {"type": "instancenorm", "track_running_stats": True, "name": "tracked"},
               {"type": "instancenorm", "affine": True, "track_running_stats": True, "name": "both"})
    rows = {row.name: row for row in archcalc.analyze(net).layers}
    values = 64 * 32 * 32
    assert (rows["plain"].params, rows["plain"].buffers, rows["plain"].other_ops) == (0, 0, 5 * values)
    assert (rows["affine"].params, rows["affine"].buffers, rows["affine"].other_ops) == (128, 0, 7 * values)
    # inference with running statistics: subtract and divide, as batch norm
    assert (rows["tracked"].params, rows["tracked"].buffers, rows["tracked"].other_ops) == (0, 128, 2 * values)
    assert (rows["both"].params, rows["both"].buffers, rows["both"].other_ops) == (128, 128, 4 * values)
    assert rows["both"].summary == "affine, running stats" and rows["plain"].summary == ""


@pytest.mark.parametrize(("layer", "input_shape", "error", "message"), [
    ({"type": "groupnorm", "num_groups": 4}, [6, 3, 3], ShapeError,
     'layers[0] (name="groupnorm1", type="groupnorm"): channels must divide by num_groups, got 6 channels and '
     "num_groups=4 (input (6, 3, 3))"),
    ({"type": "groupnorm"}, [6, 3, 3], SpecError,
     'layers[0] (name="groupnorm1", type="groupnorm"): num_groups is required (number of channel groups; must divide the channels)'),
    ({"type": "groupnorm", "num_groups": 0}, [6, 3, 3], SpecError,
     'layers[0] (name="groupnorm1", type="groupnorm"): num_groups must be a positive int, got 0'),
    ({"type": "layernorm", "normalized_shape": [4]}, [6, 3, 3], ShapeError,
     'layers[0] (name="layernorm1", type="layernorm"): normalized_shape [4] must equal the sizes of the input\'s last '
     "1 axes, got input (6, 3, 3); null normalises over the channel axis"),
    ({"type": "layernorm", "normalized_shape": [1, 6, 3, 3]}, [6, 3, 3], ShapeError,
     'layers[0] (name="layernorm1", type="layernorm"): normalized_shape [1, 6, 3, 3] must equal the sizes of the input\'s '
     "last 4 axes, got input (6, 3, 3); null normalises over the channel axis"),
    ({"type": "layernorm", "normalized_shape": "C"}, [6, 3, 3], SpecError,
     'layers[0] (name="layernorm1", type="layernorm"): normalized_shape must be a positive int or a list of 1 to 4 of '
     "them (the trailing axes' sizes), got 'C'"),
    ({"type": "layernorm", "normalized_shape": [3, 0]}, [6, 3, 3], SpecError,
     'layers[0] (name="layernorm1", type="layernorm"): normalized_shape must be a positive int or a list of 1 to 4 of '
     "them (the trailing axes' sizes), got [3, 0]"),
    ({"type": "layernorm", "eps": 0}, [6, 3, 3], SpecError,
     'layers[0] (name="layernorm1", type="layernorm"): eps must be a finite number > 0, got 0'),
    ({"type": "instancenorm"}, [6], ShapeError,
     'layers[0] (name="instancenorm1", type="instancenorm"): expects input (C, *spatial) with 1 to 3 spatial axes, got (6,)'),
    ({"type": "instancenorm", "track_running_stats": True}, [6, 1, 1], ShapeError,
     'layers[0] (name="instancenorm1", type="instancenorm"): needs more than 1 position per channel (each channel is '
     "normalised over its own positions; PyTorch refuses it in training), got (6, 1, 1)"),
    ({"type": "instancenorm", "momentum": 1.5}, [6, 4], SpecError,
     'layers[0] (name="instancenorm1", type="instancenorm"): momentum must be a finite number >= 0 and <= 1, got 1.5'),
])
def test_bad_attributes_and_shapes_are_one_clear_line(layer, input_shape, error, message):
    with pytest.raises(error) as caught:
        archcalc.analyze(_net(input_shape, layer))
    assert str(caught.value) == f"spec '<dict>': {message}"


def test_channels_first_layernorm_is_convnexts_by_hand():
    """ConvNeXt's LayerNorm2d: per position, over the channels, weight and bias per channel."""
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 5))
    executor = Executor(_net([4, 3, 5], {"type": "layernorm", "eps": 1e-6, "name": "ln"}), dtype="float64")
    weight, bias = np.arange(1.0, 5.0), np.arange(4.0) / 10
    executor.params["ln.weight"][:], executor.params["ln.bias"][:] = weight, bias
    y = executor.forward(x)
    for n in range(2):
        for h in range(3):
            for w in range(5):
                column = x[n, :, h, w]
                expected = (column - column.mean()) / np.sqrt(column.var() + 1e-6) * weight + bias
                np.testing.assert_allclose(y[n, :, h, w], expected, rtol=1e-12)


def test_groupnorm_of_one_group_is_a_layernorm_over_everything_and_of_c_groups_an_instancenorm():
    x = np.random.default_rng(1).standard_normal((3, 6, 4, 2))
    one = Executor(_net([6, 4, 2], {"type": "groupnorm", "num_groups": 1, "affine": False}), dtype="float64").forward(x)
    whole = Executor(_net([6, 4, 2], {"type": "layernorm", "normalized_shape": [6, 4, 2], "elementwise_affine": False}),
                     dtype="float64").forward(x)
    np.testing.assert_allclose(one, whole, rtol=1e-12, atol=1e-12)
    per_channel = Executor(_net([6, 4, 2], {"type": "groupnorm", "num_groups": 6, "affine": False}), dtype="float64").forward(x)
    instance = Executor(_net([6, 4, 2], {"type": "instancenorm"}), dtype="float64").forward(x)
    np.testing.assert_allclose(per_channel, instance, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("input_shape", [[3, 5], [2, 4, 3], [2, 3, 2, 3]], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("affine", [False, True], ids=["plain", "affine"])
def test_instancenorm_running_statistics_match_torch(input_shape, affine):
    """Two training steps move the running averages as torch's do (from non-trivial values), then
    inference normalises by them: outputs, input and parameter gradients equal torch's."""
    oracle = pytest.importorskip("tests.torch_oracle")
    torch = oracle.torch
    graph = _net(input_shape, {"type": "instancenorm", "name": "norm", "affine": affine, "track_running_stats": True,
                               "momentum": 0.3})
    executor = Executor(graph, seed=0, dtype="float64")
    rng = np.random.default_rng(2)
    executor.params["norm.running_mean"][:] = rng.standard_normal(input_shape[0])
    executor.params["norm.running_var"][:] = rng.uniform(0.5, 2.0, input_shape[0])
    if affine:
        executor.params["norm.weight"][:] = rng.standard_normal(input_shape[0])
        executor.params["norm.bias"][:] = rng.standard_normal(input_shape[0])
    net = oracle.TorchNet(graph).double()
    oracle.load_params(net, executor.params)
    module = net.layers["norm"]
    for training in (True, True, False):
        executor.train() if training else executor.eval()
        net.train(training)
        x = rng.standard_normal((4, *input_shape)) * 3 + 1
        dy = rng.standard_normal((4, *input_shape))
        y = executor.forward(x)
        grads = executor.backward(dy)
        xt = torch.tensor(x, requires_grad=True)
        for p in net.parameters():
            p.grad = None
        yt = net(xt)["norm"]
        yt.backward(torch.tensor(dy))
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(executor.input_grad, xt.grad.numpy(), rtol=1e-9, atol=1e-11)
        for name in ("running_mean", "running_var"):
            np.testing.assert_allclose(executor.params[f"norm.{name}"], getattr(module, name).numpy(), rtol=1e-12)
        assert set(grads) == ({"norm.weight", "norm.bias"} if affine else set())
        for name, grad in grads.items():
            np.testing.assert_allclose(grad, getattr(module, name.split(".")[1]).grad.numpy(), rtol=1e-9, atol=1e-11)


def test_instancenorm_running_statistics_params_buffers_and_field_match_torch():
    oracle = pytest.importorskip("tests.torch_oracle")
    graph = _net([3, 6, 6], {"type": "conv", "filters": 2, "kernel": 3, "name": "conv"},
                 {"type": "instancenorm", "affine": True, "track_running_stats": True, "name": "norm"})
    row = archcalc.analyze(graph).layer("norm")
    assert (row.params, row.buffers) == oracle.layer_param_count(oracle.TorchNet(graph), "norm") == (4, 4)
    # inference reads the running statistics only: the field is the conv's, unchanged
    assert row.receptive_field.size == (3, 3) and not row.receptive_field.is_global
    centre, measured = oracle.measured_fields(graph, ["norm"])["norm"]
    assert measured == tuple((c, c + 2) for c in centre)
    plain = _net([3, 6, 6], {"type": "conv", "filters": 2, "kernel": 3}, {"type": "instancenorm", "name": "norm"})
    assert archcalc.analyze(plain).layer("norm").receptive_field.is_global
    assert oracle.measured_fields(plain, ["norm"])["norm"][1] == ((0, 5), (0, 5))


def test_layernorm_over_some_spatial_axes_reads_those_axes_whole():
    oracle = pytest.importorskip("tests.torch_oracle")
    graph = _net([2, 5, 7], {"type": "layernorm", "normalized_shape": 7, "name": "norm"})
    field = archcalc.analyze(graph).layer("norm").receptive_field
    # the whole width (7) at stride 0, as a linear layer on that axis: not global, the height untouched
    assert (field.size, field.stride) == ((1, 7), (1, 0)) and not field.is_global
    assert oracle.measured_fields(graph, ["norm"])["norm"][1] == ((2, 2), (0, 6))


@pytest.mark.parametrize("layer", [
    {"type": "instancenorm", "track_running_stats": True, "affine": True},
    {"type": "layernorm", "normalized_shape": [4, 4]},
    {"type": "groupnorm", "num_groups": 3},
])
def test_gradcheck_in_training_mode(layer):
    report = gradcheck(_net([6, 4, 4], {"type": "conv", "filters": 6, "kernel": 1}, layer), batch=3)
    assert report.passed, str(report)


def test_float32_stays_float32():
    x = np.random.default_rng(0).standard_normal((2, 6, 3, 3)).astype("float32")
    for layer in ({"type": "layernorm"}, {"type": "groupnorm", "num_groups": 2}, {"type": "instancenorm", "affine": True}):
        executor = Executor(_net([6, 3, 3], layer), dtype="float32")
        y = executor.forward(x)
        assert y.dtype == np.float32
        executor.backward(np.ones_like(y))
        assert executor.input_grad.dtype == np.float32

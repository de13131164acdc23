"""The ``torchinfo`` preset against torchinfo itself: every zoo model and every example of every op.

torchinfo (a test-only dependency) summarises the module archcalc exports
(``archcalc.exporters.torch``), whose module names are the layer names; its ``summary_list`` holds
one LayerInfo per module call, with that call's ``macs``, mapped to archcalc's layers through the
module's dotted name. ``LayerInfo.calculate_macs`` reads only parameter counts and the output's
shape, never a value, so the models are built and run on torch's meta device;
:func:`test_the_meta_device_changes_no_figure` checks that on real tensors (tests/peer_oracle.py's
cached exports) torchinfo counts the same.
"""

from __future__ import annotations

import pytest

import archcalc
from archcalc import conventions
from archcalc.errors import SpecError
from archcalc.ops import REGISTRY
from tests.helpers import single_op_graph
from tests.peer_oracle import on_meta, per_layer

peer_oracle = pytest.importorskip("tests.peer_oracle")
torchinfo = pytest.importorskip("torchinfo")
torch = peer_oracle.torch

PRESET = conventions.get("torchinfo")

#: Op types the tool cannot be run on, and why (each asserted below).
UNEXPORTABLE = {"opaque": "an op archcalc has no rule for: archcalc exports no torch module for it, so no tool runs"}


def torchinfo_per_module(module, x) -> tuple[int, dict[str, int]]:
    """summary(...).total_mult_adds and the leaf calls' macs summed by dotted module name."""
    names = {id(m): name for name, m in module.named_modules()}
    summary = torchinfo.summary(module, input_data=[x], verbose=0, device=x.device)
    per_module: dict[str, int] = {}
    for info in summary.summary_list:
        if info.is_leaf_layer:
            name = names[id(info.module)]
            per_module[name] = per_module.get(name, 0) + info.macs
    return summary.total_mult_adds, per_module


def assert_reproduces(model, batch=1):
    graph, module, x = on_meta(model, batch)
    total, per_module = torchinfo_per_module(module, x)
    counted = conventions.count(graph, PRESET, batch=batch)
    assert counted.forward == total
    assert counted.per_layer() == per_layer(graph, per_module)
    return counted


@pytest.mark.parametrize("model", archcalc.zoo.names())
def test_torchinfo_total_and_every_layer_on_every_zoo_model(model):
    assert_reproduces(model)


@pytest.mark.parametrize("op_type", sorted(REGISTRY))
def test_torchinfo_on_every_example_of_every_op(op_type):
    """Each example as a one-layer network (a merge fed by 1x1 convs): the rules were found here."""
    for example in REGISTRY[op_type].examples:
        graph = single_op_graph(op_type, example)
        if op_type in UNEXPORTABLE:
            with pytest.raises(SpecError, match="cannot export to PyTorch"):
                on_meta(graph)
            assert conventions.count(graph, PRESET).layers[graph.nodes[-1].name].forward == 0
            continue
        assert_reproduces(graph)


def test_the_meta_device_changes_no_figure():
    """Real tensors (peer_oracle's cached exports, batch 1) give torchinfo's figures on the meta device."""
    for model in ("lenet5", "squeezenet1_1", "inception-reduced"):
        _, module, x = peer_oracle.exported(model)
        assert torchinfo_per_module(module, x) == torchinfo_per_module(*on_meta(model)[1:])


def test_a_batch_scales_every_figure():
    """torchinfo counts per call with the batch axis (output_size[0] x parameters; a conv's positions
    include the batch): a batch of 3 is 3 times the batch of 1, layer by layer."""
    three = assert_reproduces("googlenet", batch=3)
    one = assert_reproduces("googlenet")
    assert three.per_layer() == {name: 3 * macs for name, macs in one.per_layer().items()}


def _one(layer, shape):
    return archcalc.spec.from_dict({"name": "one", "input": list(shape), "layers": [{**layer, "name": "one1"}]})


def test_a_channels_last_linear_is_counted_once_per_sample():
    """ConvNeXt's pointwise Linear on (7, 7, 96) -> 384: 96 x 384 multiply-adds at each of 49
    positions (archcalc: 1,806,336); torchinfo counts the weights and biases once: 37,248."""
    graph = _one({"type": "linear", "units": 384}, (7, 7, 96))
    assert archcalc.analyze(graph).layer("one1").macs == 49 * 96 * 384 == 1_806_336
    assert assert_reproduces(graph).forward == 96 * 384 + 384 == 37_248


def test_a_conv_counts_its_bias_once_per_output_position():
    """3 -> 4 channels, 3x3, padding 1 on 8x8: (4 x 27 weights + 4 biases) x 64 positions = 7,168,
    archcalc's 6,912 MACs plus the 256 bias adds."""
    graph = _one({"type": "conv", "filters": 4, "kernel": 3, "padding": 1}, (3, 8, 8))
    assert archcalc.analyze(graph).layer("one1").macs == 4 * 27 * 64 == 6912
    assert assert_reproduces(graph).forward == (4 * 27 + 4) * 64 == 6912 + 256


def test_transposed_conv_is_counted_at_its_output_positions():
    """4 -> 8 per axis, kernel 4, stride 2, 3 -> 4 channels: each of 3x4x4 inputs scatters a 4x4x4
    kernel, 3,072 MACs (archcalc); torchinfo counts (3x4x16 weights + 4 biases) at 8x8 positions."""
    graph = _one({"type": "conv_transpose", "filters": 4, "kernel": 4, "stride": 2, "padding": 1}, (3, 4, 4))
    assert archcalc.analyze(graph).layer("one1").macs == 3 * 4 * 4 * 4 * 16 == 3072
    assert assert_reproduces(graph).forward == (3 * 4 * 16 + 4) * 64 == 12_544


def test_a_norm_counts_its_scale_and_shift_once_per_sample():
    """BatchNorm2d(16) on 16x8x8: 2 x 16 = 32, whatever the map's size; GroupNorm and an affine
    InstanceNorm likewise; a LayerNorm over (8, 8) its 2 x 64 scales and shifts."""
    for layer in ({"type": "batchnorm"}, {"type": "groupnorm", "num_groups": 4},
                  {"type": "instancenorm", "affine": True}):
        assert assert_reproduces(_one(layer, (16, 8, 8))).forward == 32
    assert assert_reproduces(_one({"type": "layernorm", "normalized_shape": [8, 8]}, (16, 8, 8))).forward == 128


# --- torchvision's own models (where torchvision is importable: CI, the dev machine's /tmp/tvenv) ---

def _twins():
    try:
        from tests.torchvision_oracle import TWINS
    except ImportError:
        return ["torchvision-not-importable"]
    return sorted(TWINS)


@pytest.mark.parametrize("name", _twins())
def test_torchinfo_on_torchvision_models_equals_the_preset_on_the_zoo_spec(name):
    """torchinfo counts only modules with parameters, and torchvision's and the zoo's hold the same
    ones: every twin agrees, r3d_18's Conv3DSimple included (its class name contains "Conv")."""
    tv_oracle = pytest.importorskip("tests.torchvision_oracle", reason="torchvision is not importable")
    with torch.device("meta"):
        model = tv_oracle.TWINS[name]().eval()
    graph = archcalc.load(name)
    total, _ = torchinfo_per_module(model, torch.empty(1, *graph.input_shape, device="meta"))
    assert total == conventions.count(graph, PRESET).forward

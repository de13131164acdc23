"""The ``thop`` preset against thop itself: every zoo model and every example of every op.

thop (a test-only dependency) runs on the module archcalc exports (``archcalc.exporters.torch``),
whose module names are the layer names, so its per-module ``total_ops`` (``ret_layer_info``) map
to archcalc's layers by name. thop's hooks read only the shapes of a module's input and output
(thop/vision/basic_hooks.py), never the values, so the models are built and run on torch's meta
device (no weights, no arithmetic: the whole zoo in seconds); :func:`test_the_meta_device_changes_no_figure`
checks that on real tensors (tests/peer_oracle.py's cached exports) thop counts the same.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import pytest

import archcalc
from archcalc import conventions
from archcalc.errors import ShapeError, SpecError
from archcalc.ops import REGISTRY
from archcalc.passes import infer_shapes
from tests.helpers import single_op_graph
from tests.peer_oracle import on_meta, per_layer

peer_oracle = pytest.importorskip("tests.peer_oracle")
thop = pytest.importorskip("thop")
torch = peer_oracle.torch

PRESET = conventions.get("thop")

#: Op types the tool cannot be run on, and why (each asserted below).
UNEXPORTABLE = {"opaque": "an op archcalc has no rule for: archcalc exports no torch module for it, so no tool runs"}


def thop_per_module(module, x) -> tuple[float, dict[str, float]]:
    """thop.profile's total and each leaf's total_ops by dotted module name (its ret_layer_info)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "mode trilinear is not implemented yet", distutils
        total, _, info = thop.profile(module, inputs=(x,), verbose=False, ret_layer_info=True)
    per_module: dict[str, float] = {}

    def walk(tree, prefix):
        for key, (ops, _params, children) in tree.items():
            if children:
                walk(children, (*prefix, key))
            else:
                per_module[".".join((*prefix, key))] = ops

    walk(info, ())
    return total, per_module


def assert_reproduces(model, batch=1):
    graph, module, x = on_meta(model, batch)
    total, per_module = thop_per_module(module, x)
    counted = conventions.count(graph, PRESET, batch=batch)
    assert total == int(total)  # thop's float64 sum of integer figures, exact below 2**53
    assert counted.forward == int(total)
    assert counted.per_layer() == per_layer(graph, per_module)
    return counted


@pytest.mark.parametrize("model", archcalc.zoo.names())
def test_thop_total_and_every_layer_on_every_zoo_model(model):
    assert_reproduces(model)


@pytest.mark.parametrize("op_type", sorted(REGISTRY))
def test_thop_on_every_example_of_every_op(op_type):
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
    """Real tensors (peer_oracle's cached exports, batch 1) give thop's figures on the meta device."""
    for model in ("lenet5", "squeezenet1_1", "inception-reduced"):
        _, module, x = peer_oracle.exported(model)
        real = thop_per_module(module, x)
        assert real == thop_per_module(*on_meta(model)[1:])


def test_a_batch_scales_every_integer_figure():
    """mobilenet_v2's figures are all ints per sample (its global pool's kernel is 7*7): thop on a
    batch of 3 is 3 times the batch of 1."""
    assert assert_reproduces("mobilenet_v2", batch=3).forward == 3 * assert_reproduces("mobilenet_v2").forward


def _one(layer, shape):
    return archcalc.spec.from_dict({"name": "one", "input": list(shape), "layers": [{**layer, "name": "one1"}]})


def test_adaptive_average_pool_is_float64_truncated_once_per_call_over_the_batch():
    """13 -> 6 on 2 channels: (13/6)^2 + 1 = 205/36 per output, times 72 outputs = 410 exactly; thop
    computes it in float64, where 13/6 rounds down, gets 409.99999999999994 and truncates it to 409.
    On a batch of 2 it truncates 819.9999999999999 once, to 819, where the preset (per sample times
    the batch) gives 818: the quirk the preset states."""
    graph = _one({"type": "adaptive_avgpool", "output_size": 6}, (2, 13, 13))
    assert (Fraction(13, 6) ** 2 + 1) * 72 == 410
    assert (13 / 6 * (13 / 6) + 1) * 72 == 409.99999999999994
    assert assert_reproduces(graph).forward == 409
    _, module, x = on_meta(graph, batch=2)
    assert thop_per_module(module, x)[0] == 819 == conventions.count(graph, PRESET, batch=2).forward + 1


def test_adaptive_pool_float_arithmetic_is_thops_own():
    """vgg16-cifar's AdaptiveAvgPool2d(7) on a 512x1x1 map: (1/7)^2 + 1 per output in float64 times
    25,088 outputs is 25,600 exactly (1/49 of 25,088 = 512); truncating 25599.999... would give 1 less."""
    counted = assert_reproduces("vgg16-cifar")
    assert counted.layers["avgpool"].forward == 25088 + 512


def test_transposed_conv_is_counted_stride_squared_too_high():
    """4 -> 8 per axis, kernel 4, stride 2, 3 -> 4 channels: each of 3x4x4 inputs scatters a 4x4x4
    kernel, 3,072 MACs (archcalc); thop applies the conv formula to the 4x8x8 output: 256 x 3 x 16."""
    graph = _one({"type": "conv_transpose", "filters": 4, "kernel": 4, "stride": 2, "padding": 1}, (3, 4, 4))
    assert archcalc.analyze(graph).layer("one1").macs == 3 * 4 * 4 * 4 * 16 == 3072
    assert assert_reproduces(graph).forward == 4 * 8 * 8 * 3 * 16 == 4 * 3072


def test_asymmetric_padding_average_pool_counts_both_calls_of_the_export():
    """kernel 3, stride 2, "same" on 8x7 pads (0, 1) and (1, 1): the export divides by the pool of a
    one-channel mask of real inputs, a second AvgPool2d call: 2x4x4 + 1x4x4 outputs."""
    graph = _one({"type": "avgpool", "kernel": 3, "stride": 2, "padding": "same"}, (2, 8, 7))
    assert assert_reproduces(graph).forward == 32 + 16


# --- torchvision's own models (where torchvision is importable: CI, the dev machine's /tmp/tvenv) ---

#: Why thop on torchvision's model differs from thop on archcalc's export, and what differs: the
#: figure thop counts in torchvision's model only, and which of the spec's layers thop does not see
#: there (("name", layer names), ("type", an op type), or ("class", a torchvision module class)).
TORCHVISION_DIFFERENCES = {
    **{name: ("torchvision runs AdaptiveAvgPool2d(7) on the 7x7 map, an identity the zoo spec leaves out: "
              "thop counts (1 + 1) per output of 512x7x7", 2 * 512 * 7 * 7, None)
       for name in ("vgg11", "vgg13", "vgg16", "vgg19")},
    "densenet121": ("torchvision pools with F.adaptive_avg_pool2d, a function thop cannot hook", 0, ("name", ["avgpool"])),
    "mobilenet_v2": ("torchvision pools with nn.functional.adaptive_avg_pool2d, a function thop cannot hook", 0,
                     ("name", ["avgpool"])),
    "inception_v3": ("torchvision's Inception blocks pool with F.avg_pool2d, a function thop cannot hook", 0,
                     ("type", "avgpool")),
    "r3d_18": ("torchvision's Conv3DSimple subclasses nn.Conv3d and thop looks the exact class up: only the stem "
               "and the downsample convs (plain nn.Conv3d) count", 0, ("class", "Conv3DSimple")),
}


def _torchvision_twin(name):
    tv_oracle = pytest.importorskip("tests.torchvision_oracle", reason="torchvision is not importable")
    with torch.device("meta"):
        return tv_oracle.TWINS[name]().eval()


def _twins():
    try:
        from tests.torchvision_oracle import TWINS
    except ImportError:
        return ["torchvision-not-importable"]
    return sorted(TWINS)


@pytest.mark.parametrize("name", _twins())
def test_thop_on_torchvision_models_differs_only_where_explained(name):
    """thop on torchvision's model (meta device) equals the preset on the zoo spec, but for the
    differences of TORCHVISION_DIFFERENCES, each computed here from the layers concerned."""
    model = _torchvision_twin(name)
    graph = archcalc.load(name)
    tv_total, tv_modules = thop_per_module(model, torch.empty(1, *graph.input_shape, device="meta"))
    counted = conventions.count(graph, PRESET)
    expected = counted.forward
    if name in TORCHVISION_DIFFERENCES:
        _reason, extra, unseen = TORCHVISION_DIFFERENCES[name]
        missing = []
        if unseen and unseen[0] == "name":
            missing = unseen[1]
        elif unseen and unseen[0] == "type":
            missing = [node.name for node in graph.nodes[1:] if node.type == unseen[1]]
        elif unseen:  # the zoo's layer names are torchvision's module names here
            classes = dict(model.named_modules())
            missing = [n for n in tv_modules if type(classes[n]).__name__ == unseen[1]]
            assert all(tv_modules[n] == 0 for n in missing)
        assert (extra > 0) != bool(missing) and all(counted.layers[layer].forward > 0 for layer in missing)
        expected += extra - sum(counted.layers[layer].forward for layer in missing)
    assert tv_total == expected



def test_the_quirks_figures_are_the_counted_ones():
    """The r3d_18 figures the preset's quirks quote: archcalc's MACs and thop on the export (thop on
    torchvision's model, 1,591,637,504, is checked where torchvision is importable)."""
    text = " ".join(" ".join(quirk) for quirk in PRESET.quirks)
    assert f"{assert_reproduces('r3d_18').forward:,}" in text
    assert f"{archcalc.analyze('r3d_18').totals.macs:,}" in text


@pytest.mark.parametrize("model", ["resnet50", "mobilenet_v2"])
def test_the_quirks_batchnorm_share_is_the_counted_one(model):
    """The quirk's figures: thop's batchnorm total (4 per element of every batchnorm input) beside
    archcalc's MACs."""
    graph = archcalc.load(model)
    layers = infer_shapes(graph)
    batchnorm = sum(4 * math.prod(layers[node.name].in_shape) for node in graph.nodes[1:] if node.type == "batchnorm")
    counted = assert_reproduces(model)
    assert batchnorm == sum(counted.layers[node.name].forward for node in graph.nodes[1:] if node.type == "batchnorm")
    text = " ".join(" ".join(quirk) for quirk in PRESET.quirks)
    assert f"{batchnorm:,} to {model}'s {archcalc.analyze(graph).totals.macs:,}" in text


def test_thop_on_torchvisions_r3d_18_is_the_quirks_figure():
    model = _torchvision_twin("r3d_18")
    total, _ = thop_per_module(model, torch.empty(1, *archcalc.load("r3d_18").input_shape, device="meta"))
    assert f"thop gives torchvision's r3d_18 {int(total):,}," in " ".join(" ".join(q) for q in PRESET.quirks)


def test_random_adaptive_and_padded_average_pools():
    """The two rules with arithmetic of their own, on random layers (fixed seed): the adaptive pool's
    float64 (in/out + 1) truncated, in 1D, 2D and 3D; the average pool counted once or (asymmetric
    padding, real-input divisor) twice."""
    import random

    rng = random.Random(13)
    padded = 0
    for _ in range(40):
        rank = rng.choice((1, 2, 3))
        shape = (rng.randint(1, 5), *(rng.randint(1, 12) for _ in range(rank)))
        out = [rng.randint(1, 12) for _ in range(rank)]
        assert_reproduces(_one({"type": "adaptive_avgpool", "output_size": out}, shape))
        kernel = [rng.randint(1, 3) for _ in range(rank)]
        padding = [[rng.randint(0, k // 2), rng.randint(0, k // 2)] for k in kernel]
        pool = {"type": "avgpool", "kernel": kernel, "stride": rng.randint(1, 2), "padding": padding,
                "count_include_pad": rng.random() < 0.3}
        if rng.random() < 0.2:
            pool["divisor_override"] = 2
        graph = _one(pool, (shape[0], *(rng.randint(3, 9) for _ in range(rank))))
        try:
            infer_shapes(graph)
        except ShapeError:  # a window wholly in the padding (archcalc refuses it, as PyTorch does)
            continue
        padded += 1
        assert_reproduces(graph)
    assert padded > 20

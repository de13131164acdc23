"""Caffe prototxt import (archcalc/importers/caffe.py) against the zoo, hand arithmetic and
Caffe's own formulas.

The four whole networks (tests/data/caffe/*.prototxt, written by make_prototxts.py in the
published deploy files' layout) import to the zoo's params and MACs where the architectures
are the same (BVLC AlexNet = alexnet-grouped, VGG-16, BVLC GoogLeNet) and to hand arithmetic
where they differ (Kaiming He's ResNet-50: conv1's bias, the stride in the 1x1 conv). Every
layer's output shape is checked. Then one small prototxt per layer type and per error, with
the messages asserted whole.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("google.protobuf")

import archcalc  # noqa: E402
from archcalc import formulas  # noqa: E402
from archcalc.errors import MissingToolError, SpecError  # noqa: E402
from archcalc.importers import caffe  # noqa: E402
from archcalc.importers.caffe import caffe_pool_size, from_caffe  # noqa: E402

DATA = Path(__file__).parent / "data" / "caffe"


def analysis(path, input_shape=None, partial=False):
    return archcalc.analyze(from_caffe(path, input_shape, partial=partial))


def shapes(result):
    return {row.name: tuple(row.output_shape) for row in result.layers}


def write(tmp_path, text, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def net(body, shape=(1, 3, 8, 8)):
    """A prototxt with an Input layer 'data' of the given (batch-first) shape, then ``body``."""
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'name: "t"\nlayer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n{body}'


def layer(name, kind, bottom="data", top=None, body="", tops=None, bottoms=None):
    bottoms = [bottom] if bottoms is None else bottoms
    tops = [top or name] if tops is None else tops
    links = "".join(f' bottom: "{b}"' for b in bottoms) + "".join(f' top: "{t}"' for t in tops)
    return f'layer {{ name: "{name}" type: "{kind}"{links} {body} }}\n'


def one(tmp_path, body, shape=(1, 3, 8, 8), **kwargs):
    """Import a net of one or more layers; the analysis."""
    return analysis(write(tmp_path, net(body, shape)), **kwargs)


# ---- the four networks ---------------------------------------------------------------------


def test_generated_prototxts_are_up_to_date():
    sys.path.insert(0, str(DATA))
    try:
        import make_prototxts
    finally:
        sys.path.remove(str(DATA))
    for name in ("alexnet", "vgg16", "googlenet", "resnet50"):
        text = (DATA / f"{name}.prototxt").read_text(encoding="utf-8")
        assert text.split("\n", 1)[1] == getattr(make_prototxts, name)()


def test_bvlc_alexnet_equals_alexnet_grouped():
    result = analysis(DATA / "alexnet.prototxt")
    zoo = archcalc.analyze(archcalc.load("alexnet-grouped"))
    assert result.totals.params == zoo.totals.params == 60_965_224  # Caffe bvlc_alexnet's published count
    assert result.totals.macs == zoo.totals.macs
    assert result.totals.buffers == 0
    # every layer, by hand: conv1 11x11/4 on 227: (227 - 11)/4 + 1 = 55; 3x3/2 pools: 55 -> 27 -> 13 -> 6
    # (Caffe's ceil and floor agree on all three); BVLC normalises before pooling (the zoo after)
    expected = {
        "input": (3, 227, 227), "conv1": (96, 55, 55), "relu1": (96, 55, 55), "norm1": (96, 55, 55), "pool1": (96, 27, 27),
        "conv2": (256, 27, 27), "relu2": (256, 27, 27), "norm2": (256, 27, 27), "pool2": (256, 13, 13),
        "conv3": (384, 13, 13), "relu3": (384, 13, 13), "conv4": (384, 13, 13), "relu4": (384, 13, 13),
        "conv5": (256, 13, 13), "relu5": (256, 13, 13), "pool5": (256, 6, 6), "fc6/flatten": (9216,),
        "fc6": (4096,), "relu6": (4096,), "drop6": (4096,), "fc7": (4096,), "relu7": (4096,), "drop7": (4096,),
        "fc8": (1000,), "prob": (1000,),
    }
    assert shapes(result) == expected
    zoo_rows = {row.name: row for row in zoo.layers}
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        assert (result.layer(name).params, result.layer(name).macs) == (zoo_rows[name].params, zoo_rows[name].macs), name
    assert result.layer("conv2").attrs["groups"] == 2


def test_vgg16_v1_layers_equal_the_zoo_layer_for_layer():
    result = analysis(DATA / "vgg16.prototxt")
    zoo = archcalc.analyze(archcalc.load("vgg16"))
    assert (result.totals.params, result.totals.macs) == (zoo.totals.params, zoo.totals.macs) == (138_357_544, 15_470_264_320)
    zoo_rows = {row.name: row for row in zoo.layers}
    named = [row for row in result.layers if re.fullmatch(r"input|conv\d_\d|pool\d|fc\d", row.name)]
    assert len(named) == 1 + 13 + 5 + 3  # input, convs, pools, fcs: named as in the zoo
    for row in named:
        assert (row.output_shape, row.params, row.macs) == (zoo_rows[row.name].output_shape, zoo_rows[row.name].params,
                                                           zoo_rows[row.name].macs), row.name
    # the rest: in-place ReLUs and dropouts keep their producer's shape; fc6's flatten; prob
    rows = {row.name: row for row in result.layers}
    for row in result.layers:
        if row.type in ("relu", "dropout"):
            assert row.output_shape == rows[row.inputs[0]].output_shape
    assert rows["fc6/flatten"].output_shape == (512 * 7 * 7,)
    assert rows["prob"].output_shape == (1000,) and rows["prob"].type == "softmax"
    assert len(result.layers) == len(named) + 13 + 2 + 2 + 1 + 1  # relus, fc relus, dropouts, flatten, prob


def _googlenet_name(zoo_name):
    """The zoo's googlenet layer name -> BVLC's."""
    module = re.fullmatch(r"inception(\d\w)\.(.*)", zoo_name)
    if module is None:
        return {"conv1": "conv1/7x7_s2", "relu1": "conv1/relu_7x7", "pool1": "pool1/3x3_s2", "norm1": "pool1/norm1",
                "conv2_reduce": "conv2/3x3_reduce", "relu2_reduce": "conv2/relu_3x3_reduce", "conv2": "conv2/3x3",
                "relu2": "conv2/relu_3x3", "norm2": "conv2/norm2", "pool2": "pool2/3x3_s2", "pool3": "pool3/3x3_s2",
                "pool4": "pool4/3x3_s2", "pool5": "pool5/7x7_s1", "dropout": "pool5/drop_7x7_s1", "flatten": "loss3/classifier/flatten",
                "fc": "loss3/classifier", "softmax": "prob", "input": "input"}[zoo_name]
    inner = {"branch1.conv1": "1x1", "branch1.relu1": "relu_1x1", "branch2.conv1": "3x3_reduce", "branch2.relu1": "relu_3x3_reduce",
             "branch2.conv2": "3x3", "branch2.relu2": "relu_3x3", "branch3.conv1": "5x5_reduce", "branch3.relu1": "relu_5x5_reduce",
             "branch3.conv2": "5x5", "branch3.relu2": "relu_5x5", "branch4.pool1": "pool", "branch4.conv1": "pool_proj",
             "branch4.relu1": "relu_pool_proj", "concat": "output"}[module.group(2)]
    return f"inception_{module.group(1)}/{inner}"


def test_bvlc_googlenet_equals_the_zoo_layer_for_layer():
    result = analysis(DATA / "googlenet.prototxt")
    zoo = archcalc.analyze(archcalc.load("googlenet"))
    assert (result.totals.params, result.totals.macs) == (zoo.totals.params, zoo.totals.macs) == (6_998_552, 1_582_671_872)
    rows = {row.name: row for row in result.layers}
    assert len(rows) == len(zoo.layers)
    for zoo_row in zoo.layers:
        row = rows[_googlenet_name(zoo_row.name)]
        assert (row.type, row.output_shape, row.params, row.macs) == (zoo_row.type, zoo_row.output_shape, zoo_row.params,
                                                                      zoo_row.macs), zoo_row.name
    # Caffe's ceil rounding, by hand: 112 -> ceil((112 - 3)/2) + 1 = 56 (floor would give 55), 56 -> 28, 28 -> 14, 14 -> 7
    assert [rows[name].output_shape[1] for name in ("pool1/3x3_s2", "pool2/3x3_s2", "pool3/3x3_s2", "pool4/3x3_s2")] == [56, 28, 14, 7]
    assert [rows[name].attrs["ceil_mode"] for name in ("pool1/3x3_s2", "pool2/3x3_s2", "pool3/3x3_s2", "pool4/3x3_s2")] == [True] * 4


def _resnet50_expected_shapes():
    """Every layer of Kaiming He's ResNet-50 by hand: stride 2 in each stage's first 1x1 convs."""
    expected = {"input": (3, 224, 224), "conv1": (64, 112, 112), "bn_conv1": (64, 112, 112), "conv1_relu": (64, 112, 112),
                "pool1": (64, 56, 56)}  # ceil((112 - 3)/2) + 1 = 56, no padding
    size = 56
    for stage, (width, count) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], 2):
        for i in range(count):
            unit = f"{stage}{'abcdef'[i]}"
            if i == 0 and stage > 2:
                size //= 2
            convs = [("branch2a", width), ("branch2b", width), ("branch2c", 4 * width)] + ([("branch1", 4 * width)] if i == 0 else [])
            for branch, channels in convs:
                expected[f"res{unit}_{branch}"] = expected[f"bn{unit}_{branch}"] = (channels, size, size)
                if branch in ("branch2a", "branch2b"):
                    expected[f"res{unit}_{branch}_relu"] = (channels, size, size)
            expected[f"res{unit}"] = expected[f"res{unit}_relu"] = (4 * width, size, size)
    expected.update({"pool5": (2048, 1, 1), "fc1000/flatten": (2048,), "fc1000": (1000,), "prob": (1000,)})
    return expected


def test_kaiming_resnet50_against_the_zoo_and_hand_arithmetic():
    result = analysis(DATA / "resnet50.prototxt")
    assert shapes(result) == _resnet50_expected_shapes()
    zoo = archcalc.analyze(archcalc.load("resnet50")).totals
    # params: torchvision's 25,557,032 + conv1's bias (64): Caffe's ResNet-50 conv1 has one. Each
    # BatchNorm + Scale pair is one batchnorm: 2c learned (the Scale's gamma, beta) and 2c buffers
    assert result.totals.params == zoo.params + 64 == 25_557_096
    assert result.totals.buffers == zoo.buffers == 2 * (64 + sum(w * (1 + 1 + 4) * n + 4 * w for w, n in
                                                                 [(64, 3), (128, 4), (256, 6), (512, 3)]))
    # MACs: torchvision (v1.5) strides the 3x3 conv, Caffe (v1) the first 1x1 conv of stages 3-5,
    # which then runs on a quarter of the positions: 1x1 c_in -> w at (2s)^2 vs s^2, for
    # (c_in, w, s) = (256, 128, 28), (512, 256, 14), (1024, 512, 7)
    saved = sum(c_in * w * ((2 * s) ** 2 - s**2) for c_in, w, s in [(256, 128, 28), (512, 256, 14), (1024, 512, 7)])
    assert saved == 231_211_008
    assert result.totals.macs == zoo.macs - saved == 3_857_973_248
    rows = {row.name: row for row in result.layers}
    assert rows["bn_conv1"].type == "batchnorm" and "scale_conv1" not in rows
    assert rows["bn_conv1"].params == 128 and rows["bn_conv1"].buffers == 128
    assert rows["res2a"].type == "add" and rows["res2a"].inputs == ("bn2a_branch1", "bn2a_branch2c")
    assert rows["pool1"].attrs["ceil_mode"] is True


# ---- Caffe's pooling rounding against archcalc's ceil_mode --------------------------------


def test_caffe_pool_rounding_agrees_with_ceil_mode_except_a_window_past_an_unpadded_input():
    disagree = []
    for size in range(1, 24):
        for kernel in range(1, 6):
            for stride in range(1, 5):
                for pad in range(0, kernel // 2 + 1):
                    if size + 2 * pad < kernel:
                        continue
                    caffe_size = caffe_pool_size(size, kernel, stride, pad, True, pad > 0)
                    ours = formulas.conv_output_size(size, kernel, stride, pad, ceil_mode=True)
                    if caffe_size != ours:
                        disagree.append((size, kernel, stride, pad))
                        # Caffe clips only with padding: its last window starts past the input
                        assert pad == 0 and (caffe_size - 1) * stride >= size and caffe_size == ours + 1
    assert disagree and all(stride > kernel for _, kernel, stride, _ in disagree)


def test_pooling_ceil_clip_and_floor(tmp_path):
    body = (layer("ceil", "Pooling", body="pooling_param { pool: MAX kernel_size: 3 stride: 2 }")
            + layer("clip", "Pooling", body="pooling_param { pool: AVE kernel_size: 2 stride: 2 pad: 1 }")
            + layer("floor", "Pooling", body="pooling_param { pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR }")
            + layer("rect", "Pooling", body="pooling_param { pool: MAX kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 "
                                             "pad_h: 1 pad_w: 0 }"))
    rows = {row.name: row for row in one(tmp_path, body, (2, 3, 6, 5)).layers}
    # H 6, W 5. ceil: ceil((6-3)/2)+1 = 3, ceil((5-3)/2)+1 = 2
    assert rows["ceil"].output_shape == (3, 3, 2) and rows["ceil"].attrs["ceil_mode"] is True
    # clip: ceil((6+2-2)/2)+1 = 4, (4-1)*2 = 6 < 6+1 keeps it; W: ceil((5+2-2)/2)+1 = 4, (4-1)*2 = 6 >= 5+1: 3
    assert rows["clip"].output_shape == (3, 4, 3)
    assert rows["clip"].attrs["count_include_pad"] is True and rows["clip"].type == "avgpool"
    # round_mode FLOOR: floor((6-3)/2)+1 = 2, floor((5-3)/2)+1 = 2
    assert rows["floor"].output_shape == (3, 2, 2) and rows["floor"].attrs["ceil_mode"] is False
    # per axis: H ceil((6+2-3)/2)+1 = 4, (4-1)*2 = 6 < 7; W (5-1)/1+1 = 5
    assert rows["rect"].output_shape == (3, 4, 5)
    assert rows["rect"].attrs["kernel"] == (3, 1) and rows["rect"].attrs["stride"] == (2, 1)


def test_global_pooling(tmp_path):
    body = (layer("gap", "Pooling", body="pooling_param { pool: AVE global_pooling: true }")
            + layer("gmp", "Pooling", body="pooling_param { pool: MAX global_pooling: true }"))
    rows = {row.name: row for row in one(tmp_path, body, (1, 4, 7, 5)).layers}
    assert (rows["gap"].type, rows["gap"].output_shape) == ("global_avgpool", (4, 1, 1))
    assert (rows["gmp"].type, rows["gmp"].output_shape) == ("adaptive_maxpool", (4, 1, 1))


def test_pooling_window_past_the_input_is_unsupported(tmp_path):
    path = write(tmp_path, net(layer("pool", "Pooling", body="pooling_param { pool: MAX kernel_size: 1 stride: 3 }"), (1, 2, 5, 5)))
    with pytest.raises(SpecError) as error:
        from_caffe(path)
    assert str(error.value) == (f"'{path}': unsupported: Pooling MAX (a last window past the input) x1 (first at pool); "
                                "--partial (partial=True) counts them as 0 and marks the report partial")
    # Caffe's size: ceil((5 - 1)/3) + 1 = 3 (its third window starts at 6, past the input)
    result = analysis(path, partial=True)
    assert result.layer("pool").output_shape == (2, 3, 3) and result.layer("pool").macs == 0


# ---- one layer type at a time ---------------------------------------------------------------


def test_convolution_forms(tmp_path):
    body = (layer("a", "Convolution", body="convolution_param { num_output: 4 kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 "
                                          "pad_h: 1 pad_w: 0 bias_term: false }")
            + layer("b", "Convolution", "a", body="convolution_param { num_output: 6 kernel_size: 3 dilation: 2 group: 2 pad: 2 }"))
    rows = {row.name: row for row in one(tmp_path, body, (1, 3, 9, 8)).layers}
    # a: H floor((9 + 2 - 3)/2) + 1 = 5, W 8; weights 4*3*3*1, no bias
    assert rows["a"].output_shape == (4, 5, 8) and rows["a"].params == 4 * 3 * 3 * 1
    assert rows["a"].macs == 4 * 3 * 3 * 1 * 5 * 8
    # b: dilation 2 spans 5: (5 + 4 - 5) + 1 = 5, (8 + 4 - 5) + 1 = 8; groups 2: 6 * (4/2) * 9 + 6
    assert rows["b"].output_shape == (6, 5, 8) and rows["b"].params == 6 * 2 * 9 + 6
    assert rows["b"].macs == 6 * 2 * 9 * 5 * 8


def test_convolution_3d_repeated_fields(tmp_path):
    body = layer("c", "Convolution", body="convolution_param { num_output: 5 kernel_size: 1 kernel_size: 3 kernel_size: 3 "
                                         "stride: 1 stride: 2 stride: 2 pad: 0 pad: 1 pad: 1 }")
    row = one(tmp_path, body, (1, 2, 4, 8, 8)).layer("c")
    assert row.output_shape == (5, 4, 4, 4) and row.params == 5 * 2 * 1 * 3 * 3 + 5


def test_deconvolution(tmp_path):
    body = layer("up", "Deconvolution", body="convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 bias_term: false }")
    row = one(tmp_path, body, (1, 3, 5, 5)).layer("up")
    # Caffe: 2*(5 - 1) + 4 - 2*1 = 10; weight (c_in, num_output, k, k)
    assert (row.type, row.output_shape, row.params) == ("conv_transpose", (4, 10, 10), 3 * 4 * 4 * 4)


def test_inner_product_flattens_implicitly(tmp_path):
    body = (layer("fc", "InnerProduct", body="inner_product_param { num_output: 10 }")
            + layer("fc2", "InnerProduct", "fc", body="inner_product_param { num_output: 3 bias_term: false }"))
    result = one(tmp_path, body, (1, 2, 3, 4))
    assert [(row.name, row.type, row.output_shape) for row in result.layers] == [
        ("input", "input", (2, 3, 4)), ("fc/flatten", "flatten", (24,)), ("fc", "linear", (10,)), ("fc2", "linear", (3,))]
    assert result.layer("fc").params == 24 * 10 + 10 and result.layer("fc2").params == 30


def test_inner_product_on_the_last_axis(tmp_path):
    row = one(tmp_path, layer("fc", "InnerProduct", body="inner_product_param { num_output: 7 axis: 2 }"), (1, 5, 6)).layer("fc")
    assert row.output_shape == (5, 7) and row.macs == 5 * 6 * 7


def test_activations(tmp_path):
    body = (layer("relu", "ReLU", top="data") + layer("leaky", "ReLU", body="relu_param { negative_slope: 0.1 }")
            + layer("sig", "Sigmoid", "leaky") + layer("tanh", "TanH", "sig") + layer("elu", "ELU", "tanh", body="elu_param { alpha: 0.5 }")
            + layer("prelu", "PReLU", "elu") + layer("prelu1", "PReLU", "prelu", body="prelu_param { channel_shared: true }"))
    result = one(tmp_path, body)
    rows = {row.name: row for row in result.layers}
    assert [rows[n].type for n in ("relu", "leaky", "sig", "tanh", "elu", "prelu", "prelu1")] == [
        "relu", "leaky_relu", "sigmoid", "tanh", "elu", "prelu", "prelu"]
    assert rows["leaky"].attrs["negative_slope"] == 0.1 and rows["elu"].attrs["alpha"] == 0.5
    assert rows["prelu"].params == 3 and rows["prelu1"].params == 1
    assert rows["leaky"].inputs == ("relu",)  # in place: 'data' was last produced by relu


def test_lrn_carries_alpha_over(tmp_path):
    row = one(tmp_path, layer("norm", "LRN", body="lrn_param { local_size: 3 alpha: 0.0002 beta: 0.5 k: 2 }")).layer("norm")
    assert row.type == "lrn" and dict(row.attrs) == {"size": 3, "alpha": 0.0002, "beta": 0.5, "k": 2.0}


def test_lrn_agrees_with_caffe_formula_through_torch():
    torch = pytest.importorskip("torch")
    # Caffe: b = a / (k + alpha/n * sum of squares over n channels)^beta; PyTorch's LocalResponseNorm the same
    x = torch.randn(1, 7, 3, 3, dtype=torch.float64)
    n, alpha, beta, k = 5, 1e-4 * 1000, 0.75, 2.0
    padded = torch.nn.functional.pad(x.pow(2), (0, 0, 0, 0, n // 2, n // 2))
    sums = torch.stack([padded[:, c:c + n].sum(1) for c in range(7)], 1)
    caffe_out = x / (k + alpha / n * sums) ** beta
    assert torch.allclose(torch.nn.LocalResponseNorm(n, alpha, beta, k)(x), caffe_out)


def test_concat_eltwise_split(tmp_path):
    body = (layer("a", "Convolution", body="convolution_param { num_output: 2 kernel_size: 1 }")
            + layer("split", "Split", "a", tops=["a1", "a2"])
            + layer("cat", "Concat", bottoms=["a1", "a2", "data"])
            + layer("sum", "Eltwise", bottoms=["a1", "a2"])
            + layer("prod", "Eltwise", bottoms=["sum", "a1"], body="eltwise_param { operation: PROD }"))
    result = one(tmp_path, body, (1, 3, 4, 4))
    rows = {row.name: row for row in result.layers}
    assert "split" not in rows
    assert (rows["cat"].type, rows["cat"].inputs, rows["cat"].output_shape) == ("concat", ("a", "a", "input"), (7, 4, 4))
    assert (rows["sum"].type, rows["sum"].inputs) == ("add", ("a", "a"))
    assert (rows["prod"].type, rows["prod"].inputs) == ("mul", ("sum", "a"))


def test_batchnorm_scale_pair_and_a_lone_scale(tmp_path):
    body = (layer("bn", "BatchNorm", top="bnout", body="batch_norm_param { eps: 0.001 moving_average_fraction: 0.9 }")
            + layer("sc", "Scale", "bnout", top="scout", body="scale_param { bias_term: true }")
            + layer("gamma", "Scale", "scout"))
    result = one(tmp_path, body, (1, 4, 3, 3))
    rows = {row.name: row for row in result.layers}
    assert list(rows) == ["input", "bn", "gamma"]
    assert rows["bn"].type == "batchnorm" and dict(rows["bn"].attrs) == {"eps": 0.001, "momentum": 0.1}
    assert (rows["bn"].params, rows["bn"].buffers) == (8, 8)  # gamma, beta learned; mean, var buffers
    assert (rows["gamma"].type, rows["gamma"].params, rows["gamma"].inputs) == ("scale", 4, ("bn",))


def test_batchnorm_without_scale_is_unsupported(tmp_path):
    path = write(tmp_path, net(layer("bn", "BatchNorm", top="data") + layer("relu", "ReLU", top="data")))
    with pytest.raises(SpecError) as error:
        from_caffe(path)
    assert str(error.value) == (f"'{path}': unsupported: BatchNorm (without a per-channel Scale with bias_term after it) x1 "
                                "(first at bn); --partial (partial=True) counts them as 0 and marks the report partial")
    result = analysis(path, partial=True)
    assert result.layer("bn").params == 0 and result.layer("relu").output_shape == (3, 8, 8)


def test_batchnorm_whose_unscaled_output_is_read_again_is_not_fused(tmp_path):
    body = (layer("bn", "BatchNorm", top="n") + layer("sc", "Scale", "n", top="s", body="scale_param { bias_term: true }")
            + layer("sum", "Eltwise", bottoms=["n", "s"]))
    with pytest.raises(SpecError, match=r"unsupported: BatchNorm \(without a per-channel Scale"):
        one(tmp_path, body)


def test_dropout_softmax_flatten(tmp_path):
    body = (layer("drop", "Dropout", top="data", body="dropout_param { dropout_ratio: 0.3 }")
            + layer("flat", "Flatten", body="flatten_param { axis: 2 }")
            + layer("prob", "Softmax", "flat"))
    rows = {row.name: row for row in one(tmp_path, body, (1, 3, 4, 5)).layers}
    assert rows["drop"].attrs["p"] == 0.3
    assert (rows["flat"].output_shape, rows["prob"].output_shape) == ((3, 20), (3, 20))


def test_train_val_phase_rules_labels_and_losses(tmp_path):
    text = """name: "tv"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN } data_param { source: "train_lmdb" batch_size: 64 } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST } data_param { source: "val_lmdb" batch_size: 50 } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 10 } }
layer { name: "accuracy" type: "Accuracy" bottom: "fc" bottom: "label" top: "accuracy" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" top: "prob" }
layer { name: "top5" type: "Accuracy" bottom: "prob" bottom: "label" top: "top5" include { phase: TEST } }
layer { name: "loss2" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" }
layer { name: "l2" type: "EuclideanLoss" bottom: "fc" bottom: "fc" top: "l2" exclude { phase: TEST } }
"""
    path = write(tmp_path, text)
    graph = from_caffe(path, (1, 28, 28))
    result = archcalc.analyze(graph)
    assert [(row.name, row.type, row.output_shape) for row in result.layers] == [
        ("input", "input", (1, 28, 28)), ("fc/flatten", "flatten", (784,)), ("fc", "linear", (10,)), ("loss", "softmax", (10,)),
        ("loss2", "softmax", (10,))]
    assert graph.warnings == ("skipped 2 training/evaluation-only layer(s) (loss, accuracy, silence): 'accuracy' (Accuracy), "
                              "'top5' (Accuracy)",
                              "SoftmaxWithLoss counted as the softmax of its first input (its probabilities; the loss and "
                              "its label input are not counted): 'loss', 'loss2'")


def test_label_used_as_a_feature_is_refused(tmp_path):
    text = ('layer { name: "d" type: "Data" top: "data" top: "label" }\n'
            'layer { name: "cat" type: "Concat" bottom: "data" bottom: "label" top: "cat" }\n')
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as error:
        from_caffe(path, (3, 4, 4))
    assert str(error.value) == f"'{path}': layer 'cat' (Concat): bottom 'label': 'label' holds the labels of layer 'd' (Data)"


def test_v1_layers_and_input_dim(tmp_path):
    text = ('input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 10\ninput_dim: 10\n'
            'layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 3 } }\n'
            'layers { name: "relu" type: RELU bottom: "conv" top: "conv" }\n'
            'layers { name: "pool" type: POOLING bottom: "conv" top: "pool" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }\n')
    result = analysis(write(tmp_path, text))
    assert [(row.name, row.type, row.output_shape) for row in result.layers] == [
        ("input", "input", (3, 10, 10)), ("conv", "conv", (2, 8, 8)), ("relu", "relu", (2, 8, 8)), ("pool", "avgpool", (2, 4, 4))]


def test_input_forms_and_the_input_shape_argument(tmp_path):
    forms = {
        "input_shape": 'input: "data"\ninput_shape { dim: 2 dim: 3 dim: 5 dim: 6 }\n',
        "memory": 'layer { name: "m" type: "MemoryData" top: "data" top: "label" '
                  'memory_data_param { batch_size: 2 channels: 3 height: 5 width: 6 } }\n',
        "dummy": 'layer { name: "m" type: "DummyData" top: "data" dummy_data_param { shape { dim: 2 dim: 3 dim: 5 dim: 6 } } }\n',
    }
    relu = 'layer { name: "r" type: "ReLU" bottom: "data" top: "data" }\n'
    for name, text in forms.items():
        graph = from_caffe(write(tmp_path, text + relu, f"{name}.prototxt"))
        assert graph.input_shape == (3, 5, 6), name
    assert from_caffe(write(tmp_path, forms["input_shape"] + relu), (1, 7, 7)).input_shape == (1, 7, 7)


def test_unsupported_layers_are_listed_and_pass_through_with_partial(tmp_path):
    body = (layer("abs1", "AbsVal") + layer("abs2", "AbsVal", "abs1") + layer("max", "Eltwise", bottoms=["abs2", "data"],
                                                                             body="eltwise_param { operation: MAX }")
            + layer("conv", "Convolution", "max", body="convolution_param { num_output: 2 kernel_size: 3 }"))
    path = write(tmp_path, net(body))
    with pytest.raises(SpecError) as error:
        from_caffe(path)
    assert str(error.value) == (f"'{path}': unsupported: AbsVal x2 (first at abs1), Eltwise MAX x1 (first at max); "
                                "--partial (partial=True) counts them as 0 and marks the report partial")
    result = analysis(path, partial=True)
    assert [row.output_shape for row in result.layers] == [(3, 8, 8)] * 4 + [(2, 6, 6)]
    assert [row.type for row in result.layers] == ["input", "opaque", "opaque", "opaque", "conv"]
    assert result.totals.macs == 2 * 3 * 9 * 36
    assert result.status == "partial"
    assert [u.text() for u in result.uncounted] == ["AbsVal x2 (first at abs1)", "Eltwise MAX x1 (first at max)"]


def test_partial_refuses_a_layer_of_unknown_output_shape(tmp_path):
    body = layer("py", "Python", body='python_param { module: "m" layer: "L" }') + layer("relu", "ReLU", "py")
    path = write(tmp_path, net(body))
    with pytest.raises(SpecError) as error:
        from_caffe(path, partial=True)
    assert str(error.value) == (f"'{path}': unsupported: Python x1 (first at py); "
                                "--partial cannot pass these through: the source does not give their output shape")


# ---- bad files: one line naming the file and the layer ---------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ('layer {\n  name: "c"\n  typo: 3\n}\n', '3:3: Message type "caffe.LayerParameter" has no field named "typo".'),
    ('layer { name: "c" name: "d" }\n', '1:25: Message type "caffe.LayerParameter" should not have multiple "name" fields.'),
    ('layer { convolution_param { num_output: -3 } }\n', "1:41: 'layer { convolution_param { num_output: -3 } }': Value out of range: -3"),
    ('layer { name: "c"\n', '1:15: Expected "}".'),
    ('{"name": "lenet", "layers": []}\n', """1:1: '{"name": "lenet", "layers": []}': Expected identifier or number, got {."""),
    ('input_dim: 3000000000\n', "1:12: 'input_dim: 3000000000': Value out of range: 3000000000"),
])
def test_parse_errors_carry_protobufs_line_and_column(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as error:
        from_caffe(path)
    assert str(error.value) == f"'{path}': {message}"


@pytest.mark.parametrize(("text", "message"), [
    (net(layer("c", "Convolution", "nothing", body="convolution_param { num_output: 2 kernel_size: 1 }")),
     "layer 'c' (Convolution): bottom 'nothing' is not produced by any layer before it (nor is it an input)"),
    ("# nothing but a comment\n", "has no layers (an empty prototxt, or only comments and inputs)"),
    ('input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 4\ninput_dim: 4\n',
     "has no layers (an empty prototxt, or only comments and inputs)"),
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "data" }\n',
     "no input: declare one (an Input layer, or 'input:' with 'input_shape' or four 'input_dim') or give input_shape (--input)"),
    ('layer { name: "d" type: "Data" top: "data" top: "label" }\n',
     "layer 'd' (Data): has no shape in the file (its data come from a database or are declared without dims); "
     "give input_shape (--input), e.g. 3x224x224"),
    ('layer { name: "d" type: "ImageData" top: "data" top: "label" transform_param { crop_size: 227 } }\n',
     "layer 'd' (ImageData): has no shape in the file (its data come from a database or are declared without dims); "
     "give input_shape (--input), e.g. 3x227x227 (its transform_param crop_size is 227)"),
    ('input: "data"\ninput_shape { dim: 1 dim: 3 dim: 3000000000 dim: 3 }\n',
     "input 'data': each dim must be from 1 to 2147483647 (2**31 - 1), got 3000000000 in 1x3x3000000000x3"),
    ('input: "data"\ninput_dim: 1\ninput_dim: 3\n', "input 'data': needs 4 input_dim per input (N, C, H, W): 1 inputs, 2 input_dim"),
    ('input: "data"\ninput_shape { dim: 1 }\n', "input 'data': shape must have a batch axis and at least one more (N, C, ...), got 1"),
    (net(layer("c", "Convolution", body="convolution_param { num_output: 2 }")),
     "layer 'c' (Convolution): needs kernel_size (or kernel_h and kernel_w)"),
    (net(layer("c", "Convolution", body="convolution_param { kernel_size: 3 }")),
     "layer 'c' (Convolution): num_output must be given, at least 1, got none"),
    (net(layer("c", "Convolution", body="convolution_param { num_output: 4 kernel_size: 1 group: 2 }")),
     "layer 'c' (Convolution): group 2 must divide num_output 4 and the input's 3 channels"),
    (net(layer("c", "Convolution", body="convolution_param { num_output: 4 kernel_size: 9 }")),
     "layer 'c' (Convolution): kernel extent 9 exceeds the padded input 8 + 2*0 on spatial axis 0"),
    (net(layer("c", "Convolution", body="convolution_param { num_output: 4 kernel_size: 1 kernel_size: 1 kernel_size: 1 }")),
     "layer 'c' (Convolution): kernel_size must be given once or once per spatial axis (2), got 3 values"),
    (net(layer("p", "Pooling", body="pooling_param { kernel_size: 3 kernel_h: 3 kernel_w: 3 }")),
     "layer 'p' (Pooling): give kernel_size, or kernel_h and kernel_w, not both"),
    (net(layer("p", "Pooling", body="pooling_param { kernel_size: 3 pad: 3 }")),
     "layer 'p' (Pooling): pad 3x3 must be below the kernel 3x3"),
    (net(layer("s", "Slice", tops=["a", "b"], body="slice_param { axis: 1 slice_point: 3 }")),
     "layer 's' (Slice): slice_point 3 must be 1 increasing point(s) for 2 tops, strictly inside axis 1 of size 3"),
    (net(layer("s", "Slice", tops=["a", "b"], body="slice_param { axis: 2 }"), (1, 3, 5, 4)),
     "layer 's' (Slice): axis 2 of size 5 does not split into 2 equal tops"),
    (net('layer { type: "ReLU" bottom: "data" top: "r" }\nlayer { type: "LRN" bottom: "r" top: "n" lrn_param { local_size: 2 } }'),
     "layer 2 (from 0; LRN, unnamed): local_size must be odd (Caffe's LRN), got 2"),
    (net(layer("n", "LRN", body="lrn_param { local_size: 4 }")), "layer 'n' (LRN): local_size must be odd (Caffe's LRN), got 4"),
    (net(layer("e", "Eltwise", bottoms=["data"])), "layer 'e' (Eltwise): takes at least 2 bottom(s), got 1"),
    (net(layer("c", "Convolution", body="convolution_param { num_output: 2 kernel_size: 1 }")
         + layer("e", "Eltwise", bottoms=["data", "c"])),
     "layer 'e' (Eltwise): bottom 1 'c' is 2x8x8, bottom 0 'data' is 3x8x8: Eltwise needs equal shapes"),
    (net(layer("c", "Convolution", body="convolution_param { num_output: 2 kernel_size: 3 }")
         + layer("cat", "Concat", bottoms=["data", "c"])),
     "layer 'cat' (Concat): bottom 1 'c' is 2x6x6, bottom 0 'data' is 3x8x8: they must agree on every axis but 1"),
    (net('layer { name: "x" type: "ReLU" bottom: "data" top: "data" include { phase: TEST } exclude { phase: TRAIN } }\n'),
     "layer 'x' (ReLU): has both include and exclude rules; Caffe accepts one kind"),
    ('input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 4\ninput_dim: 4\nlayers { layer { name: "conv1" type: "conv" } }\n',
     "layer 'conv1': is in Caffe's V0 form (layers { layer { ... } }); upgrade the file with Caffe's upgrade_net_proto_text"),
    ('input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 4\ninput_dim: 4\nlayers { name: "x" bottom: "data" top: "y" }\n',
     "layer 'x': has no type"),
    (net('layers { name: "x" type: RELU bottom: "data" top: "data" }\n'),
     "both 'layer' and V1 'layers' entries; Caffe refuses such a file: use one kind"),
])
def test_bad_networks(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as error:
        from_caffe(path)
    assert str(error.value) == f"'{path}': {message}"


def test_bad_files(tmp_path):
    binary = tmp_path / "model.caffemodel"
    binary.write_bytes(b"\n\x05AlexNet\x12\x00\xff")
    with pytest.raises(SpecError) as error:
        from_caffe(binary)
    assert str(error.value) == (f"'{binary}': not a text prototxt (binary data at byte 10); "
                                "a .caffemodel holds trained weights: give the network's .prototxt")
    with pytest.raises(SpecError) as error:
        from_caffe(tmp_path / "missing.prototxt")
    assert str(error.value) == f"'{tmp_path / 'missing.prototxt'}': no such file"
    with pytest.raises(SpecError) as error:
        from_caffe(tmp_path)
    assert str(error.value) == f"'{tmp_path}': is a directory, not a prototxt file"
    big = tmp_path / "big.prototxt"
    big.write_bytes(b"#" * (caffe.MAX_FILE_BYTES + 1))
    with pytest.raises(SpecError) as error:
        from_caffe(big)
    assert str(error.value) == f"'{big}': over 16 MiB: not a network description (a prototxt is a few hundred KB)"


def test_bad_input_shape_argument(tmp_path):
    path = write(tmp_path, net(""))
    with pytest.raises(SpecError) as error:
        from_caffe(path, (3, 0, 4))
    assert str(error.value) == (f"'{path}': input_shape must be 1 or more sizes, each from 1 to 2147483647 (2**31 - 1), "
                                "per sample without the batch axis, e.g. (3, 224, 224); got (3, 0, 4)")


def test_without_protobuf_the_message_says_how_to_get_it(tmp_path, monkeypatch):
    caffe.net_parameter_class.cache_clear()
    monkeypatch.setitem(sys.modules, "google.protobuf", None)
    try:
        with pytest.raises(MissingToolError) as error:
            from_caffe(write(tmp_path, net("")))
        assert str(error.value) == ('reading a Caffe prototxt needs the protobuf package, which is not installed: '
                                    'pip install "archcalc[caffe]"')
    finally:
        monkeypatch.undo()
        caffe.net_parameter_class.cache_clear()


# ---- the vendored schema ---------------------------------------------------------------------


def test_schema_descriptor_matches_the_vendored_proto():
    net_class, _ = caffe.net_parameter_class()
    pool = net_class.DESCRIPTOR.file.pool
    proto = (Path(caffe.__file__).parent / "caffe.proto").read_text(encoding="utf-8")
    assert "Copyright (c) 2014-2017 The Regents of the University of California" in proto
    fields, message = 0, None
    depth, stack = 0, []
    for line in proto.splitlines():
        code = line.split("//")[0]
        opened = re.match(r"\s*(message|enum)\s+(\w+)\s*\{", code)
        if opened:
            stack.append((opened.group(1), opened.group(2)))
        field = re.match(r"\s*(optional|repeated|required)\s+[\w.]+\s+(\w+)\s*=\s*(\d+)", code)
        if field:
            message = ".".join(name for _, name in stack)
            descriptor = pool.FindMessageTypeByName(f"caffe.{message}")
            assert descriptor.fields_by_name[field.group(2)].number == int(field.group(3))
            fields += 1
        depth += code.count("{") - code.count("}")
        while len(stack) > depth:
            stack.pop()
    assert fields > 400


@pytest.mark.skipif(shutil.which("protoc") is None, reason="protoc (Debian's protobuf-compiler) regenerates the descriptor")
def test_schema_module_is_protocs_output():
    script = DATA / "make_schema.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_reshape_slice_crop(tmp_path):
    body = (layer("flat", "Reshape", body="reshape_param { shape { dim: 0 dim: -1 } }")
            + layer("r3", "Reshape", "flat", body="reshape_param { shape { dim: 12 dim: -1 } axis: 1 }")
            + layer("sl", "Slice", "data", tops=["a", "b", "c"], body="slice_param { axis: 1 slice_point: 1 slice_point: 2 }")
            + layer("halves", "Slice", "data", tops=["h1", "h2"], body="slice_param { axis: 3 }")
            + layer("conv", "Convolution", body="convolution_param { num_output: 2 kernel_size: 3 }")
            + layer("crop", "Crop", bottoms=["data", "conv"], body="crop_param { axis: 2 offset: 1 }")
            + layer("cropw", "Crop", bottoms=["data", "h1"], body="crop_param { axis: 3 offset: 2 }"))
    rows = {row.name: row for row in one(tmp_path, body, (1, 3, 4, 6)).layers}
    assert (rows["flat"].type, rows["flat"].output_shape) == ("reshape", (72,))
    assert rows["r3"].output_shape == (12, 6)  # the -1: 72 / 12
    assert [rows[f"sl/{t}"].output_shape for t in "abc"] == [(1, 4, 6)] * 3
    assert [(rows[f"sl/{t}"].attrs["start"], rows[f"sl/{t}"].attrs["stop"]) for t in "abc"] == [(0, 1), (1, 2), (2, 3)]
    assert [rows[f"halves/{t}"].output_shape for t in ("h1", "h2")] == [(3, 4, 3)] * 2
    # Caffe's Crop: from axis 2 to conv's 2x4 at offset 1 (1 + 2 <= 4, 1 + 4 <= 6); from axis 3 only W, at 2
    assert (rows["crop"].type, rows["crop"].output_shape, rows["crop"].attrs["offset"]) == ("crop", (3, 2, 4), (1, 1))
    assert (rows["cropw"].output_shape, rows["cropw"].attrs["offset"]) == ((3, 4, 3), (0, 2))


def test_eltwise_coefficients(tmp_path):
    ones = layer("sum", "Eltwise", bottoms=["data", "data"], body="eltwise_param { operation: SUM coeff: 1 coeff: 1 }")
    assert one(tmp_path, ones).layer("sum").type == "add"
    minus = layer("diff", "Eltwise", bottoms=["data", "data"], body="eltwise_param { coeff: 1 coeff: -1 }")
    path = write(tmp_path, net(minus), "minus.prototxt")
    with pytest.raises(SpecError) as error:
        from_caffe(path)
    assert str(error.value) == (f"'{path}': unsupported: Eltwise SUM (coefficients other than 1) x1 (first at diff); "
                                "--partial (partial=True) counts them as 0 and marks the report partial")
    bad = layer("sum", "Eltwise", bottoms=["data", "data"], body="eltwise_param { coeff: 1 }")
    path = write(tmp_path, net(bad), "bad.prototxt")
    with pytest.raises(SpecError) as error:
        from_caffe(path)
    assert str(error.value) == f"'{path}': layer 'sum' (Eltwise): needs one coeff per bottom (2), got 1"


def test_public_entry_point_and_load():
    path = DATA / "vgg16.prototxt"
    assert archcalc.analyze(archcalc.from_caffe(path)).totals.params == 138_357_544
    assert archcalc.analyze(archcalc.load(str(path))).totals.macs == 15_470_264_320


def test_random_conv_and_pool_geometries_import_with_caffes_sizes(tmp_path):
    """Caffe's own output-size formulas, written here, against what the import gives (the builder
    also checks archcalc's rule against the importer's Caffe arithmetic for every layer)."""
    import random

    rng, ran = random.Random(12), 0
    for case in range(40):
        size_h, size_w, channels = rng.randint(3, 20), rng.randint(3, 20), rng.choice([2, 4])
        k, s, p, d = rng.randint(1, 3), rng.randint(1, 3), rng.randint(0, 2), rng.randint(1, 2)
        if size_h + 2 * p < d * (k - 1) + 1 or size_w + 2 * p < d * (k - 1) + 1:
            continue
        pk, ps = rng.randint(2, 3), rng.randint(1, 3)
        pp = rng.randint(0, pk // 2) if ps <= pk else 1  # a stride above the kernel with no pad keeps a window past the input
        conv = f"convolution_param {{ num_output: 4 kernel_size: {k} stride: {s} pad: {p} dilation: {d} group: {channels // 2} }}"
        pool = f"pooling_param {{ pool: {rng.choice(['MAX', 'AVE'])} kernel_size: {pk} stride: {ps} pad: {pp} }}"
        body = layer("conv", "Convolution", body=conv) + layer("pool", "Pooling", "conv", body=pool)
        out_h = (size_h + 2 * p - d * (k - 1) - 1) // s + 1
        out_w = (size_w + 2 * p - d * (k - 1) - 1) // s + 1
        if out_h + 2 * pp < pk or out_w + 2 * pp < pk:
            continue
        rows = {row.name: row for row in one(tmp_path, body, (1, channels, size_h, size_w)).layers}
        assert rows["conv"].output_shape == (4, out_h, out_w), case
        assert rows["pool"].output_shape == (4, _caffe_pooled(out_h, pk, ps, pp), _caffe_pooled(out_w, pk, ps, pp)), case
        ran += 1
    assert ran >= 25


def _caffe_pooled(size, kernel, stride, pad):
    """PoolingLayer::Reshape (CEIL), in floats as Caffe computes it."""
    pooled = int(math.ceil(float(size + 2 * pad - kernel) / stride)) + 1
    return pooled - 1 if pad and (pooled - 1) * stride >= size + pad else pooled


def test_pooling_pad_above_half_the_kernel_is_unsupported(tmp_path):
    # Caffe allows any pad below the kernel; archcalc's pools (as PyTorch's) at most kernel // 2
    path = write(tmp_path, net(layer("pool", "Pooling", body="pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 2 }")))
    with pytest.raises(SpecError) as error:
        from_caffe(path)
    assert str(error.value) == (f"'{path}': unsupported: Pooling AVE (pad above kernel/2) x1 (first at pool); "
                                "--partial (partial=True) counts them as 0 and marks the report partial")
    # Caffe's size: ceil((8 + 4 - 3)/2) + 1 = 6, (6 - 1)*2 = 10 >= 8 + 2: clipped to 5
    assert analysis(path, partial=True).layer("pool").output_shape == (3, 5, 5)

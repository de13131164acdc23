"""The darknet preset against darknet's own formulas and printed figures.

Darknet (AlexeyAB/darknet 59596d7) sets ``l.bflops`` (a C float) for conv, maxpool and shortcut
layers and prints it with ``%5.3f``; the formulas are written out below from its source, and the
figures it printed for yolov3-tiny (whose cfg is in both darknet repositories) are quoted with
where they were published.
"""

from __future__ import annotations

import struct

from archcalc import conventions
from archcalc.conventions.darknet import bflops
from archcalc.dsl import Net
from archcalc.passes import infer_shapes
from archcalc.spec import from_dict


def _single(value: float) -> float:
    """A double stored in a C float."""
    return struct.unpack("f", struct.pack("f", value))[0]


def yolov3_tiny(size: int):
    """cfg/yolov3-tiny.cfg (identical in pjreddie/darknet f6afaab and AlexeyAB/darknet 59596d7),
    layer i named ``l{i}``; the two [yolo] layers (detection outputs, no BF) are left out.

    [convolutional] with batch_normalize=1 has no bias; pad=1 means padding size//2. [maxpool]
    size=2 stride=1 pads size-1 = 1 at the right and bottom (darknet's default padding, offset
    -padding/2 = 0), here a replicate pad that a max cannot tell from darknet's skipped cells.
    """
    net = Net("yolov3-tiny", input=(3, size, size))

    def conv(i: int, filters: int, kernel: int, inputs: str | None = None, bn: bool = True) -> str:
        net.conv(filters, kernel, padding=kernel // 2, bias=not bn, inputs=inputs, name=f"l{i}")
        if not bn:  # activation=linear, no batch norm: the detection head
            return f"l{i}"
        net.batchnorm(name=f"l{i}.bn")
        return net.leaky_relu(negative_slope=0.1, name=f"l{i}.leaky")

    out: dict[int, str] = {}
    for i, filters in zip(range(0, 11, 2), (16, 32, 64, 128, 256, 512)):
        out[i] = conv(i, filters, 3)
        if i < 10:
            net.maxpool(2, stride=2, name=f"l{i + 1}")
        else:
            net.pad(padding=[0, 0, 1, 1], mode="replicate", name="l11.pad")
            net.maxpool(2, stride=1, name="l11")
    out[12] = conv(12, 1024, 3)
    out[13] = conv(13, 256, 1)
    out[14] = conv(14, 512, 3)
    out[15] = conv(15, 255, 1, bn=False)
    out[18] = conv(18, 128, 1, inputs=out[13])          # [route] layers=-4: layer 13
    net.upsample(scale_factor=2, name="l19")
    net.concat("l19", out[8], name="l20")                # [route] layers=-1, 8
    out[21] = conv(21, 256, 3)
    out[22] = conv(22, 255, 1, bn=False)
    return net.graph()


# Printed by AlexeyAB/darknet `detector test cfg/yolov3-tiny.cfg` at width=height=416, layers 0-15
# ("   0 conv     16       3 x 3/ 1    416 x 416 x   3 ->  416 x 416 x  16 0.150 BF" ...), published
# in https://blog.csdn.net/juluwangriyue/article/details/109543317 (also e-com-net.com/article/1642988789016092672.htm).
ALEXEYAB_416 = ["0.150", "0.003", "0.399", "0.001", "0.399", "0.001", "0.399", "0.000", "0.399", "0.000", "0.399",
                "0.000", "1.595", "0.089", "0.399", "0.044"]
# The same at 608, layers 0-13: https://github.com/junxnone/aiwiki/issues/52 (AlexeyAB's cfg, 2021).
ALEXEYAB_608 = ["0.319", "0.006", "0.852", "0.003", "0.852", "0.001", "0.852", "0.001", "0.852", "0.000", "0.852",
                "0.001", "3.407", "0.189"]
# pjreddie/darknet at 416 (conv rows only print BFLOPs): layers 0..15, 18 and 21, from
# https://blog.csdn.net/weixin_38715903/article/details/104499148 ("0 conv 16 3 x 3 / 1 416 x 416 x 3 -> 416 x
# 416 x 16 0.150 BFLOPs").
PJREDDIE_416 = {0: "0.150", 2: "0.399", 4: "0.399", 6: "0.399", 8: "0.399", 10: "0.399", 12: "1.595", 13: "0.089",
                14: "0.399", 15: "0.044", 18: "0.011", 21: "1.196"}


def _darknet_formula(graph) -> dict[str, float]:
    """Each layer's l.bflops as darknet's source computes it, from the layer shapes (not archcalc's
    counts): conv (2.0 * nweights * out_h * out_w) / 1e9, nweights = c/groups * n * size^2; maxpool
    size*size*c * out_h*out_w / 1e9; both stored in a float."""
    layers = infer_shapes(graph)
    out = {}
    for node in graph.nodes[1:]:
        layer = layers[node.name]
        c, h, w = layer.in_shape
        n, out_h, out_w = layer.out_shape
        if node.type == "conv":
            size = layer.attrs["kernel"][0]
            nweights = c // layer.attrs["groups"] * n * size * size
            out[node.name] = _single((2.0 * nweights * out_h * out_w) / 1000000000.)
        elif node.type == "maxpool":
            size = layer.attrs["kernel"][0]
            out[node.name] = _single((size * size * c * out_h * out_w) / 1000000000.)
    return out


def test_alexeyab_printed_figures_at_416_and_608():
    for size, printed in ((416, ALEXEYAB_416), (608, ALEXEYAB_608)):
        graph = yolov3_tiny(size)
        counts = conventions.count(graph, "darknet").per_layer()
        formula = _darknet_formula(graph)
        rows = [f"l{i}" for i in range(len(printed))]
        assert [f"{formula[r]:5.3f}" for r in rows] == printed
        assert [bflops(counts[r]).split()[0] for r in rows] == printed


def test_pjreddie_conv_figures_are_the_presets_conv_rows():
    graph = yolov3_tiny(416)
    counts = conventions.count(graph, "darknet").per_layer()
    # pjreddie's formula (double, printed directly): (2.0 * l.n * l.size*l.size*l.c/l.groups * l.out_h*l.out_w)/1e9
    layers = infer_shapes(graph)
    for i, printed in PJREDDIE_416.items():
        layer = layers[f"l{i}"]
        c, n, size = layer.in_shape[0], layer.out_shape[0], layer.attrs["kernel"][0]
        assert f"{(2.0 * n * size * size * c / 1 * layer.out_shape[1] * layer.out_shape[2]) / 1e9:5.3f}" == printed
        assert f"{counts[f'l{i}'] / 1e9:5.3f}" == printed


def test_total_is_the_sum_of_the_bf_rows_and_the_readmes_figure():
    # AlexeyAB's README (59596d7): "yolov3-tiny.cfg - 33.1% mAP@0.5 - 345(R) FPS - 5.6 BFlops"
    graph = yolov3_tiny(416)
    counted = conventions.count(graph, "darknet")
    formula = _darknet_formula(graph)
    float_sum = 0.0
    for value in formula.values():  # parse_network_cfg: float bflops; bflops += l.bflops
        float_sum = _single(float_sum + value)
    # the float accumulation and the exact total print alike here
    assert f"{float_sum:5.3f}" == bflops(counted.forward).split()[0]
    assert f"{counted.forward / 1e9:.1f}" == "5.6"
    # only conv and maxpool rows carry BF here: the route, upsample, pad, batch norm and leaky layers count 0
    assert {name for name, c in counted.per_layer().items() if c} == set(formula)


def test_rules_by_hand():
    """conv 3x3 3 -> 4 (bias) on 8x8 'same': 2 x 4 x 27 x 64 = 13,824 (the bias not counted);
    max pool 2x2/2 to 4x4x4: 4 x 64 = 256; a shortcut of 2 inputs: 1 per output (64); a 3-input
    add: 2 per output; linear 64 -> 10: 0 ([connected] has no BF); global average pool: 0."""
    graph = from_dict({"name": "t", "input": [3, 8, 8], "layers": [
        {"name": "conv", "type": "conv", "filters": 4, "kernel": 3, "padding": 1},
        {"name": "pool", "type": "maxpool", "kernel": 2},
        {"name": "add", "type": "add", "inputs": ["pool", "pool"]},
        {"name": "add3", "type": "add", "inputs": ["add", "pool", "pool"]},
        {"name": "gap", "type": "global_avgpool"},
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "linear", "units": 10},
    ]})
    assert conventions.count(graph, "darknet").per_layer() == {
        "conv": 13_824, "pool": 256, "add": 64, "add3": 128, "gap": 0, "flat": 0, "fc": 0}
    assert bflops(13_824) == "0.000 BFLOPS"
    assert bflops(5_571_000_000) == "5.571 BFLOPS"

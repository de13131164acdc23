"""archcalc reproduces the CS5242 lecture 6 tables (../shared/lecture/cs5242-lecture6-convnets.md).

Expected values are the lecture's own expressions, typed in as the slide writes them.
"""

from __future__ import annotations

import archcalc

# LeNet-5 slide: Layer, Shape, Parameters
LENET_TABLE = [
    ("conv1", (6, 28, 28), (6, 3, 5, 5)),
    ("pool1", (6, 14, 14), None),
    ("conv2", (16, 10, 10), (16, 6, 5, 5)),
    ("pool2", (16, 5, 5), None),
    ("fc1", (120,), (120, 16 * 5 * 5)),
    ("fc2", (84,), (84, 120)),
    ("fc3", (10,), (10, 84)),
]


def test_lenet5_other_ops_and_training_memory_by_hand():
    totals = archcalc.analyze(archcalc.load("lenet5"), optimizer="momentum", memory_model="lecture").totals
    other = (
        6 * 28 * 28 * 2  # conv1 bias adds, relu1
        + (2 * 2 - 1) * 6 * 14 * 14  # pool1 comparisons
        + 16 * 10 * 10 * 2  # conv2 bias adds, relu2
        + (2 * 2 - 1) * 16 * 5 * 5  # pool2
        + 120 * 2 + 84 * 2 + 10  # fc biases and relus
    )
    assert totals.other_ops == other == 17_754
    params = (6 * 3 * 25 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    stored = 3 * 32 * 32 + 6 * 28 * 28 + 6 * 14 * 14 + 16 * 10 * 10 + 16 * 5 * 5 + 120 + 84 + 10
    assert (totals.params, totals.activations) == (params, stored)
    assert totals.training_bytes == (params + params * 2 + stored * 2) * 4  # momentum: one slot


def test_lenet5_every_row():
    analysis = archcalc.analyze(archcalc.load("lenet5"))
    assert analysis.input_shape == (3, 32, 32)
    for name, shape, weight_shape in LENET_TABLE:
        row = analysis.layer(name)
        assert row.output_shape == shape, name
        weights = 0 if weight_shape is None else __import__("math").prod(weight_shape)
        assert row.params_weights_only == weights, name


# AlexNet listing (cs231n), channels-last in the slide: [HxWxC]
ALEXNET_LISTING = """
[227x227x3] INPUT
[55x55x96] CONV1
[27x27x96] MAX POOL1
[27x27x96] NORM1
[27x27x256] CONV2
[13x13x256] MAX POOL2
[13x13x256] NORM2
[13x13x384] CONV3
[13x13x384] CONV4
[13x13x256] CONV5
[6x6x256] MAX POOL3
[4096] FC6
[4096] FC7
[1000] FC8
"""


def _slide_shape(text):
    dims = tuple(int(v) for v in text.strip("[]").split("x"))
    return dims if len(dims) == 1 else (dims[-1], *dims[:-1])


def test_alexnet_every_shape_of_the_listing():
    analysis = archcalc.analyze(archcalc.load("alexnet"))
    stored = [row for row in analysis.layers if row.type not in ("relu", "dropout", "flatten")]
    expected = [_slide_shape(line.split()[0]) for line in ALEXNET_LISTING.strip().splitlines()]
    assert [row.output_shape for row in stored] == expected
    # the listing's hyper-parameters: CONV1 96 11x11 stride 4 pad 0, CONV2 256 5x5 pad 2
    conv1 = analysis.layer("conv1")
    assert conv1.summary == "11x11/4, 96"
    assert analysis.layer("conv2").summary == "5x5/1 p2, 256"


# VGG16 slide: name, [HxWxC], memory expression, params expression
VGG16_TABLE = [
    ("input", "224x224x3", 224 * 224 * 3, 0),
    ("conv1_1", "224x224x64", 224 * 224 * 64, (3 * 3 * 3) * 64),
    ("conv1_2", "224x224x64", 224 * 224 * 64, (3 * 3 * 64) * 64),
    ("pool1", "112x112x64", 112 * 112 * 64, 0),
    ("conv2_1", "112x112x128", 112 * 112 * 128, (3 * 3 * 64) * 128),
    ("conv2_2", "112x112x128", 112 * 112 * 128, (3 * 3 * 128) * 128),
    ("pool2", "56x56x128", 56 * 56 * 128, 0),
    ("conv3_1", "56x56x256", 56 * 56 * 256, (3 * 3 * 128) * 256),
    ("conv3_2", "56x56x256", 56 * 56 * 256, (3 * 3 * 256) * 256),
    ("conv3_3", "56x56x256", 56 * 56 * 256, (3 * 3 * 256) * 256),
    ("pool3", "28x28x256", 28 * 28 * 256, 0),
    ("conv4_1", "28x28x512", 28 * 28 * 512, (3 * 3 * 256) * 512),
    ("conv4_2", "28x28x512", 28 * 28 * 512, (3 * 3 * 512) * 512),
    ("conv4_3", "28x28x512", 28 * 28 * 512, (3 * 3 * 512) * 512),
    ("pool4", "14x14x512", 14 * 14 * 512, 0),
    ("conv5_1", "14x14x512", 14 * 14 * 512, (3 * 3 * 512) * 512),
    ("conv5_2", "14x14x512", 14 * 14 * 512, (3 * 3 * 512) * 512),
    ("conv5_3", "14x14x512", 14 * 14 * 512, (3 * 3 * 512) * 512),
    ("pool5", "7x7x512", 7 * 7 * 512, 0),
    ("fc6", "4096", 4096, 7 * 7 * 512 * 4096),
    ("fc7", "4096", 4096, 4096 * 4096),
    ("fc8", "1000", 1000, 4096 * 1000),
]


def test_vgg16_every_row_of_the_lecture_table():
    analysis = archcalc.analyze(archcalc.load("vgg16"))
    for name, shape, memory, params in VGG16_TABLE:
        row = analysis.layer(name)
        assert row.output_shape == _slide_shape(shape), name
        assert row.activations == memory, name
        assert row.params_weights_only == params, name
    # the slide's literal figures for a few rows
    assert analysis.layer("conv1_1").activations == 3_211_264
    assert analysis.layer("conv1_1").params_weights_only == 1_728
    assert analysis.layer("fc6").params_weights_only == 102_760_448


def test_vgg16_totals():
    totals = archcalc.analyze(archcalc.load("vgg16")).totals
    assert totals.params_weights_only == sum(p for *_, p in VGG16_TABLE) == 138_344_128
    assert totals.params == 138_357_544  # torchvision's count, biases included
    # the forward total is exactly the lecture's rows added up (the slide's "24M" is its slip)
    assert totals.activations == sum(m for _, _, m, _ in VGG16_TABLE) == 15_237_608
    assert totals.activation_bytes == 15_237_608 * 4
    assert round(totals.activation_bytes / 2**20, 1) == 58.1


def test_inception_modules_cost():
    naive = archcalc.analyze(archcalc.load("inception-naive")).totals
    # 1x1/128, 3x3/192 and 5x5/96 convs on 256x28x28, same padding: the pool costs no MACs
    assert naive.macs == (1 * 1 * 256 * 128 + 3 * 3 * 256 * 192 + 5 * 5 * 256 * 96) * 28 * 28 == 854_196_224
    reduced = archcalc.analyze(archcalc.load("inception-reduced")).totals
    by_hand = (
        1 * 1 * 256 * 128  # 1x1 branch
        + 1 * 1 * 256 * 64 + 3 * 3 * 64 * 192  # reduce, then 3x3
        + 1 * 1 * 256 * 64 + 5 * 5 * 64 * 96  # reduce, then 5x5
        + 1 * 1 * 256 * 64  # pool projection
    ) * 28 * 28
    assert reduced.macs == by_hand == 271_351_808
    naive_out = archcalc.analyze(archcalc.load("inception-naive")).layers[-1].output_shape
    reduced_out = archcalc.analyze(archcalc.load("inception-reduced")).layers[-1].output_shape
    assert naive_out == (128 + 192 + 96 + 256, 28, 28)
    assert reduced_out == (128 + 192 + 96 + 64, 28, 28)


def test_stacked_3x3_receptive_fields():
    for name, size in (("stack-3x3-2", 5), ("stack-3x3-3", 7)):
        analysis = archcalc.analyze(archcalc.load(name))
        assert analysis.layers[-1].receptive_field.size == (size, size), name


def test_factorized_7x7_same_field_fewer_macs():
    analysis = archcalc.analyze(archcalc.load("factorized-7x7"))
    full, factorized = analysis.layer("full.conv7x7"), analysis.layer("factorized.conv7x1")
    assert full.receptive_field.size == factorized.receptive_field.size == (7, 7)
    assert analysis.layer("concat").receptive_field.aligned
    factorized_macs = analysis.layer("factorized.conv1x7").macs + factorized.macs
    assert full.macs == 128 * 128 * 49 * 28 * 28
    assert factorized_macs == 2 * 128 * 128 * 7 * 28 * 28

"""The tf-profiler preset against google-research/receptive_field's published table.

receptive_field/RECEPTIVE_FIELD_TABLE.md (commit f12ae8e, made by rf_benchmark.py) gives, for
TF-Slim networks at input 224 and 321, the FLOPs "up to" each end-point: tf.profiler's
total_float_ops of the graph pruned to the end-point, printed as billions to 3 decimals. Here
each network is built layer by layer as TF-Slim builds it (tests/tf_slim_nets.py), counted with
the preset, summed over each end-point's ancestors (archcalc.cumulative) and printed the same
way; every row of the table for these networks must match.
"""

from __future__ import annotations

import pytest

from archcalc import conventions
from archcalc.cumulative import cumulative, under_convention
from archcalc.spec import from_dict
from tests import tf_slim_nets as nets

# The table's rows: network -> resolution -> [(end-point, "FLOPs (Billion)")], copied from
# receptive_field/RECEPTIVE_FIELD_TABLE.md at f12ae8e (google-research/receptive_field).
TABLE: dict[str, dict[int, list[tuple[str, str]]]] = {
    "alexnet_v2": {
        224: [("alexnet_v2/conv1", "0.136"), ("alexnet_v2/pool1", "0.136"), ("alexnet_v2/conv2", "0.552"),
              ("alexnet_v2/conv3", "0.743"), ("alexnet_v2/conv4", "1.125"), ("alexnet_v2/conv5", "1.380"),
              ("alexnet_v2/pool5", "1.380")],
        321: [("alexnet_v2/conv1", "0.283"), ("alexnet_v2/pool1", "0.284"), ("alexnet_v2/conv2", "1.171"),
              ("alexnet_v2/conv3", "1.602"), ("alexnet_v2/conv4", "2.462"), ("alexnet_v2/conv5", "3.036"),
              ("alexnet_v2/pool5", "3.036")],
    },
    "vgg_16": {
        224: [("vgg_16/conv1/conv1_1", "0.177"), ("vgg_16/pool1", "3.882"), ("vgg_16/conv2/conv2_1", "5.734"),
              ("vgg_16/pool2", "9.436"), ("vgg_16/conv3/conv3_1", "11.287"), ("vgg_16/conv3/conv3_2", "14.987"),
              ("vgg_16/pool3", "18.688"), ("vgg_16/conv4/conv4_1", "20.538"), ("vgg_16/conv4/conv4_2", "24.238"),
              ("vgg_16/pool4", "27.938"), ("vgg_16/conv5/conv5_1", "28.863"), ("vgg_16/conv5/conv5_2", "29.788"),
              ("vgg_16/pool5", "30.713")],
        321: [("vgg_16/conv1/conv1_1", "0.363"), ("vgg_16/pool1", "7.973"), ("vgg_16/conv2/conv2_1", "11.751"),
              ("vgg_16/pool2", "19.307"), ("vgg_16/conv3/conv3_1", "23.084"), ("vgg_16/conv3/conv3_2", "30.635"),
              ("vgg_16/pool3", "38.188"), ("vgg_16/conv4/conv4_1", "41.964"), ("vgg_16/conv4/conv4_2", "49.514"),
              ("vgg_16/pool4", "57.066"), ("vgg_16/conv5/conv5_1", "58.954"), ("vgg_16/conv5/conv5_2", "60.841"),
              ("vgg_16/pool5", "62.729")],
    },
    "mobilenet_v1": {
        224: [("Conv2d_0", "0.022"), ("Conv2d_1_pointwise", "0.082"), ("Conv2d_2_pointwise", "0.137"),
              ("Conv2d_3_pointwise", "0.248"), ("Conv2d_4_pointwise", "0.302"), ("Conv2d_5_pointwise", "0.409"),
              ("Conv2d_6_pointwise", "0.461"), ("Conv2d_7_pointwise", "0.566"), ("Conv2d_8_pointwise", "0.671"),
              ("Conv2d_9_pointwise", "0.775"), ("Conv2d_10_pointwise", "0.880"), ("Conv2d_11_pointwise", "0.985"),
              ("Conv2d_12_pointwise", "1.037"), ("Conv2d_13_pointwise", "1.140")],
        321: [("Conv2d_0", "0.046"), ("Conv2d_1_pointwise", "0.169"), ("Conv2d_2_pointwise", "0.286"),
              ("Conv2d_3_pointwise", "0.517"), ("Conv2d_4_pointwise", "0.632"), ("Conv2d_5_pointwise", "0.861"),
              ("Conv2d_6_pointwise", "0.979"), ("Conv2d_7_pointwise", "1.215"), ("Conv2d_8_pointwise", "1.450"),
              ("Conv2d_9_pointwise", "1.686"), ("Conv2d_10_pointwise", "1.922"), ("Conv2d_11_pointwise", "2.158"),
              ("Conv2d_12_pointwise", "2.286"), ("Conv2d_13_pointwise", "2.542")],
    },
    "mobilenet_v1_075": {
        224: [("Conv2d_0", "0.017"), ("Conv2d_1_pointwise", "0.052"), ("Conv2d_2_pointwise", "0.084"),
              ("Conv2d_3_pointwise", "0.148"), ("Conv2d_4_pointwise", "0.178"), ("Conv2d_5_pointwise", "0.239"),
              ("Conv2d_6_pointwise", "0.269"), ("Conv2d_7_pointwise", "0.328"), ("Conv2d_8_pointwise", "0.387"),
              ("Conv2d_9_pointwise", "0.447"), ("Conv2d_10_pointwise", "0.506"), ("Conv2d_11_pointwise", "0.565"),
              ("Conv2d_12_pointwise", "0.594"), ("Conv2d_13_pointwise", "0.653")],
        321: [("Conv2d_0", "0.034"), ("Conv2d_1_pointwise", "0.107"), ("Conv2d_2_pointwise", "0.174"),
              ("Conv2d_3_pointwise", "0.308"), ("Conv2d_4_pointwise", "0.373"), ("Conv2d_5_pointwise", "0.503"),
              ("Conv2d_6_pointwise", "0.570"), ("Conv2d_7_pointwise", "0.704"), ("Conv2d_8_pointwise", "0.837"),
              ("Conv2d_9_pointwise", "0.970"), ("Conv2d_10_pointwise", "1.104"), ("Conv2d_11_pointwise", "1.237"),
              ("Conv2d_12_pointwise", "1.310"), ("Conv2d_13_pointwise", "1.454")],
    },
    "resnet_v1_50": {
        224: [("resnet_v1_50/block1", "1.323"), ("resnet_v1_50/block2", "2.974"), ("resnet_v1_50/block3", "5.498"),
              ("resnet_v1_50/block4", "6.963")],
        321: [("resnet_v1_50/block1", "2.767"), ("resnet_v1_50/block2", "6.315"), ("resnet_v1_50/block3", "12.013"),
              ("resnet_v1_50/block4", "15.629")],
    },
    "resnet_v1_101": {
        224: [("resnet_v1_101/block1", "1.323"), ("resnet_v1_101/block2", "2.974"),
              ("resnet_v1_101/block3", "12.923"), ("resnet_v1_101/block4", "14.387")],
        321: [("resnet_v1_101/block1", "2.767"), ("resnet_v1_101/block2", "6.315"),
              ("resnet_v1_101/block3", "28.718"), ("resnet_v1_101/block4", "32.334")],
    },
    "resnet_v1_152": {
        224: [("resnet_v1_152/block1", "1.323"), ("resnet_v1_152/block2", "4.721"),
              ("resnet_v1_152/block3", "20.347"), ("resnet_v1_152/block4", "21.811")],
        321: [("resnet_v1_152/block1", "2.767"), ("resnet_v1_152/block2", "10.061"),
              ("resnet_v1_152/block3", "45.238"), ("resnet_v1_152/block4", "48.854")],
    },
    "resnet_v1_200": {
        224: [("resnet_v1_200/block1", "1.323"), ("resnet_v1_200/block2", "11.709"),
              ("resnet_v1_200/block3", "27.335"), ("resnet_v1_200/block4", "28.799")],
        321: [("resnet_v1_200/block1", "2.767"), ("resnet_v1_200/block2", "25.043"),
              ("resnet_v1_200/block3", "60.220"), ("resnet_v1_200/block4", "63.836")],
    },
    "inception_v2": {
        224: [("Conv2d_1a_7x7", "0.069"), ("MaxPool_2a_3x3", "0.071"), ("Conv2d_2b_1x1", "0.097"),
              ("Conv2d_2c_3x3", "0.791"), ("MaxPool_3a_3x3", "0.792"), ("Mixed_3b", "1.136"), ("Mixed_3c", "1.544"),
              ("Mixed_4a", "1.833"), ("Mixed_4b", "2.073"), ("Mixed_4c", "2.334"), ("Mixed_4d", "2.686"),
              ("Mixed_4e", "3.120"), ("Mixed_5a", "3.446"), ("Mixed_5b", "3.660"), ("Mixed_5c", "3.883")],
        321: [("Conv2d_1a_7x7", "0.142"), ("MaxPool_2a_3x3", "0.146"), ("Conv2d_2b_1x1", "0.200"),
              ("Conv2d_2c_3x3", "1.653"), ("MaxPool_3a_3x3", "1.656"), ("Mixed_3b", "2.393"), ("Mixed_3c", "3.268"),
              ("Mixed_4a", "3.898"), ("Mixed_4b", "4.438"), ("Mixed_4c", "5.025"), ("Mixed_4d", "5.817"),
              ("Mixed_4e", "6.795"), ("Mixed_5a", "7.545"), ("Mixed_5b", "8.073"), ("Mixed_5c", "8.626")],
    },
    "inception_v2-no-separable-conv": {
        224: [("Conv2d_1a_7x7", "0.237"), ("MaxPool_2a_3x3", "0.239"), ("Conv2d_2b_1x1", "0.265"),
              ("Conv2d_2c_3x3", "0.959"), ("MaxPool_3a_3x3", "0.960"), ("Mixed_3b", "1.304"), ("Mixed_3c", "1.712"),
              ("Mixed_4a", "2.001"), ("Mixed_4b", "2.241"), ("Mixed_4c", "2.502"), ("Mixed_4d", "2.854"),
              ("Mixed_4e", "3.288"), ("Mixed_5a", "3.614"), ("Mixed_5b", "3.828"), ("Mixed_5c", "4.051")],
        321: [("Conv2d_1a_7x7", "0.489"), ("MaxPool_2a_3x3", "0.493"), ("Conv2d_2b_1x1", "0.547"),
              ("Conv2d_2c_3x3", "2.000"), ("MaxPool_3a_3x3", "2.003"), ("Mixed_3b", "2.740"), ("Mixed_3c", "3.615"),
              ("Mixed_4a", "4.246"), ("Mixed_4b", "4.785"), ("Mixed_4c", "5.373"), ("Mixed_4d", "6.164"),
              ("Mixed_4e", "7.142"), ("Mixed_5a", "7.892"), ("Mixed_5b", "8.421"), ("Mixed_5c", "8.973")],
    },
    "inception_v3": {
        224: [("Conv2d_1a_3x3", "0.022"), ("Conv2d_2a_3x3", "0.241"), ("Conv2d_2b_3x3", "0.680"),
              ("MaxPool_3a_3x3", "0.681"), ("Conv2d_3b_1x1", "0.712"), ("Conv2d_4a_3x3", "1.460"),
              ("MaxPool_5a_3x3", "1.461"), ("Mixed_5b", "1.781"), ("Mixed_5c", "2.128"), ("Mixed_5d", "2.485"),
              ("Mixed_6a", "2.889"), ("Mixed_6b", "3.263"), ("Mixed_6c", "3.750"), ("Mixed_6d", "4.237"),
              ("Mixed_6e", "4.854"), ("Mixed_7a", "5.132"), ("Mixed_7b", "5.385"), ("Mixed_7c", "5.689")],
        321: [("Conv2d_1a_3x3", "0.045"), ("Conv2d_2a_3x3", "0.506"), ("Conv2d_2b_3x3", "1.428"),
              ("MaxPool_3a_3x3", "1.431"), ("Conv2d_3b_1x1", "1.494"), ("Conv2d_4a_3x3", "3.092"),
              ("MaxPool_5a_3x3", "3.095"), ("Mixed_5b", "3.796"), ("Mixed_5c", "4.557"), ("Mixed_5d", "5.339"),
              ("Mixed_6a", "6.241"), ("Mixed_6b", "7.082"), ("Mixed_6c", "8.178"), ("Mixed_6d", "9.275"),
              ("Mixed_6e", "10.663"), ("Mixed_7a", "11.303"), ("Mixed_7b", "11.948"), ("Mixed_7c", "12.727")],
    },
}

BUILDERS = {
    "alexnet_v2": nets.alexnet_v2,
    "vgg_16": nets.vgg_16,
    "mobilenet_v1": nets.mobilenet_v1,
    "mobilenet_v1_075": lambda r: nets.mobilenet_v1(r, depth_multiplier=0.75),
    "resnet_v1_50": nets.resnet_v1,
    "resnet_v1_101": lambda r: nets.resnet_v1(r, (3, 4, 23, 3), "resnet_v1_101"),
    "resnet_v1_152": lambda r: nets.resnet_v1(r, (3, 8, 36, 3), "resnet_v1_152"),
    "resnet_v1_200": lambda r: nets.resnet_v1(r, (3, 24, 36, 3), "resnet_v1_200"),
    "inception_v2": nets.inception_v2,
    "inception_v2-no-separable-conv": lambda r: nets.inception_v2(r, use_separable_conv=False),
    "inception_v3": nets.inception_v3,
}


def _up_to_end_points(network: str, resolution: int, convention: str = "tf-profiler") -> dict[str, int]:
    """Each end-point's FLOPs under the convention, summed over the layers it depends on."""
    graph, end_points = BUILDERS[network](resolution)
    per_layer = {"input": 0, **conventions.count(graph, convention).per_layer()}
    totals = cumulative(graph, per_layer)
    return {key: totals[layer] for key, layer in end_points.items()}


@pytest.mark.parametrize(("network", "resolution"), [(n, r) for n in TABLE for r in TABLE[n]])
def test_flops_up_to_each_end_point_match_the_table(network, resolution):
    got = _up_to_end_points(network, resolution)
    printed = [(key, f"{got[key] / 1e9:.3f}") for key, _ in TABLE[network][resolution]]
    assert printed == TABLE[network][resolution]


def test_the_table_rules_out_counting_the_residual_add():
    """resnet_v1_50/block1 at 224, by hand: conv1 7x7/2 to 112x112x64 (2 x 118,013,952, no bias:
    batch norm), pool1 3x3/2 'SAME' to 56x56 (9 x 200,704), unit 1 (shortcut and conv3 1x1 to
    256: 2 x 51,380,224 each; conv1 1x1: 2 x 12,845,056; conv2 3x3: 2 x 115,605,504), unit 2 (no
    shortcut conv), unit 3 (1x1/2 max-pool shortcut: 200,704; the 3x3 strided to 28x28: 2 x
    28,901,376; conv3 at 28x28: 2 x 12,845,056) = 1,323,442,176, printed 1.323. Counting one
    flop per output of the three adds (+802,816 + 802,816 + 200,704) would print 1.325."""
    unit1 = 2 * (51_380_224 + 12_845_056 + 115_605_504 + 51_380_224)
    unit2 = 2 * (51_380_224 + 115_605_504 + 51_380_224)
    unit3 = 200_704 + 2 * (51_380_224 + 28_901_376 + 12_845_056)
    by_hand = 2 * 118_013_952 + 9 * 200_704 + unit1 + unit2 + unit3
    assert by_hand == 1_323_442_176
    assert _up_to_end_points("resnet_v1_50", 224)["resnet_v1_50/block1"] == by_hand
    adds = 802_816 + 802_816 + 200_704
    assert f"{(by_hand + adds) / 1e9:.3f}" == "1.325" != TABLE["resnet_v1_50"][224][0][1]


def test_summing_the_inputs_cumulative_figures_would_double_count():
    # the end-point's subgraph counts a shared layer once: at a residual add the two inputs'
    # running totals both include everything before the block
    graph, end_points = nets.resnet_v1(224)
    per_layer = {"input": 0, **conventions.count(graph, "tf-profiler").per_layer()}
    naive: dict[str, int] = {}
    for node in graph.nodes:
        naive[node.name] = per_layer[node.name] + sum(naive[ref] for ref in node.inputs)
    assert naive[end_points["resnet_v1_50/block1"]] > 2 * 1_323_442_176


def test_rules_by_hand_on_small_layers():
    """conv 3x3, 3 -> 4, bias, on 8x8 'same': 2 x (4 x 27 x 64) + 256 bias adds; max pool 2x2/2 to
    4x4x4: 4 x 64; a 2-input add: 0; global average pool: 1 per input value (64); softmax over 4
    values: 5 per value; batch norm and ReLU: 0."""
    graph = from_dict({"name": "t", "input": [3, 8, 8], "layers": [
        {"name": "conv", "type": "conv", "filters": 4, "kernel": 3, "padding": 1},
        {"name": "bn", "type": "batchnorm"},
        {"name": "relu", "type": "relu"},
        {"name": "pool", "type": "maxpool", "kernel": 2},
        {"name": "add", "type": "add", "inputs": ["pool", "pool"]},
        {"name": "gap", "type": "global_avgpool"},
        {"name": "flat", "type": "flatten"},
        {"name": "softmax", "type": "softmax"},
    ]})
    counts = conventions.count(graph, "tf-profiler").per_layer()
    assert counts == {"conv": 2 * 4 * 27 * 64 + 256, "bn": 0, "relu": 0, "pool": 4 * 64, "add": 0, "gap": 64,
                      "flat": 0, "softmax": 5 * 4}


def test_transposed_conv_is_conv2d_backprop_inputs_formula():
    """TF's Conv2DBackpropInput: 2 x output values x kernel values / (output depth x stride
    product): 3 -> 4 channels, 4x4 kernel, stride 2, 5x5 -> 10x10 (padding 1, PyTorch's
    (5-1)*2 - 2 + 4 = 10): 2 * 400 * (16 * 4 * 3) / (4 * 4) = 9,600, + 400 bias adds."""
    graph = from_dict({"name": "t", "input": [3, 5, 5], "layers": [
        {"name": "up", "type": "conv_transpose", "filters": 4, "kernel": 4, "stride": 2, "padding": 1}]})
    assert conventions.count(graph, "tf-profiler").per_layer() == {"up": 2 * 400 * (16 * 4 * 3) // (4 * 4) + 400}


def test_under_convention_is_the_cumulative_of_the_presets_counts():
    graph, end_points = nets.alexnet_v2(224)
    totals = under_convention(graph, "tf-profiler", batch=2)
    # the table's alexnet_v2/conv2 at 224 (0.552 billion per image), for a batch of 2
    assert f"{totals[end_points['alexnet_v2/conv2']] / 2e9:.3f}" == "0.552"
    assert totals["input"] == 0

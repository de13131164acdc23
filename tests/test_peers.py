"""The peers' disagreements on modern layers, pinned as documented facts by running the peers.

thop and torchinfo (test dependencies) are run on the same torch modules that archcalc's ops
build (each op's ``torch_module``). Where they count a layer as 0, or apply a rule that does not
match the computation, the test records their figure beside archcalc's, whose figures the
registry-wide tests check against the multiply-adds performed and torch's FlopCounterMode.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import pytest

import archcalc
from archcalc.spec import from_dict

oracle = pytest.importorskip("tests.torch_oracle")
thop = pytest.importorskip("thop")
torchinfo = pytest.importorskip("torchinfo")
torch = oracle.torch

SHAPE = (16, 8, 8)


def _thop_macs(module, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, _ = thop.profile(module, inputs=(x,), verbose=False)
    return int(macs)


def _graph(layer):
    return from_dict({"name": "one", "input": list(SHAPE), "layers": [{**layer, "name": "one1"}]})


def _analysis(layer):
    return archcalc.analyze(_graph(layer))


@pytest.mark.parametrize(("layer", "other_ops_per_value"), [
    ({"type": "hardswish"}, 5), ({"type": "hardsigmoid"}, 4), ({"type": "silu"}, 4), ({"type": "gelu"}, 5),
    ({"type": "sigmoid"}, 4), ({"type": "relu6"}, 2), ({"type": "mish"}, 5),
])
def test_thop_and_torchinfo_count_modern_activations_as_zero(layer, other_ops_per_value):
    """Both report 0 for these activations; archcalc reports their element-wise work as other
    ops (never as MACs), one per elementary operation per value, as each op's docstring states."""
    graph = _graph(layer)
    row = archcalc.analyze(graph).layer("one1")
    module = oracle.build_module(layer["type"], archcalc.passes.infer_shapes(graph)["one1"]).eval()
    x = torch.rand(1, *SHAPE)
    assert _thop_macs(module, x) == 0
    assert torchinfo.summary(module, input_data=[x], verbose=0).total_mult_adds == 0
    assert (row.macs, row.other_ops) == (0, other_ops_per_value * math.prod(SHAPE))


def test_adaptive_max_pool_is_zero_to_both_and_adaptive_avg_pool_is_thops_kernel_plus_one():
    """8 -> 3: PyTorch's windows [0,3), [2,6), [5,8) have 3 + 4 + 3 = 10 = 8 + 3 - gcd(8, 3)
    values per axis; archcalc counts the comparisons (max) and the adds and divide (avg) of the
    actual windows. thop's avg rule is (prod(in/out) + 1) per output, a mean window that no
    window has (64/9 values), and it counts adaptive max-pool as 0; torchinfo counts neither."""
    c = SHAPE[0]
    values_read = c * (8 + 3 - 1) ** 2                  # every window's values, per channel 10 * 10
    max_row = _analysis({"type": "adaptive_maxpool", "output_size": 3}).layers[-1]
    avg_row = _analysis({"type": "adaptive_avgpool", "output_size": 3}).layers[-1]
    assert max_row.other_ops == values_read - c * 9     # window - 1 comparisons per output
    assert avg_row.other_ops == values_read             # window - 1 adds and 1 divide per output
    x = torch.rand(1, *SHAPE)
    assert _thop_macs(torch.nn.AdaptiveMaxPool2d(3), x) == 0
    # thop: ((in/out)^2 + 1) per output, a fractional "kernel" (8/3)^2: (64/9 + 1) * 144 = 1,168
    assert _thop_macs(torch.nn.AdaptiveAvgPool2d(3), x) == (Fraction(8, 3) ** 2 + 1) * c * 9 == 1168
    for module in (torch.nn.AdaptiveMaxPool2d(3), torch.nn.AdaptiveAvgPool2d(3)):
        assert torchinfo.summary(module, input_data=[x], verbose=0).total_mult_adds == 0


def test_torchinfo_counts_a_channels_last_linear_once_per_sample_not_per_position():
    """ConvNeXt's pointwise Linear on (H, W, C): C*4C multiply-adds at every one of H*W
    positions (archcalc, the executor and FlopCounterMode agree: tests/test_layout.py);
    torchinfo counts the weight once per sample, 1/(H*W) of that: 0.02x at 7x7."""
    channels, size = 8, 7
    analysis = archcalc.analyze(from_dict({"name": "cl", "input": [size, size, channels],
                                           "layers": [{"type": "linear", "name": "pwconv1", "units": 4 * channels}]}))
    macs = analysis.layer("pwconv1").macs
    assert macs == size * size * channels * 4 * channels
    linear = torch.nn.Linear(channels, 4 * channels)
    counted = torchinfo.summary(linear, input_data=[torch.rand(1, size, size, channels)], verbose=0).total_mult_adds
    assert counted == channels * 4 * channels + 4 * channels  # the weight and the bias, once
    assert oracle.torch_macs(linear, [torch.rand(1, size, size, channels)]) == macs


def test_thop_counts_bilinear_upsampling_as_mac_like_work_archcalc_keeps_apart():
    """thop reports 11 "MACs" per output of a bilinear upsample; archcalc counts 0 MACs (nothing
    multiplies a learned weight) and 7 other ops per output (4 taps: 4 multiplies, 3 adds)."""
    row = _analysis({"type": "upsample", "mode": "bilinear", "scale_factor": 2}).layers[-1]
    outputs = SHAPE[0] * 16 * 16
    assert (row.macs, row.other_ops) == (0, 7 * outputs)
    x = torch.rand(1, *SHAPE)
    assert _thop_macs(torch.nn.Upsample(scale_factor=2, mode="bilinear"), x) == 11 * outputs

"""The formulas of CONVENTIONS against hand-worked values (the doctests run too)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archcalc import formulas
from archcalc.errors import RuleError


def test_output_size_lecture_values():
    assert formulas.conv_output_size(32, 5) == (32 - 5) // 1 + 1 == 28  # LeNet conv1
    assert formulas.conv_output_size(227, 11, 4) == (227 - 11) // 4 + 1 == 55  # AlexNet conv1
    assert formulas.conv_output_size(224, 3, 1, 1) == 224  # VGG "same" 3x3
    assert formulas.conv_output_size(224, 2, 2) == 112
    assert formulas.conv_output_size(10, 3, 1, 0, dilation=2) == 10 - 5 + 1


def test_ceil_mode_follows_pytorch():
    assert formulas.conv_output_size(112, 3, 2, ceil_mode=True) == 56
    assert formulas.conv_output_size(112, 3, 2) == 55
    # ceil would add a window starting in the right padding: PyTorch drops it
    assert formulas.conv_output_size(5, 2, 2, padding=1, ceil_mode=True) == 3
    assert formulas.conv_output_size(6, 2, 2, padding=(0, 1), ceil_mode=True) == 3


def test_impossible_sizes_raise_with_the_arithmetic():
    with pytest.raises(RuleError, match=r"kernel 5 exceeds the padded input 3 \+ 0 \+ 0 = 3"):
        formulas.conv_output_size(3, 5)
    with pytest.raises(RuleError, match="do not divide by groups=2"):
        formulas.conv_params(3, 4, (3, 3), groups=2)


def test_same_padding_tensorflow_rule():
    assert formulas.same_padding(224, 3) == (1, 1)
    assert formulas.same_padding(224, 7, 2) == (2, 3)  # total 5: odd pixel after
    assert formulas.same_padding(5, 1, 2) == (0, 0)


@settings(max_examples=200, derandomize=True)
@given(size=st.integers(1, 64), kernel=st.integers(1, 9), stride=st.integers(1, 4), dilation=st.integers(1, 3))
def test_same_padding_gives_ceil_in_over_s(size, kernel, stride, dilation):
    before, after = formulas.same_padding(size, kernel, stride, dilation)
    assert 0 <= after - before <= 1
    assert formulas.conv_output_size(size, kernel, stride, (before, after), dilation) == math.ceil(size / stride)


def test_params_and_macs_hand_values():
    assert formulas.conv_params(3, 64, (3, 3), bias=False) == (3 * 3 * 3) * 64 == 1728
    assert formulas.conv_params(3, 64, (3, 3)) == 1728 + 64
    assert formulas.conv_params(32, 32, (3, 3), groups=32) == 32 * 9 + 32  # depthwise
    assert formulas.linear_params(7 * 7 * 512, 4096, bias=False) == 102_760_448
    assert formulas.conv_macs(3, 64, (3, 3), (224, 224)) == 64 * 27 * 224 * 224
    assert formulas.linear_macs(4096, 4096) == 4096 * 4096
    assert formulas.batchnorm_params(64) == (128, 128)
    assert formulas.flops(10) == 20


@settings(max_examples=100, derandomize=True)
@given(c=st.integers(1, 8), f=st.integers(1, 8), g=st.integers(1, 4), k=st.integers(1, 5), n=st.integers(1, 16))
def test_conv_params_independent_of_input_size_and_macs_linear_in_output(c, f, g, k, n):
    c, f = c * g, f * g
    assert formulas.conv_macs(c, f, (k, k), (2 * n, n)) == 2 * formulas.conv_macs(c, f, (k, k), (n, n))
    assert formulas.conv_params(c, f, (k, k), g) == f * c // g * k * k + f


def test_memory():
    assert formulas.activation_bytes(224 * 224 * 64) == 12_845_056
    assert formulas.activation_bytes(10, "bfloat16") == 20
    # 100 params, all trainable, Adam (2 slots), 1000 activations per sample, batch 2, float32
    assert formulas.training_bytes(100, 100, 1000, 2, "float32", "adam") == (100 + 100 * 3 + 1000 * 2 * 2) * 4
    assert formulas.training_bytes(100, 60, 0, 1, "int8", "momentum") == 100 + 60 * 2
    with pytest.raises(RuleError, match="unknown dtype"):
        formulas.activation_bytes(1, "float8")


def test_receptive_field_recurrences():
    assert formulas.receptive_field([(3, 1, 1, 1)] * 2).size == 5
    assert formulas.receptive_field([(3, 1, 1, 1)] * 3).size == 7
    # VGG16 conv1_1 .. pool1: 3, 5, then a 2x2/2 pool: 6; jump 2
    field = formulas.receptive_field([(3, 1, 1, 1), (3, 1, 1, 1), (2, 2, 1, 0)])
    assert (field.size, field.jump, field.padding) == (6, 2, 2)
    assert field.centre == (6 - 1) / 2 - 2
    # dilation 2 widens a 3x3 to span 5
    assert formulas.receptive_field([(3, 1, 2, 0)]).size == 5


def test_softmax_and_cross_entropy_by_hand():
    probs = formulas.softmax([0.0, math.log(3.0)])  # e^0 : e^ln3 = 1 : 3
    assert probs == pytest.approx([0.25, 0.75])
    assert formulas.cross_entropy(probs, 1) == pytest.approx(-math.log(0.75))
    # the lecture: dL/dh_i = y_hat_i - y_i
    assert formulas.cross_entropy_grad([0.0, math.log(3.0)], 0) == pytest.approx([0.25 - 1, 0.75])
    with pytest.raises(ValueError, match="label 2 is not a class of 2"):
        formulas.cross_entropy(probs, 2)


@pytest.mark.parametrize(("args", "message"), [
    ((0, 3), "input size must be an int >= 1, got 0"), ((5, 3, 0), "stride must be an int >= 1, got 0"),
    ((5, 3, 1, -1), "padding must be an int >= 0, got -1"), ((5, 0), "kernel must be an int >= 1, got 0"),
])
def test_impossible_window_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        formulas.conv_output_size(*args)


BIG = 2**53  # the first integer where float division goes wrong: 2**53 + 1 has no float


@pytest.mark.parametrize("size", [BIG + 2, BIG + 3, 3 * BIG + 1, 10**30 + 7, 2**200 + 1])
def test_output_size_is_exact_far_above_2_53(size):
    assert formulas.conv_output_size(size, 1) == size  # the 9007199254740994 reported ...993
    assert formulas.conv_output_size(size, 3, 2, 1) == (size + 2 - 3) // 2 + 1
    assert formulas.conv_output_size(size, 3, 2, ceil_mode=True) == -(-(size - 3) // 2) + 1
    assert formulas.conv_output_size(size, 5, 7, (2, 3), dilation=3) == (size + 5 - 13) // 7 + 1
    assert formulas.explain_conv_output_size(size, 1).endswith(f"= {size:,}") or formulas.explain_conv_output_size(
        size, 1).endswith(f"= {size}")  # with or without thousands separators
    assert formulas.conv_output_size(size, 1, BIG + 1) == (size - 1) // (BIG + 1) + 1


@pytest.mark.parametrize("size", [BIG + 1, BIG + 3, 10**20 + 1, 2**100 - 1])
@pytest.mark.parametrize("stride", [1, 2, 3, BIG - 1])
def test_same_padding_is_exact_far_above_2_53(size, stride):
    before, after = formulas.same_padding(size, 3, stride)
    assert 0 <= after - before <= 1
    assert formulas.conv_output_size(size, 3, stride, (before, after)) == -(-size // stride)


def test_receptive_field_centre_is_exact_at_any_size():
    from fractions import Fraction

    from archcalc.report import ReceptiveField

    field = formulas.Field(size=2**60 + 2, jump=1, padding=2**59)
    assert field.centre == Fraction(1, 2)  # (size - 1)/2 - padding computed in floats gives 0.0
    assert formulas.Field(size=2**1100 + 1, jump=1, padding=0).centre == 2**1099  # exact, beyond any float
    half = formulas.Field(size=2**1100 + 2, jump=1, padding=0)
    assert half.centre == Fraction(2**1100 + 1, 2)
    # JSON gets a float only where the float is the exact value; else the fraction's text
    data = ReceptiveField.of((field, half), (field, half), True).to_dict()
    assert data["centre"] == [0.5, f"{2**1100 + 1}/2"]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(size=st.integers(1, 40), kernel=st.integers(1, 7), stride=st.integers(1, 5), dilation=st.integers(1, 3),
       before=st.integers(0, 3), after=st.integers(0, 3), ceil_mode=st.booleans())
def test_output_size_counts_the_window_positions(size, kernel, stride, dilation, before, after, ceil_mode):
    """The integer formula against a count of where windows start (ceil: overhanging the end, as
    PyTorch, but never starting in the right padding)."""
    span = dilation * (kernel - 1) + 1
    padded = size + before + after
    if span > padded:
        with pytest.raises(RuleError):
            formulas.conv_output_size(size, kernel, stride, (before, after), dilation, ceil_mode)
        return
    if ceil_mode:  # pools, whose padding is at most k // 2 a side (else PyTorch drops only the last window)
        before, after = min(before, kernel // 2), min(after, kernel // 2)
        padded = size + before + after
        if span > padded:
            return
        starts = [i for i in range(padded) if i * stride <= padded - span + stride - 1 and i * stride < size + before]
    else:
        starts = [i for i in range(padded) if i * stride + span <= padded]
    assert formulas.conv_output_size(size, kernel, stride, (before, after), dilation, ceil_mode) == len(starts)

"""Adaptive pooling: average or maximum over PyTorch's adaptive windows, to a given output size (1D..3D).

PyTorch's windows on an axis of ``in`` values pooled to ``out``: output i reads
``[floor(i*in/out), ceil((i+1)*in/out))``. When ``out`` divides ``in`` they are the ordinary
window ``k = s = in/out``; otherwise they may overlap and differ in size (AlexNet's 13 -> 6 is
k3 s2; 5 -> 3 reads [0, 2), [1, 4), [3, 5)), and ``out > in`` repeats values (VGG's 1 -> 7).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from archcalc.errors import RuleError, check
from archcalc.formulas import exact
from archcalc.ops.attrs import MAX_INT, Attr, describe
from archcalc.ops.base import (
    AXIS_NAMES,
    Cost,
    Example,
    Layer,
    Op,
    RunContext,
    Saved,
    Shape,
    SizeDependence,
    Window,
    format_shape,
    get_op,
    keeps_input,
    new_buffer,
    register,
)


def output_size(value: Any) -> int | tuple[int | None, ...]:
    """A positive int for every axis, or a list of 1 to 3 (one per axis), each a positive int or null (keep that axis)."""
    def fits(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_INT

    if fits(value):
        return value
    if isinstance(value, (list, tuple)) and 1 <= len(value) <= 3 and all(v is None or fits(v) for v in value):
        return tuple(value)
    raise RuleError(
        f"must be a positive int <= {MAX_INT} (2**31 - 1), or a list of 1 to 3 of them where null keeps that axis,"
        f" got {describe(value)}"
    )


def window_lengths_sum(size: int, out: int) -> int:
    """Sum of the lengths of the ``out`` adaptive windows over ``size`` values: ``size + out - gcd(size, out)``.

    (The starts sum to ``((size-1)(out-1) + g - 1)/2`` and the ends to that plus ``size + out - g``,
    g = gcd: Hermite's identity for sums of ``floor(i*size/out)``.) 13 -> 6: 13 + 6 - 1 = 18 = 6 windows of 3.
    """
    return size + out - math.gcd(size, out)


def largest_window(size: int, out: int) -> int:
    """The longest adaptive window: ``ceil((size + out - gcd(size, out)) / out)`` (13 -> 6: 3; 1 -> 7: 1).

    Window i's length is ``ceil(f_i + size/out)`` with ``f_i = frac(i*size/out)``, whose largest
    value is ``1 - gcd/out``.
    """
    return -(-(size + out - math.gcd(size, out)) // out)


def axis_window(size: int, out: int) -> tuple[int, Any, Any, bool]:
    """``(kernel, stride, padding before, uniform)`` of the receptive field on one axis.

    Out 1 is one window over the whole axis (kernel ``size``, stride 0: global along it, as
    ``global_avgpool``). Uniform (every window the same length at a whole-number spacing) when ``out`` divides
    ``size`` (k = s = size/out) or ``size mod out == 1`` (k = size//out + 1, s = size//out: 13 -> 6
    is k3 s2, 1 -> 7 is k1 s0, every output seeing the one input): the ordinary window, exact.
    Otherwise the field steps by the mean spacing ``s = size/out`` (a fraction) from padding
    ``p = 1 - gcd/out`` (the largest ``frac(i*size/out)``), so unit i's field starts at or before its
    window; its kernel is the largest window, or one more where that is needed for every field
    ``[i*s - p, i*s - p + k - 1]`` to reach its window's end (no evenly spaced field of the
    largest window's width contains 6 -> 4's [0, 2), [1, 3), [3, 5), [4, 6)).
    """
    if out == 1:  # one window over the whole axis: every output (the one) sees all of it, stride 0
        return size, 0, 0, True
    if size % out == 0:
        return size // out, size // out, 0, True
    if size % out == 1:
        return size // out + 1, size // out, 0, True
    gcd = math.gcd(size, out)
    stride, padding, longest = Fraction(size, out), Fraction(out - gcd, out), largest_window(size, out)
    # reach = max over i of (window end - field start) = len_i - f_i + p; len - f is largest at
    # f = 0 or at the smallest f whose window is the longest (f = j*gcd/out, j > ((longest-1)*out - size)/gcd)
    first_longest = Fraction(max(0, ((longest - 1) * out - size) // gcd + 1) * gcd, out)
    reach = max(-(-size // out), longest - first_longest) + padding
    return math.ceil(reach), exact(stride), exact(padding), False


def axis_field(size: int, out: int) -> tuple[int, Any, Any, bool, int]:
    """:func:`axis_window` and the input dilation: ``(kernel, stride, padding before, uniform,
    input dilation)``. An output that is a multiple ``r`` of the input (from 2 values up) reads
    one value per output, ``floor(i/r)``, as nearest upsampling by ``r`` does: the exact window
    over the input with ``r - 1`` zeros inserted, kernel ``r``, stride 1, padding ``r - 1``."""
    if 1 < size < out and out % size == 0:
        ratio = out // size
        return ratio, 1, ratio - 1, True, ratio
    return (*axis_window(size, out), 1)


class _AdaptivePool(Op):
    """Shared rules of adaptive average and max pooling."""

    attrs = (
        Attr(
            "output_size", output_size, doc="output size per axis: an int for every axis, or a list (its length sets"
            " 1D/2D/3D) where null keeps that axis's input size",
        ),
    )

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        in_shape, wanted = in_shapes[0], attrs["output_size"]
        rank = len(wanted) if isinstance(wanted, tuple) else len(in_shape) - 1
        spatial = ", ".join(name[0].upper() for name in AXIS_NAMES.get(rank, ()))
        check(
            rank in AXIS_NAMES and len(in_shape) == rank + 1,
            lambda: f"{self.type} expects input (C, {spatial or 'spatial'})"
            f"{' with 1 to 3 spatial axes' if rank not in AXIS_NAMES else ''}, got {format_shape(in_shape)}",
        )
        per_axis = wanted if isinstance(wanted, tuple) else (wanted,) * rank
        return {**attrs, "output_size": tuple(n if o is None else o for n, o in zip(in_shape[1:], per_axis))}

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return (in_shapes[0][0], *attrs["output_size"])

    def window_values(self, layer: Layer) -> int:
        """Values read over all windows of one channel: prod over axes of ``in + out - gcd(in, out)``."""
        return math.prod(window_lengths_sum(n, o) for n, o in zip(layer.in_shape[1:], layer.attrs["output_size"]))

    def size_dependence(self, attrs: Mapping[str, Any], layer: Layer) -> tuple[SizeDependence, ...]:
        """The windows are worked out from the input size (PyTorch's floor/ceil rule): on every
        axis with a given output size, another input size gives other windows and another field."""
        wanted = attrs["output_size"]
        rank = len(layer.in_shape) - 1
        per_axis = wanted if isinstance(wanted, tuple) else (wanted,) * rank
        out = []
        for axis, (n, o) in enumerate(zip(layer.in_shape[1:], per_axis)):
            if o is None or o == 1:  # the axis kept as it is, or seen whole: the same at any size
                continue
            k, s, _, uniform, _ = axis_field(n, o)
            k2, s2, _, uniform2, _ = axis_field(n + 1, o)
            text = (f"windows resolved for input {AXIS_NAMES[rank][axis]} {n} -> {o}: kernel {k}, stride {s}"
                    f"{'' if uniform else ' (non-uniform)'}; at {n + 1} -> {o} they would be kernel {k2}, stride {s2}"
                    f"{'' if uniform2 else ' (non-uniform)'}")
            out.append(SizeDependence("output_size", axis, text, True))
        return tuple(out)

    def window(self, layer: Layer) -> Window:
        axes = [axis_field(n, o) for n, o in zip(layer.in_shape[1:], layer.attrs["output_size"])]
        dilations = tuple(d for *_, d in axes)
        return Window(
            kernel=tuple(k for k, *_ in axes),
            stride=tuple(s for _, s, *_ in axes),
            dilation=(1,) * len(axes),
            padding=tuple((p, p) for _, _, p, *_ in axes),
            input_dilation=dilations if any(d != 1 for d in dilations) else (),
            uniform=all(u for _, _, _, u, _ in axes),
        )

    def summary(self, layer: Layer) -> str:
        return "to " + "x".join(map(str, layer.attrs["output_size"]))

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return self.torch_classes(nn)[len(layer.attrs["output_size"]) - 1](layer.attrs["output_size"])

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        lines = []
        for name, n, o in zip(AXIS_NAMES[len(layer.in_shape) - 1], layer.in_shape[1:], layer.out_shape[1:]):
            longest = largest_window(n, o)
            lines.append((
                f"output {name}",
                f"{o}: window i reads [floor(i*{n}/{o}), ceil((i+1)*{n}/{o})); "
                f"lengths sum to in + out - gcd = {n} + {o} - {math.gcd(n, o)} = {window_lengths_sum(n, o)}, "
                f"the longest {longest}",
            ))
        lines.append(("output shape", f"(c={layer.in_shape[0]}, {', '.join(map(str, layer.out_shape[1:]))}) = "
                                      f"{format_shape(layer.out_shape)}"))
        return [*lines, ("params", "0 (pooling has no parameters)"), ("MACs", "0 (pooling multiplies nothing)")]


_EXAMPLES = (
    Example({"output_size": 6}, ((2, 13, 13),), (2, 6, 6)),  # AlexNet: overlapping windows (k3 s2)
    Example({"output_size": 7}, ((3, 1, 1),), (3, 7, 7)),  # VGG on CIFAR: 1x1 replicated
    Example({"output_size": [7, 7]}, ((2, 14, 14),), (2, 7, 7)),  # uniform: k = s = 2
    Example({"output_size": [None, 3]}, ((2, 4, 5),), (2, 4, 3)),  # a kept axis; 5 -> 3 non-uniform
    Example({"output_size": 4}, ((3, 10),), (3, 4)),  # 1D, windows of 3 and 4
    Example({"output_size": [2, 3, 2]}, ((2, 5, 4, 3),), (2, 2, 3, 2)),  # 3D
    Example({"output_size": [4, 5]}, ((1, 6, 3),), (1, 4, 5)),  # shrinks one axis, grows the other
    Example({"output_size": [8, 9]}, ((2, 4, 3),), (2, 8, 9)),  # 2x and 3x: nearest upsampling, exact
)


@register
class AdaptiveAvgPool(_AdaptivePool):
    """Mean over each of PyTorch's adaptive windows, per channel (nn.AdaptiveAvgPool1d/2d/3d).

    out = output_size per axis (null keeps the input's); window i on an axis of in values reads
    [floor(i*in/out), ceil((i+1)*in/out)), so windows may overlap, differ in size, or repeat (out > in)
    params = 0; MACs = 0; other ops = the values every window reads, summed over the outputs
    (per window: window - 1 adds and 1 divide) = c * prod over axes of (in + out - gcd(in, out))
    receptive field: the ordinary window where out divides in (k = s = in/out) or in mod out == 1;
    otherwise stride in/out, the largest window (or one more) as kernel, flagged non-uniform (~)
    saved for backward: its input (adaptive_avg_pool's backward reads it); nothing when every output
    size is 1 (PyTorch computes that as a mean, whose backward needs only shapes)
    """

    type = "adaptive_avgpool"
    other_ops_rule = "the values each window reads, summed over outputs: c * prod(in + out - gcd(in, out)) per axis"
    examples = _EXAMPLES

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        if all(n == 1 for n in layer.out_shape[1:]):
            return ()
        return (keeps_input(layer),)

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, layer.in_shape[0] * self.window_values(layer))

    def torch_classes(self, nn: Any) -> tuple[Any, ...]:
        return nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        from archcalc import kernels

        return kernels.adaptive_avgpool_forward(inputs[0], layer.attrs["output_size"]), inputs[0].shape

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        from archcalc import kernels

        return [kernels.adaptive_avgpool_backward(dy, cache, layer.attrs["output_size"])], {}


@register
class AdaptiveMaxPool(_AdaptivePool):
    """Maximum over each of PyTorch's adaptive windows, per channel (nn.AdaptiveMaxPool1d/2d/3d).

    out = output_size per axis (null keeps the input's); windows as adaptive_avgpool's
    params = 0; MACs = 0; other ops = window - 1 comparisons per output, summed:
    c * (prod over axes of (in + out - gcd(in, out)) - prod(out))
    ties: the first maximum in row-major window order; a NaN always wins (the last NaN), as
    PyTorch's CPU kernel; the gradient goes to the arg-max
    receptive field: as adaptive_avgpool's
    saved for backward: its input and the int64 index of each output's maximum
    """

    type = "adaptive_maxpool"
    other_ops_rule = "window - 1 comparisons per output, summed: c * (prod(in + out - gcd(in, out)) - prod(out))"
    examples = _EXAMPLES

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return keeps_input(layer), new_buffer("indices", layer.out_shape, "int64")

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, layer.in_shape[0] * (self.window_values(layer) - math.prod(layer.out_shape[1:])))

    def torch_classes(self, nn: Any) -> tuple[Any, ...]:
        return nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d

    def torch_field_module(self, layer: Layer) -> Any:
        """For receptive-field measurement: the average over the same windows, which every value reaches."""
        return get_op("adaptive_avgpool").torch_module(layer)

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        from archcalc import kernels

        y, argmax = kernels.adaptive_maxpool_forward_argmax(inputs[0], layer.attrs["output_size"])
        return y, (argmax, inputs[0].shape)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        from archcalc import kernels

        argmax, x_shape = cache
        return [kernels.adaptive_maxpool_backward(dy, argmax, x_shape)], {}


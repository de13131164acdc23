"""Pooling: max and average over sliding windows (1D/2D/3D by the input), and global average."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc.errors import check
from archcalc.ops.attrs import Attr, boolean, ints, optional, padding, positive_int
from archcalc.ops.base import (
    AXIS_NAMES,
    GLOBAL,
    Cost,
    Example,
    Layer,
    Op,
    RunContext,
    Saved,
    Shape,
    Window,
    format_shape,
    keeps_input,
    new_buffer,
    register,
)
from archcalc.ops.window import explain_output, geometry_text, resolve_window, window_of, window_output

_POOL_ATTRS = (
    Attr("kernel", ints(1), doc="window size k: an int, or one per axis"),
    Attr("stride", optional(ints(1)), None, "stride s per axis; default: the kernel, as in PyTorch"),
    Attr("padding", padding, 0, "int, per axis, per side, pairs, 'same' or 'valid'; at most k//2 a side"),
    Attr("ceil_mode", boolean, False, "round the output size up (Caffe, GoogLeNet)"),
)

_POOL_EXAMPLES = (
    Example({"kernel": 2}, ((3, 8, 8),), (3, 4, 4)),
    Example({"kernel": 3, "stride": 2, "ceil_mode": True}, ((2, 8, 8),), (2, 4, 4)),
    Example({"kernel": 3, "stride": 2, "padding": 1}, ((2, 7, 9),), (2, 4, 5)),
    Example({"kernel": [3, 2], "stride": [1, 2]}, ((1, 5, 6),), (1, 3, 3)),
    Example({"kernel": 3, "stride": 2}, ((2, 11),), (2, 5)),
    Example({"kernel": 2}, ((2, 4, 4, 6),), (2, 2, 2, 3)),
    Example({"kernel": 3, "stride": 2, "padding": "same"}, ((2, 8, 7),), (2, 4, 4)),  # pads 0:1 and 1:1
)


def reads_only_padding(size: int, dilation: int, before: int) -> bool:
    """Whether a pooling window with padding ``before`` <= k//2 reads only padding on an axis of ``size``.

    Only the first window can, and only when ``dilation > size``: a window starting inside the
    input reads it at its first tap; one starting in the padding (then k <= 2, as its span
    ``d*(k-1) + 1`` fits ``size + 2*(k//2)``) next reads at ``d - before``, past an input of d - 1
    or fewer values. PyTorch returns -inf there; archcalc refuses it.
    """
    return before > 0 and dilation > size


class _Pool(Op):
    """Shared rules of max and average pooling over windows."""

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        in_shape = in_shapes[0]
        rank = len(attrs["kernel"]) if isinstance(attrs["kernel"], tuple) else max(len(in_shape) - 1, 1)
        resolved = resolve_window(attrs, in_shape, rank, f"{self.type} with a {rank}D window")
        for k, (before, after) in zip(resolved["kernel"], resolved["padding"]):
            check(
                max(before, after) <= k // 2,
                lambda k=k, b=before, a=after: f"padding {max(b, a)} exceeds half the kernel ({k} // 2 = {k // 2});"
                " a window could lie wholly in the padding",
            )
        for axis, (n, d, (before, _)) in enumerate(zip(in_shape[1:], resolved["dilation"], resolved["padding"])):
            check(
                not reads_only_padding(n, d, before),
                lambda axis=axis, n=n, d=d, b=before: f"dilation {d} with padding {b} puts the first window on the"
                f" {AXIS_NAMES[len(in_shape) - 1][axis]} axis wholly in the padding (its taps at {-b}, {d - b}, ... miss"
                f" the input's {n} values); PyTorch would return -inf",
            )
        return resolved

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return (in_shapes[0][0], *window_output(attrs, in_shapes[0], attrs["ceil_mode"]))

    def window(self, layer: Layer) -> Window:
        return window_of(layer)

    def summary(self, layer: Layer) -> str:
        return geometry_text(layer.attrs) + (" ceil" if layer.attrs["ceil_mode"] else "")

    def torch_module(self, layer: Layer) -> Any:
        """torch's pool; padding torch cannot take (asymmetric) is applied first, by value
        :attr:`pad_value`."""
        from archcalc.ops import _torch

        a = layer.attrs
        symmetric = all(before == after for before, after in a["padding"])
        padding = tuple(before for before, _ in a["padding"]) if symmetric else 0
        inner = self.torch_pool(_torch.nn, len(a["kernel"]), a, padding)
        return _torch.Padded(inner, () if symmetric else a["padding"], self.pad_value)

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        lines = explain_output(layer.attrs, layer, f"c={layer.in_shape[0]}", layer.attrs["ceil_mode"])
        return [*lines, ("params", "0 (pooling has no parameters)"), ("MACs", "0 (pooling multiplies nothing)")]


@register
class MaxPool(_Pool):
    """Maximum over each window, per channel (PyTorch's MaxPool, dilation included).

    out = floor((in + p_before + p_after - d*(k-1) - 1) / s) + 1 per axis (ceil with ceil_mode)
    params = 0; MACs = 0; other ops = (prod(k) - 1) comparisons per output value
    padding: at most k//2 a side (PyTorch's limit, whatever the dilation); it never wins
    ties: the first maximum in row-major window order; a NaN always wins (PyTorch's CPU rule)
    receptive field: a window of k, s, d and the resolved padding per axis
    saved for backward: its input and the int64 index of each output's maximum; with asymmetric padding (F.pad
    first) the padded copy instead of the input
    """

    type = "maxpool"
    pad_value = -math.inf
    other_ops_rule = "(prod(k) - 1) comparisons per output value"
    attrs = (*_POOL_ATTRS, Attr("dilation", ints(1), 1, "dilation d per axis: taps d apart, as PyTorch's MaxPool"))
    examples = (
        *_POOL_EXAMPLES,
        Example({"kernel": 3, "stride": 2, "dilation": 2, "padding": 1}, ((2, 9, 9),), (2, 4, 4)),
        Example({"kernel": 2, "stride": 2, "dilation": 2, "ceil_mode": True}, ((2, 7),), (2, 3)),
        Example({"kernel": [2, 3, 2], "dilation": [1, 2, 3], "stride": 1, "padding": [0, 1, 1]}, ((1, 3, 6, 7),), (1, 2, 4, 6)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return _pool_input(layer), new_buffer("indices", layer.out_shape, "int64")

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, (math.prod(layer.attrs["kernel"]) - 1) * math.prod(layer.out_shape))

    def torch_pool(self, nn: Any, rank: int, a: Mapping[str, Any], padding: Any) -> Any:
        pool = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)[rank - 1]
        return pool(a["kernel"], a["stride"], padding, a["dilation"], ceil_mode=a["ceil_mode"])

    def torch_field_module(self, layer: Layer) -> Any:
        """For receptive-field measurement: a depthwise conv over the same (dilated) windows, which
        every value in a window reaches (a max routes its gradient to one). Ceil mode's overhang is
        padded explicitly so that the conv has the pool's output size."""
        from archcalc.ops import _torch

        a, c = layer.attrs, layer.in_shape[0]
        pads = tuple(
            (before, after + max(0, (o - 1) * s + d * (k - 1) + 1 - (n + before + after)))
            for (before, after), o, s, d, k, n in zip(
                a["padding"], layer.out_shape[1:], a["stride"], a["dilation"], a["kernel"], layer.in_shape[1:]
            )
        )
        conv = _torch.by_rank((_torch.nn.Conv1d, _torch.nn.Conv2d, _torch.nn.Conv3d), len(a["kernel"]))
        return _torch.Padded(conv(c, c, a["kernel"], a["stride"], 0, a["dilation"], c, bias=False), pads)

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        from archcalc import kernels

        a, x = layer.attrs, inputs[0]
        y, argmax, geo = kernels.maxpool_forward_argmax(x, a["kernel"], a["stride"], a["padding"], a["ceil_mode"], a["dilation"])
        return y, (argmax, x.shape, geo)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        from archcalc import kernels

        argmax, x_shape, geo = cache
        return [kernels.maxpool_backward_argmax(dy, argmax, x_shape, geo)], {}


@register
class AvgPool(_Pool):
    """Mean over each window, per channel (PyTorch's AvgPool; no dilation, as PyTorch).

    out = floor((in + p_before + p_after - k) / s) + 1 per axis (ceil with ceil_mode)
    params = 0; MACs = 0; other ops = prod(k) per output value (prod(k) - 1 adds, 1 divide)
    divisor: the window's values within the padded input (count_include_pad true: PyTorch's
    default), within the input alone (false; TensorFlow's rule, and the default with padding
    "same", TensorFlow's padding), never ceil mode's overhang; or divisor_override (2D/3D, as
    nn.AvgPool2d/3d; PyTorch's AvgPool1d has none) for every window
    receptive field: a window of k, s and the resolved padding per axis
    saved for backward: its input (the padded copy with asymmetric padding, F.pad first); where only real
    inputs count with asymmetric padding, also the divisor per output position
    """

    type = "avgpool"
    pad_value = 0.0
    other_ops_rule = "prod(k) per output value (prod(k) - 1 adds, 1 divide)"
    attrs = (
        *_POOL_ATTRS,
        Attr(
            "count_include_pad", optional(boolean), None, "divide by the whole window, padding included; null: true"
            " (PyTorch's default) except with padding 'same', whose average counts only real inputs (TensorFlow's)",
        ),
        Attr("divisor_override", optional(positive_int), None, "divide every window's sum by this (2D/3D, as nn.AvgPool2d)"),
    )
    examples = (
        *_POOL_EXAMPLES,
        Example({"kernel": 3, "stride": 1, "padding": "same", "count_include_pad": True}, ((2, 5, 6),), (2, 5, 6)),
        Example({"kernel": [4], "stride": 3, "padding": "same"}, ((2, 10),), (2, 4)),  # pads 1:2, TF's divisor
        Example({"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False}, ((2, 7, 6),), (2, 4, 3)),
        Example({"kernel": 2, "stride": 1, "padding": 1, "divisor_override": 3}, ((2, 4, 5),), (2, 5, 6)),
        Example({"kernel": 3, "stride": 2, "padding": [0, 1, 1, 0], "divisor_override": 2}, ((1, 6, 6),), (1, 3, 3)),
        Example({"kernel": 2, "ceil_mode": True, "divisor_override": 5}, ((1, 3, 4, 5),), (1, 2, 2, 3)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        a = layer.attrs
        if all(before == after for before, after in a["padding"]) or a["count_include_pad"] or a["divisor_override"] is not None:
            return (_pool_input(layer),)
        return _pool_input(layer), new_buffer("divisor", (1, *layer.out_shape[1:]))

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        resolved = super().resolve(attrs, in_shapes)
        if resolved["count_include_pad"] is None:
            resolved["count_include_pad"] = attrs["padding"] != "same"
        rank = len(resolved["kernel"])
        check(
            resolved["divisor_override"] is None or rank > 1,
            lambda: f"divisor_override applies to 2D and 3D windows (PyTorch's AvgPool1d has none), got a {rank}D window",
        )
        return resolved

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, math.prod(layer.attrs["kernel"]) * math.prod(layer.out_shape))

    def summary(self, layer: Layer) -> str:
        a = layer.attrs
        divisor = f" /{a['divisor_override']}" if a["divisor_override"] is not None else ""
        real = " excl. pad" if not a["count_include_pad"] and any(p != (0, 0) for p in a["padding"]) else ""
        return super().summary(layer) + divisor + real

    def torch_pool(self, nn: Any, rank: int, a: Mapping[str, Any], padding: Any) -> Any:
        pool = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)[rank - 1]
        divisor = {} if a["divisor_override"] is None else {"divisor_override": a["divisor_override"]}
        return pool(a["kernel"], a["stride"], padding, ceil_mode=a["ceil_mode"], count_include_pad=a["count_include_pad"],
                    **divisor)

    def torch_module(self, layer: Layer) -> Any:
        """torch's pool. Asymmetric padding is applied first, by zeros; where the divisor counts
        only real inputs (count_include_pad false, no divisor_override) torch's pool would count
        those zeros, so the mean is sum over the window / real inputs in it: the pool of the padded
        input over the pool of the padded mask of real inputs (the equal divisors cancel)."""
        a = layer.attrs
        symmetric = all(before == after for before, after in a["padding"])
        if symmetric or a["count_include_pad"] or a["divisor_override"] is not None:
            return super().torch_module(layer)
        from archcalc.ops import _torch

        pool = self.torch_pool(_torch.nn, len(a["kernel"]), {**a, "count_include_pad": True}, 0)
        return _real_mean(_torch, pool, a["padding"])

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        from archcalc import kernels

        a = layer.attrs
        y = kernels.avgpool_forward(inputs[0], a["kernel"], a["stride"], a["padding"], a["ceil_mode"], a["count_include_pad"],
                                    a["divisor_override"])
        return y, inputs[0]

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        from archcalc import kernels

        a = layer.attrs
        dx = kernels.avgpool_backward(dy, cache, a["kernel"], a["stride"], a["padding"], a["ceil_mode"], a["count_include_pad"],
                                      a["divisor_override"])
        return [dx], {}


def _real_mean(_torch: Any, pool: Any, pads: tuple[tuple[int, int], ...]) -> Any:
    """A torch module: ``pool(pad(x)) / pool(pad(1))``, the mean over each window's real inputs."""

    class RealMean(_torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = pool

        def forward(self, x: Any) -> Any:
            order = _torch.pad_order(pads)
            mask = _torch.F.pad(_torch.torch.ones_like(x[:, :1]), order)
            return self.pool(_torch.F.pad(x, order)) / self.pool(mask)

    return RealMean()


@register
class GlobalAvgPool(Op):
    """Mean over all spatial positions, per channel: (C, *S) -> (C, 1, ..., 1).

    params = 0; MACs = 0; other ops = prod(S) per channel (prod(S) - 1 adds, 1 divide)
    receptive field: global (every output sees the whole input)
    saved for backward: nothing (a mean: shapes only)
    """

    type = "global_avgpool"
    other_ops_rule = "prod(S) per channel (prod(S) - 1 adds, 1 divide)"
    examples = (Example({}, ((3, 5, 5),), (3, 1, 1)), Example({}, ((4, 7),), (4, 1)))

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return ()

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        in_shape = in_shapes[0]
        check(len(in_shape) >= 2, lambda: f"expects input (C, *spatial), got {format_shape(in_shape)}")
        return (in_shape[0],) + (1,) * (len(in_shape) - 1)

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, math.prod(layer.in_shape))

    def window(self, layer: Layer) -> str:
        return GLOBAL

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)[len(layer.in_shape) - 2](1)

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        x = inputs[0]
        return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True), x.shape

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        import numpy as np

        return [np.broadcast_to(dy / math.prod(cache[2:]), cache).copy()], {}

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        shape = layer.in_shape
        ones = ", ".join("1" * (len(shape) - 1))
        return [("output shape", f"(C, 1, ...) = ({shape[0]}, {ones}) = {format_shape(layer.out_shape)}")]


def _pool_input(layer: Layer) -> Saved:
    """What a pool's backward keeps of its input: the input itself, or with asymmetric padding (PyTorch
    cannot pad a pool asymmetrically: F.pad runs first) the padded copy the pool then reads."""
    pads = layer.attrs["padding"]
    if all(before == after for before, after in pads):
        return keeps_input(layer)
    return new_buffer("padded input", (layer.in_shape[0], *(n + b + e for n, (b, e) in zip(layer.in_shape[1:], pads))))

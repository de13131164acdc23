"""Pooling: max and average over sliding windows (1D/2D/3D by the input), and global average."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc.errors import check
from archcalc.ops.attrs import Attr, boolean, ints, optional, padding
from archcalc.ops.base import GLOBAL, Cost, Example, Layer, Op, RunContext, Shape, Window, format_shape, register
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
)


class _Pool(Op):
    """Shared rules of max and average pooling over windows."""

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        in_shape = in_shapes[0]
        rank = len(attrs["kernel"]) if isinstance(attrs["kernel"], tuple) else max(len(in_shape) - 1, 1)
        resolved = resolve_window({**attrs, "dilation": 1}, in_shape, rank, f"{self.type} with a {rank}D window")
        for k, (before, after) in zip(resolved["kernel"], resolved["padding"]):
            check(
                max(before, after) <= k // 2,
                lambda k=k, b=before, a=after: f"padding {max(b, a)} exceeds half the kernel ({k} // 2 = {k // 2});"
                " a window could lie wholly in the padding",
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
        :attr:`pad_value` (with count_include_pad false an average would then count it)."""
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
    """Maximum over each window, per channel.

    out = floor((in + p_before + p_after - k) / s) + 1 per axis (ceil with ceil_mode)
    params = 0; MACs = 0; other ops = (prod(k) - 1) comparisons per output value
    """

    type = "maxpool"
    pad_value = -math.inf
    other_ops_rule = "(prod(k) - 1) comparisons per output value"
    attrs = _POOL_ATTRS
    examples = _POOL_EXAMPLES

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, (math.prod(layer.attrs["kernel"]) - 1) * math.prod(layer.out_shape))

    def torch_field_module(self, layer: Layer) -> Any:
        """For receptive-field measurement: the average over the same windows, which every value reaches."""
        from archcalc.ops.base import get_op

        return get_op("avgpool").torch_module(Layer({**layer.attrs, "count_include_pad": True}, layer.in_shapes, layer.out_shape))

    def torch_pool(self, nn: Any, rank: int, a: Mapping[str, Any], padding: Any) -> Any:
        pool = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)[rank - 1]
        return pool(a["kernel"], a["stride"], padding, ceil_mode=a["ceil_mode"])

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        from archcalc import kernels

        a, x = layer.attrs, inputs[0]
        y, argmax, geo = kernels.maxpool_forward_argmax(x, a["kernel"], a["stride"], a["padding"], a["ceil_mode"])
        return y, (argmax, x.shape, geo)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        from archcalc import kernels

        argmax, x_shape, geo = cache
        return [kernels.maxpool_backward_argmax(dy, argmax, x_shape, geo)], {}


@register
class AvgPool(_Pool):
    """Mean over each window, per channel.

    out = floor((in + p_before + p_after - k) / s) + 1 per axis (ceil with ceil_mode)
    params = 0; MACs = 0; other ops = prod(k) per output value (prod(k) - 1 adds, 1 divide)
    """

    type = "avgpool"
    pad_value = 0.0
    other_ops_rule = "prod(k) per output value (prod(k) - 1 adds, 1 divide)"
    attrs = (*_POOL_ATTRS, Attr("count_include_pad", boolean, True, "divide by the whole window, padding included"))
    examples = _POOL_EXAMPLES

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, math.prod(layer.attrs["kernel"]) * math.prod(layer.out_shape))

    def torch_pool(self, nn: Any, rank: int, a: Mapping[str, Any], padding: Any) -> Any:
        pool = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)[rank - 1]
        return pool(a["kernel"], a["stride"], padding, ceil_mode=a["ceil_mode"], count_include_pad=a["count_include_pad"])

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        from archcalc import kernels

        a = layer.attrs
        y = kernels.avgpool_forward(inputs[0], a["kernel"], a["stride"], a["padding"], a["ceil_mode"], a["count_include_pad"])
        return y, inputs[0]

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        from archcalc import kernels

        a = layer.attrs
        dx = kernels.avgpool_backward(dy, cache, a["kernel"], a["stride"], a["padding"], a["ceil_mode"], a["count_include_pad"])
        return [dx], {}


@register
class GlobalAvgPool(Op):
    """Mean over all spatial positions, per channel: (C, *S) -> (C, 1, ..., 1).

    params = 0; MACs = 0; other ops = prod(S) per channel (prod(S) - 1 adds, 1 divide)
    receptive field: global (every output sees the whole input)
    """

    type = "global_avgpool"
    other_ops_rule = "prod(S) per channel (prod(S) - 1 adds, 1 divide)"
    examples = (Example({}, ((3, 5, 5),), (3, 1, 1)), Example({}, ((4, 7),), (4, 1)))

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

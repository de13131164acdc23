"""Merging branches: concatenation along channels and element-wise addition."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc.errors import check
from archcalc.ops.base import POINTWISE, Cost, Example, Layer, Op, RunContext, Shape, format_shape, register


@register
class Concat(Op):
    """Stack inputs along the channel axis; their other axes must match.

    out = (sum of c_i, *spatial); params = 0; MACs = 0; other ops = 0 (a copy)
    """

    type = "concat"
    other_ops_rule = "0 (a copy)"
    arity = (2, None)
    examples = (Example({}, ((2, 4, 4), (3, 4, 4)), (5, 4, 4)), Example({}, ((2,), (3,), (1,)), (6,)))

    def torch_module(self, layer: Layer) -> Any:
        from archcalc.ops import _torch

        return _torch.Cat()

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        first = in_shapes[0]
        for shape in in_shapes[1:]:
            check(
                shape[1:] == first[1:],
                lambda shape=shape: "inputs must match on every axis but channels, got "
                + " and ".join(format_shape(s) for s in (first, shape)),
            )
        return (sum(shape[0] for shape in in_shapes), *first[1:])

    def cost(self, layer: Layer) -> Cost:
        return Cost()

    def window(self, layer: Layer) -> str:
        return POINTWISE

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        import numpy as np

        return np.concatenate(inputs, axis=1), [x.shape[1] for x in inputs]

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        import numpy as np

        return np.split(dy, np.cumsum(cache)[:-1], axis=1), {}

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        channels = " + ".join(str(s[0]) for s in layer.in_shapes)
        return [("output channels", f"{channels} = {layer.out_shape[0]}"), ("output shape", format_shape(layer.out_shape))]


@register
class Add(Op):
    """Element-wise sum of inputs of one shape (ResNet's shortcut). In place.

    params = 0; MACs = 0; other ops = (inputs - 1) adds per value
    """

    type = "add"
    other_ops_rule = "(inputs - 1) adds per value"
    arity = (2, None)
    stores_output = False
    examples = (Example({}, ((2, 4, 4), (2, 4, 4)), (2, 4, 4)),)

    def torch_module(self, layer: Layer) -> Any:
        from archcalc.ops import _torch

        return _torch.Sum()

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        for shape in in_shapes[1:]:
            check(
                shape == in_shapes[0],
                lambda shape=shape: f"inputs must have one shape, got {format_shape(in_shapes[0])} and {format_shape(shape)}",
            )
        return in_shapes[0]

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, (len(layer.in_shapes) - 1) * math.prod(layer.out_shape))

    def window(self, layer: Layer) -> str:
        return POINTWISE

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        return sum(inputs[1:], inputs[0]), len(inputs)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy] * cache, {}  # the gradient fans out to every input

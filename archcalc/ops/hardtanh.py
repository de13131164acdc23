"""HardTanh: clamp every value to ``[min_val, max_val]`` (ReLU6 is HardTanh(0, 6))."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc.errors import check
from archcalc.ops.attrs import Attr, number
from archcalc.ops.base import (
    POINTWISE,
    Cost,
    Example,
    Layer,
    Op,
    RunContext,
    Saved,
    Shape,
    keeps_input,
    register,
)


@register
class HardTanh(Op):
    """min(max(x, min_val), max_val) per value, as PyTorch's Hardtanh (ReLU6: min_val 0, max_val 6).

    out = the input's shape; params = 0; MACs = 0; other ops = 2 per value (a max and a min)
    in place (stores nothing new); receptive field: unchanged (pointwise)
    gradient: dy where min_val < x < max_val, else 0 (PyTorch's rule, 0 at the bounds)
    saved for backward: its input (PyTorch saves self)
    """

    type = "hardtanh"
    attrs = (
        Attr("min_val", number(), -1.0, "lower bound of the output"),
        Attr("max_val", number(), 1.0, "upper bound of the output; above min_val"),
    )
    stores_output = False
    other_ops_rule = "2 per value (a max and a min)"
    examples = (
        Example({}, ((3, 4, 4),), (3, 4, 4)),
        Example({"min_val": 0.0, "max_val": 6.0}, ((5,),), (5,)),
        Example({"min_val": -0.5, "max_val": 0.25}, ((2, 7),), (2, 7)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return (keeps_input(layer),)

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        low, high = attrs["min_val"], attrs["max_val"]
        check(low < high, lambda: f"min_val must be below max_val, got min_val={low} and max_val={high}")
        return dict(attrs)

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return in_shapes[0]

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, 2 * math.prod(layer.out_shape))

    def window(self, layer: Layer) -> str:
        return POINTWISE

    def summary(self, layer: Layer) -> str:
        return f"[{layer.attrs['min_val']:g}, {layer.attrs['max_val']:g}]"

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        from archcalc import kernels

        y = kernels.clamp_forward(inputs[0], *self.bounds(layer))
        return y, y  # backward's mask is min_val < y < max_val, the same as of x: no mask kept

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        from archcalc import kernels

        return [kernels.clamp_backward(dy, cache, *self.bounds(layer))], {}

    def bounds(self, layer: Layer) -> tuple[float, float]:
        """(min_val, max_val) of the layer."""
        return layer.attrs["min_val"], layer.attrs["max_val"]

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.Hardtanh(layer.attrs["min_val"], layer.attrs["max_val"])

"""PReLU: x for x > 0, a * x otherwise, with the slope a learned (one shared, or one per channel)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from archcalc.errors import check
from archcalc.ops.attrs import Attr, number, positive_int
from archcalc.ops.base import (
    SLOPE,
    Cost,
    Example,
    Layer,
    Param,
    RunContext,
    Saved,
    Shape,
    keeps_input,
    keeps_param,
    register,
)
from archcalc.ops.pointwise import _Elementwise


@register
class PReLU(_Elementwise):
    """x if x > 0 else a * x per value, the slope a learned: one shared or one per channel (PyTorch's PReLU).

    out = the input's shape; params = num_parameters (1, or c: one slope per channel), starting
    at `init` (0.25); MACs = 0 (an element-wise product, not a multiply-accumulate)
    other ops = 2 per value (compare with 0, multiply by a)
    stores its output (nn.PReLU has no in-place form); receptive field: unchanged (pointwise)
    gradient: dx = dy where x > 0, a * dy where x <= 0 (PyTorch's rule: a at x = 0);
    da = the sum of x * dy where x <= 0, over the batch and positions (and channels when shared)
    Source: He et al., "Delving Deep into Rectifiers" (2015).
    saved for backward: its input and weight
    """

    type = "prelu"
    mixes_channels = False
    attrs = (
        Attr("num_parameters", positive_int, 1, "number of slopes: 1 (shared) or the input's channels"),
        Attr("init", number(), 0.25, "every slope's initial value"),
    )
    ops_per_value = 2
    other_ops_rule = "2 per value (compare with 0, multiply by the slope)"
    stores_output = True
    examples = (
        Example({}, ((3, 4, 4),), (3, 4, 4)),
        Example({"num_parameters": 3}, ((3, 4, 4),), (3, 4, 4)),
        Example({"num_parameters": 5}, ((5,),), (5,)),
        Example({"num_parameters": 2, "init": -0.5}, ((2, 7),), (2, 7)),
        Example({"init": 0.0}, ((2, 3, 3, 4),), (2, 3, 3, 4)),
        Example({"num_parameters": 2}, ((2, 3, 3, 4),), (2, 3, 3, 4)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return keeps_input(layer), keeps_param("weight", self.params(layer)["weight"].shape)

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        count, channels = attrs["num_parameters"], in_shapes[0][0]
        check(
            count in (1, channels),
            lambda: f"num_parameters must be 1 or the input's channels ({channels}), got {count}",
        )
        return dict(attrs)

    def params(self, layer: Layer) -> dict[str, Param]:
        init = layer.attrs["init"]
        role = SLOPE if init == 0.25 else dataclasses.replace(SLOPE, init=f"constant {float(init)!r}")
        return {"weight": Param((layer.attrs["num_parameters"],), role)}

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, 2 * math.prod(layer.out_shape))

    def summary(self, layer: Layer) -> str:
        count = layer.attrs["num_parameters"]
        return "1 slope" if count == 1 else f"{count} slopes"

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        import numpy as np

        x = inputs[0]
        slope = params["weight"].reshape((1, -1) + (1,) * (x.ndim - 2))
        positive = x > 0
        return np.where(positive, x, slope * x), (x, positive, slope)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        import numpy as np

        x, positive, slope = cache
        dx = np.where(positive, dy, slope * dy)
        contribution = np.where(positive, 0, x * dy)
        axes = tuple(i for i in range(dy.ndim) if i != 1) if slope.size > 1 else None
        return [dx], {"weight": contribution.sum(axis=axes).reshape(slope.size)}

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        count, channels = layer.attrs["num_parameters"], layer.in_shape[0]
        what = "one slope shared by every channel" if count == 1 else f"one slope per channel (c = {channels})"
        return [
            *super().explain(layer),
            ("params", f"num_parameters: {what} = {count}"),
            ("MACs", "0 (the slope's element-wise product is no multiply-accumulate)"),
        ]

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.PReLU(layer.attrs["num_parameters"], layer.attrs["init"])

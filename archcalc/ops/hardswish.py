"""Hardswish: x * relu6(x + 3) / 6, MobileNetV3's piecewise-quadratic swish."""

from __future__ import annotations

from typing import Any

from archcalc.ops.base import UNKNOWN, Layer, RunContext, Saved, keeps_input, keeps_output, keeps_param, new_buffer, register  # noqa: F401
from archcalc.ops.pointwise import EVERY_RANK, _Elementwise


@register
class Hardswish(_Elementwise):
    """x * relu6(x + 3) / 6 per value: 0 for x <= -3, x for x >= 3 (PyTorch's Hardswish).

    out = the input's shape; params = 0; MACs = 0
    other ops = 5 per value (add 3, max with 0, min with 6, divide by 6, multiply by x)
    in place (stores nothing new, as nn.Hardswish(inplace=True)); receptive field: unchanged (pointwise)
    gradient: 0 where x <= -3, dy * (x/3 + 1/2) where -3 < x < 3, dy where x >= 3
    (PyTorch's rule: 0 at x = -3, 1 at x = 3)
    Source: Howard et al., "Searching for MobileNetV3" (2019), h-swish.
    saved for backward: its input (PyTorch saves self)
    """

    type = "hardswish"
    ops_per_value = 5
    other_ops_rule = "5 per value (add 3, max with 0, min with 6, divide by 6, multiply by x)"
    examples = EVERY_RANK

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return (keeps_input(layer),)

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        import numpy as np

        x = inputs[0]
        slope = np.where(x <= -3, 0, np.where(x < 3, x / 3 + 0.5, 1)).astype(x.dtype)
        return x * np.minimum(np.maximum(x + 3, 0), 6) / 6, slope

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy * cache], {}

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.Hardswish()

"""Hardsigmoid: relu6(x + 3) / 6, MobileNetV3's piecewise-linear sigmoid (its squeeze-excitation gate)."""

from __future__ import annotations

from typing import Any

from archcalc.ops.base import UNKNOWN, Layer, RunContext, Saved, keeps_input, keeps_output, keeps_param, new_buffer, register  # noqa: F401
from archcalc.ops.pointwise import EVERY_RANK, _Elementwise

#: PyTorch's hardsigmoid_backward multiplies by 1.0f / 6.0f, a float32 constant, even in float64:
#: 2.98e-8 above 1/6. The executor follows it, so that gradients agree with torch's to 1e-9.
_ONE_SIXTH = 0.1666666716337204  # float(numpy.float32(1 / 6))


@register
class Hardsigmoid(_Elementwise):
    """relu6(x + 3) / 6 per value: 0 for x <= -3, 1 for x >= 3, x/6 + 1/2 between (PyTorch's Hardsigmoid).

    out = the input's shape; params = 0; MACs = 0
    other ops = 4 per value (add 3, max with 0, min with 6, divide by 6)
    in place (stores nothing new, as nn.Hardsigmoid(inplace=True)); receptive field: unchanged (pointwise)
    gradient: dy/6 where -3 < x < 3, else 0 (PyTorch's rule: 0 at x = -3 and at x = 3); the
    1/6 is rounded to float32 (0.16666667163...) in every dtype, as PyTorch's kernel does
    Source: Howard et al., "Searching for MobileNetV3" (2019), eq. for h-sigmoid.
    saved for backward: its input (PyTorch saves self)
    """

    type = "hardsigmoid"
    ops_per_value = 4
    other_ops_rule = "4 per value (add 3, max with 0, min with 6, divide by 6)"
    examples = EVERY_RANK

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return (keeps_input(layer),)

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        import numpy as np

        x = inputs[0]
        return np.minimum(np.maximum(x + 3, 0), 6) / 6, (x > -3) & (x < 3)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy * cache * _ONE_SIXTH], {}

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.Hardsigmoid()

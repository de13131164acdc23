"""ELU: x for x > 0, alpha * (exp(x) - 1) otherwise."""

from __future__ import annotations

from typing import Any

from archcalc.ops.attrs import Attr, number
from archcalc.ops.base import UNKNOWN, Example, Layer, RunContext, Saved, keeps_input, keeps_output, keeps_param, new_buffer, register  # noqa: F401
from archcalc.ops.pointwise import _Elementwise


@register
class ELU(_Elementwise):
    """x if x > 0 else alpha * (exp(x) - 1), per value, as PyTorch's ELU.

    out = the input's shape; params = 0; MACs = 0
    other ops = 4 per value (compare with 0, exp, subtract 1, multiply by alpha: both sides
    are counted for every value, as a vectorised kernel computes them)
    in place (stores nothing new, as nn.ELU(inplace=True)); receptive field: unchanged (pointwise)
    gradient: dy where x > 0, dy * alpha * exp(x) where x <= 0 (PyTorch's rule: alpha at x = 0)
    Source: Clevert et al., "Fast and Accurate Deep Network Learning by ELUs" (2015).
    saved for backward: its input (PyTorch saves self)
    """

    type = "elu"
    attrs = (Attr("alpha", number(), 1.0, "the negative side's scale: the output tends to -alpha"),)
    ops_per_value = 4
    other_ops_rule = "4 per value (compare with 0, exp, subtract 1, multiply by alpha)"
    examples = (
        Example({}, ((3, 4, 4),), (3, 4, 4)),
        Example({"alpha": 0.5}, ((5,),), (5,)),
        Example({"alpha": 2.0}, ((2, 7),), (2, 7)),
        Example({"alpha": 0.0}, ((2, 3, 3, 4),), (2, 3, 3, 4)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return (keeps_input(layer),)

    def summary(self, layer: Layer) -> str:
        return f"alpha {layer.attrs['alpha']:g}"

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        import numpy as np

        x, alpha = inputs[0], layer.attrs["alpha"]
        below = np.minimum(x, 0)  # exp only where it cannot overflow
        y = np.where(x > 0, x, alpha * np.expm1(below)).astype(x.dtype)
        return y, np.where(x > 0, 1, alpha * np.exp(below)).astype(x.dtype)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy * cache], {}

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.ELU(layer.attrs["alpha"])

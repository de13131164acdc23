"""Mish: x * tanh(softplus(x))."""

from __future__ import annotations

from typing import Any

from archcalc.ops.base import UNKNOWN, Layer, RunContext, Saved, keeps_input, keeps_output, keeps_param, new_buffer, register  # noqa: F401
from archcalc.ops.pointwise import EVERY_RANK, _Elementwise
from archcalc.ops.silu import stable_sigmoid


@register
class Mish(_Elementwise):
    """x * tanh(softplus(x)), softplus(x) = log(1 + exp(x)), per value, as PyTorch's Mish.

    out = the input's shape; params = 0; MACs = 0
    other ops = 5 per value (exp, add 1, log, tanh, multiply by x)
    in place (stores nothing new, as nn.Mish(inplace=True)); receptive field: unchanged (pointwise)
    gradient: dy * (t + x * sigmoid(x) * (1 - t^2)), t = tanh(softplus(x))
    Source: Misra, "Mish: A Self Regularized Non-Monotonic Activation Function" (2019).
    saved for backward: its input (PyTorch saves self)
    """

    type = "mish"
    ops_per_value = 5
    other_ops_rule = "5 per value (exp, add 1, log, tanh, multiply by x)"
    examples = EVERY_RANK

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return (keeps_input(layer),)

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        import numpy as np

        x = inputs[0]
        softplus = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))  # log(1 + exp(x)) without overflow
        t = np.tanh(softplus)
        return x * t, (x, t)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        x, t = cache
        return [dy * (t + x * stable_sigmoid(x) * (1 - t * t))], {}

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.Mish()

"""SiLU (swish): x * sigmoid(x)."""

from __future__ import annotations

from typing import Any

from archcalc.ops.base import UNKNOWN, Layer, RunContext, Saved, keeps_input, keeps_output, keeps_param, new_buffer, register  # noqa: F401
from archcalc.ops.pointwise import EVERY_RANK, _Elementwise


def stable_sigmoid(x: Any) -> Any:
    """1 / (1 + exp(-x)) without overflow: exp of -|x| only."""
    import numpy as np

    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


@register
class SiLU(_Elementwise):
    """x * sigmoid(x) = x / (1 + exp(-x)) per value, as PyTorch's SiLU (swish with beta 1).

    out = the input's shape; params = 0; MACs = 0
    other ops = 4 per value (negate, exp, add 1, divide: x / (1 + exp(-x)))
    in place (stores nothing new, as nn.SiLU(inplace=True)); receptive field: unchanged (pointwise)
    gradient: dy * s * (1 + x * (1 - s)), s = sigmoid(x)
    Source: Elfwing et al. (2017); Ramachandran et al., "Searching for Activation Functions" (2017).
    saved for backward: its input (PyTorch saves self)
    """

    type = "silu"
    ops_per_value = 4
    other_ops_rule = "4 per value (negate, exp, add 1, divide: x / (1 + exp(-x)))"
    examples = EVERY_RANK

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return (keeps_input(layer),)

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        x = inputs[0]
        s = stable_sigmoid(x)
        return x * s, (x, s)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        x, s = cache
        return [dy * s * (1 + x * (1 - s))], {}

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.SiLU()

"""ReLU6: min(max(x, 0), 6), MobileNetV2's activation (HardTanh with the bounds 0 and 6)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archcalc.ops.base import UNKNOWN, Layer, RunContext, Saved, Shape, keeps_input, keeps_output, keeps_param, new_buffer, register  # noqa: F401
from archcalc.ops.hardtanh import HardTanh
from archcalc.ops.pointwise import EVERY_RANK


@register
class ReLU6(HardTanh):
    """min(max(x, 0), 6) per value, as PyTorch's ReLU6 (HardTanh(0, 6), which it subclasses there too).

    out = the input's shape; params = 0; MACs = 0; other ops = 2 per value (a max and a min)
    in place (stores nothing new, as nn.ReLU6(inplace=True)); receptive field: unchanged (pointwise)
    gradient: dy where 0 < x < 6, else 0 (PyTorch's rule: 0 at x = 0 and at x = 6)
    saved for backward: its input (PyTorch saves self)
    """

    type = "relu6"
    attrs = ()
    examples = EVERY_RANK

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return (keeps_input(layer),)

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        return dict(attrs)

    def summary(self, layer: Layer) -> str:
        return ""

    def bounds(self, layer: Layer) -> tuple[float, float]:
        """(0, 6): HardTanh's forward and backward with these bounds."""
        return 0.0, 6.0

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.ReLU6()

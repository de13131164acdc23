"""Channel shuffle (ShuffleNet, Zhang et al. 2018): interleave the channels of `groups` groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archcalc.errors import check
from archcalc.ops.attrs import Attr, positive_int
from archcalc.ops.base import (
    POINTWISE,
    Cost,
    Example,
    Layer,
    Op,
    RunContext,
    Saved,
    Shape,
    format_shape,
    register,
)


@register
class ChannelShuffle(Op):
    """Reorder channels as (groups, c/groups) -> (c/groups, groups): ShuffleNet's channel shuffle.

    Output channel j*groups + g is input channel g*(c/groups) + j, as nn.ChannelShuffle (reshape
    to (groups, c/groups, *spatial), swap the two, flatten); c must divide by groups.
    out = the input's shape; params = 0; MACs = 0; other ops = 0 (a copy: PyTorch's reshape of
    the transposed tensor copies it, so the output is stored)
    receptive field: unchanged (pointwise)
    saved for backward: nothing (a reshape and a copy: shapes only)
    """

    type = "channel_shuffle"
    mixes_channels = True
    other_ops_rule = "0 (a copy)"
    attrs = (Attr("groups", positive_int, doc="number of channel groups to interleave; must divide the channels"),)
    examples = (
        Example({"groups": 2}, ((4, 3, 3),), (4, 3, 3)),
        Example({"groups": 3}, ((6, 5),), (6, 5)),
        Example({"groups": 2}, ((6, 2, 2, 3),), (6, 2, 2, 3)),
        Example({"groups": 1}, ((3, 2, 2),), (3, 2, 2)),
        Example({"groups": 4}, ((4, 3),), (4, 3)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return ()

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        shape, groups = in_shapes[0], attrs["groups"]
        check(
            len(shape) >= 2,
            lambda: f"expects input (C, *spatial) as nn.ChannelShuffle does, got {format_shape(shape)}",
        )
        check(
            shape[0] % groups == 0,
            lambda: f"channels must divide by groups, got {shape[0]} channels and groups={groups} (input {format_shape(shape)})",
        )
        return dict(attrs)

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return in_shapes[0]

    def cost(self, layer: Layer) -> Cost:
        return Cost()

    def window(self, layer: Layer) -> str:
        return POINTWISE

    def summary(self, layer: Layer) -> str:
        return f"g{layer.attrs['groups']}"

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        c, groups = layer.in_shape[0], layer.attrs["groups"]
        return [
            *super().explain(layer),
            ("channel order", f"{groups} groups of c/groups = {c}/{groups} = {c // groups}: output channel j*{groups} + g "
                              f"is input channel g*{c // groups} + j"),
        ]

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        return _shuffle(inputs[0], layer.attrs["groups"]), None

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        # the inverse permutation is the shuffle of c/groups groups
        return [_shuffle(dy, dy.shape[1] // layer.attrs["groups"])], {}

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.ChannelShuffle(layer.attrs["groups"])


def _shuffle(x: Any, groups: int) -> Any:
    """A batch (N, C, *spatial) with its channels in the order (C/groups, groups), copied."""
    n, c, *spatial = x.shape
    return x.reshape(n, groups, c // groups, *spatial).swapaxes(1, 2).reshape(x.shape)

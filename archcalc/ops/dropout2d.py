"""Channel dropout: zero whole channels (feature maps) in training, as PyTorch's Dropout2d."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archcalc.errors import check
from archcalc.ops.attrs import Attr, number
from archcalc.ops.base import (
    Example,
    Layer,
    RunContext,
    Saved,
    Shape,
    format_shape,
    new_buffer,
    register,
)
from archcalc.ops.pointwise import _Elementwise


@register
class Dropout2d(_Elementwise):
    """Zero each whole channel with probability p in training, scale the rest by 1/(1-p); the identity at inference.

    out = the input's shape (C, *spatial); params = 0; MACs = 0
    other ops = 0 (the identity at inference)
    training: one keep/drop draw per sample and channel, shared by every position of that
    channel (PyTorch's Dropout2d; on (C, L) and (C, D, H, W) inputs the same rule, as
    Dropout1d and Dropout3d); p = 1 zeroes everything, p = 0 is the identity
    in place (stores nothing new, as nn.Dropout2d(inplace=True)); receptive field: unchanged (pointwise)
    gradient: dy times the same mask (0, or 1/(1-p))
    Source: Tompson et al., "Efficient Object Localization Using Convolutional Networks" (2015).
    saved for backward: the per-channel scaled keep mask, (C, 1, ...) per sample in the tensor's dtype (input
    * noise); nothing at p = 0; a scalar 0 at p = 1
    """

    type = "dropout2d"
    attrs = (Attr("p", number(0, 1), 0.5, "probability of zeroing a channel"),)
    other_ops_rule = "0 (the identity at inference)"
    ops_per_value = 0
    random = True
    examples = (
        Example({}, ((3, 4, 4),), (3, 4, 4)),
        Example({"p": 0.2}, ((4, 7),), (4, 7)),
        Example({"p": 0.3}, ((2, 3, 3, 4),), (2, 3, 3, 4)),
        Example({"p": 0.0}, ((3, 4, 4),), (3, 4, 4)),
        Example({"p": 1.0}, ((3, 4, 4),), (3, 4, 4)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        p = layer.attrs["p"]
        if p == 0:
            return ()
        if p == 1:
            return (new_buffer("zero", (), batched=False),)
        return (new_buffer("mask", (layer.in_shape[0], *(1 for _ in layer.in_shape[1:]))),)

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        shape = in_shapes[0]
        check(
            2 <= len(shape) <= 4,
            lambda: f"expects input (C, *spatial) with 1 to 3 spatial axes (whole channels are dropped), got {format_shape(shape)}",
        )
        return dict(attrs)

    def summary(self, layer: Layer) -> str:
        return f"p {layer.attrs['p']:g}"

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        x, p = inputs[0], layer.attrs["p"]
        if not ctx.training or p == 0:
            return x, None
        keep = ctx.rng.random(x.shape[:2] + (1,) * (x.ndim - 2)) >= p  # one draw per sample and channel
        mask = (keep / (1 - p) if p < 1 else keep * 0).astype(x.dtype)
        return x * mask, mask

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy if cache is None else dy * cache], {}

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        families = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)  # by spatial rank: one rule, whole channels
        return families[len(layer.in_shape) - 2](layer.attrs["p"])

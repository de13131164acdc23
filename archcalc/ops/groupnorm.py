"""Group normalisation (Wu and He, 2018): each sample's channels in groups, normalised per group."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc.errors import check
from archcalc.ops.attrs import Attr, boolean, number, positive_int
from archcalc.ops.base import (
    GLOBAL,
    POINTWISE,
    SCALE,
    SHIFT,
    Cost,
    Example,
    Layer,
    Op,
    Param,
    RunContext,
    Saved,
    Shape,
    format_shape,
    keeps_input,
    keeps_param,
    new_buffer,
    register,
)
from archcalc.ops.layernorm import STATS_OPS_RULE, normalize, normalize_backward, stats_ops


@register
class GroupNorm(Op):
    """Normalise each sample's channels in num_groups groups over the group's channels and positions.

    y = (x - mean) / sqrt(var + eps) * weight_c + bias_c, mean and biased var over the
    c/num_groups channels of the group and every position (as nn.GroupNorm; Wu and He, 2018);
    num_groups 1 is a layer norm over (C, *spatial), num_groups c an instance norm
    out = the input's shape; params = 2c (a scale and a shift per channel) when affine; MACs = 0
    other ops = 5 per value (mean's add, subtract, square, variance's add, divide by the std)
    + 2 per value for the scale and shift when affine
    receptive field: global (the statistics read every position of the group)
    saved for backward: its input, weight (affine) and per-sample, per-group mean and reciprocal std
    """

    type = "groupnorm"
    other_ops_rule = STATS_OPS_RULE
    attrs = (
        Attr("num_groups", positive_int, doc="number of channel groups; must divide the channels"),
        Attr("eps", number(0, open_low=True), 1e-5, "added to the variance"),
        Attr("affine", boolean, True, "learn a scale and a shift per channel"),
    )
    examples = (
        Example({"num_groups": 2}, ((4, 3, 3),), (4, 3, 3)),
        Example({"num_groups": 1}, ((3, 5),), (3, 5)),
        Example({"num_groups": 3, "affine": False}, ((6, 2, 3),), (6, 2, 3)),
        Example({"num_groups": 4, "eps": 1e-3}, ((4, 2, 2, 3),), (4, 2, 2, 3)),
        Example({"num_groups": 2}, ((6,),), (6,)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        stats = (layer.attrs["num_groups"],)
        kept = [keeps_input(layer)]
        if "weight" in self.params(layer):
            kept.append(keeps_param("weight", self.params(layer)["weight"].shape))
        return (*kept, new_buffer("mean", stats), new_buffer("rstd", stats))

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        channels, groups = in_shapes[0][0], attrs["num_groups"]
        check(
            channels % groups == 0,
            lambda: f"channels must divide by num_groups, got {channels} channels and num_groups={groups} "
            f"(input {format_shape(in_shapes[0])})",
        )
        return dict(attrs)

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return in_shapes[0]

    def params(self, layer: Layer) -> dict[str, Param]:
        if not layer.attrs["affine"]:
            return {}
        c = (layer.in_shape[0],)
        return {"weight": Param(c, SCALE), "bias": Param(c, SHIFT)}

    def cost(self, layer: Layer) -> Cost:
        affine = layer.attrs["affine"]
        return Cost(0, stats_ops(math.prod(layer.out_shape), affine, affine))

    def window(self, layer: Layer) -> str:
        return GLOBAL if len(layer.in_shape) > 1 else POINTWISE

    def summary(self, layer: Layer) -> str:
        return f"{layer.attrs['num_groups']} groups"

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        shape = layer.in_shape
        c, groups = shape[0], layer.attrs["num_groups"]
        per_group = c // groups * math.prod(shape[1:])
        positions = f" * {math.prod(shape[1:])} positions" if len(shape) > 1 else ""
        lines = [*super().explain(layer), ("groups", f"{groups} of c/num_groups = {c}/{groups} = {c // groups} channels"
                                                     f"{positions} = {per_group} values each")]
        affine = layer.attrs["affine"]
        lines.append(("params", f"2c (a scale and a shift per channel) = 2*{c} = {2 * c}" if affine else "0 (affine false)"))
        return lines

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        """The same in training and inference: statistics always come from the sample."""
        x = inputs[0]
        grouped = x.reshape(x.shape[0], layer.attrs["num_groups"], -1)
        x_hat, inv_std = normalize(grouped, (2,), layer.attrs["eps"])
        x_hat = x_hat.reshape(x.shape)
        y = x_hat
        if layer.attrs["affine"]:
            shape = _per_channel(x.ndim)
            y = x_hat * params["weight"].reshape(shape) + params["bias"].reshape(shape)
        return y, (x_hat, inv_std, params.get("weight"))

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        x_hat, inv_std, weight = cache
        grads, d_hat = {}, dy
        if layer.attrs["affine"]:
            summed = (0, *range(2, dy.ndim))
            grads = {"weight": (dy * x_hat).sum(axis=summed), "bias": dy.sum(axis=summed)}
            d_hat = dy * weight.reshape(_per_channel(dy.ndim))
        grouped = (dy.shape[0], layer.attrs["num_groups"], -1)
        dx = normalize_backward(d_hat.reshape(grouped), x_hat.reshape(grouped), inv_std, (2,))
        return [dx.reshape(dy.shape)], grads

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        a = layer.attrs
        return nn.GroupNorm(a["num_groups"], layer.in_shape[0], a["eps"], a["affine"])


def _per_channel(ndim: int) -> tuple[int, ...]:
    """A per-channel vector's shape broadcast against a batch (N, C, *spatial) of ``ndim`` axes."""
    return (1, -1) + (1,) * (ndim - 2)

"""Instance normalisation (Ulyanov et al., 2016): each channel of each sample over its positions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc.errors import check
from archcalc.ops.attrs import Attr, boolean, number
from archcalc.ops.base import (
    GLOBAL,
    POINTWISE,
    RUNNING_MEAN,
    RUNNING_VAR,
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
    new_buffer,
    register,
)
from archcalc.ops.layernorm import STATS_OPS_PER_VALUE, normalize, normalize_backward, stats_ops

#: Other ops per value of a normalisation by running statistics: subtract the mean, divide by the std.
RUNNING_OPS_PER_VALUE = 2


@register
class InstanceNorm(Op):
    """Normalise each channel of each sample over its spatial positions (nn.InstanceNorm1d/2d/3d).

    y = (x - mean) / sqrt(var + eps) * weight_c + bias_c, mean and biased var of one channel of
    one sample over its positions; with track_running_stats, inference normalises by running
    averages instead, which training moves as PyTorch does: by the batch's mean of the
    per-instance means and of the per-instance unbiased variances, with weight momentum
    out = the input's shape; params = 2c (scale, shift) when affine; buffers = 2c running
    statistics (mean, var) when track_running_stats; MACs = 0
    other ops = 5 per value (mean's add, subtract, square, variance's add, divide by the std),
    2 per value with track_running_stats (inference: subtract, divide), + 2 per value when affine
    receptive field: global (the statistics read every position); pointwise with
    track_running_stats (inference reads only the running averages)
    saved for backward: its input and per-sample, per-channel mean and reciprocal std (F.instance_norm runs
    batchnorm on (1, N*C, ...)); with affine the weight repeated per sample, with track_running_stats the two
    running statistics repeated per sample
    """

    type = "instancenorm"
    other_ops_rule = (
        "5 per value (mean's add, subtract the mean, square, variance's add, divide by the std), "
        "2 per value with track_running_stats (inference subtracts the running mean, divides by the std), "
        "+2 per value (scale, shift) when affine"
    )
    attrs = (
        Attr("eps", number(0, open_low=True), 1e-5, "added to the variance"),
        Attr("momentum", number(0, 1), 0.1, "weight of the new batch in the running averages"),
        Attr("affine", boolean, False, "learn a scale and a shift per channel (PyTorch's default: false)"),
        Attr("track_running_stats", boolean, False,
             "keep running averages of mean and variance (buffers) and normalise by them at inference"),
    )
    examples = (
        Example({}, ((3, 4, 4),), (3, 4, 4)),
        Example({"affine": True}, ((2, 5),), (2, 5)),
        Example({"affine": True, "eps": 1e-3}, ((2, 2, 3, 2),), (2, 2, 3, 2)),
        Example({}, ((4, 1, 2),), (4, 1, 2)),
        Example({"track_running_stats": True, "affine": True, "momentum": 0.2}, ((3, 3, 4),), (3, 3, 4)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        c = (layer.in_shape[0],)
        kept = [keeps_input(layer), new_buffer("mean", c), new_buffer("invstd", c)]
        if layer.attrs["affine"]:
            kept.append(new_buffer("weight repeated", c))
        if layer.attrs["track_running_stats"]:
            kept += [new_buffer("running_mean repeated", c), new_buffer("running_var repeated", c)]
        return tuple(kept)

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        shape = in_shapes[0]
        check(
            2 <= len(shape) <= 4,
            lambda: f"expects input (C, *spatial) with 1 to 3 spatial axes, got {format_shape(shape)}",
        )
        check(
            math.prod(shape[1:]) > 1,
            lambda: f"needs more than 1 position per channel (each channel is normalised over its own positions; "
            f"PyTorch refuses it in training), got {format_shape(shape)}",
        )
        return dict(attrs)

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return in_shapes[0]

    def params(self, layer: Layer) -> dict[str, Param]:
        c = (layer.in_shape[0],)
        params = {"weight": Param(c, SCALE), "bias": Param(c, SHIFT)} if layer.attrs["affine"] else {}
        if layer.attrs["track_running_stats"]:
            params.update(running_mean=Param(c, RUNNING_MEAN), running_var=Param(c, RUNNING_VAR))
        return params

    def _ops_per_value(self, layer: Layer) -> int:
        """Other ops of inference per value, the affine ones excluded."""
        return RUNNING_OPS_PER_VALUE if layer.attrs["track_running_stats"] else STATS_OPS_PER_VALUE

    def cost(self, layer: Layer) -> Cost:
        affine = layer.attrs["affine"]
        return Cost(0, stats_ops(math.prod(layer.out_shape), affine, affine, self._ops_per_value(layer)))

    def window(self, layer: Layer) -> str:
        return POINTWISE if layer.attrs["track_running_stats"] else GLOBAL

    def summary(self, layer: Layer) -> str:
        a = layer.attrs
        return ", ".join(text for on, text in ((a["affine"], "affine"), (a["track_running_stats"], "running stats")) if on)

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        a, c = layer.attrs, layer.in_shape[0]
        positions = math.prod(layer.in_shape[1:])
        lines = [*super().explain(layer), ("normalised over", f"each channel's {positions} positions, per sample")]
        lines.append(("params", f"2c (a scale and a shift per channel) = 2*{c} = {2 * c}" if a["affine"] else "0 (affine false)"))
        if a["track_running_stats"]:
            lines.append(("buffers", f"2c running statistics (mean and variance per channel), not parameters = 2*{c} = {2 * c}"))
        return lines

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        """Training, or without running statistics: each instance's own statistics; training with
        them also moves the running averages (PyTorch runs batch norm on the input reshaped to
        (1, N*C, *spatial) with the running statistics repeated N times, then averages those N).
        Inference with them: the running averages, as batch norm."""
        import numpy as np

        a, x = layer.attrs, inputs[0]
        spatial = tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        use_input_stats = ctx.training or not a["track_running_stats"]
        if use_input_stats:
            x_hat, inv_std = normalize(x, spatial, a["eps"])
            if a["track_running_stats"]:
                momentum = a["momentum"]
                params["running_mean"] *= 1 - momentum
                params["running_mean"] += momentum * x.mean(axis=spatial).mean(axis=0)
                params["running_var"] *= 1 - momentum
                params["running_var"] += momentum * x.var(axis=spatial, ddof=1).mean(axis=0)
        else:
            inv_std = 1 / np.sqrt(params["running_var"] + a["eps"]).reshape(shape)
            x_hat = (x - params["running_mean"].reshape(shape)) * inv_std
        y = x_hat
        if a["affine"]:
            y = x_hat * params["weight"].reshape(shape) + params["bias"].reshape(shape)
        return y, (x_hat, inv_std, params.get("weight"), use_input_stats)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        x_hat, inv_std, weight, use_input_stats = cache
        grads, d_hat = {}, dy
        if layer.attrs["affine"]:
            summed = (0, *range(2, dy.ndim))
            grads = {"weight": (dy * x_hat).sum(axis=summed), "bias": dy.sum(axis=summed)}
            d_hat = dy * weight.reshape((1, -1) + (1,) * (dy.ndim - 2))
        if not use_input_stats:
            return [d_hat * inv_std], grads
        return [normalize_backward(d_hat, x_hat, inv_std, tuple(range(2, dy.ndim)))], grads

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        a = layer.attrs
        family = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)[len(layer.in_shape) - 2]
        return family(layer.in_shape[0], a["eps"], a["momentum"], a["affine"], a["track_running_stats"])

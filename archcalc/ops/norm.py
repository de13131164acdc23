"""Normalisation: batch norm and local response norm (AlexNet's NORM)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc import formulas
from archcalc.errors import check
from archcalc.ops.attrs import Attr, number, positive_int
from archcalc.ops.base import (
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
    keeps_param,
    new_buffer,
    register,
)


@register
class BatchNorm(Op):
    """Normalise each channel by batch statistics, then scale and shift.

    params = 2c learned (scale, shift); buffers = 2c running statistics (mean, var), not parameters
    MACs = 0; other ops = 4 per value (subtract mean, divide by std, scale, shift)
    saved for backward: its input, weight, running statistics and the batch's per-channel mean and reciprocal
    std
    """

    type = "batchnorm"
    other_ops_rule = "4 per value (subtract mean, divide by std, scale, shift)"
    attrs = (
        Attr("eps", number(0, open_low=True), 1e-5, "added to the variance"),
        Attr("momentum", number(0, 1), 0.1, "weight of the new batch in the running averages"),
    )
    examples = (Example({}, ((3, 4, 4),), (3, 4, 4)), Example({"eps": 1e-3}, ((5,),), (5,)))

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        c = (layer.in_shape[0],)
        return (keeps_input(layer), keeps_param("weight", c), keeps_param("running_mean", c), keeps_param("running_var", c),
                new_buffer("save_mean", c, batched=False), new_buffer("save_invstd", c, batched=False))

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        families = (nn.BatchNorm1d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)  # (C,) and (C, L) are both 1d
        return families[len(layer.in_shape) - 1](layer.in_shape[0], layer.attrs["eps"], layer.attrs["momentum"])

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return in_shapes[0]

    def params(self, layer: Layer) -> dict[str, Param]:
        c = (layer.in_shape[0],)
        return {
            "weight": Param(c, SCALE),
            "bias": Param(c, SHIFT),
            "running_mean": Param(c, RUNNING_MEAN),
            "running_var": Param(c, RUNNING_VAR),
        }

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, 4 * math.prod(layer.out_shape))

    def window(self, layer: Layer) -> str:
        return POINTWISE

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        """Training: normalise by the batch's mean and (biased) variance over N and the spatial
        axes, and move the running averages towards them (the variance unbiased), as PyTorch.
        Inference: normalise by the running averages. Keeps for backward what PyTorch keeps: the
        input (an earlier layer's output, so nothing new) and the per-channel mean and 1/std."""
        import numpy as np

        from archcalc import kernels

        x, eps, momentum = inputs[0], layer.attrs["eps"], layer.attrs["momentum"]
        if ctx.training:
            mean, var = kernels.batchnorm_stats(x)
            count = x.size // x.shape[1]
            params["running_mean"] *= 1 - momentum
            params["running_mean"] += momentum * mean
            params["running_var"] *= 1 - momentum
            params["running_var"] += momentum * var * count / max(count - 1, 1)
        else:
            mean, var = params["running_mean"].copy(), params["running_var"]
        inv_std = 1 / np.sqrt(var + eps)
        y = kernels.batchnorm_forward(x, mean, inv_std, params["weight"], params["bias"])
        return y, (x, mean, inv_std, params["weight"], ctx.training)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        from archcalc import kernels

        x, mean, inv_std, weight, training = cache
        dx, d_weight, d_bias = kernels.batchnorm_backward(dy, x, mean, inv_std, weight, training)
        return [dx], {"weight": d_weight, "bias": d_bias}

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        c = layer.in_shape[0]
        learned, buffers = formulas.batchnorm_params(c)
        return [
            *super().explain(layer),
            ("params", f"2c (a scale and a shift per channel) = 2*{c} = {learned}"),
            ("buffers", f"2c running statistics (mean and variance per channel), not parameters = 2*{c} = {buffers}"),
        ]


@register
class LRN(Op):
    """Local response normalisation across channels (AlexNet's NORM).

    y = x / (k + alpha/size * sum of x^2 over `size` neighbouring channels) ^ beta
    params = 0; MACs = 0; other ops = 2*size + 3 per value (squares, adds, scale, add k, pow, divide)
    saved for backward: as F.local_response_norm: its input, the padded squares (C + size - 1 channels), the
    denominator's base and its power (output-sized each)
    """

    type = "lrn"
    mixes_channels = True
    other_ops_rule = "2*size + 3 per value (squares, adds, scale, add k, pow, divide)"
    attrs = (
        Attr("size", positive_int, 5, "number of neighbouring channels summed over"),
        Attr("alpha", number(0), 1e-4, "scale of the sum of squares"),
        Attr("beta", number(0), 0.75, "exponent"),
        Attr("k", number(0), 1.0, "additive constant"),
    )
    examples = (Example({}, ((6, 3, 3),), (6, 3, 3)), Example({"size": 3, "k": 2.0}, ((4, 5),), (4, 5)))

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        squares = (layer.in_shape[0] + layer.attrs["size"] - 1, *layer.in_shape[1:])
        return (keeps_input(layer), new_buffer("padded squares", squares), new_buffer("k + alpha * mean", layer.out_shape),
                new_buffer("denominator", layer.out_shape))

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        a = layer.attrs
        return nn.LocalResponseNorm(a["size"], a["alpha"], a["beta"], a["k"])

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        check(len(in_shapes[0]) >= 2, lambda: f"expects input (C, *spatial), got {format_shape(in_shapes[0])}")
        return in_shapes[0]

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, (2 * layer.attrs["size"] + 3) * math.prod(layer.out_shape))

    def window(self, layer: Layer) -> str:
        return POINTWISE

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        """Channel c sums the squares of channels c - size//2 .. c + (size-1)//2 (PyTorch's window)."""
        a, x = layer.attrs, inputs[0]
        size = a["size"]
        scale = a["k"] + a["alpha"] / size * _channel_window_sum(x * x, size // 2, (size - 1) // 2)
        y = x * scale ** -a["beta"]
        return y, (x, scale)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        a = layer.attrs
        x, scale = cache
        size, beta = a["size"], a["beta"]
        # channel j feeds the scale of every channel c whose window holds j: c in j - (size-1)//2 .. j + size//2
        feedback = _channel_window_sum(dy * x * scale ** (-beta - 1), (size - 1) // 2, size // 2)
        return [dy * scale ** -beta - 2 * beta * a["alpha"] / size * x * feedback], {}


def _channel_window_sum(values: Any, before: int, after: int) -> Any:
    """For each channel c, the sum over channels c - before .. c + after (clipped at the ends)."""
    import numpy as np

    padded = np.pad(values, [(0, 0), (before, after)] + [(0, 0)] * (values.ndim - 2))
    total = np.cumsum(padded, axis=1)
    zero = np.zeros_like(total[:, :1])
    total = np.concatenate([zero, total], axis=1)
    width = before + after + 1
    return total[:, width:] - total[:, :-width]

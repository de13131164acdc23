"""Scale: a learned multiplier per channel (ConvNeXt's and CaiT's layer scale, Caffe's Scale layer)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from archcalc.errors import check
from archcalc.ops.attrs import Attr, boolean, number
from archcalc.ops.base import (
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
    register,
)


@register
class Scale(Op):
    """x * gamma per value, gamma learned per channel (and + beta with `bias`).

    ConvNeXt's layer scale is ``gamma * x`` with gamma of shape (C, 1, 1) initialised to 1e-6
    (Liu et al. 2022, torchvision's CNBlock ``layer_scale``); CaiT's is the same on tokens;
    Caffe's Scale layer adds an optional learned bias.
    out = the input's shape; params = c (+ c with bias); MACs = 0 (an element-wise product,
    not a multiply-accumulate: FlopCounterMode counts none either)
    other ops = 1 per value (multiply), 2 with bias (multiply, add)
    stores its output (torchvision computes ``self.layer_scale * result``, a new tensor);
    receptive field: unchanged (pointwise)
    gradient: dx = gamma * dy; dgamma = the sum of x * dy over the batch and positions
    saved for backward: its input and weight
    """

    type = "scale"
    mixes_channels = False
    attrs = (
        Attr("init", number(), 1.0, "every multiplier's initial value (ConvNeXt: 1e-6)"),
        Attr("bias", boolean, False, "also learn an additive bias per channel (Caffe's bias_term)"),
    )
    other_ops_rule = "1 per value (multiply), 2 with bias (multiply, add)"
    examples = (
        Example({}, ((3, 4, 4),), (3, 4, 4)),
        Example({"init": 1e-6}, ((4, 5),), (4, 5)),
        Example({"bias": True, "init": 0.5}, ((2, 3, 3, 4),), (2, 3, 3, 4)),
        Example({"bias": True}, ((6,),), (6,)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return keeps_input(layer), keeps_param("weight", self.params(layer)["weight"].shape)

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        check(len(in_shapes[0]) >= 1, lambda: f"expects input (C, ...), got {format_shape(in_shapes[0])}")
        return in_shapes[0]

    def params(self, layer: Layer) -> dict[str, Param]:
        channels = (layer.in_shape[0],)
        init = layer.attrs["init"]
        role = SCALE if init == 1.0 else dataclasses.replace(SCALE, init=f"constant {float(init)!r}")
        params = {"weight": Param(channels, role)}
        if layer.attrs["bias"]:
            params["bias"] = Param(channels, SHIFT)
        return params

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, (2 if layer.attrs["bias"] else 1) * math.prod(layer.out_shape))

    def window(self, layer: Layer) -> str:
        return POINTWISE

    def summary(self, layer: Layer) -> str:
        return f"x{layer.attrs['init']:g}" + (" + bias" if layer.attrs["bias"] else "")

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        x = inputs[0]
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = x * params["weight"].reshape(shape)
        if "bias" in params:
            y = y + params["bias"].reshape(shape)
        return y, (x, params["weight"].reshape(shape))

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        x, weight = cache
        axes = (0, *range(2, dy.ndim))
        grads = {"weight": (x * dy).sum(axis=axes)}
        if layer.attrs["bias"]:
            grads["bias"] = dy.sum(axis=axes)
        return [dy * weight], grads

    def torch_module(self, layer: Layer) -> Any:
        from archcalc.ops import _torch

        return _torch.ChannelScale(layer.in_shape[0], layer.attrs["init"], layer.attrs["bias"])

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        c = layer.in_shape[0]
        lines = [*super().explain(layer), ("params", f"c multipliers{' + c biases' if layer.attrs['bias'] else ''} = "
                                                     f"{c}{f' + {c}' if layer.attrs['bias'] else ''} = "
                                                     f"{c * (2 if layer.attrs['bias'] else 1)}")]
        lines.append(("MACs", "0 (an element-wise product: no multiply-accumulate)"))
        return lines

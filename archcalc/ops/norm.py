"""Normalisation: batch norm and local response norm (AlexNet's NORM)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc import formulas
from archcalc.errors import check
from archcalc.ops.attrs import Attr, number, positive_int
from archcalc.ops.base import POINTWISE, Cost, Example, Layer, Op, Param, Shape, format_shape, register


@register
class BatchNorm(Op):
    """Normalise each channel by batch statistics, then scale and shift.

    params = 2c trainable (scale, shift) + 2c non-trainable (running mean, running var)
    MACs = 0; other ops = 4 per value (subtract mean, divide by std, scale, shift)
    """

    type = "batchnorm"
    attrs = (
        Attr("eps", number(0, open_low=True), 1e-5, "added to the variance"),
        Attr("momentum", number(0, 1), 0.1, "weight of the new batch in the running averages"),
    )
    examples = (Example({}, ((3, 4, 4),), (3, 4, 4)), Example({"eps": 1e-3}, ((5,),), (5,)))

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return in_shapes[0]

    def params(self, layer: Layer) -> dict[str, Param]:
        c = (layer.in_shape[0],)
        return {
            "weight": Param(c),
            "bias": Param(c),
            "running_mean": Param(c, trainable=False),
            "running_var": Param(c, trainable=False),
        }

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, 4 * math.prod(layer.out_shape))

    def window(self, layer: Layer) -> str:
        return POINTWISE

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        c = layer.in_shape[0]
        trainable, fixed = formulas.batchnorm_params(c)
        return [
            *super().explain(layer),
            ("params", f"2c trainable + 2c running statistics = 2*{c} + 2*{c} = {trainable + fixed}"),
        ]


@register
class LRN(Op):
    """Local response normalisation across channels (AlexNet's NORM).

    y = x / (k + alpha/size * sum of x^2 over `size` neighbouring channels) ^ beta
    params = 0; MACs = 0; other ops = 2*size + 3 per value (squares, adds, scale, add k, pow, divide)
    """

    type = "lrn"
    attrs = (
        Attr("size", positive_int, 5, "number of neighbouring channels summed over"),
        Attr("alpha", number(0), 1e-4, "scale of the sum of squares"),
        Attr("beta", number(0), 0.75, "exponent"),
        Attr("k", number(0), 1.0, "additive constant"),
    )
    examples = (Example({}, ((6, 3, 3),), (6, 3, 3)), Example({"size": 3, "k": 2.0}, ((4, 5),), (4, 5)))

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        check(len(in_shapes[0]) >= 2, lambda: f"expects input (C, *spatial), got {format_shape(in_shapes[0])}")
        return in_shapes[0]

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, (2 * layer.attrs["size"] + 3) * math.prod(layer.out_shape))

    def window(self, layer: Layer) -> str:
        return POINTWISE

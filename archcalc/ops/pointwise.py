"""Element-wise ops: activations, softmax, dropout, and the views flatten and identity."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc.ops.attrs import Attr, number
from archcalc.ops.base import POINTWISE, Cost, Example, Layer, Op, Shape, format_shape, register

_EXAMPLES = (Example({}, ((3, 4, 4),), (3, 4, 4)), Example({}, ((7,),), (7,)))


class _Elementwise(Op):
    """Shape unchanged, one field per unit; ``ops_per_value`` other ops per output value."""

    ops_per_value = 1
    stores_output = False
    examples = _EXAMPLES

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return in_shapes[0]

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, self.ops_per_value * math.prod(layer.out_shape))

    def window(self, layer: Layer) -> str:
        return POINTWISE


@register
class ReLU(_Elementwise):
    """max(x, 0). In place; other ops = 1 per value."""

    type = "relu"


@register
class LeakyReLU(_Elementwise):
    """x if x > 0 else slope * x. In place; other ops = 1 per value."""

    type = "leaky_relu"
    attrs = (Attr("negative_slope", number(0), 0.01, "slope for x < 0"),)
    examples = (Example({"negative_slope": 0.2}, ((3, 4, 4),), (3, 4, 4)),)


@register
class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)). In place; other ops = 1 per value (one function evaluation)."""

    type = "sigmoid"


@register
class Tanh(_Elementwise):
    """tanh(x). In place; other ops = 1 per value (one function evaluation)."""

    type = "tanh"


@register
class GELU(_Elementwise):
    """x * Phi(x), Phi the standard normal CDF. In place; other ops = 1 per value."""

    type = "gelu"


@register
class Dropout(_Elementwise):
    """Zero each value with probability p in training, scale the rest by 1/(1-p).

    In place; identity at inference, so other ops = 0.
    """

    type = "dropout"
    ops_per_value = 0
    attrs = (Attr("p", number(0, 1), 0.5, "probability of zeroing a value"),)


@register
class Softmax(_Elementwise):
    """exp(x_i) / sum_j exp(x_j) over the channel axis.

    Stores its output; other ops = 3 per value (exp, add into the sum, divide).
    """

    type = "softmax"
    ops_per_value = 3
    stores_output = True


@register
class Identity(_Elementwise):
    """Passes its input on unchanged: a view, stores nothing, costs nothing."""

    type = "identity"
    ops_per_value = 0


@register
class Flatten(_Elementwise):
    """(C, *spatial) -> (C * prod(spatial),): a view, stores nothing, costs nothing.

    Each flattened value keeps the receptive field it had.
    """

    type = "flatten"
    ops_per_value = 0
    examples = (Example({}, ((3, 4, 4),), (48,)), Example({}, ((5,),), (5,)))

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return (math.prod(in_shapes[0]),)

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        dims = "*".join(map(str, layer.in_shape))
        return [("output size", f"prod(input shape) = {dims} = {layer.out_shape[0]}"), ("output shape", format_shape(layer.out_shape))]

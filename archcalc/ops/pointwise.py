"""Element-wise ops: activations, softmax, dropout, and the views flatten and identity."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc.ops.attrs import Attr, number
from archcalc.ops.base import POINTWISE, Cost, Example, Layer, Op, RunContext, Shape, format_shape, register

_EXAMPLES = (Example({}, ((3, 4, 4),), (3, 4, 4)), Example({}, ((7,),), (7,)))


class _Elementwise(Op):
    """Shape unchanged, one field per unit; ``ops_per_value`` other ops per output value."""

    ops_per_value = 1
    other_ops_rule = "1 per value (one function evaluation)"
    stores_output = False
    examples = _EXAMPLES

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return in_shapes[0]

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, self.ops_per_value * math.prod(layer.out_shape))

    def window(self, layer: Layer) -> str:
        return POINTWISE

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        return inputs[0], None

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy], {}


@register
class ReLU(_Elementwise):
    """max(x, 0). In place; other ops = 1 per value. The gradient at 0 is 0."""

    type = "relu"

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.ReLU()

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        x = inputs[0]
        return x * (x > 0), x > 0

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy * cache], {}


@register
class LeakyReLU(_Elementwise):
    """x if x > 0 else slope * x. In place; other ops = 1 per value."""

    type = "leaky_relu"
    attrs = (Attr("negative_slope", number(0), 0.01, "slope for x < 0"),)
    examples = (Example({"negative_slope": 0.2}, ((3, 4, 4),), (3, 4, 4)),)

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.LeakyReLU(layer.attrs["negative_slope"])

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        import numpy as np

        x = inputs[0]
        slope = np.where(x > 0, 1.0, layer.attrs["negative_slope"]).astype(x.dtype)
        return x * slope, slope

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy * cache], {}


@register
class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)). In place; other ops = 1 per value (one function evaluation)."""

    type = "sigmoid"

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.Sigmoid()

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        import numpy as np

        y = 1 / (1 + np.exp(-inputs[0]))
        return y, y

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy * cache * (1 - cache)], {}


@register
class Tanh(_Elementwise):
    """tanh(x). In place; other ops = 1 per value (one function evaluation)."""

    type = "tanh"

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.Tanh()

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        import numpy as np

        y = np.tanh(inputs[0])
        return y, y

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy * (1 - cache * cache)], {}


@register
class Dropout(_Elementwise):
    """Zero each value with probability p in training, scale the rest by 1/(1-p).

    In place; identity at inference, so other ops = 0.
    """

    type = "dropout"
    other_ops_rule = "0 (the identity at inference)"
    ops_per_value = 0
    attrs = (Attr("p", number(0, 1), 0.5, "probability of zeroing a value"),)

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.Dropout(layer.attrs["p"])

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        x, p = inputs[0], layer.attrs["p"]
        if not ctx.training or p == 0:
            return x, None
        keep = ctx.rng.random(x.shape) >= p
        mask = (keep / (1 - p) if p < 1 else keep * 0).astype(x.dtype)
        return x * mask, mask

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy if cache is None else dy * cache], {}


@register
class Softmax(_Elementwise):
    """exp(x_i) / sum_j exp(x_j) over the channel axis.

    Stores its output; other ops = 3 per value (exp, add into the sum, divide).
    """

    type = "softmax"
    other_ops_rule = "3 per value (exp, add into the sum, divide)"
    ops_per_value = 3
    stores_output = True

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.Softmax(dim=1)

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        from archcalc import kernels

        y = kernels.softmax(inputs[0])
        return y, y

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [cache * (dy - (dy * cache).sum(axis=1, keepdims=True))], {}


@register
class Identity(_Elementwise):
    """Passes its input on unchanged: a view, stores nothing, costs nothing."""

    type = "identity"
    view = True
    other_ops_rule = "0 (a view)"
    ops_per_value = 0

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.Identity()


@register
class Flatten(_Elementwise):
    """(C, *spatial) -> (C * prod(spatial),): a view, stores nothing, costs nothing.

    Each flattened value keeps the receptive field it had.
    """

    type = "flatten"
    view = True
    other_ops_rule = "0 (a view)"
    ops_per_value = 0
    examples = (Example({}, ((3, 4, 4),), (48,)), Example({}, ((5,),), (5,)))

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.Flatten(1)

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return (math.prod(in_shapes[0]),)

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        x = inputs[0]
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy.reshape(cache)], {}

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        dims = "*".join(map(str, layer.in_shape))
        return [("output size", f"prod(input shape) = {dims} = {layer.out_shape[0]}"), ("output shape", format_shape(layer.out_shape))]

"""Element-wise ops: activations, softmax, dropout, and the view identity."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc.ops.attrs import Attr, number
from archcalc.ops.base import (
    POINTWISE,
    Cost,
    Example,
    Layer,
    Op,
    RunContext,
    Saved,
    Shape,
    keeps_input,
    keeps_output,
    new_buffer,
    register,
)

_EXAMPLES = (Example({}, ((3, 4, 4),), (3, 4, 4)), Example({}, ((7,),), (7,)))

#: An element-wise op without attributes on every rank: (C,), (C, L), (C, H, W), (C, D, H, W).
EVERY_RANK = (
    Example({}, ((3, 4, 4),), (3, 4, 4)),
    Example({}, ((5,),), (5,)),
    Example({}, ((2, 7),), (2, 7)),
    Example({}, ((2, 3, 3, 4),), (2, 3, 3, 4)),
)


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
    """max(x, 0). In place; other ops = 1 per value (a max with 0). The gradient at 0 is 0.

    saved for backward: its output (PyTorch saves the result)
    """

    type = "relu"
    other_ops_rule = "1 per value (a max with 0)"

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return (keeps_output(layer),)

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.ReLU()

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        from archcalc import kernels

        y = kernels.clamp_forward(inputs[0], 0.0)
        return y, y  # backward's mask is y > 0: the output, kept anyway, instead of a mask

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        from archcalc import kernels

        return [kernels.clamp_backward(dy, cache, 0.0)], {}


@register
class LeakyReLU(_Elementwise):
    """x if x > 0 else slope * x. In place; other ops = 2 per value (compare with 0, multiply by the slope), as prelu.

    saved for backward: its input (PyTorch saves self)
    """

    type = "leaky_relu"
    ops_per_value = 2
    other_ops_rule = "2 per value (compare with 0, multiply by the slope)"
    attrs = (Attr("negative_slope", number(0), 0.01, "slope for x < 0"),)
    examples = (Example({"negative_slope": 0.2}, ((3, 4, 4),), (3, 4, 4)),)

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return (keeps_input(layer),)

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
    """1 / (1 + exp(-x)). In place; other ops = 4 per value (negate, exp, add 1, divide), as silu's
    x / (1 + exp(-x)).
    saved for backward: its output (PyTorch saves the result)
    """

    type = "sigmoid"
    ops_per_value = 4
    other_ops_rule = "4 per value (negate, exp, add 1, divide)"

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return (keeps_output(layer),)

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
    """tanh(x). In place; other ops = 1 per value (one tanh, counted as one elementary function as exp and log are).

    saved for backward: its output (PyTorch saves the result)
    """

    type = "tanh"
    other_ops_rule = "1 per value (one tanh)"

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return (keeps_output(layer),)

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
    saved for backward: the scaled keep mask, in the tensor's dtype as PyTorch's CPU path (input * noise;
    CUDA's fused kernel keeps a 1-byte bool mask); nothing at p = 0; a scalar 0 at p = 1
    """

    type = "dropout"
    other_ops_rule = "0 (the identity at inference)"
    ops_per_value = 0
    random = True
    attrs = (Attr("p", number(0, 1), 0.5, "probability of zeroing a value"),)

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        p = layer.attrs["p"]
        if p == 0:
            return ()
        if p == 1:
            return (new_buffer("zero", (), batched=False),)
        return (new_buffer("mask", layer.out_shape),)

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
    saved for backward: its output (PyTorch saves the result)
    """

    type = "softmax"
    mixes_channels = True
    other_ops_rule = "3 per value (exp, add into the sum, divide)"
    ops_per_value = 3
    stores_output = True

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return (keeps_output(layer),)

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
    """Passes its input on unchanged: a view, stores nothing, costs nothing.

    saved for backward: nothing (a view)
    """

    type = "identity"
    view = True
    other_ops_rule = "0 (a view)"
    ops_per_value = 0

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return ()

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.Identity()

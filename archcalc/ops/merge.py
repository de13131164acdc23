"""Merging branches: concatenation along channels, and element-wise addition with broadcasting
(its shape rule and gradient reduction serve ``mul`` too)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc.errors import RuleError, check
from archcalc.ops.base import (
    AXIS_NAMES,
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
class Concat(Op):
    """Stack inputs along the channel axis; their other axes must match.

    out = (sum of c_i, *spatial); params = 0; MACs = 0; other ops = 0 (a copy)
    saved for backward: nothing (shapes only)
    """

    type = "concat"
    other_ops_rule = "0 (a copy)"
    arity = (2, None)
    examples = (Example({}, ((2, 4, 4), (3, 4, 4)), (5, 4, 4)), Example({}, ((2,), (3,), (1,)), (6,)))

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return ()

    def torch_module(self, layer: Layer) -> Any:
        from archcalc.ops import _torch

        return _torch.Cat()

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        first = in_shapes[0]
        for shape in in_shapes[1:]:
            check(
                shape[1:] == first[1:],
                lambda shape=shape: "inputs must match on every axis but channels, got "
                + " and ".join(format_shape(s) for s in (first, shape)),
            )
        return (sum(shape[0] for shape in in_shapes), *first[1:])

    def cost(self, layer: Layer) -> Cost:
        return Cost()

    def window(self, layer: Layer) -> str:
        return POINTWISE

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        import numpy as np

        return np.concatenate(inputs, axis=1), [x.shape[1] for x in inputs]

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        import numpy as np

        return np.split(dy, np.cumsum(cache)[:-1], axis=1), {}

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        channels = " + ".join(str(s[0]) for s in layer.in_shapes)
        return [("output channels", f"{channels} = {layer.out_shape[0]}"), ("output shape", format_shape(layer.out_shape))]


def broadcast_shape(in_shapes: tuple[Shape, ...]) -> Shape:
    """The shape inputs broadcast to, as NumPy and PyTorch broadcast: per axis, inputs of size 1
    are repeated to the others' size (squeeze-excitation's (C, 1, 1) gate times (C, H, W)).

    Inputs must have one rank (shapes exclude the batch axis, so a shorter shape would line up
    against the wrong axes). Raises RuleError naming both shapes and the axis that does not broadcast.
    """
    first = in_shapes[0]
    for shape in in_shapes[1:]:
        check(
            len(shape) == len(first),
            lambda shape=shape: f"inputs must have the same number of axes, got {format_shape(first)} and {format_shape(shape)}",
        )
    out = []
    for axis, sizes in enumerate(zip(*in_shapes)):
        size = max(sizes)
        # one pass (a merge may have thousands of inputs): the first input above 1 against the rest
        i = next((k for k, n in enumerate(sizes) if n > 1), 0)
        j = next((k for k in range(i + 1, len(sizes)) if 1 < sizes[k] != sizes[i]), None)
        if j is not None:
            raise RuleError(
                    f"inputs must broadcast (on every axis equal sizes, or 1), got {format_shape(in_shapes[i])} and "
                    f"{format_shape(in_shapes[j])}: {axis_name(axis, len(first))} {sizes[i]} and {sizes[j]} differ and neither is 1"
                )
        out.append(size)
    return tuple(out)


def axis_name(axis: int, rank: int) -> str:
    """``channels`` for axis 0 of a channels-first shape, else the spatial axis's name (``height``)."""
    return "channels" if axis == 0 else AXIS_NAMES[rank - 1][axis - 1]


def reduce_to(grad: Any, shape: tuple[int, ...]) -> Any:
    """``grad`` summed over the axes an input of ``shape`` (batch axis included) was broadcast along."""
    axes = tuple(a for a, (g, s) in enumerate(zip(grad.shape, shape)) if s == 1 and g != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


def broadcast_text(layer: Layer) -> str:
    """``(8, 1, 1) and (8, 14, 14) broadcast to (8, 14, 14)``, or the one shape when all are equal."""
    if all(shape == layer.out_shape for shape in layer.in_shapes):
        return f"every input's: {format_shape(layer.out_shape)}"
    shapes = ", ".join(format_shape(shape) for shape in layer.in_shapes)
    return f"{shapes} broadcast to {format_shape(layer.out_shape)} (each axis: the inputs' size, where not 1)"


class _Broadcast(Op):
    """Shared rules of the element-wise merges: broadcast shapes, (inputs - 1) ops per output value."""

    arity = (2, None)
    other_ops_rule = "(inputs - 1) per output value"
    examples = (
        Example({}, ((2, 4, 4), (2, 4, 4)), (2, 4, 4)),
        Example({}, ((3, 4, 4), (1, 4, 4)), (3, 4, 4)),
        Example({}, ((1, 5), (3, 5)), (3, 5)),
        Example({}, ((4,), (1,), (4,)), (4,)),
        Example({}, ((2, 3, 3, 4), (2, 3, 3, 4), (2, 3, 3, 4)), (2, 3, 3, 4)),
    )

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return broadcast_shape(in_shapes)

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, (len(layer.in_shapes) - 1) * math.prod(layer.out_shape))

    def window(self, layer: Layer) -> str:
        """Pointwise: an output value reads one value of each input. An input broadcast over a
        spatial axis gives every output its one value, so its field (often global: a
        squeeze-excitation gate after global pooling) is in every output's: the receptive-field
        pass makes the merge global when that value saw the whole input, and flags it
        non-uniform when it saw part (the outputs' fields are then no sliding window)."""
        return POINTWISE

    def summary(self, layer: Layer) -> str:
        return "" if all(shape == layer.out_shape for shape in layer.in_shapes) else "broadcast"

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        n, values = len(layer.in_shapes), math.prod(layer.out_shape)
        return [
            ("output shape", broadcast_text(layer)),
            ("other ops", f"(inputs - 1) * output values = {n - 1}*{values} = {(n - 1) * values}"),
        ]


@register
class Add(_Broadcast):
    """Element-wise sum of inputs, broadcast over size-1 axes as NumPy/PyTorch (ResNet's shortcut). In place.

    out = the broadcast shape: per axis, the inputs' size where not 1 (all inputs of one rank)
    params = 0; MACs = 0; other ops = (inputs - 1) adds per output value
    in place (ResNet's `out += identity`): it overwrites an input of the output's shape
    receptive field: pointwise, the largest of the inputs'; global when an input broadcast over space
    saw the whole input (its one value reaches every output), flagged non-uniform when it saw part
    gradient: dy to every input, summed over the axes that input was broadcast along
    saved for backward: nothing (its gradient passes through)
    """

    type = "add"
    other_ops_rule = "(inputs - 1) adds per output value"
    stores_output = False

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return ()

    def torch_module(self, layer: Layer) -> Any:
        from archcalc.ops import _torch

        return _torch.Sum()

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        return sum(inputs[1:], inputs[0]), [x.shape for x in inputs]

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [reduce_to(dy, shape) for shape in cache], {}  # the gradient fans out to every input

"""Reshape: the same values in another shape, as PyTorch's ``x.reshape`` (counted as a view)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc.errors import RuleError, check
from archcalc.ops._layout import AxisStep, kept, signed_ints
from archcalc.ops.attrs import MAX_INT, Attr, describe
from archcalc.ops.base import (
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
class Reshape(Op):
    """The same values in row-major order in another shape, as PyTorch's x.reshape(N, *shape).

    ``shape`` is the sample's shape, without the batch axis (as archcalc's shapes and Keras'
    Reshape): PyTorch's ``x.reshape(x.size(0), 4, 36)`` is ``shape: [4, 36]``. One size may be
    -1, worked out from the others; the sizes must multiply out to the input's. A leading -1
    that would stand for 1 is refused (it is usually PyTorch's batch -1 copied over).
    out = shape, the -1 resolved: prod(input) / prod(the other sizes)
    params = 0; MACs = 0; other ops = 0: counted as a view, storing nothing new. PyTorch's reshape
    is a view of a contiguous input and copies one that is not (after a permute or a strided
    slice); archcalc counts no copy in either case, so after a permute the memory totals leave
    out that one copy of the output.
    receptive field: each value keeps its field; axes the reshape leaves whole (the same size
    with the same axes before it) keep their spatial meaning, merged or split ones lose it (a
    window along them later makes those fields an upper bound, flagged)
    saved for backward: nothing (a view)
    """

    type = "reshape"
    view = True
    stores_output = False
    other_ops_rule = "0 (a view)"
    attrs = (Attr("shape", signed_ints, doc="the sample's new shape, without the batch axis; one size may be -1"),)
    examples = (
        Example({"shape": [3, 16]}, ((3, 4, 4),), (3, 16)),
        Example({"shape": [-1, 2, 3]}, ((24,),), (4, 2, 3)),
        Example({"shape": [4, 3, -1]}, ((4, 15),), (4, 3, 5)),
        Example({"shape": [2, 3, 2, 5]}, ((2, 6, 5),), (2, 3, 2, 5)),
        Example({"shape": [6, 1, 4]}, ((6, 4),), (6, 1, 4)),
        Example({"shape": [2, 3, 4, 5]}, ((2, 3, 4, 5),), (2, 3, 4, 5)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return ()

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        return {**attrs, "shape": _resolved_shape(attrs["shape"], in_shapes[0])}

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return tuple(attrs["shape"])

    def cost(self, layer: Layer) -> Cost:
        return Cost()

    def window(self, layer: Layer) -> str:
        return POINTWISE

    def axis_map(self, layer: Layer) -> tuple[AxisStep, ...]:
        """Axes of equal size at equal offsets kept; merged or split ones mixed; new size-1 axes
        hold nothing (size-1 input axes are dropped)."""
        return reshape_axis_map(layer.in_shape, layer.out_shape)

    def summary(self, layer: Layer) -> str:
        return format_shape(layer.out_shape)

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        x = inputs[0]
        return x.reshape(x.shape[0], *layer.out_shape), x.shape

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy.reshape(cache)], {}

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        shape = tuple(layer.attrs["shape"])

        class TorchReshape(nn.Module):
            def forward(self, x: Any) -> Any:
                return x.reshape(x.shape[0], *shape)

        return TorchReshape()

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        values = math.prod(layer.in_shape)
        lines = [("output size", f"prod(input shape) = {'*'.join(map(str, layer.in_shape))} = {values} values")]
        return [*lines, ("output shape", f"shape = {format_shape(layer.out_shape)}")]


def _resolved_shape(shape: tuple[int, ...], in_shape: Shape) -> tuple[int, ...]:
    """``shape`` with its -1 worked out.

    Raises:
        RuleError: a size below 1 other than one -1, sizes that do not multiply out.
    """
    given = describe(list(shape))
    values = math.prod(in_shape)
    check(
        all(s >= 1 or s == -1 for s in shape),
        lambda: f"shape sizes must be positive ints or one -1, got {given}",
    )
    check(shape.count(-1) <= 1, lambda: f"shape may hold one -1 (a size worked out from the others), got {given}")
    known = math.prod(s for s in shape if s != -1)
    if -1 not in shape:
        check(
            known == values,
            lambda: f"shape {given} holds {known} values, the input {format_shape(in_shape)} {values}: the sizes must "
            "multiply out to the input's (shape leaves out the batch axis)",
        )
        return tuple(shape)
    if values % known:
        raise RuleError(
            f"shape {given}: the input {format_shape(in_shape)} holds {values} values, which do not divide by the "
            f"other sizes' product {known}, so no -1 fits"
        )
    inferred = values // known
    if shape[0] == -1 and inferred == 1 and len(shape) > 1:
        raise RuleError(
            f"shape {given}: the leading -1 would be 1; shape is the sample's shape without the batch axis "
            f"(PyTorch's x.reshape(-1, {', '.join(map(str, shape[1:]))}) over a batch is {describe(list(shape[1:]))} "
            "here); write 1 for a size-1 axis"
        )
    check(inferred <= MAX_INT, lambda: f"shape {given}: the -1 would be {inferred}, above 2**31 - 1")
    return tuple(inferred if s == -1 else s for s in shape)


def reshape_axis_map(in_shape: Shape, out_shape: Shape) -> tuple[AxisStep, ...]:
    """Per output axis of a row-major reshape, where its values come from: the input axes are
    grouped with the output axes they fill (equal products, size-1 axes aside); a group of one
    axis each is that axis kept, any other group mixes its input axes."""
    inputs = [a for a, n in enumerate(in_shape) if n != 1]
    outputs = [a for a, n in enumerate(out_shape) if n != 1]
    steps: dict[int, AxisStep] = {a: AxisStep((), mixed=True) for a, n in enumerate(out_shape) if n == 1}
    i = j = 0
    while j < len(outputs):
        group_in, group_out = [inputs[i]], [outputs[j]]
        have, want = in_shape[inputs[i]], out_shape[outputs[j]]
        i, j = i + 1, j + 1
        while have != want:
            if have < want:
                group_in.append(inputs[i])
                have, i = have * in_shape[inputs[i]], i + 1
            else:
                group_out.append(outputs[j])
                want, j = want * out_shape[outputs[j]], j + 1
        for axis in group_out:
            one = len(group_in) == len(group_out) == 1
            steps[axis] = kept(group_in[0]) if one else AxisStep(tuple(group_in), mixed=True)
    return tuple(steps[a] for a in range(len(out_shape)))

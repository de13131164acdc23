"""Fully connected (linear) layer, acting on the last axis of a tensor of any rank."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc import formulas
from archcalc.ops._layout import AxisStep, kept
from archcalc.ops.attrs import Attr, boolean, positive_int
from archcalc.ops.base import (
    BIAS,
    GLOBAL,
    WEIGHT,
    BackwardCost,
    Cost,
    Example,
    Layer,
    Op,
    Param,
    RunContext,
    Saved,
    Shape,
    Window,
    format_shape,
    keeps_input,
    keeps_param,
    register,
)


@register
class Linear(Op):
    """Weighted sums of the last axis, as PyTorch's nn.Linear: (..., in) -> (..., units).

    The same weights apply at every position of the other axes: (in,) -> (units,) after a
    flatten; (L, C) -> (L, units) on a sequence; ConvNeXt's channels-last (H, W, C) -> (H, W, 4C).

    out = the input's shape with its last axis replaced by units
    params = in * units weights + units biases (when bias), whatever the rank
    MACs = in * units per position, positions = prod(all axes but the last); other ops =
    units bias adds per position. (torchinfo counts a linear layer once, not once per position:
    on ConvNeXt's channels-last pointwise layers that is 1/(H*W) of the true count;
    FlopCounterMode, fvcore and ptflops count every position, as here.)
    receptive field: on a flat (in,) input global; otherwise global along the last axis (each
    unit sees all of it: a window as wide as the axis, stride 0) and unchanged on the others
    saved for backward: its input and weight
    backward: input gradient = forward MACs (dX = dY W: positions by units by in), weight gradient =
    forward MACs (dW = dY^T X: units by positions by in, summed over the positions); other ops = units
    additions of the bias gradient per position (when bias). Source: the matrix calculus of y = x W^T
    (cs231n's affine_backward)
    """

    type = "linear"
    other_ops_rule = "units bias adds per position (when bias)"
    attrs = (
        Attr("units", positive_int, doc="number of output units (PyTorch's out_features)"),
        Attr("bias", boolean, True, "add a learned bias per unit"),
    )
    examples = (
        Example({"units": 5}, ((12,),), (5,)),
        Example({"units": 3, "bias": False}, ((4,),), (3,)),
        Example({"units": 8}, ((10, 3),), (10, 8)),  # the Linear(3, 8) on (10, 3)
        Example({"units": 4}, ((2, 3, 5),), (2, 3, 4)),
        Example({"units": 2, "bias": False}, ((2, 2, 3, 3),), (2, 2, 3, 2)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return keeps_input(layer), keeps_param("weight", self.params(layer)["weight"].shape)

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return (*in_shapes[0][:-1], attrs["units"])

    def params(self, layer: Layer) -> dict[str, Param]:
        n_in, units = layer.in_shape[-1], layer.attrs["units"]
        weight = Param((units, n_in), WEIGHT)
        return {"weight": weight, "bias": Param((units,), BIAS)} if layer.attrs["bias"] else {"weight": weight}

    def cost(self, layer: Layer) -> Cost:
        units, positions = layer.attrs["units"], _positions(layer)
        macs = formulas.linear_macs(layer.in_shape[-1], units) * positions
        return Cost(macs, units * positions if layer.attrs["bias"] else 0)

    def backward_cost(self, layer: Layer) -> BackwardCost:
        """"backward" in the class docstring: each gradient's MACs equal the forward's."""
        forward = self.cost(layer)
        return BackwardCost(forward.macs, forward.macs, forward.other_ops)

    def window(self, layer: Layer) -> Window | str:
        in_shape = layer.in_shape
        if len(in_shape) == 1:
            return GLOBAL
        spatial = len(in_shape) - 1
        # the last axis: one window spanning it, every unit at the same place (stride 0)
        return Window(
            kernel=(1,) * (spatial - 1) + (in_shape[-1],),
            stride=(1,) * (spatial - 1) + (0,),
            dilation=(1,) * spatial,
            padding=((0, 0),) * spatial,
        )

    def axis_map(self, layer: Layer) -> tuple[AxisStep, ...]:
        """Every axis kept; the last one seen whole by every unit (the pass's map of axes)."""
        *before, last = range(len(layer.in_shape))
        return (*map(kept, before), AxisStep((last,), kernel=layer.in_shape[-1], stride=0))

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        from archcalc import kernels

        x, weight = inputs[0], params["weight"]
        rows = x.reshape(-1, x.shape[-1])  # every position of every sample: one GEMM
        y = kernels.matmul(rows, weight.T)
        if "bias" in params:
            y += params["bias"]
        ctx.macs += kernels.matmul_macs(rows.shape, weight.T.shape)  # from the operands of the product run
        return y.reshape(*x.shape[:-1], weight.shape[0]), (rows, weight, x.shape, ctx.input_grads, ctx)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        from archcalc import kernels

        rows, weight, x_shape, input_grads, ctx = cache
        dy_rows = dy.reshape(-1, dy.shape[-1])
        grads = {"weight": kernels.matmul(dy_rows.T, rows)}
        ctx.weight_grad_macs += kernels.matmul_macs(dy_rows.T.shape, rows.shape)  # from the operands of the product
        if layer.attrs["bias"]:
            grads["bias"] = dy_rows.sum(axis=0)
        if not input_grads:  # no input depends on a learned parameter: frameworks skip dX
            return [None], grads
        ctx.input_grad_macs += kernels.matmul_macs(dy_rows.shape, weight.shape)
        return [kernels.matmul(dy_rows, weight).reshape(x_shape)], grads

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.Linear(layer.in_shape[-1], layer.attrs["units"], layer.attrs["bias"])

    def summary(self, layer: Layer) -> str:
        return str(layer.attrs["units"])

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        n_in, units = layer.in_shape[-1], layer.attrs["units"]
        weights = formulas.linear_params(n_in, units, bias=False)
        per_position = formulas.linear_macs(n_in, units)
        if len(layer.in_shape) == 1:
            lines = [("output shape", f"(units,) = {format_shape(layer.out_shape)}")]
        else:
            lines = [("output shape", f"(*input[:-1], units) = {format_shape(layer.out_shape)}")]
        lines.append(("weights", f"in * out = {n_in} * {units} = {weights}"))
        if layer.attrs["bias"]:
            lines.append(("params", f"weights + out biases = {weights} + {units} = {weights + units}"))
        if len(layer.in_shape) == 1:
            lines.append(("MACs", f"in * out = {n_in} * {units} = {per_position}"))
        else:
            positions = _positions(layer)
            dims = "*".join(map(str, layer.in_shape[:-1]))
            lines.append((
                "MACs",
                f"in * out per position * positions = {n_in} * {units} * ({dims}) = {per_position} * {positions}"
                f" = {per_position * positions}",
            ))
        return lines


def _positions(layer: Layer) -> int:
    """Positions the weights are applied at: the product of all axes but the last."""
    return math.prod(layer.in_shape[:-1])

"""Fully connected (linear) layer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archcalc import formulas
from archcalc.errors import check
from archcalc.ops.attrs import Attr, boolean, positive_int
from archcalc.ops.base import BIAS, GLOBAL, WEIGHT, Cost, Example, Layer, Op, Param, RunContext, Shape, format_shape, register


@register
class Linear(Op):
    """Every output unit a weighted sum of every input value: (in,) -> (units,).

    params = in * units weights + units biases (when bias)
    MACs = in * units; other ops = units bias adds
    receptive field: global
    """

    type = "linear"
    other_ops_rule = "units bias adds (when bias)"
    attrs = (
        Attr("units", positive_int, doc="number of output units"),
        Attr("bias", boolean, True, "add a learned bias per unit"),
    )
    examples = (Example({"units": 5}, ((12,),), (5,)), Example({"units": 3, "bias": False}, ((4,),), (3,)))

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        in_shape = in_shapes[0]
        check(
            len(in_shape) == 1,
            lambda: f"expects input (C,), got {format_shape(in_shape)}; add a flatten before it",
        )
        return (attrs["units"],)

    def params(self, layer: Layer) -> dict[str, Param]:
        n_in, units = layer.in_shape[0], layer.attrs["units"]
        weight = Param((units, n_in), WEIGHT)
        return {"weight": weight, "bias": Param((units,), BIAS)} if layer.attrs["bias"] else {"weight": weight}

    def cost(self, layer: Layer) -> Cost:
        units = layer.attrs["units"]
        return Cost(formulas.linear_macs(layer.in_shape[0], units), units if layer.attrs["bias"] else 0)

    def window(self, layer: Layer) -> str:
        return GLOBAL

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        from archcalc import kernels

        x, weight = inputs[0], params["weight"]
        y = x @ weight.T
        if "bias" in params:
            y += params["bias"]
        ctx.macs += kernels.matmul_macs(x.shape, weight.T.shape)  # from the operands of the product run
        return y, (x, weight)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        x, weight = cache
        grads = {"weight": dy.T @ x}
        if layer.attrs["bias"]:
            grads["bias"] = dy.sum(axis=0)
        return [dy @ weight], grads

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.Linear(layer.in_shape[0], layer.attrs["units"], layer.attrs["bias"])

    def summary(self, layer: Layer) -> str:
        return str(layer.attrs["units"])

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        n_in, units = layer.in_shape[0], layer.attrs["units"]
        weights = formulas.linear_params(n_in, units, bias=False)
        lines = [("output shape", f"(units,) = {format_shape(layer.out_shape)}")]
        lines.append(("weights", f"in * out = {n_in} * {units} = {weights}"))
        if layer.attrs["bias"]:
            lines.append(("params", f"weights + out biases = {weights} + {units} = {weights + units}"))
        lines.append(("MACs", f"in * out = {n_in} * {units} = {formulas.linear_macs(n_in, units)}"))
        return lines

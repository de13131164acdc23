"""Flatten: merge a run of axes into one, as PyTorch's nn.Flatten (a view)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc.errors import check
from archcalc.ops._layout import AxisStep, axes_text, sample_axis, signed_int
from archcalc.ops.attrs import Attr
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
class Flatten(Op):
    """Merge axes start_dim to end_dim into one, as PyTorch's nn.Flatten: (C, H, W) -> (C*H*W,).

    Axes are numbered as in PyTorch, 0 being the batch axis archcalc's shapes leave out: the
    default ``start_dim: 1`` is the sample's first axis (C), as ``nn.Flatten()``'s; on (C, H, W)
    ``start_dim: 2`` gives (C, H*W), as ``x.flatten(2)``. 0 (the batch) is refused.
    out = the input's shape with axes start_dim..end_dim replaced by their product
    params = 0; MACs = 0; other ops = 0: a view, stores nothing new (a flatten of a permuted,
    non-contiguous tensor copies in PyTorch; archcalc counts no copy: see ``reshape``)
    receptive field: each value keeps the field it had; an axis made of several is no longer
    one spatial axis, so a window along it later makes the merged axes' fields an upper bound
    saved for backward: nothing (a view)
    """

    type = "flatten"
    view = True
    stores_output = False
    other_ops_rule = "0 (a view)"
    attrs = (
        Attr("start_dim", signed_int, 1, "first axis to merge, numbered as in PyTorch (0 = batch; 1 = C)"),
        Attr("end_dim", signed_int, -1, "last axis to merge, numbered as in PyTorch (-1 = the last)"),
    )
    examples = (
        Example({}, ((3, 4, 4),), (48,)),
        Example({}, ((5,),), (5,)),
        Example({"start_dim": 2}, ((3, 4, 4),), (3, 16)),
        Example({"start_dim": 2, "end_dim": 3}, ((2, 3, 4, 5),), (2, 12, 5)),
        Example({"start_dim": -2}, ((2, 3, 4, 5),), (2, 3, 20)),
        Example({"start_dim": 1, "end_dim": 2}, ((3, 4, 5),), (12, 5)),
        Example({"start_dim": 3, "end_dim": 3}, ((2, 3, 4),), (2, 3, 4)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return ()

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        rank = len(in_shapes[0])
        start = sample_axis(attrs["start_dim"], rank, "start_dim")
        end = sample_axis(attrs["end_dim"], rank, "end_dim")
        check(
            start <= end,
            lambda: f"start_dim must not come after end_dim, got start_dim={attrs['start_dim']} (axis {start + 1} of "
            f"{axes_text(rank)}) and end_dim={attrs['end_dim']} (axis {end + 1})",
        )
        return {**attrs, "start_dim": start + 1, "end_dim": end + 1}  # PyTorch's numbers, made positive

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        in_shape, start, end = in_shapes[0], attrs["start_dim"] - 1, attrs["end_dim"]
        return (*in_shape[:start], math.prod(in_shape[start:end]), *in_shape[end:])

    def cost(self, layer: Layer) -> Cost:
        return Cost()

    def window(self, layer: Layer) -> str:
        return POINTWISE

    def axis_map(self, layer: Layer) -> tuple[AxisStep, ...]:
        """As a reshape's: axes before and after the run kept, the run merged into one (kept
        when all but one of its axes have size 1)."""
        from archcalc.ops.reshape import reshape_axis_map

        return reshape_axis_map(layer.in_shape, layer.out_shape)

    def summary(self, layer: Layer) -> str:
        start, end = layer.attrs["start_dim"], layer.attrs["end_dim"]
        return "" if (start, end) == (1, len(layer.in_shape)) else f"dims {start}..{end}"

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        x = inputs[0]
        return x.reshape(x.shape[0], *layer.out_shape), x.shape

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy.reshape(cache)], {}

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.Flatten(layer.attrs["start_dim"], layer.attrs["end_dim"])

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        start, end = layer.attrs["start_dim"] - 1, layer.attrs["end_dim"]
        merged = layer.in_shape[start:end]
        dims = "*".join(map(str, merged))
        what = "prod(input shape)" if (start, end) == (0, len(layer.in_shape)) else f"prod(axes {start + 1}..{end})"
        return [
            ("output size", f"{what} = {dims} = {math.prod(merged)}"),
            ("output shape", format_shape(layer.out_shape)),
        ]

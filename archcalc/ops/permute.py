"""Permute: reorder a tensor's axes, as PyTorch's ``x.permute`` (a view)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archcalc.errors import RuleError, check
from archcalc.ops._layout import AxisStep, axes_text, kept, sample_axis, signed_ints
from archcalc.ops.attrs import Attr, describe
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
class Permute(Op):
    """Reorder the axes, as PyTorch's x.permute(*dims): [0, 2, 3, 1] makes (C, H, W) (H, W, C).

    ConvNeXt's channels-last block permutes with [0, 2, 3, 1] and back with [0, 3, 1, 2].

    Axes are numbered as in PyTorch, 0 being the batch axis archcalc's shapes leave out: ``dims``
    is torch's own list, batch first ([0, 2, 3, 1]), or the same without the batch's 0 ([2, 3, 1]:
    Keras' Permute numbering); negative numbers count from the last axis. The batch stays first.
    out = the input's axes in the order dims gives (output axis k is input axis dims[k])
    params = 0; MACs = 0; other ops = 0: a view, stores nothing new (as in PyTorch; a later op
    that needs contiguous memory copies, see ``reshape``)
    receptive field: unchanged; each axis keeps its spatial meaning wherever it moves, and the
    fields follow it (a conv or pool later applies its window to the axes it then finds)
    saved for backward: nothing (a view)
    """

    type = "permute"
    view = True
    stores_output = False
    other_ops_rule = "0 (a view)"
    attrs = (
        Attr("dims", signed_ints, doc="the new order of the axes, numbered as in PyTorch: [0, 2, 3, 1] or [2, 3, 1]"),
    )
    examples = (
        Example({"dims": [0, 2, 3, 1]}, ((3, 4, 5),), (4, 5, 3)),
        Example({"dims": [2, 1]}, ((3, 7),), (7, 3)),
        Example({"dims": [0, 2, 3, 4, 1]}, ((2, 3, 4, 5),), (3, 4, 5, 2)),
        Example({"dims": [0, -1, 1, 2]}, ((3, 4, 5),), (5, 3, 4)),
        Example({"dims": [1, 3, 2]}, ((2, 3, 5),), (2, 5, 3)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return ()

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        return {**attrs, "dims": _torch_dims(attrs["dims"], len(in_shapes[0]))}

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return tuple(in_shapes[0][d - 1] for d in attrs["dims"][1:])

    def cost(self, layer: Layer) -> Cost:
        return Cost()

    def window(self, layer: Layer) -> str:
        return POINTWISE

    def axis_map(self, layer: Layer) -> tuple[AxisStep, ...]:
        """Output axis k is input axis dims[k], its positions unchanged."""
        return tuple(kept(d - 1) for d in layer.attrs["dims"][1:])

    def summary(self, layer: Layer) -> str:
        return "(" + ", ".join(map(str, layer.attrs["dims"])) + ")"

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        return inputs[0].transpose(layer.attrs["dims"]), None

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        import numpy as np

        return [dy.transpose(np.argsort(layer.attrs["dims"]))], {}

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        dims = layer.attrs["dims"]

        class TorchPermute(nn.Module):
            def forward(self, x: Any) -> Any:
                # contiguous: the same values; torch 2.13's CPU BatchNorm2d gives a wrong input
                # gradient for some permuted views (a (1, 1, 4, 4) tensor permuted (0, 3, 2, 1):
                # strides (16, 1, 4, 16), taken as channels-last; torch.autograd.gradcheck fails),
                # and the oracle must not inherit that
                return x.permute(*dims).contiguous()

        return TorchPermute()

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        dims = layer.attrs["dims"]
        picked = ", ".join(f"input[{d}]" for d in dims[1:])
        return [("output shape", f"(axes in the order {tuple(dims)}, batch first) = ({picked}) = {format_shape(layer.out_shape)}")]


def _torch_dims(dims: tuple[int, ...], rank: int) -> tuple[int, ...]:
    """``dims`` in PyTorch's full form: the batch's 0 first, every number non-negative.

    Raises:
        RuleError: a list of the wrong length, the batch axis moved, an axis named twice.
    """
    given = describe(list(dims))
    if len(dims) == rank + 1:
        full = tuple(d + rank + 1 if d < 0 else d for d in dims)
        check(
            full[0] == 0 and all(0 <= d <= rank for d in full),
            lambda: f"dims must keep the batch axis 0 first and name axes 1 to {rank} of {axes_text(rank)}, got {given}",
        )
    elif len(dims) == rank:
        if 0 in dims:
            raise RuleError(
                f"dims must order axes 1 to {rank} of {axes_text(rank)} (numbered as in PyTorch, 0 being the batch), "
                f"got {given}; list all {rank + 1} with the batch's 0 first, or leave the 0 out"
            )
        full = (0, *(sample_axis(d, rank, "dims") + 1 for d in dims))
    else:
        raise RuleError(
            f"dims must order the {rank + 1} axes of {axes_text(rank)} as PyTorch numbers them, the batch's 0 first "
            f"(or the {rank} after it), got {len(dims)} values: {given}"
        )
    check(
        sorted(full) == list(range(rank + 1)),
        lambda: f"dims must name each axis of {axes_text(rank)} once, got {given}",
    )
    return full

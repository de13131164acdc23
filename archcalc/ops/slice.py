"""Slice: a range of positions along one axis, as PyTorch's ``x[:, start:stop:step]`` (a view)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archcalc.errors import check
from archcalc.ops._layout import AxisStep, axes_text, kept, optional_signed_int, sample_axis, signed_int
from archcalc.ops.attrs import Attr, positive_int
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
class Slice(Op):
    """Positions start:stop:step along axis dim, as PyTorch's slicing x[..., start:stop:step].

    Positions start, start + step, ... before stop; negative start/stop count from the end, and
    both are clamped to the axis, as Python and PyTorch do. ``chunk`` and ``split`` are several
    slices of one tensor: ``torch.chunk(x, 2, dim=1)`` on 64 channels is slices [0:32] and
    [32:64] of dim 1.

    ``dim`` is numbered as in PyTorch, 0 being the batch axis archcalc's shapes leave out (1 = C,
    -1 = the last axis); the batch cannot be sliced. ``step`` is positive, as in PyTorch.
    out = the input's shape with axis dim of len(range(start, stop, step)) after clamping
    (an empty slice is refused); params = 0; MACs = 0; other ops = 0: a view, stores nothing new
    receptive field: along a spatial axis a window of kernel 1, stride step, padding -start
    (unit i is input position start + i*step): the size is unchanged, the jump times step
    saved for backward: nothing (a view)
    """

    type = "slice"
    view = True
    stores_output = False
    other_ops_rule = "0 (a view)"
    attrs = (
        Attr("dim", signed_int, doc="the axis to slice, numbered as in PyTorch (1 = C, -1 = the last)"),
        Attr("start", optional_signed_int, None, "first position (negative: from the end; null: 0)"),
        Attr("stop", optional_signed_int, None, "position to stop before (negative: from the end; null: the end)"),
        Attr("step", positive_int, 1, "distance between the positions taken"),
    )
    examples = (
        Example({"dim": 1, "start": 0, "stop": 2}, ((4, 5, 5),), (2, 5, 5)),
        Example({"dim": 2, "start": 1, "stop": 6, "step": 2}, ((2, 8),), (2, 3)),
        Example({"dim": -1, "start": -3}, ((2, 5, 6),), (2, 5, 3)),
        Example({"dim": 2, "start": 2, "stop": 100}, ((2, 6, 4),), (2, 4, 4)),
        Example({"dim": 4, "start": -100, "stop": -1, "step": 3}, ((1, 3, 4, 8),), (1, 3, 4, 3)),
        Example({"dim": 2, "stop": 3}, ((2, 5),), (2, 3)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return ()

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        in_shape = in_shapes[0]
        axis = sample_axis(attrs["dim"], len(in_shape), "dim")
        size = in_shape[axis]
        first, stop, step = _bounds(attrs, size)
        count = len(range(first, stop, step))
        check(
            count >= 1,
            lambda: f"slice [{_text(attrs)}] of axis {axis + 1} of {axes_text(len(in_shape))} (size {size}) must not be "
            f"empty, got range({first}, {stop}, {step}) after clamping to the axis (PyTorch would give an empty tensor)",
        )
        return {**attrs, "dim": axis + 1}

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        in_shape = list(in_shapes[0])
        axis = attrs["dim"] - 1
        in_shape[axis] = len(range(*_bounds(attrs, in_shape[axis])))
        return tuple(in_shape)

    def cost(self, layer: Layer) -> Cost:
        return Cost()

    def window(self, layer: Layer) -> str:
        return POINTWISE

    def axis_map(self, layer: Layer) -> tuple[AxisStep, ...]:
        """Every axis kept; the sliced one a window of kernel 1, stride step, padding -start."""
        axis = layer.attrs["dim"] - 1
        first, _, step = _bounds(layer.attrs, layer.in_shape[axis])
        return tuple(
            AxisStep((a,), stride=step, padding=-first) if a == axis else kept(a) for a in range(len(layer.in_shape))
        )

    def summary(self, layer: Layer) -> str:
        first, stop, step = _bounds(layer.attrs, layer.in_shape[layer.attrs["dim"] - 1])
        return f"dim {layer.attrs['dim']} [{first}:{stop}" + (f":{step}]" if step != 1 else "]")

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        x = inputs[0]
        return x[_index(layer, layer.in_shape)], x.shape

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        import numpy as np

        dx = np.zeros(cache, dtype=dy.dtype)
        dx[_index(layer, layer.in_shape)] = dy
        return [dx], {}

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        # the spec's own start/stop, negative or beyond the axis: torch clamps them itself
        dim, part = layer.attrs["dim"], slice(layer.attrs["start"], layer.attrs["stop"], layer.attrs["step"])

        class TorchSlice(nn.Module):
            def forward(self, x: Any) -> Any:
                return x[(slice(None),) * dim + (part,)]

        return TorchSlice()

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        axis = layer.attrs["dim"] - 1
        size = layer.in_shape[axis]
        first, stop, step = _bounds(layer.attrs, size)
        count = layer.out_shape[axis]
        return [
            ("positions", f"[{_text(layer.attrs)}] of {size}, clamped: range({first}, {stop}, {step}) = {count} positions"),
            ("output shape", format_shape(layer.out_shape)),
        ]


def _bounds(attrs: Mapping[str, Any], size: int) -> tuple[int, int, int]:
    """(start, stop, step) clamped to an axis of ``size``, as Python and PyTorch clamp them."""
    return slice(attrs["start"], attrs["stop"], attrs["step"]).indices(size)


def _index(layer: Layer, in_shape: Shape) -> tuple[Any, ...]:
    """The NumPy index of the slice in a batch: every sample, the positions along dim."""
    axis = layer.attrs["dim"] - 1
    return (slice(None),) * (axis + 1) + (slice(*_bounds(layer.attrs, in_shape[axis])),)


def _text(attrs: Mapping[str, Any]) -> str:
    """The slice as the spec wrote it: ``2:8:2``, ``:3``, ``-3:``."""
    start, stop, step = attrs["start"], attrs["stop"], attrs["step"]
    text = f"{'' if start is None else start}:{'' if stop is None else stop}"
    return text + (f":{step}" if step != 1 else "")

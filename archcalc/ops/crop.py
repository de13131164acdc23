"""Crop: U-Net's crop in crop-and-concat, a window of the spatial axes cut out of the input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archcalc.errors import check
from archcalc.ops.attrs import Attr, ints, optional
from archcalc.ops.base import (
    AXIS_NAMES,
    Cost,
    Example,
    Layer,
    Op,
    RunContext,
    Saved,
    Shape,
    SizeDependence,
    Window,
    format_shape,
    register,
)
from archcalc.ops.window import per_axis


@register
class Crop(Op):
    """Cut each spatial axis to `size` values from `offset` (centred by default): U-Net's crop.

    With a second input (crop of [encoder_feature, decoder_feature], Ronneberger et al. 2015),
    the size is the second input's spatial size; only its shape is read. Centred:
    offset = (in - size) // 2 per axis, so an odd difference drops the extra value at the end
    (bottom/right), as the common PyTorch U-Nets do; torchvision's center_crop rounds the half
    to even instead (a difference of 3 starts at 2): give `offset` to follow it.
    out = (c, *size); params = 0; MACs = 0; other ops = 0
    a view (PyTorch's slicing returns one): stores nothing new; the concat after it copies
    receptive field: kernel 1, stride 1, padding -offset (unit i reads input i + offset), exact,
    from the first input alone (field_inputs = 1: a second input gives only its size)
    saved for backward: nothing (a view: shapes only)
    """

    type = "crop"
    other_ops_rule = "0 (a view: slicing computes nothing)"
    arity = (1, 2)
    stores_output = False
    view = True
    #: Only the first input's values reach the output; a second one gives its size.
    field_inputs = 1
    attrs = (
        Attr("size", optional(ints(1)), None,
             "output size per spatial axis (an int for every axis); null: the second input's spatial size"),
        Attr("offset", optional(ints(0)), None,
             "first kept index per axis; null: centred, (in - size) // 2 (an odd difference drops the last value)"),
    )
    examples = (
        Example({"size": 4}, ((2, 8, 8),), (2, 4, 4)),
        Example({"size": [3, 4]}, ((1, 6, 7),), (1, 3, 4)),
        Example({"size": [2, 3], "offset": [0, 4]}, ((2, 5, 7),), (2, 2, 3)),
        Example({"size": 5}, ((3, 9),), (3, 5)),
        Example({"size": [2, 3, 2], "offset": 1}, ((2, 4, 5, 4),), (2, 2, 3, 2)),
        Example({"size": 6}, ((2, 6, 6),), (2, 6, 6)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return ()

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        shape = in_shapes[0]
        rank = len(shape) - 1
        check(1 <= rank <= 3, lambda: f"expects input (C, *spatial) with 1 to 3 spatial axes, got {format_shape(shape)}")
        size = attrs["size"]
        if len(in_shapes) == 2:
            reference = in_shapes[1]
            check(size is None, lambda: f"takes size or a second input to crop to, not both; got size {_text(size)} "
                                        f"and a second input {format_shape(reference)}")
            check(
                len(reference) == len(shape),
                lambda: f"the second input must have as many axes as the first, got {format_shape(shape)} "
                f"and {format_shape(reference)}",
            )
            size = reference[1:]
        else:
            check(size is not None, lambda: "needs size, or a second input whose spatial size to crop to")
            size = per_axis(size, rank, "size")
        names = AXIS_NAMES[rank]
        for name, n, s in zip(names, shape[1:], size):
            check(s <= n, lambda n=n, s=s, name=name: f"size {s} exceeds the input's {name} {n}, got input {format_shape(shape)}")
        if attrs["offset"] is None:
            offset = tuple((n - s) // 2 for n, s in zip(shape[1:], size))
        else:
            offset = per_axis(attrs["offset"], rank, "offset")
            for name, n, s, o in zip(names, shape[1:], size, offset):
                check(
                    o + s <= n,
                    lambda n=n, s=s, o=o, name=name: f"offset {o} + size {s} = {o + s} exceeds the input's {name} {n}, "
                    f"got input {format_shape(shape)}",
                )
        return {**attrs, "size": tuple(size), "offset": offset}

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return (in_shapes[0][0], *attrs["size"])

    def cost(self, layer: Layer) -> Cost:
        return Cost()

    def size_dependence(self, attrs: Mapping[str, Any], layer: Layer) -> tuple[SizeDependence, ...]:
        """A centred crop (no ``offset``) works its offset out from the input size: another size
        moves it, and with it the receptive field's padding and centre."""
        if attrs.get("offset") is not None:
            return ()
        out = []
        names = AXIS_NAMES[len(layer.in_shape) - 1]
        for axis, (n, size, offset) in enumerate(zip(layer.in_shape[1:], layer.out_shape[1:], layer.attrs["offset"])):
            other = n + 1 if (n + 1 - size) // 2 != offset else n + 2
            text = (f"centred: offset = (in - size) // 2 = ({n} - {size}) // 2 = {offset}; at input {names[axis]} {other} "
                    f"it would be ({other} - {size}) // 2 = {(other - size) // 2}")
            out.append(SizeDependence("offset", axis, text, True))
        return tuple(out)

    def window(self, layer: Layer) -> Window:
        a = layer.attrs
        rank = len(a["size"])
        cut = tuple((-o, -(n - o - s)) for n, s, o in zip(layer.in_shape[1:], a["size"], a["offset"]))
        return Window((1,) * rank, (1,) * rank, (1,) * rank, cut)

    def summary(self, layer: Layer) -> str:
        a = layer.attrs
        return "x".join(map(str, a["size"])) + " from " + ",".join(map(str, a["offset"]))

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        a = layer.attrs
        lines = []
        for name, n, s, o in zip(AXIS_NAMES[len(a["size"])], layer.in_shape[1:], a["size"], a["offset"]):
            lines.append((f"offset ({name})", f"(in - size) // 2 = ({n} - {s}) // 2 = {o}" if o == (n - s) // 2
                          else f"{o} (given); keeps {o} .. {o + s - 1} of {n}"))
        sizes = ", ".join(map(str, a["size"]))
        lines.append(("output shape", f"(c, {sizes}) = {format_shape(layer.out_shape)}"))
        lines.append(("params", "0 (a crop has no parameters)"))
        return lines

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        """A NumPy view of the first input, as PyTorch's slicing gives; a second input's values
        are never read."""
        x = inputs[0]
        return x[_slices(layer)], tuple(x.shape for x in inputs)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        import numpy as np

        dx = np.zeros(cache[0], dtype=dy.dtype)
        dx[_slices(layer)] = dy
        # a second input only gave its shape: its gradient is 0
        return [dx, *(np.zeros(shape, dtype=dy.dtype) for shape in cache[1:])], {}

    def torch_module(self, layer: Layer) -> Any:
        from archcalc.ops import _torch

        return _torch.Crop(layer.attrs["offset"], layer.attrs["size"])


def _slices(layer: Layer) -> tuple[slice, ...]:
    """The index of the kept window in a batch (N, C, *spatial)."""
    a = layer.attrs
    return (slice(None), slice(None), *(slice(o, o + s) for o, s in zip(a["offset"], a["size"])))


def _text(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)

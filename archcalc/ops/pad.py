"""Pad: widen the spatial axes by a constant, or by reflecting, replicating or wrapping the input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archcalc.errors import RuleError, check
from archcalc.ops.attrs import MAX_INT, Attr, describe, number, padding
from archcalc.ops.base import (
    AXIS_NAMES,
    Cost,
    Example,
    Layer,
    Op,
    RunContext,
    Saved,
    Shape,
    Window,
    format_shape,
    keeps_input,
    register,
)
from archcalc.ops.window import resolve_padding

#: The modes, as F.pad names them, and NumPy's names for the same rules.
MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _mode(value: Any) -> str:
    """One of constant, reflect, replicate, circular."""
    if not isinstance(value, str) or value not in MODES:
        raise RuleError(f"must be one of {', '.join(map(repr, MODES))}, got {describe(value)}")
    return value


@register
class Pad(Op):
    """Pad each spatial axis before and after: a constant, or the input reflected, replicated or wrapped.

    As F.pad / nn.ConstantPad, ReflectionPad, ReplicationPad, CircularPad 1d-3d. `padding` takes
    archcalc's forms, per spatial axis: an int (every side), [ph, pw] (per axis), [top, left,
    bottom, right] (per side) or [[before, after], ...] pairs; F.pad's (left, right, top,
    bottom) is [[top, bottom], [left, right]]. The channel axis is not padded.
    reflect: the mirror image without the edge value (d c b | a b c d | c b a), padding < the
    axis' size; replicate: the edge value repeated; circular: the other end's values, padding
    <= the axis' size (PyTorch's limits)
    out = in + before + after per axis; params = 0; MACs = 0; other ops = 0 (a copy, stored)
    receptive field: kernel 1, padding (before, after): exact for constant; with reflect,
    replicate and circular the units in the padding read a mirrored, clamped or wrapped value
    (1 each, but not at i - before), so the layer is flagged non-uniform; with reflect and
    replicate a window after it whose centre lies in the input (padding at most half the window,
    as a "same" conv's) still reads only values within its field (they mirror or clamp inside it)
    saved for backward: nothing in mode constant or circular; its input in reflect and replicate
    """

    type = "pad"
    other_ops_rule = "0 (a copy)"
    attrs = (
        Attr("padding", padding, doc="per spatial axis: an int, [ph, pw], [top, left, bottom, right] or "
                                     "[[before, after], ...]"),
        Attr("mode", _mode, "constant", "'constant', 'reflect', 'replicate' or 'circular' (F.pad's modes)"),
        Attr("value", number(), 0.0, "the padding value of mode 'constant'"),
    )
    examples = (
        Example({"padding": 1}, ((2, 4, 4),), (2, 6, 6)),
        Example({"padding": [[2, 0], [0, 3]], "value": -1.5}, ((1, 3, 4),), (1, 5, 7)),
        Example({"padding": [1, 2], "mode": "reflect"}, ((2, 4, 5),), (2, 6, 9)),
        Example({"padding": [2, 1], "mode": "reflect"}, ((2, 5),), (2, 8)),
        Example({"padding": [1, 0, 2, 3], "mode": "replicate"}, ((1, 3, 3),), (1, 6, 6)),
        Example({"padding": 3, "mode": "circular"}, ((2, 3, 4),), (2, 9, 10)),
        Example({"padding": [[1, 0], [0, 2], [1, 1]], "mode": "reflect"}, ((1, 3, 3, 4),), (1, 4, 5, 6)),
        Example({"padding": 1, "mode": "circular"}, ((2, 2, 3, 3),), (2, 4, 5, 5)),
        Example({"padding": [0, 2], "mode": "replicate"}, ((1, 4),), (1, 6)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return (keeps_input(layer),) if layer.attrs["mode"] in ("reflect", "replicate") else ()

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        shape, mode, given = in_shapes[0], attrs["mode"], attrs["padding"]
        rank = len(shape) - 1
        check(
            1 <= rank <= 3,
            lambda: f"expects input (C, *spatial) with 1 to 3 spatial axes (pad pads the spatial axes), got {format_shape(shape)}",
        )
        check(
            not isinstance(given, str),
            lambda: f"padding must be given in values (an int, per axis, per side or pairs) for pad, got {given!r}",
        )
        check(
            mode == "constant" or attrs["value"] == 0,
            lambda: f"value applies to mode 'constant' only (F.pad refuses it with {mode!r}), got value={attrs['value']}",
        )
        pads = resolve_padding(given, shape[1:], (1,) * rank, (1,) * rank, (1,) * rank)
        for name, n, (before, after) in zip(AXIS_NAMES[rank], shape[1:], pads):
            if mode == "reflect":
                check(
                    max(before, after) < n,
                    lambda n=n, b=before, a=after, name=name: f"reflect padding must be below the input's {name} {n} on "
                    f"each side (PyTorch's limit), got ({b}, {a})",
                )
            if mode == "circular":
                check(
                    max(before, after) <= n,
                    lambda n=n, b=before, a=after, name=name: f"circular padding must be at most the input's {name} {n} on "
                    f"each side (it wraps around once: PyTorch's limit), got ({b}, {a})",
                )
            check(
                n + before + after <= MAX_INT,
                lambda n=n, b=before, a=after, name=name: f"output {name} = {n} + {b} + {a} = {n + b + a:,} exceeds "
                f"{MAX_INT:,} (2**31 - 1)",
            )
        return {**attrs, "padding": pads}

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        shape = in_shapes[0]
        return (shape[0], *(n + before + after for n, (before, after) in zip(shape[1:], attrs["padding"])))

    def cost(self, layer: Layer) -> Cost:
        return Cost()

    def window(self, layer: Layer) -> Window:
        rank = len(layer.in_shape) - 1
        ones = (1,) * rank
        return Window(ones, ones, ones, layer.attrs["padding"], uniform=layer.attrs["mode"] == "constant")

    def summary(self, layer: Layer) -> str:
        a = layer.attrs
        pads = a["padding"]
        if all(before == after for before, after in pads) and len({before for before, _ in pads}) == 1:
            text = f"p{pads[0][0]}"
        else:
            text = "p" + ",".join(f"{before}:{after}" for before, after in pads)
        value = f" value {a['value']:g}" if a["mode"] == "constant" and a["value"] != 0 else ""
        return f"{a['mode']} {text}{value}"

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        lines = []
        sizes = layer.in_shape[1:]
        for name, n, (before, after), out in zip(AXIS_NAMES[len(sizes)], sizes, layer.attrs["padding"], layer.out_shape[1:]):
            lines.append((f"output {name}", f"in + before + after = {n} + {before} + {after} = {out}"))
        lines.append(("output shape", f"(c, {', '.join(map(str, layer.out_shape[1:]))}) = {format_shape(layer.out_shape)}"))
        lines.append(("params", "0 (padding has no parameters)"))
        return lines

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        """NumPy's np.pad: its reflect, edge and wrap modes are F.pad's reflect, replicate and
        circular within PyTorch's limits (which resolve enforces)."""
        import numpy as np

        a, x = layer.attrs, inputs[0]
        widths = [(0, 0), (0, 0), *a["padding"]]
        if a["mode"] == "constant":
            return np.pad(x, widths, constant_values=a["value"]), None
        return np.pad(x, widths, mode=MODES[a["mode"]]), None

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        """Each input value gets the gradient of every output value that copied it: the interior,
        plus (reflect, replicate, circular) the padding values that read it, one axis at a time."""
        a = layer.attrs
        dx = dy
        for axis, (n, (before, after)) in enumerate(zip(layer.in_shape[1:], a["padding"]), start=2):
            dx = _fold(dx, axis, n, before, after, a["mode"])
        return [dx], {}

    def torch_module(self, layer: Layer) -> Any:
        from archcalc.ops import _torch

        return _torch.Pad(layer.attrs["padding"], layer.attrs["mode"], layer.attrs["value"])


def source_index(position: int, n: int, before: int, mode: str) -> int | None:
    """The input index that output ``position`` of one axis copies (None: a constant)."""
    j = position - before
    if 0 <= j < n:
        return j
    if mode == "constant":
        return None
    if mode == "reflect":
        return -j if j < 0 else 2 * (n - 1) - j
    if mode == "replicate":
        return min(max(j, 0), n - 1)
    return j % n  # circular


def _fold(grad: Any, axis: int, n: int, before: int, after: int, mode: str) -> Any:
    """The gradient of one padded axis summed back onto the ``n`` input positions it came from."""
    if before == after == 0:
        return grad
    index: list[Any] = [slice(None)] * grad.ndim
    index[axis] = slice(before, before + n)
    folded = grad[tuple(index)].copy()
    if mode == "constant":
        return folded
    total = before + n + after
    for position in (*range(before), *range(before + n, total)):
        source = source_index(position, n, before, mode)
        index[axis] = position
        taken = grad[tuple(index)]
        index[axis] = source
        folded[tuple(index)] += taken
    return folded


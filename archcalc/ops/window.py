"""Sliding-window ops (conv, max/avg pool): attribute resolution shared by their rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archcalc import formulas
from archcalc.errors import RuleError, check
from archcalc.ops.base import AXIS_NAMES, Layer, Shape, SizeDependence, Window, format_shape


def per_axis(value: int | tuple[int, ...], rank: int, name: str) -> tuple[int, ...]:
    """An int broadcast to every axis, or a list that must have one value per axis."""
    if isinstance(value, int):
        return (value,) * rank
    check(len(value) == rank, lambda: f"{name} has {len(value)} values for {rank} spatial axes, got {list(value)}")
    return tuple(value)


def resolve_padding(
    padding: Any, sizes: Shape, kernel: Shape, stride: Shape, dilation: Shape
) -> tuple[tuple[int, int], ...]:
    """Padding as (before, after) per axis from any CONVENTIONS form."""
    rank = len(sizes)
    if padding == "valid":
        return ((0, 0),) * rank
    if padding == "same":
        return tuple(formulas.same_padding(*axis) for axis in zip(sizes, kernel, stride, dilation))
    if isinstance(padding, int):
        return ((padding, padding),) * rank
    if isinstance(padding[0], tuple):
        check(len(padding) == rank, lambda: f"padding has {len(padding)} pairs for {rank} spatial axes")
        return tuple(padding)
    if len(padding) == rank:
        return tuple((p, p) for p in padding)
    check(
        len(padding) == 2 * rank,
        lambda: f"padding has {len(padding)} values; {rank} spatial axes take {rank} (per axis) or {2 * rank} (per side)",
    )
    return tuple(zip(padding[:rank], padding[rank:]))


def resolve_window(attrs: Mapping[str, Any], in_shape: Shape, rank: int, what: str) -> dict[str, Any]:
    """Resolve kernel, stride (default: the kernel), dilation and padding per axis."""
    spatial_names = ", ".join(name[0].upper() for name in AXIS_NAMES.get(rank, ()))
    check(
        len(in_shape) == rank + 1,
        lambda: f"{what} expects input (C, {spatial_names}), got {format_shape(in_shape)}"
        + ("; add a reshape or use a 1D..3D kernel" if len(in_shape) == 1 else ""),
    )
    kernel = per_axis(attrs["kernel"], rank, "kernel")
    stride_attr = attrs.get("stride")
    stride = kernel if stride_attr is None else per_axis(stride_attr, rank, "stride")
    dilation = per_axis(attrs.get("dilation", 1), rank, "dilation")
    padding = resolve_padding(attrs.get("padding", 0), in_shape[1:], kernel, stride, dilation)
    return {**attrs, "kernel": kernel, "stride": stride, "dilation": dilation, "padding": padding}


def same_padding_dependence(layer: Layer, attribute: str = "padding") -> tuple[SizeDependence, ...]:
    """The axes of a resolved window layer whose "same" padding depends on the input size.

    TensorFlow's total ``max((ceil(in/s) - 1)*s + k' - in, 0)`` is ``max(k' - s + r, 0)`` with
    ``r = -in mod s``: the same at every size when ``s == 1`` (``k' - 1``) or ``k' == 1`` (0),
    and otherwise ranging over ``max(k' - s, 0) .. k' - 1`` as the size varies. The padding
    before (what moves the receptive field) is half of it, rounded down, so it varies only when
    ``(k' - 1) // 2 > max(k' - s, 0) // 2``: a 2x2 stride-2 window pads 0 before at any size and
    a 4x4 one 1, only the padding after varying. Each entry's text gives the arithmetic here and
    at the nearest larger size where the padding differs.
    """
    a = layer.attrs
    sizes = layer.in_shape[1:]
    if not all(isinstance(a.get(key), tuple) and len(a[key]) == len(sizes) for key in ("kernel", "stride", "dilation")):
        return ()  # not resolved by resolve_window: the op says what depends on the size itself
    out = []
    for axis, (size, k, s, d) in enumerate(zip(sizes, a["kernel"], a["stride"], a["dilation"])):
        span = formulas.effective_kernel(k, d)
        if s == 1 or span == 1:
            continue
        here = formulas.same_padding(size, k, s, d)
        # one size up changes the total unless it is already clipped at 0; then the size whose
        # remainder gives the largest total, k' - 1, does
        other = size + 1 if formulas.same_padding(size + 1, k, s, d) != here else size + (-size) % s + 1
        name = AXIS_NAMES[len(sizes)][axis]
        text = (f'"same" resolved for input {name} {size}: total = {_same_text(size, k, s, d)}; '
                f"at {name} {other} it would be {_same_text(other, k, s, d)}")
        out.append(SizeDependence(attribute, axis, text, (span - 1) // 2 > max(span - s, 0) // 2))
    return tuple(out)


def _same_text(size: int, kernel: int, stride: int, dilation: int) -> str:
    """``max((ceil(224/2) - 1)*2 + 3 - 224, 0) = 1, so 0 before and 1 after``."""
    before, after = formulas.same_padding(size, kernel, stride, dilation)
    span = formulas.effective_kernel(kernel, dilation)
    return f"max((ceil({size}/{stride}) - 1)*{stride} + {span} - {size}, 0) = {before + after}, so {before} before and {after} after"


def window_output(attrs: Mapping[str, Any], in_shape: Shape, ceil_mode: bool = False) -> Shape:
    """Output spatial sizes of a resolved window over ``in_shape``'s spatial axes."""
    sizes = in_shape[1:]
    out = []
    for axis, (size, k, s, d, pad) in enumerate(
        zip(sizes, attrs["kernel"], attrs["stride"], attrs["dilation"], attrs["padding"])
    ):
        try:
            out.append(formulas.conv_output_size(size, k, s, pad, d, ceil_mode))
        except RuleError as error:
            name = AXIS_NAMES[len(sizes)][axis]
            text, raw = formulas.output_size_arithmetic(size, k, s, pad, d, ceil_mode)
            raise RuleError(f"output {name} = {text} = {raw:,} < 1: {error}") from None
    return tuple(out)


def window_of(layer: Layer) -> Window:
    """The receptive-field window of a resolved sliding-window layer."""
    a = layer.attrs
    return Window(a["kernel"], a["stride"], a["dilation"], a["padding"])


def geometry_text(attrs: Mapping[str, Any]) -> str:
    """``3x3/1 p1`` (kernel/stride, padding when not zero, dilation when not one)."""
    stride = attrs["stride"]
    stride_text = str(stride[0]) if len(set(stride)) == 1 else "x".join(map(str, stride))
    text = "x".join(map(str, attrs["kernel"])) + "/" + stride_text
    pads = attrs["padding"]
    if any(p != (0, 0) for p in pads):
        if all(b == a for b, a in pads) and len({b for b, _ in pads}) == 1:
            text += f" p{pads[0][0]}"
        else:
            text += " p" + ",".join(f"{b}:{a}" for b, a in pads)
    if any(d != 1 for d in attrs["dilation"]):
        text += " d" + "x".join(map(str, attrs["dilation"]))
    return text


def explain_output(attrs: Mapping[str, Any], layer: Layer, channels: str, ceil_mode: bool = False) -> list[tuple[str, str]]:
    """Lines for each spatial axis' output size, then the output shape."""
    lines = []
    sizes = layer.in_shape[1:]
    for axis, name in enumerate(AXIS_NAMES[len(sizes)]):
        text = formulas.explain_conv_output_size(
            sizes[axis], attrs["kernel"][axis], attrs["stride"][axis], attrs["padding"][axis], attrs["dilation"][axis], ceil_mode
        )
        lines.append((f"output {name}", text))
    lines.append(("output shape", f"({channels}, {', '.join(map(str, layer.out_shape[1:]))}) = {format_shape(layer.out_shape)}"))
    return lines

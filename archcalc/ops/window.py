"""Sliding-window ops (conv, max/avg pool): attribute resolution shared by their rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archcalc import formulas
from archcalc.errors import RuleError, check
from archcalc.ops.base import AXIS_NAMES, Layer, Shape, Window, format_shape


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

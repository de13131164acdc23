"""Upsampling by interpolation (PyTorch's nn.Upsample / F.interpolate): nearest, linear, bilinear, trilinear, bicubic."""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from archcalc.errors import RuleError, check
from archcalc.ops.attrs import MAX_INT, Attr, describe, ints, optional
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

#: Input taps per axis of each mode, and the spatial rank it needs (None: 1 to 3, as nearest).
MODES = {"nearest": (1, None), "linear": (2, 1), "bilinear": (2, 2), "trilinear": (2, 3), "bicubic": (4, 2)}
#: Bicubic's convolution constant (PyTorch's, as TensorFlow's and OpenCV's: Keys' a = -0.75).
CUBIC_A = -0.75


def _mode(value: Any) -> str:
    """One of nearest, linear, bilinear, trilinear, bicubic."""
    if not isinstance(value, str) or value not in MODES:
        raise RuleError(f"must be one of {', '.join(MODES)}, got {describe(value)}")
    return value


def _scale(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise RuleError
    return float(value)


def _scales(value: Any) -> float | tuple[float, ...]:
    """A finite number > 0, or a list of 1 to 3 of them (one per axis)."""
    try:
        if isinstance(value, (list, tuple)):
            if not 1 <= len(value) <= 3:
                raise RuleError
            return tuple(_scale(v) for v in value)
        return _scale(value)
    except (RuleError, TypeError, OverflowError):  # OverflowError: an int beyond a float's range
        raise RuleError(f"must be a finite number > 0 or a list of 1 to 3 of them, got {describe(value)}") from None


def _align(value: Any) -> bool | None:
    """true, false or null (null: false)."""
    if value is not None and not isinstance(value, bool):
        raise RuleError(f"must be true, false or null, got {describe(value)}")
    return value


@register
class Upsample(Op):
    """Resize each channel by interpolation, as PyTorch's nn.Upsample (F.interpolate, recompute_scale_factor unset).

    out = size, or floor(in * scale_factor) per spatial axis; params = 0; MACs = 0
    other ops = 2T - 1 per output value for a T-tap weighted sum: T = 2^rank taps for
    linear/bilinear/trilinear (3, 7, 15), 4^2 = 16 for bicubic (31); nearest 0 (a copy).
    Interpolation weights are computed once per axis and not counted.
    source coordinate per axis (PyTorch's forward rules, in the input's dtype): nearest reads
    floor(o * r); the interpolating modes sample at (o + 0.5) * r - 0.5 (linear clamps it at
    0), or at o * (in - 1)/(out - 1) with align_corners; r = 1/scale_factor when it is given
    (not recomputed from the output size), else in/out. Linear reads the 2 pixels around the
    coordinate, bicubic 4 (Keys' cubic, A = -0.75, with border taps clamped to the edge).
    Where the size does not change (floor(in * s) = in at an s other than 1) PyTorch's CPU
    kernels copy: the linear modes on that axis, 2D nearest when both axes keep their size; so
    does archcalc's forward (1D and 3D nearest and bicubic still sample at 1/s).
    backward: the adjoint of the forward (PyTorch's float64 nearest backward takes r in float32
    and so, at scales such as 41, sends a gradient to another pixel than its forward read).
    receptive field: at an integer scale s (PyTorch sampling at s itself), stride insertion
    (input dilation s, jump 1/s) and one window, in positions of the dilated input, that holds
    exactly the pixels each unit reads with a non-zero weight: nearest k = s, padding s - 1
    (one pixel, floor(o/s)); linear at an even s k = 2s, padding 3s/2 - 1 (2 pixels per axis;
    bilinear x2: a field of 5/2); bicubic at an even s k = 4s, padding 5s/2 - 1 (4 pixels); any
    mode at s = 1 k = 1. Otherwise the units' reads differ (an odd s puts some coordinates on a
    pixel, read alone in exact arithmetic and with a 1e-17 neighbour in PyTorch's rounding; a
    non-integer scale; align_corners; nearest whose float32 ratio is below 1/s, as at s = 41):
    the field is flagged non-uniform, with jump in/out ((in-1)/(out-1) with align_corners) and
    a window that holds every unit's reads, torch's ratio drifting from that jump included.
    saved for backward: nothing (interpolation weights are recomputed from shapes)
    """

    type = "upsample"
    other_ops_rule = "2T - 1 per output value for T taps (linear 3, bilinear 7, trilinear 15, bicubic 31; nearest 0)"
    attrs = (
        Attr("mode", _mode, "nearest", "nearest, linear (1D), bilinear (2D), trilinear (3D) or bicubic (2D)"),
        Attr("scale_factor", optional(_scales), None, "multiplier per axis (a number or one per axis); or give size"),
        Attr("size", optional(ints(1)), None, "output size per spatial axis (an int or one per axis); or give scale_factor"),
        Attr("align_corners", _align, None, "interpolating modes only: map the corner pixels' centres onto each other"),
    )
    examples = (
        Example({"scale_factor": 2}, ((2, 3, 4),), (2, 6, 8)),
        Example({"mode": "bilinear", "scale_factor": 2}, ((2, 4, 5),), (2, 8, 10)),
        Example({"mode": "bilinear", "size": [7, 9], "align_corners": True}, ((1, 4, 5),), (1, 7, 9)),
        Example({"mode": "linear", "scale_factor": 4}, ((2, 5),), (2, 20)),
        Example({"mode": "trilinear", "scale_factor": [1, 2, 4]}, ((1, 3, 3, 4),), (1, 3, 6, 16)),
        Example({"mode": "bicubic", "scale_factor": 2}, ((1, 5, 5),), (1, 10, 10)),
        Example({"mode": "bicubic", "scale_factor": [1.5, 1.7]}, ((2, 5, 4),), (2, 7, 6)),
        Example({"mode": "bicubic", "scale_factor": 3}, ((1, 4, 3),), (1, 12, 9)),
        Example({"scale_factor": 2.5}, ((2, 4),), (2, 10)),
        Example({"size": [4, 3]}, ((1, 8, 6),), (1, 4, 3)),
        Example({"size": [4, 6, 9]}, ((1, 2, 3, 3),), (1, 4, 6, 9)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return ()

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        in_shape = in_shapes[0]
        mode, rank = attrs["mode"], len(in_shape) - 1
        needed = MODES[mode][1]
        if needed is None:
            check(1 <= rank <= 3, lambda: f"upsample expects input (C, L), (C, H, W) or (C, D, H, W), got {format_shape(in_shape)}")
        else:
            names = ", ".join(n[0].upper() for n in AXIS_NAMES[needed])
            check(rank == needed, lambda: f"mode {mode!r} expects a {needed}D input (C, {names}), got {format_shape(in_shape)}"
                                          f"{'; use mode ' + repr(_mode_for(rank)) if _mode_for(rank) else ''}")
        size, scale = attrs["size"], attrs["scale_factor"]
        check((size is None) != (scale is None),
              lambda: f"upsample takes exactly one of size and scale_factor, got {'both' if size is not None else 'neither'}")
        align = attrs["align_corners"]
        check(not align or mode != "nearest",
              lambda: "align_corners can only be set with the interpolating modes (linear, bilinear, trilinear, bicubic)")
        resolved = {**attrs, "align_corners": bool(align)}
        if size is not None:
            resolved["size"] = per_axis(size, rank, "size")
        else:
            resolved["scale_factor"] = per_axis(scale, rank, "scale_factor") if isinstance(scale, tuple) else (scale,) * rank
        return resolved

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        in_shape = in_shapes[0]
        if attrs["size"] is not None:
            return (in_shape[0], *attrs["size"])
        out = []
        for axis, (n, scale) in enumerate(zip(in_shape[1:], attrs["scale_factor"])):
            name = AXIS_NAMES[len(in_shape) - 1][axis]
            product = n * scale  # a double, as PyTorch computes it, then truncated
            text = f"output {name} = floor({n:,} * {_number(scale)})"
            value = f" = {math.floor(product):,}" if product < 2**63 else ""
            check(product < MAX_INT + 1,
                  lambda text=text, value=value: f"{text}{value} must be at most {MAX_INT:,} (2**31 - 1); lower scale_factor")
            check(product >= 1, lambda text=text: f"{text} = 0 < 1")
            out.append(math.floor(product))
        return (in_shape[0], *out)

    def cost(self, layer: Layer) -> Cost:
        taps = MODES[layer.attrs["mode"]][0] ** (len(layer.in_shape) - 1)
        return Cost(0, (2 * taps - 1) * math.prod(layer.out_shape) if taps > 1 else 0)

    def size_dependence(self, attrs: Mapping[str, Any], layer: Layer) -> tuple[SizeDependence, ...]:
        """With ``size`` the scale is out/in, worked out from the input size: another size gives
        another scale and another field (with ``scale_factor`` the output follows the input instead)."""
        if attrs.get("size") is None:
            return ()
        names = AXIS_NAMES[len(layer.in_shape) - 1]
        return tuple(
            SizeDependence("size", axis, f"scale = out/in = {o}/{n}; at input {names[axis]} {n + 1} it would be {o}/{n + 1}", True)
            for axis, (n, o) in enumerate(zip(layer.in_shape[1:], layer.out_shape[1:]))
        )

    def window(self, layer: Layer) -> Window:
        axes = [_axis_window(layer.attrs, n, m, axis) for axis, (n, m) in enumerate(zip(layer.in_shape[1:], layer.out_shape[1:]))]
        kernel, stride, padding, dilated, uniform = zip(*axes)
        return Window(kernel, stride, (1,) * len(axes), padding, input_dilation=dilated, uniform=all(uniform))

    def summary(self, layer: Layer) -> str:
        a = layer.attrs
        if a["size"] is not None:
            how = "-> " + "x".join(map(str, a["size"]))
        else:
            scales = a["scale_factor"]
            how = "x" + ("x".join(map(_number, scales)) if len(set(scales)) > 1 else _number(scales[0]))
        return f"{a['mode']} {how}" + (" ac" if a["align_corners"] else "")

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        a = layer.attrs
        sizes = layer.in_shape[1:]
        lines = []
        for axis, name in enumerate(AXIS_NAMES[len(sizes)]):
            if a["size"] is not None:
                lines.append((f"output {name}", f"size = {a['size'][axis]:,}"))
            else:
                lines.append((f"output {name}", f"floor(in * scale_factor) = floor({sizes[axis]:,} * {_number(a['scale_factor'][axis])}) "
                                                 f"= {layer.out_shape[1 + axis]:,}"))
        lines.append(("output shape", f"(c, {', '.join(map(str, layer.out_shape[1:]))}) = {format_shape(layer.out_shape)}"))
        taps = MODES[a["mode"]][0] ** len(sizes)
        if taps > 1:
            other = (2 * taps - 1) * math.prod(layer.out_shape)
            lines.append(("other ops", f"(2T - 1) * prod(out) = (2*{taps} - 1) * {'*'.join(map(str, layer.out_shape))} = {other} "
                                       f"({taps} multiplies and {taps - 1} adds per value)"))
        return lines

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        x = inputs[0]
        plan = _plan(layer, x.dtype)
        y = x
        for axis, (index, weight) in enumerate(plan):
            y = _gather(y, axis + 2, index, weight)
        return y, (plan, x.shape)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        plan, x_shape = cache
        dx = dy
        for axis in reversed(range(len(plan))):
            index, weight = plan[axis]
            dx = _scatter(dx, axis + 2, index, weight, x_shape[axis + 2])
        return [dx], {}

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        a = layer.attrs
        align = a["align_corners"] if a["mode"] != "nearest" else None
        if a["size"] is not None:
            return nn.Upsample(size=a["size"], mode=a["mode"], align_corners=align)
        return nn.Upsample(scale_factor=a["scale_factor"], mode=a["mode"], align_corners=align)


def _number(value: float) -> str:
    """A scale as written: ``2``, ``1.5``, ``536870912``; all its digits when %g would round it."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _mode_for(rank: int) -> str:
    """The interpolating mode of a spatial rank."""
    return {1: "linear", 2: "bilinear", 3: "trilinear"}.get(rank, "")


def _exact_scale(attrs: Mapping[str, Any], n: int, m: int, axis: int) -> int | None:
    """The integer scale s at which one window, stride-inserted, holds exactly every unit's reads; else None.

    PyTorch must sample at scale s itself (size s*in, or scale_factor s: not align_corners, not
    an other scale_factor that floors to s*in). Nearest: its float32 ratio may not fall below
    1/s (else floor(o * r) misses the pixel at o = k*s, as at s = 41), and o stays below 2**22
    (where float32 keeps floor(o * r) exact). Linear and bicubic: s = 1, or an even s (the
    coordinate then lies 1/(2s) or more from a pixel, so every tap has a non-zero weight: an odd
    s puts some units on a pixel, which in exact arithmetic read it alone and in PyTorch's
    rounding may give a neighbour a weight of 1e-17), also with fewer than 2**22 outputs.
    """
    if attrs["align_corners"] or m % n or m > 2**22:
        return None
    s = m // n
    if attrs["size"] is None and attrs["scale_factor"][axis] != s:  # torch samples with the given scale
        return None
    if attrs["mode"] == "nearest":
        ratio = _ratios("nearest", n, m, False, None if attrs["size"] is not None else float(s))[0]
        return s if ratio >= Fraction(1, s) else None
    return s if s == 1 or s % 2 == 0 else None


def _axis_window(attrs: Mapping[str, Any], n: int, m: int, axis: int) -> tuple[int, int, tuple[int, int], int, bool]:
    """(kernel, stride, (pad before, pad after), input dilation, uniform) of one axis (see the class docstring)."""
    mode = attrs["mode"]
    taps = MODES[mode][0]
    s = _exact_scale(attrs, n, m, axis)
    if s is not None:
        if mode == "nearest":
            kernel, before = s, s - 1  # the one pixel in o - s + 1 .. o: floor(o / s)
        elif s == 1:  # samples on the pixels: a copy
            kernel, before = 1, 0
        elif taps == 2:
            kernel, before = 2 * s, 3 * s // 2 - 1
        else:
            kernel, before = 4 * s, 5 * s // 2 - 1
        # the dilated input has (n - 1)*s + 1 positions; the last window ends at m - 1 - before + kernel - 1
        return kernel, 1, (before, m - 1 - before + kernel - 1 - (n - 1) * s), s, True
    # Otherwise: a window per unit that holds every unit's reads. Units are modelled jump J apart
    # (in/out; (in-1)/(out-1) with align_corners), unit o sampling at o*J + offset; torch's own
    # ratio r (1/scale_factor, or J, rounded to float32 or float64) drifts from it by at most
    # drift = out * |r - J| (plus a margin for the rounding of the coordinate). A unit reads
    # floor(coordinate) - before_taps .. floor(coordinate) + after_taps.
    align = attrs["align_corners"]
    jump = (Fraction(n - 1, m - 1) if m > 1 else Fraction(1)) if align else Fraction(n, m)
    dilation, stride = jump.denominator, jump.numerator
    scale = None if attrs["scale_factor"] is None else attrs["scale_factor"][axis]
    drift = m * max(abs(ratio - jump) for ratio in _ratios(mode, n, m, align, scale))
    if mode == "nearest" and dilation == 1 and drift == 0:  # every unit reads pixel o*J exactly
        kernel, before, uniform = 1, 0, True
    else:
        drift += Fraction(n, 2**22) if drift or mode != "nearest" else 0
        offset = (jump - 1) / 2 if mode != "nearest" and not align else Fraction(0)
        taps_before, taps_after = {1: (0, 0), 2: (0, 1), 4: (1, 2)}[taps]
        before = math.ceil(dilation * (1 + taps_before + drift - offset))
        kernel = before + 1 + math.ceil(dilation * (offset + drift + taps_after))
        uniform = False
    extent = (n - 1) * dilation + 1
    after = (m - 1) * stride - before + kernel - extent
    return kernel, stride, (before, after), dilation, uniform


def _ratios(mode: str, n: int, m: int, align: bool, scale: float | None) -> list[Fraction]:
    """The exact values of PyTorch's sampling ratio in float32 and in float64 (the input's dtype;
    see :func:`axis_taps`)."""
    import numpy as np

    if mode == "nearest" and m in (n, 2 * n):  # exact in either dtype
        return [Fraction(n, m)]
    if align:  # one output (m == 1) samples pixel 0 whatever the ratio: J = 1 then, with no drift
        return [Fraction(float(real(n - 1) / real(m - 1))) if m > 1 else Fraction(1) for real in (np.float32, np.float64)]
    return [Fraction(float(real(1.0 / scale) if scale else real(n) / real(m))) for real in (np.float32, np.float64)]


# ------------------------------------------------------------------------------ executor (NumPy)

def _plan(layer: Layer, dtype: Any) -> list[tuple[Any, Any]]:
    """Per spatial axis: (index (out, taps) int64, weight (out, taps) or None for nearest)."""
    import numpy as np

    a = layer.attrs
    sizes = list(zip(layer.in_shape[1:], layer.out_shape[1:]))
    # PyTorch's CPU kernels copy where the size does not change, whatever the scale: the linear
    # modes axis by axis, 2D nearest when both axes keep their size (1D and 3D nearest do not)
    whole = a["mode"] == "nearest" and len(sizes) == 2 and all(n == m for n, m in sizes)
    plans = []
    for axis, (n, m) in enumerate(sizes):
        if n == m and (whole or a["mode"] in ("linear", "bilinear", "trilinear")):
            plans.append((np.arange(m, dtype=np.int64)[:, None], None))
            continue
        scale = None if a["scale_factor"] is None else a["scale_factor"][axis]
        plans.append(axis_taps(a["mode"], n, m, a["align_corners"], scale, dtype))
    return plans


def axis_taps(mode: str, n: int, m: int, align_corners: bool, scale: float | None, dtype: Any) -> tuple[Any, Any]:
    """PyTorch's (CPU) source indices and weights of one axis, in its forward kernels' arithmetic.

    The ratio r is 1/scale_factor when given, else in/out ((in-1)/(out-1) with align_corners),
    both in the input's dtype, and so is the coordinate; its floor is taken in float32
    (``floorf``). Nearest: ``min(floor(o * r), n - 1)``. (PyTorch's float64 nearest *backward*
    uses a float32 ratio instead, and so disagrees with its own forward where float32 rounds
    1/s down: unit 41 of a x41 upsample reads pixel 1 forward and sends its gradient to
    pixel 0; archcalc's backward is the adjoint of the forward.) Linear: the coordinate
    ``(o + 0.5)*r - 0.5`` clamped at 0, the weight clamped to [0, 1]; the second tap is the
    first at the last pixel. Bicubic: the coordinate unclamped, 4 taps from floor - 1, clamped to
    [0, n - 1], Keys' weights. Returns (index (m, taps) int64, weight (m, taps) in ``dtype``,
    None for nearest).
    """
    import numpy as np

    out = np.arange(m, dtype=np.int64)
    real = np.dtype(dtype).type
    if mode == "nearest":
        ratio = real(1.0 / scale) if scale else real(n) / real(m)
        source = ratio * out.astype(dtype)
        return np.minimum(np.floor(source.astype(np.float32)).astype(np.int64), n - 1)[:, None], None
    if align_corners:
        ratio = real(n - 1) / real(m - 1) if m > 1 else real(0)
        source = ratio * out.astype(dtype)
    else:
        ratio = real(1.0 / scale) if scale else real(n) / real(m)
        source = ratio * (out.astype(dtype) + real(0.5)) - real(0.5)
        if mode != "bicubic":
            source = np.maximum(source, real(0))
    first = np.minimum(np.floor(source.astype(np.float32)).astype(np.int64), n - 1)
    t = np.clip(source - first.astype(dtype), real(0), real(1)).astype(dtype)
    if mode == "bicubic":
        index = np.clip(first[:, None] + np.arange(-1, 3), 0, n - 1)
        a = real(CUBIC_A)
        weights = [_cubic_far(t + real(1), a), _cubic_near(t, a), _cubic_near(real(1) - t, a), _cubic_far(real(2) - t, a)]
        return index, np.stack(weights, axis=1).astype(dtype)
    second = first + (first < n - 1)
    return np.stack([first, second], axis=1), np.stack([real(1) - t, t], axis=1).astype(dtype)


def _cubic_near(x: Any, a: Any) -> Any:
    """Keys' cubic for |x| <= 1: ((a + 2)|x| - (a + 3))|x|^2 + 1 (PyTorch's cubic_convolution1)."""
    return ((a + 2) * x - (a + 3)) * x * x + 1


def _cubic_far(x: Any, a: Any) -> Any:
    """Keys' cubic for 1 < |x| < 2: ((a|x| - 5a)|x| + 8a)|x| - 4a (PyTorch's cubic_convolution2)."""
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a


def _gather(x: Any, axis: int, index: Any, weight: Any) -> Any:
    """Interpolate one axis: out[..., o] = sum_t weight[o, t] * x[..., index[o, t]]."""
    import numpy as np

    moved = np.moveaxis(x, axis, -1)
    result = moved[..., index[:, 0]]
    if weight is not None:
        result = result * weight[:, 0]
        for tap in range(1, index.shape[1]):
            result += moved[..., index[:, tap]] * weight[:, tap]
    return np.ascontiguousarray(np.moveaxis(result, -1, axis))


def _scatter(dy: Any, axis: int, index: Any, weight: Any, size: int) -> Any:
    """The adjoint of :func:`_gather`: each output's gradient, weighted, summed back onto its taps.

    Every tap's indices are non-decreasing in o, so the outputs that read one pixel through a
    tap are a run: ``np.add.reduceat`` sums each run, vectorised, with no per-element loop.
    """
    import numpy as np

    moved = np.moveaxis(dy, axis, -1)
    dx = np.zeros((*moved.shape[:-1], size), dtype=dy.dtype)
    for tap in range(index.shape[1]):
        column = index[:, tap]
        starts = np.flatnonzero(np.concatenate(([True], column[1:] != column[:-1])))
        values = moved if weight is None else moved * weight[:, tap]
        dx[..., column[starts]] += np.add.reduceat(values, starts, axis=-1)
    return np.ascontiguousarray(np.moveaxis(dx, -1, axis))

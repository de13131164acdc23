"""The lecture's worked im2col example: one input, one kernel, every step of forward and backward.

CS5242 lecture 6 ("Implementation (fwd)" and "(bwd)") builds ``X_hat`` for
``x = [1, 0, 2, 2, 3, 1]``, ``w = [3, 2, 1]`` at stride 2: each column of ``X_hat`` is one
output position's receptive field (``x_hat[i, t] = x[t*s + i]``), ``y = W X_hat = [5, 13]``,
and backward is ``dL/dX_hat = W^T dL/dy`` followed by col2im, which *adds* the gradients of
overlapping windows: x[2] is read by both windows, so it "contributes to L via" both paths and
its gradient is the sum of the two.

:func:`explain_im2col` computes all of it for a 1D or 2D input with one channel and one filter
(any stride, padding and dilation) with the executor's own functions in :mod:`archcalc.kernels`
(``im2col``, ``conv_forward``, ``conv_backward``, ``col2im``): nothing here re-implements them.
:func:`parse_values` reads the command line's ``1,0,2;2,3,1`` form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from archcalc import kernels
from archcalc.errors import ArchcalcError

#: The most values an input, a kernel, dL/dy or X_hat may hold: a worked example is read by a person.
MAX_VALUES = 10_000
#: The longest text :func:`parse_values` reads (characters).
MAX_TEXT = 200_000


@dataclass(frozen=True)
class Contribution:
    """One term of ``dL/dx[j]``: the window of output position ``output`` reads x[j] at kernel tap ``tap``.

    Its value is ``weight * grad`` = ``w[tap] * dL/dy[output]`` = the entry ``dL/dX_hat[tap, output]``.
    """

    output: tuple[int, ...]
    tap: tuple[int, ...]
    weight: float
    grad: float

    @property
    def value(self) -> float:
        """``weight * grad``: what this window adds to the input's gradient."""
        return self.weight * self.grad


@dataclass(frozen=True, eq=False)
class Im2colExample:
    """The worked example's data; every array is read-only float64.

    Shapes, for an input of spatial shape S, a kernel of shape K and an output of shape O
    (1 or 2 axes each), with ``taps = prod(K)`` and ``positions = prod(O)``:

    - ``x`` S, ``w`` K, ``y`` and ``dy`` O, ``dw`` K, ``dx`` S;
    - ``x_hat`` and ``dx_hat`` (taps, positions): row = kernel tap (row-major), column = output
      position (row-major), as in the lecture;
    - ``source`` (taps, positions) int: the flat index into x each entry of X_hat reads, -1 in the padding;
    - ``contributions``: for each flat input index, the :class:`Contribution` terms col2im adds
      into ``dx`` (ordered by output position), empty for an input no window reads.
    """

    x: np.ndarray
    w: np.ndarray
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    x_hat: np.ndarray
    source: np.ndarray
    y: np.ndarray
    dy: np.ndarray
    dw: np.ndarray
    dx_hat: np.ndarray
    dx: np.ndarray
    contributions: tuple[tuple[Contribution, ...], ...]

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The output's spatial shape O."""
        return tuple(self.y.shape)

    def input_position(self, flat: int) -> tuple[int, ...]:
        """The input coordinates of a flat index into ``x``."""
        return tuple(int(i) for i in np.unravel_index(flat, self.x.shape))

    def output_position(self, column: int) -> tuple[int, ...]:
        """The output coordinates of a column of ``X_hat``."""
        return tuple(int(i) for i in np.unravel_index(column, self.out_shape))

    def tap_position(self, row: int) -> tuple[int, ...]:
        """The kernel coordinates of a row of ``X_hat``."""
        return tuple(int(i) for i in np.unravel_index(row, self.w.shape))


def _fail(message: str) -> ArchcalcError:
    return ArchcalcError(f"im2col: {message}")


def _values(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 array of 1 or 2 axes, finite, at most MAX_VALUES values; ArchcalcError otherwise."""
    if isinstance(value, np.ndarray):
        array = value
    else:
        try:
            array = np.asarray(value, dtype=object)
        except (TypeError, ValueError) as error:
            raise _fail(f"{name} must be a list of numbers or of equal rows, got {error}") from None
    if array.dtype.kind not in "iuf":  # an object array (from lists), strings, bools, complex: look at each value
        if array.size > MAX_VALUES:
            raise _fail(f"{name} has {array.size:,} values; a worked example takes at most {MAX_VALUES:,}")
        for item in array.ravel():
            if isinstance(item, (list, tuple, np.ndarray)):
                raise _fail(f"{name}'s rows must all have the same length")
            if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, float, np.integer, np.floating)):
                raise _fail(f"{name} must hold numbers, got {item!r}")
    if array.ndim not in (1, 2):
        raise _fail(f"{name} must be 1D (a list) or 2D (a list of equal rows), got {array.ndim} axes")
    if array.size == 0:
        raise _fail(f"{name} must hold at least one value, got shape {array.shape}")
    if array.size > MAX_VALUES:
        raise _fail(f"{name} has {array.size:,} values; a worked example takes at most {MAX_VALUES:,}")
    try:
        array = np.array(array, dtype=np.float64)
    except OverflowError:
        raise _fail(f"{name} holds a number beyond a float's range") from None
    if not np.isfinite(array).all():
        raise _fail(f"{name} must hold finite numbers, got {array.ravel()[~np.isfinite(array.ravel())][0]}")
    array.setflags(write=False)
    return array


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float64)
    array.setflags(write=False)
    return array


def explain_im2col(x: Any, w: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1, dy: Any = None) -> Im2colExample:
    """The lecture's im2col example for any small 1D or 2D input: X_hat, y, and the backward with col2im.

    Args:
        x: the input, one channel: a list of numbers (1D) or a list of equal rows (2D).
        w: the kernel, one filter, with as many axes as x.
        stride, dilation: an int, or one per axis.
        padding: an int, one per axis, per side (``[top, left, bottom, right]``), "valid" or "same"
            (CONVENTIONS' forms, as every conv in archcalc).
        dy: ``dL/dy``, the output's shape; default all ones (then ``dL/dx`` counts, weighted by w,
            the windows that read each input).

    Returns:
        An :class:`Im2colExample`. For the lecture's ``x = [1, 0, 2, 2, 3, 1]``, ``w = [3, 2, 1]``,
        stride 2: ``y == [5, 13]`` and ``dx == [3, 2, 4, 2, 1, 0]``.

    Raises:
        ArchcalcError: ragged rows, non-numbers, nan or inf, mismatched ranks, a kernel larger
            than the padded input, a dy of the wrong shape, or more than :data:`MAX_VALUES` values
            in x, w, dy or X_hat.
    """
    x, w = _values(x, "x"), _values(w, "w")
    if w.ndim != x.ndim:
        raise _fail(f"w must have as many axes as x ({x.ndim}D), got {w.ndim}D")
    try:
        geo = kernels.geometry((1, 1, *x.shape), w.shape, stride, padding, dilation)
    except (TypeError, ValueError) as error:
        raise _fail(str(error)) from None
    if geo.taps * geo.positions > MAX_VALUES:
        raise _fail(f"X_hat would hold {geo.taps:,} x {geo.positions:,} values; a worked example takes at most {MAX_VALUES:,}")
    if dy is None:
        dy = np.ones(geo.out)
    dy = _values(dy, "dy")
    if dy.shape != geo.out:
        raise _fail(f"dy must have the output's shape {list(geo.out)}, got {list(dy.shape)}")
    args = (w.shape, geo.stride, geo.padding, geo.dilation)
    batch_x, batch_w, batch_dy = x[None, None], w[None, None], dy[None, None]
    x_hat = kernels.im2col(batch_x, *args)[0]
    # the same im2col of the input's positions (1-based; 0 is padding) says where each entry comes from
    positions = np.arange(1, x.size + 1, dtype=np.float64).reshape(batch_x.shape)
    source = kernels.im2col(positions, *args)[0].astype(np.int64) - 1
    source.setflags(write=False)
    with np.errstate(over="ignore", invalid="ignore"):  # checked below: a sum past float64's range is refused
        y = kernels.conv_forward(batch_x, batch_w, None, geo.stride, geo.padding, geo.dilation)[0, 0]
        _, dw, _ = kernels.conv_backward(batch_dy, batch_x, batch_w, geo.stride, geo.padding, geo.dilation)
        dx_hat = w.reshape(1, -1).T @ dy.reshape(1, -1)  # dL/dX_hat = W^T dL/dy (one filter: W is 1 x taps)
        dx = kernels.col2im(dx_hat[None], batch_x.shape, *args)[0, 0]
    for name, values in (("y", y), ("dL/dW", dw), ("dL/dX_hat", dx_hat), ("dL/dx", dx)):
        if not np.isfinite(values).all():
            raise _fail(f"{name} overflows a float64 (beyond 1.8e308) with these values; give smaller numbers")
    contributions: list[list[Contribution]] = [[] for _ in range(x.size)]
    w_flat, dy_flat = w.ravel(), dy.ravel()
    for column in range(geo.positions):
        for row in range(geo.taps):
            flat = int(source[row, column])
            if flat >= 0:
                contributions[flat].append(Contribution(
                    tuple(int(i) for i in np.unravel_index(column, geo.out)),
                    tuple(int(i) for i in np.unravel_index(row, w.shape)),
                    float(w_flat[row]), float(dy_flat[column])))
    return Im2colExample(
        x=x, w=w, stride=geo.stride, padding=geo.padding, dilation=geo.dilation,
        x_hat=_frozen(x_hat), source=source, y=_frozen(y), dy=dy, dw=_frozen(dw[0, 0]), dx_hat=_frozen(dx_hat),
        dx=_frozen(dx), contributions=tuple(tuple(c) for c in contributions),
    )


def parse_values(text: str, name: str) -> list[float] | list[list[float]]:
    """The command line's numbers: ``1,0,2`` (1D) or rows separated by ``;`` (2D: ``1,2;3,4``; one
    row of a 2D kernel or input ends in ``;``: ``1,0,-1;`` is 1 x 3).

    Raises:
        ArchcalcError: an empty value or row, a value that is not a finite number, ragged rows,
            or more than :data:`MAX_VALUES` values (naming the option, e.g. ``--x``).
    """
    if len(text) > MAX_TEXT:
        raise _fail(f"{name} is {len(text):,} characters long; a worked example takes at most {MAX_VALUES:,} values")
    two_d = text.rstrip().endswith(";")  # a trailing ';' makes one row 2D: "1,0,-1;" is a 1 x 3 kernel
    rows = (text.rstrip()[:-1] if two_d else text).split(";")
    if sum(row.count(",") + 1 for row in rows) > MAX_VALUES:
        raise _fail(f"{name} has more than {MAX_VALUES:,} values; a worked example takes at most {MAX_VALUES:,}")
    parsed: list[list[float]] = []
    for r, row in enumerate(rows, 1):
        values = []
        for v, item in enumerate(row.split(","), 1):
            where = f"{name}" + (f" row {r}" if len(rows) > 1 else "") + f" value {v}"
            item = item.strip()
            if not item:
                raise _fail(f"{where} is empty in {text!r}; write numbers separated by ',' (rows by ';')")
            try:
                number = float(item)
            except ValueError:
                raise _fail(f"{where} must be a number, got {item!r}") from None
            if not math.isfinite(number):
                raise _fail(f"{where} must be a finite number, got {item!r}")
            values.append(number)
        parsed.append(values)
    if len(parsed) == 1 and not two_d:
        return parsed[0]
    lengths = [len(row) for row in parsed]
    if len(set(lengths)) > 1:
        raise _fail(f"{name}'s rows must have equal lengths, got rows of {', '.join(map(str, lengths))} values")
    return parsed


def parse_sizes(text: str, name: str, words: tuple[str, ...] = ()) -> Any:
    """A stride, padding or dilation from the command line: ``2``, one per axis ``2,1``, or one of ``words``.

    Raises:
        ArchcalcError: anything else (the range is checked with the geometry, in :func:`explain_im2col`).
    """
    text = text.strip()
    if text in words:
        return text
    items = [item.strip() for item in text.split(",")]
    if not all(item.isdigit() and len(item) <= 30 for item in items) or len(items) > 4:
        also = f", or {' or '.join(words)}" if words else ""
        raise _fail(f"{name} must be a whole number, or one per axis (e.g. 2 or 2,1){also}, got {text!r}")
    numbers = tuple(int(item) for item in items)
    return numbers[0] if len(numbers) == 1 else numbers

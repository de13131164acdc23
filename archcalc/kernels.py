"""Conv and pooling math on channels-first arrays ``(N, C, *spatial)``: the NumPy reference.

The executor, the homework checkers and the C path meet here. Convolution follows the
lecture's recipe: im2col turns each sample's receptive fields into the columns of a matrix
``X_hat`` of shape ``(C*prod(k), prod(out))``, ``Y = W X_hat`` is one GEMM per group (batched
over the samples), and backward is ``dW = dY X_hat^T``, ``dX_hat = W^T dY``, then col2im sums
the gradients of overlapping windows back into the input. 1D, 2D and 3D follow from the rank
of the kernel. Padding takes every CONVENTIONS form (int, per axis, per side, pairs, "same",
"valid").

Max-pool ties: the gradient goes to the first maximum of the window in row-major order (as
``numpy.argmax``, and as PyTorch's CPU kernel).

The compiled extension ``archcalc._kernels`` (``BACKEND == "c"``) does im2col, col2im and
pooling in C; ``ARCHCALC_KERNELS=numpy`` forces the NumPy code, ``ARCHCALC_KERNELS=c`` requires
the extension.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from archcalc import formulas
from archcalc.errors import RuleError
from archcalc.ops.attrs import padding as padding_value
from archcalc.ops.window import per_axis, resolve_padding


def _load_c() -> Any:
    """The compiled extension, unless ARCHCALC_KERNELS=numpy; ARCHCALC_KERNELS=c makes it required."""
    wanted = os.environ.get("ARCHCALC_KERNELS", "")
    if wanted == "numpy":
        return None
    try:
        from archcalc import _kernels
    except ImportError as error:
        if wanted == "c":
            raise ImportError(f"ARCHCALC_KERNELS=c but the C extension archcalc._kernels is not built: {error}") from None
        return None
    return _kernels


_C = _load_c()
#: Which implementation runs im2col, col2im and pooling: "c" (the compiled extension) or "numpy".
BACKEND = "c" if _C is not None else "numpy"


@contextmanager
def backend(name: str) -> Iterator[None]:
    """Run the block with ``name`` ("c" or "numpy") as the backend (tests and benchmarks)."""
    global BACKEND
    if name not in ("c", "numpy") or (name == "c" and _C is None):
        raise ValueError(f"backend {name!r} is not available (built: {'c, ' if _C else ''}numpy)")
    previous, BACKEND = BACKEND, name
    try:
        yield
    finally:
        BACKEND = previous


@dataclass(frozen=True)
class Geometry:
    """A window's resolved geometry over one input: per-axis kernel, stride, dilation, padding, output."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    out: tuple[int, ...]
    #: Extra right padding so that ceil-mode windows past the padded input still fit.
    extra: tuple[int, ...]
    #: The input's spatial size.
    size: tuple[int, ...] = ()

    @property
    def taps(self) -> int:
        """Values in one window: prod(k)."""
        return math.prod(self.kernel)

    @property
    def positions(self) -> int:
        """Output positions: prod(out)."""
        return math.prod(self.out)

    @property
    def pointwise(self) -> bool:
        """A 1x1 window at stride 1 with no padding: the input already is its im2col matrix."""
        return self.taps == 1 and all(s == 1 for s in self.stride) and all(p == (0, 0) for p in self.padding) and not any(self.extra)

    def c_args(self, channels: int, batch: int = 1) -> tuple[Any, ...]:
        """The geometry as archcalc._kernels takes it (padding before only; the rest is implied)."""
        return (channels, self.size, self.kernel, self.stride, self.dilation, tuple(b for b, _ in self.padding), self.out, batch)


def geometry(x_shape: tuple[int, ...], kernel: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
             ceil_mode: bool = False) -> Geometry:
    """Resolve a window over ``x_shape`` (N, C, *spatial); ValueError when it does not fit."""
    spatial = tuple(x_shape[2:])
    rank = len(spatial)
    if rank not in (1, 2, 3):
        raise ValueError(f"expects an input (N, C, *spatial) with 1 to 3 spatial axes, got shape {tuple(x_shape)}")
    kernel = per_axis(kernel if isinstance(kernel, int) else tuple(kernel), rank, "kernel")
    stride = per_axis(stride if isinstance(stride, int) else tuple(stride), rank, "stride")
    dilation = per_axis(dilation if isinstance(dilation, int) else tuple(dilation), rank, "dilation")
    if min(kernel + stride + dilation) < 1:
        raise ValueError(f"kernel, stride and dilation must be positive, got {kernel}, {stride}, {dilation}")
    pads = resolve_padding(padding_value(padding if isinstance(padding, (int, str)) else _tuples(padding)),
                           spatial, kernel, stride, dilation)
    out = tuple(formulas.conv_output_size(n, k, s, p, d, ceil_mode) for n, k, s, p, d in zip(spatial, kernel, stride, pads, dilation))
    extra = tuple(
        max(0, (o - 1) * s + formulas.effective_kernel(k, d) - (n + b + a))
        for o, s, k, d, n, (b, a) in zip(out, stride, kernel, dilation, spatial, pads)
    )
    return Geometry(kernel, stride, dilation, pads, out, extra, spatial)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _pad(x: np.ndarray, geo: Geometry, value: float = 0.0) -> np.ndarray:
    widths = [(0, 0), (0, 0)] + [(b, a + e) for (b, a), e in zip(geo.padding, geo.extra)]
    if not any(b or a for b, a in widths):
        return x
    return np.pad(x, widths, constant_values=value)


def _windows(xp: np.ndarray, geo: Geometry) -> np.ndarray:
    """A view (N, C, *out, *kernel) of every window's taps in the padded input."""
    rank = len(geo.kernel)
    spans = tuple(formulas.effective_kernel(k, d) for k, d in zip(geo.kernel, geo.dilation))
    view = sliding_window_view(xp, spans, axis=tuple(range(2, 2 + rank)))
    starts = tuple(slice(0, s * (o - 1) + 1, s) for s, o in zip(geo.stride, geo.out))
    taps = tuple(slice(None, None, d) for d in geo.dilation)
    return view[(slice(None), slice(None), *starts, *taps)]


def _region(offset: tuple[int, ...], geo: Geometry) -> tuple[slice, ...]:
    """Where kernel tap ``offset`` lands in the padded input, for every output position."""
    return tuple(slice(j * d, j * d + s * (o - 1) + 1, s) for j, d, s, o in zip(offset, geo.dilation, geo.stride, geo.out))


def _crop(dxp: np.ndarray, geo: Geometry, x_shape: tuple[int, ...]) -> np.ndarray:
    inner = tuple(slice(b, b + n) for (b, _), n in zip(geo.padding, x_shape[2:]))
    return dxp[(slice(None), slice(None), *inner)]


def im2col(x: np.ndarray, kernel: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1) -> np.ndarray:
    """Receptive fields to columns: ``(N, C, *S) -> (N, C*prod(k), prod(out))``.

    Row ``c*prod(k) + tap`` of sample n's matrix holds input channel c at kernel tap ``tap``
    (row-major over the kernel axes) for every output position (row-major over the output).
    """
    return _im2col(x, geometry(x.shape, kernel, stride, padding, dilation))


def _im2col(x: np.ndarray, geo: Geometry, pad_value: float = 0.0) -> np.ndarray:
    if geo.pointwise:
        return x.reshape(x.shape[0], x.shape[1], geo.positions)
    if BACKEND == "c" and pad_value == 0.0 and not any(geo.extra):
        x = np.ascontiguousarray(x)
        cols = np.empty((x.shape[0], x.shape[1] * geo.taps, geo.positions), dtype=x.dtype)
        for sample in range(x.shape[0]):
            _C.im2col(x[sample], cols[sample], *geo.c_args(x.shape[1]))
        return cols
    rank = len(geo.kernel)
    windows = _windows(_pad(x, geo, pad_value), geo)
    order = (0, 1, *range(2 + rank, 2 + 2 * rank), *range(2, 2 + rank))
    return windows.transpose(order).reshape(x.shape[0], x.shape[1] * geo.taps, geo.positions)


def col2im(cols: np.ndarray, x_shape: tuple[int, ...], kernel: Any, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1) -> np.ndarray:
    """Columns back to the input: the adjoint of :func:`im2col`, summing overlapping windows."""
    return _col2im(cols, tuple(x_shape), geometry(x_shape, kernel, stride, padding, dilation))


def _col2im(cols: np.ndarray, x_shape: tuple[int, ...], geo: Geometry) -> np.ndarray:
    n, c = x_shape[:2]
    expected = (n, c * geo.taps, geo.positions)
    if cols.shape != expected:
        raise ValueError(f"cols has shape {cols.shape}, expected {expected} for input {x_shape}")
    if geo.pointwise:
        return cols.reshape(x_shape)
    if BACKEND == "c" and not any(geo.extra):
        cols = np.ascontiguousarray(cols)
        dx = np.empty(x_shape, dtype=cols.dtype)
        for sample in range(n):
            _C.col2im(cols[sample], dx[sample], *geo.c_args(c))
        return dx
    cols = cols.reshape(n, c, *geo.kernel, *geo.out)
    padded = [n, c] + [size + b + a + e for size, (b, a), e in zip(x_shape[2:], geo.padding, geo.extra)]
    dxp = np.zeros(padded, dtype=cols.dtype)
    for offset in itertools.product(*(range(k) for k in geo.kernel)):
        # one tap's positions never collide, so += on the strided view is exact
        dxp[(slice(None), slice(None), *_region(offset, geo))] += cols[(slice(None), slice(None), *offset)]
    return _crop(dxp, geo, x_shape)


def _check_conv(x: np.ndarray, w: np.ndarray, groups: int) -> None:
    if x.ndim != w.ndim or x.ndim not in (3, 4, 5):
        raise ValueError(f"x {x.shape} and w {w.shape} must both be (N, C, *spatial) / (F, C/groups, *kernel), 1D to 3D")
    if groups < 1 or x.shape[1] % groups or w.shape[0] % groups:
        raise ValueError(f"channels {x.shape[1]} and filters {w.shape[0]} must divide by groups={groups}")
    if w.shape[1] * groups != x.shape[1]:
        raise ValueError(f"w has {w.shape[1]} input channels per group; x has {x.shape[1]} channels in {groups} group(s)")


@dataclass(frozen=True)
class ConvCache:
    """What backward needs from forward: the input, weights, geometry, and the im2col matrices kept.

    ``cols`` is (N, C*prod(k), prod(out)) on the NumPy path; (C*prod(k), N*prod(out)), one matrix
    for the batch, for small layers on the C path; None for large layers on the C path, whose
    backward rebuilds each sample's matrix.
    """

    x: np.ndarray
    w: np.ndarray
    geo: Geometry
    groups: int
    cols: np.ndarray | None


#: On the C path, layers whose batch im2col matrix is at most this many bytes run as one GEMM
#: over the whole batch; larger ones stream sample by sample through one buffer.
BATCHED_BYTES = 32 * 2**20


def _conv_geometry(x: np.ndarray, w: np.ndarray, stride: Any, padding: Any, dilation: Any, groups: int) -> Geometry:
    _check_conv(x, w, groups)
    try:
        return geometry(x.shape, w.shape[2:], stride, padding, dilation)
    except RuleError as error:
        raise ValueError(str(error)) from None


def conv_workspace(batch: int, channels: int, taps: int, positions: int, itemsize: int = 4) -> int:
    """Values of im2col buffers one conv layer needs: the batch's matrices kept for backward
    (NumPy path and small layers on the C path), or one sample's matrix and its gradient at a
    time (large layers on the C path)."""
    whole = batch * channels * taps * positions
    if BACKEND == "numpy" or whole * itemsize <= BATCHED_BYTES:
        return whole
    return 2 * channels * taps * positions  # (a pointwise layer needs only the gradient's; an upper bound)


def conv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1) -> np.ndarray:
    """Convolution (cross-correlation, as every framework): ``(N, C, *S), (F, C/g, *k) -> (N, F, *out)``."""
    return conv_forward_cached(x, w, b, stride, padding, dilation, groups)[0]


def conv_forward_cached(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: Any = 1, padding: Any = 0,
                        dilation: Any = 1, groups: int = 1) -> tuple[np.ndarray, ConvCache]:
    """:func:`conv_forward` and what :func:`conv_backward_cached` needs from it.

    The im2col matrices kept (:func:`_kept_cols`) decide the computation: the NumPy path's batch
    of matrices, one batched GEMM; the C path's one matrix for a small layer's batch, one GEMM
    per group; or, for a large layer on the C path, none kept: each sample's ``X_hat`` is built
    into one reused buffer and ``Y_n = W X_hat_n`` lands in NCHW directly.
    """
    geo = _conv_geometry(x, w, stride, padding, dilation, groups)
    x = np.ascontiguousarray(x)
    n, f = x.shape[0], w.shape[0]
    w_g = w.reshape(groups, f // groups, -1)
    cols = _kept_cols(x, geo)
    if cols is None:
        y = np.empty((n, f, geo.positions), dtype=np.result_type(x, w))
        buffer = None if geo.pointwise else np.empty((x.shape[1] * geo.taps, geo.positions), dtype=x.dtype)
        for sample in range(n):
            sample_cols = _sample_cols(x[sample], geo, buffer)
            np.matmul(w_g, sample_cols.reshape(groups, -1, geo.positions),
                      out=y[sample].reshape(groups, f // groups, geo.positions))
    elif cols.ndim == 2:  # (C*prod(k), N*prod(out)): one GEMM for the batch
        y = np.matmul(w_g, cols.reshape(groups, -1, n * geo.positions)).reshape(f, n, geo.positions).transpose(1, 0, 2)
        y = np.ascontiguousarray(y)
    else:
        y = np.matmul(w_g, cols.reshape(n, groups, -1, geo.positions))
    cache = ConvCache(x, w, geo, groups, cols)
    y = y.reshape(n, f, *geo.out)
    if b is not None:
        y += b.reshape(1, f, *([1] * len(geo.out)))
    return y, cache


def _kept_cols(x: np.ndarray, geo: Geometry) -> np.ndarray | None:
    """The im2col matrices forward builds and backward reuses (see :class:`ConvCache`)."""
    if BACKEND == "numpy":
        return _im2col(x, geo)
    return _batch_cols(x, geo) if _batched(x, geo) else None


def _batched(x: np.ndarray, geo: Geometry) -> bool:
    """Whether the C path makes one im2col matrix for the batch (a pointwise window needs none)."""
    return not geo.pointwise and x.shape[0] * x.shape[1] * geo.taps * geo.positions * x.itemsize <= BATCHED_BYTES


def _batch_cols(x: np.ndarray, geo: Geometry) -> np.ndarray:
    cols = np.empty((x.shape[1] * geo.taps, x.shape[0] * geo.positions), dtype=x.dtype)
    _C.im2col(x, cols, *geo.c_args(x.shape[1], x.shape[0]))
    return cols


def _sample_cols(x: np.ndarray, geo: Geometry, buffer: np.ndarray | None) -> np.ndarray:
    """One sample's X_hat (C*prod(k), prod(out)): a view for a pointwise window, else built in C."""
    if buffer is None:
        return x.reshape(x.shape[0], geo.positions)
    _C.im2col(x, buffer, *geo.c_args(x.shape[0]))
    return buffer


def conv_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                  groups: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw, db)`` of a convolution from ``dy`` (N, F, *out)."""
    geo = _conv_geometry(x, w, stride, padding, dilation, groups)
    x = np.ascontiguousarray(x)
    return conv_backward_cached(dy, ConvCache(x, w, geo, groups, _kept_cols(x, geo)))


def conv_backward_cached(dy: np.ndarray, cache: ConvCache, need_dx: bool = True) -> tuple[Any, np.ndarray, np.ndarray]:
    """:func:`conv_backward` from :func:`conv_forward_cached`'s cache.

    ``dW = sum_n dY_n X_hat_n^T`` accumulated sample by sample (BLAS reads the transposed X_hat
    in place, with no copy), ``dX_hat = W^T dY``, then col2im sums the windows back. With
    ``need_dx=False`` (a first layer, whose input needs no gradient) dx is None and neither
    ``W^T dY`` nor col2im runs.
    """
    x, w, geo, groups = cache.x, cache.w, cache.geo, cache.groups
    n, f = dy.shape[:2]
    expected = (x.shape[0], w.shape[0], *geo.out)
    if dy.shape != expected:
        raise ValueError(f"dy has shape {dy.shape}, expected {expected}")
    dy_g = np.ascontiguousarray(dy).reshape(n, groups, f // groups, geo.positions)
    w_t = w.reshape(groups, f // groups, -1).transpose(0, 2, 1)
    db = dy.sum(axis=(0, *range(2, dy.ndim)))
    if cache.cols is not None and cache.cols.ndim == 2:  # the C path's one matrix for the batch
        dy_t = np.ascontiguousarray(dy_g.transpose(1, 2, 0, 3)).reshape(groups, f // groups, n * geo.positions)
        cols_g = cache.cols.reshape(groups, -1, n * geo.positions)
        dw = np.matmul(dy_t, cols_g.transpose(0, 2, 1))
        if not need_dx:
            return None, dw.reshape(w.shape), db
        dcols = np.matmul(w_t, dy_t)
        dx = np.empty(x.shape, dtype=dcols.dtype)
        _C.col2im(dcols, dx, *geo.c_args(x.shape[1], n))
        return dx, dw.reshape(w.shape), db
    if cache.cols is not None:
        cols_g = cache.cols.reshape(n, groups, -1, geo.positions)
        dw = np.matmul(dy_g[0], cols_g[0].transpose(0, 2, 1))
        for sample in range(1, n):
            dw += np.matmul(dy_g[sample], cols_g[sample].transpose(0, 2, 1))
        if not need_dx:
            return None, dw.reshape(w.shape), db
        dcols = np.matmul(w_t, dy_g)  # dX_hat = W^T dY
        dx = _col2im(dcols.reshape(n, -1, geo.positions), tuple(x.shape), geo)
        return dx, dw.reshape(w.shape), db
    c = x.shape[1]
    buffer = None if geo.pointwise else np.empty((c * geo.taps, geo.positions), dtype=x.dtype)
    dtype = np.result_type(dy, w)
    dw = np.zeros((groups, f // groups, c // groups * geo.taps), dtype=dtype)
    product = np.empty_like(dw)
    dcols = np.empty((groups, c // groups * geo.taps, geo.positions), dtype=dtype)
    dx = np.empty(x.shape, dtype=dtype) if need_dx else None
    for sample in range(n):
        cols = _sample_cols(x[sample], geo, buffer).reshape(groups, -1, geo.positions)
        np.matmul(dy_g[sample], cols.transpose(0, 2, 1), out=product)
        dw += product
        if not need_dx:
            continue
        np.matmul(w_t, dy_g[sample], out=dcols)
        if geo.pointwise:
            dx[sample] = dcols.reshape(x.shape[1:])
        else:
            _C.col2im(dcols, dx[sample], *geo.c_args(c))
    return dx, dw.reshape(w.shape), db


def _pool_geometry(x: np.ndarray, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool) -> Geometry:
    try:
        return geometry(x.shape, kernel_size, kernel_size if stride is None else stride, padding, 1, ceil_mode)
    except RuleError as error:
        raise ValueError(str(error)) from None


def maxpool_forward(x: np.ndarray, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False) -> np.ndarray:
    """Max over each window (padding never wins); stride defaults to the kernel size."""
    return maxpool_forward_argmax(x, kernel_size, stride, padding, ceil_mode)[0]


def _pool_args(x_shape: tuple[int, ...], geo: Geometry) -> tuple[Any, ...]:
    """The pooling geometry as archcalc._kernels takes it: planes (N*C), then per-axis tuples."""
    return (x_shape[0] * x_shape[1], geo.size, geo.kernel, geo.stride, tuple(b for b, _ in geo.padding),
            tuple(a for _, a in geo.padding), geo.out)


@dataclass(frozen=True)
class Argmax:
    """Where each window's maximum was: a tap of the window (NumPy path) or a flat index in its plane (C path)."""

    kind: str
    values: np.ndarray


def maxpool_forward_argmax(x: np.ndarray, kernel_size: Any, stride: Any = None, padding: Any = 0,
                           ceil_mode: bool = False) -> tuple[np.ndarray, Argmax, Geometry]:
    """:func:`maxpool_forward` plus each window's arg-max (first maximum), for backward."""
    geo = _pool_geometry(x, kernel_size, stride, padding, ceil_mode)
    if BACKEND == "c" and x.dtype in (np.float32, np.float64):
        x = np.ascontiguousarray(x)
        y = np.empty((*x.shape[:2], *geo.out), dtype=x.dtype)
        index = np.empty(y.shape, dtype=np.int64)
        _C.maxpool_forward(x, y, index, *_pool_args(x.shape, geo))
        return y, Argmax("c", index), geo
    windows = _windows(_pad(x, geo, -np.inf), geo)
    flat = windows.reshape(*windows.shape[: 2 + len(geo.out)], geo.taps)
    argmax = flat.argmax(axis=-1)
    return np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0], Argmax("numpy", argmax), geo


def maxpool_backward(dy: np.ndarray, x: np.ndarray, kernel_size: Any, stride: Any = None, padding: Any = 0,
                     ceil_mode: bool = False) -> np.ndarray:
    """Gradient of max pooling: each window's gradient goes to its first maximum."""
    _, argmax, geo = maxpool_forward_argmax(x, kernel_size, stride, padding, ceil_mode)
    return maxpool_backward_argmax(dy, argmax, x.shape, geo)


def maxpool_backward_argmax(dy: np.ndarray, argmax: Argmax, x_shape: tuple[int, ...], geo: Geometry) -> np.ndarray:
    """:func:`maxpool_backward` from the forward pass's arg-max."""
    if argmax.kind == "c":
        dy = np.ascontiguousarray(dy)
        dx = np.empty(x_shape, dtype=dy.dtype)
        _C.maxpool_backward(dy, argmax.values, dx, *_pool_args(x_shape, geo))
        return dx
    argmax = argmax.values
    padded = [*x_shape[:2], *(n + b + a + e for n, (b, a), e in zip(x_shape[2:], geo.padding, geo.extra))]
    dxp = np.zeros(padded, dtype=dy.dtype)
    for tap, offset in enumerate(itertools.product(*(range(k) for k in geo.kernel))):
        dxp[(slice(None), slice(None), *_region(offset, geo))] += np.where(argmax == tap, dy, 0)
    return _crop(dxp, geo, tuple(x_shape))


def _avg_divisor(x_shape: tuple[int, ...], geo: Geometry, count_include_pad: bool, dtype: Any) -> np.ndarray:
    """Values each window averages over: the padded input, or the input alone; never the ceil-mode overhang."""
    ones = np.ones((1, 1, *x_shape[2:]), dtype=dtype)
    if count_include_pad:
        ones = np.pad(ones, [(0, 0), (0, 0), *geo.padding], constant_values=1)
        inner = Geometry(geo.kernel, geo.stride, geo.dilation, tuple((0, 0) for _ in geo.padding), geo.out, geo.extra)
        return _windows(_pad(ones, inner), geo).sum(axis=tuple(range(-len(geo.out), 0)))
    return _windows(_pad(ones, geo), geo).sum(axis=tuple(range(-len(geo.out), 0)))


def avgpool_forward(x: np.ndarray, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                    count_include_pad: bool = True) -> np.ndarray:
    """Mean over each window (PyTorch's divisor rules); stride defaults to the kernel size."""
    geo = _pool_geometry(x, kernel_size, stride, padding, ceil_mode)
    if BACKEND == "c" and x.dtype in (np.float32, np.float64):
        x = np.ascontiguousarray(x)
        y = np.empty((*x.shape[:2], *geo.out), dtype=x.dtype)
        _C.avgpool(x, y, True, count_include_pad, *_pool_args(x.shape, geo))
        return y
    windows = _windows(_pad(x, geo), geo)
    total = windows.sum(axis=tuple(range(-len(geo.out), 0)))
    return total / _avg_divisor(x.shape, geo, count_include_pad, x.dtype)


def avgpool_backward(dy: np.ndarray, x: np.ndarray, kernel_size: Any, stride: Any = None, padding: Any = 0,
                     ceil_mode: bool = False, count_include_pad: bool = True) -> np.ndarray:
    """Gradient of average pooling: each window's gradient spread evenly over its divisor."""
    geo = _pool_geometry(x, kernel_size, stride, padding, ceil_mode)
    if BACKEND == "c" and dy.dtype in (np.float32, np.float64):
        dx = np.empty(x.shape, dtype=dy.dtype)
        _C.avgpool(np.ascontiguousarray(dy), dx, False, count_include_pad, *_pool_args(x.shape, geo))
        return dx
    share = dy / _avg_divisor(x.shape, geo, count_include_pad, dy.dtype)
    padded = [*x.shape[:2], *(n + b + a + e for n, (b, a), e in zip(x.shape[2:], geo.padding, geo.extra))]
    dxp = np.zeros(padded, dtype=dy.dtype)
    for offset in itertools.product(*(range(k) for k in geo.kernel)):
        dxp[(slice(None), slice(None), *_region(offset, geo))] += share
    return _crop(dxp, geo, tuple(x.shape))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over axis 1 (classes), shifted by the maximum for stability."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    ``J = -mean_i log softmax(h_i)[y_i]``; ``dJ/dh = (softmax(h) - onehot(y)) / N`` (the
    lecture's ``y_hat - y``, divided by N because J is the batch average).
    """
    n = logits.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    probs = softmax(logits)
    rows = np.arange(n)
    loss = float(-np.log(probs[rows, labels]).mean())
    grad = probs.copy()
    grad[rows, labels] -= 1
    return loss, grad / n

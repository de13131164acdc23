"""Conv and pooling math on channels-first arrays ``(N, C, *spatial)``: the NumPy reference.

The executor, the homework checkers and the C path meet here. Convolution follows the
lecture's recipe: im2col turns each sample's receptive fields into the columns of a matrix
``X_hat`` of shape ``(C*prod(k), prod(out))``, ``Y = W X_hat`` is one GEMM per group (batched
over the samples), and backward is ``dW = dY X_hat^T``, ``dX_hat = W^T dY``, then col2im sums
the gradients of overlapping windows back into the input. 1D, 2D and 3D follow from the rank
of the kernel. Padding takes every CONVENTIONS form (int, per axis, per side, pairs, "same",
"valid").

The compiled extension ``archcalc._kernels`` (``BACKEND == "c"``) does im2col, col2im, pooling,
batchnorm, the clamp behind ReLU/ReLU6/HardTanh and the SGD update in C, and convolves depthwise
and few-filter layers directly, with no im2col (:func:`direct_conv`; :data:`THREADS` threads);
``ARCHCALC_KERNELS=numpy`` forces the NumPy code, ``ARCHCALC_KERNELS=c`` requires the extension.
Every GEMM goes through :func:`matmul`, which keeps the small ones on one BLAS thread.

Rules (both backends follow them; PyTorch's behaviour unless said otherwise). Every public
function checks its arguments once, through :func:`geometry` and the checks beside it, before
either backend runs:

- Arrays are float32 or float64 (:data:`DTYPES`); any other dtype (integers, bool, float16,
  complex) is a TypeError, never converted. Any memory layout is taken (non-contiguous and
  negative-stride views included). A conv may mix the two dtypes: the result has the wider.
  Pooling gradients have dy's dtype.
- Shapes are ``(N, C, *spatial)`` with 1 to 3 spatial axes, ``N >= 0``, ``C >= 1`` and every
  spatial size >= 1; a conv needs at least one filter. An empty batch (``N == 0``) gives empty
  results of the right shape (and zero weight gradients); zero channels are a ValueError.
- Kernel, stride and dilation are ints >= 1 (NumPy integers accepted; bools and floats are a
  TypeError), padding ints >= 0. The kernel's span must fit the padded input, and each axis's
  padded extent ``size + pad_before + pad_after`` must be at most :data:`MAX_EXTENT` (2**53),
  so that all window arithmetic is exact; beyond that, a ValueError. Any stride is taken: on
  an axis with one output position it is never used (2**63 - 1 works, as in PyTorch).
- Pooling padding is at most ``k // 2`` on each side (PyTorch refuses more: a window could lie
  wholly in the padding).
- Average pooling divides by the window's values within the padded input (count_include_pad),
  within the input alone (TensorFlow's "same"), or by divisor_override; it takes no dilation.
- Max pooling (with PyTorch's dilation: taps d apart): padding never wins; the first maximum in row-major window order is the arg-max
  (as ``numpy.argmax`` and PyTorch's CPU kernel); NaN propagates wherever it is in the window,
  and the arg-max of a window holding NaN is its last NaN (PyTorch's CPU rule: a NaN always
  takes over). The gradient goes to the arg-max.
- Results too large to allocate raise NumPy's MemoryError (or its ValueError for an array
  beyond the address space), the same on both backends; the C extension itself refuses any
  geometry whose arithmetic would overflow with OverflowError, before touching memory.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from archcalc import formulas
from archcalc.errors import RuleError
from archcalc.ops.attrs import padding as padding_value
from archcalc.ops.pool import reads_only_padding
from archcalc.ops.window import per_axis, resolve_padding


def _unknown_setting(name: str, value: str, understood: str, instead: str) -> None:
    """Warn (one line) that an environment variable holds a value archcalc does not understand."""
    import warnings

    warnings.warn(f"{name}={value!r} is not understood ({understood}): {instead}", RuntimeWarning, stacklevel=3)


def _load_c() -> Any:
    """The compiled extension, unless ARCHCALC_KERNELS=numpy; ARCHCALC_KERNELS=c makes it required.
    Any other value warns and is ignored."""
    wanted = os.environ.get("ARCHCALC_KERNELS", "")
    if wanted not in ("", "c", "numpy"):
        _unknown_setting("ARCHCALC_KERNELS", wanted, "c or numpy", "the C path runs when it is built")
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
    def steps(self) -> tuple[int, ...]:
        """The stride where it matters: 1 on an axis with one output position, whose stride is never used.

        With two or more positions the stride is below the padded extent (so at most
        :data:`MAX_EXTENT`); with one, any stride (2**63 - 1, or more) gives the same windows.
        """
        return tuple(s if o > 1 else 1 for s, o in zip(self.stride, self.out))

    @property
    def pointwise(self) -> bool:
        """A 1x1 window at stride 1 with no padding over every position (a transposed conv's
        output_padding may leave positions no window reads): the input already is its im2col matrix."""
        return (self.taps == 1 and all(s == 1 for s in self.stride) and all(p == (0, 0) for p in self.padding)
                and not any(self.extra) and tuple(self.out) == tuple(self.size))

    def c_args(self, channels: int, batch: int = 1) -> tuple[Any, ...]:
        """The geometry as archcalc._kernels takes it (padding before only; the rest is implied)."""
        return (channels, self.size, self.kernel, self.steps, self.dilation, tuple(b for b, _ in self.padding), self.out, batch)


# ---------------------------------------------------------------------------------------- validation
# Every public function checks its arguments here, once, before either backend runs.

#: The array dtypes the kernels take (on both backends); anything else is a TypeError.
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: The largest padded extent (input size + padding on both sides) of one axis. Below it every
#: size, padding, window start and index is exact in int64 and in float64 alike.
MAX_EXTENT = 2**53


def _array(value: Any, name: str) -> np.ndarray:
    """``value`` as an array of a dtype in :data:`DTYPES`; TypeError for any other dtype."""
    array = np.asarray(value)
    if array.dtype not in DTYPES:
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {array.dtype}; "
                        f"convert it first, e.g. {name}.astype(np.float64)")
    return array


def _plain_ints(value: Any, name: str) -> Any:
    """Python ints (NumPy integers accepted) in the same nesting; TypeError for bools, floats and the rest."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_plain_ints(v, name) for v in value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise TypeError(f"{name} must be an int or a tuple of ints, got {value!r}")


def _positive(value: Any, rank: int, name: str) -> tuple[int, ...]:
    """One int >= 1 per spatial axis."""
    values = per_axis(_plain_ints(value, name), rank, name)
    if any(not isinstance(v, int) for v in values):
        raise TypeError(f"{name} must be an int or a tuple of {rank} ints, got {value!r}")
    if min(values) < 1:
        raise ValueError(f"{name} must be positive, got {values}")
    return values


def _input_shape(shape: Any, name: str = "x") -> tuple[int, ...]:
    """A shape (N, C, *spatial): 1 to 3 spatial axes, N >= 0, C >= 1, every spatial size >= 1."""
    shape = tuple(_plain_ints(tuple(shape), f"{name}'s shape"))
    if len(shape) not in (3, 4, 5):
        raise ValueError(f"{name} must be (N, C, *spatial) with 1 to 3 spatial axes, got shape {shape}")
    if shape[0] < 0 or shape[1] < 1 or min(shape[2:]) < 1:
        raise ValueError(f"{name} must have N >= 0 samples, C >= 1 channels and spatial sizes >= 1, got shape {shape}")
    return shape


def geometry(x_shape: tuple[int, ...], kernel: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
             ceil_mode: bool = False, pooling: bool = False) -> Geometry:
    """Resolve and check a window over ``x_shape`` (N, C, *spatial): the one place arguments are checked.

    Raises TypeError for non-int sizes and ValueError for a window that does not fit: a kernel,
    stride or dilation below 1, a negative padding, a kernel span beyond the padded input, a
    padded extent above :data:`MAX_EXTENT`, or (``pooling``) a padding above ``k // 2``.
    """
    x_shape = _input_shape(x_shape)
    spatial = x_shape[2:]
    rank = len(spatial)
    kernel = _positive(kernel, rank, "kernel")
    stride = _positive(stride, rank, "stride")
    dilation = _positive(dilation, rank, "dilation")
    try:
        pads = resolve_padding(padding_value(_plain_ints(padding, "padding")), spatial, kernel, stride, dilation)
    except RuleError as error:
        raise ValueError(f"padding {error}") from None
    for axis, (n, k, (before, after)) in enumerate(zip(spatial, kernel, pads)):
        if pooling and max(before, after) > k // 2:
            raise ValueError(f"padding {max(before, after)} exceeds half the kernel ({k} // 2 = {k // 2}) on axis {axis}; "
                             "a pooling window could lie wholly in the padding (PyTorch refuses it too)")
        if pooling and reads_only_padding(n, dilation[axis], before):
            raise ValueError(f"the first window on axis {axis} reads only padding (dilation {dilation[axis]} > size {n},"
                             f" padding {before}); PyTorch would return -inf")
        if n + before + after > MAX_EXTENT:
            raise ValueError(f"the padded input {n} + {before} + {after} on axis {axis} exceeds 2**53 values")
    try:
        out = tuple(formulas.conv_output_size(n, k, s, p, d, ceil_mode)
                    for n, k, s, p, d in zip(spatial, kernel, stride, pads, dilation))
    except RuleError as error:
        raise ValueError(str(error)) from None
    extra = tuple(
        max(0, (o - 1) * s + formulas.effective_kernel(k, d) - (n + b + a))
        for o, s, k, d, n, (b, a) in zip(out, stride, kernel, dilation, spatial, pads)
    )
    return Geometry(kernel, stride, dilation, pads, out, extra, spatial)


def _expect_shape(array: np.ndarray, expected: tuple[int, ...], name: str, context: str = "") -> None:
    if array.shape != tuple(expected):
        raise ValueError(f"{name} has shape {array.shape}, expected {tuple(expected)}{context}")


def _c_runs(*arrays: np.ndarray) -> bool:
    """Whether the C extension runs: it is the backend and there is data (an empty batch runs the NumPy code)."""
    return BACKEND == "c" and all(a.size for a in arrays)


# ---------------------------------------------------------------------------------------- windows

def _taps(geo: Geometry) -> Iterator[tuple[int, tuple[slice, ...], tuple[slice, ...]]]:
    """For each kernel tap that reads the input somewhere: (tap index, output positions, input positions).

    The tap index is row-major over the kernel axes; the two tuples of slices select the output
    positions whose window reads the input at that tap and the input values they read, in the
    same order. Taps that only ever land in the padding are left out, so the work is bounded by
    the output and the input, never by the padding. One tap's positions never collide.
    """
    axes = []
    for n, k, d, (before, _), o, s in zip(geo.size, geo.kernel, geo.dilation, geo.padding, geo.out, geo.steps):
        valid = []
        first = max(0, -((-(before - (o - 1) * s)) // d))  # the last window reaches the input
        last = min(k - 1, (before + n - 1) // d)  # the first window does
        for j in range(first, last + 1):
            offset = j * d - before  # input index = position * s + offset
            lo = 0 if offset >= 0 else min(o, (-offset + s - 1) // s)
            hi = min(o, (n - offset - 1) // s + 1) if n > offset else 0
            if lo < hi:
                valid.append((j, slice(lo, hi), slice(lo * s + offset, (hi - 1) * s + offset + 1, s)))
        axes.append(valid)
    for combination in itertools.product(*axes):
        tap = 0
        for (j, _, _), k in zip(combination, geo.kernel):
            tap = tap * k + j
        yield tap, tuple(c[1] for c in combination), tuple(c[2] for c in combination)


_ALL = (slice(None), slice(None))  # the batch and channel axes


def _scatter_add(x_shape: tuple[int, ...], geo: Geometry, dtype: Any,
                 contribution: Callable[[int], np.ndarray]) -> np.ndarray:
    """The windowed scatter-add: every tap's ``contribution(tap)`` (N, C, *out) added into a zeroed (N, C, *size).

    The adjoint of reading the windows: col2im, and the backward of both poolings.
    """
    dx = np.zeros(x_shape, dtype=dtype)
    for tap, outputs, inputs in _taps(geo):
        # one tap's positions never collide, so += on the strided view is exact
        dx[(*_ALL, *inputs)] += contribution(tap)[(*_ALL, *outputs)]
    return dx


def im2col(x: np.ndarray, kernel: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1) -> np.ndarray:
    """Receptive fields to columns: ``(N, C, *S) -> (N, C*prod(k), prod(out))``.

    Row ``c*prod(k) + tap`` of sample n's matrix holds input channel c at kernel tap ``tap``
    (row-major over the kernel axes) for every output position (row-major over the output).
    """
    x = _array(x, "x")
    return _im2col(x, geometry(x.shape, kernel, stride, padding, dilation))


def _im2col(x: np.ndarray, geo: Geometry) -> np.ndarray:
    if geo.pointwise:
        return x.reshape(x.shape[0], x.shape[1], geo.positions)
    if _c_runs(x):
        x = np.ascontiguousarray(x)
        cols = np.empty((x.shape[0], x.shape[1] * geo.taps, geo.positions), dtype=x.dtype)
        for sample in range(x.shape[0]):
            _C.im2col(x[sample], cols[sample], *geo.c_args(x.shape[1]))
        return cols
    cols = np.zeros((*x.shape[:2], geo.taps, *geo.out), dtype=x.dtype)
    for tap, outputs, inputs in _taps(geo):
        cols[(*_ALL, tap, *outputs)] = x[(*_ALL, *inputs)]
    return cols.reshape(x.shape[0], x.shape[1] * geo.taps, geo.positions)


def col2im(cols: np.ndarray, x_shape: tuple[int, ...], kernel: Any, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1) -> np.ndarray:
    """Columns back to the input: the adjoint of :func:`im2col`, summing overlapping windows."""
    cols = _array(cols, "cols")
    geo = geometry(x_shape, kernel, stride, padding, dilation)
    x_shape = _input_shape(x_shape)
    _expect_shape(cols, (x_shape[0], x_shape[1] * geo.taps, geo.positions), "cols", f" for input {x_shape}")
    return _col2im(cols, x_shape, geo)


def _col2im(cols: np.ndarray, x_shape: tuple[int, ...], geo: Geometry) -> np.ndarray:
    n, c = x_shape[:2]
    if geo.pointwise:
        return cols.reshape(x_shape)
    if _c_runs(cols):
        cols = np.ascontiguousarray(cols)
        dx = np.empty(x_shape, dtype=cols.dtype)
        for sample in range(n):
            _C.col2im(cols[sample], dx[sample], *geo.c_args(c))
        return dx
    by_tap = cols.reshape(n, c, geo.taps, *geo.out)
    return _scatter_add(x_shape, geo, cols.dtype, lambda tap: by_tap[:, :, tap])


def _conv_arguments(x: Any, w: Any, b: Any, stride: Any, padding: Any, dilation: Any,
                    groups: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Geometry, int]:
    """Checked conv arguments: x (N, C, *S), w (F, C/groups, *k), b None or (F,), and the geometry."""
    x, w = _array(x, "x"), _array(w, "w")
    b = None if b is None else _array(b, "b")
    if x.ndim != w.ndim or x.ndim not in (3, 4, 5):
        raise ValueError(f"x {x.shape} and w {w.shape} must both be (N, C, *spatial) / (F, C/groups, *kernel), 1D to 3D")
    groups = _plain_ints(groups, "groups")
    if groups < 1 or x.shape[1] % groups or w.shape[0] % groups:
        raise ValueError(f"channels {x.shape[1]} and filters {w.shape[0]} must divide by groups={groups}")
    if w.shape[0] < 1:
        raise ValueError(f"w must have at least one filter, got shape {w.shape}")
    if w.shape[1] * groups != x.shape[1]:
        raise ValueError(f"w has {w.shape[1]} input channels per group; x has {x.shape[1]} channels in {groups} group(s)")
    if b is not None:
        _expect_shape(b, (w.shape[0],), "b")
    return x, w, b, geometry(x.shape, w.shape[2:], stride, padding, dilation), groups


@dataclass(frozen=True)
class ConvCache:
    """What backward needs from forward: the input, weights, geometry, and the im2col matrices kept.

    ``cols`` is (N, C*prod(k), prod(out)) on the NumPy path; (C*prod(k), N*prod(out)), one matrix
    for the batch, for small layers on the C path; None for large layers on the C path, whose
    backward rebuilds each chunk's matrix, and for the direct kernels (``direct``).
    """

    x: np.ndarray
    w: np.ndarray
    geo: Geometry
    groups: int
    cols: np.ndarray | None
    #: Multiply-accumulates the forward products performed (:func:`matmul_macs` of each).
    macs: int = 0
    #: The C path's direct kernels ran forward and run backward (no im2col matrix at all).
    direct: bool = False


#: On the C path, layers whose batch im2col matrix is at most this many bytes run as one GEMM
#: over the whole batch; larger ones stream sample by sample through one buffer.
BATCHED_BYTES = 32 * 2**20


def conv_workspace(batch: int, channels: int, taps: int, positions: int, itemsize: int = 4, filters: int = 0,
                   groups: int = 1) -> int:
    """Values of the im2col matrices one conv layer keeps from forward to backward: the batch's
    (NumPy path, and small layers on the C path); none for large layers on the C path (they stream:
    :func:`conv_stream_workspace`) and for the direct kernels (``filters`` and ``groups`` given and
    :func:`direct_conv` true)."""
    whole = batch * channels * taps * positions
    if BACKEND == "numpy":
        return whole
    if filters and direct_conv(channels // groups, filters // groups, pointwise=taps == 1):
        return 0
    return whole if whole * itemsize <= BATCHED_BYTES else 0


def conv_stream_workspace(batch: int, channels: int, taps: int, positions: int, itemsize: int = 4, filters: int = 0,
                          groups: int = 1) -> int:
    """Values a large conv layer on the C path allocates while it runs and frees after: a chunk's
    im2col matrix and its gradient (a pointwise layer needs neither: an upper bound); 0 for the
    layers :func:`conv_workspace` counts and for the direct kernels."""
    whole = batch * channels * taps * positions
    if BACKEND == "numpy" or whole * itemsize <= BATCHED_BYTES:
        return 0
    if filters and direct_conv(channels // groups, filters // groups, pointwise=taps == 1):
        return 0
    return 2 * min(batch, _chunk(channels * taps, positions, itemsize)) * channels * taps * positions


#: When the C path convolves directly (no im2col, no GEMM): "auto" (:func:`direct_conv`'s rule),
#: "always" or "never" (tests and benchmarks set it to compare the two).
DIRECT_CONV = "auto"

#: Filters per group up to which "auto" convolves directly: with so few, BLAS runs the GEMM's few
#: rows at a fraction of its rate while im2col moves prod(k) times the input (at 16 filters the two
#: paths tie on LeNet's conv2 and the direct one is 2x faster on 64 channels at 56x56; at 32 they
#: tie; benchmarks/README.md).
DIRECT_MAX_FILTERS = 16


def direct_conv(channels_per_group: int, filters_per_group: int, pointwise: bool = False) -> bool:
    """Whether the C path convolves directly: a depthwise layer (one input channel per group) or one
    with at most :data:`DIRECT_MAX_FILTERS` filters per group, unless it is ``pointwise`` (a 1x1
    window at stride 1, whose GEMM reads the input in place); :data:`DIRECT_CONV` overrides."""
    if BACKEND != "c" or DIRECT_CONV == "never":
        return False
    if DIRECT_CONV == "always" or channels_per_group == 1:
        return True
    return filters_per_group <= DIRECT_MAX_FILTERS and not pointwise


def _thread_count() -> int:
    """Threads for the C kernels: ARCHCALC_THREADS, else OMP_NUM_THREADS (as OpenBLAS and torch read
    it), when set to a positive int; else the CPUs this process may run on."""
    for name in ("ARCHCALC_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        try:
            wanted = int(value)
        except ValueError:
            wanted = 0
        if wanted > 0:
            return wanted
        if value and name == "ARCHCALC_THREADS":  # OMP_NUM_THREADS is other libraries' too ("4,2" is valid there)
            _unknown_setting(name, value, "a positive int", "ignored")
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


#: Threads the C kernels use (:func:`_thread_count`): the direct conv kernels share a call between
#: them; batchnorm and the clamp split a large array in two when it is 2 or more.
THREADS = _thread_count()

#: Multiply-adds a direct kernel call gives each of its threads at least (starting one costs tens
#: of microseconds, about 100 thousand multiply-adds here).
THREAD_MIN_MACS = 1_000_000


def _direct(which: int, a: np.ndarray, b: np.ndarray, out: np.ndarray, geo: Geometry, channels: int, batch: int,
            groups: int, filters: int, macs: int) -> None:
    """One call of the C direct kernel (``which``: 0 forward, 1 input gradient, 2 weight gradient)."""
    threads = max(1, min(THREADS, macs // THREAD_MIN_MACS))  # each thread at least THREAD_MIN_MACS
    _C.conv_direct(which, a, b, out, *geo.c_args(channels, batch), groups, filters, threads)


def _padded(geo: Geometry) -> bool:
    return any(before or after for before, after in geo.padding)


def _copy_is_small(geo: Geometry) -> bool:
    """Whether the direct kernels' zero-padded copy of an input plane (each axis extended so that
    every window lies inside it) stays within a few times the plane: a padding or window far
    beyond the input (2**31 - 1 is taken) is left to im2col, which copies nothing."""
    padded = math.prod(max(size + before, (out - 1) * step + (k - 1) * d + 1)
                       for size, (before, _), out, step, k, d in zip(geo.size, geo.padding, geo.out, geo.steps,
                                                                    geo.kernel, geo.dilation))
    return padded <= 4 * math.prod(geo.size) + 4096


def conv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1) -> np.ndarray:
    """Convolution (cross-correlation, as every framework): ``(N, C, *S), (F, C/g, *k) -> (N, F, *out)``."""
    return conv_forward_cached(x, w, b, stride, padding, dilation, groups)[0]


def matmul_macs(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of ``np.matmul`` on operands of these shapes: ``(..., m, k) @ (..., k, n)``
    does ``m * k * n`` for each of the broadcast batch dimensions.

    >>> matmul_macs((2, 4, 27), (8, 2, 27, 36))   # 8 samples, 2 groups: 8*2 products of 4x27 by 27x36
    62208

    Raises:
        ValueError: the inner dimensions differ.
    """
    if a_shape[-1] != b_shape[-2]:
        raise ValueError(f"matmul of {a_shape} by {b_shape}: inner dimensions differ")
    batch = np.broadcast_shapes(a_shape[:-2], b_shape[:-2])
    return math.prod(batch) * a_shape[-2] * a_shape[-1] * b_shape[-1]


# ---------------------------------------------------------------------------------------- BLAS threads
# After a GEMM on several threads, OpenBLAS's idle threads spin for up to about 0.1 s (2**28 cycles)
# before they sleep, each holding a core: the C kernels' threads and batchnorm's helper that run next
# get half the machine (a lenet5 step at batch 64: 20 ms, 13 ms with its small GEMMs on one thread;
# benchmarks/README.md). So a GEMM whose matrices are small, where a second thread saves less than
# the spinning costs, runs on one BLAS thread; the BLAS's own setting is restored after it.

#: Multiply-adds per matrix product below which :func:`matmul` keeps BLAS on one thread (one such
#: product takes about a millisecond on one core here; benchmarks/executor.py chose the figure).
BLAS_THREAD_MIN_MACS = 32_000_000
_blas_controller: Any = None  # threadpoolctl's controller of the BLAS NumPy loaded; False: none


def _blas() -> Any:
    """threadpoolctl's controller of the BLAS libraries NumPy loaded (found once), or None."""
    global _blas_controller
    if _blas_controller is None:
        try:
            from threadpoolctl import ThreadpoolController

            controller = ThreadpoolController().select(user_api="blas")
            _blas_controller = controller if controller.lib_controllers else False
        except Exception:  # noqa: BLE001 - no threadpoolctl, or a BLAS it cannot drive: BLAS decides alone
            _blas_controller = False
    return _blas_controller or None


def _small_product(m: int, k: int, n: int) -> bool:
    """Whether an (m, k) by (k, n) product runs on one BLAS thread (:data:`BLAS_THREAD_MIN_MACS`)."""
    return m * k * n < BLAS_THREAD_MIN_MACS


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """The block's GEMMs on one BLAS thread (threadpoolctl's ``limit``, about 30 microseconds, which
    restores the BLAS's own count after, also on an error); nothing to do when the BLAS has one
    already or cannot say. OpenBLAS's count is process-wide: while another Python thread holds
    threadpoolctl's control of it (a ``threadpool_limits`` block), the block runs with that
    thread's setting."""
    controller = _blas()
    if controller is None or not any(isinstance(threads := lib.get_num_threads(), int) and threads > 1
                                     for lib in controller.lib_controllers):
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(a, b, out=out)``, on one BLAS thread (:func:`one_blas_thread`) when each matrix
    product in it is under :data:`BLAS_THREAD_MIN_MACS` multiply-adds (``m * k * n`` of
    ``(..., m, k) @ (..., k, n)``). The decision depends on the shapes alone, so a product gets the
    same bits every time (OpenBLAS rounds differently on one thread and on two: up to a few units
    in the last place). A loop of small products runs inside one :func:`one_blas_thread` block
    instead of paying for a limit each."""
    if a.ndim < 2 or b.ndim < 2 or not _small_product(a.shape[-2], a.shape[-1], b.shape[-1]):
        return np.matmul(a, b, out=out)
    with one_blas_thread():
        return np.matmul(a, b, out=out)


@dataclass
class BackwardMacs:
    """Multiply-accumulates a backward kernel performed, counted like the forward's from the
    operand shapes of each product it ran (:func:`matmul_macs`): the input gradient's and the
    weight gradient's apart. Pass one to a ``*_backward_cached`` kernel and it adds to it."""

    input_grad: int = 0
    weight_grad: int = 0


def conv_forward_cached(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: Any = 1, padding: Any = 0,
                        dilation: Any = 1, groups: int = 1) -> tuple[np.ndarray, ConvCache]:
    """:func:`conv_forward` and what :func:`conv_backward_cached` needs from it.

    The im2col matrices kept (:func:`_kept_cols`) decide the computation: the NumPy path's batch
    of matrices, one batched GEMM; the C path's one matrix for a small layer's batch, one GEMM
    per group; or, for a large layer on the C path, none kept: a chunk of samples at a time
    (:class:`_Chunks`, each within :data:`BATCHED_BYTES`) has its ``X_hat`` built into one reused
    buffer, one GEMM per chunk and group (a chunk of one sample lands in NCHW directly). The C
    path's direct kernels take depthwise and few-filter layers (:func:`direct_conv`).
    """
    x, w, b, geo, groups = _conv_arguments(x, w, b, stride, padding, dilation, groups)
    x = np.ascontiguousarray(x)
    n, f = x.shape[0], w.shape[0]
    w_g = w.reshape(groups, f // groups, -1)
    if _direct_forward(x, w, geo, groups):
        return _direct_forward_run(x, w, b, geo, groups)
    cols = _kept_cols(x, geo)
    macs = 0  # counted from the operand shapes of each product run, not from the conv's formula
    if cols is None:
        y = np.empty((n, f, geo.positions), dtype=np.result_type(x, w))
        chunks = _Chunks(x, geo)
        for start, stop, chunk_cols in chunks:
            operand = chunk_cols.reshape(groups, -1, (stop - start) * geo.positions)
            if stop - start == 1:  # Y_n = W X_hat_n lands in NCHW directly
                matmul(w_g, operand, out=y[start].reshape(groups, f // groups, geo.positions))
            else:
                y[start:stop] = matmul(w_g, operand).reshape(f, stop - start, geo.positions).transpose(1, 0, 2)
            macs += matmul_macs(w_g.shape, operand.shape)
    elif cols.ndim == 2:  # (C*prod(k), N*prod(out)): one GEMM for the batch
        operand = cols.reshape(groups, -1, n * geo.positions)
        y = matmul(w_g, operand).reshape(f, n, geo.positions).transpose(1, 0, 2)
        y = np.ascontiguousarray(y)
        macs = matmul_macs(w_g.shape, operand.shape)
    else:
        operand = cols.reshape(n, groups, cols.shape[1] // groups, geo.positions)
        y = matmul(w_g, operand)
        macs = matmul_macs(w_g.shape, operand.shape)
    cache = ConvCache(x, w, geo, groups, cols, macs)
    y = y.reshape(n, f, *geo.out)
    if b is not None:
        y += b.reshape(1, f, *([1] * len(geo.out)))
    return y, cache


def _direct_forward(x: np.ndarray, w: np.ndarray, geo: Geometry, groups: int) -> bool:
    """Whether forward runs the direct kernel: :func:`direct_conv`, a non-empty batch and a small
    padded copy (:func:`_copy_is_small`); with padding, finite weights too (im2col's GEMM multiplies
    them by the padding's zeros, so an infinite weight gives NaN at the border, and the direct
    kernel, which skips the padding, must give the same)."""
    if x.shape[0] == 0 or not direct_conv(x.shape[1] // groups, w.shape[0] // groups, geo.pointwise):
        return False
    return _copy_is_small(geo) and (not _padded(geo) or bool(np.isfinite(w).all()))


def _direct_forward_run(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, geo: Geometry,
                        groups: int) -> tuple[np.ndarray, ConvCache]:
    """Forward through the direct kernel. Its multiply-adds are those of im2col's products,
    ``W_g`` (F/g, C/g*prod(k)) by each sample's and group's window matrix (C/g*prod(k), prod(out)),
    which it computes without building the matrix (the padding's zero products skipped)."""
    dtype = np.result_type(x, w)
    x, w = np.ascontiguousarray(x, dtype), np.ascontiguousarray(w, dtype)
    n, c, f = x.shape[0], x.shape[1], w.shape[0]
    y = np.empty((n, f, *geo.out), dtype=dtype)
    macs = matmul_macs((groups, f // groups, c // groups * geo.taps), (n, groups, c // groups * geo.taps, geo.positions))
    _direct(0, x, w, y, geo, c, n, groups, f, macs)
    if b is not None:
        y += b.reshape(1, f, *([1] * len(geo.out)))
    return y, ConvCache(x, w, geo, groups, None, macs, direct=True)


def _direct_backward(dy: np.ndarray, cache: ConvCache, need_dx: bool,
                     counted: BackwardMacs) -> tuple[Any, np.ndarray, np.ndarray]:
    """Backward through the direct kernels: ``dW`` and (``need_dx``) ``dX``, counted as the GEMMs of
    the im2col path that they replace (``dY X_hat^T`` and ``W^T dY``)."""
    x, w, geo, groups = cache.x, cache.w, cache.geo, cache.groups
    n, c, f = x.shape[0], x.shape[1], w.shape[0]
    rows, columns = c // groups * geo.taps, n * geo.positions
    db = dy.sum(axis=(0, *range(2, dy.ndim)))
    dw = np.empty(w.shape, dtype=dy.dtype)
    weight_macs = matmul_macs((groups, f // groups, columns), (groups, columns, rows))
    _direct(2, x, dy, dw, geo, c, n, groups, f, weight_macs)
    counted.weight_grad += weight_macs
    if not need_dx:
        return None, dw, db
    dx = np.empty(x.shape, dtype=dy.dtype)
    input_macs = matmul_macs((groups, rows, f // groups), (groups, f // groups, columns))
    # the flipped kernels read dY through zero padding: exact only for finite weights (0 * inf is NaN)
    flipped = _input_grad_geometry(geo) if np.isfinite(w).all() else None
    flipped = flipped if flipped is not None and _copy_is_small(flipped) else None
    if flipped is None:  # strided: each dY value scattered into the windows that read it
        _direct(1, dy, w, dx, geo, c, n, groups, f, input_macs)
    else:  # stride 1: dX is dY correlated with the flipped kernels, the forward kernel's job
        k = len(geo.kernel)
        w_flipped = w.reshape(groups, f // groups, c // groups, *geo.kernel)[(..., *[slice(None, None, -1)] * k)]
        w_flipped = np.ascontiguousarray(w_flipped.swapaxes(1, 2)).reshape(c, f // groups, *geo.kernel)
        _direct(0, dy, w_flipped, dx, flipped, f, n, groups, c, input_macs)
    counted.input_grad += input_macs
    return dx, dw, db


def _input_grad_geometry(geo: Geometry) -> Geometry | None:
    """For a stride-1 conv, the window of the forward kernel that gives dX from dY: over dY's
    positions, the same kernel and dilation, padding ``(k-1)*d - p`` before (the input index
    ``i`` reads ``dY`` at ``i + p - t*d`` for tap ``t``, the flipped kernel's tap ``k-1-t``), and
    dX's size as the output; None when a stride is above 1 or a padding above ``(k-1)*d``."""
    if any(s != 1 for s in geo.steps):
        return None
    before = tuple((k - 1) * d - p for k, d, (p, _) in zip(geo.kernel, geo.dilation, geo.padding))
    if min(before) < 0:
        return None
    ones = (1,) * len(geo.kernel)
    return Geometry(geo.kernel, ones, geo.dilation, tuple((b, 0) for b in before), geo.size, (0,) * len(ones), geo.out)


def _kept_cols(x: np.ndarray, geo: Geometry) -> np.ndarray | None:
    """The im2col matrices forward builds and backward reuses (see :class:`ConvCache`)."""
    if not _c_runs(x):
        return _im2col(x, geo)
    return _batch_cols(x, geo) if _batched(x, geo) else None


def _batched(x: np.ndarray, geo: Geometry) -> bool:
    """Whether the C path makes one im2col matrix for the batch (a pointwise window needs none)."""
    return not geo.pointwise and x.shape[0] * x.shape[1] * geo.taps * geo.positions * x.itemsize <= BATCHED_BYTES


def _batch_cols(x: np.ndarray, geo: Geometry) -> np.ndarray:
    cols = np.empty((x.shape[1] * geo.taps, x.shape[0] * geo.positions), dtype=x.dtype)
    _C.im2col(x, cols, *geo.c_args(x.shape[1], x.shape[0]))
    return cols


def _side_by_side(array: np.ndarray) -> np.ndarray:
    """(N, groups, rows, P) as (groups, rows, N*P), samples side by side (a copy)."""
    n, groups, rows, positions = array.shape
    return np.ascontiguousarray(array.transpose(1, 2, 0, 3)).reshape(groups, rows, n * positions)


class _Chunks:
    """The C path's im2col matrices of a large layer, a chunk of samples at a time: iterating gives
    ``(start, stop, X_hat)`` for samples [start, stop), X_hat (C*prod(k), (stop-start)*prod(out)),
    samples side by side as in the batch's matrix, each chunk within :data:`BATCHED_BYTES` (one
    sample at least) and built into one reused buffer. A pointwise window reads each sample in place."""

    def __init__(self, x: np.ndarray, geo: Geometry):
        self.x, self.geo = x, geo
        self.rows = x.shape[1] * geo.taps
        self.size = 1 if geo.pointwise else min(x.shape[0], _chunk(self.rows, geo.positions, x.itemsize))
        self.buffer = None if geo.pointwise else np.empty(self.size * self.rows * geo.positions, dtype=x.dtype)

    def __iter__(self) -> Iterator[tuple[int, int, np.ndarray]]:
        x, geo = self.x, self.geo
        for start in range(0, x.shape[0], self.size):
            stop = min(start + self.size, x.shape[0])
            if self.buffer is None:
                yield start, stop, x[start].reshape(self.rows, geo.positions)
                continue
            cols = self.buffer[:self.rows * (stop - start) * geo.positions].reshape(self.rows, -1)
            _C.im2col(x[start:stop], cols, *geo.c_args(x.shape[1], stop - start))
            yield start, stop, cols


def conv_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                  groups: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw, db)`` of a convolution from ``dy`` (N, F, *out)."""
    x, w, _, geo, groups = _conv_arguments(x, w, None, stride, padding, dilation, groups)
    x = np.ascontiguousarray(x)
    return conv_backward_cached(dy, ConvCache(x, w, geo, groups, _kept_cols(x, geo)))


def conv_backward_cached(dy: np.ndarray, cache: ConvCache, need_dx: bool = True,
                         counted: BackwardMacs | None = None) -> tuple[Any, np.ndarray, np.ndarray]:
    """:func:`conv_backward` from :func:`conv_forward_cached`'s cache.

    ``dW = sum_n dY_n X_hat_n^T`` accumulated sample by sample on the NumPy path, chunk by chunk of
    samples on the C path (BLAS reads the transposed X_hat in place, with no copy), ``dX_hat =
    W^T dY``, then col2im sums the windows back; the direct kernels' layers run them instead. With
    ``need_dx=False`` (a first layer, whose input needs no gradient) dx is None and neither
    ``W^T dY`` nor col2im runs. ``counted`` (a :class:`BackwardMacs`) gets the MACs of the
    products run, from their operand shapes.
    """
    counted = BackwardMacs() if counted is None else counted
    x, w, geo, groups = cache.x, cache.w, cache.geo, cache.groups
    dy = _array(dy, "dy")
    _expect_shape(dy, (x.shape[0], w.shape[0], *geo.out), "dy")
    dy = dy.astype(np.result_type(x, w, dy), copy=False)  # every product below in one dtype, on both backends
    if cache.direct and dy.dtype == x.dtype and (not _padded(geo) or np.isfinite(dy).all()):
        return _direct_backward(np.ascontiguousarray(dy), cache, need_dx, counted)
    n, f = dy.shape[:2]
    dy_g = np.ascontiguousarray(dy).reshape(n, groups, f // groups, geo.positions)
    w_t = w.reshape(groups, f // groups, -1).transpose(0, 2, 1)
    db = dy.sum(axis=(0, *range(2, dy.ndim)))
    if cache.cols is not None and cache.cols.ndim == 2:  # the C path's one matrix for the batch
        dy_t = np.ascontiguousarray(dy_g.transpose(1, 2, 0, 3)).reshape(groups, f // groups, n * geo.positions)
        cols_g = cache.cols.reshape(groups, -1, n * geo.positions)
        dw = matmul(dy_t, cols_g.transpose(0, 2, 1))
        counted.weight_grad += matmul_macs(dy_t.shape, cols_g.transpose(0, 2, 1).shape)
        if not need_dx:
            return None, dw.reshape(w.shape), db
        dcols = matmul(w_t, dy_t)
        counted.input_grad += matmul_macs(w_t.shape, dy_t.shape)
        dx = np.empty(x.shape, dtype=dcols.dtype)
        _C.col2im(dcols, dx, *geo.c_args(x.shape[1], n))
        return dx, dw.reshape(w.shape), db
    if cache.cols is not None:
        cols_g = cache.cols.reshape(n, groups, cache.cols.shape[1] // groups, geo.positions)
        dw = np.zeros((groups, f // groups, cols_g.shape[2]), dtype=np.result_type(dy, cache.cols))
        small = _small_product(f // groups, geo.positions, cols_g.shape[2])
        with one_blas_thread() if small else nullcontext():  # one limit for the loop
            for sample in range(n):
                dw += matmul(dy_g[sample], cols_g[sample].transpose(0, 2, 1))
                counted.weight_grad += matmul_macs(dy_g[sample].shape, cols_g[sample].transpose(0, 2, 1).shape)
        if not need_dx:
            return None, dw.reshape(w.shape), db
        dcols = matmul(w_t, dy_g)  # dX_hat = W^T dY
        counted.input_grad += matmul_macs(w_t.shape, dy_g.shape)
        dx = _col2im(dcols.reshape(n, x.shape[1] * geo.taps, geo.positions), tuple(x.shape), geo)
        return dx, dw.reshape(w.shape), db
    c = x.shape[1]
    dtype = np.result_type(dy, w)
    dw = np.zeros((groups, f // groups, c // groups * geo.taps), dtype=dtype)
    product = np.empty_like(dw)
    chunks = _Chunks(x, geo)
    dcols_buffer = None if geo.pointwise or not need_dx else np.empty(chunks.buffer.size, dtype=dtype)
    dx = np.empty(x.shape, dtype=dtype) if need_dx else None
    for start, stop, cols in chunks:
        count, cols = stop - start, cols.reshape(groups, -1, (stop - start) * geo.positions)
        # the chunk's dY side by side, as its X_hat: (groups, F/g, count*prod(out))
        dy_t = dy_g[start] if count == 1 else _side_by_side(dy_g[start:stop])
        matmul(dy_t, cols.transpose(0, 2, 1), out=product)
        counted.weight_grad += matmul_macs(dy_t.shape, cols.transpose(0, 2, 1).shape)
        dw += product
        if not need_dx:
            continue
        if geo.pointwise:  # a pointwise window's dX_hat is dX itself: written in place, no copy
            matmul(w_t, dy_t, out=dx[start].reshape(groups, c // groups, geo.positions))
        else:
            dcols = dcols_buffer[:cols.size].reshape(groups, c // groups * geo.taps, -1)
            matmul(w_t, dy_t, out=dcols)
            _C.col2im(dcols, dx[start:stop], *geo.c_args(c, count))
        counted.input_grad += matmul_macs(w_t.shape, dy_t.shape)
    return dx, dw.reshape(w.shape), db


def _pool_arguments(x: Any, kernel_size: Any, stride: Any, padding: Any, ceil_mode: Any,
                    dilation: Any = 1) -> tuple[np.ndarray, Geometry]:
    """Checked pooling arguments: x (N, C, *S) and the window (stride defaults to the kernel; padding <= k // 2,
    as PyTorch, whatever the dilation)."""
    x = _array(x, "x")
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be True or False, got {ceil_mode!r}")
    stride = kernel_size if stride is None else stride
    return x, geometry(x.shape, kernel_size, stride, padding, dilation, bool(ceil_mode), pooling=True)


def _divisor_override(value: Any) -> int:
    """A checked divisor_override: None (0 to the C code: the window's count) or an int >= 1."""
    if value is None:
        return 0
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"divisor_override must be None or an int, got {value!r}")
    if value < 1:
        raise ValueError(f"divisor_override must be >= 1, got {value}")
    return int(value)


def _pool_args(x_shape: tuple[int, ...], geo: Geometry) -> tuple[Any, ...]:
    """The pooling geometry as archcalc._kernels takes it: planes (N*C), then per-axis tuples."""
    return (x_shape[0] * x_shape[1], geo.size, geo.kernel, geo.steps, tuple(b for b, _ in geo.padding),
            tuple(a for _, a in geo.padding), geo.out)


def _upstream(dy: Any, x_shape: tuple[int, ...], geo: Geometry) -> np.ndarray:
    """A checked pooling gradient dy (N, C, *out)."""
    dy = _array(dy, "dy")
    _expect_shape(dy, (*x_shape[:2], *geo.out), "dy")
    return dy


def maxpool_forward(x: np.ndarray, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                    dilation: Any = 1) -> np.ndarray:
    """Max over each window (padding never wins; NaN propagates); stride defaults to the kernel size.

    ``dilation`` spaces the window's taps as PyTorch's MaxPool: the window spans ``d*(k-1) + 1``.
    """
    return maxpool_forward_argmax(x, kernel_size, stride, padding, ceil_mode, dilation)[0]


@dataclass(frozen=True)
class Argmax:
    """Where each window's maximum was: a tap of the window (NumPy path) or a flat index in its plane (C path)."""

    kind: str
    values: np.ndarray


def maxpool_forward_argmax(x: np.ndarray, kernel_size: Any, stride: Any = None, padding: Any = 0,
                           ceil_mode: bool = False, dilation: Any = 1) -> tuple[np.ndarray, Argmax, Geometry]:
    """:func:`maxpool_forward` plus each window's arg-max (first maximum; last NaN), for backward."""
    x, geo = _pool_arguments(x, kernel_size, stride, padding, ceil_mode, dilation)
    if _c_runs(x):
        x = np.ascontiguousarray(x)
        y = np.empty((*x.shape[:2], *geo.out), dtype=x.dtype)
        index = np.empty(y.shape, dtype=np.int64)
        _C.maxpool_forward(x, y, index, *_pool_args(x.shape, geo), geo.dilation)
        return y, Argmax("c", index), geo
    # the C loop, over taps instead of positions: a tap takes over where it is strictly greater,
    # where it is NaN, or where it is the window's first value inside the input
    y = np.zeros((*x.shape[:2], *geo.out), dtype=x.dtype)
    index = np.full(y.shape, -1, dtype=np.int64)
    for tap, outputs, inputs in _taps(geo):
        values, top, best = x[(*_ALL, *inputs)], y[(*_ALL, *outputs)], index[(*_ALL, *outputs)]
        takes = (best < 0) | (values > top) | np.isnan(values)
        np.copyto(top, values, where=takes)
        np.copyto(best, tap, where=takes)
    return y, Argmax("numpy", index), geo


def maxpool_backward(dy: np.ndarray, x: np.ndarray, kernel_size: Any, stride: Any = None, padding: Any = 0,
                     ceil_mode: bool = False, dilation: Any = 1) -> np.ndarray:
    """Gradient of max pooling: each window's gradient goes to its arg-max (first maximum; last NaN)."""
    _, argmax, geo = maxpool_forward_argmax(x, kernel_size, stride, padding, ceil_mode, dilation)
    return maxpool_backward_argmax(dy, argmax, np.shape(x), geo)


def maxpool_backward_argmax(dy: np.ndarray, argmax: Argmax, x_shape: tuple[int, ...], geo: Geometry) -> np.ndarray:
    """:func:`maxpool_backward` from the forward pass's arg-max; dx has dy's dtype."""
    x_shape = _input_shape(x_shape)
    dy = _upstream(dy, x_shape, geo)
    _expect_shape(argmax.values, dy.shape, "the arg-max")
    if argmax.kind == "c" and _c_runs(dy):
        dy = np.ascontiguousarray(dy)
        dx = np.empty(x_shape, dtype=dy.dtype)
        _C.maxpool_backward(dy, argmax.values, dx, *_pool_args(x_shape, geo), geo.dilation)
        return dx
    if argmax.kind == "c":  # an empty batch
        return np.zeros(x_shape, dtype=dy.dtype)
    return _scatter_add(x_shape, geo, dy.dtype, lambda tap: np.where(argmax.values == tap, dy, 0))


def _avg_divisor(geo: Geometry, count_include_pad: bool, dtype: Any, divisor_override: int = 0) -> np.ndarray:
    """Values each window averages over (1, 1, *out): the padded input, or the input alone; never the ceil-mode
    overhang; or ``divisor_override`` everywhere when it is above 0."""
    if divisor_override:
        return np.full((1, 1, *geo.out), divisor_override, dtype=dtype)
    divisor = np.ones((1, 1), dtype=dtype)
    for n, k, (before, after), o, s in zip(geo.size, geo.kernel, geo.padding, geo.out, geo.steps):
        start = np.arange(o, dtype=np.int64) * s - before
        low, high = (-before, n + after) if count_include_pad else (0, n)
        count = np.minimum(start + k, high) - np.maximum(start, low)
        divisor = divisor[..., None] * count.astype(dtype)
    return divisor


def avgpool_forward(x: np.ndarray, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                    count_include_pad: bool = True, divisor_override: int | None = None) -> np.ndarray:
    """Mean over each window (PyTorch's divisor rules); stride defaults to the kernel size.

    The divisor is the window's values within the padded input (``count_include_pad``), or within
    the input alone (TensorFlow's "same" average), or ``divisor_override`` (an int >= 1) for every
    window, as ``nn.AvgPool2d(divisor_override=...)``.
    """
    x, geo = _pool_arguments(x, kernel_size, stride, padding, ceil_mode)
    divisor = _divisor_override(divisor_override)
    if _c_runs(x):
        x = np.ascontiguousarray(x)
        y = np.empty((*x.shape[:2], *geo.out), dtype=x.dtype)
        _C.avgpool(x, y, True, bool(count_include_pad), *_pool_args(x.shape, geo), divisor)
        return y
    total = np.zeros((*x.shape[:2], *geo.out), dtype=x.dtype)
    for _, outputs, inputs in _taps(geo):
        total[(*_ALL, *outputs)] += x[(*_ALL, *inputs)]
    return total / _avg_divisor(geo, bool(count_include_pad), x.dtype, divisor)


def avgpool_backward(dy: np.ndarray, x: np.ndarray, kernel_size: Any, stride: Any = None, padding: Any = 0,
                     ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None) -> np.ndarray:
    """Gradient of average pooling: each window's gradient spread evenly over its divisor; dx has dy's dtype."""
    x, geo = _pool_arguments(x, kernel_size, stride, padding, ceil_mode)
    divisor = _divisor_override(divisor_override)
    dy = _upstream(dy, x.shape, geo)
    if _c_runs(dy):
        dx = np.empty(x.shape, dtype=dy.dtype)
        _C.avgpool(np.ascontiguousarray(dy), dx, False, bool(count_include_pad), *_pool_args(x.shape, geo), divisor)
        return dx
    share = dy / _avg_divisor(geo, bool(count_include_pad), dy.dtype, divisor)
    return _scatter_add(x.shape, geo, dy.dtype, lambda tap: share)


# ---------------------------------------------------------------------------------------- adaptive pooling
# PyTorch's adaptive windows are separable: output (i, j) averages (or maxes) the box of rows
# [start_i, end_i) and columns [start_j, end_j). Each axis is reduced through index arrays of at
# most ceil(size/out) + 1 values per output, never a loop over positions, so the work and memory
# stay within a few times the input plus the output. Short windows (the common case) are reduced
# tap by tap, a few whole-array operations per tap; long ones (few outputs over a long axis) from
# one gathered array.

#: Windows of at most this many values on an axis are reduced tap by tap.
_TAP_LOOP = 8


def adaptive_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's adaptive windows on one axis: output i reads ``[floor(i*size/out), ceil((i+1)*size/out))``.

    Windows may overlap and differ in size (13 -> 6: [0, 3), [2, 5), ...), and ``out`` may exceed
    ``size`` (1 -> 7 repeats the one value). Returns ``(start, end)``, int64 arrays of ``out``.
    """
    i = np.arange(out, dtype=np.int64)
    return i * size // out, -(-(i + 1) * size // out)


def _adaptive_gather(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Each window's input indices, padded to the longest window: ``(index, valid)``, both (out, longest)."""
    start, end = adaptive_windows(size, out)
    index = start[:, None] + np.arange(int((end - start).max()), dtype=np.int64)
    valid = index < end[:, None]
    return np.where(valid, index, start[:, None]), valid


def _adaptive_scatter(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """The transpose of :func:`_adaptive_gather`: for each input index, the windows that read it
    (a contiguous run, as starts and ends both grow with i), padded: ``(index, valid)``, (size, most)."""
    start, end = adaptive_windows(size, out)
    j = np.arange(size, dtype=np.int64)
    first = np.searchsorted(end, j, side="right")  # the first window ending after j
    last = np.searchsorted(start, j, side="right") - 1  # the last window starting at or before j
    index = first[:, None] + np.arange(int((last - first).max()) + 1, dtype=np.int64)
    valid = index <= last[:, None]
    return np.where(valid, index, first[:, None]), valid


def _axis_view(array: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """A per-axis array (its axes starting at ``axis``) shaped to broadcast against an ``ndim``-axis tensor."""
    return array.reshape((1,) * axis + array.shape + (1,) * (ndim - axis - array.ndim))


def _adaptive_sums(x: np.ndarray, maps: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Sum over the (index, valid) windows of each spatial axis in turn."""
    for axis, (index, valid) in zip(range(2, x.ndim), maps):
        if index.shape[1] > _TAP_LOOP:  # the window axis before the outputs': numpy adds whole slabs
            gathered = np.take(x, index.T, axis=axis)
            x = np.where(_axis_view(valid.T, axis, gathered.ndim), gathered, 0).sum(axis=axis)
            continue
        total = np.take(x, index[:, 0], axis=axis)  # every window has its first value
        for tap in range(1, index.shape[1]):
            part = np.take(x, index[:, tap], axis=axis)
            total += part if valid[:, tap].all() else np.where(_axis_view(valid[:, tap], axis, part.ndim), part, 0)
        x = total
    return x


def _adaptive_arguments(x: Any, output_size: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """Checked adaptive pooling arguments: x (N, C, *S) and one output size >= 1 per spatial axis."""
    x = _array(x, "x")
    _input_shape(x.shape)
    return x, _positive(output_size, x.ndim - 2, "output_size")


def _adaptive_counts(size: tuple[int, ...], out: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Values in each output's window, (1, 1, *out): the product of the per-axis window lengths."""
    counts = np.ones((1, 1), dtype=dtype)
    for n, o in zip(size, out):
        start, end = adaptive_windows(n, o)
        counts = counts[..., None] * (end - start).astype(dtype)
    return counts


def adaptive_avgpool_forward(x: np.ndarray, output_size: Any) -> np.ndarray:
    """PyTorch's adaptive average pooling: ``(N, C, *S) -> (N, C, *output_size)``, each output the
    mean of its window (:func:`adaptive_windows` per axis)."""
    x, out = _adaptive_arguments(x, output_size)
    total = _adaptive_sums(x, [_adaptive_gather(n, o) for n, o in zip(x.shape[2:], out)])
    return total / _adaptive_counts(x.shape[2:], out, x.dtype)


def adaptive_avgpool_backward(dy: np.ndarray, x_shape: tuple[int, ...], output_size: Any) -> np.ndarray:
    """Gradient of :func:`adaptive_avgpool_forward`: each output's gradient spread evenly over its
    window, summed where windows overlap; dx has dy's dtype."""
    x_shape = _input_shape(x_shape)
    out = _positive(output_size, len(x_shape) - 2, "output_size")
    dy = _array(dy, "dy")
    _expect_shape(dy, (*x_shape[:2], *out), "dy")
    share = dy / _adaptive_counts(x_shape[2:], out, dy.dtype)
    return _adaptive_sums(share, [_adaptive_scatter(n, o) for n, o in zip(x_shape[2:], out)])


def adaptive_maxpool_forward_argmax(x: np.ndarray, output_size: Any) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's adaptive max pooling and each output's arg-max, a flat index into its (N, C) plane.

    The rule is PyTorch's CPU kernel's: the first maximum in row-major window order wins, and
    a NaN always takes over (so NaN propagates and the last NaN is the arg-max). Both follow
    axis by axis, last axis first: the row-major first maximum lies in the first row holding the
    maximum, at that row's first maximum; the last NaN likewise.
    """
    x, out = _adaptive_arguments(x, output_size)
    values = x
    coords: list[np.ndarray] = []  # per reduced axis (last first), the input index each value came from
    for axis in reversed(range(2, x.ndim)):
        index, valid = _adaptive_gather(x.shape[axis], out[axis - 2])
        if index.shape[1] <= _TAP_LOOP:
            values, coords = _max_by_tap(values, coords, axis, index, valid)
            continue
        gathered = np.take(values, index, axis=axis)
        gathered = np.where(_axis_view(valid, axis, gathered.ndim), gathered, -np.inf)  # never wins
        nan = np.isnan(gathered)
        longest = index.shape[1]
        last_nan = longest - 1 - np.argmax(np.flip(nan, axis=axis + 1), axis=axis + 1)
        pick = np.expand_dims(np.where(nan.any(axis=axis + 1), last_nan, np.argmax(gathered, axis=axis + 1)), axis + 1)
        values = np.take_along_axis(gathered, pick, axis=axis + 1).squeeze(axis + 1)
        coords = [np.take_along_axis(np.take(c, index, axis=axis), pick, axis=axis + 1).squeeze(axis + 1) for c in coords]
        here = np.broadcast_to(_axis_view(index, axis, gathered.ndim), gathered.shape)
        coords.append(np.take_along_axis(here, pick, axis=axis + 1).squeeze(axis + 1))
    flat = np.zeros(values.shape, dtype=np.int64)
    for axis, coord in zip(range(2, x.ndim), reversed(coords)):
        flat = flat * x.shape[axis] + coord
    return values, flat


def _max_by_tap(values: np.ndarray, coords: list[np.ndarray], axis: int, index: np.ndarray,
                valid: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """One axis of :func:`adaptive_maxpool_forward_argmax`, tap by tap in window order: a tap takes
    over where it is strictly greater or NaN (the first maximum; the last NaN)."""
    top = np.take(values, index[:, 0], axis=axis)
    where = np.broadcast_to(_axis_view(index[:, 0], axis, top.ndim), top.shape).copy()
    kept = [np.take(c, index[:, 0], axis=axis) for c in coords]
    for tap in range(1, index.shape[1]):
        candidate = np.take(values, index[:, tap], axis=axis)
        takes = (candidate > top) | np.isnan(candidate)
        if not valid[:, tap].all():
            takes &= _axis_view(valid[:, tap], axis, top.ndim)
        np.copyto(top, candidate, where=takes)
        np.copyto(where, _axis_view(index[:, tap], axis, top.ndim), where=takes)
        for old, new in zip(coords, kept):
            np.copyto(new, np.take(old, index[:, tap], axis=axis), where=takes)
    return top, [*kept, where]


def adaptive_maxpool_backward(dy: np.ndarray, argmax: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    """Gradient of adaptive max pooling: each output's gradient added at its arg-max (a flat index
    into its plane, from :func:`adaptive_maxpool_forward_argmax`); dx has dy's dtype."""
    x_shape = _input_shape(x_shape)
    dy = _array(dy, "dy")
    argmax = np.asarray(argmax)
    planes, plane = x_shape[0] * x_shape[1], math.prod(x_shape[2:])
    if dy.shape[:2] != x_shape[:2] or argmax.shape != dy.shape or argmax.dtype != np.int64:
        raise ValueError(f"dy {dy.shape} and the int64 arg-max {argmax.shape} must be (N, C, *out) for input {x_shape}")
    if argmax.size and (argmax.min() < 0 or argmax.max() >= plane):
        raise ValueError(f"an arg-max lies outside a plane of {plane} values")
    at = (np.arange(planes, dtype=np.int64) * plane)[:, None] + argmax.reshape(planes, math.prod(argmax.shape[2:]))
    dx = np.bincount(at.ravel(), weights=dy.reshape(-1).astype(np.float64), minlength=planes * plane)
    return dx.astype(dy.dtype).reshape(x_shape)


# ---------------------------------------------------------------------------------------- the allocator
# NumPy's arrays come from the C library's malloc. glibc serves a block at or above its mmap
# threshold (128 KiB at first, raised to the size of each such block freed, up to 32 MiB) with a
# fresh mapping and unmaps it when freed, and gives the heap's top back to the system when more
# than twice that threshold is free there; so an executor step that allocates and frees the same
# activation-sized arrays every step can fault every page of them in again (lenet5 at batch 64:
# 233,000 page faults and 1 s of system time in 150 steps, 17 ms a step instead of 8-10, whenever
# the process's early frees had left the thresholds low). Fixed thresholds keep the freed blocks
# in the heap for the next step.

#: Bytes from which glibc maps a block of its own (:func:`keep_freed_memory`); the largest
#: activation or im2col chunk of the zoo's networks at their usual batches is below it. A glibc
#: that refuses it (before 2.27 the limit was 32 MiB on 64-bit) gets :data:`MALLOC_MMAP_FALLBACK`.
MALLOC_MMAP_THRESHOLD = 64 * 2**20
MALLOC_MMAP_FALLBACK = 32 * 2**20
#: Free bytes glibc's heap keeps at its top before it returns them to the system.
MALLOC_TRIM_THRESHOLD = 2 * MALLOC_MMAP_THRESHOLD
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_allocator_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks below :data:`MALLOC_MMAP_THRESHOLD` (or
    :data:`MALLOC_MMAP_FALLBACK` where glibc refuses that) in its heap for reuse, and up to
    :data:`MALLOC_TRIM_THRESHOLD` free at the heap's top, instead of giving them back to the system
    (``mallopt`` M_MMAP_THRESHOLD and M_TRIM_THRESHOLD, once per process, for all its allocations):
    the :class:`archcalc.execute.Executor` calls it. Returns whether both thresholds are set: False
    off glibc (the C library is asked by ``os.confstr``), where glibc refuses them, or with
    ``ARCHCALC_MALLOC=default`` in the environment, which leaves the allocator alone. Never raises."""
    global _allocator_kept
    if _allocator_kept is None:
        _allocator_kept = False
        try:
            glibc = (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
        except (ValueError, OSError, AttributeError):
            glibc = False
        choice = os.environ.get("ARCHCALC_MALLOC", "")
        if choice not in ("", "default"):
            _unknown_setting("ARCHCALC_MALLOC", choice, "default, or unset", "the thresholds are set")
        if glibc and choice != "default":
            import ctypes

            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int  # 1: set, 0: refused
            mapped = any(mallopt(_M_MMAP_THRESHOLD, size) == 1 for size in (MALLOC_MMAP_THRESHOLD, MALLOC_MMAP_FALLBACK))
            trimmed = mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD) == 1
            _allocator_kept = mapped and trimmed
    return _allocator_kept


# ---------------------------------------------------------------------------------------- two threads
# The element-wise C kernels (batchnorm, clamp) are memory-bound and release the GIL: a large array
# is split in two, one half on a helper thread, the other on the caller's, as PyTorch runs such
# ops on its intra-op threads. The helper waits on a queue (it never spins), so it does not fight
# BLAS's threads between calls. Every split computes exactly what one call would (per value, or
# per channel).

# (:data:`THREADS` above: 1 keeps them on the caller's thread; 2 or more splits them in two.)
#: Arrays below this many values run on one thread (a thread hand-off costs tens of microseconds).
PARALLEL_VALUES = 1 << 19
_helper: Any = None


def _forget_helper() -> None:
    global _helper
    _helper = None  # a forked child has no helper thread: it makes its own


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helper)


def _split(run: Callable[[int, int], None], count: int, values: int) -> None:
    """``run(first, last)`` over [0, count): in two halves on two threads when ``values`` (the data's size)
    is large, else at once. An exception from either half is raised here."""
    global _helper
    if THREADS < 2 or count < 2 or values < PARALLEL_VALUES:
        run(0, count)
        return
    if _helper is None:
        from concurrent.futures import ThreadPoolExecutor

        _helper = ThreadPoolExecutor(1, thread_name_prefix="archcalc-kernels")
    half = count // 2
    future = _helper.submit(run, 0, half)
    try:
        run(half, count)
    finally:
        future.result()


# ---------------------------------------------------------------------------------------- batch normalisation
# Channels-first (N, C, *spatial): statistics over N and the spatial axes, per channel. The C path
# sums in double in two passes (mean, then squared deviations); its element-wise arithmetic is the
# NumPy path's, in the dtype and in the same order, so forward outputs differ only by the statistics'
# rounding. Backward keeps nothing but the input and per-channel figures: x_hat is recomputed.


def _bn_axes(x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The reduced axes (N and the spatial ones) and the broadcast shape of a per-channel array."""
    return (0, *range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)


def batchnorm_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel of x (N, C, *spatial): the mean and the biased variance, in x's dtype."""
    if _c_runs(x) and x.ndim >= 2 and x.flags.c_contiguous:
        mean, var = np.empty(x.shape[1], dtype=x.dtype), np.empty(x.shape[1], dtype=x.dtype)
        _split(lambda first, last: _C.batchnorm_stats(x, mean, var, x.shape[0], x.shape[1], first, last), x.shape[1], x.size)
        return mean, var
    axes, _ = _bn_axes(x)
    return x.mean(axis=axes), x.var(axis=axes)


def batchnorm_forward(x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, weight: np.ndarray,
                      bias: np.ndarray) -> np.ndarray:
    """``(x - mean) * inv_std * weight + bias`` per channel of x (N, C, *spatial); all of one dtype."""
    if _c_runs(x) and x.flags.c_contiguous and _same_dtype(x, mean, inv_std, weight, bias):
        y = np.empty_like(x)
        args = (x, y, _contiguous(mean), _contiguous(inv_std), _contiguous(weight), _contiguous(bias), x.shape[0], x.shape[1])
        _split(lambda first, last: _C.batchnorm_forward(*args, first, last), x.shape[1], x.size)
        return y
    _, shape = _bn_axes(x)
    x_hat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
    return x_hat * weight.reshape(shape) + bias.reshape(shape)


def batchnorm_backward(dy: np.ndarray, x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, weight: np.ndarray,
                       training: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, d_weight, d_bias) of :func:`batchnorm_forward`, with x_hat = (x - mean) * inv_std recomputed.

    ``training``: mean and inv_std are the batch's own statistics (dx includes their gradient);
    otherwise they are fixed (the running averages).
    """
    dy = np.ascontiguousarray(dy)
    if _c_runs(x) and x.flags.c_contiguous and _same_dtype(x, dy, mean, inv_std, weight):
        dx = np.empty_like(x)
        d_weight, d_bias = np.empty(x.shape[1], dtype=x.dtype), np.empty(x.shape[1], dtype=x.dtype)
        args = (x, dy, dx, _contiguous(mean), _contiguous(inv_std), _contiguous(weight), d_weight, d_bias, x.shape[0],
                x.shape[1], bool(training))
        _split(lambda first, last: _C.batchnorm_backward(*args, first, last), x.shape[1], x.size)
        return dx, d_weight, d_bias
    axes, shape = _bn_axes(x)
    x_hat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
    d_weight, d_bias = (dy * x_hat).sum(axis=axes), dy.sum(axis=axes)
    d_hat = dy * weight.reshape(shape)
    if not training:
        return d_hat * inv_std.reshape(shape), d_weight, d_bias
    count = dy.size // dy.shape[1]
    dx = (d_hat - d_hat.mean(axis=axes, keepdims=True) - x_hat * (d_hat * x_hat).sum(axis=axes, keepdims=True) / count)
    return dx * inv_std.reshape(shape), d_weight, d_bias


def _same_dtype(first: np.ndarray, *others: np.ndarray) -> bool:
    return first.dtype in (np.float32, np.float64) and all(other.dtype == first.dtype for other in others)


def _contiguous(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).reshape(-1)


# ---------------------------------------------------------------------------------------- clamp
# ReLU (low 0, no high), ReLU6 and HardTanh. Backward reads the output: low < y < high holds exactly
# where low < x < high (the clamp is the identity there), so no mask is kept besides the output.


def clamp_forward(x: np.ndarray, low: float, high: float | None = None) -> np.ndarray:
    """``min(max(x, low), high)`` value by value (``high`` None: no upper bound), in x's dtype; NaN stays NaN."""
    if _c_runs(x) and x.flags.c_contiguous and x.dtype in (np.float32, np.float64):
        y = np.empty_like(x)
        flat_x, flat_y, bounds = x.reshape(-1), y.reshape(-1), (float(low), None if high is None else float(high))
        _split(lambda first, last: _C.clamp_forward(flat_x[first:last], flat_y[first:last], *bounds), x.size, x.size)
        return y
    return np.maximum(x, x.dtype.type(low)) if high is None else np.clip(x, x.dtype.type(low), x.dtype.type(high))


def clamp_backward(dy: np.ndarray, y: np.ndarray, low: float, high: float | None = None) -> np.ndarray:
    """The gradient of :func:`clamp_forward` from its output ``y``: ``dy * (low < y < high)``."""
    if _c_runs(y) and y.flags.c_contiguous and dy.flags.c_contiguous and _same_dtype(y, dy) and dy.shape == y.shape:
        dx = np.empty_like(y)
        flat_y, flat_dy, flat_dx = y.reshape(-1), dy.reshape(-1), dx.reshape(-1)
        bounds = (float(low), None if high is None else float(high))
        _split(lambda first, last: _C.clamp_backward(flat_y[first:last], flat_dy[first:last], flat_dx[first:last], *bounds),
               y.size, y.size)
        return dx
    mask = y > low if high is None else (y > low) & (y < high)
    return dy * mask


# ---------------------------------------------------------------------------------------- SGD


def sgd_step(weight: np.ndarray, grad: np.ndarray, velocity: np.ndarray | None, lr: float, momentum: float = 0.0,
             weight_decay: float = 0.0, first: bool = False) -> None:
    """One SGD step on ``weight`` in place, PyTorch's form: ``u = grad + weight_decay * weight``; with a
    ``velocity`` (momentum), ``velocity = u`` when ``first``, else ``momentum * velocity + u``, in place,
    and ``u = velocity``; then ``weight -= lr * u``. The C path runs it in one pass with the same
    arithmetic, in the dtype and in the same order; it holds no temporaries."""
    arrays = (weight, grad) if velocity is None else (weight, grad, velocity)
    if _c_runs(weight) and all(a.flags.c_contiguous and a.shape == weight.shape for a in arrays) and _same_dtype(*arrays):
        _C.sgd(weight, grad, velocity, float(lr), float(momentum), float(weight_decay), bool(first))
        return
    update = grad + weight_decay * weight if weight_decay else grad
    if velocity is not None:
        if first:
            np.copyto(velocity, update)
        else:
            velocity *= momentum
            velocity += update
        update = velocity
    weight -= lr * update


def erf(x: np.ndarray) -> np.ndarray:
    """The error function value by value, in x's dtype: the C library's ``erf`` in float64 (then
    rounded once to float32 for float32 input), as ``math.erf`` gives it, on the C path; per value
    through ``math.erf`` on the NumPy path (NumPy has no erf). GELU's exact form needs it.

    Raises:
        TypeError: x is not a float32 or float64 array.
    """
    x = _array(x, "x")
    wide = np.ascontiguousarray(x, dtype=np.float64)
    if _c_runs(wide):
        out = np.empty_like(wide)
        _C.erf(wide, out)
    else:
        out = np.frompyfunc(math.erf, 1, 1)(wide).astype(np.float64) if wide.size else wide.copy()
    return out.astype(x.dtype, copy=False)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax(h)`` over axis 1 (classes): ``h - max(h) - log(sum(exp(h - max(h))))``, finite
    even where a probability underflows to 0 (whose log would be -inf)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over axis 1 (classes): ``exp(log_softmax(h))``, shifted by the maximum for stability.
    The Softmax op and the cross-entropy both use it (formulas.softmax is the same on a list)."""
    return np.exp(log_softmax(logits))


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    ``J = -mean_i log softmax(h_i)[y_i]``; ``dJ/dh = (softmax(h) - onehot(y)) / N`` (the
    lecture's ``y_hat - y``, divided by N because J is the batch average).
    """
    n = logits.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    rows = np.arange(n)
    log_probs = log_softmax(logits)
    loss = float(-log_probs[rows, labels].mean())
    grad = np.exp(log_probs)
    grad[rows, labels] -= 1
    return loss, grad / n


def binary_cross_entropy_with_logits(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean binary cross-entropy of sigmoid(logits) against labels in [0, 1], and its gradient.

    ``J = mean(max(h, 0) - h*y + log(1 + exp(-|h|)))`` (the stable form from the logit, as
    PyTorch's ``binary_cross_entropy_with_logits``); ``dJ/dh = (sigmoid(h) - y) / h.size``.
    ``logits`` and ``labels`` have the same shape (N, 1) for a one-unit output. The scalar
    version is :func:`archcalc.formulas.binary_cross_entropy`.
    """
    if labels.shape != logits.shape:
        raise ValueError(f"labels must have shape {logits.shape}, got {labels.shape}")
    labels = labels.astype(logits.dtype, copy=False)
    e = np.exp(-np.abs(logits))  # in (0, 1]: never overflows
    loss = float((np.maximum(logits, 0) - logits * labels + np.log1p(e)).mean())
    probs = np.where(logits >= 0, 1 / (1 + e), e / (1 + e))
    return loss, (probs - labels) / logits.size


# ---------------------------------------------------------------------------------------- transposed conv
# A transposed conv is the input gradient of the conv it inverts (the "adjoint conv": kernel k,
# stride s, padding p, dilation d from the transposed conv's output back to its input), so it
# reuses that conv's machinery the other way round: forward is ``cols = W^T X`` then col2im into
# the output; backward is im2col of dY, then ``dX = W dY_hat`` and ``dW = X dY_hat^T``.


def conv_transpose_geometry(x_shape: tuple[int, ...], kernel: Any, stride: Any = 1, padding: Any = 0,
                            output_padding: Any = 0, dilation: Any = 1) -> Geometry:
    """The adjoint conv's window, over the transposed conv's output: ``size`` is the output,
    ``out`` the input (PyTorch's rule ``(in - 1)*s - 2p + d*(k - 1) + output_padding + 1``).

    Padding and output_padding are ints or one per axis (PyTorch's forms); output_padding must be
    below the stride or the dilation. Raises TypeError for non-int sizes and ValueError for bad
    values, an output below 1 or above :data:`MAX_EXTENT`.
    """
    x_shape = _input_shape(x_shape)
    spatial = x_shape[2:]
    rank = len(spatial)
    kernel = _positive(kernel, rank, "kernel")
    stride = _positive(stride, rank, "stride")
    dilation = _positive(dilation, rank, "dilation")
    pads = per_axis(_plain_ints(padding, "padding"), rank, "padding")
    extra = per_axis(_plain_ints(output_padding, "output_padding"), rank, "output_padding")
    if min(pads) < 0 or min(extra) < 0:
        raise ValueError(f"padding and output_padding must be >= 0, got {pads} and {extra}")
    out = []
    for n, k, s, p, d, e in zip(spatial, kernel, stride, pads, dilation, extra):
        try:
            size = formulas.conv_transpose_output_size(n, k, s, p, d, e)
        except RuleError as error:
            raise ValueError(str(error)) from None
        if size > MAX_EXTENT or n * s > MAX_EXTENT:
            raise ValueError(f"the output size {size} exceeds 2**53 values")
        out.append(size)
    # the adjoint conv reads the output at o*s + j*d - p; any overhang past the output's end
    # (output_padding beyond the padding) lands outside it, and col2im/im2col skip it
    padding_pairs = tuple((p, max(0, p - e)) for p, e in zip(pads, extra))
    return Geometry(kernel, stride, dilation, padding_pairs, tuple(spatial), (0,) * rank, tuple(out))


def _conv_transpose_arguments(x: Any, w: Any, b: Any, stride: Any, padding: Any, output_padding: Any, dilation: Any,
                              groups: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Geometry, int]:
    """Checked arguments: x (N, C, *S), w (C, F/groups, *k) as PyTorch stores it, b None or (F,)."""
    x, w = _array(x, "x"), _array(w, "w")
    b = None if b is None else _array(b, "b")
    if x.ndim != w.ndim or x.ndim not in (3, 4, 5):
        raise ValueError(f"x {x.shape} and w {w.shape} must both be (N, C, *spatial) / (C, F/groups, *kernel), 1D to 3D")
    groups = _plain_ints(groups, "groups")
    if groups < 1 or x.shape[1] % groups:
        raise ValueError(f"channels {x.shape[1]} must divide by groups={groups}")
    if w.shape[0] != x.shape[1] or w.shape[1] < 1:
        raise ValueError(f"w must be (C, F/groups, *kernel) with C = {x.shape[1]} and F/groups >= 1, got shape {w.shape}")
    if b is not None:
        _expect_shape(b, (w.shape[1] * groups,), "b")
    geo = conv_transpose_geometry(x.shape, w.shape[2:], stride, padding, output_padding, dilation)
    return x, w, b, geo, groups


@dataclass(frozen=True)
class ConvTransposeCache:
    """What :func:`conv_transpose_backward_cached` needs: the input, weights, the adjoint conv's
    geometry and the groups (no column matrix is kept: backward builds im2col of dY)."""

    x: np.ndarray
    w: np.ndarray
    geo: Geometry
    groups: int
    #: Multiply-accumulates the forward products performed (:func:`matmul_macs` of each).
    macs: int = 0


def _chunk(rows: int, positions: int, itemsize: int) -> int:
    """Samples per column matrix so that it stays within :data:`BATCHED_BYTES` (at least 1)."""
    return max(1, BATCHED_BYTES // max(1, rows * positions * itemsize))


def conv_transpose_workspace(batch: int, filters: int, taps: int, in_positions: int, itemsize: int = 4) -> int:
    """Values of the column matrix a transposed conv builds (forward's ``W^T X``, backward's
    im2col of dY) for one chunk of the batch: at most :data:`BATCHED_BYTES`, or one sample's."""
    rows = filters * taps
    return min(batch, _chunk(rows, in_positions, itemsize)) * rows * in_positions


def _channels_major(x: np.ndarray, groups: int) -> np.ndarray:
    """(B, C, P) -> (groups, C/groups, B*P): the samples side by side, as one GEMM operand."""
    n, c, p = x.shape
    if n == 1:
        return x.reshape(groups, c // groups, p)
    return np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(groups, c // groups, n * p)


def conv_transpose_forward_cached(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: Any = 1,
                                  padding: Any = 0, output_padding: Any = 0, dilation: Any = 1,
                                  groups: int = 1) -> tuple[np.ndarray, ConvTransposeCache]:
    """Transposed convolution (PyTorch's ConvTranspose1d/2d/3d): ``(N, C, *S), (C, F/g, *k) -> (N, F, *out)``.

    Per chunk of samples: ``cols = W^T X`` (one GEMM per group, the chunk's samples side by
    side on the C path) then col2im scatters each input value's kernel into the output. The
    MACs are counted from the GEMMs' operand shapes: ``c * (f/g) * prod(k) * prod(in)`` per sample.
    """
    x, w, b, geo, groups = _conv_transpose_arguments(x, w, b, stride, padding, output_padding, dilation, groups)
    x = np.ascontiguousarray(x)
    n, c = x.shape[:2]
    f = w.shape[1] * groups
    dtype = np.result_type(x, w)
    w_t = w.reshape(groups, c // groups, -1).transpose(0, 2, 1)  # (g, F/g*taps, C/g)
    y = np.empty((n, f, *geo.size), dtype=dtype)
    flat = x.reshape(n, c, geo.positions)
    macs = 0
    step = _chunk(f * geo.taps, geo.positions, dtype.itemsize)
    for start in range(0, n, step):
        stop = min(n, start + step)
        if _c_runs(x):
            operand = _channels_major(flat[start:stop], groups)
            cols = matmul(w_t, operand)  # (g, F/g*taps, B*P): (F*taps, B*P)
            macs += matmul_macs(w_t.shape, operand.shape)
            _C.col2im(cols.astype(dtype, copy=False), y[start:stop], *geo.c_args(f, stop - start))
        else:
            operand = flat[start:stop].reshape(stop - start, groups, c // groups, geo.positions)
            cols = matmul(w_t, operand)
            macs += matmul_macs(w_t.shape, operand.shape)
            y[start:stop] = _col2im(cols.reshape(stop - start, f * geo.taps, geo.positions), (stop - start, f, *geo.size), geo)
    if b is not None:
        y += b.reshape(1, f, *([1] * len(geo.size)))
    return y, ConvTransposeCache(x, w, geo, groups, macs)


def conv_transpose_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: Any = 1,
                           padding: Any = 0, output_padding: Any = 0, dilation: Any = 1, groups: int = 1) -> np.ndarray:
    """Transposed convolution: :func:`conv_transpose_forward_cached` without the cache."""
    return conv_transpose_forward_cached(x, w, b, stride, padding, output_padding, dilation, groups)[0]


def conv_transpose_backward_cached(dy: np.ndarray, cache: ConvTransposeCache, need_dx: bool = True,
                                   counted: BackwardMacs | None = None) -> tuple[Any, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw, db)`` of a transposed conv from dy (N, F, *out).

    Per chunk: ``dY_hat`` = im2col of dY over the adjoint conv's windows (F*prod(k) rows, one
    column per input position), ``dX = W dY_hat`` (the adjoint conv itself) and
    ``dW += X dY_hat^T``. With ``need_dx=False`` dx is None and that GEMM is skipped.
    ``counted`` (a :class:`BackwardMacs`) gets the MACs of the products run, from their operand shapes.
    """
    counted = BackwardMacs() if counted is None else counted
    x, w, geo, groups = cache.x, cache.w, cache.geo, cache.groups
    n, c = x.shape[:2]
    f = w.shape[1] * groups
    dy = _array(dy, "dy")
    _expect_shape(dy, (n, f, *geo.size), "dy")
    dtype = np.result_type(x, w, dy)
    dy = np.ascontiguousarray(dy, dtype=dtype)
    db = dy.sum(axis=(0, *range(2, dy.ndim)))
    w_g = w.reshape(groups, c // groups, -1).astype(dtype, copy=False)  # (g, C/g, F/g*taps)
    rows, positions = f * geo.taps, geo.positions
    flat = x.reshape(n, c, positions)
    dw = np.zeros(w_g.shape, dtype=dtype)
    dx = np.empty((n, c, positions), dtype=dtype) if need_dx else None
    step = _chunk(rows, positions, dtype.itemsize)
    for start in range(0, n, step):
        stop = min(n, start + step)
        count = stop - start
        if _c_runs(dy):
            dcols = np.empty((rows, count * positions), dtype=dtype)
            _C.im2col(dy[start:stop], dcols, *geo.c_args(f, count))
            dcols = dcols.reshape(groups, rows // groups, count * positions)
            operand = _channels_major(flat[start:stop], groups)
            # (dY_hat X^T)^T, not X dY_hat^T: OpenBLAS runs the wide-output form several times
            # faster for few channels (benchmarks/README.md)
            dw += matmul(dcols, operand.transpose(0, 2, 1)).transpose(0, 2, 1)
            counted.weight_grad += matmul_macs(dcols.shape, operand.transpose(0, 2, 1).shape)
            if need_dx:  # dX^T = dY_hat^T W^T, then back to (B, C, P)
                grad = matmul(dcols.transpose(0, 2, 1), w_g.transpose(0, 2, 1))  # (g, B*P, C/g)
                counted.input_grad += matmul_macs(dcols.transpose(0, 2, 1).shape, w_g.transpose(0, 2, 1).shape)
                dx[start:stop] = grad.reshape(groups, count, positions, c // groups).transpose(1, 0, 3, 2).reshape(count, c, positions)
        else:
            dcols = _im2col(dy[start:stop], geo).reshape(count, groups, rows // groups, positions)
            operand = flat[start:stop].reshape(count, groups, c // groups, positions)
            small = _small_product(dcols.shape[2], positions, operand.shape[2])
            with one_blas_thread() if small else nullcontext():  # one limit for the loop
                for sample in range(count):
                    dw += matmul(dcols[sample], operand[sample].transpose(0, 2, 1)).transpose(0, 2, 1)
                    counted.weight_grad += matmul_macs(dcols[sample].shape, operand[sample].transpose(0, 2, 1).shape)
            if need_dx:
                dx[start:stop] = matmul(w_g, dcols).reshape(count, c, positions)
                counted.input_grad += matmul_macs(w_g.shape, dcols.shape)
    return (None if dx is None else dx.reshape(x.shape)), dw.reshape(w.shape), db


def conv_transpose_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: Any = 1, padding: Any = 0,
                            output_padding: Any = 0, dilation: Any = 1, groups: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw, db)`` of :func:`conv_transpose_forward` from dy (N, F, *out)."""
    x, w, _, geo, groups = _conv_transpose_arguments(x, w, None, stride, padding, output_padding, dilation, groups)
    return conv_transpose_backward_cached(dy, ConvTransposeCache(np.ascontiguousarray(x), w, geo, groups))

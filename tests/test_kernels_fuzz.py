"""Fuzz of the public archcalc.kernels functions: any argument gives a clean exception or the right answer.

Random shapes (empty batches and zero channels included), kernels, strides, paddings and
dilations from small values to extreme integers, dtypes, non-contiguous and negative-stride
arrays, NaN and infinities. Every call runs on both backends; the checks: nothing crashes,
either both backends raise the same clean exception or both return equal results, and a valid
small case equals PyTorch when torch is installed. scripts/sanitize.sh runs this file with the C
extension built under AddressSanitizer and UndefinedBehaviorSanitizer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archcalc import kernels

needs_c = pytest.mark.skipif(kernels._C is None, reason="the C extension is not built")

#: The exceptions a public kernel function may raise for bad input or a result too large to allocate.
CLEAN = (ValueError, TypeError, OverflowError, MemoryError)

#: Skip valid cases whose arrays would be this many values or more (they exercise nothing new and
#: could allocate gigabytes lazily); sizes past CERTAINLY_REFUSED are run: no machine allocates them.
LARGEST = 2**16
CERTAINLY_REFUSED = 2**52

EXTREME = [0, -1, -(2**63), 2**31 - 1, 2**31, 2**32 + 1, 2**52, 2**53, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64 + 3]


def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    """Mostly small ints in [low, high], sometimes an extreme one (or a NumPy integer)."""
    small = st.integers(low, high)
    return st.one_of(small, small, small, st.sampled_from(EXTREME), small.map(np.int64))


@st.composite
def arrays(draw: Any, shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
    """An array of ``shape`` in a random layout (contiguous, strided, negative strides, Fortran) and values."""
    dtype = dtype or draw(st.sampled_from(["float64", "float32", "float32", "float64", "int64", "float16", "bool"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    layout = draw(st.sampled_from(["c", "strided", "reversed", "fortran"]))
    if layout == "strided":
        base = rng.standard_normal(tuple(2 * n for n in shape)) if shape else rng.standard_normal(())
        values = base[tuple(slice(None, None, 2) for _ in shape)]
    else:
        values = rng.standard_normal(shape)
        if layout == "reversed" and values.ndim:
            values = values[(slice(None, None, -1),) * values.ndim]
        elif layout == "fortran":
            values = np.asfortranarray(values)
    if values.size and draw(st.booleans()):  # NaN, infinities and ties
        specials = draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0]), min_size=1, max_size=4))
        spots = rng.integers(0, values.size, len(specials))
        index = np.unravel_index(spots, values.shape)
        values[index] = specials
    if dtype == "bool":
        return values > 0
    if dtype == "int64":
        return np.clip(np.nan_to_num(values * 10), -100, 100).astype(np.int64)
    return values.astype(dtype, copy=False)


def _axis_values(draw: Any, rank: int, low: int, high: int) -> Any:
    """An int or a tuple of ``rank`` (sometimes the wrong number of) ints."""
    form = draw(st.sampled_from(["int", "tuple", "tuple", "wrong length"]))
    if form == "int":
        return draw(_ints(low, high))
    count = rank if form == "tuple" else draw(st.sampled_from([r for r in range(5) if r != rank]))
    return tuple(draw(_ints(low, high)) for _ in range(count))


def _padding(draw: Any, rank: int, high: int) -> Any:
    form = draw(st.sampled_from(["int", "axis", "side", "pairs", "same", "valid", "float"]))
    if form == "int":
        return draw(_ints(0, high))
    if form == "axis":
        return [draw(_ints(0, high)) for _ in range(rank)]
    if form == "side":
        return [draw(_ints(0, high)) for _ in range(2 * rank)]
    if form == "pairs":
        return [(draw(_ints(0, high)), draw(_ints(0, high))) for _ in range(rank)]
    if form == "float":
        return 1.5
    return form


@st.composite
def window_cases(draw: Any, pool: bool) -> dict[str, Any]:
    rank = draw(st.integers(1, 3))
    shape = (draw(st.sampled_from([0, 1, 1, 2])), draw(st.sampled_from([0, 1, 2, 3, 3])),
             *(draw(st.integers(1, 6)) for _ in range(rank)))
    case = {
        "x": draw(arrays(shape)),
        "kernel": _axis_values(draw, rank, 1, 4),
        "stride": draw(st.none()) if pool and draw(st.booleans()) else _axis_values(draw, rank, 1, 4),
        "padding": _padding(draw, rank, 2),
    }
    case["dilation"] = _axis_values(draw, rank, 1, 3)  # max-pool's and conv's
    if pool:
        case["ceil_mode"] = draw(st.booleans())
        case["count_include_pad"] = draw(st.booleans())
        case["divisor_override"] = draw(st.sampled_from([None, None, 1, 3, 0, -2, 2**62, 1.5, True]))
    return case


def _largest(case: dict[str, Any], pool: bool) -> int | None:
    """Values in the largest array the call makes, or None when the geometry is refused."""
    x = case["x"]
    if pool:  # the max-pool's (dilated) and the average's windows
        stride = case["kernel"] if case["stride"] is None else case["stride"]
        sizes = [x.size]
        for dilation in (case["dilation"], 1):
            try:
                geo = kernels.geometry(x.shape, case["kernel"], stride, case["padding"], dilation, case["ceil_mode"], pooling=True)
            except CLEAN:
                continue
            sizes.append(math.prod(x.shape[:2]) * geo.positions)
        return max(sizes) if len(sizes) > 1 else None
    try:
        geo = kernels.geometry(x.shape, case["kernel"], case["stride"], case["padding"], case["dilation"])
    except CLEAN:
        return None
    return max(x.size, math.prod(x.shape[:2]) * geo.positions * geo.taps)


def _skip_huge(case: dict[str, Any], pool: bool) -> None:
    from hypothesis import assume

    values = _largest(case, pool)
    assume(values is None or values < LARGEST or values >= CERTAINLY_REFUSED)


def _outcome(call: Any) -> Any:
    """The call's result, or the type of its clean exception; any other exception fails the test."""
    try:
        return call()
    except CLEAN as error:
        return type(error)


def _on_both(call: Any) -> tuple[Any, Any]:
    outcomes = []
    for name in ("c", "numpy"):
        with kernels.backend(name):
            outcomes.append(_outcome(call))
    return outcomes[0], outcomes[1]


def _assert_agree(c_result: Any, numpy_result: Any, exact: bool = False) -> None:
    if isinstance(c_result, type) or isinstance(numpy_result, type):
        assert c_result == numpy_result, f"C gave {c_result!r}, NumPy gave {numpy_result!r}"
        return
    c_arrays = c_result if isinstance(c_result, tuple) else (c_result,)
    numpy_arrays = numpy_result if isinstance(numpy_result, tuple) else (numpy_result,)
    for ours, reference in zip(c_arrays, numpy_arrays):
        if isinstance(ours, (kernels.Argmax, kernels.Geometry)):
            continue
        assert ours.shape == reference.shape and ours.dtype == reference.dtype
        if exact:
            np.testing.assert_array_equal(ours, reference)
        else:
            tol = 1e-4 if ours.dtype == np.float32 else 1e-10
            np.testing.assert_allclose(ours, reference, rtol=tol, atol=tol, equal_nan=True)


FUZZ = settings(max_examples=200, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@needs_c
@FUZZ
@given(case=window_cases(pool=False), data=st.data())
def test_im2col_and_col2im_fuzz(case, data):
    _skip_huge(case, pool=False)
    x, geo_args = case["x"], (case["kernel"], case["stride"], case["padding"], case["dilation"])
    c_cols, numpy_cols = _on_both(lambda: kernels.im2col(x, *geo_args))
    _assert_agree(c_cols, numpy_cols, exact=True)
    if isinstance(c_cols, type):
        return
    # col2im of a right-sized (sometimes wrong-sized, wrongly typed or strided) matrix
    shape = data.draw(st.sampled_from([c_cols.shape, c_cols.shape, (*c_cols.shape[:2], c_cols.shape[2] + 1)]))
    cols = data.draw(arrays(shape, data.draw(st.sampled_from([str(x.dtype), "float32", "float64", "int64"]))))
    _assert_agree(*_on_both(lambda: kernels.col2im(cols, x.shape, *geo_args)))


@needs_c
@FUZZ
@given(case=window_cases(pool=False), data=st.data())
def test_conv_fuzz(case, data):
    _skip_huge(case, pool=False)
    x = case["x"]
    rank = x.ndim - 2
    groups = data.draw(st.sampled_from([1, 1, 2, 0]))
    kernel = case["kernel"] if isinstance(case["kernel"], tuple) and len(case["kernel"]) == rank else (case["kernel"],) * rank
    if not all(isinstance(k, (int, np.integer)) and 1 <= k <= 4 for k in kernel):
        kernel = (2,) * rank
    filters = data.draw(st.sampled_from([1, 2, 4, 0]))
    w = data.draw(arrays((filters, max(x.shape[1] // max(groups, 1), 0), *kernel), data.draw(st.sampled_from(["float32", "float64"]))))
    b = data.draw(st.one_of(st.none(), arrays((filters,), str(w.dtype))))
    args = (case["stride"], case["padding"], case["dilation"], groups)
    c_y, numpy_y = _on_both(lambda: kernels.conv_forward(x, w, b, *args))
    _assert_agree(c_y, numpy_y)
    if isinstance(c_y, type):
        return
    dy = data.draw(arrays(c_y.shape, str(c_y.dtype)))
    _assert_agree(*_on_both(lambda: kernels.conv_backward(dy, x, w, *args)))


@needs_c
@FUZZ
@given(case=window_cases(pool=True), data=st.data())
def test_pooling_fuzz(case, torch_or_none, data):
    _skip_huge(case, pool=True)
    x, args = case["x"], (case["kernel"], case["stride"], case["padding"], case["ceil_mode"])
    max_args, avg_args = (*args, case["dilation"]), (*args, case["count_include_pad"], case["divisor_override"])
    c_max, numpy_max = _on_both(lambda: kernels.maxpool_forward(x, *max_args))
    _assert_agree(c_max, numpy_max, exact=True)
    c_avg, numpy_avg = _on_both(lambda: kernels.avgpool_forward(x, *avg_args))
    _assert_agree(c_avg, numpy_avg)
    for result, backward, pool_args in ((c_max, kernels.maxpool_backward, max_args), (c_avg, kernels.avgpool_backward, avg_args)):
        if not isinstance(result, type):
            dy = data.draw(arrays(result.shape, data.draw(st.sampled_from([str(result.dtype), "float32", "int64"]))))
            _assert_agree(*_on_both(lambda dy=dy, backward=backward, pool_args=pool_args: backward(dy, x, *pool_args)))
    if torch_or_none is not None:
        _check_pool_against_torch(torch_or_none, x, case, c_max, c_avg)


def _torch_pool_arguments(x: np.ndarray, case: dict[str, Any], dilation: Any) -> dict[str, Any] | None:
    """torch's keyword arguments for the case's window, or None where torch takes other arguments or hangs."""
    stride = case["kernel"] if case["stride"] is None else case["stride"]
    geo = kernels.geometry(x.shape, case["kernel"], stride, case["padding"], dilation, case["ceil_mode"], pooling=True)
    if x.shape[0] == 0 or any(b != a for b, a in geo.padding) or max(geo.kernel) > 64 or max(geo.dilation) > 64:
        return None  # torch's own loops hang on a kernel of 2**62 (it iterates over the whole window)
    # a stride past the padded input gives the same windows; torch's avg_pool overflows on 2**62
    stride = tuple(min(s, n + b + a) for s, n, (b, a) in zip(geo.stride, geo.size, geo.padding))
    return {"kernel_size": geo.kernel, "stride": stride, "padding": tuple(b for b, _ in geo.padding), "ceil_mode": case["ceil_mode"]}


def _check_pool_against_torch(torch: Any, x: np.ndarray, case: dict[str, Any], y_max: Any, y_avg: Any) -> None:
    """The pooling results equal PyTorch's where torch takes the same arguments (symmetric padding, a batch;
    divisor_override in 2D and 3D only)."""
    rank = x.ndim - 2
    F = torch.nn.functional
    xt = torch.tensor(np.ascontiguousarray(x)) if x.dtype in (np.float32, np.float64) else None
    if not isinstance(y_max, type) and xt is not None:
        kw = _torch_pool_arguments(x, case, case["dilation"])
        if kw is not None:
            dilation = kernels.geometry(x.shape, 1, 1, 0, case["dilation"]).dilation
            theirs = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[rank - 1](xt, dilation=dilation, **kw)
            np.testing.assert_array_equal(y_max, theirs.numpy())
    divisor = case["divisor_override"]
    if isinstance(y_avg, type) or xt is None or (divisor is not None and rank == 1):
        return
    kw = _torch_pool_arguments(x, case, 1)
    if kw is None or (divisor is not None and divisor > 2**31):
        return
    if divisor is not None:
        kw["divisor_override"] = divisor
    theirs = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[rank - 1](xt, count_include_pad=case["count_include_pad"], **kw)
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y_avg, theirs.numpy(), rtol=tol, atol=tol, equal_nan=True)


@pytest.fixture
def torch_or_none():
    """PyTorch when installed (the fuzz then also checks against it), else None."""
    try:
        from tests.torch_oracle import torch
    except ImportError:
        return None
    return torch


# ------------------------------------------------------------------ the raw extension

def _c_geometry(draw: Any, rank: int) -> tuple[tuple[int, ...], ...]:
    """Per-axis tuples for the raw extension: mostly small, sometimes extreme or negative."""
    return tuple(tuple(draw(_ints(low, 5)) for _ in range(rank)) for low in (1, 1, 1, 1, 0, 0, 1))


@needs_c
@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_raw_extension_never_touches_memory_it_does_not_own(data):
    """Any geometry and any buffers: the C functions run or raise; they never read or write out of bounds.

    (Without the sanitizers an overrun can go unnoticed; under scripts/sanitize.sh it aborts the run.)
    """
    from archcalc import _kernels as c

    rank = data.draw(st.integers(1, 3))
    size, kernel, stride, dilation, pad, pad_after, out = _c_geometry(data.draw, rank)
    channels, batch = data.draw(_ints(0, 3)), data.draw(_ints(0, 2))
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    src = np.random.default_rng(0).standard_normal(data.draw(st.integers(0, 200))).astype(dtype)
    dst = np.full(data.draw(st.integers(0, 200)), 7, dtype=dtype)
    index = np.zeros(dst.size, dtype=np.int64)
    calls = [
        lambda: c.im2col(src, dst, channels, size, kernel, stride, dilation, pad, out, batch),
        lambda: c.col2im(src, dst, channels, size, kernel, stride, dilation, pad, out, batch),
        lambda: c.maxpool_forward(src, dst, index, channels, size, kernel, stride, pad, pad_after, out),
        lambda: c.maxpool_forward(src, dst, index, channels, size, kernel, stride, pad, pad_after, out, dilation),
        lambda: c.avgpool(src, dst, data.draw(st.booleans()), data.draw(st.booleans()), channels, size, kernel, stride, pad,
                          pad_after, out),
        lambda: c.avgpool(src, dst, data.draw(st.booleans()), data.draw(st.booleans()), channels, size, kernel, stride, pad,
                          pad_after, out, data.draw(_ints(0, 5))),
    ]
    weights = np.random.default_rng(1).standard_normal(data.draw(st.integers(0, 200))).astype(dtype)
    groups, filters, threads = data.draw(_ints(0, 3)), data.draw(_ints(0, 6)), data.draw(_ints(0, 4))
    for which in (0, 1, 2):  # the direct conv kernels: forward, input gradient, weight gradient
        calls.append(lambda which=which: c.conv_direct(which, src, weights, dst, channels, size, kernel, stride, dilation,
                                                       pad, out, batch, groups, filters, threads))
    for call in calls:
        _outcome(call)
    backward_index = np.full(src.size, data.draw(st.sampled_from([-1, 0, 3, 2**40])), dtype=np.int64)
    _outcome(lambda: c.maxpool_backward(src, backward_index, dst, channels, size, kernel, stride, pad, pad_after, out))
    _outcome(lambda: c.maxpool_backward(src, backward_index, dst, channels, size, kernel, stride, pad, pad_after, out, dilation))


# ------------------------------------------------------------------ batch normalisation

@st.composite
def batchnorm_cases(draw: Any) -> dict[str, Any]:
    """x (N, C, *spatial) with 0 to 3 spatial axes in a random layout, its dtype's per-channel arrays."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), *(draw(st.integers(1, 7)) for _ in range(draw(st.integers(0, 3)))))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    channels = shape[1]
    return {
        "x": draw(arrays(shape, dtype)) * draw(st.sampled_from([1.0, 1e-3, 50.0])) + draw(st.sampled_from([0.0, 3.0])),
        "dy": draw(arrays(shape, dtype)),
        "weight": rng.standard_normal(channels).astype(dtype),
        "bias": rng.standard_normal(channels).astype(dtype),
        "training": draw(st.booleans()),
    }


def _assert_same_on_two_threads(call: Any) -> None:
    """The call gives the same arrays, bit for bit, split over two threads (every array split: the
    smallest size made large) as on one."""
    saved = kernels.THREADS, kernels.PARALLEL_VALUES
    try:
        kernels.THREADS, kernels.PARALLEL_VALUES = 1, 1
        one = call()
        kernels.THREADS = 2
        two = call()
    finally:
        kernels.THREADS, kernels.PARALLEL_VALUES = saved
    for ours, reference in zip(two, one):
        np.testing.assert_array_equal(ours, reference)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN and infinities on purpose
@needs_c
@FUZZ
@given(case=batchnorm_cases())
def test_batchnorm_kernels_c_equal_numpy(case):
    """The C batchnorm (statistics summed in double) equals the NumPy reference within rounding, every
    layout (non-contiguous arrays take the NumPy path) and special value; the forward's element-wise
    arithmetic is the reference's own, so given the same statistics it is equal bit for bit."""
    x, dy, weight, bias = case["x"].astype(case["dy"].dtype, copy=False), case["dy"], case["weight"], case["bias"]
    _assert_same_on_two_threads(lambda: (*kernels.batchnorm_stats(x), *kernels.batchnorm_backward(dy, x, weight, bias, weight,
                                                                                                  case["training"])))
    (c_mean, c_var), (numpy_mean, numpy_var) = _on_both(lambda: kernels.batchnorm_stats(x))
    _assert_agree((c_mean, c_var), (numpy_mean, numpy_var))
    inv_std = (1 / np.sqrt(numpy_var + 1e-5)).astype(x.dtype)
    c_y, numpy_y = _on_both(lambda: kernels.batchnorm_forward(x, numpy_mean, inv_std, weight, bias))
    _assert_agree(c_y, numpy_y, exact=True)
    c_grads, numpy_grads = _on_both(lambda: kernels.batchnorm_backward(dy, x, numpy_mean, inv_std, weight, case["training"]))
    for ours, reference in zip(c_grads, numpy_grads):
        assert ours.shape == reference.shape and ours.dtype == reference.dtype
        # dx's terms cancel (their sum over a channel is 0): compare against the terms' size
        scale = np.max(np.abs(reference[np.isfinite(reference)]), initial=1.0)
        tol = 1e-4 if x.dtype == np.float32 else 1e-10
        np.testing.assert_allclose(ours, reference, rtol=tol, atol=tol * scale, equal_nan=True)


@needs_c
@settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_raw_batchnorm_and_clamp_never_touch_memory_they_do_not_own(data):
    """Any batch, channel count and buffer lengths: the C batchnorm and clamp run or raise a clean exception."""
    from archcalc import _kernels as c

    batch, channels = data.draw(_ints(0, 3)), data.draw(_ints(0, 4))
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    lengths = [data.draw(st.integers(0, 40)) for _ in range(8)]
    arrays_ = [np.ones(n, dtype=data.draw(st.sampled_from([dtype, dtype, dtype, "float16"]))) for n in lengths]
    x, y, dx, mean, inv_std, weight, d_weight, d_bias = arrays_
    first, last = data.draw(_ints(-1, 5)), data.draw(_ints(-2, 5))
    for call in (lambda: c.batchnorm_stats(x, mean, inv_std, batch, channels),
                 lambda: c.batchnorm_stats(x, mean, inv_std, batch, channels, first, last),
                 lambda: c.batchnorm_forward(x, y, mean, inv_std, weight, d_bias, batch, channels, first, last),
                 lambda: c.batchnorm_backward(x, y, dx, mean, inv_std, weight, d_weight, d_bias, batch, channels, True, first,
                                              last),
                 lambda: c.batchnorm_forward(x, y, mean, inv_std, weight, d_bias, batch, channels),
                 lambda: c.batchnorm_backward(x, y, dx, mean, inv_std, weight, d_weight, d_bias, batch, channels,
                                              data.draw(st.booleans())),
                 lambda: c.clamp_forward(x, y, 0.0, data.draw(st.sampled_from([None, 6.0, "6"]))),
                 lambda: c.clamp_backward(x, y, dx, -1.0, data.draw(st.sampled_from([None, 1.0])))):
        _outcome(call)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN and infinities on purpose
@needs_c
@FUZZ
@given(data=st.data())
def test_clamp_kernels_c_equal_numpy(data):
    """ReLU's, ReLU6's and HardTanh's clamp and its gradient from the output: C == NumPy exactly,
    NaN and infinities included, in every layout (non-contiguous arrays take the NumPy path)."""
    shape = tuple(data.draw(st.integers(0, 5)) for _ in range(data.draw(st.integers(1, 4))))
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    x, dy = data.draw(arrays(shape, dtype)), data.draw(arrays(shape, dtype))
    low, high = data.draw(st.sampled_from([(0.0, None), (0.0, 6.0), (-1.0, 1.0), (-0.5, 0.25), (0.1, 0.3)]))
    _assert_same_on_two_threads(lambda: (kernels.clamp_forward(x, low, high),
                                         kernels.clamp_backward(dy, np.ascontiguousarray(x), low, high)))
    c_y, numpy_y = _on_both(lambda: kernels.clamp_forward(x, low, high))
    _assert_agree(c_y, numpy_y, exact=True)
    _assert_agree(*_on_both(lambda: kernels.clamp_backward(dy, numpy_y, low, high)), exact=True)
    # the mask of the output is the mask of the input (PyTorch's rule: 0 at the bounds)
    f32 = x.dtype.type
    mask = x > f32(low) if high is None else (x > f32(low)) & (x < f32(high))
    np.testing.assert_array_equal(kernels.clamp_backward(dy, numpy_y, low, high), dy * mask)


@needs_c
@FUZZ
@given(data=st.data())
def test_planar_maxpool_fast_path_equals_numpy(data):
    """1D and 2D max-pools of dilation 1 (the C fast path: tap by tap over a row of outputs, branch-free)
    equal the NumPy reference exactly, arg-max included: ties (the first maximum wins), NaN (the last
    NaN wins), infinities, windows clipped by padding and by ceil mode, rows wider than a vector."""
    rank = data.draw(st.integers(1, 2))
    shape = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3)), *(data.draw(st.integers(1, 40)) for _ in range(rank)))
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.integers(-3, 4, size=shape).astype(dtype) if data.draw(st.booleans()) else rng.standard_normal(shape).astype(dtype)
    if data.draw(st.booleans()):
        spots = rng.integers(0, x.size, 5)
        x.reshape(-1)[spots] = rng.choice([np.nan, np.inf, -np.inf], 5)
    kernel = tuple(data.draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(data.draw(st.integers(1, 4)) for _ in range(rank))
    padding = tuple(data.draw(st.integers(0, k // 2)) for k in kernel)
    ceil_mode = data.draw(st.booleans())
    from hypothesis import assume

    try:
        kernels.geometry(x.shape, kernel, stride, padding, 1, ceil_mode, pooling=True)
    except CLEAN:
        assume(False)
    results = []
    for name in ("c", "numpy"):
        with kernels.backend(name):
            y, argmax, geo = kernels.maxpool_forward_argmax(x, kernel, stride, padding, ceil_mode)
            dy = np.arange(y.size, dtype=dtype).reshape(y.shape)
            results.append((y, kernels.maxpool_backward_argmax(dy, argmax, x.shape, geo)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@needs_c
@FUZZ
@given(data=st.data())
def test_sgd_step_c_equals_numpy(data):
    """The one-pass C SGD step equals the NumPy reference bit for bit over two steps (the first sets the
    velocity), with and without momentum and weight decay, NaN and infinities included; arrays in another
    layout or dtype take the NumPy path."""
    shape = tuple(data.draw(st.integers(1, 6)) for _ in range(data.draw(st.integers(1, 3))))
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    weight0 = data.draw(arrays(shape, dtype))
    grads = [data.draw(arrays(shape, dtype)), data.draw(arrays(shape, dtype))]
    lr = data.draw(st.sampled_from([0.1, 1e-3, 0.0]))
    momentum = data.draw(st.sampled_from([0.0, 0.9, 0.5]))
    weight_decay = data.draw(st.sampled_from([0.0, 1e-4, 0.5]))
    results = []
    for name in ("c", "numpy"):
        with kernels.backend(name), np.errstate(all="ignore"):  # infinities overflow on purpose
            weight = np.array(weight0)
            velocity = np.empty_like(weight) if momentum else None
            for step, grad in enumerate(grads):
                kernels.sgd_step(weight, grad, velocity, lr, momentum, weight_decay, first=step == 0)
            results.append((weight, velocity))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    if momentum:
        np.testing.assert_array_equal(results[0][1], results[1][1])

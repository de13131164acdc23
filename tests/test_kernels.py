"""archcalc.kernels: conv and pooling on arrays, against PyTorch, and im2col's adjoint."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archcalc import kernels


@pytest.fixture
def torch():
    """PyTorch, the oracle; the tests that need it skip without it."""
    return pytest.importorskip("tests.torch_oracle").torch


@st.composite
def conv_cases(draw):
    """Random valid conv settings, degenerate ones included (1x1 input, kernel == padded input, stride > kernel)."""
    rank = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    c, f = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    form = draw(st.sampled_from(["int", "axis", "side", "same", "valid"]))
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    if form == "int":
        padding = draw(st.integers(0, 2))
    elif form == "axis":
        padding = [draw(st.integers(0, 2)) for _ in range(rank)]
    elif form == "side":
        padding = [draw(st.integers(0, 2)) for _ in range(2 * rank)]
    else:
        padding = form
    pads = kernels.geometry((1, 1, *[64] * rank), kernel, stride, padding, dilation).padding if form != "same" else None
    low = [max(1, s - (sum(p) if pads else 0)) for s, p in zip(spans, pads or [(0, 0)] * rank)]
    size = tuple(draw(st.integers(lo, lo + 6)) for lo in low)
    return (draw(st.integers(1, 2)), c, size), (f, c // groups, *kernel), stride, padding, dilation, groups


def _torch_conv(torch, x, w, b, geo, groups):
    F = torch.nn.functional
    pads = [p for pair in reversed(geo.padding) for p in pair]
    xt = F.pad(x, pads)
    conv = (F.conv1d, F.conv2d, F.conv3d)[w.dim() - 3]
    return conv(xt, w, b, geo.stride, 0, geo.dilation, groups)


@settings(max_examples=120, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=conv_cases())
def test_conv_forward_backward_match_torch(torch, case):
    (n, c, size), w_shape, stride, padding, dilation, groups = case
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((n, c, *size)), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    geo = kernels.geometry(x.shape, w_shape[2:], stride, padding, dilation)
    y = kernels.conv_forward(x, w, b, stride, padding, dilation, groups)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = _torch_conv(torch, xt, wt, bt, geo, groups)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    dx, dw, db = kernels.conv_backward(dy, x, w, stride, padding, dilation, groups)
    for ours, theirs in ((dx, xt.grad), (dw, wt.grad), (db, bt.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-10, atol=1e-10)


@settings(max_examples=80, derandomize=True, deadline=None)
@given(case=conv_cases())
def test_col2im_is_the_adjoint_of_im2col(case):
    """<im2col(x), y> == <x, col2im(y)> for every geometry."""
    (n, c, size), w_shape, stride, padding, dilation, _ = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, *size))
    cols = kernels.im2col(x, w_shape[2:], stride, padding, dilation)
    y = rng.standard_normal(cols.shape)
    back = kernels.col2im(y, x.shape, w_shape[2:], stride, padding, dilation)
    assert np.vdot(cols, y) == pytest.approx(np.vdot(x, back), rel=1e-12, abs=1e-12)


def test_im2col_matches_the_lectures_1d_example():
    """The lecture's 1D example: x = [1, 0, 2, 2, 3, 1], k = 3, s = 2: x_hat[i, t] = x[t*s + i]."""
    x = np.array([1, 0, 2, 2, 3, 1], dtype=float).reshape(1, 1, 6)
    cols = kernels.im2col(x, 3, stride=2)
    expected = np.array([[x[0, 0, t * 2 + i] for t in range(2)] for i in range(3)])
    np.testing.assert_array_equal(cols[0], expected)
    w = np.array([3, 2, 1], dtype=float).reshape(1, 1, 3)
    np.testing.assert_array_equal(kernels.conv_forward(x, w, stride=2)[0, 0], w.reshape(3) @ expected)


@pytest.mark.parametrize("kw", [
    {"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}, {"kernel_size": 3, "stride": 2, "ceil_mode": True},
    {"kernel_size": (3, 2), "stride": (1, 2), "padding": (1, 0), "ceil_mode": True}, {"kernel_size": 3, "stride": 3, "ceil_mode": True},
])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_pooling_matches_torch(torch, kw, rank):
    F = torch.nn.functional
    kw = dict(kw)
    if rank != 2:
        kw = {k: (v[0] if isinstance(v, tuple) else v) for k, v in kw.items()}
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((2, 3, *[7 + i for i in range(rank)]))
    xt = torch.tensor(x, requires_grad=True)
    torch_max = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[rank - 1]
    yt = torch_max(xt, **kw)
    dy = rng.standard_normal(yt.shape)
    yt.backward(torch.tensor(dy))
    np.testing.assert_array_equal(kernels.maxpool_forward(x, **kw), yt.detach().numpy())
    np.testing.assert_allclose(kernels.maxpool_backward(dy, x, **kw), xt.grad.numpy(), atol=1e-12)
    torch_avg = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[rank - 1]
    for include in (True, False):
        xt = torch.tensor(x, requires_grad=True)
        yt = torch_avg(xt, count_include_pad=include, **kw)
        yt.backward(torch.tensor(dy))
        np.testing.assert_allclose(kernels.avgpool_forward(x, count_include_pad=include, **kw), yt.detach().numpy(), atol=1e-12)
        np.testing.assert_allclose(kernels.avgpool_backward(dy, x, count_include_pad=include, **kw), xt.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("kw", [
    {"kernel_size": 3, "dilation": 2}, {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2},
    {"kernel_size": 2, "stride": 2, "dilation": 3, "ceil_mode": True}, {"kernel_size": 3, "stride": 1, "padding": 1, "dilation": 3},
    {"kernel_size": (2, 3), "stride": (2, 1), "padding": (1, 1), "dilation": (3, 2), "ceil_mode": True},
])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_dilated_maxpool_matches_torch(torch, kw, rank):
    """PyTorch's MaxPool with dilation: values, arg-maxes (ties included) and gradients, on both backends."""
    F = torch.nn.functional
    if rank != 2:
        kw = {k: (v[0] if isinstance(v, tuple) else v) for k, v in kw.items()}
    rng = np.random.default_rng(rank)
    x = np.round(rng.standard_normal((2, 3, *[7 + i for i in range(rank)])), 1)  # ties
    xt = torch.tensor(x, requires_grad=True)
    yt = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[rank - 1](xt, **kw)
    dy = rng.standard_normal(yt.shape)
    yt.backward(torch.tensor(dy))
    for backend in ("c", "numpy") if kernels._C is not None else ("numpy",):
        with kernels.backend(backend):
            np.testing.assert_array_equal(kernels.maxpool_forward(x, **kw), yt.detach().numpy())
            np.testing.assert_allclose(kernels.maxpool_backward(dy, x, **kw), xt.grad.numpy(), atol=1e-12)


def _real_mean_in_torch(torch, x, kernel, stride, pads, ceil_mode):
    """TensorFlow's "same" average from PyTorch's own pool: pad explicitly (asymmetric), then the pool
    of the padded input over the pool of the padded mask of real inputs."""
    F = torch.nn.functional
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[x.ndim - 3]
    order = [p for pair in reversed(pads) for p in pair]
    mask = F.pad(torch.ones_like(x[:, :1]), order)
    return pool(F.pad(x, order), kernel, stride, ceil_mode=ceil_mode) / pool(mask, kernel, stride, ceil_mode=ceil_mode)


@pytest.mark.parametrize(("kernel", "stride", "size"), [(3, 2, 8), (4, 3, 10), (2, 1, 5), (3, 1, 6), (5, 2, 9)])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_avgpool_same_counts_only_real_inputs_as_tensorflow(torch, kernel, stride, size, rank):
    """With "same" padding and count_include_pad False the divisor is the real inputs in the window:
    TensorFlow's average. Checked by hand for one window and against torch's pools on explicit padding."""
    rng = np.random.default_rng(size)
    x = rng.standard_normal((2, 2, *[size + i for i in range(rank)]))
    geo = kernels.geometry(x.shape, kernel, stride, "same", pooling=True)
    xt = torch.tensor(x, requires_grad=True)
    yt = _real_mean_in_torch(torch, xt, kernel, stride, geo.padding, False)
    dy = rng.standard_normal(yt.shape)
    yt.backward(torch.tensor(dy))
    for backend in ("c", "numpy") if kernels._C is not None else ("numpy",):
        with kernels.backend(backend):
            y = kernels.avgpool_forward(x, kernel, stride, "same", count_include_pad=False)
            np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
            dx = kernels.avgpool_backward(dy, x, kernel, stride, "same", count_include_pad=False)
            np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    # by hand: the last window on the last axis reads the input's tail only
    last = geo.out[-1] - 1
    start = last * stride - geo.padding[-1][0]
    tail = x[(0, 0, *([0] * (rank - 1)), slice(max(start, 0), min(start + kernel, x.shape[-1])))]
    if rank == 1:
        assert y[0, 0, last] == pytest.approx(tail.mean(), rel=1e-12)


@pytest.mark.parametrize("kw", [
    {"kernel_size": 2, "divisor_override": 3}, {"kernel_size": 3, "stride": 2, "padding": 1, "divisor_override": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "divisor_override": 7},
    {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False, "divisor_override": 1},
])
@pytest.mark.parametrize("rank", [2, 3])
def test_avgpool_divisor_override_matches_torch(torch, kw, rank):
    """nn.AvgPool2d/3d's divisor_override: every window's sum over that divisor (torch has none in 1D)."""
    F = torch.nn.functional
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((2, 3, *[6 + i for i in range(rank)]))
    xt = torch.tensor(x, requires_grad=True)
    yt = (None, F.avg_pool2d, F.avg_pool3d)[rank - 1](xt, **kw)
    dy = rng.standard_normal(yt.shape)
    yt.backward(torch.tensor(dy))
    for backend in ("c", "numpy") if kernels._C is not None else ("numpy",):
        with kernels.backend(backend):
            np.testing.assert_allclose(kernels.avgpool_forward(x, **kw), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(kernels.avgpool_backward(dy, x, **kw), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert not hasattr(torch.nn.AvgPool1d(2), "divisor_override")  # why archcalc refuses it in 1D


def test_pool_arguments_of_the_new_attributes_are_checked():
    x = np.ones((1, 1, 4, 4))
    with pytest.raises(ValueError, match="divisor_override must be >= 1, got 0"):
        kernels.avgpool_forward(x, 2, divisor_override=0)
    with pytest.raises(TypeError, match="divisor_override must be None or an int, got 1.5"):
        kernels.avgpool_forward(x, 2, divisor_override=1.5)
    with pytest.raises(TypeError, match="divisor_override must be None or an int, got True"):
        kernels.avgpool_backward(np.ones((1, 1, 2, 2)), x, 2, divisor_override=True)
    with pytest.raises(ValueError, match="dilation must be positive"):
        kernels.maxpool_forward(x, 2, dilation=0)
    with pytest.raises(ValueError, match=r"the first window on axis 1 reads only padding \(dilation 5 > size 4, padding 1\)"):
        kernels.maxpool_forward(x, 2, 1, 1, dilation=(1, 5))


def test_softmax_cross_entropy_matches_torch(torch):
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((5, 7)) * 3, rng.integers(0, 7, size=5)
    loss, grad = kernels.softmax_cross_entropy(logits, labels)
    lt = torch.tensor(logits, requires_grad=True)
    torch_loss = F.cross_entropy(lt, torch.tensor(labels))
    torch_loss.backward()
    assert loss == pytest.approx(float(torch_loss.detach()), rel=1e-12)
    np.testing.assert_allclose(grad, lt.grad.numpy(), atol=1e-14)
    # the lecture's y_hat - y, averaged over the batch
    onehot = np.eye(7)[labels]
    np.testing.assert_allclose(grad, (kernels.softmax(logits) - onehot) / 5)


def test_bad_arguments_raise_value_errors():
    x, w = np.zeros((1, 4, 5, 5)), np.zeros((6, 2, 3, 3))
    with pytest.raises(ValueError, match="divide by groups=4"):
        kernels.conv_forward(x, w, groups=4)
    with pytest.raises(ValueError, match="exceeds the padded input"):
        kernels.conv_forward(x, np.zeros((6, 4, 7, 7)))
    with pytest.raises(ValueError, match="cols has shape"):
        kernels.col2im(np.zeros((1, 3, 3)), (1, 4, 5, 5), 3)


needs_c = pytest.mark.skipif(kernels._C is None, reason="the C extension is not built")


def _backend_in_subprocess(setting: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ARCHCALC_KERNELS"}
    if setting is not None:
        env["ARCHCALC_KERNELS"] = setting
    return subprocess.run([sys.executable, "-c", "from archcalc import kernels; print(kernels.BACKEND)"],
                          env=env, capture_output=True, text=True, timeout=120)


def test_archcalc_kernels_setting_is_obeyed():
    """ARCHCALC_KERNELS=c in this environment means the extension; a subprocess with =numpy gets NumPy."""
    if os.environ.get("ARCHCALC_KERNELS") == "c" or os.environ.get("CI") == "true":
        assert kernels.BACKEND == "c"
    if os.environ.get("ARCHCALC_KERNELS") == "numpy":
        assert kernels.BACKEND == "numpy"
    assert _backend_in_subprocess("numpy").stdout.strip() == "numpy"


@needs_c
def test_the_extension_is_the_default_and_required_when_asked():
    assert _backend_in_subprocess(None).stdout.strip() == "c"
    assert _backend_in_subprocess("c").stdout.strip() == "c"
    misspelled = _backend_in_subprocess("Numpy")  # not the reference it may have meant: said so
    assert misspelled.stdout.strip() == "c"
    assert "ARCHCALC_KERNELS='Numpy' is not understood (c or numpy)" in misspelled.stderr
    with pytest.raises(ValueError, match="backend 'fortran' is not available"), kernels.backend("fortran"):
        pass


@needs_c
@settings(max_examples=150, derandomize=True, deadline=None)
@given(case=conv_cases(), dtype=st.sampled_from(["float32", "float64"]))
def test_c_im2col_equals_numpy_exactly(case, dtype):
    (n, c, size), w_shape, stride, padding, dilation, _ = case
    x = np.random.default_rng(2).standard_normal((n, c, *size)).astype(dtype)
    with kernels.backend("c"):
        ours = kernels.im2col(x, w_shape[2:], stride, padding, dilation)
    with kernels.backend("numpy"):
        reference = kernels.im2col(x, w_shape[2:], stride, padding, dilation)
    np.testing.assert_array_equal(ours, reference)
    y = np.random.default_rng(3).standard_normal(ours.shape).astype(dtype)
    with kernels.backend("c"):
        back = kernels.col2im(y, x.shape, w_shape[2:], stride, padding, dilation)
    with kernels.backend("numpy"):
        back_reference = kernels.col2im(y, x.shape, w_shape[2:], stride, padding, dilation)
    np.testing.assert_allclose(back, back_reference, rtol=1e-6 if dtype == "float32" else 1e-13, atol=1e-5 if dtype == "float32" else 1e-12)


@needs_c
@settings(max_examples=100, derandomize=True, deadline=None)
@given(case=conv_cases(), dtype=st.sampled_from(["float32", "float64"]))
def test_c_conv_equals_numpy_to_rounding(case, dtype):
    (n, c, size), w_shape, stride, padding, dilation, groups = case
    rng = np.random.default_rng(4)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((n, c, *size), w_shape, (w_shape[0],)))
    results = {}
    default = kernels.BATCHED_BYTES
    # the C path's three ways: one GEMM over the batch (small layers), sample by sample (large ones),
    # and the direct kernels (depthwise and few-filter layers)
    modes = (("c", default, "never"), ("c", 0, "never"), ("c", default, "always"), ("numpy", default, "auto"))
    for name, batched_bytes, direct in modes:
        kernels.BATCHED_BYTES, kernels.DIRECT_CONV = batched_bytes, direct
        try:
            with kernels.backend(name):
                y, cache = kernels.conv_forward_cached(x, w, b, stride, padding, dilation, groups)
                pointwise = cache.geo.pointwise and name == "c"
                assert cache.direct == (direct == "always")
                assert (cache.cols is None) == (name == "c" and (batched_bytes == 0 or pointwise or cache.direct))
                dy = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
                grads = kernels.conv_backward_cached(dy, cache)
                results[name, batched_bytes, direct] = (y, *grads,
                                                        *kernels.conv_backward(dy, x, w, stride, padding, dilation, groups))
        finally:
            kernels.BATCHED_BYTES, kernels.DIRECT_CONV = default, "auto"
    tol = {"rtol": 2e-5, "atol": 2e-5} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}
    for mode in modes[:3]:
        for ours, reference in zip(results[mode], results["numpy", default, "auto"]):
            assert ours.dtype == reference.dtype == np.dtype(dtype)
            np.testing.assert_allclose(ours, reference, **tol)


@needs_c
@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_cases(), batch=st.integers(3, 6), per_chunk=st.integers(1, 4), dtype=st.sampled_from(["float32", "float64"]))
def test_c_conv_in_chunks_of_samples_equals_numpy(case, batch, per_chunk, dtype, monkeypatch):
    """A layer whose batch matrix is above BATCHED_BYTES runs in chunks of samples (the last one
    shorter), each chunk's X_hat one matrix: the same numbers and MACs as the NumPy reference."""
    (_, c, size), w_shape, stride, padding, dilation, groups = case
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((batch, c, *size)).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    geo = kernels.geometry(x.shape, w_shape[2:], stride, padding, dilation)
    sample_bytes = c * geo.taps * geo.positions * x.itemsize
    monkeypatch.setattr(kernels, "DIRECT_CONV", "never")
    results = []
    for name, limit in (("c", per_chunk * sample_bytes), ("numpy", kernels.BATCHED_BYTES)):
        monkeypatch.setattr(kernels, "BATCHED_BYTES", limit)
        with kernels.backend(name):
            y, cache = kernels.conv_forward_cached(x, w, None, stride, padding, dilation, groups)
            assert (cache.cols is None) == (name == "c" and (per_chunk < batch or geo.pointwise))
            counted = kernels.BackwardMacs()
            grads = kernels.conv_backward_cached(np.ones_like(y), cache, counted=counted)
            results.append(((y, *grads), (cache.macs, counted.input_grad, counted.weight_grad)))
    tol = {"rtol": 2e-5, "atol": 2e-5} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}
    for ours, reference in zip(*(r[0] for r in results)):
        np.testing.assert_allclose(ours, reference, **tol)
    assert results[0][1] == results[1][1]


@needs_c
def test_c_kernels_reject_bad_arguments_without_touching_memory():
    from archcalc import _kernels as c_kernels

    x = np.zeros((2, 5, 5), dtype=np.float32)
    cols = np.zeros((2 * 9, 9), dtype=np.float32)
    geometry = (2, (5, 5), (3, 3), (1, 1), (1, 1), (0, 0), (3, 3), 1)
    c_kernels.im2col(x, cols, *geometry)  # the right sizes work
    with pytest.raises(ValueError, match="the geometry needs"):
        c_kernels.im2col(x, np.zeros((2 * 9, 8), dtype=np.float32), *geometry)
    with pytest.raises(ValueError, match="the geometry needs"):
        c_kernels.im2col(x, cols, 2, (5, 5), (3, 3), (1, 1), (1, 1), (0, 0), (4, 3), 1)  # out larger than the buffer
    with pytest.raises(TypeError, match="float32, or both float64"):
        c_kernels.im2col(x, cols.astype(np.float64), *geometry)
    with pytest.raises(TypeError, match="float32, or both float64"):
        c_kernels.im2col(x.astype(np.int32), cols, *geometry)
    with pytest.raises(ValueError, match="contiguous"):
        c_kernels.im2col(np.zeros((2, 5, 10), dtype=np.float32)[:, :, ::2], cols, *geometry)
    with pytest.raises(ValueError, match="stride\\[0\\] must be >= 1, got 0"):
        c_kernels.im2col(x, cols, 2, (5, 5), (3, 3), (0, 1), (1, 1), (0, 0), (3, 3), 1)
    with pytest.raises(ValueError, match="size must be a tuple of 1 to 3 ints"):
        c_kernels.im2col(x, cols, 2, (1, 1, 1, 5), (3, 3), (1, 1), (1, 1), (0, 0), (3, 3), 1)
    with pytest.raises(MemoryError, match="overflow"):
        c_kernels.im2col(x, cols, 2, (2**40, 2**40), (3, 3), (1, 1), (1, 1), (0, 0), (2**40, 2**40), 1)
    with pytest.raises(TypeError, match="kernel must hold ints, got float"):
        c_kernels.im2col(x, cols, 2, (5, 5), (3.0, 3), (1, 1), (1, 1), (0, 0), (3, 3), 1)
    with pytest.raises((TypeError, ValueError), match="read-only|writable"):
        readonly = cols.copy()
        readonly.flags.writeable = False
        c_kernels.im2col(x, readonly, *geometry)
    with pytest.raises(ValueError, match="batch must be >= 1, got 0"):
        c_kernels.im2col(x, cols, 2, (5, 5), (3, 3), (1, 1), (1, 1), (0, 0), (3, 3), 0)
    with pytest.raises(ValueError, match="the geometry needs"):  # a batch of 2 needs twice the buffers
        c_kernels.im2col(x, cols, 2, (5, 5), (3, 3), (1, 1), (1, 1), (0, 0), (3, 3), 2)
    with pytest.raises(TypeError, match="expected 10 arguments"):
        c_kernels.col2im(cols, x)
    # a geometry whose windows fall outside the input reads zeros, never out of bounds
    big = np.zeros((2 * 9, 36), dtype=np.float32)
    c_kernels.im2col(x, big, 2, (5, 5), (3, 3), (1, 1), (1, 1), (50, 50), (6, 6), 1)
    assert not big.any()


@st.composite
def pool_cases(draw):
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    size = tuple(draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p, d if p else 1), d * k + 6))
                 for k, p, d in zip(kernel, padding, dilation))
    divisor = draw(st.sampled_from([None, None, 1, 3]))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *size), kernel, stride, padding, draw(st.booleans()), dilation, divisor


@needs_c
@settings(max_examples=150, derandomize=True, deadline=None)
@given(case=pool_cases(), dtype=st.sampled_from(["float32", "float64"]), include=st.booleans())
def test_c_pooling_equals_numpy(case, dtype, include):
    shape, kernel, stride, padding, ceil_mode, dilation, divisor = case
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape).astype(dtype)
    out = {}
    for name in ("c", "numpy"):
        with kernels.backend(name):
            y = kernels.maxpool_forward(x, kernel, stride, padding, ceil_mode, dilation)
            dy = np.random.default_rng(7).standard_normal(y.shape).astype(dtype)
            y_avg = kernels.avgpool_forward(x, kernel, stride, padding, ceil_mode, include, divisor)
            dy_avg = np.random.default_rng(8).standard_normal(y_avg.shape).astype(dtype)
            out[name] = (y, kernels.maxpool_backward(dy, x, kernel, stride, padding, ceil_mode, dilation), y_avg,
                         kernels.avgpool_backward(dy_avg, x, kernel, stride, padding, ceil_mode, include, divisor))
    np.testing.assert_array_equal(out["c"][0], out["numpy"][0])  # max is exact
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-13}
    # the same arg-maxes; where windows overlap, the gradients add in another order
    np.testing.assert_allclose(out["c"][1], out["numpy"][1], **tol)
    assert np.array_equal(out["c"][1] != 0, out["numpy"][1] != 0)
    np.testing.assert_allclose(out["c"][2], out["numpy"][2], **tol)
    np.testing.assert_allclose(out["c"][3], out["numpy"][3], **tol)


@needs_c
def test_c_pooling_rejects_bad_arguments():
    from archcalc import _kernels as c_kernels

    x, y = np.zeros((2, 4, 4)), np.zeros((2, 2, 2))
    index = np.zeros((2, 2, 2), dtype=np.int64)
    geometry = (2, (4, 4), (2, 2), (2, 2), (0, 0), (0, 0), (2, 2))
    c_kernels.maxpool_forward(x, y, index, *geometry)
    with pytest.raises(TypeError, match="int64"):
        c_kernels.maxpool_forward(x, y, index.astype(np.int32), *geometry)
    with pytest.raises(ValueError, match="the geometry needs"):
        c_kernels.maxpool_forward(x, np.zeros((2, 2, 3)), index, *geometry)
    bad = index.copy()
    bad[1, 1, 1] = 16  # a plane has 16 values: 16 is one past the end
    with pytest.raises(ValueError, match=r"index\[7\] = 16 is outside a plane of 16 values"):
        c_kernels.maxpool_backward(y, bad, np.zeros_like(x), *geometry)
    with pytest.raises(ValueError, match="the geometry needs"):
        c_kernels.avgpool(x, np.zeros((2, 3, 3)), True, True, *geometry)
    with pytest.raises(ValueError, match="divisor must be >= 0"):
        c_kernels.avgpool(x, y, True, True, *geometry, -1)
    with pytest.raises(ValueError, match=r"dilation\[0\] must be >= 1, got 0"):
        c_kernels.maxpool_forward(x, y, index, *geometry, (0, 1))
    with pytest.raises(TypeError, match="expected 10 or 11 arguments"):
        c_kernels.maxpool_forward(x, y, index, *geometry, (1, 1), 3)
    with pytest.raises(OverflowError, match="the kernel's span"):
        c_kernels.maxpool_forward(x, y, index, 2, (4, 4), (3, 2), (2, 2), (0, 0), (0, 0), (2, 2), (2**62, 1))


# ------------------------------------------------------------------ extreme geometry: every kind, raw and public

HUGE = 2**63 - 1
RAW_IM2COL = {  # (size, kernel, stride, dilation, pad, out): each overflows some sum or product of the window arithmetic
    "huge stride": ((5,), (3,), (HUGE,), (1,), (3,), (1,)),
    "huge stride, two outputs": ((5,), (3,), (HUGE,), (1,), (0,), (2,)),
    "huge padding and stride": ((5,), (3,), (2**62,), (1,), (2**62 + 1,), (1,)),
    "padding at the limit": ((5,), (3,), (1,), (1,), (HUGE,), (1,)),
    "huge dilation": ((5,), (3,), (1,), (2**62,), (0,), (1,)),
    "huge kernel": ((5,), (2**62 + 1,), (1,), (2,), (0,), (1,)),
    "huge kernel after a huge start": ((5,), (HUGE,), (2,), (1,), (0,), (2,)),
    "huge output count": ((5,), (3,), (2**32,), (1,), (0,), (2**32,)),
    "2D, huge second axis": ((5, 5), (3, 3), (1, HUGE), (1, 1), (0, 3), (1, 1)),
}


@needs_c
@pytest.mark.parametrize("kind", RAW_IM2COL)
def test_raw_im2col_and_col2im_refuse_overflowing_geometry(kind):
    """The raw extension computes every window sum and product with overflow checks: OverflowError, memory untouched."""
    from archcalc import _kernels as c_kernels

    size, kernel, stride, dilation, pad, out = RAW_IM2COL[kind]
    x = np.arange(math.prod(size), dtype=np.float64)
    cols = np.full(3, -7.0)  # too small for any of these: the overflow is found first
    with pytest.raises(OverflowError, match="overflows a Py_ssize_t"):
        c_kernels.im2col(x, cols, 1, size, kernel, stride, dilation, pad, out, 1)
    assert (cols == -7).all()
    with pytest.raises(OverflowError, match="overflows a Py_ssize_t"):
        c_kernels.col2im(cols, x, 1, size, kernel, stride, dilation, pad, out, 1)
    assert (x == np.arange(x.size)).all()


@needs_c
def test_raw_extension_takes_a_huge_padding_that_overflows_nothing():
    from archcalc import _kernels as c_kernels

    cols = np.full(3, -7.0)
    c_kernels.im2col(np.arange(5.0), cols, 1, (5,), (3,), (1,), (1,), (2**62 + 1,), (1,), 1)
    assert not cols.any()  # every tap lands in the padding


@needs_c
def test_raw_extension_refuses_values_beyond_py_ssize_t_and_negative_ones():
    from archcalc import _kernels as c_kernels

    x, cols = np.zeros(5), np.zeros(3)
    with pytest.raises(OverflowError, match=r"stride\[0\] does not fit a Py_ssize_t"):
        c_kernels.im2col(x, cols, 1, (5,), (3,), (2**63,), (1,), (0,), (1,), 1)
    for position, name in ((4, "kernel"), (5, "stride"), (6, "dilation"), (7, "pad")):
        args = [x, cols, 1, (5,), (3,), (1,), (1,), (0,), (1,), 1]
        args[position] = (-1,)
        with pytest.raises(ValueError, match=rf"{name}\[0\] must be >= \d, got -1"):
            c_kernels.im2col(*args)
    y, index = np.zeros(1), np.zeros(1, dtype=np.int64)
    with pytest.raises(OverflowError, match="the last window's end"):
        c_kernels.maxpool_forward(x, y, index, 1, (5,), (2,), (HUGE,), (0,), (0,), (2,))
    with pytest.raises(OverflowError, match="size \\+ pad_after"):
        c_kernels.avgpool(x, y, True, True, 1, (5,), (2,), (1,), (0,), (HUGE,), (1,))
    with pytest.raises(ValueError, match="planes must be >= 1, got -3"):
        c_kernels.maxpool_forward(x, y, index, -3, (5,), (2,), (1,), (0,), (0,), (1,))
    with pytest.raises(MemoryError, match="overflow"):
        c_kernels.maxpool_forward(x, y, index, 1, (5,) * 3, (2**32, 2**32, 2**32), (1,) * 3, (0,) * 3, (0,) * 3, (1,) * 3)


def test_the_issues_examples_give_the_right_answer_or_a_clean_error():
    """kernels.im2col(x, 3, stride=2**63-1, padding=3) once returned uninitialised memory; PyTorch's answer is one window."""
    x = np.arange(1.0, 6.0).reshape(1, 1, 5)
    for backend in ("c", "numpy") if kernels._C is not None else ("numpy",):
        with kernels.backend(backend):
            np.testing.assert_array_equal(kernels.im2col(x, 3, stride=HUGE, padding=3), [[[0.0], [0.0], [0.0]]])
            np.testing.assert_array_equal(kernels.im2col(x, 3, stride=HUGE, padding=1), [[[0.0], [1.0], [2.0]]])
            # PyTorch: conv1d(x, ones(1,1,3), stride=p, padding=p) = [0, 6, 0]; no padded copy is made
            # (p = 2**31 - 1, the largest padding archcalc takes, in specs and kernels alike)
            y = kernels.conv_forward(x, np.ones((1, 1, 3)), None, stride=2**31 - 1, padding=2**31 - 1)
            np.testing.assert_array_equal(y, [[[0.0, 6.0, 0.0]]])
            dx, dw, db = kernels.conv_backward(np.ones((1, 1, 3)), x, np.ones((1, 1, 3)), stride=2**31 - 1, padding=2**31 - 1)
            np.testing.assert_array_equal(dx, [[[1.0, 1.0, 1.0, 0.0, 0.0]]])
            np.testing.assert_array_equal(dw, [[[1.0, 2.0, 3.0]]])
            np.testing.assert_array_equal(kernels.maxpool_forward(x, 2, stride=HUGE), [[[2.0]]])
            np.testing.assert_array_equal(kernels.avgpool_forward(x, 2, stride=2**62), [[[1.5]]])


@pytest.mark.parametrize("call, error, message", [
    (lambda x: kernels.im2col(x, 3, padding=2**62), ValueError, r"padding must be an int from 0 to 2147483647 \(2\*\*31 - 1\)"),
    (lambda x: kernels.im2col(x, 3, dilation=2**62), ValueError, "exceeds the padded input"),
    (lambda x: kernels.im2col(x, HUGE), ValueError, "exceeds the padded input"),
    (lambda x: kernels.im2col(x, 2**64), ValueError, "exceeds the padded input"),
    (lambda x: kernels.im2col(x, 3, stride=0), ValueError, r"stride must be positive, got \(0,\)"),
    (lambda x: kernels.im2col(x, 3, stride=-(2**63)), ValueError, "stride must be positive"),
    (lambda x: kernels.im2col(x, -1), ValueError, r"kernel must be positive, got \(-1,\)"),
    (lambda x: kernels.im2col(x, 3, padding=-1), ValueError, "padding must be an int >= 0"),
    (lambda x: kernels.im2col(x, 3, dilation=0), ValueError, "dilation must be positive"),
    (lambda x: kernels.im2col(x, 3.0), TypeError, "kernel must be an int or a tuple of ints, got 3.0"),
    (lambda x: kernels.im2col(x, True), TypeError, "kernel must be an int or a tuple of ints, got True"),
    (lambda x: kernels.im2col(x, (3, 3)), ValueError, "kernel has 2 values for 1 spatial axes"),
    (lambda x: kernels.im2col(x, 3, padding=2**40), ValueError, r"padding must be an int from 0 to 2147483647"),
    # 2**32 windows of 3 values (96 GiB): refused at allocation
    (lambda x: kernels.im2col(x, 3, padding=2**31 - 1), MemoryError, "Unable to allocate"),
    (lambda x: kernels.im2col(x.astype(np.int64), 3, padding=1), TypeError, "x must be a float32 or float64 array, got dtype int64"),
    (lambda x: kernels.maxpool_forward(x.astype(np.int32), 2, padding=1), TypeError, "got dtype int32"),
    (lambda x: kernels.avgpool_forward(x.astype(np.float16), 2), TypeError, "got dtype float16"),
    (lambda x: kernels.conv_forward(x.astype(bool), np.ones((1, 1, 3))), TypeError, "got dtype bool"),
    (lambda x: kernels.conv_forward(x, np.ones((1, 1, 3), dtype=np.int64)), TypeError, "w must be a float32 or float64 array"),
    (lambda x: kernels.maxpool_forward(x, 2, padding=2), ValueError, r"padding 2 exceeds half the kernel \(2 // 2 = 1\) on axis 0"),
    (lambda x: kernels.avgpool_forward(x, 3, padding=[0, 2]), ValueError, r"padding 2 exceeds half the kernel \(3 // 2 = 1\)"),
    (lambda x: kernels.maxpool_backward(np.zeros((1, 1, 3)), x, 2), ValueError, r"dy has shape \(1, 1, 3\), expected \(1, 1, 2\)"),
    (lambda x: kernels.avgpool_backward(np.zeros((1, 1, 1)), x, 2), ValueError, r"dy has shape \(1, 1, 1\), expected \(1, 1, 2\)"),
    (lambda x: kernels.conv_backward(np.zeros((1, 1, 2)), x, np.ones((1, 1, 3))), ValueError, r"dy has shape \(1, 1, 2\)"),
    (lambda x: kernels.conv_forward(x, np.ones((1, 1, 3)), np.ones(2)), ValueError, r"b has shape \(2,\), expected \(1,\)"),
    (lambda x: kernels.conv_forward(x, np.ones((0, 1, 3))), ValueError, "w must have at least one filter"),
    (lambda x: kernels.col2im(np.zeros((1, 3, 4), dtype=np.float32), (1, 1, 5), 3), ValueError,
     r"cols has shape \(1, 3, 4\), expected \(1, 3, 3\)"),
])
@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_public_functions_refuse_bad_arguments_the_same_way_on_both_backends(call, error, message, backend):
    if backend == "c" and kernels._C is None:
        pytest.skip("the C extension is not built")
    x = np.arange(1.0, 6.0).reshape(1, 1, 5)
    with kernels.backend(backend), pytest.raises(error, match=message):
        call(x)


@pytest.mark.parametrize("values, kernel, expected, argmax", [
    ([1, np.nan, 0.5, 2], 2, [np.nan, 2], [1, 3]),  # the issue's example: C dropped the NaN that was not first
    ([np.nan, 1, 0.5, np.nan], 2, [np.nan, np.nan], [0, 3]),
    ([1, np.nan, np.nan, 2, 3, np.nan], 3, [np.nan, np.nan], [2, 5]),  # PyTorch: the last NaN is the arg-max
    ([-np.inf, -np.inf, 1, np.inf], 2, [-np.inf, np.inf], [0, 3]),
])
def test_max_pool_propagates_nan_as_pytorch(values, kernel, expected, argmax):
    """The values and the gradient's destinations PyTorch 2.13 gives (F.max_pool1d(..., return_indices=True))."""
    x = np.array(values, dtype=np.float64).reshape(1, 1, -1)
    for backend in ("c", "numpy") if kernels._C is not None else ("numpy",):
        with kernels.backend(backend):
            np.testing.assert_array_equal(kernels.maxpool_forward(x, kernel), np.reshape(expected, (1, 1, -1)))
            dx = kernels.maxpool_backward(np.ones((1, 1, len(expected))), x, kernel)
            np.testing.assert_array_equal(np.flatnonzero(dx[0, 0]), argmax)


def test_max_pool_nan_matches_torch(torch):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 6, 7))
    x[rng.random(x.shape) < 0.2] = np.nan
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 3, 2, 1, ceil_mode=True)
    dy = rng.standard_normal(yt.shape)
    yt.backward(torch.tensor(dy))
    for backend in ("c", "numpy") if kernels._C is not None else ("numpy",):
        with kernels.backend(backend):
            np.testing.assert_array_equal(kernels.maxpool_forward(x, 3, 2, 1, True), yt.detach().numpy())
            np.testing.assert_allclose(kernels.maxpool_backward(dy, x, 3, 2, 1, True), xt.grad.numpy(), atol=1e-12)


def test_padding_never_wins_even_against_minus_infinity():
    """Windows of -inf values and padding: each arg-max is the first input value (PyTorch: indices [0, 0]), never the padding."""
    x = np.full((1, 1, 2), -np.inf)
    for backend in ("c", "numpy") if kernels._C is not None else ("numpy",):
        with kernels.backend(backend):
            np.testing.assert_array_equal(kernels.maxpool_backward(np.ones((1, 1, 2)), x, 3, 1, 1), [[[2.0, 0.0]]])


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_empty_batch_gives_empty_results_and_zero_channels_are_refused(rank):
    """PyTorch takes a batch of 0 (empty outputs, zero weight gradients); zero channels are an error on both backends."""
    spatial = (4,) * rank
    x, w, b = np.zeros((0, 2, *spatial)), np.ones((3, 2, *(2,) * rank)), np.ones(3)
    for backend in ("c", "numpy") if kernels._C is not None else ("numpy",):
        with kernels.backend(backend):
            y = kernels.conv_forward(x, w, b, padding=1)
            assert y.shape == (0, 3, *(5,) * rank)
            dx, dw, db = kernels.conv_backward(y, x, w, padding=1)
            assert dx.shape == x.shape and not dw.any() and dw.shape == w.shape and not db.any()
            assert kernels.im2col(x, 2).shape == (0, 2 * 2**rank, 3**rank)
            assert kernels.col2im(np.zeros((0, 2 * 2**rank, 3**rank)), x.shape, 2).shape == x.shape
            for forward, backward in ((kernels.maxpool_forward, kernels.maxpool_backward),
                                      (kernels.avgpool_forward, kernels.avgpool_backward)):
                y = forward(x, 2)
                assert y.shape == (0, 2, *(2,) * rank)
                assert backward(y, x, 2).shape == x.shape
            for call in (lambda: kernels.conv_forward(np.zeros((1, 0, *spatial)), np.ones((3, 0, *(2,) * rank))),
                         lambda: kernels.maxpool_forward(np.zeros((1, 0, *spatial)), 2),
                         lambda: kernels.avgpool_forward(np.zeros((2, 0, *spatial)), 2),
                         lambda: kernels.im2col(np.zeros((1, 0, *spatial)), 2)):
                with pytest.raises(ValueError, match="C >= 1 channels"):
                    call()


def test_any_layout_is_taken():
    """Non-contiguous, negative-stride and Fortran-ordered arrays give the contiguous array's results."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3, 8, 9))
    w = rng.standard_normal((4, 3, 3, 3))
    layouts = (x[:, :, ::-1, ::-1].copy()[:, :, ::-1, ::-1], np.asfortranarray(x), np.repeat(x, 2, axis=3)[..., ::2])
    for backend in ("c", "numpy") if kernels._C is not None else ("numpy",):
        with kernels.backend(backend):
            expected = (kernels.conv_forward(x, w, None, 2, 1), kernels.maxpool_forward(x, 3, 2, 1),
                        kernels.avgpool_forward(x, 3, 2, 1), kernels.im2col(x, 3, 2, 1))
            for view in layouts:
                assert not view.flags.c_contiguous or view is layouts[0]
                got = (kernels.conv_forward(view, w[:, :, ::-1][:, :, ::-1], None, 2, 1), kernels.maxpool_forward(view, 3, 2, 1),
                       kernels.avgpool_forward(view, 3, 2, 1), kernels.im2col(view, 3, 2, 1))
                for ours, reference in zip(got, expected):
                    np.testing.assert_array_equal(ours, reference)


def test_softmax_is_one_function():
    """The executor's softmax layer and the loss use kernels.softmax (issue 10: one softmax)."""
    from archcalc.ops import pointwise

    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, -np.inf]])
    probs = kernels.softmax(logits)
    np.testing.assert_allclose(probs[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())
    np.testing.assert_array_equal(probs[1], [0.5, 0.5, 0.0])
    y, _ = pointwise.Softmax().forward(None, [logits], {}, None)
    np.testing.assert_array_equal(y, probs)


def test_softmax_cross_entropy_stays_finite_when_a_probability_underflows():
    logits = np.array([[0.0, 1000.0, -1000.0], [3.0, 1.0, 0.2]])
    labels = np.array([2, 0])
    loss, grad = kernels.softmax_cross_entropy(logits, labels)
    # -log softmax = logsumexp(h) - h_y, by hand: row 0: 1000 - (-1000) = 2000
    row1 = np.log(np.exp(3.0) + np.exp(1.0) + np.exp(0.2)) - 3.0
    assert np.isfinite(loss) and loss == pytest.approx((2000.0 + row1) / 2)
    assert grad[0, 2] == pytest.approx(-0.5) and grad[0, 1] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------ erf

ERF_POINTS = np.array([0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 1.0, 2.5, -3.75, 5.9, 6.1, -27.0, 1e30, np.inf, -np.inf, np.nan])


@pytest.mark.parametrize("name", ["numpy"] + (["c"] if kernels._C is not None else []))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_erf_is_the_c_librarys_in_float64_rounded_once(name, dtype):
    """Both paths give math.erf (the C library's erf) of the float64 value, rounded to the dtype."""
    rng = np.random.default_rng(0)
    x = np.concatenate([ERF_POINTS, rng.standard_normal(500) * 3]).astype(dtype).reshape(4, -1)
    with kernels.backend(name):
        y = kernels.erf(x)
    expected = np.array([math.erf(float(v)) for v in x.ravel()]).astype(dtype).reshape(x.shape)
    assert y.dtype == x.dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, expected)  # exact: NaN where NaN, +-1 at +-inf, signed zeros equal
    with kernels.backend(name):
        assert kernels.erf(np.empty((0, 3), dtype=dtype)).shape == (0, 3)


def test_erf_refuses_non_float_arrays():
    with pytest.raises(TypeError, match="x must be a float32 or float64 array, got dtype int64"):
        kernels.erf(np.arange(3))


@pytest.mark.skipif(kernels._C is None, reason="the C extension is not built")
def test_raw_erf_checks_dtypes_and_sizes():
    c = kernels._C
    with pytest.raises(TypeError, match="both arrays must be float32, or both float64"):
        c.erf(np.zeros(3), np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="src and dst must have one size, got 24 and 16 bytes"):
        c.erf(np.zeros(3), np.zeros(2))
    with pytest.raises(TypeError):
        c.erf(np.zeros(3))


@pytest.mark.skipif(kernels._C is None or not hasattr(os, "fork"), reason="needs the C extension and fork")
def test_two_thread_split_survives_fork_and_reports_errors():
    """The helper thread of the two-thread kernels: a forked child (which has no threads but its
    parent's objects) makes its own instead of waiting forever on the parent's; a kernel's refusal
    on the helper's half is raised to the caller; results equal the one-thread ones."""
    import multiprocessing

    saved = kernels.THREADS, kernels.PARALLEL_VALUES
    try:
        kernels.THREADS, kernels.PARALLEL_VALUES = 2, 1
        x = np.linspace(-8, 8, 1001, dtype=np.float32)
        np.testing.assert_array_equal(kernels.clamp_forward(x, 0.0, 6.0), np.clip(x, 0, 6))  # the helper now exists
        child = multiprocessing.get_context("fork").Process(target=_clamp_in_child)
        child.start()
        child.join(60)
        alive = child.is_alive()
        if alive:
            child.kill()
        assert not alive and child.exitcode == 0, "the forked child hung or failed in a two-thread kernel"
        with pytest.raises(ValueError, match="the channel range"):  # only run(0, half), on the helper thread, raises
            kernels._split(lambda first, last: kernels._C.batchnorm_stats(
                np.ones((2, 4), np.float32), np.ones(4, np.float32), np.ones(4, np.float32), 2, 4, first,
                last if first else 9), 4, 8)
    finally:
        kernels.THREADS, kernels.PARALLEL_VALUES = saved


def _clamp_in_child() -> None:
    x = np.linspace(-8, 8, 1001, dtype=np.float32)
    np.testing.assert_array_equal(kernels.clamp_forward(x, 0.0, 6.0), np.clip(x, 0, 6))


class _FakeBlas:
    """A BLAS controller with threadpoolctl's interface that records the limits it is given."""

    def __init__(self, threads):
        self.lib_controllers = [self]
        self.threads, self.limits, self.during = threads, [], []

    def get_num_threads(self):
        return self.threads

    @contextmanager
    def limit(self, limits, user_api):
        self.limits.append((limits, user_api))
        saved, self.threads = self.threads, limits
        try:
            yield
        finally:
            self.threads = saved


def test_matmul_keeps_small_products_on_one_blas_thread(monkeypatch):
    """kernels.matmul: a product under BLAS_THREAD_MIN_MACS per matrix runs inside a one-thread limit
    of the BLAS (restored after, also when the product raises); a larger one, or a BLAS already on
    one thread or that cannot say, is left alone; the result is np.matmul's."""
    fake = _FakeBlas(4)
    monkeypatch.setattr(kernels, "_blas_controller", fake)
    monkeypatch.setattr(kernels, "BLAS_THREAD_MIN_MACS", 1000)
    real_matmul = np.matmul

    def spy(a, b, out=None):
        fake.during.append(fake.threads)
        return real_matmul(a, b, out=out)

    monkeypatch.setattr(kernels.np, "matmul", spy)
    rng = np.random.default_rng(0)
    small, big = rng.standard_normal((2, 9, 10)), rng.standard_normal((10, 11))  # 9*10*11 = 990 per matrix
    np.testing.assert_array_equal(kernels.matmul(small, big), real_matmul(small, big))
    assert fake.during == [1] and fake.limits == [(1, "blas")] and fake.threads == 4
    wide = rng.standard_normal((10, 12))  # 9*10*12 = 1080: BLAS keeps its threads
    out = np.empty((2, 9, 12))
    assert kernels.matmul(small, wide, out=out) is out
    np.testing.assert_array_equal(out, real_matmul(small, wide))
    assert fake.during == [1, 4] and len(fake.limits) == 1
    with pytest.raises(ValueError):  # mismatched inner dimensions: the count is still restored
        kernels.matmul(small, rng.standard_normal((3, 2)))
    assert fake.threads == 4 and len(fake.limits) == 2
    for threads in (1, None):  # one thread already, or a BLAS that cannot say: nothing to limit
        fake.threads = threads
        kernels.matmul(small, big)
        assert len(fake.limits) == 2


def test_a_loop_of_small_products_takes_one_blas_limit(monkeypatch):
    """The NumPy path's weight gradient, a product per sample: one limit for the loop, not one per
    sample (a limit costs about 30 microseconds, more than such a product)."""
    fake = _FakeBlas(2)
    monkeypatch.setattr(kernels, "_blas_controller", fake)
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((16, 2, 8, 8)), rng.standard_normal((3, 2, 3, 3))
    with kernels.backend("numpy"):
        y, cache = kernels.conv_forward_cached(x, w)
        fake.limits.clear()
        kernels.conv_backward_cached(np.ones_like(y), cache, need_dx=False)
    assert fake.limits == [(1, "blas")]


def test_matmul_limits_the_real_blas_from_any_thread_and_leaves_it_as_it_was(monkeypatch):
    """Against NumPy's own BLAS (through threadpoolctl): a small product runs on one BLAS thread
    whichever Python thread runs it (OpenBLAS lets one thread at a time control it: each call gives
    the control back), the count is the same after as before, and a user's own limit in another
    thread still works after."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def counts():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = counts()
    if not before or max(before) < 2:
        pytest.skip("the BLAS runs on one thread here: nothing to limit")
    seen = []
    real_matmul = np.matmul

    def spy(a, b, out=None):
        seen.append(counts())
        return real_matmul(a, b, out=out)

    monkeypatch.setattr(kernels.np, "matmul", spy)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((30, 40)), rng.standard_normal((40, 50))
    np.testing.assert_allclose(kernels.matmul(a, b), a @ b, rtol=1e-12)

    def elsewhere():
        kernels.matmul(a, b)
        with threadpool_limits(limits=1, user_api="blas"):
            seen.append(counts())

    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join()
    assert seen == [[1] * len(before)] * 3 and counts() == before

"""The C path's direct convolution kernels (archcalc/_direct.h) against the NumPy reference.

The direct kernels serve depthwise and few-filter layers without im2col. Here they run on
shapes wide enough to reach their vector blocks (rows of 8 to 40 values, so full blocks,
overlapping last blocks and rows narrower than a vector all occur), with every stride,
dilation, padding (per side), groups and channel multiplier, in 1D, 2D and 3D, float32 and
float64, and on values with infinities and NaN; forward, input and weight gradients, and the
multiply-adds counted, all equal to the NumPy reference's. scripts/sanitize.sh runs this file
under AddressSanitizer and UndefinedBehaviorSanitizer.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archcalc import kernels

pytestmark = pytest.mark.skipif(kernels._C is None, reason="the C extension is not built")

SETTINGS = settings(max_examples=150, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture
def direct(monkeypatch):
    """Every C conv runs the direct kernels."""
    monkeypatch.setattr(kernels, "DIRECT_CONV", "always")


@st.composite
def conv_cases(draw, finite: bool = True):
    rank = draw(st.integers(1, 3))
    largest = {1: 40, 2: 20, 3: 8}[rank]
    size = tuple(draw(st.integers(1, largest)) for _ in range(rank))
    kernel = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    padding = [(draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(rank)]
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    per_group = draw(st.sampled_from([1, 1, 2, 3]))  # channels per group: 1 is depthwise
    filters = groups * draw(st.sampled_from([1, 2, 3, 4, 5, 9]))
    batch = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    try:
        kernels.geometry((batch, groups * per_group, *size), kernel, stride, padding, dilation)
    except ValueError:
        padding = [(0, 0)] * rank
        kernel = (1,) * rank
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((batch, groups * per_group, *size)).astype(dtype)
    w = rng.standard_normal((filters, per_group, *kernel)).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype)
    if not finite:
        for array in (x, w):
            spots = rng.integers(0, array.size, draw(st.integers(1, 3)))
            array.reshape(-1)[spots] = draw(st.sampled_from([np.inf, -np.inf, np.nan]))
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups), rng


def _run(x, w, b, args, dy_seed, backend):
    with kernels.backend(backend):
        y, cache = kernels.conv_forward_cached(x, w, b, **args)
        dy = np.random.default_rng(dy_seed).standard_normal(y.shape).astype(y.dtype)
        counted = kernels.BackwardMacs()
        dx, dw, db = kernels.conv_backward_cached(dy, cache, counted=counted)
    return (y, dx, dw, db), (cache.macs, counted.input_grad, counted.weight_grad), cache


def _assert_close(ours, reference):
    for got, want, name in zip(ours, reference, ("y", "dx", "dw", "db")):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        tol = 2e-4 if got.dtype == np.float32 else 1e-10
        scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isfinite(want), want, 0)), initial=0)))
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, equal_nan=True, err_msg=name)


@SETTINGS
@given(case=conv_cases())
def test_direct_kernels_equal_the_numpy_reference(case, direct):
    x, w, b, args, rng = case
    seed = int(rng.integers(2**16))
    ours, our_macs, cache = _run(x, w, b, args, seed, "c")
    assert cache.direct
    reference, reference_macs, _ = _run(x, w, b, args, seed, "numpy")
    _assert_close(ours, reference)
    assert our_macs == reference_macs  # the products of im2col's GEMMs, which the kernels compute without the matrix


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning", "ignore:overflow:RuntimeWarning")  # on purpose
@SETTINGS
@given(case=conv_cases(finite=False))
def test_infinities_and_nan_land_where_the_reference_puts_them(case, direct):
    """0 * inf is NaN: where im2col's GEMM multiplies a padding zero by an infinite weight (or dY),
    the direct path must give the same NaN; where no window reads an infinity, no NaN."""
    x, w, b, args, rng = case
    seed = int(rng.integers(2**16))
    ours, _, _ = _run(x, w, b, args, seed, "c")
    reference, _, _ = _run(x, w, b, args, seed, "numpy")
    for got, want in zip(ours, reference):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    _assert_close(ours, reference)


@pytest.mark.parametrize("threads", [1, 2, 3, 7, 64, 1000])
@pytest.mark.parametrize("filters, groups", [(6, 6), (18, 2), (7, 1)])
def test_any_thread_count_gives_the_same_bits(threads, filters, groups, direct, monkeypatch):
    """Each work item is computed by one thread in one order, so the split cannot change a bit; nor
    can the weight gradient's chunks of filters, which get smaller as the threads get more (9
    filters a group: chunks of 3, then down to 1; 7 filters: 4 and 3, then smaller)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6, 19, 23)).astype(np.float32)
    w = rng.standard_normal((filters, 6 // groups, 3, 3)).astype(np.float32)
    monkeypatch.setattr(kernels, "THREAD_MIN_MACS", 1)
    monkeypatch.setattr(kernels, "THREADS", 1)
    base, _, _ = _run(x, w, None, dict(stride=1, padding=1, groups=groups), 1, "c")
    monkeypatch.setattr(kernels, "THREADS", threads)
    split, _, _ = _run(x, w, None, dict(stride=1, padding=1, groups=groups), 1, "c")
    for one, many in zip(base, split):
        np.testing.assert_array_equal(one, many)


def _pooled_conv(threads: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((8, 6, 20, 20)).astype(np.float32), rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    geo = kernels.geometry(x.shape, (3, 3), 1, 1)
    y = np.empty((8, 6, 20, 20), np.float32)
    kernels._C.conv_direct(0, x, w, y, *geo.c_args(6, 8), 6, 6, threads)
    return y


def _pool_in_child(queue) -> None:
    queue.put([_pooled_conv(threads).tobytes() for threads in (2, 5, 1)])


@pytest.mark.skipif(kernels._C is None or not hasattr(os, "fork"), reason="needs the C extension and fork")
def test_the_thread_pool_serves_concurrent_callers_and_forked_children():
    """The kernels' worker pool: calls from several Python threads at once (one owns the pool, the
    others start threads of their own) and calls in a forked child (which starts its own workers:
    the parent's do not exist there) all finish, with the bits of a one-thread call."""
    import multiprocessing
    from concurrent.futures import ThreadPoolExecutor

    want = _pooled_conv(1)
    np.testing.assert_array_equal(_pooled_conv(4), want)  # the pool now has workers
    with ThreadPoolExecutor(4) as callers:
        for got in callers.map(_pooled_conv, [2, 3, 4, 7] * 25):
            np.testing.assert_array_equal(got, want)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_pool_in_child, args=(queue,))
    child.start()
    results = queue.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0, "the forked child failed or hung in a pooled kernel"
    assert all(got == want.tobytes() for got in results)


def test_auto_picks_direct_for_depthwise_and_few_filters_only():
    x = np.zeros((2, 16, 12, 12), np.float32)
    depthwise = kernels.conv_forward_cached(x, np.zeros((32, 1, 3, 3), np.float32), groups=16)[1]
    few = kernels.conv_forward_cached(x, np.zeros((kernels.DIRECT_MAX_FILTERS, 16, 3, 3), np.float32))[1]
    pointwise = kernels.conv_forward_cached(x, np.zeros((kernels.DIRECT_MAX_FILTERS, 16, 1, 1), np.float32))[1]
    many = kernels.conv_forward_cached(x, np.zeros((kernels.DIRECT_MAX_FILTERS + 1, 16, 3, 3), np.float32))[1]
    assert (depthwise.direct, few.direct, many.direct, pointwise.direct) == (True, True, False, False)
    with kernels.backend("numpy"):
        assert not kernels.conv_forward_cached(x, np.zeros((32, 1, 3, 3), np.float32), groups=16)[1].direct


def test_the_direct_path_keeps_no_im2col_workspace():
    assert kernels.conv_workspace(8, 144, 9, 56 * 56, 4, filters=144, groups=144) == 0
    assert kernels.conv_stream_workspace(8, 144, 9, 56 * 56, 4, filters=144, groups=144) == 0
    assert kernels.conv_workspace(8, 64, 9, 28 * 28, 4, filters=128, groups=1) == 8 * 64 * 9 * 28 * 28  # kept: 14 MiB
    # streamed (115 MiB for the batch): two chunks of 2 samples' 14 MiB matrices, while the layer runs
    assert kernels.conv_workspace(8, 128, 9, 56 * 56, 4, filters=256, groups=1) == 0
    assert kernels.conv_stream_workspace(8, 128, 9, 56 * 56, 4, filters=256, groups=1) == 2 * 2 * 128 * 9 * 56 * 56


def test_the_baseline_kernels_agree_too():
    """The kernels for CPUs without AVX2 (chosen at import by ARCHCALC_KERNELS_ISA=baseline) in a fresh
    process: the same checks on a few shapes."""
    script = (
        "import numpy as np; from archcalc import kernels, _kernels\n"
        "assert _kernels.instruction_set() == 'baseline', _kernels.instruction_set()\n"
        "kernels.DIRECT_CONV = 'always'\n"
        "rng = np.random.default_rng(0)\n"
        "for shape, w_shape, g, s, p, d, dtype in [((2, 4, 17, 21), (8, 1, 3, 3), 4, 1, 1, 1, 'float32'),\n"
        "        ((3, 2, 30), (3, 2, 5), 1, 2, (2, 1), 2, 'float64'), ((1, 3, 6, 7, 9), (6, 1, 2, 3, 3), 3, 1, 1, 1, 'float32')]:\n"
        "    x = rng.standard_normal(shape).astype(dtype); w = rng.standard_normal(w_shape).astype(dtype)\n"
        "    out = []\n"
        "    for name in ('c', 'numpy'):\n"
        "        with kernels.backend(name):\n"
        "            y, cache = kernels.conv_forward_cached(x, w, None, s, p, d, g)\n"
        "            out.append((y, *kernels.conv_backward_cached(np.ones_like(y), cache)[:2]))\n"
        "    for a, b in zip(*out): np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "ARCHCALC_KERNELS_ISA": "baseline", "ARCHCALC_KERNELS": "c"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize("which", [0, 1, 2])
def test_raw_direct_kernel_refuses_bad_buffers(which):
    from archcalc import _kernels as c

    x = np.zeros((2, 4, 6, 6), np.float32)
    w = np.zeros((4, 1, 3, 3), np.float32)
    y = np.zeros((2, 4, 4, 4), np.float32)
    geometry = (4, (6, 6), (3, 3), (1, 1), (1, 1), (0, 0), (4, 4), 2)
    operands = {0: (x, w, y), 1: (y, w, x), 2: (x, y, w)}[which]
    c.conv_direct(which, *operands, *geometry, 4, 4, 2)  # the right buffers run
    a, b, out = operands
    with pytest.raises(ValueError, match="holds"):
        c.conv_direct(which, a[:1].copy(), b, out, *geometry, 4, 4, 2)
    with pytest.raises(ValueError, match="holds"):
        c.conv_direct(which, a, b, out.reshape(-1)[1:].copy(), *geometry, 4, 4, 2)
    with pytest.raises(TypeError, match="one dtype"):
        c.conv_direct(which, a, b.astype(np.float64), out, *geometry, 4, 4, 2)
    shared = np.zeros(a.size + out.size, np.float32)  # the result's first value is the operand's last
    with pytest.raises(ValueError, match="share memory"):
        c.conv_direct(which, shared[:a.size], b, shared[a.size - 1:-1], *geometry, 4, 4, 2)
    with pytest.raises(ValueError, match="divide by groups"):
        c.conv_direct(which, a, b, out, *geometry, 3, 4, 2)
    with pytest.raises(ValueError, match="threads"):
        c.conv_direct(which, a, b, out, *geometry, 4, 4, 0)
    with pytest.raises(ValueError, match="which"):
        c.conv_direct(3, a, b, out, *geometry, 4, 4, 2)
    with pytest.raises(TypeError):
        c.conv_direct(which, a, b, out, *geometry, 4, 4)
    with pytest.raises(ValueError, match="C-contiguous"):
        c.conv_direct(which, a, b, np.zeros_like(out)[..., ::-1], *geometry, 4, 4, 2)


@pytest.mark.parametrize("env, expected", [({"ARCHCALC_THREADS": "3"}, 3), ({"OMP_NUM_THREADS": "5"}, 5),
                                           ({"ARCHCALC_THREADS": "2", "OMP_NUM_THREADS": "5"}, 2),
                                           ({"ARCHCALC_THREADS": "zero", "OMP_NUM_THREADS": "0"}, None)])
def test_the_thread_count_comes_from_the_environment(env, expected, monkeypatch):
    for name in ("ARCHCALC_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if "ARCHCALC_THREADS" in env and expected is None:  # a value it cannot use: said, then ignored
        with pytest.warns(RuntimeWarning, match="ARCHCALC_THREADS='zero' is not understood"):
            assert kernels._thread_count() == len(os.sched_getaffinity(0))
        return
    assert kernels._thread_count() == (expected or len(os.sched_getaffinity(0)))


#: A MobileNetV2-style block and a LeNet-style conv: every conv but the 1x1 expansion runs direct.
INVERTED = {"name": "inverted", "input": [3, 23, 19], "layers": [
    {"type": "conv", "name": "stem", "filters": 6, "kernel": 5, "padding": 2},
    {"type": "conv", "name": "expand", "filters": 24, "kernel": 1, "bias": False}, {"type": "batchnorm"}, {"type": "relu6"},
    {"type": "conv", "name": "depthwise", "filters": 24, "kernel": 3, "stride": 2, "padding": 1, "groups": 24, "bias": False},
    {"type": "batchnorm"}, {"type": "relu6"},
    {"type": "conv", "name": "project", "filters": 8, "kernel": 1, "bias": False}, {"type": "batchnorm", "name": "bn_project"},
    {"type": "conv", "name": "dilated", "filters": 8, "kernel": 3, "dilation": 2, "padding": 2, "groups": 8},
    {"type": "add", "inputs": ["bn_project", "dilated"]},
    {"type": "global_avgpool"}, {"type": "flatten"}, {"type": "linear", "name": "fc", "units": 5},
]}


@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-10), ("float32", 2e-4)])
def test_a_network_of_direct_convs_trains_as_torch(dtype, rtol):
    from archcalc.execute import Executor, loss_and_grad

    oracle = pytest.importorskip("tests.torch_oracle")
    executor = Executor(INVERTED, seed=1, dtype=dtype)
    params = {k: v.copy() for k, v in executor.params.items()}
    x = np.random.default_rng(2).standard_normal((4, *executor.graph.input_shape)).astype(dtype)
    logits = executor.forward(x)
    caches = {name: cache[0] for name, cache in executor._caches.items() if executor.graph.node(name).type == "conv"}
    assert {name for name, cache in caches.items() if cache.direct} == {"stem", "depthwise", "dilated"}
    labels = np.arange(4) % 5
    _, dlogits = loss_and_grad(executor, logits, labels)
    grads = executor.backward(dlogits)
    executor.check_macs()
    executor.check_backward_macs()
    outputs, dx, torch_grads, _ = oracle.run_torch(executor.graph, params, x, dlogits, True, getattr(oracle.torch, dtype))
    reference = outputs[executor.graph.nodes[-1].name]
    np.testing.assert_allclose(logits, reference, rtol=rtol, atol=rtol * np.abs(reference).max())
    scale = max(np.abs(g).max() for g in torch_grads.values())  # some are ~0 (a bias before a batchnorm)
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, torch_grads[name], rtol=rtol * 10, atol=rtol * scale, err_msg=name)
    np.testing.assert_allclose(executor.input_grad, dx, rtol=rtol * 10, atol=rtol * np.abs(dx).max())


def test_raw_direct_kernel_refuses_a_padding_far_beyond_the_input():
    """A small input with a huge padding would need a huge padded copy: refused before any allocation."""
    from archcalc import _kernels as c

    x, w, y = np.zeros((1, 1, 4), np.float32), np.zeros((1, 1, 3), np.float32), np.zeros((1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="far larger than the plane"):
        c.conv_direct(0, x, w, y, 1, (4,), (3,), (1,), (1,), (2**31 - 1,), (1,), 1, 1, 1, 1)

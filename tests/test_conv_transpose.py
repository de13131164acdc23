"""Transposed convolution: kernels against torch, C against NumPy, and the MAC count the peers disagree on."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archcalc
from archcalc import formulas, kernels
from archcalc.errors import ArchcalcError
from archcalc.execute import Executor
from archcalc.passes import infer_shapes
from archcalc.spec import from_dict

torch = pytest.importorskip("torch")
F = torch.nn.functional
TORCH_OPS = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)


def _torch_reference(x, w, b, dy, stride, padding, output_padding, dilation, groups):
    """torch's output and gradients (float64) for the same arguments."""
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    y = TORCH_OPS[x.ndim - 3](xt, wt, bt, stride, padding, output_padding, groups, dilation)
    if dy is None:
        return y.detach().numpy(), None
    y.backward(torch.tensor(dy))
    grads = (xt.grad.numpy(), wt.grad.numpy(), None if bt is None else bt.grad.numpy())
    return y.detach().numpy(), grads


def _ours(x, w, b, dy, args, backend):
    with kernels.backend(backend):
        y, cache = kernels.conv_transpose_forward_cached(x, w, b, *args)
        dx, dw, db = kernels.conv_transpose_backward_cached(dy, cache)
    return y, (dx, dw, db), cache.macs


BACKENDS = ["numpy"] + (["c"] if kernels._C is not None else [])

LARGER = [  # (x shape, w shape, stride, padding, output_padding, dilation, groups)
    ((3, 64, 4, 4), (64, 32, 4, 4), 2, 1, 0, 1, 1),  # a DCGAN generator layer, scaled down
    ((2, 32, 14, 14), (32, 16, 2, 2), 2, 0, 0, 1, 1),  # a U-Net up-convolution
    ((2, 16, 9, 7), (16, 6, 3, 3), (2, 3), (1, 2), (1, 2), (1, 2), 4),
    ((2, 8, 5, 6, 4), (8, 4, 3, 3, 3), 2, 1, 1, 1, 2),  # 3D
    ((4, 6, 33), (6, 5, 7), 4, 3, 3, 2, 1),  # 1D
    ((2, 4, 6), (4, 2, 3), 1, 2, 2, 3, 2),  # output_padding >= stride, allowed below the dilation
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", LARGER, ids=[f"case{i}" for i in range(len(LARGER))])
def test_forward_and_gradients_equal_torchs(case, backend):
    x_shape, w_shape, *args = case
    stride, padding, output_padding, dilation, groups = args
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] * groups)
    y_torch, _ = _torch_reference(x, w, b, None, *args)
    dy = rng.standard_normal(y_torch.shape)
    _, (dx_t, dw_t, db_t) = _torch_reference(x, w, b, dy, *args)
    y, (dx, dw, db), macs = _ours(x, w, b, dy, (stride, padding, output_padding, dilation, groups), backend)
    for ours, theirs in ((y, y_torch), (dx, dx_t), (dw, dw_t), (db, db_t)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)
    # the GEMMs run multiplied c * (f/groups) * prod(k) * prod(in) per sample
    taps = int(np.prod(w_shape[2:]))
    assert macs == x_shape[0] * x_shape[1] * w_shape[1] * taps * int(np.prod(x_shape[2:]))


def test_float32_and_mixed_dtypes():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 6, 5, 5)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    y_ref, _ = _torch_reference(x.astype(np.float64), w.astype(np.float64), None, None, 2, 1, 1, 1, 1)
    for backend in BACKENDS:
        with kernels.backend(backend):
            y = kernels.conv_transpose_forward(x, w, None, 2, 1, 1)
            assert y.dtype == np.float32
            np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
            mixed = kernels.conv_transpose_forward(x, w.astype(np.float64), None, 2, 1, 1)
            assert mixed.dtype == np.float64
            np.testing.assert_allclose(mixed, y_ref, rtol=1e-5, atol=1e-5)


def test_a_batch_larger_than_one_chunk_streams_in_chunks(monkeypatch):
    """Above BATCHED_BYTES the batch runs in chunks; the result does not change."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((5, 4, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    dy = rng.standard_normal((5, 3, 12, 12))
    whole = {backend: _ours(x, w, None, dy, (2, 1, 1, 1, 1), backend) for backend in BACKENDS}
    monkeypatch.setattr(kernels, "BATCHED_BYTES", 27 * 36 * 8 * 2)  # two samples per chunk
    assert kernels.conv_transpose_workspace(5, 3, 9, 36, 8) == 2 * 27 * 36
    for backend in BACKENDS:
        y, grads, macs = _ours(x, w, None, dy, (2, 1, 1, 1, 1), backend)
        np.testing.assert_allclose(y, whole[backend][0], rtol=1e-12, atol=1e-12)
        for ours, theirs in zip(grads[:2], whole[backend][1][:2]):
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
        assert macs == whole[backend][2]


def test_an_empty_batch_gives_empty_results():
    w = np.ones((2, 3, 2, 2))
    for backend in BACKENDS:
        y, (dx, dw, db), macs = _ours(np.ones((0, 2, 3, 3)), w, np.zeros(3), np.ones((0, 3, 6, 6)), (2, 0, 0, 1, 1), backend)
        assert y.shape == (0, 3, 6, 6) and dx.shape == (0, 2, 3, 3) and not dw.any() and not db.any() and macs == 0


@settings(max_examples=25, deadline=None)
@given(
    rank=st.integers(1, 3), batch=st.integers(1, 2), groups=st.integers(1, 2), data=st.data(),
)
def test_c_equals_numpy_and_torch_on_random_geometries(rank, batch, groups, data):
    """Random valid attributes: the C path equals the NumPy path (to the GEMMs' rounding) and torch."""
    if len(BACKENDS) < 2:
        pytest.skip("the C extension is not built")
    sizes = tuple(data.draw(st.integers(1, 5)) for _ in range(rank))
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    stride = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(rank))
    extra = tuple(data.draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    padding = []
    for n, k, s, d, e in zip(sizes, kernel, stride, dilation, extra):
        largest = ((n - 1) * s + d * (k - 1) + e) // 2  # keeps the output >= 1
        padding.append(data.draw(st.integers(0, largest)))
    rng = np.random.default_rng(0)
    c, f = 2 * groups, 3 * groups
    x, w = rng.standard_normal((batch, c, *sizes)), rng.standard_normal((c, f // groups, *kernel))
    b = rng.standard_normal(f)
    args = (stride, tuple(padding), extra, dilation, groups)
    y_torch, _ = _torch_reference(x, w, b, None, *args)
    dy = rng.standard_normal(y_torch.shape)
    _, torch_grads = _torch_reference(x, w, b, dy, *args)
    results = [_ours(x, w, b, dy, args, backend) for backend in BACKENDS]
    for y, grads, _ in results:
        np.testing.assert_allclose(y, y_torch, rtol=1e-10, atol=1e-10)
        for ours, theirs in zip(grads, torch_grads):
            np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)
    (y_numpy, grads_numpy, macs_numpy), (y_c, grads_c, macs_c) = results
    np.testing.assert_allclose(y_c, y_numpy, rtol=1e-13, atol=1e-13)
    assert macs_c == macs_numpy


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"output_padding": 2}, ValueError,
     "output_padding must be smaller than stride or dilation, got output_padding=2, stride=2, dilation=1"),
    ({"padding": 9}, ValueError, "(3 - 1)*2 - 2*9 + 1*(3 - 1) + 0 + 1 = -11 < 1"),
    ({"padding": -1}, ValueError, "padding and output_padding must be >= 0"),
    ({"stride": 1.5}, TypeError, "stride must be an int"),
    ({"groups": 3}, ValueError, "channels 4 must divide by groups=3"),
])
def test_kernel_arguments_are_checked(kwargs, error, message):
    x, w = np.ones((1, 4, 3, 3)), np.ones((4, 2, 3, 3))
    arguments = {"stride": 2, "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1, **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        kernels.conv_transpose_forward(x, w, None, **arguments)


def _infer(layer, input_shape=(4, 5, 5)):
    graph = from_dict({"name": "t", "input": list(input_shape), "layers": [{"type": "conv_transpose", **layer}]})
    return infer_shapes(graph)[graph.nodes[-1].name]


@pytest.mark.parametrize(("layer", "input_shape", "message"), [
    ({"filters": 2, "kernel": 3, "stride": 2, "output_padding": 2}, (4, 5, 5),
     "output_padding must be smaller than stride or dilation on the height axis, got output_padding=2, stride=2, dilation=1"),
    ({"filters": 2, "kernel": 3, "padding": 4}, (4, 5, 5), "output height = (5 - 1)*1 - 2*4 + 1*(3 - 1) + 0 + 1 = -1 < 1"),
    ({"filters": 2, "kernel": 2, "stride": 2**30}, (4, 3, 3), "output height must be at most 2,147,483,647 (2**31 - 1), got "
     "(3 - 1)*1073741824 - 2*0 + 1*(2 - 1) + 0 + 1 = 2,147,483,650"),
    ({"filters": 3, "kernel": 2, "groups": 2}, (4, 5, 5), "filters 3 do not divide by groups=2"),
    ({"filters": 2, "kernel": [2, 2]}, (4, 5), "conv_transpose with a 2D kernel expects input (C, H, W), got (4, 5)"),
    ({"filters": 2, "kernel": 2, "padding": [1, 2, 3]}, (4, 5, 5), "padding has 3 values for 2 spatial axes"),
])
def test_spec_errors_name_the_constraint(layer, input_shape, message):
    with pytest.raises(ArchcalcError) as caught:
        _infer(layer, input_shape)
    assert message in str(caught.value)


def test_explain_and_summary_write_out_the_dcgan_layer():
    from archcalc.ops import get_op

    layer = _infer({"filters": 256, "kernel": 4, "stride": 2, "padding": 1}, (512, 4, 4))
    op = get_op("conv_transpose")
    assert layer.out_shape == (256, 8, 8)
    assert op.summary(layer) == "4x4/2 p1, 256"
    lines = dict(op.explain(layer))
    assert lines["output height"] == "(in - 1)*s - 2p + d*(k - 1) + output_padding + 1 = (4 - 1)*2 - 2*1 + 1*(4 - 1) + 0 + 1 = 8"
    assert lines["weights"] == "c * (f/groups) * prod(k) = 512 * 256 * 4*4 = 2097152"
    assert lines["MACs"].startswith("c * (f/groups) * prod(k) * prod(in) = 512 * 256 * 4*4 * 4*4 = 33554432")
    grouped = _infer({"filters": 4, "kernel": [3, 1], "stride": [2, 1], "output_padding": [1, 0], "dilation": 2, "groups": 2})
    assert op.summary(grouped) == "3x1/2x1 op1x0 d2 g2, 4"


# ------------------------------------------------------------------------------------------ the peers

#: The DCGAN generator's transposed convs (Radford et al. 2016; the PyTorch DCGAN tutorial,
#: nz=100, ngf=64, nc=3): 100x1x1 -> 512x4x4 -> 256x8x8 -> 128x16x16 -> 64x32x32 -> 3x64x64.
DCGAN = [(100, 512, 1, 0), (512, 256, 2, 1), (256, 128, 2, 1), (128, 64, 2, 1), (64, 3, 2, 1)]
#: c * f * 4*4 * prod(in) per layer, by hand: 100*512*16*1, 512*256*16*16, 256*128*16*64,
#: 128*64*16*256, 64*3*16*1024.
DCGAN_MACS = 819_200 + 33_554_432 + 33_554_432 + 33_554_432 + 3_145_728
#: What thop and torchinfo count: the forward conv's f * c * 4*4 * prod(out) per layer:
#: 512*100*16*16, 256*512*16*64, 128*256*16*256, 64*128*16*1024, 3*64*16*4096.
DCGAN_PEER_MACS = 13_107_200 + 134_217_728 + 134_217_728 + 134_217_728 + 12_582_912


def _dcgan_spec():
    layers = [{"type": "conv_transpose", "filters": f, "kernel": 4, "stride": s, "padding": p, "bias": False}
              for _, f, s, p in DCGAN]
    return from_dict({"name": "dcgan-generator", "input": [100, 1, 1], "layers": layers})


def _dcgan_torch():
    layers = [torch.nn.ConvTranspose2d(c, f, 4, s, p, bias=False) for c, f, s, p in DCGAN]
    return torch.nn.Sequential(*layers)


def test_dcgan_macs_are_the_multiply_adds_the_executor_performs_and_torchs():
    """archcalc's count == the GEMMs the executor ran (check_macs) == torch's FlopCounterMode / 2."""
    from tests.torch_oracle import torch_macs

    graph = _dcgan_spec()
    analysis = archcalc.analyze(graph)
    assert analysis.totals.macs == DCGAN_MACS == 104_628_224
    executor = Executor(graph, dtype="float32")
    executor.forward(np.random.default_rng(0).standard_normal((2, 100, 1, 1)).astype(np.float32))
    performed = executor.check_macs()
    assert sum(p for p, _ in performed.values()) == 2 * DCGAN_MACS
    assert torch_macs(_dcgan_torch(), [torch.rand(1, 100, 1, 1)]) == DCGAN_MACS
    assert analysis.totals.params == sum(c * f * 16 for c, f, _, _ in DCGAN) == 3_574_784


def test_thop_and_torchinfo_count_the_dcgan_generator_4_1_times_too_high():
    """The documented disagreement: both apply a forward conv's formula to the output."""
    thop = pytest.importorskip("thop")
    torchinfo = pytest.importorskip("torchinfo")
    model = _dcgan_torch()
    thop_macs, thop_params = thop.profile(model, inputs=(torch.rand(1, 100, 1, 1),), verbose=False)
    summary = torchinfo.summary(model, input_size=(1, 100, 1, 1), verbose=0)
    assert int(thop_macs) == summary.total_mult_adds == DCGAN_PEER_MACS == 428_343_296
    assert int(thop_params) == summary.total_params == archcalc.analyze(_dcgan_spec()).totals.params
    assert round(DCGAN_PEER_MACS / DCGAN_MACS, 2) == 4.09
    # one stride-2 layer alone: exactly stride^2 = 4 times
    layer = torch.nn.ConvTranspose2d(512, 256, 4, 2, 1, bias=False)
    single = formulas.conv_transpose_macs(512, 256, (4, 4), (4, 4))
    assert thop.profile(layer, inputs=(torch.rand(1, 512, 4, 4),), verbose=False)[0] == 4 * single
    assert torchinfo.summary(layer, input_size=(1, 512, 4, 4), verbose=0).total_mult_adds == 4 * single


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding", "output_padding", "dilation"), [
    ((1, 2, 1), (2, 3, 1), 1, 0, 1, 2),        # a 1x1 kernel: output_padding's position is read by no window
    ((2, 2, 3, 2), (2, 3, 1, 1), 1, 0, 1, 2),
    ((1, 2, 4), (2, 3, 1), 3, 0, 2, 1),        # stride 3, 1x1: two of every three outputs receive only the bias
])
def test_outputs_no_input_reaches_get_only_the_bias(x_shape, w_shape, stride, padding, output_padding, dilation, backend):
    """A 1x1 kernel with output_padding leaves output positions that no input value scatters to:
    they hold the bias alone (as PyTorch), and the gradients ignore them."""
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[1])
    args = (stride, padding, output_padding, dilation, 1)
    y_torch, _ = _torch_reference(x, w, b, None, *args)
    dy = rng.standard_normal(y_torch.shape)
    _, torch_grads = _torch_reference(x, w, b, dy, *args)
    y, grads, _ = _ours(x, w, b, dy, args, backend)
    np.testing.assert_allclose(y, y_torch, rtol=1e-12, atol=1e-12)
    for ours, theirs in zip(grads, torch_grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)

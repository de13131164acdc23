"""Conv layers fwd and fwd+bwd: the lecture-style NumPy conv, the NumPy reference, the C path, torch.

Run: python benchmarks/conv.py [--quick]
Float32. Each implementation is checked against torch before it is timed. Prints ms and GFLOP/s
(2 FLOPs per MAC; fwd+bwd does 3 GEMMs' worth), the machine's float32 GEMM GFLOP/s from
numpy.matmul as the ceiling, and ratios from this one run. OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE,
which these machines may set and which slow a current numpy, are unset for this command alone
(the script re-runs itself without them); the BLAS in use is printed (threadpoolctl).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import numpy as np

from archcalc import kernels

LAYERS = (  # name, (N, C, H, W), F, k, s, p
    ("VGG16 conv1_2", (8, 64, 224, 224), 64, 3, 1, 1),
    ("VGG16 conv3_1", (8, 128, 56, 56), 256, 3, 1, 1),
    ("VGG16 conv5_1", (8, 512, 14, 14), 512, 3, 1, 1),
    ("AlexNet conv1", (8, 3, 227, 227), 96, 11, 4, 0),
    ("LeNet conv1", (64, 3, 32, 32), 6, 5, 1, 0),
    ("ResNet 1x1", (8, 256, 56, 56), 64, 1, 1, 0),
    ("strided 3x3", (8, 128, 56, 56), 128, 3, 2, 1),
)


def lecture_forward(x, w, b, s, p):
    """The lecture's recipe, literally: a Python loop over output positions builds X_hat, then W X_hat."""
    n, c, h, width = x.shape
    f, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh, ow = (h + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
    cols = np.empty((n, c * k * k, oh * ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            cols[:, :, i * ow + j] = xp[:, :, i * s:i * s + k, j * s:j * s + k].reshape(n, -1)
    y = np.matmul(w.reshape(f, -1), cols).reshape(n, f, oh, ow) + b.reshape(1, f, 1, 1)
    return y, (cols, xp.shape, oh, ow)


def lecture_backward(dy, x, w, cache, s, p):
    cols, padded, oh, ow = cache
    n, f = dy.shape[:2]
    k = w.shape[2]
    dy_m = dy.reshape(n, f, -1)
    dw = sum(dy_m[i] @ cols[i].T for i in range(n)).reshape(w.shape)
    dcols = np.matmul(w.reshape(f, -1).T, dy_m)
    dxp = np.zeros(padded, dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            dxp[:, :, i * s:i * s + k, j * s:j * s + k] += dcols[:, :, i * ow + j].reshape(n, -1, k, k)
    return dxp[:, :, p:p + x.shape[2], p:p + x.shape[3]], dw, dy.sum(axis=(0, 2, 3))


def timed(fn, repeat):
    """Median seconds of ``repeat`` calls after one warm-up; the last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def gemm_gflops(repeat=5):
    """This machine's float32 GEMM rate now (numpy.matmul 2048^3), in GFLOP/s: the ceiling."""
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    seconds, _ = timed(lambda: a @ a, repeat)
    return 2 * 2048**3 / seconds / 1e9


def torch_reference(torch, conv, x, w, b, s, p, rng):
    """torch's answer for one layer ``conv(x, w, b, s, p)``: ``(dy, [y, dx, dw, db], fwd, fwd+bwd)``,
    a random dY, the outputs every implementation is checked against, and the two torch passes to time."""
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = conv(xt, wt, bt, s, p)
    dy = rng.standard_normal(yt.shape).astype(np.float32)
    yt.backward(torch.tensor(dy))
    reference = [t.detach().numpy() for t in (yt, xt.grad, wt.grad, bt.grad)]

    def forward():
        with torch.no_grad():
            return conv(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), s, p)

    def both():
        xi, wi, bi = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        conv(xi, wi, bi, s, p).backward(torch.from_numpy(dy))
        return xi.grad

    return dy, reference, forward, both


def rerun_without_openblas_overrides():
    """Run this command again without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE when they are set (they
    change the GEMM kernel that would be measured), and exit with its status."""
    blocking = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
    if blocking:
        env = {k: v for k, v in os.environ.items() if k not in blocking}
        print(f"re-running without {', '.join(blocking)} (this command only)", flush=True)
        sys.exit(subprocess.run([sys.executable, *sys.argv], env=env).returncode)


def main(quick: bool) -> None:
    import torch
    from threadpoolctl import threadpool_info

    blas = "; ".join(f"{i['internal_api']} {i.get('version')} {i.get('architecture', '')} {i['num_threads']} threads"
                     for i in threadpool_info())
    print(f"BLAS: {blas}; torch {torch.__version__}, {torch.get_num_threads()} threads; archcalc kernels built: "
          f"{'c' if kernels._C else 'numpy only'}")
    ceiling = gemm_gflops()
    print(f"float32 GEMM (numpy.matmul 2048^3): {ceiling:.0f} GFLOP/s\n")
    header = (f"{'layer':<16} {'pass':<8} {'lecture':>9} {'numpy ref':>10} {'C path':>9} {'torch':>9}   "
              f"{'C GFLOP/s':>9} {'% GEMM':>6}   {'C/torch':>7} {'numpy/C':>7}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for name, shape, f, k, s, p in LAYERS:
        x = rng.standard_normal(shape).astype(np.float32)
        w = (rng.standard_normal((f, shape[1], k, k)) / np.sqrt(shape[1] * k * k)).astype(np.float32)
        b = rng.standard_normal(f).astype(np.float32)
        bench_layer(torch, name, x, w, b, s, p, rng, ceiling, 1 if quick else 3)


def bench_layer(torch, name, x, w, b, s, p, rng, ceiling, repeat):
    """Time one layer's fwd and fwd+bwd in every implementation and print a row for each."""
    n, f, k = x.shape[0], w.shape[0], w.shape[2]
    out = ((x.shape[2] + 2 * p - k) // s + 1) * ((x.shape[3] + 2 * p - k) // s + 1)
    macs = f * x.shape[1] * k * k * n * out
    dy, reference, torch_fwd, torch_both = torch_reference(torch, torch.nn.functional.conv2d, x, w, b, s, p, rng)

    def ours(backend_name, both):
        def run():
            with kernels.backend(backend_name):
                y, cache = kernels.conv_forward_cached(x, w, b, s, p)
                return (y, *kernels.conv_backward_cached(dy, cache)) if both else (y,)
        return run

    def lecture(both):
        def run():
            y, cache = lecture_forward(x, w, b, s, p)
            return (y, *lecture_backward(dy, x, w, cache, s, p)) if both else (y,)
        return run

    for label, both in (("fwd", False), ("fwd+bwd", True)):
        times = {}
        candidates = {"lecture": lecture(both), "numpy": ours("numpy", both)}
        if kernels._C is not None:
            candidates["c"] = ours("c", both)
        for impl, fn in candidates.items():
            seconds, result = timed(fn, 1 if impl == "lecture" else repeat)
            for got, want in zip(result, reference):  # verified against torch before it counts
                scale = float(np.abs(want).max()) or 1.0
                np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-4 * scale, err_msg=f"{name} {impl}")
            times[impl] = seconds
        times["torch"] = timed(torch_both if both else torch_fwd, repeat)[0]
        c_time = times.get("c", float("nan"))
        gflops = 2 * macs * (3 if both else 1) / c_time / 1e9
        print(f"{name:<16} {label:<8} {times['lecture'] * 1e3:>7.1f}ms {times['numpy'] * 1e3:>8.1f}ms {c_time * 1e3:>7.1f}ms "
              f"{times['torch'] * 1e3:>7.1f}ms   {gflops:>9.0f} {100 * gflops / ceiling:>5.0f}%   "
              f"{c_time / times['torch']:>6.2f}x {times['numpy'] / c_time:>6.2f}x")

if __name__ == "__main__":
    rerun_without_openblas_overrides()
    main("--quick" in sys.argv)

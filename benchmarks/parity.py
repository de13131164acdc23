"""The C conv path against PyTorch, layer by layer: the per-layer targets of the C-path parity issue.

Run: python benchmarks/parity.py [--runs K] [--repeat R] [--only NAME] [--threads T]

Float32, forward + backward (dX, dW, db) of each layer, the batch as listed. Each implementation
runs in its own fresh worker process (archcalc's C path, its NumPy reference, torch with T
threads, default 2), so that no library's thread pool is idle-spinning while another's works
(one process holding both OpenBLAS's and torch's OpenMP pools slowed torch's depthwise layer up
to 15x here). A worker times each layer R times (default 5) after a warm-up and reports the
median, each layer after 0.3 s idle (so that no library's threads still spin from the layer
before); the whole set of workers runs K times (default 3), in turn, so that a change in the
machine's load hits every implementation alike. Printed per layer: min and median over the
runs of each implementation's time, the ratios archcalc/torch and numpy/archcalc of those, and
for the big layers the C path's rate against numpy.matmul's float32 GEMM rate (2048^3) measured
by the archcalc worker in the same run (2 FLOPs per MAC, fwd+bwd three GEMMs' worth).

Each worker checks its results before timing: the C path against the NumPy reference (itself
checked against torch by the test suite), torch against the NumPy reference too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import zlib

import numpy as np
from _args import positive_int

# name, (N, C, H, W), filters, kernel, stride, padding, groups, transposed, target
LAYERS = (
    ("VGG16 conv3_1", (8, 128, 56, 56), 256, 3, 1, 1, 1, False, "big"),
    ("VGG16 conv5_1", (8, 512, 14, 14), 512, 3, 1, 1, 1, False, "big"),
    ("LeNet conv1", (64, 1, 32, 32), 6, 5, 1, 0, 1, False, "lenet"),
    ("LeNet conv1 RGB", (64, 3, 32, 32), 6, 5, 1, 0, 1, False, "lenet"),
    ("LeNet conv2", (64, 6, 14, 14), 16, 5, 1, 0, 1, False, "lenet"),
    ("MBv2 dw 96@112 s2", (8, 96, 112, 112), 96, 3, 2, 1, 96, False, "depthwise"),
    ("MBv2 dw 144@56", (8, 144, 56, 56), 144, 3, 1, 1, 144, False, "depthwise"),
    ("MBv2 dw 144@56 s2", (8, 144, 56, 56), 144, 3, 2, 1, 144, False, "depthwise"),
    ("MBv2 dw 192@28", (8, 192, 28, 28), 192, 3, 1, 1, 192, False, "depthwise"),
    ("MBv2 dw 192@28 s2", (8, 192, 28, 28), 192, 3, 2, 1, 192, False, "depthwise"),
    ("MBv2 dw 384@14", (8, 384, 14, 14), 384, 3, 1, 1, 384, False, "depthwise"),
    ("MBv2 dw 576@14", (8, 576, 14, 14), 576, 3, 1, 1, 576, False, "depthwise"),
    ("MBv2 dw 576@14 s2", (8, 576, 14, 14), 576, 3, 2, 1, 576, False, "depthwise"),
    ("MBv2 dw 960@7", (8, 960, 7, 7), 960, 3, 1, 1, 960, False, "depthwise"),
    ("DCGAN 128->64 T", (16, 128, 16, 16), 64, 4, 2, 1, 1, True, "transposed"),
    ("DCGAN 512->256 T", (16, 512, 4, 4), 256, 4, 2, 1, 1, True, "transposed"),
    ("U-Net up 1024->512 T", (4, 1024, 28, 28), 512, 2, 2, 0, 1, True, "transposed"),
)

TARGETS = {
    "big": "fwd+bwd <= 1.1x torch and >= 70% of the GEMM rate",
    "lenet": ">= 2x faster than the NumPy reference and <= 1.2x torch",
    "depthwise": "fwd+bwd <= 1.5x torch",
    "transposed": "fwd+bwd <= 1.5x torch",
}


def arrays(layer):
    """The layer's x, w, b and dY (seeded: every worker gets the same values) and its MACs."""
    name, shape, f, k, s, p, g, transposed, _ = layer
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    n, c, h, w_ = shape
    x = rng.standard_normal(shape).astype(np.float32)
    if transposed:
        w = (rng.standard_normal((c, f // g, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
        out = ((h - 1) * s - 2 * p + k, (w_ - 1) * s - 2 * p + k)
        macs = n * c * (f // g) * k * k * h * w_
    else:
        w = (rng.standard_normal((f, c // g, k, k)) / np.sqrt(c // g * k * k)).astype(np.float32)
        out = ((h + 2 * p - k) // s + 1, (w_ + 2 * p - k) // s + 1)
        macs = n * f * (c // g) * k * k * out[0] * out[1]
    b = rng.standard_normal(f).astype(np.float32)
    dy = rng.standard_normal((n, f, *out)).astype(np.float32)
    return x, w, b, dy, macs


def archcalc_step(layer, backend):
    from archcalc import kernels

    _, _, _, _, s, p, g, transposed, _ = layer
    x, w, b, dy, _ = arrays(layer)

    def run():
        with kernels.backend(backend):
            if transposed:
                y, cache = kernels.conv_transpose_forward_cached(x, w, b, s, p)
                return (y, *kernels.conv_transpose_backward_cached(dy, cache))
            y, cache = kernels.conv_forward_cached(x, w, b, s, p, 1, g)
            return (y, *kernels.conv_backward_cached(dy, cache))
    return run


def torch_step(layer, threads):
    import torch

    torch.set_num_threads(threads)
    _, _, _, _, s, p, g, transposed, _ = layer
    x, w, b, dy, _ = arrays(layer)

    def run():
        xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        conv = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d
        y = conv(xt, wt, bt, s, p) if transposed else conv(xt, wt, bt, s, p, 1, g)
        y.backward(torch.from_numpy(dy))
        return tuple(t.detach().numpy() for t in (y, xt.grad, wt.grad, bt.grad))
    return run


def check(got, layer):
    """got (y, dx, dw, db) against the NumPy reference's, to float32 rounding."""
    reference = archcalc_step(layer, "numpy")()
    for ours, want, what in zip(got, reference, ("y", "dx", "dw", "db")):
        scale = float(np.abs(want).max()) or 1.0
        np.testing.assert_allclose(ours, want, rtol=1e-3, atol=2e-4 * scale, err_msg=f"{layer[0]} {what}")


def worker(impl, names, repeat, threads):
    """Median seconds of each layer's fwd+bwd for one implementation (and, for archcalc, the GEMM rate)."""
    result = {}
    if impl == "archcalc":
        a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
        a @ a
        times = []
        for _ in range(5):
            start = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - start)
        result["gemm_gflops"] = 2 * 2048**3 / statistics.median(times) / 1e9
    for layer in LAYERS:
        if layer[0] not in names:
            continue
        # every layer starts from idle threads: OpenBLAS's spin for about 0.1 s after a multi-threaded
        # GEMM, and a small layer timed right after VGG's shared its cores with them (2-3x slower)
        time.sleep(0.3)
        run = torch_step(layer, threads) if impl == "torch" else archcalc_step(layer, "c" if impl == "archcalc" else "numpy")
        got = run()  # the warm-up
        if impl != "numpy":
            check(got, layer)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        result[layer[0]] = statistics.median(times)
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=positive_int, default=3)
    parser.add_argument("--repeat", type=positive_int, default=5)
    parser.add_argument("--threads", type=positive_int, default=2, help="torch's threads (torch.set_num_threads)")
    parser.add_argument("--only", action="append", default=[], help="layers whose name contains this (repeatable)")
    parser.add_argument("--worker", choices=("archcalc", "numpy", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, json.loads(args.names), args.repeat, args.threads)
        return
    names = [layer[0] for layer in LAYERS if not args.only or any(o in layer[0] for o in args.only)]
    if not names:
        parser.error(f"no layer's name contains {' or '.join(map(repr, args.only))}; the layers: "
                     + ", ".join(layer[0] for layer in LAYERS))
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    import torch

    from archcalc import _kernels, kernels
    print(f"torch {torch.__version__} ({args.threads} threads); numpy {np.__version__}; archcalc kernels "
          f"{kernels.BACKEND}, direct conv kernels: {_kernels.instruction_set()}, {kernels.THREADS} threads; "
          f"{os.cpu_count()} CPUs; {args.runs} runs of {args.repeat} repeats (median per run)")
    runs = {impl: [] for impl in ("archcalc", "numpy", "torch")}
    for run in range(args.runs):
        for impl in runs:
            command = [sys.executable, __file__, "--worker", impl, "--names", json.dumps(names),
                       "--repeat", str(args.repeat), "--threads", str(args.threads)]
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
            runs[impl].append(json.loads(out.strip().splitlines()[-1]))
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
    report(runs, names)


def report(runs, names):
    gemm = [r["gemm_gflops"] for r in runs["archcalc"]]
    print(f"float32 GEMM (numpy.matmul 2048^3): min {min(gemm):.0f}, median {statistics.median(gemm):.0f} GFLOP/s\n")
    header = (f"{'layer (fwd+bwd)':<22}{'archcalc ms':>17}{'torch ms':>17}{'numpy ms':>17}"
              f"{'archcalc/torch':>16}{'numpy/archcalc':>16}{'% GEMM':>9}")
    print(header + "\n" + " " * 22 + "      min  median" * 3 + "     min  median" * 2 + "  median")
    print("-" * len(header))
    for layer in LAYERS:
        name = layer[0]
        if name not in names:
            continue
        ours, theirs, ref = ([r[name] for r in runs[impl]] for impl in ("archcalc", "torch", "numpy"))
        ratio = [a / t for a, t in zip(ours, theirs)]  # per run: the pair measured closest in time
        speedup = [n / a for a, n in zip(ours, ref)]
        percent = ""
        if layer[8] == "big":
            flops = 2 * 3 * arrays(layer)[4]
            rates = [flops / t / 1e9 / r["gemm_gflops"] for t, r in zip(ours, runs["archcalc"])]
            percent = f"{100 * statistics.median(rates):>7.0f}%"
        cells = "".join(f"{min(v) * 1e3:>8.1f}{statistics.median(v) * 1e3:>8.1f} " for v in (ours, theirs, ref))
        print(f"{name:<22}{cells}{min(ratio):>7.2f}x{statistics.median(ratio):>6.2f}x "
              f"{min(speedup):>6.2f}x{statistics.median(speedup):>6.2f}x {percent}")
    print("\nratios are per run (archcalc and torch measured in consecutive processes), then min and median over runs")
    for target, text in TARGETS.items():
        print(f"  {target}: {text}")


if __name__ == "__main__":
    main()

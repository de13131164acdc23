"""Transposed conv layers, forward and forward+backward: archcalc's executor kernels against torch.

Run: python benchmarks/conv_transpose.py [--quick]
Float32. The layers are a DCGAN generator's (Radford et al. 2016, the PyTorch tutorial's
ngf=64) at batch 16 and U-Net's first up-convolution (Ronneberger et al. 2015: 2x2 stride 2,
1024 -> 512 channels on 28x28) at batch 4 and 16. Each implementation is checked against torch
before it is timed; prints ms (median of 5 after a warm-up, archcalc and torch called
alternately so that the machine's load changes hit both alike), GFLOP/s (2 FLOPs per MAC, fwd+bwd
does 3 GEMMs' worth), the archcalc/torch ratio from this one run, and numpy.matmul's float32
GFLOP/s on 2048^3 as the machine's ceiling at the time. OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE are unset for this command alone (the script re-runs itself without them), as
benchmarks/conv.py does.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
from conv import gemm_gflops, rerun_without_openblas_overrides, torch_reference  # benchmarks/conv.py, beside this script

from archcalc import formulas, kernels

LAYERS = (  # name, (N, C, H, W), F, k, s, p
    ("DCGAN 512->256", (16, 512, 4, 4), 256, 4, 2, 1),
    ("DCGAN 256->128", (16, 256, 8, 8), 128, 4, 2, 1),
    ("DCGAN 128->64", (16, 128, 16, 16), 64, 4, 2, 1),
    ("DCGAN 64->3", (16, 64, 32, 32), 3, 4, 2, 1),
    ("U-Net up 1024->512", (4, 1024, 28, 28), 512, 2, 2, 0),
    ("U-Net up 1024->512", (16, 1024, 28, 28), 512, 2, 2, 0),
)


def timed_pair(first, second, repeat):
    """Median seconds of ``first`` and of ``second``, called alternately ``repeat`` times each after
    a warm-up, so that a change in the machine's load hits both alike; and ``first``'s last result."""
    result = first()
    second()
    times = ([], [])
    for _ in range(repeat):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            value = fn()
            bucket.append(time.perf_counter() - start)
            result = value if fn is first else result
    return statistics.median(times[0]), statistics.median(times[1]), result


def main(quick: bool) -> None:
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; archcalc kernels: {kernels.BACKEND}")
    ceiling = gemm_gflops(3)
    print(f"float32 GEMM (numpy.matmul 2048^3): {ceiling:.0f} GFLOP/s (this machine's load, this run)\n")
    header = (f"{'layer':<20} {'batch':>5} {'pass':<8} {'archcalc':>9} {'torch':>9} {'GFLOP/s':>8} {'ratio':>7}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    totals = {"archcalc": 0.0, "torch": 0.0}
    for name, shape, f, k, s, p in LAYERS:
        if quick and shape[0] > 4 and name.startswith("U-Net"):
            continue
        x = rng.standard_normal(shape).astype(np.float32)
        w = (rng.standard_normal((shape[1], f, k, k)) / np.sqrt(shape[1] * k * k)).astype(np.float32)
        b = rng.standard_normal(f).astype(np.float32)
        for label, seconds in bench_layer(torch, x, w, b, s, p, rng, 1 if quick else 5):
            macs = shape[0] * formulas.conv_transpose_macs(shape[1], f, (k, k), shape[2:])
            gflops = 2 * macs * (3 if label == "fwd+bwd" else 1) / seconds["archcalc"] / 1e9
            print(f"{name:<20} {shape[0]:>5} {label:<8} {seconds['archcalc'] * 1e3:>7.1f}ms {seconds['torch'] * 1e3:>7.1f}ms "
                  f"{gflops:>8.0f} {seconds['archcalc'] / seconds['torch']:>6.2f}x")
            if label == "fwd+bwd":
                for impl in totals:
                    totals[impl] += seconds[impl]
    print(f"\nfwd+bwd summed over the layers: archcalc {totals['archcalc'] * 1e3:.1f} ms, torch {totals['torch'] * 1e3:.1f} ms, "
          f"ratio {totals['archcalc'] / totals['torch']:.2f}x")


def bench_layer(torch, x, w, b, s, p, rng, repeat):
    """Time one layer's fwd and fwd+bwd in archcalc's kernels and in torch; yields (pass, seconds by impl)."""
    dy, reference, torch_fwd, torch_both = torch_reference(torch, torch.nn.functional.conv_transpose2d, x, w, b, s, p, rng)

    def ours(both):
        def run():
            y, cache = kernels.conv_transpose_forward_cached(x, w, b, s, p)
            return (y, *kernels.conv_transpose_backward_cached(dy, cache)) if both else (y,)
        return run

    for label, both in (("fwd", False), ("fwd+bwd", True)):
        ours_seconds, torch_seconds, result = timed_pair(ours(both), torch_both if both else torch_fwd, repeat)
        for got, want in zip(result, reference):  # verified against torch before it counts
            scale = float(np.abs(want).max()) or 1.0
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-4 * scale)
        yield label, {"archcalc": ours_seconds, "torch": torch_seconds}


if __name__ == "__main__":
    rerun_without_openblas_overrides()
    main("--quick" in sys.argv)

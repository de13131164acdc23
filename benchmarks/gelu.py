"""GELU's exact erf in the executor: the C loop (kernels.erf) against math.erf per value.

Both run in this process on the same array (a ConvNeXt-T stage-1 activation, 384x56x56 values
at batch 1); the ratio is what matters on a noisy machine. Run: python benchmarks/gelu.py
"""

from __future__ import annotations

import time

import numpy as np

from archcalc import kernels


def best_of(function, repeats: int = 5) -> float:
    """The fastest of ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    x = np.random.default_rng(0).standard_normal((1, 384, 56, 56)).astype(np.float32)
    timings = {}
    for name in ("numpy", "c"):
        with kernels.backend(name):
            timings[name] = best_of(lambda: kernels.erf(x))
    print(f"erf of {x.size:,} float32 values: math.erf per value {timings['numpy'] * 1e3:.1f} ms, "
          f"C loop {timings['c'] * 1e3:.1f} ms, ratio {timings['numpy'] / timings['c']:.1f}x")


if __name__ == "__main__":
    main()

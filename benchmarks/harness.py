"""How the timing harness moves the archcalc/torch ratio of the big VGG16 layers.

Run: python benchmarks/harness.py [--runs K]

VGG16 conv3_1 and conv5_1 (batch 8, float32, fwd+bwd), the C path against torch at 2 threads,
timed four ways, each in a fresh process, K times (default 3) in turn:
  sequential   one process: archcalc's repeats, then torch's (benchmarks/conv.py's way until now)
  alternating  one process: archcalc and torch called in turn
  alone        archcalc alone in one process, torch alone in another (benchmarks/parity.py's way)
Prints each way's min and median ratio over the runs, and each library's time alone and beside
the other: what the other library's thread pool costs it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

LAYERS = (("VGG16 conv3_1", (8, 128, 56, 56), 256), ("VGG16 conv5_1", (8, 512, 14, 14), 512))
WAYS = ("sequential", "alternating", "alone")


def _data(shape, filters):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((filters, shape[1], 3, 3)) / np.sqrt(9 * shape[1])).astype(np.float32)
    return x, w, np.zeros(filters, np.float32), rng.standard_normal((shape[0], filters, *shape[2:])).astype(np.float32)


def _ours(x, w, b, dy):
    from archcalc import kernels

    y, cache = kernels.conv_forward_cached(x, w, b, 1, 1)
    kernels.conv_backward_cached(dy, cache)


def _theirs(x, w, b, dy):
    import torch

    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    torch.nn.functional.conv2d(xt, wt, bt, 1, 1).backward(torch.from_numpy(dy))


def _timed(fn, args, repeat=3):
    fn(*args)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker(way):
    """{layer: [archcalc s, torch s]} for one way (None where the way times one library only)."""
    if way != "alone-archcalc":
        import torch

        torch.set_num_threads(2)
    result = {}
    for name, shape, filters in LAYERS:
        args = _data(shape, filters)
        if way == "sequential":
            result[name] = [_timed(_ours, args), _timed(_theirs, args)]
        elif way == "alternating":
            _ours(*args)
            _theirs(*args)
            ours, theirs = [], []
            for _ in range(3):
                for fn, times in ((_ours, ours), (_theirs, theirs)):
                    start = time.perf_counter()
                    fn(*args)
                    times.append(time.perf_counter() - start)
            result[name] = [statistics.median(ours), statistics.median(theirs)]
        elif way == "alone-archcalc":
            result[name] = [_timed(_ours, args), None]
        else:
            result[name] = [None, _timed(_theirs, args)]
    print(json.dumps(result))


def _run(way):
    out = subprocess.run([sys.executable, __file__, "--worker", way], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    ratios = {(way, name): [] for way in WAYS for name, _, _ in LAYERS}
    times = {(way, lib, name): [] for way in WAYS for lib in (0, 1) for name, _, _ in LAYERS}
    for _ in range(args.runs):
        for way in WAYS:
            if way == "alone":
                ours, theirs = _run("alone-archcalc"), _run("alone-torch")
                result = {name: [ours[name][0], theirs[name][1]] for name in ours}
            else:
                result = _run(way)
            for name, (a, t) in result.items():
                ratios[way, name].append(a / t)
                times[way, 0, name].append(a)
                times[way, 1, name].append(t)
    print(f"{args.runs} runs; archcalc/torch fwd+bwd time, min and median over the runs; ms are medians")
    for name, _, _ in LAYERS:
        for way in WAYS:
            r = ratios[way, name]
            a, t = (statistics.median(times[way, lib, name]) * 1e3 for lib in (0, 1))
            print(f"{name}  {way:<12} ratio min {min(r):.2f}x median {statistics.median(r):.2f}x   "
                  f"archcalc {a:7.1f} ms  torch {t:7.1f} ms")


if __name__ == "__main__":
    main()

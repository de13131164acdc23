"""Speed of analysis: resnet152, generated chains of growing length, and `archcalc report vgg16` as a process.

Run: python benchmarks/analyze.py
Prints absolute times and, because these machines are noisy, ratios measured in the same run:
the chain's time per layer at each length against the shortest (linear growth reads ~1.0), and
the report process against a bare `python -c pass` started the same way.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import archcalc
from archcalc.spec import from_dict


def best_of(fn, repeat=5):
    """Minimum wall time of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def chain(length: int):
    """A conv/relu chain of ``length`` layers on a small input (shapes stay constant)."""
    layers = [{"type": "conv", "filters": 8, "kernel": 3, "padding": 1} if i % 2 == 0 else {"type": "relu"} for i in range(length)]
    return from_dict({"name": f"chain{length}", "input": [8, 16, 16], "layers": layers})


def main() -> None:
    resnet152 = archcalc.load("resnet152")
    t_load = best_of(lambda: archcalc.load("resnet152"))
    t_analyze = best_of(lambda: archcalc.analyze(resnet152))
    print(f"resnet152 ({len(resnet152)} nodes): load {t_load * 1e3:.1f} ms, analyze {t_analyze * 1e3:.1f} ms")

    base = None
    for length in (1_000, 2_500, 5_000, 10_000):
        t_build = best_of(lambda n=length: chain(n), repeat=3)
        graph = chain(length)
        t = best_of(lambda g=graph: archcalc.analyze(g), repeat=3)
        per_layer = t / length
        base = base or per_layer
        print(f"chain of {length:>6} layers: build {t_build * 1e3:7.1f} ms, analyze {t * 1e3:7.1f} ms, "
              f"per layer {per_layer * 1e6:5.1f} us ({per_layer / base:.2f}x the 1,000-layer chain's)")

    def process(args):
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    t_python = process([sys.executable, "-c", "pass"])
    t_report = process([sys.executable, "-m", "archcalc", "report", "vgg16"])
    t_json = process([sys.executable, "-m", "archcalc", "report", "vgg16", "--format", "json"])
    print(f"python -c pass: {t_python * 1e3:.0f} ms; `archcalc report vgg16`: {t_report * 1e3:.0f} ms "
          f"({t_report / t_python:.1f}x); --format json: {t_json * 1e3:.0f} ms ({t_json / t_python:.1f}x)")


if __name__ == "__main__":
    main()

"""Speed and memory of analysis: resnet152, generated chains, and `archcalc report vgg16` as a process.

Run: python benchmarks/analyze.py [--layers N]
Prints absolute times and, because these machines are noisy, ratios measured in the same run:
the chain's time per layer at each length against the shortest (linear growth reads ~1.0), and
the report process against a bare `python -c pass` started the same way.

Memory: a fresh process per measurement loads a chain of N layers (default 200,000) from JSON
text, written out flat and as one repeated block, and analyses it; the growth of its peak
resident memory (ru_maxrss) divided by N is the bytes per layer of load and of load+analyze.
"""

from __future__ import annotations

import argparse
import json
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


_MEMORY_PROBE = """
import json, resource, sys, time
import archcalc
from archcalc.spec import from_json

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

text = sys.stdin.read()
before = peak()
start = time.perf_counter()
graph = from_json(text, "chain")
loaded, t_load = peak(), time.perf_counter() - start
start = time.perf_counter()
analysis = archcalc.analyze(graph)
analysed, t_analyze = peak(), time.perf_counter() - start
print(json.dumps({"layers": len(graph) - 1, "load": loaded - before, "analyze": analysed - before,
                  "t_load": t_load, "t_analyze": t_analyze}))
"""


def chain_text(length: int, blocks: bool, distinct: bool = False) -> str:
    """JSON text of a conv/relu chain of ``length`` layers: listed flat, or as one block repeated.

    ``distinct``: 1D convs whose padding grows the input by 2 at each, so no two layers have equal
    shapes and the analysis can share nothing between them (the worst case for memory).
    """
    conv, relu = {"type": "conv", "filters": 8, "kernel": 3, "padding": 1}, {"type": "relu"}
    if distinct:
        conv = {"type": "conv", "filters": 4, "kernel": 1, "padding": 1}
        return json.dumps({"name": "chain", "input": [4, 8], "layers": [conv if i % 2 == 0 else relu for i in range(length)]})
    if blocks:
        spec = {"name": "chain", "input": [8, 16, 16], "blocks": {"unit": {"args": {}, "layers": [conv, relu]}},
                "layers": [{"block": "unit", "repeat": length // 2}]}
    else:
        spec = {"name": "chain", "input": [8, 16, 16], "layers": [conv if i % 2 == 0 else relu for i in range(length)]}
    return json.dumps(spec)


def memory(length: int) -> None:
    """Bytes per layer of load and load+analyze, each in a fresh process (peak resident memory)."""
    for label, blocks, distinct in (("flat list", False, False), ("block repeated", True, False),
                                     ("all distinct", False, True)):
        done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE], input=chain_text(length, blocks, distinct),
                              capture_output=True, text=True, check=True)
        m = json.loads(done.stdout)
        n = m["layers"]
        print(f"{label:>14}, {n:,} layers: load {m['load'] / n:6.0f} B/layer "
              f"({m['t_load']:.1f} s), load+analyze {m['analyze'] / n:6.0f} B/layer ({m['t_analyze']:.1f} s analyze, "
              f"{m['t_analyze'] / n * 1e6:.0f} us/layer)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=200_000, help="chain length for the memory figures")
    args = parser.parse_args()
    memory(args.layers)
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

"""The executor's peak memory against what the analyzer's memory model says training needs.

Run: python benchmarks/executor_memory.py [--model resnet18] [--batch 8] [--steps 2]

In a fresh subprocess (so that nothing earlier in this process counts): import everything,
record the resident memory (``ru_maxrss`` and ``VmRSS``), build the executor, make a batch and
run ``steps`` SGD steps with momentum 0.9, then record the peak resident memory (``ru_maxrss``).
The growth (peak - RSS before building) is compared with the analyzer's training figure,
``archcalc.memory.memory(model, batch, "float32", "momentum").training_bytes`` (parameters and
buffers + gradients + momentum + the activation side's peak, the "pytorch" model), plus the
executor's im2col workspace (``Executor.memory_estimate(batch).im2col``), which the analyzer
excludes as framework workspace. The target (issue 15): at most 1.5x.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _args import positive_int

from archcalc.errors import ArchcalcError
from archcalc.loading import load

CHILD = r"""
import json, resource, sys
import numpy as np
from archcalc import kernels, memory
from archcalc.execute import Executor, train_step, training_batch

def vm_rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

model, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
figures = memory.memory(model, batch, "float32", "momentum")
before_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = vm_rss()
executor = Executor(model, seed=0)
data = training_batch(executor, batch)
for _ in range(steps):
    train_step(executor, data, lr=1e-3, momentum=0.9)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({
    "before": before, "before_max": before_max, "peak": peak, "after": vm_rss(),
    "training_bytes": figures.training_bytes, "im2col": executor.memory_estimate(batch).im2col,
    "estimate": executor.memory_estimate(batch).total, "backend": kernels.BACKEND,
}))
"""


def measure(model: str, batch: int, steps: int) -> dict:
    """The child's figures (bytes), run in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", CHILD, model, str(batch), str(steps)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch", type=positive_int, default=8)
    parser.add_argument("--steps", type=positive_int, default=2)
    args = parser.parse_args(argv)
    try:
        load(args.model)
    except ArchcalcError as error:
        parser.error(f"--model: {error}")
    r = measure(args.model, args.batch, args.steps)
    mib = 2**20
    growth = r["peak"] - r["before"]
    needs = r["training_bytes"] + r["im2col"]
    print(f"{args.model} batch {args.batch}, {args.steps} SGD steps with momentum ({r['backend']} kernels):")
    print(f"  RSS before building {r['before'] / mib:.1f} MiB (ru_maxrss {r['before_max'] / mib:.1f} MiB), "
          f"peak RSS {r['peak'] / mib:.1f} MiB, growth {growth / mib:.1f} MiB")
    print(f"  analyzer's training figure {r['training_bytes'] / mib:.1f} MiB + im2col workspace "
          f"{r['im2col'] / mib:.1f} MiB = {needs / mib:.1f} MiB; executor's own estimate {r['estimate'] / mib:.1f} MiB")
    print(f"  peak growth / (training + workspace) = {growth / needs:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()

"""Speed of the executor: whole training steps of whole networks, against torch doing the same.

Run: python benchmarks/executor.py [--runs K] [--repeat R] [--quick] [--cases lenet5,resnet18]
     [--no-memory] [--separate [--torch-allocator default|same]]

A training step is forward + loss (softmax cross-entropy) + backward + an SGD update with
momentum 0.9 (PyTorch's form, as ``torch.optim.SGD(momentum=0.9)``). torch runs the same network
(tests/torch_oracle.py's TorchNet, loaded with the executor's parameters): forward,
``cross_entropy``, ``backward``, ``optimizer.step()``, ``zero_grad()``, float32, on 2 threads
(``torch.set_num_threads(2)``: the machine's 2 cores; NumPy's BLAS takes its own default).
The input needs no gradient in either (``executor.needs_input_grad = False``).

Per run and case: one warm-up step of each, then ``repeat`` steps with archcalc and torch called
alternately (so that both see the same machine load), or with ``--separate`` each side alone in a
fresh process (so that neither library's idle thread pool sits beside the other's work: in one
process torch's depthwise conv ran up to 15x slower once NumPy's BLAS had started its threads); printed: min and median of each, and the
ratios archcalc/torch of the medians and of the mins, and the 1-minute load average after the case
(the machine is shared: a load above 2 on 2 cores means another process competed for them). With ``--runs K`` (K fresh executors and
torch nets, in this process), a summary gives each case's ratio of medians and ratio of mins over
the runs as min / median. Shapes and MACs are checked against the analyzer on the way.

The executor fixes glibc's malloc thresholds (``kernels.keep_freed_memory``) so that a step's
arrays are reused rather than unmapped and faulted in again. With ``--separate`` torch's process
keeps glibc's defaults, as PyTorch runs for its users (``--torch-allocator same`` gives it the
executor's setting: its steps get faster too, by up to a third for mobilenet_v2 here); alternating
in one process, both share the executor's.

Then (unless ``--no-memory``), per network, the executor's memory estimate beside the peak
tracemalloc sees (NumPy reports its arrays to it) over two SGD steps with momentum: the estimate
must be an upper bound, and not a loose one. The process's peak RSS against the analyzer's memory
model is benchmarks/executor_memory.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _args import positive_int

from archcalc import kernels
from archcalc.execute import Executor, loss_and_grad, train_step, training_batch
from archcalc.render.format import binary_bytes

#: (network, batch, timed steps per run).
CASES = (("lenet5", 64, 20), ("resnet18", 8, 5), ("mobilenet_v2", 8, 5), ("vgg16", 1, 5))
QUICK_CASES = (("lenet5", 64, 5), ("resnet18", 8, 2), ("mobilenet_v2", 8, 2))
LR, MOMENTUM = 1e-3, 0.9
TORCH_THREADS = 2


def archcalc_step(executor: Executor, x: np.ndarray, labels: np.ndarray) -> float:
    """Seconds of one training step: forward, loss, backward, SGD with momentum."""
    start = time.perf_counter()
    _, grad = loss_and_grad(executor, executor.forward(x), labels)
    executor.step(executor.backward(grad), lr=LR, momentum=MOMENTUM)
    return time.perf_counter() - start


def torch_stepper(executor: Executor, x: np.ndarray, labels: np.ndarray):
    """A function running one torch training step of the same network and returning its seconds, or
    None without torch."""
    try:
        import torch
    except ImportError:
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.torch_oracle import TorchNet, load_params

    torch.set_num_threads(TORCH_THREADS)
    net = TorchNet(executor.graph)
    load_params(net, executor.params)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    xt, yt = torch.tensor(x), torch.tensor(labels)
    last = executor.graph.nodes[-1].name

    def step() -> float:
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(xt)[last], yt)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - start

    return step


def _setup(name: str, batch: int) -> tuple[Executor, np.ndarray, np.ndarray]:
    executor = Executor(name, seed=0)
    executor.needs_input_grad = False  # as torch: the input does not require a gradient
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *executor.graph.input_shape)).astype("float32")
    classes = executor.layers[executor.graph.nodes[-1].name].out_shape[0]
    return executor, x, rng.integers(0, classes, size=batch)


def worker(side: str, name: str, batch: int, repeat: int) -> None:
    """Print (JSON) the step seconds of one side alone in this process: a warm-up, then ``repeat`` steps."""
    executor, x, labels = _setup(name, batch)
    if side == "archcalc":
        archcalc_step(executor, x, labels)
        executor.check_macs()
        times = [archcalc_step(executor, x, labels) for _ in range(repeat)]
    else:
        step = torch_stepper(executor, x, labels)
        step()
        times = [step() for _ in range(repeat)]
    print(json.dumps(times))


GLIBC_DEFAULTS = "glibc's defaults"


def _alone(side: str, name: str, batch: int, repeat: int, allocator: str = "default") -> list[float]:
    """A worker process's step seconds. The torch worker builds the network through an Executor,
    which sets glibc's malloc thresholds (kernels.keep_freed_memory); with ``allocator`` "default"
    its process keeps glibc's defaults instead (ARCHCALC_MALLOC=default), as PyTorch runs for its
    users; "same" leaves it the executor's setting."""
    command = [sys.executable, __file__, "--worker", side, "--cases", name, "--batch", str(batch), "--repeat", str(repeat)]
    env = dict(os.environ)
    if side == "torch" and allocator == "default":
        env["ARCHCALC_MALLOC"] = "default"
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_case(name: str, batch: int, repeat: int, separate: bool = False, allocator: str = "default") -> dict:
    """One run of a case: per-step seconds of archcalc and torch, checked MACs. ``separate``: each
    in a fresh process of its own, one after the other (no library's idle threads beside the other's
    work; ``allocator`` as :func:`_alone`); else alternating in this process (one allocator setting
    for both)."""
    if separate:
        ours = _alone("archcalc", name, batch, repeat)
        theirs = _alone("torch", name, batch, repeat, allocator)
        return {"ours": ours, "theirs": theirs, "workspace": Executor(name).memory_estimate(batch).im2col}
    executor, x, labels = _setup(name, batch)
    torch_step = torch_stepper(executor, x, labels)
    ours, theirs = [], []
    archcalc_step(executor, x, labels)  # warm-up: page faults, allocator, BLAS buffers
    executor.check_macs()
    if torch_step:
        torch_step()
    for _ in range(repeat):
        ours.append(archcalc_step(executor, x, labels))
        if torch_step:
            theirs.append(torch_step())
    return {"ours": ours, "theirs": theirs, "workspace": executor.memory_estimate(batch).im2col}


def _ms(values: list[float]) -> str:
    return f"min {min(values) * 1e3:.1f} ms, median {statistics.median(values) * 1e3:.1f} ms"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=positive_int, default=1, help="runs of every case (fresh executor and torch net each)")
    parser.add_argument("--repeat", type=int, default=0,
                        help="timed steps per run (0, the default: per case, at least 5)")
    parser.add_argument("--quick", action="store_true", help="fewer cases and steps (a smoke test)")
    parser.add_argument("--cases", default="", help="comma-separated networks to run (default: all; with --quick, "
                        "of the quick ones: lenet5, resnet18, mobilenet_v2)")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc memory section")
    parser.add_argument("--separate", action="store_true",
                        help="time archcalc and torch each in a fresh process of its own (one after the other)")
    parser.add_argument("--torch-allocator", choices=("default", "same"),
                        help="with --separate: torch's process with glibc's default malloc settings (as PyTorch "
                        "runs; the default), or with archcalc's (kernels.keep_freed_memory)")
    parser.add_argument("--worker", choices=("archcalc", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.cases, args.batch, args.repeat)
        return
    if args.repeat < 0:
        parser.error(f"--repeat must be >= 0 (0: each case's own count), got {args.repeat}")
    if args.torch_allocator and not args.separate:
        parser.error("--torch-allocator needs --separate (in one process both libraries share one allocator)")
    allocator = args.torch_allocator or "default"
    ours_malloc = (f"{GLIBC_DEFAULTS} (ARCHCALC_MALLOC=default)" if os.environ.get("ARCHCALC_MALLOC") == "default"
                   else "the executor's (kernels.keep_freed_memory)")
    cases = QUICK_CASES if args.quick else CASES
    if args.cases:
        wanted = args.cases.split(",")
        unknown = [name for name in wanted if name not in {case[0] for case in cases}]
        if unknown:
            parser.error(f"no case {', '.join(map(repr, unknown))}; the cases: {', '.join(case[0] for case in cases)}")
        cases = [case for case in cases if case[0] in wanted]
    print(f"training step = forward + cross-entropy + backward + SGD(momentum {MOMENTUM}); torch on "
          f"{TORCH_THREADS} threads; {kernels.BACKEND} kernels, {kernels.THREADS} threads; "
          f"{'each in a process of its own' if args.separate else 'alternating in one process'}"
          + f"; archcalc's malloc settings: {ours_malloc}"
          + (f"; torch's: {ours_malloc if allocator == 'same' else GLIBC_DEFAULTS}" if args.separate else ""))
    ratios: dict[str, list[tuple[float, float]]] = {}
    for run in range(args.runs):
        for name, batch, repeat in cases:
            repeat = args.repeat or repeat
            result = run_case(name, batch, repeat, args.separate, allocator)
            ours, theirs = result["ours"], result["theirs"]
            line = f"run {run + 1} {name} batch {batch} ({repeat} steps): archcalc {_ms(ours)}"
            if theirs:
                by_median = statistics.median(ours) / statistics.median(theirs)
                by_min = min(ours) / min(theirs)
                ratios.setdefault(f"{name} batch {batch}", []).append((by_median, by_min))
                line += f"; torch {_ms(theirs)}; archcalc/torch: medians {by_median:.2f}x, mins {by_min:.2f}x"
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            print(f"{line}; im2col buffers {binary_bytes(result['workspace'])}; load average {load:.1f}", flush=True)
    if args.runs > 1 and ratios:
        print(f"over {args.runs} runs, archcalc/torch (min / median of the runs):")
        for case, pairs in ratios.items():
            medians, mins = [m for m, _ in pairs], [m for _, m in pairs]
            print(f"  {case}: ratio of medians {min(medians):.2f} / {statistics.median(medians):.2f}x, "
                  f"ratio of mins {min(mins):.2f} / {statistics.median(mins):.2f}x")
    if not args.no_memory:
        for name, batch in (("lenet5", 64), ("resnet18", 2), ("vgg11", 1), ("alexnet", 2)):
            estimate, peak = memory_peak(name, batch)
            print(f"{name} batch {batch}: memory estimate {binary_bytes(estimate)}, traced peak {binary_bytes(peak)} "
                  f"(estimate / peak = {estimate / peak:.2f})")


def memory_peak(name: str, batch: int) -> tuple[int, int]:
    """(estimated bytes, traced peak bytes) of building the executor and two SGD steps with momentum."""
    tracemalloc.start()
    executor = Executor(name, seed=0)
    data = training_batch(executor, batch)
    for _ in range(2):
        train_step(executor, data, lr=1e-3, momentum=0.9)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return executor.memory_estimate(batch).total, peak


if __name__ == "__main__":
    main()

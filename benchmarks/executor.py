"""Speed of the NumPy executor: one training step (forward + backward) of whole networks.

Run: python benchmarks/executor.py
Prints, per network, the median time of a forward+backward step, the im2col buffers the
active kernels need (ARCHCALC_KERNELS=numpy for the NumPy reference), and (when PyTorch is
installed) the same network's step in torch in the same run, as a ratio. Shapes and MACs are
checked against the analyzer on the way. Then, per network, the executor's memory estimate
beside the peak tracemalloc sees (NumPy reports its arrays to it) over two SGD steps with
momentum: the estimate must be an upper bound, and not a loose one.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc

import numpy as np

from archcalc import kernels
from archcalc.execute import Executor, loss_and_grad, train_step, training_batch
from archcalc.render.format import binary_bytes

CASES = (("lenet5", 64, 5), ("resnet18", 8, 2), ("vgg16", 1, 2))


def step_time(executor, x, labels, repeat):
    """Median seconds of forward + loss + backward."""
    times = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        loss, grad = loss_and_grad(executor, executor.forward(x), labels)
        executor.backward(grad)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first run warms caches and allocators


def torch_step_time(executor, x, labels, repeat):
    """The same network and batch in torch (float32, its default threads), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.torch_oracle import TorchNet, load_params

    net = TorchNet(executor.graph)
    load_params(net, executor.params)
    xt, yt = torch.tensor(x), torch.tensor(labels)
    last = executor.graph.nodes[-1].name
    times = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(xt)[last], yt).backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    for name, batch, repeat in CASES:
        executor = Executor(name, seed=0)
        executor.needs_input_grad = False  # as torch: the input does not require a gradient
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, *executor.graph.input_shape)).astype("float32")
        labels = rng.integers(0, 1000 if name != "lenet5" else 10, size=batch)
        ours = step_time(executor, x, labels, repeat)
        executor.check_macs()
        workspace = executor.memory_estimate(batch).im2col
        theirs = torch_step_time(executor, x, labels, repeat)
        versus = f"; torch {theirs * 1e3:.0f} ms, archcalc/torch = {ours / theirs:.2f}x" if theirs else ""
        print(f"{name} batch {batch}: forward+backward {ours * 1e3:.0f} ms{versus}; im2col buffers "
              f"({kernels.BACKEND} kernels): {binary_bytes(workspace)}")


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
    for name, batch in (("lenet5", 64), ("resnet18", 2), ("vgg11", 1), ("alexnet", 2)):
        estimate, peak = memory_peak(name, batch)
        print(f"{name} batch {batch}: memory estimate {binary_bytes(estimate)}, traced peak {binary_bytes(peak)} "
              f"(estimate / peak = {estimate / peak:.2f})")

"""Speed of the NumPy executor: one training step (forward + backward) of whole networks.

Run: python benchmarks/executor.py
Prints, per network, the median time of a forward+backward step, the im2col buffers the
active kernels need (ARCHCALC_KERNELS=numpy for the NumPy reference), and (when PyTorch is
installed) the same network's step in torch in the same run, as a ratio. Shapes and MACs are
checked against the analyzer on the way.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from archcalc import kernels
from archcalc.execute import Executor, loss_and_grad
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


if __name__ == "__main__":
    main()

"""Single calls of the C kernels that benchmarks/README.md cites ("What changed"), each the median
of repeated calls in this process (run it on an older commit's build to compare).

Run: python benchmarks/kernel_calls.py [--repeat R]

- LeNet's conv2 (64 x 6@14x14, 16 filters 5x5) through the direct kernel: forward, input gradient
  (the forward kernel on dY with the flipped kernels) and weight gradient, on 1 and 2 threads.
- LeNet's grey conv1 forward (64 x 1@32x32, 6 filters) on 2 threads: back to back, after a 50 ms
  pause (the threads idle), and right after a multi-threaded 1024^3 GEMM (OpenBLAS's threads
  spinning); and on 1 thread.
- im2col and col2im of DCGAN 128->64's transposed conv (16 x 64@32x32, 4x4 windows, stride 2),
  and of VGG16 conv3_1's chunk of 2 samples (128@56x56, 3x3, padding 1).
- MobileNetV2's stride-2 depthwise 576@14 (batch 8) through the direct kernels on 2 threads.
- resnet18 layer1's GEMM (64x576 by 576x12544, a chunk of 4 samples) on OpenBLAS's own threads,
  and split in two by rows between two Python threads with BLAS on one thread each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

from archcalc import kernels


def median_ms(call, repeat: int, before=None) -> float:
    """Median milliseconds of ``call()`` over ``repeat`` calls, ``before()`` run untimed before each."""
    call()
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=41)
    repeat = parser.parse_args().repeat
    if kernels._C is None:
        sys.exit("the C extension is not built")
    c, rng = kernels._C, np.random.default_rng(0)

    x, w = rng.standard_normal((64, 6, 14, 14)).astype(np.float32), rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    geo, y, dw = kernels.geometry(x.shape, (5, 5)), np.empty((64, 16, 10, 10), np.float32), np.empty_like(w)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    flipped = kernels._input_grad_geometry(geo)
    w_flipped, dx = np.ascontiguousarray(w[:, :, ::-1, ::-1].swapaxes(0, 1)), np.empty_like(x)  # (6, 16, 5, 5)
    for threads in (1, 2):
        forward = median_ms(lambda t=threads: c.conv_direct(0, x, w, y, *geo.c_args(6, 64), 1, 16, t), repeat)
        input_grad = median_ms(lambda t=threads: c.conv_direct(0, dy, w_flipped, dx, *flipped.c_args(16, 64), 1, 6, t), repeat)
        weight_grad = median_ms(lambda t=threads: c.conv_direct(2, x, dy, dw, *geo.c_args(6, 64), 1, 16, t), repeat)
        print(f"LeNet conv2, {threads} thread(s): forward {forward:.2f} ms, input gradient {input_grad:.2f} ms, "
              f"weight gradient {weight_grad:.2f} ms")

    x1, w1 = rng.standard_normal((64, 1, 32, 32)).astype(np.float32), rng.standard_normal((6, 1, 5, 5)).astype(np.float32)
    geo1, y1 = kernels.geometry(x1.shape, (5, 5)), np.empty((64, 6, 28, 28), np.float32)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)

    def conv1(threads):
        return lambda: c.conv_direct(0, x1, w1, y1, *geo1.c_args(1, 64), 1, 6, threads)

    print(f"LeNet grey conv1 forward: 1 thread {median_ms(conv1(1), repeat):.2f} ms; 2 threads back to back "
          f"{median_ms(conv1(2), repeat):.2f} ms, after a 50 ms pause {median_ms(conv1(2), repeat, lambda: time.sleep(0.05)):.2f}"
          f" ms, right after a 1024^3 GEMM {median_ms(conv1(2), repeat, lambda: a @ a):.2f} ms")

    g = kernels.geometry((16, 64, 32, 32), 4, 2, 1)
    cols = rng.standard_normal((64 * 16, 16 * 256)).astype(np.float32)
    image = rng.standard_normal((16, 64, 32, 32)).astype(np.float32)
    target = np.empty_like(image)
    print(f"DCGAN 128->64 (stride 2): im2col {median_ms(lambda: c.im2col(image, cols, *g.c_args(64, 16)), repeat):.2f} ms, "
          f"col2im {median_ms(lambda: c.col2im(cols, target, *g.c_args(64, 16)), repeat):.2f} ms")

    g = kernels.geometry((2, 128, 56, 56), 3, 1, 1)  # VGG16 conv3_1's streamed chunk of 2 samples
    cols = rng.standard_normal((128 * 9, 2 * 3136)).astype(np.float32)
    image = rng.standard_normal((2, 128, 56, 56)).astype(np.float32)
    target = np.empty_like(image)
    print(f"VGG16 conv3_1, 2 samples: im2col {median_ms(lambda: c.im2col(image, cols, *g.c_args(128, 2)), repeat):.2f} ms, "
          f"col2im {median_ms(lambda: c.col2im(cols, target, *g.c_args(128, 2)), repeat):.2f} ms")

    xd, wd = rng.standard_normal((8, 576, 14, 14)).astype(np.float32), rng.standard_normal((576, 1, 3, 3)).astype(np.float32)
    gd = kernels.geometry(xd.shape, 3, 2, 1)  # MobileNetV2's depthwise 576@14, stride 2
    yd, dxd, dwd = np.empty((8, 576, 7, 7), np.float32), np.empty_like(xd), np.empty_like(wd)
    dyd = rng.standard_normal(yd.shape).astype(np.float32)
    args = (*gd.c_args(576, 8), 576, 576, 2)
    print(f"MobileNetV2 depthwise 576@14 stride 2, 2 threads: forward "
          f"{median_ms(lambda: c.conv_direct(0, xd, wd, yd, *args), repeat):.2f} ms, input gradient "
          f"{median_ms(lambda: c.conv_direct(1, dyd, wd, dxd, *args), repeat):.2f} ms, weight gradient "
          f"{median_ms(lambda: c.conv_direct(2, xd, dyd, dwd, *args), repeat):.2f} ms")

    weights = rng.standard_normal((64, 576)).astype(np.float32)
    matrix, out = rng.standard_normal((576, 4 * 3136)).astype(np.float32), np.empty((64, 4 * 3136), np.float32)
    blas = ThreadpoolController().select(user_api="blas").lib_controllers
    own = median_ms(lambda: np.matmul(weights, matrix, out=out), 11)
    helper = ThreadPoolExecutor(1)

    def split():
        half = helper.submit(np.matmul, weights[:32], matrix, out=out[:32])
        np.matmul(weights[32:], matrix, out=out[32:])
        half.result()

    before = [lib.get_num_threads() for lib in blas]
    for lib in blas:
        lib.set_num_threads(1)
    try:
        by_rows = median_ms(split, 11)
    finally:
        for lib, threads in zip(blas, before):
            lib.set_num_threads(threads)
    print(f"resnet18 layer1 GEMM 64x576x12544: OpenBLAS's threads {own:.1f} ms, split by rows over two threads "
          f"{by_rows:.1f} ms")


if __name__ == "__main__":
    main()

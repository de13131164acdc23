"""The case tables: fixed, seeded inputs covering the edges, plus random ones.

Every size here is small and fixed (random cases draw from small ranges), so the work of a
checker is bounded by ``random_cases``, which the checkers bound in turn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from archcalc import kernels
from archcalc.check.compare import Case


def conv_cases(seed: int, random_cases: int) -> list[Case]:
    """Conv inputs (x, w, b, stride, pad, dy): the edges (stride 2 and 3, pads 0-2, 1x1 and 2x3 kernels), then random ones."""
    rng = np.random.default_rng(seed)
    fixed = [
        ("batch of 2, 3x3 kernel, stride 1, pad 1", (2, 3, 7, 7), (3, 3, 3, 3), 1, 1),
        ("one image, one channel, pad 0", (1, 1, 5, 5), (1, 1, 3, 3), 1, 0),
        ("stride 2, pad 1", (2, 3, 8, 8), (2, 3, 3, 3), 2, 1),
        ("non-square kernel 2x3 on a 6x5 input", (1, 2, 6, 5), (3, 2, 2, 3), 1, 0),
        ("1x1 kernel", (2, 4, 5, 5), (3, 4, 1, 1), 1, 0),
        ("'same' padding for a 5x5 kernel (pad = 2)", (1, 3, 6, 6), (2, 3, 5, 5), 1, 2),
        ("stride 3, larger than the 2x2 kernel", (1, 2, 8, 8), (2, 2, 2, 2), 3, 0),
    ]
    cases = []
    for name, x_shape, w_shape, stride, pad in fixed:
        cases.append(Case(name, _conv_inputs(rng, x_shape, w_shape, stride, pad)))
    for index in range(random_cases):
        k = int(rng.integers(1, 4))
        stride, pad = int(rng.integers(1, 3)), int(rng.integers(0, 2))
        size = int(rng.integers(k, k + 6))
        c, f, n = (int(v) for v in rng.integers(1, 4, size=3))
        cases.append(Case(f"random {index + 1}: x {n}x{c}x{size}x{size + 1}, {f} filters {k}x{k}, stride {stride}, pad {pad}",
                          _conv_inputs(rng, (n, c, size, size + 1), (f, c, k, k), stride, pad)))
    return cases


def _conv_inputs(rng: np.random.Generator, x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: int, pad: int) -> dict[str, Any]:
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    out = kernels.conv_forward(x, w, b, stride, pad)
    return {"x": x, "w": w, "b": b, "stride": stride, "pad": pad, "kernel": tuple(w_shape[2:]), "dy": rng.standard_normal(out.shape),
            "x_shape": x_shape}


def single_image(cases: list[Case]) -> list[Case]:
    """The conv cases reduced to their first image, with its im2col matrix and a random upstream for col2im."""
    out = []
    rng = np.random.default_rng(7)
    for case in cases:
        x = case.inputs["x"][:1]
        kernel, stride, pad = case.inputs["kernel"], case.inputs["stride"], case.inputs["pad"]
        cols = kernels.im2col(x, kernel, stride, pad)
        out.append(Case(case.name.replace("batch of 2, ", ""), {
            "x": x[0], "kernel": kernel, "stride": stride, "pad": pad, "x_shape": x.shape[1:],
            "cols": rng.standard_normal(cols.shape[1:]),
        }))
    return out


def pool_cases(seed: int, random_cases: int) -> list[Case]:
    """Pooling inputs (x, kernel, stride, dy), with windows that overlap (stride < kernel) and ones that don't."""
    rng = np.random.default_rng(seed)
    fixed = [("2x2, stride 2", (2, 3, 8, 8), 2, 2), ("3x3, stride 2, odd size", (1, 2, 7, 7), 3, 2),
             ("3x3, stride 1 (overlapping windows)", (2, 1, 5, 6), 3, 1), ("one image, one channel", (1, 1, 4, 4), 2, 2),
             ("2x2, stride 1 (overlapping windows)", (2, 2, 5, 5), 2, 1)]
    fixed += [(f"random {i + 1}", (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(4, 9)), int(rng.integers(4, 9))),
               int(rng.integers(1, 4)), int(rng.integers(1, 3))) for i in range(random_cases)]
    cases = []
    for name, shape, k, s in fixed:
        x = rng.standard_normal(shape)
        y = kernels.maxpool_forward(x, k, s)
        cases.append(Case(f"{name}: x {'x'.join(map(str, shape))}, kernel {k}, stride {s}",
                          {"x": x, "kernel": k, "stride": s, "pad": 0, "dy": rng.standard_normal(y.shape)}))
    return cases


def dense_cases(seed: int, random_cases: int) -> list[Case]:
    """(N, D) inputs for linear, softmax and cross-entropy: x, w, b, dy, labels, logits."""
    rng = np.random.default_rng(seed)
    shapes = [("batch of 4, 5 -> 3", 4, 5, 3), ("one sample", 1, 6, 2), ("one output unit", 3, 4, 1)]
    shapes += [(f"random {i + 1}", *(int(v) for v in rng.integers(1, 9, size=3))) for i in range(random_cases)]
    cases = []
    for name, n, d_in, d_out in shapes:
        x, w, b = rng.standard_normal((n, d_in)), rng.standard_normal((d_out, d_in)), rng.standard_normal(d_out)
        labels = rng.integers(0, max(d_in, 1), size=n)
        cases.append(Case(f"{name}: x {n}x{d_in}, {d_out} units", {
            "x": x, "w": w, "b": b, "dy": rng.standard_normal((n, d_out)), "labels": labels,
            "logits": rng.standard_normal((n, d_in)) * 2,
        }))
    return cases


def elementwise_cases(seed: int, random_cases: int, batch_of_one: bool = True) -> list[Case]:
    """(N, D) inputs whose upstream gradient ``dy`` has x's shape (relu, batchnorm)."""
    rng = np.random.default_rng(seed)
    shapes = [("batch of 4, 5 features", 4, 5), ("batch of 2", 2, 3), ("one feature", 6, 1), ("batch of 8", 8, 4)]
    if batch_of_one:
        shapes.append(("one sample", 1, 5))
    shapes += [(f"random {i + 1}", int(rng.integers(2, 9)), int(rng.integers(1, 9))) for i in range(random_cases)]
    return [Case(f"{name}: x {n}x{d}", {"x": rng.standard_normal((n, d)), "dy": rng.standard_normal((n, d)),
                                        "gamma": rng.standard_normal(d), "beta": rng.standard_normal(d), "eps": 1e-5})
            for name, n, d in shapes]


def batchnorm_cases(seed: int, random_cases: int) -> list[Case]:
    """The element-wise cases without a batch of one (one sample has no batch variance)."""
    return elementwise_cases(seed, random_cases, batch_of_one=False)



def binary_cases(seed: int, random_cases: int) -> list[Case]:
    """Logits (N,) and 0/1 labels (N,) for sigmoid binary cross-entropy: moderate logits first,
    then saturating ones (|h| up to 100, where p = sigmoid(h) rounds to exactly 0 or 1), then random ones."""
    rng = np.random.default_rng(seed)
    fixed = [
        ("batch of 6, moderate logits", rng.normal(0, 2, 6), rng.integers(0, 2, 6)),
        ("one sample", np.array([0.7]), np.array([1])),
        ("logit 0 (p = 1/2) for both labels", np.array([0.0, 0.0]), np.array([0, 1])),
        ("saturated logits +-40 and +-100, right and wrong labels",
         np.array([40.0, -40.0, 100.0, -100.0, 100.0, -100.0]), np.array([0, 1, 0, 1, 1, 0])),
        ("all labels 1", rng.normal(0, 3, 5), np.ones(5, dtype=np.int64)),
    ]
    fixed += [(f"random {i + 1}", rng.normal(0, 4, n), rng.integers(0, 2, n))
              for i, n in enumerate(int(v) for v in rng.integers(1, 9, size=random_cases))]
    return [Case(f"{name}: {len(logits)} logits", {"logits": np.asarray(logits, dtype=np.float64),
                                                    "labels": np.asarray(labels, dtype=np.float64)})
            for name, logits, labels in fixed]

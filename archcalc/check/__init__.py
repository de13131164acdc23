"""Checkers for students' own implementations, against the executor's reference kernels.

    from archcalc.check import check_conv_forward
    report = check_conv_forward(my_conv_forward)     # fn(x, w, b, stride, pad) -> y
    report.passed; print(report)

Each checker runs a fixed, seeded set of cases that covers the edges (stride 2, padding 0, 1
and "same", 1x1 and non-square kernels, one image, one channel, batch > 1) plus random ones,
each in a child process with a time limit, so a function that raises, hangs or crashes fails
its case instead of the checker. A failing case names the output tensor, the worst element's
index and values, the largest absolute and relative errors, the right shape's formula when
the shape is wrong, and a symptom when the wrong output matches a known bug (weights
transposed, overlaps overwritten, a gradient's sign flipped, ...).

Arguments that set the amount of work are bounded and checked before any case is built or any
process started (``random_cases`` 0..100, ``time_limit`` up to 600 s; for
:func:`check_gradient` also ``samples`` and the size of ``x``): an absurd value is a
ValueError naming the checker and the argument. The child process isolates crashes and
hangs; it is not a security sandbox: the checked code runs with your rights.

The student's calling convention is an :class:`Adapter`: argument names and order, NCHW or
NHWC, and the weight layout. The default is the lecture's: NCHW arrays, weights
``(f, c, kh, kw)``, ``conv_forward(x, w, b, stride, pad)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from archcalc.check.cases import batchnorm_cases, binary_cases, conv_cases, dense_cases, elementwise_cases, pool_cases, single_image
from archcalc.check.compare import Adapter, CaseResult, CheckReport, run_checks
from archcalc.check.runner import (
    MAX_RANDOM_CASES,
    MAX_TIME_LIMIT,
    TIME_LIMIT,
    bounded_float,
    bounded_int,
    call_unchecked,
    call_with_time_limit,
    check_run_options,
)
from archcalc.check.specs import (
    BATCHNORM_BACKWARD,
    BATCHNORM_FORWARD,
    COL2IM,
    CONV_BACKWARD,
    CONV_FORWARD,
    CROSS_ENTROPY,
    IM2COL,
    LINEAR_BACKWARD,
    LINEAR_FORWARD,
    RELU_BACKWARD,
    SIGMOID_BCE,
    SOFTMAX,
    pool_spec,
)

#: Most entries of ``x`` :func:`check_gradient` accepts (each perturbation copies x in float64).
MAX_GRADIENT_VALUES = 2**22
#: Most entries :func:`check_gradient` perturbs.
MAX_SAMPLES = 10_000


def check_conv_forward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 4,
                       time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(x, w, b, stride, pad) -> y`` (NCHW, w (f, c, kh, kw)) against the reference conv."""
    check_run_options("check_conv_forward", fn, adapter, random_cases, seed, time_limit)
    return run_checks(CONV_FORWARD, fn, conv_cases(seed, random_cases), adapter, time_limit)


def check_conv_backward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 4,
                        time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(dy, x, w, b, stride, pad) -> (dx, dw, db)`` against the reference gradients."""
    check_run_options("check_conv_backward", fn, adapter, random_cases, seed, time_limit)
    return run_checks(CONV_BACKWARD, fn, conv_cases(seed, random_cases), adapter, time_limit)


def check_im2col(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 4,
                 time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(x, kernel, stride, pad) -> X_hat`` for one image: x (C, H, W) -> (C*kh*kw, oh*ow)."""
    check_run_options("check_im2col", fn, adapter, random_cases, seed, time_limit)
    return run_checks(IM2COL, fn, single_image(conv_cases(seed, random_cases)), adapter, time_limit)


def check_col2im(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 4,
                 time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(cols, x_shape, kernel, stride, pad) -> x`` for one image, summing overlapping windows."""
    check_run_options("check_col2im", fn, adapter, random_cases, seed, time_limit)
    return run_checks(COL2IM, fn, single_image(conv_cases(seed, random_cases)), adapter, time_limit)


def check_maxpool_forward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                          time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(x, kernel, stride) -> y`` against max pooling."""
    check_run_options("check_maxpool_forward", fn, adapter, random_cases, seed, time_limit)
    return run_checks(pool_spec("max", False), fn, pool_cases(seed, random_cases), adapter, time_limit)


def check_maxpool_backward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                           time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(dy, x, kernel, stride) -> dx``: each window's gradient to its (first) maximum."""
    check_run_options("check_maxpool_backward", fn, adapter, random_cases, seed, time_limit)
    return run_checks(pool_spec("max", True), fn, pool_cases(seed, random_cases), adapter, time_limit)


def check_avgpool_forward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                          time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(x, kernel, stride) -> y`` against average pooling."""
    check_run_options("check_avgpool_forward", fn, adapter, random_cases, seed, time_limit)
    return run_checks(pool_spec("avg", False), fn, pool_cases(seed, random_cases), adapter, time_limit)


def check_avgpool_backward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                           time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(dy, x, kernel, stride) -> dx``: each window's gradient spread evenly."""
    check_run_options("check_avgpool_backward", fn, adapter, random_cases, seed, time_limit)
    return run_checks(pool_spec("avg", True), fn, pool_cases(seed, random_cases), adapter, time_limit)


def check_linear_forward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                         time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(x, w, b) -> y = x W^T + b`` with w (out, in) (``Adapter(weight="io")`` for (in, out))."""
    check_run_options("check_linear_forward", fn, adapter, random_cases, seed, time_limit)
    return run_checks(LINEAR_FORWARD, fn, dense_cases(seed, random_cases), adapter, time_limit)


def check_linear_backward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                          time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(dy, x, w, b) -> (dx, dw, db)`` for ``y = x W^T + b``."""
    check_run_options("check_linear_backward", fn, adapter, random_cases, seed, time_limit)
    return run_checks(LINEAR_BACKWARD, fn, dense_cases(seed, random_cases), adapter, time_limit)


def check_relu_backward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                        time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(dy, x) -> dx = dy * (x > 0)``."""
    check_run_options("check_relu_backward", fn, adapter, random_cases, seed, time_limit)
    return run_checks(RELU_BACKWARD, fn, elementwise_cases(seed, random_cases), adapter, time_limit)


def check_softmax(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                  time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(logits) -> probs``, softmax over each row (the classes)."""
    check_run_options("check_softmax", fn, adapter, random_cases, seed, time_limit)
    return run_checks(SOFTMAX, fn, dense_cases(seed, random_cases), adapter, time_limit)


def check_softmax_cross_entropy(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                                time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(logits, labels) -> (loss, dlogits)``: mean cross-entropy and ``(softmax - onehot) / N``."""
    check_run_options("check_softmax_cross_entropy", fn, adapter, random_cases, seed, time_limit)
    return run_checks(CROSS_ENTROPY, fn, dense_cases(seed, random_cases), adapter, time_limit)


def check_sigmoid_bce(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                      time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(logits, labels) -> (loss, dlogits)`` for logits (N,) and 0/1 labels (N,): the mean
    sigmoid binary cross-entropy and ``(sigmoid(h) - y) / N``, finite for saturating logits (+-100)."""
    check_run_options("check_sigmoid_bce", fn, adapter, random_cases, seed, time_limit)
    return run_checks(SIGMOID_BCE, fn, binary_cases(seed, random_cases), adapter, time_limit)


def check_batchnorm_forward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                            time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(x, gamma, beta, eps) -> y`` on (N, D): training mode, batch statistics (biased variance)."""
    check_run_options("check_batchnorm_forward", fn, adapter, random_cases, seed, time_limit)
    return run_checks(BATCHNORM_FORWARD, fn, batchnorm_cases(seed, random_cases), adapter, time_limit)


def check_batchnorm_backward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                             time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(dy, x, gamma, beta, eps) -> (dx, dgamma, dbeta)`` for training-mode batchnorm on (N, D)."""
    check_run_options("check_batchnorm_backward", fn, adapter, random_cases, seed, time_limit)
    return run_checks(BATCHNORM_BACKWARD, fn, batchnorm_cases(seed, random_cases), adapter, time_limit)


def _central_differences(f: Callable[[np.ndarray], Any], x: np.ndarray, indices: np.ndarray, eps: float) -> list[float]:
    """(f(x + eps e_i) - f(x - eps e_i)) / 2 eps for each index i (flat), each call on a fresh copy."""
    flat = x.reshape(-1)
    numeric = []
    for index in indices:
        plus, minus = flat.copy(), flat.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric.append((float(f(plus.reshape(x.shape))[0]) - float(f(minus.reshape(x.shape))[0])) / (2 * eps))
    return numeric


def check_gradient(f: Callable[[np.ndarray], Any], x: np.ndarray, eps: float = 1e-6, samples: int = 20, seed: int = 0,
                   tolerance: float = 1e-6, time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check any function's analytic gradient against central differences in float64.

    ``f(x)`` returns ``(value, gradient)``: a scalar value and its gradient d(value)/dx, of x's
    shape. ``samples`` random entries of x are perturbed by +-eps. Every call of ``f`` runs in
    a child process (a crash or hang fails the check, not the caller); ``time_limit`` is the
    seconds allowed per call.

    Raises:
        ValueError: before any copy or child process, when ``f`` is not callable, ``x`` is not
            a non-empty array of real numbers of at most 2**22 entries, ``samples`` is not in
            1..10,000, ``eps`` not in (0, 1], ``tolerance`` not in [0, 1], ``seed`` negative,
            or ``time_limit`` not in (0, 600] seconds.
    """
    name = "check_gradient"
    if not callable(f):
        raise ValueError(f"{name}: f must be callable, got {type(f).__name__}")
    bounded_int(name, "samples", samples, 1, MAX_SAMPLES)
    bounded_int(name, "seed", seed, 0, 2**63 - 1)
    eps = bounded_float(name, "eps", eps, 0.0, 1.0)
    tolerance = bounded_float(name, "tolerance", tolerance, 0.0, 1.0, low_open=False)
    time_limit = bounded_float(name, "time_limit", time_limit, 0.0, MAX_TIME_LIMIT)
    try:
        given = x if isinstance(x, np.ndarray) else np.asarray(x)  # a list is already in memory
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: x must be an array of real numbers ({error})") from None
    if given.dtype.kind not in "biuf":
        raise ValueError(f"{name}: x must be an array of real numbers, got dtype {given.dtype}")
    if not 1 <= given.size <= MAX_GRADIENT_VALUES:
        raise ValueError(f"{name}: x must have 1 to {MAX_GRADIENT_VALUES:,} entries, got {given.size:,} "
                         f"(shape {given.shape}); check a smaller input")
    x = given.astype(np.float64, copy=True)
    rng = np.random.default_rng(seed)
    report = CheckReport(name)
    status, result = call_unchecked(f, (x.copy(),), time_limit)
    if status != "ok":
        report.cases.append(CaseResult("analytic gradient", False, result))
        return report
    try:
        value, analytic = result
        analytic = np.asarray(analytic, dtype=np.float64)
        float(value)
    except (TypeError, ValueError):
        report.cases.append(CaseResult("analytic gradient", False, "f(x) must return (scalar value, gradient array)"))
        return report
    if analytic.shape != x.shape:
        report.cases.append(CaseResult("analytic gradient", False, f"gradient has shape {analytic.shape}, x has {x.shape}"))
        return report
    indices = rng.choice(x.size, size=min(samples, x.size), replace=False)
    status, numeric = call_unchecked(_central_differences, (f, x, indices, eps), time_limit * 2 * len(indices))
    if status != "ok":
        report.cases.append(CaseResult("central differences", False, f"f(x +- eps): {numeric}"))
        return report
    for index, difference in zip(indices, numeric):
        exact = analytic.reshape(-1)[index]
        rel = abs(exact - difference) / max(abs(exact) + abs(difference), 1e-12)
        where = tuple(int(v) for v in np.unravel_index(index, x.shape))
        message = "" if rel <= tolerance else (
            f"at index {where}: analytic {exact:.6g}, central difference {difference:.6g}, relative error {rel:.3g}")
        report.cases.append(CaseResult(f"d/dx{list(where)}", rel <= tolerance, message))
    return report


#: Every checker, by the name the CLI and docs use.
CHECKERS = {
    name: globals()[f"check_{name}"]
    for name in ("conv_forward", "conv_backward", "im2col", "col2im", "maxpool_forward", "maxpool_backward",
                 "avgpool_forward", "avgpool_backward", "linear_forward", "linear_backward", "relu_backward",
                 "softmax", "softmax_cross_entropy", "sigmoid_bce", "batchnorm_forward", "batchnorm_backward")
}

__all__ = ["Adapter", "CheckReport", "CaseResult", "check_gradient", "call_with_time_limit", "TIME_LIMIT",
           "MAX_TIME_LIMIT", "MAX_RANDOM_CASES", "MAX_GRADIENT_VALUES", "MAX_SAMPLES", "CHECKERS", *(f"check_{n}" for n in CHECKERS)]

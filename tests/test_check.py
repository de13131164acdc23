"""Checkers pass the reference implementations and fail planted student bugs, naming the symptom."""

from __future__ import annotations

import numpy as np
import pytest

from archcalc import kernels
from archcalc.check import (
    Adapter,
    call_with_time_limit,
    check_avgpool_backward,
    check_avgpool_forward,
    check_batchnorm_backward,
    check_batchnorm_forward,
    check_col2im,
    check_conv_backward,
    check_conv_forward,
    check_gradient,
    check_im2col,
    check_linear_backward,
    check_linear_forward,
    check_maxpool_backward,
    check_maxpool_forward,
    check_relu_backward,
    check_softmax,
    check_softmax_cross_entropy,
)

# ---- reference implementations, written the way a student would (loops where the lecture has them)

def conv_forward(x, w, b, stride, pad):
    return kernels.conv_forward(x, w, b, stride, pad)


def conv_backward(dy, x, w, b, stride, pad):
    return kernels.conv_backward(dy, x, w, stride, pad)


def im2col(x, kernel, stride, pad):
    """The lecture's loop: x_hat[:, t] is the receptive field of output position t."""
    kh, kw = kernel
    c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    cols = np.empty((c * kh * kw, oh * ow))
    for i in range(oh):
        for j in range(ow):
            cols[:, i * ow + j] = xp[:, i * stride: i * stride + kh, j * stride: j * stride + kw].reshape(-1)
    return cols


def col2im(cols, x_shape, kernel, stride, pad, overwrite=False):
    kh, kw = kernel
    c, h, w = x_shape
    xp = np.zeros((c, h + 2 * pad, w + 2 * pad))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    for i in range(oh):
        for j in range(ow):
            block = cols[:, i * ow + j].reshape(c, kh, kw)
            region = (slice(None), slice(i * stride, i * stride + kh), slice(j * stride, j * stride + kw))
            if overwrite:
                xp[region] = block
            else:
                xp[region] += block
    return xp[:, pad: pad + h, pad: pad + w]


def softmax_ce(logits, labels):
    return kernels.softmax_cross_entropy(logits, labels)


def batchnorm_forward(x, gamma, beta, eps):
    return (x - x.mean(0)) / np.sqrt(x.var(0) + eps) * gamma + beta


def batchnorm_backward(dy, x, gamma, beta, eps):
    n = x.shape[0]
    inv = 1 / np.sqrt(x.var(0) + eps)
    x_hat = (x - x.mean(0)) * inv
    d_hat = dy * gamma
    dx = inv / n * (n * d_hat - d_hat.sum(0) - x_hat * (d_hat * x_hat).sum(0))
    return dx, (dy * x_hat).sum(0), dy.sum(0)


REFERENCES = [
    (check_conv_forward, conv_forward),
    (check_conv_backward, conv_backward),
    (check_im2col, im2col),
    (check_col2im, col2im),
    (check_maxpool_forward, lambda x, k, s: kernels.maxpool_forward(x, k, s)),
    (check_maxpool_backward, lambda dy, x, k, s: kernels.maxpool_backward(dy, x, k, s)),
    (check_avgpool_forward, lambda x, k, s: kernels.avgpool_forward(x, k, s)),
    (check_avgpool_backward, lambda dy, x, k, s: kernels.avgpool_backward(dy, x, k, s)),
    (check_linear_forward, lambda x, w, b: x @ w.T + b),
    (check_linear_backward, lambda dy, x, w, b: (dy @ w, dy.T @ x, dy.sum(0))),
    (check_relu_backward, lambda dy, x: dy * (x > 0)),
    (check_softmax, kernels.softmax),
    (check_softmax_cross_entropy, softmax_ce),
    (check_batchnorm_forward, batchnorm_forward),
    (check_batchnorm_backward, batchnorm_backward),
]


@pytest.mark.parametrize(("checker", "reference"), REFERENCES, ids=[c.__name__ for c, _ in REFERENCES])
def test_the_reference_passes(checker, reference):
    report = checker(reference)
    assert report.passed, str(report)
    assert len(report.cases) >= 5


def _only_failures_mention(report, *phrases):
    failure = report.first_failure
    assert failure is not None and not report.passed
    for phrase in phrases:
        assert phrase in failure.message, failure.message


def test_off_by_one_output_size_shows_the_formula():
    report = check_conv_forward(lambda x, w, b, s, p: conv_forward(x, w, b, s, p)[:, :, :-1, :-1])
    _only_failures_mention(report, "y has shape (2, 3, 6, 6), expected (2, 3, 7, 7)",
                           "out height = floor((7 + 1 + 1 - 1*(3-1) - 1) / 1) + 1 = 7")


def test_transposed_weights():
    report = check_conv_forward(lambda x, w, b, s, p: conv_forward(x, w.transpose(1, 0, 2, 3).copy(), b, s, p))
    _only_failures_mention(report, "symptom: matches a convolution with the weight's filter and channel axes swapped")
    assert "worst at index" in report.first_failure.message


def test_missing_bias_gradient():
    def no_db(dy, x, w, b, s, p):
        dx, dw, _ = conv_backward(dy, x, w, b, s, p)
        return dx, dw, None

    _only_failures_mention(check_conv_backward(no_db), "db is missing")

    def zero_db(dy, x, w, b, s, p):
        dx, dw, db = conv_backward(dy, x, w, b, s, p)
        return dx, dw, np.zeros_like(db)

    _only_failures_mention(check_conv_backward(zero_db), "symptom: db is all zeros")


def test_col2im_that_overwrites():
    report = check_col2im(lambda cols, shape, k, s, p: col2im(cols, shape, k, s, p, overwrite=True))
    _only_failures_mention(report, "symptom: matches col2im that overwrites overlapping windows instead of summing them")
    # with stride >= kernel no windows overlap: those cases pass even with the bug
    assert any(case.passed for case in report.cases)


def test_wrong_softmax_cross_entropy_gradient_sign():
    def flipped(logits, labels):
        loss, grad = softmax_ce(logits, labels)
        return loss, -grad

    _only_failures_mention(check_softmax_cross_entropy(flipped), "dlogits", "symptom: has the wrong sign")


def test_more_symptoms():
    _only_failures_mention(check_relu_backward(lambda dy, x: dy * (x <= 0)), "mask inverted")
    _only_failures_mention(check_linear_forward(lambda x, w, b: x @ w.T), "without the bias")
    _only_failures_mention(check_softmax(lambda h: np.exp(h) / np.exp(h).sum(0, keepdims=True)), "over the batch axis")
    _only_failures_mention(check_im2col(lambda x, k, s, p: im2col(x, k, s, p).T), "is the transpose of X_hat")


def test_exceptions_hangs_and_crashes_fail_the_case_not_the_checker():
    def boom(x, w, b, s, p):
        raise IndexError("index 9 is out of bounds")

    report = check_conv_forward(boom, random_cases=0)
    assert not report.passed and "raised IndexError: index 9 is out of bounds" in report.first_failure.message

    def hang(x, w, b, s, p):
        while True:
            pass

    report = check_conv_forward(hang, random_cases=0, time_limit=0.3)
    assert "did not return within 0.3 s" in report.first_failure.message

    import os

    status, message = call_with_time_limit(lambda: os._exit(3), ())
    assert status == "error" and "exit code 3" in message


def test_adapters_nhwc_and_flat_weights():
    def nhwc_conv(x, w, b, s, p):  # x (N, H, W, C), w (kh, kw, c, f), returns NHWC
        y = conv_forward(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), b, s, p)
        return y.transpose(0, 2, 3, 1)

    assert check_conv_forward(nhwc_conv, Adapter(layout="NHWC", weight="kkcf")).passed

    def lecture_conv(w, x, kernel, s, p):  # the lecture's Forward(W, X) with W = rand(f, c*kh*kw), no bias
        f = w.shape[0]
        return conv_forward(x, w.reshape(f, x.shape[1], *kernel), np.zeros(f), s, p)

    # an adapter without "b": the function cannot add a bias, so it is checked at a zero bias
    assert check_conv_forward(lecture_conv, Adapter(args=("w", "x", "kernel", "stride", "pad"), weight="flat")).passed

    def forgets_the_bias(x, w, b, s, p):  # takes a bias and drops it: that is the bug the symptom names
        return conv_forward(x, w, np.zeros(w.shape[0]), s, p)

    report = check_conv_forward(forgets_the_bias)
    assert not report.passed and "without the bias" in report.first_failure.message

    def flat_backward(dy, x, w, b, s, p):
        dx, dw, db = conv_backward(dy, x, w.reshape(w.shape[0], x.shape[1], *(int(round((w.shape[1] / x.shape[1]) ** 0.5)),) * 2), b, s, p)
        return dx, dw.reshape(w.shape[0], -1), db

    square = check_conv_backward(flat_backward, Adapter(weight="flat"))
    assert all(case.passed for case in square.cases if "2x3" not in case.name)
    assert check_linear_forward(lambda x, w, b: x @ w + b, Adapter(weight="io")).passed


def test_check_gradient_on_any_function():
    def f(x):  # value sum(x^3), gradient 3x^2
        return float((x ** 3).sum()), 3 * x ** 2

    assert check_gradient(f, np.linspace(-1, 1, 12).reshape(3, 4)).passed
    wrong = check_gradient(lambda x: (float((x ** 3).sum()), 2 * x ** 2), np.linspace(-1, 1, 12))
    assert not wrong.passed and "central difference" in wrong.first_failure.message
    shape = check_gradient(lambda x: (1.0, np.zeros(3)), np.zeros(4))
    assert "gradient has shape (3,), x has (4,)" in shape.first_failure.message


# ---- pooling backward: the = instead of += where windows overlap, whatever the loops' order


def maxpool_backward_loops(dy, x, k, s, assign=False, columns_first=False):
    """The lecture's loop: each window's gradient to its arg-max (with += or, the bug, =)."""
    n, c = x.shape[:2]
    oh, ow = dy.shape[2:]
    positions = [(a, b) for b in range(ow) for a in range(oh)] if columns_first else [(a, b) for a in range(oh) for b in range(ow)]
    dx = np.zeros_like(x)
    for i in range(n):
        for ch in range(c):
            for a, b in positions:
                window = x[i, ch, a * s: a * s + k, b * s: b * s + k]
                p, q = np.unravel_index(np.argmax(window), window.shape)
                if assign:
                    dx[i, ch, a * s + p, b * s + q] = dy[i, ch, a, b]
                else:
                    dx[i, ch, a * s + p, b * s + q] += dy[i, ch, a, b]
    return dx


def maxpool_backward_masks(dy, x, k, s):
    """The vectorised form with the bug: dx[window] = mask * dy zeroes what earlier windows added."""
    dx = np.zeros_like(x)
    for a in range(dy.shape[2]):
        for b in range(dy.shape[3]):
            window = x[:, :, a * s: a * s + k, b * s: b * s + k]
            mask = window == window.max(axis=(2, 3), keepdims=True)
            dx[:, :, a * s: a * s + k, b * s: b * s + k] = mask * dy[:, :, a: a + 1, b: b + 1]
    return dx


def avgpool_backward_assign(dy, x, k, s):
    dx = np.zeros_like(x)
    for a in range(dy.shape[2]):
        for b in range(dy.shape[3]):
            dx[:, :, a * s: a * s + k, b * s: b * s + k] = dy[:, :, a: a + 1, b: b + 1] / (k * k)
    return dx


OVERLAP = "symptom: gradient assigned with = where windows overlap; accumulate with +="


@pytest.mark.parametrize("student", [
    lambda dy, x, k, s: maxpool_backward_loops(dy, x, k, s, assign=True),
    lambda dy, x, k, s: maxpool_backward_loops(dy, x, k, s, assign=True, columns_first=True),
    maxpool_backward_masks,
], ids=["loop", "loop-columns-first", "vectorised-mask"])
def test_maxpool_backward_assigned_where_windows_overlap(student):
    assert check_maxpool_backward(lambda dy, x, k, s: maxpool_backward_loops(dy, x, k, s)).passed
    report = check_maxpool_backward(student)
    _only_failures_mention(report, OVERLAP)
    by_name = {case.name.split(":")[0]: case for case in report.cases}
    assert by_name["2x2, stride 2"].passed  # windows that do not overlap: the bug is invisible there
    assert not by_name["2x2, stride 1 (overlapping windows)"].passed and not by_name["3x3, stride 1 (overlapping windows)"].passed
    assert all(OVERLAP in case.message for case in report.cases if not case.passed)


def test_avgpool_backward_assigned_where_windows_overlap():
    _only_failures_mention(check_avgpool_backward(avgpool_backward_assign), OVERLAP)


def test_the_overlap_diagnosis_is_not_given_to_other_bugs():
    report = check_maxpool_backward(lambda dy, x, k, s: 2 * kernels.maxpool_backward(dy, x, k, s))
    assert not report.passed and all("symptom" not in case.message for case in report.cases)


def test_col2im_overwrite_is_recognised_in_any_loop_order():
    def columns_first(cols, x_shape, kernel, stride, pad):
        kh, kw = kernel
        c, h, w = x_shape
        xp = np.zeros((c, h + 2 * pad, w + 2 * pad))
        oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
        for j in range(ow):
            for i in range(oh):
                xp[:, i * stride: i * stride + kh, j * stride: j * stride + kw] = cols[:, i * ow + j].reshape(c, kh, kw)
        return xp[:, pad: pad + h, pad: pad + w]

    _only_failures_mention(check_col2im(columns_first), "symptom: matches col2im that overwrites overlapping windows")


# ---- arguments that set the amount of work are bounded, refused before any work


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"random_cases": 10**9}, "check_conv_forward: random_cases must be an int from 0 to 100, got 1,000,000,000"),
    ({"random_cases": -1}, "check_conv_forward: random_cases must be an int from 0 to 100, got -1"),
    ({"random_cases": 2.5}, "check_conv_forward: random_cases must be an int from 0 to 100, got float 2.5"),
    ({"random_cases": True}, "check_conv_forward: random_cases must be an int from 0 to 100, got bool True"),
    ({"random_cases": 10**400}, "check_conv_forward: random_cases must be an int from 0 to 100, got an int of 401 digits"),
    ({"time_limit": float("inf")}, "check_conv_forward: time_limit must be a finite number in (0, 600], got inf"),
    ({"time_limit": float("nan")}, "check_conv_forward: time_limit must be a finite number in (0, 600], got nan"),
    ({"time_limit": 0}, "check_conv_forward: time_limit must be a finite number in (0, 600], got 0"),
    ({"time_limit": 1e9}, "check_conv_forward: time_limit must be a finite number in (0, 600], got 1000000000.0"),
    ({"time_limit": "5"}, None),  # a numeric string is a number
    ({"random_cases": 100, "time_limit": 600, "seed": 2**63 - 1}, None),  # the bounds themselves are accepted
    ({"seed": -1}, "check_conv_forward: seed must be an int from 0 to 9,223,372,036,854,775,807, got -1"),
    ({"adapter": "NHWC"}, "check_conv_forward: adapter must be an archcalc.check.Adapter or None, got str"),
])
def test_checker_arguments_are_bounded(kwargs, message, monkeypatch):
    import archcalc.check as check

    started = []
    monkeypatch.setattr(check, "run_checks", lambda *args: started.append(args))
    if message is None:
        check_conv_forward(conv_forward, **kwargs)
        assert started
        return
    with pytest.raises(ValueError) as caught:
        check_conv_forward(conv_forward, **kwargs)
    assert str(caught.value) == message and not started


def test_every_checker_refuses_absurd_work():
    from archcalc.check import CHECKERS

    for name, checker in CHECKERS.items():
        with pytest.raises(ValueError, match=f"^check_{name}: random_cases must be an int from 0 to 100"):
            checker(conv_forward, random_cases=10**9)
        with pytest.raises(ValueError, match=f"^check_{name}: the function to check must be callable"):
            checker(None)
    with pytest.raises(ValueError, match=r"^call_with_time_limit: limit must be a finite number in \(0, 600\], got inf"):
        call_with_time_limit(print, (), float("inf"))


@pytest.mark.parametrize(("x", "kwargs", "message"), [
    (np.zeros(2**22 + 1, dtype=np.float32), {}, "check_gradient: x must have 1 to 4,194,304 entries, got 4,194,305"),
    (np.broadcast_to(np.zeros(1), (10**6, 10**6)), {}, "check_gradient: x must have 1 to 4,194,304 entries, got 1,000,000,000,000"),
    (np.zeros(0), {}, "check_gradient: x must have 1 to 4,194,304 entries, got 0"),
    (np.array(["a"]), {}, "check_gradient: x must be an array of real numbers, got dtype <U1"),
    ([[1.0], [1.0, 2.0]], {}, "check_gradient: x must be an array of real numbers"),
    (np.zeros(3), {"samples": 10**12}, "check_gradient: samples must be an int from 1 to 10,000, got 1,000,000,000,000"),
    (np.zeros(3), {"samples": 0}, "check_gradient: samples must be an int from 1 to 10,000, got 0"),
    (np.zeros(3), {"eps": 0.0}, "check_gradient: eps must be a finite number in (0, 1], got 0.0"),
    (np.zeros(3), {"eps": float("nan")}, "check_gradient: eps must be a finite number in (0, 1], got nan"),
    (np.zeros(3), {"tolerance": float("inf")}, "check_gradient: tolerance must be a finite number in [0, 1], got inf"),
    (np.zeros(3), {"time_limit": -1}, "check_gradient: time_limit must be a finite number in (0, 600], got -1"),
])
def test_check_gradient_arguments_are_bounded(x, kwargs, message):
    with pytest.raises(ValueError) as caught:
        check_gradient(lambda v: (0.0, np.zeros_like(v)), x, **kwargs)
    assert str(caught.value).startswith(message)


def test_check_gradient_isolates_the_perturbed_calls_too():
    calls = {"n": 0}

    def hangs_when_perturbed(x):
        calls["n"] += 1
        if np.any(x != 0.5):
            while True:
                pass
        return float(x.sum()), np.ones_like(x)

    report = check_gradient(hangs_when_perturbed, np.full(3, 0.5), samples=2, time_limit=0.2)
    assert not report.passed and report.first_failure.name == "central differences"
    assert report.first_failure.message == "f(x +- eps): did not return within 0.8 s (an endless loop?)"
    assert calls["n"] == 0  # every call ran in a child process: this one's counter never moved


def test_the_buggy_pool_example_gets_its_diagnosis():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "buggy_pool.py"
    spec = importlib.util.spec_from_file_location("buggy_pool", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    report = check_maxpool_backward(example.maxpool_backward)
    _only_failures_mention(report, OVERLAP)
    assert [case.passed for case in report.cases][:5] == [True, False, False, True, False]


def test_an_adapter_without_a_bias_checks_a_conv_that_takes_none():
    from archcalc import kernels
    from archcalc.check import Adapter, check_conv_forward

    def conv_without_bias(w, x, kernel, stride, pad):  # the README's Adapter example: no bias argument
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        return kernels.conv_forward(x, w.reshape(w.shape[0], -1, kh, kw), None, stride, pad)

    report = check_conv_forward(conv_without_bias, Adapter(args=("w", "x", "kernel", "stride", "pad"), weight="flat"))
    assert report.passed, str(report)

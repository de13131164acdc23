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

    report = check_conv_forward(lecture_conv, Adapter(args=("w", "x", "kernel", "stride", "pad"), weight="flat"))
    assert not report.passed and "without the bias" in report.first_failure.message  # the lecture skips the bias

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

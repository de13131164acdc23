"""What each checker computes: the reference, the outputs compared, and the known bugs (symptoms)."""

from __future__ import annotations

from typing import Any

import numpy as np

from archcalc import formulas, kernels
from archcalc.check.compare import Spec, Symptom


def _conv_shape_hint(inputs: dict[str, Any]) -> str:
    h, w = inputs["x"].shape[2:]
    kh, kw = inputs["w"].shape[2:]
    s, p = inputs["stride"], inputs["pad"]
    return (f"out height = {formulas.explain_conv_output_size(h, kh, s, p)}, "
            f"out width = {formulas.explain_conv_output_size(w, kw, s, p)}")


def _conv_forward_ref(i: dict[str, Any]) -> tuple[np.ndarray, ...]:
    return (kernels.conv_forward(i["x"], i["w"], i["b"], i["stride"], i["pad"]),)


def _conv_backward_ref(i: dict[str, Any]) -> tuple[np.ndarray, ...]:
    return kernels.conv_backward(i["dy"], i["x"], i["w"], i["stride"], i["pad"])


def _swap_fc(w: np.ndarray) -> np.ndarray:
    """The weights as read by code that swapped the filter and channel axes, then reshaped back."""
    return w.transpose(1, 0, 2, 3).reshape(w.shape)


def _flip(w: np.ndarray) -> np.ndarray:
    return w[:, :, ::-1, ::-1]


CONV_FORWARD = Spec(
    "check_conv_forward", ("x", "w", "b", "stride", "pad"), ("y",), _conv_forward_ref,
    {"y": (
        Symptom("matches the right convolution without the bias (bias not added?)",
                lambda i: kernels.conv_forward(i["x"], i["w"], None, i["stride"], i["pad"])),
        Symptom("matches a convolution with the weight's filter and channel axes swapped (transposed weights?)",
                lambda i: kernels.conv_forward(i["x"], _swap_fc(i["w"]), i["b"], i["stride"], i["pad"])),
        Symptom("matches a convolution with the kernel's spatial axes swapped (kh and kw transposed?)",
                lambda i: kernels.conv_forward(i["x"], i["w"].transpose(0, 1, 3, 2), i["b"], i["stride"], i["pad"])),
        Symptom("matches a true convolution with a flipped kernel; ConvNets compute cross-correlation (do not flip)",
                lambda i: kernels.conv_forward(i["x"], _flip(i["w"]), i["b"], i["stride"], i["pad"])),
        Symptom("matches the output without padding (pad ignored?)",
                lambda i: kernels.conv_forward(i["x"], i["w"], i["b"], i["stride"], 0)),
        Symptom("matches the output with stride 1 (stride ignored?)",
                lambda i: kernels.conv_forward(i["x"], i["w"], i["b"], 1, i["pad"])),
    )},
    _conv_shape_hint,
)


CONV_BACKWARD = Spec(
    "check_conv_backward", ("dy", "x", "w", "b", "stride", "pad"), ("dx", "dw", "db"), _conv_backward_ref,
    {
        "db": (Symptom("sums dy over the first sample only; db sums over the batch and every position",
                       lambda i: i["dy"][0].sum(axis=(1, 2))),
               Symptom("averages dy over the batch; db sums it", lambda i: i["dy"].sum(axis=(2, 3)).mean(axis=0))),
        "dx": (Symptom("matches dx computed with the weight's filter and channel axes swapped (transposed weights?)",
                       lambda i: kernels.conv_backward(i["dy"], i["x"], _swap_fc(i["w"]).copy(), i["stride"], i["pad"])[0]),
               Symptom("matches col2im that overwrites overlapping windows instead of summing them (use +=)",
                       matches=lambda got, i, rtol, atol: _assigned_not_added(got, _conv_dx_shares(i), rtol, atol))),
        "dw": (Symptom("has the wrong sign", lambda i: -kernels.conv_backward(i["dy"], i["x"], i["w"], i["stride"], i["pad"])[1]),),
    },
)


def _conv_dx_shares(i: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """Each output position's share of dx: its column of W^T dY laid back on its window."""
    f = i["w"].shape[0]
    dcols = np.matmul(i["w"].reshape(f, -1).T, i["dy"].reshape(i["x"].shape[0], f, -1))
    return _col2im_shares(dcols, i["x"].shape, i["w"].shape[2:], i["stride"], i["pad"])


IM2COL = Spec(
    "check_im2col", ("x", "kernel", "stride", "pad"), ("cols",),
    lambda i: (kernels.im2col(i["x"][None], i["kernel"], i["stride"], i["pad"])[0],),
    {"cols": (Symptom("is the transpose of X_hat: rows should be the C*kh*kw taps, columns the output positions",
                      lambda i: kernels.im2col(i["x"][None], i["kernel"], i["stride"], i["pad"])[0].T),)},
)
COL2IM = Spec(
    "check_col2im", ("cols", "x_shape", "kernel", "stride", "pad"), ("x",),
    lambda i: (kernels.col2im(i["cols"][None], (1, *i["x_shape"]), i["kernel"], i["stride"], i["pad"])[0],),
    {"x": (Symptom("matches col2im that overwrites overlapping windows instead of summing them (use +=)",
                   matches=lambda got, i, rtol, atol: _assigned_not_added(
                       got[None], _col2im_shares(i["cols"][None], (1, *i["x_shape"]), i["kernel"], i["stride"], i["pad"]),
                       rtol, atol)),)},
)


#: The diagnosis of the bug students make most in pooling backward passes.
ASSIGNED_WHERE_WINDOWS_OVERLAP = "gradient assigned with = where windows overlap; accumulate with +="


def _window_shares(x_shape: tuple[int, ...], kernel: Any, stride: int, pad: int,
                   share: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each window's own contribution to a gradient of ``x_shape`` (N, C, H, W), summed by the right code.

    ``share(a, b, region)`` gives window (a, b)'s values over its region of the padded input
    (N, C, kh, kw), NaN where it adds nothing. Returns ``(values, lands, covered)``: values and
    where they land, one slice per window (windows, N, C, H, W), and how many windows' regions
    cover each element.
    """
    geo = kernels.geometry(x_shape, kernel, stride, pad)
    (kh, kw), (oh, ow) = geo.kernel, geo.out
    n, c, h, w = x_shape
    values = np.full((oh * ow, n, c, h + 2 * pad, w + 2 * pad), np.nan)
    covered = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=np.int64)
    for a in range(oh):
        for b in range(ow):
            region = (slice(None), slice(None), slice(a * stride, a * stride + kh), slice(b * stride, b * stride + kw))
            values[a * ow + b][region] = share(a, b, region)
            covered[region] += 1
    crop = (slice(None), slice(None), slice(pad, pad + h), slice(pad, pad + w))
    values = values[(slice(None), *crop)]
    return np.nan_to_num(values), ~np.isnan(values), covered[crop]


def _assigned_not_added(got: np.ndarray, shares: tuple[np.ndarray, np.ndarray, np.ndarray], rtol: float, atol: float) -> bool:
    """Whether ``got`` is the sum of the windows' shares except where windows overlap, and there
    holds one window's share (or the 0 a later window's region wrote): ``=`` instead of ``+=``,
    whatever order the loops ran in."""
    values, lands, covered = shares
    if got.shape != covered.shape:
        return False
    right = values.sum(axis=0)
    shared = covered >= 2
    if not shared.any() or not np.allclose(got[~shared], right[~shared], rtol=rtol, atol=atol):
        return False
    one_share = (np.isclose(got[None], values, rtol=rtol, atol=atol) & lands).any(axis=0) | np.isclose(got, 0, atol=atol)
    return bool(one_share[shared].all()) and not np.allclose(got[shared], right[shared], rtol=rtol, atol=atol)


def _pool_shares(i: dict[str, Any], kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pooling window's gradient: all of dy to its first maximum (max), dy / k^2 to each element (avg)."""
    x, dy, k = i["x"], i["dy"], i["kernel"]

    def share(a: int, b: int, region: tuple[slice, ...]) -> np.ndarray:
        upstream = dy[:, :, a, b][:, :, None, None]
        if kind == "avg":
            return np.broadcast_to(upstream / (k * k), (*x.shape[:2], k, k))
        window = x[region].reshape(*x.shape[:2], k * k)
        first = window.argmax(axis=-1)[..., None] == np.arange(k * k)
        return np.where(first, upstream.reshape(*x.shape[:2], 1), np.nan).reshape(*x.shape[:2], k, k)

    return _window_shares(x.shape, k, i["stride"], 0, share)


def _col2im_shares(cols: np.ndarray, x_shape: tuple[int, ...], kernel: Any, stride: int, pad: int) -> tuple[np.ndarray, ...]:
    """Each output position's column of ``cols`` (N, C*kh*kw, oh*ow), laid back on its window."""
    geo = kernels.geometry(x_shape, kernel, stride, pad)
    (kh, kw), (oh, ow) = geo.kernel, geo.out
    blocks = cols.reshape(x_shape[0], x_shape[1], kh, kw, oh, ow)
    return _window_shares(x_shape, kernel, stride, pad, lambda a, b, region: blocks[..., a, b])


def pool_spec(kind: str, backward: bool) -> Spec:
    """The spec of a max or average pooling checker, forward or backward."""
    forward = kernels.maxpool_forward if kind == "max" else kernels.avgpool_forward
    grad = kernels.maxpool_backward if kind == "max" else kernels.avgpool_backward
    name = f"check_{kind}pool_{'backward' if backward else 'forward'}"
    if backward:
        overlap = Symptom(ASSIGNED_WHERE_WINDOWS_OVERLAP,
                          matches=lambda got, i, rtol, atol: _assigned_not_added(got, _pool_shares(i, kind), rtol, atol))
        return Spec(name, ("dy", "x", "kernel", "stride"), ("dx",), lambda i: (grad(i["dy"], i["x"], i["kernel"], i["stride"]),),
                    {"dx": (overlap,)})
    return Spec(name, ("x", "kernel", "stride"), ("y",), lambda i: (forward(i["x"], i["kernel"], i["stride"]),),
                shape_hint=lambda i: "out = floor((in - k) / s) + 1 per axis: " + ", ".join(
                    formulas.explain_conv_output_size(n, i["kernel"], i["stride"]) for n in i["x"].shape[2:]))


LINEAR_FORWARD = Spec("check_linear_forward", ("x", "w", "b"), ("y",), lambda i: (i["x"] @ i["w"].T + i["b"],),
                      {"y": (Symptom("matches x @ w + b with w (out, in) not transposed", lambda i: i["x"] @ i["w"] + i["b"]),
                             Symptom("matches the output without the bias", lambda i: i["x"] @ i["w"].T))})
LINEAR_BACKWARD = Spec("check_linear_backward", ("dy", "x", "w", "b"), ("dx", "dw", "db"),
                       lambda i: (i["dy"] @ i["w"], i["dy"].T @ i["x"], i["dy"].sum(axis=0)),
                       {"db": (Symptom("is the mean of dy over the batch; the gradient sums it", lambda i: i["dy"].mean(axis=0)),),
                        "dw": (Symptom("is transposed: dW = dY^T X has the weight's shape (out, in)", lambda i: i["x"].T @ i["dy"]),)})
RELU_BACKWARD = Spec("check_relu_backward", ("dy", "x"), ("dx",), lambda i: (i["dy"] * (i["x"] > 0),),
                     {"dx": (Symptom("passes the gradient where x < 0 and blocks it where x > 0 (mask inverted)",
                                     lambda i: i["dy"] * (i["x"] <= 0)),
                             Symptom("multiplies by relu(x) instead of the 0/1 mask", lambda i: i["dy"] * np.maximum(i["x"], 0)))})
SOFTMAX = Spec("check_softmax", ("logits",), ("probs",), lambda i: (kernels.softmax(i["logits"]),),
               {"probs": (Symptom("normalises over the batch axis instead of each row's classes",
                                  lambda i: np.exp(i["logits"]) / np.exp(i["logits"]).sum(axis=0, keepdims=True)),)})


def _ce(i: dict[str, Any]) -> tuple[np.ndarray, ...]:
    loss, grad = kernels.softmax_cross_entropy(i["logits"], i["labels"])
    return np.asarray(loss), grad


CROSS_ENTROPY = Spec(
    "check_softmax_cross_entropy", ("logits", "labels"), ("loss", "dlogits"), _ce,
    {"dlogits": (
        Symptom("has the wrong sign: dJ/dh = softmax(h) - onehot(y), divided by N",
                lambda i: -kernels.softmax_cross_entropy(i["logits"], i["labels"])[1]),
        Symptom("is not divided by the batch size N (J is the mean loss)",
                lambda i: kernels.softmax_cross_entropy(i["logits"], i["labels"])[1] * len(i["labels"])),
    ), "loss": (Symptom("is the summed loss; J is the mean over the batch",
                        lambda i: np.asarray(kernels.softmax_cross_entropy(i["logits"], i["labels"])[0] * len(i["labels"]))),)},
)


def _bce(i: dict[str, Any]) -> tuple[np.ndarray, ...]:
    loss, grad = kernels.binary_cross_entropy_with_logits(i["logits"], i["labels"])
    return np.asarray(loss), grad


def _sigmoid(h: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(h))
    return np.where(h >= 0, 1 / (1 + e), e / (1 + e))


def _bce_grad_wrt_p(i: dict[str, Any]) -> np.ndarray:
    """dJ/dp = (p - y) / (p (1 - p)) / N: the gradient before the sigmoid's p (1 - p) is applied."""
    p, y = _sigmoid(i["logits"]), i["labels"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (p - y) / (p * (1 - p)) / y.size


def _log_of_zero(got: np.ndarray, i: dict[str, Any], rtol: float, atol: float) -> bool:
    """A loss that is inf or nan where a logit saturates the sigmoid (p rounds to 0 or 1)."""
    return not np.all(np.isfinite(got)) and bool((_sigmoid(i["logits"]) * (1 - _sigmoid(i["logits"])) == 0).any())


#: The diagnosis of BCE computed as -y log p - (1 - y) log(1 - p) from a saturated p.
LOG_OF_ZERO = ("is not finite where a large |logit| makes p = sigmoid(h) exactly 0 or 1: log of 0 (missing clamp); "
               "compute it from the logit: max(h, 0) - h*y + log(1 + exp(-|h|))")

SIGMOID_BCE = Spec(
    "check_sigmoid_bce", ("logits", "labels"), ("loss", "dlogits"), _bce,
    {"dlogits": (
        Symptom("has the wrong sign: dJ/dh = sigmoid(h) - y, divided by N",
                lambda i: -kernels.binary_cross_entropy_with_logits(i["logits"], i["labels"])[1]),
        Symptom("is the gradient w.r.t. p = sigmoid(h), (p - y) / (p (1 - p)); w.r.t. the logit it is p - y (divided by N)",
                _bce_grad_wrt_p),
        Symptom("is not divided by the batch size N (J is the mean loss)",
                lambda i: kernels.binary_cross_entropy_with_logits(i["logits"], i["labels"])[1] * i["labels"].size),
    ), "loss": (
        Symptom(LOG_OF_ZERO, matches=_log_of_zero),
        Symptom("is the summed loss; J is the mean over the batch",
                lambda i: np.asarray(kernels.binary_cross_entropy_with_logits(i["logits"], i["labels"])[0] * i["labels"].size)),
    )},
)


def _batchnorm_ref(i: dict[str, Any]) -> tuple[np.ndarray, ...]:
    x, gamma, beta, eps = i["x"], i["gamma"], i["beta"], i["eps"]
    mean, var = x.mean(axis=0), x.var(axis=0)
    x_hat = (x - mean) / np.sqrt(var + eps)
    return (x_hat * gamma + beta,)


def _batchnorm_grad(i: dict[str, Any]) -> tuple[np.ndarray, ...]:
    x, gamma, eps, dy = i["x"], i["gamma"], i["eps"], i["dy"]
    n = x.shape[0]
    inv_std = 1 / np.sqrt(x.var(axis=0) + eps)
    x_hat = (x - x.mean(axis=0)) * inv_std
    d_hat = dy * gamma
    dx = inv_std / n * (n * d_hat - d_hat.sum(axis=0) - x_hat * (d_hat * x_hat).sum(axis=0))
    return dx, (dy * x_hat).sum(axis=0), dy.sum(axis=0)


BATCHNORM_FORWARD = Spec("check_batchnorm_forward", ("x", "gamma", "beta", "eps"), ("y",), _batchnorm_ref,
                         {"y": (Symptom("normalises each sample over its features instead of each feature over the batch",
                                        lambda i: (i["x"] - i["x"].mean(axis=1, keepdims=True))
                                        / np.sqrt(i["x"].var(axis=1, keepdims=True) + i["eps"]) * i["gamma"] + i["beta"]),)})
BATCHNORM_BACKWARD = Spec("check_batchnorm_backward", ("dy", "x", "gamma", "beta", "eps"), ("dx", "dgamma", "dbeta"), _batchnorm_grad,
                          {"dx": (Symptom("treats the batch mean and variance as constants (dx = dy * gamma / std)",
                                          lambda i: i["dy"] * i["gamma"] / np.sqrt(i["x"].var(axis=0) + i["eps"])),)})


"""A student's conv layer with the bugs students really write, for `archcalc.check`.

Run:  python examples/buggy_conv.py
Each function follows the lecture's recipe (im2col, then W @ X_hat); the checker reports
which cases fail, where, and the symptom it recognises.
"""

import numpy as np

from archcalc.check import check_col2im, check_conv_backward, check_conv_forward


def im2col(x, kh, kw, stride, pad):
    """x (C, H, W) -> X_hat (C*kh*kw, oh*ow)."""
    c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (w + 2 * pad - kw) // stride + 1
    cols = np.empty((c * kh * kw, oh * ow))
    for i in range(oh):
        for j in range(ow):
            cols[:, i * ow + j] = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw].reshape(-1)
    return cols, oh, ow


def conv_forward(x, w, b, stride, pad):
    """BUG: the weight matrix is built from w with its filter and channel axes swapped."""
    n = x.shape[0]
    f, c, kh, kw = w.shape
    out = []
    for i in range(n):
        cols, oh, ow = im2col(x[i], kh, kw, stride, pad)
        w_mat = w.transpose(1, 0, 2, 3).reshape(f, -1)  # should be w.reshape(f, -1)
        out.append((w_mat @ cols + b[:, None]).reshape(f, oh, ow))
    return np.stack(out)


def col2im(cols, x_shape, kernel, stride, pad):
    """BUG: assigns each window's gradient (=) instead of adding it (+=)."""
    c, h, w = x_shape
    kh, kw = kernel
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (w + 2 * pad - kw) // stride + 1
    xp = np.zeros((c, h + 2 * pad, w + 2 * pad))
    for i in range(oh):
        for j in range(ow):
            xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw] = cols[:, i * ow + j].reshape(c, kh, kw)
    return xp[:, pad:pad + h, pad:pad + w]


def conv_backward(dy, x, w, b, stride, pad):
    """BUG: forgets the bias gradient (returns zeros)."""
    n = x.shape[0]
    f, c, kh, kw = w.shape
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for i in range(n):
        cols, oh, ow = im2col(x[i], kh, kw, stride, pad)
        dy_mat = dy[i].reshape(f, -1)
        dw += (dy_mat @ cols.T).reshape(w.shape)
        dcols = w.reshape(f, -1).T @ dy_mat
        xp = np.zeros((c, x.shape[2] + 2 * pad, x.shape[3] + 2 * pad))
        for a in range(oh):
            for d in range(ow):
                xp[:, a * stride:a * stride + kh, d * stride:d * stride + kw] += dcols[:, a * ow + d].reshape(c, kh, kw)
        dx[i] = xp[:, pad:pad + x.shape[2], pad:pad + x.shape[3]]
    return dx, dw, np.zeros_like(b)


if __name__ == "__main__":
    for report in (check_conv_forward(conv_forward), check_col2im(col2im), check_conv_backward(conv_backward)):
        print(report, end="\n\n")

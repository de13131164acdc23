"""A student's max-pool backward pass with the bug students make most, for `archcalc.check`.

Run:  python examples/buggy_pool.py
Where windows overlap (stride < kernel) two windows can pick the same input as their maximum;
its gradient is the sum of theirs. Assigning with `=` keeps only the last one. The checker's
cases with stride >= kernel pass; the overlapping ones fail with that diagnosis.
"""

import numpy as np

from archcalc.check import check_maxpool_backward


def maxpool_backward(dy, x, kernel, stride):
    """BUG: dx[...] = dy where it should be dx[...] += dy."""
    n, c = x.shape[:2]
    dx = np.zeros_like(x)
    for i in range(n):
        for ch in range(c):
            for a in range(dy.shape[2]):
                for b in range(dy.shape[3]):
                    window = x[i, ch, a * stride:a * stride + kernel, b * stride:b * stride + kernel]
                    p, q = np.unravel_index(np.argmax(window), window.shape)
                    dx[i, ch, a * stride + p, b * stride + q] = dy[i, ch, a, b]  # should be +=
    return dx


if __name__ == "__main__":
    print(check_maxpool_backward(maxpool_backward))

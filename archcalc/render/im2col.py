"""The worked im2col example as text: presentation only (the numbers are archcalc.im2col's)."""

from __future__ import annotations

from typing import Any

from archcalc import formulas


def number(value: float) -> str:
    """A value as a person writes it: ``5`` for 5.0, ``0.5``, ``-1.25e+07`` (6 significant digits)."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _factor(value: float) -> str:
    """A factor in a product: negative numbers in parentheses, ``3*(-1)``."""
    text = number(value)
    return f"({text})" if text.startswith("-") else text


def _index(position: tuple[int, ...]) -> str:
    return ",".join(str(i) for i in position)


def _grid(corner: str, columns: list[str], rows: list[tuple[str, list[str]]]) -> list[str]:
    """A labelled matrix, right-aligned, two spaces between columns."""
    table = [[corner, *columns], *[[label, *cells] for label, cells in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return ["  " + "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)).rstrip()
            for row in table]


def _array(values: Any) -> str:
    """A 1D array as ``[1, 0, 2]``; a 2D one as ``[[1, 2], [3, 4]]``."""
    if values.ndim == 1:
        return "[" + ", ".join(number(v) for v in values) + "]"
    return "[" + ", ".join(_array(row) for row in values) + "]"


def _matrix(name: str, values: Any) -> list[str]:
    """``name = [..]`` for 1D; a grid labelled by row and column for 2D."""
    if values.ndim == 1:
        return [f"{name} = {_array(values)}"]
    return [f"{name} ({values.shape[0]} x {values.shape[1]}):",
            *_grid("", [str(j) for j in range(values.shape[1])],
                   [(str(i), [number(v) for v in row]) for i, row in enumerate(values)])]


def im2col_text(example: Any) -> str:
    """The whole example: the geometry, X_hat with labelled columns, y = W X_hat, dL/dX_hat and col2im."""
    e = example
    rank = e.x.ndim
    axes = ("",) if rank == 1 else ("h", "w")
    size = " x ".join(str(n) for n in e.x.shape)
    kernel = " x ".join(str(k) for k in e.w.shape)
    lines = [f"im2col, {rank}D: x ({size}), w ({kernel}), stride {_per_axis(e.stride)}, "
             f"padding {_padding(e.padding)}, dilation {_per_axis(e.dilation)}"]
    for axis, n, k, s, p, d, o in zip(axes, e.x.shape, e.w.shape, e.stride, e.padding, e.dilation, e.out_shape):
        text, _ = formulas.output_size_arithmetic(n, k, s, p, d)
        lines.append(f"  output positions{' along ' + axis if axis else ''}: {text} = {o}")
    lines += ["", *_matrix("x", e.x), *_matrix("w", e.w), ""]
    outputs = [f"y[{_index(e.output_position(t))}]" for t in range(e.x_hat.shape[1])]
    taps = [f"w[{_index(e.tap_position(i))}]" for i in range(e.x_hat.shape[0])]
    if rank == 1:
        formula = f"x_hat[i, t] = x[t*{e.stride[0]} + i*{e.dilation[0]} - {e.padding[0][0]}]"
    else:
        (sh, sw), (dh, dw), ((ph, _), (pw, _)) = e.stride, e.dilation, e.padding
        formula = f"x_hat[(i,j), (t,u)] = x[t*{sh} + i*{dh} - {ph}, u*{sw} + j*{dw} - {pw}]"
    lines.append(f"X_hat ({len(taps)} x {len(outputs)}): a row per kernel tap, a column per output position "
                 f"(its receptive field); {formula}")
    cells = [[(f"x[{_index(e.input_position(int(src)))}]={number(v)}" if src >= 0 else f"pad={number(v)}")
              for v, src in zip(values, sources)] for values, sources in zip(e.x_hat, e.source)]
    lines += _grid("", outputs, list(zip(taps, cells)))
    lines += ["", f"y = W X_hat = {_array(e.y)}"]
    w_flat = e.w.ravel()
    for t, label in enumerate(outputs):
        terms = " + ".join(f"{_factor(w_flat[i])}*{_factor(e.x_hat[i, t])}" for i in range(len(taps)))
        lines.append(f"  {label} = {terms} = {number(e.y.ravel()[t])}")
    lines += ["", f"Backward, for dL/dy = {_array(e.dy)}:",
              f"dL/dW = dL/dy X_hat^T = {_array(e.dw)}",
              "dL/dX_hat = W^T dL/dy (entry [tap, t] = w[tap] * dL/dy[t]):"]
    dy_flat = e.dy.ravel()
    lines += _grid("", outputs, [(tap, [number(w_flat[i] * dy_flat[t]) for t in range(len(outputs))])
                                 for i, tap in enumerate(taps)])
    lines += ["", "col2im: dL/dx[j] adds the entries of dL/dX_hat that read x[j]: x contributes to L through every "
                  "window that reads it, so its gradient is the sum over those paths"
              + (" (entries in the padding are dropped)" if (e.source < 0).any() else "") + ":"]
    for flat, terms in enumerate(e.contributions):
        label = f"x[{_index(e.input_position(flat))}]"
        total = number(e.dx.ravel()[flat])
        if not terms:
            lines.append(f"  {label} = 0 (no window reads it)")
            continue
        parts = " + ".join(f"{_factor(c.weight)}*{_factor(c.grad)} from y[{_index(c.output)}]" for c in terms)
        lines.append(f"  {label} = {parts} = {total}")
    lines += ["", *_matrix("dL/dx", e.dx)]
    return "\n".join(lines) + "\n"


def _per_axis(values: tuple[int, ...]) -> str:
    return str(values[0]) if len(set(values)) == 1 else ",".join(str(v) for v in values)


def _padding(pads: tuple[tuple[int, int], ...]) -> str:
    if all(b == a for b, a in pads):
        return _per_axis(tuple(b for b, _ in pads))
    return " and ".join(f"({b}, {a})" for b, a in pads) + (" (before, after)" if len(pads) == 1 else " (before, after per axis)")

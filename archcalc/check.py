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

The student's calling convention is an :class:`Adapter`: argument names and order, NCHW or
NHWC, and the weight layout. The default is the lecture's: NCHW arrays, weights
``(f, c, kh, kw)``, ``conv_forward(x, w, b, stride, pad)``.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from archcalc import formulas, kernels

#: Seconds one case may take before it fails as hung.
TIME_LIMIT = 5.0


@dataclass(frozen=True)
class Adapter:
    """How a student's function is called and what it returns.

    Args:
        args: names of the positional arguments, in order. Names: ``x``, ``w``, ``b``,
            ``stride``, ``pad``, ``dy`` (upstream gradient), ``kernel`` (an int or (kh, kw)),
            ``x_shape``, ``cols``, ``labels``, ``gamma``, ``beta``, ``eps``.
        layout: ``NCHW`` (the lecture's) or ``NHWC`` for image arrays.
        weight: conv weights as ``fckk`` (f, c, kh, kw), ``flat`` (the lecture's
            ``W = rand(f, c*kh*kw)``), or ``kkcf`` (kh, kw, c, f); linear weights as ``oi``
            (out, in) or ``io`` (in, out).
    """

    args: tuple[str, ...] | None = None
    layout: str = "NCHW"
    weight: str | None = None

    def __post_init__(self) -> None:
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be NCHW or NHWC, got {self.layout!r}")
        if self.weight not in (None, "fckk", "flat", "kkcf", "oi", "io"):
            raise ValueError(f"weight must be fckk, flat, kkcf, oi or io, got {self.weight!r}")


def _to_student(name: str, value: Any, adapter: Adapter) -> Any:
    """An argument in the student's convention (arrays are copies: a student may write to them)."""
    if not isinstance(value, np.ndarray):
        return value
    value = value.copy()
    if name == "w" and adapter.weight == "flat":
        return value.reshape(value.shape[0], -1)
    if name == "w" and adapter.weight == "kkcf":
        return value.transpose(2, 3, 1, 0).copy()
    if name == "w" and adapter.weight == "io":
        return value.T.copy()
    if name in ("x", "dy", "y") and adapter.layout == "NHWC" and value.ndim == 4:
        return value.transpose(0, 2, 3, 1).copy()
    return value


def _from_student(name: str, value: Any, like: np.ndarray, adapter: Adapter) -> Any:
    """A result back in NCHW / (f, c, kh, kw), when it has the student convention's shape."""
    if not isinstance(value, np.ndarray):
        return value
    if name in ("y", "dx") and adapter.layout == "NHWC" and value.ndim == 4:
        return value.transpose(0, 3, 1, 2)
    if name == "dw" and adapter.weight == "flat" and value.size == like.size and value.ndim == 2:
        return value.reshape(like.shape)
    if name == "dw" and adapter.weight == "kkcf" and value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    if name == "dw" and adapter.weight == "io" and value.ndim == 2:
        return value.T
    return value


@dataclass
class CaseResult:
    """One case: its description, whether it passed, and why not."""

    name: str
    passed: bool
    message: str = ""


@dataclass
class CheckReport:
    """What a checker found: every case, and the first failure in detail."""

    checker: str
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every case passed."""
        return bool(self.cases) and all(case.passed for case in self.cases)

    @property
    def first_failure(self) -> CaseResult | None:
        """The first case that failed, if any."""
        return next((case for case in self.cases if not case.passed), None)

    def __str__(self) -> str:
        passed = sum(case.passed for case in self.cases)
        lines = [f"{self.checker}: {'PASSED' if self.passed else 'FAILED'}, {passed}/{len(self.cases)} cases"]
        for case in self.cases:
            lines.append(f"  {'ok  ' if case.passed else 'FAIL'} {case.name}")
            if not case.passed:
                lines.extend(f"       {line}" for line in case.message.splitlines())
        return "\n".join(lines)

    def __rich__(self) -> Any:
        from rich.text import Text

        text = Text()
        for index, line in enumerate(str(self).splitlines()):
            style = "bold green" if index == 0 and self.passed else "bold red" if index == 0 else (
                "red" if line.lstrip().startswith("FAIL") else "")
            text.append(line + "\n", style=style)
        return text


def _run_child(fn: Callable[..., Any], args: tuple[Any, ...], conn: Any) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as error:  # noqa: BLE001 - any student error becomes the case's failure
        frames = traceback.extract_tb(error.__traceback__)
        where = f" (at {frames[-1].filename.split('/')[-1]}:{frames[-1].lineno})" if frames else ""
        conn.send(("error", f"{type(error).__name__}: {error}{where}"))


def call_with_time_limit(fn: Callable[..., Any], args: tuple[Any, ...], limit: float = TIME_LIMIT) -> tuple[str, Any]:
    """``("ok", result)``, ``("error", message)`` or ``("timeout", message)``.

    The call runs in a forked child process, so a hang is stopped and a crash is contained;
    where fork does not exist it runs in this process with no time limit.
    """
    try:
        context = multiprocessing.get_context("fork")
    except ValueError:
        try:
            return "ok", fn(*args)
        except Exception as error:  # noqa: BLE001
            return "error", f"{type(error).__name__}: {error}"
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_run_child, args=(fn, args, send), daemon=True)
    child.start()
    send.close()
    try:
        if receive.poll(limit):
            return receive.recv()
        if child.is_alive():
            return "timeout", f"did not return within {limit:g} s (an endless loop?)"
    except EOFError:  # the child closed the pipe by dying
        pass
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receive.close()
    return "error", f"the process died (exit code {child.exitcode}) without returning"


def _compare(name: str, got: Any, expected: np.ndarray, rtol: float, atol: float,
             shape_hint: str = "") -> str | None:
    """None when ``got`` matches ``expected``; otherwise what is wrong, in words and numbers."""
    if got is None:
        return f"{name} is missing (the function returned None for it)"
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return f"{name} is not an array of numbers (got {type(got).__name__})"
    if got.shape != expected.shape:
        hint = f"; {shape_hint}" if shape_hint else ""
        return f"{name} has shape {got.shape}, expected {expected.shape}{hint}"
    if not np.all(np.isfinite(got)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(got))[0])
        return f"{name} has a non-finite value {got[bad]} at index {bad}"
    error = np.abs(got - expected)
    limit = atol + rtol * np.abs(expected)
    if np.all(error <= limit):
        return None
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(error - limit), error.shape))
    rel = error / np.maximum(np.abs(expected), 1e-12)
    wrong = int(np.count_nonzero(error > limit))
    return (f"{name} differs at {wrong} of {error.size} values; worst at index {worst}: got {got[worst]:.6g}, "
            f"expected {expected[worst]:.6g}; max abs error {error.max():.3g}, max rel error {rel.max():.3g}")


@dataclass(frozen=True)
class Symptom:
    """A known bug: the output a buggy implementation would give, and what to call it."""

    description: str
    output: Callable[[dict[str, Any]], Any]


def _symptom(name: str, got: Any, inputs: dict[str, Any], symptoms: Sequence[Symptom], rtol: float, atol: float) -> str:
    """The description of the first known bug whose output ``got`` matches."""
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return ""
    if got.size and not np.any(got):
        return f"{name} is all zeros: never computed?"
    for symptom in symptoms:
        try:
            alternative = np.asarray(symptom.output(inputs), dtype=np.float64)
        except Exception:  # noqa: BLE001 - a probe that does not apply to this case
            continue
        if alternative.shape == got.shape and np.allclose(got, alternative, rtol=rtol, atol=atol):
            return symptom.description
    return ""


@dataclass(frozen=True)
class Case:
    """Inputs of one case, by argument name, and what it is meant to cover."""

    name: str
    inputs: dict[str, Any]


@dataclass(frozen=True)
class Spec:
    """What a checker calls and compares: default arguments, outputs, reference and symptoms."""

    checker: str
    args: tuple[str, ...]
    outputs: tuple[str, ...]
    reference: Callable[[dict[str, Any]], tuple[np.ndarray, ...]]
    symptoms: dict[str, tuple[Symptom, ...]] = field(default_factory=dict)
    shape_hint: Callable[[dict[str, Any]], str] | None = None
    rtol: float = 1e-6
    atol: float = 1e-8


def _run(spec: Spec, fn: Callable[..., Any], cases: Sequence[Case], adapter: Adapter | None, time_limit: float) -> CheckReport:
    adapter = adapter or Adapter()
    args = adapter.args or spec.args
    report = CheckReport(spec.checker)
    for case in cases:
        expected = spec.reference(case.inputs)
        missing = [a for a in args if a not in case.inputs]
        if missing:
            report.cases.append(CaseResult(case.name, False, f"the adapter names unknown argument(s) {missing}"))
            continue
        status, result = call_with_time_limit(fn, tuple(_to_student(a, case.inputs[a], adapter) for a in args), time_limit)
        if status != "ok":
            report.cases.append(CaseResult(case.name, False, f"{'raised ' if status == 'error' else ''}{result}"))
            continue
        results = (result,) if len(spec.outputs) == 1 else result
        if not isinstance(results, (tuple, list)) or len(results) != len(spec.outputs):
            report.cases.append(CaseResult(case.name, False, f"expected a tuple ({', '.join(spec.outputs)}), got {type(result).__name__}"))
            continue
        problems = []
        for out_name, got, want in zip(spec.outputs, results, expected):
            like = case.inputs.get("w") if out_name == "dw" else want
            got = _from_student(out_name, got, like if isinstance(like, np.ndarray) else want, adapter)
            hint = spec.shape_hint(case.inputs) if spec.shape_hint and out_name in ("y",) else ""
            problem = _compare(out_name, got, want, spec.rtol, spec.atol, hint)
            if problem:
                symptom = _symptom(out_name, got, case.inputs, spec.symptoms.get(out_name, ()), spec.rtol, spec.atol)
                problems.append(problem + (f"\nsymptom: {symptom}" if symptom else ""))
        report.cases.append(CaseResult(case.name, not problems, "\n".join(problems)))
    return report


# ---------------------------------------------------------------- cases


def _conv_cases(seed: int, random_cases: int) -> list[Case]:
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
               Symptom("matches col2im that overwrites overlapping windows instead of summing them",
                       lambda i: _overwrite_col2im_dx(i))),
        "dw": (Symptom("has the wrong sign", lambda i: -kernels.conv_backward(i["dy"], i["x"], i["w"], i["stride"], i["pad"])[1]),),
    },
)


def _overwrite_col2im(cols: np.ndarray, x_shape: tuple[int, ...], kernel: tuple[int, int], stride: int, pad: int) -> np.ndarray:
    """The classic bug: col2im that assigns each window's values, so the last window (in order) wins."""
    geo = kernels.geometry(x_shape, kernel, stride, pad)
    n, c = x_shape[:2]
    (kh, kw), (oh, ow) = geo.kernel, geo.out
    blocks = cols.reshape(n, c, kh, kw, oh, ow)
    padded = np.zeros((n, c, x_shape[2] + 2 * pad, x_shape[3] + 2 * pad))
    for i in range(oh):
        for j in range(ow):
            padded[:, :, i * stride: i * stride + kh, j * stride: j * stride + kw] = blocks[:, :, :, :, i, j]
    return padded[:, :, pad: pad + x_shape[2], pad: pad + x_shape[3]]


def _overwrite_col2im_dx(i: dict[str, Any]) -> np.ndarray:
    f = i["w"].shape[0]
    geo = kernels.geometry(i["x"].shape, i["w"].shape[2:], i["stride"], i["pad"])
    dy = i["dy"].reshape(i["x"].shape[0], f, -1)
    dcols = np.matmul(i["w"].reshape(f, -1).T, dy)
    return _overwrite_col2im(dcols, i["x"].shape, geo.kernel, i["stride"], i["pad"])


def check_conv_forward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 4,
                       time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(x, w, b, stride, pad) -> y`` (NCHW, w (f, c, kh, kw)) against the reference conv."""
    return _run(CONV_FORWARD, fn, _conv_cases(seed, random_cases), adapter, time_limit)


def check_conv_backward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 4,
                        time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(dy, x, w, b, stride, pad) -> (dx, dw, db)`` against the reference gradients."""
    return _run(CONV_BACKWARD, fn, _conv_cases(seed, random_cases), adapter, time_limit)


def _single_image(cases: list[Case]) -> list[Case]:
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
                   lambda i: _overwrite_col2im(i["cols"][None], (1, *i["x_shape"]), i["kernel"], i["stride"], i["pad"])[0]),)},
)


def check_im2col(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 4,
                 time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(x, kernel, stride, pad) -> X_hat`` for one image: x (C, H, W) -> (C*kh*kw, oh*ow)."""
    return _run(IM2COL, fn, _single_image(_conv_cases(seed, random_cases)), adapter, time_limit)


def check_col2im(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 4,
                 time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(cols, x_shape, kernel, stride, pad) -> x`` for one image, summing overlapping windows."""
    return _run(COL2IM, fn, _single_image(_conv_cases(seed, random_cases)), adapter, time_limit)


def _pool_cases(seed: int, random_cases: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    fixed = [("2x2, stride 2", (2, 3, 8, 8), 2, 2), ("3x3, stride 2, odd size", (1, 2, 7, 7), 3, 2),
             ("3x3, stride 1 (overlapping windows)", (2, 1, 5, 6), 3, 1), ("one image, one channel", (1, 1, 4, 4), 2, 2)]
    fixed += [(f"random {i + 1}", (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(4, 9)), int(rng.integers(4, 9))),
               int(rng.integers(1, 4)), int(rng.integers(1, 3))) for i in range(random_cases)]
    cases = []
    for name, shape, k, s in fixed:
        x = rng.standard_normal(shape)
        y = kernels.maxpool_forward(x, k, s)
        cases.append(Case(f"{name}: x {'x'.join(map(str, shape))}, kernel {k}, stride {s}",
                          {"x": x, "kernel": k, "stride": s, "pad": 0, "dy": rng.standard_normal(y.shape)}))
    return cases


def _pool_spec(kind: str, backward: bool) -> Spec:
    forward = kernels.maxpool_forward if kind == "max" else kernels.avgpool_forward
    grad = kernels.maxpool_backward if kind == "max" else kernels.avgpool_backward
    name = f"check_{kind}pool_{'backward' if backward else 'forward'}"
    if backward:
        return Spec(name, ("dy", "x", "kernel", "stride"), ("dx",), lambda i: (grad(i["dy"], i["x"], i["kernel"], i["stride"]),),
                    {"dx": (Symptom("matches a gradient assigned with = where windows overlap (the last window wins); "
                                    "add it with +=", lambda i: _spread_max(i)),)} if kind == "max" else {})
    return Spec(name, ("x", "kernel", "stride"), ("y",), lambda i: (forward(i["x"], i["kernel"], i["stride"]),),
                shape_hint=lambda i: "out = floor((in - k) / s) + 1 per axis: " + ", ".join(
                    formulas.explain_conv_output_size(n, i["kernel"], i["stride"]) for n in i["x"].shape[2:]))


def _spread_max(i: dict[str, Any]) -> np.ndarray:
    """The gradient routed to the max of each window with ``=``: the last overlapping window wins."""
    x, k, s = i["x"], i["kernel"], i["stride"]
    y = kernels.maxpool_forward(x, k, s)
    dx = np.zeros_like(x)
    for a in range(y.shape[2]):
        for b in range(y.shape[3]):
            window = x[:, :, a * s: a * s + k, b * s: b * s + k]
            mask = window == y[:, :, a: a + 1, b: b + 1]
            dx[:, :, a * s: a * s + k, b * s: b * s + k] = np.where(mask, i["dy"][:, :, a: a + 1, b: b + 1], 0)
    return dx


def check_maxpool_forward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                          time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(x, kernel, stride) -> y`` against max pooling."""
    return _run(_pool_spec("max", False), fn, _pool_cases(seed, random_cases), adapter, time_limit)


def check_maxpool_backward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                           time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(dy, x, kernel, stride) -> dx``: each window's gradient to its (first) maximum."""
    return _run(_pool_spec("max", True), fn, _pool_cases(seed, random_cases), adapter, time_limit)


def check_avgpool_forward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                          time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(x, kernel, stride) -> y`` against average pooling."""
    return _run(_pool_spec("avg", False), fn, _pool_cases(seed, random_cases), adapter, time_limit)


def check_avgpool_backward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                           time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(dy, x, kernel, stride) -> dx``: each window's gradient spread evenly."""
    return _run(_pool_spec("avg", True), fn, _pool_cases(seed, random_cases), adapter, time_limit)


def _dense_cases(seed: int, random_cases: int) -> list[Case]:
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


def _elementwise_cases(seed: int, random_cases: int, batch_of_one: bool = True) -> list[Case]:
    """(N, D) inputs whose upstream gradient ``dy`` has x's shape (relu, batchnorm)."""
    rng = np.random.default_rng(seed)
    shapes = [("batch of 4, 5 features", 4, 5), ("batch of 2", 2, 3), ("one feature", 6, 1), ("batch of 8", 8, 4)]
    if batch_of_one:
        shapes.append(("one sample", 1, 5))
    shapes += [(f"random {i + 1}", int(rng.integers(2, 9)), int(rng.integers(1, 9))) for i in range(random_cases)]
    return [Case(f"{name}: x {n}x{d}", {"x": rng.standard_normal((n, d)), "dy": rng.standard_normal((n, d)),
                                        "gamma": rng.standard_normal(d), "beta": rng.standard_normal(d), "eps": 1e-5})
            for name, n, d in shapes]


def _batchnorm_cases(seed: int, random_cases: int) -> list[Case]:
    return _elementwise_cases(seed, random_cases, batch_of_one=False)  # one sample has no batch variance


def check_linear_forward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                         time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(x, w, b) -> y = x W^T + b`` with w (out, in) (``Adapter(weight="io")`` for (in, out))."""
    return _run(LINEAR_FORWARD, fn, _dense_cases(seed, random_cases), adapter, time_limit)


def check_linear_backward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                          time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(dy, x, w, b) -> (dx, dw, db)`` for ``y = x W^T + b``."""
    return _run(LINEAR_BACKWARD, fn, _dense_cases(seed, random_cases), adapter, time_limit)


def check_relu_backward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                        time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(dy, x) -> dx = dy * (x > 0)``."""
    return _run(RELU_BACKWARD, fn, _elementwise_cases(seed, random_cases), adapter, time_limit)


def check_softmax(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                  time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(logits) -> probs``, softmax over each row (the classes)."""
    return _run(SOFTMAX, fn, _dense_cases(seed, random_cases), adapter, time_limit)


def check_softmax_cross_entropy(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                                time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(logits, labels) -> (loss, dlogits)``: mean cross-entropy and ``(softmax - onehot) / N``."""
    return _run(CROSS_ENTROPY, fn, _dense_cases(seed, random_cases), adapter, time_limit)


def check_batchnorm_forward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                            time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(x, gamma, beta, eps) -> y`` on (N, D): training mode, batch statistics (biased variance)."""
    return _run(BATCHNORM_FORWARD, fn, _batchnorm_cases(seed, random_cases), adapter, time_limit)


def check_batchnorm_backward(fn: Callable[..., Any], adapter: Adapter | None = None, seed: int = 0, random_cases: int = 3,
                             time_limit: float = TIME_LIMIT) -> CheckReport:
    """Check ``fn(dy, x, gamma, beta, eps) -> (dx, dgamma, dbeta)`` for training-mode batchnorm on (N, D)."""
    return _run(BATCHNORM_BACKWARD, fn, _batchnorm_cases(seed, random_cases), adapter, time_limit)


def check_gradient(f: Callable[[np.ndarray], Any], x: np.ndarray, eps: float = 1e-6, samples: int = 20, seed: int = 0,
                   tolerance: float = 1e-6) -> CheckReport:
    """Check any function's analytic gradient against central differences in float64.

    ``f(x)`` returns ``(value, gradient)``: a scalar value and its gradient d(value)/dx, of x's
    shape. ``samples`` random entries of x are perturbed by +-eps.
    """
    x = np.array(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    report = CheckReport("check_gradient")
    status, result = call_with_time_limit(f, (x.copy(),))
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
    flat = x.reshape(-1)
    for index in rng.choice(flat.size, size=min(samples, flat.size), replace=False):
        plus, minus = flat.copy(), flat.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric = (float(f(plus.reshape(x.shape))[0]) - float(f(minus.reshape(x.shape))[0])) / (2 * eps)
        exact = analytic.reshape(-1)[index]
        rel = abs(exact - numeric) / max(abs(exact) + abs(numeric), 1e-12)
        where = tuple(int(v) for v in np.unravel_index(index, x.shape))
        message = "" if rel <= tolerance else (
            f"at index {where}: analytic {exact:.6g}, central difference {numeric:.6g}, relative error {rel:.3g}")
        report.cases.append(CaseResult(f"d/dx{list(where)}", rel <= tolerance, message))
    return report


#: Every checker, by the name the CLI and docs use.
CHECKERS = {
    name: globals()[f"check_{name}"]
    for name in ("conv_forward", "conv_backward", "im2col", "col2im", "maxpool_forward", "maxpool_backward",
                 "avgpool_forward", "avgpool_backward", "linear_forward", "linear_backward", "relu_backward",
                 "softmax", "softmax_cross_entropy", "batchnorm_forward", "batchnorm_backward")
}

__all__ = ["Adapter", "CheckReport", "CaseResult", "check_gradient", "call_with_time_limit", *(f"check_{n}" for n in CHECKERS)]

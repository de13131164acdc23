"""Calling conventions, comparison and reporting: how a case is run, compared and explained."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from archcalc.check.runner import call_with_time_limit


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
    """A known bug and what to call it: the output a buggy implementation would give (``output``),
    or a test that recognises its outputs however the bug's loops were ordered (``matches``,
    called with the output, the case's inputs, rtol and atol)."""

    description: str
    output: Callable[[dict[str, Any]], Any] | None = None
    matches: Callable[[np.ndarray, dict[str, Any], float, float], bool] | None = None


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
            if symptom.matches is not None:
                if symptom.matches(got, inputs, rtol, atol):
                    return symptom.description
                continue
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


def run_checks(spec: Spec, fn: Callable[..., Any], cases: Sequence[Case], adapter: Adapter | None, time_limit: float) -> CheckReport:
    adapter = adapter or Adapter()
    args = adapter.args or spec.args
    report = CheckReport(spec.checker)
    for case in cases:
        inputs = case.inputs
        if adapter.args is not None and "b" in inputs and "b" not in adapter.args:
            # a handout whose function takes no bias: compare with the reference at a zero bias
            inputs = {**inputs, "b": np.zeros_like(inputs["b"])}
        expected = spec.reference(inputs)
        missing = [a for a in args if a not in inputs]
        if missing:
            report.cases.append(CaseResult(case.name, False, f"the adapter names unknown argument(s) {missing}"))
            continue
        status, result = call_with_time_limit(fn, tuple(_to_student(a, inputs[a], adapter) for a in args), time_limit)
        if status != "ok":
            report.cases.append(CaseResult(case.name, False, f"{'raised ' if status == 'error' else ''}{result}"))
            continue
        results = (result,) if len(spec.outputs) == 1 else result
        if not isinstance(results, (tuple, list)) or len(results) != len(spec.outputs):
            report.cases.append(CaseResult(case.name, False, f"expected a tuple ({', '.join(spec.outputs)}), got {type(result).__name__}"))
            continue
        problems = []
        for out_name, got, want in zip(spec.outputs, results, expected):
            like = inputs.get("w") if out_name == "dw" else want
            got = _from_student(out_name, got, like if isinstance(like, np.ndarray) else want, adapter)
            hint = spec.shape_hint(inputs) if spec.shape_hint and out_name in ("y",) else ""
            problem = _compare(out_name, got, want, spec.rtol, spec.atol, hint)
            if problem:
                symptom = _symptom(out_name, got, inputs, spec.symptoms.get(out_name, ()), spec.rtol, spec.atol)
                problems.append(problem + (f"\nsymptom: {symptom}" if symptom else ""))
        report.cases.append(CaseResult(case.name, not problems, "\n".join(problems)))
    return report


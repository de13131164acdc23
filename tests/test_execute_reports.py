"""What `run` and `gradcheck` show, computed in the library: batches, losses, timings, plans, verdicts."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from archcalc.errors import ArchcalcError
from archcalc.execute import (
    Executor,
    Gradcheck,
    GradcheckReport,
    GradcheckRow,
    gradcheck,
    loss_and_grad,
    loss_kind,
    timing_report,
    train_step,
    training_batch,
)
from archcalc.render.execution import gradcheck_table, timing_table

SOFTMAX = {"name": "probs", "input": [4], "layers": [{"type": "linear", "units": 3}, {"type": "softmax"}]}
DENSE = {"name": "dense", "input": [2, 6, 6], "layers": [{"type": "conv", "filters": 3, "kernel": 3, "padding": 1}]}
MARKUP = {"name": "m[/bold]", "input": [4], "layers": [{"type": "linear", "name": "fc[red]", "units": 3}]}


@pytest.mark.parametrize(("model", "kind", "targets"), [
    ("lenet5", "cross-entropy", (5,)), (SOFTMAX, "negative log-likelihood", (5,)), (DENSE, "mean squared error", (5, 3, 6, 6)),
])
def test_training_batch_picks_the_loss_loss_and_grad_uses(model, kind, targets):
    executor = Executor(model, dtype="float64")
    data = training_batch(executor, 5, seed=3)
    assert data.loss == loss_kind(executor) == kind
    assert data.inputs.shape == (5, *executor.graph.input_shape) and data.inputs.dtype == np.float64
    assert data.targets.shape == targets
    again = training_batch(executor, 5, seed=3)
    np.testing.assert_array_equal(data.inputs, again.inputs)  # seeded
    loss, grad = loss_and_grad(executor, executor.forward(data.inputs), data.targets)
    assert np.isfinite(loss) and grad.shape == executor.forward(data.inputs).shape


def test_train_step_lowers_the_loss_and_refuses_bad_rates():
    executor = Executor("lenet5", seed=0)
    data = training_batch(executor, 8, seed=1)
    losses = [train_step(executor, data, lr=0.01, momentum=0.9) for _ in range(12)]
    assert losses[-1] < 0.5 * losses[0]
    with pytest.raises(ArchcalcError, match=r"^lr must be a finite number at least 0, got nan$"):
        train_step(executor, data, lr=float("nan"))


def test_timing_report_means_and_shares():
    executor = Executor("lenet5")
    data = training_batch(executor, 2)
    for _ in range(3):
        train_step(executor, data)
    report = timing_report(executor, 3)
    assert [row.name for row in report.rows] == [node.name for node in executor.graph.nodes[1:]]
    assert sum(row.share for row in report.rows) == pytest.approx(1.0)
    conv1 = report.rows[0]
    assert conv1.forward == pytest.approx(executor.timings["conv1"].forward / 3)
    assert conv1.shape == (2, 6, 28, 28) and conv1.macs == 2 * 6 * 3 * 25 * 28 * 28
    assert report.forward == pytest.approx(sum(t.forward for t in executor.timings.values()) / 3)
    text = _text(timing_table(report, check=True))
    assert "2x6x28x28 ok" in text and f"{2 * 6 * 3 * 25 * 28 * 28:,} ok" in text and "Share" in text


def test_gradcheck_plans_and_reports_progress_per_tensor():
    checker = Gradcheck("lenet5", samples=3)
    plan = checker.plan
    assert plan.passes == 2 * 3 * len(plan.tensors) and plan.seconds == pytest.approx(plan.passes * plan.seconds_per_pass)
    assert str(plan).startswith(f"gradcheck lenet5 at batch 2, float64: 11 tensors, {plan.passes} forward passes, about ")
    heard = []
    report = checker.run(lambda name, done, entries: heard.append((name, done, entries)))
    starts = [(name, entries) for name, done, entries in heard if done == 0]
    assert starts == [(name, entries) for name, _, entries in plan.tensors]
    assert sum(1 for _, done, _ in heard if done) * 2 == plan.passes
    assert [row.name for row in report.rows] == [name for name, _, _ in plan.tensors]
    assert report.passed and all(row.passed for row in report.rows)


def test_gradcheck_verdict_per_row(monkeypatch):
    import archcalc.execute

    monkeypatch.setattr(archcalc.execute, "GRADCHECK_ATOL", 0.0)  # every rounding difference counts
    strict = gradcheck("lenet5", samples=2, tolerance=0)
    assert not strict.passed and not any(row.passed for row in strict.rows if row.max_rel_error > 0)
    assert strict.verdict().startswith("FAILED: max relative error ")
    report = GradcheckReport("m", 1e-5, [GradcheckRow("a", (2,), 2, 1e-9, 1e-9, True), GradcheckRow("b", (2,), 2, 1.0, 0.5, False)])
    text = _text(gradcheck_table(report))
    assert "│ a" in text and "ok" in text and "FAIL" in text and not report.passed


def test_gradcheck_refuses_unbounded_work():
    with pytest.raises(ArchcalcError, match=r"^gradcheck vgg16: 100000 entries per tensor would take 3,051,472 forward passes, "
                                            r"over the bound of 1,000,000; check fewer entries \(--samples\)"):
        gradcheck("vgg16", samples=100_000)


def test_names_with_markup_are_shown_as_written():
    executor = Executor(MARKUP)
    train_step(executor, training_batch(executor, 2))
    assert "fc[red]" in _text(timing_table(timing_report(executor, 1)))
    report = gradcheck(MARKUP, samples=1)
    text = _text(gradcheck_table(report))
    assert "gradcheck m[/bold]" in text and "fc[red].weight" in text


def _text(renderable):
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(renderable)
    return console.file.getvalue()

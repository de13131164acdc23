"""Binary cross-entropy from the logit: the scalar formula, the array kernel, ``archcalc run --loss bce``.

The oracle is PyTorch's ``binary_cross_entropy_with_logits`` (values and autograd gradients, float64).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archcalc import formulas, kernels
from archcalc.errors import ArchcalcError, RuleError
from archcalc.execute import Executor, loss_and_grad, loss_kind, train_step, training_batch
from archcalc.spec import from_dict
from tests.helpers import run_main

LOGITS = [-100.0, -30.0, -5.0, -1.0, -1e-8, 0.0, 1e-8, 0.5, 1.0, 5.0, 30.0, 100.0]
LABELS = [0.0, 1.0, 0.3]
CASES = [(h, y) for h in LOGITS for y in LABELS]


def _torch(logit: float, label: float) -> tuple[float, float]:
    """torch's loss and autograd dL/dh for one logit, float64."""
    h = torch.tensor(logit, dtype=torch.float64, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(h, torch.tensor(label, dtype=torch.float64))
    loss.backward()
    return loss.item(), h.grad.item()


@pytest.mark.parametrize(("logit", "label"), CASES)
def test_scalar_formula_matches_torch(logit, label):
    loss, grad = _torch(logit, label)
    # abs eps*|h|: torch's (1 - y) h - log_sigmoid(h) loses a tiny loss to cancellation (h = -100,
    # y = 0: exact log(1 + e^-100) = 3.7e-44, torch 0.0; h = -30: e^-30 = 9.3576e-14, torch 9.237e-14)
    assert formulas.binary_cross_entropy(logit, label) == pytest.approx(loss, rel=1e-12, abs=1e-15 * max(1.0, abs(logit)))
    assert formulas.binary_cross_entropy_grad(logit, label) == pytest.approx(grad, rel=1e-12, abs=1e-300)


def test_hand_values():
    # p = sigmoid(0) = 1/2: L = log 2 for either label, dL/dh = 1/2 - y
    assert formulas.binary_cross_entropy(0.0, 1) == pytest.approx(math.log(2))
    assert formulas.binary_cross_entropy(0.0, 0) == pytest.approx(math.log(2))
    assert formulas.binary_cross_entropy_grad(0.0, 1) == -0.5
    # the lecture's form -y log p - (1 - y) log(1 - p) where it is safe to evaluate
    for h, y in [(2.0, 1), (2.0, 0), (-0.7, 0.3)]:
        p = 1 / (1 + math.exp(-h))
        assert formulas.binary_cross_entropy(h, y) == pytest.approx(-y * math.log(p) - (1 - y) * math.log(1 - p))
        assert formulas.binary_cross_entropy_grad(h, y) == pytest.approx(p - y)
    # no log of 0: a confident wrong answer costs |h|, finite
    assert formulas.binary_cross_entropy(-100.0, 1) == pytest.approx(100.0)
    # a tiny loss is kept to full relative precision: log(1 + e^-30) = e^-30 (1 - e^-30/2 ...)
    assert formulas.binary_cross_entropy(-30.0, 0) == pytest.approx(math.exp(-30), rel=1e-12)
    assert formulas.binary_cross_entropy(100.0, 1) == pytest.approx(math.exp(-100), rel=1e-12)
    assert formulas.binary_cross_entropy(1000.0, 0) == 1000.0
    assert formulas.sigmoid(-1000.0) == 0.0 and formulas.sigmoid(1000.0) == 1.0


@pytest.mark.parametrize(("logit", "label", "message"), [
    (0.0, 2, "label must be in [0, 1] (0 or 1 for a hard label), got 2.0"),
    (0.0, -0.5, "label must be in [0, 1] (0 or 1 for a hard label), got -0.5"),
    (0.0, float("nan"), "label must be a finite number, got nan"),
    (float("inf"), 1, "logit must be a finite number, got inf"),
    ("1", 1, "logit must be a finite number, got '1'"),
    (0.0, True, "label must be a finite number, got True"),
])
def test_bad_input_is_refused(logit, label, message):
    with pytest.raises(RuleError) as error:
        formulas.binary_cross_entropy(logit, label)
    assert str(error.value) == message
    with pytest.raises(RuleError) as error:
        formulas.binary_cross_entropy_grad(logit, label)
    assert str(error.value) == message


def test_kernel_matches_torch_and_scalar_formula():
    rng = np.random.default_rng(0)
    logits = np.array([[h] for h, _ in CASES] + [[h] for h in rng.normal(0, 8, 20)], dtype=np.float64)
    labels = np.array([[y] for _, y in CASES] + [[y] for y in rng.integers(0, 2, 20)], dtype=np.float64)
    loss, grad = kernels.binary_cross_entropy_with_logits(logits, labels)
    h = torch.tensor(logits, requires_grad=True)
    expected = F.binary_cross_entropy_with_logits(h, torch.tensor(labels))  # mean reduction, as the kernel
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(grad, h.grad.numpy(), rtol=1e-12, atol=1e-40)
    # the array kernel and the scalar formula agree entry by entry
    n = logits.size
    scalar = [formulas.binary_cross_entropy(float(a), float(b)) for a, b in zip(logits.ravel(), labels.ravel())]
    assert loss == pytest.approx(sum(scalar) / n, rel=1e-12)
    scalar_grad = [formulas.binary_cross_entropy_grad(float(a), float(b)) / n for a, b in zip(logits.ravel(), labels.ravel())]
    np.testing.assert_allclose(grad.ravel(), scalar_grad, rtol=1e-12, atol=1e-300)


def test_kernel_float32_has_no_overflow():
    logits = np.array([[-100.0], [100.0], [0.0]], dtype=np.float32)
    labels = np.array([[1.0], [0.0], [1.0]], dtype=np.float32)
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # exp(-100) underflowing is harmless
        loss, grad = kernels.binary_cross_entropy_with_logits(logits, labels)
    assert loss == pytest.approx((100 + 100 + math.log(2)) / 3, rel=1e-6)
    np.testing.assert_allclose(grad.ravel(), [-1 / 3, 1 / 3, -1 / 6], rtol=1e-6)


def test_kernel_refuses_mismatched_labels():
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 1\), got \(2,\)"):
        kernels.binary_cross_entropy_with_logits(np.zeros((2, 1)), np.zeros(2))


def _one_output(units: int = 1) -> dict:
    return {"name": "tiny", "input": [5], "layers": [{"type": "linear", "units": 4}, {"type": "relu"},
                                                     {"type": "linear", "units": units}]}


def test_executor_bce_against_torch():
    executor = Executor(from_dict(_one_output()), dtype="float64")
    data = training_batch(executor, 6, seed=3, loss="bce")
    assert data.loss == "binary cross-entropy" == loss_kind(executor, "bce")
    assert data.targets.shape == (6, 1) and set(np.unique(data.targets)) <= {0.0, 1.0}
    output = executor.forward(data.inputs)
    loss, grad = loss_and_grad(executor, output, data.targets, data.loss)
    h = torch.tensor(output, requires_grad=True)
    expected = F.binary_cross_entropy_with_logits(h, torch.tensor(data.targets))
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(grad, h.grad.numpy(), rtol=1e-12)
    # training on the batch lowers the loss
    first = train_step(executor, data, lr=0.5)
    for _ in range(30):
        last = train_step(executor, data, lr=0.5)
    assert last < first


def test_default_loss_unchanged():
    executor = Executor(from_dict(_one_output(10)))
    assert loss_kind(executor) == "cross-entropy"
    assert training_batch(executor, 3).targets.shape == (3,)
    assert loss_kind(Executor(from_dict(_one_output(1)))) == "cross-entropy"


def test_executor_refuses_bce_for_other_outputs():
    with pytest.raises(ArchcalcError, match=r"^--loss bce needs a one-unit output of shape \(1,\), got output shape \(10,\)$"):
        training_batch(Executor(from_dict(_one_output(10))), 2, loss="bce")
    ends_in_sigmoid = {**_one_output(1), "layers": [*_one_output(1)["layers"], {"type": "sigmoid", "name": "prob"}]}
    with pytest.raises(ArchcalcError, match=r"^--loss bce takes the logit, but the network ends in a sigmoid \(prob\): "
                       r"remove it \(the loss applies its own sigmoid\)$"):
        training_batch(Executor(from_dict(ends_in_sigmoid)), 2, loss="bce")
    with pytest.raises(ArchcalcError, match=r"^loss must be 'bce' or None \(the default\), got 'mse'$"):
        loss_kind(Executor(from_dict(_one_output(1))), "mse")


def test_cli_run_bce(tmp_path):
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(_one_output()))
    code, out, err = run_main("run", str(spec), "--loss", "bce", "--batch", "4", "--steps", "3")
    assert code == 0, err
    assert "binary cross-entropy" in out
    losses = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("step")]
    assert len(losses) == 3 and all(math.isfinite(v) and v > 0 for v in losses)


def test_cli_run_bce_refuses_ten_outputs(tmp_path):
    spec = tmp_path / "ten.json"
    spec.write_text(json.dumps(_one_output(10)))
    code, out, err = run_main("run", str(spec), "--loss", "bce")
    assert code == 2
    assert err == "error: --loss bce needs a one-unit output of shape (1,), got output shape (10,)\n"
    assert out == ""


# ---- the checker for students' sigmoid + BCE, with its symptom probes

def _student_bce(logits, labels):
    """A correct student version, written from the lecture's stable form."""
    n = logits.shape[0]
    loss = np.mean(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits))))
    p = np.where(logits >= 0, 1 / (1 + np.exp(-np.abs(logits))), np.exp(-np.abs(logits)) / (1 + np.exp(-np.abs(logits))))
    return loss, (p - labels) / n


def _naive_sigmoid(h):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-h))


def _failure(report):
    assert not report.passed
    return report.first_failure.message


def test_checker_passes_a_correct_student_function():
    from archcalc.check import check_sigmoid_bce

    report = check_sigmoid_bce(_student_bce)
    assert report.passed, str(report)
    assert len(report.cases) == 8



def test_checker_reference_is_torchs():
    """The checker's reference on each of its cases (the saturating one too) equals torch's, in this process
    (torch is not called inside the checker's forked children: a forked torch can deadlock)."""
    from archcalc.check.cases import binary_cases
    from archcalc.check.specs import SIGMOID_BCE

    for case in binary_cases(0, 3):
        loss, grad = SIGMOID_BCE.reference(case.inputs)
        expected_loss, expected_grad = _torch_batch(case.inputs["logits"], case.inputs["labels"])
        assert float(loss) == pytest.approx(expected_loss.item(), rel=1e-12, abs=1e-15), case.name
        np.testing.assert_allclose(grad, expected_grad.numpy(), rtol=1e-12, atol=1e-40, err_msg=case.name)


def _torch_batch(logits, labels):
    h = torch.tensor(logits, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(h, torch.tensor(labels))
    loss.backward()
    return loss, h.grad


@pytest.mark.parametrize(("student", "phrases"), [
    (lambda h, y: (_student_bce(h, y)[0], -_student_bce(h, y)[1]), ("dlogits", "symptom: has the wrong sign")),
    (lambda h, y: (_student_bce(h, y)[0], (_naive_sigmoid(h) - y) / (_naive_sigmoid(h) * (1 - _naive_sigmoid(h))) / len(y)),
     ("dlogits", "symptom: is the gradient w.r.t. p = sigmoid(h)")),
    (lambda h, y: (_student_bce(h, y)[0], _student_bce(h, y)[1] * len(y)), ("symptom: is not divided by the batch size N",)),
    (lambda h, y: (_student_bce(h, y)[0] * len(y), _student_bce(h, y)[1]), ("symptom: is the summed loss",)),
])
def test_checker_diagnoses_each_bug(student, phrases):
    from archcalc.check import check_sigmoid_bce

    message = _failure(check_sigmoid_bce(student))
    for phrase in phrases:
        assert phrase in message, message


def test_checker_diagnoses_the_log_of_zero():
    """The lecture's formula on p = sigmoid(h), unclamped: right for moderate logits, inf/nan once p rounds to 0 or 1."""
    from archcalc.check import check_sigmoid_bce

    def naive(logits, labels):
        p = _naive_sigmoid(logits)
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = np.mean(-labels * np.log(p) - (1 - labels) * np.log(1 - p))
        return loss, (p - labels) / len(labels)

    report = check_sigmoid_bce(naive)
    failed = [case for case in report.cases if not case.passed]
    assert [case.name for case in failed] == ["saturated logits +-40 and +-100, right and wrong labels: 6 logits"]
    assert "loss has a non-finite value" in failed[0].message
    assert "symptom: is not finite where a large |logit| makes p = sigmoid(h) exactly 0 or 1: log of 0 (missing clamp)" \
        in failed[0].message


def test_a_logit_beyond_a_floats_range_is_a_clear_error():
    with pytest.raises(RuleError, match="logit must be a finite number, got an int of 1101 bits"):
        formulas.binary_cross_entropy(2**1100, 1)

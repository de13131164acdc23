"""The NumPy executor: every op's forward and backward against PyTorch and central differences."""

from __future__ import annotations

import numpy as np
import pytest

import archcalc
from archcalc.errors import ArchcalcError
from archcalc.execute import Executor, gradcheck, loss_and_grad
from archcalc.ops import REGISTRY
from archcalc.spec import from_dict
from tests.helpers import single_op_graph

CASES = [(op_type, i, ex) for op_type, op in sorted(REGISTRY.items()) for i, ex in enumerate(op.examples)]
IDS = [f"{t}-{i}" for t, i, _ in CASES]


def _close(a, b, rtol=1e-9, atol=1e-10):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize(("op_type", "index", "example"), CASES, ids=IDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_every_op_matches_torch(op_type, index, example, training):
    oracle = pytest.importorskip("tests.torch_oracle")
    graph = single_op_graph(op_type, example)
    executor = Executor(graph, seed=index, dtype="float64", stand_ins=True)
    for key in executor.params:  # non-trivial running statistics for eval mode, as _before_update gives torch
        if key.endswith("running_mean"):
            executor.params[key][:] = 0.3
    executor.train() if training else executor.eval()
    rng = np.random.default_rng(index)
    x = rng.standard_normal((3, *graph.input_shape))
    y = executor.forward(x)
    if training and REGISTRY[op_type].random:
        return  # random masks: checked by test_dropout_train_and_eval and tests/test_random_ops.py
    dy = rng.standard_normal(y.shape)
    grads = executor.backward(dy)
    outputs, dx, torch_grads, buffers = oracle.run_torch(graph, _before_update(executor, graph, x), x, dy, training)
    _close(y, outputs[graph.nodes[-1].name])
    _close(executor.input_grad, dx)
    assert set(grads) == set(torch_grads)
    for name, grad in grads.items():
        _close(grad, torch_grads[name])
    for name, value in buffers.items():  # batchnorm's running statistics after the step
        _close(executor.params[name], value)


def _before_update(executor, graph, x):
    """The parameters as they were before ``forward`` moved batchnorm's running averages."""
    fresh = Executor(graph, seed=executor.seed, dtype="float64", stand_ins=True)
    params = {k: v.copy() for k, v in fresh.params.items()}
    for key in params:
        if key.endswith("running_mean"):
            params[key][:] = 0.3
    return params


@pytest.mark.parametrize(("op_type", "index", "example"), CASES, ids=IDS)
def test_every_op_passes_gradcheck(op_type, index, example):
    """Central differences in float64, no torch needed."""
    report = gradcheck(single_op_graph(op_type, example), batch=2, seed=index, stand_ins=True)
    assert report.passed, str(report)


def test_dropout_train_and_eval():
    graph = from_dict({"name": "d", "input": [1000], "layers": [{"type": "dropout", "p": 0.25}]})
    x = np.ones((4, 1000))
    first = Executor(graph, seed=3, dtype="float64").forward(x)
    again = Executor(graph, seed=3, dtype="float64").forward(x)
    np.testing.assert_array_equal(first, again)  # seeded
    kept = first != 0
    assert 0.70 < kept.mean() < 0.80
    np.testing.assert_allclose(first[kept], 1 / 0.75)
    ex = Executor(graph, seed=3, dtype="float64")
    ex.forward(x)
    ex.backward(np.ones_like(x))
    np.testing.assert_array_equal(ex.input_grad, ex.outputs["dropout1"])  # the mask again
    np.testing.assert_array_equal(Executor(graph).eval().forward(x), x)


def test_maxpool_tie_rule_first_maximum():
    graph = from_dict({"name": "m", "input": [1, 2, 2], "layers": [{"type": "maxpool", "kernel": 2}]})
    ex = Executor(graph, dtype="float64")
    ex.forward(np.ones((1, 1, 2, 2)))
    ex.backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(ex.input_grad[0, 0], [[1, 0], [0, 0]])


BLOCK = {
    "name": "basic-block", "input": [8, 12, 12],
    "layers": [
        {"type": "conv", "name": "conv1", "filters": 16, "kernel": 3, "stride": 2, "padding": 1, "bias": False},
        {"type": "batchnorm", "name": "bn1"}, {"type": "relu"},
        {"type": "conv", "name": "conv2", "filters": 16, "kernel": 3, "padding": 1, "bias": False},
        {"type": "batchnorm", "name": "bn2"},
        {"type": "conv", "name": "down", "filters": 16, "kernel": 1, "stride": 2, "bias": False, "inputs": ["input"]},
        {"type": "batchnorm", "name": "down_bn"},
        {"type": "add", "inputs": ["bn2", "down_bn"]}, {"type": "relu"},
        {"type": "global_avgpool"}, {"type": "flatten"}, {"type": "linear", "name": "fc", "units": 5},
    ],
}


@pytest.mark.parametrize("model", ["lenet5", BLOCK], ids=["lenet5", "resnet-basic-block"])
@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-10), ("float32", 2e-4)])
def test_whole_networks_match_torch(model, dtype, rtol):
    oracle = pytest.importorskip("tests.torch_oracle")
    torch = oracle.torch
    executor = Executor(model, seed=1, dtype=dtype)
    params = {k: v.copy() for k, v in executor.params.items()}
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, *executor.graph.input_shape)).astype(dtype)
    logits = executor.forward(x)
    labels = rng.integers(0, logits.shape[1], size=4)
    loss, dlogits = loss_and_grad(executor, logits, labels)
    grads = executor.backward(dlogits)
    outputs, dx, torch_grads, _ = oracle.run_torch(executor.graph, params, x, dlogits, True, getattr(torch, dtype))
    torch_logits = outputs[executor.graph.nodes[-1].name]
    scale = np.abs(torch_logits).max()
    np.testing.assert_allclose(logits, torch_logits, rtol=rtol, atol=rtol * scale)
    torch_loss = torch.nn.functional.cross_entropy(torch.tensor(torch_logits, dtype=torch.float64), torch.tensor(labels))
    assert loss == pytest.approx(float(torch_loss), rel=rtol * 10)
    for name, grad in grads.items():
        reference = torch_grads[name]
        np.testing.assert_allclose(grad, reference, rtol=rtol * 10, atol=rtol * np.abs(reference).max())
    np.testing.assert_allclose(executor.input_grad, dx, rtol=rtol * 10, atol=rtol * np.abs(dx).max())


def test_sgd_with_momentum_and_weight_decay_matches_torch():
    oracle = pytest.importorskip("tests.torch_oracle")
    torch = oracle.torch
    executor = Executor("lenet5", seed=0, dtype="float64")
    net = oracle.TorchNet(executor.graph).double()
    oracle.load_params(net, executor.params)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((8, 3, 32, 32)), rng.integers(0, 10, size=8)
    for _ in range(3):
        loss, grad = loss_and_grad(executor, executor.forward(x), labels)
        executor.step(executor.backward(grad), lr=0.05, momentum=0.9, weight_decay=1e-3)
        optimizer.zero_grad()
        out = net(torch.tensor(x))["fc3"]
        torch.nn.functional.cross_entropy(out, torch.tensor(labels)).backward()
        optimizer.step()
    np.testing.assert_allclose(executor.params["conv1.weight"], net.layers["conv1"].inner.weight.detach().numpy(), rtol=1e-9)
    np.testing.assert_allclose(executor.params["fc3.bias"], net.layers["fc3"].bias.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_training_lowers_the_loss():
    executor = Executor("lenet5", seed=0)
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((8, 3, 32, 32)).astype("float32"), rng.integers(0, 10, size=8)
    losses = []
    for _ in range(15):
        loss, grad = loss_and_grad(executor, executor.forward(x), labels)
        executor.step(executor.backward(grad), lr=0.01, momentum=0.9)
        losses.append(loss)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", ["lenet5", "inception-reduced", "alexnet-grouped"])
def test_executed_macs_and_shapes_equal_the_analyzers(name):
    executor = Executor(name, dtype="float32")
    x = np.random.default_rng(0).standard_normal((2, *executor.graph.input_shape)).astype("float32")
    executor.forward(x)
    analysis = archcalc.analyze(executor.graph, batch=2)
    for row in analysis.layers[1:]:
        assert executor.outputs[row.name].shape == (2, *row.output_shape)
    performed = executor.check_macs()
    assert sum(p for p, _ in performed.values()) == analysis.totals.macs


def test_a_wrong_shape_rule_would_be_caught(monkeypatch):
    from archcalc.execute import ExecutionMismatch
    from archcalc.ops.pool import MaxPool

    executor = Executor("lenet5")
    monkeypatch.setattr(MaxPool, "forward", lambda self, layer, inputs, params, ctx: (inputs[0], None))
    with pytest.raises(ExecutionMismatch, match="pool1.*produced"):
        executor.forward(np.zeros((1, 3, 32, 32), dtype="float32"))


def test_memory_limit_refuses_with_the_estimate():
    from archcalc import kernels

    executor = Executor("vgg16", max_memory=4 * 2**30)
    estimate = executor.memory_estimate(64)
    params = archcalc.analyze("vgg16").totals.params
    assert estimate.parameters == 4 * params and estimate.gradients == estimate.momentum == 4 * params
    # every output (ReLUs included) is held with its gradient: at least the analyzer's stored activations, twice
    assert estimate.activations >= 2 * archcalc.analyze("vgg16", batch=64).totals.activation_bytes
    conv1_2 = 64 * 9 * 224 * 224 * 4  # one sample's im2col matrix of conv1_2, float32 bytes
    with kernels.backend("numpy"):  # the batch's matrices are kept for backward
        assert executor.memory_estimate(64).im2col > 64 * conv1_2
    if kernels._C is not None:  # one sample's matrix and its gradient at a time
        with kernels.backend("c"):
            assert 2 * conv1_2 <= executor.memory_estimate(64).im2col < 64 * conv1_2
    with pytest.raises(ArchcalcError, match=r"running vgg16 at batch 64 in float32 needs an estimated .* GiB .* over the limit of 4.0 GiB"):
        executor.forward(np.zeros((64, 3, 224, 224), dtype="float32"))


def test_bad_inputs_are_clear_errors():
    executor = Executor("lenet5")
    with pytest.raises(ArchcalcError, match=r"input must have shape \(N, 3, 32, 32\), got \(2, 3, 28, 28\)"):
        executor.forward(np.zeros((2, 3, 28, 28)))
    executor.forward(np.zeros((2, 3, 32, 32)))
    with pytest.raises(ArchcalcError, match=r"dy must have the output's shape \(2, 10\)"):
        executor.backward(np.zeros((2, 9)))
    with pytest.raises(ArchcalcError, match="float32 or float64"):
        Executor("lenet5", dtype="int8")


def test_skipping_the_input_gradient_changes_no_parameter_gradient():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 32, 32))
    full, lean = Executor("lenet5", dtype="float64"), Executor("lenet5", dtype="float64")
    lean.needs_input_grad = False
    dy = rng.standard_normal((4, 10))
    full.forward(x)
    lean.forward(x)
    grads, lean_grads = full.backward(dy), lean.backward(dy)
    assert full.input_grad is not None and lean.input_grad is None
    assert grads.keys() == lean_grads.keys()
    for name in grads:
        np.testing.assert_array_equal(grads[name], lean_grads[name])
    # a conv that reads another layer still passes its gradient on
    branchy = Executor(BLOCK, dtype="float64")
    branchy.needs_input_grad = False
    branchy.forward(rng.standard_normal((2, 8, 12, 12)))
    assert set(branchy.backward(np.ones((2, 5)))) == set(branchy.trainable)


def test_the_mac_check_covers_every_node_and_can_fail():
    from archcalc.execute import ExecutionMismatch

    executor = Executor("lenet5", seed=0)
    executor.forward(np.zeros((2, 3, 32, 32), dtype=np.float32))
    checked = executor.check_macs()
    assert set(checked) == {"conv1", "conv2", "fc1", "fc2", "fc3"}  # the nodes that multiply
    assert checked["conv1"] == (2 * 6 * 3 * 25 * 28 * 28,) * 2  # by hand: batch * f * c * k*k * out
    executor.macs_performed["relu1"] = 1  # an op the analyzer says multiplies nothing
    with pytest.raises(ExecutionMismatch, match="'relu1': performed 1 MACs, the analyzer says 0"):
        executor.check_macs()
    executor.macs_performed["relu1"] = 0
    executor.macs_performed["conv2"] -= 1
    with pytest.raises(ExecutionMismatch, match="'conv2'"):
        executor.check_macs()


def test_gradcheck_passes_a_gradient_that_is_truly_zero():
    # a conv bias before a training-mode batchnorm: the mean subtraction cancels it, so its true
    # gradient is 0 and central differences give rounding noise (about 1e-10), not a relative error of 1
    spec = {"name": "cbn", "input": [2, 4, 4], "layers": [{"type": "conv", "name": "conv", "filters": 2, "kernel": 3},
            {"type": "batchnorm"}, {"type": "flatten"}, {"type": "linear", "units": 3}]}
    report = gradcheck(spec, batch=2)
    bias = next(row for row in report.rows if row.name == "conv.bias")
    assert bias.max_abs_error < 1e-8 and bias.passed and report.passed, str(report)

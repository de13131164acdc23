"""Training cost: each op's backward MACs (input and weight gradients) against the products the NumPy
executor runs in its backward, hand arithmetic, and PyTorch's FlopCounterMode; the step's figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

import archcalc
from archcalc import kernels, zoo
from archcalc.execute import ExecutionMismatch, Executor
from archcalc.ops import REGISTRY, BackwardCost, get_op
from archcalc.passes import infer_shapes
from archcalc.spec import from_dict
from tests.helpers import run_main, single_op_graph

CASES = [(op_type, i, ex) for op_type, op in sorted(REGISTRY.items()) for i, ex in enumerate(op.examples)]
IDS = [f"{t}-{i}" for t, i, _ in CASES]
BACKENDS = ["numpy"] + (["c"] if kernels._C is not None else [])


def _layer(op_type, example):
    graph = single_op_graph(op_type, example)
    return graph, infer_shapes(graph)[graph.nodes[-1].name]


def _forward_macs(op_type):
    """Whether any example of the op has forward MACs."""
    return any(get_op(op_type).cost(_layer(op_type, ex)[1]).macs for ex in REGISTRY[op_type].examples)


MULTIPLYING = sorted(t for t in REGISTRY if _forward_macs(t))


def test_the_ops_that_multiply_state_their_backward_rule():
    """Every op with forward MACs has its own backward rule, stated in its docstring; the others none."""
    assert {"conv", "conv_transpose", "linear"} <= set(MULTIPLYING)
    for op_type, op in REGISTRY.items():
        if op_type in MULTIPLYING:
            assert "backward_cost" in vars(type(op)), op_type
            assert "backward: input gradient = " in type(op).__doc__, op_type
        else:
            for example in op.examples:
                cost = op.backward_cost(_layer(op_type, example)[1])
                assert cost.input_grad_macs == cost.weight_grad_macs == 0, op_type


@pytest.mark.parametrize(("op_type", "index", "example"), CASES, ids=IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_node_of_every_example_runs_the_backward_macs_the_analyzer_says(op_type, index, example, backend):
    """The executor's backward counts its products' MACs from their operand shapes; check_backward_macs
    compares them with the analyzer's figures on every node, with and without the input gradient."""
    graph = single_op_graph(op_type, example)
    for needs_input_grad in (True, False):
        executor = Executor(graph, seed=index, dtype="float64", stand_ins=True)
        executor.needs_input_grad = needs_input_grad
        x = np.random.default_rng(index).standard_normal((3, *graph.input_shape))
        with kernels.backend(backend):
            y = executor.forward(x)
            executor.backward(np.ones_like(y))
        checked = executor.check_backward_macs()
        last = graph.nodes[-1].name
        layer = executor.layers[last]
        rule = get_op(op_type).backward_cost(layer)
        performed = executor.backward_macs_performed[last]
        # the layer reads the network input (or, for merges, 1x1 branches that have weights)
        needed = needs_input_grad or len(graph.nodes) > 2
        assert performed == (3 * rule.input_grad_macs if needed else 0, 3 * rule.weight_grad_macs)
        assert set(checked) == {name for name, macs in executor.backward_macs_performed.items() if any(macs)}


def test_hand_arithmetic_of_conv_linear_and_transposed_conv():
    """Each gradient costs the forward's MACs, divided by groups as the forward: worked by hand."""
    def cost(op_type, attrs, shape):
        spec = {"name": "t", "input": list(shape), "layers": [{"type": op_type, **attrs}]}
        graph = from_dict(spec)
        return get_op(op_type).backward_cost(infer_shapes(graph)[graph.nodes[-1].name])

    # grouped: f * (c/g) * k*k * out = 16 * (8/4) * 3*3 * 10*10
    assert cost("conv", {"filters": 16, "kernel": 3, "padding": 1, "groups": 4}, (8, 10, 10)) == \
        BackwardCost(28_800, 28_800, 16 * 100)
    # depthwise, strided: out floor((11 + 2*2 - 5)/2) + 1 = 6; 6 * 1 * 5*5 * 6*6; no bias, no other ops
    assert cost("conv", {"filters": 6, "kernel": 5, "stride": 2, "padding": 2, "groups": 6, "bias": False},
                (6, 11, 11)) == BackwardCost(5_400, 5_400, 0)
    # dilated: out 9 - 2*(3-1) = 5; 4 * 3 * 3*3 * 5*5
    assert cost("conv", {"filters": 4, "kernel": 3, "dilation": 2}, (3, 9, 9)) == BackwardCost(2_700, 2_700, 100)
    # 1D strided: out floor((16 - 5)/2) + 1 = 6; 3 * 2 * 5 * 6
    assert cost("conv", {"filters": 3, "kernel": [5], "stride": 2}, (2, 16)) == BackwardCost(180, 180, 18)
    # linear: in * out, per position: 12 * 5; 3 * 8 * 10 positions
    assert cost("linear", {"units": 5}, (12,)) == BackwardCost(60, 60, 5)
    assert cost("linear", {"units": 8}, (10, 3)) == BackwardCost(240, 240, 80)
    # transposed conv: c * (f/g) * k*k * in = 3 * 4 * 4*4 * 4*4; grouped 2 * (4/2) * 3*3 * 5*4
    assert cost("conv_transpose", {"filters": 4, "kernel": 4, "stride": 2, "padding": 1}, (3, 4, 4)) == \
        BackwardCost(3_072, 3_072, 4 * 64)
    assert cost("conv_transpose", {"filters": 4, "kernel": 3, "groups": 2, "bias": False}, (2, 5, 4)) == \
        BackwardCost(720, 720, 0)


#: Zoo models at a small input where the network allows it (the NumPy executor runs each once), and a
#: small encoder-decoder with transposed convs (the zoo's U-Net needs 188x188 at least: 6 GMACs).
ZOO_INPUTS = {"lenet5": None, "resnet18": [3, 32, 32], "mobilenet_v2": [3, 32, 32], "alexnet-grouped": [3, 67, 67],
              "inception-reduced": [3, 64, 64], "densenet121": [3, 32, 32], "r3d_18": [3, 4, 16, 16]}
ENCODER_DECODER = {"name": "encdec", "input": [3, 16, 16], "layers": [
    {"type": "conv", "name": "enc1", "filters": 8, "kernel": 3, "padding": 1}, {"type": "relu"},
    {"type": "conv", "name": "enc2", "filters": 16, "kernel": 3, "stride": 2, "padding": 1, "groups": 2}, {"type": "relu"},
    {"type": "conv_transpose", "name": "dec1", "filters": 8, "kernel": 4, "stride": 2, "padding": 1, "groups": 4},
    {"type": "relu"}, {"type": "concat", "name": "skip", "inputs": ["dec1", "enc1"]},
    {"type": "conv_transpose", "name": "dec2", "filters": 4, "kernel": 3, "padding": 1},
    {"type": "flatten"}, {"type": "linear", "name": "head", "units": 5}]}


def _small(name):
    if name == "encdec":
        return from_dict(ENCODER_DECODER)
    spec = zoo.load(name).to_dict()
    if ZOO_INPUTS[name]:
        spec["input"] = ZOO_INPUTS[name]
    return from_dict(spec)


@pytest.mark.parametrize("name", [*ZOO_INPUTS, "encdec"])
def test_zoo_backward_macs_equal_the_executors(name):
    """Training as frameworks do (no gradient for the network input): the products the executor's backward
    runs on every node equal the report's per-layer figures, and their sums its totals."""
    graph = _small(name)
    executor = Executor(graph, dtype="float32")
    executor.needs_input_grad = False
    x = np.random.default_rng(0).standard_normal((2, *graph.input_shape)).astype("float32")
    y = executor.forward(x)
    executor.backward(np.ones_like(y))
    checked = executor.check_backward_macs()
    analysis = archcalc.analyze(graph, batch=2)
    t = analysis.totals
    assert sum(p[0] for p, _ in checked.values()) == t.input_grad_macs
    assert sum(p[1] for p, _ in checked.values()) == t.weight_grad_macs == t.macs  # every MAC op has weights
    assert t.backward_macs == t.input_grad_macs + t.weight_grad_macs
    # the first layers with weights (those reading the input, through parameter-free layers only) skip dX
    first = graph.nodes[1]
    assert executor.backward_macs_performed[first.name][0] == 0 and analysis.layers[1].figure("input_grad_macs") == 0


def test_the_backward_check_names_the_layer_and_can_fail():
    executor = Executor("lenet5", seed=0)
    with pytest.raises(archcalc.ArchcalcError, match="needs a backward pass first"):
        executor.check_backward_macs()
    executor.needs_input_grad = False
    executor.forward(np.zeros((2, 3, 32, 32), dtype=np.float32))
    executor.backward(np.ones((2, 10), dtype=np.float32))
    checked = executor.check_backward_macs()
    assert set(checked) == {"conv1", "conv2", "fc1", "fc2", "fc3"}
    # by hand: conv1's input gradient is skipped, its weight gradient is batch * f * c * k*k * out
    assert checked["conv1"] == ((0, 2 * 6 * 3 * 25 * 28 * 28),) * 2
    assert checked["conv2"] == ((2 * 16 * 6 * 25 * 10 * 10,) * 2,) * 2
    executor.backward_macs_performed["relu1"] = (1, 0)
    with pytest.raises(ExecutionMismatch, match="'relu1': backward performed 1 input-gradient and 0 weight-gradient "
                                                "MACs, the analyzer says 0 and 0"):
        executor.check_backward_macs()
    executor.backward_macs_performed["relu1"] = (0, 0)
    executor.backward_macs_performed["fc1"] = (0, 96_000)  # the input gradient not run
    with pytest.raises(ExecutionMismatch, match="'fc1'"):
        executor.check_backward_macs()


def test_the_input_gradient_follows_the_learned_parameters_not_the_position():
    """A pool before the first conv does not make the conv's input gradient needed; a conv after a
    parameter-free branch of the input skips it too, while one after a conv does not."""
    spec = {"name": "t", "input": [2, 8, 8], "layers": [
        {"type": "maxpool", "name": "pool", "kernel": 2},
        {"type": "conv", "name": "a", "filters": 4, "kernel": 3, "padding": 1},
        {"type": "conv", "name": "b", "filters": 4, "kernel": 3, "padding": 1, "inputs": ["pool"]},
        {"type": "conv", "name": "c", "filters": 4, "kernel": 1, "inputs": ["a"]},
        {"type": "add", "inputs": ["b", "c"]}]}
    analysis = archcalc.analyze(spec)
    figures = {row.name: (row.figure("input_grad_macs"), row.figure("weight_grad_macs")) for row in analysis.layers}
    assert figures["a"] == figures["b"] == (0, 4 * 2 * 9 * 16)
    assert figures["c"] == (4 * 4 * 16,) * 2
    executor = Executor(spec)
    executor.needs_input_grad = False
    executor.forward(np.ones((1, 2, 8, 8), dtype=np.float32))
    executor.backward(np.ones((1, 4, 4, 4), dtype=np.float32))
    assert executor.check_backward_macs()["a"] == ((0, 4 * 2 * 9 * 16),) * 2


def _torch_training_flops(module, inputs, input_requires_grad):
    """FlopCounterMode's FLOPs of a forward and a backward (of the output's sum)."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    inputs = [x.clone().requires_grad_(input_requires_grad) for x in inputs]
    with FlopCounterMode(display=False) as counter:
        output = module(*inputs)
        output.sum().backward()
    flops = counter.get_total_flops()
    assert flops % 2 == 0 and isinstance(output, torch.Tensor)
    return flops


@pytest.mark.parametrize(("op_type", "index", "example"), [c for c in CASES if c[0] in MULTIPLYING],
                         ids=[i for i, c in zip(IDS, CASES) if c[0] in MULTIPLYING])
def test_forward_and_backward_match_torchs_flop_counter_except_its_grouped_weight_gradient(op_type, index, example):
    """FlopCounterMode counts 2 FLOPs per MAC; with the input needing a gradient its forward+backward is
    2 x (forward + input-gradient + weight-gradient MACs) for ungrouped layers. For a grouped conv or
    transposed conv its convolution_backward rule counts the weight gradient as if there were one group
    (groups times archcalc's, which the executor's products confirm): the flopcounter preset reproduces
    that, archcalc's own convention does not."""
    oracle = pytest.importorskip("tests.torch_oracle")
    torch = oracle.torch
    _, layer = _layer(op_type, example)
    module = oracle.build_module(op_type, layer)
    batch = 2
    inputs = [torch.rand((batch, *shape)) for shape in layer.in_shapes]
    op = get_op(op_type)
    forward, backward = op.cost(layer).macs, op.backward_cost(layer)
    groups = layer.attrs.get("groups", 1)
    torch_flops = _torch_training_flops(module, inputs, True)
    ours = forward + backward.input_grad_macs + backward.weight_grad_macs
    torchs_rule = forward + backward.input_grad_macs + groups * backward.weight_grad_macs
    assert torch_flops == 2 * batch * torchs_rule
    assert (torch_flops == 2 * batch * ours) == (groups == 1)
    # the input not requiring a gradient (a first layer): torch skips the input gradient, as archcalc's figure
    assert _torch_training_flops(module, inputs, False) == 2 * batch * (forward + groups * backward.weight_grad_macs)


@pytest.mark.parametrize("name", ["lenet5", "resnet18"])
def test_an_ungrouped_network_matches_torchs_flop_counter_forward_and_backward(name):
    """archcalc's training step without the update, forward + backward MACs, x 2 = FlopCounterMode's
    FLOPs of torch's own module of the network (the first conv's input gradient skipped by both)."""
    pytest.importorskip("torch")
    oracle = pytest.importorskip("tests.torch_oracle")
    from archcalc.exporters.torch import to_torch

    graph = _small(name)
    module = to_torch(graph).train()
    analysis = archcalc.analyze(graph, batch=2)
    flops = _torch_training_flops(module, [oracle.torch.rand((2, *graph.input_shape))], False)
    assert flops == 2 * (analysis.totals.macs + analysis.totals.backward_macs)


def test_training_step_totals_by_hand_for_lenet5():
    """forward 651,720 = 352,800 + 240,000 + 48,000 + 10,080 + 840; backward: every weight gradient
    again, and every input gradient but conv1's; the update per the optimizer over 62,006 parameters."""
    forward = 6 * 3 * 25 * 28 * 28 + 16 * 6 * 25 * 10 * 10 + 400 * 120 + 120 * 84 + 84 * 10
    assert forward == 651_720
    params = 62_006
    for optimizer, update, other in (("sgd", 1, 0), ("momentum", 2, 0), ("adam", 3, 8)):
        t = archcalc.analyze("lenet5", optimizer=optimizer, batch=4).totals
        assert t.macs == 4 * forward
        assert t.weight_grad_macs == 4 * forward and t.input_grad_macs == 4 * (forward - 352_800)
        assert t.update_macs == update * params and t.update_other_ops == other * params  # whatever the batch
        assert t.training_macs == 4 * forward + 4 * (2 * forward - 352_800) + update * params
        assert t.training_flops == 2 * t.training_macs


def test_depthwise_and_grouped_networks_divide_by_groups():
    """mobilenet_v2's depthwise convs: each gradient costs the forward's MACs, so the backward is
    2 x forward minus the first conv's input gradient."""
    analysis = archcalc.analyze("mobilenet_v2")
    t = analysis.totals
    first = analysis.layers[1]
    assert first.type == "conv" and first.figure("input_grad_macs") == 0
    assert t.backward_macs == 2 * t.macs - first.figure("macs")
    assert t.training_macs == t.macs + t.backward_macs + t.params_trainable


def test_json_csv_and_report_training_carry_the_figures():
    code, out, _ = run_main("report", "lenet5", "--format", "json")
    data = json.loads(out)
    assert data["layers"][1]["name"] == "conv1" and data["layers"][1]["input_grad_macs"] == 0
    assert data["layers"][1]["weight_grad_macs"] == 352_800
    assert data["totals"]["training_macs"] == 1_664_366 and data["totals"]["training_flops"] == 3_328_732
    code, out, _ = run_main("report", "lenet5", "--format", "csv")
    header, _, conv1, *_ = out.splitlines()
    row = dict(zip(header.split(","), conv1.split(",")))
    assert row["input_grad_macs"] == "0" and row["weight_grad_macs"] == "352800"
    for fmt in ("table", "markdown"):
        code, out, _ = run_main("report", "lenet5", "--training", "--format", fmt)
        assert code == 0 and "Kept for backward" in out and "Weight-grad MACs" in out
        assert ("Training step (sgd, one sample): forward 651,720 + backward 950,640 (input gradients 298,920, weight "
                "gradients 651,720; the first layer's input gradient is not computed, as frameworks skip it) + update "
                "62,006 = 1,664,366 MACs = 3.33M FLOPs (2 per MAC).") in " ".join(out.split())
    code, out, _ = run_main("report", "lenet5", "--training", "--format", "markdown")
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                         for line in out[out.index("| Layer | Type | Kept for backward"):].splitlines()
                                         if line.startswith("|"))}
    assert rows["conv1"][-2:] == ["0", "352.8K"] and rows["conv2"][-2:] == ["240K", "240K"]
    assert rows["relu1"][-2:] == ["0", "0"]


def test_readme_training_step_and_torchs_grouped_rule_on_mobilenet_v2():
    """The README's mobilenet_v2 figures: the training-step line as the report prints it, and
    FlopCounterMode's forward + backward, which equals archcalc's count with every grouped weight
    gradient multiplied by its groups (its one-group rule), 6.9x archcalc's."""
    from pathlib import Path

    from archcalc.render.format import si
    from archcalc.render.table import training_step_line

    readme = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    analysis = archcalc.analyze("mobilenet_v2")
    line = training_step_line(analysis)
    assert line[:line.index("(2 per MAC).") + len("(2 per MAC).")] + " ..." in readme
    pytest.importorskip("torch")
    oracle = pytest.importorskip("tests.torch_oracle")
    from archcalc.exporters.torch import to_torch

    graph = archcalc.load("mobilenet_v2")
    torchs_rule = sum(row.figure("macs") + row.figure("input_grad_macs")
                      + row.attrs.get("groups", 1) * row.figure("weight_grad_macs") for row in analysis.layers[1:])
    flops = _torch_training_flops(to_torch(graph).train(), [oracle.torch.rand((1, *graph.input_shape))], False)
    assert flops == 2 * torchs_rule
    ours = 2 * (analysis.totals.macs + analysis.totals.backward_macs)
    assert f"{flops / 1e9:.2f} GFLOPs, {flops / ours:.1f}x archcalc's {si(ours, 2)}" in readme


def test_layers_before_every_learned_parameter_run_no_backward_when_training():
    """With the input needing no gradient, a pool between the input and the first conv gets no output
    gradient and runs no backward: the input gradient stays None, as in frameworks, and every
    parameter still gets its gradient."""
    spec = {"name": "t", "input": [2, 8, 8], "layers": [{"type": "maxpool", "name": "pool", "kernel": 2},
            {"type": "conv", "name": "conv", "filters": 3, "kernel": 3}, {"type": "flatten"}]}
    executor = Executor(spec, dtype="float64")
    executor.needs_input_grad = False
    executor.forward(np.ones((2, 2, 8, 8)))
    grads = executor.backward(np.ones((2, 12)))
    assert executor.input_grad is None and set(grads) == executor.trainable
    assert "pool" not in executor.backward_macs_performed
    executor.needs_input_grad = True
    executor.forward(np.ones((2, 2, 8, 8)))
    executor.backward(np.ones((2, 12)))
    assert executor.input_grad.shape == (2, 2, 8, 8)
    assert executor.check_backward_macs()["conv"] == ((2 * 3 * 2 * 9 * 4,) * 2,) * 2


def test_explain_gives_each_gradients_macs():
    conv1 = dict(archcalc.explain("lenet5", "conv1"))
    assert conv1["input-gradient MACs"].startswith("0: no input depends on a learned parameter")
    assert conv1["weight-gradient MACs"] == "352,800 (the forward's MACs again)"
    fc1 = dict(archcalc.explain("lenet5", "fc1", batch=3))
    assert fc1["input-gradient MACs"] == fc1["weight-gradient MACs"] == "48,000 * 3 = 144,000 (the forward's MACs again)"
    assert "input-gradient MACs" not in dict(archcalc.explain("lenet5", "relu1"))


@pytest.mark.parametrize("name", ["lenet5", "mobilenet_v2", "inception-reduced", "unet"])
def test_the_archcalc_convention_counts_the_reports_backward(name):
    """The conventions core's default preset reads the same rules (backward_cost, input_grad_needed):
    its per-layer backward equals the report's input- plus weight-gradient MACs, and so do the totals;
    folded rows (--depth 1) sum them."""
    from archcalc.conventions import count
    from archcalc.report import fold

    analysis = archcalc.analyze(name, batch=2)
    counted = count(name, "archcalc", batch=2)
    for row in analysis.layers[1:]:
        assert counted.layers[row.name].backward == row.figure("input_grad_macs") + row.figure("weight_grad_macs")
    assert counted.backward == analysis.totals.backward_macs
    folded = fold(analysis.layers, 1)
    assert sum(row.figure("input_grad_macs") for row in folded) == analysis.totals.input_grad_macs
    assert sum(row.figure("weight_grad_macs") for row in folded) == analysis.totals.weight_grad_macs

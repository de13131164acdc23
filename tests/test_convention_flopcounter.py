"""The ``flopcounter`` preset against torch's own ``FlopCounterMode``, forward and forward + backward.

Every zoo model is exported to PyTorch (``archcalc.exporters.torch.to_torch``: its module names
are the layer names) and run under ``FlopCounterMode``: ``model(x)`` for the forward,
``model(x).sum().backward()`` for forward + backward, with ``x`` not requiring a gradient (as a
training step's input: the preset's ``needs_input_grad``) and requiring one. The module is built
on the ``meta`` device: FlopCounterMode counts from the shapes of the aten ops it sees, which are
the same on the CPU (checked on a few models below), and the meta device computes nothing, so the
whole zoo runs forward and backward without the arithmetic. Per module, ``get_flop_counts()`` is
keyed by the model's class name and the module's name (``Resnet18.layer1.0.conv1``).
"""

from __future__ import annotations

import functools

import pytest

import archcalc
from archcalc import conventions
from archcalc.ops import REGISTRY
from archcalc.passes import infer_shapes
from tests.helpers import single_op_graph

torch = pytest.importorskip("torch")
flop_counter = pytest.importorskip("torch.utils.flop_counter")

PRESET = conventions.get("flopcounter")

#: Op types whose examples cannot be exported to PyTorch: an opaque layer stands for an op a
#: partial import could not read (archcalc does not know what it computes).
NOT_EXPORTABLE = {"opaque": "a stand-in for an unknown op: to_torch refuses it"}


def _module(graph, device="meta"):
    from archcalc.exporters.torch import to_torch

    torch.manual_seed(0)
    with torch.device(device):
        return to_torch(graph).eval()


def _run(module, x, backward: bool):
    """FlopCounterMode's total and its per-module totals (keys without the model's class name).
    ``backward``: run the backward too, when there is one (an output needing no gradient has none)."""
    with flop_counter.FlopCounterMode(display=False) as counter:
        y = module(x)
        if backward and y.requires_grad:
            y.sum().backward()
    root = type(module).__name__
    per_module = {key.removeprefix(root).removeprefix("."): sum(ops.values())
                  for key, ops in counter.get_flop_counts().items() if key != "Global"}
    return counter.get_total_flops(), per_module


@functools.cache
def _measured(model: str, device: str = "meta"):
    """(graph, forward run, forward + backward run, the same with x requiring a gradient, the
    names of the layers that are modules, those whose module returns its input tensor itself)."""
    graph = archcalc.load(model)
    module = _module(graph, device)
    x = torch.randn(1, *graph.input_shape, device=device)
    return (graph, _run(module, x, False), _run(module, x, True), _run(module, x.clone().requires_grad_(True), True),
            frozenset(dict(module.named_modules())), _returning_input(module, x))


def _returning_input(module, x) -> frozenset[str]:
    """The modules whose output is their input tensor itself (``nn.Dropout``, ``nn.Identity`` in eval)."""
    names = {sub: name for name, sub in module.named_modules()}
    found = set()
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda sub, inputs, output: found.add(names[sub]) if inputs and output is inputs[0] else None)
    try:
        module(x)
    finally:
        hook.remove()
    return frozenset(found)


def _backward_if_input_needs_grad(graph, batch=1):
    """The preset's backward per layer when the network's input requires a gradient: every layer
    then computes its input gradient (needs_input_grad = 1)."""
    layers = infer_shapes(graph)
    out = {}
    for node in graph.nodes[1:]:
        rule = PRESET.rule(node.type)
        values = conventions.quantities(node.type, layers[node.name], needs_input_grad=True)
        out[node.name] = PRESET.scale * batch * conventions.evaluate(rule.backward, rule._code[1], values, node.type)
    return out


def _tracked(graph, forward, backward, modules, returning_input, input_needs_grad: bool):
    """What FlopCounterMode's ``get_flop_counts()`` gives each module, from the preset's own counts
    per layer and the ModuleTracker's rule (the preset's second quirk): a module is entered in
    backward when its output's gradient is computed and left when its inputs' gradients are all
    complete, i.e. after the backward of the earliest layer (in forward order) reading one of its
    inputs; until then it is charged the backward of every layer run meanwhile (the layers between
    that one and itself). It is never left when its inputs need no gradient (the first conv) or
    when it returns its input tensor itself (the exit hook then fires before the entry hook)."""
    layers = infer_shapes(graph)
    order = [node.name for node in graph.nodes[1:]]
    position = {name: i for i, name in enumerate(order)}
    requires = {graph.nodes[0].name: input_needs_grad}
    readers: dict[str, list[int]] = {}
    for node in graph.nodes[1:]:
        for ref in node.inputs:
            readers.setdefault(ref, []).append(position[node.name])
    out = {}
    for node in graph.nodes[1:]:
        learned = any(p.role.learned for p in REGISTRY[node.type].params(layers[node.name]).values())
        graded = [ref for ref in node.inputs if requires[ref]]
        requires[node.name] = bool(graded) or learned
        value = forward[node.name] + backward[node.name]
        if requires[node.name]:  # entered in backward
            left = 0 if not graded or node.name in returning_input else min(min(readers[ref]) for ref in graded)
            value += sum(backward[order[i]] for i in range(left, position[node.name]))
        if node.name in modules and value:
            out[node.name] = value
    return out


@pytest.mark.parametrize("model", archcalc.zoo.names())
def test_forward_and_backward_totals_and_modules_equal_flopcounter(model):
    graph, (forward, fwd_modules), (both, both_modules), (both_x, both_x_modules), modules, returning = _measured(model)
    counted = conventions.count(graph, PRESET)
    assert counted.forward == forward
    assert counted.forward + counted.backward == both
    fwd = {name: c.forward for name, c in counted.layers.items()}
    bwd = {name: c.backward for name, c in counted.layers.items()}
    # forward, per module: every layer with FLOPs is a module listed under its own name
    assert {name: v for name, v in fwd_modules.items() if name} == {name: v for name, v in fwd.items() if v}
    # forward + backward per module: each layer's own, plus what the tracker charges it (see _tracked)
    assert {name: v for name, v in both_modules.items() if name} == _tracked(graph, fwd, bwd, modules, returning, False)
    # the input requiring a gradient: every layer computes its input gradient
    bwd_x = _backward_if_input_needs_grad(graph)
    assert counted.forward + sum(bwd_x.values()) == both_x
    assert {name: v for name, v in both_x_modules.items() if name} == _tracked(graph, fwd, bwd_x, modules, returning, True)


@pytest.mark.parametrize("model", ["lenet5", "alexnet-grouped", "inception-naive"])
def test_the_meta_device_counts_as_the_cpu(model):
    assert _measured(model, "cpu")[1:] == _measured(model)[1:]


def test_the_grouped_conv_weight_gradient_is_counted_groups_times():
    """mobilenet_v2's second conv is depthwise: 32 groups of one 3x3 channel at 112x112 positions,
    32 * 9 * 112 * 112 = 3,612,672 MACs. FlopCounterMode: forward 2 x that, backward the input
    gradient (2 x) plus the weight gradient as an ungrouped conv (2 x 32 x that)."""
    graph, _, (_, both_modules), *_ = _measured("mobilenet_v2")
    macs = 32 * 9 * 112 * 112
    assert both_modules["features.1.conv.0.0"] == 2 * macs + 2 * macs + 2 * 32 * macs
    assert conventions.count(graph, PRESET).layers["features.1.conv.0.0"].backward == 2 * macs * (1 + 32)
    # the first conv's input gradient is skipped: backward = its weight gradient alone
    first = 32 * 3 * 9 * 112 * 112
    assert both_modules["features.0.0"] == 2 * first + 2 * first


def test_ratio_of_mobilenet_v2_training_to_the_true_cost():
    """The quirk's figure: forward + backward as FlopCounterMode counts it, against 2 x (forward +
    input gradients where needed + weight gradients) MACs, each gradient as many as the forward."""
    graph = archcalc.load("mobilenet_v2")
    tool = conventions.count(graph, PRESET)
    true = conventions.Convention("true", "t", "FLOPs", "t", {}, default=conventions.Rule(
        "macs", backward="needs_input_grad * macs + macs"), scale=2)
    right = conventions.count(graph, true)
    assert (tool.forward + tool.backward, right.forward + right.backward) == (12_279_700_992, 1_782_969_600)
    assert tool.forward == right.forward == 2 * archcalc.analyze(graph).totals.macs


EXAMPLES = [(t, i, ex) for t, op in sorted(REGISTRY.items()) if t not in NOT_EXPORTABLE for i, ex in enumerate(op.examples)]


@pytest.mark.parametrize(("op_type", "index", "example"), EXAMPLES, ids=[f"{t}-{i}" for t, i, _ in EXAMPLES])
def test_every_example_of_every_op_equals_flopcounter(op_type, index, example):
    """One op after the input (merges: after one 1x1 conv or linear per input), a batch of 2, on the
    CPU: forward, forward + backward with the input needing no gradient and needing one."""
    graph = single_op_graph(op_type, example)
    module = _module(graph, "cpu")
    x = torch.randn(2, *graph.input_shape)
    counted = conventions.count(graph, PRESET, batch=2)
    forward, per_module = _run(module, x, False)
    assert counted.forward == forward
    assert {n: v for n, v in per_module.items() if n} == {n: c.forward for n, c in counted.layers.items() if c.forward}
    assert counted.forward + counted.backward == _run(module, x, True)[0]
    with_x = _run(module, x.clone().requires_grad_(True), True)[0]
    assert counted.forward + sum(_backward_if_input_needs_grad(graph, batch=2).values()) == with_x


@pytest.mark.parametrize("op_type", sorted(NOT_EXPORTABLE))
def test_the_ops_left_out_cannot_be_exported(op_type):
    from archcalc.errors import ArchcalcError

    for example in REGISTRY[op_type].examples:
        with pytest.raises(ArchcalcError, match="cannot export to PyTorch"):
            _module(single_op_graph(op_type, example), "cpu")


def _twins():
    try:
        from tests.torchvision_oracle import TWINS
    except ImportError:
        return []
    return sorted(TWINS)


@pytest.mark.parametrize("model", _twins() or [pytest.param("none", marks=pytest.mark.skip(reason="torchvision is not importable"))])
def test_torchvision_twins_equal_flopcounter(model):
    """FlopCounterMode on torchvision's own model (on the meta device), forward and forward + backward."""
    oracle = pytest.importorskip("tests.torchvision_oracle")
    graph = archcalc.load(model)
    with torch.device("meta"):
        module = oracle.TWINS[model]().eval()
    x = torch.randn(1, *graph.input_shape, device="meta")
    counted = conventions.count(graph, PRESET)
    assert _run(module, x, False)[0] == counted.forward
    assert _run(module, x, True)[0] == counted.forward + counted.backward

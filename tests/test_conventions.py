"""The conventions core: rules as data, evaluated per layer; the presets' shared checks."""

from __future__ import annotations

import pytest

import archcalc
from archcalc import conventions
from archcalc.conventions import Convention, Rule
from archcalc.errors import ArchcalcError, RuleError
from archcalc.ops import REGISTRY
from archcalc.passes import infer_shapes, input_grad_needed
from archcalc.spec import from_dict
from tests.helpers import single_op_graph

TINY = {"name": "tiny", "input": [3, 8, 8], "layers": [
    {"name": "pool0", "type": "maxpool", "kernel": 2},
    {"name": "conv1", "type": "conv", "filters": 4, "kernel": 3, "padding": 1},
    {"name": "relu1", "type": "relu"},
    {"name": "flat", "type": "flatten"},
    {"name": "fc", "type": "linear", "units": 5},
]}


@pytest.mark.parametrize("model", archcalc.zoo.names())
def test_archcalc_preset_is_the_analysis_macs(model):
    analysis = archcalc.analyze(model, batch=2)
    counted = conventions.count(model, "archcalc", batch=2)
    assert counted.forward == analysis.totals.macs
    assert counted.per_layer() == {row.name: row.macs for row in analysis.layers[1:]}


def test_a_rule_is_evaluated_per_layer_with_its_values_shown():
    """conv1: 4 filters of 3x3x3 at 4x4 positions (after the 2x2 pool): 4*27*16 = 1,728 MACs, a
    bias on each of its 64 outputs; fc: 5 units x 64 inputs = 320 MACs + 5 bias adds."""
    preset = Convention("t", "a test", "flops", "test", {"conv": Rule("macs + bias_adds"), "linear": Rule("2 * macs")},
                        scale=3)
    counted = conventions.count(from_dict(TINY), preset, batch=2)
    assert counted.layers["conv1"].forward == 3 * (4 * 27 * 16 + 64) * 2
    assert counted.layers["fc"].forward == 3 * 2 * (5 * 64) * 2
    assert counted.layers["relu1"].forward == counted.layers["pool0"].forward == 0
    assert counted.forward == 3 * 2 * (1728 + 64 + 640)
    assert counted.layers["conv1"].explained == "3 x (macs + bias_adds) = 3 x (1,728 + 64) = 5,376"
    assert conventions.explain(from_dict(TINY), "fc", preset) == "t, linear: 3 x (2 * macs) = 3 x (2 * 320) = 1,920 (per sample)"


def test_the_input_gradient_is_needed_only_below_a_learned_parameter():
    graph = from_dict(TINY)
    needed = input_grad_needed(graph, infer_shapes(graph))
    assert needed == {"pool0": False, "conv1": False, "relu1": True, "flat": True, "fc": True}


def test_quantities_are_the_layers_own():
    graph = from_dict(TINY)
    layers = infer_shapes(graph)
    q = conventions.quantities("conv", layers["conv1"])
    assert (q["inputs"], q["outputs"], q["in_channels"], q["out_channels"], q["positions"], q["kernel"]) == \
        (3 * 16, 4 * 16, 3, 4, 16, 9)
    assert (q["params"], q["weights"], q["bias_adds"], q["groups"]) == (4 * 27 + 4, 4 * 27, 64, 1)
    assert conventions.quantities("maxpool", layers["pool0"])["kernel"] == 4


@pytest.mark.parametrize("name", sorted(conventions.presets()))
def test_every_preset_counts_every_example_of_every_op(name):
    """A preset covers every op type (a rule, or its default) with an int per layer."""
    preset = conventions.get(name)
    for op_type, op in REGISTRY.items():
        for number, example in enumerate(op.examples):
            counted = conventions.count(single_op_graph(op_type, example), preset)
            value = counted.layers[op_type].forward if op_type in counted.layers else counted.forward
            assert isinstance(value, int) and value >= 0, (op_type, number, value)


@pytest.mark.parametrize(("expression", "message"), [
    ("macs +", "does not parse"), ("flops", "which is no quantity"), ("__import__('os')", "calls something other"),
    ("macs.real", "uses Attribute"), ("[macs]", "uses List"),
])
def test_a_bad_rule_is_refused_when_the_preset_is_defined(expression, message):
    with pytest.raises(RuleError, match=message):
        Rule(expression)


def test_a_rule_for_an_unknown_op_type_is_refused():
    with pytest.raises(RuleError, match="unknown op types: convv"):
        Convention("t", "t", "flops", "t", {"convv": Rule("macs")})


def test_a_rule_giving_a_fraction_is_a_preset_bug_named():
    preset = Convention("t", "t", "flops", "t", {"conv": Rule("macs / 7")})
    with pytest.raises(RuleError, match="convention 't', op 'conv': rule 'macs / 7' gave 246.857"):
        conventions.count(from_dict(TINY), preset)


def test_an_unknown_convention_names_the_presets():
    with pytest.raises(ArchcalcError, match="unknown convention 'archcalk'; did you mean 'archcalc'.*the presets: archcalc"):
        conventions.get("archcalk")

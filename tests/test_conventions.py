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


# --- the command line ------------------------------------------------------------------------------

@pytest.fixture
def tool_preset(monkeypatch):
    """A preset as a peer tool's: conv and linear without bias, batchnorm 2 per value, a backward."""
    preset = Convention("tool", "a tool 1.0 profile()", "flops", "conv and linear MACs, batchnorm 2 a value",
                        {"conv": Rule("macs - 0", backward="2 * macs"), "linear": Rule("macs"),
                         "batchnorm": Rule("2 * outputs")})
    conventions.get("archcalc")
    monkeypatch.setitem(conventions.PRESETS, "tool", preset)
    return preset


def test_report_json_carries_each_layers_count_and_the_convention(tool_preset):
    """Computed here from the layers: resnet18's convs and fc are its MACs; its 20 batchnorms 2 a value."""
    analysis = archcalc.analyze("resnet18", batch=2, convention="tool")
    rows = analysis.layers[1:]
    bn_values = sum(2 * row.activations for row in rows if row.type == "batchnorm")
    conv_linear = sum(row.macs for row in rows if row.type in ("conv", "linear"))
    backward = 2 * sum(row.macs for row in rows if row.type == "conv")
    doc = analysis.to_dict()
    assert doc["convention"] == {"name": "tool", "tool": "a tool 1.0 profile()", "unit": "flops",
                                 "forward": conv_linear + bn_values, "backward": backward,
                                 "doc": "docs/conventions.md#convention-tool"}
    assert sum(layer["convention_count"] for layer in doc["layers"]) == conv_linear + bn_values
    folded = analysis.to_dict(depth=1)["layers"]
    assert sum(layer["convention_count"] for layer in folded) == conv_linear + bn_values
    assert "convention_count" in analysis.to_csv().splitlines()[0].split(",")


def test_report_table_shows_the_column_and_the_footer_names_the_convention(tool_preset, capsys):
    from tests.helpers import run_main

    code, out, err = run_main("report", "lenet5", "--convention", "tool", "--format", "markdown")
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("| Layer"))
    assert "| MACs | tool flops |" in header
    # lenet5: conv 352,800 + 240,000 and fc 48,000 + 10,080 + 840 MACs, no batchnorm; backward 2 x the convs
    assert ("Convention: tool, as a tool 1.0 profile() counts (conv and linear MACs, batchnorm 2 a value): "
            "651,720 flops; forward + backward 1,837,320 flops, 1.00x archcalc's 651,720 MACs; "
            "its rules: docs/conventions.md#convention-tool.") in out
    code, out, err = run_main("report", "lenet5", "--format", "markdown")
    assert "Convention: archcalc" in out and "| MACs | Activations |" in out


def test_report_explain_writes_each_layers_rule_with_its_values(tool_preset):
    from tests.helpers import run_main

    code, out, err = run_main("report", "lenet5", "--convention", "tool", "--explain", "--format", "markdown")
    assert code == 0, err
    assert "- `conv2` conv: macs - 0 = 240,000 - 0 = 240,000; backward 2 * macs = 2 * 240,000 = 480,000" in out
    assert "- `relu1` relu: 0" in out
    code, out, err = run_main("report", "lenet5", "--explain", "--format", "json")
    assert code == 2 and err.count("\n") == 1 and "--explain goes with --format table or markdown" in err


def test_explain_adds_the_layers_count_under_a_convention(tool_preset):
    from tests.helpers import run_main

    code, out, err = run_main("explain", "lenet5", "fc1", "--convention", "tool", "--batch", "3")
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.strip().startswith("tool flops"))
    assert line.split("tool flops", 1)[1].strip() == "macs = 48,000 (per sample) x batch 3 = 144,000"


def test_conventions_command_lists_the_presets_and_one_presets_rules(tool_preset):
    import json

    from tests.helpers import run_main

    code, out, err = run_main("conventions", "--format", "json")
    assert code == 0, err
    listed = {p["name"]: p for p in json.loads(out)}
    assert set(listed) == set(conventions.PRESETS)
    assert listed["tool"]["rules"]["batchnorm"]["forward"] == "2 * outputs"
    assert listed["tool"]["rules"]["relu"] == {"forward": "0", "backward": None, "note": "(default)"}
    code, out, err = run_main("conventions", "tool", "--format", "markdown")
    assert code == 0 and "| `conv` | `macs - 0` | `2 * macs` |" in out
    code, out, err = run_main("conventions", "tol")
    assert code == 2 and "unknown convention 'tol'; did you mean 'tool'?" in err
    code, out, err = run_main("report", "lenet5", "--convention", "tol")
    assert code == 2 and err.count("\n") == 1 and "unknown convention 'tol'; did you mean 'tool'?" in err

"""The Python DSL's calling forms: branching (inputs=, merges, "input") and keyword-only options.

Every form is checked against the JSON spec it stands for, and the argument rules against every
op of the registry, so a new op is covered without a new test.
"""

from __future__ import annotations

import re

import pytest

import archcalc
from archcalc import Net
from archcalc.errors import SpecError
from archcalc.ops import REGISTRY
from archcalc.ops.attrs import REQUIRED
from archcalc.spec import from_dict

SINGLE_INPUT = sorted(t for t, op in REGISTRY.items() if op.arity[1] == 1)
MERGES = sorted(t for t, op in REGISTRY.items() if op.arity[1] != 1)


def _layers(graph):
    """What two equal specs share: names, types, attributes and inputs (not the locations)."""
    return [(n.name, n.type, dict(n.attrs), n.inputs, n.scope) for n in graph]


def _json_twin():
    """An Inception-style module in JSON: branches reading the input, joined by concat, and a skip."""
    return {"name": "t", "input": [4, 8, 8], "layers": [
        {"type": "conv", "name": "b1", "filters": 2, "kernel": 1, "inputs": "input"},
        {"type": "conv", "name": "b2", "filters": 3, "kernel": 3, "padding": 1, "inputs": ["input"]},
        {"type": "maxpool", "name": "b3", "kernel": 3, "stride": 1, "padding": 1, "inputs": "input"},
        {"type": "concat", "name": "cat", "inputs": ["b1", "b2", "b3"]},
        {"type": "conv", "name": "head.fit", "filters": 9, "kernel": 1, "scope": ["head"]},
        {"type": "conv", "name": "head.proj", "filters": 9, "kernel": 1, "inputs": "input", "scope": ["head"]},
        {"type": "add", "name": "head.sum", "inputs": ["head.fit", "head.proj"], "scope": ["head"]},
        {"type": "dropout", "p": 0.2},
    ]}


@pytest.mark.parametrize("form", ["positional", "unpacked", "list", "keyword", "layer", "layer-keyword"])
def test_every_branching_form_builds_the_json_graph(form):
    expected = from_dict(_json_twin())
    net = Net("t", input=(4, 8, 8))
    b1 = net.conv(2, 1, name="b1", inputs="input")
    b2 = net.conv(3, 3, padding=1, name="b2", inputs=["input"])
    b3 = net.maxpool(3, stride=1, padding=1, name="b3", inputs="input")
    branches = [b1, b2, b3]
    if form == "positional":
        net.concat(b1, b2, b3, name="cat")
    elif form == "unpacked":
        net.concat(*branches, name="cat")
    elif form == "list":
        net.concat(branches, name="cat")
    elif form == "keyword":
        net.concat(inputs=branches, name="cat")
    elif form == "layer":
        net.layer("concat", *branches, name="cat")
    else:
        net.layer("concat", inputs=branches, name="cat")
    with net.block("head"):
        fit = net.conv(9, 1, name="fit")
        proj = net.conv(9, 1, name="proj", inputs="input")  # "input" is the network input inside a block too
        net.add(fit, proj, name="sum")
    net.dropout(p=0.2)
    assert _layers(net.graph()) == _layers(expected)
    assert archcalc.analyze(net) == archcalc.analyze(expected)


def test_layer_reads_the_previous_layer_unless_told():
    net = Net("t", input=(3, 8, 8))
    net.relu()
    net.layer("relu")
    net.layer("relu", "input")
    net.layer("relu", inputs="relu1")
    assert [n.inputs for n in net.graph()][1:] == [("input",), ("relu1",), ("input",), ("relu1",)]


@pytest.mark.parametrize("op_type", MERGES)
def test_every_merge_takes_its_inputs_positionally_as_a_list_or_as_inputs(op_type):
    op = REGISTRY[op_type]
    low, high = op.arity
    count = max(low, 2) if high is None else min(max(low, 2), high)
    example = op.examples[0]
    graphs = []
    for form in range(3):
        net = Net("t", input=example.inputs[0])  # inputs of one shape: identities of the network input
        names = [net.identity(inputs="input") for _ in range(count)]
        method = getattr(net, op_type)
        attrs = dict(example.attrs)
        method(*names, **attrs) if form == 0 else method(names, **attrs) if form == 1 else method(inputs=names, **attrs)
        graphs.append(_layers(net.graph()))
    assert graphs[0] == graphs[1] == graphs[2]
    assert graphs[0][-1][3] == tuple(f"identity{i}" for i in range(1, count + 1))


@pytest.mark.parametrize(("call", "message"), [
    (lambda net: net.add("input", inputs="input"), "add got its inputs both positionally and as inputs=; give them one way"),
    (lambda net: net.layer("relu", "input", inputs="input"),
     "relu got its inputs both positionally and as inputs=; give them one way"),
    (lambda net: net.dropout(0.2), "dropout takes no positional attributes: pass p=0.2 by keyword "
                                   "(optional attributes are keyword-only)"),
    (lambda net: net.conv(4, 3, 2, "same"), "conv takes 2 positional attributes (filters, kernel), got 4: "
                                            "pass stride=2, padding='same' by keyword (optional attributes are keyword-only)"),
    (lambda net: net.linear(3, False, 9), "linear takes 1 positional attribute (units), got 3: pass bias=False by "
                                          "keyword (optional attributes are keyword-only); 9 matches no attribute"),
    (lambda net: net.relu("input"), "relu takes no attributes, got 1 positional argument ('input'); "
                                    "to read layer 'input', pass inputs='input'"),
    (lambda net: net.relu(1, 2), "relu takes no attributes, got 2 positional arguments (1, 2)"),
])
def test_argument_mistakes_are_one_line_saying_what_to_write(call, message):
    net = Net("t", input=(3, 8, 8))
    with pytest.raises(SpecError) as info:
        call(net)
    (problem,) = info.value.problems
    assert re.fullmatch(r"test_dsl\.py:\d+: " + re.escape(message), problem), problem


def test_malformed_inputs_are_reported_as_written():
    for inputs, shown in ((7, "7"), ((3, 8, 8), "[3, 8, 8]"), ([], "[]")):
        net = Net("t", input=(3, 8, 8))
        net.relu(inputs=inputs)
        with pytest.raises(SpecError, match=rf"inputs must be a layer name or a list of them, got {shown.replace('[', '.')}$"):
            net.graph()


@pytest.mark.parametrize("op_type", SINGLE_INPUT)
def test_every_op_takes_required_attributes_positionally_and_optional_ones_by_keyword_only(op_type):
    op = REGISTRY[op_type]
    required = [a.name for a in op.attrs if a.default is REQUIRED]
    optional = [a.name for a in op.attrs if a.default is not REQUIRED]
    for example in op.examples:
        attrs = dict(example.attrs)
        net = Net("t", input=example.inputs[0])
        positional = [attrs.pop(name) for name in required]
        getattr(net, op_type)(*positional, **attrs)
        twin = from_dict({"name": "t", "input": list(example.inputs[0]), "layers": [{"type": op_type, **example.attrs}]})
        assert _layers(net.graph()) == _layers(twin)
    # one positional value too many: refused, naming the optional attribute it was taken for
    net = Net("t", input=(3, 8, 8))
    with pytest.raises(SpecError) as info:
        getattr(net, op_type)(*range(1, len(required) + 2))
    (problem,) = info.value.problems
    if optional:
        assert f"pass {optional[0]}={len(required) + 1} by keyword (optional attributes are keyword-only)" in problem
        assert problem.split(": ", 1)[1].startswith(
            f"{op_type} takes {len(required)} positional attribute" if required else f"{op_type} takes no positional attributes:")
    elif required:
        assert problem.endswith(f": {op_type} takes {len(required)} positional attribute{'s' if len(required) > 1 else ''} "
                                f"({', '.join(required)}), got {len(required) + 1}")
    else:
        assert problem.endswith(f": {op_type} takes no attributes, got 1 positional argument (1)")


def test_python_spec_file_with_branches_loads(tmp_path):
    path = tmp_path / "inception.py"
    path.write_text(
        "from archcalc import Net\n"
        "model = Net('t', input=(4, 8, 8))\n"
        "branches = [model.conv(f, 1, inputs='input') for f in (2, 3)]\n"
        "model.concat(*branches)\n"
        "model.dropout(0.2)\n"
    )
    with pytest.raises(SpecError) as info:
        archcalc.load(path)
    assert info.value.problems == (
        f"spec '{path}': inception.py:5: dropout takes no positional attributes: pass p=0.2 by keyword "
        "(optional attributes are keyword-only)",
    )
    path.write_text(path.read_text().replace("dropout(0.2)", "dropout(p=0.2)"))
    graph = archcalc.load(path)
    assert graph.node("concat1").inputs == ("conv1", "conv2")
    assert graph.node("dropout1").attrs["p"] == 0.2


def test_a_block_name_reads_its_last_layer_as_in_json():
    net = Net("t", input=(3, 8, 8))
    with net.block("stem"):
        net.conv(4, 3, padding=1)
        with net.block("inner"):
            net.relu()
    with net.block("empty"):
        pass
    net.add("stem", "stem.inner", inputs=None)
    net.relu(inputs="stem.conv1")
    net.relu(inputs="empty")  # no layers: not a name of anything
    with pytest.raises(SpecError, match=r"relu2.*: input 'empty' is not an earlier layer"):
        net.graph()
    net.layers.pop()
    graph = net.graph()
    assert graph.node("add1").inputs == ("stem.inner.relu1", "stem.inner.relu1")
    assert graph.node("relu1").inputs == ("stem.conv1",)
    json_twin = from_dict({"name": "t", "input": [3, 8, 8], "blocks": {"b": {"args": {}, "layers": [
        {"type": "conv", "name": "conv1", "filters": 4, "kernel": 3, "padding": 1}, {"type": "relu", "name": "relu1"}]}},
        "layers": [{"block": "b", "name": "stem"}, {"type": "add", "inputs": ["stem", "stem"]}]})
    assert json_twin.node("add1").inputs == ("stem.relu1", "stem.relu1")


def test_a_short_name_inside_a_block_suggests_the_full_name():
    """inputs= takes full names; "c" inside block "b" is a mistake for "b.c", and the message says so."""
    model = Net("t", input=(3, 8, 8))
    with model.block("b"):
        model.conv(4, 3, padding=1, name="c")
        model.relu()
        model.add("c", "b.relu1")
    with pytest.raises(SpecError) as caught:
        model.graph()
    assert "input 'c' is not an earlier layer; did you mean 'b.c'? (a block's layers carry its name as a prefix)" in str(caught.value)


def test_the_convnext_tiny_example_has_torchvisions_published_figures():
    """torchvision's ConvNeXt_Tiny_Weights meta: num_params 28,589,128 and 4.456 GFLOPS (its MACs)."""
    from pathlib import Path

    analysis = archcalc.analyze(archcalc.load(str(Path(__file__).parent.parent / "examples" / "convnext_tiny.py")))
    assert analysis.totals.params == 28_589_128
    assert round(analysis.totals.macs / 1e9, 3) == 4.456
    assert analysis.layers[-1].output_shape == (1000,)

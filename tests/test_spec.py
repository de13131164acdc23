"""Specs: JSON and the Python DSL, blocks, round-trips, and every class of spec error."""

from __future__ import annotations

import json
import textwrap

import pytest

import archcalc
from archcalc import Net, zoo
from archcalc.errors import ShapeError, SpecError
from archcalc.spec import from_dict, from_json


def spec(*layers, **top):
    return {"name": "t", "input": [3, 8, 8], **top, "layers": list(layers)}


def test_auto_names_and_default_inputs():
    graph = from_dict(spec({"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
                           {"type": "conv", "filters": 4, "kernel": 1}))
    assert [n.name for n in graph] == ["input", "conv1", "relu1", "pool1", "conv2"]
    assert [n.inputs for n in graph][1:] == [("input",), ("conv1",), ("relu1",), ("pool1",)]


def test_blocks_expand_with_prefixed_names_repeat_and_first():
    graph = from_dict(spec(
        {"type": "conv", "filters": 4, "kernel": 3, "padding": 1},
        {"block": "res", "name": "stage", "repeat": 3, "args": {"f": 4}, "first": {"args": {"f": 4, "k": 1}}},
        blocks={"res": {"args": {"f": None, "k": 3}, "layers": [
            {"type": "conv", "name": "conv1", "filters": "$f", "kernel": "$k", "padding": "same"},
            {"type": "add", "name": "add", "inputs": ["conv1", "input"]},
        ]}},
    ))
    names = [n.name for n in graph]
    assert names[2:] == ["stage.0.conv1", "stage.0.add", "stage.1.conv1", "stage.1.add", "stage.2.conv1", "stage.2.add"]
    assert graph.node("stage.0.conv1").attrs["kernel"] == 1
    assert graph.node("stage.1.conv1").attrs["kernel"] == 3
    assert graph.node("stage.1.add").inputs == ("stage.1.conv1", "stage.0.add")
    assert graph.node("stage.2.conv1").scope == ("stage", "2")


def test_an_instance_name_refers_to_its_output():
    graph = from_dict(spec(
        {"block": "b", "name": "one", "args": {}},
        {"type": "relu", "inputs": ["input"]},
        {"type": "add", "inputs": ["one", "relu1"]},
        blocks={"b": {"args": {}, "layers": [{"type": "relu", "name": "r"}]}},
    ))
    assert graph.node("add1").inputs == ("one.r", "relu1")


def test_googlenet_names_follow_the_issue():
    graph = archcalc.load("googlenet")
    assert graph.node("inception3a.branch2.conv1").attrs["filters"] == 96


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_round_trips_through_to_json(name):
    graph = archcalc.load(name)
    again = from_json(graph.to_json())
    assert again == graph
    assert archcalc.analyze(again) == archcalc.analyze(graph)


def test_dsl_builds_the_same_graph_as_json():
    net = Net("lenet5", input=(3, 32, 32))
    for stage, filters in enumerate((6, 16), 1):
        net.conv(filters, 5, name=f"conv{stage}")
        net.relu()
        net.maxpool(2, name=f"pool{stage}")
    net.flatten()
    for units, name in ((120, "fc1"), (84, "fc2")):
        net.linear(units, name=name)
        net.relu()
    net.linear(10, name="fc3")
    built = net.graph()
    zoo_graph = archcalc.load("lenet5")
    assert archcalc.analyze(built).totals == archcalc.analyze(zoo_graph).totals
    assert [(n.name, n.type, dict(n.attrs), n.inputs) for n in built] == [(n.name, n.type, dict(n.attrs), n.inputs) for n in zoo_graph]
    assert from_json(built.to_json()) == built


def test_dsl_blocks_merges_and_py_spec_files(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(textwrap.dedent("""
        from archcalc import Net

        model = Net("tiny", input=(3, 16, 16))
        stem = model.conv(8, 3, padding=1)
        for i in range(2):
            with model.block(f"res{i}"):
                a = model.conv(8, 3, padding=1)
                model.batchnorm()
                model.add(model.relu(), stem if i == 0 else "res0.add1")
    """))
    graph = archcalc.load(path)
    assert graph.node("res1.add1").inputs == ("res1.relu1", "res0.add1")
    assert graph.node("res0.conv1").scope == ("res0",)
    assert from_json(graph.to_json()) == graph


def test_dsl_errors_name_the_python_line(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("from archcalc import Net\nmodel = Net('bad', input=(3, 8, 8))\nmodel.conv(0, 3)\n")
    with pytest.raises(SpecError) as info:
        archcalc.load(path)
    assert str(info.value) == f"spec '{path}': bad.py:3 (name=\"conv1\", type=\"conv\"): filters must be a positive int, got 0"
    with pytest.raises(AttributeError, match="did you mean 'conv'"):
        Net("x", (3, 8, 8)).convv(3)


# (spec fragment, the exact message): every class of spec error
SPEC_ERRORS = [
    (spec({"type": "conv", "filters": 4, "kernel": 3, "strides": 2}),
     'layers[0] (name="conv1", type="conv"): unknown attribute \'strides\'; did you mean \'stride\'?'),
    (spec({"type": "conv", "filters": 4, "kernel": 3, "stride": 0}),
     'layers[0] (name="conv1", type="conv"): stride must be a positive int or a list of 1 to 3 of them, got 0'),
    (spec({"type": "conv", "kernel": 3}),
     'layers[0] (name="conv1", type="conv"): filters is required (number of filters f (output channels))'),
    (spec({"type": "conv", "filters": "8", "kernel": 3}),
     'layers[0] (name="conv1", type="conv"): filters must be a positive int, got \'8\''),
    (spec({"type": "conv", "filters": 4, "kernel": 3, "padding": "full"}),
     'layers[0] (name="conv1", type="conv"): padding must be an int >= 0, a list per axis ([ph, pw]), per side '
     '([top, left, bottom, right]), [before, after] pairs per axis, "same" or "valid", got \'full\''),
    (spec({"type": "conv", "filters": 4, "kernel": 3, "bias": 1}),
     'layers[0] (name="conv1", type="conv"): bias must be true or false, got 1'),
    (spec({"type": "convolution", "filters": 4}), "layers[0]: unknown type 'convolution'; did you mean 'conv'?"),
    (spec({"filters": 4}), "layers[0]: no type; one of add, avgpool, batchnorm, concat, conv, dropout, flatten, gelu, "
     "global_avgpool, identity, leaky_relu, linear, lrn, maxpool, relu, sigmoid, softmax, tanh"),
    (spec({"type": "relu", "inputs": ["conv9"]}), 'layers[0] (name="relu1", type="relu"): input \'conv9\' is not an earlier layer'),
    (spec({"type": "relu", "inputs": ["later"]}, {"type": "relu", "name": "later"}),
     'layers[0] (name="relu1", type="relu"): input \'later\' is not an earlier layer (a later layer or this one: '
     "layers may read only earlier layers)"),
    (spec({"type": "relu", "name": "me", "inputs": ["me"]}),
     'layers[0] (name="me", type="relu"): input \'me\' is not an earlier layer (a later layer or this one: '
     "layers may read only earlier layers)"),
    (spec({"type": "relu", "name": "a"}, {"type": "relu", "name": "a"}), 'layers[1] (name="a", type="relu"): name is used twice'),
    (spec({"type": "add"}), 'layers[0] (name="add1", type="add"): takes at least 2 input(s), got 1'),
    (spec({"block": "nope"}), 'layers[0]: unknown block \'nope\'; define it under "blocks"'),
    (spec({"block": "b", "args": {"f": 1, "g": 1}}, blocks={"b": {"args": {"f": None}, "layers": [{"type": "relu"}]}}),
     "layers[0]: block 'b' has no argument 'g'"),
    (spec({"block": "b"}, blocks={"b": {"args": {"f": None}, "layers": [{"type": "relu"}]}}),
     "layers[0]: block 'b' needs argument 'f'"),
    (spec({"block": "b", "name": "i1", "args": {"f": 0}},
          blocks={"b": {"args": {"f": None}, "layers": [{"type": "conv", "filters": "$f", "kernel": 1}]}}),
     'layers[0] (instance "i1" of block "b") > blocks.b.layers[0] (name="i1.conv1", type="conv"): filters must be a positive int, got 0'),
    (spec({"block": "b", "name": "i1", "args": {"f": 2}},
          blocks={"b": {"args": {"f": None}, "layers": [{"type": "conv", "filters": "$g", "kernel": 1}]}}),
     'layers[0] (instance "i1" of block "b") > blocks.b.layers[0]: \'$g\' names no argument of the block'),
    (spec({"block": "b", "repeat": 0}, blocks={"b": {"args": {}, "layers": [{"type": "relu"}]}}),
     "layers[0]: repeat must be a positive int, got 0"),
    ({"name": "t", "input": [3, 0, 8], "layers": [{"type": "relu"}]},
     "input must be a channels-first shape of positive ints, (C,), (C, L), (C, H, W) or (C, D, H, W), got [3, 0, 8]"),
    ({"name": "t", "input": [3, 8, 8], "layer": []}, "unknown key 'layer'; did you mean 'layers'?",
     "layers: must be a non-empty list of layers, got nothing"),
    ({"name": "t", "input": [3, 8, 8], "layers": []}, "layers: must be a non-empty list of layers, got []"),
    ({"input": [3, 8, 8], "layers": [{"type": "relu"}]}, "name must be a non-empty string, got nothing"),
    (spec("relu"), "layers[0]: a layer must be an object, got 'relu'"),
]


@pytest.mark.parametrize("case", SPEC_ERRORS, ids=[case[1][:40] for case in SPEC_ERRORS])
def test_spec_errors_exact_messages(case):
    fragment, *messages = case
    with pytest.raises(SpecError) as info:
        from_dict(fragment, "net.json")
    assert info.value.problems == tuple(f"spec 'net.json': {message}" for message in messages)


def test_all_attribute_problems_are_collected():
    with pytest.raises(SpecError) as info:
        from_dict(spec({"type": "conv", "filters": 0, "kernel": 3}, {"type": "maxpool", "kernel": -1}), "net.json")
    assert len(info.value.problems) == 2


SHAPE_ERRORS = [
    (spec({"type": "conv", "filters": 4, "kernel": 9}),
     'layers[0] (name="conv1", type="conv"): output height = floor((8 + 0 + 0 - 1*(9-1) - 1) / 1) + 1 = 0 < 1: '
     "kernel 9 exceeds the padded input 8 + 0 + 0 = 8"),
    (spec({"type": "conv", "filters": 4, "kernel": [3, 9], "dilation": 1}),
     'layers[0] (name="conv1", type="conv"): output width = floor((8 + 0 + 0 - 1*(9-1) - 1) / 1) + 1 = 0 < 1: '
     "kernel 9 exceeds the padded input 8 + 0 + 0 = 8"),
    (spec({"type": "conv", "filters": 4, "kernel": 3, "groups": 2}),
     'layers[0] (name="conv1", type="conv"): input channels 3 do not divide by groups=2'),
    (spec({"type": "conv", "filters": 5, "kernel": 3, "groups": 3}),
     'layers[0] (name="conv1", type="conv"): filters 5 do not divide by groups=3'),
    (spec({"type": "linear", "units": 3}),
     'layers[0] (name="fc1", type="linear"): expects input (C,), got (3, 8, 8); add a flatten before it'),
    (spec({"type": "conv", "filters": 4, "kernel": [3, 3, 3]}),
     'layers[0] (name="conv1", type="conv"): conv with a 3D kernel expects input (C, D, H, W), got (3, 8, 8)'),
    (spec({"type": "conv", "filters": 4, "kernel": 3, "padding": [1, 2, 3]}),
     'layers[0] (name="conv1", type="conv"): padding has 3 values; 2 spatial axes take 2 (per axis) or 4 (per side)'),
    (spec({"type": "conv", "filters": 4, "kernel": 3, "stride": [1, 1, 1]}),
     'layers[0] (name="conv1", type="conv"): stride has 3 values for 2 spatial axes, got [1, 1, 1]'),
    (spec({"type": "maxpool", "kernel": 3, "padding": 2}),
     'layers[0] (name="pool1", type="maxpool"): padding 2 exceeds half the kernel (3 // 2 = 1); '
     "a window could lie wholly in the padding"),
    (spec({"type": "conv", "filters": 4, "kernel": 3}, {"type": "add", "inputs": ["conv1", "input"]}),
     'layers[1] (name="add1", type="add"): inputs must have one shape, got (4, 6, 6) and (3, 8, 8)'),
    (spec({"type": "conv", "filters": 4, "kernel": 3}, {"type": "concat", "inputs": ["conv1", "input"]}),
     'layers[1] (name="concat1", type="concat"): inputs must match on every axis but channels, got (4, 6, 6) and (3, 8, 8)'),
]


@pytest.mark.parametrize(("fragment", "message"), SHAPE_ERRORS, ids=[m[:50] for _, m in SHAPE_ERRORS])
def test_shape_errors_exact_messages(fragment, message):
    with pytest.raises(ShapeError) as info:
        archcalc.analyze(from_dict(fragment, "net.json"))
    assert str(info.value) == f"spec 'net.json': {message}"


def test_padding_forms_resolve_per_conventions():
    from archcalc.passes import infer_shapes

    def padding_of(value, shape=(3, 8, 8), kernel=3, stride=1):
        graph = from_dict({"name": "t", "input": list(shape),
                           "layers": [{"type": "conv", "filters": 1, "kernel": kernel, "stride": stride, "padding": value}]})
        return infer_shapes(graph)["conv1"].attrs["padding"]

    assert padding_of(1) == ((1, 1), (1, 1))
    assert padding_of([1, 2]) == ((1, 1), (2, 2))
    assert padding_of([1, 2, 3, 4]) == ((1, 3), (2, 4))  # top, left, bottom, right
    assert padding_of([[0, 1], [2, 0]]) == ((0, 1), (2, 0))
    assert padding_of("valid") == ((0, 0), (0, 0))
    # TensorFlow's "same": total = max((ceil(in/s) - 1)*s + k - in, 0), the odd pixel after
    assert padding_of("same", (3, 8, 8), kernel=4) == ((1, 2), (1, 2))
    assert padding_of("same", (3, 9, 9), kernel=3, stride=2) == ((1, 1), (1, 1))
    assert padding_of("same", (3, 8, 8), kernel=3, stride=2) == ((0, 1), (0, 1))
    assert padding_of([1, 2], (3, 16), kernel=3) == ((1, 2),)  # 1D: two values are a side each


def test_json_syntax_errors_name_line_and_column():
    with pytest.raises(SpecError, match=r"^spec 'x.json': not valid JSON: .* at line 2, column 1$"):
        from_json('{"name": "t",\n}', "x.json")


def test_load_rejects_unknown_models_with_a_suggestion(tmp_path):
    with pytest.raises(SpecError, match=r"no zoo model or spec file 'resnet51'; did you mean 'resnet50'\?"):
        archcalc.load("resnet51")
    with pytest.raises(SpecError, match="does not exist"):
        archcalc.load(tmp_path / "missing.json")
    path = tmp_path / "net.json"
    path.write_text(json.dumps(spec({"type": "relu"})))
    assert archcalc.load(path).source == str(path)

"""Specs: JSON and the Python DSL, blocks, round-trips, and every class of spec error."""

from __future__ import annotations

import json
import textwrap

import pytest

import archcalc
from archcalc import Net, zoo
from archcalc.errors import ShapeError, SpecError
from archcalc.ops import REGISTRY
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
    (spec({"filters": 4}), "layers[0]: no type; one of " + ", ".join(sorted(REGISTRY))),
    (spec({"type": "relu", "inputs": ["conv9"]}), 'layers[0] (name="relu1", type="relu"): input \'conv9\' is not an earlier layer'),
    (spec({"type": "relu", "inputs": ["later"]}, {"type": "relu", "name": "later"}),
     'layers[0] (name="relu1", type="relu"): input \'later\' is not an earlier layer (a later layer or this one: '
     "layers may read only earlier layers)"),
    (spec({"type": "relu", "name": "me", "inputs": ["me"]}),
     'layers[0] (name="me", type="relu"): input \'me\' is not an earlier layer (a later layer or this one: '
     "layers may read only earlier layers)"),
    (spec({"type": "relu", "name": "a"}, {"type": "relu", "name": "a"}), 'layers[1] (name="a", type="relu"): name is used twice'),
    (spec({"type": "add"}), 'layers[0] (name="add1", type="add"): takes at least 2 input(s), got 1'),
    (spec({"type": "crop", "size": 2, "inputs": ["input"] * 3}), 'layers[0] (name="crop1", type="crop"): takes 1 to 2 input(s), got 3'),
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
     'layers[1] (name="add1", type="add"): inputs must broadcast (on every axis equal sizes, or 1), '
     "got (4, 6, 6) and (3, 8, 8): channels 4 and 3 differ and neither is 1"),
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


# --- issue 9: every bad input refused cleanly ---------------------------------------------

def one_problem(fragment, source="net.json", **options):
    """The problems of a spec that must fail, without the ``spec '...': `` prefix."""
    with pytest.raises(SpecError) as info:
        (from_json if isinstance(fragment, (str, bytes)) else from_dict)(fragment, source, **options)
    prefix = f"spec '{source}': "
    assert all(p.startswith(prefix) for p in info.value.problems)
    return [p[len(prefix):] for p in info.value.problems]


BOUND_ERRORS = [
    # every integer attribute is bounded by 2**31 - 1, with the bound named when it is broken
    ({"type": "conv", "filters": 2**31, "kernel": 1},
     'layers[0] (name="conv1", type="conv"): filters must be a positive int <= 2147483647 (2**31 - 1), got 2147483648'),
    ({"type": "conv", "filters": 1, "kernel": 1, "stride": 2**63 - 1},
     'layers[0] (name="conv1", type="conv"): stride must be a positive int <= 2147483647 (2**31 - 1) or a list of 1 to 3 '
     "of them, got 9223372036854775807"),
    ({"type": "conv", "filters": 1, "kernel": [1, 2**62]},
     'layers[0] (name="conv1", type="conv"): kernel must be a positive int <= 2147483647 (2**31 - 1) or a list of 1 to 3 '
     "of them, got [1, 4611686018427387904]"),
    ({"type": "conv", "filters": 1, "kernel": 1, "dilation": 2**40},
     'layers[0] (name="conv1", type="conv"): dilation must be a positive int <= 2147483647 (2**31 - 1) or a list of 1 to 3 '
     "of them, got 1099511627776"),
    ({"type": "conv", "filters": 1, "kernel": 1, "groups": 2**31},
     'layers[0] (name="conv1", type="conv"): groups must be a positive int <= 2147483647 (2**31 - 1), got 2147483648'),
    ({"type": "conv", "filters": 1, "kernel": 1, "padding": 2**62},
     'layers[0] (name="conv1", type="conv"): padding must be an int from 0 to 2147483647 (2**31 - 1), a list per axis '
     '([ph, pw]), per side ([top, left, bottom, right]), [before, after] pairs per axis, "same" or "valid", '
     "got 4611686018427387904"),
    ({"type": "conv", "filters": 1, "kernel": 1, "padding": [[0, 2**31]]},
     'layers[0] (name="conv1", type="conv"): padding must be an int from 0 to 2147483647 (2**31 - 1), a list per axis '
     '([ph, pw]), per side ([top, left, bottom, right]), [before, after] pairs per axis, "same" or "valid", '
     "got [[0, 2147483648]]"),
    ({"type": "maxpool", "kernel": 2, "stride": 2**31},
     'layers[0] (name="pool1", type="maxpool"): stride must be a positive int <= 2147483647 (2**31 - 1) or a list of 1 to 3 '
     "of them, got 2147483648"),
    ({"type": "lrn", "size": 2**31}, 'layers[0] (name="lrn1", type="lrn"): size must be a positive int <= 2147483647 '
     "(2**31 - 1), got 2147483648"),
    ({"type": "linear", "units": 10**5000},
     'layers[0] (name="fc1", type="linear"): units must be a positive int <= 2147483647 (2**31 - 1), got an int of about '
     "5000 digits"),
    # non-finite numbers, in dicts as in JSON text
    ({"type": "lrn", "alpha": float("inf")}, 'layers[0] (name="lrn1", type="lrn"): alpha must be a finite number >= 0, got Infinity'),
    ({"type": "leaky_relu", "negative_slope": float("nan")},
     'layers[0] (name="leaky_relu1", type="leaky_relu"): negative_slope must be a finite number >= 0, got NaN'),
    ({"type": "batchnorm", "eps": 10**400},
     'layers[0] (name="batchnorm1", type="batchnorm"): eps must be a finite number > 0, got an int of about 400 digits'),
    ({"type": "dropout", "p": float("-inf")},
     'layers[0] (name="dropout1", type="dropout"): p must be a finite number >= 0 and <= 1, got -Infinity'),
]


@pytest.mark.parametrize(("layer", "message"), BOUND_ERRORS, ids=[m[:60] for _, m in BOUND_ERRORS])
def test_every_int_is_bounded_and_every_number_finite(layer, message):
    flat = layer["type"] == "linear"
    assert one_problem({"name": "t", "input": [3] if flat else [3, 8, 8], "layers": [layer]}) == [message]


def test_input_dims_are_bounded_and_the_bound_is_usable():
    assert one_problem({"name": "t", "input": [1, 2**53 + 2], "layers": [{"type": "relu"}]}) == [
        "input must be a channels-first shape of positive ints, (C,), (C, L), (C, H, W) or (C, D, H, W), "
        "each at most 2147483647 (2**31 - 1), got [1, 9007199254740994]"
    ]
    biggest = 2**31 - 1
    graph = from_dict({"name": "t", "input": [1, biggest],
                       "layers": [{"type": "conv", "filters": biggest, "kernel": 1, "padding": biggest}]})
    row = archcalc.analyze(graph).layer("conv1")
    assert row.output_shape == (biggest, 3 * biggest)  # exact: (in + 2p - k)/s + 1
    assert row.macs == biggest * 3 * biggest


@pytest.mark.parametrize(("text", "message"), [
    ('{"name": "t", "input": [3, 8, 8], "layers": [{"type": "lrn", "alpha": Infinity}]}',
     "layers[0].alpha: Infinity is not a number JSON allows; give a finite number"),
    ('{"name": "t", "input": [3, 8, 8], "layers": [{"type": "leaky_relu", "negative_slope": NaN}]}',
     "layers[0].negative_slope: NaN is not a number JSON allows; give a finite number"),
    ('{"name": "t", "input": [3, 8, 8], "layers": [{"type": "lrn", "beta": -Infinity}]}',
     "layers[0].beta: -Infinity is not a number JSON allows; give a finite number"),
    ('{"name": "t", "input": [3, 8, 8], "layers": [{"type": "lrn", "k": 1e400}]}',
     "layers[0].k: 1e400 is too large for a number (the largest is about 1.8e308)"),
    ('{"name": "t", "input": [3, ' + "9" * 5000 + '], "layers": [{"type": "relu"}]}',
     "input[1]: an int of 5000 digits is too large (the largest is 2147483647)"),
    ('{"name": "t", "input": [3, 8, 8], "layers": [{"type": "conv", "filters": 1, "kernel": 3, "kernel": 5}]}',
     "layers[0]: key 'kernel' appears twice in one object (JSON keeps only the last)"),
    ('{"name": "t", "name": "u", "input": [3, 8, 8], "layers": [{"type": "relu"}]}',
     "top level: key 'name' appears twice in one object (JSON keeps only the last)"),
    ('{"name": "t", "input": [3, 8, 8], "blocks": {"b": {"layers": [{"type": "relu"}]}, "b": {"layers": []}}, '
     '"layers": [{"block": "b"}]}', "blocks: key 'b' appears twice in one object (JSON keeps only the last)"),
    ("[" * 100_000 + "]" * 100_000, "lists and objects nest too deeply to parse (a spec nests at most 32 deep)"),
    ('{"name": "t", "input": [3, 8, 8], "layers": [{"type": "conv", "filters": 1, "kernel": ' + "[" * 40 + "]" * 40 + "}]}",
     "layers[0].kernel" + "[0]" * 30 + ": nested deeper than 32 levels of lists and objects"),
    (b'{"name": "t\xff", "input": [3], "layers": [{"type": "relu"}]}',
     "not UTF-8 text: byte 0xff at offset 11 cannot be decoded; save the file as UTF-8"),
    ("[1, 2]", "a spec must be a JSON object, got [1, 2]"),
])
def test_json_text_problems_are_located(text, message):
    assert one_problem(text) == [message]


def test_dict_specs_refuse_deep_nesting_cycles_and_non_string_keys():
    deep: list = []
    deep.append(deep)  # a list containing itself: nested without end
    assert one_problem({"name": "t", "input": [3, 8, 8], "layers": [{"type": "conv", "filters": 1, "kernel": deep}]}) == [
        "layers[0].kernel" + "[0]" * 30 + ": nested deeper than 32 levels of lists and objects"
    ]
    assert one_problem({"name": "t", "input": [3, 8, 8], "layers": [{"type": "relu", 5: 1}]}) == [
        "layers[0]: keys must be strings, got 5"
    ]


@pytest.mark.parametrize(("blocks", "instance", "message"), [
    ({"b": {"args": None, "layers": [{"type": "relu"}]}}, {"block": "b"},
     "blocks.b.args: must be an object of argument defaults (null: required), got null"),
    ({"b": {"args": [8], "layers": [{"type": "relu"}]}}, {"block": "b"},
     "blocks.b.args: must be an object of argument defaults (null: required), got [8]"),
    ({"b": {"args": {}, "layers": [{"type": "relu"}]}}, {"block": "b", "args": None},
     "layers[0]: args must be an object of argument values, got null"),
    ({"b": {"args": {}, "layers": [{"type": "relu"}]}}, {"block": "b", "args": [8]},
     "layers[0]: args must be an object of argument values, got [8]"),
    ({"b": {"args": {}, "layers": [{"type": "relu"}]}}, {"block": "b", "repeat": 2, "first": {"args": None}},
     "layers[0]: first.args must be an object of argument values, got null"),
    ({"b": {"args": {}, "layers": [{"type": "relu"}]}}, {"block": "b", "repeat": 2, "first": {"args": [8]}},
     "layers[0]: first.args must be an object of argument values, got [8]"),
    ({"b": {"args": {}, "layers": [{"type": "relu"}]}}, {"block": "b", "first": [8]},
     'layers[0]: first must be an object with "block" and/or "args", got [8]'),
    ({"b": {"args": {}, "layers": [{"type": "relu"}]}}, {"block": "b", "first": {"block": "c"}},
     "layers[0]: first.block: unknown block 'c'"),
    ({"b": {"args": {}, "layers": [{"type": "relu"}]}}, {"block": "b", "first": {"blok": "b"}},
     "layers[0]: first has unknown key 'blok'; did you mean 'block'?"),
    ({"b": [1]}, {"block": "b"}, "blocks.b: must be an object with args and layers, got [1]"),
    ({"b b": {"layers": [{"type": "relu"}]}}, {"block": "b b"},
     "blocks: a block name must be printable characters without spaces, got 'b b' (U+0020 at position 1 is a space)"),
    ({"b": {"args": {}, "layers": [{"type": "relu"}]}}, {"block": ["b"]}, "layers[0]: unknown block ['b']; define it under \"blocks\""),
    ({"b": {"args": {}, "layers": [{"type": "relu"}]}}, {"block": "b", "repeat": 2**31},
     "layers[0]: repeat must be a positive int, got 2147483648"),
    ({"b": {"args": {}, "layers": [{"type": "relu"}]}}, {"block": "b", "repeat": float("inf")},
     "layers[0]: repeat must be a positive int, got Infinity"),
])
def test_malformed_blocks_are_one_clean_problem(blocks, instance, message):
    assert one_problem(spec(instance, blocks=blocks)) == [message]


def _chain(levels, repeat):
    """Blocks b1..b<levels>, each repeating the one below ``repeat`` times; b0 is one ReLU."""
    blocks = {"b0": {"args": {}, "layers": [{"type": "relu"}]}}
    for level in range(1, levels + 1):
        blocks[f"b{level}"] = {"args": {}, "layers": [{"block": f"b{level - 1}", "repeat": repeat}]}
    return {"name": "t", "input": [3, 4], "blocks": blocks, "layers": [{"block": f"b{levels}"}]}


def test_expansion_is_counted_before_it_happens():
    nested = _chain(9, 10)
    assert len(json.dumps(nested)) < 700
    assert one_problem(nested) == [
        'layers[0] (block "b9", repeat 1): expands to 1,000,000,000 layers, above the limit of 1,000,000; '
        "raise it with load(..., max_layers=N) or `archcalc --max-layers N`"
    ]
    huge = spec({"type": "relu"}, {"block": "r", "repeat": 1_000_000_000}, blocks={"r": {"args": {}, "layers": [{"type": "relu"}]}})
    assert one_problem(huge) == [
        'layers[1] (block "r", repeat 1000000000): expands to 1,000,000,000 layers (the whole spec: 1,000,000,001), '
        "above the limit of 1,000,000; raise it with load(..., max_layers=N) or `archcalc --max-layers N`"
    ]
    # first counts on its own; the bound is an argument
    first = spec({"block": "r", "repeat": 3, "first": {"block": "two"}},
                 blocks={"r": {"args": {}, "layers": [{"type": "relu"}]},
                         "two": {"args": {}, "layers": [{"type": "relu"}, {"type": "relu"}]}})
    assert len(from_dict(first, max_layers=4)) == 1 + 4
    assert one_problem(first, max_layers=3)[0].startswith('layers[0] (block "r", repeat 3): expands to 4 layers')
    assert len(archcalc.load(_chain(3, 10), max_layers=1000)) == 1001


def test_block_recursion_is_one_message_naming_the_cycle():
    looped = spec({"block": "a"}, blocks={"a": {"args": {}, "layers": [{"type": "relu"}, {"block": "b"}]},
                                          "b": {"args": {}, "layers": [{"block": "a"}]}})
    assert one_problem(looped) == ["blocks.a: block 'a' instantiates itself (a -> b -> a); blocks cannot recurse"]
    itself = spec({"block": "a"}, blocks={"a": {"args": {}, "layers": [{"block": "a", "repeat": 2}]}})
    assert one_problem(itself) == ["blocks.a: block 'a' instantiates itself (a -> a); blocks cannot recurse"]
    through_an_argument = spec({"block": "a", "args": {"inner": "a"}},
                               blocks={"a": {"args": {"inner": None}, "layers": [{"block": "$inner", "args": {"inner": "a"}}]}})
    assert one_problem(through_an_argument) == ["blocks.a: block 'a' instantiates itself (a -> a); blocks cannot recurse"]


def test_problems_are_capped_with_a_count_of_the_rest(tmp_path):
    many = spec(*({"type": "conv", "filters": 0, "kernel": 1} for _ in range(120)))
    with pytest.raises(SpecError) as info:
        from_dict(many, "net.json")
    assert len(info.value.problems) == 50 and info.value.omitted == 70
    assert str(info.value).splitlines()[-1] == "... and 70 more problem(s) (the first 50 are shown)"
    repeated = spec({"block": "bad", "repeat": 10_000}, blocks={"bad": {"args": {}, "layers": [{"type": "relu", "inputs": "nope"}]}})
    with pytest.raises(SpecError) as info:
        from_dict(repeated, "net.json")
    assert info.value.omitted == 9950
    # the CLI lists 20 and counts every other one, listed by the loader or not
    path = tmp_path / "many.json"
    path.write_text(json.dumps(many))
    code, _, err = _cli("report", str(path))
    assert code == 2 and err.splitlines()[20] == "error: ... and 100 more problems" and len(err.splitlines()) == 21


def test_a_million_layer_chain_passes_the_bound():
    from archcalc.spec import MAX_LAYERS, _expansion_problem

    blocks = {"r": {"args": {}, "layers": [{"type": "relu"}]}}
    assert MAX_LAYERS == 1_000_000
    assert _expansion_problem([{"block": "r", "repeat": 1_000_000}], blocks, MAX_LAYERS) is None
    assert _expansion_problem([{"block": "r", "repeat": 1_000_001}], blocks, MAX_LAYERS) is not None
    # loading at the bound expands every layer (a smaller bound keeps the test quick)
    chain = {"name": "t", "input": [2], "blocks": blocks, "layers": [{"block": "r", "repeat": 20_000}]}
    assert len(from_dict(chain, max_layers=20_000)) == 20_001


@pytest.mark.parametrize(("name", "message"), [
    ("a\x1b[31m", "name must be printable characters without spaces, got 'a\\x1b[31m' (U+001B at position 1 is a control character)"),
    ("a\nb", "name must be printable characters without spaces, got 'a\\nb' (U+000A at position 1 is a control character)"),
    ("a\u2028b", "name must be printable characters without spaces, got 'a\\u2028b' (U+2028 at position 1 is white space)"),
    ("\ud800", "name must be printable characters without spaces, got '\\ud800' (U+D800 at position 0 is a lone surrogate)"),
    ("ab\u202e", "name must be printable characters without spaces, got 'ab\\u202e' (U+202E at position 2 is a format character)"),
    ("a b", "name must be printable characters without spaces, got 'a b' (U+0020 at position 1 is a space)"),
    ("n" * 129, "name must be at most 128 characters (per dot-separated part; 4096 in all), got 129: '" + "n" * 57 + "...'"),
    ("a." * 2100, "name must be at most 128 characters (per dot-separated part; 4096 in all), got 4200: '" + "a." * 28 + "a...'"),
    (5, "name must be a non-empty string, got 5"),
    ("", "name must be a non-empty string, got ''"),
    ("input", 'name "input" is the graph\'s input node (layers read it as "inputs": ["input"]); choose another'),
])
def test_names_are_checked_at_load(name, message):
    assert one_problem(spec({"type": "relu", "name": name})) == [f"layers[0]: {message}"]
    assert one_problem(spec({"block": "b", "name": name}, blocks={"b": {"args": {}, "layers": [{"type": "relu"}]}})) == [
        f"layers[0]: {message}"
    ]
    inside = spec({"block": "b", "name": "i"}, blocks={"b": {"args": {}, "layers": [{"type": "relu", "name": name}]}})
    assert one_problem(inside) == [f'layers[0] (instance "i" of block "b") > blocks.b.layers[0]: {message}']


def test_model_names_and_descriptions_are_checked():
    assert one_problem({"name": "m\x1b]0;x\x07", "input": [3], "layers": [{"type": "relu"}]}) == [
        "name must be printable characters, got 'm\\x1b]0;x\\x07' (U+001B at position 1 is a control character)"
    ]
    assert from_dict({"name": "my net", "input": [3], "layers": [{"type": "relu"}]}).name == "my net"
    assert one_problem({"name": "t", "description": "a\x1b[2Jb", "input": [3], "layers": [{"type": "relu"}]}) == [
        "description must be printable characters, got 'a\\x1b[2Jb' (U+001B at position 1 is a control character)"
    ]
    assert one_problem({"name": "t", "description": 5, "input": [3], "layers": [{"type": "relu"}]}) == [
        "description must be a string, got 5"
    ]
    assert one_problem(spec({"block": "b"}, blocks={"b": {"description": "x\ty", "layers": [{"type": "relu"}]}})) == [
        "blocks.b.description must be printable characters, got 'x\\ty' (U+0009 at position 1 is a control character)"
    ]
    assert one_problem(spec({"type": "relu", "scope": ["ok", "bad name"]})) == [
        'layers[0] (name="relu1", type="relu"): scope must be a list of names (the blocks it came from), got [\'ok\', \'bad name\']'
    ]


@pytest.mark.parametrize("shape", [(32, 32, 3), (224, 224, 3), (28, 28, 1), (480, 640, 4), (16, 112, 112, 3)])
def test_channels_last_inputs_warn(shape):
    graph = from_dict({"name": "t", "input": list(shape), "layers": [{"type": "relu"}]}, "net.json")
    guess = [shape[-1], *shape[:-1]]
    assert graph.warnings == (
        f"spec 'net.json': input {list(shape)} looks channels-last; archcalc reads shapes channels-first, as {shape[0]} "
        f"channels of {'x'.join(map(str, shape[1:]))}; if the input has {shape[-1]} channel(s), write \"input\": {guess}",
    )
    analysis = archcalc.analyze(graph)
    assert analysis.warnings == graph.warnings
    assert json.loads(analysis.to_json())["warnings"] == list(graph.warnings)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (64, 56, 56), (3, 16, 112, 112), (4, 8, 8), (100, 3), (3,)])
def test_channels_first_inputs_do_not_warn(shape):
    assert from_dict({"name": "t", "input": list(shape), "layers": [{"type": "relu"}]}).warnings == ()


@pytest.mark.parametrize("name", zoo.names())
def test_no_zoo_model_warns(name):
    assert archcalc.load(name).warnings == ()
    assert json.loads(archcalc.analyze(name).to_json())["warnings"] == []


def test_spec_files_report_directories_missing_paths_and_unreadable_files(tmp_path, monkeypatch):
    (tmp_path / "d.json").mkdir()
    with pytest.raises(SpecError, match=r"^spec file '.*d\.json' is a directory; give a \.json or \.py file in it$"):
        archcalc.load(tmp_path / "d.json")
    with pytest.raises(SpecError, match=r"^spec file 'sub/dir/net' does not exist$"):
        archcalc.load("sub/dir/net")
    with pytest.raises(SpecError, match=r"^spec file '/dev/null' is not a regular file \(a device, socket or pipe\)"):
        archcalc.load("/dev/null")
    with pytest.raises(SpecError, match=r"^spec file 'x{197}\.\.\.' cannot be opened: file name too long$"):
        archcalc.load("x" * 5000)
    with pytest.raises(SpecError, match=r"^spec path 'a\\x00b' contains a NUL byte$"):
        archcalc.load("a\x00b")
    path = tmp_path / "net.json"
    path.write_text(json.dumps(spec({"type": "relu"})))

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(path), "read_bytes", refuse)
    with pytest.raises(SpecError, match=r"^spec file '.*net\.json' cannot be read: permission denied$"):
        archcalc.load(path)


def test_non_utf8_spec_files(tmp_path):
    path = tmp_path / "latin.json"
    path.write_bytes(b'{"name": "caf\xe9", "input": [3], "layers": [{"type": "relu"}]}')
    with pytest.raises(SpecError, match=r"not UTF-8 text: byte 0xe9 at offset 13 cannot be decoded; save the file as UTF-8$"):
        archcalc.load(path)
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(spec({"type": "relu"})).encode())  # a BOM, as Windows editors write
    assert len(archcalc.load(path)) == 2
    path.write_text(json.dumps(spec({"type": "relu"})), encoding="utf-16")
    with pytest.raises(SpecError, match=r"byte 0xff at offset 0 cannot be decoded \(it looks like UTF-16\); save the file as UTF-8$"):
        archcalc.load(path)
    py = tmp_path / "latin.py"
    py.write_bytes(b'from archcalc import Net\nmodel = Net("caf\xe9", input=(3,))\nmodel.relu()\n')
    with pytest.raises(SpecError, match=r"^spec '.*latin\.py': Python syntax error at line 2: "):
        archcalc.load(py)
    nul = tmp_path / "nul.py"
    nul.write_bytes(b"x = 1\x00\n")
    with pytest.raises(SpecError, match=r"^spec '.*nul\.py': .*null bytes"):
        archcalc.load(nul)


@pytest.mark.parametrize(("source", "message"), [
    ("model = Net('t', input=(3, 8, 8))\nmodel.lineer(10)\n",
     "spec.py:3: AttributeError: Net has no layer type 'lineer'; did you mean 'linear'?"),
    ("model = Net('t', input=(3, 8, 8))\nmodel.convolution(4, 3)\n",
     "spec.py:3: AttributeError: Net has no layer type 'convolution'; did you mean 'conv'?"),
    ("import sys\nmodel = Net('t', input=(3, 8, 8))\nsys.exit(0)\n",
     "spec.py:4: the spec called sys.exit(0); a spec file defines `model = Net(...)` and must not exit"),
    ("def f():\n    raise ValueError('bad\\nthing')\n\nf()\n", "spec.py:3: ValueError: bad thing"),
    ("model = Net('t', input=5)\nmodel.relu()\n",
     "input must be a channels-first shape of positive ints, (C,), (C, L), (C, H, W) or (C, D, H, W), got 5"),
    ("model = Net('t', input=(3, 8, 8))\nmodel.relu(name=5)\n", "spec.py:3: name must be a non-empty string, got 5"),
    ("model = Net('t', input=(3, 8, 8))\nmodel.relu(inputs=7)\n",
     'spec.py:3 (name="relu1", type="relu"): inputs must be a layer name or a list of them, got 7'),
    ("model = Net('t', input=(3, 8, 8))\nwith model.block('a b'):\n    model.relu()\n",
     "spec.py:3: block name must be printable characters without spaces, got 'a b' (U+0020 at position 1 is a space)"),
    ("model = Net('t', input=(3, 8, 8))\nmodel.conv(4, 3, 1, 2)\n",
     "spec.py:3: conv takes 2 positional attributes (filters, kernel), got 4: pass stride=1, padding=2 by keyword "
     "(optional attributes are keyword-only)"),
])
def test_python_spec_failures_are_one_line_naming_file_and_line(tmp_path, source, message):
    path = tmp_path / "spec.py"
    path.write_text("from archcalc import Net\n" + source)
    with pytest.raises(SpecError) as info:
        archcalc.load(path)
    assert info.value.problems == (f"spec '{path}': {message}",)


def test_dsl_and_json_name_unnamed_layers_alike():
    net = Net("t", input=(3, 8, 8))
    net.conv(8, 3, name="conv1", padding=1)
    second = net.conv(8, 3, padding=1)
    assert second == "conv2"
    as_json = from_dict(spec({"type": "conv", "filters": 8, "kernel": 3, "name": "conv1", "padding": 1},
                             {"type": "conv", "filters": 8, "kernel": 3, "padding": 1}))
    assert [n.name for n in net.graph()] == [n.name for n in as_json] == ["input", "conv1", "conv2"]
    with net.block("s"):
        net.relu(name="relu1")
        assert net.relu() == "s.relu2"


def test_max_layers_reaches_load_and_the_dsl(tmp_path):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(_chain(2, 10)))
    with pytest.raises(SpecError, match="expands to 100 layers, above the limit of 99;"):
        archcalc.load(path, max_layers=99)
    assert len(archcalc.load(path, max_layers=100)) == 101
    net = Net("t", input=(3,))
    for _ in range(3):
        net.relu()
    with pytest.raises(SpecError, match="above the limit of 2;"):
        archcalc.load(net, max_layers=2)
    with pytest.raises(SpecError, match=r"^max_layers must be a positive int, got 0$"):
        archcalc.load(spec({"type": "relu"}), max_layers=0)


def _cli(*args, input=None):
    """The CLI as the console script runs it: (exit status, stdout, stderr)."""
    from click.testing import CliRunner

    from archcalc.cli import main

    class Main:
        name = "archcalc"

        def main(self, args, **kwargs):
            return main(args)

    result = CliRunner().invoke(Main(), list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_cli_max_layers_warnings_and_stdin_bytes(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(_chain(3, 10)))
    code, out, err = _cli("report", str(path), "--format", "json")
    assert code == 0 and len(json.loads(out)["layers"]) == 1001
    code, out, err = _cli("--max-layers", "999", "report", str(path))
    assert code == 2 and out == ""
    assert err == (f"error: spec '{path}': layers[0] (block \"b3\", repeat 1): expands to 1,000 layers, above the limit "
                   "of 999; raise it with load(..., max_layers=N) or `archcalc --max-layers N`\n")
    code, _, err = _cli("--max-layers", "0", "report", "lenet5")
    assert code == 2 and "--max-layers" in err
    code, _, err = _cli("--max-layers", "10", "report", "lenet5")
    assert code == 2 and err == ("error: spec 'lenet5': layers: the spec has 12 layers, above the limit of 10; "
                             "raise it with load(..., max_layers=N) or `archcalc --max-layers N`\n")
    last = json.dumps({"name": "t", "input": [32, 32, 3], "layers": [{"type": "conv", "filters": 8, "kernel": 3}]})
    code, out, err = _cli("report", "-", "--format", "json", input=last)
    assert code == 0 and err.startswith("warning: spec '<stdin>': input [32, 32, 3] looks channels-last;")
    assert json.loads(out)["warnings"] == [err.strip()[len("warning: "):]]
    code, out, err = _cli("report", "-", input=b'{"name": "\xff"}')
    assert (code, out) == (2, "")
    assert err == "error: spec '<stdin>': not UTF-8 text: byte 0xff at offset 10 cannot be decoded; save the file as UTF-8\n"


@pytest.mark.parametrize("source", ["model.lineer(10)", "import sys; sys.exit(0)", "raise KeyError('k')"])
def test_cli_python_spec_failures_exit_2_with_one_line(tmp_path, source):
    path = tmp_path / "net.py"
    path.write_text(f"from archcalc import Net\nmodel = Net('t', input=(3, 8, 8))\n{source}\n")
    code, out, err = _cli("report", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"error: spec '{path}': net.py:3: ") and err.count("\n") == 1


def test_blocks_nest_at_most_32_deep():
    blocks = {"b0": {"args": {}, "layers": [{"type": "relu"}]}}
    for level in range(1, 400):
        blocks[f"b{level}"] = {"args": {}, "layers": [{"block": f"b{level - 1}"}]}
    assert one_problem({"name": "t", "input": [3], "blocks": blocks, "layers": [{"block": "b399"}]}) == [
        "blocks.b399: blocks nest more than 32 deep (b399 -> b398 -> b397 -> ... -> b368 -> b367)"
    ]
    graph = from_dict({"name": "t", "input": [3], "blocks": blocks, "layers": [{"block": "b31", "name": "n" * 128}]})
    assert len(graph) == 2 and len(graph.nodes[1].name) > 128  # a long full name round-trips
    assert from_json(graph.to_json()) == graph


def test_block_layers_without_arguments_are_not_copied_per_instance():
    from archcalc.spec import _substitute

    literal = {"type": "conv", "kernel": [3, 3], "junk": [1] * 1000}
    refs: dict = {}
    assert _substitute(literal, {"f": 4}, "", [], refs) is literal  # 1000 repeats copy nothing
    with_ref = {"type": "conv", "filters": "$f", "kernel": [3, 3]}
    copied = _substitute(with_ref, {"f": 4}, "", [], refs)
    assert copied == {"type": "conv", "filters": 4, "kernel": [3, 3]} and copied["kernel"] is with_ref["kernel"]


def test_json_text_loads_back_and_block_names_explain_what_they_are():
    graph = archcalc.load("resnet18")
    assert archcalc.load(graph.to_json()) == graph  # Graph.to_json() loads back as it is
    with pytest.raises(SpecError, match=r"'layer2' is a block of 16 layers \(layer2\.0\.conv1 \.\. layer2\.1\.relu2\), "
                                        r"not one layer; give one of them, e.g. 'layer2\.1\.relu2'"):
        graph.node("layer2")
    with pytest.raises(SpecError, match="has no layer 'layer9'"):
        graph.node("layer9")


def test_dsl_refuses_an_attribute_given_twice(tmp_path):
    path = tmp_path / "twice.py"
    path.write_text('from archcalc import Net\nmodel = Net("a", input=(3, 8, 8))\nmodel.conv(4, 3, filters=5)\n')
    with pytest.raises(SpecError, match=r"twice\.py:3: conv got two values for 'filters' \(positional and keyword\)"):
        archcalc.load(str(path))


@pytest.mark.parametrize("body, message", [
    ("class E(BaseException):\n    pass\nraise E('odd')\n", r"x\.py:4: E: odd"),
    ("model = Net('a', input=(3, 8, 8))\nmodel.relu()\nmodel.layers = None\n", r"the model's layers cannot be read \(TypeError"),
    ("model = Net('a', input=(3, 8, 8))\nmodel.relu()\nmodel.layers.append(5)\n", r"the model's layers cannot be read \(AttributeError"),
])
def test_a_python_spec_that_misbehaves_is_one_located_error(tmp_path, body, message):
    path = tmp_path / "x.py"
    path.write_text("from archcalc import Net\n" + body)
    with pytest.raises(SpecError, match=message):
        archcalc.load(str(path))


@pytest.mark.parametrize("spec_dict, message", [
    ({"name": "amb", "input": [2, 4, 4],
      "blocks": {"b": {"args": {}, "layers": [{"type": "conv", "name": "c", "filters": 5, "kernel": 1}]}},
      "layers": [{"type": "conv", "name": "x", "filters": 3, "kernel": 1}, {"block": "b", "name": "x", "inputs": ["input"]}]},
     "name 'x' is used twice"),
    ({"name": "dsl-like", "input": [2, 4, 4], "layers": [{"type": "relu", "name": "x"}, {"type": "relu", "name": "x.r", "scope": ["x"]}]},
     "'x' names both a layer and a block"),
    ({"name": "two", "input": [2, 4, 4], "blocks": {"b": {"args": {}, "layers": [{"type": "relu"}]}},
      "layers": [{"block": "b", "name": "a"}, {"type": "relu", "name": "mid"}, {"block": "b", "name": "a"}]},
     "name 'a' is used twice"),
    ({"name": "twice", "input": [2, 4, 4], "blocks": {"b": {"args": {}, "layers": [{"type": "relu"}]}},
      "layers": [{"block": "b", "name": "a"}, {"block": "b", "name": "a"}]},
     "name 'a' is used twice"),
    ({"name": "hand", "input": [2, 4, 4], "layers": [{"type": "relu", "name": "r1", "scope": ["s"]}, {"type": "relu", "name": "r2"},
                                                     {"type": "relu", "name": "r3", "scope": ["s"]}]},
     "block 's' appears again after other layers"),
])
def test_block_names_are_unambiguous(spec_dict, message):
    with pytest.raises(SpecError, match=message):
        from_dict(spec_dict)


def _slim_unit(kind, depth, bottleneck, stride):
    """One TF-Slim ResNet-v1 bottleneck unit (``resnet_v1.bottleneck``) as a block's layers.

    ``kind``: "proj" (a 1x1 projection shortcut, where the depth changes), "identity" (the
    input itself: ``subsample`` with factor 1 returns it) or "subsample" (a 1x1 max-pool of
    the stride). The 3x3 conv is ``conv2d_same``: stride s with explicit padding (k-1)//2 = 1.
    """
    shortcut = {
        "proj": [{"type": "conv", "name": "shortcut", "filters": depth, "kernel": 1, "stride": stride, "bias": False,
                  "inputs": "input"}, {"type": "batchnorm", "name": "shortcut_bn"}],
        "identity": [],
        "subsample": [{"type": "maxpool", "name": "shortcut", "kernel": 1, "stride": stride, "inputs": "input"}],
    }[kind]
    return [
        *shortcut,
        {"type": "conv", "name": "conv1", "filters": bottleneck, "kernel": 1, "bias": False, "inputs": "input"},
        {"type": "batchnorm", "name": "bn1"}, {"type": "relu", "name": "relu1"},
        {"type": "conv", "name": "conv2", "filters": bottleneck, "kernel": 3, "stride": stride, "padding": 1, "bias": False},
        {"type": "batchnorm", "name": "bn2"}, {"type": "relu", "name": "relu2"},
        {"type": "conv", "name": "conv3", "filters": depth, "kernel": 1, "bias": False},
        {"type": "batchnorm", "name": "bn3"},
        {"type": "add", "name": "add", "inputs": ["bn3", "shortcut_bn" if kind == "proj" else "shortcut" if shortcut else "input"]},
        {"type": "relu", "name": "relu"},
    ]


def _slim_stage_flat():
    """TF-Slim's resnet_v1_50 block1 (base depth 64, 3 units, stride 2) written out unit by unit."""
    layers = []
    entry = "input"
    for index, (kind, stride) in enumerate((("proj", 1), ("identity", 1), ("subsample", 2))):
        scope = ["block1", str(index)]
        prefix = f"block1.{index}."
        for layer in _slim_unit(kind, 256, 64, stride):
            layer = {**layer, "name": prefix + layer["name"], "scope": scope}
            if "inputs" in layer:
                layer["inputs"] = [entry if ref == "input" else prefix + ref for ref in
                                   ([layer["inputs"]] if isinstance(layer["inputs"], str) else layer["inputs"])]
            elif layers:
                layer["inputs"] = [layers[-1]["name"]]
            layers.append(layer)
        entry = layers[-1]["name"]
    return {"name": "slim", "input": [64, 56, 56], "layers": layers}


def _slim_stage_blocks(**overrides):
    """The same stage as one instance of a repeated block whose first and last units differ."""
    blocks = {}
    for kind in ("proj", "identity", "subsample"):
        blocks[f"unit_{kind}"] = {"args": {"depth": None, "bottleneck": None, "stride": 1},
                                  "layers": _slim_unit(kind, "$depth", "$bottleneck", "$stride")}
    instance = {"block": "unit_identity", "name": "block1", "repeat": 3, "args": {"depth": 256, "bottleneck": 64}, **overrides}
    return {"name": "slim", "input": [64, 56, 56], "blocks": blocks, "layers": [instance]}


@pytest.mark.parametrize("overrides", [
    {"first": {"block": "unit_proj"}, "last": {"block": "unit_subsample", "args": {"stride": 2}}},
    {"at": {"0": {"block": "unit_proj"}, "-1": {"block": "unit_subsample", "args": {"stride": 2}}}},
    {"first": {"block": "unit_proj"}, "at": {"2": {"block": "unit_subsample", "args": {"stride": 2}}}},
])
def test_last_and_indexed_overrides_write_a_tf_slim_resnet_v1_stage(overrides):
    flat, blocked = from_dict(_slim_stage_flat()), from_dict(_slim_stage_blocks(**overrides))
    assert [(n.name, n.type, dict(n.attrs), n.inputs, n.scope) for n in blocked] == [
        (n.name, n.type, dict(n.attrs), n.inputs, n.scope) for n in flat]
    report = archcalc.analyze(blocked)
    assert report == archcalc.analyze(flat)
    # by hand: units 0 and 1 at 56x56; unit 2's 3x3 conv (and the 1x1 subsample) stride to 28x28
    first_unit = 64 * 256 + 64 * 64 + 9 * 64 * 64 + 64 * 256            # shortcut, conv1, conv2, conv3
    other_unit = 256 * 64 + 9 * 64 * 64 + 64 * 256
    scale_shift = 2 * ((256 + 64 + 64 + 256) + 2 * (64 + 64 + 256))
    assert report.totals.params == first_unit + 2 * other_unit + scale_shift == 215_808
    macs = (first_unit * 56 * 56 + other_unit * 56 * 56
            + 256 * 64 * 56 * 56 + (9 * 64 * 64 + 64 * 256) * 28 * 28)
    assert report.totals.macs == macs == 542_703_616
    assert report.layers[-1].output_shape == (256, 28, 28)
    assert report.layer("block1.2.shortcut").output_shape == (256, 28, 28)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"at": {"3": {"args": {}}}}, "layers[0]: at['3']: instance 3 is out of range for repeat 3 (0..2 or -3..-1)"),
    ({"at": {"-4": {"args": {}}}}, "layers[0]: at['-4']: instance -4 is out of range for repeat 3 (0..2 or -3..-1)"),
    ({"at": {"x": {}}}, "layers[0]: at['x']: an instance index must be an int written as text (\"0\", \"2\", \"-1\"), got 'x'"),
    ({"at": {"01": {}}}, "layers[0]: at['01']: an instance index must be an int written as text (\"0\", \"2\", \"-1\"), got '01'"),
    ({"at": [{}]}, 'layers[0]: at must be an object from instance indices ("0", "-1"...) to overrides, got [{}]'),
    ({"at": {"1": {"args": 5}}}, "layers[0]: at['1'].args must be an object of argument values, got 5"),
    ({"at": {"1": {"blocks": "b"}}}, "layers[0]: at['1'] has unknown key 'blocks'; did you mean 'block'?"),
    ({"last": {"block": "c"}}, "layers[0]: last.block: unknown block 'c'"),
    ({"last": 3}, 'layers[0]: last must be an object with "block" and/or "args", got 3'),
    ({"first": {}, "at": {"-3": {}}}, "layers[0]: first and at['-3'] both change instance 0 (repeat 3); give each instance one override"),
    ({"last": {}, "at": {"2": {}}}, "layers[0]: last and at['2'] both change instance 2 (repeat 3); give each instance one override"),
    ({"repeat": 1, "first": {}, "last": {}},
     "layers[0]: first and last both change instance 0 (repeat 1); give each instance one override"),
    ({"repeat": 1, "at": {"1": {}}}, "layers[0]: at['1']: instance 1 is out of range for repeat 1 (0 or -1)"),
])
def test_overrides_by_index_are_checked(overrides, message):
    instance = {"block": "b", "repeat": 3, **overrides}
    assert one_problem(spec(instance, blocks={"b": {"args": {"n": 1}, "layers": [{"type": "relu"}]}})) == [message]


def test_last_and_at_change_only_their_instance_and_count_before_expanding():
    blocks = {"r": {"args": {"p": 0.5}, "layers": [{"type": "dropout", "p": "$p"}]},
              "two": {"args": {}, "layers": [{"type": "relu"}, {"type": "relu"}]}}
    graph = from_dict(spec({"block": "r", "name": "s", "repeat": 4, "last": {"args": {"p": 0.1}},
                            "at": {"1": {"block": "two"}, "-2": {"args": {"p": 0.3}}}}, blocks=blocks))
    assert [(n.name, n.attrs.get("p")) for n in graph][1:] == [
        ("s.0.dropout1", 0.5), ("s.1.relu1", None), ("s.1.relu2", None), ("s.2.dropout1", 0.3), ("s.3.dropout1", 0.1)]
    counted = spec({"block": "r", "repeat": 1000, "last": {"block": "two"}, "at": {"5": {"block": "two"}}}, blocks=blocks)
    assert len(from_dict(counted, max_layers=1002)) == 1 + 1002
    assert one_problem(counted, max_layers=1001)[0].startswith('layers[0] (block "r", repeat 1000): expands to 1,002 layers')


def test_every_index_of_every_small_repeat_changes_that_instance_alone():
    blocks = {"one": {"args": {}, "layers": [{"type": "relu", "name": "r"}]},
              "two": {"args": {}, "layers": [{"type": "relu", "name": "r"}, {"type": "relu", "name": "s"}]}}
    for repeat in range(1, 5):
        for index in range(-repeat, repeat):
            for how in ({"at": {str(index): {"block": "two"}}},
                        {"first": {"block": "two"}} if index % repeat == 0 else None,
                        {"last": {"block": "two"}} if index % repeat == repeat - 1 else None):
                if how is None:
                    continue
                layers = spec({"block": "one", "name": "b", "repeat": repeat, **how}, blocks=blocks)
                graph = from_dict(layers, max_layers=repeat + 1)  # counted exactly: one limit lower refuses it
                assert one_problem(layers, max_layers=repeat)[0].endswith(
                    "raise it with load(..., max_layers=N) or `archcalc --max-layers N`")
                changed = index % repeat
                prefix = f"b.{changed}." if repeat > 1 else "b."
                assert [n.name for n in graph if n.name.endswith(".s")] == [prefix + "s"]
                assert len(graph) == 1 + repeat + 1


OVERRIDE_BLOCKS = {
    "unit": {"args": {"w": 4}, "layers": [{"type": "conv", "filters": "$w", "kernel": 1}]},
    "pool": {"args": {"k": None, "s": None}, "layers": [{"type": "maxpool", "kernel": "$k", "stride": "$s"}]},
}


@pytest.mark.parametrize(("override", "message"), [
    ({"last": {"block": "pool"}},
     ["layers[0].last: block 'pool' needs argument 'k'", "layers[0].last: block 'pool' needs argument 's'"]),
    ({"at": {"1": {"args": {"q": 1}}}}, ["layers[0].at['1']: block 'unit' has no argument 'q'"]),
    ({"first": {"block": "pool", "args": {"k": 2, "s": 2, "w": 3}}}, ["layers[0].first: block 'pool' has no argument 'w'"]),
])
def test_an_override_problem_names_the_override_once_without_follow_on_errors(override, message):
    spec = {"name": "t", "input": [3, 8, 8], "blocks": OVERRIDE_BLOCKS,
            "layers": [{"block": "unit", "name": "s", "repeat": 3, "args": {"w": 3}, **override}]}
    with pytest.raises(SpecError) as caught:
        from_dict(spec)
    assert str(caught.value).split("\n") == [f"spec '<dict>': {line}" for line in message]


def test_an_override_with_another_block_keeps_only_the_arguments_that_block_declares():
    """The instance's w is the unit's; the pool at the end takes its own k and s, and no w."""
    spec = {"name": "t", "input": [3, 8, 8], "blocks": OVERRIDE_BLOCKS,
            "layers": [{"block": "unit", "name": "s", "repeat": 2, "args": {"w": 3},
                        "last": {"block": "pool", "args": {"k": 2, "s": 2}}}]}
    graph = from_dict(spec)
    assert [(node.type, dict(node.attrs).get("filters")) for node in graph.nodes[1:]] == [("conv", 3), ("maxpool", None)]

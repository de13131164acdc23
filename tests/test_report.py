"""The report's machine-readable forms, and the sharing that keeps a long network's analysis small."""

from __future__ import annotations

import json

import pytest

import archcalc
from archcalc.passes import infer_shapes
from archcalc.spec import from_dict


@pytest.mark.parametrize("model", ["lenet5", "googlenet", "resnet18"])
@pytest.mark.parametrize("indent", [None, 0, 2, 4])
def test_json_text_is_the_dict(model, indent):
    analysis = archcalc.analyze(model, batch=3)
    assert json.loads(analysis.to_json(indent)) == analysis.to_dict()


def test_json_text_has_one_line_per_layer():
    analysis = archcalc.analyze("lenet5")
    lines = analysis.to_json().splitlines()
    layer_lines = [line for line in lines if line.lstrip().startswith('{"name"')]
    assert [json.loads(line.rstrip(","))["name"] for line in layer_lines] == [row.name for row in analysis.layers]


def test_json_text_survives_a_model_name_that_looks_like_its_cut():
    spec = {"name": 'x": [], "layers": []', "input": [1, 4, 4], "layers": [{"type": "relu"}]}
    analysis = archcalc.analyze(spec)
    assert json.loads(analysis.to_json())["model"] == 'x": [], "layers": []'
    assert json.loads(analysis.to_json(None)) == analysis.to_dict()


def _two(first: dict, second: dict) -> archcalc.Graph:
    return from_dict({"name": "t", "input": [4, 8, 8], "layers": [
        {"name": "a", **first}, {"name": "r", "type": "relu"}, {"name": "b", "inputs": "r", **second}]})


def test_equal_layers_share_one_layer_and_its_figures():
    conv = {"type": "conv", "filters": 4, "kernel": 3, "padding": 1}
    graph = _two(conv, conv)
    layers = infer_shapes(graph)
    assert layers["a"] is layers["b"]
    a, b = archcalc.analyze(graph).layer("a"), archcalc.analyze(graph).layer("b")
    assert (a.params, a.macs, a.output_shape, a.summary) == (b.params, b.macs, b.output_shape, b.summary) == (
        4 * 4 * 9 + 4, 4 * 4 * 9 * 64, (4, 8, 8), "3x3/1 p1, 4")
    assert a.receptive_field.size == (3, 3) and b.receptive_field.size == (5, 5)  # fields are per node


@pytest.mark.parametrize("first, second", [
    ({"type": "conv", "filters": 4, "kernel": 3, "padding": 1}, {"type": "conv", "filters": 4, "kernel": 3, "padding": 0}),
    ({"type": "leaky_relu", "negative_slope": 1}, {"type": "leaky_relu", "negative_slope": 1.0}),  # equal, but print apart
    ({"type": "relu"}, {"type": "sigmoid"}),
])
def test_layers_that_differ_are_not_shared(first, second):
    layers = infer_shapes(_two(first, second))
    assert layers["a"] is not layers["b"]
    assert repr(layers["b"].attrs) == repr(infer_shapes(_two(second, second))["b"].attrs)  # 1.0 stays 1.0


def test_receptive_field_quantities_stay_exact_in_json():
    from fractions import Fraction

    from archcalc.formulas import INPUT_FIELD, receptive_field_step
    from archcalc.report import ReceptiveField

    up = receptive_field_step(INPUT_FIELD, 1, Fraction(1, 2))       # an upsampling by 2: stride 1/2
    third = receptive_field_step(INPUT_FIELD, 1, Fraction(1, 3))
    conv = receptive_field_step(up, 4, padding_before=1)            # size 1 + 3/2, padding 1/2
    field = ReceptiveField.of((up, third, conv), (up, third, conv), True)
    data = field.to_dict()
    assert data["stride"] == [0.5, "1/3", 0.5]
    assert data["size"] == data["size_min"] == [1, 1, 2.5] and data["padding"] == [0, 0, 0.5]
    assert data["centre"] == [0, 0, 0.25]  # (5/2 - 1)/2 - 1/2
    assert json.loads(json.dumps(data)) == data
    assert field.text() == "1x1x5/2"


def test_an_in_place_op_stores_when_its_input_is_read_elsewhere():
    # c1 feeds the ReLU and the add: the ReLU cannot overwrite c1, so it needs 16 new values;
    # the add can overwrite c2 (read by nothing else), so it stores nothing. By hand: 4 + 16 + 16 + 16.
    spec = {"name": "t", "input": [1, 2, 2], "layers": [
        {"type": "conv", "name": "c1", "filters": 4, "kernel": 1}, {"type": "relu", "name": "r1"},
        {"type": "conv", "name": "c2", "filters": 4, "kernel": 1}, {"type": "add", "name": "a", "inputs": ["c1", "c2"]},
        {"type": "flatten", "name": "f", "inputs": "c1"}]}
    analysis = archcalc.analyze(spec)
    assert {r.name: r.stores_output for r in analysis.layers} == {
        "input": True, "c1": True, "r1": True, "c2": True, "a": False, "f": False}  # a view never stores
    assert analysis.totals.activations == 4 + 16 + 16 + 16
    chain = archcalc.analyze({**spec, "layers": spec["layers"][:2]})
    assert not chain.layer("r1").stores_output  # alone after c1, the ReLU runs in place


def test_an_in_place_op_behind_a_view_sees_the_other_readers_of_the_tensor():
    # r reads c1 through a view; c2 reads c1 too: r must not overwrite c1. By hand: 32 + 32 + 32 + 32.
    spec = {"name": "alias", "input": [2, 4, 4], "layers": [
        {"type": "conv", "name": "c1", "filters": 2, "kernel": 1}, {"type": "identity", "name": "v", "inputs": ["c1"]},
        {"type": "relu", "name": "r", "inputs": ["v"]}, {"type": "conv", "name": "c2", "filters": 2, "kernel": 1, "inputs": ["c1"]},
        {"type": "add", "name": "a", "inputs": ["r", "c2"]}, {"type": "relu", "name": "r2"}]}
    analysis = archcalc.analyze(spec)
    assert [r.name for r in analysis.layers if r.stores_output] == ["input", "c1", "r", "c2"]
    assert analysis.totals.activations == 4 * 32  # a and r2 run in place, one after the other


# --- resolution dependence: what holds for this input size only ("same" padding with a stride) ---

def _tf_same_padding(size, kernel, stride, dilation=1):
    """TensorFlow's documented rule (tf.nn.convolution, "same"), written as its docs write it:
    pad_total = max(k' - s, 0) if in % s == 0 else max(k' - in % s, 0); the odd pixel after."""
    span = dilation * (kernel - 1) + 1
    total = max(span - stride, 0) if size % stride == 0 else max(span - size % stride, 0)
    return total // 2, total - total // 2


def _layer_of(size, kernel, stride, dilation):
    from archcalc.ops import get_op

    attrs = {"filters": 1, "kernel": [kernel], "stride": stride, "padding": "same", "dilation": dilation}
    op = get_op("conv")
    node_attrs = {**op.defaults(), **attrs, "kernel": (kernel,)}
    return op, node_attrs, op.infer(node_attrs, ((1, size),))


def test_same_padding_dependence_against_tensorflows_rule_at_every_size():
    import math
    import re

    for kernel in range(1, 6):
        for stride in range(1, 5):
            for dilation in (1, 2):
                period = [_tf_same_padding(n, kernel, stride, dilation) for n in range(40, 40 + stride)]
                for size in range(max(dilation * (kernel - 1) + 1, 1), 30):
                    op, attrs, layer = _layer_of(size, kernel, stride, dilation)
                    assert layer.attrs["padding"] == (_tf_same_padding(size, kernel, stride, dilation),)
                    found = op.size_dependence(attrs, layer)
                    assert bool(found) == (len(set(period)) > 1), (size, kernel, stride, dilation)
                    if not found:
                        continue
                    (dependence,) = found
                    assert dependence.attribute == "padding" and dependence.axis == 0
                    assert dependence.moves_field == (len({before for before, _ in period}) > 1)
                    # the other size named is the nearest larger one whose padding differs, and both
                    # clauses' arithmetic evaluates to what TensorFlow's rule gives
                    here = _tf_same_padding(size, kernel, stride, dilation)
                    other = int(re.search(r"at length (\d+) it would be", dependence.text).group(1))
                    assert other == next(n for n in range(size + 1, size + 2 * stride + 1)
                                         if _tf_same_padding(n, kernel, stride, dilation) != here)
                    for expression, total, before, after in re.findall(
                            r"(max\(.*?, 0\)) = (\d+), so (\d+) before and (\d+) after", dependence.text):
                        value = eval(expression, {"max": max, "ceil": math.ceil, "__builtins__": {}})
                        assert value == int(total) == int(before) + int(after)


def _mobilenet_v1_stem(size):
    """MobileNetV1's first layers (Howard et al. 2017, Table 1; TF-Slim's "SAME" convolutions)."""
    return {"name": "mnv1", "input": [3, size, size], "layers": [
        {"type": "conv", "name": "conv0", "filters": 32, "kernel": 3, "stride": 2, "padding": "same", "bias": False},
        {"type": "relu", "name": "relu0"},
        {"type": "conv", "name": "dw1", "filters": 32, "kernel": 3, "groups": 32, "padding": "same", "bias": False},
        {"type": "conv", "name": "pw1", "filters": 64, "kernel": 1, "bias": False},
        {"type": "conv", "name": "dw2", "filters": 64, "kernel": 3, "stride": 2, "groups": 64, "padding": "same",
         "bias": False},
        {"type": "maxpool", "name": "pool", "kernel": 2, "stride": 2, "padding": "same"},
        {"type": "global_avgpool", "name": "gap"},
    ]}


def test_mobilenet_v1_first_conv_is_marked_resolution_dependent():
    at_224, at_225 = archcalc.analyze(_mobilenet_v1_stem(224)), archcalc.analyze(_mobilenet_v1_stem(225))
    # TensorFlow's rule: 0 before at 224 (224 % 2 == 0: total max(3 - 2, 0) = 1), 1 at 225 (total 3 - 1 = 2)
    assert at_224.layer("conv0").attrs["padding"] == ((0, 1), (0, 1)) == (_tf_same_padding(224, 3, 2),) * 2
    assert at_225.layer("conv0").attrs["padding"] == ((1, 1), (1, 1)) == (_tf_same_padding(225, 3, 2),) * 2
    assert at_224.layer("conv0").receptive_field.centre == (1, 1) != at_225.layer("conv0").receptive_field.centre
    layers = {row["name"]: row for row in at_224.to_dict()["layers"]}
    flags = {name: (row["resolution_dependent"], row["receptive_field"]["resolution_dependent"]) for name, row in layers.items()}
    assert flags == {
        "input": (False, False),
        "conv0": (True, True),    # 3x3/2 "same": its padding, and so its field's padding and centre
        "relu0": (False, True),   # a pointwise op keeps the field it reads
        "dw1": (False, True),     # stride 1: "same" is 1 and 1 at any size; the field still follows conv0's
        "pw1": (False, True),
        "dw2": (True, True),
        "pool": (True, True),     # 2x2/2 "same": 0 or 1 after, never before; its field follows dw2's
        "gap": (False, False),    # a global field has no padding or centre
    }
    for name in ("conv0", "dw1", "pw1", "dw2"):  # a field marked resolution-dependent does change at 225
        assert at_224.layer(name).receptive_field.centre != at_225.layer(name).receptive_field.centre


def test_a_window_that_pads_only_after_does_not_mark_the_field():
    analysis = archcalc.analyze({"name": "t", "input": [3, 41, 40], "layers": [
        {"type": "maxpool", "name": "p", "kernel": 2, "stride": 2, "padding": "same"},
        {"type": "conv", "name": "c", "filters": 2, "kernel": 4, "stride": 2, "padding": "same"},
        {"type": "conv", "name": "s1", "filters": 2, "kernel": 3, "padding": "same"},
        {"type": "conv", "name": "k1", "filters": 2, "kernel": 1, "stride": 2, "padding": "same"},
        {"type": "conv", "name": "explicit", "filters": 2, "kernel": 3, "stride": 2, "padding": [0, 0, 1, 1]},
    ]})
    flags = {row.name: (row.resolution_dependent, row.receptive_field.resolution_dependent) for row in analysis.layers}
    assert flags == {"input": (False, False), "p": (True, False), "c": (True, False), "s1": (False, False),
                     "k1": (False, False), "explicit": (False, False)}


def test_resolution_dependence_reaches_merges_folds_csv_table_and_explain():
    from rich.console import Console

    from archcalc.explain import explain
    from archcalc.render.table import footer, markdown_table, rich_table

    spec = {"name": "t", "input": [3, 16, 16], "blocks": {"down": {"args": {}, "layers": [
        {"type": "conv", "name": "a", "filters": 4, "kernel": 3, "stride": 2, "padding": "same", "inputs": "input"},
        {"type": "conv", "name": "b", "filters": 4, "kernel": 1, "stride": 2, "inputs": "input"},
        {"type": "add", "name": "sum", "inputs": ["a", "b"]}]}},
        "layers": [{"block": "down", "name": "d", "repeat": 2, "args": {}}]}
    analysis = archcalc.analyze(spec)
    assert analysis.layer("d.0.b").receptive_field.resolution_dependent is False
    assert analysis.layer("d.0.sum").receptive_field.resolution_dependent is True  # one input's field is
    assert analysis.layer("d.1.b").receptive_field.resolution_dependent is True    # reads d.0.sum
    assert [row.resolution_dependent for row in analysis.rows(depth=2)] == [False, True, True]
    assert [row.resolution_dependent for row in analysis.rows(depth=1)] == [False, True]
    csv = analysis.to_csv().splitlines()
    assert csv[0].endswith(",receptive_field,resolution_dependent")
    assert csv[2].startswith("d.0.a,") and csv[2].endswith(",3x3 ^,true")
    assert csv[3].startswith("d.0.b,") and csv[3].endswith(",1x1,false")
    console = Console(width=200, record=True)
    console.print(rich_table(analysis))
    text = console.export_text()
    assert "│ conv 3x3/2 p0:1,0:1, 4 ^ │" in text.replace("  ", "")
    assert footer(analysis)[-1].startswith("^ marks what holds for this input size only: a layer's attributes")
    markdown = markdown_table(analysis)
    assert "| d.0.a | conv 3x3/2 p0:1,0:1, 4 ^ |" in markdown and "| 3x3 ^ |" in markdown
    assert markdown.rstrip().endswith("`archcalc explain MODEL LAYER` shows the arithmetic.")
    assert not any(line.startswith("^") for line in footer(archcalc.analyze("lenet5")))
    lines = explain(spec, "d.1.a")
    assert ("padding (height)", '"same" resolved for input height 8: total = max((ceil(8/2) - 1)*2 + 3 - 8, 0) = 1, so '
            "0 before and 1 after; at height 9 it would be max((ceil(9/2) - 1)*2 + 3 - 9, 0) = 2, so 1 before and 1 after "
            "(resolution-dependent: ^ in the report)") in lines
    assert lines[-1] == ("receptive field", "its padding and centre hold for this input size only (^): they follow "
                                            "from this layer's padding, resolved from its input size")
    assert explain(spec, "d.1.b")[-1] == ("receptive field", "its padding and centre hold for this input size only (^): "
                                                             "they follow from d.0.a's padding, resolved from its input size")
    assert not any(q.startswith("padding") for q, _ in explain(spec, "d.1.b"))


def test_the_default_asks_only_attributes_declared_as_window_padding():
    from archcalc.ops.attrs import Attr, ints, padding
    from archcalc.ops.base import Layer, Op

    class Pad(Op):  # a padding attribute that no window resolves: nothing to say, and no crash
        type = "pad_like"
        attrs = (Attr("padding", padding, 0, "per side"),)

    class Strided(Op):  # "same"-looking text in an attribute that is not window padding
        type = "strided"
        attrs = (Attr("mode", str, "same", "a mode"), Attr("stride", ints(1), 2, "stride"))

    layer = Layer({"padding": "same"}, ((1, 8, 8),), (1, 8, 8))
    assert Pad().size_dependence({"padding": "same"}, layer) == ()
    assert Strided().size_dependence({"mode": "same", "stride": 2}, Layer({"mode": "same", "stride": (2, 2)}, ((1, 8, 8),),
                                                                            (1, 4, 4))) == ()


def test_marking_a_field_keeps_it_shared_along_a_chain():
    layers = [{"type": "conv", "filters": 2, "kernel": 3, "stride": 2, "padding": "same"}] + [{"type": "relu"}] * 50
    analysis = archcalc.analyze({"name": "t", "input": [1, 16, 16], "layers": layers})
    fields = {id(row.receptive_field) for row in analysis.layers[1:]}
    assert len(fields) == 1 and analysis.layers[-1].receptive_field.resolution_dependent


def test_readme_json_contract_lists_every_key():
    """The README's JSON contract names every top-level key and every total the report writes."""
    import re
    from pathlib import Path

    text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    contract = text[text.index("## JSON output (a stable contract)"):]
    contract = contract[contract.index("```"):contract.index("```", contract.index("```") + 3)]
    data = archcalc.analyze("resnet18", memory_model="lecture").to_dict()
    for key in data:
        assert f'"{key}"' in contract, key
    totals = contract[contract.index('"totals": {'):contract.index("},", contract.index('"totals": {'))]
    assert set(re.findall(r'"(\w+)"', totals)) - {"totals"} == set(data["totals"])
    assert data["memory_model"] == "lecture" and data["totals"]["training_bytes"] == data["totals"]["lecture_training_bytes"]

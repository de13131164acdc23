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

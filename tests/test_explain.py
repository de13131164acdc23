"""`archcalc explain`: every line's arithmetic evaluates to the figure the analyzer reports."""

from __future__ import annotations

import math
import re

import pytest

import archcalc
from archcalc import formulas
from archcalc.explain import explain_layer, readable

ARITHMETIC = re.compile(r"^[\d\s+\-*/().]*(?:(?:floor|ceil)[\d\s+\-*/().]*)*$")


def _checked_clauses(text):
    """(expression, value) for every ``... = <arithmetic> = <int>`` clause of a line."""
    for clause in text.split("; "):
        clause = re.sub(r" \([a-z][^()]*\)$", "", clause)  # a trailing remark such as "(in place ...)"
        clause = re.sub(r"(?<=\d),(?=\d{3}\b)", "", clause)  # thousands separators: 1,728 -> 1728
        parts = [p.strip() for p in clause.split(" = ")]
        if len(parts) >= 2 and re.fullmatch(r"-?\d+", parts[-1]) and ARITHMETIC.match(parts[-2]):
            yield parts[-2], int(parts[-1])


@pytest.mark.parametrize(("model", "layer"), [
    ("vgg16", "conv1_1"), ("vgg16", "pool1"), ("vgg16", "fc6"), ("lenet5", "flatten1"), ("alexnet-grouped", "conv2"),
    ("googlenet", "pool1"), ("googlenet", "inception3a.concat"), ("resnet50", "layer2.0.conv2"), ("resnet50", "layer1.0.bn1"),
    ("resnet50", "avgpool"), ("factorized-7x7", "factorized.conv1x7"), ("inception-naive", "conv5x5"),
])
def test_every_explained_figure_is_the_analyzers(model, layer):
    lines = archcalc.explain(model, layer, batch=2)
    row = archcalc.analyze(archcalc.load(model), batch=2).layer(layer)
    figures = {"params": row.params, "MACs for the batch": row.macs, "FLOPs": row.flops, "activations": row.activations,
               "activation bytes": row.activation_bytes}
    if row.params_weights_only == row.params:
        figures["weights"] = row.params
    checked = 0
    for quantity, text in lines:
        clauses = list(_checked_clauses(text))
        for expression, value in clauses:
            assert eval(expression, {"floor": math.floor, "ceil": math.ceil, "__builtins__": {}}) == value, (quantity, text)
            checked += 1
        if quantity in figures and clauses:
            assert clauses[-1][1] == figures[quantity], (quantity, text)
    assert checked >= 2
    shape_line = dict(lines)["output shape"]
    assert shape_line.endswith(str(row.output_shape)) or "(" + ", ".join(map(str, row.output_shape)) in shape_line


def test_explain_writes_the_conv_arithmetic_as_a_student_would():
    lines = dict(archcalc.explain("vgg16", "conv1_1"))
    assert lines["output height"] == "floor((224 + 1 + 1 - 1*(3-1) - 1) / 1) + 1 = 224"
    assert lines["weights"] == "f * (c/groups) * prod(k) = 64 * 3 * 3*3 = 1,728"
    assert lines["MACs"] == "f * (c/groups) * prod(k) * prod(out) = 64 * 3 * 3*3 * 224*224 = 86,704,128"
    assert lines["receptive field (height)"].startswith("r = r_in + (k'-1)*jump_in = 1 + (3-1)*1 = 3")


def test_explain_ceil_mode_drop_and_grouped_conv():
    lines = dict(archcalc.explain("googlenet", "pool1"))
    assert lines["output height"] == "ceil((112 + 0 + 0 - 1*(3-1) - 1) / 2) + 1 = 56"
    lines = dict(archcalc.explain("alexnet-grouped", "conv2"))
    assert lines["weights"] == "f * (c/groups) * prod(k) = 256 * (96/2) * 5*5 = 307,200"


def test_numbers_from_1000_are_grouped_and_shapes_are_not():
    lines = dict(archcalc.explain("vgg16", "fc6", batch=2))
    assert lines["weights"] == "in * out = 25,088 * 4,096 = 102,760,448"
    assert lines["MACs for the batch"] == "102,760,448 * 2 = 205,520,896"
    assert lines["output shape"] == "(units,) = (4096,)"  # a shape tuple keeps its plain numbers
    assert lines["activation bytes"] == "8,192 * 4 = 32,768 (float32, 4 bytes a value)"
    every_line = " ".join(text for _, text in archcalc.explain("resnet50", "layer4.0.conv2", batch=3))
    assert not re.search(r"(?<![\d,.])\d{4,}(?![\d,)]|,\))", every_line.replace("(512, 7, 7)", "")), every_line


@pytest.mark.parametrize(("model", "layer", "quantity", "text"), [
    ("resnet50", "avgpool", "output shape", "(C, 1, ...) = (2048, 1, 1)"),  # was "(2048, 1, 1) = (2048, 1, 1)"
    ("vgg16", "fc8", "activations", "prod(output shape) = 1,000"),  # was "= 1000 = 1000"
])
def test_no_step_repeats_the_one_before(model, layer, quantity, text):
    assert dict(archcalc.explain(model, layer))[quantity] == text


def test_no_explained_line_of_any_zoo_layer_says_x_equals_x():
    for model in ("googlenet", "resnet18", "alexnet", "lenet5"):
        graph = archcalc.load(model)
        analysis = archcalc.analyze(graph, batch=2)
        for node in graph.nodes:
            for quantity, text in explain_layer(graph, analysis, node.name, group_digits=True):
                for clause in text.split("; "):
                    steps = [step.strip() for step in clause.split(" = ")]
                    assert all(a != b for a, b in zip(steps, steps[1:])), (model, node.name, quantity, text)


@pytest.mark.parametrize(("text", "expected"), [
    ("4096 * 2 = 8192", "4,096 * 2 = 8,192"),
    ("(4096,) = (4096,)", "(4096,)"),
    ("x = 5 = 5; y = 1000 = 1000", "x = 5; y = 1,000"),
    ("999 + 1 = 1000", "999 + 1 = 1,000"),
    ("floor((1000000 + 0) / 7) + 1 = 142858", "floor((1,000,000 + 0) / 7) + 1 = 142,858"),
    ("conv1234 has 12345x12345 values, 1.2345 and 1e-12345", "conv1234 has 12345x12345 values, 1.2345 and 1e-12345"),
    ("-123456 + 1,234", "-123,456 + 1,234"),
    (f"{10**30} * 2", "1,000,000,000,000,000,000,000,000,000,000 * 2"),
])
def test_readable(text, expected):
    assert readable(text) == expected


def test_huge_geometry_is_written_out_exactly():
    size = 2**60 + 1
    text = formulas.explain_conv_output_size(size, 3, 2, 1)
    assert text == f"floor(({size:,} + 1 + 1 - 1*(3-1) - 1) / 2) + 1 = {(size + 2 - 3) // 2 + 1:,}"
    assert formulas.explain_conv_output_size(1024, 3, 2) == "floor((1,024 + 0 + 0 - 1*(3-1) - 1) / 2) + 1 = 511"


def test_explain_layer_groups_digits_only_when_asked():
    graph = archcalc.load("resnet50")
    analysis = archcalc.analyze(graph)
    plain = dict(explain_layer(graph, analysis, "avgpool"))
    assert plain["output shape"] == "(C, 1, ...) = (2048, 1, 1)" and plain["activations"] == "prod(output shape) = 2048*1*1 = 2048"
    grouped = dict(explain_layer(graph, analysis, "avgpool", group_digits=True))
    assert grouped["activations"] == "prod(output shape) = 2,048*1*1 = 2,048"


def test_explaining_figures_too_long_to_write_out_is_one_clear_error():
    from archcalc.errors import ArchcalcError

    graph = archcalc.load("lenet5")
    analysis = archcalc.analyze(graph, batch=10**4298)
    with pytest.raises(ArchcalcError, match=r"^model 'lenet5' at batch 1e4298: a figure would have about 4,30\d digits"):
        explain_layer(graph, analysis, "conv1")
    lines = dict(archcalc.explain("lenet5", "conv1", batch=10**3000))  # long, but written out exactly
    assert lines["MACs for the batch"] == f"352,800 * {10**3000:,} = {352_800 * 10**3000:,}"


def test_lines_for_picks_each_figures_arithmetic():
    from archcalc.explain import lines_for

    lines = archcalc.explain("resnet18", "layer1.0.bn1")
    assert [q for q, _ in lines_for(lines, "output_shape")] == ["output shape"]
    assert [q for q, _ in lines_for(lines, "buffers")] == ["buffers"]
    conv = archcalc.explain("lenet5", "conv1")
    assert [q for q, _ in lines_for(conv, "output_shape")] == ["output height", "output width", "output shape"]
    assert [q for q, _ in lines_for(conv, "params")] == ["weights", "params"]
    assert [q for q, _ in lines_for(conv, "activation_bytes")] == ["activation bytes"]
    assert lines_for(conv, "macs")[0][1].endswith("= 352,800")


@pytest.mark.parametrize("batch", [1, 3])
def test_no_quantity_is_explained_twice_for_any_op(batch):
    """Every example of every op: each quantity (output shape, params, MACs, other ops...) has one
    line; an op that writes its own other-ops arithmetic gets no generic line beside it."""
    from archcalc.ops import REGISTRY
    from tests.helpers import single_op_graph

    for op_type, op in sorted(REGISTRY.items()):
        for example in op.examples:
            graph = single_op_graph(op_type, example)
            quantities = [q for q, _ in archcalc.explain(graph, graph.nodes[-1].name, batch=batch)]
            repeated = {q for q in quantities if quantities.count(q) > 1 and not q.startswith("receptive field")}
            assert not repeated, (op_type, example.attrs, repeated)

"""`archcalc explain`: every line's arithmetic evaluates to the figure the analyzer reports."""

from __future__ import annotations

import math
import re

import pytest

import archcalc

ARITHMETIC = re.compile(r"^[\d\s+\-*/().]*(?:(?:floor|ceil)[\d\s+\-*/().]*)*$")


def _checked_clauses(text):
    """(expression, value) for every ``... = <arithmetic> = <int>`` clause of a line."""
    for clause in text.split("; "):
        clause = re.sub(r" \([a-z][^()]*\)$", "", clause)  # a trailing remark such as "(in place ...)"
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
    assert lines["weights"] == "f * (c/groups) * prod(k) = 64 * 3 * 3*3 = 1728"
    assert lines["MACs"] == "f * (c/groups) * prod(k) * prod(out) = 64 * 3 * 3*3 * 224*224 = 86704128"
    assert lines["receptive field (height)"].startswith("r = r_in + (k'-1)*jump_in = 1 + (3-1)*1 = 3")


def test_explain_ceil_mode_drop_and_grouped_conv():
    lines = dict(archcalc.explain("googlenet", "pool1"))
    assert lines["output height"] == "ceil((112 + 0 + 0 - 1*(3-1) - 1) / 2) + 1 = 56"
    lines = dict(archcalc.explain("alexnet-grouped", "conv2"))
    assert lines["weights"] == "f * (c/groups) * prod(k) = 256 * (96/2) * 5*5 = 307200"

"""The figures table (archcalc.figures) is the one list every output reads."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

import archcalc
from archcalc import figures
from archcalc.cli import cli
from archcalc.report import fold


@pytest.fixture(scope="module")
def resnet18():
    return archcalc.analyze("resnet18", batch=2)


def test_every_figure_reaches_every_format_that_carries_it(resnet18):
    row = resnet18.layer("layer1.0.bn1")
    layer_json = row.to_dict()
    header = resnet18.to_csv().splitlines()[0].split(",")
    for figure in figures.LAYER_FIGURES:
        assert (figure.name in layer_json) == ("json" in figure.formats), figure.name
        assert (figure.name in header) == ("csv" in figure.formats), figure.name
        value = getattr(row, figure.name)
        assert value == row.figure(figure.name)
        if "json" in figure.formats:
            assert layer_json[figure.name] == (list(value) if figure.kind == "shape" else value)
    totals = resnet18.totals.to_dict()
    assert list(totals) == [f.name for f in figures.TOTAL_FIGURES]
    with pytest.raises(AttributeError, match="no attribute or figure 'nonsense'"):
        row.nonsense  # noqa: B018


def test_params_are_pytorchs_and_buffers_their_own_figure(resnet18):
    # torchvision documents resnet18 as 11,689,512 params; its 20 batchnorms hold 2c running statistics each
    t = resnet18.totals
    assert (t.params, t.params_trainable, t.buffers) == (11_689_512, 11_689_512, 9_600)
    bn = resnet18.layer("bn1")
    assert (bn.params, bn.params_weights_only, bn.buffers) == (2 * 64, 0, 2 * 64)
    conv = resnet18.layer("conv1")
    assert (conv.params, conv.params_weights_only, conv.buffers) == (64 * 3 * 7 * 7, 64 * 3 * 7 * 7, 0)
    fc = resnet18.layer("fc")
    assert (fc.params, fc.params_weights_only) == (512 * 1000 + 1000, 512 * 1000)
    # training memory stores the buffers too, but gives them no gradient (sgd: no optimizer state)
    stored = t.activations // 2
    assert t.lecture_training_bytes == (t.params + t.buffers + t.params + 2 * 2 * stored) * 4


@pytest.mark.parametrize("model, depth", [("resnet50", 1), ("resnet50", 2), ("googlenet", 1)])
def test_folded_rows_add_up_to_the_totals(model, depth):
    analysis = archcalc.analyze(model)
    rows = fold(analysis.layers, depth)
    assert len(rows) < len(analysis.layers)
    t = analysis.totals
    for name in ("params", "params_weights_only", "buffers", "macs", "flops", "other_ops"):
        assert sum(getattr(r, name) for r in rows) == getattr(t, name), name
    # activations fold as they total: the outputs that need storage
    assert sum(r.activations for r in rows if r.stores_output) == t.activations
    assert sum(r.activation_bytes for r in rows if r.stores_output) == t.activation_bytes
    assert sum(r.layers for r in rows) == len(analysis.layers)
    block = next(r for r in rows if r.type == "block")
    members = [r for r in analysis.layers if r.scope[:depth] == (*block.scope, block.name.split(".")[-1])]
    assert block.layers == len(members)
    assert block.output_shape == members[-1].output_shape
    assert block.summary.startswith(f"{len(members)} layers: ")


def test_depth_folds_json_and_csv_too():
    runner = CliRunner()
    done = runner.invoke(cli, ["report", "resnet18", "--format", "json", "--depth", "1"])
    data = json.loads(done.output)
    assert data["depth"] == 1
    layer1 = next(r for r in data["layers"] if r["name"] == "layer1")
    assert (layer1["type"], layer1["layers"], layer1["output_shape"]) == ("block", 14, [64, 56, 56])
    assert sum(r["params"] for r in data["layers"]) == data["totals"]["params"] == 11_689_512
    done = runner.invoke(cli, ["report", "resnet18", "--format", "csv", "--depth", "1"])
    rows = list(csv.DictReader(io.StringIO(done.output)))
    assert [r["name"] for r in rows if r["type"] == "block"] == ["layer1", "layer2", "layer3", "layer4"]
    assert sum(int(r["buffers"]) for r in rows) == 9_600


def test_comparison_ratios_are_exact_and_the_table_shows_them():
    from fractions import Fraction

    from archcalc.render.format import ratio
    from archcalc.report import Comparison

    naive, reduced = archcalc.analyze("inception-naive"), archcalc.analyze("inception-reduced")
    rows = {figure.name: (values, ratios) for figure, values, ratios in Comparison((naive, reduced)).rows()}
    assert "params_trainable" not in rows and {"params", "buffers", "macs", "training_bytes"} <= set(rows)
    values, ratios = rows["macs"]
    assert values == [854_196_224, reduced.totals.macs] and ratios == [None, Fraction(reduced.totals.macs, 854_196_224)]
    assert rows["buffers"][1] == [None, None]  # no ratio to a zero
    assert ratio(Fraction(1, 3)) == "0.33x" and ratio(Fraction(10**400, 3)).endswith(".33x")
    done = CliRunner().invoke(cli, ["compare", "inception-naive", "inception-reduced"], env={"COLUMNS": "200"})
    assert done.exit_code == 0 and f"({ratio(ratios[1])})" in done.output

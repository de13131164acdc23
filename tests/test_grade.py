"""Grading filled-in tables: right, wrong, blank and unreadable cells; CSV, JSON and Gradescope."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

import archcalc
from archcalc.errors import ArchcalcError
from archcalc.grade import grade, parse_count, parse_shape, read_answers, template

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def rows_from_report(model, columns=("output_shape", "params", "macs", "activations")):
    """A correct answer table, written from the report's CSV as a student would copy it."""
    import csv
    import io

    analysis = archcalc.analyze(archcalc.load(model))
    return [{"name": r["name"], **{c: r[c] for c in columns}} for r in csv.DictReader(io.StringIO(analysis.to_csv()))]


@pytest.mark.parametrize(("cell", "value", "tolerance"), [
    ("1,728", 1728, 0), ("(3*3*3)*64 = 1,728", 1728, 0), ("224*224*64=3.2M", 3_200_000, 50_000),
    ("800K", 800_000, 50_000), ("25K", 25_000, 500), ("1.6M", 1_600_000, 50_000), ("7x7x512x4096", 102_760_448, 0),
    (4096, 4096, 0), ("15.47G", 15_470_000_000, 5_000_000),
])
def test_count_cells(cell, value, tolerance):
    assert parse_count(cell) == (Decimal(value), Decimal(tolerance))


def test_the_lectures_vgg16_memory_column_grades_right():
    """The slide's own rounded figures (3.2M, 800K, 25K...) are all accepted for VGG16's activations."""
    slide = {"input": "150K", "conv1_1": "3.2M", "pool1": "800K", "conv2_1": "1.6M", "pool2": "400K", "conv3_1": "800K",
             "pool3": "200K", "conv4_1": "400K", "pool4": "100K", "conv5_1": "100K", "pool5": "25K", "fc6": "4096", "fc8": "1000"}
    result = grade("vgg16", [{"name": k, "memory": v} for k, v in slide.items()])
    assert result.score == result.max_score == len(slide)


def test_shapes():
    assert parse_shape("(6,28,28)") == parse_shape("6x28x28") == parse_shape("[6, 28, 28]") == (6, 28, 28)
    assert parse_shape("(4096,)") == parse_shape("4096") == parse_shape(4096) == (4096,)


def test_a_correct_table_scores_full():
    result = grade("lenet5", rows_from_report("lenet5"))
    assert result.score == result.max_score == 4 * 13
    assert result.unanswered_layers == []


def test_planted_wrong_cells():
    rows = rows_from_report("lenet5")
    by_name = {r["name"]: r for r in rows}
    by_name["conv2"]["output_shape"] = "16x12x12"
    by_name["fc1"]["macs"] = "96000"  # FLOPs
    by_name["fc3"]["activations"] = "ten"
    by_name["pool1"]["params"] = ""
    result = grade("lenet5", rows)
    assert result.max_score - result.score == 4
    cells = {(row.layer, cell.column): cell for row in result.rows for cell in row.cells}
    assert cells[("conv2", "output_shape")].status == "wrong" and cells[("conv2", "output_shape")].expected == "16x10x10"
    assert "FLOPs" in cells[("fc1", "macs")].note
    assert cells[("fc3", "activations")].status == "unparseable"
    assert cells[("pool1", "params")].status == "blank"


def test_weights_only_and_channels_last_are_accepted_with_a_note():
    result = grade("vgg16", [{"name": "conv1_1", "params": "1,728", "shape": "224x224x64"}])
    params, shape = result.rows[0].cells
    assert params.right and "weights only" in params.note
    assert shape.right and "channels-last" in shape.note


def test_rows_by_order_and_unknown_names():
    ordered = [{k: v for k, v in r.items() if k != "name"} for r in rows_from_report("lenet5")][:3]
    result = grade("lenet5", ordered)
    assert [row.layer for row in result.rows] == ["input", "conv1", "relu1"] and result.score == result.max_score
    result = grade("lenet5", [{"name": "conv3", "params": "1"}])
    assert result.rows[0].problem == "no layer 'conv3' in lenet5; did you mean 'conv2'?"


def test_explain_adds_the_arithmetic():
    result = grade("lenet5", [{"name": "conv2", "output_shape": "16x12x12", "params": "1"}], explain=True)
    shape, params = result.rows[0].cells
    assert any("floor((14 + 0 + 0 - 1*(5-1) - 1) / 1) + 1 = 10" in line for line in shape.explanation)
    assert any("16 * 6 * 5*5 = 2400" in line for line in params.explanation)


def test_gradescope_format():
    result = grade("lenet5", read_answers(EXAMPLES / "lenet5_answers.csv"), explain=True)
    out = result.to_gradescope()
    assert set(out) == {"score", "max_score", "tests"}
    assert out["score"] == sum(t["score"] for t in out["tests"]) and out["max_score"] == 28
    conv2 = next(t for t in out["tests"] if t["name"] == "conv2")
    assert conv2["score"] == 3 and "output_shape: 16x12x12 is wrong; the answer is 16x10x10" in conv2["output"]
    json.dumps(out)


def test_the_example_answers():
    result = grade("lenet5", read_answers(EXAMPLES / "lenet5_answers.csv"))
    assert (result.score, result.max_score) == (25, 28)


def test_malformed_inputs(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,params\nfc3,(10,),x\n")
    result = grade("lenet5", read_answers(bad))
    assert "more cells than the header" in result.rows[0].problem
    none = tmp_path / "none.csv"
    none.write_text("name,favourite colour\nconv1,blue\n")
    with pytest.raises(ArchcalcError, match="no column to grade"):
        grade("lenet5", read_answers(none))
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(ArchcalcError, match="not valid JSON"):
        read_answers(broken)
    with pytest.raises(ArchcalcError, match="cannot be read"):
        read_answers(tmp_path / "missing.csv")
    js = tmp_path / "answers.json"
    js.write_text(json.dumps({"layers": [{"name": "conv1", "output_shape": [6, 28, 28], "params": 456}]}))
    assert grade("lenet5", read_answers(js)).score == 2


def test_template_is_blank_and_regradable(tmp_path):
    text = template("lenet5")
    assert text.splitlines()[0] == "name,type,output_shape,params,macs,activations"
    path = tmp_path / "t.csv"
    path.write_text(text)
    result = grade("lenet5", read_answers(path))
    assert result.score == 0 and all(c.status == "blank" for r in result.rows for c in r.cells)


def test_cli_grade_and_template(tmp_path):
    from click.testing import CliRunner

    from tests.test_cli import _Main

    runner = CliRunner()
    out = runner.invoke(_Main(), ["grade", "lenet5", str(EXAMPLES / "lenet5_answers.csv")])
    assert out.exit_code == 0 and "25 / 28 right" in out.stdout and "16x12x12 → 16x10x10" in out.stdout
    out = runner.invoke(_Main(), ["grade", "lenet5", str(EXAMPLES / "lenet5_answers.csv"), "--format", "gradescope"])
    assert json.loads(out.stdout)["score"] == 25
    out = runner.invoke(_Main(), ["template", "resnet18", "--columns", "params,macs"])
    assert out.exit_code == 0 and out.stdout.startswith("name,type,params,macs\ninput,input,,")
    out = runner.invoke(_Main(), ["grade", "lenet5", str(tmp_path / "nope.csv")])
    assert out.exit_code == 2 and out.stderr.startswith("error: answers") and len(out.stderr.splitlines()) == 1

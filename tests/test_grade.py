"""Grading filled-in tables: right, wrong, blank and unreadable cells; CSV, JSON and Gradescope.

The maximum score is fixed by the rows and columns asked for, never by the answers; a file
that cannot be read is one clean error line; every cell, however odd, gets a verdict.
"""

from __future__ import annotations

import contextlib
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import archcalc
from archcalc.errors import ArchcalcError
from archcalc.grade import (
    DEFAULT_COLUMNS,
    MAX_CELL_CHARS,
    Unparseable,
    asked_rows,
    grade,
    parse_count,
    parse_shape,
    read_answers,
    read_template,
    template,
)
from tests.helpers import _Main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LENET_LECTURE_ROWS = ["conv1", "pool1", "conv2", "pool2", "fc1", "fc2", "fc3"]


def rows_from_report(model, columns=DEFAULT_COLUMNS):
    """A correct answer table, written from the report's CSV as a student would copy it."""
    import csv
    import io

    analysis = archcalc.analyze(archcalc.load(model))
    return [{"name": r["name"], **{c: r[c] for c in columns}} for r in csv.DictReader(io.StringIO(analysis.to_csv()))]


def lecture_answers(model="lenet5"):
    return [row for row in rows_from_report(model) if row["name"] in asked_names(model)]


def asked_names(model, rows="lecture"):
    return [r.name for r in asked_rows(archcalc.analyze(model), rows)]


def cli(*args):
    result = CliRunner().invoke(_Main(), list(args))
    return result.exit_code, result.stdout, result.stderr


def cells_of(result):
    return {(row.layer, cell.column): cell for row in result.rows for cell in row.cells}


# ---------------------------------------------------------------- reading cells


@pytest.mark.parametrize(("cell", "value", "tolerance"), [
    ("1,728", 1728, 0), ("(3*3*3)*64 = 1,728", 1728, 0), ("224*224*64=3.2M", 3_200_000, 50_000),
    ("800K", 800_000, 50_000), ("25K", 25_000, 500), ("1.6M", 1_600_000, 50_000), ("7x7x512x4096", 102_760_448, 0),
    (4096, 4096, 0), ("15.47G", 15_470_000_000, 5_000_000),
    ("3,2M", 3_200_000, 50_000),  # a decimal comma (European Excel)
    ("102,760,448", 102_760_448, 0), ("1 728", 1728, 0), ("28^2*6", 4704, 0), ("6×28²", 4704, 0), ("28**2", 784, 0),
])
def test_count_cells(cell, value, tolerance):
    assert parse_count(cell) == (Decimal(value), Decimal(tolerance))


@pytest.mark.parametrize(("cell", "reason"), [
    ("+".join(["1"] * 40_000), "an expression of 40,000 numbers; at most 200"),
    ("(" * 30 + "1" + ")" * 30, "parentheses 30 deep; at most 20"),
    ("9" * 5000, "a number of 5,000 digits; at most 40"),
    (",".join(["999"] * 20), "a number of 60 digits; at most 40"),  # grouped: 999,999,...
    ("x" * (MAX_CELL_CHARS + 1), f"the cell has {MAX_CELL_CHARS + 1:,} characters; at most 131,072"),
    ("2^99", "an exponent of 99; at most 16"),
    ("99999999999*" * 30 + "9", "a value above 2**256"),
    ("6,28,28", ""), ("ten", ""), ("a\x00b", ""), ("6x28x28²x", ""), ("inf", ""), ("٣", ""),
])
def test_unreadable_count_cells_say_why_and_never_raise_anything_else(cell, reason):
    with pytest.raises(Unparseable) as caught:
        parse_count(cell)
    assert caught.value.reason == reason
    for bad in (float("nan"), float("inf"), True):
        with pytest.raises(Unparseable):
            parse_count(bad)


def test_shapes():
    assert parse_shape("(6,28,28)") == parse_shape("6x28x28") == parse_shape("[6, 28, 28]") == (6, 28, 28)
    assert parse_shape("(4096,)") == parse_shape("4096") == parse_shape(4096) == (4096,)
    assert parse_shape("(None, 148, 148, 16)") == (-1, 148, 148, 16)
    assert parse_shape("[-1, 16, 148, 148]") == (-1, 16, 148, 148) == parse_shape([None, 16, 148, 148])
    for bad in ("6x28x28²", "٣x3", "six", "", "[6, y]", "x" * (MAX_CELL_CHARS + 1), [1.5, 2]):
        with pytest.raises(Unparseable):
            parse_shape(bad)


@pytest.mark.parametrize(("cell", "note"), [
    ("(None, 28, 28, 6)", "leading batch axis dropped; read as channels-last (H, W, C)"),  # Keras
    ("[-1, 6, 28, 28]", "leading batch axis dropped"),  # torchsummary
    ("[1, 6, 28, 28]", "leading batch axis dropped"),  # torchinfo, batch 1
    ("(6, 28, 28)", ""),
    ("[28x28x6]", "read as channels-last (H, W, C); archcalc writes (C, H, W)"),
])
def test_shapes_pasted_from_other_tools_are_read(cell, note):
    result = grade("lenet5", [{"name": "conv1", "output_shape": cell}], columns=("output_shape",))
    shape = cells_of(result)[("conv1", "output_shape")]
    assert shape.right and shape.note.startswith(note)


def test_a_batch_axis_is_dropped_only_when_the_rank_says_there_is_one():
    wrong = grade("lenet5", [{"name": "conv1", "shape": "[6, -1, 28]"}, {"name": "fc1", "shape": "[3, 120]"},
                             {"name": "fc2", "shape": "[8, 84]"}], columns=("output_shape",), batch=8)
    cells = cells_of(wrong)
    assert cells[("conv1", "output_shape")].note == "None/-1 only as a leading batch axis"
    assert cells[("fc1", "output_shape")].status == "wrong"  # 3 is neither None, -1, 1 nor the batch
    assert cells[("fc2", "output_shape")].right  # the batch size itself is a batch axis


# ---------------------------------------------------------------- the score is fixed by the template


def test_the_lectures_vgg16_memory_column_grades_right():
    """The slide's own rounded figures (3.2M, 800K, 25K...) are all accepted for VGG16's activations."""
    slide = {"input": "150K", "conv1_1": "3.2M", "pool1": "800K", "conv2_1": "1.6M", "pool2": "400K", "conv3_1": "800K",
             "pool3": "200K", "conv4_1": "400K", "pool4": "100K", "conv5_1": "100K", "pool5": "25K", "fc6": "4096", "fc8": "1000"}
    result = grade("vgg16", [{"name": k, "memory": v} for k, v in slide.items()], rows=list(slide), columns=("activations",))
    assert result.score == result.max_score == len(slide)


def test_a_correct_table_scores_full():
    result = grade("lenet5", lecture_answers())
    assert result.score == result.max_score == 4 * 7
    assert result.unanswered_layers == [] and [row.layer for row in result.rows] == LENET_LECTURE_ROWS
    every = grade("lenet5", rows_from_report("lenet5"), rows="all")
    assert every.score == every.max_score == 4 * 13


def test_a_row_pasted_fifty_times_counts_once():
    """One right row pasted 50 times turned 4/20 into 200/216; now the pasted copies score nothing."""
    right = next(row for row in rows_from_report("lenet5") if row["name"] == "conv1")
    result = grade("lenet5", [right] * 50)
    assert (result.score, result.max_score) == (4, 28)
    repeats = [row for row in result.rows if row.problem]
    assert len(repeats) == 49 and all(row.max_score == 0 for row in repeats)
    assert repeats[0].problem == "row 2: conv1 is answered again (first at row 1); only row 1 is graded"


def test_a_repeated_layer_names_both_lines_of_the_file(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("name,params\nconv1,456\nfc1,1\nCONV1,456\n")
    result = grade("lenet5", read_answers(path), columns=("params",))
    assert result.rows[-1].problem == "line 4: conv1 is answered again (first at line 2); only line 2 is graded"
    assert (result.score, result.max_score) == (1, 7)


def test_answering_one_layer_of_many_scores_out_of_all_of_them():
    result = grade("vgg16", [{"name": "conv1_1", "params": "1,792"}], columns=("params",))
    assert (result.score, result.max_score) == (1, len(asked_names("vgg16")))
    assert len(result.unanswered_layers) == len(asked_names("vgg16")) - 1
    missing = next(row for row in result.rows if row.layer == "fc8")
    assert missing.note == "no row for this layer in the answers" and missing.cells[0].status == "blank"


def test_unknown_and_unasked_rows_are_reported_and_score_nothing():
    answers = [{"name": "conv3", "params": "1"}, {"name": "relu1", "params": "0"}, {"name": "", "params": "0"},
               {"name": "conv1", "params": "456"}]
    result = grade("lenet5", answers, columns=("params",))
    problems = [row.problem for row in result.rows if row.problem]
    assert problems == ["row 1: no layer 'conv3' in lenet5; did you mean 'conv2'?; not graded",
                        "row 2: relu1 is not one of the rows asked for (lecture); not graded",
                        "row 3: no layer name; not graded"]
    assert (result.score, result.max_score) == (1, 7)


def test_columns_not_asked_for_score_nothing_and_missing_ones_are_blank():
    result = grade("lenet5", [{"name": "conv1", "params": "456", "flops": "1"}], columns=("params", "macs"))
    assert result.max_score == 2 * 7 and result.score == 1
    assert result.notes == ["column(s) flops not asked for: not graded", "column(s) macs missing from the answers: graded as blank"]


def test_rows_by_order_follow_the_asked_rows():
    ordered = [{k: v for k, v in r.items() if k != "name"} for r in lecture_answers()][:3]
    result = grade("lenet5", ordered)
    assert [row.layer for row in result.rows[:3]] == ["conv1", "pool1", "conv2"] and result.score == 12
    result = grade("lenet5", [{k: v for k, v in r.items() if k != "name"} for r in rows_from_report("lenet5")][:3], rows="all")
    assert [row.layer for row in result.rows[:3]] == ["input", "conv1", "relu1"] and result.score == 12
    too_many = grade("lenet5", [{"params": "0"}] * 8, columns=("params",))
    assert too_many.rows[-1].problem == "row 8: the template has only 7 rows; not graded"


def test_the_lecture_rows_come_from_the_ops_windows():
    assert asked_names("lenet5") == LENET_LECTURE_ROWS  # the lecture's own LeNet-5 table
    vgg = asked_names("vgg16")
    assert len(vgg) == 13 + 5 + 3 and "input" not in vgg  # the slide's rows: 13 conv, 5 pool, 3 FC
    types = {archcalc.analyze("resnet18").layer(name).type for name in asked_names("resnet18")}
    assert types == {"conv", "maxpool", "global_avgpool", "linear"}  # no batchnorm, relu, add or flatten rows
    assert asked_names("lenet5", "all")[0] == "input" and len(asked_names("lenet5", "all")) == 13
    with pytest.raises(ArchcalcError, match=r"template row 'conv9' is not a layer of lenet5; did you mean 'conv2'\?"):
        asked_rows(archcalc.analyze("lenet5"), ["conv9"])
    with pytest.raises(ArchcalcError, match="rows must be one of lecture, all"):
        grade("lenet5", [{"name": "conv1", "params": 1}], rows="some")


def test_template_has_the_lecture_rows_and_blank_cells_elsewhere_cost_nothing(tmp_path):
    text = template("lenet5")
    assert text.splitlines()[0] == "name,type,output_shape,params,macs,activations"
    assert [line.split(",")[0] for line in text.splitlines()[1:]] == LENET_LECTURE_ROWS
    path = tmp_path / "t.csv"
    path.write_text(text)
    result = grade("lenet5", read_answers(path))
    assert result.score == 0 and result.max_score == 28 and all(c.status == "blank" for r in result.rows for c in r.cells)
    assert read_template(path) == (LENET_LECTURE_ROWS, list(DEFAULT_COLUMNS))
    assert len(template("lenet5", rows="all").splitlines()) == 14
    with pytest.raises(ArchcalcError, match="unknown column 'parms'; did you mean 'params'"):
        template("lenet5", ("parms",))


def test_weights_only_and_channels_last_are_accepted_with_a_note():
    result = grade("vgg16", [{"name": "conv1_1", "params": "1,728", "shape": "224x224x64"}], columns=("params", "output_shape"))
    params, shape = result.rows[0].cells
    assert params.right and "weights only" in params.note
    assert shape.right and "channels-last" in shape.note


def test_planted_wrong_cells():
    rows = lecture_answers()
    by_name = {r["name"]: r for r in rows}
    by_name["conv2"]["output_shape"] = "16x12x12"
    by_name["fc1"]["macs"] = "96000"  # FLOPs
    by_name["fc3"]["activations"] = "ten"
    by_name["pool1"]["params"] = ""
    result = grade("lenet5", rows)
    assert result.max_score - result.score == 4
    cells = cells_of(result)
    assert cells[("conv2", "output_shape")].status == "wrong" and cells[("conv2", "output_shape")].expected == "16x10x10"
    assert "FLOPs" in cells[("fc1", "macs")].note
    assert cells[("fc3", "activations")].status == "unparseable"
    assert cells[("pool1", "params")].status == "blank"


def test_explain_adds_the_arithmetic():
    result = grade("lenet5", [{"name": "conv2", "output_shape": "16x12x12", "params": "1"}], explain=True,
                   columns=("output_shape", "params"))
    shape, params = cells_of(result)[("conv2", "output_shape")], cells_of(result)[("conv2", "params")]
    assert any("floor((14 + 0 + 0 - 1*(5-1) - 1) / 1) + 1 = 10" in line for line in shape.explanation)
    assert any("16 * 6 * 5*5 = 2,400" in line for line in params.explanation)


# ---------------------------------------------------------------- output: answers hidden from students


def test_gradescope_hides_the_answers_by_default():
    result = grade("lenet5", read_answers(EXAMPLES / "lenet5_answers.csv"), explain=True)
    out = result.to_gradescope()
    assert set(out) == {"score", "max_score", "tests"}
    assert out["score"] == sum(t["score"] for t in out["tests"]) and out["max_score"] == 28
    assert out["max_score"] == sum(t["max_score"] for t in out["tests"])
    conv2 = next(t for t in out["tests"] if t["name"] == "conv2")
    assert conv2["score"] == 3 and conv2["output"] == "output_shape: 16x12x12 is wrong"
    text = json.dumps(out)
    assert "16x10x10" not in text and "the answer is" not in text and "floor(" not in text
    fc1 = next(t for t in out["tests"] if t["name"] == "fc1")
    assert fc1["output"].startswith("macs: 96000 is wrong\n")  # "twice the answer" would give it away
    assert "twice the answer" in json.dumps(result.to_gradescope(show_answers=True))
    shown = result.to_gradescope(show_answers=True)
    conv2 = next(t for t in shown["tests"] if t["name"] == "conv2")
    assert "output_shape: 16x12x12 is wrong; the answer is 16x10x10" in conv2["output"] and "floor(" in conv2["output"]
    hidden = json.dumps(result.to_dict(show_answers=False))
    assert '"expected"' not in hidden and '"explanation"' not in hidden and '"expected"' in json.dumps(result.to_dict())


def test_the_example_answers():
    result = grade("lenet5", read_answers(EXAMPLES / "lenet5_answers.csv"))
    assert (result.score, result.max_score) == (25, 28)


# ---------------------------------------------------------------- files that cannot be read


@pytest.mark.parametrize(("content", "message"), [
    (b"", "answers '{}' is empty"),
    (b"\n \n", "answers '{}' is empty"),
    (b"name,params\x00\n", "answers '{}' is binary (it has NUL bytes), not CSV or JSON text; export the sheet as CSV"),
    ("name,params\nconv1,456\nfc1,\xe9\n".encode("latin-1"),
     "answers '{}' is not UTF-8 text (byte 0xe9 at offset 26); save it as 'CSV UTF-8'"),
    (b"\xff\xfen\x00\xd8", "answers '{}' starts like UTF-16 text but is not; save it as 'CSV UTF-8'"),
    (b"a" * (8 * 2**20 + 1), "answers '{}' is larger than 8 MiB; an answer table is a few KiB"),
    (b"a,b\n1,2\n", "answers '{}': no usable header: the first line should name columns (name and some of output_shape, "
                    "params, params_weights_only, buffers, macs, flops, activations, activation_bytes), got 'a,b'"),
    (b"conv1,6x28x28,456\n", "answers '{}': no usable header"),
    (b"name,params\n", "answers '{}': no rows under the header line"),
    (b"name,params\n" + b"conv1,1\n" * 10_001, "answers '{}': more than 10,000 rows; an answer table has one row per layer"),
    (b"name,params,params\nconv1,1,2\n", "answers '{}': the header names column 'params' twice; keep one"),
    (b"name,params,parameters\nconv1,1,2\n", "answers '{}': columns 'params' and 'parameters' both give params; keep one"),
    (b'name,params\nconv1,"456\n', "answers '{}': line 2: not valid CSV: unexpected end of data"),
])
def test_unreadable_files_are_one_clean_error(tmp_path, content, message):
    path = tmp_path / "a.csv"
    path.write_bytes(content)
    with pytest.raises(ArchcalcError) as caught:
        grade("lenet5", read_answers(path))
    assert str(caught.value).startswith(message.format(path)) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("content", "message"), [
    ("[{", "not valid JSON: Expecting property name enclosed in double quotes at line 1"),
    ("[" * 100_000, "not valid JSON: nested too deeply"),
    ('[{"name": "conv1", "params": 1, "params": 456}]', "key 'params' appears twice in one object"),
    ("[]", "no rows"),
    ("[" + ",".join(["{}"] * 10_001) + "]", "10,001 rows, more than 10,000; an answer table has one row per layer"),
    ('{"layers": 5}', 'JSON must be a list of rows (objects) or {"layers": [...]}'),
])
def test_unreadable_json_is_one_clean_error(tmp_path, content, message):
    path = tmp_path / "a.json"
    path.write_text(content)
    with pytest.raises(ArchcalcError, match="^answers '.*a.json': " + re.escape(message)):
        read_answers(path)


def test_odd_files_that_can_be_read(tmp_path):
    semicolons = tmp_path / "excel.csv"  # European Excel: semicolons, decimal commas, a BOM, CRLF, trailing empty cells
    semicolons.write_bytes("\ufeffname;output_shape;params;macs;activations;;\r\nconv1;6x28x28;456;352,8K;4704;;\r\n"
                           .encode())
    answers = read_answers(semicolons)
    assert answers.notes == ["read as semicolon-separated"] and answers.locations == ["line 2"]
    assert grade("lenet5", answers).score == 4
    declared = tmp_path / "sep.csv"  # Excel's sep= line
    declared.write_text("sep=|\nname|params\nconv1|456\nfc1|oops\n")
    answers = read_answers(declared)
    assert answers.notes == ["read as pipe-separated"] and answers.locations == ["line 3", "line 4"]
    assert grade("lenet5", answers, columns=("params",)).score == 1
    utf16 = tmp_path / "unicode.txt"  # Excel's "Unicode Text": UTF-16 with a BOM, tab-separated
    utf16.write_bytes("name\tparams\nconv1\t456\n".encode("utf-16"))
    assert grade("lenet5", read_answers(utf16), columns=("params",)).score == 1
    tabs = tmp_path / "tabs.csv"
    tabs.write_text("name\tparams\nconv1\t456\n")
    assert grade("lenet5", read_answers(tabs), columns=("params",)).score == 1
    long = tmp_path / "long.csv"
    long.write_text("name,params,macs\nconv1," + "1+" * 40_000 + "1," + "9" * 200_000 + "\n")
    cells = cells_of(grade("lenet5", read_answers(long), columns=("params", "macs")))
    assert cells[("conv1", "params")].note == "an expression of 40,001 numbers; at most 200"
    assert cells[("conv1", "macs")].note == "the cell has 200,000 characters; at most 131,072"
    assert len(cells[("conv1", "macs")].given) < 100
    extra = tmp_path / "extra.csv"
    extra.write_text("name,params\nfc3,(10,),x\n")
    assert "more cells than the header" in grade("lenet5", read_answers(extra)).rows[-1].problem
    js = tmp_path / "answers.json"
    js.write_text('{"layers": [{"name": "conv1", "output_shape": [6, 28, 28], "params": 456}, {"name": "fc1", "params": NaN}]}')
    result = grade("lenet5", read_answers(js), columns=("output_shape", "params"))
    assert result.score == 2 and cells_of(result)[("fc1", "params")].status == "unparseable"
    with pytest.raises(ArchcalcError, match="cannot be read"):
        read_answers(tmp_path / "missing.csv")


# ---------------------------------------------------------------- the command line


def test_cli_grade_and_template(tmp_path):
    code, out, _ = cli("grade", "lenet5", str(EXAMPLES / "lenet5_answers.csv"))
    assert code == 0 and "25 / 28 right" in out and "16x12x12 → 16x10x10" in out
    code, out, _ = cli("grade", "lenet5", str(EXAMPLES / "lenet5_answers.csv"), "--format", "gradescope")
    assert code == 0 and json.loads(out)["score"] == 25 and "16x10x10" not in out
    code, out, _ = cli("grade", "lenet5", str(EXAMPLES / "lenet5_answers.csv"), "--format", "gradescope", "--show-answers")
    assert "the answer is 16x10x10" in out
    code, out, _ = cli("grade", "lenet5", str(EXAMPLES / "lenet5_answers.csv"), "--hide-answers")
    assert code == 0 and "25 / 28 right" in out and "16x10x10" not in out
    code, _, err = cli("grade", "lenet5", str(EXAMPLES / "lenet5_answers.csv"), "--format", "gradescope", "--explain")
    assert code == 2 and "--explain writes out the answers; add --show-answers" in err
    code, out, _ = cli("template", "resnet18", "--columns", "params,macs", "--rows", "all")
    assert code == 0 and out.startswith("name,type,params,macs\ninput,input,,")
    code, out, _ = cli("template", "lenet5")
    assert code == 0 and out.splitlines()[1] == "conv1,conv,,,,"
    code, _, err = cli("grade", "lenet5", str(tmp_path / "nope.csv"))
    assert code == 2 and err.startswith("error: answers") and len(err.splitlines()) == 1


def test_cli_grade_with_the_template_handed_out(tmp_path):
    handed_out = tmp_path / "t.csv"
    handed_out.write_text("name,type,params\nconv1,conv,\nrelu1,relu,\n")
    answers = tmp_path / "a.csv"
    answers.write_text("name,params,macs\nconv1,456,1\nrelu1,0,0\nfc1,1,1\n")
    code, out, _ = cli("grade", "lenet5", str(answers), "--template", str(handed_out), "--format", "json")
    result = json.loads(out)
    assert code == 0 and (result["score"], result["max_score"]) == (2, 2) and result["columns"] == ["params"]
    code, _, err = cli("grade", "lenet5", str(answers), "--template", str(handed_out), "--rows", "all")
    assert code == 2 and "--template fixes the rows and columns; drop --rows" in err


def test_cli_bad_options_are_one_line():
    answers = str(EXAMPLES / "lenet5_answers.csv")
    code, _, err = cli("grade", "lenet5", answers, "--columns", "parms")
    assert code == 2 and err == "error: unknown column 'parms'; did you mean 'params'?; columns: output_shape, params, " \
                                "params_weights_only, buffers, macs, flops, activations, activation_bytes\n"
    code, _, err = cli("grade", "lenet5", answers, "--columns", ",")
    assert code == 2 and err.startswith("error: no columns to grade")
    code, _, err = cli("grade", "lenet5", answers, "--rows", "some")
    assert code == 2 and "'some' is not one of 'lecture', 'all'" in err
    with pytest.raises(ArchcalcError, match="answers must be a list of rows"):
        grade("lenet5", "name,params\nconv1,456\n")


def test_cli_columns_default_matches_the_library():
    from archcalc.cli import DEFAULT_GRADE_COLUMNS

    assert DEFAULT_GRADE_COLUMNS == DEFAULT_COLUMNS


def test_markup_in_names_and_cells_is_shown_as_written(tmp_path):
    """A layer name or cell with [/] or [bold] crashed rich (MarkupError) or vanished."""
    path = tmp_path / "a.csv"
    path.write_text("name,output_shape,params\nbranch[/],[bold]6x28x28,1\nconv1,[red]x[/red],[/]\n")
    code, out, err = cli("grade", "lenet5", str(path), "--columns", "output_shape,params")
    assert code == 0, err
    assert "no layer 'branch[/]' in lenet5" in out and "cannot read '[red]x[/red]'" in out and "cannot read '[/]'" in out
    spec = tmp_path / "m.json"
    spec.write_text(json.dumps({"name": "m[/bold]", "input": [1, 8, 8],
                                "layers": [{"type": "conv", "filters": 2, "kernel": 3, "name": "c[x]"}]}))
    path.write_text("name,params\nc[x],20\n")
    code, out, err = cli("grade", str(spec), str(path), "--columns", "params")
    assert code == 0 and "m[/bold]: 1 / 1" in out and "c[x]" in out, err


def test_problem_rows_are_capped_and_counted():
    result = grade("lenet5", [{"name": "conv1", "params": "456"}] * 1000, columns=("params",))
    assert sum(1 for row in result.rows if row.problem) == 50 and (result.score, result.max_score) == (1, 7)
    assert result.notes[-1] == "949 more rows not graded (unknown, unasked or repeated layers) after the first 50"


# ---------------------------------------------------------------- fuzz: only archcalc's own verdicts, never a traceback

_CELL_ALPHABET = st.sampled_from(list("0123456789,.;:xX×*+-^²³()[]{}=KMGkmg eE_'\"/\\") + ["None", "\x00", "\u202f", "٣", "inf"])
_CELLS = st.one_of(st.lists(_CELL_ALPHABET, max_size=30).map("".join), st.text(max_size=30), st.integers(), st.floats(),
                   st.none(), st.booleans(), st.lists(st.one_of(st.integers(), st.none()), max_size=6))
_CONV1 = archcalc.analyze("lenet5").layer("conv1")


@settings(max_examples=300, derandomize=True, deadline=None)
@given(_CELLS)
def test_any_cell_gets_a_verdict(cell):
    from archcalc.grade import COLUMNS, _grade_cell

    for parse in (parse_count, parse_shape):
        with contextlib.suppress(Unparseable):
            parse(cell)
    for column in COLUMNS:
        assert _grade_cell(column, cell, _CONV1).status in {"right", "wrong", "blank", "unparseable"}


_FILES = st.one_of(st.binary(max_size=300),
                   st.text(max_size=300).map(lambda t: ("name,output_shape,params\n" + t).encode("utf-8", "surrogatepass")),
                   st.lists(st.lists(_CELLS.map(str), max_size=4), max_size=8).map(
                       lambda rows: "\n".join(";".join(r) for r in [["name", "shape", "params"], *rows]).encode(
                           "utf-8", "surrogatepass")))


@settings(max_examples=100, derandomize=True, deadline=None)
@given(_FILES, st.sampled_from([".csv", ".json"]))
def test_any_file_is_graded_or_one_clean_error(tmp_path_factory, content, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"answers{suffix}"
    path.write_bytes(content)
    try:
        result = grade("lenet5", read_answers(path))
    except ArchcalcError as error:
        assert len(error.problems) == 1 and "\n" not in error.problems[0]
        return
    assert result.max_score == 28 and 0 <= result.score <= 28


@pytest.mark.parametrize("cell, value, tolerance", [
    ("1.6e3", 1600, 50), ("1.008e4", 10080, 5), ("1.6E+03", 1600, 50), ("4.704e3", 4704, Decimal("0.5")),
    ("2e-1", Decimal("0.2"), Decimal("0.05")), ("1e3", 1000, 500),
])
def test_scientific_notation_is_read_like_an_si_figure(cell, value, tolerance):
    from archcalc.grade import parse_count

    assert parse_count(cell) == (Decimal(value), Decimal(tolerance))


@pytest.mark.parametrize("cell", ["0M", "0K", "0.0G", "0.00M", "00000.0M", "0e3", "0.0e6"])
def test_a_figure_of_zeros_is_exactly_zero(cell):
    from archcalc.grade import parse_count

    assert parse_count(cell) == (Decimal(0), Decimal(0))  # it cannot stand for 352,800 (it did: "0M" rounds anything below 500K)

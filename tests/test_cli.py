"""The command line, through click's CliRunner and as a real process."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from archcalc.cli import cli
from tests.helpers import run_main


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    """Output as to a pipe with no COLUMNS, whatever the shell running the tests exports."""
    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


run = run_main


def test_report_vgg16_table_shows_the_lecture_figures():
    code, out, _ = run("report", "vgg16")
    assert code == 0
    assert "conv1_1" in out and "1,728" in out and "138,357,544" in out and "138,344,128" in out
    assert "15,237,608 values = 58.1 MiB" in out
    assert "15,470,264,320 multiply-accumulates" in out


def test_report_json_contract():
    code, out, _ = run("report", "lenet5", "--format", "json", "--batch", "2")
    data = json.loads(out)
    assert code == 0 and data["model"] == "lenet5" and data["input_shape"] == [3, 32, 32]
    layer = data["layers"][1]
    for key in ("name", "type", "inputs", "output_shape", "params", "params_trainable", "macs", "flops", "other_ops",
                "activations", "activation_bytes", "receptive_field"):
        assert key in layer
    assert set(layer["receptive_field"]) >= {"size", "stride", "padding"}
    assert layer["name"] == "conv1" and layer["output_shape"] == [6, 28, 28]
    assert layer["macs"] == 2 * 6 * 3 * 25 * 28 * 28 and layer["flops"] == 2 * layer["macs"]
    assert layer["activations"] == 2 * 6 * 28 * 28
    assert set(data["totals"]) >= {"params", "params_trainable", "params_weights_only", "macs", "flops", "activations",
                                   "activation_bytes", "training_bytes"}
    assert all(isinstance(v, int) for v in data["totals"].values())


def test_report_csv_and_markdown():
    code, out, _ = run("report", "lenet5", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows[1]["name"] == "conv1" and rows[1]["params"] == str(6 * 3 * 25 + 6)
    assert rows[1]["output_shape"] == "6x28x28"
    code, out, _ = run("report", "resnet18", "--format", "markdown", "--depth", "1")
    assert code == 0 and "| layer1 | block 14 layers: 0.conv1 .. 1.relu2 |" in out  # 2 blocks of 7
    assert "**11,689,512**" in out  # torchvision's count: running statistics are buffers


def test_report_depth_folds_blocks_and_keeps_totals():
    code, folded, _ = run("report", "resnet50", "--format", "json", "--depth", "1")
    assert code == 0
    from archcalc import analyze, load
    from archcalc.report import fold

    analysis = analyze(load("resnet50"))
    rows = fold(analysis.layers, 1)
    assert [r.name for r in rows if r.type == "block"] == ["layer1", "layer2", "layer3", "layer4"]
    assert sum(r.params for r in rows) == analysis.totals.params
    assert sum(r.macs for r in rows) == analysis.totals.macs
    assert len(fold(analysis.layers, 2)) > len(rows)


def test_report_stdin_and_dtype_optimizer():
    spec = json.dumps({"name": "s", "input": [1, 4, 4], "layers": [{"type": "conv", "filters": 2, "kernel": 3}]})
    code, out, _ = run("report", "-", "--format", "json", "--dtype", "float16", "--optimizer", "adam", input=spec)
    data = json.loads(out)
    params, acts = 2 * 9 + 2, 16 + 2 * 2 * 2
    assert data["totals"]["activation_bytes"] == acts * 2
    assert data["totals"]["lecture_training_bytes"] == (params + params * 3 + acts * 2) * 2  # the lecture's rule
    assert data["memory_model"] == "pytorch" and data["totals"]["training_bytes"] == data["totals"]["pytorch_training_bytes"]


def test_list_and_compare():
    code, out, _ = run("list", "--format", "json")
    models = {m["model"]: m for m in json.loads(out)}
    assert code == 0 and models["vgg16"]["params"] == 138_357_544
    code, out, _ = run("list")
    assert code == 0 and "resnet152" in out
    code, out, _ = run("compare", "inception-naive", "inception-reduced", "--format", "json")
    data = json.loads(out)
    assert [d["totals"]["macs"] for d in data] == [854_196_224, 271_351_808]
    code, out, _ = run("compare", "inception-naive", "inception-reduced")
    assert code == 0 and "(0.32x)" in out


def test_explain_prints_checkable_arithmetic():
    code, out, _ = run("explain", "vgg16", "conv1_1")
    assert code == 0
    assert "floor((224 + 1 + 1 - 1*(3-1) - 1) / 1) + 1 = 224" in out
    assert "64 * 3 * 3*3 = 1,728" in out
    code, out, _ = run("explain", "resnet50", "avgpool")
    assert code == 0 and "(C, 1, ...) = (2048, 1, 1)\n" in out and "(2048, 1, 1) = (2048, 1, 1)" not in out


@pytest.mark.parametrize(("args", "message"), [
    (("report", "vgg61"), "error: no zoo model or spec file 'vgg61'; did you mean 'vgg19'? (`archcalc list` shows the zoo)"),
    (("report", "vgg16", "--batch", "0"), "error: Invalid value for '--batch': 0 is not in the range x>=1. (see 'archcalc report --help')"),
    (("report", "vgg16", "--formt", "json"), "error: No such option '--formt'. Did you mean '--format'? (see 'archcalc report --help')"),
    (("explain", "vgg16", "conv9"), "error: model 'vgg16' has no layer 'conv9'; did you mean 'conv5_3'?"),
    (("report", "missing.json"), "error: spec file 'missing.json' does not exist"),
])
def test_bad_input_is_one_line_and_status_2(args, message):
    code, out, err = run(*args)
    assert code == 2
    assert err.strip() == message


def test_spec_errors_are_one_line_each(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "b", "input": [3, 8, 8], "layers": [
        {"type": "conv", "filters": 4, "kernel": 3, "strides": 2}, {"type": "maxpol", "kernel": 2}]}))
    code, _, err = run("report", str(path))
    assert code == 2
    assert err.splitlines() == [
        f"error: spec '{path}': layers[0] (name=\"conv1\", type=\"conv\"): unknown attribute 'strides'; did you mean 'stride'?",
        f"error: spec '{path}': layers[1]: unknown type 'maxpol'; did you mean 'maxpool'?",
    ]
    code, _, err = run("report", "-", input='{"name": "s", "input": [3, 4, 4], "layers": [{"type": "conv", "filters": 1, "kernel": 5}]}')
    assert code == 2 and len(err.splitlines()) == 1 and "output height = " in err


def test_installed_console_script_runs_from_another_directory(tmp_path):
    """As a user runs it: a fresh process, outside the source tree, no traceback on bad input."""
    done = subprocess.run([sys.executable, "-m", "archcalc", "report", "vgg16", "--format", "json"],
                          cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["totals"]["params"] == 138_357_544
    bad = subprocess.run([sys.executable, "-m", "archcalc", "report", "nope"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_help_lists_the_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("report", "list", "explain", "compare"):
        assert command in result.output


def test_run_trains_and_times_every_layer():
    code, out, _ = run("run", "lenet5", "--batch", "4", "--steps", "6", "--lr", "0.01")
    assert code == 0
    losses = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("step")]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert "time per layer" in out and "conv1" in out and "fc3" in out


def test_run_check_shows_shapes_and_macs():
    code, out, _ = run("run", "lenet5", "--batch", "2", "--check")
    assert code == 0
    assert sum(line.startswith("step") for line in out.splitlines()) == 1
    assert "2x6x28x28 ok" in out and f"{2 * 6 * 3 * 25 * 28 * 28:,} ok" in out


def test_run_refuses_above_the_memory_limit():
    code, _, err = run("run", "vgg16", "--batch", "64", "--max-memory", "1GiB")
    assert code == 2 and len(err.splitlines()) == 1
    assert "needs an estimated" in err and "over the limit of 1.0 GiB" in err
    code, _, err = run("run", "vgg16", "--max-memory", "lots")
    assert code == 2 and "is not a size like 4GiB" in err


def test_gradcheck_command():
    code, out, _ = run("gradcheck", "lenet5", "--batch", "2")
    assert code == 0 and "passed: max relative error" in out and "conv1.weight" in out
    code, out, _ = run("gradcheck", "lenet5", "--tolerance", "0")
    assert code == 1 and "FAILED" in out


def test_version_names_the_kernel_backend():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert "executor kernels: numpy" in result.output or "executor kernels: c" in result.output


def test_a_narrow_terminal_hides_columns_instead_of_cutting_figures():
    from rich.console import Console

    from archcalc import analyze, load
    from archcalc.render.table import rich_table

    console = Console(width=100, record=True, force_terminal=False)
    console.print(rich_table(analyze(load("vgg16")), width=100))
    text = console.export_text()
    assert "Hidden to fit 100 columns: Memory, Weights" in text
    assert "conv1_1" in text and "138,357,544" in text and "…" not in text.split("Params:")[0]
    wide = Console(width=200, record=True)
    wide.print(rich_table(analyze(load("vgg16")), width=200))
    wide_text = wide.export_text()
    assert "Hidden" not in wide_text and "138,344,128" in wide_text


# -- issue 9: help, error lines, pipes ---------------------------------------------------------

def test_bare_archcalc_prints_the_help_and_exits_0():
    code, out, err = run()
    assert code == 0 and err == ""
    assert out.startswith("Usage: archcalc [OPTIONS] COMMAND [ARGS]...") and "report" in out
    done = subprocess.run([sys.executable, "-m", "archcalc"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "" and "Commands:" in done.stdout


def test_error_lines_are_capped_with_a_count_of_the_rest(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "b", "input": [3, 8, 8], "layers": [{"type": f"nope{i}"} for i in range(27)]}))
    code, out, err = run("report", str(path))
    lines = err.splitlines()
    assert code == 2 and out == "" and len(lines) == 21
    assert all(line.startswith(f"error: spec '{path}': layers[") for line in lines[:20])
    assert lines[20] == "error: ... and 7 more problems"


def test_any_archcalc_error_of_a_command_is_one_line_and_status_2(monkeypatch):
    from archcalc import passes
    from archcalc.errors import ArchcalcError

    def broken(*args, **kwargs):
        raise ArchcalcError("first problem\nspread over two lines", "second problem")

    monkeypatch.setattr(passes, "analyze", broken)
    for command in (("report", "lenet5"), ("compare", "lenet5", "vgg16"), ("list",)):
        code, out, err = run(*command)
        assert code == 2 and out == ""
        assert err.splitlines() == ["error: first problem spread over two lines", "error: second problem"]


@pytest.mark.parametrize("command", [["report", "resnet152"], ["report", "resnet152", "--format", "json"], ["list"],
                                     ["explain", "vgg16", "conv1_1"], ["compare", "vgg16", "vgg19"], []])
def test_a_closed_pipe_ends_quietly(command):
    """``archcalc report resnet152 | head -1``: the reader is gone before archcalc writes."""
    process = subprocess.Popen([sys.executable, "-m", "archcalc", *command], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) in (0, 1)
    assert "Traceback" not in err and "Exception ignored" not in err and err == ""


# -- issue 9: user strings are shown literally, never as rich markup --------------------------

MARKUP_NAMES = ("branch[pool]", "r[/]", "[bold]p", "q[/bold]", "[red]x[/red]", "a\\[b]", "[link=x]y", "[")


def _markup_spec(tmp_path, model_name="m[/bold]"):
    layers = [{"type": "conv", "name": MARKUP_NAMES[0], "filters": 4, "kernel": 3}]
    layers += [{"type": "relu", "name": name} for name in MARKUP_NAMES[1:]]
    path = tmp_path / "markup.json"
    path.write_text(json.dumps({"name": model_name, "description": "d [bold]x[/] : [/] y", "input": [3, 8, 8],
                                "layers": layers}))
    return path


def test_report_shows_names_with_brackets_literally(tmp_path):
    path = _markup_spec(tmp_path)
    code, out, err = run("report", str(path))
    assert code == 0 and err == ""
    assert "m[/bold]: input 3x8x8, float32" in out and "d [bold]x[/] : [/] y" in out
    for name in MARKUP_NAMES:
        assert f"│ {name} " in out, name
    code, out, err = run("report", str(path), env={"COLUMNS": "60"})  # the narrow path hides columns
    assert code == 0 and "│ branch[pool] " in out


def test_compare_shows_model_names_with_brackets_literally(tmp_path):
    path = _markup_spec(tmp_path)
    code, out, err = run("compare", str(path), "lenet5", str(path))
    assert code == 0 and err == ""
    assert out.count("m[/bold]") == 2 and "(1.00x)" in out


def test_list_shows_a_short_description_not_the_text_before_a_colon():
    code, out, _ = run("list")
    assert code == 0
    lenet = next(line for line in out.splitlines() if line.startswith("│ lenet5"))
    assert "LeNet-5 as in the CS5242 lecture 6 table: 3x32x32 input" in lenet and lenet.rstrip(" │").endswith("…")
    vgg = next(line for line in out.splitlines() if line.startswith("│ vgg16"))
    assert "configuration D), layer for layer" in vgg and "arithmetic slip" not in vgg


def test_short_description():
    from archcalc.render.format import short_description

    assert short_description("A net. More words.") == "A net."
    assert short_description("ResNet (He et al. 2016), as torchvision: [3, 4]. Then more.") == \
        "ResNet (He et al. 2016), as torchvision: [3, 4]."
    assert short_description("As Szegedy et al. Table 1 says. Next.") == "As Szegedy et al. Table 1 says."
    assert short_description("word " * 30, limit=22) == "word word word word…"
    assert short_description("x" * 50, limit=10) == "xxxxxxxxx…"
    assert short_description("") == ""


# -- issue 9: numbers of any size --------------------------------------------------------------

def test_report_and_compare_with_a_401_digit_batch():
    batch = 10**400
    code, out, err = run("report", "lenet5", "--batch", str(batch))
    assert code == 0 and err == ""
    assert f"MACs: {651_720 * batch:,} multiply-accumulates for a batch of {batch}" in out
    assert "│ conv1    │ conv 5x5/1, 6  │" in out and "3.5e405" in out  # 352,800 * 10**400 MACs
    code, out, err = run("compare", "lenet5", "vgg16", "--batch", str(batch))
    assert code == 0 and err == "" and f"{651_720 * batch:,}" in out
    code, out, _ = run("report", "lenet5", "--batch", str(batch), "--format", "markdown")
    assert code == 0 and "e405" in out
    code, out, _ = run("explain", "lenet5", "conv1", "--batch", str(batch))
    assert code == 0 and f"352,800 * {batch:,} = {352_800 * batch:,}" in out


@pytest.mark.parametrize(("value", "si_text", "bytes_text", "grouped_text"), [
    (0, "0", "0 B", "0"),
    (999, "999", "999 B", "999"),
    (1_250, "1.2K", "1.2 KiB", "1,250"),  # half to even, as the float formatting was
    (999_950, "1M", "976.5 KiB", "999,950"),  # rounding carries into the next prefix
    (1_048_575, "1M", "1.0 MiB", "1,048,575"),
    (3_211_264, "3.2M", "3.1 MiB", "3,211,264"),
    (10**15, "1P", "909.5 TiB", "1,000,000,000,000,000"),
    (10**27, "1e27", "827.2 YiB", "1," + ",".join(["000"] * 9)),
    (10**400, "1e400", "1.0e400 B", "10," + ",".join(["000"] * 133)),
    (10**400 * 97 // 10, "9.7e400", "9.7e400 B", None),
    (-1_234_567, "-1.2M", "-1.2 MiB", "-1,234,567"),
])
def test_number_formats_are_exact_for_any_int(value, si_text, bytes_text, grouped_text):
    from archcalc.render.format import binary_bytes, grouped, si

    assert si(value) == si_text and binary_bytes(value) == bytes_text
    if grouped_text is not None:
        assert grouped(value) == grouped_text


def test_number_formats_past_pythons_digit_limit():
    from archcalc.render.format import decimal, grouped, si

    value = 10**5000 + 123456
    assert decimal(value) == "1" + "0" * 4994 + "123456"
    assert grouped(value).endswith(",123,456") and grouped(value).count(",") == 5000 // 3
    assert si(value) == "1e5000"


# -- issue 9: width and layout of piped output -------------------------------------------------

def test_piped_output_takes_the_tables_width_and_keeps_footer_lines_whole():
    code, out, _ = run("report", "lenet5")
    lines = out.splitlines()
    assert code == 0
    assert all(line == line.rstrip() for line in lines), [line for line in lines if line != line.rstrip()]
    assert lines[0] == " " * 43 + "lenet5: input 3x32x32, float32"
    assert ("MACs: 651,720 multiply-accumulates for one sample = 1.3M FLOPs (2 per MAC). torchvision, fvcore and ptflops "
            "call the MAC count 'FLOPs'. Bias adds, activations, pooling and normalisation are other ops: 17,754.") in lines
    assert any(line.startswith("LeNet-5 as in the CS5242") and line.endswith("ReLU activations.") for line in lines)
    code, out, _ = run("report", "resnet152")  # wider than the 200 columns piped output was cut to
    assert code == 0 and "…" not in out and "Hidden" not in out
    assert max(map(len, out.splitlines())) > 200


@pytest.mark.parametrize("columns", [60, 80, 100, 250])
def test_piped_output_honours_columns(columns):
    for command in (("report", "vgg16"), ("list",), ("compare", "vgg16", "resnet50")):
        code, out, _ = run(*command, env={"COLUMNS": str(columns)})
        lines = out.splitlines()
        assert code == 0 and max(map(len, lines)) <= columns, command
        assert all(line == line.rstrip() for line in lines)
        footer = " ".join(line for line in lines if not line.startswith(("│", "┃", "┏", "┡", "├", "└", "┗", "┣", "╇")))
        if command[0] == "report":  # wrapped at words: joining the lines gives the sentences back
            assert "Bias adds, activations, pooling and normalisation are other ops: 31,703,528." in footer


@pytest.mark.parametrize("columns", ["0", "abc", "-5", "99999999999"])
def test_odd_columns_values_still_print_the_table(columns):
    code, out, err = run("report", "lenet5", env={"COLUMNS": columns})
    assert code == 0 and err == "" and "│ conv1    │" in out and "62,006" in out


def test_a_tiny_columns_value_draws_at_the_narrowest_width():
    code, out, err = run("report", "lenet5", env={"COLUMNS": "1"})
    assert code == 0 and err == "" and max(map(len, out.splitlines())) == 20


@pytest.mark.parametrize("command", [["report", "vgg16"], ["report", "vgg16", "--format", "json"],
                                     ["report", "vgg16", "--format", "csv"], ["explain", "vgg16", "conv1_1"],
                                     ["compare", "lenet5", "vgg16", "--format", "json"]])
def test_a_batch_whose_figures_cannot_be_written_out_is_refused(command):
    """Python will not turn ints of more than 4,300 digits into text: refuse above 4,000 digits, in one line."""
    code, out, err = run(*command, "--batch", "9" * 4299)
    assert code == 2 and out == ""
    assert err.startswith("error: model 'lenet5' at batch 1e4299: a figure would have about 4,30") or \
        err.startswith("error: model 'vgg16' at batch 1e4299: a figure would have about 4,31")
    assert err.endswith("more than archcalc writes out (at most 4,000); use a smaller --batch\n")
    code, out, _ = run(*command, "--batch", "9" * 3980)  # just under: written out in full
    assert code == 0 and "9" * 3000 in out.replace(",", "")


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("args", [["report", "vgg16", "--format", "json"], ["report", "lenet5"], ["list"], ["template", "lenet5"]])
def test_an_output_that_cannot_be_written_is_one_error_line(args):
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "archcalc", *args], stdout=full, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 2 and done.stderr == "error: cannot write the output: No space left on device\n"


def test_stdin_is_read_once_and_bounded(monkeypatch):
    import archcalc.cli as cli_module

    spec = json.dumps({"name": "a", "input": [3, 8, 8], "layers": [{"type": "relu"}]})
    code, _, err = run("compare", "-", "-", input=spec)
    assert code == 2 and "'-' is given twice: standard input can be read once" in err
    monkeypatch.setattr(cli_module, "MAX_STDIN_BYTES", 10)
    code, _, err = run("report", "-", input=spec)
    assert code == 2 and "more than 0 MiB on standard input" in err


def test_empty_model_and_output_names_are_errors():
    code, _, err = run("report", "")
    assert code == 2 and err.startswith("error: no model given")
    code, _, err = run("render", "lenet5", "-o", "")
    assert code == 2 and err.startswith("error: the output file name is empty")

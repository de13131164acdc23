"""The command line, through click's CliRunner and as a real process."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from archcalc.cli import cli, main


def run(*args, input=None):
    """Run main() as the console script does; returns (exit code, stdout, stderr)."""
    result = CliRunner().invoke(_Main(), list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


class _Main:
    """CliRunner invokes a click command; wrap main() so errors go through its handling."""

    name = "archcalc"

    def main(self, args=None, prog_name=None, **extra):
        main(args)
        sys.exit(0)


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
    assert data["totals"]["training_bytes"] == (params + params * 3 + acts * 2) * 2


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
    assert "64 * 3 * 3*3 = 1728" in out


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

"""Golden output: the presentation of a few zoo models, byte for byte.

Golden files guard presentation only (layout, wording, formatting); every number in them is
checked against outside sources by the other tests. ``pytest --update-golden`` rewrites them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import archcalc
from archcalc.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"


def _cli(*args: str) -> str:
    done = CliRunner().invoke(cli, list(args), env={"COLUMNS": ""})
    assert done.exit_code == 0, done.output
    return done.output


@pytest.mark.parametrize("model, args, name", [
    ("lenet5", (), "lenet5.table.txt"),
    ("resnet18", ("--depth", "1"), "resnet18-depth1.table.txt"),
    ("googlenet", ("--depth", "1", "--batch", "8"), "googlenet-depth1-batch8.table.txt"),
    ("lenet5", ("--format", "markdown"), "lenet5.md"),
    ("lenet5", ("--format", "csv"), "lenet5.csv"),
    ("resnet18", ("--format", "csv", "--depth", "1"), "resnet18-depth1.csv"),
])
def test_report(golden, model, args, name):
    golden(name, _cli("report", model, *args))


@pytest.mark.parametrize("model, kwargs, name", [
    ("lenet5", {}, "lenet5.dot"),
    ("inception-reduced", {"color": "macs"}, "inception-reduced-macs.dot"),
    ("resnet18", {"depth": 1}, "resnet18-depth1.dot"),
])
def test_dot(golden, model, kwargs, name):
    golden(name, archcalc.to_dot(model, **kwargs))


def test_readme_example_is_the_real_output():
    """The README's `archcalc report lenet5` block is what the command prints (piped)."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```console\n\$ archcalc report lenet5\n(.*?)```", text, re.S)
    assert block, "the README lost its lenet5 example"
    assert block.group(1) == _cli("report", "lenet5")

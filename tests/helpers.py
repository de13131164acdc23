"""Helpers shared by the tests."""

from __future__ import annotations

import sys

from click.testing import CliRunner

from archcalc.spec import from_dict


class _Main:
    """CliRunner invokes a click command; wrap archcalc.cli.main so errors go through its handling."""

    name = "archcalc"

    def main(self, args=None, prog_name=None, **extra):
        from archcalc.cli import main

        main(args)
        sys.exit(0)


def run_main(*args, input=None, env=None):
    """Run the CLI as the console script does: (exit status, stdout, stderr)."""
    result = CliRunner().invoke(_Main(), list(args), input=input, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def single_op_graph(op_type, example):
    """A graph whose input(s) feed one layer of the example's op."""
    if len(example.inputs) == 1:
        return from_dict({"name": "t", "input": list(example.inputs[0]), "layers": [{"type": op_type, **example.attrs}]})
    # merges: reach each input shape through a 1x1 conv (or a linear) from one common input
    first = example.inputs[0]
    layers = []
    for i, shape in enumerate(example.inputs):
        layer = {"type": "linear", "units": shape[0]} if len(shape) == 1 else {"type": "conv", "filters": shape[0], "kernel": 1}
        layers.append({**layer, "name": f"branch{i}", "inputs": ["input"]})
    layers.append({"type": op_type, **example.attrs, "inputs": [f"branch{i}" for i in range(len(example.inputs))]})
    return from_dict({"name": "t", "input": [1, *first[1:]], "layers": layers})

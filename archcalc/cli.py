"""The ``archcalc`` command: a thin click group that parses, calls the library and renders.

Errors in the user's input (spec, model name, options) print one line each, ``error: ...``,
and exit with status 2; a real bug keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from archcalc import formulas
from archcalc.errors import ArchcalcError


class ModelType(click.ParamType):
    """A zoo name, a .json/.py spec path, or ``-`` for JSON on standard input."""

    name = "model"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from archcalc.loading import load
        from archcalc.spec import from_json

        if not isinstance(value, str):
            return value
        if value == "-":
            with click.open_file("-") as stdin:
                return from_json(stdin.read(), "<stdin>")
        return load(value)


MODEL = ModelType()

_FORMATS = click.Choice(["table", "json", "csv", "markdown"])


def _analysis_options(command: Any) -> Any:
    """--batch, --dtype and --optimizer, shared by the commands that analyse."""
    command = click.option("--optimizer", type=click.Choice(list(formulas.OPTIMIZER_SLOTS)), default="sgd", show_default=True,
                           help="Optimizer whose state the training-memory total includes.")(command)
    command = click.option("--dtype", type=click.Choice(list(formulas.DTYPE_BYTES)), default="float32", show_default=True,
                           help="Value type for the byte counts.")(command)
    return click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
                        help="Samples per batch: MACs and activations scale with it.")(command)


def _console() -> Any:
    """rich's console; when writing to a pipe or file, wide enough that no column is cut."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def _version() -> str:
    from archcalc import __version__

    return f"archcalc {__version__} (Python {sys.version.split()[0]})"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, help="Show the version and exit.",
              callback=lambda ctx, param, value: value and (click.echo(_version()), ctx.exit()))
def cli() -> None:
    """ConvNet architecture analysis: shapes, parameters, MACs, memory and receptive fields.

    MODEL is a zoo name (see `archcalc list`), a path to a .json or .py spec, or - for
    JSON on standard input.
    """


@cli.command()
@click.argument("model", type=MODEL)
@click.option("--format", "fmt", type=_FORMATS, default="table", show_default=True, help="Output format.")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Show N levels of blocks: 1 folds each top-level block (a ResNet stage, an Inception module) into one row.")
@_analysis_options
def report(model: Any, fmt: str, depth: int | None, batch: int, dtype: str, optimizer: str) -> None:
    """Per-layer table of output shapes, params, MACs, activations and receptive fields, with totals."""
    from archcalc.passes import analyze

    analysis = analyze(model, batch=batch, dtype=dtype, optimizer=optimizer)
    if fmt == "json":
        click.echo(analysis.to_json())
    elif fmt == "csv":
        click.echo(analysis.to_csv(), nl=False)
    elif fmt == "markdown":
        from archcalc.render.table import markdown_table

        click.echo(markdown_table(analysis, depth), nl=False)
    else:
        from archcalc.render.table import rich_table

        _console().print(rich_table(analysis, depth))


@cli.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format.")
def list_models(fmt: str) -> None:
    """The zoo: one line per model with its params, MACs and input shape."""
    from archcalc import zoo
    from archcalc.passes import analyze
    from archcalc.render.format import grouped, shape, si

    entries = []
    for name in zoo.names():
        analysis = analyze(zoo.load(name))
        entries.append((name, analysis))
    if fmt == "json":
        click.echo(json.dumps([
            {"model": name, "input_shape": list(a.input_shape), "params": a.totals.params, "macs": a.totals.macs,
             "description": a.description} for name, a in entries
        ], indent=2))
        return
    from rich.table import Table

    table = Table(title="archcalc zoo", header_style="bold")
    for header, justify in (("Model", "left"), ("Input", "right"), ("Params", "right"), ("MACs", "right"), ("Source", "left")):
        table.add_column(header, justify=justify)
    for name, a in entries:
        table.add_row(name, shape(a.input_shape), grouped(a.totals.params), si(a.totals.macs, 2), a.description.split(":")[0])
    _console().print(table)


@cli.command()
@click.argument("model", type=MODEL)
@click.argument("layer")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Samples per batch.")
@click.option("--dtype", type=click.Choice(list(formulas.DTYPE_BYTES)), default="float32", show_default=True, help="Value type.")
def explain(model: Any, layer: str, batch: int, dtype: str) -> None:
    """The arithmetic behind every number of one LAYER, written out step by step."""
    from archcalc.explain import explain as explain_layer

    lines = explain_layer(model, layer, batch=batch, dtype=dtype)
    node = model.node(layer)
    click.echo(f"{model.name} / {node.name} ({node.type})")
    width = max(len(quantity) for quantity, _ in lines)
    for quantity, text in lines:
        click.echo(f"  {quantity:<{width}}  {text}")


@cli.command()
@click.argument("models", type=MODEL, nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format.")
@_analysis_options
def compare(models: tuple[Any, ...], fmt: str, batch: int, dtype: str, optimizer: str) -> None:
    """Totals of several MODELS side by side, with each one's ratio to the first."""
    from archcalc.passes import analyze
    from archcalc.render.format import binary_bytes, grouped

    analyses = [analyze(m, batch=batch, dtype=dtype, optimizer=optimizer) for m in models]
    if fmt == "json":
        click.echo(json.dumps([{"model": a.model, "totals": a.totals.to_dict()} for a in analyses], indent=2))
        return
    from rich.table import Table

    metrics = (
        ("Params", "params", grouped),
        ("MACs", "macs", grouped),
        ("FLOPs", "flops", grouped),
        ("Other ops", "other_ops", grouped),
        ("Activations", "activations", grouped),
        ("Activation memory", "activation_bytes", binary_bytes),
        ("Training memory", "training_bytes", binary_bytes),
    )
    table = Table(title=f"batch {batch}, {dtype}, {optimizer}", header_style="bold")
    table.add_column("Total", justify="left")
    for a in analyses:
        table.add_column(a.model, justify="right")
    for label, key, fmt_value in metrics:
        cells = []
        base = getattr(analyses[0].totals, key)
        for a in analyses:
            value = getattr(a.totals, key)
            ratio = f" ({value / base:.2f}x)" if a is not analyses[0] and base else ""
            cells.append(fmt_value(value) + ratio)
        table.add_row(label, *cells)
    _console().print(table)


@cli.command()
@click.argument("model", type=MODEL)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="File to write; the format comes from the extension: .svg, .png, .pdf or .dot. Default: MODEL.svg.")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Show N levels of blocks: 1 folds each top-level block into one node.")
@click.option("--color", type=click.Choice(["none", "macs", "params", "activations"]), default="none", show_default=True,
              help="Fill each node by its share of this total (the number is in the label too).")
@click.option("--rankdir", type=click.Choice(["TB", "LR"]), default="TB", show_default=True, help="Top to bottom or left to right.")
def render(model: Any, output: str | None, depth: int | None, color: str, rankdir: str) -> None:
    """Draw the graph with Graphviz, each node labelled with its shape, params and MACs.

    .dot needs no Graphviz; .svg, .png and .pdf need its dot program (Debian: apt-get install
    graphviz). Without it the DOT source is written instead and the command exits with status 3.
    """
    from archcalc.render.dot import render as render_graph

    path = render_graph(model, output or f"{model.name}.svg", depth=depth, color=color, rankdir=rankdir)
    click.echo(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the group; user errors become one line each and exit status 2."""
    try:
        cli.main(args=argv, prog_name="archcalc", standalone_mode=False)
    except ArchcalcError as error:
        for problem in error.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(error.exit_code)
    except click.UsageError as error:
        command = error.ctx.command_path if error.ctx else "archcalc"
        click.echo(f"error: {error.format_message()} (see '{command} --help')", err=True)
        sys.exit(2)
    except click.ClickException as error:
        click.echo(f"error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)

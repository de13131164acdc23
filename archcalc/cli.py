"""The ``archcalc`` command: a thin click group that parses, calls the library and renders.

Errors in the user's input (spec, model name, options) print one line each, ``error: ...``,
and exit with status 2; a real bug keeps its traceback.
"""

from __future__ import annotations

import json
import os
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


class ByteSize(click.ParamType):
    """A memory size: bytes, or a number with K/M/G/T (powers of 1000) or KiB/MiB/GiB/TiB (1024)."""

    name = "size"
    _UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
              "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower().replace(" ", "")
        number = text.rstrip("kmgtib")
        unit = text[len(number):]
        try:
            size = float(number) * self._UNITS[unit]
        except (ValueError, KeyError):
            self.fail(f"{value!r} is not a size like 4GiB, 512MiB or 2G", param, ctx)
        if size < 1:
            self.fail(f"{value!r} must be at least one byte", param, ctx)
        return int(size)

_FORMATS = click.Choice(["table", "json", "csv", "markdown"])


def _analysis_options(command: Any) -> Any:
    """--batch, --dtype and --optimizer, shared by the commands that analyse."""
    command = click.option("--optimizer", type=click.Choice(list(formulas.OPTIMIZER_SLOTS)), default="sgd", show_default=True,
                           help="Optimizer whose state the training-memory total includes.")(command)
    command = click.option("--dtype", type=click.Choice(list(formulas.DTYPE_BYTES)), default="float32", show_default=True,
                           help="Value type for the byte counts.")(command)
    return click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
                        help="Samples per batch: MACs and activations scale with it.")(command)


#: A console writing to a pipe or file without COLUMNS is this wide: tables take their natural
#: width and no line is wrapped.
UNBOUNDED_WIDTH = 100_000

#: The narrowest console: COLUMNS below it (or 0) would draw no table at all.
MIN_WIDTH = 20


def _console() -> Any:
    """rich's console for standard output.

    A terminal's width, or COLUMNS when it is set to a positive number; otherwise, writing to a
    pipe or file, unbounded: tables take their natural width and text lines are not wrapped. Off
    a terminal, trailing spaces (rich pads titles and captions to the table's width) are removed.
    """
    import shutil

    from rich.console import Console

    def clip(width: int) -> int:
        return min(max(width, MIN_WIDTH), UNBOUNDED_WIDTH)

    if Console().is_terminal:
        return Console(width=clip(shutil.get_terminal_size().columns))  # COLUMNS first, as rich, but never 0
    stream = _TrailingSpaceStripper(sys.stdout)
    columns = os.environ.get("COLUMNS", "").strip()
    width = clip(int(columns)) if columns.isdigit() and int(columns) > 0 else UNBOUNDED_WIDTH
    return Console(file=stream, width=width)  # type: ignore[arg-type]


def _table_width(console: Any) -> int | None:
    """The width a table must fit, or None when the console is unbounded."""
    return None if console.width >= UNBOUNDED_WIDTH else console.width


class _TrailingSpaceStripper:
    """A text stream that writes each line to ``stream`` without its trailing spaces."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        """Buffer ``text``; write every complete line, right-stripped of spaces."""
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        if lines:
            self._stream.write("".join(line.rstrip(" ") + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        """Write the unfinished line (as it is) and flush the stream."""
        if self._pending:
            self._stream.write(self._pending)
            self._pending = ""
        self._stream.flush()

    def isatty(self) -> bool:
        """Never a terminal: this stream is only used for pipes and files."""
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _version() -> str:
    from archcalc import __version__, kernels

    return f"archcalc {__version__} (Python {sys.version.split()[0]}; executor kernels: {kernels.BACKEND})"


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

    analysis = _printable(analyze(model, batch=batch, dtype=dtype, optimizer=optimizer))
    if fmt == "json":
        click.echo(analysis.to_json())
    elif fmt == "csv":
        click.echo(analysis.to_csv(), nl=False)
    elif fmt == "markdown":
        from archcalc.render.table import markdown_table

        click.echo(markdown_table(analysis, depth), nl=False)
    else:
        from archcalc.render.table import rich_table

        console = _console()
        console.print(rich_table(analysis, depth, _table_width(console)))


@cli.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format.")
def list_models(fmt: str) -> None:
    """The zoo: one line per model with its params, MACs and input shape."""
    from archcalc import zoo
    from archcalc.passes import analyze
    from archcalc.render.format import grouped, shape, short_description, si

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
    from rich.text import Text

    table = Table(title="archcalc zoo", header_style="bold")
    for header, justify in (("Model", "left"), ("Input", "right"), ("Params", "right"), ("MACs", "right"),
                            ("Description", "left")):
        table.add_column(header, justify=justify)
    for name, a in entries:
        cells = (name, shape(a.input_shape), grouped(a.totals.params), si(a.totals.macs, 2), short_description(a.description))
        table.add_row(*(Text(cell) for cell in cells))
    _console().print(table)


def _printable(analysis: Any) -> Any:
    """``analysis``, unless a figure is too long to write out (a huge --batch): ArchcalcError."""
    from archcalc.render.format import check_printable

    check_printable(analysis)
    return analysis


@cli.command()
@click.argument("model", type=MODEL)
@click.argument("layer")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Samples per batch.")
@click.option("--dtype", type=click.Choice(list(formulas.DTYPE_BYTES)), default="float32", show_default=True, help="Value type.")
def explain(model: Any, layer: str, batch: int, dtype: str) -> None:
    """The arithmetic behind every number of one LAYER, written out step by step."""
    from archcalc.explain import explain_layer
    from archcalc.passes import analyze

    node = model.node(layer)
    lines = explain_layer(model, _printable(analyze(model, batch=batch, dtype=dtype)), node.name, group_digits=True)
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

    analyses = [_printable(analyze(m, batch=batch, dtype=dtype, optimizer=optimizer)) for m in models]
    if fmt == "json":
        click.echo(json.dumps([{"model": a.model, "totals": a.totals.to_dict()} for a in analyses], indent=2))
        return
    from rich.table import Table
    from rich.text import Text

    metrics = (
        ("Params", "params", grouped),
        ("MACs", "macs", grouped),
        ("FLOPs", "flops", grouped),
        ("Other ops", "other_ops", grouped),
        ("Activations", "activations", grouped),
        ("Activation memory", "activation_bytes", binary_bytes),
        ("Training memory", "training_bytes", binary_bytes),
    )
    table = Table(title=Text(f"batch {batch}, {dtype}, {optimizer}"), header_style="bold")
    table.add_column("Total", justify="left")
    for a in analyses:
        table.add_column(Text(a.model), justify="right")
    for label, key, fmt_value in metrics:
        cells = []
        base = getattr(analyses[0].totals, key)
        for a in analyses:
            value = getattr(a.totals, key)
            ratio = f" ({_ratio(value, base)})" if a is not analyses[0] and base else ""
            cells.append(Text(fmt_value(value) + ratio))
        table.add_row(label, *cells)
    _console().print(table)


def _ratio(value: int, base: int) -> str:
    """``value / base`` to two decimals, exactly for integers of any size: ``_ratio(1, 3) == '0.33x'``."""
    from archcalc.render.format import grouped

    hundredths = (200 * value + base) // (2 * base)  # rounded half up, no float
    return f"{grouped(hundredths // 100)}.{hundredths % 100:02d}x"


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


@cli.command()
@click.argument("model", type=MODEL)
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True, help="Samples per batch.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="SGD steps on one random batch. [default: 20, 1 with --check]")
@click.option("--lr", type=click.FloatRange(min=0), default=0.01, show_default=True, help="Learning rate.")
@click.option("--momentum", type=click.FloatRange(min=0, max=1), default=0.9, show_default=True, help="SGD momentum.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0, show_default=True, help="L2 weight decay.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the weights, the data and dropout.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True, help="Array type.")
@click.option("--check", is_flag=True, help="Show each layer's executed shape and MACs beside the analyzer's.")
@click.option("--max-memory", type=ByteSize(), default=None, help="Refuse to run above this estimate. [default: half the free memory]")
def run(model: Any, batch: int, steps: int | None, lr: float, momentum: float, weight_decay: float, seed: int, dtype: str,
        check: bool, max_memory: int | None) -> None:
    """Train MODEL on a random batch with the NumPy executor: loss per step, then time per layer.

    Classifiers get softmax cross-entropy against random labels; other outputs the mean squared
    error to random targets. Every layer's output shape and MAC count is checked against the
    analyzer's as it runs.
    """
    import numpy as np
    from rich.progress import Progress

    from archcalc.execute import Executor, loss_and_grad

    executor = Executor(model, seed=seed, dtype=dtype, max_memory=max_memory)
    executor.needs_input_grad = False  # training never reads dJ/d(input)
    steps = steps or (1 if check else 20)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((batch, *model.input_shape)).astype(dtype)
    out_shape = executor.layers[model.nodes[-1].name].out_shape
    targets = (rng.integers(0, out_shape[0], size=batch) if len(out_shape) == 1
               else rng.standard_normal((batch, *out_shape)).astype(dtype))
    console = _console()
    kind = "cross-entropy" if len(out_shape) == 1 else "mean squared error"
    console.print(f"{model.name}: batch {batch}, {dtype}, SGD lr {lr} momentum {momentum}, {kind} on one random batch "
                  f"(kernels: {_backend()})")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("training", total=steps)
        for step in range(1, steps + 1):
            output = executor.forward(x)
            loss, grad = loss_and_grad(executor, output, targets)
            executor.step(executor.backward(grad), lr=lr, momentum=momentum, weight_decay=weight_decay)
            progress.console.print(f"step {step:>4}  loss {loss:.6f}")
            progress.advance(task)
    macs = executor.check_macs()
    console.print(_timing_table(executor, steps, macs if check else None))


def _backend() -> str:
    from archcalc import kernels

    return kernels.BACKEND


def _timing_table(executor: Any, steps: int, macs: dict[str, tuple[int, int]] | None) -> Any:
    """Per-layer forward and backward time (mean per step), and with --check shapes and MACs."""
    from rich.table import Table

    from archcalc.render.format import grouped, shape

    table = Table(title="time per layer (mean of the steps)", header_style="bold", show_footer=True)
    total_fwd = sum(t.forward for t in executor.timings.values()) / steps
    total_bwd = sum(t.backward for t in executor.timings.values()) / steps
    table.add_column("Layer", footer="Total")
    table.add_column("Type")
    if macs is not None:
        table.add_column("Executed shape = analysed", justify="right")
        table.add_column("MACs performed = analysed", justify="right")
    table.add_column("Forward ms", justify="right", footer=f"{total_fwd * 1e3:.2f}")
    table.add_column("Backward ms", justify="right", footer=f"{total_bwd * 1e3:.2f}")
    table.add_column("Share", justify="right")
    total = total_fwd + total_bwd or 1.0
    for node in executor.graph.nodes[1:]:
        timing = executor.timings[node.name]
        cells = [node.name, node.type]
        if macs is not None:
            produced = executor.outputs[node.name].shape
            cells.append(shape(produced[1:], produced[0]) + " ok")
            performed = macs.get(node.name)
            cells.append(f"{grouped(performed[0])} ok" if performed else "")
        fwd, bwd = timing.forward / steps, timing.backward / steps
        cells += [f"{fwd * 1e3:.2f}", f"{bwd * 1e3:.2f}", f"{100 * (fwd + bwd) / total:.1f}%"]
        table.add_row(*cells)
    return table


@cli.command("gradcheck")
@click.argument("model", type=MODEL)
@click.option("--batch", type=click.IntRange(min=1), default=2, show_default=True, help="Samples per batch.")
@click.option("--samples", type=click.IntRange(min=1), default=6, show_default=True, help="Entries checked per tensor.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the weights, the data and the entries checked.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=1e-5, show_default=True, help="Largest relative error that passes.")
def gradcheck_command(model: Any, batch: int, samples: int, seed: int, tolerance: float) -> None:
    """Backward's gradients against central differences (float64), per parameter tensor and the input.

    Exits with status 1 when a tensor's relative error exceeds the tolerance.
    """
    from rich.table import Table

    from archcalc.execute import gradcheck

    report = gradcheck(model, batch=batch, seed=seed, samples=samples, tolerance=tolerance)
    table = Table(title=f"gradcheck {report.model}, batch {batch}, float64, central differences", header_style="bold")
    for header in ("Tensor", "Shape", "Entries", "Max abs error", "Max rel error", ""):
        table.add_column(header, justify="left" if header in ("Tensor", "Shape") else "right")
    for row in report.rows:
        ok = row.max_rel_error <= tolerance
        table.add_row(row.name, "x".join(map(str, row.shape)), str(row.checked), f"{row.max_abs_error:.2e}",
                      f"{row.max_rel_error:.2e}", "ok" if ok else "[red]FAIL[/red]")
    console = _console()
    console.print(table)
    verdict = "passed" if report.passed else "FAILED"
    console.print(f"{verdict}: max relative error {report.max_rel_error:.2e} (tolerance {tolerance:.0e})")
    if not report.passed:
        sys.exit(1)


@cli.command()
@click.argument("model", type=MODEL)
@click.argument("answers", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "json", "gradescope"]), default="table", show_default=True,
              help="gradescope: the autograder's results.json.")
@click.option("--explain", "with_arithmetic", is_flag=True, help="Add the arithmetic behind each wrong cell.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Batch the answers assume.")
@click.option("--dtype", type=click.Choice(list(formulas.DTYPE_BYTES)), default="float32", show_default=True, help="For bytes.")
def grade(model: Any, answers: str, fmt: str, with_arithmetic: bool, batch: int, dtype: str) -> None:
    """Mark a filled-in layer table (CSV or JSON) cell by cell against MODEL's analysis.

    Rows match by a name column, or else by order as in `archcalc template MODEL`. Columns:
    any of output_shape, params, params_weights_only, macs, flops, activations, activation_bytes.
    """
    from archcalc.grade import grade as grade_table
    from archcalc.grade import read_answers

    result = grade_table(model, read_answers(answers), batch=batch, dtype=dtype, explain=with_arithmetic,
                         source=f"answers '{answers}'")
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    if fmt == "gradescope":
        click.echo(json.dumps(result.to_gradescope(), indent=2))
        return
    _console().print(_grade_table(result))


def _grade_table(result: Any) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{result.model}: {result.score} / {result.max_score} right", header_style="bold")
    table.add_column("Layer")
    for column in result.columns:
        table.add_column(column, justify="right")
    notes = []
    for row in result.rows:
        if row.problem:
            table.add_row(row.layer, *([f"[red]{row.problem}[/red]"] + [""] * (len(result.columns) - 1)))
            continue
        cells = []
        for cell in row.cells:
            if cell.right:
                cells.append(f"[green]✓[/green] {cell.given}")
            elif cell.status == "blank":
                cells.append(f"[red]✗[/red] (blank) → {cell.expected}")
            elif cell.status == "unparseable":
                cells.append(f"[red]✗[/red] cannot read {cell.given!r} → {cell.expected}")
            else:
                cells.append(f"[red]✗[/red] {cell.given} → {cell.expected}")
            if cell.note:
                notes.append(f"{row.layer} {cell.column}: {cell.note}")
            notes.extend(f"{row.layer} {cell.column}: {line}" for line in cell.explanation)
        table.add_row(row.layer, *cells)
    lines = [Text(note, style="dim") for note in notes]
    if result.unanswered_layers:
        lines.append(Text(f"not in the answers (not graded): {', '.join(result.unanswered_layers)}", style="dim"))
    return Group(table, *lines)


@cli.command("template")
@click.argument("model", type=MODEL)
@click.option("--columns", default="output_shape,params,macs,activations", show_default=True,
              help="Comma-separated columns to leave blank for the student.")
def template_command(model: Any, columns: str) -> None:
    """A blank answer table (CSV) for MODEL: one row per layer, the chosen columns empty."""
    from archcalc.grade import template

    click.echo(template(model, tuple(c.strip() for c in columns.split(",") if c.strip())), nl=False)


#: At most this many ``error:`` lines are printed; the rest are counted in one more line.
MAX_ERROR_LINES = 20


def _print_problems(problems: tuple[str, ...] | list[str]) -> None:
    """One ``error:`` line per problem, at most :data:`MAX_ERROR_LINES`, then how many more there were."""
    for problem in problems[:MAX_ERROR_LINES]:
        click.echo(f"error: {' '.join(str(problem).splitlines())}", err=True)
    if len(problems) > MAX_ERROR_LINES:
        more = len(problems) - MAX_ERROR_LINES
        click.echo(f"error: ... and {more} more problem{'s' if more != 1 else ''}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the group; user errors become one line each and exit status 2.

    Bare ``archcalc`` prints the help and exits 0. A reader that closes the pipe early
    (``archcalc report vgg16 | head -1``) ends the command quietly, with status 1 and no
    traceback (as click does).
    """
    try:
        _run(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(1)


def _run(argv: list[str] | None) -> None:
    try:
        status = cli.main(args=argv, prog_name="archcalc", standalone_mode=False)
        if isinstance(status, int) and status:  # ctx.exit(status): click returns it instead of exiting
            sys.exit(status)
    except ArchcalcError as error:
        _print_problems(error.problems or (str(error) or type(error).__name__,))
        sys.exit(error.exit_code)
    except click.exceptions.NoArgsIsHelpError as error:
        click.echo(error.ctx.get_help())
        sys.exit(0)
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


def _silence_stdout() -> None:
    """After a closed pipe: point stdout and stderr at /dev/null so the interpreter's last flush cannot fail."""
    for stream in (sys.stdout, sys.stderr):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass  # stdout is not a real file (a test runner's buffer): nothing is left to flush

"""The ``archcalc`` command: a thin click group that parses, calls the library and renders.

Errors in the user's input (spec, model name, options) print one line each, ``error: ...``,
and exit with status 2; a real bug keeps its traceback.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import click

from archcalc import formulas
from archcalc.errors import ArchcalcError


class ModelType(click.ParamType):
    """A zoo name, a .json/.py spec path, ``-`` for JSON on standard input, or a network to
    import: an .onnx file, a Caffe .prototxt, ``torchvision:NAME`` or ``package.module:Name``.

    The bound on expanded layers comes from the group option ``--max-layers``; an import's
    ``--input`` and ``--partial`` from the command's options (eager, so they are known here
    wherever they stand on the command line); the spec's warnings (a channels-last input, a
    folded batchnorm) go to standard error as ``warning: ...`` lines.
    """

    name = "model"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from archcalc.loading import load
        from archcalc.spec import MAX_LAYERS, from_json

        if not isinstance(value, str):
            return value
        root = ctx.find_root() if ctx is not None else None
        max_layers = (root.params.get("max_layers") if root is not None else None) or MAX_LAYERS
        if value == "-":
            if root is not None and root.meta.get("archcalc.stdin_read"):
                self.fail("'-' is given twice: standard input can be read once", param, ctx)
            if root is not None:
                root.meta["archcalc.stdin_read"] = True
            with click.open_file("-", "rb") as stdin:  # bytes: from_json reports bad UTF-8 itself
                text = stdin.read(MAX_STDIN_BYTES + 1)
            if len(text) > MAX_STDIN_BYTES:
                raise ArchcalcError(f"spec '<stdin>': more than {MAX_STDIN_BYTES // 2**20} MiB on standard input; "
                                    "a spec that large belongs in a file (or blocks)")
            graph = from_json(text, "<stdin>", max_layers=max_layers)
        else:
            from archcalc.importers import source_kind

            meta = ctx.meta if ctx is not None else {}
            input_shape, partial = meta.get("archcalc.input"), bool(meta.get("archcalc.partial"))
            if param is not None and param.nargs == -1:  # compare: the import options serve the imported models
                imported = source_kind(value) is not None
                meta["archcalc.imported"] = meta.get("archcalc.imported", False) or imported
                input_shape, partial = (input_shape, partial) if imported else (None, False)
            graph = load(value, max_layers=max_layers, input_shape=input_shape, partial=partial)
        for warning in graph.warnings:
            click.echo(f"warning: {warning}", err=True)
        return graph


#: The most a spec read from standard input may hold (a million-layer flat chain is about 40 MiB).
MAX_STDIN_BYTES = 256 * 2**20

MODEL = ModelType()


class ByteSize(click.ParamType):
    """A memory size: bytes, or a number with K/M/G/T/P (powers of 1000) or KiB/MiB/GiB/TiB/PiB (1024).

    ``1GB`` is 10**9 bytes, ``1GiB`` 2**30; a trailing ``B`` is optional, case does not matter.
    The arithmetic is exact (no float), and nan, inf, exponents, negative sizes and 0 are refused.
    """

    name = "size"
    _SIZE = r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgtp])(i?)b?|b)?\s*"
    _POWERS = "kmgtp"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        import re
        from fractions import Fraction

        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        match = re.fullmatch(self._SIZE, str(value), re.IGNORECASE) if len(str(value)) <= 100 else None
        if not match:
            self.fail(f"{value!r} is not a size like 4GiB, 512MiB or 2G", param, ctx)
        number, prefix, binary = match.groups()
        power = self._POWERS.index(prefix.lower()) + 1 if prefix else 0
        size = int(Fraction(number) * (1024 if binary else 1000) ** power)
        if size < 1:
            self.fail(f"{value!r} must be at least one byte", param, ctx)
        return size


class FiniteFloat(click.FloatRange):
    """A finite float in a range: unlike plain click.FloatRange, nan and inf (and 1e400) are refused."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)  # "x is not a valid float"; the range for finite values
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


#: Largest batch the executor takes (archcalc.execute.MAX_BATCH, not imported here: it loads NumPy).
MAX_BATCH = 2**63 - 1
#: Most SGD steps one `archcalc run` takes (a bound on the work a command line can ask for).
MAX_STEPS = 1_000_000

_FORMATS = click.Choice(["table", "json", "csv", "markdown"])


def _store_input(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        from archcalc.importers._builder import parse_input_shape

        ctx.meta["archcalc.input"] = parse_input_shape(value)


def _store_partial(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    ctx.meta["archcalc.partial"] = value


def _import_options(command: Any) -> Any:
    """--input and --partial, for the commands that take a model: how to import one."""
    command = click.option("--partial", is_flag=True, is_eager=True, expose_value=False, callback=_store_partial,
                           help="Imported networks: pass ops archcalc has no rule for through, counted as 0 "
                                "(the report says partial and names them); without it they are an error.")(command)
    return click.option("--input", "input_shape", metavar="SHAPE", is_eager=True, expose_value=False, callback=_store_input,
                        help="Imported networks: one sample's shape, e.g. 3x224x224 (package.module:Name needs it; "
                             "an ONNX file with dynamic shapes too; torchvision models default to 3x224x224).")(command)


def _memory_model_option(command: Any) -> Any:
    """--memory-model, for the commands whose totals give training memory."""
    return click.option("--memory-model", type=click.Choice(["pytorch", "lecture"]), default="pytorch", show_default=True,
                        help="Training memory: params, gradients and optimizer state + what autograd keeps for backward "
                             "and the largest backward transient (pytorch), or + 2 x the forward activations (lecture, "
                             "the lecture's rule of thumb).")(command)


def _convention_option(command: Any) -> Any:
    """--convention, for the commands that count the forward pass (a preset's name, checked when given)."""
    return click.option("--convention", default="archcalc", show_default=True, callback=_check_convention,
                        help="Also count as a peer tool does (its 'FLOPs' or 'MACs'): a column, its total and rules "
                             "(`archcalc conventions` lists the presets).")(command)


def _check_convention(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from archcalc.conventions import get

    try:
        return get(value).name
    except ArchcalcError as error:
        raise click.BadParameter(str(error)) from None


def _analysis_options(command: Any) -> Any:
    """--batch, --dtype and --optimizer, shared by the commands that analyse."""
    command = click.option("--optimizer", type=click.Choice(list(formulas.OPTIMIZER_SLOTS)), default="sgd", show_default=True,
                           help="Optimizer whose state the training-memory total includes (and whose update "
                                "the training step's MACs count).")(command)
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
@click.option("--max-layers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Refuse specs whose blocks expand to more than N layers (default 1,000,000).")
def cli(max_layers: int | None) -> None:
    """ConvNet architecture analysis: shapes, parameters, MACs, memory and receptive fields.

    MODEL is a zoo name (see `archcalc list`), a path to a .json or .py spec, or - for
    JSON on standard input.
    """


@cli.command()
@click.argument("model", type=MODEL)
@_import_options
@click.option("--format", "fmt", type=_FORMATS, default="table", show_default=True, help="Output format.")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Show N levels of blocks: 1 folds each top-level block (a ResNet stage, an Inception module) into one row.")
@click.option("--paths", "with_paths", is_flag=True,
              help="Also count the input-to-output paths (2^k for k skip connections) and their lengths in layers with weights.")
@click.option("--training", is_flag=True,
              help="Also per layer what backward keeps (bytes, as PyTorch's autograd) and computes (input- and "
                   "weight-gradient MACs), the training peak and a training step's MACs (table, markdown; JSON always "
                   "has the MACs).")
@click.option("--cumulative", is_flag=True,
              help="Show each layer's cumulative count: its own and that of every layer it depends on, each once "
                   "(MACs; the convention's count with --convention). JSON and CSV always carry cumulative_macs and "
                   "cumulative_count.")
@_convention_option
@click.option("--explain", "explain_counts", is_flag=True,
              help="Also each layer's rule under the convention with its values (table, markdown).")
@_memory_model_option
@_analysis_options
def report(model: Any, fmt: str, depth: int | None, with_paths: bool, training: bool, cumulative: bool, convention: str,
           explain_counts: bool, memory_model: str, batch: int, dtype: str, optimizer: str) -> None:
    """Per-layer table of output shapes, params, MACs, activations and receptive fields, with totals."""
    from archcalc.passes import analyze

    if explain_counts and fmt in ("json", "csv"):
        raise ArchcalcError("--explain goes with --format table or markdown (JSON and CSV carry each layer's "
                            "convention_count; `archcalc explain MODEL LAYER --convention NAME` one layer's rule)")

    if training and fmt in ("json", "csv"):
        raise ArchcalcError("--training goes with --format table or markdown (for JSON: archcalc memory MODEL --format json)")
    if training and memory_model == "lecture":
        raise ArchcalcError("--training shows the pytorch model's per-layer figures; leave out --memory-model lecture")
    if with_paths and fmt == "csv":
        raise ArchcalcError("--paths goes with --format table, markdown or json (CSV holds the layer rows only)")
    analysis = _printable(analyze(model, batch=batch, dtype=dtype, optimizer=optimizer, paths=with_paths,
                                  memory_model=memory_model, convention=convention))
    if analysis.paths is not None:
        from archcalc.render.format import MAX_DIGITS

        digits = int(analysis.paths.count.bit_length() * 0.30103) + 1  # log10(2): within one digit
        if digits > MAX_DIGITS:
            raise ArchcalcError(f"model {analysis.model!r}: the path count would have about {digits:,} digits, more than "
                                f"archcalc writes out (at most {MAX_DIGITS:,}); leave out --paths")
    if fmt == "json":
        out = sys.stdout
        out.writelines(analysis.iter_json(depth=depth))  # a layer at a time: a long network's text is never held whole
        out.write("\n")
    elif fmt == "csv":
        click.echo(analysis.to_csv(depth), nl=False)
    elif fmt == "markdown":
        from archcalc.render.table import markdown_table

        click.echo(markdown_table(analysis, depth, cumulative), nl=False)
        if analysis.paths is not None:
            from archcalc.render.table import paths_markdown

            click.echo("\n" + paths_markdown(analysis.paths), nl=False)
    else:
        from archcalc.render.table import rich_table

        console = _console()
        console.print(rich_table(analysis, depth, _table_width(console), cumulative))
        if analysis.paths is not None:
            from archcalc.render.table import paths_table

            console.print(paths_table(analysis.paths))
    if training:
        _training(model, analysis, fmt)
    if explain_counts:
        _explain_counts(model, convention, fmt)


def _explain_counts(model: Any, convention: str, fmt: str) -> None:
    """Each layer's rule under the convention with its values, per sample (report --explain)."""
    from archcalc.conventions import count

    counted = count(model, convention)
    title = f"Counting as {counted.convention.name} ({counted.convention.tool}), per sample:"
    if fmt == "markdown":
        click.echo("\n" + title + "\n")
        for name, layer in counted.layers.items():
            click.echo(f"- `{name}` {layer.rule.split(':', 1)[0]}: {layer.explained}")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), header_style="bold")
    for header in ("Layer", "Type", "Rule with its values"):
        table.add_column(header, overflow="fold")
    for name, layer in counted.layers.items():
        table.add_row(Text(name), Text(layer.rule.split(":", 1)[0]), Text(layer.explained))
    _console().print(table)


def _training(model: Any, analysis: Any, fmt: str) -> None:
    """After a report: per layer, the pytorch memory model's kept bytes and what backward computes
    (input- and weight-gradient MACs); the memory totals and the training step's MACs."""
    from archcalc.memory import memory
    from archcalc.render.memory import kept_markdown, kept_table, summary_lines
    from archcalc.render.table import training_step_line

    m = memory(model, batch=analysis.batch, dtype=analysis.dtype, optimizer=analysis.optimizer)
    if fmt == "markdown":
        click.echo("\n" + kept_markdown(m, analysis), nl=False)
    else:
        _console().print(kept_table(m, analysis))
    for line in [*summary_lines(m), training_step_line(analysis)]:
        click.echo(line)


@cli.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format.")
def list_models(fmt: str) -> None:
    """The zoo: one line per model with its params, MACs and input shape."""
    from archcalc import zoo
    from archcalc.passes import analyze
    entries = []
    for name in zoo.names():
        analysis = analyze(zoo.load(name))
        entries.append((name, analysis))
    if fmt == "json":
        click.echo(json.dumps([
            {"model": name, "input_shape": list(a.input_shape), "params": a.totals.params, "macs": a.totals.macs,
             "network_depth": a.network_depth.to_dict() if a.network_depth else None,
             "description": a.description} for name, a in entries
        ], indent=2))
        return
    from archcalc.render.table import zoo_table

    _console().print(zoo_table(entries))


@cli.command("conventions")
@click.argument("name", required=False, default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table", show_default=True,
              help="Output format.")
def conventions_command(name: str | None, fmt: str) -> None:
    """The counting conventions (presets): what each peer tool counts, and how; NAME: one preset's rules in full."""
    from archcalc.conventions import get, presets
    from archcalc.render import conventions as render

    chosen = [get(name)] if name is not None else list(presets().values())
    if fmt == "json":
        click.echo(json.dumps([_convention_json(p) for p in chosen], indent=2))
    elif fmt == "markdown":
        click.echo(render.preset_markdown(chosen[0]) if name is not None else render.overview_markdown())
    else:
        console = _console()
        console.print(render.preset_table(chosen[0]) if name is not None else render.overview_table())
        if name is None:
            click.echo("Each rule is per sample, over a layer's quantities (macs, bias_adds, outputs, ...: "
                       "docs/conventions.md); `archcalc conventions NAME` shows every op type's rule.")
        else:
            for what, why in chosen[0].quirks:
                click.echo(f"- {what}: {why}")


def _convention_json(preset: Any) -> dict[str, Any]:
    from archcalc.render.conventions import preset_rules

    return {"name": preset.name, "tool": preset.tool, "unit": preset.unit, "summary": preset.summary,
            "per_layer": preset.per_layer, "scale": preset.scale, "doc": preset.anchor,
            "quirks": [{"what": what, "why": why} for what, why in preset.quirks],
            "rules": {op: {"forward": f, "backward": b or None, "note": n} for op, f, b, n in preset_rules(preset)}}


def _printable(analysis: Any) -> Any:
    """``analysis``, unless a figure is too long to write out (a huge --batch): ArchcalcError."""
    from archcalc.render.format import check_printable

    check_printable(analysis)
    return analysis


@cli.command()
@click.argument("model", type=MODEL)
@_import_options
@click.argument("layer")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Samples per batch.")
@click.option("--dtype", type=click.Choice(list(formulas.DTYPE_BYTES)), default="float32", show_default=True, help="Value type.")
@_convention_option
def explain(model: Any, layer: str, batch: int, dtype: str, convention: str) -> None:
    """The arithmetic behind every number of one LAYER, written out step by step."""
    from archcalc.explain import explain_layer
    from archcalc.passes import analyze

    node = model.node(layer)
    lines = explain_layer(model, _printable(analyze(model, batch=batch, dtype=dtype)), node.name, group_digits=True)
    if convention != "archcalc":
        from archcalc.conventions import count

        counted = count(model, convention, batch)
        found = counted.layers[node.name]
        lines.append((f"{convention} {counted.convention.unit}", f"{found.explained} (per sample)"
                      + (f" x batch {batch} = {found.forward:,}" if batch != 1 else "")))
    click.echo(f"{model.name} / {node.name} ({node.type})")
    width = max(len(quantity) for quantity, _ in lines)
    for quantity, text in lines:
        click.echo(f"  {quantity:<{width}}  {text}")


@cli.command()
@click.argument("models", type=MODEL, nargs=-1, required=True)
@_import_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also draw the models as a bubble chart, MACs across, bubble area ~ params: .svg or .png "
                   "(needs matplotlib: pip install 'archcalc[chart]').")
@click.option("--y", "y_figure", type=click.Choice(["params", "top1"]), default=None,
              help="The chart's y axis: params, or top1 (the top-1 accuracy each model's spec cites). [default: params]")
@_memory_model_option
@_analysis_options
def compare(models: tuple[Any, ...], fmt: str, plot: str | None, y_figure: str | None, memory_model: str, batch: int,
            dtype: str, optimizer: str) -> None:
    """Totals of several MODELS side by side, with each one's ratio to the first.

    --plot FILE draws the lecture's architectures chart (after Canziani et al. 2016): one
    bubble per model, MACs against params or (--y top1) cited top-1 accuracy.
    """
    from archcalc.passes import analyze
    from archcalc.report import Comparison

    if y_figure is not None and plot is None:
        raise click.UsageError("--y chooses the chart's y axis: give --plot FILE too")
    if plot is not None:
        from archcalc.render.chart import chart_format

        chart_format(plot)  # a bad suffix is refused before the analysis
        _regular_output(plot, "compare --plot")
    meta = click.get_current_context().meta
    if (meta.get("archcalc.input") is not None or meta.get("archcalc.partial")) and not meta.get("archcalc.imported"):
        raise ArchcalcError("--input and --partial apply to imported networks (.onnx, .prototxt, torchvision:NAME, "
                            "package.module:Name), and none of the models is one")
    comparison = Comparison(tuple(_printable(analyze(m, batch=batch, dtype=dtype, optimizer=optimizer,
                                                     memory_model=memory_model)) for m in models))
    path = None
    if plot is not None:  # drawn first: a missing reference, matplotlib or directory fails before any output
        from archcalc.render.chart import chart_points, write_chart

        path = write_chart(chart_points(models, comparison.analyses, y_figure or "params"), plot, y_figure or "params", batch=batch)
    if fmt == "json":
        click.echo(json.dumps(comparison.to_dict(), indent=2))
    else:
        from archcalc.render.table import compare_table

        _console().print(compare_table(comparison))
    if path is not None:
        click.echo(f"wrote {path}", err=fmt == "json")


@cli.command("diff")
@click.argument("models", type=MODEL, nargs=-1, required=True)
@_import_options
@click.option("--convention", default=None, metavar="NAME",
              help="One model: the convention A it is counted under; two models: also compare their counts under it "
                   "(`archcalc conventions` lists them). [default: archcalc]")
@click.option("--vs", "versus", default=None, metavar="NAME", help="One model: the convention B it is compared with.")
@click.option("--format", "fmt", type=_FORMATS, default="table", show_default=True, help="Output format.")
@click.option("--all", "include_equal", is_flag=True, help="Show the rows that are equal too.")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Show N levels of blocks: 1 folds each top-level block into one row (as report's --depth).")
@click.option("--align", "alignment", type=click.Choice(["name", "position"]), default=None,
              help="Two models: align layers by name, then the rest by position (name), or by position alone "
                   "(position: for layers numbered in order, relu8 naming another layer once a conv is inserted). "
                   "[default: name]")
@click.option("--explain", "with_arithmetic", is_flag=True,
              help="Conventions: each rule with the layer's values in (table, markdown; JSON and CSV always carry it).")
@_memory_model_option
@_analysis_options
@click.pass_context
def diff(ctx: click.Context, models: tuple[Any, ...], convention: str | None, versus: str | None, fmt: str,
         include_equal: bool, depth: int | None, alignment: str | None, with_arithmetic: bool, memory_model: str,
         batch: int, dtype: str, optimizer: str) -> None:
    """Two MODELS layer by layer, or one MODEL under two conventions (--convention A --vs B).

    Two models (zoo names, specs or imported networks): layers aligned by name, then by position;
    the rows that differ (type, inputs, output shape, params, MACs, activations...; with
    --convention NAME the count under that convention too), added and removed layers, and the
    totals with their ratio. One model: the layers two conventions count
    differently, each with both counts, the difference and each convention's rule. Differences
    are B - A; only the differing rows are shown unless --all.
    """
    if len(models) > 2:
        raise ArchcalcError(f"diff compares two models, or one model under two conventions; got {len(models)} models "
                            "(archcalc compare puts the totals of several side by side)")
    if len(models) == 2:
        if versus is not None:
            raise ArchcalcError("--vs goes with one model (archcalc diff MODEL --convention A --vs B); two models are "
                                "compared by their figures, with --convention NAME the count under that convention too")
        if with_arithmetic:
            raise ArchcalcError("--explain shows the conventions' arithmetic: it goes with one model and --vs")
        _diff_models(models, fmt, include_equal, depth, alignment != "position", memory_model, batch, dtype, optimizer,
                     convention or "archcalc")
        return
    if versus is None:
        raise ArchcalcError("one model is compared under two conventions: give --vs NAME (and --convention NAME, "
                            "archcalc by default), or give a second model")
    if alignment is not None:
        raise ArchcalcError("--align goes with two models; one model's conventions are compared layer by layer")
    for option in ("memory_model", "dtype", "optimizer"):
        if ctx.get_parameter_source(option) is not click.core.ParameterSource.DEFAULT:
            raise ArchcalcError(f"--{option.replace('_', '-')} applies to a diff of two models; conventions count "
                                "operations, not memory")
    if with_arithmetic and fmt in ("json", "csv"):
        raise ArchcalcError("--explain goes with --format table or markdown (JSON and CSV always carry the arithmetic)")
    _check_imported_options()
    from archcalc.conventions import get
    from archcalc.diff import diff_conventions

    preset_a, preset_b = get(convention or "archcalc"), get(versus)
    result = diff_conventions(models[0], preset_a, preset_b, batch=batch, depth=depth)
    _check_digits(result.model, batch, [value for _, a, b in result.totals() for value in (a, b)])
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(include_equal), indent=2))
    elif fmt == "csv":
        click.echo(result.to_csv(include_equal), nl=False)
    elif fmt == "markdown":
        from archcalc.render.diff import convention_diff_markdown

        click.echo(convention_diff_markdown(result, include_equal, with_arithmetic), nl=False)
    else:
        from archcalc.render.diff import convention_diff_table

        _console().print(convention_diff_table(result, include_equal, with_arithmetic))


def _diff_models(models: tuple[Any, ...], fmt: str, include_equal: bool, depth: int | None, by_name: bool,
                 memory_model: str, batch: int, dtype: str, optimizer: str, convention: str) -> None:
    """`archcalc diff MODEL_A MODEL_B`: analyse both alike, align, print in the format asked."""
    from archcalc.diff import diff_analyses
    from archcalc.passes import analyze

    _check_imported_options()
    from archcalc.conventions import get

    convention = get(convention).name  # an unknown name is refused before any analysis
    a, b = (_printable(analyze(m, batch=batch, dtype=dtype, optimizer=optimizer, memory_model=memory_model,
                               convention=convention)) for m in models)
    result = diff_analyses(a, b, depth, by_name)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(include_equal), indent=2))
    elif fmt == "csv":
        click.echo(result.to_csv(include_equal), nl=False)
    elif fmt == "markdown":
        from archcalc.render.diff import model_diff_markdown

        click.echo(model_diff_markdown(result, include_equal), nl=False)
    else:
        from archcalc.render.diff import model_diff_table

        _console().print(model_diff_table(result, include_equal))


def _check_imported_options() -> None:
    """--input and --partial given when no model is imported: ArchcalcError (as compare)."""
    meta = click.get_current_context().meta
    if (meta.get("archcalc.input") is not None or meta.get("archcalc.partial")) and not meta.get("archcalc.imported"):
        raise ArchcalcError("--input and --partial apply to imported networks (.onnx, .prototxt, torchvision:NAME, "
                            "package.module:Name), and none of the models is one")


def _check_digits(model: str, batch: int, values: list[int]) -> None:
    """ArchcalcError when a count would have more digits than archcalc writes out (an absurd --batch)."""
    from archcalc.render.format import MAX_DIGITS, si

    digits = int(max((abs(v).bit_length() for v in values), default=0) * 0.30103) + 1
    if digits > MAX_DIGITS:
        raise ArchcalcError(f"model {model!r} at batch {si(batch)}: a count would have about {digits:,} digits, more "
                            f"than archcalc writes out (at most {MAX_DIGITS:,}); use a smaller --batch")


@cli.command()
@click.argument("model", type=MODEL)
@_import_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="File to write; the format comes from the extension: .svg, .png, .pdf or .dot. "
                   "Default: the model's name as a file name in the current directory, with .svg.")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Show N levels of blocks: 1 folds each top-level block into one node.")
@click.option("--color", type=click.Choice(["none", "macs", "params", "activations"]), default="none", show_default=True,
              help="Fill each node by its share of this total (the number is in the label too).")
@click.option("--rankdir", type=click.Choice(["TB", "LR"]), default="TB", show_default=True, help="Top to bottom or left to right.")
@click.option("--compact/--no-compact", default=None,
              help="Draw each layer with the chain of point-wise ops it alone feeds (batchnorm, ReLU, dropout...) "
                   "as one node listing them, with summed params and MACs. [default: on for networks over 60 layers]")
@click.option("--wrap", type=click.IntRange(min=0), default=None, metavar="RANKS",
              help="Cut long chains into columns (rows with LR) of at most RANKS ranks, between blocks; 0: never. "
                   "[default: when the drawing would be over 2.5 times longer than wide]")
def render(model: Any, output: str | None, depth: int | None, color: str, rankdir: str, compact: bool | None,
           wrap: int | None) -> None:
    """Draw the graph with Graphviz, each node labelled with its shape, params and MACs.

    .dot needs no Graphviz; .svg, .png and .pdf need its dot program (Debian: apt-get install
    graphviz). Without it the DOT source is written instead and the command exits with status 3.
    """
    import warnings

    from archcalc.render.dot import default_output
    from archcalc.render.dot import render as render_graph

    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        path = render_graph(model, default_output(model.name) if output is None else output, depth=depth, color=color, rankdir=rankdir,
                            compact=compact, wrap=wrap)
    for note in notes:
        click.echo(f"note: {note.message}", err=True)
    click.echo(f"wrote {path}")


@cli.command("html")
@click.argument("model", type=MODEL)
@_import_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="The .html file to write (-: standard output). Default: the model's name as a file name in the "
                   "current directory, with .html.")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Show N levels of blocks first (the page's toggle offers the others): 1 folds each top-level block.")
@click.option("--color", type=click.Choice(["none", "macs", "params", "activations"]), default="macs", show_default=True,
              help="Fill the graph's nodes by their share of this total first (the page's toggle offers the others).")
@_memory_model_option
@_analysis_options
def html_command(model: Any, output: str | None, depth: int | None, color: str, memory_model: str, batch: int, dtype: str,
                 optimizer: str) -> None:
    """One self-contained HTML page: the graph beside the layer table (sortable, filterable), totals and
    footer; click a layer for its figures, its arithmetic, its receptive field and its sliding window.

    The page needs no network: open it from disk in any browser.
    """
    from archcalc.render.dot import default_output
    from archcalc.render.html import page, payload

    if output is not None and output != "-" and not output.strip():
        raise ArchcalcError("the output file name is empty; give one ending in .html (or - for standard output)")
    if (output is not None and output != "-" and not Path(output).is_dir()
            and not output.lower().endswith((".html", ".htm"))):
        raise ArchcalcError(f"-o {output}: the page is HTML; give a file name ending in .html (or - for standard output)")
    data = payload(model, depth=depth, color=color, batch=batch, dtype=dtype, optimizer=optimizer, memory_model=memory_model)
    _write_text(page(data, title=data["title"]), default_output(model.name, "html") if output is None else output)


@cli.command()
@click.argument("model", type=MODEL)
@_import_options
@click.option("--batch", type=click.IntRange(1, MAX_BATCH), default=8, show_default=True, help="Samples per batch.")
@click.option("--steps", type=click.IntRange(1, MAX_STEPS), default=None,
              help="SGD steps on one random batch. [default: 20, 1 with --check]")
@click.option("--lr", type=FiniteFloat(0), default=0.01, show_default=True, help="Learning rate.")
@click.option("--momentum", type=FiniteFloat(0, 1), default=0.9, show_default=True, help="SGD momentum.")
@click.option("--weight-decay", type=FiniteFloat(0), default=0.0, show_default=True, help="L2 weight decay.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seeds the weights, the data and dropout.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True, help="Array type.")
@click.option("--check", is_flag=True, help="Show each layer's executed shape and MACs beside the analyzer's.")
@click.option("--loss", "loss", type=click.Choice(["bce"]), default=None,
              help="bce: sigmoid binary cross-entropy from a one-unit output (1,) against random 0/1 labels. "
                   "[default: cross-entropy for a class output, else mean squared error]")
@click.option("--max-memory", type=ByteSize(), default=None,
              help="Refuse to run above this estimate: 1GB = 10^9 bytes, 1GiB = 2^30. [default: half the free memory]")
def run(model: Any, batch: int, steps: int | None, lr: float, momentum: float, weight_decay: float, seed: int, dtype: str,
        check: bool, loss: str | None, max_memory: int | None) -> None:
    """Train MODEL on a random batch with the NumPy executor: loss per step, then time per layer.

    Classifiers get softmax cross-entropy against random labels; other outputs the mean squared
    error to random targets; --loss bce a one-unit output binary cross-entropy against random
    0/1 labels. Every layer's output shape and MAC count is checked against the
    analyzer's as it runs. The memory is estimated first, and a run above --max-memory refused.
    """
    from rich.markup import escape
    from rich.progress import Progress

    from archcalc.execute import Executor, timing_report, train_step, training_batch
    from archcalc.render.execution import timing_table

    executor = Executor(model, seed=seed, dtype=dtype, max_memory=max_memory, batch=batch)  # refuses before allocating
    executor.needs_input_grad = False  # training never reads dJ/d(input)
    steps = steps or (1 if check else 20)
    data = training_batch(executor, batch, seed + 1, loss)
    console = _console()
    console.print(f"{escape(model.name)}: batch {batch}, {dtype}, SGD lr {lr} momentum {momentum}, {data.loss} on one random "
                  f"batch (kernels: {_backend()})")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("training", total=steps)
        done = 0
        for step in range(1, steps + 1):
            value = train_step(executor, data, lr=lr, momentum=momentum, weight_decay=weight_decay)
            done = step
            progress.console.print(f"step {step:>4}  loss {value:.6f}")
            progress.advance(task)
            if not math.isfinite(value):
                click.echo(f"warning: training diverged: the loss is {value} at step {step}; try a smaller --lr", err=True)
                break
    console.print(timing_table(timing_report(executor, done), check))


def _backend() -> str:
    from archcalc import kernels

    return kernels.BACKEND


@cli.command("gradcheck")
@click.argument("model", type=MODEL)
@_import_options
@click.option("--batch", type=click.IntRange(1, MAX_BATCH), default=2, show_default=True, help="Samples per batch.")
@click.option("--samples", type=click.IntRange(min=1), default=6, show_default=True, help="Entries checked per tensor.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seeds the weights, the data and the entries checked.")
@click.option("--tolerance", type=FiniteFloat(0), default=1e-5, show_default=True,
              help="Largest relative error that passes; absolute differences below 1e-8 count as agreement (rounding).")
@click.option("--max-memory", type=ByteSize(), default=None,
              help="Refuse to run above this estimate: 1GB = 10^9 bytes, 1GiB = 2^30. [default: half the free memory]")
def gradcheck_command(model: Any, batch: int, samples: int, seed: int, tolerance: float, max_memory: int | None) -> None:
    """Backward's gradients against central differences (float64), per parameter tensor and the input.

    First says how many forward passes it will run and about how long they take (from timing
    one), then shows its progress per tensor. Exits with status 1 when a tensor's relative
    error exceeds the tolerance.
    """
    from rich.markup import escape
    from rich.progress import Progress

    from archcalc.execute import Gradcheck
    from archcalc.render.execution import gradcheck_table

    console = _console()
    with console.status("timing a forward pass"):
        checker = Gradcheck(model, batch=batch, seed=seed, samples=samples, tolerance=tolerance, max_memory=max_memory)
    console.print(escape(str(checker.plan)))
    with Progress(console=console, transient=True) as progress:
        overall = progress.add_task("forward passes", total=checker.plan.passes)
        tensor = progress.add_task("", total=1)

        def advance(name: str, done: int, entries: int) -> None:
            progress.update(tensor, description=escape(name), completed=done, total=entries)
            if done:
                progress.advance(overall, 2)

        report = checker.run(advance)
    console.print(gradcheck_table(report))
    console.print(report.verdict())
    if not report.passed:
        sys.exit(1)


#: The columns `template` leaves blank and `grade` asks for by default (archcalc.grade.DEFAULT_COLUMNS).
DEFAULT_GRADE_COLUMNS = ("output_shape", "params", "macs", "activations")


@cli.command()
@click.argument("model", type=MODEL)
@_import_options
@click.argument("answers", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "json", "gradescope"]), default="table", show_default=True,
              help="gradescope: the autograder's results.json.")
@click.option("--rows", type=click.Choice(["lecture", "all"]), default="lecture", show_default=True,
              help="Rows asked for, as `archcalc template --rows` wrote them: lecture (conv, pooling, linear) or all.")
@click.option("--columns", default=",".join(DEFAULT_GRADE_COLUMNS), show_default=True,
              help="Comma-separated columns asked for. The maximum score is rows x columns.")
@click.option("--template", "template_file", type=click.Path(dir_okay=False), default=None,
              help="The template handed out (a CSV with name and column headers): its rows and columns are asked for.")
@click.option("--show-answers/--hide-answers", default=None,
              help="Include the right values for wrong cells. [default: hidden for gradescope, shown otherwise]")
@click.option("--explain", "with_arithmetic", is_flag=True, help="Add the arithmetic behind each wrong cell.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Batch the answers assume.")
@click.option("--dtype", type=click.Choice(list(formulas.DTYPE_BYTES)), default="float32", show_default=True, help="For bytes.")
@click.pass_context
def grade(ctx: click.Context, model: Any, answers: str, fmt: str, rows: str, columns: str, template_file: str | None,
          show_answers: bool | None, with_arithmetic: bool, batch: int, dtype: str) -> None:
    """Mark a filled-in layer table (CSV or JSON) cell by cell against MODEL's analysis.

    The rows and columns asked for (--rows and --columns, or --template) fix the maximum
    score; a layer answered twice counts once. Rows match by a name column, or else by order
    as in `archcalc template MODEL`. Columns: any of output_shape, params,
    params_weights_only, macs, flops, activations, activation_bytes.
    """
    from click.core import ParameterSource

    from archcalc.grade import grade as grade_table
    from archcalc.grade import read_answers, read_template

    if show_answers is None:
        show_answers = fmt != "gradescope"
    if with_arithmetic and not show_answers:
        raise click.UsageError("--explain writes out the answers; add --show-answers to give them to students")
    asked_rows: Any = rows
    asked_columns = tuple(c.strip() for c in columns.split(",") if c.strip())
    if template_file is not None:
        for option in ("rows", "columns"):
            if ctx.get_parameter_source(option) is not ParameterSource.DEFAULT:
                raise click.UsageError(f"--template fixes the rows and columns; drop --{option}")
        asked_rows, listed = read_template(template_file)
        asked_columns = tuple(listed)
    result = grade_table(model, read_answers(answers), batch=batch, dtype=dtype, explain=with_arithmetic,
                         source=f"answers '{answers}'", rows=asked_rows, columns=asked_columns)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(show_answers), indent=2))
        return
    if fmt == "gradescope":
        click.echo(json.dumps(result.to_gradescope(show_answers), indent=2))
        return
    from archcalc.render.grading import grade_table

    _console().print(grade_table(result, show_answers))


@cli.command("template")
@click.argument("model", type=MODEL)
@_import_options
@click.option("--columns", default=",".join(DEFAULT_GRADE_COLUMNS), show_default=True,
              help="Comma-separated columns to leave blank for the student.")
@click.option("--rows", type=click.Choice(["lecture", "all"]), default="lecture", show_default=True,
              help="lecture: the layers the lecture's tables list (conv, pooling, linear); all: every layer, the input too.")
def template_command(model: Any, columns: str, rows: str) -> None:
    """A blank answer table (CSV) for MODEL: one row per asked layer, the chosen columns empty.

    `archcalc grade` with the same --rows and --columns (or --template FILE) scores out of
    exactly this table's cells.
    """
    from archcalc.grade import template

    click.echo(template(model, tuple(c.strip() for c in columns.split(",") if c.strip()), rows), nl=False)


@cli.command("im2col")
@click.option("--x", "x_text", required=True, metavar="VALUES",
              help="The input, one channel: 1,0,2,2,3,1 (1D) or rows separated by ';' (2D: 1,2,3;4,5,6; one row: 1,2,3;).")
@click.option("--w", "w_text", required=True, metavar="VALUES", help="The kernel, one filter, as --x (same number of axes).")
@click.option("--stride", default="1", show_default=True, metavar="N[,N]", help="Stride: one int, or one per axis.")
@click.option("--padding", default="0", show_default=True, metavar="N[,N]",
              help="Zero padding: one int, one per axis, per side (before,after in 1D; top,left,bottom,right in 2D), or same / valid.")
@click.option("--dilation", default="1", show_default=True, metavar="N[,N]", help="Dilation: one int, or one per axis.")
@click.option("--dy", "dy_text", default=None, metavar="VALUES", help="dL/dy, the output's shape, as --x. [default: ones]")
def im2col_command(x_text: str, w_text: str, stride: str, padding: str, dilation: str, dy_text: str | None) -> None:
    """The lecture's worked im2col example for a small input: X_hat, y = W X_hat, and the backward.

    Prints X_hat with each column labelled by its output position, y = W X_hat, then for dL/dy
    the gradient dL/dX_hat = W^T dL/dy and col2im's sum back to dL/dx, listing what each input
    position receives from each window that reads it. The lecture's slide (y = [5, 13]):

    \b
        archcalc im2col --x 1,0,2,2,3,1 --w 3,2,1 --stride 2
    """
    from archcalc.im2col import explain_im2col, parse_sizes, parse_values
    from archcalc.render.im2col import im2col_text

    example = explain_im2col(
        parse_values(x_text, "--x"), parse_values(w_text, "--w"),
        stride=parse_sizes(stride, "--stride"), padding=parse_sizes(padding, "--padding", ("same", "valid")),
        dilation=parse_sizes(dilation, "--dilation"), dy=None if dy_text is None else parse_values(dy_text, "--dy"))
    click.echo(im2col_text(example), nl=False)


#: At most this many ``error:`` lines are printed; the rest are counted in one more line.
MAX_ERROR_LINES = 20


@cli.command("import")
@click.argument("model", type=MODEL)
@_import_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="The .json spec to write (default, or -: standard output).")
@click.option("--rename", is_flag=True,
              help="Rename the repeated units of layers whose names do not nest (Caffe's, many ONNX files') "
                   "as stageN.K.layer, so that they become blocks; without it such names are kept and written flat.")
def import_command(model: Any, output: str | None, rename: bool) -> None:
    """Write MODEL (an .onnx file, a .prototxt, torchvision:NAME, package.module:Name, or any model)
    as a readable archcalc spec: repeated structures as blocks, names kept; it reloads to the same graph."""
    from archcalc.specwriter import dump_spec, readable_spec

    _write_text(dump_spec(readable_spec(model, rename=True) if rename else model), output)


@cli.command("export")
@click.argument("model", type=MODEL)
@_import_options
@click.option("--to", "target", type=click.Choice(["torch", "onnx"]), required=True,
              help="torch: PyTorch source (an nn.Module); onnx: an ONNX file (onnx.helper, no torch needed).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="File to write (required for onnx; torch source goes to standard output without it).")
@click.option("--weights", type=click.Choice(["random", "zeros"]), default="random", show_default=True,
              help="onnx: the initial weights written (random: He-initialised as the executor's, from --seed).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seeds the random weights.")
def export_command(model: Any, target: str, output: str | None, weights: str, seed: int) -> None:
    """Write MODEL as PyTorch source a student can read and train, or as an ONNX file that runs in onnxruntime."""
    if target == "torch":
        from archcalc.exporters.torch import torch_source

        _write_text(torch_source(model), output)
        return
    if output is None:
        raise ArchcalcError("export --to onnx: give the file to write with -o FILE.onnx")
    _regular_output(output, "export --to onnx")
    from archcalc.exporters.onnx import to_onnx

    to_onnx(model, output, weights=None if weights == "random" else "zeros", seed=seed)
    click.echo(f"wrote {output}", err=True)


@cli.command("serve")
@click.argument("spec", required=False, metavar="[SPEC]")
@_import_options
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 to listen on; 0: a free one (the URL is printed).")
@click.option("--open", "open_browser", is_flag=True, help="Also open the editor in the default web browser.")
def serve_command(spec: str | None, port: int, open_browser: bool) -> None:
    """A local live editor at http://127.0.0.1:PORT: the JSON spec on the left, the report view
    (as `archcalc html`) on the right, updated as you type; the zoo as presets; downloads of
    the spec and the report (json, csv, markdown, html). Ctrl-C stops it.

    SPEC: a .json file opens savable (the page's Save writes it back, and nothing else is ever
    written); a zoo name, a .py spec or an imported network opens as JSON, read-only. The page
    sends JSON only: a .py spec is never run from the browser.
    """
    from archcalc import serve
    from archcalc.spec import MAX_LAYERS

    ctx = click.get_current_context()
    max_layers = ctx.find_root().params.get("max_layers") or MAX_LAYERS
    input_shape, partial = ctx.meta.get("archcalc.input"), bool(ctx.meta.get("archcalc.partial"))
    document = None if spec is None else serve.open_document(spec, max_layers, input_shape=input_shape, partial=partial)
    server = serve.make_server(port, document, max_layers)
    serve.serve(server, announce=lambda line: click.echo(line), open_browser=open_browser)


@cli.command("memory")
@click.argument("model", type=MODEL)
@_import_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format.")
@click.option("--fit", "limit", type=ByteSize(), default=None, metavar="SIZE",
              help="The largest batch whose training (and inference) peak fits SIZE (16GiB, 8GB), stating its assumptions.")
@click.option("--memory-model", type=click.Choice(["pytorch", "lecture"]), default="pytorch", show_default=True,
              help="With --fit: training memory by what autograd keeps, or the lecture's 2 x activations.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also draw the timeline (.svg, .png, .pdf; needs matplotlib: pip install 'archcalc[chart]').")
@_analysis_options
def memory_command(model: Any, fmt: str, limit: int | None, memory_model: str, plot: str | None, batch: int, dtype: str,
                   optimizer: str) -> None:
    """The memory timeline: activation-side bytes live after each forward and backward step, what each
    layer keeps for backward (as PyTorch's autograd), the training and inference peaks; or, with --fit,
    the largest batch that fits."""
    from archcalc import memory as model_memory
    from archcalc.render.format import binary_bytes

    if limit is None and memory_model == "lecture":
        raise ArchcalcError("the timeline is the pytorch model's (its summary gives the lecture's figure too); "
                            "--memory-model lecture goes with --fit")
    if limit is not None:
        f = model_memory.fit(model, limit, dtype=dtype, optimizer=optimizer, memory_model=memory_model)
        if fmt == "json":
            click.echo(json.dumps({"limit": f.limit, "dtype": f.dtype, "optimizer": f.optimizer, "memory_model": f.model,
                                   "training_batch": f.training, "training_bytes": f.training_bytes,
                                   "inference_batch": f.inference, "inference_bytes": f.inference_bytes,
                                   "max_batch": model_memory.MAX_FIT_BATCH, "assumptions": f.assumptions}, indent=2))
            return
        name = getattr(model, "name", model)
        for what, found, used in (("training", f.training, f.training_bytes), ("inference", f.inference, f.inference_bytes)):
            if found == 0:
                click.echo(f"{name}: {what}: not even batch 1 fits {binary_bytes(f.limit)} (batch 1 needs {binary_bytes(used)}).")
            else:
                bound = "at least " if found >= model_memory.MAX_FIT_BATCH else ""
                click.echo(f"{name}: {what}: largest batch {bound}{found:,} ({binary_bytes(used, 2)} of {binary_bytes(f.limit, 2)}; "
                           f"{memory_model + ' model' if what == 'training' else 'peak with buffer reuse'}).")
        click.echo(f"Assumptions: {f.assumptions}.")
        return
    from archcalc.render import memory as shown

    m = model_memory.memory(model, batch=batch, dtype=dtype, optimizer=optimizer)
    if plot is not None:
        _regular_output(plot, "memory --plot")
        shown.plot(m, plot)
        click.echo(f"wrote {plot}", err=True)
    if fmt == "json":
        click.echo(json.dumps(model_memory.to_dict(m), indent=2))
        return
    _console().print(shown.timeline_table(m))
    for line in shown.summary_lines(m):
        click.echo(line)


def _regular_output(path: str, what: str) -> None:
    """ArchcalcError unless ``path`` is a regular file or does not exist yet: a binary file is written
    and then read back (the ONNX checker, matplotlib), which /dev/null or a pipe cannot do."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        raise ArchcalcError(f"{what}: {path!r} is not a regular file; write to a file (-o/--plot FILE)")


def _write_text(text: str, output: str | None) -> None:
    """``text`` to the file ``output``, or to standard output; a file that cannot be written is one error line."""
    if output is None or output == "-":
        click.echo(text, nl=not text.endswith("\n"))
        return
    try:
        with open(output, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as error:
        raise ArchcalcError(f"cannot write {output!r}: {(error.strerror or str(error)).lower()}") from None
    click.echo(f"wrote {output}", err=True)


def _print_problems(problems: tuple[str, ...] | list[str], omitted: int = 0) -> None:
    """One ``error:`` line per problem, at most :data:`MAX_ERROR_LINES`, then how many more there
    were (``omitted`` counts problems the error found but did not list)."""
    for problem in problems[:MAX_ERROR_LINES]:
        click.echo(f"error: {' '.join(str(problem).splitlines())}", err=True)
    if len(problems) + omitted > MAX_ERROR_LINES:
        more = len(problems) + omitted - MAX_ERROR_LINES
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
    except OSError as error:  # standard output cannot be written (a full disk: > /dev/full)
        if error.errno not in _OUTPUT_ERRNOS:
            raise  # any other OSError here is a bug: keep its traceback
        _silence_stdout(keep_stderr=True)
        click.echo(f"error: cannot write the output: {error.strerror or error}", err=True)
        sys.exit(2)


def _run(argv: list[str] | None) -> None:
    try:
        status = cli.main(args=argv, prog_name="archcalc", standalone_mode=False)
        if isinstance(status, int) and status:  # ctx.exit(status): click returns it instead of exiting
            sys.exit(status)
    except ArchcalcError as error:
        _print_problems(error.problems or (str(error) or type(error).__name__,), getattr(error, "omitted", 0))
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


#: Why writing the output can fail through no fault of archcalc: a full disk or quota, an I/O error,
#: a file too large, a closed descriptor.
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EBADF})


def _silence_stdout(keep_stderr: bool = False) -> None:
    """After a closed pipe: point stdout (and stderr) at /dev/null so the interpreter's last flush cannot fail."""
    for stream in (sys.stdout,) if keep_stderr else (sys.stdout, sys.stderr):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass  # stdout is not a real file (a test runner's buffer): nothing is left to flush

"""The per-layer report as a rich table or a markdown table, built from column definitions.

Presentation only: every figure comes from an :class:`~archcalc.report.Analysis`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from archcalc.figures import Figure, figures_for
from archcalc.paths import Paths
from archcalc.render.format import binary_bytes, figure_text, grouped, ratio, shape, short_description, si
from archcalc.report import RESOLUTION_MARK, Analysis, Comparison, LayerReport, fold

if TYPE_CHECKING:
    from rich.console import RenderableType


@dataclass(frozen=True)
class Column:
    """One column: header, how to get its text from a row, and its justification."""

    header: str
    text: Callable[[LayerReport, Analysis], str]
    justify: str = "right"
    #: The figure it shows, if it shows one.
    figure: Figure | None = None


def _type(row: LayerReport, analysis: Analysis) -> str:
    text = f"{row.type} {row.summary}".strip()
    return f"{text} {RESOLUTION_MARK}" if row.resolution_dependent else text


def _batch(analysis: Analysis) -> int | None:
    return analysis.batch if analysis.batch != 1 else None


def _figure_cell(figure: Figure, value: Any, analysis: Analysis, total: bool = False) -> str:
    """A figure as the table prints it: shapes with the batch axis, brief counts with an SI
    suffix, other counts with every digit, bytes in binary units."""
    if figure.kind == "shape":
        return shape(value, _batch(analysis))
    if figure.kind == "count" and figure.brief:
        return si(value, 2 if total else 1)
    return figure_text(figure.kind, value)


def _figure_column(figure: Figure) -> Column:
    # a figure that totals over stored outputs marks the rows it leaves out (in-place ops, views)
    def text(row: LayerReport, analysis: Analysis) -> str:
        cell = _figure_cell(figure, row.figure(figure.name), analysis)
        return cell + " *" if figure.total == "stored" and figure.kind == "count" and not row.stores_output else cell

    return Column(figure.header, text, figure=figure)


#: Layer, type, every figure tables carry (archcalc.figures), receptive field.
COLUMNS = (
    Column("Layer", lambda r, a: r.name, "left"),
    Column("Type", _type, "left"),
    *(_figure_column(figure) for figure in figures_for("table")),
    Column("Receptive field", lambda r, a: r.receptive_field.text()),
)


def _convention_header(analysis: Analysis) -> str:
    from archcalc.conventions import get

    preset = get(analysis.convention)
    return f"{preset.name} {preset.unit}"


def columns_of(analysis: Analysis) -> tuple[Column, ...]:
    """:data:`COLUMNS`, with the count under the analysis' convention after the MACs when it is
    not archcalc's (whose count is the MACs)."""
    if analysis.convention == "archcalc":
        return COLUMNS
    from archcalc.figures import LAYER_FIGURES

    figure = next(f for f in LAYER_FIGURES if f.name == "convention_count")
    column = _figure_column(figure)
    column = Column(_convention_header(analysis), column.text, figure=figure)
    at = next(i for i, c in enumerate(COLUMNS) if c.figure is not None and c.figure.name == "macs") + 1
    return (*COLUMNS[:at], column, *COLUMNS[at:])


def rows(analysis: Analysis, depth: int | None = None) -> tuple[LayerReport, ...]:
    """The rows to show: every layer, or ``depth`` levels of blocks (see :func:`fold`)."""
    return analysis.layers if depth is None else fold(analysis.layers, depth)


def totals_cells(analysis: Analysis) -> list[str]:
    """The totals row, aligned with :func:`columns`."""
    cells = []
    for index, column in enumerate(columns_of(analysis)):
        figure = column.figure
        if index == 0:
            cells.append("Total")
        elif figure is None or not figure.total:
            cells.append("")
        else:
            cells.append(_figure_cell(figure, getattr(analysis.totals, figure.name), analysis, total=True))
    return cells


def footer(analysis: Analysis) -> list[str]:
    """The conventions behind the figures, stated under every table."""
    t, batch = analysis.totals, analysis.batch
    per = "for one sample" if batch == 1 else f"for a batch of {batch}"
    buffers = (f"; buffers (batchnorm's running statistics: saved with the model, not learned): {grouped(t.buffers)}"
               if t.buffers else "")
    in_place = sorted({row.type for row in analysis.layers if not row.stores_output})
    lines = [
        f"Params: {grouped(t.params)} learned parameters, as PyTorch counts them; {grouped(t.params_weights_only)} "
        f"weights only (conv and linear kernels, no biases or norm scale/shift: what the lecture's rows count){buffers}.",
        f"MACs: {grouped(t.macs)} multiply-accumulates {per} = {si(t.flops, 2)} FLOPs (2 per MAC). "
        "torchvision, fvcore and ptflops call the MAC count 'FLOPs'. Bias adds, activations, pooling and "
        f"normalisation are other ops: {grouped(t.other_ops)}.",
        f"Forward activations: {grouped(t.activations)} values = {binary_bytes(t.activation_bytes)} "
        f"({analysis.dtype}): the input and every output that needs new storage"
        + (f"; * marks in-place ops and views ({', '.join(in_place)}), which store nothing." if in_place else "."),
        training_line(analysis),
        f"Inference peak with buffer reuse: {binary_bytes(t.inference_peak_bytes)} of activations"
        + (f" (at {analysis.memory.inference_peak_layer})" if analysis.memory else "")
        + ": each tensor freed after its last reader; in-place layers and views allocate nothing.",
    ]
    if analysis.uncounted:  # first: every total above is a lower bound
        count = sum(u.count for u in analysis.uncounted)
        lines.insert(0, f"Partial: {count} layer(s) of ops archcalc has no rule for are counted as 0 (params, MACs, other "
                     f"ops) and every total is a lower bound: {', '.join(u.text() for u in analysis.uncounted)}.")
    lines.append(convention_line(analysis))
    if analysis.network_depth is not None:
        d = analysis.network_depth
        lines.append(f"Depth: {d.weighted} layer{'' if d.weighted == 1 else 's'} with weights (conv, transposed conv, linear) "
                     "on the longest path, "
                     f"as the papers count; {d.with_pooling} with pooling.")
    fields = [row.receptive_field for row in analysis.layers]
    marks = []  # each mark of the receptive-field column the table shows, said once
    if any(not f.aligned for f in fields):
        marks.append("! where merged branches' centres or strides differ")
    if any(not f.uniform for f in fields):
        marks.append("~ where windows differ in size (adaptive pooling): a field that contains every window")
    if any(not f.exact for f in fields):
        through = "a reshape or an uncounted op" if analysis.uncounted else "a reshape"
        marks.append(f"? where an axis could not be followed through {through} (the whole axis), or a transposed conv "
                     "or upsampling follows other windows (the span of its taps): an upper bound")
    if marks:
        lines.append("Receptive field: " + "; ".join(marks) + ".")
    if any(row.resolution_dependent or row.receptive_field.resolution_dependent for row in analysis.layers):
        lines.append(
            f"{RESOLUTION_MARK} marks what holds for this input size only: a layer's attributes resolved from its input "
            "size (\"same\" padding with a stride pads by the size modulo the stride; a centred crop, an adaptive pool, "
            "an upsampling to a size), and the receptive fields that follow from them; `archcalc explain MODEL LAYER` "
            "shows the arithmetic."
        )
    return lines


def convention_line(analysis: Analysis) -> str:
    """The counting convention in force, its total beside archcalc's MACs, and where its rules are."""
    from archcalc.conventions import get

    preset = get(analysis.convention)
    t = analysis.totals
    if preset.name == "archcalc":
        return (f"Convention: archcalc's own (MACs as CONVENTIONS.md counts them: {preset.anchor}); --convention NAME "
                "counts as a peer tool does (`archcalc conventions` lists them).")
    value = t.convention_count
    versus = (f"{ratio(Fraction(value, t.macs))} archcalc's {grouped(t.macs)} MACs" if t.macs
              else f"archcalc's MACs: {grouped(t.macs)}")
    backward = ("" if analysis.convention_backward is None
                else f"; forward + backward {preset.format(value + analysis.convention_backward)}")
    return (f"Convention: {preset.name}, as {preset.tool} counts ({preset.summary}): {preset.format(value)}{backward}, "
            f"{versus}; its rules: {preset.anchor}.")


def training_line(analysis: Analysis) -> str:
    """The footer's training memory: by the analysis' memory model, the other model's figure beside it."""
    t, m = analysis.totals, analysis.memory
    b = binary_bytes
    fixed = f"params{' + buffers' if t.buffers else ''} + gradients + optimizer state"
    phase = m.peak_phase if m else "backward"
    at = f", at {m.peak_layer}'s {phase} step" if m else ""
    kept = (f"what backward keeps ({b(t.saved_bytes)}: the storages PyTorch's autograd saves, each once) + the largest "
            f"{phase} transient ({b(t.transient_bytes)}{at})")
    head = f"Training memory ({analysis.optimizer}, batch {analysis.batch})"
    # two decimals: the two models' totals are often within a tenth of a unit (VGG16: 1.10 and 1.14 GiB)
    pytorch, lecture = b(t.pytorch_training_bytes, 2), b(t.lecture_training_bytes, 2)
    if analysis.memory_model == "lecture":
        return (f"{head}, the lecture's x2 rule: {fixed} + 2 x activations = {lecture}; by what autograd keeps "
                f"for backward: {pytorch} (--memory-model pytorch, the default).")
    return f"{head}: {fixed} + {kept} = {pytorch}; the lecture's x2 rule: {lecture} (--memory-model lecture)."


#: Columns a narrow terminal hides first, in order; every figure stays in --format json/csv/markdown.
DROP_ORDER = ("Memory", "Weights", "Type", "Receptive field")


def rich_table(analysis: Analysis, depth: int | None = None, width: int | None = None) -> RenderableType:
    """A rich renderable: title, the table with a totals row, the description and the conventions footer.

    The description and footer are lines of their own, as wide as the console (a table caption
    would wrap them at the table's width).

    With ``width`` (a terminal's), columns are hidden in :data:`DROP_ORDER` until the table fits,
    rather than cutting names and numbers short; a line says which.
    """
    from rich.console import Console, Group
    from rich.measure import Measurement
    from rich.text import Text

    shown = list(columns_of(analysis))
    table = _table(analysis, depth, shown)
    hidden = []
    if width is not None:
        console = Console(width=10_000)
        for header in DROP_ORDER:
            if Measurement.get(console, console.options, table).maximum <= width:
                break
            shown = [c for c in shown if c.header != header]
            hidden.append(header)
            table = _table(analysis, depth, shown)
    notes = [f"Hidden to fit {width} columns: {', '.join(hidden)} (a wider terminal or --format markdown shows them)."] if hidden else []
    description = [Text(analysis.description)] if analysis.description else []
    return Group(table, *description, *(Text(line, style="dim") for line in [*footer(analysis), *notes]))


def _table(analysis: Analysis, depth: int | None, columns: list[Column]) -> RenderableType:
    """The rich table; every string from the spec (model, layer names, types) is shown literally."""
    from rich.table import Table
    from rich.text import Text

    input_shape = shape(analysis.input_shape, _batch(analysis))
    table = Table(
        title=Text(f"{analysis.model}: input {input_shape}, {analysis.dtype}"),
        show_footer=True,
        header_style="bold",
    )
    totals = dict(zip((c.header for c in columns_of(analysis)), totals_cells(analysis)))
    for column in columns:
        table.add_column(Text(column.header), justify=column.justify, footer=Text(totals[column.header]), no_wrap=True)
    for row in rows(analysis, depth):
        table.add_row(*(Text(column.text(row, analysis)) for column in columns))
    return table


def markdown_table(analysis: Analysis, depth: int | None = None) -> str:
    """The same table as GitHub markdown, with the footer as a list."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    out = [f"**{analysis.model}**: input {shape(analysis.input_shape, _batch(analysis))}, {analysis.dtype}", ""]
    shown = columns_of(analysis)
    out.append(line([c.header for c in shown]))
    out.append("|" + "|".join(":---" if c.justify == "left" else "---:" for c in shown) + "|")
    out.extend(line([c.text(row, analysis) for c in shown]) for row in rows(analysis, depth))
    out.append(line([f"**{cell}**" if cell else "" for cell in totals_cells(analysis)]))
    out.append("")
    out.extend(f"- {text}" for text in footer(analysis))
    return "\n".join(out) + "\n"


def compare_table(comparison: Comparison) -> RenderableType:
    """``archcalc compare``: one column per network, one row per figure, each value with its
    ratio to the first network's."""
    from rich.table import Table
    from rich.text import Text

    first = comparison.analyses[0]
    title = f"batch {first.batch}, {first.dtype}, {first.optimizer}; training memory by the {first.memory_model} model"
    table = Table(title=Text(title), header_style="bold")
    table.add_column("Total", justify="left")
    for analysis in comparison.analyses:
        table.add_column(Text(analysis.model), justify="right")
    for figure, values, ratios in comparison.rows():
        cells = [Text(figure_text(figure.kind, v) + (f" ({ratio(r)})" if r is not None else "")) for v, r in zip(values, ratios)]
        table.add_row(figure.header, *cells)
    return table


def zoo_table(entries: list[tuple[str, Analysis]]) -> RenderableType:
    """``archcalc list``: one row per zoo model with its input, params, MACs, depth as papers count
    it (layers with weights on the longest path) and a short description."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="archcalc zoo", header_style="bold")
    for header, justify in (("Model", "left"), ("Input", "right"), ("Params", "right"), ("MACs", "right"),
                            ("Depth", "right"), ("Description", "left")):
        table.add_column(header, justify=justify)
    for name, a in entries:
        depth = str(a.network_depth.weighted) if a.network_depth else ""
        cells = (name, shape(a.input_shape), grouped(a.totals.params), si(a.totals.macs, 2), depth,
                 short_description(a.description))
        table.add_row(*(Text(cell) for cell in cells))
    return table


def paths_rows(paths: Paths) -> list[tuple[str, str, str]]:
    """The length distribution of the input-to-output paths as rows (weighted layers on the
    path, paths, share of all paths), ascending by length; at most depth + 1 rows."""
    return [(str(length), grouped(count), f"{100 * count / paths.count:.2f}%") for length, count in paths.lengths.items()]


def paths_summary(paths: Paths) -> str:
    """One line: how many input-to-output paths, and their mean length (exact, and as a decimal)."""
    mean = paths.mean
    exact = str(mean.numerator) if mean.denominator == 1 else f"{mean.numerator}/{mean.denominator} = {float(mean):.4g}"
    return (f"{grouped(paths.count)} input-to-output paths; mean length {exact} layers with weights "
            "(Veit et al. 2016: each skip connection doubles the paths).")


def paths_table(paths: Paths) -> RenderableType:
    """A rich renderable: the path-length distribution (:func:`paths_rows`) and the summary line."""
    from rich.console import Group
    from rich.table import Table

    table = Table(title="Paths by length")
    for column in ("Layers with weights", "Paths", "Share"):
        table.add_column(column, justify="right")
    for row in paths_rows(paths):
        table.add_row(*row)
    return Group(table, paths_summary(paths))


def paths_markdown(paths: Paths) -> str:
    """The path-length distribution as a Markdown table, and the summary line."""
    lines = ["| Layers with weights | Paths | Share |", "|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in paths_rows(paths)]
    return "\n".join(lines) + "\n\n" + paths_summary(paths) + "\n"

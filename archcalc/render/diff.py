"""``archcalc diff`` as rich tables or markdown: two networks layer by layer, or two conventions.

Presentation only: every figure comes from a :class:`~archcalc.diff.ModelDiff` or a
:class:`~archcalc.diff.ConventionDiff`. A cell whose two values differ reads ``A -> B (+B-A)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archcalc.diff import ConventionDiff, CountDiff, LayerDiff, ModelDiff, type_text
from archcalc.figures import LAYER_FIGURES, Figure
from archcalc.render.format import binary_bytes, grouped, ratio, shape, si

if TYPE_CHECKING:
    from rich.console import RenderableType

_INDEX = {figure.name: index for index, figure in enumerate(LAYER_FIGURES)}

#: The figures the diff table shows a column for; the others that differ are named in "Also differs".
TABLE_FIGURES = ("output_shape", "params", "macs", "activations")
#: A figure that follows another (FLOPs = 2 x MACs): not named again when that one differs too.
_FOLLOWS = {"flops": "macs", "activation_bytes": "activations", "params_trainable": "params",
            "params_weights_only": "params", "convention_count": "macs"}
#: Figures never named in "Also differs": the count under a peer's convention has a column of its own
#: (under archcalc's it is the MACs).
_OWN_COLUMN = ("convention_count",)


@dataclass(frozen=True)
class Column:
    """One column of a diff table: header, the text of a row, justification."""

    header: str
    text: Callable[[Any, Any], str]
    justify: str = "left"


def _value_text(figure: Figure, value: Any, batch: int) -> str:
    if figure.kind == "shape":
        return shape(value, batch if batch != 1 else None)
    if figure.kind == "bytes":
        return binary_bytes(value)
    return si(value, 1) if figure.brief else grouped(value)


def _signed(text: str) -> str:
    return text if text.startswith("-") else "+" + text


def figure_cell(row: LayerDiff, name: str, batch: int) -> str:
    """A figure of a row: its value when equal (or when the layer is on one side only), else
    ``A -> B (+B-A)`` (no difference for a shape)."""
    figure = LAYER_FIGURES[_INDEX[name]]
    a = None if row.a is None else row.a.values[_INDEX[name]]
    b = None if row.b is None else row.b.values[_INDEX[name]]
    if a is None or b is None or a == b:
        return _value_text(figure, b if a is None else a, batch)
    text = f"{_value_text(figure, a, batch)} -> {_value_text(figure, b, batch)}"
    if figure.kind != "shape":
        text += f" ({_signed(_value_text(figure, b - a, batch))})"
    return text


def _type_cell(row: LayerDiff, diff: ModelDiff) -> str:
    if row.a is None or row.b is None or "type" not in row.differs:
        return type_text(row.a or row.b)  # type: ignore[arg-type]
    return f"{type_text(row.a)} -> {type_text(row.b)}"


def _inputs_cell(row: LayerDiff, diff: ModelDiff) -> str:
    """The inputs when they differ (A's -> B's), or those of a layer on one side only."""
    if row.a is None or row.b is None:
        return ", ".join((row.a or row.b).inputs)  # type: ignore[union-attr]
    if "inputs" not in row.differs:
        return ""
    return f"{', '.join(row.a.inputs)} -> {', '.join(row.b.inputs)}"


def _also_cell(row: LayerDiff, diff: ModelDiff) -> str:
    if row.a is None or row.b is None:
        return ""
    return ", ".join(LAYER_FIGURES[_INDEX[name]].header.lower() for name in row.differs
                     if name in _INDEX and name not in TABLE_FIGURES and name not in _OWN_COLUMN
                     and _FOLLOWS.get(name) not in row.differs)


def _figure_column(name: str) -> Column:
    return Column(LAYER_FIGURES[_INDEX[name]].header, lambda row, diff: figure_cell(row, name, diff.a.batch), "right")


#: The two-network diff table's columns.
MODEL_COLUMNS = (
    Column("Layer", lambda row, diff: row.name),
    Column("Aligned", lambda row, diff: row.aligned),
    Column("Type", _type_cell),
    Column("Inputs", _inputs_cell),
    *(_figure_column(name) for name in TABLE_FIGURES),
    Column("Also differs", _also_cell),
)


#: Columns left out when no row shown has anything in them.
OPTIONAL_COLUMNS = ("Inputs", "Also differs")


def _convention_header(name: str) -> str:
    from archcalc.conventions import get

    preset = get(name)
    return f"{preset.name} ({preset.unit})"


def model_columns(diff: ModelDiff) -> tuple[Column, ...]:
    """:data:`MODEL_COLUMNS`, with the count under the analyses' convention after the MACs when it
    is a peer's (under archcalc's own it is the MACs)."""
    convention = diff.a.convention
    if convention == "archcalc":
        return MODEL_COLUMNS
    column = _figure_column("convention_count")
    column = Column(_convention_header(convention), column.text, column.justify)
    at = [c.header for c in MODEL_COLUMNS].index(LAYER_FIGURES[_INDEX["macs"]].header) + 1
    return (*MODEL_COLUMNS[:at], column, *MODEL_COLUMNS[at:])


def model_cells(diff: ModelDiff, rows: tuple[LayerDiff, ...]) -> tuple[list[Column], list[list[str]]]:
    """The columns to show and each row's cells: :func:`model_columns`, less an optional column
    that is empty in every row."""
    columns = model_columns(diff)
    cells = [[c.text(r, diff) for c in columns] for r in rows]
    keep = [k for k, c in enumerate(columns) if c.header not in OPTIONAL_COLUMNS or any(row[k] for row in cells)]
    return [columns[k] for k in keep], [[row[k] for k in keep] for row in cells]


def model_totals_rows(diff: ModelDiff) -> list[tuple[str, str, str, str, str]]:
    """The totals table's rows: figure, A, B, B - A, B / A (every figure ``archcalc compare`` shows)."""
    out = []
    totals = list(diff.totals("compare"))
    if diff.a.convention != "archcalc":  # the peer's count, after the MACs
        at = next(k for k, t in enumerate(totals) if t.figure.name == "macs") + 1
        totals.insert(at, next(t for t in diff.totals() if t.figure.name == "convention_count"))
    for total in totals:
        figure = total.figure
        r = total.ratio
        header = _convention_header(diff.a.convention) if figure.name == "convention_count" else figure.header
        out.append((header, _total_text(figure, total.a), _total_text(figure, total.b),
                    _signed(_total_text(figure, total.difference)) if total.difference else "0",
                    "" if r is None else ratio(r)))
    return out


def _total_text(figure: Figure, value: int) -> str:
    # two decimals: totals of two networks are often within a tenth of a unit (VGG16, VGG19: 1.10 and 1.14 GiB)
    return binary_bytes(value, 2) if figure.kind == "bytes" else grouped(value)


def model_footer(diff: ModelDiff, include_equal: bool) -> list[str]:
    """What the rows are and how they were aligned."""
    a, b, c = diff.a, diff.b, diff.counts()
    settings = f"batch {a.batch}, {a.dtype}" + (f", {diff.depth} level(s) of blocks shown" if diff.depth else "")
    if a.convention != "archcalc":
        from archcalc.conventions import get

        preset = get(a.convention)
        settings += f"; counted as {preset.name} too ({preset.tool}: {preset.anchor})"
    equal = (f"{c['equal']} equal (shown)" if include_equal
             else f"{c['equal']} equal (hidden; --all shows them)")
    return [
        f"A = {a.model} (input {shape(a.input_shape)}), B = {b.model} (input {shape(b.input_shape)}); {settings}.",
        f"Aligned: {_rows(c['name'])} by layer name, {c['position']} by position; {c['added']} added (only in B), "
        f"{c['removed']} removed (only in A). Of the aligned rows {c['differ']} differ, {equal}.",
        ("Layers are aligned by name, then the rest by position between the same name-aligned layers (alike layers "
         "paired first: type, attributes, output shape)" if diff.by_name else
         "Layers are aligned by position alone (--align position): alike layers paired first (type, attributes, "
         "output shape), the rest in order")
        + ". A row differs in its name, its type or attributes, its inputs (A's, through the alignment, are not "
        "B's) or any figure. Differences are B - A, ratios B / A.",
        *(f"Partial: {side} = {x.model} has {sum(u.count for u in x.uncounted)} layer(s) of ops archcalc has no rule "
          f"for, counted as 0 ({', '.join(u.text() for u in x.uncounted)}): its totals are lower bounds."
          for side, x in (("A", a), ("B", b)) if x.uncounted),
    ]


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def model_diff_table(diff: ModelDiff, include_equal: bool = False) -> RenderableType:
    """A rich renderable: the rows that differ (all rows with ``include_equal``), the totals and the footer."""
    from rich.console import Group
    from rich.text import Text

    rows = diff.shown(include_equal)
    columns, cells = model_cells(diff, rows)
    table = _rich(f"diff: {diff.a.model} -> {diff.b.model}", columns, cells)
    totals = _rich("Totals", _TOTAL_COLUMNS, model_totals_rows(diff))
    parts = [table] if rows else [Text("No layer differs.")]
    return Group(*parts, totals, *(Text(line, style="dim") for line in model_footer(diff, include_equal)))


_TOTAL_COLUMNS = (Column("Total", lambda r, d: ""), Column("A", lambda r, d: "", "right"),
                  Column("B", lambda r, d: "", "right"), Column("B - A", lambda r, d: "", "right"),
                  Column("B / A", lambda r, d: "", "right"))


def model_diff_markdown(diff: ModelDiff, include_equal: bool = False) -> str:
    """The same as GitHub markdown: the rows, the totals, the footer as a list."""
    rows = diff.shown(include_equal)
    out = [f"**diff**: {diff.a.model} -> {diff.b.model}", ""]
    if rows:
        out += _markdown(*model_cells(diff, rows)) + [""]
    else:
        out += ["No layer differs.", ""]
    out += _markdown(_TOTAL_COLUMNS, model_totals_rows(diff)) + [""]
    out += [f"- {line}" for line in model_footer(diff, include_equal)]
    return "\n".join(out) + "\n"


# -- conventions -------------------------------------------------------------------------------

def _conv_header(diff: ConventionDiff, side: str) -> str:
    counted = diff.counted_a if side == "a" else diff.counted_b
    return f"{side.upper()}: {counted.convention.name} ({counted.convention.unit})"


def convention_columns(diff: ConventionDiff, explain: bool = False) -> tuple[Column, ...]:
    """The conventions diff table's columns: layer, type, each count, B - A (and the backward
    ones when both count backward), each convention's rule (with the values, ``explain``)."""
    def rule(side: str) -> Callable[[CountDiff, Any], str]:
        def text(row: CountDiff, d: Any) -> str:
            if explain and not row.members:
                return getattr(row, f"explained_{side}")
            return getattr(row, f"rule_{side}")
        return text

    columns = [
        Column("Layer", lambda r, d: r.name),
        Column("Type", lambda r, d: f"block of {r.layers}" if r.members else r.type),
        Column(_conv_header(diff, "a"), lambda r, d: grouped(r.forward_a), "right"),
        Column(_conv_header(diff, "b"), lambda r, d: grouped(r.forward_b), "right"),
        Column("B - A", lambda r, d: _signed(grouped(r.difference)) if r.difference else "0", "right"),
    ]
    if diff.counts_backward:
        columns += [
            Column("Backward A", lambda r, d: grouped(r.backward_a), "right"),
            Column("Backward B", lambda r, d: grouped(r.backward_b), "right"),
        ]
    header = "arithmetic" if explain else "rule"
    columns += [Column(f"A's {header}", rule("a")), Column(f"B's {header}", rule("b"))]
    return tuple(columns)


def convention_totals_rows(diff: ConventionDiff) -> list[tuple[str, str, str, str, str]]:
    """The totals table's rows: pass, A, B, B - A, B / A."""
    out = []
    for name, a, b in diff.totals():
        out.append((name, grouped(a), grouped(b), _signed(grouped(b - a)) if b != a else "0",
                    ratio(_fraction(b, a)) if a else ""))
    return out


def _fraction(b: int, a: int) -> Any:
    from fractions import Fraction

    return Fraction(b, a)


def convention_footer(diff: ConventionDiff, include_equal: bool) -> list[str]:
    """Each convention (its tool, its total as the tool prints it, its doc), the row counts, the notes."""
    lines = []
    for side, counted in (("A", diff.counted_a), ("B", diff.counted_b)):
        c = counted.convention
        lines.append(f"{side} = {c.name}: {c.tool}; total {c.format(counted.forward)} "
                     f"for {'one sample' if diff.batch == 1 else f'a batch of {diff.batch}'} ({c.anchor}).")
    differ = sum(1 for r in diff.rows if r.changed)
    hidden = "" if include_equal else " (hidden; --all shows them)"
    unit = "layers" if diff.depth is None else "rows"
    lines.append(f"{differ} of {len(diff.rows)} {unit} counted differently; {len(diff.rows) - differ} alike{hidden}. "
                 "Differences are B - A, ratios B / A; rules are per sample, counts for the batch.")
    if not diff.counts_backward:
        lines.append("Backward passes are not compared: "
                     + ("neither convention counts one." if not (diff.counted_a.convention.counts_backward
                                                                 or diff.counted_b.convention.counts_backward)
                        else "only one of the conventions counts one."))
    notes: dict[str, None] = {}
    for shown in diff.shown(include_equal):
        for row in shown.members or (shown,):
            for counted, note in ((diff.counted_a, row.note_a), (diff.counted_b, row.note_b)):
                if note and row.changed:
                    notes[f"{counted.convention.name}, {row.type}: {note}"] = None
    lines += [f"Note: {note}." if not note.endswith(".") else f"Note: {note}" for note in notes]
    return lines


def convention_diff_table(diff: ConventionDiff, include_equal: bool = False, explain: bool = False) -> RenderableType:
    """A rich renderable: the rows counted differently (all with ``include_equal``), the totals, the footer."""
    from rich.console import Group
    from rich.text import Text

    columns = convention_columns(diff, explain)
    rows = diff.shown(include_equal)
    title = f"diff: {diff.model} under {diff.counted_a.convention.name} -> {diff.counted_b.convention.name}"
    parts = [_rich(title, columns, [[c.text(r, diff) for c in columns] for r in rows])] if rows else \
        [Text(f"{diff.model}: every layer is counted alike.")]
    totals = _rich("Totals", _TOTAL_COLUMNS, convention_totals_rows(diff))
    return Group(*parts, totals, *(Text(line, style="dim") for line in convention_footer(diff, include_equal)))


def convention_diff_markdown(diff: ConventionDiff, include_equal: bool = False, explain: bool = False) -> str:
    """The same as GitHub markdown."""
    columns = convention_columns(diff, explain)
    rows = diff.shown(include_equal)
    out = [f"**diff**: {diff.model} under {diff.counted_a.convention.name} -> {diff.counted_b.convention.name}", ""]
    if rows:
        out += _markdown(columns, [[c.text(r, diff) for c in columns] for r in rows]) + [""]
    else:
        out += [f"{diff.model}: every layer is counted alike.", ""]
    out += _markdown(_TOTAL_COLUMNS, convention_totals_rows(diff)) + [""]
    out += [f"- {line}" for line in convention_footer(diff, include_equal)]
    return "\n".join(out) + "\n"


# -- shared ------------------------------------------------------------------------------------

def _rich(title: str, columns: Any, rows: Any) -> RenderableType:
    """A rich table; every string (layer names from a spec) is shown literally, and a narrow
    terminal wraps a cell onto more lines rather than cutting a name or a number short."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), header_style="bold")
    for column in columns:
        table.add_column(Text(column.header), justify=column.justify, overflow="fold")
    for cells in rows:
        table.add_row(*(Text(cell) for cell in cells))
    return table


def _markdown(columns: Any, rows: Any) -> list[str]:
    def line(cells: Any) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    out = [line([c.header for c in columns])]
    out.append("|" + "|".join(":---" if c.justify == "left" else "---:" for c in columns) + "|")
    out += [line(cells) for cells in rows]
    return out

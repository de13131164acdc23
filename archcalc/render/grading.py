"""The graded answer table of ``archcalc grade``: presentation only, from a :class:`~archcalc.grade.Grade`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType

    from archcalc.grade import Grade


def grade_table(result: Grade, show_answers: bool = True) -> RenderableType:
    """The graded table; every string from the student's file goes in as Text, never as markup."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"{result.model}: {result.score} / {result.max_score} right"), header_style="bold")
    table.add_column("Layer")
    for column in result.columns:
        table.add_column(column, justify="right")
    notes = []
    for row in result.rows:
        if row.problem:
            table.add_row(Text(row.layer), Text(row.problem, style="red"), *([""] * (len(result.columns) - 1)))
            continue
        cells = []
        for cell in row.cells:
            answer = f" → {cell.expected}" if show_answers else ""
            if cell.right:
                cells.append(Text.assemble(("✓", "green"), f" {cell.given}"))
            elif cell.status == "blank":
                cells.append(Text.assemble(("✗", "red"), f" (blank){answer}"))
            elif cell.status == "unparseable":
                cells.append(Text.assemble(("✗", "red"), f" cannot read {cell.given!r}{answer}"))
            else:
                cells.append(Text.assemble(("✗", "red"), f" {cell.given}{answer}"))
            if cell.shown_note(show_answers):
                notes.append(f"{row.layer} {cell.column}: {cell.shown_note(show_answers)}")
            if show_answers:
                notes.extend(f"{row.layer} {cell.column}: {line}" for line in cell.explanation)
        label = Text(row.layer)
        if row.note:  # an asked layer the answers have no row for
            label.append(" (no row)", style="dim")
        table.add_row(label, *cells)
    lines = [Text(note, style="dim") for note in [*result.notes, *notes]]
    return Group(table, *lines)

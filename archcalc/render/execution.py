"""The executor's tables for the terminal: time per layer (``archcalc run``) and gradient checks.

Presentation only: the figures (means, shares, verdicts) come from
:func:`archcalc.execute.timing_report` and :class:`archcalc.execute.GradcheckReport`.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from archcalc.render.format import grouped, shape


def timing_table(report: Any, check: bool = False) -> Table:
    """Per-layer forward and backward time (ms, mean per step) and share of the step.

    With ``check``, each layer's executed shape and MACs performed, which
    :func:`~archcalc.execute.timing_report` has checked against the analyzer's.
    """
    table = Table(title="time per layer (mean of the steps)", header_style="bold", show_footer=True)
    table.add_column("Layer", footer="Total")
    table.add_column("Type")
    if check:
        table.add_column("Executed shape = analysed", justify="right")
        table.add_column("MACs performed = analysed", justify="right")
    table.add_column("Forward ms", justify="right", footer=f"{report.forward * 1e3:.2f}")
    table.add_column("Backward ms", justify="right", footer=f"{report.backward * 1e3:.2f}")
    table.add_column("Share", justify="right")
    for row in report.rows:
        cells = [escape(row.name), row.type]
        if check:
            cells.append(shape(row.shape[1:], row.shape[0]) + " ok")
            cells.append(f"{grouped(row.macs)} ok" if row.macs else "")
        cells += [f"{row.forward * 1e3:.2f}", f"{row.backward * 1e3:.2f}", f"{100 * row.share:.1f}%"]
        table.add_row(*cells)
    return table


def gradcheck_table(report: Any) -> Table:
    """One row per tensor: shape, entries checked, largest absolute and relative error, ok/FAIL."""
    table = Table(title=f"gradcheck {escape(report.model)}, batch {report.batch}, float64, central differences",
                  header_style="bold")
    for header in ("Tensor", "Shape", "Entries", "Max abs error", "Max rel error", ""):
        table.add_column(header, justify="left" if header in ("Tensor", "Shape") else "right")
    for row in report.rows:
        table.add_row(escape(row.name), "x".join(map(str, row.shape)), str(row.checked), f"{row.max_abs_error:.2e}",
                      f"{row.max_rel_error:.2e}", "ok" if row.passed else "[red]FAIL[/red]")
    return table

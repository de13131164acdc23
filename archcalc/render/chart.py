"""The architectures chart of the lecture's summary (after Canziani et al. 2016, "An Analysis of
Deep Neural Network Models for Practical Applications"): one bubble per network, MACs across,
params or top-1 accuracy up, bubble area proportional to params. Presentation only: the figures
come from the analyses and the specs' cited references.

matplotlib is an optional extra (``pip install 'archcalc[chart]'``); without it
:func:`write_chart` raises :class:`MissingToolError` (exit status 3) saying so.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archcalc.errors import ArchcalcError, MissingToolError

#: What the chart can put up the y axis: the parameter count, or a cited top-1 accuracy.
Y_FIGURES = ("params", "top1")
#: Output formats, from the file's suffix.
FORMATS = ("svg", "png")
#: The largest bubble's area in points^2; the others scale by params, so area is proportional to params.
MAX_BUBBLE_AREA = 2500.0
#: The ``id`` of the bubbles' group in the SVG (one ``<use>`` per bubble) and the prefix of each label's.
BUBBLES_ID = "bubbles"
LABEL_ID = "label"

INSTALL_MATPLOTLIB = "the chart needs matplotlib, an optional extra: pip install 'archcalc[chart]' (or pip install matplotlib)"


@dataclass(frozen=True)
class ChartPoint:
    """One network on the chart: its name, MACs (for the batch compared), params, and cited top-1 (percent) if any."""

    model: str
    macs: int
    params: int
    top1: float | None = None
    source: str | None = None


def chart_points(graphs: Sequence[Any], analyses: Sequence[Any], y: str = "params") -> tuple[ChartPoint, ...]:
    """The points to draw, one per network, in order.

    Raises:
        ArchcalcError: ``y`` is not one of :data:`Y_FIGURES`, or ``y == "top1"`` and a network's
            spec carries no ``"reference"`` (the message names every such network).
    """
    if y not in Y_FIGURES:
        raise ArchcalcError(f"--y must be one of {', '.join(Y_FIGURES)}, got {y!r}")
    if y == "top1":
        missing = [g.name for g in graphs if g.reference is None]
        if missing:
            names = ", ".join(repr(name) for name in dict.fromkeys(missing))
            raise ArchcalcError(f"--y top1: no cited top-1 accuracy for {names} (a spec's \"reference\": "
                                "{\"top1\": ..., \"source\": ...}); leave out --y top1 to plot params, or leave the model out")
    return tuple(ChartPoint(g.name, a.totals.macs, a.totals.params,
                            g.reference.top1 if g.reference else None, g.reference.source if g.reference else None)
                 for g, a in zip(graphs, analyses))


def chart_format(output: str | Path) -> str:
    """``"svg"`` or ``"png"`` from the file's suffix; ArchcalcError for anything else."""
    suffix = Path(output).suffix.lstrip(".").lower()
    if not str(output).strip() or suffix not in FORMATS:
        raise ArchcalcError(f"--plot '{output}': the chart's file name must end in .svg or .png")
    return suffix


def write_chart(points: Sequence[ChartPoint], output: str | Path, y: str = "params", batch: int = 1) -> Path:
    """Draw the bubble chart of ``points`` into ``output`` (.svg or .png, by its suffix).

    x: MACs in G (log scale); y: params in M (log scale) or top-1 accuracy in percent; bubble
    area proportional to params (the largest :data:`MAX_BUBBLE_AREA` points^2); each bubble
    labelled with its model's name. The SVG keeps its text as text (labels are ``<text>``
    elements, ids ``label-0``, ``label-1``... in order) and the bubbles in one group,
    ``id="bubbles"``; it carries no date, so the same input gives the same file.

    Raises:
        ArchcalcError: a suffix other than .svg or .png, no points, a ``y`` the points lack, or
            the file cannot be written (naming the path and the reason).
        MissingToolError: matplotlib is not installed (exit status 3).
    """
    fmt = chart_format(output)
    if not points:
        raise ArchcalcError("the chart needs at least one model")
    if y not in Y_FIGURES or (y == "top1" and any(p.top1 is None for p in points)):
        raise ArchcalcError(f"--y {y}: every point needs it; use chart_points() to check the models first")
    try:
        import matplotlib
        from matplotlib import ticker
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingToolError(INSTALL_MATPLOTLIB) from None
    biggest = max(p.params for p in points) or 1
    xs = [p.macs / 1e9 for p in points]
    ys = [p.params / 1e6 if y == "params" else p.top1 for p in points]
    areas = [MAX_BUBBLE_AREA * p.params / biggest for p in points]
    settings = {"svg.fonttype": "none", "svg.hashsalt": "archcalc", "font.size": 9}
    with matplotlib.rc_context(settings):
        figure = Figure(figsize=(8, 5.5), layout="constrained")
        axes = figure.add_subplot()
        bubbles = axes.scatter(xs, ys, s=areas, alpha=0.45, edgecolors="black", linewidths=0.8, zorder=2)
        bubbles.set_gid(BUBBLES_ID)
        for i, (point, x_value, y_value) in enumerate(zip(points, xs, ys)):
            label = axes.annotate(point.model, (x_value, y_value), xytext=(0, 0), textcoords="offset points",
                                  ha="center", va="center", zorder=3, parse_math=False)  # names are literal: no $...$ math
            label.set_gid(f"{LABEL_ID}-{i}")
        if all(x > 0 for x in xs):
            axes.set_xscale("log")
            axes.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
            axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        per = "per image" if batch == 1 else f"for a batch of {batch}"
        axes.set_xlabel(f"MACs {per}, G (multiply-accumulates; log scale)")
        if y == "params":
            if all(v > 0 for v in ys):
                axes.set_yscale("log")
                axes.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
                axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
            axes.set_ylabel("params, M (log scale)")
        else:
            axes.set_ylabel("top-1 accuracy, % (ImageNet, as each spec's reference cites it)")
        axes.margins(0.15)
        axes.grid(True, which="major", alpha=0.3, zorder=0)
        largest = max(points, key=lambda p: p.params)
        axes.set_title(f"{'params' if y == 'params' else 'top-1 accuracy'} against MACs; "
                       f"bubble area proportional to params (largest: {largest.model}, {largest.params / 1e6:.1f}M)",
                       parse_math=False)
        data = io.BytesIO()
        figure.savefig(data, format=fmt, metadata={"Date": None} if fmt == "svg" else None, dpi=150 if fmt == "png" else "figure")
    path = Path(output)
    try:
        path.write_bytes(data.getvalue())
    except OSError as error:
        raise ArchcalcError(f"output '{path}' cannot be written: {error.strerror or error}") from None
    return path

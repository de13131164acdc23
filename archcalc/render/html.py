"""``archcalc html``: the report as one self-contained HTML page, and the data behind it.

:func:`payload` gathers everything the page shows, as JSON-able values made by the rest of
archcalc: the analysis (:meth:`Analysis.to_dict`, at full depth and at each folded depth the
page offers), the table's cells and footer as ``report`` prints them, Graphviz's drawing as
``render`` draws it (:func:`archcalc.render.dot.to_dot`), each layer's ``explain`` lines, and
the sliding window and receptive field of each 2D layer. :func:`page` wraps a payload into a
complete HTML document with the inline script and style of ``archcalc/render/web/``; the page
computes no figure of its own (it sorts, filters, and draws the geometry the payload gives).

The live editor (``archcalc serve``) draws the same view from a payload it fetches, through the
script's ``window.ArchcalcView.render(element, payload)``.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

from archcalc.errors import ArchcalcError
from archcalc.explain import explain_layer
from archcalc.loading import load
from archcalc.passes import analyze
from archcalc.render.dot import COLOR_METRICS, MAX_DRAWN_NODES, _boxes, _shown_name, to_dot
from archcalc.render.format import check_printable, shape
from archcalc.render.table import COLUMNS, footer, rows, totals_cells
from archcalc.report import Analysis

#: The payload's layout version: the live editor's script checks it.
FORMAT = "archcalc-html 1"
#: The colours the page offers, as ``render --color`` names them.
COLORS = ("none", *COLOR_METRICS)
#: Characters of SVG text a page embeds at most: the chosen colour at every depth always, the other
#: colours while they fit (each missing drawing gets a regeneration hint). resnet50's 12 drawings
#: take about 420,000; the whole page stays under 1 MB.
SVG_BUDGET = 450_000
#: Key of the unfolded depth in the payload's per-depth maps.
FULL = "full"
#: The most layers a page shows (resnet152's 516 make a 1.8 MB page): beyond, ``report --format json`` or csv.
MAX_PAGE_LAYERS = 5_000
#: The most folded depths the toggle offers (the shallowest that fold differently, and the one asked for).
MAX_DEPTHS = 6


def payload(model: Any, *, depth: int | None = None, color: str = "macs", batch: int = 1, dtype: str = "float32",
            optimizer: str = "sgd", memory_model: str = "pytorch", svg_budget: int = SVG_BUDGET,
            drawings: str = "all") -> dict[str, Any]:
    """Everything the report page shows, JSON-able (``json.dumps`` takes it as is).

    Args:
        model: anything :func:`archcalc.load` takes (a zoo name, a spec path, a Graph...).
        depth: the depth shown first (None: every layer); the page offers every depth that folds
            differently, and the full one.
        color: the fill shown first: ``none``, ``macs``, ``params`` or ``activations``.
        batch, dtype, optimizer, memory_model: as :func:`archcalc.analyze`.
        svg_budget: characters of SVG to embed at most beyond the first colour's drawings.
        drawings: ``all`` (every depth in the first colour, the other colours within ``svg_budget``)
            or ``first`` (the first depth and colour only, no hints: for the live editor, which asks
            for another drawing when the user toggles, through ``ArchcalcView.render``'s
            ``onMissingDrawing``). Each drawing runs Graphviz (about 0.1-0.2 s for resnet50).

    Returns:
        ``{"format", "model", "title", "description", "analysis": Analysis.to_dict() (full depth),
        "folded": {depth: [rows]}, "depths": [keys], "depth": key, "colors", "color",
        "columns": [{header, figure, kind, justify, doc}], "cells": {depth: [[text]]},
        "totals": [text], "footer": [line], "svg": {"depth/color": svg}, "nodes": {depth: {row
        name: node id}}, "boxes": {depth: {node id: [row names]}}, "hints": {"depth/color": text},
        "graph_note": text, "explain": {layer: [[quantity, text]]}, "windows": {layer: geometry},
        "fields": {layer: field on the input grid}}``. Depth keys are ``"1"``, ``"2"``... and
        ``"full"``; a depth that folds like a shallower one is left out.

    Raises:
        ArchcalcError: a bad model, option or figure too long to print (as ``archcalc report``).
    """
    if drawings not in ("all", "first"):
        raise ArchcalcError(f"drawings must be all or first, got {drawings!r}")
    if color not in COLORS:
        raise ArchcalcError(f"color must be one of {', '.join(COLORS)}, got {color!r}")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ArchcalcError(f"depth must be 1 or more (levels of blocks shown), got {depth!r}")
    graph = load(model)
    if len(graph) > MAX_PAGE_LAYERS:
        raise ArchcalcError(f"model {graph.name!r}: {len(graph):,} layers, more than a web page shows (at most "
                            f"{MAX_PAGE_LAYERS:,}); archcalc report MODEL (--depth N, --format json or csv) has no such bound")
    analysis = analyze(graph, batch=batch, dtype=dtype, optimizer=optimizer, memory_model=memory_model)
    check_printable(analysis)
    levels = _depths(analysis, depth)
    first = _key(analysis, levels, depth)
    out: dict[str, Any] = {
        "format": FORMAT,
        "model": analysis.model,
        "title": f"{analysis.model}: input {shape(analysis.input_shape, analysis.batch if analysis.batch != 1 else None)}, "
                 f"{analysis.dtype}",
        "description": analysis.description,
        "analysis": analysis.to_dict(),
        "folded": {key: analysis.to_dict(depth=level)["layers"] for key, level in levels.items() if level is not None},
        "depths": list(levels),
        "depth": first,
        "colors": list(COLORS),
        "color": color,
        "columns": [{"header": c.header, "figure": c.figure.name if c.figure else None,
                     "kind": c.figure.kind if c.figure else "text", "justify": c.justify,
                     "doc": c.figure.doc if c.figure else ""} for c in COLUMNS],
        "cells": {key: [[c.text(row, analysis) for c in COLUMNS] for row in rows(analysis, level)]
                  for key, level in levels.items()},
        "totals": totals_cells(analysis),
        "footer": footer(analysis),
        "explain": {row.name: [list(line) for line in explain_layer(graph, analysis, row.name, group_digits=True)]
                    for row in analysis.layers},
        "windows": _windows(graph, analysis),
        "fields": _fields(analysis),
    }
    out.update(_drawings(graph, analysis, levels, first, color, svg_budget, drawings == "first"))
    return out


def _depths(analysis: Analysis, asked: int | None = None) -> dict[str, int | None]:
    """The depths that fold differently (at most :data:`MAX_DEPTHS` of the shallowest, and ``asked``),
    shallowest first, then the full one: key -> depth."""
    levels: dict[str, int | None] = {}
    seen: set[tuple[str, ...]] = set()
    deepest = max((len(row.scope) for row in analysis.layers), default=0)
    candidates = sorted({*range(1, min(deepest, MAX_DEPTHS) + 1), *([asked] if asked is not None and asked <= deepest else [])})
    for level in candidates:
        names = tuple(row.name for row in rows(analysis, level))
        if names not in seen and len(names) != len(analysis.layers):
            seen.add(names)
            levels[str(level)] = level
    levels[FULL] = None
    return levels


def _key(analysis: Analysis, levels: dict[str, int | None], depth: int | None) -> str:
    """The key of the offered depth that shows the rows ``depth`` shows."""
    if depth is None:
        return FULL
    names = tuple(row.name for row in rows(analysis, depth))
    for key, level in levels.items():
        if level is not None and tuple(row.name for row in rows(analysis, level)) == names:
            return key
    return FULL


def _drawings(graph: Any, analysis: Analysis, levels: dict[str, int | None], first: str, color: str,
              budget: int, first_only: bool = False) -> dict[str, Any]:
    """The SVG drawings (``render``'s, tidied), which drawn node holds which rows, and hints for
    the drawings left out."""
    nodes: dict[str, dict[str, str]] = {}
    boxes: dict[str, dict[str, list[str]]] = {}
    for key, level in levels.items():
        nodes[key], boxes[key] = _node_map(graph, analysis, level)
    out: dict[str, Any] = {"svg": {}, "hints": {}, "graph_note": "", "nodes": nodes, "boxes": boxes}
    biggest = max(len(b) for b in boxes.values())
    if biggest > MAX_DRAWN_NODES:
        # Graphviz takes minutes there: the shallower depths are still drawn
        out["graph_note"] = (f"{biggest:,} boxes at full depth: more than Graphviz lays out in reasonable time "
                             f"(at most {MAX_DRAWN_NODES:,}); choose a smaller depth")
    try:
        import graphviz
    except ImportError:  # pragma: no cover - a dependency of archcalc
        out["graph_note"] = "the graphviz Python package is missing: pip install graphviz (a dependency of archcalc)"
        return out
    others = [c for c in COLORS if c != color]
    order = [(first, color)] if first_only else [(key, color) for key in levels] + [(key, c) for c in others for key in levels]
    used = 0
    for key, fill in order:
        name = f"{key}/{fill}"
        if len(boxes[key]) > MAX_DRAWN_NODES:
            out["hints"][name] = f"not drawn: {len(boxes[key]):,} boxes; choose a smaller depth"
            continue
        if fill != color:
            first_size = len(out["svg"].get(f"{key}/{color}", ""))
            if used + first_size * 1.1 > budget:  # the colours' drawings differ by a few percent
                out["hints"][name] = _hint(analysis, levels[key], fill)
                continue
        try:
            text = _pipe(graphviz, to_dot(graph, levels[key], fill))
        except graphviz.ExecutableNotFound:
            out["graph_note"] = ("Graphviz's dot program is not on PATH, so the page has no drawing: install Graphviz "
                                 "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz)")
            out["svg"], out["hints"] = {}, {}
            return out
        except graphviz.CalledProcessError:
            try:  # as render does: a wrapped layout Graphviz cannot place is drawn in one column
                text = _pipe(graphviz, to_dot(graph, levels[key], fill, wrap=0))
            except graphviz.CalledProcessError as error:
                from archcalc.render.dot import _first_error

                out["hints"][name] = f"Graphviz's dot failed: {_first_error(error)}"
                continue
        out["svg"][name] = text
        if fill != color:
            used += len(text)
    return out


def _hint(analysis: Analysis, level: int | None, fill: str) -> str:
    """What to run for a drawing the page leaves out."""
    depth = "" if level is None else f" --depth {level}"
    return (f"left out to keep the page small: regenerate with archcalc html {analysis.model}{depth} --color {fill} "
            "(or the same command on your spec)")


def _node_map(graph: Any, analysis: Analysis, level: int | None) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Which drawn node (``n0``, ``n1``... as :func:`to_dot` names them) shows each row at ``level``,
    and the rows each node holds (several where ``--compact`` draws a chain as one box)."""
    from archcalc.render.dot import COMPACT_ABOVE

    shown_rows = rows(analysis, level)
    ids = {row.name: f"n{index}" for index, row in enumerate(shown_rows)}
    shown = {node.name: _shown_name(node.name, node.scope, level) for node in graph}
    row_of = {row.name: row for row in analysis.layers}
    compact = len(graph) - 1 > COMPACT_ABOVE  # to_dot's default
    node_of: dict[str, str] = {}
    held: dict[str, list[str]] = {}
    for box in _boxes(graph, shown_rows, row_of, shown, compact):
        head = ids[box[0].name]
        held[head] = [row.name for row in box]
        for row in box:
            node_of[row.name] = head
    return node_of, held


_PROLOGUE = re.compile(r"\A.*?(?=<svg\b)", re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->\n?", re.DOTALL)
_FONT = re.compile(r' font-family="Helvetica,sans-Serif"')


def _pipe(graphviz: Any, dot: str) -> str:
    """Graphviz's SVG for ``dot``, tidied for inlining: no XML prologue or comments, and the font
    family (the same on every text) left to the page's style sheet."""
    text = graphviz.Source(dot).pipe(format="svg", quiet=True).decode("utf-8")
    text = _PROLOGUE.sub("", text, count=1)
    return _FONT.sub("", _COMMENT.sub("", text))


def _windows(graph: Any, analysis: Analysis) -> dict[str, dict[str, Any]]:
    """The sliding window of each layer that slides one over a 2D input (conv, pooling, transposed
    conv...): kernel, stride, dilation, padding (before, after), input dilation (a transposed
    conv's zeros between inputs), per spatial axis, with its input and output sizes, as the op
    declares it for the receptive field (:meth:`archcalc.ops.base.Op.window`; an upsampling's is the
    window its field follows). ``transposed``: the input is dilated (a window over zeros between
    input values); ``uniform`` false: windows differ in size or spacing (the largest is given)."""
    from archcalc.ops import GLOBAL, POINTWISE, UNKNOWN, Layer, get_op

    rows_by_name = {row.name: row for row in analysis.layers}
    out: dict[str, dict[str, Any]] = {}
    for node in graph.nodes[1:]:
        row = rows_by_name[node.name]
        op = get_op(node.type)
        in_shapes = tuple(rows_by_name[ref].output_shape for ref in node.inputs)
        if getattr(op, "axis_map", None) or not in_shapes or len(in_shapes[0]) != 3 or len(row.output_shape) != 3:
            continue
        window = op.window(Layer(row.attrs, in_shapes, row.output_shape))
        if window in (POINTWISE, GLOBAL, UNKNOWN) or isinstance(window, str) or len(window.kernel) != 2:
            continue
        out[node.name] = {
            "type": node.type,
            "summary": row.summary,
            "input": list(in_shapes[0][1:]),
            "output": list(row.output_shape[1:]),
            "kernel": list(window.kernel),
            "stride": list(window.stride),
            "dilation": list(window.dilation),
            "padding": [list(p) for p in window.padding],
            "input_dilation": list(window.input_dilation or (1, 1)),
            "uniform": window.uniform,
            "transposed": any(d != 1 for d in (window.input_dilation or ())),
        }
    return out


def _fields(analysis: Analysis) -> dict[str, dict[str, Any]]:
    """Each layer's receptive field on a 2D input grid, where its output's axes 1 and 2 step along
    the input's height and width: field size, effective stride (jump), padding and the centre of
    output unit (0, 0), per axis, with the input's and the output's sizes. Unit (i, j) sees input
    rows ``i*stride - padding`` to that ``+ size - 1``, centred on ``centre + i*stride``."""
    if len(analysis.input_shape) != 3:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for row in analysis.layers:
        field = row.receptive_field.to_dict()
        if field["global"] or field["axes"] != [None, 0, 1] or len(row.output_shape) != 3:
            continue
        numbers = [*field["size"], *field["stride"], *field["padding"], *field["centre"]]
        if not all(isinstance(n, (int, float)) for n in numbers):  # a jump like 1/3: no grid to draw it on
            continue
        out[row.name] = {
            "input": list(analysis.input_shape[1:]),
            "output": list(row.output_shape[1:]),
            **{key: field[key] for key in ("size", "stride", "padding", "centre", "exact", "aligned", "uniform")},
        }
    return out


def _asset(name: str) -> str:
    return resources.files("archcalc.render").joinpath("web", name).read_text(encoding="utf-8")


def script() -> str:
    """The page's script (``report.js``), which defines ``window.ArchcalcView``."""
    return _asset("report.js")


def style() -> str:
    """The page's style sheet (``report.css``)."""
    return _asset("report.css")


def inline_json(value: Any) -> str:
    """``value`` as JSON text safe inside ``<script type="application/json">``: ``</`` and ``<!--``
    escaped (``<\\/`` and ``\\u003c!--`` are the same JSON), so no string can end the script."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("</", "<\\/").replace("<!--", "\\u003c!--").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def page(payload: dict[str, Any], *, title: str) -> str:
    """A complete self-contained HTML document showing ``payload`` (from :func:`payload`).

    The style and script are inline (``archcalc/render/web/report.css`` and ``report.js``) and the
    payload is inline JSON: the page opens from ``file://`` with no network access.
    """
    import html

    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<meta name=\"generator\" content=\"archcalc\">\n<title>{html.escape(title)}</title>\n"
        f"<style>\n{style()}</style>\n</head>\n<body>\n"
        "<div id=\"archcalc-view\"><noscript>This report needs JavaScript to draw its table and graph.</noscript></div>\n"
        f"<script type=\"application/json\" id=\"archcalc-payload\">{inline_json(payload)}</script>\n"
        f"<script>\n{script()}</script>\n"
        "<script>ArchcalcView.render(document.getElementById(\"archcalc-view\"), "
        "JSON.parse(document.getElementById(\"archcalc-payload\").textContent));</script>\n"
        "</body>\n</html>\n"
    )


__all__ = ["COLORS", "FORMAT", "SVG_BUDGET", "inline_json", "page", "payload", "script", "style"]

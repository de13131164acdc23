"""The analysed graph as Graphviz DOT, and rendered to SVG/PNG/PDF by Graphviz's ``dot``.

:func:`to_dot` is a pure function of the analysis (same input, byte-identical text); only
:func:`render` runs Graphviz. Every name and attribute from the user's spec is HTML-escaped,
so a layer named ``<b>"x"&`` is drawn literally.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from archcalc.errors import ArchcalcError, MissingToolError
from archcalc.loading import load
from archcalc.passes import analyze
from archcalc.render.format import grouped, shape, si
from archcalc.report import Analysis, LayerReport, fold, fold_key

#: What ``--color`` can scale the fill by: the row attribute and the phrase in labels.
COLOR_METRICS = {"macs": ("macs", "MACs"), "params": ("params", "params"), "activations": ("activations", "activations")}
FORMATS = ("svg", "png", "pdf", "dot")
RANKDIRS = ("TB", "LR")
_LOW, _HIGH = (255, 255, 255), (239, 101, 72)  # white to a warm orange: black text stays readable


def _fill(fraction: float) -> str:
    """The fill colour at ``fraction`` (0..1) of the scale."""
    rgb = (round(low + (high - low) * fraction) for low, high in zip(_LOW, _HIGH))
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _label(row: LayerReport, analysis: Analysis, share: str) -> str:
    """An HTML-like label: bold name, type and key attributes, shape, params and MACs."""
    kind = f"{row.type} {row.summary}".strip()
    figures = ", ".join(
        f"{si(value)} {what}" for value, what in ((row.params, "params"), (row.macs, "MACs")) if value
    )
    prefix = ".".join(row.scope) + "."
    local = row.name[len(prefix):] if row.scope and row.name.startswith(prefix) else row.name  # its cluster names the rest
    lines = [f"<B>{_esc(local)}</B>"]
    if kind != local:
        lines.append(_esc(kind))
    lines.append(f'<FONT POINT-SIZE="10">{shape(row.output_shape)}</FONT>')
    if figures:
        lines.append(f'<FONT POINT-SIZE="10">{figures}</FONT>')
    if share:
        lines.append(f'<FONT POINT-SIZE="10">{share}</FONT>')
    return "<" + "<BR/>".join(lines) + ">"


def to_dot(model: Any, depth: int | None = None, color: str = "none", rankdir: str = "TB") -> str:
    """DOT source of a model's graph, each node labelled with the analyzer's figures.

    Args:
        model: anything :func:`archcalc.load` takes.
        depth: levels of blocks to show; 1 folds each top-level block into one node (None: none folded).
        color: ``macs``, ``params``, ``activations`` (fill by each node's share) or ``none``.
        rankdir: ``TB`` (top to bottom) or ``LR`` (left to right).
    """
    if color != "none" and color not in COLOR_METRICS:
        raise ArchcalcError(f"color must be one of none, {', '.join(COLOR_METRICS)}, got {color!r}")
    if depth is not None and depth < 1:
        raise ArchcalcError(f"depth must be 1 or more (levels of blocks shown), got {depth}")
    if rankdir not in RANKDIRS:
        raise ArchcalcError(f"rankdir must be TB or LR, got {rankdir!r}")
    graph = load(model)
    analysis = analyze(graph)
    rows = analysis.layers if depth is None else fold(analysis.layers, depth)
    ids = {row.name: f"n{index}" for index, row in enumerate(rows)}
    shown = {node.name: _shown_name(node.name, node.scope, depth) for node in graph}

    attr, phrase = COLOR_METRICS.get(color, ("", ""))
    total = getattr(analysis.totals, attr) if attr else 0
    largest = max((getattr(row, attr) for row in rows), default=0) if attr else 0

    out = [
        f"digraph {_quote(analysis.model)} {{",
        f"  rankdir={rankdir};",
        "  newrank=true;",
        f"  label=<{_title(analysis)}>;",
        '  labelloc=t; fontname="Helvetica"; fontsize=16;',
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9, fontcolor="#555555", color="#666666"];',
    ]
    lines_by_scope: dict[tuple[str, ...], list[str]] = {}
    for row in rows:
        share = ""
        fill = ""
        value = getattr(row, attr) if attr else 0
        if value:
            percent = 100 * value / total
            share = f"{percent:.1f}% of {phrase}" if percent >= 0.1 else f"&lt;0.1% of {phrase}"
            fill = f', fillcolor="{_fill(value / largest)}"'
        line = f"{ids[row.name]} [label={_label(row, analysis, share)}{fill}];"
        lines_by_scope.setdefault(row.scope, []).append(line)
    out.extend(_clusters(lines_by_scope, (), "  "))

    edges: dict[tuple[str, str], str] = {}
    for node in graph.nodes[1:]:
        for ref in node.inputs:
            pair = (ids[shown[ref]], ids[shown[node.name]])
            if pair[0] != pair[1] and pair not in edges:
                edges[pair] = shape(analysis.layer(ref).output_shape)
    out.extend(f'  {a} -> {b} [label="{label}"];' for (a, b), label in edges.items())
    if attr:
        out.append(_legend(phrase, largest, total))
    out.append("}")
    return "\n".join(out) + "\n"


def _shown_name(name: str, scope: tuple[str, ...], depth: int | None) -> str:
    """The row a node is drawn in: its own, or the folded block's."""
    key = fold_key(scope, depth)
    return name if key is None else ".".join(key)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _title(analysis: Analysis) -> str:
    t = analysis.totals
    return (
        f"<B>{_esc(analysis.model)}</B>: input {shape(analysis.input_shape)}, {grouped(t.params)} params, "
        f"{si(t.macs, 2)} MACs, {si(t.activations)} activations"
    )


def _clusters(lines_by_scope: dict[tuple[str, ...], list[str]], scope: tuple[str, ...], indent: str) -> list[str]:
    """The nodes of ``scope`` and, nested, a labelled cluster for each block inside it."""
    out = [indent + line for line in lines_by_scope.get(scope, [])]
    children = sorted({s[: len(scope) + 1] for s in lines_by_scope if len(s) > len(scope) and s[: len(scope)] == scope},
                      key=lambda s: _first_index(lines_by_scope, s))
    for child in children:
        name = ".".join(child)
        out.append(f"{indent}subgraph {_quote('cluster_' + name)} {{")
        out.append(f'{indent}  label=<{_esc(name)}>; style="rounded,dashed"; color="#999999"; fontsize=11;')
        out.extend(_clusters(lines_by_scope, child, indent + "  "))
        out.append(f"{indent}}}")
    return out


def _first_index(lines_by_scope: dict[tuple[str, ...], list[str]], scope: tuple[str, ...]) -> int:
    """Order of first appearance, so clusters follow the network's order."""
    return next(i for i, s in enumerate(lines_by_scope) if s[: len(scope)] == scope)


def _legend(phrase: str, largest: int, total: int) -> str:
    cells = []
    for step in range(5):
        fraction = step / 4
        percent = 100 * fraction * largest / total if total else 0
        cells.append(f'<TD BGCOLOR="{_fill(fraction)}">{percent:.0f}%</TD>')
    return (
        '  legend [shape=plain, style="", label=<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4">'
        f'<TR><TD COLSPAN="5">fill: share of {phrase}</TD></TR><TR>{"".join(cells)}</TR></TABLE>>];'
    )


def render(model: Any, output: str | Path, depth: int | None = None, color: str = "none", rankdir: str = "TB") -> Path:
    """Draw a model to ``output``; the format comes from its extension (svg, png, pdf, dot).

    ``.dot`` needs no Graphviz. For the others, without Graphviz's ``dot`` program the DOT
    source is written beside ``output`` and :class:`MissingToolError` says how to install it.

    Returns:
        The path written.
    """
    path = Path(output)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ArchcalcError(f"output '{path}': the extension must be one of {', '.join('.' + f for f in FORMATS)}")
    text = to_dot(model, depth, color, rankdir)
    if fmt == "dot":
        path.write_text(text, encoding="utf-8")
        return path
    try:
        import graphviz
    except ImportError:
        raise MissingToolError("the graphviz Python package is missing: pip install graphviz (a dependency of archcalc)") from None
    try:
        data = graphviz.Source(text).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(text, encoding="utf-8")
        raise MissingToolError(
            f"Graphviz's dot program is not on PATH, so wrote '{dot_path}' instead of '{path}'; install Graphviz "
            "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz) or write -o model.dot"
        ) from None
    path.write_bytes(data)
    return path

"""The analysed graph as Graphviz DOT, and rendered to SVG/PNG/PDF by Graphviz's ``dot``.

:func:`to_dot` is a pure function of the analysis (same input, byte-identical text); only
:func:`render` runs Graphviz. Every name and attribute from the user's spec is HTML-escaped,
so a layer named ``<b>"x"&`` is drawn literally.
"""

from __future__ import annotations

import html
import re
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
    source is written beside ``output`` (under a fresh name if that ``.dot`` file exists: an
    existing file is never overwritten by the fallback) and :class:`MissingToolError` says
    where it went and how to install Graphviz.

    Returns:
        The path written.

    Raises:
        ArchcalcError: a bad extension, or the output cannot be written (the message names the
            path and the operating system's reason).
        MissingToolError: Graphviz is missing (exit status 3).
    """
    path = Path(output)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ArchcalcError(f"output '{path}': the extension must be one of {', '.join('.' + f for f in FORMATS)}")
    text = to_dot(model, depth, color, rankdir)
    if fmt == "dot":
        _write(path, text.encode("utf-8"))
        return path
    try:
        import graphviz
    except ImportError:
        raise MissingToolError("the graphviz Python package is missing: pip install graphviz (a dependency of archcalc)") from None
    try:
        data = graphviz.Source(text).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise MissingToolError(_write_fallback(path, text)) from None
    _write(path, data)
    return path


_INSTALL_GRAPHVIZ = "install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz) or write -o model.dot"
#: How many fresh names (``x-1.dot`` ... ) the fallback tries beside an existing ``x.dot``.
_FRESH_NAMES = 100


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``; any OS error becomes one ArchcalcError line naming the path."""
    try:
        path.write_bytes(data)
    except OSError as error:
        raise ArchcalcError(f"output '{path}' cannot be written: {error.strerror or error}") from None


def _write_fallback(path: Path, text: str) -> str:
    """Write the DOT source beside ``path`` without overwriting anything; the message saying where."""
    wanted = path.with_suffix(".dot")
    candidates = [wanted, *(wanted.with_name(f"{wanted.stem}-{n}.dot") for n in range(1, _FRESH_NAMES + 1))]
    for candidate in candidates:
        try:
            with candidate.open("x", encoding="utf-8") as file:  # "x": create, never overwrite
                file.write(text)
        except FileExistsError:
            continue
        except OSError as error:
            return (f"Graphviz's dot program is not on PATH, and the DOT source could not be written to '{candidate}' "
                    f"either: {error.strerror or error}; {_INSTALL_GRAPHVIZ}")
        kept = "" if candidate == wanted else f" ('{wanted}' exists and was left alone)"
        return f"Graphviz's dot program is not on PATH, so wrote '{candidate}' instead of '{path}'{kept}; {_INSTALL_GRAPHVIZ}"
    return (f"Graphviz's dot program is not on PATH, and '{wanted}' and '{candidates[-1].name}' already exist, so nothing "
            f"was written (the fallback never overwrites a file); {_INSTALL_GRAPHVIZ}")


#: Characters never kept in a default output name: path separators, and what Windows forbids.
_UNSAFE = re.compile(r'[\\/<>:"|?*\x00-\x1f\x7f-\x9f]+')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
#: Fallback stem when nothing of the model's name is usable.
DEFAULT_STEM = "graph"


def default_output(model_name: str, fmt: str = "svg") -> str:
    """A safe file name in the current directory for drawing a model named ``model_name``.

    The name comes from the spec, so it is made a single harmless component: path separators,
    control characters and the characters Windows forbids become ``_``, leading dots, dashes,
    underscores and spaces go (no hidden file, no ``..``, no option-like name), and it is cut to
    100 characters; when nothing is left, ``graph``. ``default_output("../escaped") == "escaped.svg"``.
    """
    stem = _UNSAFE.sub("_", model_name)
    stem = "".join(c for c in stem if not (0xD800 <= ord(c) <= 0xDFFF))  # lone surrogates cannot be a file name
    stem = stem[:100].lstrip("._- ").rstrip(". ")
    if not stem:
        stem = DEFAULT_STEM
    if stem.split(".")[0].upper() in _RESERVED:
        stem = "_" + stem
    return f"{stem}.{fmt}"

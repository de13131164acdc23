"""The analysed graph as Graphviz DOT, and rendered to SVG/PNG/PDF by Graphviz's ``dot``.

:func:`to_dot` is a pure function of the analysis (same input, byte-identical text); only
:func:`render` runs Graphviz. Every name and attribute from the user's spec is HTML-escaped,
so a layer named ``<b>"x"&`` is drawn literally.
"""

from __future__ import annotations

import bisect
import html
import math
import re
import warnings
from collections.abc import Collection
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


def _label(box: list[LayerReport], share: str) -> str:
    """An HTML-like label: bold name, type and key attributes (and, for a compact chain, the ops
    folded in), output shape, summed params and MACs, and the share when coloured."""
    row = box[0]
    kind = f"{row.type} {row.summary}".strip()
    params, macs = sum(r.params for r in box), sum(r.macs for r in box)
    figures = ", ".join(f"{si(value)} {what}" for value, what in ((params, "params"), (macs, "MACs")) if value)
    prefix = ".".join(row.scope) + "."
    local = row.name[len(prefix):] if row.scope and row.name.startswith(prefix) else row.name  # its cluster names the rest
    lines = [f"<B>{_esc(local)}</B>"]
    if kind != local:
        lines.append(_esc(kind))
    if len(box) > 1:
        lines.append(_esc("+ " + " + ".join(f"{r.type} {r.summary}".strip() for r in box[1:])))
    lines.append(f'<FONT POINT-SIZE="10">{shape(box[-1].output_shape)}</FONT>')
    if figures:
        lines.append(f'<FONT POINT-SIZE="10">{figures}</FONT>')
    if share:
        lines.append(f'<FONT POINT-SIZE="10">{share}</FONT>')
    return "<" + "<BR/>".join(lines) + ">"


#: Networks with more layers than this are drawn compact unless told otherwise.
COMPACT_ABOVE = 60
#: A drawing longer than this many times its width (TB; wider than high for LR) is wrapped.
WRAP_ABOVE = 2.5
#: The length-to-width ratio wrapping aims at: a portrait page for TB, a landscape one for LR.
WRAP_TARGET = 1.4


def to_dot(model: Any, depth: int | None = None, color: str = "none", rankdir: str = "TB",
           compact: bool | None = None, wrap: int | None = None) -> str:
    """DOT source of a model's graph, each node labelled with the analyzer's figures.

    Args:
        model: anything :func:`archcalc.load` takes.
        depth: levels of blocks to show; 1 folds each top-level block into one node (None: none folded).
        color: ``macs``, ``params``, ``activations`` (fill by each node's share) or ``none``.
        rankdir: ``TB`` (top to bottom) or ``LR`` (left to right).
        compact: draw each chain of single-input point-wise ops (batchnorm, activations, dropout:
            ops whose receptive-field window is ``POINTWISE``) inside the node of the layer that
            feeds them, when that layer feeds nothing else: a conv+batchnorm+ReLU chain becomes one
            node listing what it holds, with summed params and MACs. None: compact for networks
            of more than :data:`COMPACT_ABOVE` layers.
        wrap: cut long chains into columns (rows for ``LR``) of at most this many ranks, only
            between blocks (a block holding blocks may be cut between them, and is then drawn
            without its frame); 0: never. None: wrap when the drawing would be more than
            :data:`WRAP_ABOVE` times longer than wide, into the columns that come closest to
            :data:`WRAP_TARGET`.

    Edges carry the shape of the tensor that flows, except along a plain chain, where the node
    the edge leaves already prints that shape.

    Raises:
        ArchcalcError: a bad ``color``, ``depth``, ``rankdir`` or ``wrap``, and whatever
            :func:`archcalc.load` and :func:`archcalc.analyze` raise.
    """
    if color != "none" and color not in COLOR_METRICS:
        raise ArchcalcError(f"color must be one of none, {', '.join(COLOR_METRICS)}, got {color!r}")
    if depth is not None and depth < 1:
        raise ArchcalcError(f"depth must be 1 or more (levels of blocks shown), got {depth}")
    if rankdir not in RANKDIRS:
        raise ArchcalcError(f"rankdir must be TB or LR, got {rankdir!r}")
    if wrap is not None and (isinstance(wrap, bool) or not isinstance(wrap, int) or wrap < 0):
        raise ArchcalcError(f"wrap must be a count of ranks per column, 0 for never, got {wrap!r}")
    graph = load(model)
    analysis = analyze(graph)
    rows = analysis.layers if depth is None else fold(analysis.layers, depth)
    ids = {row.name: f"n{index}" for index, row in enumerate(rows)}
    shown = {node.name: _shown_name(node.name, node.scope, depth) for node in graph}
    if compact is None:
        compact = len(graph) - 1 > COMPACT_ABOVE
    row_of = {row.name: row for row in analysis.layers}
    boxes = _boxes(graph, rows, row_of, shown, compact)
    box_of = {row.name: box for box in boxes for row in box}

    attr, phrase = COLOR_METRICS.get(color, ("", ""))
    total = getattr(analysis.totals, attr) if attr else 0
    largest = max((sum(getattr(row, attr) for row in box) for box in boxes), default=0) if attr else 0

    out = [
        f"digraph {_quote(analysis.model)} {{",
        f"  rankdir={rankdir};",
        "  newrank=true;",
        f"  label=<{_title(analysis)}>;",
        '  labelloc=t; fontname="Helvetica"; fontsize=16;',
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9, fontcolor="#555555", color="#666666"];',
    ]
    labels: dict[str, str] = {}
    lines_by_scope: dict[tuple[str, ...], list[str]] = {}
    for box in boxes:
        head = ids[box[0].name]
        share = ""
        fill = ""
        value = sum(getattr(row, attr) for row in box) if attr else 0
        if value:
            percent = 100 * value / total
            share = f"{percent:.1f}% of {phrase}" if percent >= 0.1 else f"&lt;0.1% of {phrase}"
            fill = f', fillcolor="{_fill(value / largest)}"'
        labels[head] = _label(box, share)
        tooltip = f", tooltip={_quote(', '.join(row.name for row in box))}" if len(box) > 1 else ""
        lines_by_scope.setdefault(box[0].scope, []).append(f"{head} [label={labels[head]}{fill}{tooltip}];")

    edges: dict[tuple[str, str], str] = {}
    for node in graph.nodes[1:]:
        for ref in node.inputs:
            pair = (ids[box_of[shown[ref]][0].name], ids[box_of[shown[node.name]][0].name])
            if pair[0] != pair[1] and pair not in edges:
                edges[pair] = shape(row_of[ref].output_shape)
    printed = {ids[box[0].name]: shape(box[-1].output_shape) for box in boxes}
    outs = _count(a for a, _ in edges)
    ins = _count(b for _, b in edges)
    # along a plain chain the node an edge leaves already prints the shape: no label
    shown_labels = {pair: label for pair, label in edges.items()
                    if not (outs[pair[0]] == 1 and ins[pair[1]] == 1 and label == printed[pair[0]])}
    scopes = {ids[box[0].name]: box[0].scope for box in boxes}
    layout = _Layout(labels, scopes, edges, shown_labels, rankdir, _title(analysis))
    column, constraints, dissolved = layout.wrap(wrap)
    out.extend(_clusters(lines_by_scope, (), "  ", dissolved))
    for pair in edges:
        attributes = [f'label="{shown_labels[pair]}"'] if pair in shown_labels else []
        if column[pair[0]] != column[pair[1]]:
            attributes.append("constraint=false")  # continues in the next column
        out.append(f"  {pair[0]} -> {pair[1]}" + (f" [{', '.join(attributes)}]" if attributes else "") + ";")
    out.extend(constraints)
    if attr:
        out.append(_legend(phrase, largest, total))
    out.append("}")
    return "\n".join(out) + "\n"


def _boxes(graph: Any, rows: tuple[LayerReport, ...], row_of: dict[str, LayerReport], shown: dict[str, str],
           compact: bool) -> list[list[LayerReport]]:
    """The drawn nodes, each a list of rows: one row, or with ``compact`` a producer and the chain
    of single-input point-wise ops it alone feeds (decided by each op's declared window)."""
    if not compact:
        return [[row] for row in rows]
    from archcalc.ops import POINTWISE, Layer, get_op

    def pointwise(row: LayerReport) -> bool:
        layer = Layer(row.attrs, tuple(row_of[ref].output_shape for ref in row.inputs), row.output_shape)
        return get_op(row.type).window(layer) == POINTWISE

    producers: dict[str, list[str]] = {}
    consumers: dict[str, set[str]] = {}
    for node in graph.nodes[1:]:
        for ref in node.inputs:
            if shown[ref] != shown[node.name]:
                producers.setdefault(shown[node.name], []).append(shown[ref])
                consumers.setdefault(shown[ref], set()).add(shown[node.name])
    nodes = {node.name: node for node in graph}
    by_name = {row.name: row for row in rows}
    box_of: dict[str, list[LayerReport]] = {}
    boxes: list[list[LayerReport]] = []
    for row in rows:
        node = nodes.get(row.name)
        sources = producers.get(row.name, [])
        folds = (
            node is not None and shown[row.name] == row.name and len(node.inputs) == 1 and len(sources) == 1
            and pointwise(row)
            and consumers[sources[0]] == {row.name} and by_name[sources[0]].type != "input"
            and by_name[sources[0]].scope == row.scope
        )
        if folds:
            box_of[row.name] = box_of[sources[0]]
            box_of[row.name].append(row)
        else:
            box_of[row.name] = [row]
            boxes.append(box_of[row.name])
    return boxes


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


class _Layout:
    """Where long chains are cut into columns: levels, and Graphviz's sizes estimated from labels.

    A box's level is its longest path from the input; a cut falls between two levels that no
    cluster spans (a cluster is one rectangle and cannot be split). Each column's first level
    is put on the input's rank (``rank=same``), the columns are ordered by invisible edges, and
    edges between columns do not constrain the ranks.
    """

    #: Graphviz's defaults in points: rank and node separation; points per character, per line.
    RANKSEP, NODESEP, CHAR, LINE, TITLE_CHAR = 36, 18, 6.3, 14, 8.5
    #: Fewest ranks in a column when wrapping on its own (a short chain is left as it is).
    MIN_COLUMN = 4
    #: Left to right, edges between ranks take more room than the labels alone (measured on the zoo).
    LR_SPREAD = 1.3

    def __init__(self, labels: dict[str, str], scopes: dict[str, tuple[str, ...]], edges: dict[tuple[str, str], str],
                 shown_labels: dict[tuple[str, str], str], rankdir: str, title: str) -> None:
        self.order = list(labels)
        self.scopes = scopes
        self.edges = edges
        self.rankdir = rankdir
        self.title_width = len(_text(title)) * self.TITLE_CHAR
        self.level = self._levels()
        self.depth = max(self.level.values(), default=-1) + 1
        labelled = {b for _, b in shown_labels}
        self.along = [0.0] * self.depth  # extent of each level in the direction of the ranks
        self.across = [0.0] * self.depth  # and across them
        for box in self.order:
            lines = [_text(line) for line in labels[box][1:-1].split("<BR/>")]
            width, height = max(map(len, lines)) * self.CHAR + 18, len(lines) * self.LINE + 10
            if rankdir == "LR":
                width, height = height, width
            level = self.level[box]
            extra = (self.LINE if rankdir == "TB" else 6 * self.CHAR) if box in labelled else 0
            spread = self.LR_SPREAD if rankdir == "LR" else 1
            self.along[level] = max(self.along[level], (height + self.RANKSEP + extra) * spread)
            self.across[level] += width + self.NODESEP
        self.spans = self._spans()
        self.prefix = [0.0]  # along-extent of levels 0..i-1
        for extent in self.along:
            self.prefix.append(self.prefix[-1] + extent)

    def _levels(self) -> dict[str, int]:
        level: dict[str, int] = {}
        preds: dict[str, list[str]] = {}
        for a, b in self.edges:
            preds.setdefault(b, []).append(a)
        for box in self.order:  # boxes come in topological order
            level[box] = max((level[a] + 1 for a in preds.get(box, [])), default=0)
        return level

    def _spans(self) -> dict[tuple[str, ...], tuple[int, int]]:
        """The first and last level of each cluster."""
        spans: dict[tuple[str, ...], tuple[int, int]] = {}
        for box, scope in self.scopes.items():
            level = self.level[box]
            for end in range(1, len(scope) + 1):
                low, high = spans.get(scope[:end], (level, level))
                spans[scope[:end]] = (min(low, level), max(high, level))
        return spans

    def cuts(self, leaves_only: bool = False) -> list[int]:
        """The levels a column may start at (with 0 and the depth): where no cluster is open, or
        with ``leaves_only`` no cluster without clusters inside (the others would be dissolved)."""
        parents = {scope[:-1] for scope in self.spans}
        opened = [0] * (self.depth + 1)  # a difference array: +1 inside each cluster's span
        for scope, (low, high) in self.spans.items():
            if not (leaves_only and scope in parents):
                opened[low + 1] += 1
                opened[high + 1] -= 1
        cuts, inside = [0], 0
        for level in range(1, self.depth):
            inside += opened[level]
            if not inside:
                cuts.append(level)
        return [*cuts, self.depth]

    def pack(self, cuts: list[int], at_cuts: list[float], capacity: float) -> list[range]:
        """Greedy columns between cuts, each at most ``capacity`` long by ``at_cuts`` (a prefix sum
        at each cut), or one uncuttable run alone when that is longer. O(columns x log(cuts))."""
        columns, index = [], 0
        while cuts[index] < self.depth:
            end = max(bisect.bisect_right(at_cuts, at_cuts[index] + capacity) - 1, index + 1)
            columns.append(range(cuts[index], cuts[end]))
            index = end
        return columns

    def balanced(self, cuts: list[int], count: int) -> list[range]:
        """At most ``count`` columns, the longest as short as the cuts allow (bisecting its length)."""
        low = max(self.prefix[b] - self.prefix[a] for a, b in zip(cuts, cuts[1:]))  # the longest uncuttable run
        high = self.prefix[-1]
        at_cuts = [self.prefix[cut] for cut in cuts]
        for _ in range(40):
            middle = (low + high) / 2
            if len(self.pack(cuts, at_cuts, middle)) <= count:
                high = middle
            else:
                low = middle
        return self.pack(cuts, at_cuts, high)

    def ratio(self, columns: list[range]) -> float:
        """Estimated length / breadth of the drawing: height / width for TB, width / height for LR."""
        length = max(self.prefix[column.stop] - self.prefix[column.start] for column in columns)
        breadth = sum(max(self.across[column.start:column.stop]) + self.NODESEP for column in columns)
        if self.rankdir == "TB":
            return (length + 30) / max(breadth, self.title_width)
        return max(length, self.title_width) / (breadth + 30)

    def best(self, cuts: list[int]) -> list[range]:
        """The balanced columns whose drawing comes closest to :data:`WRAP_TARGET`."""
        most = min(len(cuts) - 1, self.depth // self.MIN_COLUMN, 24)  # a few ranks per column, at most 24 columns
        layouts = [self.balanced(cuts, count) for count in range(2, most + 1)] or [[range(self.depth)]]
        return min(layouts, key=lambda c: (abs(math.log(self.ratio(c) / WRAP_TARGET)), len(c)))

    def wrap(self, wrap: int | None) -> tuple[dict[str, int], list[str], set[tuple[str, ...]]]:
        """The column of each box, the DOT lines that place the columns side by side, and the
        clusters a column boundary cuts through (drawn without their frame; the clusters inside
        them keep theirs, and their full names)."""
        columns = [range(self.depth)]
        if self.depth > 1 and wrap != 0:
            cuts, finer = self.cuts(), self.cuts(leaves_only=True)
            if wrap is not None:
                wrap = min(wrap, self.depth)  # a huge limit is no limit, and must fit a float
                columns = self.pack(cuts, [float(cut) for cut in cuts], wrap)
                if any(len(column) > wrap for column in columns):
                    columns = self.pack(finer, [float(cut) for cut in finer], wrap)
            elif self.ratio(columns) > WRAP_ABOVE:
                columns = self.best(cuts)
                if self.ratio(columns) > WRAP_ABOVE and finer != cuts:
                    columns = self.best(finer)
        column_of_level = [0] * self.depth
        for index, column in enumerate(columns):
            column_of_level[column.start:column.stop] = [index] * len(column)
        column = {box: column_of_level[self.level[box]] for box in self.order}
        if len(columns) == 1:
            return column, [], set()
        starts = sorted(c.start for c in columns)
        dissolved = {scope for scope, (low, high) in self.spans.items()
                     if bisect.bisect_right(starts, high) > bisect.bisect_right(starts, low)}
        tops: dict[int, list[str]] = {}
        for box in self.order:
            if self.level[box] == columns[column[box]].start:
                tops.setdefault(self.level[box], []).append(box)
        lines = ["  {rank=same; " + " ".join(f"{box};" for level in sorted(tops) for box in tops[level]) + "}"]
        firsts = [tops[level][0] for level in sorted(tops)]
        lines.extend(f"  {a} -> {b} [style=invis];" for a, b in zip(firsts, firsts[1:]))
        return column, lines, dissolved


def _text(label: str) -> str:
    """The visible text of a line of an HTML-like label."""
    return html.unescape(re.sub(r"<[^>]*>", "", label))


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


def _clusters(lines_by_scope: dict[tuple[str, ...], list[str]], scope: tuple[str, ...], indent: str,
              dissolved: Collection[tuple[str, ...]] = ()) -> list[str]:
    """The nodes of ``scope`` and, nested, a labelled cluster for each block inside it, in the
    network's order (a ``dissolved`` block's nodes and clusters are drawn without its frame)."""
    children: dict[tuple[str, ...], dict[tuple[str, ...], None]] = {}  # ordered sets, by first appearance
    for key in lines_by_scope:
        for end in range(1, len(key) + 1):
            children.setdefault(key[: end - 1], {})[key[:end]] = None

    def nest(scope: tuple[str, ...], indent: str) -> list[str]:
        out = [indent + line for line in lines_by_scope.get(scope, [])]
        for child in children.get(scope, {}):
            if child in dissolved:
                out.extend(nest(child, indent))
                continue
            name = ".".join(child)
            out.append(f"{indent}subgraph {_quote('cluster_' + name)} {{")
            out.append(f'{indent}  label=<{_esc(name)}>; style="rounded,dashed"; color="#999999"; fontsize=11;')
            out.extend(nest(child, indent + "  "))
            out.append(f"{indent}}}")
        return out

    return nest(scope, indent)


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


def render(model: Any, output: str | Path, depth: int | None = None, color: str = "none", rankdir: str = "TB",
           compact: bool | None = None, wrap: int | None = None) -> Path:
    """Draw a model to ``output``; the format comes from its extension (svg, png, pdf, dot).

    ``depth``, ``color``, ``rankdir``, ``compact`` and ``wrap`` are :func:`to_dot`'s.

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
    if not str(output).strip():
        raise ArchcalcError(f"the output file name is empty; give one ending in {', '.join('.' + f for f in FORMATS)}")
    path = Path(output)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ArchcalcError(f"output '{path}': the extension must be one of {', '.join('.' + f for f in FORMATS)}")
    text = to_dot(model, depth, color, rankdir, compact=compact, wrap=wrap)
    if fmt == "dot":
        _write(path, text.encode("utf-8"))
        return path
    drawn = sum(1 for line in text.splitlines() if _NODE_LINE.match(line))
    if drawn > MAX_DRAWN_NODES:  # Graphviz's layout time grows faster than the node count: minutes, then hours
        raise ArchcalcError(
            f"output '{path}': {drawn:,} boxes to draw, more than Graphviz lays out in reasonable time "
            f"(at most {MAX_DRAWN_NODES:,}); fold blocks with --depth 1 (or 2), or write -o {path.stem}.dot"
        )
    try:
        import graphviz
    except ImportError:
        raise MissingToolError("the graphviz Python package is missing: pip install graphviz (a dependency of archcalc)") from None
    try:
        data = _pipe(graphviz, text, fmt)
    except graphviz.ExecutableNotFound:
        raise MissingToolError(_write_fallback(path, text)) from None
    except graphviz.CalledProcessError as error:
        if "rank=same" not in text:  # not the wrapping: nothing else to try
            raise ArchcalcError(_dot_failed(path, error)) from None
        # Graphviz's dot (2.43 at least) sometimes cannot place wrapped columns of clusters
        # ("trouble in init_rank"): draw it in one column rather than not at all, and say so.
        try:
            data = _pipe(graphviz, to_dot(model, depth, color, rankdir, compact=compact, wrap=0), fmt)
        except graphviz.CalledProcessError as again:
            raise ArchcalcError(_dot_failed(path, again)) from None
        warnings.warn(f"output '{path}': Graphviz's dot could not place the wrapped columns ({_first_error(error)}), "
                      "so the graph is drawn in one column (--wrap 0); another --wrap may work", stacklevel=2)
    _write(path, data)
    return path


#: The most boxes ``render`` asks Graphviz to lay out (a 900-box drawing took 6.5 s, 3,000 over a minute).
MAX_DRAWN_NODES = 1500
_NODE_LINE = re.compile(r"\s*n\d+ \[label=")


def _pipe(graphviz: Any, text: str, fmt: str) -> bytes:
    """Graphviz's output for ``text`` in ``fmt`` (quiet: its diagnostics go into the exception)."""
    return graphviz.Source(text).pipe(format=fmt, quiet=True)


def _first_error(error: Any) -> str:
    """The first line of Graphviz's complaint that says what went wrong."""
    text = error.stderr.decode("utf-8", "replace") if isinstance(error.stderr, bytes) else str(error.stderr or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("Error")), lines[0] if lines else f"exit status {error.returncode}")


def _dot_failed(path: Path, error: Any) -> str:
    return f"output '{path}': Graphviz's dot failed: {_first_error(error)}; try another --wrap, --depth or the .dot output"


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

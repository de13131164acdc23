"""``archcalc diff``: two networks layer by layer, or one network under two counting conventions.

Two networks (:func:`diff_models`): their layers are aligned by name first; the layers left
over are aligned by position, within the stretch between the same two name-aligned layers of
each network (alike layers paired first: same type, attributes and output shape; the rest in
order). ``by_name=False`` (``--align position``) aligns by position alone. A layer aligned
with none is ``removed`` (only in A, the first network) or ``added`` (only in B). A pair of
aligned layers *differs* when its name (aligned by position), its type or attributes, its
inputs (A's inputs, through the alignment, are not B's), or any per-layer figure
(:data:`archcalc.figures.LAYER_FIGURES`: output shape, params, MACs, activations...) differs. Differences are B - A, ratios B / A.

One network under two conventions (:func:`diff_conventions`): the per-layer counts of
:func:`archcalc.conventions.count` under conventions A and B, the layers whose counts differ
with the rule of each convention that gives its count, and the totals with their ratio.

Everything here is a number from :func:`archcalc.analyze` or :func:`archcalc.conventions.count`;
presentation (:mod:`archcalc.render.diff`) formats these and computes nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from archcalc.figures import LAYER_FIGURES, TOTAL_FIGURES, Figure
from archcalc.report import Analysis, LayerReport

#: How a row was aligned: by layer ``name``, by ``position``, or not at all (``removed``: only in
#: A; ``added``: only in B).
ALIGNMENTS = ("name", "position", "removed", "added")

#: What a row compares besides the figures: the name (of layers aligned by position), the op type
#: and attributes, and the inputs.
STRUCTURE = ("name", "type", "inputs")


def align(a: Sequence[tuple[str, Hashable]], b: Sequence[tuple[str, Hashable]],
          by_name: bool = True) -> list[tuple[int | None, int | None, str]]:
    """Align two layer sequences given as ``(name, kind)`` pairs, each in network order.

    ``kind`` is what makes two layers alike for the position step: the op type, or (as
    :func:`diff_analyses` gives it) the type with its attributes and output shape.

    Returns ``(index in a, index in b, how)`` triples, ``how`` one of :data:`ALIGNMENTS` (the index
    of the missing side None for ``removed`` and ``added``), in diff order: B's order, each
    removed layer after the row of the A layer before it.

    1. By name: layers with equal names pair up.
    2. By position, for the rest: a left-over layer belongs to the stretch after the last
       name-aligned layer before it in its own network (the stretch before the first one at the
       start); the left-over layers of A and B in the same stretch pair in order, matching
       layers of one kind first (a longest common subsequence of their kinds), then those left
       between matches in order. Whatever remains in a stretch is removed (A) or added (B).

    ``by_name=False`` skips step 1: every layer is aligned by position (one stretch), for
    networks whose names mean different things (layers numbered in order, ``relu8`` after an
    inserted conv naming another layer than before).
    """
    b_index: dict[str, int] = {}
    for j, (name, _) in enumerate(b if by_name else ()):
        b_index.setdefault(name, j)
    pairs: dict[int, tuple[int | None, str]] = {}  # a index -> (b index, how)
    b_taken: set[int] = set()
    for i, (name, _) in enumerate(a):
        j = b_index.get(name)
        if j is not None and j not in b_taken:
            pairs[i] = (j, "name")
            b_taken.add(j)
    # stretches: key = the name-aligned A index the stretch follows (-1 at the start)
    a_stretches: dict[int, list[int]] = {}
    anchor = -1
    for i in range(len(a)):
        if i in pairs:
            anchor = i
        else:
            a_stretches.setdefault(anchor, []).append(i)
    a_of_b = {j: i for i, (j, _) in pairs.items()}
    b_stretches: dict[int, list[int]] = {}
    anchor = -1
    for j in range(len(b)):
        if j in b_taken:
            anchor = a_of_b[j]
        else:
            b_stretches.setdefault(anchor, []).append(j)
    for key, b_rest in b_stretches.items():
        a_rest = a_stretches.get(key, [])
        for i, j in _pair_stretch([a[i][1] for i in a_rest], [b[j][1] for j in b_rest]):
            if i is not None and j is not None:
                pairs[a_rest[i]] = (b_rest[j], "position")
    b_paired = {j: i for i, (j, _) in pairs.items()}
    out: list[tuple[int | None, int | None, str]] = []
    next_a = 0  # A layers before this index are placed

    def place_removed(upto: int) -> None:
        nonlocal next_a
        for i in range(next_a, upto):
            if i not in pairs:
                out.append((i, None, "removed"))
        next_a = max(next_a, upto)

    for j in range(len(b)):
        if j in b_paired:
            i = b_paired[j]
            place_removed(i)
            out.append((i, j, pairs[i][1]))
        else:
            out.append((None, j, "added"))
    place_removed(len(a))
    return out


def _pair_stretch(a_kinds: list[Hashable], b_kinds: list[Hashable]) -> list[tuple[int | None, int | None]]:
    """Pair the left-over layers of one stretch by position: equal kinds first, then in order.

    The layers of equal kind paired are a longest common subsequence of the two kind lists, each
    match as early as it can be: their common head, then (by dynamic programming, at most
    :data:`MAX_ALIGNED_CELLS` cells, after setting aside as much of the common tail as that
    needs) the rest; a middle still too large is paired in order alone, so the work stays bounded. Between two
    such pairs, the layers left are paired in order. Returns ``(a, b)`` index pairs within the
    stretch, ``(None, b)`` for a B layer left unpaired (an A layer left unpaired is in no pair).
    """
    n, m = len(a_kinds), len(b_kinds)
    head = 0
    while head < min(n, m) and a_kinds[head] == b_kinds[head]:
        head += 1
    tail = 0  # the common tail is set aside only when the table would be too large without it
    while (n - head - tail + 1) * (m - head - tail + 1) > MAX_ALIGNED_CELLS and tail < min(n, m) - head \
            and a_kinds[n - 1 - tail] == b_kinds[m - 1 - tail]:
        tail += 1
    matches = [(k, k) for k in range(head)]
    matches += [(head + i, head + j) for i, j in _common_subsequence(a_kinds[head:n - tail], b_kinds[head:m - tail])]
    matches += [(n - tail + k, m - tail + k) for k in range(tail)]
    out: list[tuple[int | None, int | None]] = []
    next_a = next_b = 0
    for i, j in [*matches, (n, m)]:
        common = min(i - next_a, j - next_b)  # the layers between two matches: in order
        out += [(next_a + k, next_b + k) for k in range(common)]
        out += [(None, k) for k in range(next_b + common, j)]
        if i < n:
            out.append((i, j))
        next_a, next_b = i + 1, j + 1
    return out


#: The most cells the longest-common-subsequence table of one stretch may have (500 x 500 layers
#: after the common head and tail, a fraction of a second of Python); a larger stretch's middle
#: is paired in order, so the work stays bounded.
MAX_ALIGNED_CELLS = 250_000


def _common_subsequence(a: list[Hashable], b: list[Hashable]) -> list[tuple[int, int]]:
    """Index pairs of a longest common subsequence of ``a`` and ``b`` (each match taken as early
    as it can be); ``[]`` when the table would exceed :data:`MAX_ALIGNED_CELLS`."""
    from array import array

    n, m = len(a), len(b)
    if not n or not m or (n + 1) * (m + 1) > MAX_ALIGNED_CELLS:
        return []
    # suffix table: rows[i][j] = the LCS length of a[i:] and b[j:]
    rows = [array("l", bytes(8 * (m + 1))) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, below, kind = rows[i], rows[i + 1], a[i]
        for j in range(m - 1, -1, -1):
            row[j] = below[j + 1] + 1 if kind == b[j] else max(below[j], row[j + 1])
    out = []
    i = j = 0
    while i < n and j < m:
        if a[i] == b[j]:
            out.append((i, j))
            i, j = i + 1, j + 1
        elif rows[i + 1][j] >= rows[i][j + 1]:
            i += 1
        else:
            j += 1
    return out


@dataclass(frozen=True, slots=True)
class LayerDiff:
    """One row of a two-network diff: a layer of A, of B, or one of each aligned.

    ``differs`` names what differs, in this order: ``name`` (layers aligned by position),
    ``type`` (the op type or its attributes, as the report's Type column shows them), ``inputs``
    (A's inputs, mapped through the alignment, are not B's), then each figure of :data:`~archcalc.figures.LAYER_FIGURES` whose values
    differ. Empty for an equal pair; every figure for an added or removed layer.
    """

    aligned: str
    a: LayerReport | None
    b: LayerReport | None
    #: A's inputs named as B's layers they align with (None for an input aligned with nothing).
    mapped_inputs: tuple[str | None, ...] | None
    differs: tuple[str, ...]

    @property
    def name(self) -> str:
        """The layer's name; ``a -> b`` when aligned layers' names differ."""
        if self.a is None or self.b is None:
            return (self.a or self.b).name  # type: ignore[union-attr]
        return self.a.name if self.a.name == self.b.name else f"{self.a.name} -> {self.b.name}"

    @property
    def changed(self) -> bool:
        """Whether the row differs at all (an added or removed layer always does)."""
        return bool(self.differs)

    def difference(self, figure: str) -> Any:
        """B - A of a count figure (a side that is missing counts as 0); None for a shape."""
        index = _FIGURE_INDEX[figure]
        if LAYER_FIGURES[index].kind == "shape":
            return None
        return (self.b.values[index] if self.b else 0) - (self.a.values[index] if self.a else 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: alignment, each side's name, type, summary and inputs, what differs, and
        per figure ``{"a": ..., "b": ..., "diff": ...}`` (exact integers; a missing side null)."""
        out: dict[str, Any] = {"aligned": self.aligned, "differs": list(self.differs)}
        for side, row in (("a", self.a), ("b", self.b)):
            out[side] = None if row is None else {"name": row.name, "type": row.type, "summary": row.summary,
                                                  "inputs": list(row.inputs), "layers": row.layers}
        out["figures"] = {
            figure.name: {"a": _json_value(figure, self.a), "b": _json_value(figure, self.b),
                          "diff": self.difference(figure.name)}
            for figure in _COMPARED
        }
        return out


_FIGURE_INDEX = {figure.name: index for index, figure in enumerate(LAYER_FIGURES)}

#: Figures of everything upstream of a layer (a cumulative count changes below any changed layer,
#: as the receptive field does): a diff of the layers themselves leaves them out.
_UPSTREAM = frozenset({"cumulative_macs", "cumulative_count"})

#: The per-layer figures a diff compares: every one JSON carries (the output shape, params,
#: trainable, weights, buffers, MACs, FLOPs, other ops, gradient MACs, activations, bytes, the
#: count under the analyses' convention) but the cumulative ones.
_COMPARED: tuple[Figure, ...] = tuple(f for f in LAYER_FIGURES if "json" in f.formats and f.name not in _UPSTREAM)


def _json_value(figure: Figure, row: LayerReport | None) -> Any:
    if row is None:
        return None
    value = row.values[_FIGURE_INDEX[figure.name]]
    return list(value) if figure.kind == "shape" else value


@dataclass(frozen=True, slots=True)
class TotalDiff:
    """A network total of A and of B, the difference B - A and the exact ratio B / A (None when A's is 0)."""

    figure: Figure
    a: int
    b: int

    @property
    def difference(self) -> int:
        """B - A."""
        return self.b - self.a

    @property
    def ratio(self) -> Fraction | None:
        """B / A exactly; None when A's total is 0."""
        return Fraction(self.b, self.a) if self.a else None

    def to_dict(self) -> dict[str, Any]:
        """``{"a", "b", "diff", "ratio"}``: exact integers, the ratio a float (null when A's is 0)."""
        ratio = self.ratio
        return {"a": self.a, "b": self.b, "diff": self.difference, "ratio": None if ratio is None else float(ratio)}


@dataclass(frozen=True, slots=True)
class ModelDiff:
    """Two networks compared layer by layer (see the module's doc for the alignment).

    ``rows`` holds every row in diff order, equal ones included; :meth:`shown` those a report
    lists. ``depth``: the rows are ``depth`` levels of blocks, as the report's ``--depth``.
    """

    a: Analysis
    b: Analysis
    rows: tuple[LayerDiff, ...]
    depth: int | None = None
    #: False when the layers were aligned by position alone (:func:`align`).
    by_name: bool = True

    def shown(self, include_equal: bool = False) -> tuple[LayerDiff, ...]:
        """The rows that differ (every row with ``include_equal``)."""
        return self.rows if include_equal else tuple(row for row in self.rows if row.changed)

    def counts(self) -> dict[str, int]:
        """How many rows were aligned each way (:data:`ALIGNMENTS`), and how many aligned pairs
        differ (``differ``) and are equal (``equal``)."""
        out = dict.fromkeys(ALIGNMENTS, 0)
        for row in self.rows:
            out[row.aligned] += 1
        aligned = [row for row in self.rows if row.a is not None and row.b is not None]
        out["differ"] = sum(1 for row in aligned if row.changed)
        out["equal"] = len(aligned) - out["differ"]
        return out

    def totals(self, fmt: str = "json") -> tuple[TotalDiff, ...]:
        """The network totals side by side, every figure ``fmt`` (``json``, ``compare``) carries."""
        return tuple(TotalDiff(f, getattr(self.a.totals, f.name), getattr(self.b.totals, f.name))
                     for f in TOTAL_FIGURES if fmt in f.formats)

    def to_dict(self, include_equal: bool = False) -> dict[str, Any]:
        """The JSON form: both networks, the settings, the alignment counts, the rows shown and the totals."""
        a, b = self.a, self.b
        out: dict[str, Any] = {
            "kind": "models",
            "a": {"model": a.model, "input_shape": list(a.input_shape), "status": a.status},
            "b": {"model": b.model, "input_shape": list(b.input_shape), "status": b.status},
            "batch": a.batch, "dtype": a.dtype, "optimizer": a.optimizer, "memory_model": a.memory_model,
            "convention": a.convention,
        }
        if self.depth is not None:
            out["depth"] = self.depth
        out["all"] = include_equal
        out["align"] = "name" if self.by_name else "position"
        out["counts"] = self.counts()
        out["rows"] = [row.to_dict() for row in self.shown(include_equal)]
        out["totals"] = {t.figure.name: t.to_dict() for t in self.totals()}
        out["warnings"] = [f"a: {w}" for w in a.warnings] + [f"b: {w}" for w in b.warnings]
        return out

    def to_csv(self, include_equal: bool = False) -> str:
        """One line per row shown, then one ``total`` line: alignment, each side's name and type
        (``type summary``), what differs (``;``-separated), and per figure its A, B and B - A
        (exact integers; shapes as ``64x56x56``; a missing side empty). The total line has the
        totals of the per-layer figures (an output shape has none)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        header = ["aligned", "name_a", "name_b", "type_a", "type_b", "inputs_a", "inputs_b", "differs"]
        for figure in _COMPARED:
            header += [f"{figure.name}_a", f"{figure.name}_b", f"{figure.name}_diff"]
        writer.writerow(header)
        for row in self.shown(include_equal):
            cells: list[Any] = [row.aligned]
            cells += [r.name if r else "" for r in (row.a, row.b)]
            cells += [type_text(r) if r else "" for r in (row.a, row.b)]
            cells += [" ".join(r.inputs) if r else "" for r in (row.a, row.b)]
            cells.append(";".join(row.differs))
            for figure in _COMPARED:
                a, b = (_csv_value(figure, r) for r in (row.a, row.b))
                diff = row.difference(figure.name)
                cells += [a, b, "" if diff is None else diff]
            writer.writerow(cells)
        totals = {t.figure.name: t for t in self.totals()}
        cells = ["total", self.a.model, self.b.model, "", "", "", "", ""]
        for figure in _COMPARED:
            total = totals.get(figure.name)
            cells += ["", "", ""] if total is None else [total.a, total.b, total.difference]
        writer.writerow(cells)
        return out.getvalue()


def _csv_value(figure: Figure, row: LayerReport | None) -> Any:
    if row is None:
        return ""
    value = row.values[_FIGURE_INDEX[figure.name]]
    return "x".join(map(str, value)) if figure.kind == "shape" else value


def type_text(row: LayerReport) -> str:
    """The op type and its attributes as the report's Type column shows them: ``conv 3x3/1 p1, 64``."""
    return f"{row.type} {row.summary}".strip()


def _layer_diff(aligned: str, a: LayerReport | None, b: LayerReport | None, a_inputs: tuple[str | None, ...] | None,
                b_inputs: tuple[str | None, ...] | None) -> LayerDiff:
    """A row of the diff, with what differs between its two layers (inputs as B's row names)."""
    if a is None or b is None:
        return LayerDiff(aligned, a, b, a_inputs, (*STRUCTURE, *(f.name for f in _COMPARED)))
    differs = []
    if a.name != b.name:
        differs.append("name")
    if (a.type, a.summary) != (b.type, b.summary):
        differs.append("type")
    if a_inputs != b_inputs:
        differs.append("inputs")
    differs += [f.name for f in _COMPARED if a.values[_FIGURE_INDEX[f.name]] != b.values[_FIGURE_INDEX[f.name]]]
    return LayerDiff(aligned, a, b, a_inputs, tuple(differs))


def _row_of(analysis: Analysis, depth: int | None) -> dict[str, str]:
    """Each layer's name -> the name of the row that shows it (its folded block's, at ``depth``)."""
    from archcalc.report import fold_key

    out = {}
    for row in analysis.layers:
        key = fold_key(row.scope, depth)
        out[row.name] = row.name if key is None else ".".join(key)
    return out


def diff_analyses(a: Analysis, b: Analysis, depth: int | None = None, by_name: bool = True) -> ModelDiff:
    """Two analyses layer by layer (``depth``: levels of blocks shown, as the report's ``--depth``;
    ``by_name=False``: aligned by position alone, see :func:`align`).

    Raises:
        ValueError: the analyses were made with different batch, dtype, optimizer or memory model.
    """
    settings = ("batch", "dtype", "optimizer", "memory_model", "convention")
    if any(getattr(a, s) != getattr(b, s) for s in settings):
        raise ValueError("a diff compares analyses made with the same batch, dtype, optimizer, memory model and "
                         "convention")
    rows_a, rows_b = a.rows(depth), b.rows(depth)
    def kind(row: LayerReport) -> Hashable:
        return (row.type, row.summary, row.output_shape)

    triples = align([(r.name, kind(r)) for r in rows_a], [(r.name, kind(r)) for r in rows_b], by_name)
    b_name_of = {rows_a[i].name: rows_b[j].name for i, j, _ in triples if i is not None and j is not None}
    row_a, row_b = _row_of(a, depth), _row_of(b, depth)

    def a_inputs(row: LayerReport) -> tuple[str | None, ...]:  # as the B rows they align with
        return tuple(b_name_of.get(row_a.get(ref, ref)) for ref in row.inputs)

    def b_inputs(row: LayerReport) -> tuple[str | None, ...]:
        return tuple(row_b.get(ref, ref) for ref in row.inputs)

    rows = []
    for i, j, how in triples:
        ra, rb = (None if i is None else rows_a[i]), (None if j is None else rows_b[j])
        rows.append(_layer_diff(how, ra, rb, None if ra is None else a_inputs(ra), None if rb is None else b_inputs(rb)))
    return ModelDiff(a, b, tuple(rows), depth, by_name)


def diff_models(a: Any, b: Any, batch: int = 1, dtype: str = "float32", optimizer: str = "sgd",
                memory_model: str = "pytorch", depth: int | None = None, by_name: bool = True,
                convention: str = "archcalc") -> ModelDiff:
    """Two networks layer by layer: anything :func:`archcalc.load` takes, analysed alike (with
    ``convention``, each layer's ``convention_count`` is that preset's count, compared too).

    Raises:
        ArchcalcError: a network cannot be loaded or analysed (a spec error, a shape error).
    """
    from archcalc.passes import analyze

    def analysis(model: Any) -> Analysis:
        return analyze(model, batch=batch, dtype=dtype, optimizer=optimizer, memory_model=memory_model,
                       convention=convention)

    return diff_analyses(analysis(a), analysis(b), depth, by_name)


@dataclass(frozen=True, slots=True)
class CountDiff:
    """One row of a conventions diff: a layer (or a block folded into one row) counted under A and B.

    ``forward_*`` and ``backward_*`` are the counts for the batch (backward 0 unless both
    conventions count it: :attr:`ConventionDiff.counts_backward`). ``rule_*``: the rule of each
    convention that gives the count (``macs - bias_adds``, ``2 x (macs)`` with a preset's scale,
    ``; backward ...`` when backward is compared); for a folded block, the rules of its layers
    counted differently, each once with its op type (``batchnorm: 2 * outputs``). ``explained_*``:
    the rule with the layer's values in (per sample; empty for a folded block). ``note_*``: why
    the convention counts the op so, where its preset says (empty for a folded block, whose
    ``members`` hold its layers' rows).
    """

    name: str
    type: str
    forward_a: int
    forward_b: int
    backward_a: int
    backward_b: int
    rule_a: str
    rule_b: str
    explained_a: str = ""
    explained_b: str = ""
    note_a: str = ""
    note_b: str = ""
    layers: int = 1
    #: A folded block's layers (empty for a layer's own row).
    members: tuple[CountDiff, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether the two conventions count the row differently (forward or backward)."""
        return self.forward_a != self.forward_b or self.backward_a != self.backward_b

    @property
    def difference(self) -> int:
        """Forward B - A."""
        return self.forward_b - self.forward_a

    def to_dict(self, backward: bool = False) -> dict[str, Any]:
        """JSON form: exact integers (``backward`` too when ``backward``: both conventions count
        it), the rules, the rules with values and the notes."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "layers": self.layers,
                               "forward": {"a": self.forward_a, "b": self.forward_b, "diff": self.difference}}
        if backward:
            out["backward"] = {"a": self.backward_a, "b": self.backward_b, "diff": self.backward_b - self.backward_a}
        out.update({"rule": {"a": self.rule_a, "b": self.rule_b},
                    "explained": {"a": self.explained_a, "b": self.explained_b},
                    "note": {"a": self.note_a, "b": self.note_b}})
        return out


@dataclass(frozen=True, slots=True)
class ConventionDiff:
    """One network counted under two conventions (:func:`diff_conventions`).

    ``rows`` holds every layer (or folded block, with ``depth``) in network order, equal ones
    included; :meth:`shown` those a report lists. ``counted_a`` / ``counted_b``: the counts
    (:class:`archcalc.conventions.Counted`).
    """

    counted_a: Any
    counted_b: Any
    rows: tuple[CountDiff, ...]
    depth: int | None = None

    @property
    def model(self) -> str:
        """The network's name."""
        return self.counted_a.model

    @property
    def batch(self) -> int:
        """Samples counted."""
        return self.counted_a.batch

    @property
    def counts_backward(self) -> bool:
        """Whether the backward passes are compared: both conventions count one."""
        return self.counted_a.convention.counts_backward and self.counted_b.convention.counts_backward

    def shown(self, include_equal: bool = False) -> tuple[CountDiff, ...]:
        """The rows counted differently (every row with ``include_equal``)."""
        return self.rows if include_equal else tuple(row for row in self.rows if row.changed)

    def totals(self) -> tuple[tuple[str, int, int], ...]:
        """``(pass, A's total, B's total)`` for ``forward``, and ``backward`` when both count it."""
        out = [("forward", self.counted_a.forward, self.counted_b.forward)]
        if self.counts_backward:
            out.append(("backward", self.counted_a.backward, self.counted_b.backward))
        return tuple(out)

    def to_dict(self, include_equal: bool = False) -> dict[str, Any]:
        """The JSON form: the model, both conventions, whether backward counts are compared (both
        conventions count them), the rows shown and the totals (exact integers, each with B - A
        and the ratio B / A as a float, null when A's is 0)."""
        def convention(counted: Any) -> dict[str, Any]:
            c = counted.convention
            return {"name": c.name, "tool": c.tool, "unit": c.unit, "scale": c.scale, "doc": c.anchor}

        out: dict[str, Any] = {"kind": "conventions", "model": self.model, "batch": self.batch,
                               "a": convention(self.counted_a), "b": convention(self.counted_b)}
        if self.depth is not None:
            out["depth"] = self.depth
        out["all"] = include_equal
        out["backward_compared"] = self.counts_backward
        out["counts"] = {"rows": len(self.rows), "differ": sum(1 for r in self.rows if r.changed)}
        out["rows"] = [row.to_dict(self.counts_backward) for row in self.shown(include_equal)]
        out["totals"] = {name: {"a": a, "b": b, "diff": b - a, "ratio": float(Fraction(b, a)) if a else None}
                         for name, a, b in self.totals()}
        return out

    def to_csv(self, include_equal: bool = False) -> str:
        """One line per row shown, then one ``total`` line: name, type, forward A, B and B - A,
        backward A, B and B - A (0 unless both conventions count backward), each convention's rule
        and the rule with values (exact integers)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["name", "type", "layers", "forward_a", "forward_b", "forward_diff", "backward_a", "backward_b",
                         "backward_diff", "rule_a", "rule_b", "explained_a", "explained_b"])
        for row in self.shown(include_equal):
            writer.writerow([row.name, row.type, row.layers, row.forward_a, row.forward_b, row.difference,
                             row.backward_a, row.backward_b, row.backward_b - row.backward_a, row.rule_a, row.rule_b,
                             row.explained_a, row.explained_b])
        totals = {name: (a, b, b - a) for name, a, b in self.totals()}
        writer.writerow(["total", "", sum(r.layers for r in self.rows), *totals["forward"],
                         *totals.get("backward", (0, 0, 0)), self.counted_a.convention.name,
                         self.counted_b.convention.name, "", ""])
        return out.getvalue()


def diff_conventions(model: Any, a: Any = "archcalc", b: Any = "archcalc", batch: int = 1,
                     depth: int | None = None) -> ConventionDiff:
    """One network counted under conventions ``a`` and ``b`` (preset names or Conventions), layer by layer.

    With ``depth``, each block at that level is one row (as the report's ``--depth``): its counts
    summed, its rules those of its layers counted differently.

    Raises:
        ArchcalcError: an unknown convention (with the closest name), a network that cannot be
            loaded or analysed.
    """
    from archcalc import conventions
    from archcalc.loading import load
    from archcalc.report import fold_key

    preset_a, preset_b = conventions.get(a), conventions.get(b)
    graph = load(model)
    counted_a, counted_b = conventions.count(graph, preset_a, batch), conventions.count(graph, preset_b, batch)
    backward = preset_a.counts_backward and preset_b.counts_backward
    singles: list[CountDiff] = []
    keys: list[tuple[str, ...] | None] = []
    for node in graph.nodes[1:]:
        ca, cb = counted_a.layers[node.name], counted_b.layers[node.name]
        rule_a, rule_b = preset_a.rule(node.type), preset_b.rule(node.type)
        singles.append(CountDiff(
            node.name, node.type, ca.forward, cb.forward, ca.backward if backward else 0, cb.backward if backward else 0,
            _rule_text(preset_a, rule_a, backward), _rule_text(preset_b, rule_b, backward),
            _explained_text(ca.explained, backward), _explained_text(cb.explained, backward), rule_a.note, rule_b.note,
        ))
        keys.append(fold_key(node.scope, depth))
    if depth is None:
        return ConventionDiff(counted_a, counted_b, tuple(singles), depth)
    rows: list[CountDiff | tuple[str, list[CountDiff]]] = []
    groups: dict[tuple[str, ...], list[CountDiff]] = {}
    for row, key in zip(singles, keys):
        if key is None:
            rows.append(row)
        elif key in groups:
            groups[key].append(row)
        else:
            groups[key] = [row]
            rows.append((".".join(key), groups[key]))
    folded = tuple(row if isinstance(row, CountDiff) else _folded_count(*row) for row in rows)
    return ConventionDiff(counted_a, counted_b, folded, depth)


def _rule_text(preset: Any, rule: Any, backward: bool) -> str:
    """A rule as it gives the count: ``macs - bias_adds``, ``2 x (macs)`` with the preset's scale,
    ``; backward ...`` when backward passes are compared."""
    def scaled(expression: str) -> str:
        return expression if preset.scale == 1 else f"{preset.scale} x ({expression})"

    text = scaled(rule.forward)
    if backward:
        text += f"; backward {scaled(rule.backward) if rule.backward else '0'}"
    return text


#: How :func:`archcalc.conventions.count` joins a layer's forward and backward arithmetic.
_BACKWARD_SEPARATOR = "; backward "


def _explained_text(explained: str, backward: bool) -> str:
    """A layer's arithmetic under a convention; its forward part alone when backward is not compared."""
    return explained if backward else explained.split(_BACKWARD_SEPARATOR, 1)[0]


def _folded_count(name: str, members: list[CountDiff]) -> CountDiff:
    """One row for a block's layers: counts summed; the rules of the layers counted differently, each once."""
    changed = [m for m in members if m.changed]
    return CountDiff(
        name, "block",
        sum(m.forward_a for m in members), sum(m.forward_b for m in members),
        sum(m.backward_a for m in members), sum(m.backward_b for m in members),
        "; ".join(dict.fromkeys(f"{m.type}: {m.rule_a}" for m in changed)),
        "; ".join(dict.fromkeys(f"{m.type}: {m.rule_b}" for m in changed)),
        layers=len(members), members=tuple(members),
    )

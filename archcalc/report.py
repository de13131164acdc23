"""What the passes produce: per-layer figures, totals, and their machine-readable forms.

Everything here is a number the passes computed; presentation (tables, SVG) formats these
and computes nothing. The JSON form is a stable contract documented in the README.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from archcalc.figures import LAYER_INDEX, TOTAL_FIGURES, figures_for, fold_values
from archcalc.formulas import Field
from archcalc.ops import Shape
from archcalc.paths import Depth, Paths

if TYPE_CHECKING:
    from archcalc.memory import Peaks

#: Marks what was resolved for this input size and would differ at another (tables, CSV).
RESOLUTION_MARK = "^"


@dataclass(frozen=True, slots=True)
class ReceptiveField:
    """A node's receptive field w.r.t. the network input, per spatial axis of the input.

    ``path_max`` / ``path_min`` are the fields along the input paths with the largest and the
    smallest size (equal in a chain); ``aligned`` is false where merged branches' centres or
    jumps differ; ``uniform`` is false after a layer whose windows differ in size (adaptive
    pooling), the size then one that contains every window. ``resolution_dependent`` is true from a layer whose
    resolved window depends on the input size ("same" padding with a stride) onwards: the
    padding and centre (or the size) hold for this input size only. A global field (after a
    linear layer or global pooling) covers the input. An axis whose ``stride`` (jump) is 0 is
    global along that axis alone: every unit sees all of it (a linear layer acting on it).

    ``axes``: what each axis of this node's output holds: the index of the input spatial axis
    its positions step along (0 for the first spatial axis), None for no spatial axis (channels,
    a linear layer's units), or a tuple of spatial axes merged into it by a flatten or reshape.
    Channels-first (C, H, W) has (None, 0, 1); after a permute to (H, W, C), (0, 1, None);
    flattened, ((0, 1),). ``exact`` is false when the pass could not follow an axis (a window
    over axes a layout op merged; an op that may mix its channel axis applied where a spatial
    axis sits there): the field along it is then reported whole, an upper bound.
    """

    path_max: tuple[Field, ...]
    path_min: tuple[Field, ...]
    aligned: bool = True
    is_global: bool = False
    input_size: Shape = ()
    uniform: bool = True
    resolution_dependent: bool = False
    axes: tuple[int | tuple[int, ...] | None, ...] = ()
    exact: bool = True

    @classmethod
    def of(
        cls, largest: tuple[Field, ...], smallest: tuple[Field, ...], aligned: bool, uniform: bool = True,
        axes: tuple[int | tuple[int, ...] | None, ...] | None = None, exact: bool = True,
    ) -> ReceptiveField:
        """A field from its largest and smallest paths; ``axes`` channels-first unless given."""
        axes = (None, *range(len(largest))) if axes is None else axes
        return cls(largest, smallest, aligned, uniform=uniform, axes=axes, exact=exact)

    @classmethod
    def whole(cls, input_size: Shape, exact: bool = True) -> ReceptiveField:
        """The global field: every output sees the whole input (an upper bound unless ``exact``)."""
        return cls((), (), True, True, tuple(input_size), exact=exact)

    @property
    def size(self) -> Shape:
        """Field size per axis (the input's size when global)."""
        return self.input_size if self.is_global else tuple(f.size for f in self.path_max)

    @property
    def size_min(self) -> Shape:
        """Smallest field size over the input paths, per axis."""
        return self.input_size if self.is_global else tuple(f.size for f in self.path_min)

    @property
    def stride(self) -> Shape | None:
        """Effective stride (jump) per axis; None when global."""
        return None if self.is_global else tuple(f.jump for f in self.path_max)

    @property
    def padding(self) -> Shape | None:
        """Effective padding per axis; None when global."""
        return None if self.is_global else tuple(f.padding for f in self.path_max)

    @property
    def centre(self) -> tuple[Any, ...] | None:
        """Centre of output unit 0 in input coordinates, per axis; None when global."""
        return None if self.is_global else tuple(f.centre for f in self.path_max)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: size, stride, padding, centre, size_min, aligned, uniform, global, resolution_dependent, exact, axes."""
        return {
            "size": _numbers(self.size),
            "stride": _numbers(self.stride),
            "padding": _numbers(self.padding),
            "centre": _numbers(self.centre),
            "size_min": _numbers(self.size_min),
            "aligned": self.aligned,
            "uniform": self.uniform,
            "global": self.is_global,
            "resolution_dependent": self.resolution_dependent,
            "exact": self.exact,
            "axes": None if self.is_global else [list(a) if isinstance(a, tuple) else a for a in self.axes],
        }

    def text(self) -> str:
        """``7x7``, ``global``, ``7x7 (min 3x3)``, with ``!`` when branch centres differ, ``~``
        when windows differ in size (a field containing every window shown), ``?`` when an axis could not be followed
        (an upper bound shown) and ``^`` (:data:`RESOLUTION_MARK`) when its padding and centre
        hold for this input size only."""
        if self.is_global:
            return "global" + ("" if self.exact else " ?")
        text = "x".join(map(str, self.size))
        if self.size_min != self.size:
            text += f" (min {'x'.join(map(str, self.size_min))})"
        text += ("" if self.aligned else " !") + ("" if self.uniform else " ~") + ("" if self.exact else " ?")
        return text + (f" {RESOLUTION_MARK}" if self.resolution_dependent else "")


def _numbers(values: tuple[Any, ...] | None) -> list[Any] | None:
    """Exact receptive-field quantities for JSON: ints as ints, a fraction a float holds exactly
    as that float (0.5, 0.25), any other as its text ``"1/3"``."""
    if values is None:
        return None
    return [v if isinstance(v, int) else _binary(v) for v in values]


def _binary(value: Any) -> Any:
    """A fraction as a float when the float is exactly it (a power-of-two denominator within a
    double's 53 bits), else its text ``"p/q"``: JSON never gets a rounded receptive field."""
    try:
        as_float = float(value)
    except OverflowError:
        return str(value)
    return as_float if Fraction(as_float) == value else str(value)


@dataclass(frozen=True, slots=True)
class LayerReport:
    """One row of the report: a layer (or a block folded into one row) and its figures.

    Every figure of :data:`archcalc.figures.LAYER_FIGURES` is an attribute (``row.params``,
    ``row.macs``, ``row.output_shape``...), for the whole batch where it scales with it; they
    are held in ``values``, in that table's order. ``layers`` is how many layers the row holds
    (more than 1 for a folded block). ``resolution_dependent``: attributes were resolved from the
    input size and another size would change them ("same" padding with a stride; see
    :meth:`archcalc.ops.base.Op.size_dependence`); for a folded block, any of its layers'.
    """

    name: str
    type: str
    inputs: tuple[str, ...]
    scope: tuple[str, ...]
    summary: str
    attrs: Mapping[str, Any]
    stores_output: bool
    receptive_field: ReceptiveField
    values: tuple[Any, ...]
    layers: int = 1
    resolution_dependent: bool = False

    def __getattr__(self, name: str) -> Any:
        index = LAYER_INDEX.get(name)
        if index is None:
            raise AttributeError(f"LayerReport has no attribute or figure {name!r}")
        return self.values[index]

    def figure(self, name: str) -> Any:
        """A figure's value by name (see :mod:`archcalc.figures`)."""
        return self.values[LAYER_INDEX[name]]

    def to_dict(self) -> dict[str, Any]:
        """JSON form of the row; every count an exact integer."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "inputs": list(self.inputs), "scope": list(self.scope)}
        for figure in figures_for("json"):
            value = self.values[LAYER_INDEX[figure.name]]
            out[figure.name] = list(value) if figure.kind == "shape" else value
        out["stores_output"] = self.stores_output
        out["layers"] = self.layers
        out["resolution_dependent"] = self.resolution_dependent
        out["receptive_field"] = self.receptive_field.to_dict()
        return out


@dataclass(frozen=True, slots=True)
class Uncounted:
    """An op type of an imported network that archcalc has no rule for, passed through and
    counted as 0 (``--partial``): the source's op name, how many layers, the first one's name."""

    op: str
    count: int
    first: str

    def to_dict(self) -> dict[str, Any]:
        """``{"op": ..., "count": ..., "first": ...}``."""
        return {"op": self.op, "count": self.count, "first": self.first}

    def text(self) -> str:
        """``aten.roi_align x4 (first at heads.box.0)``."""
        return f"{self.op} x{self.count} (first at {self.first})"


@dataclass(frozen=True, slots=True)
class Totals:
    """Whole-network figures by name (:data:`archcalc.figures.TOTAL_FIGURES`): ``totals.params``,
    ``totals.activations`` (the input and every stored output), ``totals.training_bytes``..."""

    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(f"Totals has no figure {name!r}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON form; every figure an exact integer."""
        return {figure.name: self.values[figure.name] for figure in TOTAL_FIGURES if "json" in figure.formats}


@dataclass(frozen=True, slots=True)
class Analysis:
    """The result of :func:`archcalc.analyze`: one row per node (input first) and totals."""

    model: str
    input_shape: Shape
    batch: int
    dtype: str
    optimizer: str
    layers: tuple[LayerReport, ...]
    totals: Totals
    description: str = ""
    #: Doubts about the spec that are not errors (``Graph.warnings``), one line each.
    warnings: tuple[str, ...] = ()
    #: Depth as papers count it (:func:`archcalc.paths.depth`); None only for an Analysis built by hand.
    network_depth: Depth | None = None
    #: The input-to-output paths (:func:`archcalc.paths.paths`), when ``analyze(paths=True)``.
    paths: Paths | None = None
    #: The ops of a partial import that no rule counts (each layer's figures 0), by op.
    uncounted: tuple[Uncounted, ...] = ()
    #: The model ``totals.training_bytes`` follows: ``pytorch`` (what autograd keeps) or ``lecture``.
    memory_model: str = "pytorch"
    #: The pytorch memory model's figures with where its peaks are (:class:`archcalc.memory.Peaks`);
    #: None only for an Analysis built by hand.
    memory: Peaks | None = None
    #: The counting convention of the ``convention_count`` figure (:mod:`archcalc.conventions`).
    convention: str = "archcalc"
    #: The convention's backward total for the batch, for a preset that counts backward (else None).
    convention_backward: int | None = None

    def convention_dict(self) -> dict[str, Any]:
        """The counting convention in force (JSON): name, tool, unit, its forward total (the
        ``convention_count`` figure's), its backward total (null for a tool counting none) and
        where its rules are documented."""
        from archcalc.conventions import get

        preset = get(self.convention)
        return {"name": preset.name, "tool": preset.tool, "unit": preset.unit,
                "forward": self.totals.values.get("convention_count"), "backward": self.convention_backward,
                "doc": preset.anchor}

    @property
    def status(self) -> str:
        """``complete``, or ``partial`` when some layer was passed through uncounted (every
        total is then a lower bound)."""
        return "partial" if self.uncounted else "complete"

    def layer(self, name: str) -> LayerReport:
        """The row of a layer by name."""
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(name)

    def rows(self, depth: int | None = None) -> tuple[LayerReport, ...]:
        """The rows to show: every layer, or ``depth`` levels of blocks (see :func:`fold`)."""
        return self.layers if depth is None else fold(self.layers, depth)

    def to_dict(self, depth: int | None = None) -> dict[str, Any]:
        """The JSON contract (see README): model, input_shape, layers, totals, warnings."""
        return self._dict(layers=True, depth=depth)

    def _dict(self, layers: bool, depth: int | None = None) -> dict[str, Any]:
        """The JSON contract's dict, with or without its (long) layer list."""
        out: dict[str, Any] = {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "batch": self.batch,
            "dtype": self.dtype,
            "optimizer": self.optimizer,
            "memory_model": self.memory_model,
            "convention": self.convention_dict(),
            "status": self.status,
        }
        if self.uncounted:
            out["uncounted"] = [u.to_dict() for u in self.uncounted]
        if depth is not None:
            out["depth"] = depth
        if layers:
            out["layers"] = [row.to_dict() for row in self.rows(depth)]
        out["totals"] = self.totals.to_dict()
        if self.network_depth is not None:
            out["network_depth"] = self.network_depth.to_dict()
        if self.paths is not None:
            out["paths"] = self.paths.to_dict()
        out["warnings"] = list(self.warnings)
        return out

    def to_json(self, indent: int | None = 2, depth: int | None = None) -> str:
        """:meth:`to_dict` as JSON text: indented, each layer on one line (``indent=None``: one line)."""
        return "".join(self.iter_json(indent, depth))

    def iter_json(self, indent: int | None = 2, depth: int | None = None) -> Iterator[str]:
        """:meth:`to_json` in pieces, a layer at a time, so a long network's report is written
        without being held whole (and each layer goes through json's C encoder)."""
        head = self._dict(layers=False, depth=depth)
        totals, warnings = head.pop("totals"), head.pop("warnings")
        tail = {key: head.pop(key) for key in ("network_depth", "paths") if key in head}
        # the document with an empty layer list, cut where the list goes (no JSON string can hold
        # the cut: a quote inside one is escaped)
        text = json.dumps({**head, "layers": [], "totals": totals, **tail, "warnings": warnings}, indent=indent)
        before, after = text.split('"layers": []', 1)
        yield before + '"layers": ['
        item_prefix = "" if indent is None else "\n" + " " * (2 * indent)
        rows = self.rows(depth)
        for index, row in enumerate(rows):
            yield ("," if index else "") + item_prefix + json.dumps(row.to_dict())
        yield ("" if indent is None or not rows else "\n" + " " * indent) + "]" + after

    def to_csv(self, depth: int | None = None) -> str:
        """One row per layer (or folded block) with exact integers: name, type, the figures, whether
        the output is stored (the activation total sums the rows where it is), how many layers the
        row holds, the receptive field, and whether the layer's attributes were resolved from the
        input size."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        figures = figures_for("csv")
        writer.writerow(["name", "type", *(f.name for f in figures), "stores_output", "layers", "receptive_field",
                         "resolution_dependent"])
        for row in self.rows(depth):
            cells: list[Any] = [row.name, row.type]
            for figure in figures:
                value = row.values[LAYER_INDEX[figure.name]]
                cells.append("x".join(map(str, value)) if figure.kind == "shape" else value)
            cells += ["true" if row.stores_output else "false", row.layers, row.receptive_field.text(),
                      "true" if row.resolution_dependent else "false"]
            writer.writerow(cells)
        return out.getvalue()


def fold_key(scope: tuple[str, ...], depth: int | None) -> tuple[str, ...] | None:
    """The block a node folds into when ``depth`` levels are shown (None: it stays a row of its own).

    As torchinfo's depth: 1 shows the top level only, each top-level block instance one row.
    """
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be 1 or more (levels of blocks shown), got {depth}")
    if depth is None or len(scope) < depth:
        return None
    return scope[:depth]


def fold(layers: tuple[LayerReport, ...], depth: int) -> tuple[LayerReport, ...]:
    """Rows showing ``depth`` levels of blocks, each block at the last level folded into one row.

    ``depth=1`` folds every top-level instance. A folded row combines its layers' figures by
    each figure's fold rule (:mod:`archcalc.figures`): params, MACs and other ops summed,
    activations and memory summed over the outputs that need storage (as the totals count
    them), the output shape and receptive field of its last layer (the block's output). Its
    summary names how many layers it holds and the first and last.
    """
    out: list[LayerReport | list[LayerReport]] = []
    groups: dict[tuple[str, ...], list[LayerReport]] = {}
    for row in layers:
        key = fold_key(row.scope, depth)
        if key is None:
            out.append(row)
        elif key in groups:
            groups[key].append(row)
        else:
            groups[key] = [row]
            out.append(groups[key])
    return tuple(item if isinstance(item, LayerReport) else _folded(item, len(item[0].scope[:depth])) for item in out)


def _folded(members: list[LayerReport], depth: int) -> LayerReport:
    """One row for the layers of a block instance."""
    key = members[0].scope[:depth]
    prefix = ".".join(key) + "."
    first, last = (m.name[len(prefix):] if m.name.startswith(prefix) else m.name for m in (members[0], members[-1]))
    count = sum(m.layers for m in members)
    summary = f"{count} layers: {first} .. {last}" if count > 1 else f"1 layer: {first}"
    stores = [m.stores_output for m in members]
    return LayerReport(
        name=".".join(key), type="block", inputs=members[0].inputs, scope=key[:-1], summary=summary, attrs={},
        stores_output=any(stores), receptive_field=members[-1].receptive_field,
        values=fold_values([m.values for m in members], stores), layers=count,
        resolution_dependent=any(m.resolution_dependent for m in members),
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    """Several networks' totals side by side (``archcalc compare``), each with its exact ratio
    to the first network's: one row per figure whose formats include ``compare``."""

    analyses: tuple[Analysis, ...]

    def rows(self) -> list[tuple[Any, list[Any], list[Fraction | None]]]:
        """``(figure, values, ratios)`` per compared figure; a ratio is None for the first
        network and where the first network's total is 0."""
        out = []
        for figure in TOTAL_FIGURES:
            if "compare" not in figure.formats:
                continue
            values = [getattr(a.totals, figure.name) for a in self.analyses]
            base = values[0]
            out.append((figure, values, [None] + [Fraction(v, base) if base else None for v in values[1:]]))
        return out

    def to_dict(self) -> list[dict[str, Any]]:
        """JSON form: each network's name and totals."""
        return [{"model": a.model, "memory_model": a.memory_model, "totals": a.totals.to_dict()} for a in self.analyses]

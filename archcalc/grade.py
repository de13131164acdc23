"""Grading a filled-in layer table against the analyzer: `archcalc grade MODEL ANSWERS`.

ANSWERS is CSV or JSON with one row per layer, matched by a ``name`` column or else by row
order (as in ``archcalc report MODEL --format csv``, whose blank form ``archcalc template``
writes). Any subset of the gradable columns may be present. Cells are read tolerantly:
thousands separators, the lecture's ``224*224*64=3.2M`` (the part after the last ``=``),
arithmetic like ``(3*3*3)*64``, SI suffixes, and shapes as ``(6,28,28)`` or ``6x28x28``.

A plain integer must be exact. A figure with an SI suffix is right when the true value rounds
to it at its last significant digit ("3.2M" accepts 3,150,000 to 3,250,000; "800K", one
significant digit, accepts 750K to 850K), which is how the lecture writes its table. A shape
given channels-last (the lecture's ``[28x28x6]``) is accepted and says so.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from archcalc.errors import ArchcalcError
from archcalc.explain import explain_layer
from archcalc.graph import Graph
from archcalc.ops.base import did_you_mean
from archcalc.passes import analyze
from archcalc.report import LayerReport


@dataclass(frozen=True)
class Column:
    """A gradable column: its name, the names students may use for it, and the true value."""

    name: str
    aliases: tuple[str, ...]
    truth: Callable[[LayerReport], Any]
    kind: str  # "count" or "shape"
    explain_keys: tuple[str, ...]


COLUMNS = (
    Column("output_shape", ("output_shape", "shape", "output", "output shape"), lambda r: r.output_shape, "shape",
           ("output",)),
    Column("params", ("params", "parameters", "param", "#params"), lambda r: r.params, "count", ("weights", "params")),
    Column("params_weights_only", ("params_weights_only", "weights", "weights_only"), lambda r: r.params_weights_only, "count",
           ("weights",)),
    Column("macs", ("macs", "mac", "mult-adds", "multiply-adds", "ops"), lambda r: r.macs, "count", ("MACs",)),
    Column("flops", ("flops",), lambda r: r.flops, "count", ("FLOPs",)),
    Column("activations", ("activations", "memory", "mem", "activation"), lambda r: r.activations, "count", ("activations",)),
    Column("activation_bytes", ("activation_bytes", "bytes", "memory_bytes"), lambda r: r.activation_bytes, "count",
           ("activation bytes",)),
)
_BY_ALIAS = {alias: column for column in COLUMNS for alias in column.aliases}
_SI = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


class Unparseable(ValueError):
    """A cell that is not a number, an arithmetic expression or a shape."""


def _arithmetic(text: str) -> int:
    """An integer expression of + - * and parentheses (``x`` as times), evaluated safely."""
    try:
        tree = ast.parse(text.replace("x", "*").replace("×", "*"), mode="eval")
    except SyntaxError:
        raise Unparseable(text) from None

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        raise Unparseable(text)

    return value(tree)


def parse_count(cell: Any) -> tuple[Decimal, Decimal]:
    """(value, tolerance) of a count cell: exact for integers, half the last digit for SI figures."""
    if isinstance(cell, bool):
        raise Unparseable(str(cell))
    if isinstance(cell, int):
        return Decimal(cell), Decimal(0)
    text = str(cell).strip().replace(",", "").replace("_", "").replace(" ", "")
    if "=" in text:
        text = text.rsplit("=", 1)[1]
    match = re.fullmatch(r"([0-9]*\.?[0-9]+)([kmgtKMGT]?)", text)
    if match:
        digits, suffix = match.groups()
        scale = _SI[suffix.lower()]
        try:
            number = Decimal(digits)
        except InvalidOperation:
            raise Unparseable(str(cell)) from None
        if not suffix and "." not in digits:
            return number, Decimal(0)
        if "." in digits:
            unit = Decimal(10) ** -len(digits.split(".")[1])
        else:  # trailing zeros of "800K" are not significant
            stripped = digits.rstrip("0") or "0"
            unit = Decimal(10) ** (len(digits) - len(stripped))
        return number * scale, unit * scale / 2
    return Decimal(_arithmetic(text)), Decimal(0)


def parse_shape(cell: Any) -> tuple[int, ...]:
    """A shape from ``(6, 28, 28)``, ``[6,28,28]``, ``6x28x28``, ``(4096,)`` or ``4096``."""
    if isinstance(cell, (list, tuple)) and all(isinstance(v, int) for v in cell):
        return tuple(cell)
    if isinstance(cell, int) and not isinstance(cell, bool):
        return (cell,)
    text = str(cell).strip().strip("[]()").replace("×", "x")
    parts = [p for p in re.split(r"[x,\s]+", text) if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise Unparseable(str(cell))
    return tuple(int(p) for p in parts)


@dataclass
class Cell:
    """One graded cell: what the student wrote, the right value, and the verdict."""

    column: str
    given: str
    expected: str
    status: str  # right, wrong, blank, unparseable
    note: str = ""
    explanation: list[str] = field(default_factory=list)

    @property
    def right(self) -> bool:
        """Whether the cell earns its point."""
        return self.status == "right"


@dataclass
class Row:
    """A graded row: the layer it matched and its cells."""

    layer: str
    cells: list[Cell]
    problem: str = ""

    @property
    def score(self) -> int:
        """Right cells."""
        return sum(cell.right for cell in self.cells)


@dataclass
class Grade:
    """A graded table: rows, score, and what could not be matched."""

    model: str
    columns: list[str]
    rows: list[Row]
    unanswered_layers: list[str]

    @property
    def score(self) -> int:
        """Right cells over the whole table."""
        return sum(row.score for row in self.rows)

    @property
    def max_score(self) -> int:
        """Graded cells (blank and unparseable ones included)."""
        return sum(len(row.cells) for row in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """Everything, for ``--format json``."""
        return {
            "model": self.model, "score": self.score, "max_score": self.max_score, "columns": self.columns,
            "rows": [{"layer": r.layer, "problem": r.problem, "score": r.score, "max_score": len(r.cells),
                      "cells": [cell.__dict__ for cell in r.cells]} for r in self.rows],
            "unanswered_layers": self.unanswered_layers,
        }

    def to_gradescope(self) -> dict[str, Any]:
        """Gradescope's autograder results: one test per row, its output naming wrong cells."""
        tests = []
        for row in self.rows:
            lines = [f"{cell.column}: {_verdict(cell)}" for cell in row.cells if not cell.right]
            for cell in row.cells:
                if not cell.right and cell.explanation:
                    lines.extend(f"  {line}" for line in cell.explanation)
            if row.problem:
                lines.insert(0, row.problem)
            tests.append({"name": row.layer, "score": row.score, "max_score": len(row.cells),
                          "output": "\n".join(lines) or "all right"})
        return {"score": self.score, "max_score": self.max_score, "tests": tests}


def _verdict(cell: Cell) -> str:
    if cell.status == "blank":
        return f"blank; the answer is {cell.expected}"
    if cell.status == "unparseable":
        return f"cannot read {cell.given!r} as a {'shape' if cell.column == 'output_shape' else 'number'}; the answer is {cell.expected}"
    return f"{cell.given} is wrong; the answer is {cell.expected}" + (f" ({cell.note})" if cell.note else "")


def read_answers(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an ANSWERS file (CSV with a header, or JSON: a list of rows or {"layers": [...]})."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ArchcalcError(f"answers '{path}' cannot be read: {error}") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ArchcalcError(f"answers '{path}': not valid JSON: {error.msg} at line {error.lineno}") from None
        rows = data.get("layers") if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ArchcalcError(f"answers '{path}': JSON must be a list of rows (objects) or {{\"layers\": [...]}}")
        return rows
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise ArchcalcError(f"answers '{path}': no rows under a header line")
    return rows


def grade(model: Any, answers: list[dict[str, Any]], batch: int = 1, dtype: str = "float32", explain: bool = False,
          source: str = "answers") -> Grade:
    """Grade rows of answers against the analysis of ``model``."""
    from archcalc.loading import load

    graph: Graph = load(model)
    analysis = analyze(graph, batch=batch, dtype=dtype)
    headers = list(dict.fromkeys(key for row in answers for key in row if key is not None))  # in the file's order
    normal = {h: str(h).strip().lower() for h in headers}
    columns = {h: _BY_ALIAS[n] for h, n in normal.items() if n in _BY_ALIAS}
    name_key = next((h for h, n in normal.items() if n in ("name", "layer")), None)
    if not columns:
        known = ", ".join(c.name for c in COLUMNS)
        found = ", ".join(sorted(headers)) or "none"
        raise ArchcalcError(f"{source}: no column to grade; expected some of {known} (and name), got {found}")
    names = [row.name for row in analysis.layers]
    rows: list[Row] = []
    answered = set()
    for index, answer in enumerate(answers):
        if answer.get(None):  # csv.DictReader's place for cells beyond the header
            rows.append(Row(str(answer.get(name_key) or f"row {index + 1}"), [],
                            f"row {index + 1} has more cells than the header has columns (an unquoted comma, as in (10,)?)"))
            continue
        if name_key:
            wanted = str(answer.get(name_key) or "").strip()
            layer = next((r for r in analysis.layers if r.name == wanted or r.name.lower() == wanted.lower()), None)
            if layer is None:
                rows.append(Row(wanted or f"row {index + 1}", [], f"no layer {wanted!r} in {graph.name}{did_you_mean(wanted, names)}"))
                continue
        else:
            if index >= len(analysis.layers):
                rows.append(Row(f"row {index + 1}", [], f"{graph.name} has only {len(analysis.layers)} layers"))
                continue
            layer = analysis.layers[index]
        answered.add(layer.name)
        cells = [_grade_cell(column, answer.get(header), layer) for header, column in columns.items()]
        if explain:
            lines = explain_layer(graph, analysis, layer.name)
            for cell in cells:
                if not cell.right:
                    column = next(c for c in COLUMNS if c.name == cell.column)
                    cell.explanation = [f"{q}: {t}" for q, t in lines if any(q.startswith(k) for k in column.explain_keys)]
        rows.append(Row(layer.name, cells))
    unanswered = [name for name in names if name not in answered]
    return Grade(graph.name, [c.name for c in columns.values()], rows, unanswered)


def _grade_cell(column: Column, given: Any, layer: LayerReport) -> Cell:
    truth = column.truth(layer)
    expected = "x".join(map(str, truth)) if column.kind == "shape" else f"{truth:,}"
    if given is None or (isinstance(given, str) and not given.strip()):
        return Cell(column.name, "", expected, "blank")
    shown = given if isinstance(given, str) else json.dumps(given)
    try:
        if column.kind == "shape":
            shape = parse_shape(given)
            if shape == tuple(truth):
                return Cell(column.name, shown, expected, "right")
            if len(truth) == 3 and shape == (truth[1], truth[2], truth[0]):
                return Cell(column.name, shown, expected, "right", "read as channels-last (H, W, C); archcalc writes (C, H, W)")
            note = "the same values in another order" if sorted(shape) == sorted(truth) else ""
            return Cell(column.name, shown, expected, "wrong", note)
        value, tolerance = parse_count(given)
    except Unparseable:
        return Cell(column.name, shown, expected, "unparseable")
    if abs(value - truth) <= tolerance:
        return Cell(column.name, shown, expected, "right")
    note = ""
    if column.name == "params" and value == layer.params_weights_only and layer.params != layer.params_weights_only:
        return Cell(column.name, shown, expected, "right", "counts weights only, as the lecture's rows do")
    if column.kind == "count" and truth and value and math.isclose(float(value), 2 * truth, rel_tol=1e-9):
        note = "twice the answer: FLOPs (2 per MAC) for MACs?"
    return Cell(column.name, shown, expected, "wrong", note)


def template(model: Any, columns: tuple[str, ...] = ("output_shape", "params", "macs", "activations")) -> str:
    """A blank answer table: every layer's name and type, the columns empty."""
    from archcalc.loading import load

    for name in columns:
        if name not in {c.name for c in COLUMNS}:
            raise ArchcalcError(f"unknown column {name!r}{did_you_mean(name, [c.name for c in COLUMNS])}")
    graph = load(model)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", "type", *columns])
    for node in graph:
        writer.writerow([node.name, node.type, *([""] * len(columns))])
    return out.getvalue()

"""Grading a filled-in layer table against the analyzer: `archcalc grade MODEL ANSWERS`.

The teaching staff fix what is asked: the rows (``lecture``: the layers the lecture's tables
list, see :func:`asked_rows`; ``all``: every layer; or the rows of their own template) and
the columns (``output_shape``, ``params``, ``macs``, ``activations`` by default). The maximum
score is rows x columns whatever the answers contain: a missing row or column scores its
cells as blank, a layer answered twice counts once (the first row; the others are reported),
and rows naming layers that are not asked for are reported and score nothing.

ANSWERS is CSV (comma, semicolon or tab separated, found with :class:`csv.Sniffer`) or JSON
with one row per layer, matched by a ``name`` column or else by row order against the asked
rows (as ``archcalc template`` writes them). Cells are read tolerantly: thousands separators,
the lecture's ``224*224*64=3.2M`` (the part after the last ``=``), arithmetic like
``(3*3*3)*64`` or ``28^2``, SI suffixes, and shapes as ``(6,28,28)`` or ``6x28x28``, also as
other tools print them with a batch axis (Keras ``(None, 28, 28, 6)``, torchsummary
``[-1, 6, 28, 28]``, torchinfo ``[1, 6, 28, 28]``).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from archcalc.errors import ArchcalcError
from archcalc.explain import explain_layer, lines_for
from archcalc.figures import figures_for
from archcalc.graph import Graph
from archcalc.ops import POINTWISE, Layer, get_op
from archcalc.ops.base import did_you_mean
from archcalc.passes import analyze
from archcalc.report import Analysis, LayerReport

#: An answers file larger than this is refused before it is read (bytes).
MAX_FILE_BYTES = 8 * 2**20
#: Most rows an answers file may have (a table has one per layer; resnet152 has 516 nodes).
MAX_ROWS = 10_000
#: A cell longer than this is not read (characters); it gets a per-cell error.
MAX_CELL_CHARS = 128 * 2**10
#: Most numbers in one arithmetic cell (``(3*3*3)*64`` has 4).
MAX_TERMS = 200
#: Deepest parentheses in one arithmetic cell.
MAX_NESTING = 20
#: Longest run of digits in one number (the largest count archcalc reports has about 20).
MAX_DIGITS = 40
#: Largest exponent in ``28^2`` or ``28²``.
MAX_EXPONENT = 16

#: Problem rows (unknown, unasked or repeated layers) reported one by one; the rest are counted in a note.
MAX_PROBLEM_ROWS = 50

#: The row sets ``--rows`` offers: the lecture's layers, or every node.
ROW_SETS = ("lecture", "all")


@dataclass(frozen=True)
class Column:
    """A gradable column: its name, the names students may use for it, and the true value."""

    name: str
    aliases: tuple[str, ...]
    truth: Callable[[LayerReport], Any]
    kind: str  # "count" or "shape"


#: Every figure a table may ask for (archcalc.figures: the ones whose formats include "grade").
COLUMNS = tuple(
    Column(figure.name, (figure.name, *figure.aliases), lambda r, name=figure.name: r.figure(name),
           "shape" if figure.kind == "shape" else "count")
    for figure in figures_for("grade")
)
#: The columns a template leaves blank, and grading asks for, unless told otherwise.
DEFAULT_COLUMNS = ("output_shape", "params", "macs", "activations")
_BY_NAME = {column.name: column for column in COLUMNS}
_BY_ALIAS = {alias: column for column in COLUMNS for alias in column.aliases}
_NAME_HEADERS = ("name", "layer")
_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}
_SI = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Pow: operator.pow}
_SUPERSCRIPTS = {"²": "**2", "³": "**3"}
_GROUPING = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")  # the comma of 1,728 (not of 3,2M)
_SPACES = re.compile(r"[\s_\u00a0\u202f']")  # 1 728, 1_728, 1'728 (Swiss)


class Unparseable(ValueError):
    """A cell that is not a number, an arithmetic expression or a shape; str() says why when known."""

    def __init__(self, text: str, reason: str = "") -> None:
        super().__init__(text)
        self.reason = reason


# ---------------------------------------------------------------- reading cells


def _arithmetic(text: str) -> int:
    """An integer expression of + - * ^ and parentheses (``x`` as times), evaluated safely and boundedly."""
    terms = len(re.findall(r"[0-9]+", text))
    if terms > MAX_TERMS:
        raise Unparseable(text, f"an expression of {terms:,} numbers; at most {MAX_TERMS}")
    depth = deepest = 0
    for char in text:
        depth += (char == "(") - (char == ")")
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        raise Unparseable(text, f"parentheses {deepest} deep; at most {MAX_NESTING}")
    source = text.replace("x", "*").replace("X", "*").replace("×", "*").replace("·", "*").replace("^", "**")
    for superscript, power in _SUPERSCRIPTS.items():
        source = source.replace(superscript, power)
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise Unparseable(text) from None

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and not 0 <= right <= MAX_EXPONENT:
                raise Unparseable(text, f"an exponent of {right}; at most {MAX_EXPONENT}")
            result = _OPS[type(node.op)](left, right)
            if result.bit_length() > 256:
                raise Unparseable(text, "a value above 2**256")
            return result
        raise Unparseable(text)

    return value(tree)


def _cell_text(cell: Any) -> str:
    """A cell as text, refused when over :data:`MAX_CELL_CHARS`."""
    text = cell if isinstance(cell, str) else json.dumps(cell)
    if len(text) > MAX_CELL_CHARS:
        raise Unparseable(text[:40], f"the cell has {len(text):,} characters; at most {MAX_CELL_CHARS:,}")
    return text


def parse_count(cell: Any) -> tuple[Decimal, Decimal]:
    """(value, tolerance) of a count cell: exact for integers, half the last digit for SI figures.

    Raises:
        Unparseable: not a count; its ``reason`` says why when a limit was hit.
    """
    if isinstance(cell, bool):
        raise Unparseable(str(cell))
    if isinstance(cell, int):
        return Decimal(cell), Decimal(0)
    if isinstance(cell, float) and not math.isfinite(cell):
        raise Unparseable(str(cell))
    text = _SPACES.sub("", _cell_text(cell) if not isinstance(cell, float) else repr(cell))
    if "=" in text:
        text = text.rsplit("=", 1)[1]
    text = _GROUPING.sub("", text)
    longest = max((len(run) for run in re.findall(r"[0-9]+", text)), default=0)
    if longest > MAX_DIGITS:
        raise Unparseable(text[:40], f"a number of {longest:,} digits; at most {MAX_DIGITS}")
    if re.fullmatch(r"[0-9]+,[0-9]+[kmgtKMGT]?", text):  # a decimal comma: 3,2M (the grouping commas are gone)
        text = text.replace(",", ".")
    scientific = re.fullmatch(r"([0-9]*\.?[0-9]+)[eE]([+-]?[0-9]{1,2})", text)
    if scientific:  # 1.6e3, as Python prints a float: right when the value rounds to it, like an SI figure
        mantissa, exponent = scientific.groups()
        decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
        scale = Decimal(10) ** int(exponent)
        if Decimal(mantissa) == 0:
            return Decimal(0), Decimal(0)
        return Decimal(mantissa) * scale, Decimal(10) ** -decimals * scale / 2
    match = re.fullmatch(r"([0-9]*\.?[0-9]+)([kmgtKMGT]?)", text)
    if match:
        digits, suffix = match.groups()
        scale = _SI[suffix.lower()]
        try:
            number = Decimal(digits)
        except InvalidOperation:
            raise Unparseable(str(cell)) from None
        if (not suffix and "." not in digits) or number == 0:  # "0M" has no significant digit: it is 0, exactly
            return number * scale, Decimal(0)
        if "." in digits:
            unit = Decimal(10) ** -len(digits.split(".")[1])
        else:  # trailing zeros of "800K" are not significant
            stripped = digits.rstrip("0") or "0"
            unit = Decimal(10) ** (len(digits) - len(stripped))
        return number * scale, unit * scale / 2
    return Decimal(_arithmetic(text)), Decimal(0)


#: A shape's batch axis as other tools print it: Keras ``None``, torchsummary ``-1``, ``?``.
UNKNOWN_AXIS = -1


def parse_shape(cell: Any) -> tuple[int, ...]:
    """A shape from ``(6, 28, 28)``, ``[6,28,28]``, ``6x28x28``, ``(4096,)`` or ``4096``.

    An unknown (batch) axis, ``None``, ``-1`` or ``?``, reads as :data:`UNKNOWN_AXIS`.

    Raises:
        Unparseable: not a shape.
    """
    if isinstance(cell, (list, tuple)):
        if all((isinstance(v, int) and not isinstance(v, bool)) or v is None for v in cell) and len(cell) <= 16:
            return tuple(UNKNOWN_AXIS if v is None else v for v in cell)
        raise Unparseable(_cell_text(cell))
    if isinstance(cell, int) and not isinstance(cell, bool):
        return (cell,)
    text = _cell_text(cell).strip().strip("[]()").replace("×", "x").replace("X", "x")
    parts = [p for p in re.split(r"[x,;\s]+", text) if p]
    if not parts or len(parts) > 16:
        raise Unparseable(text)
    shape = []
    for part in parts:
        if part.lower() in ("none", "-1", "?"):
            shape.append(UNKNOWN_AXIS)
        elif re.fullmatch(f"[0-9]{{1,{MAX_DIGITS}}}", part):  # ASCII digits only: int("28²") would raise
            shape.append(int(part))
        else:
            raise Unparseable(text)
    return tuple(shape)


def _shown(given: Any) -> str:
    """What the student wrote, printable and short enough for a table cell."""
    text = given if isinstance(given, str) else json.dumps(given)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:200])
    return text if len(text) <= 60 else f"{text[:57]}... ({len(given if isinstance(given, str) else text):,} characters)"


# ---------------------------------------------------------------- results


@dataclass
class Cell:
    """One graded cell: what the student wrote, the right value, and the verdict."""

    column: str
    given: str
    expected: str
    status: str  # right, wrong, blank, unparseable
    note: str = ""
    explanation: list[str] = field(default_factory=list)
    #: Whether the note gives the answer away ("twice the answer"), so hidden with the answers.
    note_reveals: bool = False

    @property
    def right(self) -> bool:
        """Whether the cell earns its point."""
        return self.status == "right"

    def shown_note(self, show_answers: bool = True) -> str:
        """The note, unless it gives the answer away and answers are hidden."""
        return "" if self.note_reveals and not show_answers else self.note

    def to_dict(self, show_answers: bool = True) -> dict[str, Any]:
        """JSON form; without the expected value and the arithmetic when answers are hidden."""
        data = {"column": self.column, "given": self.given, "expected": self.expected, "status": self.status,
                "note": self.shown_note(show_answers), "explanation": self.explanation}
        if not show_answers:
            del data["expected"], data["explanation"]
        return data


@dataclass
class Row:
    """A graded row: the layer it matched (or where it is in the file) and its cells.

    A row with a ``problem`` (an unknown or repeated layer, a malformed line) has no cells and
    scores nothing; an asked layer with no answer row has blank cells and ``note`` says so.
    """

    layer: str
    cells: list[Cell]
    problem: str = ""
    note: str = ""

    @property
    def score(self) -> int:
        """Right cells."""
        return sum(cell.right for cell in self.cells)

    @property
    def max_score(self) -> int:
        """Cells asked for in this row (0 for a problem row)."""
        return len(self.cells)


@dataclass
class Grade:
    """A graded table: a row per asked layer (in the template's order), then the problem rows."""

    model: str
    columns: list[str]
    rows: list[Row]
    unanswered_layers: list[str]
    notes: list[str] = field(default_factory=list)
    row_set: str = "lecture"

    @property
    def score(self) -> int:
        """Right cells over the whole table."""
        return sum(row.score for row in self.rows)

    @property
    def max_score(self) -> int:
        """Asked rows x asked columns: fixed by the template, whatever the answers contain."""
        return sum(row.max_score for row in self.rows)

    def to_dict(self, show_answers: bool = True) -> dict[str, Any]:
        """Everything, for ``--format json``; without expected values when ``show_answers`` is false."""
        return {
            "model": self.model, "score": self.score, "max_score": self.max_score, "columns": self.columns,
            "rows_asked": self.row_set,
            "rows": [{"layer": r.layer, "problem": r.problem, "note": r.note, "score": r.score, "max_score": r.max_score,
                      "cells": [cell.to_dict(show_answers) for cell in r.cells]} for r in self.rows],
            "unanswered_layers": self.unanswered_layers,
            "notes": self.notes,
        }

    def to_gradescope(self, show_answers: bool = False) -> dict[str, Any]:
        """Gradescope's autograder results: one test per row, its output naming wrong cells.

        The expected values and the arithmetic (``explain``) are left out unless
        ``show_answers``: students read this output. Problem rows are tests worth 0 points.
        """
        tests = []
        for row in self.rows:
            lines = [f"{cell.column}: {verdict(cell, show_answers)}" for cell in row.cells if not cell.right]
            if show_answers:
                for cell in row.cells:
                    if not cell.right and cell.explanation:
                        lines.extend(f"  {line}" for line in cell.explanation)
            for cell in row.cells:
                if cell.right and cell.note:
                    lines.append(f"{cell.column}: right ({cell.note})")
            lines[:0] = [text for text in (row.problem, row.note) if text]
            tests.append({"name": row.layer, "score": row.score, "max_score": row.max_score,
                          "output": "\n".join(lines) or "all right"})
        result: dict[str, Any] = {"score": self.score, "max_score": self.max_score, "tests": tests}
        if self.notes:
            result["output"] = "\n".join(self.notes)
        return result


def verdict(cell: Cell, show_answers: bool = True) -> str:
    """A wrong cell in words: what was wrong, and the answer when ``show_answers``."""
    answer = f"; the answer is {cell.expected}" if show_answers else ""
    if cell.status == "blank":
        return f"blank{answer}"
    if cell.status == "unparseable":
        what = "shape" if cell.column == "output_shape" else "number"
        reason = f" ({cell.note})" if cell.note else ""  # a limit or a format: never the answer
        return f"cannot read {cell.given!r} as a {what}{reason}{answer}"
    note = cell.shown_note(show_answers)
    return f"{cell.given} is wrong{answer}" + (f" ({note})" if note else "")


# ---------------------------------------------------------------- reading files


class Answers(list):
    """Rows of an answers file (dicts, header -> cell), with where each row is and what was noticed."""

    def __init__(self, rows: Sequence[dict[str, Any]], locations: Sequence[str], notes: Sequence[str] = (),
                 source: str = "answers") -> None:
        super().__init__(rows)
        self.locations = list(locations)
        self.notes = list(notes)
        self.source = source


def _read_text(path: Path) -> str:
    """The file as UTF-8 text, refused when missing, huge, binary, not UTF-8 or empty."""
    label = f"answers '{path}'"
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ArchcalcError(f"{label} cannot be read: {error.strerror or error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ArchcalcError(f"{label} is larger than {MAX_FILE_BYTES // 2**20} MiB; an answer table is a few KiB")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode Text" export: UTF-16 with a BOM
        try:
            data = data.decode("utf-16").encode("utf-8")
        except UnicodeError:
            raise ArchcalcError(f"{label} starts like UTF-16 text but is not; save it as 'CSV UTF-8'") from None
    if b"\x00" in data:
        raise ArchcalcError(f"{label} is binary (it has NUL bytes), not CSV or JSON text; export the sheet as CSV")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ArchcalcError(f"{label} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
                            "save it as 'CSV UTF-8'") from None
    if not text.strip():
        raise ArchcalcError(f"{label} is empty")
    return text


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = next((key for key in keys if keys.count(key) > 1), None)
    if repeated is not None:
        raise ArchcalcError(f"key {repeated!r} appears twice in one object")
    return dict(pairs)


def _read_json(text: str, label: str) -> Answers:
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys,
                          parse_int=lambda s: int(s) if len(s) <= MAX_DIGITS else s, parse_constant=str)
    except json.JSONDecodeError as error:
        raise ArchcalcError(f"{label}: not valid JSON: {error.msg} at line {error.lineno}") from None
    except RecursionError:
        raise ArchcalcError(f"{label}: not valid JSON: nested too deeply") from None
    except ArchcalcError as error:
        raise ArchcalcError(f"{label}: {error}") from None
    rows = data.get("layers") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ArchcalcError(f"{label}: JSON must be a list of rows (objects) or {{\"layers\": [...]}}")
    if not rows:
        raise ArchcalcError(f"{label}: no rows")
    if len(rows) > MAX_ROWS:
        raise ArchcalcError(f"{label}: {len(rows):,} rows, more than {MAX_ROWS:,}; an answer table has one row per layer")
    prefix = "layers" if isinstance(data, dict) else ""
    return Answers(rows, [f"{prefix}[{index}]" for index in range(len(rows))], source=label)


def _read_csv(text: str, label: str) -> Answers:
    notes = []
    declared = re.match(r"sep=(.)\r?\n", text)  # Excel's own first line naming the delimiter
    if declared:
        delimiter, text = declared.group(1), "\n" + text[declared.end():]  # a blank line keeps the line numbers
    else:
        try:
            delimiter = csv.Sniffer().sniff("\n".join(text[:8192].splitlines()[:20]), delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
    if delimiter != ",":
        notes.append(f"read as {_DELIMITERS.get(delimiter, repr(delimiter))}-separated")
    limit = csv.field_size_limit()
    csv.field_size_limit(MAX_FILE_BYTES)  # long cells get their own per-cell error below, not csv.Error
    try:
        reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
        records = []
        for record in reader:
            if any(cell.strip() for cell in record):
                records.append((reader.line_num, record))
                if len(records) > MAX_ROWS + 1:
                    raise ArchcalcError(f"{label}: more than {MAX_ROWS:,} rows; an answer table has one row per layer")
    except csv.Error as error:
        raise ArchcalcError(f"{label}: line {reader.line_num}: not valid CSV: {error}") from None
    finally:
        csv.field_size_limit(limit)
    if not records:
        raise ArchcalcError(f"{label} is empty")
    (_, header), body = records[0], records[1:]
    header = [cell.strip() for cell in header]
    seen: set[str] = set()
    repeated = next((h for h in header if h and (h in seen or seen.add(h))), None)
    if repeated is not None:
        raise ArchcalcError(f"{label}: the header names column {_shown(repeated)!r} twice; keep one")
    usable = [h for h in header if h.lower() in _BY_ALIAS or h.lower() in _NAME_HEADERS]
    if not usable:
        first = _shown(",".join(header))
        known = ", ".join(c.name for c in COLUMNS)
        raise ArchcalcError(f"{label}: no usable header: the first line should name columns (name and some of {known}), "
                            f"got {first!r}")
    rows, locations = [], []
    for line, record in body:
        row: dict[str, Any] = dict(zip(header, record))
        if any(cell.strip() for cell in record[len(header):]):
            row[None] = record[len(header):]  # as csv.DictReader does
        rows.append(row)
        locations.append(f"line {line}")
    if not rows:
        raise ArchcalcError(f"{label}: no rows under the header line")
    return Answers(rows, locations, notes, source=label)


def read_answers(path: str | Path) -> Answers:
    """Rows of an ANSWERS file: CSV with a header (delimiter sniffed), or JSON (a list of rows or {"layers": [...]}).

    Raises:
        ArchcalcError: one line, when the file is missing, over 8 MiB, binary, not UTF-8,
            empty, not valid CSV/JSON, or has no header naming a gradable column.
    """
    path = Path(path)
    text = _read_text(path)
    label = f"answers '{path}'"
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        return _read_json(text, label)
    return _read_csv(text, label)


def read_template(path: str | Path) -> tuple[list[str], list[str]]:
    """The rows (layer names) and columns a template file asks for, as ``archcalc template`` wrote it.

    Raises:
        ArchcalcError: no name column, or no gradable column.
    """
    rows = read_answers(path)
    headers = list(dict.fromkeys(key for row in rows for key in row if key is not None))
    name_key = next((h for h in headers if str(h).strip().lower() in _NAME_HEADERS), None)
    columns = list(dict.fromkeys(_BY_ALIAS[str(h).strip().lower()].name for h in headers if str(h).strip().lower() in _BY_ALIAS))
    if name_key is None or not columns:
        raise ArchcalcError(f"template '{path}' must have a name column and at least one of "
                            f"{', '.join(c.name for c in COLUMNS)}")
    names = [str(row.get(name_key) or "").strip() for row in rows]
    return [n for n in names if n], columns


# ---------------------------------------------------------------- the rows and columns asked


def is_lecture_row(analysis: Analysis, row: LayerReport) -> bool:
    """Whether the lecture's tables list this layer: its op slides a window or sees the whole input.

    That is conv, pooling, linear and global pooling: every layer that changes the spatial or
    feature extent, and every one holding kernel weights. Element-wise ops (ReLU, dropout,
    batchnorm, LRN, add), views (flatten) and concatenation keep their input's positions,
    and the network input is given: the lecture's LeNet-5 and VGG16 tables have no such rows.
    Decided from the op's declared window, never from its type name.
    """
    if not row.inputs:
        return False
    layer = Layer(row.attrs, tuple(analysis.layer(ref).output_shape for ref in row.inputs), row.output_shape)
    return get_op(row.type).window(layer) != POINTWISE


def asked_rows(analysis: Analysis, rows: str | Sequence[str] = "lecture") -> list[LayerReport]:
    """The layers a template lists and grading scores, in the model's order.

    Args:
        analysis: the model's analysis.
        rows: ``"lecture"`` (see :func:`is_lecture_row`), ``"all"`` (every node, the input
            too), or layer names (a TA's own template).

    Raises:
        ArchcalcError: an unknown row set or layer name.
    """
    if isinstance(rows, str):
        if rows == "all":
            return list(analysis.layers)
        if rows == "lecture":
            return [row for row in analysis.layers if is_lecture_row(analysis, row)]
        raise ArchcalcError(f"rows must be one of {', '.join(ROW_SETS)} or a list of layer names, got {rows!r}")
    names = [row.name for row in analysis.layers]
    wanted = set()
    for name in rows:
        if name not in names:
            raise ArchcalcError(f"template row {_shown(name)!r} is not a layer of {analysis.model}"
                                f"{did_you_mean(str(name)[:100], names)}")
        wanted.add(name)
    return [row for row in analysis.layers if row.name in wanted]


def _columns(columns: Sequence[str]) -> list[Column]:
    chosen = []
    for name in columns:
        if name not in _BY_NAME:
            raise ArchcalcError(f"unknown column {name!r}{did_you_mean(name, list(_BY_NAME))}; "
                                f"columns: {', '.join(_BY_NAME)}")
        if _BY_NAME[name] not in chosen:
            chosen.append(_BY_NAME[name])
    if not chosen:
        raise ArchcalcError(f"no columns to grade; choose some of {', '.join(_BY_NAME)}")
    return chosen


def _header_map(headers: list[Any], source: str) -> tuple[dict[Any, Column], Any]:
    """Which header holds which column, and which holds the layer name; two headers for one column are an error."""
    by_column: dict[str, list[Any]] = {}
    for header in headers:
        normal = str(header).strip().lower()
        key = "name" if normal in _NAME_HEADERS else _BY_ALIAS[normal].name if normal in _BY_ALIAS else None
        if key:
            by_column.setdefault(key, []).append(header)
    for key, found in by_column.items():
        if len(found) > 1:
            raise ArchcalcError(f"{source}: columns {' and '.join(repr(str(h)) for h in found)} both give {key}; keep one")
    name_key = by_column.pop("name", [None])[0]
    return {found[0]: _BY_NAME[key] for key, found in by_column.items()}, name_key


# ---------------------------------------------------------------- grading


def grade(model: Any, answers: Sequence[dict[str, Any]], batch: int = 1, dtype: str = "float32", explain: bool = False,
          source: str = "answers", rows: str | Sequence[str] = "lecture",
          columns: Sequence[str] = DEFAULT_COLUMNS) -> Grade:
    """Grade rows of answers against the analysis of ``model``.

    Args:
        model: anything :func:`archcalc.load` takes.
        answers: rows as :func:`read_answers` gives them (dicts of header -> cell).
        batch, dtype: what the answers assume (activations and MACs scale with the batch).
        explain: attach the arithmetic behind each wrong cell.
        source: how messages name the answers.
        rows: the rows asked for: ``"lecture"``, ``"all"`` or layer names (see :func:`asked_rows`).
        columns: the columns asked for. The maximum score is rows x columns.

    Raises:
        ArchcalcError: no header names a layer or a gradable column, two headers give the
            same column, or an unknown row set, layer or column was asked for.
    """
    from archcalc.loading import load

    graph: Graph = load(model)
    analysis = analyze(graph, batch=batch, dtype=dtype)
    asked = asked_rows(analysis, rows)
    wanted = _columns(columns)
    source = getattr(answers, "source", source)
    if isinstance(answers, (str, bytes)) or not all(isinstance(row, dict) for row in answers):
        raise ArchcalcError(f"{source}: answers must be a list of rows (dicts of column -> cell), as read_answers gives")
    headers = list(dict.fromkeys(key for row in answers for key in row if key is not None))  # in the file's order
    given_columns, name_key = _header_map(headers, source)
    if not given_columns and name_key is None:
        known = ", ".join(c.name for c in COLUMNS)
        found = ", ".join(repr(_shown(h)) for h in headers) or "none"
        raise ArchcalcError(f"{source}: no column to grade; expected some of {known} (and name), got {found}")
    notes = list(getattr(answers, "notes", []))
    locations = list(getattr(answers, "locations", [])) or [f"row {i + 1}" for i in range(len(answers))]
    row_set = rows if isinstance(rows, str) else "template"
    extra = [c.name for c in given_columns.values() if c not in wanted]
    if extra:
        notes.append(f"column(s) {', '.join(extra)} not asked for: not graded")
    absent = [c.name for c in wanted if c not in given_columns.values()]
    if absent:
        notes.append(f"column(s) {', '.join(absent)} missing from the answers: graded as blank")
    header_of = {column.name: header for header, column in given_columns.items()}

    answered: dict[str, tuple[str, dict[str, Any]]] = {}  # layer -> (location, answer): the first row counts
    problems: list[Row] = []
    more_problems = 0
    asked_names = {row.name for row in asked}
    all_names = [row.name for row in analysis.layers]
    known = set(all_names)
    lower: dict[str, list[str]] = {}
    for name in all_names:
        lower.setdefault(name.lower(), []).append(name)

    def room() -> bool:
        """Whether another problem row is shown; else it is only counted (messages cost difflib time)."""
        nonlocal more_problems
        more_problems += len(problems) >= MAX_PROBLEM_ROWS
        return len(problems) < MAX_PROBLEM_ROWS

    for index, answer in enumerate(answers):
        where = locations[index] if index < len(locations) else f"row {index + 1}"
        if answer.get(None):  # cells beyond the header
            if room():
                problems.append(Row(where, [], f"{where}: more cells than the header has columns "
                                               "(an unquoted comma, as in (10,)?); not graded"))
            continue
        if name_key is not None:
            wanted_name = str(answer.get(name_key) or "").strip()
            matches = [wanted_name] if wanted_name in known else lower.get(wanted_name.lower(), [])
            if len(matches) != 1:
                if room():
                    what = (f"no layer {_shown(wanted_name)!r} in {graph.name}{did_you_mean(wanted_name[:100], all_names)}"
                            if wanted_name else "no layer name")
                    problems.append(Row(where, [], f"{where}: {what}; not graded"))
                continue
            name = matches[0]
            if name not in asked_names:
                if room():
                    problems.append(Row(where, [], f"{where}: {name} is not one of the rows asked for ({row_set}); not graded"))
                continue
        else:
            if index >= len(asked):
                if room():
                    problems.append(Row(where, [], f"{where}: the template has only {len(asked)} rows; not graded"))
                continue
            name = asked[index].name
        if name in answered:
            first = answered[name][0]
            if room():
                problems.append(Row(where, [], f"{where}: {name} is answered again (first at {first}); only {first} is graded"))
            continue
        answered[name] = (where, answer)
    if more_problems:
        notes.append(f"{more_problems:,} more rows not graded (unknown, unasked or repeated layers) after the first "
                     f"{MAX_PROBLEM_ROWS}")

    graded: list[Row] = []
    for layer in asked:
        where, answer = answered.get(layer.name, ("", {}))
        cells = [_grade_cell(column, answer.get(header_of.get(column.name, object())), layer, batch) for column in wanted]
        if explain and any(not cell.right for cell in cells):
            lines = explain_layer(graph, analysis, layer.name, group_digits=True)
            for cell in cells:
                if not cell.right:
                    cell.explanation = [f"{q}: {t}" for q, t in lines_for(lines, cell.column)]
        graded.append(Row(layer.name, cells, note="" if where else "no row for this layer in the answers"))
    unanswered = [layer.name for layer in asked if layer.name not in answered]
    return Grade(graph.name, [c.name for c in wanted], graded + problems, unanswered, notes, row_set)


def _grade_shape(shape: tuple[int, ...], truth: tuple[int, ...], batch: int) -> tuple[str, str]:
    """(status, note) of a parsed shape against the true one (batch axis excluded)."""
    notes = []
    if len(shape) == len(truth) + 1 and shape[0] in (UNKNOWN_AXIS, 1, batch):
        shape = shape[1:]
        notes.append("leading batch axis dropped")
    if UNKNOWN_AXIS in shape:
        return "wrong", "; ".join([*notes, "None/-1 only as a leading batch axis"])
    if shape == truth:
        return "right", "; ".join(notes)
    if len(truth) >= 2 and shape == (*truth[1:], truth[0]):
        layout = "(H, W, C); archcalc writes (C, H, W)" if len(truth) == 3 else "channels last; archcalc writes channels first"
        return "right", "; ".join([*notes, f"read as channels-last {layout}"])
    if sorted(shape) == sorted(truth):
        notes.append("the same values in another order")
    elif len(shape) != len(truth):
        notes.append(f"{len(shape)} axes, the answer has {len(truth)}")
    return "wrong", "; ".join(notes)


def _grade_cell(column: Column, given: Any, layer: LayerReport, batch: int = 1) -> Cell:
    truth = column.truth(layer)
    expected = "x".join(map(str, truth)) if column.kind == "shape" else f"{truth:,}"
    if given is None or (isinstance(given, str) and not given.strip()):
        return Cell(column.name, "", expected, "blank")
    shown = _shown(given)
    try:
        if column.kind == "shape":
            status, note = _grade_shape(parse_shape(given), tuple(truth), batch)
            return Cell(column.name, shown, expected, status, note, note_reveals=status == "wrong" and "order" in note)
        value, tolerance = parse_count(given)
    except Unparseable as error:
        return Cell(column.name, shown, expected, "unparseable", error.reason)
    if abs(value - truth) <= tolerance:
        return Cell(column.name, shown, expected, "right")
    if column.name == "params" and value == layer.params_weights_only and layer.params != layer.params_weights_only:
        return Cell(column.name, shown, expected, "right", "counts weights only, as the lecture's rows do")
    if column.kind == "count" and truth and value and abs(value - 2 * truth) <= max(tolerance, Decimal(truth) * Decimal("1e-9")):
        return Cell(column.name, shown, expected, "wrong", "twice the answer: FLOPs (2 per MAC) for MACs?", note_reveals=True)
    return Cell(column.name, shown, expected, "wrong")


def template(model: Any, columns: Sequence[str] = DEFAULT_COLUMNS, rows: str | Sequence[str] = "lecture") -> str:
    """A blank answer table (CSV): the asked rows' names and types, the columns empty.

    ``rows="lecture"`` (the default) lists the layers the lecture's tables have (conv,
    pooling, linear; see :func:`is_lecture_row`); ``"all"`` lists every node. ``grade`` with
    the same ``rows`` and ``columns`` scores out of exactly this table's cells.
    """
    from archcalc.loading import load

    wanted = _columns(columns)
    analysis = analyze(load(model))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", "type", *(c.name for c in wanted)])
    for layer in asked_rows(analysis, rows):
        writer.writerow([layer.name, layer.type, *([""] * len(wanted))])
    return out.getvalue()

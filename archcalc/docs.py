"""Docs generated from the op registry, as ONNX generates its operator docs from its schemas.

The README's table of layer types and the per-op formulas in ``docs/conventions.md`` are
written from each op's declared attributes (name, default, doc) and docstring, between marker
lines; a test checks the committed text equals this output, so a new op documents itself.

    python -m archcalc.docs          # rewrite the generated parts of README.md and docs/conventions.md
    python -m archcalc.docs --check  # exit 1 if they are out of date
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from archcalc.ops import REGISTRY, Op
from archcalc.ops.attrs import REQUIRED, Attr

BEGIN = "<!-- generated from the op registry by `python -m archcalc.docs`: edit the ops, not this -->"
END = "<!-- end of generated text -->"
ROOT = Path(__file__).resolve().parent.parent


def _default(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value) if isinstance(value, str) else str(value)


def _attribute(attr: Attr) -> str:
    """``stride`` (1): stride s per axis."""
    default = "" if attr.default is REQUIRED else f" ({_default(attr.default)})"
    return f"`{attr.name}`{default}: {attr.doc}" if attr.doc else f"`{attr.name}`{default}"


def _summary(op: Op) -> str:
    """The first line of the op's docstring."""
    return inspect.getdoc(op).splitlines()[0].strip()


def _inputs(op: Op) -> str:
    low, high = op.arity
    if (low, high) == (1, 1):
        return ""
    return f" Takes {low} or more inputs." if high is None else f" Takes {low} to {high} inputs."


def layer_table() -> str:
    """The README's table: one row per op type, its summary and its attributes with defaults."""
    lines = ["| type | what it does | attributes (default): meaning |", "|---|---|---|"]
    for op_type, op in sorted(REGISTRY.items()):
        attributes = "; ".join(_attribute(a) for a in op.attrs) or "none"
        lines.append(f"| `{op_type}` | {_summary(op)}{_inputs(op)} | {attributes.replace('|', '/')} |")
    return "\n".join(lines)


def op_formulas() -> str:
    """``docs/conventions.md``'s per-op section: each op's docstring, its formulas in plain text."""
    out = []
    for op_type, op in sorted(REGISTRY.items()):
        out.append(f"### `{op_type}`\n\n```\n{inspect.getdoc(op)}\n```\n\nOther ops: {op.other_ops_rule}.")
    return "\n\n".join(out)


#: The marker before the text generated from the counting conventions' presets.
PRESETS_BEGIN = "<!-- generated from the presets (archcalc/conventions/) by `python -m archcalc.docs`: edit them, not this -->"


def presets_table() -> str:
    """The README's presets table: each preset's tool and its rule for the ops where tools differ."""
    from archcalc.render.conventions import overview_markdown

    return overview_markdown()


def preset_sections() -> str:
    """``docs/conventions.md``'s counting-conventions section: every preset's rules and quirks."""
    from archcalc.conventions import QUANTITIES, presets
    from archcalc.render.conventions import preset_markdown

    lines = ["A rule is an expression evaluated for each layer, per sample, over these quantities "
             "(the tool's count for a batch is that times the batch):", ""]
    lines.extend(f"- `{name}`: {meaning}" for name, meaning in QUANTITIES.items())
    return "\n".join(lines) + "\n\n" + "\n\n".join(preset_markdown(p) for p in presets().values())


#: Each generated part: its file, the marker before it, and the function writing it.
PARTS = (
    ("README.md", BEGIN, layer_table),
    ("README.md", PRESETS_BEGIN, presets_table),
    ("docs/conventions.md", BEGIN, op_formulas),
    ("docs/conventions.md", PRESETS_BEGIN, preset_sections),
)

#: Each generated file and the text of its first generated part (the op registry's).
TARGETS = {path: make for path, begin, make in PARTS if begin == BEGIN}


def regenerate(text: str, generated: str, path: str, begin: str = BEGIN) -> str:
    """``text`` with the part between the marker ``begin`` and the next end marker replaced by ``generated``."""
    if text.count(begin) != 1 or END not in text.split(begin, 1)[1]:
        raise ValueError(f"{path}: needs exactly one pair of generated-text markers {begin[:40]}...")
    before, rest = text.split(begin)
    _, after = rest.split(END, 1)
    return f"{before}{begin}\n{generated}\n{END}{after}"


def regenerate_all(path: str, text: str) -> str:
    """Every generated part of one file, rewritten."""
    for name, begin, make in PARTS:
        if name == path:
            text = regenerate(text, make(), path, begin)
    return text


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with ``--check``, verify) the generated parts; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated part is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name in TARGETS:
        path = ROOT / name
        text = path.read_text(encoding="utf-8")
        new = regenerate_all(name, text)
        if new != text:
            stale.append(name)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run python -m archcalc.docs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

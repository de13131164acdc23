"""The counting conventions as tables: every preset at a glance, and one preset's rules in full.

``archcalc conventions`` prints these, and the README's presets table and docs/conventions.md's
sections are generated from them (:mod:`archcalc.docs`), so the docs are the presets' own data.
"""

from __future__ import annotations

from typing import Any

from archcalc.conventions import Convention, presets
from archcalc.ops import REGISTRY

#: The op types the overview shows a column for: the families where the tools disagree.
OVERVIEW_OPS = ("conv", "conv_transpose", "linear", "batchnorm", "layernorm", "relu", "gelu", "maxpool",
                "avgpool", "adaptive_avgpool", "add", "upsample")


def _code(text: str) -> str:
    return f"`{text}`"


def overview_rows() -> list[list[str]]:
    """One row per preset: name, tool, unit, backward counted, then its rule per :data:`OVERVIEW_OPS`."""
    rows = []
    for preset in presets().values():
        rows.append([preset.name, preset.tool, preset.unit, "yes" if preset.counts_backward else "no",
                     *(_scaled(preset, preset.rule(op).forward) for op in OVERVIEW_OPS)])
    return rows


def _scaled(preset: Convention, expression: str) -> str:
    return expression if preset.scale == 1 else f"{preset.scale} x ({expression})"


OVERVIEW_HEADERS = ("preset", "reproduces", "unit", "backward", *OVERVIEW_OPS)


def overview_markdown() -> str:
    """The presets table (README): each preset's tool and its rule for the ops where tools differ;
    every rule is per sample, over the quantities of docs/conventions.md."""
    lines = ["| " + " | ".join(OVERVIEW_HEADERS) + " |", "|" + "---|" * len(OVERVIEW_HEADERS)]
    for row in overview_rows():
        cells = [f"[`{row[0]}`](docs/conventions.md#convention-{row[0]})", *row[1:4], *(_code(c) for c in row[4:])]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def preset_rules(preset: Convention) -> list[tuple[str, str, str, str]]:
    """Every op type with the preset's rule: (type, forward, backward, note); ``default`` marks the
    op types the preset lists no rule for."""
    out = []
    for op_type in sorted(REGISTRY):
        rule = preset.rule(op_type)
        listed = op_type in preset.rules
        out.append((op_type, _scaled(preset, rule.forward), _scaled(preset, rule.backward) if rule.backward else "",
                    rule.note or ("" if listed else "(default)")))
    return out


def preset_markdown(preset: Convention, heading: str = "###") -> str:
    """One preset's section: what it reproduces, its quirks (with archcalc's view) and its rules."""
    lines = [f'{heading} <a id="convention-{preset.name}"></a>Convention `{preset.name}`', "",
             f"Reproduces {preset.tool}; its number is called {preset.unit}. "
             f"{preset.summary[:1].upper()}{preset.summary[1:]}."
             + ("" if preset.per_layer else " The tool gives a total only (no per-module breakdown)."), ""]
    if preset.quirks:
        lines.append("Where archcalc disagrees:")
        lines.extend(f"- {what}: {why}" for what, why in preset.quirks)
        lines.append("")
    lines.append("| op type | forward (per sample) | backward | note |")
    lines.append("|---|---|---|---|")
    for op_type, forward, backward, note in preset_rules(preset):
        lines.append(f"| `{op_type}` | `{forward}` | {_code(backward) if backward else ''} | {note.replace('|', '/')} |")
    return "\n".join(lines)


def overview_table() -> Any:
    """``archcalc conventions``: the presets as a rich table."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Counting conventions (archcalc report MODEL --convention NAME)", header_style="bold")
    for header in ("preset", "reproduces", "unit", "backward", "conv", "linear", "batchnorm", "relu", "maxpool", "add"):
        table.add_column(header, overflow="fold")
    shown = [OVERVIEW_HEADERS.index(h) for h in ("preset", "reproduces", "unit", "backward", "conv", "linear",
                                                   "batchnorm", "relu", "maxpool", "add")]
    for row in overview_rows():
        table.add_row(*(Text(row[i]) for i in shown))
    return table


def preset_table(preset: Convention) -> Any:
    """``archcalc conventions NAME``: one preset's rule for every op type, as a rich table."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{preset.name}: {preset.tool} ({preset.unit})", header_style="bold")
    for header in ("op type", "forward (per sample)", "backward", "note"):
        table.add_column(header, overflow="fold")
    for row in preset_rules(preset):
        table.add_row(*(Text(c) for c in row))
    return table

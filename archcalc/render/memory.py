"""The memory model (:mod:`archcalc.memory`) as text, tables and a plot: presentation only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from archcalc.errors import ArchcalcError
from archcalc.memory import EXCLUDED, Memory
from archcalc.render.format import binary_bytes, si

if TYPE_CHECKING:
    from archcalc.report import Analysis


def summary_lines(m: Memory) -> list[str]:
    """The model's totals in words, one figure per line, with what they count and exclude."""
    b = binary_bytes
    lines = [
        f"Kept for backward ({m.dtype}, batch {m.batch}): {b(m.saved_bytes)} in distinct storages, as PyTorch's autograd "
        "keeps them (a tensor kept by several layers, or seen through a view, once; parameters not again).",
        f"Training memory, pytorch model ({m.optimizer}): params and buffers {b(m.params_bytes)} + gradients "
        f"{b(m.gradient_bytes)} + optimizer state {b(m.optimizer_bytes)} + activation peak {b(m.activation_peak)} "
        f"(kept {b(m.saved_bytes)} + transient {b(m.transient_bytes)}, at {m.peak_layer} {m.peak_phase}) "
        f"= {b(m.training_bytes)}.",
        f"Training memory, lecture model (params + gradients + optimizer state + 2 x activations): "
        f"{b(m.lecture_training_bytes)}.",
        f"Inference peak with buffer reuse: {b(m.inference_peak)} of activations at {m.inference_peak_layer} "
        f"(each tensor freed after its last reader; in-place layers and views allocate nothing), beside "
        f"{b(m.inference_no_reuse)} with every output kept; + params and buffers {b(m.params_bytes)}.",
    ]
    if m.unknown:
        lines.append(f"Unknown: {len(m.unknown)} stand-in layer(s) ({', '.join(m.unknown[:5])}"
                     f"{', ...' if len(m.unknown) > 5 else ''}) keep what archcalc cannot know, counted as nothing (marked ?).")
    lines.append(f"Excluded: {EXCLUDED}.")
    return lines


def timeline_table(m: Memory) -> Any:
    """A rich table of the timeline: after each forward and backward step, the activation-side bytes
    live and the most live while it ran; forward rows give what the layer newly keeps."""
    from rich.table import Table
    from rich.text import Text

    b = binary_bytes
    rows = {row.name: row for row in m.layers}
    # Text throughout: names from a spec are shown literally, never read as rich markup
    table = Table(title=Text(f"{m.name}: memory timeline, batch {m.batch}, {m.dtype}"), title_justify="center")
    for header, justify in (("Step", "right"), ("Phase", "left"), ("Layer", "left"), ("Type", "left"),
                            ("Kept", "right"), ("Live after", "right"), ("Peak during", "right")):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for number, step in enumerate(m.timeline, start=1):
        row = rows.get(step.layer)
        kept = "" if step.phase != "forward" or row is None else b(row.kept_bytes) + (" ?" if row.unknown else "")
        mark = " <- peak" if step.phase == m.peak_phase and step.layer == m.peak_layer else ""
        table.add_row(*(Text(cell) for cell in (str(number), step.phase, step.layer, row.type if row else "input", kept,
                                                 b(step.live), b(step.peak) + mark)))
    return table


def plot(m: Memory, path: str) -> str:
    """Draw the timeline (live bytes after each forward and backward step, and the inference walk)
    as a line plot with matplotlib, labelled with the layers at the peaks; the format from the
    extension (.svg, .png, .pdf). Returns ``path``.

    Raises:
        ArchcalcError: without matplotlib (``pip install 'archcalc[chart]'``), or when the file
            cannot be written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ArchcalcError("--plot needs matplotlib: pip install 'archcalc[chart]' (or pip install matplotlib)") from None
    mib = 2**20
    figure, axes = plt.subplots(figsize=(10, 4.5))
    steps = range(1, len(m.timeline) + 1)
    axes.plot(steps, [s.peak / mib for s in m.timeline], color="tab:red", linewidth=0.8, label="training: peak during step")
    axes.plot(steps, [s.live / mib for s in m.timeline], color="tab:blue", label="training: live after step")
    axes.plot(range(1, len(m.inference_timeline) + 1), [s.peak / mib for s in m.inference_timeline], color="tab:green",
              label="inference with reuse: peak during step")
    forward = sum(1 for s in m.timeline if s.phase == "forward")
    axes.axvline(forward + 0.5, color="grey", linestyle=":", linewidth=1)
    worst = max(range(len(m.timeline)), key=lambda i: m.timeline[i].peak)
    axes.annotate(f"{m.peak_layer} ({m.peak_phase})", (worst + 1, m.timeline[worst].peak / mib), textcoords="offset points",
                  xytext=(0, 6), ha="center", fontsize=8)
    best = max(range(len(m.inference_timeline)), key=lambda i: m.inference_timeline[i].peak)
    axes.annotate(m.inference_peak_layer, (best + 1, m.inference_timeline[best].peak / mib), textcoords="offset points",
                  xytext=(0, 6), ha="center", fontsize=8)
    axes.set_xlabel("step (forward, then backward after the dotted line)")
    axes.set_ylabel(f"activation-side MiB ({m.dtype})")
    axes.set_title(f"{m.name}: memory timeline, batch {m.batch} (params, gradients, optimizer state not shown: "
                   f"{m.fixed_bytes / mib:.1f} MiB)", fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    try:
        figure.savefig(path, metadata={"Date": None} if path.endswith(".svg") else None)
    except (OSError, ValueError) as error:
        raise ArchcalcError(f"cannot write {path!r}: {error}") from None
    finally:
        plt.close(figure)
    return path


#: The per-layer table of ``report --training``: header and justification.
KEPT_COLUMNS = (("Layer", "left"), ("Type", "left"), ("Kept for backward", "right"), ("Kept (what)", "left"),
                ("Live after forward", "right"), ("Live after backward", "right"))

#: The columns ``report --training`` adds to :data:`KEPT_COLUMNS`: what each layer's backward computes.
GRADIENT_COLUMNS = (("Input-grad MACs", "right"), ("Weight-grad MACs", "right"))


def kept_rows(m: Memory) -> list[tuple[str, ...]]:
    """Per layer: name, type, bytes first kept there (``?``: a stand-in, unknown), what it keeps
    (parameters left out; ``(shared)``: a storage an earlier layer keeps), live bytes after its
    forward and its backward step (``-``: no backward)."""
    rows = []
    for row in m.layers:
        what = ", ".join(f"{k.saved.kind}{'=' + k.saved.name if k.saved.name else ''}{' (shared)' if k.shared else ''}"
                         for k in row.kept if k.saved.kind != "param") or ("unknown" if row.unknown else "-")
        rows.append((row.name, row.type, binary_bytes(row.kept_bytes) + (" ?" if row.unknown else ""), what,
                     binary_bytes(row.forward_live), "-" if row.backward_live is None else binary_bytes(row.backward_live)))
    return rows


def training_rows(m: Memory, analysis: Analysis) -> list[tuple[str, ...]]:
    """:func:`kept_rows` with each layer's backward MACs from ``analysis`` (the same network, batch):
    the input gradient's (0 where not computed) and the weight gradient's, with SI suffixes."""
    by_name = {row.name: row for row in analysis.layers}
    rows = []
    for kept, layer in zip(kept_rows(m), m.layers):
        report = by_name[layer.name]
        rows.append((*kept, si(report.figure("input_grad_macs")), si(report.figure("weight_grad_macs"))))
    return rows


def _columns_and_rows(m: Memory, analysis: Analysis | None) -> tuple[tuple[tuple[str, str], ...], list[tuple[str, ...]]]:
    if analysis is None:
        return KEPT_COLUMNS, kept_rows(m)
    return KEPT_COLUMNS + GRADIENT_COLUMNS, training_rows(m, analysis)


def kept_table(m: Memory, analysis: Analysis | None = None) -> Any:
    """:func:`kept_rows` as a rich table; with ``analysis``, :func:`training_rows`."""
    from rich.table import Table
    from rich.text import Text

    what = "what backward keeps" if analysis is None else "what backward keeps and computes"
    table = Table(title=Text(f"{m.name}: {what}, batch {m.batch}, {m.dtype}"))
    columns, rows = _columns_and_rows(m, analysis)
    for header, justify in columns:
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def kept_markdown(m: Memory, analysis: Analysis | None = None) -> str:
    """:func:`kept_rows` as a markdown table; with ``analysis``, :func:`training_rows`."""
    columns, rows = _columns_and_rows(m, analysis)
    lines = ["| " + " | ".join(h for h, _ in columns) + " |",
             "|" + "".join("---|" if j == "left" else "---:|" for _, j in columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"

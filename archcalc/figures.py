"""The figures archcalc reports, declared once.

Each :class:`Figure` says what it counts, how a layer's value is computed from the op's rules,
how it totals over the network, how it folds when a block is shown as one row, how people read
it (its kind: a count, bytes or a shape), and which outputs carry it. :class:`LayerReport`,
:class:`Totals`, JSON, CSV, the tables, ``--depth`` folding, ``compare`` and ``grade`` all read
this table, so a new figure is one entry here (in the spirit of torchinfo's column settings).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archcalc import formulas
from archcalc.ops.base import Cost, Layer, Param

if TYPE_CHECKING:
    from archcalc.memory import Peaks

#: Every output format; a figure lists the ones that carry it.
FORMATS = frozenset({"json", "csv", "table", "compare", "grade"})


@dataclass(frozen=True, slots=True)
class LayerFacts:
    """What a layer's figures are computed from: the op's rules applied to one resolved layer.

    ``params`` holds parameter and buffer tensors by name (each with its role); ``cost`` is for
    one sample; ``batch`` and ``dtype`` are the analysis'; ``convention`` is the layer's forward
    count for one sample under the analysis' counting convention (:mod:`archcalc.conventions`).
    """

    layer: Layer
    params: Mapping[str, Param]
    cost: Cost
    batch: int
    dtype: str
    convention: int = 0


@dataclass(frozen=True, slots=True)
class NetworkFacts:
    """What the whole-network figures are computed from besides the layers' totals: the analysis'
    settings and the memory model's figures (:class:`archcalc.memory.Peaks`, at the batch).

    ``memory_model`` is the model ``training_bytes`` follows: ``pytorch`` (what autograd keeps,
    the default) or ``lecture`` (2 x the forward activations)."""

    batch: int
    dtype: str
    optimizer: str
    memory_model: str
    memory: Peaks


@dataclass(frozen=True, slots=True)
class Figure:
    """One reported quantity.

    Attributes:
        name: attribute of :class:`LayerReport` and :class:`Totals`; key in JSON and CSV.
        header: its column header in tables.
        doc: one line saying what it counts, with its convention.
        kind: ``count`` (an exact integer, shown with SI suffixes or separators), ``bytes``
            (shown in binary units) or ``shape``.
        of_layer: the layer's value from its :class:`LayerFacts` (None: a totals-only figure).
        total: ``sum`` over every row, ``stored`` summed over rows that store their output (the
            forward activation rule), ``""`` for none; totals-only figures use ``of_totals``.
        fold: how a block folded into one row combines its layers: ``sum``, ``stored`` or
            ``last`` (the block's output).
        formats: the outputs that carry it.
        of_totals: a totals-only figure's value from the other totals and :class:`NetworkFacts`.
        aliases: other names people and tools give it (column headers ``archcalc grade`` reads).
        brief: tables show it with an SI suffix (``352.8K``) rather than every digit (``2,416``).
    """

    name: str
    header: str
    doc: str
    kind: str
    of_layer: Callable[[LayerFacts], Any] | None
    total: str = "sum"
    fold: str = "sum"
    formats: frozenset[str] = FORMATS
    of_totals: Callable[[Mapping[str, Any], NetworkFacts], Any] | None = None
    aliases: tuple[str, ...] = ()
    brief: bool = False


def _params(facts: LayerFacts, keep: Callable[[Param], bool]) -> int:
    return sum(p.size for p in facts.params.values() if keep(p))


def _fixed_bytes(totals: Mapping[str, Any], facts: NetworkFacts) -> int:
    """Parameters and buffers + gradients + optimizer state, in bytes."""
    return formulas.training_bytes(totals["params"] + totals["buffers"], totals["params_trainable"], 0, facts.batch,
                                   facts.dtype, facts.optimizer)


def _lecture_training_bytes(totals: Mapping[str, Any], facts: NetworkFacts) -> int:
    return formulas.training_bytes(totals["params"] + totals["buffers"], totals["params_trainable"],
                                   totals["activations"] // facts.batch, facts.batch, facts.dtype, facts.optimizer)


def _pytorch_training_bytes(totals: Mapping[str, Any], facts: NetworkFacts) -> int:
    return _fixed_bytes(totals, facts) + facts.memory.activation_peak


def _training_bytes(totals: Mapping[str, Any], facts: NetworkFacts) -> int:
    return totals[f"{facts.memory_model}_training_bytes"]


#: Per-layer figures, in the order of JSON keys, CSV columns and tables.
LAYER_FIGURES: tuple[Figure, ...] = (
    Figure("output_shape", "Output shape", "the output's shape, channels first, without the batch axis", "shape",
           lambda f: f.layer.out_shape, total="", fold="last", formats=FORMATS - {"compare"},
           aliases=("shape", "output", "output shape")),
    Figure("params", "Params", "learned parameters, as PyTorch's parameters() counts them (no buffers)", "count",
           lambda f: _params(f, lambda p: p.role.learned), aliases=("parameters", "param", "#params", "param #")),
    Figure("params_trainable", "Trainable", "learned parameters that training updates (every learned one)", "count",
           lambda f: _params(f, lambda p: p.trainable), formats=FORMATS - {"table", "grade", "compare"}),
    Figure("params_weights_only", "Weights", "conv and linear kernel weights only: no biases, norm scale/shift or "
           "buffers (what the lecture's rows count)", "count", lambda f: _params(f, lambda p: p.role.kernel),
           aliases=("weights", "weights_only")),
    Figure("buffers", "Buffers", "saved state that is not learned: batchnorm's running mean and variance", "count",
           lambda f: _params(f, lambda p: not p.role.learned), formats=FORMATS - {"table"},
           aliases=("buffer", "running statistics", "non-trainable params")),
    Figure("macs", "MACs", "multiply-accumulates of the forward pass for the batch (what torchvision, fvcore and "
           "ptflops call FLOPs)", "count", lambda f: f.cost.macs * f.batch,
           aliases=("mac", "mult-adds", "multiply-adds", "ops"), brief=True),
    Figure("flops", "FLOPs", "2 x MACs (one multiply and one add each)", "count",
           lambda f: formulas.flops(f.cost.macs * f.batch), formats=FORMATS - {"table"}),
    Figure("other_ops", "Other ops", "element-wise work for the batch: bias adds, activations, pooling, "
           "normalisation, softmax, adds (one per output value per elementary operation)", "count",
           lambda f: f.cost.other_ops * f.batch, formats=FORMATS - {"table", "grade"}),
    Figure("activations", "Activations", "output values for the batch; the total counts the input and every output "
           "that needs new storage", "count", lambda f: math.prod(f.layer.out_shape) * f.batch, total="stored",
           fold="stored", aliases=("memory", "mem", "activation"), brief=True),
    Figure("activation_bytes", "Memory", "bytes of the activations in the analysis' dtype", "bytes",
           lambda f: formulas.activation_bytes(math.prod(f.layer.out_shape) * f.batch, f.dtype), total="stored",
           fold="stored", aliases=("bytes", "memory_bytes")),
    Figure("convention_count", "Convention", "the forward count under the analysis' counting convention "
           "(--convention: a peer tool's 'FLOPs' or 'MACs', archcalc.conventions); MACs under the default archcalc",
           "count", lambda f: f.convention * f.batch, formats=frozenset({"json", "csv"}), brief=True),
)

#: Figures that exist only for the whole network, after the per-layer ones in JSON, each worked out
#: from the ones before it (the memory figures from :mod:`archcalc.memory`'s pytorch model).
TOTAL_ONLY_FIGURES: tuple[Figure, ...] = (
    Figure("saved_bytes", "Kept for backward", "bytes of the distinct storages autograd keeps for backward for the "
           "batch, as PyTorch saves them (a tensor kept by several layers or seen through a view once; parameters "
           "not again)", "bytes", None, total="", fold="", formats=frozenset({"json", "compare"}),
           of_totals=lambda totals, facts: facts.memory.saved_bytes),
    Figure("transient_bytes", "Backward transient", "what the training timeline's worst step holds beyond the kept "
           "storages: the gradient buffers live there and the tensors forward still needs", "bytes", None, total="",
           fold="", formats=frozenset({"json"}), of_totals=lambda totals, facts: facts.memory.transient_bytes),
    Figure("pytorch_training_bytes", "Training memory (pytorch)", "params and buffers + gradients + optimizer state "
           "+ what backward keeps + the largest transient (saved_bytes + transient_bytes)", "bytes", None, total="",
           fold="", formats=frozenset({"json"}), of_totals=_pytorch_training_bytes),
    Figure("lecture_training_bytes", "Training memory (lecture)", "params and buffers + gradients + optimizer state "
           "+ 2 x the forward activations (the lecture's rule, \"~*2 for bwd\")", "bytes", None, total="", fold="",
           formats=frozenset({"json"}), of_totals=_lecture_training_bytes),
    Figure("training_bytes", "Training memory", "memory to train on the batch by the analysis' memory model "
           "(memory_model: pytorch_training_bytes or lecture_training_bytes)", "bytes", None, total="", fold="",
           formats=frozenset({"json", "compare"}), of_totals=_training_bytes),
    Figure("inference_peak_bytes", "Inference peak", "the forward pass alone with buffer reuse: the most activation "
           "bytes live at once (each tensor freed after its last reader; in-place layers and views allocate "
           "nothing); parameters not included", "bytes", None, total="", fold="", formats=frozenset({"json", "compare"}),
           of_totals=lambda totals, facts: facts.memory.inference_peak),
)

#: Figures with a network total, in JSON's order.
TOTAL_FIGURES: tuple[Figure, ...] = (*(f for f in LAYER_FIGURES if f.total), *TOTAL_ONLY_FIGURES)

#: Position of each per-layer figure in :attr:`LayerReport.values`.
LAYER_INDEX: dict[str, int] = {f.name: i for i, f in enumerate(LAYER_FIGURES)}


def layer_values(facts: LayerFacts) -> tuple[Any, ...]:
    """Every per-layer figure of one layer, in :data:`LAYER_FIGURES` order."""
    return tuple(figure.of_layer(facts) for figure in LAYER_FIGURES)


def totals(rows: Any, facts: NetworkFacts) -> dict[str, Any]:
    """The network totals of rows (``values`` and ``stores_output`` of each), by figure name."""
    out: dict[str, Any] = {}
    for figure in LAYER_FIGURES:
        if not figure.total:
            continue
        index = LAYER_INDEX[figure.name]
        out[figure.name] = sum(row.values[index] for row in rows if figure.total == "sum" or row.stores_output)
    for figure in TOTAL_ONLY_FIGURES:
        out[figure.name] = figure.of_totals(out, facts)
    return out


def fold_values(values: list[tuple[Any, ...]], stores: list[bool]) -> tuple[Any, ...]:
    """One row's figures for layers folded together (a block shown as one row), by each figure's rule."""
    out = []
    for index, figure in enumerate(LAYER_FIGURES):
        if figure.fold == "last":
            out.append(values[-1][index])
        elif figure.fold == "stored":
            out.append(sum(v[index] for v, stored in zip(values, stores) if stored))
        else:
            out.append(sum(v[index] for v in values))
    return tuple(out)


def figures_for(fmt: str) -> tuple[Figure, ...]:
    """The per-layer figures an output format carries."""
    return tuple(f for f in LAYER_FIGURES if fmt in f.formats)

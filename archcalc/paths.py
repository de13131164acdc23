"""Depth as the papers count it, and the input-to-output paths of a network.

Depth: the number of layers with learned kernel weights (conv, transposed conv, linear: any
op with a parameter whose :class:`~archcalc.ops.base.Role` has ``kernel``) on the longest path
from the input to the output (the graph's last node). This is the count of "22 layers"
(GoogLeNet, Szegedy et al. 2014), "16 weight layers" (VGG16, Simonyan & Zisserman 2014), "8
learned layers" (AlexNet), "152 layers" (ResNet-152). The other common count adds the pooling
layers: ops with no parameters whose window gathers several input positions (max/average,
adaptive and global pooling; see :func:`is_pooling`); GoogLeNet's paper gives "27 layers with
pooling".

Paths (Veit et al. 2016, "Residual networks behave like ensembles of relatively shallow
networks"): every input slot of a node is an edge, and a path is a chain of edges from the
input to the output. A residual block doubles the paths (through the block or the skip), so k
skip connections in series give 2^k paths; an Inception module with four branches multiplies
them by four. Counts are exact Python ints, worked out by dynamic programming over the nodes
in topological order; the distribution of path lengths (in weighted layers) by DP over
(node, length), at most ``nodes x (depth + 1)`` entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from archcalc.errors import ArchcalcError
from archcalc.graph import Graph
from archcalc.ops import GLOBAL, Layer, get_op
from archcalc.ops.base import Window

#: The most (length, count) entries the path DP may add up: a real network needs a few thousand
#: (ResNet-152: about 40,000); a generated spec whose every layer reads many earlier ones could
#: otherwise ask for nodes x depth of them (10^12 for a million layers).
MAX_PATH_WORK = 20_000_000


def is_weighted(node_type: str, layer: Layer) -> bool:
    """Whether a layer has learned kernel weights (a parameter whose Role has ``kernel``);
    False for the input node (no inputs)."""
    return bool(layer.in_shapes) and any(param.role.kernel for param in get_op(node_type).params(layer).values())


def is_pooling(node_type: str, layer: Layer) -> bool:
    """Whether a layer pools: no parameters, and a window that gathers several input
    positions into one output (a :class:`Window` whose kernel exceeds 1 on some axis and that
    does not dilate its input, or a global window).

    Pointwise ops (activations, merges) and views have no window; a conv has parameters; a
    crop's window is 1 wide and an upsample's dilates its input: none of them pools. Returns
    False for the input node (no inputs).
    """
    if not layer.in_shapes:
        return False
    op = get_op(node_type)
    if op.params(layer):
        return False
    window = op.window(layer)
    if isinstance(window, Window):
        return any(k > 1 for k in window.kernel) and all(d == 1 for d in window.input_dilation)
    return window == GLOBAL


@dataclass(frozen=True, slots=True)
class Depth:
    """Layers on the longest input-to-output path: ``weighted`` (with kernel weights, as the
    papers count) and ``with_pooling`` (weighted plus pooling layers)."""

    weighted: int
    with_pooling: int

    def to_dict(self) -> dict[str, int]:
        """JSON form."""
        return {"weighted": self.weighted, "with_pooling": self.with_pooling}


@dataclass(frozen=True, slots=True)
class Paths:
    """The input-to-output paths: their exact ``count`` and ``lengths`` (weighted layers on a
    path -> number of paths of that length, ascending)."""

    count: int
    lengths: Mapping[int, int]

    @property
    def mean(self) -> Fraction:
        """Mean path length in weighted layers, exact (0 when there is no path)."""
        if not self.count:
            return Fraction(0)
        return Fraction(sum(length * n for length, n in self.lengths.items()), self.count)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: count (an exact int), lengths as [length, count] pairs, mean as a float
        and exactly as "p/q"."""
        mean = self.mean
        return {"count": self.count, "lengths": [[k, v] for k, v in self.lengths.items()],
                "mean": float(mean), "mean_exact": f"{mean.numerator}/{mean.denominator}"}


def _weights(graph: Graph, layers: Mapping[str, Layer], pooling: bool) -> list[int]:
    out = []
    for node in graph.nodes:
        layer = layers[node.name]
        weight = is_weighted(node.type, layer)
        out.append(int(weight or (pooling and is_pooling(node.type, layer))))
    return out


def _longest(graph: Graph, weights: list[int]) -> int:
    """Largest sum of weights over the input-to-output paths (0 with no path)."""
    index = {node.name: i for i, node in enumerate(graph.nodes)}
    best: list[int | None] = [None] * len(graph.nodes)
    best[0] = 0
    for i, node in enumerate(graph.nodes[1:], start=1):
        reached = [best[index[ref]] for ref in node.inputs if best[index[ref]] is not None]
        best[i] = max(reached) + weights[i] if reached else None  # type: ignore[operator]
    return best[-1] or 0


def depth(graph: Graph, layers: Mapping[str, Layer]) -> Depth:
    """The network's depth as papers count it (see the module docstring).

    Args:
        graph: the network; its last node is the output.
        layers: the resolved layers of :func:`archcalc.passes.infer_shapes`, by node name.
    """
    return Depth(_longest(graph, _weights(graph, layers, False)), _longest(graph, _weights(graph, layers, True)))


def paths(graph: Graph, layers: Mapping[str, Layer]) -> Paths:
    """The input-to-output paths: exact count and length distribution in weighted layers.

    Each input slot is one edge (``add(x, x)`` joins two paths). A node's table of
    (length -> paths from the input) is the sum of its inputs' tables shifted by its own
    weight; it is dropped after its last reader, so memory is bounded by the live nodes
    times (depth + 1).
    """
    weights = _weights(graph, layers, False)
    index = {node.name: i for i, node in enumerate(graph.nodes)}
    last_use = {}
    for i, node in enumerate(graph.nodes):
        for ref in node.inputs:
            last_use[ref] = i
    tables: dict[str, dict[int, int]] = {graph.nodes[0].name: {0: 1}}
    work = 0
    for i, node in enumerate(graph.nodes[1:], start=1):
        table: dict[int, int] = {}
        for ref in node.inputs:
            work += len(tables.get(ref, ()))
            if work > MAX_PATH_WORK:
                raise ArchcalcError(f"model {graph.name!r}: counting the paths by length would take more than "
                                    f"{MAX_PATH_WORK:,} steps (at {node.label()}); the network is too entangled")
            for length, count in tables.get(ref, {}).items():
                table[length + weights[i]] = table.get(length + weights[i], 0) + count
        tables[node.name] = table
        for ref in set(node.inputs):
            if last_use[ref] == i and index[ref] != len(graph.nodes) - 1:
                del tables[ref]
    final = tables.get(graph.nodes[-1].name, {})
    return Paths(sum(final.values()), dict(sorted(final.items())))

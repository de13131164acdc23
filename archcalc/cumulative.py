"""The cumulative cost of a layer: the sum of a per-layer figure over everything the layer
depends on, each ancestor counted once.

Receptive-field tables quote cost this way: google-research/receptive_field's table of TF-Slim
networks gives "FLOPs up to each end-point", the operations of the subgraph that computes the
end-point (``tf.graph_util.convert_variables_to_constants`` keeps the end-point's ancestors,
then ``tf.profiler`` counts them). In a chain it is the running sum; in a DAG a layer that two
branches share is counted once (a residual block's input is not counted twice at its add), so
it is not the sum of the inputs' cumulative figures. A layer depends on the inputs whose values
reach its output (:func:`value_dependencies`: a crop's second input gives only its size).

Algorithm (exact integers, any numeric type that adds):

1. **Cuts.** Position ``c`` (topological order) is a cut when no edge jumps over it: every
   layer before ``c`` is last read at or before ``c``. Then every later layer depends on ``c``
   and on nothing before it except through ``c``, so ``cumulative(v) = cumulative(c) + the sum
   over v's ancestors after c``. A chain is all cuts; a ResNet cuts between blocks, an
   Inception network between modules.
2. **Inside a segment** (from one cut to the next), a layer's ancestors after the cut are a
   bit set over the segment's positions, held as ``(lowest position, Python int)``. A layer
   with one input (besides the cut) adds only itself: its figure is its input's plus its own,
   and its set stays *lazy* (a pointer to the input's). Only a layer that merges two or more
   inputs materialises their sets, ORs them, and adds the figures of the ancestors the largest
   input lacks, enumerated from the bits.

Cost: O(nodes + edges) for chains (no set is built), O(nodes x block size / 64) word
operations for residual and Inception networks; a merge's sets cost their span in bits. The
bits built and held are bounded by :data:`MAX_WORK_BITS`; past it, :class:`ArchcalcError`
(a graph whose skip connections span most of a very long network).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from archcalc.errors import ArchcalcError

#: The most bits the segment sets may create in total (about 2 GiB of memory traffic): a real
#: network needs a few million (DenseNet-201: about 2e5); a generated 100,000-layer graph whose
#: every layer also reads the input needs none (its sets stay lazy).
MAX_WORK_BITS = 2**34

#: Below this many set bits, bits are enumerated one by one; above, through NumPy.
_SMALL = 64


class _NodeLike(Protocol):
    name: str
    inputs: tuple[str, ...]


class _GraphLike(Protocol):
    nodes: Sequence[_NodeLike]


def cumulative(graph: _GraphLike, per_layer: Mapping[str, Any]) -> dict[str, Any]:
    """Each layer's figure plus those of all its ancestors, each ancestor once.

    Args:
        graph: nodes in topological order (an :class:`archcalc.graph.Graph`), each with ``name``
            and ``inputs`` (names of earlier nodes).
        per_layer: the figure of every node by name (MACs, a convention's FLOPs...): ints, or
            any numbers that add exactly (Fractions).

    Returns:
        node name -> the figure summed over the node and its ancestors, in graph order.

    Raises:
        ArchcalcError: a node has no figure in ``per_layer``, or the graph needs more than
            :data:`MAX_WORK_BITS` bits of ancestor sets.
    """
    nodes = graph.nodes
    count = len(nodes)
    index = {node.name: i for i, node in enumerate(nodes)}
    missing = [node.name for node in nodes if node.name not in per_layer]
    if missing:
        raise ArchcalcError(f"cumulative figure: no figure for layer {missing[0]!r}"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    weight = [per_layer[node.name] for node in nodes]
    preds: list[tuple[int, ...]] = []
    for node in nodes:
        refs = node.inputs
        preds.append((index[refs[0]],) if len(refs) == 1 else tuple(sorted({index[ref] for ref in refs})))
    cuts, merged = _cuts(preds)

    state = _Segment(weight, merged)
    total = state.total
    parent = state.parent
    base, base_total = -1, 0
    for i in range(count):
        inputs = preds[i]
        if len(inputs) == 1 and inputs[0] != base:  # the common case: one input after the cut
            p = inputs[0]
            parent[i] = p
            total[i] = total[p] + weight[i]
        else:
            inside = [p for p in inputs if p != base]
            if not inside:  # reads only the cut (or nothing: a source, before any cut)
                parent[i] = -2
                total[i] = base_total + weight[i]
            elif len(inside) == 1:
                parent[i] = inside[0]
                total[i] = total[inside[0]] + weight[i]
            else:
                state.merge(i, inside)
        if cuts[i]:
            base, base_total = i, total[i]
            state.restart(i)
    return {node.name: total[i] for i, node in enumerate(nodes)}


def _cuts(preds: list[tuple[int, ...]]) -> tuple[list[bool], list[bool]]:
    """Whether each position is a cut (every earlier node is last read at or before it, and no
    later node is a source: a node without inputs depends on nothing before it), and whether a
    node is read by some merge (a node of two or more distinct inputs)."""
    count = len(preds)
    last_use = list(range(count))
    merged = [False] * count
    last_source = 0
    for i, inputs in enumerate(preds):
        for p in inputs:
            last_use[p] = i
        if len(inputs) > 1:
            for p in inputs:
                merged[p] = True
        elif not inputs:
            last_source = i
    cuts = [False] * count
    reach = -1  # the furthest last use of the nodes before position i
    for i in range(count):
        cuts[i] = reach <= i and i >= last_source
        if last_use[i] > reach:
            reach = last_use[i]
    return cuts, merged


class _Segment:
    """The running state: each node's total, and the ancestor sets of the current segment's
    nodes (lazy pointers or materialised bits), positions counted from the cut (``base``)."""

    def __init__(self, weight: list[Any], merged: list[bool]) -> None:
        self.weight = weight
        self.merged = merged
        self.total: list[Any] = [None] * len(weight)
        self.base = -1  # the current cut; -1: none yet
        #: node -> its one input after the cut, whose set it extends by itself (lazy), or -1: a
        #: set of its own (``bits``), or -2: the node alone
        self.parent: dict[int, int] = {}
        self.bits: dict[int, tuple[int, int]] = {}  # node -> (lowest position, bits from it)
        self.work = 0

    def restart(self, cut: int) -> None:
        """A new segment after ``cut``: no node after it reads anything before it."""
        self.base = cut
        self.parent.clear()
        self.bits.clear()

    def merge(self, i: int, inside: list[int]) -> None:
        """Node ``i`` reads two or more nodes after the cut: its total from the union of their sets."""
        own = self.weight[i]
        sets = [self._materialise(p) for p in inside]
        largest = max(range(len(inside)), key=lambda k: sets[k][1].bit_count())
        low, union = _union(sets)
        self._charge(union)
        top_low, top_bits = sets[largest]
        extra = union & ~(top_bits << (top_low - low))
        start = self.base + 1
        added = sum((self.weight[start + low + k] for k in _positions(extra)), start=0 * own)
        self.total[i] = self.total[inside[largest]] + added + own
        self.bits[i] = (low, union | (1 << (i - start - low)))
        self.parent[i] = -1

    def _materialise(self, i: int) -> tuple[int, int]:
        """Node ``i``'s ancestor set after the cut, built from the nearest materialised ancestor
        along its lazy chain; kept, as are the sets of the chain's nodes that a merge reads (a
        U-Net's decoder reads its encoder's chain at several places: each walk then stops at the
        last one kept)."""
        found = self.bits.get(i)
        if found is not None:
            return found
        chain = []
        j = i
        while j not in self.bits and self.parent[j] >= 0:
            chain.append(j)
            j = self.parent[j]
        start = self.base + 1
        low, bits = self.bits[j] if j in self.bits else (j - start, 1)  # else: a node alone
        pending: list[int] = []
        for node in reversed(chain):  # from the end nearest j, ascending positions (all above low)
            pending.append(node - start)
            if node == i or self.merged[node]:
                chain_low, chain_bits = _from_positions(pending)
                bits |= chain_bits << (chain_low - low)
                pending = []
                self._charge(bits)
                self.bits[node] = (low, bits)
        return low, bits

    def _charge(self, bits: int) -> None:
        self.work += bits.bit_length()
        if self.work > MAX_WORK_BITS:
            raise ArchcalcError(f"cumulative figure: the ancestor sets of this graph need more than {MAX_WORK_BITS:,} "
                                "bits (skip connections spanning most of a very long network); count fewer layers")


def _from_positions(positions: list[int]) -> tuple[int, int]:
    """A set of positions as (lowest, bits from it)."""
    low = min(positions)
    if len(positions) <= _SMALL:
        bits = 0
        for position in positions:
            bits |= 1 << (position - low)
        return low, bits
    flags = np.zeros(max(positions) - low + 1, dtype=np.uint8)
    flags[np.asarray(positions) - low] = 1
    return low, int.from_bytes(np.packbits(flags, bitorder="little").tobytes(), "little")


def _union(sets: list[tuple[int, int]]) -> tuple[int, int]:
    """The union of (lowest, bits) sets, as (lowest, bits)."""
    low = min(s[0] for s in sets)
    if len(sets) <= 32:
        bits = 0
        for set_low, set_bits in sets:
            bits |= set_bits << (set_low - low)
        return low, bits
    # many sets (a wide concat): OR them into one flag array, each at its offset
    high = max(s[0] + s[1].bit_length() for s in sets)
    flags = np.zeros(high - low, dtype=np.uint8)
    singles = []
    for set_low, set_bits in sets:
        if set_bits == 1:  # one node (a branch's first layer): no unpacking
            singles.append(set_low - low)
            continue
        unpacked = _unpack(set_bits)
        flags[set_low - low:set_low - low + unpacked.size] |= unpacked
    flags[np.asarray(singles, dtype=np.int64)] = 1
    return low, int.from_bytes(np.packbits(flags, bitorder="little").tobytes(), "little")


def _unpack(bits: int) -> np.ndarray:
    """The bits of a non-negative int as a uint8 array, lowest first, up to its highest set bit."""
    length = bits.bit_length()
    raw = np.frombuffer(bits.to_bytes((length + 7) // 8, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:length]


def _positions(bits: int) -> list[int]:
    """The positions of the set bits of a non-negative int, ascending."""
    if bits.bit_count() <= _SMALL:
        out = []
        while bits:
            low = bits & -bits
            out.append(low.bit_length() - 1)
            bits ^= low
        return out
    return np.flatnonzero(_unpack(bits)).tolist()


@dataclass(frozen=True, slots=True)
class _ValueNode:
    name: str
    inputs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _ValueGraph:
    nodes: tuple[Any, ...]


def value_dependencies(graph: _GraphLike) -> _GraphLike:
    """The graph with each node's inputs cut to those whose values reach its output: an op's
    ``field_inputs`` (a crop's second input gives only its size, so a U-Net's crop does not depend
    on the decoder layer beside it). Nodes without such a declaration are kept as they are.

    Raises:
        RuleError: a node of an unknown op type (from :func:`archcalc.ops.get_op`; a loaded graph has none).
    """
    from archcalc.ops import get_op

    nodes = []
    for node in graph.nodes:
        keep = get_op(node.type).field_inputs if node.inputs else None
        nodes.append(node if keep is None or keep >= len(node.inputs) else _ValueNode(node.name, node.inputs[:keep]))
    return _ValueGraph(tuple(nodes))


def under_convention(model: Any, convention: Any = "archcalc", batch: int = 1) -> dict[str, int]:
    """Each layer's count under a counting convention (:mod:`archcalc.conventions`), summed over
    the layer and everything it depends on, each once; the input node counts 0.

    This is the figure of receptive_field's table with ``convention="tf-profiler"``: the FLOPs up
    to each end-point.

    Args:
        model: a Graph, or anything :func:`archcalc.load` takes.
        convention: a preset's name or a :class:`archcalc.conventions.Convention`.
        batch: samples (every count scales with it).

    Raises:
        ArchcalcError: an unknown convention (with the presets' names); ShapeError from the shapes.
    """
    from archcalc import conventions
    from archcalc.loading import load

    graph = load(model)
    counted = conventions.count(graph, convention, batch)
    return cumulative(value_dependencies(graph), {graph.nodes[0].name: 0, **counted.per_layer()})

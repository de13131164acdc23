"""Passes over a graph: shapes, parameters, costs, memory and receptive fields.

Each pass is a plain function over ``graph.nodes`` in order that calls the op's rule; a new
op changes no pass. :func:`analyze` composes them into a :class:`~archcalc.report.Analysis`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from archcalc import conventions, figures, formulas
from archcalc import paths as network_paths
from archcalc.conventions import Counted
from archcalc.errors import RuleError, ShapeError, SpecError, check
from archcalc.figures import LayerFacts, NetworkFacts
from archcalc.graph import Graph
from archcalc.loading import load
from archcalc.memory import MODELS as MEMORY_MODELS
from archcalc.memory import peaks as memory_peaks
from archcalc.ops import GLOBAL, POINTWISE, UNKNOWN, Cost, Layer, get_op
from archcalc.report import Analysis, LayerReport, ReceptiveField, Totals, Uncounted


def _attrs_key(op_type: str, attrs: Mapping[str, Any]) -> tuple[Any, ...]:
    """A key equal for equal attributes of one op type; the value's type too: 1 and 1.0 are equal
    keys but print differently. Hashing it raises TypeError for an unhashable value."""
    return (op_type, *((name, type(value), value) for name, value in attrs.items()))


def infer_shapes(graph: Graph) -> dict[str, Layer]:
    """Resolve every node's attributes and output shape; stops at the first shape error.

    Raises:
        ShapeError: naming the layer, the axis and the arithmetic that failed.
    """
    layers = {graph.nodes[0].name: Layer({}, (), graph.input_shape)}
    # Nodes of one type with equal attributes and input shapes (a repeated block's layers) share
    # one Layer: its rules then run once, and a long network holds one copy of each.
    known: dict[tuple[Any, ...], Layer] = {}
    # equal resolved attributes (the same conv at another input size) are held once too
    resolved: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for node in graph.nodes[1:]:
        in_shapes = tuple(layers[ref].out_shape for ref in node.inputs)
        try:
            key = (in_shapes, *_attrs_key(node.type, node.attrs))
            hash(key)
        except TypeError:  # an unhashable attribute value: no sharing for this node
            key = None
        layer = known.get(key) if key is not None else None
        if layer is None:
            try:
                layer = get_op(node.type).infer(node.attrs, in_shapes)
            except RuleError as error:
                prefix = f"spec '{graph.source}': " if graph.source else ""
                raise ShapeError(f"{prefix}{node.label()}: {error}") from None
            if key is not None:
                known[key] = layer
                try:
                    attrs = resolved.setdefault(_attrs_key(node.type, layer.attrs), layer.attrs)
                except TypeError:  # an unhashable resolved value
                    attrs = layer.attrs
                if attrs is not layer.attrs:
                    layer = known[key] = Layer(attrs, layer.in_shapes, layer.out_shape)
        layers[node.name] = layer
    return layers


def stored_outputs(graph: Graph, layers: Mapping[str, Layer] | None = None) -> dict[str, bool]:
    """Whether each node's output needs new storage.

    The input does; views (flatten, identity) never do; an in-place op (ReLU, dropout, add) does
    not when it can overwrite an input that nothing else reads, and does when every input it
    could overwrite is also read by another layer (``relu(c1)`` beside ``add(c1, ...)``: c1's
    values must survive, so the ReLU writes new storage, as a framework would). With ``layers``
    (the shapes), it can overwrite only an input of its output's shape: a broadcasting add of a
    (C, 1, 1) tensor cannot hold its (C, H, W) sum in that tensor.
    """
    # a view's values are its input's: follow views back to the tensor they show
    value_of: dict[str, str] = {}
    readers: dict[str, set[str]] = {}  # tensor -> the layers that read it, through views or not
    for node in graph:
        op = get_op(node.type) if node.inputs else None
        value_of[node.name] = value_of[node.inputs[0]] if op is not None and op.view else node.name
        if op is not None and not op.view:
            for ref in node.inputs:
                readers.setdefault(value_of[ref], set()).add(node.name)
    stores = {}
    for node in graph:
        if not node.inputs:
            stores[node.name] = True
            continue
        op = get_op(node.type)
        overwritable = any(
            readers.get(value_of[ref]) == {node.name}
            and (layers is None or layers[ref].out_shape == layers[node.name].out_shape)
            for ref in node.inputs
        )
        stores[node.name] = op.stores_output or (not op.view and not overwritable)
    return stores


def receptive_fields(graph: Graph, layers: Mapping[str, Layer]) -> dict[str, ReceptiveField]:
    """Every node's receptive field w.r.t. the network input (Distill's recurrences).

    In a DAG a node's field is the largest over its input paths (``size``); ``size_min`` is
    the smallest, and ``aligned`` is false where the merged inputs' centres or jumps differ;
    ``uniform`` is false from a layer whose windows differ in size (adaptive pooling) onwards,
    the size then one that contains every window.

    Axes are followed, not assumed: each tensor axis is known to hold one spatial axis of the
    input (its positions step along it), no spatial axis (channels, a linear layer's units), or
    a mix (merged by a flatten or reshape). An op's window applies to the axes of *its* input,
    the channel axis first, whatever they hold; layout ops (permute, reshape, slice, flatten,
    linear) declare per output axis where it comes from (``axis_map``). Where the pass cannot
    follow an axis (a window along a merged axis; an op that may mix its channel axis, which
    holds a spatial axis after a permute) that axis's field becomes the whole input, flagged
    not ``exact``: an upper bound, stated, never a silently wrong size.
    """
    spatial = graph.input_shape[1:]
    start = tuple(formulas.INPUT_FIELD for _ in spatial)
    first = graph.nodes[0].name
    fields: dict[str, ReceptiveField] = {first: ReceptiveField.of(start, start, True)}
    holds: dict[str, tuple[_Holding, ...]] = {first: (None, *range(len(spatial)))}
    for node in graph.nodes[1:]:
        op = get_op(node.type)
        sources = node.inputs[: op.field_inputs]  # the inputs whose values reach the output (crop: the first)
        inputs = [fields[ref] for ref in sources]
        layer = layers[node.name]
        if any(f.is_global for f in inputs):
            fields[node.name] = ReceptiveField.whole(spatial, all(f.exact for f in inputs))
            holds[node.name] = (None,) * len(layer.out_shape)
            continue
        axis_map = getattr(op, "axis_map", None)  # layout ops say where each output axis comes from
        window = op.window(layer)
        if window in (GLOBAL, UNKNOWN):  # unknown: the whole input, stated as an upper bound
            fields[node.name] = ReceptiveField.whole(spatial, window == GLOBAL and all(f.exact for f in inputs))
            holds[node.name] = (None,) * len(layer.out_shape)
            continue
        if len(inputs) == 1:  # a chain: nothing to merge
            largest, smallest, aligned = inputs[0].path_max, inputs[0].path_min, True
        else:
            largest, smallest = _pick(inputs, max), _pick(inputs, min)
            aligned = all(f.centre == inputs[0].centre and f.stride == inputs[0].stride for f in inputs[1:])
        spread = _broadcast_inputs(inputs, layer) if window == POINTWISE else []
        # an input broadcast over space (an SE gate) gives its one value to every output: when that
        # value saw the whole input, so does every output; when it did not, the outputs' fields are
        # no sliding window (the gate's region joined to each position's): flagged, the largest shown
        if spread and all(_covers(f, spatial) for f in spread):
            fields[node.name] = ReceptiveField.whole(spatial, all(f.exact for f in inputs))
            holds[node.name] = (None,) * len(layer.out_shape)
            continue
        held, clashing = _merged_holdings([holds[ref] for ref in sources])
        if len(held) != len(layer.in_shape):  # inputs of different ranks (a broadcast): nothing is known
            fields[node.name] = ReceptiveField.whole(spatial, exact=False)
            holds[node.name] = (None,) * len(layer.out_shape)
            continue
        if clashing:  # merged tensors lay spatial axes out differently: a unit sees several places
            largest, smallest = (tuple(_whole_axis(n) if i in clashing else f for i, (n, f) in enumerate(zip(spatial, path)))
                                 for path in (largest, smallest))
        uniform = all(f.uniform for f in inputs) and (window == POINTWISE or window.uniform) and not spread
        exact = all(f.exact for f in inputs) and not clashing
        channels = "follow" if axis_map else _channel_axis(op, layer, window, held)
        if not axis_map and window == POINTWISE and channels == "follow" and len(held) == len(layer.out_shape):
            # the unit sees what its input unit saw
            fields[node.name] = inputs[0] if len(inputs) == 1 else _field(
                spatial, largest, smallest, aligned, uniform, held, exact)
            holds[node.name] = held
            continue
        if axis_map:
            steps = [_Step(a.sources, a.kernel, a.stride, 1, a.padding, 1, a.mixed) for a in axis_map(layer)]
        else:
            steps = _window_steps(node, window, layer)
        largest, smallest = list(largest), list(largest) if smallest is largest else list(smallest)
        chain = smallest == largest
        new_held: list[_Holding] = []
        for step in steps:
            if step.mixed or len(step.sources) > 1 or not isinstance(held[step.sources[0]], int):
                content = _spatial_content(held, step.sources)
                if not step.trivial:  # a window along a mix of axes: follow it no further
                    for i in content:
                        largest[i] = smallest[i] = _whole_axis(spatial[i])
                    exact = exact and (step.covers_axis or not content)
                new_held.append(content or None)
                continue
            i = held[step.sources[0]]
            if step.input_dilation > 1 and step.kernel > 1 and (largest[i].size, largest[i].jump) != (1, 1):
                # a window over a zero-inserted input (transposed conv, upsampling) after other windows: the
                # span of its taps counts the inserted positions' in-between fields too, so it holds more
                # pixels than the real taps read (a 2x2 maxpool then a kernel-2 stride-2 transposed conv:
                # 3 where each unit sees 2): an upper bound
                exact = False
            largest[i] = formulas.receptive_field_step(largest[i], *step.arguments)
            smallest[i] = largest[i] if chain else formulas.receptive_field_step(smallest[i], *step.arguments)
            new_held.append(i)
        if channels != "follow":  # the channel axis holds spatial axes and the op may mix along it
            for i in _spatial_content(held, (0,)):
                largest[i] = smallest[i] = _whole_axis(spatial[i])
            exact = exact and channels == "mixes"
            new_held[0] = None
        if len(new_held) != len(layer.out_shape):  # an output rank unaccounted for: nothing is known
            new_held = [None] * len(layer.out_shape)
            largest = smallest = [_whole_axis(n) for n in spatial]
            exact = False
        fields[node.name] = _field(spatial, largest, smallest, aligned, uniform, tuple(new_held), exact)
        holds[node.name] = tuple(new_held)
    return fields


def _field(
    spatial: tuple[int, ...], largest: Any, smallest: Any, aligned: bool, uniform: bool,
    held: tuple[_Holding, ...], exact: bool,
) -> ReceptiveField:
    """The node's field from its per-axis fields: global when every axis is seen whole."""
    if spatial and all(f.jump == 0 for f in largest):
        return ReceptiveField.whole(spatial, exact)
    return ReceptiveField.of(tuple(largest), tuple(smallest), aligned, uniform, _axes_of(held), exact)


#: What one tensor axis holds: a spatial axis of the input (its index), none (channels, units),
#: or a merged mix of spatial axes (a frozenset of their indices).
_Holding = int | frozenset[int] | None


@dataclass(frozen=True, slots=True)
class _Step:
    """One output axis for :func:`receptive_fields`: its source axes and the window along it."""

    sources: tuple[int, ...]
    kernel: int = 1
    stride: Any = 1
    dilation: int = 1
    padding: Any = 0
    input_dilation: int = 1
    mixed: bool = False

    @property
    def arguments(self) -> tuple[Any, ...]:
        """The arguments of :func:`formulas.receptive_field_step` after the field."""
        return self.kernel, self.stride, self.dilation, self.padding, self.input_dilation

    @property
    def trivial(self) -> bool:
        """Whether the step moves nothing: each position stays where it was."""
        return self.arguments == (1, 1, 1, 0, 1)

    @property
    def covers_axis(self) -> bool:
        """Whether every unit sees the whole axis (a linear layer's stride-0 window)."""
        return self.stride == 0 and self.padding == 0


def _window_steps(node: Any, window: Any, layer: Layer) -> list[_Step]:
    """Per output axis of a window (or point-wise) op, its step: the channel axis kept, then the
    window's components on the axes after it, whatever those axes hold."""
    rank = len(layer.in_shape)
    if window == POINTWISE:
        return [_Step((axis,)) for axis in range(rank)]
    if len(window.kernel) != rank - 1:
        raise SpecError(f"{node.label()}: a {len(window.kernel)}D window on an input of {rank - 1} spatial axes")
    dilated = window.input_dilation or (1,) * len(window.kernel)
    steps = [_Step((0,))]
    for axis, (k, s, d, (before, _), di) in enumerate(
        zip(window.kernel, window.stride, window.dilation, window.padding, dilated), start=1
    ):
        steps.append(_Step((axis,), k, s, d, before, di))
    return steps


def _channel_axis(op: Any, layer: Layer, window: Any, held: tuple[_Holding, ...]) -> str:
    """What the op does along its channel axis (axis 0) when that matters: ``"follow"`` when
    the axis holds no spatial axis or the op leaves it alone (an op may declare it,
    :meth:`~archcalc.ops.base.Op.channel_mixing`; undeclared, views and element-wise ops running
    in place leave it alone), ``"mixes"`` when the op declares it mixes all of it, else
    ``"unknown"`` (batchnorm, a conv or a pool given a spatial axis there by a permute)."""
    if not held or not _spatial_content(held, (0,)):
        return "follow"
    declared = op.channel_mixing(layer)
    if declared is not None:
        return "mixes" if declared else "follow"
    return "follow" if window == POINTWISE and not op.stores_output else "unknown"


def _merged_holdings(inputs: list[tuple[_Holding, ...]]) -> tuple[tuple[_Holding, ...], frozenset[int]]:
    """The axes' holdings of a merge's inputs, and the spatial axes they disagree on: equal
    holdings kept, differing ones mixed (inputs of different ranks give the shorter rank: the
    caller then knows nothing)."""
    first = inputs[0]
    if all(h == first for h in inputs[1:]):
        return first, frozenset()
    merged: list[_Holding] = []
    clashing: frozenset[int] = frozenset()
    for axis in range(min(len(h) for h in inputs)):
        values = {h[axis] for h in inputs}
        content = frozenset().union(*(_content(v) for v in values))
        if len(values) > 1:
            clashing |= content
        merged.append(values.pop() if len(values) == 1 else (frozenset(content) or None))
    return tuple(merged), clashing


def _content(holding: _Holding) -> frozenset[int]:
    """The spatial axes one tensor axis holds."""
    if holding is None:
        return frozenset()
    return frozenset((holding,)) if isinstance(holding, int) else holding


def _spatial_content(held: tuple[_Holding, ...], axes: tuple[int, ...]) -> frozenset[int]:
    """The spatial axes the given tensor axes hold, together."""
    return frozenset().union(*(_content(held[a]) for a in axes))


def _axes_of(held: tuple[_Holding, ...]) -> tuple[int | tuple[int, ...] | None, ...]:
    """What each tensor axis holds, as :class:`ReceptiveField` reports it (a mix as a sorted tuple)."""
    return tuple(tuple(sorted(h)) if isinstance(h, frozenset) else h for h in held)


def _whole_axis(size: int) -> formulas.Field:
    """The field of a unit that sees all ``size`` pixels of an axis, as does every other unit."""
    return formulas.Field(size=size, jump=0, padding=0)


def _broadcast_inputs(inputs: list[ReceptiveField], layer: Layer) -> list[ReceptiveField]:
    """The fields of the inputs a pointwise merge broadcasts over a spatial axis (size 1 there, the output larger)."""
    if len(inputs) < 2:
        return []
    return [f for f, shape in zip(inputs, layer.in_shapes) if any(n == 1 < o for n, o in zip(shape[1:], layer.out_shape[1:]))]


def _covers(field: ReceptiveField, spatial: tuple[int, ...]) -> bool:
    """Whether unit 0's field spans the whole input on every axis."""
    return all(f.padding >= 0 and f.size - f.padding >= n for f, n in zip(field.path_max, spatial))


def resolution_dependence(
    graph: Graph, layers: Mapping[str, Layer], fields: Mapping[str, ReceptiveField]
) -> tuple[set[str], set[str]]:
    """The nodes whose resolved attributes depend on their input size, and the nodes whose
    receptive field does.

    A layer depends when :meth:`~archcalc.ops.base.Op.size_dependence` names an attribute (a
    "same" padding with a stride: MobileNetV1's first conv pads 0 before at 224 and 1 at 225).
    Its field depends when such an attribute moves the field (the padding before, which sets
    the effective padding and centre), or an input's field depends; a global field never does.
    """
    # a Layer shared by several nodes (see infer_shapes) had equal attributes: ask once
    known: dict[int, tuple[bool, bool]] = {}
    layer_depends: set[str] = set()
    field_depends: set[str] = set()
    for node in graph.nodes[1:]:
        layer = layers[node.name]
        if id(layer) not in known:
            dependences = get_op(node.type).size_dependence(node.attrs, layer)
            known[id(layer)] = (bool(dependences), any(d.moves_field for d in dependences))
        depends, moves_field = known[id(layer)]
        if depends:
            layer_depends.add(node.name)
        if not fields[node.name].is_global and (moves_field or any(ref in field_depends for ref in node.inputs)):
            field_depends.add(node.name)
    return layer_depends, field_depends


def _pick(inputs: list[ReceptiveField], choose: type[max] | type[min]) -> tuple[formulas.Field, ...]:
    """Per axis, the input field with the largest (or smallest) size."""
    paths = [f.path_max if choose is max else f.path_min for f in inputs]
    return tuple(choose(axis, key=lambda field: field.size) for axis in zip(*paths))


def _figures(node: Any, layer: Layer, batch: int, dtype: str, convention: Counted | None) -> tuple[str, tuple[Any, ...]]:
    """One node's summary and its figures for a batch (``convention``: the counts of a preset
    other than archcalc's, whose count is the MACs)."""
    if not node.inputs:  # the network input: stored, no parameters, no cost
        facts = LayerFacts(layer, {}, Cost(), batch, dtype)
        return "", figures.layer_values(facts)
    op = get_op(node.type)
    cost = op.cost(layer)
    count = cost.macs if convention is None else convention.layers[node.name].forward
    facts = LayerFacts(layer, op.params(layer), cost, batch, dtype, count)
    return op.summary(layer), figures.layer_values(facts)


def analyze(model: Any, batch: int = 1, dtype: str = "float32", optimizer: str = "sgd", paths: bool = False,
            memory_model: str = "pytorch", convention: str = "archcalc") -> Analysis:
    """Run every pass and collect per-layer figures and totals for a batch.

    Args:
        model: the network: a Graph from :func:`archcalc.load`, or anything it takes.
        batch: samples per batch; MACs and activations scale with it, parameters don't.
        dtype: one of ``float32``, ``float16``, ``bfloat16``, ``int8`` (bytes per value).
        optimizer: ``sgd``, ``momentum`` or ``adam``, for the training-memory total.
        paths: also count the input-to-output paths and their lengths (:func:`archcalc.paths.paths`);
            the depth as papers count it is always there.
        memory_model: what ``totals.training_bytes`` follows: ``pytorch`` (parameters, gradients and
            optimizer state + the storages autograd keeps for backward + the largest transient,
            :mod:`archcalc.memory`) or ``lecture`` (2 x the forward activations instead); the totals
            carry both as ``pytorch_training_bytes`` and ``lecture_training_bytes``.
        convention: the counting convention of the ``convention_count`` figure: ``archcalc``
            (MACs, CONVENTIONS.md) or a peer tool's preset (:mod:`archcalc.conventions`).

    Raises:
        ShapeError: at the first layer whose shapes do not work out.
        ArchcalcError: for a bad batch, dtype, optimizer, memory model or convention.
    """
    check(
        isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1,
        lambda: f"batch must be a positive int, got {batch!r}",
        SpecError,
    )
    check(
        dtype in formulas.DTYPE_BYTES,
        lambda: f"dtype must be one of {', '.join(formulas.DTYPE_BYTES)}, got {dtype!r}",
        SpecError,
    )
    check(
        optimizer in formulas.OPTIMIZER_SLOTS,
        lambda: f"optimizer must be one of {', '.join(formulas.OPTIMIZER_SLOTS)}, got {optimizer!r}",
        SpecError,
    )
    check(memory_model in MEMORY_MODELS,
          lambda: f"memory model must be one of {', '.join(MEMORY_MODELS)}, got {memory_model!r}", SpecError)
    preset = conventions.get(convention)
    graph = load(model)
    layers = infer_shapes(graph)
    # archcalc's own count is the MACs; another preset's, with its backward, is counted per node
    counted = None if preset.name == "archcalc" else conventions.count_layers(preset, graph, layers, 1)
    fields = receptive_fields(graph, layers)
    layer_depends, field_depends = resolution_dependence(graph, layers, fields)
    marked: dict[int, ReceptiveField] = {}  # one marked copy of a field shared by several nodes
    rows = []
    # a Layer shared by several nodes (see infer_shapes) has its figures worked out once
    known: dict[int, tuple[str, tuple[Any, ...]]] = {}
    stores = stored_outputs(graph, layers)
    for node in graph:
        layer = layers[node.name]
        summary, values = (known.get(id(layer))
                           or known.setdefault(id(layer), _figures(node, layer, batch, dtype, counted)))
        field = fields[node.name]
        if node.name in field_depends:
            field = marked.get(id(field)) or marked.setdefault(id(field), replace(field, resolution_dependent=True))
        rows.append(LayerReport(node.name, node.type, node.inputs, node.scope, summary, layer.attrs, stores[node.name],
                                field, values, resolution_dependent=node.name in layer_depends))
    peaks = memory_peaks(graph, layers, batch, dtype, stores)
    totals = Totals(figures.totals(rows, NetworkFacts(batch, dtype, optimizer, memory_model, peaks)))
    return Analysis(graph.name, graph.input_shape, batch, dtype, optimizer, tuple(rows), totals, graph.description,
                    graph.warnings, network_paths.depth(graph, layers),
                    network_paths.paths(graph, layers) if paths else None, uncounted(graph), memory_model, peaks,
                    preset.name, None if counted is None or not preset.counts_backward else counted.backward * batch)


def input_grad_needed(graph: Graph, layers: Mapping[str, Layer]) -> dict[str, bool]:
    """Whether backward computes each layer's input gradient, by node name (the input node excluded).

    A tensor needs a gradient when a learned parameter is upstream of it: the layer's own or an
    input's. A layer's input gradient is computed when one of its inputs needs a gradient, so
    the first conv's is not (the network input does not require one), nor that of a pool or
    reshape between the input and the first layer with parameters: PyTorch's autograd skips
    them (``needs_input_grad`` false), as every framework does.
    """
    requires: dict[str, bool] = {graph.nodes[0].name: False}
    needed: dict[str, bool] = {}
    # a Layer shared by several nodes has equal parameters: ask its op once
    learned: dict[int, bool] = {}
    for node in graph.nodes[1:]:
        layer = layers[node.name]
        if id(layer) not in learned:
            learned[id(layer)] = any(p.role.learned for p in get_op(node.type).params(layer).values())
        needed[node.name] = any(requires[ref] for ref in node.inputs)
        requires[node.name] = needed[node.name] or learned[id(layer)]
    return needed


def uncounted(graph: Graph) -> tuple[Uncounted, ...]:
    """The stand-in layers of a partial import (ops no rule counts), by source op, in order of
    first appearance."""
    found: dict[str, list[Any]] = {}
    for node in graph.nodes[1:]:
        if get_op(node.type).stand_in:
            op = str(node.attrs.get("op", node.type))
            found.setdefault(op, [0, node.name])[0] += 1
    return tuple(Uncounted(op, count, first) for op, (count, first) in found.items())

"""The memory model: what training keeps for backward, its timeline and peak, the inference peak
with buffer reuse, and the largest batch that fits.

Two models of training memory (``--memory-model``):

- ``pytorch`` (the default wherever a training figure is printed: :func:`archcalc.analyze`'s
  totals through :func:`peaks`, the report's footer, JSON, ``compare``): parameters and buffers +
  gradients + optimizer state + the activation side's peak, walked step by step. The activation side is every storage autograd keeps
  for backward (each op's :meth:`~archcalc.ops.base.Op.saved`: inputs, outputs, new buffers such as
  max-pool's int64 indices; a storage kept by two ops, or seen through a view, counts once;
  parameters are not counted again), plus the tensors forward still needs, plus the gradient
  buffers live in backward. Layers run out of place, as the tests' torch oracle runs them; an
  in-place activation may only overwrite a tensor nobody keeps, so in-place layers keep the same
  bytes (their output is the storage of an input nobody keeps) and lower only forward transients.
- ``lecture``: the lecture's rule of thumb, parameters + gradients + optimizer state + 2 x the
  forward activations ("~*2 for bwd"), :func:`archcalc.formulas.training_bytes`.

Every byte count here is linear in the batch: a tensor is ``per_sample * batch + fixed`` bytes
(batchnorm's per-channel statistics are fixed), so the timeline is worked out once and evaluated at
any batch, which is how :func:`fit` searches. Excluded, as stated wherever a figure is shown: the
framework's workspace (im2col buffers, cuDNN scratch), allocator fragmentation and caching, the
CUDA context, and the loss' own tensors.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from archcalc import formulas
from archcalc.errors import SpecError, check
from archcalc.graph import Graph
from archcalc.loading import load
from archcalc.ops import UNKNOWN, Layer, Saved, get_op

#: Bytes per value of the dtypes ops keep besides the analysis' own.
EXTRA_DTYPE_BYTES = {"int64": 8, "bool": 1}

#: The memory models ``--memory-model`` names.
MODELS = ("pytorch", "lecture")

#: What no figure here counts, in words (reports print it beside the figures).
EXCLUDED = ("framework workspace (im2col, cuDNN scratch), allocator fragmentation and caching, the CUDA context "
            "and the loss' own tensors")


@dataclass(frozen=True, slots=True)
class Linear:
    """Bytes as a function of the batch: ``per_sample * batch + fixed``."""

    per_sample: int = 0
    fixed: int = 0

    def at(self, batch: int) -> int:
        """The bytes at ``batch`` samples."""
        return self.per_sample * batch + self.fixed

    def __add__(self, other: Linear) -> Linear:
        return Linear(self.per_sample + other.per_sample, self.fixed + other.fixed)


ZERO = Linear()


@dataclass(frozen=True, slots=True)
class Kept:
    """One tensor a layer keeps for backward: the op's :class:`~archcalc.ops.Saved`, the storage it
    lives in (a node's name for inputs and outputs, views followed back; ``"<node>#<i>"`` for a new
    buffer; ``"<node>.<param>"`` for a parameter), its bytes at the batch, and whether an earlier
    layer already kept that storage (then it adds nothing)."""

    saved: Saved
    storage: str
    bytes: int
    shared: bool


@dataclass(frozen=True, slots=True)
class LayerMemory:
    """One layer's memory figures at the batch.

    ``kept``: what its backward keeps; ``kept_bytes``: the bytes of the storages first kept here
    (summed over layers: the distinct storages kept, each once); ``forward_live`` and
    ``backward_live``: activation-side bytes live after its forward step and after its backward
    step (None when it has no backward: nothing before it needs a gradient); ``unknown``: an
    imported stand-in whose saved tensors archcalc cannot know (counted as nothing)."""

    name: str
    type: str
    kept: tuple[Kept, ...]
    kept_bytes: int
    forward_live: int
    backward_live: int | None
    unknown: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """One point of the timeline: after ``layer``'s forward or backward step, the activation-side
    bytes live (``live``) and the most live while it ran (``peak``: its inputs, its output and,
    in backward, the gradients it reads and writes)."""

    phase: str
    layer: str
    live: int
    peak: int


@dataclass(frozen=True, slots=True)
class Memory:
    """The memory model of one network at one batch, dtype and optimizer (bytes throughout).

    ``params_bytes`` (parameters and buffers), ``gradient_bytes``, ``optimizer_bytes``: the fixed
    part of training. ``saved_bytes``: distinct storages kept for backward. ``activation_peak``: the
    activation side's peak over the training timeline (at ``peak_layer``, in ``peak_phase``);
    ``transient_bytes`` = activation_peak - saved_bytes, what the backward pass (its gradient
    buffers) and forward's passing tensors add at the worst point. ``training_bytes`` = fixed part +
    activation_peak; ``lecture_training_bytes``: the lecture's rule for comparison.
    ``inference_peak`` (at ``inference_peak_layer``): forward only, each tensor freed after its last
    reader, in-place layers and views allocating nothing; ``inference_no_reuse``: every output kept
    (the forward activations total). ``unknown``: stand-in layers whose saved tensors are unknown.
    """

    name: str
    batch: int
    dtype: str
    optimizer: str
    params_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    saved_bytes: int
    activation_peak: int
    peak_layer: str
    peak_phase: str
    training_bytes: int
    lecture_training_bytes: int
    inference_peak: int
    inference_peak_layer: str
    inference_no_reuse: int
    layers: tuple[LayerMemory, ...]
    timeline: tuple[Step, ...]
    inference_timeline: tuple[Step, ...]
    unknown: tuple[str, ...]

    @property
    def transient_bytes(self) -> int:
        """What the timeline's worst point holds beyond the kept storages."""
        return self.activation_peak - self.saved_bytes

    @property
    def fixed_bytes(self) -> int:
        """Parameters and buffers + gradients + optimizer state."""
        return self.params_bytes + self.gradient_bytes + self.optimizer_bytes


def itemsize(dtype: str | None, analysis_dtype: str) -> int:
    """Bytes per value of a kept tensor: the analysis' dtype when None, else int64 or bool."""
    if dtype is None:
        return formulas.DTYPE_BYTES[analysis_dtype]
    return EXTRA_DTYPE_BYTES.get(dtype) or formulas.DTYPE_BYTES[dtype]


@dataclass(frozen=True, slots=True)
class _Rule:
    """What :class:`_Plan` needs of one resolved layer, from its op's rules: its output's bytes per
    sample, whether it is a view, whether it has learned parameters, what it saves, which of its
    inputs it keeps (-1: its output), and its new buffers (which saved tensor, bytes)."""

    bytes: int
    view: bool
    learned: bool
    saved: tuple[Saved, ...] | str
    keeps: tuple[int, ...]
    buffers: tuple[tuple[int, Linear], ...]

    @classmethod
    def of(cls, node: Any, layer: Layer, size: int, dtype: str) -> _Rule:
        out = math.prod(layer.out_shape) * size
        if not node.inputs:  # the network input
            return cls(out, False, False, (), (), ())
        op = get_op(node.type)
        learned = any(p.role.learned for p in op.params(layer).values())
        saved = op.saved(layer)
        keeps, buffers = [], []
        for j, s in enumerate(saved if saved != UNKNOWN else ()):
            if s.kind == "input" or s.kind == "output":
                keeps.append(s.index if s.kind == "input" else -1)
            elif s.kind != "param":  # parameters are counted as parameters
                per = math.prod(s.shape) * itemsize(s.dtype, dtype)
                buffers.append((j, Linear(per, 0) if s.batched else Linear(0, per)))
        return cls(out, bool(op.view), learned, saved, tuple(keeps), tuple(buffers))


class _Plan:
    """The batch-independent walk, worked out once per network in lists indexed by node position
    (linear in the layer count, a few machine words per layer): per storage its bytes per sample,
    its readers and its first keeper; per layer whether it needs a gradient and what it keeps. The
    timelines are sums of lifetimes (spans of steps), added up in one sweep.

    A node's own storage is identified by its position; a view's output lives in its input's
    storage (``root``); a new buffer (max-pool's indices) is its own storage, born at its layer.
    The ops' rules run once per distinct resolved layer (repeated blocks share them)."""

    def __init__(self, graph: Graph, layers: Mapping[str, Layer], dtype: str,
                 stores: Mapping[str, bool] | None = None):
        from archcalc.passes import stored_outputs

        self.graph, self.layers, self.dtype = graph, layers, dtype
        size = formulas.DTYPE_BYTES[dtype]
        nodes = graph.nodes
        count = len(nodes)
        index = {node.name: i for i, node in enumerate(nodes)}
        self.index = index
        # per node: its storage (views: their input's), its output's bytes per sample, whether it
        # needs a gradient (a layer after one with learned parameters); per storage: its first and
        # last reader (views read nothing: their readers are the storage's), its first keeper
        # positions in arrays of machine words (no int object per layer); bytes as Python ints
        root, per_sample, grad, views = array("q", range(count)), [0] * count, bytearray(count), bytearray(count)
        first_reader, last_reader, first_keeper = (array("q", [-1]) * count for _ in range(3))
        first_input = array("q", [0]) * count  # each node's first input; the others of a merge in more_inputs
        more_inputs: dict[int, list[int]] = {}
        #: new buffers: (keeper's position, which of its saved tensors, bytes)
        buffers: list[tuple[int, int, Linear]] = []
        # per distinct Layer (repeated blocks share one), its rules worked out once: output bytes per
        # sample, view?, learned parameters?, saved, the kept inputs (-1: the output), the new buffers
        rules: dict[int, _Rule] = {}
        unknown: list[str] = []
        for i, node in enumerate(nodes):
            layer = layers[node.name]
            rule = rules.get(id(layer))
            if rule is None:
                rule = rules[id(layer)] = _Rule.of(node, layer, size, dtype)
            per_sample[i] = rule.bytes
            inputs = node.inputs
            if not inputs:
                continue
            if len(inputs) == 1:
                refs = [index[inputs[0]]]
                first_input[i] = refs[0]
                needs = grad[refs[0]]
            else:
                refs = [index[ref] for ref in inputs]
                first_input[i] = refs[0]
                more_inputs[i] = refs
                needs = any(grad[ref] for ref in refs)
            if rule.view:
                root[i] = root[refs[0]]
                views[i] = 1
            else:
                for ref in refs:
                    storage = root[ref]
                    if first_reader[storage] < 0:
                        first_reader[storage] = i
                    last_reader[storage] = i
            grad[i] = rule.learned or needs
            if rule.saved == UNKNOWN:
                unknown.append(node.name)  # counted as keeping nothing
            if not grad[i]:  # autograd records nothing for a layer that needs no gradient
                continue
            for which in rule.keeps:
                storage = root[refs[which]] if which >= 0 else root[i]
                if first_keeper[storage] < 0:
                    first_keeper[storage] = i
            for j, b in rule.buffers:
                buffers.append((i, j, b))
        self.first_input, self.more_inputs = first_input, more_inputs
        self.root, self.per_sample, self.grad, self.views = root, per_sample, grad, views
        self.first_reader, self.last_reader, self.first_keeper = first_reader, last_reader, first_keeper
        self.buffers, self.rules, self.unknown = buffers, rules, unknown
        self.stores = stored_outputs(graph, layers) if stores is None else stores

    # -- what is kept ----------------------------------------------------------------------------
    def kept_bytes(self) -> Linear:
        """The distinct storages kept for backward."""
        per = sum(self.per_sample[s] for s, keeper in enumerate(self.first_keeper) if keeper >= 0 and self.root[s] == s)
        total = Linear(per, 0)
        for _, _, b in self.buffers:
            total += b
        return total

    def kept(self, i: int) -> list[tuple[Saved, Any, Linear]]:
        """What layer ``i`` keeps: (the op's Saved, its storage's key, bytes) per tensor; a storage
        key is a node's position, ``("buffer", node, j)`` or ``("param", node, name)``."""
        node = self.graph.nodes[i]
        if not node.inputs or not self.grad[i]:
            return []
        saved = self.rules[id(self.layers[node.name])].saved
        out: list[tuple[Saved, Any, Linear]] = []
        if saved == UNKNOWN:
            return out
        for j, s in enumerate(saved):
            if s.kind == "input" or s.kind == "output":
                storage = self.root[self.index[node.inputs[s.index]]] if s.kind == "input" else self.root[i]
                out.append((s, storage, Linear(self.per_sample[storage], 0)))
            elif s.kind == "param":
                out.append((s, ("param", node.name, s.name), ZERO))
            else:
                out.append((s, ("buffer", node.name, j), self._buffer(s)))
        return out

    def _buffer(self, s: Saved) -> Linear:
        per = math.prod(s.shape) * itemsize(s.dtype, self.dtype)
        return Linear(per, 0) if s.batched else Linear(0, per)

    # -- training ---------------------------------------------------------------------------
    def _training_spans(self, phase: str) -> Iterator[tuple[int, int, int, int, int, int]]:
        """The lifetimes that make up one phase's timeline, as (first step live, last step live,
        first step counted in the peak, last step counted in the peak, bytes per sample, fixed
        bytes); steps are node positions (backward runs them in reverse)."""
        count = len(self.graph.nodes)
        last = count - 1
        output = self.root[last]
        root, per_sample, first_keeper, last_reader = self.root, self.per_sample, self.first_keeper, self.last_reader
        if phase == "forward":
            # a storage is allocated at its producer's step (a new buffer at its layer's) and lives
            # while a later layer reads it, while it is kept, or as the network's output
            for s in range(count):
                if root[s] != s:
                    continue
                if first_keeper[s] >= 0 or s == output:
                    yield s, last, s, last, per_sample[s], 0
                else:
                    until = last_reader[s] if last_reader[s] >= 0 else s
                    yield s, until - 1, s, until, per_sample[s], 0
            for keeper, _, b in self.buffers:
                yield keeper, last, keeper, last, b.per_sample, b.fixed
            return
        # backward, in reverse: a kept storage lives until its earliest keeper's backward ran; the
        # gradient of a tensor exists from its last reader's backward (the network output's from the
        # start) until its producer's backward ran
        for s in range(count):
            if root[s] == s and first_keeper[s] >= 0:
                yield first_keeper[s] + 1, last, first_keeper[s], last, per_sample[s], 0
        for keeper, _, b in self.buffers:
            yield keeper + 1, last, keeper, last, b.per_sample, b.fixed
        grad = self.grad
        for s in range(count):
            if not grad[s] or root[s] != s:  # no gradient, or a view's (its input's)
                continue
            first = last if s == output else (last_reader[s] if last_reader[s] >= 0 else s)
            yield s + 1, first, s, first, per_sample[s], 0

    def training_steps(self) -> list[tuple[str, str, Linear, Linear]]:
        """(phase, layer, live after, peak during) for every forward then backward step."""
        nodes = self.graph.nodes
        steps = []
        for phase in ("forward", "backward"):
            live, peak = _sweep(len(nodes), self._training_spans(phase))
            order = range(len(nodes)) if phase == "forward" else (i for i in range(len(nodes) - 1, 0, -1) if self.grad[i])
            steps += [(phase, nodes[i].name, live[i], peak[i]) for i in order]
        return steps

    def training_peak(self, batch: int) -> tuple[int, str, str]:
        """The training timeline's largest peak at ``batch``, its layer and phase (the first such
        step: forward in order, then backward in reverse), without building the timeline."""
        nodes = self.graph.nodes
        best, where = -1, ("", "")
        for phase in ("forward", "backward"):
            peak = _sweep_at(len(nodes), self._training_spans(phase), batch)
            order = range(len(nodes)) if phase == "forward" else (i for i in range(len(nodes) - 1, 0, -1) if self.grad[i])
            for i in order:
                if peak[i] > best:
                    best, where = peak[i], (nodes[i].name, phase)
        return best, *where

    # -- inference --------------------------------------------------------------------------
    def _inference_lifetimes(self) -> tuple[array[int], array[int]]:
        """The forward pass alone with buffer reuse: per node the storage its output lives in (its
        own position when it allocates one), and per allocated storage the step after which it is
        freed (its last reader; past the last step for the network's output)."""
        nodes = self.graph.nodes
        count = len(nodes)
        last = count - 1
        root, stores, views = self.root, self.stores, self.views
        first_reader, last_reader, first_input, more_inputs = (self.first_reader, self.last_reader, self.first_input,
                                                               self.more_inputs)
        storage_of = array("q", range(count))
        until = array("q", [-1]) * count  # per storage allocated here (storage_of[s] == s): its last reader
        for i, node in enumerate(nodes):
            if not node.inputs:
                until[i] = i
                continue
            refs = more_inputs.get(i) or (first_input[i],)
            if views[i]:
                storage_of[i] = storage_of[refs[0]]
            elif not stores[node.name]:
                # in place: it overwrites an input of its shape that no other layer reads
                # (passes.stored_outputs' rule, so one exists)
                shape = self.layers[node.name].out_shape
                target = next(ref for ref in refs if first_reader[root[ref]] == last_reader[root[ref]] == i
                              and self.layers[nodes[ref].name].out_shape == shape)
                storage_of[i] = storage_of[target]
            else:
                until[i] = i
            for ref in refs:
                if until[storage_of[ref]] < i:
                    until[storage_of[ref]] = i
        until[storage_of[last]] = last + 1
        return storage_of, until

    def _inference_spans(self, storage_of: array[int], until: array[int]) -> Iterator[tuple[int, int, int, int, int, int]]:
        """Each allocated storage's lifetime, as :meth:`_training_spans` gives them."""
        last = len(storage_of) - 1
        for s, where in enumerate(storage_of):
            if where == s:
                yield s, min(until[s] - 1, last), s, min(until[s], last), self.per_sample[s], 0

    def _no_reuse(self, storage_of: array[int]) -> int:
        """Bytes per sample of every allocated storage: every output kept."""
        return sum(self.per_sample[s] for s, where in enumerate(storage_of) if where == s)

    def inference_steps(self) -> tuple[list[tuple[str, str, Linear, Linear]], Linear]:
        """(phase, layer, live after, peak during) of the forward pass alone with buffer reuse, and
        the no-reuse total (every storage kept)."""
        nodes = self.graph.nodes
        storage_of, until = self._inference_lifetimes()
        live, peak = _sweep(len(nodes), self._inference_spans(storage_of, until))
        steps = [("forward", node.name, live[i], peak[i]) for i, node in enumerate(nodes)]
        return steps, Linear(self._no_reuse(storage_of), 0)

    def inference_peak(self, batch: int) -> tuple[int, str, int]:
        """The inference peak with buffer reuse at ``batch``, its layer, and the no-reuse total."""
        nodes = self.graph.nodes
        storage_of, until = self._inference_lifetimes()
        peak = _sweep_at(len(nodes), self._inference_spans(storage_of, until), batch)
        best = max(range(len(nodes)), key=peak.__getitem__)
        return peak[best], nodes[best].name, self._no_reuse(storage_of) * batch


def _storage_name(plan: _Plan, key: Any) -> str:
    """A storage key as :class:`Kept` shows it: a node's name, ``node.param`` or ``node#i``."""
    if isinstance(key, tuple):
        kind, node, which = key
        return f"{node}.{which}" if kind == "param" else f"{node}#{which}"
    return plan.graph.nodes[key].name


def _sweep(count: int, spans: Iterable[tuple[int, int, int, int, int, int]]) -> tuple[list[Linear], list[Linear]]:
    """Per step 0..count-1, the bytes live and counted in the peak: the sums of the spans covering
    it (see :meth:`_Plan._training_spans`), as :class:`Linear`."""
    live_a, live_c, peak_a, peak_c = ([0] * (count + 1) for _ in range(4))
    for first, last, peak_first, peak_last, per_sample, fixed in spans:
        if first <= last:
            live_a[first] += per_sample
            live_a[last + 1] -= per_sample
            live_c[first] += fixed
            live_c[last + 1] -= fixed
        if peak_first <= peak_last:
            peak_a[peak_first] += per_sample
            peak_a[peak_last + 1] -= per_sample
            peak_c[peak_first] += fixed
            peak_c[peak_last + 1] -= fixed
    return _running(live_a, live_c, count), _running(peak_a, peak_c, count)


def _running(per_sample: list[int], fixed: list[int], count: int) -> list[Linear]:
    out, a, c = [], 0, 0
    for i in range(count):
        a, c = a + per_sample[i], c + fixed[i]
        out.append(Linear(a, c))
    return out


def _sweep_at(count: int, spans: Iterable[tuple[int, int, int, int, int, int]], batch: int) -> list[int]:
    """The peak column of :func:`_sweep` at one batch, as plain ints (one list, no objects per step)."""
    diff = [0] * (count + 1)
    for _, _, first, last, per_sample, fixed in spans:
        if first <= last:
            b = per_sample * batch + fixed
            diff[first] += b
            diff[last + 1] -= b
    total = 0
    for i in range(count):
        total += diff[i]
        diff[i] = total
    return diff


def _fixed(graph: Graph, layers: Mapping[str, Layer], dtype: str, optimizer: str) -> tuple[int, int, int]:
    """(params and buffers, gradients, optimizer state) in bytes."""
    stored = trainable = 0
    counted: dict[int, tuple[int, int]] = {}  # per distinct Layer (repeated blocks share one)
    for node in graph.nodes[1:]:
        layer = layers[node.name]
        sizes = counted.get(id(layer))
        if sizes is None:
            tensors = get_op(node.type).params(layer).values()
            sizes = counted[id(layer)] = (sum(p.size for p in tensors), sum(p.size for p in tensors if p.trainable))
        stored += sizes[0]
        trainable += sizes[1]
    size = formulas.DTYPE_BYTES[dtype]
    return stored * size, trainable * size, trainable * formulas.OPTIMIZER_SLOTS[optimizer] * size


@dataclass(frozen=True, slots=True)
class Peaks:
    """The pytorch model's network figures at one batch, without the per-layer rows and timelines
    (what :func:`archcalc.analyze` reports; :class:`Memory` has the same figures under the same
    names). Bytes of the activation side: parameters, gradients and optimizer state are apart."""

    saved_bytes: int
    activation_peak: int
    peak_layer: str
    peak_phase: str
    inference_peak: int
    inference_peak_layer: str
    inference_no_reuse: int

    @property
    def transient_bytes(self) -> int:
        """What the training timeline's worst step holds beyond the kept storages."""
        return self.activation_peak - self.saved_bytes


def peaks(graph: Graph, layers: Mapping[str, Layer], batch: int, dtype: str,
          stores: Mapping[str, bool] | None = None) -> Peaks:
    """:class:`Peaks` of a network whose shapes are inferred (``layers``; ``stores``:
    :func:`archcalc.passes.stored_outputs`, worked out when None), in time and memory linear in
    the layer count: the timelines are summed in lists of ints and only their maxima kept."""
    plan = _Plan(graph, layers, dtype, stores)
    peak, layer, phase = plan.training_peak(batch)
    inference, inference_layer, no_reuse = plan.inference_peak(batch)
    return Peaks(plan.kept_bytes().at(batch), peak, layer, phase, inference, inference_layer, no_reuse)


def _check(batch: int, dtype: str, optimizer: str) -> None:
    check(isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1,
          lambda: f"batch must be a positive int, got {batch!r}", SpecError)
    check(dtype in formulas.DTYPE_BYTES, lambda: f"dtype must be one of {', '.join(formulas.DTYPE_BYTES)}, got {dtype!r}",
          SpecError)
    check(optimizer in formulas.OPTIMIZER_SLOTS,
          lambda: f"optimizer must be one of {', '.join(formulas.OPTIMIZER_SLOTS)}, got {optimizer!r}", SpecError)


def _plan(model: Any, dtype: str) -> _Plan:
    from archcalc.passes import infer_shapes

    graph = load(model)
    return _Plan(graph, infer_shapes(graph), dtype)


def memory(model: Any, batch: int = 1, dtype: str = "float32", optimizer: str = "sgd") -> Memory:
    """The memory model of a network at a batch (see the module docstring for what it counts).

    Raises:
        ShapeError: at the first layer whose shapes do not work out.
        SpecError: for a bad batch, dtype or optimizer.
    """
    _check(batch, dtype, optimizer)
    plan = _plan(model, dtype)
    return _evaluate(plan, batch, optimizer)


def _evaluate(plan: _Plan, batch: int, optimizer: str) -> Memory:
    graph, dtype = plan.graph, plan.dtype
    params, grads, slots = _fixed(graph, plan.layers, dtype, optimizer)
    steps = [(phase, name, live.at(batch), peak.at(batch)) for phase, name, live, peak in plan.training_steps()]
    timeline = tuple(Step(*s) for s in steps)
    worst = max(timeline, key=lambda s: s.peak)
    inference, no_reuse = plan.inference_steps()
    inference_timeline = tuple(Step(phase, name, live.at(batch), peak.at(batch)) for phase, name, live, peak in inference)
    inference_worst = max(inference_timeline, key=lambda s: s.peak)
    forward_live = {s.layer: s.live for s in timeline if s.phase == "forward"}
    backward_live = {s.layer: s.live for s in timeline if s.phase == "backward"}
    rows, seen, unknown = [], set(), set(plan.unknown)
    for i, node in enumerate(graph.nodes[1:], start=1):
        kept = []
        for saved, storage, b in plan.kept(i):
            kept.append(Kept(saved, _storage_name(plan, storage), b.at(batch), storage in seen or saved.kind == "param"))
            seen.add(storage)
        rows.append(LayerMemory(node.name, node.type, tuple(kept), sum(k.bytes for k in kept if not k.shared),
                                forward_live[node.name], backward_live.get(node.name), node.name in unknown))
    # the lecture's rule (analyze's lecture_training_bytes): 2 x the input and every stored output
    size = formulas.DTYPE_BYTES[dtype]
    lecture = formulas.training_bytes(params // size, grads // size, _stored_values(plan), batch, dtype, optimizer)
    return Memory(graph.name, batch, dtype, optimizer, params, grads, slots, plan.kept_bytes().at(batch), worst.peak,
                  worst.layer, worst.phase, params + grads + slots + worst.peak, lecture, inference_worst.peak,
                  inference_worst.layer, no_reuse.at(batch), tuple(rows), timeline, inference_timeline,
                  tuple(plan.unknown))


def _stored_values(plan: _Plan) -> int:
    """Values per sample of the input and every output that needs new storage (the forward total)."""
    return sum(math.prod(plan.layers[node.name].out_shape) for node in plan.graph.nodes if plan.stores[node.name])


@dataclass(frozen=True, slots=True)
class Fit:
    """The largest batches that fit ``limit`` bytes: ``training`` (by the pytorch model, or the
    lecture's with ``model="lecture"``) and ``inference`` (the peak with buffer reuse); 0 when not
    even one sample fits. ``assumptions`` says what the figures include and exclude."""

    limit: int
    dtype: str
    optimizer: str
    model: str
    training: int
    inference: int
    training_bytes: int
    inference_bytes: int
    assumptions: str


#: The largest batch :func:`fit` reports (past it, the answer is "at least this").
MAX_FIT_BATCH = 2**40


def fit(model: Any, limit: int, dtype: str = "float32", optimizer: str = "sgd", memory_model: str = "pytorch") -> Fit:
    """The largest batch whose training peak (and, apart, whose inference peak) fits ``limit``
    bytes, by the same model as :func:`memory` (every figure is linear in the batch, so the peak
    at a batch is a maximum of lines: a binary search finds the batch exactly).

    Raises:
        SpecError: for a bad limit, dtype, optimizer or memory model.
    """
    check(isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1,
          lambda: f"memory limit must be a positive number of bytes, got {limit!r}", SpecError)
    check(memory_model in MODELS, lambda: f"memory model must be one of {', '.join(MODELS)}, got {memory_model!r}",
          SpecError)
    _check(1, dtype, optimizer)
    plan = _plan(model, dtype)
    params, grads, slots = _fixed(plan.graph, plan.layers, dtype, optimizer)
    fixed = params + grads + slots
    if memory_model == "lecture":  # 2 x the forward activations per sample (formulas.training_bytes)
        train_lines = [Linear(formulas.training_bytes(0, 0, _stored_values(plan), 1, dtype, optimizer), fixed)]
    else:
        train_lines = [peak + Linear(0, fixed) for _, _, _, peak in plan.training_steps()]
    inference_lines = [peak + Linear(0, params) for _, _, _, peak in plan.inference_steps()[0]]
    training = _largest(train_lines, limit)
    inference = _largest(inference_lines, limit)
    at = lambda lines, b: max(line.at(max(b, 1)) for line in lines)  # noqa: E731
    assumptions = (f"{dtype} throughout; training: parameters and buffers + gradients + {optimizer} state + "
                   + ("2 x the forward activations (the lecture's rule)" if memory_model == "lecture" else
                      "the storages autograd keeps for backward and the gradient buffers at the worst step (PyTorch's "
                      "autograd, layers out of place)")
                   + "; inference: the parameters and buffers + the live activations with buffer reuse (no gradients); "
                   + f"excluded: {EXCLUDED}")
    return Fit(limit, dtype, optimizer, memory_model, training, inference, at(train_lines, training),
               at(inference_lines, inference), assumptions)


def _largest(lines: list[Linear], limit: int) -> int:
    """The largest batch b <= MAX_FIT_BATCH with max(line.at(b)) <= limit, or 0."""
    peak = lambda b: max(line.at(b) for line in lines)  # noqa: E731
    if peak(1) > limit:
        return 0
    low, high = 1, 2
    while high <= MAX_FIT_BATCH and peak(high) <= limit:
        low, high = high, high * 2
    high = min(high, MAX_FIT_BATCH + 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if peak(middle) <= limit else (low, middle)
    return low


def to_dict(m: Memory) -> dict[str, Any]:
    """The model as JSON-ready data: exact integers of bytes."""
    return {
        "model": m.name, "batch": m.batch, "dtype": m.dtype, "optimizer": m.optimizer,
        "params_bytes": m.params_bytes, "gradient_bytes": m.gradient_bytes, "optimizer_bytes": m.optimizer_bytes,
        "saved_bytes": m.saved_bytes, "activation_peak": m.activation_peak, "transient_bytes": m.transient_bytes,
        "peak": {"layer": m.peak_layer, "phase": m.peak_phase}, "training_bytes": m.training_bytes,
        "lecture_training_bytes": m.lecture_training_bytes, "inference_peak": m.inference_peak,
        "inference_peak_layer": m.inference_peak_layer, "inference_no_reuse": m.inference_no_reuse,
        "unknown": list(m.unknown), "excluded": EXCLUDED,
        "layers": [{"name": row.name, "type": row.type, "kept_bytes": row.kept_bytes, "forward_live": row.forward_live,
                    "backward_live": row.backward_live, "unknown": row.unknown,
                    "kept": [{"kind": k.saved.kind, "name": k.saved.name, "shape": list(k.saved.shape),
                              "dtype": k.saved.dtype or m.dtype, "batched": k.saved.batched, "storage": k.storage,
                              "bytes": k.bytes, "shared": k.shared} for k in row.kept]} for row in m.layers],
        "timeline": [{"phase": s.phase, "layer": s.layer, "live": s.live, "peak": s.peak} for s in m.timeline],
        "inference_timeline": [{"layer": s.layer, "live": s.live, "peak": s.peak} for s in m.inference_timeline],
    }

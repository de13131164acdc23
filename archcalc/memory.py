"""The memory model: what training keeps for backward, its timeline and peak, the inference peak
with buffer reuse, and the largest batch that fits.

Two models of training memory (``--memory-model``):

- ``pytorch`` (the default here): parameters and buffers + gradients + optimizer state + the
  activation side's peak, walked step by step. The activation side is every storage autograd keeps
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
from collections.abc import Mapping
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


class _Plan:
    """The batch-independent walk: per storage its bytes (as :class:`Linear`) and lifetimes, per
    step the live and peak bytes as :class:`Linear`."""

    def __init__(self, graph: Graph, layers: Mapping[str, Layer], dtype: str):
        from archcalc.passes import stored_outputs

        self.graph, self.layers, self.dtype = graph, layers, dtype
        size = formulas.DTYPE_BYTES[dtype]
        nodes = graph.nodes
        self.index = {node.name: i for i, node in enumerate(nodes)}
        # the storage each node's output lives in: views show their input's
        root: dict[str, str] = {}
        for node in nodes:
            op = get_op(node.type) if node.inputs else None
            root[node.name] = root[node.inputs[0]] if op is not None and op.view else node.name
        self.root = root
        self.value_bytes = {name: Linear(math.prod(layers[name].out_shape) * size, 0)
                            for name in {root[n.name] for n in nodes}}
        # which nodes need gradients: those after a layer with learned parameters
        grad: dict[str, bool] = {}
        for node in nodes:
            if not node.inputs:
                grad[node.name] = False
                continue
            op = get_op(node.type)
            learned = any(p.role.learned for p in op.params(layers[node.name]).values())
            grad[node.name] = learned or any(grad[ref] for ref in node.inputs)
        self.grad = grad
        # readers of each storage (through views), in forward order
        readers: dict[str, list[int]] = {}
        for i, node in enumerate(nodes):
            if node.inputs and not get_op(node.type).view:
                for ref in node.inputs:
                    readers.setdefault(root[ref], []).append(i)
        self.readers = readers
        # what each layer keeps
        self.kept: dict[str, list[tuple[Saved, Any, Linear]]] = {}
        self.unknown: list[str] = []
        first_keeper: dict[Any, int] = {}
        for i, node in enumerate(nodes):
            if not node.inputs:
                continue
            saved = get_op(node.type).saved(layers[node.name])
            if saved == UNKNOWN:
                self.unknown.append(node.name)
                saved = ()
            entries = []
            if grad[node.name]:  # autograd records nothing for a layer that needs no gradient
                for j, s in enumerate(saved):
                    if s.kind == "input":
                        storage = root[node.inputs[s.index]]
                        bytes_ = self.value_bytes[storage]
                    elif s.kind == "output":
                        storage = root[node.name]
                        bytes_ = self.value_bytes[storage]
                    elif s.kind == "param":
                        storage, bytes_ = ("param", node.name, s.name), ZERO  # counted in the parameters
                    else:
                        storage = ("buffer", node.name, j)  # a tuple: no node name can collide
                        per = math.prod(s.shape) * itemsize(s.dtype, dtype)
                        bytes_ = Linear(per, 0) if s.batched else Linear(0, per)
                        self.value_bytes[storage] = bytes_
                    entries.append((s, storage, bytes_))
                    if s.kind != "param":
                        first_keeper.setdefault(storage, i)
            self.kept[node.name] = entries
        # the earliest keeper of a storage (forward order) is the last to release it in backward
        self.first_keeper = first_keeper
        self.stores = stored_outputs(graph, layers)

    # -- training ---------------------------------------------------------------------------
    def training_steps(self) -> list[tuple[str, str, Linear, Linear]]:
        """(phase, layer, live after, peak during) for every forward then backward step."""
        nodes = self.graph.nodes
        last = len(nodes) - 1
        output = self.root[nodes[-1].name]
        # forward: a storage is allocated at its producer's step (a new buffer at its layer's step)
        # and lives while a later layer reads it, while it is kept, or as the network's output
        born = {name: self.index[name] for name in {self.root[n.name] for n in nodes}}
        for storage in self.first_keeper:
            born.setdefault(storage, self.first_keeper[storage])
        live_spans, peak_spans = [], []
        for storage, b in born.items():
            bytes_ = self.value_bytes[storage]
            if storage in self.first_keeper or storage == output:
                live_spans.append((b, last, bytes_))
                peak_spans.append((b, last, bytes_))
            else:
                until = max(self.readers.get(storage, [b]))
                live_spans.append((b, until - 1, bytes_))
                peak_spans.append((b, until, bytes_))
        live, peak = _sweep(len(nodes), live_spans), _sweep(len(nodes), peak_spans)
        steps = [("forward", node.name, live[i], peak[i]) for i, node in enumerate(nodes)]
        # backward, in reverse: a kept storage lives until its earliest keeper's backward ran; the
        # gradient of a tensor exists from its last reader's backward (the network output's from the
        # start) until its producer's backward ran
        live_spans, peak_spans = [], []
        for storage, keeper in self.first_keeper.items():
            live_spans.append((keeper + 1, last, self.value_bytes[storage]))
            peak_spans.append((keeper, last, self.value_bytes[storage]))
        for node in nodes:
            storage = self.root[node.name]
            if not self.grad[node.name] or storage != node.name:  # no gradient, or a view's (its input's)
                continue
            produced = self.index[storage]
            first = last if storage == output else max(self.readers.get(storage, [produced]))
            live_spans.append((produced + 1, first, self.value_bytes[storage]))
            peak_spans.append((produced, first, self.value_bytes[storage]))
        live, peak = _sweep(len(nodes), live_spans), _sweep(len(nodes), peak_spans)
        steps += [("backward", nodes[i].name, live[i], peak[i]) for i in range(last, 0, -1) if self.grad[nodes[i].name]]
        return steps

    # -- inference --------------------------------------------------------------------------
    def inference_steps(self) -> tuple[list[tuple[str, str, Linear, Linear]], Linear]:
        """(phase, layer, live after, peak during) of the forward pass alone with buffer reuse, and
        the no-reuse total (every storage kept)."""
        nodes = self.graph.nodes
        size = formulas.DTYPE_BYTES[self.dtype]
        storage_of: dict[str, str] = {}
        born: dict[str, int] = {}
        for i, node in enumerate(nodes):
            if node.inputs and get_op(node.type).view:
                storage_of[node.name] = storage_of[node.inputs[0]]
            elif node.inputs and not self.stores[node.name]:
                # in place: it overwrites an input of its shape that no other layer reads
                target = next(ref for ref in node.inputs
                              if self.readers.get(self.root[ref]) == [i]
                              and self.layers[ref].out_shape == self.layers[node.name].out_shape)
                storage_of[node.name] = storage_of[target]
            else:
                storage_of[node.name] = node.name
                born[node.name] = i
        last = len(nodes) - 1
        until = dict(born)
        for i, node in enumerate(nodes):
            for ref in node.inputs:
                until[storage_of[ref]] = max(until[storage_of[ref]], i)
        until[storage_of[nodes[-1].name]] = last + 1
        bytes_of = {name: Linear(math.prod(self.layers[name].out_shape) * size, 0) for name in born}
        live = _sweep(len(nodes), [(b, min(until[s] - 1, last), bytes_of[s]) for s, b in born.items()])
        peak = _sweep(len(nodes), [(b, min(until[s], last), bytes_of[s]) for s, b in born.items()])
        total = ZERO
        for b in bytes_of.values():
            total += b
        return [("forward", node.name, live[i], peak[i]) for i, node in enumerate(nodes)], total

    def kept_bytes(self) -> Linear:
        """The distinct storages kept for backward."""
        total = ZERO
        for storage in self.first_keeper:
            total += self.value_bytes[storage]
        return total


def _storage_name(key: Any) -> str:
    """A storage key as :class:`Kept` shows it: a node's name, ``node.param`` or ``node#i``."""
    if isinstance(key, tuple):
        kind, node, which = key
        return f"{node}.{which}" if kind == "param" else f"{node}#{which}"
    return key


def _sweep(count: int, spans: list[tuple[int, int, Linear]]) -> list[Linear]:
    """Per index 0..count-1, the sum of the spans (first, last inclusive, bytes) covering it."""
    per_sample, fixed = [0] * (count + 1), [0] * (count + 1)
    for first, last, b in spans:
        if first > last:
            continue
        per_sample[first] += b.per_sample
        per_sample[last + 1] -= b.per_sample
        fixed[first] += b.fixed
        fixed[last + 1] -= b.fixed
    out, a, c = [], 0, 0
    for i in range(count):
        a, c = a + per_sample[i], c + fixed[i]
        out.append(Linear(a, c))
    return out


def _fixed(graph: Graph, layers: Mapping[str, Layer], dtype: str, optimizer: str) -> tuple[int, int, int]:
    """(params and buffers, gradients, optimizer state) in bytes."""
    stored = trainable = 0
    for node in graph.nodes[1:]:
        for p in get_op(node.type).params(layers[node.name]).values():
            stored += p.size
            trainable += p.size if p.trainable else 0
    size = formulas.DTYPE_BYTES[dtype]
    return stored * size, trainable * size, trainable * formulas.OPTIMIZER_SLOTS[optimizer] * size


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
    rows, seen = [], set()
    for node in graph.nodes[1:]:
        kept = []
        for saved, storage, b in plan.kept.get(node.name, ()):
            kept.append(Kept(saved, _storage_name(storage), b.at(batch), storage in seen or saved.kind == "param"))
            seen.add(storage)
        rows.append(LayerMemory(node.name, node.type, tuple(kept), sum(k.bytes for k in kept if not k.shared),
                                forward_live[node.name], backward_live.get(node.name), node.name in plan.unknown))
    # the lecture's rule (passes.analyze's training_bytes): 2 x the input and every stored output
    stored = sum(math.prod(plan.layers[node.name].out_shape) for node in graph.nodes if plan.stores[node.name])
    size = formulas.DTYPE_BYTES[dtype]
    lecture = formulas.training_bytes(params // size, grads // size, stored, batch, dtype, optimizer)
    return Memory(graph.name, batch, dtype, optimizer, params, grads, slots, plan.kept_bytes().at(batch), worst.peak,
                  worst.layer, worst.phase, params + grads + slots + worst.peak, lecture, inference_worst.peak,
                  inference_worst.layer, no_reuse.at(batch), tuple(rows), timeline, inference_timeline,
                  tuple(plan.unknown))


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
    if memory_model == "lecture":
        from archcalc.passes import analyze

        one = analyze(plan.graph, 1, dtype, optimizer).totals
        per_sample = one.training_bytes - formulas.training_bytes(one.params + one.buffers, one.params_trainable, 0, 1,
                                                                  dtype, optimizer)
        train_lines = [Linear(per_sample, fixed)]
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

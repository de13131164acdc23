"""The reference executor: the analysed graph run on NumPy arrays, forward, backward and SGD.

It allocates nothing by its own arithmetic: every op's output is checked against the
analyzer's shape, and the multiply-accumulates conv and linear layers actually performed are
counted and checked against the analyzer's MACs, so analyzer and executor check each other.

It refuses before it allocates: :func:`estimate_memory` bounds from the analysis alone what the
parameters, a batch and its backward pass will hold, and the executor checks it against its
limit before it creates the parameters and before any batch's arrays exist.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from archcalc.errors import ArchcalcError, check
from archcalc.graph import Graph
from archcalc.loading import load
from archcalc.ops import Param, RunContext, Window, get_op
from archcalc.passes import analyze, infer_shapes, input_grad_needed
from archcalc.render.format import binary_bytes

DTYPES = ("float32", "float64")


class ExecutionMismatch(AssertionError):
    """The executor produced a shape or a MAC count the analyzer did not predict: a bug."""


def available_memory() -> int:
    """Bytes this process can still get: memory available now (MemAvailable on Linux, physical
    memory elsewhere), or less when an address-space limit (``ulimit -v``, RLIMIT_AS) leaves less."""
    available = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return min(available, _address_space_left())


def _address_space_left() -> int | float:
    """Bytes of address space the process may still map under RLIMIT_AS (inf when unlimited)."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        return math.inf
    if limit == resource.RLIM_INFINITY or limit < 0:
        return math.inf
    mapped = 0
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    mapped = int(line.split()[1]) * 1024
    except OSError:
        pass
    return max(limit - mapped, 0)


#: Default memory limit: this fraction of the memory available when the executor starts.
MEMORY_FRACTION = 0.5
#: Largest batch: NumPy's array sizes are signed 64-bit integers.
MAX_BATCH = 2**63 - 1
#: Bytes one layer may hold at once, per value of its inputs, output and padded input, beyond
#: what the estimate counts elsewhere: NumPy temporaries (``x * mask``, the padded copy for
#: im2col, col2im's padded gradient) and GELU's erf through Python floats (about 64 B a value of input and output).
TRANSIENT_BYTES_PER_VALUE = 32
#: Bytes an op may keep for backward per output value besides the output itself (a float64
#: mask or normalised value, max-pool's int64 argmax).
SAVED_BYTES_PER_VALUE = 8
#: How to raise the limit, for messages.
LIMIT_HINT = "--max-memory on the command line, max_memory= in Python"


@dataclass(frozen=True)
class MemoryEstimate:
    """What the executor will hold, in bytes: an upper bound computed from the analysis alone.

    ``parameters`` (every tensor, batchnorm's running statistics included), ``gradients`` (one
    per trainable parameter) and ``momentum`` (SGD's velocity) are the model's; the rest grow
    with the batch: ``activations`` (the input and every layer's output, kept for backward,
    and the gradients flowing back through them), ``saved`` (what ops keep for backward besides
    their outputs: masks, argmax indices, normalised values), ``im2col`` (the matrices conv
    layers keep for backward, plus the largest of the chunk buffers a large layer streams through
    while it runs) and ``temporaries`` (the most any one layer or SGD step holds while it runs).
    """

    model: str
    dtype: str
    batch: int
    parameters: int
    gradients: int
    momentum: int
    activations: int = 0
    saved: int = 0
    im2col: int = 0
    temporaries: int = 0

    @property
    def total(self) -> int:
        """Every part together."""
        return self.parameters + self.gradients + self.momentum + self.activations + self.saved + self.im2col + self.temporaries

    def parts(self) -> str:
        """The parts in words: ``parameters 240.5 KiB + gradients 240.0 KiB + ...``."""
        parts = [("parameters", self.parameters), ("gradients", self.gradients), ("momentum", self.momentum)]
        if self.batch:
            parts += [("activations and their gradients", self.activations), ("saved for backward", self.saved),
                      ("im2col buffers", self.im2col), ("temporaries", self.temporaries)]
        return " + ".join(f"{label} {binary_bytes(value)}" for label, value in parts)

    def refusal(self, limit: int) -> str:
        """The one-line message refusing this estimate under ``limit`` bytes."""
        what = (f"running {self.model} at batch {self.batch} in {self.dtype}" if self.batch
                else f"creating the parameters of {self.model} in {self.dtype}")
        advice = "use a smaller batch or raise the limit" if self.batch else "raise the limit if the machine has the memory"
        return (f"{what} needs an estimated {binary_bytes(self.total)} ({self.parts()}), over the limit of "
                f"{binary_bytes(limit)}; {advice} ({LIMIT_HINT})")


def estimate_memory(model: Any, batch: int = 0, dtype: str = "float32") -> MemoryEstimate:
    """The executor's memory for ``model`` at ``batch`` (0: the parameters alone), allocating nothing.

    Raises:
        ArchcalcError: for a bad batch or dtype; ShapeError for a spec whose shapes fail.
    """
    _check_dtype(dtype)
    graph = load(model)
    return _estimate(graph, infer_shapes(graph), np.dtype(dtype), _check_batch(batch, allow_zero=True))


def _estimate(graph: Graph, layers: dict[str, Any], dtype: np.dtype, batch: int) -> MemoryEstimate:
    itemsize = dtype.itemsize
    params = trainable = largest_param = 0
    for node in graph.nodes[1:]:
        for param in get_op(node.type).params(layers[node.name]).values():
            params += param.size
            largest_param = max(largest_param, param.size)
            trainable += param.size if param.trainable else 0
    values = math.prod(graph.input_shape)  # per sample: the input and every output
    kept_cols = largest_stream = largest_transient = 0  # im2col values for the whole batch
    for node in graph.nodes[1:]:
        layer = layers[node.name]
        out = math.prod(layer.out_shape)
        values += out
        inputs = sum(math.prod(shape) for shape in layer.in_shapes)
        transient = (inputs + out + _padded_input(node, layer)) * TRANSIENT_BYTES_PER_VALUE * batch
        cols = get_op(node.type).workspace(layer, batch, itemsize) if batch else 0
        if cols:
            kept_cols += cols
            transient += cols * itemsize  # backward's W^T dY, the size of the matrices kept
        # a streamed layer's chunk buffers live while it runs: the largest counts, once
        largest_stream = max(largest_stream, get_op(node.type).stream_workspace(layer, batch, itemsize) if batch else 0)
        largest_transient = max(largest_transient, transient)
    # an SGD step's temporaries (weight decay's term, lr * update) are two of the largest tensor
    if batch:
        largest_transient = max(largest_transient, 2 * largest_param * itemsize)
    return MemoryEstimate(
        model=graph.name, dtype=dtype.name, batch=batch,
        parameters=params * itemsize, gradients=trainable * itemsize, momentum=trainable * itemsize,
        activations=2 * values * batch * itemsize,
        saved=(values - math.prod(graph.input_shape)) * batch * SAVED_BYTES_PER_VALUE,
        im2col=(kept_cols + largest_stream) * itemsize,
        temporaries=largest_transient,
    )


def _padded_input(node: Any, layer: Any) -> int:
    """Values of a windowed op's padded input (NumPy pads a copy), 0 for other ops."""
    window = get_op(node.type).window(layer)
    if not isinstance(window, Window) or window.input_dilation or not window.uniform or 0 in window.stride:
        # a transposed conv scatters (col2im), upsampling and adaptive pooling gather, a linear layer
        # (stride 0: one window over its axis) multiplies: none pads a copy
        return 0
    if any(not isinstance(p, int) or p < 0 for pair in window.padding for p in pair):
        return 0  # a crop or slice (negative padding) is a view
    spatial = layer.in_shape[1:]
    # ceil mode may pad up to a stride more on the right
    return layer.in_shape[0] * math.prod(n + b + a + s for n, (b, a), s in zip(spatial, window.padding, window.stride))


def _check_dtype(dtype: Any) -> None:
    if dtype not in DTYPES:
        raise ArchcalcError(f"the executor runs float32 or float64, got {dtype!r}")


def _check_batch(batch: Any, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or not low <= batch <= MAX_BATCH:
        raise ArchcalcError(f"batch must be an int from {low} to 2**63 - 1 (NumPy's largest axis), got {batch!r}")
    return int(batch)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ArchcalcError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _check_max_memory(max_memory: Any) -> int | None:
    if max_memory is None:
        return None
    if isinstance(max_memory, bool) or not isinstance(max_memory, (int, np.integer)) or max_memory < 1:
        raise ArchcalcError(f"max_memory must be a positive int (bytes), got {max_memory!r}")
    return int(max_memory)


def _finite(name: str, value: Any, low: float = 0.0, high: float = math.inf) -> float:
    """``value`` as a float when it is a finite number in [low, high]; ArchcalcError otherwise."""
    number = math.nan
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float's range
            number = math.inf
    if not math.isfinite(number) or not low <= number <= high:
        bound = f"from {low:g} to {high:g}" if math.isfinite(high) else f"at least {low:g}"
        raise ArchcalcError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


@dataclass
class LayerTiming:
    """Accumulated wall time of one layer's forward and backward passes, in seconds."""

    forward: float = 0.0
    backward: float = 0.0


def _refuse_stand_ins(graph: Graph, allowed: bool) -> None:
    """ArchcalcError unless ``allowed`` when a layer's forward is a stand-in, not its source op."""
    stand_ins = [node for node in graph.nodes[1:] if get_op(node.type).stand_in]
    if stand_ins and not allowed:
        first = stand_ins[0]
        raise ArchcalcError(
            f"model {graph.name!r}: cannot run {len(stand_ins)} layer(s) archcalc has no rule for, first "
            f"{first.name!r} ({first.attrs.get('op', first.type)}, passed through by a partial import)"
        )


class Executor:
    """Runs a graph on arrays of shape (N, *input_shape).

    Args:
        model: anything :func:`archcalc.load` takes.
        seed: seeds the parameter initialisation and dropout.
        dtype: ``float32`` or ``float64`` (gradient checks).
        max_memory: refuse batches whose estimated memory exceeds this many bytes (default:
            half the memory available).
        batch: the batch it will run, if known: a batch over the limit is then refused here,
            before any parameter exists (0: only the parameters are checked here).
        stand_ins: run layers whose forward is only a stand-in (``opaque`` layers of a partial
            import: not the source's op); by default such a network is refused.

    Parameters are named ``layer.weight`` / ``layer.bias`` (and BatchNorm's
    ``running_mean`` / ``running_var``), He-initialised for conv and linear weights.
    """

    def __init__(self, model: Any, seed: int = 0, dtype: str = "float32", max_memory: int | None = None,
                 batch: int = 0, stand_ins: bool = False) -> None:
        _check_dtype(dtype)
        batch = _check_batch(batch, allow_zero=True)
        self.seed = _check_seed(seed)
        self.graph: Graph = load(model)
        _refuse_stand_ins(self.graph, stand_ins)
        self.layers = infer_shapes(self.graph)
        self.dtype = np.dtype(dtype)
        self.max_memory = _check_max_memory(max_memory)
        if self.max_memory is None:
            self.max_memory = int(MEMORY_FRACTION * available_memory())
        # parameters, their gradients and momentum (and the batch, when told it): refused before any array exists
        self._refuse_above_limit(_estimate(self.graph, self.layers, self.dtype, batch))
        self.rng = np.random.default_rng(self.seed)
        self.training = True
        from archcalc import kernels

        kernels.keep_freed_memory()  # a step's arrays reused, not mapped and faulted in anew each step
        #: Compute dJ/d(network input) in backward (:attr:`input_grad`). False saves, when
        #: training, the input-gradient work of every layer whose inputs depend on no learned
        #: parameter (the first conv's, a pool's before it), as frameworks skip it.
        self.needs_input_grad = True
        self.params: dict[str, np.ndarray] = {}
        self.trainable: set[str] = set()
        #: Each node's parameters: (name in the op, name in ``params``).
        self._param_names: dict[str, list[tuple[str, str]]] = {}
        with self._out_of_memory("creating the parameters", 0):
            for node in self.graph.nodes[1:]:
                self._param_names[node.name] = []
                for name, param in get_op(node.type).params(self.layers[node.name]).items():
                    key = f"{node.name}.{name}"
                    self.params[key] = self._initial(param)
                    self._param_names[node.name].append((name, key))
                    if param.trainable:
                        self.trainable.add(key)
        self.velocity: dict[str, np.ndarray] = {}
        self.timings: dict[str, LayerTiming] = {node.name: LayerTiming() for node in self.graph.nodes[1:]}
        self.macs_performed: dict[str, int] = {}
        #: Per node, the (input-gradient, weight-gradient) MACs the last backward performed,
        #: counted from the operand shapes of its products (see :meth:`check_backward_macs`).
        self.backward_macs_performed: dict[str, tuple[int, int]] = {}
        #: Per node, whether the last forward asked its backward for the input gradient.
        self._input_grads: dict[str, bool] = {}
        self._ctx: RunContext | None = None
        self._needed: dict[str, bool] | None = None
        self.input_grad: np.ndarray | None = None
        self._caches: dict[str, Any] = {}
        self._outputs: dict[str, np.ndarray] = {}
        self._batch = 0
        self._checked_batches: set[int] = set()

    def _initial(self, param: Param) -> np.ndarray:
        """A parameter or buffer as its role says it starts, in its final dtype (no float64 draw
        first: float32 needs half the memory)."""
        init, shape = param.role.init, param.shape
        if init == "he_normal":  # Kaiming normal, fan in = every axis but the first (PyTorch's rule)
            values = self.rng.standard_normal(shape, dtype=self.dtype)
            values *= self.dtype.type(math.sqrt(2 / math.prod(shape[1:])))
            return values
        if init == "ones":
            return np.ones(shape, dtype=self.dtype)
        if init == "zeros":
            return np.zeros(shape, dtype=self.dtype)
        if init.startswith("constant "):  # PReLU's slope: one value everywhere
            return np.full(shape, float(init.split(" ", 1)[1]), dtype=self.dtype)
        raise ValueError(f"unknown initialiser {init!r} of role {param.role.name!r}")

    def _refuse_above_limit(self, estimate: MemoryEstimate) -> None:
        if estimate.total > self.max_memory:
            raise ArchcalcError(estimate.refusal(self.max_memory))

    @contextmanager
    def _out_of_memory(self, doing: str, batch: int) -> Iterator[None]:
        """Turn a MemoryError (the machine has less than the limit assumed) into a clear refusal."""
        try:
            yield
        except MemoryError:
            estimate = _estimate(self.graph, self.layers, self.dtype, batch)
            raise ArchcalcError(
                f"{self.graph.name} in {self.dtype.name}: {doing} ran out of memory although the estimate, "
                f"{binary_bytes(estimate.total)}, is within the limit of {binary_bytes(self.max_memory)}: the machine, or the "
                f"process's address-space limit, has less; lower the limit or the batch ({LIMIT_HINT})"
            ) from None

    def train(self) -> Executor:
        """Training mode: dropout drops, batchnorm uses batch statistics."""
        self.training = True
        return self

    def eval(self) -> Executor:
        """Inference mode: dropout is the identity, batchnorm uses its running averages."""
        self.training = False
        return self

    def memory_estimate(self, batch: int) -> MemoryEstimate:
        """The memory a batch of ``batch`` samples will need, parameters included, in bytes (an upper bound)."""
        return _estimate(self.graph, self.layers, self.dtype, _check_batch(batch))

    def check_memory(self, batch: int) -> None:
        """Refuse a batch whose estimated memory exceeds ``max_memory``, before anything is allocated.

        Raises:
            ArchcalcError: naming the estimate, its parts, the limit and how to raise it.
        """
        if batch in self._checked_batches:
            return
        self._refuse_above_limit(self.memory_estimate(batch))
        self._checked_batches.add(batch)

    def forward(self, x: np.ndarray, seed: int | None = None) -> np.ndarray:
        """The network's output for a batch ``x`` of shape (N, *input_shape).

        ``seed`` fixes dropout's masks for this call (gradient checks); otherwise they come
        from the executor's generator.
        """
        expected = self.graph.input_shape
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise ArchcalcError(f"input must have shape (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        self.check_memory(x.shape[0])
        with self._out_of_memory(f"running a batch of {x.shape[0]}", x.shape[0]):
            return self._forward(x, seed)

    def _forward(self, x: np.ndarray, seed: int | None) -> np.ndarray:
        self._outputs, self._caches = {}, {}  # let the last batch's arrays go before this one's exist
        x = np.ascontiguousarray(x, dtype=self.dtype)
        ctx = self._ctx = RunContext(self.training, self.rng if seed is None else np.random.default_rng(seed))
        needed = self._input_grad_needed()
        outputs = {self.graph.nodes[0].name: x}
        self._caches = {}
        for node in self.graph.nodes[1:]:
            layer = self.layers[node.name]
            params = {name: self.params[key] for name, key in self._param_names[node.name]}
            before = ctx.macs
            ctx.input_grads = self._input_grads[node.name] = self.needs_input_grad or needed[node.name]
            start = time.perf_counter()
            y, self._caches[node.name] = get_op(node.type).forward(layer, [outputs[r] for r in node.inputs], params, ctx)
            self.timings[node.name].forward += time.perf_counter() - start
            if y.shape != (x.shape[0], *layer.out_shape):
                raise ExecutionMismatch(f"{node.label()}: produced {y.shape}, the analyzer says (N, *{layer.out_shape})")
            self.macs_performed[node.name] = ctx.macs - before
            outputs[node.name] = y
        self._batch = x.shape[0]
        self._outputs = outputs
        return outputs[self.graph.nodes[-1].name]

    @property
    def outputs(self) -> dict[str, np.ndarray]:
        """Every node's output from the last forward pass, by name."""
        return self._outputs

    def check_macs(self) -> dict[str, tuple[int, int]]:
        """Per node that multiplies: (MACs performed in the last forward, the analyzer's).

        Every node is checked, whatever its op: one that performed MACs the analyzer did not
        predict, or none where it predicted some, raises :class:`ExecutionMismatch`.
        """
        analysis = analyze(self.graph, batch=self._batch)
        result = {}
        for row in analysis.layers[1:]:
            performed = self.macs_performed.get(row.name, 0)
            if performed != row.macs:
                raise ExecutionMismatch(f"layer {row.name!r}: performed {performed} MACs, the analyzer says {row.macs}")
            if row.macs:
                result[row.name] = (performed, row.macs)
        return result

    def _input_grad_needed(self) -> dict[str, bool]:
        """Per node, whether its backward must give its inputs' gradient when the network input
        needs none (:attr:`needs_input_grad` False): some input depends on a learned parameter
        (:func:`archcalc.passes.input_grad_needed`, as PyTorch's autograd decides)."""
        if self._needed is None:
            self._needed = input_grad_needed(self.graph, self.layers)
        return self._needed

    def _requires_grad(self, node: Any) -> bool:
        """Whether the node's output depends on a learned parameter (its own or an input's)."""
        return self._input_grad_needed()[node.name] or any(key in self.trainable for _, key in self._param_names[node.name])

    def check_backward_macs(self) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
        """Per node that multiplies in backward: ((input-gradient, weight-gradient) MACs performed
        in the last backward, the analyzer's).

        The analyzer's figures are ``input_grad_macs`` and ``weight_grad_macs`` of the report
        (the input gradient's 0 where no input depends on a learned parameter); where this
        executor computed an input gradient nobody needed (:attr:`needs_input_grad`), the op's
        rule as if it were needed (:meth:`~archcalc.ops.base.Op.backward_cost`). Every node is
        checked, whatever its op: a mismatch raises :class:`ExecutionMismatch`.
        """
        if not self.backward_macs_performed:
            raise ArchcalcError("checking backward's MACs needs a backward pass first")
        analysis = analyze(self.graph, batch=self._batch)
        needed = self._input_grad_needed()
        result = {}
        for row in analysis.layers[1:]:
            predicted_input, predicted_weight = row.figure("input_grad_macs"), row.figure("weight_grad_macs")
            if self._input_grads[row.name] and not needed[row.name]:
                layer = self.layers[row.name]
                predicted_input = get_op(row.type).backward_cost(layer).input_grad_macs * self._batch
            performed = self.backward_macs_performed.get(row.name, (0, 0))
            if performed != (predicted_input, predicted_weight):
                raise ExecutionMismatch(
                    f"layer {row.name!r}: backward performed {performed[0]} input-gradient and {performed[1]} "
                    f"weight-gradient MACs, the analyzer says {predicted_input} and {predicted_weight}")
            if any(performed):
                result[row.name] = (performed, (predicted_input, predicted_weight))
        return result

    def backward(self, dy: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of every trainable parameter, by name, from ``dy`` = dJ/d(output).

        The gradient w.r.t. the input is left in :attr:`input_grad` (None when
        :attr:`needs_input_grad` is False and a first layer skipped it).
        """
        if not self._caches:
            raise ArchcalcError("backward needs a forward pass first")
        last = self.graph.nodes[-1]
        expected = (self._batch, *self.layers[last.name].out_shape)
        if dy.shape != expected:
            raise ArchcalcError(f"dy must have the output's shape {expected}, got {tuple(dy.shape)}")
        with self._out_of_memory(f"the backward pass of a batch of {self._batch}", self._batch):
            return self._backward(dy)

    def _backward(self, dy: np.ndarray) -> dict[str, np.ndarray]:
        last = self.graph.nodes[-1]
        grads_out: dict[str, np.ndarray] = {last.name: np.asarray(dy, dtype=self.dtype)}
        grads: dict[str, np.ndarray] = {}
        ctx = self._ctx
        self.backward_macs_performed = {}
        for node in reversed(self.graph.nodes[1:]):
            d_out = grads_out.pop(node.name, None)
            if d_out is None and not self.needs_input_grad and not self._requires_grad(node):
                continue  # no learned parameter in it or before it: nothing of its backward is needed
            if d_out is None:  # nothing downstream reads this node
                d_out = np.zeros((self._batch, *self.layers[node.name].out_shape), dtype=self.dtype)
            start = time.perf_counter()
            before = ctx.input_grad_macs, ctx.weight_grad_macs
            d_inputs, d_params = get_op(node.type).backward(self.layers[node.name], d_out, self._caches[node.name])
            self.timings[node.name].backward += time.perf_counter() - start
            self.backward_macs_performed[node.name] = (ctx.input_grad_macs - before[0], ctx.weight_grad_macs - before[1])
            for name, grad in d_params.items():
                grads[f"{node.name}.{name}"] = grad
            for ref, d_in in zip(node.inputs, d_inputs):
                if d_in is None:  # not needed: see needs_input_grad
                    continue
                # a layer read by several others gets the sum of their gradients
                grads_out[ref] = grads_out[ref] + d_in if ref in grads_out else d_in
        self.input_grad = grads_out.get(self.graph.nodes[0].name)
        return grads

    def step(self, grads: dict[str, np.ndarray], lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        """SGD: ``v = momentum * v + (g + weight_decay * w)``; ``w -= lr * v`` (PyTorch's form).

        Raises:
            ArchcalcError: for a learning rate, momentum or weight decay that is not a finite number in range.
        """
        lr, momentum = _finite("lr", lr), _finite("momentum", momentum, high=1.0)
        weight_decay = _finite("weight_decay", weight_decay)
        from archcalc import kernels

        # in place, so that a step holds at most two temporaries of one tensor (the estimate's share;
        # the C path holds none)
        for name, grad in grads.items():
            if name not in self.trainable:
                continue
            param, velocity, first = self.params[name], None, False
            if momentum:
                velocity = self.velocity.get(name)
                if velocity is None:
                    velocity = self.velocity[name] = np.empty_like(param)
                    first = True
            kernels.sgd_step(param, grad, velocity, lr, momentum, weight_decay, first)


#: The loss chosen with ``loss="bce"``: sigmoid binary cross-entropy from a one-unit logit.
BINARY_CROSS_ENTROPY = "binary cross-entropy"


def loss_kind(executor: Executor, loss: str | None = None) -> str:
    """The loss :func:`loss_and_grad` uses with :func:`training_batch`'s targets.

    By default (``loss`` None): ``cross-entropy`` for a class output (classes,) (softmax
    cross-entropy on the logits), ``negative log-likelihood`` when the network ends in its own
    softmax, else ``mean squared error`` to random targets of the output's shape.
    ``loss="bce"`` chooses ``binary cross-entropy`` (sigmoid BCE from the logit, 0/1 targets),
    for a one-unit output (1,) only.

    Raises:
        ArchcalcError: ``loss`` is not None or "bce", or "bce" for an output that is not (1,) or
            that ends in its own sigmoid (BCE takes the logit).
    """
    out_shape = tuple(executor.layers[executor.graph.nodes[-1].name].out_shape)
    if loss is not None:
        check(loss == "bce", lambda: f"loss must be 'bce' or None (the default), got {loss!r}", ArchcalcError)
        check(out_shape == (1,), lambda: "--loss bce needs a one-unit output of shape (1,), got output shape "
              f"{out_shape}", ArchcalcError)
        check(executor.graph.nodes[-1].type != "sigmoid",
              lambda: f"--loss bce takes the logit, but the network ends in a sigmoid ({executor.graph.nodes[-1].name}): "
              "remove it (the loss applies its own sigmoid)", ArchcalcError)
        return BINARY_CROSS_ENTROPY
    if len(executor.layers[executor.graph.nodes[-1].name].out_shape) != 1:
        return "mean squared error"
    return "negative log-likelihood" if executor.graph.nodes[-1].type == "softmax" else "cross-entropy"


def loss_and_grad(executor: Executor, output: np.ndarray, targets: np.ndarray,
                  loss: str | None = None) -> tuple[float, np.ndarray]:
    """The training loss of a batch and dJ/d(output).

    With ``loss`` :data:`BINARY_CROSS_ENTROPY`: the mean sigmoid binary cross-entropy of the
    logits (N, 1) against 0/1 ``targets`` (N, 1). Otherwise a class output (N, classes) gets
    softmax cross-entropy with integer targets; when the network ends in its own softmax, the
    negative log-likelihood of its probabilities. Any other output gets the mean squared error
    to ``targets`` of its shape.
    """
    from archcalc import kernels

    if loss == BINARY_CROSS_ENTROPY:
        return kernels.binary_cross_entropy_with_logits(output, targets)
    n = output.shape[0]
    if output.ndim == 2 and targets.shape == (n,):
        if executor.graph.nodes[-1].type == "softmax":
            rows = np.arange(n)
            picked = np.maximum(output[rows, targets], np.finfo(output.dtype).tiny)
            grad = np.zeros_like(output)
            grad[rows, targets] = -1 / (picked * n)
            return float(-np.log(picked).mean()), grad
        return kernels.softmax_cross_entropy(output, targets)
    diff = output - targets
    return float((diff * diff).mean() / 2), diff / diff.size


@dataclass(frozen=True)
class TrainingBatch:
    """A random batch to train on: inputs (N, *input_shape), targets, and the loss they go with."""

    inputs: np.ndarray
    targets: np.ndarray
    loss: str


def training_batch(executor: Executor, batch: int, seed: int = 0, loss: str | None = None) -> TrainingBatch:
    """Standard-normal inputs and targets for ``batch`` samples: random labels for a class output,
    random 0/1 labels (N, 1) for ``loss="bce"``, standard-normal targets otherwise (see :func:`loss_kind`).

    The batch's memory is checked (:meth:`Executor.check_memory`) before any array is made.

    Raises:
        ArchcalcError: for a bad batch or seed, a loss that does not fit the output (see
            :func:`loss_kind`), or when the batch would not fit under the limit.
    """
    kind = loss_kind(executor, loss)
    batch = _check_batch(batch)
    executor.check_memory(batch)
    rng = np.random.default_rng(_check_seed(seed))
    out_shape = executor.layers[executor.graph.nodes[-1].name].out_shape
    with executor._out_of_memory(f"making a batch of {batch}", batch):
        inputs = rng.standard_normal((batch, *executor.graph.input_shape), dtype=executor.dtype)
        if kind == BINARY_CROSS_ENTROPY:
            targets = rng.integers(0, 2, size=(batch, 1)).astype(executor.dtype)
        elif len(out_shape) == 1:
            targets = rng.integers(0, out_shape[0], size=batch)
        else:
            targets = rng.standard_normal((batch, *out_shape), dtype=executor.dtype)
    return TrainingBatch(inputs, targets, kind)


def train_step(executor: Executor, data: TrainingBatch, lr: float = 0.01, momentum: float = 0.0,
               weight_decay: float = 0.0) -> float:
    """One SGD step on ``data``: forward, loss, backward, update. Returns the loss before the update.

    Raises:
        ArchcalcError: for a learning rate, momentum or weight decay that is not a finite number in range.
    """
    lr, momentum = _finite("lr", lr), _finite("momentum", momentum, high=1.0)
    weight_decay = _finite("weight_decay", weight_decay)
    # a diverging run overflows to inf and nan: the caller sees it in the loss, not as NumPy warnings
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        loss, grad = loss_and_grad(executor, executor.forward(data.inputs), data.targets, data.loss)
        executor.step(executor.backward(grad), lr=lr, momentum=momentum, weight_decay=weight_decay)
    return loss


@dataclass(frozen=True)
class TimingRow:
    """One layer's mean time per step, in seconds, and its share of the step (0 to 1).

    ``shape`` is the output shape it produced (batch first) and ``macs`` the multiply-
    accumulates it performed (0 for ops without MACs), both checked against the analyzer.
    """

    name: str
    type: str
    forward: float
    backward: float
    share: float
    shape: tuple[int, ...]
    macs: int


@dataclass(frozen=True)
class TimingReport:
    """Per-layer time of the steps run so far (means per step), with the totals."""

    model: str
    steps: int
    rows: tuple[TimingRow, ...]

    @property
    def forward(self) -> float:
        """Seconds of forward per step, every layer."""
        return sum(row.forward for row in self.rows)

    @property
    def backward(self) -> float:
        """Seconds of backward per step, every layer."""
        return sum(row.backward for row in self.rows)


def timing_report(executor: Executor, steps: int) -> TimingReport:
    """The executor's accumulated layer timings as means over ``steps`` steps, with shares.

    Also checks the last forward's MACs against the analyzer (:meth:`Executor.check_macs`).
    """
    steps = max(int(steps), 1)
    performed = executor.check_macs()
    total = sum(t.forward + t.backward for t in executor.timings.values()) / steps or 1.0
    rows = []
    for node in executor.graph.nodes[1:]:
        timing = executor.timings[node.name]
        forward, backward = timing.forward / steps, timing.backward / steps
        macs = performed[node.name][0] if node.name in performed else 0
        rows.append(TimingRow(node.name, node.type, forward, backward, (forward + backward) / total,
                              tuple(executor.outputs[node.name].shape), macs))
    return TimingReport(executor.graph.name, steps, tuple(rows))


#: Absolute differences below this count as agreement: a gradient that is truly 0 (a bias before
#: a batchnorm in training) differs from its central difference by rounding alone (about 1e-10),
#: and a relative error of 0 against 1e-10 would be 1.
GRADCHECK_ATOL = 1e-8


@dataclass
class GradcheckRow:
    """One tensor's check: largest absolute and relative error over the sampled entries."""

    name: str
    shape: tuple[int, ...]
    checked: int
    max_abs_error: float
    max_rel_error: float
    #: The relative error is within the report's tolerance.
    passed: bool = True


@dataclass
class GradcheckReport:
    """Analytic vs central-difference gradients, per parameter tensor and the input."""

    model: str
    tolerance: float
    rows: list[GradcheckRow] = field(default_factory=list)
    batch: int = 2

    @property
    def max_rel_error(self) -> float:
        """The worst relative error of any tensor."""
        return max((row.max_rel_error for row in self.rows), default=0.0)

    @property
    def passed(self) -> bool:
        """Every tensor within the tolerance."""
        return all(row.passed for row in self.rows)

    def verdict(self) -> str:
        """One line: ``passed: max relative error 1.2e-09 (tolerance 1e-05)``."""
        return (f"{'passed' if self.passed else 'FAILED'}: max relative error {self.max_rel_error:.2e} "
                f"(tolerance {self.tolerance:.0e})")

    def __str__(self) -> str:
        lines = [f"gradcheck {self.model}: {self.verdict()}"]
        lines += [f"  {r.name:<40} {str(r.shape):<18} {r.checked:>4} entries  abs {r.max_abs_error:.2e}  rel {r.max_rel_error:.2e}"
                  for r in self.rows]
        return "\n".join(lines)


@dataclass(frozen=True)
class GradcheckPlan:
    """The work a gradient check will do: per tensor (name, shape, entries), and one pass's time."""

    model: str
    batch: int
    tensors: tuple[tuple[str, tuple[int, ...], int], ...]
    seconds_per_pass: float

    @property
    def passes(self) -> int:
        """Forward passes still to run: two (+eps and -eps) per checked entry."""
        return 2 * sum(entries for _, _, entries in self.tensors)

    @property
    def seconds(self) -> float:
        """Estimated time of the passes, from the time of one."""
        return self.passes * self.seconds_per_pass

    def __str__(self) -> str:
        return (f"gradcheck {self.model} at batch {self.batch}, float64: {len(self.tensors)} tensors, "
                f"{self.passes:,} forward passes, about {_duration(self.seconds)} "
                f"(one pass took {_duration(self.seconds_per_pass)})")


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


#: ``progress(tensor, entries_done, entries)``: called as each tensor starts (0 done) and after
#: each entry it checks.
Progress = Callable[[str, int, int], None]


#: Most forward passes a gradient check runs unless told otherwise (``max_passes``).
MAX_GRADCHECK_PASSES = 1_000_000


class Gradcheck:
    """A gradient check set up and planned, ready to :meth:`run` (see :func:`gradcheck`).

    Building it makes the float64 executor (its memory checked first), refuses a check of more
    than ``max_passes`` forward passes, runs and times a forward and backward pass, and fills
    :attr:`plan`.
    """

    def __init__(self, model: Any, batch: int = 2, seed: int = 0, samples: int = 6, eps: float = 1e-6,
                 tolerance: float = 1e-5, max_memory: int | None = None, max_passes: int = MAX_GRADCHECK_PASSES,
                 stand_ins: bool = False) -> None:
        batch, seed = _check_batch(batch), _check_seed(seed)
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise ArchcalcError(f"samples must be a positive int, got {samples!r}")
        self.eps = _finite("eps", eps)
        if self.eps == 0:
            raise ArchcalcError("eps must be a finite number above 0, got 0")
        self.tolerance = _finite("tolerance", tolerance)
        self.seed = seed
        graph = load(model)
        _refuse_stand_ins(graph, stand_ins)
        layers = infer_shapes(graph)
        sizes = [p.size for node in graph.nodes[1:] for p in get_op(node.type).params(layers[node.name]).values() if p.trainable]
        passes = 2 * sum(min(int(samples), size) for size in [*sizes, batch * math.prod(graph.input_shape)])
        if passes > max_passes:  # refused before any array exists
            raise ArchcalcError(
                f"gradcheck {graph.name}: {samples} entries per tensor would take {passes:,} forward passes, "
                f"over the bound of {max_passes:,}; check fewer entries (--samples) or raise the bound (max_passes= in Python)"
            )
        self.executor = executor = Executor(graph, seed=seed, dtype="float64", max_memory=max_memory, batch=batch,
                                            stand_ins=stand_ins)
        executor.check_memory(batch)
        self.rng = rng = np.random.default_rng(seed + 1)
        with executor._out_of_memory(f"making a batch of {batch}", batch):
            self.x = rng.standard_normal((batch, *executor.graph.input_shape))
            self.probe = rng.standard_normal((batch, *executor.layers[executor.graph.nodes[-1].name].out_shape))
        self._loss()
        grads = executor.backward(self.probe)
        start = time.perf_counter()  # a second pass: the first pays for page faults and warm-up
        self._loss()
        seconds = time.perf_counter() - start
        self.tensors = [(name, executor.params[name], grads[name]) for name in executor.params if name in executor.trainable]
        self.tensors.append(("input", self.x, executor.input_grad))
        self.plan = GradcheckPlan(executor.graph.name, batch, tuple(
            (name, tuple(tensor.shape), min(int(samples), tensor.size)) for name, tensor, _ in self.tensors), seconds)

    def _loss(self) -> float:
        return float((self.executor.forward(self.x, seed=self.seed) * self.probe).sum())

    def run(self, progress: Progress | None = None) -> GradcheckReport:
        """Perturb each tensor's sampled entries by +-eps and compare; ``progress`` hears of each entry."""
        report = GradcheckReport(self.executor.graph.name, self.tolerance, batch=self.plan.batch)
        eps = self.eps
        for (name, tensor, analytic), (_, _, entries) in zip(self.tensors, self.plan.tensors):
            flat = tensor.reshape(-1)
            picks = self.rng.choice(flat.size, size=entries, replace=False)
            worst_abs = worst_rel = 0.0
            if progress:
                progress(name, 0, entries)
            for done, index in enumerate(picks, 1):
                original = flat[index]
                flat[index] = original + eps
                plus = self._loss()
                flat[index] = original - eps
                minus = self._loss()
                flat[index] = original
                numeric = (plus - minus) / (2 * eps)
                exact = analytic.reshape(-1)[index]
                worst_abs = max(worst_abs, abs(exact - numeric))
                if abs(exact - numeric) > GRADCHECK_ATOL:  # below it, both are 0 up to rounding: no relative error
                    worst_rel = max(worst_rel, abs(exact - numeric) / (abs(exact) + abs(numeric)))
                if progress:
                    progress(name, done, entries)
            report.rows.append(GradcheckRow(name, tuple(tensor.shape), entries, worst_abs, worst_rel,
                                            passed=bool(worst_rel <= self.tolerance)))
        return report


def gradcheck(model: Any, batch: int = 2, seed: int = 0, samples: int = 6, eps: float = 1e-6,
              tolerance: float = 1e-5, max_memory: int | None = None, progress: Progress | None = None,
              max_passes: int = MAX_GRADCHECK_PASSES, stand_ins: bool = False) -> GradcheckReport:
    """Compare backward's gradients with central differences, in float64.

    The loss is ``sum(output * R)`` for a fixed random ``R``, so dJ/d(output) = R. For each
    parameter tensor (and the input), ``samples`` random entries are perturbed by +-eps;
    relative error = |analytic - numeric| / (|analytic| + |numeric|), counted only where the
    absolute difference exceeds :data:`GRADCHECK_ATOL` (1e-8: below it both are 0 up to rounding,
    as for a bias before a training batchnorm, whose true gradient is 0). Dropout's masks
    are fixed across the perturbed passes; batchnorm uses batch statistics (training mode).
    The memory is checked against ``max_memory`` (default: half the memory available) before
    anything is allocated. ``progress(tensor, entries_done, entries)`` is called as each tensor
    starts and after each entry; :class:`Gradcheck` also gives the plan (passes, time) first.

    Raises:
        ArchcalcError: for bad arguments, a model that would not fit under the limit, or a
            check of more than ``max_passes`` forward passes.
    """
    return Gradcheck(model, batch, seed, samples, eps, tolerance, max_memory, max_passes, stand_ins).run(progress)

"""The reference executor: the analysed graph run on NumPy arrays, forward, backward and SGD.

It allocates nothing by its own arithmetic: every op's output is checked against the
analyzer's shape, and the multiply-accumulates conv and linear layers actually performed are
counted and checked against the analyzer's MACs, so analyzer and executor check each other.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from archcalc.errors import ArchcalcError
from archcalc.graph import Graph
from archcalc.loading import load
from archcalc.ops import RunContext, get_op
from archcalc.passes import analyze, infer_shapes
from archcalc.render.format import binary_bytes

DTYPES = ("float32", "float64")


class ExecutionMismatch(AssertionError):
    """The executor produced a shape or a MAC count the analyzer did not predict: a bug."""


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux; physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


#: Default memory limit: this fraction of the memory available when the executor starts.
MEMORY_FRACTION = 0.5


@dataclass
class LayerTiming:
    """Accumulated wall time of one layer's forward and backward passes, in seconds."""

    forward: float = 0.0
    backward: float = 0.0


class Executor:
    """Runs a graph on arrays of shape (N, *input_shape).

    Args:
        model: anything :func:`archcalc.load` takes.
        seed: seeds the parameter initialisation and dropout.
        dtype: ``float32`` or ``float64`` (gradient checks).
        max_memory: refuse batches whose estimated memory exceeds this many bytes (default:
            half the memory available).

    Parameters are named ``layer.weight`` / ``layer.bias`` (and BatchNorm's
    ``running_mean`` / ``running_var``), He-initialised for conv and linear weights.
    """

    def __init__(self, model: Any, seed: int = 0, dtype: str = "float32", max_memory: int | None = None) -> None:
        if dtype not in DTYPES:
            raise ArchcalcError(f"the executor runs float32 or float64, got {dtype!r}")
        self.graph: Graph = load(model)
        self.layers = infer_shapes(self.graph)
        self.dtype = np.dtype(dtype)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.max_memory = max_memory if max_memory is not None else int(MEMORY_FRACTION * available_memory())
        self.training = True
        #: Compute dJ/d(network input) in backward (:attr:`input_grad`). False saves the first
        #: layers' input-gradient work when training, as frameworks skip it for inputs.
        self.needs_input_grad = True
        self.params: dict[str, np.ndarray] = {}
        self.trainable: set[str] = set()
        #: Each node's parameters: (name in the op, name in ``params``).
        self._param_names: dict[str, list[tuple[str, str]]] = {}
        for node in self.graph.nodes[1:]:
            self._param_names[node.name] = []
            for name, param in get_op(node.type).params(self.layers[node.name]).items():
                key = f"{node.name}.{name}"
                self.params[key] = self._initial(name, param.shape)
                self._param_names[node.name].append((name, key))
                if param.trainable:
                    self.trainable.add(key)
        self.velocity: dict[str, np.ndarray] = {}
        self.timings: dict[str, LayerTiming] = {node.name: LayerTiming() for node in self.graph.nodes[1:]}
        self.macs_performed: dict[str, int] = {}
        self.input_grad: np.ndarray | None = None
        self._caches: dict[str, Any] = {}
        self._checked_batches: set[int] = set()

    def _initial(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name == "weight" and len(shape) >= 2:  # conv or linear: He (Kaiming normal, fan in)
            fan_in = math.prod(shape[1:])
            return (self.rng.standard_normal(shape) * math.sqrt(2 / fan_in)).astype(self.dtype)
        if name in ("weight", "running_var"):  # batchnorm scale, running variance
            return np.ones(shape, dtype=self.dtype)
        return np.zeros(shape, dtype=self.dtype)

    def train(self) -> Executor:
        """Training mode: dropout drops, batchnorm uses batch statistics."""
        self.training = True
        return self

    def eval(self) -> Executor:
        """Inference mode: dropout is the identity, batchnorm uses its running averages."""
        self.training = False
        return self

    def memory_estimate(self, batch: int) -> tuple[int, int]:
        """(training memory from the analyzer, the im2col buffers of the active kernels), in bytes."""
        analysis = analyze(self.graph, batch=batch, dtype=self.dtype.name)
        from archcalc import kernels

        workspace = 0
        for node in self.graph.nodes[1:]:
            if node.type == "conv":
                layer = self.layers[node.name]
                taps = math.prod(layer.attrs["kernel"])
                workspace += kernels.conv_workspace(batch, layer.in_shape[0], taps, math.prod(layer.out_shape[1:]),
                                                    self.dtype.itemsize)
        return analysis.totals.training_bytes, workspace * self.dtype.itemsize

    def check_memory(self, batch: int) -> None:
        """Refuse a batch whose estimated memory exceeds ``max_memory``."""
        if batch in self._checked_batches:
            return
        training, workspace = self.memory_estimate(batch)
        if training + workspace > self.max_memory:
            raise ArchcalcError(
                f"running {self.graph.name} at batch {batch} in {self.dtype.name} needs an estimated "
                f"{binary_bytes(training + workspace)} (training memory {binary_bytes(training)} + im2col buffers "
                f"{binary_bytes(workspace)}), over the limit of {binary_bytes(self.max_memory)}; "
                "use a smaller batch or raise the limit (--max-memory)"
            )
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
        x = np.ascontiguousarray(x, dtype=self.dtype)
        ctx = RunContext(self.training, self.rng if seed is None else np.random.default_rng(seed))
        outputs = {self.graph.nodes[0].name: x}
        self._caches = {}
        for node in self.graph.nodes[1:]:
            layer = self.layers[node.name]
            params = {name: self.params[key] for name, key in self._param_names[node.name]}
            before = ctx.macs
            ctx.input_grads = self.needs_input_grad or any(ref != self.graph.nodes[0].name for ref in node.inputs)
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
        """Per conv/linear node: (MACs performed in the last forward, the analyzer's); raises on a mismatch."""
        analysis = analyze(self.graph, batch=self._batch)
        result = {}
        for row in analysis.layers[1:]:
            performed = self.macs_performed.get(row.name, 0)
            if row.type in ("conv", "linear") and performed != row.macs:
                raise ExecutionMismatch(f"layer {row.name!r}: performed {performed} MACs, the analyzer says {row.macs}")
            if row.type in ("conv", "linear"):
                result[row.name] = (performed, row.macs)
        return result

    def backward(self, dy: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of every trainable parameter, by name, from ``dy`` = dJ/d(output).

        The gradient w.r.t. the input is left in :attr:`input_grad` (None when
        :attr:`needs_input_grad` is False and a first layer skipped it).
        """
        last = self.graph.nodes[-1]
        expected = (self._batch, *self.layers[last.name].out_shape)
        if dy.shape != expected:
            raise ArchcalcError(f"dy must have the output's shape {expected}, got {tuple(dy.shape)}")
        grads_out: dict[str, np.ndarray] = {last.name: np.asarray(dy, dtype=self.dtype)}
        grads: dict[str, np.ndarray] = {}
        for node in reversed(self.graph.nodes[1:]):
            d_out = grads_out.pop(node.name, None)
            if d_out is None:  # nothing downstream reads this node
                d_out = np.zeros((self._batch, *self.layers[node.name].out_shape), dtype=self.dtype)
            start = time.perf_counter()
            d_inputs, d_params = get_op(node.type).backward(self.layers[node.name], d_out, self._caches[node.name])
            self.timings[node.name].backward += time.perf_counter() - start
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
        """SGD: ``v = momentum * v + (g + weight_decay * w)``; ``w -= lr * v`` (PyTorch's form)."""
        for name, grad in grads.items():
            if name not in self.trainable:
                continue
            update = grad + weight_decay * self.params[name] if weight_decay else grad
            if momentum:
                velocity = self.velocity.get(name)
                update = velocity * momentum + update if velocity is not None else update.copy()
                self.velocity[name] = update
            self.params[name] -= (lr * update).astype(self.dtype)


def loss_and_grad(executor: Executor, output: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """The training loss of a batch and dJ/d(output).

    A class output (N, classes) gets softmax cross-entropy with integer targets; when the
    network ends in its own softmax, the negative log-likelihood of its probabilities. Any
    other output gets the mean squared error to ``targets`` of its shape.
    """
    from archcalc import kernels

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


@dataclass
class GradcheckRow:
    """One tensor's check: largest absolute and relative error over the sampled entries."""

    name: str
    shape: tuple[int, ...]
    checked: int
    max_abs_error: float
    max_rel_error: float


@dataclass
class GradcheckReport:
    """Analytic vs central-difference gradients, per parameter tensor and the input."""

    model: str
    tolerance: float
    rows: list[GradcheckRow] = field(default_factory=list)

    @property
    def max_rel_error(self) -> float:
        """The worst relative error of any tensor."""
        return max((row.max_rel_error for row in self.rows), default=0.0)

    @property
    def passed(self) -> bool:
        """Every tensor within the tolerance."""
        return self.max_rel_error <= self.tolerance

    def __str__(self) -> str:
        lines = [f"gradcheck {self.model}: {'passed' if self.passed else 'FAILED'} "
                 f"(max relative error {self.max_rel_error:.2e}, tolerance {self.tolerance:.0e})"]
        lines += [f"  {r.name:<40} {str(r.shape):<18} {r.checked:>4} entries  abs {r.max_abs_error:.2e}  rel {r.max_rel_error:.2e}"
                  for r in self.rows]
        return "\n".join(lines)


def gradcheck(model: Any, batch: int = 2, seed: int = 0, samples: int = 6, eps: float = 1e-6,
              tolerance: float = 1e-5) -> GradcheckReport:
    """Compare backward's gradients with central differences, in float64.

    The loss is ``sum(output * R)`` for a fixed random ``R``, so dJ/d(output) = R. For each
    parameter tensor (and the input), ``samples`` random entries are perturbed by +-eps;
    relative error = |analytic - numeric| / max(|analytic| + |numeric|, 1e-12). Dropout's masks
    are fixed across the perturbed passes; batchnorm uses batch statistics (training mode).
    """
    executor = Executor(model, seed=seed, dtype="float64")
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((batch, *executor.graph.input_shape))
    probe = rng.standard_normal((batch, *executor.layers[executor.graph.nodes[-1].name].out_shape))

    def loss(inputs: np.ndarray) -> float:
        return float((executor.forward(inputs, seed=seed) * probe).sum())

    loss(x)
    grads = executor.backward(probe)
    input_grad = executor.input_grad
    report = GradcheckReport(executor.graph.name, tolerance)
    tensors = [(name, executor.params[name], grads[name]) for name in executor.params if name in executor.trainable]
    tensors.append(("input", x, input_grad))
    for name, tensor, analytic in tensors:
        flat = tensor.reshape(-1)
        picks = rng.choice(flat.size, size=min(samples, flat.size), replace=False)
        worst_abs = worst_rel = 0.0
        for index in picks:
            original = flat[index]
            flat[index] = original + eps
            plus = loss(x)
            flat[index] = original - eps
            minus = loss(x)
            flat[index] = original
            numeric = (plus - minus) / (2 * eps)
            exact = analytic.reshape(-1)[index]
            worst_abs = max(worst_abs, abs(exact - numeric))
            worst_rel = max(worst_rel, abs(exact - numeric) / max(abs(exact) + abs(numeric), 1e-12))
        report.rows.append(GradcheckRow(name, tensor.shape, len(picks), worst_abs, worst_rel))
    return report

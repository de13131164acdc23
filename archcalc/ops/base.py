"""The op registry: each layer type is one registered class holding all its rules.

An op declares its attributes (:class:`~archcalc.ops.attrs.Attr`), how many inputs it takes,
whether its output needs new storage, and its rules: the output shape, parameter shapes, cost
(MACs and other element-wise ops, separately), and the receptive-field window per axis. The
passes call these rules and nothing else, so a new op changes no pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from archcalc.errors import RuleError, check
from archcalc.ops.attrs import REQUIRED, Attr

Shape = tuple[int, ...]

#: Most axes a sample's tensor may have: NumPy holds 64, and the executor adds the batch axis.
MAX_RANK = 63

#: Names of the spatial axes of a channels-first tensor, by spatial rank.
AXIS_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


@dataclass(frozen=True, slots=True)
class Layer:
    """One node as the rules see it: resolved attributes, input shapes and output shape."""

    attrs: Mapping[str, Any]
    in_shapes: tuple[Shape, ...]
    out_shape: Shape

    @property
    def in_shape(self) -> Shape:
        """The first (for most ops the only) input shape."""
        return self.in_shapes[0]


@dataclass(frozen=True, slots=True)
class Role:
    """What a parameter tensor is, which figures count it, and how it starts.

    ``learned``: a parameter PyTorch lists in ``model.parameters()`` (training updates it);
    otherwise a *buffer*, saved state such as batchnorm's running statistics. ``kernel``: a
    conv, transposed-conv or linear kernel weight, what the lecture's rows count ("weights
    only"). ``init``: ``he_normal`` (Kaiming normal, fan in = the product of all axes but the
    first, as PyTorch computes it), ``zeros``, ``ones`` or ``constant <value>`` (every value
    ``float(<value>)``: PReLU's slope starts at 0.25).
    """

    name: str
    learned: bool
    kernel: bool
    init: str


#: Kernel weights of conv, transposed conv and linear layers.
WEIGHT = Role("weight", learned=True, kernel=True, init="he_normal")
#: Additive biases.
BIAS = Role("bias", learned=True, kernel=False, init="zeros")
#: A normalisation's learned scale (gamma).
SCALE = Role("scale", learned=True, kernel=False, init="ones")
#: A normalisation's learned shift (beta).
SHIFT = Role("shift", learned=True, kernel=False, init="zeros")
#: Batchnorm's running mean: a buffer.
RUNNING_MEAN = Role("running_mean", learned=False, kernel=False, init="zeros")
#: Batchnorm's running variance: a buffer.
RUNNING_VAR = Role("running_var", learned=False, kernel=False, init="ones")
#: A learned activation slope (PReLU's weight), 0.25 at the start as PyTorch's default ``init``.
SLOPE = Role("slope", learned=True, kernel=False, init="constant 0.25")


@dataclass(frozen=True, slots=True)
class Param:
    """A parameter or buffer tensor of an op: its shape and its :class:`Role`."""

    shape: Shape
    role: Role

    @property
    def size(self) -> int:
        """Number of values."""
        return math.prod(self.shape)

    @property
    def trainable(self) -> bool:
        """Whether training updates it: a learned parameter, not a buffer."""
        return self.role.learned


@dataclass(frozen=True, slots=True)
class Cost:
    """Work of one forward pass for one sample: multiply-accumulates and other ops, apart."""

    macs: int = 0
    other_ops: int = 0


@dataclass(frozen=True, slots=True)
class BackwardCost:
    """Work of one backward pass for one sample (:meth:`Op.backward_cost`), MACs by gradient.

    ``input_grad_macs``: the multiply-accumulates of the gradient with respect to the layer's
    inputs, as if they need one (whether they do is the graph's business:
    :func:`archcalc.passes.input_grad_needed`; frameworks skip it for a first conv).
    ``weight_grad_macs``: those of the gradients of its learned parameters. ``other_ops``: the
    element-wise work of backward the op states (a bias gradient's sums), 0 where it states none.
    """

    input_grad_macs: int = 0
    weight_grad_macs: int = 0
    other_ops: int = 0

    @property
    def macs(self) -> int:
        """Both gradients' MACs (the input gradient's counted as if needed)."""
        return self.input_grad_macs + self.weight_grad_macs


@dataclass(frozen=True, slots=True)
class Window:
    """A sliding window per spatial axis, as the receptive-field pass needs it.

    ``input_dilation`` (JAX's ``lhs_dilation``; empty means 1 on every axis) slides the window
    over the input with ``input_dilation - 1`` zeros inserted between neighbouring values: a
    transposed conv of stride s is the window with ``input_dilation`` s, stride 1 and padding
    ``d*(k-1) - p`` before. Padding is then counted in positions of that dilated input, and may
    be negative (a crop). ``uniform`` is false when the windows differ in size or spacing
    (adaptive pooling to a size the input does not divide): ``kernel`` is then the largest.
    """

    kernel: Shape
    stride: Shape
    dilation: Shape
    padding: tuple[tuple[int, int], ...]
    input_dilation: Shape = ()
    uniform: bool = True


#: What a tensor kept for backward is (:class:`Saved`): one of the layer's inputs, its output, one of its
#: parameters or buffers (already counted in params and buffers), or a new buffer the forward pass
#: makes only for backward (max-pool's int64 indices, a dropout mask, batchnorm's batch statistics).
SAVED_KINDS = ("input", "output", "param", "buffer")


@dataclass(frozen=True, slots=True)
class Saved:
    """One tensor an op's backward keeps (what PyTorch's autograd saves for it), from its forward.

    ``kind`` is one of :data:`SAVED_KINDS`. ``shape`` is per sample when ``batched`` (the batch axis
    left out, as every shape here), else the whole tensor (batchnorm's per-channel statistics, a
    "batch" stochastic-depth draw). ``dtype`` None means the analysis' dtype; otherwise ``int64``
    (max-pool indices) or ``bool``. ``index`` is the input's position (kind ``input``), ``name`` the
    parameter's name (kind ``param``) or what a new buffer holds (kind ``buffer``).
    """

    kind: str
    shape: Shape
    dtype: str | None = None
    index: int = 0
    name: str = ""
    batched: bool = True

    def values(self, batch: int) -> int:
        """Number of values for a batch of ``batch`` samples."""
        return math.prod(self.shape) * (batch if self.batched else 1)


def keeps_input(layer: Layer, index: int = 0) -> Saved:
    """The layer's input ``index`` as a kept tensor (its storage, shared with whoever else keeps it)."""
    return Saved("input", layer.in_shapes[index], index=index)


def keeps_output(layer: Layer) -> Saved:
    """The layer's output as a kept tensor."""
    return Saved("output", layer.out_shape)


def keeps_param(name: str, shape: Shape) -> Saved:
    """A parameter or buffer of the layer (counted in params and buffers, not again in activations)."""
    return Saved("param", shape, name=name, batched=False)


def new_buffer(name: str, shape: Shape, dtype: str | None = None, batched: bool = True) -> Saved:
    """A tensor the forward pass makes only for backward (indices, a mask, statistics)."""
    return Saved("buffer", shape, dtype, name=name, batched=batched)


@dataclass(frozen=True, slots=True)
class SizeDependence:
    """A resolved attribute worked out from the layer's input size that another size would change.

    ``attribute`` names it (``padding``) and ``axis`` the spatial axis (0 is the first); ``text``
    gives the arithmetic at this size and at the nearest size where it differs, for ``explain``;
    ``moves_field`` is true when it changes the receptive field's geometry (the window's kernel,
    stride or padding before), not only the output size.
    """

    attribute: str
    axis: int
    text: str
    moves_field: bool


#: ``window()`` result of ops whose output unit sees exactly its input unit's field.
POINTWISE = "pointwise"
#: ``window()`` result of ops whose every output sees the whole input (linear, global pool).
GLOBAL = "global"
#: ``window()`` result of ops whose field archcalc cannot know (an imported op passed through by
#: ``--partial``): the field is reported as the whole input, flagged as an upper bound.
UNKNOWN = "unknown"


@dataclass
class RunContext:
    """What a forward pass needs besides arrays: the mode, the dropout RNG, a MAC counter."""

    training: bool
    rng: Any
    #: Multiply-accumulates the ops actually performed (conv and linear count theirs).
    macs: int = 0
    #: Multiply-accumulates the backward products performed, counted like :attr:`macs` from the
    #: operands of the products run: an op that multiplies keeps this context in its forward
    #: cache and its backward adds here (the executor's ``check_backward_macs`` compares them
    #: with :meth:`Op.backward_cost`).
    input_grad_macs: int = 0
    weight_grad_macs: int = 0
    #: Whether backward must return the gradient of this node's inputs; when False (the node
    #: reads only the network input and nobody asked for its gradient) an op may return None.
    input_grads: bool = True


@dataclass(frozen=True, slots=True)
class Example:
    """A tiny instance of an op that the registry-wide tests run."""

    attrs: Mapping[str, Any]
    inputs: tuple[Shape, ...]
    output: Shape = field(default=())


class Op:
    """Base of every op. Subclasses set ``type`` and ``attrs`` and implement the rules."""

    type: ClassVar[str]
    attrs: ClassVar[tuple[Attr, ...]] = ()
    #: Smallest and largest number of inputs (None: any number).
    arity: ClassVar[tuple[int, int | None]] = (1, 1)
    #: False for ops that run in place (ReLU, dropout, add) or are views (flatten, identity).
    stores_output: ClassVar[bool] = True
    #: True for views (flatten, identity): the output is the input's storage, whatever else reads
    #: it. An in-place op (stores_output False, not a view) overwrites an input, so it needs new
    #: storage after all when every input it could overwrite is read by another layer too.
    view: ClassVar[bool] = False
    #: How many leading inputs' values reach the output (None: all). A crop to a second input's
    #: size reads only its first input's values: the receptive field follows the first alone.
    field_inputs: ClassVar[int | None] = None
    #: Whether an output value depends on other positions along the channel axis (softmax, LRN,
    #: a channel shuffle: True) or only on its own (element-wise ops: False); None when unknown.
    #: The receptive-field pass reads it after a permute has put a spatial axis there; undeclared,
    #: an op running in place is taken as element-wise and any other as unknown.
    mixes_channels: ClassVar[bool | None] = None
    examples: ClassVar[tuple[Example, ...]] = ()
    #: True for ops whose training-mode output is random (dropout's masks): the same input and
    #: parameters give another output on each call, so tests compare their masks' statistics,
    #: not their values, with torch's.
    random: ClassVar[bool] = False
    #: True for ops whose forward is a stand-in with the right shapes, not the computation
    #: (``opaque``: an imported op archcalc has no rule for); the executor refuses to run them
    #: unless told (``Executor(..., stand_ins=True)``, as the registry-wide tests do).
    stand_in: ClassVar[bool] = False
    #: How :meth:`cost` counts other ops, in words (``explain`` and the docs show it), e.g.
    #: ``(prod(k) - 1) comparisons per output value``. Every op declares one.
    other_ops_rule: ClassVar[str] = ""

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        """Attributes with everything that depends on the input made explicit (per-axis)."""
        return dict(attrs)

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        """The shape rule."""
        raise NotImplementedError

    def infer(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Layer:
        """Resolve attributes and apply the shape rule; raises RuleError when shapes don't work,
        or when the output has more than :data:`MAX_RANK` axes."""
        resolved = self.resolve(attrs, in_shapes)
        out_shape = self.output_shape(resolved, in_shapes)
        check(
            len(out_shape) <= MAX_RANK,
            lambda: f"the output would have {len(out_shape)} axes; at most {MAX_RANK} (NumPy's 64 with the batch axis)",
        )
        return Layer(resolved, in_shapes, out_shape)

    def params(self, layer: Layer) -> dict[str, Param]:
        """Parameter tensors by name."""
        return {}

    def cost(self, layer: Layer) -> Cost:
        """MACs and other ops of one forward pass for one sample."""
        raise NotImplementedError

    def backward_cost(self, layer: Layer) -> BackwardCost:
        """MACs of one backward pass for one sample: the input gradient's (as if the input needs
        one) and the learned parameters' gradients', and the element-wise backward work the op
        states as other ops.

        The default, for ops without MACs: none, and no other ops: their element-wise backward
        work (a ReLU's mask, a pool's scatter) is not counted. Every op whose forward has MACs
        overrides it with the products its backward runs, the rule stated in its docstring
        ("backward: ..."); tests/test_training.py checks each against the executor's backward.
        """
        return BackwardCost()

    def window(self, layer: Layer) -> Window | str:
        """The receptive-field window: a :class:`Window`, ``POINTWISE``, ``GLOBAL`` or ``UNKNOWN``."""
        raise NotImplementedError

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps of this layer's forward pass, as PyTorch's autograd saves it in
        training mode when the inputs need gradients: a tuple of :class:`Saved` (empty: only shapes),
        or ``UNKNOWN`` for an op whose backward archcalc cannot know (an imported stand-in). Every
        registered op states its own (registration refuses an op that does not) and documents it
        in its docstring ("saved for backward: ..."); the memory model (:mod:`archcalc.memory`)
        counts distinct storages once, and tests/test_memory.py checks each example against
        ``torch.autograd.graph.saved_tensors_hooks``."""
        raise NotImplementedError

    def summary(self, layer: Layer) -> str:
        """Key attributes in a few characters, e.g. ``3x3/1 p1, 64``."""
        return ""

    def channel_mixing(self, layer: Layer) -> bool | None:
        """Whether an output value of ``layer`` depends on other positions along the channel axis
        (:attr:`mixes_channels`, unless the layer's attributes decide it: a layernorm over the
        trailing axes leaves the channel axis alone)."""
        return self.mixes_channels

    def size_dependence(self, attrs: Mapping[str, Any], layer: Layer) -> tuple[SizeDependence, ...]:
        """The resolved attributes of ``layer`` that were worked out from its input size and would
        differ at another ("same" padding with a stride: MobileNetV1's first conv pads 0 before at
        224 and 1 at 225); empty when none. ``attrs`` are the attributes as given, before resolve.

        The default covers every attribute declared with the ``padding`` converter
        (:func:`archcalc.ops.attrs.padding`) and given as "same", resolved by
        :func:`archcalc.ops.window.resolve_window` (conv, max/avg pool): see
        :func:`archcalc.ops.window.same_padding_dependence`. An op that resolves anything else
        from its input size (adaptive pooling's windows) overrides this.
        """
        from archcalc.ops.attrs import padding
        from archcalc.ops.window import same_padding_dependence

        return tuple(
            dependence
            for attr in self.attrs
            if attr.convert is padding and attrs.get(attr.name) == "same"
            for dependence in same_padding_dependence(layer, attr.name)
        )

    def workspace(self, layer: Layer, batch: int, itemsize: int) -> int:
        """Values of scratch buffers the executor's kernels hold for this layer at ``batch``
        (im2col matrices kept for backward); 0 for ops that need none."""
        return 0

    def stream_workspace(self, layer: Layer, batch: int, itemsize: int) -> int:
        """Values of scratch buffers the executor's kernels allocate while this layer runs (forward
        or backward) and free after it; 0 for ops that need none."""
        return 0

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        """``(y, cache)`` for a batch: the cs231n protocol, arrays shaped (N, *shape)."""
        raise NotImplementedError

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        """``([dx per input], {param name: gradient})`` from the forward pass's cache."""
        raise NotImplementedError

    def torch_module(self, layer: Layer) -> Any:
        """The PyTorch module computing this layer, called with its inputs (imports torch; its
        parameters and buffers carry the names :meth:`params` gives, on the module or on its
        ``inner`` module). The tests use it as an independent oracle: torch's own layers must
        agree with these rules on shapes, parameters, MACs, outputs and gradients."""
        raise NotImplementedError

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        """The arithmetic of output shape, params and MACs as (quantity, text) lines."""
        return [("output shape", f"same as the input: {format_shape(layer.in_shape)}")]

    def defaults(self) -> dict[str, Any]:
        """Default values of the optional attributes."""
        return {a.name: a.default for a in self.attrs if a.default is not REQUIRED}


def format_shape(shape: Shape) -> str:
    """``(64, 224, 224)``; a one-axis shape keeps its comma: ``(4096,)``."""
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


REGISTRY: dict[str, Op] = {}

_RULES = ("output_shape", "cost", "window", "forward", "backward", "torch_module")


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: add an op to the registry, checking that it is complete and unique."""
    op_type = getattr(cls, "type", None)
    if not op_type:
        raise TypeError(f"{cls.__name__} has no type")
    if op_type in REGISTRY:
        raise TypeError(f"op type {op_type!r} registered twice ({cls.__name__})")
    missing = [rule for rule in _RULES if getattr(cls, rule) is getattr(Op, rule)]
    if missing:
        raise TypeError(f"op {op_type!r} lacks rule(s): {', '.join(missing)}")
    if not cls.__doc__:
        raise TypeError(f"op {op_type!r} has no docstring")
    if not cls.other_ops_rule:
        raise TypeError(f"op {op_type!r} does not say how it counts other ops (other_ops_rule)")
    names = [a.name for a in cls.attrs]
    if len(set(names)) != len(names):
        raise TypeError(f"op {op_type!r} declares an attribute twice")
    if "saved" not in vars(cls):
        raise TypeError(f"op {op_type!r} does not state what its backward keeps (its own saved rule)")
    REGISTRY[op_type] = cls()
    return cls


def get_op(op_type: str) -> Op:
    """The registered op of a type; RuleError naming the closest types if unknown."""
    try:
        return REGISTRY[op_type]
    except KeyError:
        raise RuleError(f"unknown type {op_type!r}{did_you_mean(op_type, REGISTRY)}") from None


def did_you_mean(word: str, choices: Any) -> str:
    """``; did you mean 'stride'?`` when one choice is close to ``word``, else ``""``."""
    import difflib

    word = str(word)
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:  # a longer or shorter spelling of a name: "convolution" for "conv"
        close = [c for c in choices if len(c) >= 3 and (word.startswith(c) or c.startswith(word))][:1]
    return f"; did you mean {close[0]!r}?" if close else ""

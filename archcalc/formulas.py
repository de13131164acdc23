"""The arithmetic of archcalc's conventions: one pure function per formula.

Op rules call these, and students may import them; a formula exists only here. Counts are
exact Python ints. Impossible inputs raise :class:`archcalc.errors.RuleError` (a
``ValueError``) whose message shows the arithmetic that failed.

Each ``explain_*`` function writes the same arithmetic out as a student would, ending in
``= <value>``, with the value taken from the formula itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from archcalc.errors import check

#: Bytes per value of each dtype archcalc reports memory for.
DTYPE_BYTES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "int8": 1}

#: Optimizer state per trainable parameter, in parameter-sized slots.
OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}


@dataclass(frozen=True, slots=True)
class UpdateCost:
    """One optimizer step's work per trainable parameter: ``macs`` multiply-adds (a multiply and
    the add it feeds, ``a*b + c``, is one) and ``other_ops`` (the lone multiplies, divisions,
    square roots and adds left), with the formula they count."""

    macs: int
    other_ops: int
    formula: str


#: Work of one step per trainable parameter, from the algorithms in PyTorch's torch.optim docs
#: (SGD, https://pytorch.org/docs/stable/generated/torch.optim.SGD.html, and Adam,
#: https://pytorch.org/docs/stable/generated/torch.optim.Adam.html), with their defaults: no
#: weight decay (``g + lambda*theta`` would add one multiply-add), no dampening, no Nesterov, no
#: amsgrad. Momentum's count is a step after the first (the first sets b = g). Adam's bias
#: corrections are counted per parameter as written (m_hat = m / (1 - beta1^t)); PyTorch's
#: implementation folds them into scalars, which saves two divisions per parameter.
OPTIMIZER_UPDATE = {
    "sgd": UpdateCost(1, 0, "theta = theta - lr * g"),
    "momentum": UpdateCost(2, 0, "b = mu * b + g; theta = theta - lr * b"),
    "adam": UpdateCost(3, 8, "m = beta1 * m + (1 - beta1) * g (1 multiply-add + 1 multiply); "
                             "v = beta2 * v + (1 - beta2) * g^2 (1 + 2 multiplies); m_hat = m / (1 - beta1^t), "
                             "v_hat = v / (1 - beta2^t) (2 divisions); theta = theta - lr * m_hat / (sqrt(v_hat) + eps) "
                             "(1 multiply-add + a square root, an add and a division)"),
}


def _pair(padding: int | Sequence[int]) -> tuple[int, int]:
    """Padding on one axis as (before, after)."""
    if isinstance(padding, int):
        return padding, padding
    before, after = padding
    return before, after


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """Span of a dilated kernel on one axis: ``d*(k-1) + 1``.

    >>> effective_kernel(3, dilation=2)
    5
    """
    return dilation * (kernel - 1) + 1


def conv_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int | Sequence[int] = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output size of a conv or pooling window on one axis.

    ``out = floor((in + p_before + p_after - d*(k-1) - 1) / s) + 1``, with ``ceil`` when
    ``ceil_mode`` (Caffe, GoogLeNet); then, as in PyTorch, a last window that would start in
    the right padding is dropped.

    >>> conv_output_size(32, 5)          # LeNet conv1: (32 - 5)/1 + 1
    28
    >>> conv_output_size(112, 3, 2, ceil_mode=True)   # GoogLeNet pool1
    56
    """
    before, after = _pair(padding)
    _check_window(size, kernel, stride, before, after, dilation)
    padded = size + before + after
    span = effective_kernel(kernel, dilation)
    check(
        span <= padded,
        lambda: (
            f"kernel {_kernel_text(kernel, dilation)} exceeds the padded input "
            f"{size} + {before} + {after} = {padded}"
        ),
    )
    _, out = output_size_arithmetic(size, kernel, stride, (before, after), dilation, ceil_mode)
    if ceil_mode and (out - 1) * stride >= size + before:
        out -= 1
    return out


def output_size_arithmetic(
    size: int, kernel: int, stride: int = 1, padding: int | Sequence[int] = 0, dilation: int = 1, ceil_mode: bool = False,
) -> tuple[str, int]:
    """The output-size formula written out with its numbers, and its value in exact integers,
    before PyTorch's ceil-mode correction: the one place the formula is computed and written.

    >>> output_size_arithmetic(5, 3, 2, 1)
    ('floor((5 + 1 + 1 - 1*(3-1) - 1) / 2) + 1', 3)
    """
    before, after = _pair(padding)
    rounding = "ceil" if ceil_mode else "floor"
    text = f"{rounding}(({size:,} + {before:,} + {after:,} - {dilation:,}*({kernel:,}-1) - 1) / {stride:,}) + 1"
    return text, _divide(size + before + after - effective_kernel(kernel, dilation), stride, ceil_mode) + 1


def _divide(numerator: int, denominator: int, ceil: bool = False) -> int:
    """``floor(n / d)`` or ``ceil(n / d)`` in exact integer arithmetic (a float is wrong above 2**53)."""
    return -(-numerator // denominator) if ceil else numerator // denominator


def _check_window(size: int, kernel: int, stride: int, before: int, after: int, dilation: int) -> None:
    """Sizes must be whole numbers: size, kernel, stride and dilation >= 1, padding >= 0."""
    for name, value, low in (("input size", size, 1), ("kernel", kernel, 1), ("stride", stride, 1),
                             ("dilation", dilation, 1), ("padding", before, 0), ("padding", after, 0)):
        check(isinstance(value, int) and not isinstance(value, bool) and value >= low,
              lambda name=name, value=value, low=low: f"{name} must be an int >= {low}, got {value!r}")


def _kernel_text(kernel: int, dilation: int) -> str:
    if dilation == 1:
        return str(kernel)
    return f"{kernel} at dilation {dilation} (span {effective_kernel(kernel, dilation)})"


def explain_conv_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int | Sequence[int] = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> str:
    """``conv_output_size`` written out: ``floor((224 + 1 + 1 - 1*(3-1) - 1) / 1) + 1 = 224``.

    Numbers of 1,000 and more are grouped by thousands:
    ``explain_conv_output_size(1024, 3, 2)`` is ``'floor((1,024 + 0 + 0 - 1*(3-1) - 1) / 2) + 1 = 511'``.
    """
    out = conv_output_size(size, kernel, stride, padding, dilation, ceil_mode)
    text, raw = output_size_arithmetic(size, kernel, stride, padding, dilation, ceil_mode)
    if raw != out:  # PyTorch's ceil rule: no window may start in the right padding
        text += " - 1"
    return f"{text} = {out:,}"


def same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's "same" padding on one axis, as (before, after).

    ``total = max((ceil(in/s) - 1)*s + d*(k-1) + 1 - in, 0)``, the odd pixel after
    (bottom/right), so that the output size is ``ceil(in/s)``.

    >>> same_padding(224, 3)
    (1, 1)
    >>> same_padding(224, 2, 2)
    (0, 0)
    >>> same_padding(5, 4)
    (1, 2)
    """
    _check_window(size, kernel, stride, 0, 0, dilation)
    total = max((_divide(size, stride, ceil=True) - 1) * stride + effective_kernel(kernel, dilation) - size, 0)
    return total // 2, total - total // 2


def conv_params(
    c_in: int, filters: int, kernel: Sequence[int], groups: int = 1, bias: bool = True
) -> int:
    """Parameters of a conv layer: ``f * (c/groups) * prod(k)`` weights, plus ``f`` biases.

    >>> conv_params(3, 64, (3, 3), bias=False)      # VGG16 conv1_1, the lecture's 1,728
    1728
    """
    check(c_in % groups == 0, lambda: f"input channels {c_in} do not divide by groups={groups}")
    check(filters % groups == 0, lambda: f"filters {filters} do not divide by groups={groups}")
    return filters * (c_in // groups) * math.prod(kernel) + (filters if bias else 0)


def conv_macs(
    c_in: int, filters: int, kernel: Sequence[int], out_spatial: Sequence[int], groups: int = 1
) -> int:
    """Multiply-accumulates of a conv layer: ``f * (c/groups) * prod(k) * prod(out)``.

    >>> conv_macs(3, 64, (3, 3), (224, 224))
    86704128
    """
    return filters * (c_in // groups) * math.prod(kernel) * math.prod(out_spatial)


def linear_params(n_in: int, n_out: int, bias: bool = True) -> int:
    """Parameters of a linear layer: ``in * out`` weights plus ``out`` biases.

    >>> linear_params(7 * 7 * 512, 4096, bias=False)   # VGG16 FC6, the lecture's 102,760,448
    102760448
    """
    return n_in * n_out + (n_out if bias else 0)


def linear_macs(n_in: int, n_out: int) -> int:
    """Multiply-accumulates of a linear layer: ``in * out``.

    >>> linear_macs(4096, 1000)
    4096000
    """
    return n_in * n_out


def batchnorm_params(channels: int) -> tuple[int, int]:
    """BatchNorm's (learned parameters, buffers): scale and shift; running mean and variance.

    >>> batchnorm_params(64)
    (128, 128)
    """
    return 2 * channels, 2 * channels


def flops(macs: int) -> int:
    """FLOPs of multiply-accumulates: one multiply and one add each, ``2 * MACs``."""
    return 2 * macs


def activation_bytes(values: int, dtype: str = "float32") -> int:
    """Bytes to store ``values`` numbers of ``dtype``.

    >>> activation_bytes(224 * 224 * 64)     # VGG16 conv1_1's output, float32
    12845056
    """
    check(dtype in DTYPE_BYTES, lambda: f"unknown dtype {dtype!r}; one of {', '.join(DTYPE_BYTES)}")
    return values * DTYPE_BYTES[dtype]


def training_bytes(
    params: int,
    params_trainable: int,
    activations: int,
    batch: int = 1,
    dtype: str = "float32",
    optimizer: str = "sgd",
) -> int:
    """Memory to train on a batch: weights + gradients + optimizer state + activations.

    ``params + trainable * (1 + slots) + activations * batch * 2`` values ("~*2 for bwd"), where
    ``activations`` is the forward total for one sample and ``slots`` is 0 for SGD, 1 for
    momentum and 2 for Adam. Every stored parameter counts once (BatchNorm's running
    statistics included); only trainable ones get a gradient and optimizer state.

    >>> training_bytes(100, 100, 1000, batch=2, dtype="float32", optimizer="adam")
    17600
    """
    check(optimizer in OPTIMIZER_SLOTS, lambda: f"unknown optimizer {optimizer!r}; one of {', '.join(OPTIMIZER_SLOTS)}")
    values = params + params_trainable * (1 + OPTIMIZER_SLOTS[optimizer]) + activations * batch * 2
    return activation_bytes(values, dtype)


#: A receptive-field quantity: an int, or a Fraction once a layer has a fractional stride
#: (upsampling by 2 is a stride of 1/2).
Exact = int | Fraction


def exact(value: Exact) -> Exact:
    """An int when ``value`` is whole, else the Fraction itself.

    >>> exact(Fraction(4, 2)), exact(Fraction(1, 2))
    (2, Fraction(1, 2))
    """
    return int(value) if isinstance(value, Fraction) and value.denominator == 1 else value


@dataclass(frozen=True, slots=True)
class Field:
    """Receptive field of a unit on one axis, in input pixels (Araujo et al., Distill 2019).

    ``size`` is the field's width, ``jump`` the distance between the fields of neighbouring
    units (the product of strides), ``padding`` the effective padding; the centre of unit 0 is
    derived from them. Each is exact: an int, or a Fraction after a fractional stride.
    """

    size: Exact
    jump: Exact
    padding: Exact

    @property
    def centre(self) -> Exact:
        """Centre of output unit 0 in input coordinates: ``(size - 1)/2 - padding``, exactly.

        >>> Field(size=3, jump=1, padding=1).centre, Field(size=4, jump=2, padding=0).centre
        (0, Fraction(3, 2))
        """
        return exact(Fraction(self.size - 1) / 2 - self.padding)


#: The field of the network input itself: each value sees one pixel.
INPUT_FIELD = Field(size=1, jump=1, padding=0)


def receptive_field_step(
    field: Field, kernel: int, stride: Exact = 1, dilation: int = 1, padding_before: Exact = 0, input_dilation: int = 1,
) -> Field:
    """The field after one window layer on one axis (Distill's recurrences).

    ``r += (k' - 1) * jump``; ``padding += p_before * jump``; ``jump *= s``. The stride may be a
    Fraction: an upsampling by 2 is a stride of 1/2, after which a 3-tap window spans 2 input pixels.
    With ``input_dilation`` D (zeros inserted between input values, as a transposed conv of
    stride D does) the window steps over positions ``jump / D`` apart: ``jump`` is first divided
    by D, and ``padding_before`` counts positions of the dilated input. The field is then an
    interval of rational width; the input pixels a unit sees are the whole numbers within
    ``centre +- (size - 1)/2``.

    >>> tconv = receptive_field_step(INPUT_FIELD, 4, 1, 1, 2, input_dilation=2)  # DCGAN: k4 s2 p1
    >>> tconv.size, tconv.jump, tconv.centre
    (Fraction(5, 2), Fraction(1, 2), Fraction(-1, 4))

    >>> receptive_field_step(receptive_field_step(INPUT_FIELD, 3), 3).size   # two 3x3 convs
    5
    >>> up = receptive_field_step(INPUT_FIELD, 1, Fraction(1, 2))            # upsample x2
    >>> up.jump, receptive_field_step(up, 3).size
    (Fraction(1, 2), 2)
    """
    jump = exact(Fraction(field.jump) / input_dilation) if input_dilation != 1 else field.jump
    return Field(
        size=exact(field.size + (effective_kernel(kernel, dilation) - 1) * jump),
        jump=exact(jump * stride),
        padding=exact(field.padding + padding_before * jump),
    )


def receptive_field(layers: Sequence[Sequence[int]]) -> Field:
    """Receptive field of a chain of ``(kernel, stride, dilation, padding_before)`` layers.

    >>> receptive_field([(3, 1, 1, 1)] * 3).size      # three stacked 3x3 convs see 7x7
    7
    """
    field = INPUT_FIELD
    for layer in layers:
        field = receptive_field_step(field, *layer)
    return field


def softmax(logits: Sequence[float]) -> list[float]:
    """``exp(h_i) / sum_j exp(h_j)``: probabilities in (0, 1) that sum to 1 (shifted by max(h)).

    >>> [round(p, 4) for p in softmax([1.0, 2.0, 3.0])]
    [0.09, 0.2447, 0.6652]
    """
    check(len(logits) > 0, lambda: "softmax of an empty vector")
    top = max(logits)
    exps = [math.exp(h - top) for h in logits]
    total = sum(exps)
    return [e / total for e in exps]


def cross_entropy(probs: Sequence[float], label: int) -> float:
    """``-log(p_label)``: the cross-entropy of predicted probabilities against a one-hot truth.

    >>> round(cross_entropy([0.25, 0.75], 1), 4)
    0.2877
    """
    check(0 <= label < len(probs), lambda: f"label {label} is not a class of {len(probs)}")
    check(probs[label] > 0, lambda: f"probability of the true class is {probs[label]}: the loss is infinite")
    return -math.log(probs[label])


def cross_entropy_grad(logits: Sequence[float], label: int) -> list[float]:
    """Gradient of ``cross_entropy(softmax(h), y)`` w.r.t. the logits: ``softmax(h) - onehot(y)``.

    >>> [round(g, 4) for g in cross_entropy_grad([1.0, 2.0, 3.0], 2)]
    [0.09, 0.2447, -0.3348]
    """
    probs = softmax(logits)
    check(0 <= label < len(probs), lambda: f"label {label} is not a class of {len(probs)}")
    return [p - (1.0 if i == label else 0.0) for i, p in enumerate(probs)]


def _finite_number(name: str, value: float) -> float:
    """``value`` as a float; RuleError unless it is a finite int or float a float can hold."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    try:
        ok = ok and math.isfinite(value)
    except OverflowError:  # an int beyond a float's range
        ok = False
    check(ok, lambda: f"{name} must be a finite number, got {value!r}" if not isinstance(value, int) or
          value.bit_length() < 256 else f"{name} must be a finite number, got an int of {value.bit_length()} bits")
    return float(value)


def _probability_label(label: float) -> float:
    label = _finite_number("label", label)
    check(0.0 <= label <= 1.0, lambda: f"label must be in [0, 1] (0 or 1 for a hard label), got {label!r}")
    return label


def sigmoid(logit: float) -> float:
    """``1 / (1 + exp(-h))``, the probability of class 1 from the logit ``h``, in [0, 1].

    Stable for any finite ``h``: for ``h < 0`` it is computed as ``exp(h) / (1 + exp(h))`` so
    ``exp`` never overflows.

    >>> sigmoid(0.0)
    0.5
    >>> round(sigmoid(2.0), 4), round(sigmoid(-2.0), 4)
    (0.8808, 0.1192)
    >>> sigmoid(-1000.0), sigmoid(1000.0)
    (0.0, 1.0)

    Raises:
        RuleError: the logit is not a finite number.
    """
    logit = _finite_number("logit", logit)
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    e = math.exp(logit)
    return e / (1.0 + e)


def binary_cross_entropy(logit: float, label: float) -> float:
    """``-y log p - (1 - y) log(1 - p)`` with ``p = sigmoid(h)``, computed from the logit ``h``.

    The stable form ``max(h, 0) - h*y + log(1 + exp(-|h|))`` (the one PyTorch's
    ``binary_cross_entropy_with_logits`` uses) never takes the log of 0 or overflows ``exp``;
    the label ``y`` is 0 or 1 (any value in [0, 1] is a soft label).

    >>> round(binary_cross_entropy(0.0, 1), 4)   # log 2: p = 0.5
    0.6931
    >>> round(binary_cross_entropy(2.0, 1), 4), round(binary_cross_entropy(2.0, 0), 4)
    (0.1269, 2.1269)
    >>> binary_cross_entropy(-100.0, 1)          # -log sigmoid(-100) = 100 + log(1 + e^-100)
    100.0
    >>> binary_cross_entropy(100.0, 1)           # log(1 + e^-100) = e^-100, not rounded to 0
    3.720075976020836e-44

    Raises:
        RuleError: the logit is not a finite number, or the label is not in [0, 1].
    """
    logit = _finite_number("logit", logit)
    label = _probability_label(label)
    return max(logit, 0.0) - logit * label + math.log1p(math.exp(-abs(logit)))


def binary_cross_entropy_grad(logit: float, label: float) -> float:
    """``dL/dh = sigmoid(h) - y``: the gradient of :func:`binary_cross_entropy` w.r.t. the logit.

    >>> binary_cross_entropy_grad(0.0, 1)
    -0.5
    >>> round(binary_cross_entropy_grad(2.0, 0), 4)
    0.8808
    >>> binary_cross_entropy_grad(-100.0, 0)     # sigmoid(-100) = e^-100 / (1 + e^-100)
    3.720075976020836e-44

    Raises:
        RuleError: the logit is not a finite number, or the label is not in [0, 1].
    """
    label = _probability_label(label)
    return sigmoid(logit) - label


# ---------------------------------------------------------------------------------------- transposed conv

def conv_transpose_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1, output_padding: int = 0
) -> int:
    """Output size of a transposed conv on one axis (PyTorch's ConvTranspose rule):
    ``(in - 1)*s - 2p + d*(k - 1) + output_padding + 1``.

    The adjoint of a conv of the same k, s, p, d: that conv maps any size in
    ``[out - output_padding, out - output_padding + s - 1]`` back to ``in``, and
    ``output_padding`` picks one (so it must be below the stride or the dilation, as torch says).

    >>> conv_transpose_output_size(4, 4, 2, 1)        # DCGAN: 4x4 -> 8x8
    8
    >>> conv_transpose_output_size(28, 2, 2)          # U-Net up-convolution: 28 -> 56
    56
    >>> conv_transpose_output_size(5, 3, 2, 1, output_padding=1)   # undoes a 3x3/2 p1 conv of 10
    10

    Raises:
        RuleError: the output would be smaller than 1, or output_padding is not below stride or dilation.
    """
    check(output_padding < stride or output_padding < dilation,
          lambda: f"output_padding must be smaller than stride or dilation, got output_padding={output_padding}, "
                  f"stride={stride}, dilation={dilation}")
    out = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    check(out >= 1, lambda: f"{explain_conv_transpose_size_text(size, kernel, stride, padding, dilation, output_padding)}"
                            f" = {out:,} < 1")
    return out


def explain_conv_transpose_size_text(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1, output_padding: int = 0
) -> str:
    """The arithmetic of :func:`conv_transpose_output_size`, without its value.

    >>> explain_conv_transpose_size_text(4, 4, 2, 1)
    '(4 - 1)*2 - 2*1 + 1*(4 - 1) + 0 + 1'
    """
    return f"({size:,} - 1)*{stride} - 2*{padding} + {dilation}*({kernel} - 1) + {output_padding} + 1"


def conv_transpose_params(
    c_in: int, filters: int, kernel: Sequence[int], groups: int = 1, bias: bool = True
) -> int:
    """Parameters of a transposed conv: ``c * (f/groups) * prod(k)`` weights, plus ``f`` biases.

    PyTorch stores the weight as ``(c, f/groups, *k)``, the transpose of the conv it inverts.

    >>> conv_transpose_params(512, 256, (4, 4))          # DCGAN's ConvTranspose2d(512, 256, 4, 2, 1)
    2097408
    """
    check(c_in % groups == 0, lambda: f"input channels {c_in} do not divide by groups={groups}")
    check(filters % groups == 0, lambda: f"filters {filters} do not divide by groups={groups}")
    return c_in * (filters // groups) * math.prod(kernel) + (filters if bias else 0)


def conv_transpose_macs(
    c_in: int, filters: int, kernel: Sequence[int], in_spatial: Sequence[int], groups: int = 1
) -> int:
    """Multiply-accumulates of a transposed conv: ``c * (f/groups) * prod(k) * prod(in)``.

    Every input value is multiplied by one kernel of ``(f/groups) * prod(k)`` weights and
    scattered into the output: that is all the work. (thop and torchinfo apply the forward
    conv's formula to the *output*, ``f * (c/groups) * prod(k) * prod(out)``, about ``stride^d``
    times this; fvcore, ptflops and torch's FlopCounterMode count as here.)

    >>> conv_transpose_macs(512, 256, (4, 4), (4, 4))    # DCGAN 512x4x4 -> 256x8x8
    33554432
    >>> conv_macs(512, 256, (4, 4), (8, 8)) // conv_transpose_macs(512, 256, (4, 4), (4, 4))  # thop's / true
    4
    """
    return c_in * (filters // groups) * math.prod(kernel) * math.prod(in_spatial)

"""An archcalc network as an ONNX model, built with ``onnx.helper`` alone (no torch).

Opset :data:`OPSET` (21): the first in which GroupNormalization takes a scale and bias per
channel (as PyTorch's GroupNorm; opset 18's were per group), and it has native Gelu (20), Pad's
``wrap`` mode (19, PyTorch's circular padding), Mish (18), HardSwish (14) and LayerNormalization
(17), so that those layers are one node each, as an importer expects them. onnxruntime runs it.

The graph's input is named ``input``, of shape (N, *input_shape) with a symbolic batch axis
``N``; every layer's output tensor is named after the layer (steps of a decomposed layer are
``layer/step``), so shape inference can be compared with archcalc's layer by layer. Weights are
initializers named as the executor names them (``conv1.weight``; a linear layer on (..., C) and
PReLU's slopes are stored in the layout the ONNX node takes, noted at :func:`to_onnx`).

The export is for inference: dropout and stochastic depth are the identity, batchnorm and
instancenorm (with running statistics) use their running statistics, as the executor's eval mode.
Where ONNX has no node for a layer it is decomposed (SiLU = x * Sigmoid(x), channel shuffle =
Reshape/Transpose/Reshape, LRN of an even size as PyTorch computes it, avgpool's
``divisor_override`` = the mean times the window's count over the divisor; ceil mode where ONNX
would keep a window PyTorch drops = an explicit Pad and floor mode). Refused, naming the layer:
an adaptive pooling whose windows are not uniform, and an upsampling by a scale whose output size
ONNX computes otherwise (float32 rounding) or that keeps an axis's size (onnxruntime then copies).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from archcalc.errors import MissingToolError, SpecError
from archcalc.graph import Graph, Node
from archcalc.ops.base import Layer

#: The ONNX opset the export targets (see the module docstring for why 21).
OPSET = 21
#: How to get onnx when it is missing.
PIP_HINT = 'pip install "archcalc[onnx]"'
#: Models this large or larger keep their weights in ``<file>.data`` beside the ``.onnx`` (protobuf stops at 2 GiB).
EXTERNAL_DATA_BYTES = 2**31 - 2**26
#: The symbolic batch axis.
BATCH = "N"


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingToolError(f"exporting to ONNX needs the onnx package, which is not installed; {PIP_HINT}") from None
    return onnx


class _Builder:
    """Nodes and initializers of the graph being built."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []
        #: The model whose graph the initializers are written into in place (no copies of large weights).
        self.model = onnx.ModelProto()
        self.graph = self.model.graph
        self.names: set[str] = set()

    def const(self, name: str, array: Any, dtype: Any = np.float32) -> str:
        """An initializer ``name`` (made unique) holding ``array``."""
        while name in self.names:
            name += "_"
        self.names.add(name)
        array = np.asarray(array, dtype=dtype)  # tobytes() writes C order, scalars stay 0-d
        tensor = self.graph.initializer.add()
        tensor.name = name
        tensor.data_type = self.onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor.dims.extend(array.shape)
        tensor.raw_data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        return name

    def ints(self, name: str, values: Any) -> str:
        return self.const(name, np.asarray(values, dtype=np.int64), np.int64)

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        """A node named after its output (``output`` made unique), returning the output's name."""
        while output in self.names:
            output += "_"
        self.names.add(output)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


class _Refused(Exception):
    """ONNX cannot express this layer exactly (the message says why)."""


# --- rules: (builder, layer, inputs, params, out) -> out, the layer's output tensor -------------

Rule = Callable[[_Builder, Layer, list[str], dict[str, str], str], str]


def _pads(pairs: Any) -> list[int]:
    """archcalc's (before, after) per spatial axis as ONNX's [x1_begin, x2_begin, ..., x1_end, ...]."""
    return [int(b) for b, _ in pairs] + [int(a) for _, a in pairs]


def _conv(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    a = layer.attrs
    inputs = [xs[0], p["weight"], *([p["bias"]] if "bias" in p else [])]
    return b.node("Conv", inputs, out, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                  pads=_pads(a["padding"]), dilations=list(a["dilation"]), group=a["groups"])


def _conv_transpose(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    a = layer.attrs
    geometry = {"kernel_shape": list(a["kernel"]), "strides": list(a["stride"]), "dilations": list(a["dilation"]),
                "group": a["groups"]}
    padding, extra = list(a["padding"]), list(a["output_padding"])
    bias = [p["bias"]] if "bias" in p else []
    if all(e < s for e, s in zip(extra, a["stride"])):  # ONNX takes output_padding below the stride only
        return b.node("ConvTranspose", [xs[0], p["weight"], *bias], out, pads=padding + padding, output_padding=extra,
                      **geometry)
    # PyTorch's output is the full one cropped by p at the start and p - output_padding at the end (PyTorch allows
    # output_padding below the dilation too): crop less at the end, and where output_padding > p, extend the end by
    # rows no kernel reaches (zeros, then the bias)
    end = [max(q - e, 0) for q, e in zip(padding, extra)]
    beyond = [max(e - q, 0) for q, e in zip(padding, extra)]
    if not any(beyond):
        return b.node("ConvTranspose", [xs[0], p["weight"], *bias], out, pads=padding + end, **geometry)
    y = b.node("ConvTranspose", [xs[0], p["weight"]], f"{out}/conv", pads=padding + end, **geometry)
    rank = len(padding)
    y = b.node("Pad", [y, b.ints(f"{out}.pads", [0] * (rank + 2) + [0, 0] + beyond)], f"{out}/extend" if bias else out)
    if not bias:
        return y
    shaped = b.node("Reshape", [p["bias"], b.ints(f"{out}.bias_shape", [-1] + [1] * rank)], f"{out}/bias")
    return b.node("Add", [y, shaped], out)


def _linear(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    if len(layer.in_shape) == 1:  # (N, C): one Gemm, as PyTorch exports nn.Linear
        inputs = [xs[0], p["weight"], *([p["bias"]] if "bias" in p else [])]
        return b.node("Gemm", inputs, out, transB=1)
    # (N, ..., C): MatMul by the transposed weight (stored so), then Add the bias
    product = b.node("MatMul", [xs[0], p["weight_t"]], out if "bias" not in p else f"{out}/matmul")
    return b.node("Add", [product, p["bias"]], out) if "bias" in p else product


def _simple(op: str, **attrs: Any) -> Rule:
    return lambda b, layer, xs, p, out: b.node(op, xs[:1], out, **attrs)


def _dropout(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    # no training_mode input: inference, the identity; the ratio kept for an importer
    return b.node("Dropout", [xs[0], b.const(f"{out}.ratio", np.float32(layer.attrs["p"]))], out)


def _clip(low: float | None, high: float | None) -> Rule:
    def rule(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
        bounds = [b.const(f"{out}.min", np.float32(low)) if low is not None else "",
                  b.const(f"{out}.max", np.float32(high)) if high is not None else ""]
        return b.node("Clip", [xs[0], *bounds], out)

    return rule


def _hardtanh(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    return _clip(layer.attrs["min_val"], layer.attrs["max_val"])(b, layer, xs, p, out)


def _softmax(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    return b.node("Softmax", xs, out, axis=1)


def _flatten(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    if layer.attrs["start_dim"] == 1 and layer.attrs["end_dim"] == len(layer.in_shape):
        return b.node("Flatten", xs, out, axis=1)
    return _reshape_to(b, xs[0], layer.out_shape, out)


def _reshape_to(b: _Builder, x: str, shape: Any, out: str) -> str:
    """Reshape to (N, *shape): 0 copies the batch axis."""
    return b.node("Reshape", [x, b.ints(f"{out}.shape", [0, *shape])], out)


def _reshape(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    return _reshape_to(b, xs[0], layer.out_shape, out)


def _gelu(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    return b.node("Gelu", xs, out, approximate=layer.attrs["approximate"])


def _ones_zeros(b: _Builder, out: str, channels: int, p: dict[str, str]) -> tuple[str, str]:
    """A normalisation's scale and shift: the learned ones, or constant ones and zeros where it has none."""
    scale = p.get("scale") or b.const(f"{out}.ones", np.ones(channels))
    shift = p.get("shift") or b.const(f"{out}.zeros", np.zeros(channels))
    return scale, shift


def _layernorm(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    a = layer.attrs
    eps = float(a["eps"])
    if a["normalized_shape"] is not None:
        shape = tuple(a["normalized_shape"])
        scale = p.get("scale") or b.const(f"{out}.ones", np.ones(shape))
        inputs = [xs[0], scale, *([p["shift"]] if "shift" in p else [])]
        return b.node("LayerNormalization", inputs, out, axis=-len(shape), epsilon=eps)
    # over the channel axis of (N, C, *spatial): channels last, normalise, channels first again
    rank = len(layer.in_shape) + 1
    last = [0, *range(2, rank), 1]
    first = [0, rank - 1, *range(1, rank - 1)]
    moved = b.node("Transpose", xs[:1], f"{out}/channels_last", perm=last)
    scale = p.get("scale") or b.const(f"{out}.ones", np.ones(layer.in_shape[0]))
    normed = b.node("LayerNormalization", [moved, scale, *([p["shift"]] if "shift" in p else [])], f"{out}/norm",
                    axis=-1, epsilon=eps)
    return b.node("Transpose", [normed], out, perm=first)


def _groupnorm(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    scale, shift = _ones_zeros(b, out, layer.in_shape[0], p)
    return b.node("GroupNormalization", [xs[0], scale, shift], out, num_groups=layer.attrs["num_groups"],
                  epsilon=float(layer.attrs["eps"]))


def _batchnorm_node(b: _Builder, x: str, scale: str, shift: str, p: dict[str, str], eps: float, out: str) -> str:
    return b.node("BatchNormalization", [x, scale, shift, p["running_mean"], p["running_var"]], out, epsilon=eps)


def _batchnorm(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    a = layer.attrs
    return b.node("BatchNormalization", [xs[0], p["scale"], p["shift"], p["running_mean"], p["running_var"]], out,
                  epsilon=float(a["eps"]), momentum=float(1 - a["momentum"]))


def _instancenorm(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    scale, shift = _ones_zeros(b, out, layer.in_shape[0], p)
    eps = float(layer.attrs["eps"])
    if layer.attrs["track_running_stats"]:  # eval: the running statistics, as batchnorm's
        return _batchnorm_node(b, xs[0], scale, shift, p, eps, out)
    return b.node("InstanceNormalization", [xs[0], scale, shift], out, epsilon=eps)


def _lrn(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    a = layer.attrs
    size, x, rank = a["size"], xs[0], len(layer.in_shape) + 1
    if size % 2:
        if rank == 4:
            return b.node("LRN", [x], out, size=size, alpha=float(a["alpha"]), beta=float(a["beta"]), bias=float(a["k"]))
        # onnxruntime's LRN takes (N, C, H, W) only; it mixes channels alone, so any layout of the rest will do
        flat = _reshape_to(b, x, [layer.in_shape[0], -1, 1], f"{out}/4d")
        y = b.node("LRN", [flat], f"{out}/lrn", size=size, alpha=float(a["alpha"]), beta=float(a["beta"]),
                   bias=float(a["k"]))
        return _reshape_to(b, y, layer.in_shape, out)
    # an even size (onnxruntime's LRN takes odd sizes only; ONNX would centre the window the other way): PyTorch's own
    # F.local_response_norm, x / (k + alpha * mean of x^2 over channels [c - size//2, c + (size-1)//2])^beta
    squares = b.node("Mul", [x, x], f"{out}/square")
    stacked = _reshape_to(b, squares, [1, layer.in_shape[0], -1], f"{out}/channels_as_rows")
    mean = b.node("AveragePool", [stacked], f"{out}/window_mean", kernel_shape=[size, 1],
                  pads=[size // 2, 0, (size - 1) // 2, 0], count_include_pad=1)
    mean = _reshape_to(b, mean, layer.in_shape, f"{out}/mean")
    scaled = b.node("Mul", [mean, b.const(f"{out}.alpha", np.float32(a["alpha"]))], f"{out}/times_alpha")
    base = b.node("Add", [scaled, b.const(f"{out}.k", np.float32(a["k"]))], f"{out}/plus_k")
    divisor = b.node("Pow", [base, b.const(f"{out}.beta", np.float32(a["beta"]))], f"{out}/divisor")
    return b.node("Div", [x, divisor], out)


def _pad(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    a = layer.attrs
    pads = [0, 0, *(int(x) for x, _ in a["padding"]), 0, 0, *(int(x) for _, x in a["padding"])]
    mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}[a["mode"]]
    inputs = [xs[0], b.ints(f"{out}.pads", pads)]
    if mode == "constant":
        inputs.append(b.const(f"{out}.value", np.float32(a["value"])))
    return b.node("Pad", inputs, out, mode=mode)


def _permute(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    return b.node("Transpose", xs, out, perm=list(layer.attrs["dims"]))


def _onnx_ceil_differs(layer: Layer) -> bool:
    """Whether ONNX's ceil mode keeps a last window that starts in the padding after the input,
    which PyTorch drops (kernel 2, stride 2, padding 1 on 5: ONNX 4 outputs, PyTorch 3)."""
    a = layer.attrs
    dilation = a.get("dilation") or (1,) * len(a["kernel"])
    return bool(a["ceil_mode"]) and any(
        -(-(n + before + after - (d * (k - 1) + 1)) // s) + 1 != o
        for n, k, s, d, (before, after), o in zip(layer.in_shape[1:], a["kernel"], a["stride"], dilation, a["padding"],
                                                   layer.out_shape[1:])
    )


def _padded_for_floor_mode(b: _Builder, layer: Layer, x: str, value: float, out: str) -> str:
    """``x`` padded explicitly (by ``value``) so that a floor-mode pool without padding has PyTorch's
    windows: the padding before, and after it enough to hold PyTorch's last window."""
    a = layer.attrs
    dilation = a.get("dilation") or (1,) * len(a["kernel"])
    before = [int(p) for p, _ in a["padding"]]
    after = [max(int(q), (o - 1) * s + d * (k - 1) + 1 - n - p)
             for n, k, s, d, (p, q), o in zip(layer.in_shape[1:], a["kernel"], a["stride"], dilation, a["padding"],
                                              layer.out_shape[1:])]
    pads = [0, 0, *before, 0, 0, *after]
    return b.node("Pad", [x, b.ints(f"{out}.pads", pads), b.const(f"{out}.pad_value", np.float32(value))], f"{out}/padded")


def _maxpool(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    a = layer.attrs
    geometry = {"kernel_shape": list(a["kernel"]), "strides": list(a["stride"]), "dilations": list(a["dilation"])}
    if _onnx_ceil_differs(layer):  # floor mode on the input padded by -inf: PyTorch's windows
        padded = _padded_for_floor_mode(b, layer, xs[0], -np.inf, out)
        return b.node("MaxPool", [padded], out, **geometry)
    return b.node("MaxPool", xs, out, pads=_pads(a["padding"]), ceil_mode=int(a["ceil_mode"]), **geometry)


def _avgpool(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    a = layer.attrs
    geometry = {"kernel_shape": list(a["kernel"]), "strides": list(a["stride"])}
    include_pad = bool(a["count_include_pad"])
    torch_pads = _pads(a["padding"])
    if _onnx_ceil_differs(layer):
        # floor mode on the input padded by zeros: every window full, the mean over prod(k) values; the sum over
        # PyTorch's divisor is that mean * prod(k) / divisor
        padded = _padded_for_floor_mode(b, layer, xs[0], 0.0, out)
        mean = b.node("AveragePool", [padded], f"{out}/mean", count_include_pad=1, **geometry)
        onnx_counts = np.full(layer.out_shape[1:], float(np.prod(a["kernel"])))
    elif a["divisor_override"] is None:
        return b.node("AveragePool", xs, out, pads=torch_pads, ceil_mode=int(a["ceil_mode"]),
                      count_include_pad=int(include_pad), **geometry)
    else:
        mean = b.node("AveragePool", xs, f"{out}/mean", pads=torch_pads, ceil_mode=int(a["ceil_mode"]),
                      count_include_pad=int(include_pad), **geometry)
        onnx_counts = _window_counts(layer, torch_pads, include_pad)
    divisor = a["divisor_override"] if a["divisor_override"] is not None else _window_counts(layer, torch_pads, include_pad)
    return b.node("Mul", [mean, b.const(f"{out}.count_over_divisor", (onnx_counts / divisor)[None, None])], out)


def _window_counts(layer: Layer, pads: list[int], include_pad: bool) -> np.ndarray:
    """How many values each window of an average pool divides by, with ``pads`` (ONNX's order):
    per axis, the window clipped to the padded input (``include_pad``) or to the input (PyTorch's
    rule, and ONNX's, without ceil mode's dropped windows); the product over axes."""
    a = layer.attrs
    rank = len(a["kernel"])
    counts = []
    for axis, (n, k, s, o) in enumerate(zip(layer.in_shape[1:], a["kernel"], a["stride"], layer.out_shape[1:])):
        before, after = pads[axis], pads[axis + rank]
        starts = np.arange(o) * s - before
        if include_pad:
            ends = np.minimum(starts + k, n + after)
        else:
            ends, starts = np.minimum(starts + k, n), np.maximum(starts, 0)
        counts.append((ends - starts).astype(np.float64))
    grid = counts[0]
    for axis in counts[1:]:
        grid = np.multiply.outer(grid, axis)
    return grid


def _global_avgpool(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    return b.node("GlobalAveragePool", xs, out)


def _adaptive(op: str, global_op: str) -> Rule:
    def rule(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
        sizes = list(zip(layer.in_shape[1:], layer.attrs["output_size"]))
        if all(o == 1 for _, o in sizes):
            return b.node(global_op, xs, out)
        if all(n % o == 0 for n, o in sizes):  # windows of in/out, stride in/out: a plain pool
            kernel = [n // o for n, o in sizes]
            return b.node(op, xs, out, kernel_shape=kernel, strides=kernel)
        if all(n % o == 0 or n == 1 for n, o in sizes):  # a single value replicated (VGG on CIFAR: 1x1 -> 7x7)
            kernel = [n // o if n % o == 0 else 1 for n, o in sizes]
            pooled = b.node(op, xs, f"{out}/pool", kernel_shape=kernel, strides=kernel) if any(k > 1 for k in kernel) else xs[0]
            return b.node("Expand", [pooled, b.ints(f"{out}.shape", [1, 1, *(o for _, o in sizes)])], out)
        uneven = ", ".join(f"{n} -> {o}" for n, o in sizes if n % o and n != 1)
        raise _Refused(f"its windows are not uniform ({uneven}: the input size is no multiple of the output's), and ONNX "
                       "pools have one window size")

    return rule


def _prelu(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    return b.node("PRelu", [xs[0], p["slope_b"]], out)


def _scale(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    if "shift_b" not in p:
        return b.node("Mul", [xs[0], p["scale_b"]], out)
    product = b.node("Mul", [xs[0], p["scale_b"]], f"{out}/mul")
    return b.node("Add", [product, p["shift_b"]], out)


def _slice(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    a = layer.attrs
    axis = a["dim"]
    first, stop, step = slice(a["start"], a["stop"], a["step"]).indices(layer.in_shape[axis - 1])
    inputs = [b.ints(f"{out}.starts", [first]), b.ints(f"{out}.ends", [stop]), b.ints(f"{out}.axes", [axis]),
              b.ints(f"{out}.steps", [step])]
    return b.node("Slice", [xs[0], *inputs], out)


def _crop(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    a = layer.attrs
    rank = len(layer.in_shape)
    inputs = [b.ints(f"{out}.starts", list(a["offset"])), b.ints(f"{out}.ends", [o + s for o, s in zip(a["offset"], a["size"])]),
              b.ints(f"{out}.axes", list(range(2, rank + 1)))]
    return b.node("Slice", [xs[0], *inputs], out)


def _upsample(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    a = layer.attrs
    mode = {"nearest": "nearest", "linear": "linear", "bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}[a["mode"]]
    if mode == "nearest":
        attrs = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        attrs = {"coordinate_transformation_mode": "align_corners" if a["align_corners"] else "half_pixel"}
        if mode == "cubic":
            attrs["cubic_coeff_a"] = -0.75
    axes = list(range(2, len(layer.in_shape) + 1))
    if a["size"] is not None:
        inputs = [xs[0], "", "", b.ints(f"{out}.sizes", list(a["size"]))]
    else:
        scales = np.asarray(a["scale_factor"], dtype=np.float32)
        wanted = tuple(layer.out_shape[1:])
        # ONNX sizes the output as floor(in * scale) with the scale in float32, PyTorch in float64: refuse where they
        # differ (onnxruntime floors 30 * 4.1 to 123, PyTorch to 122), in float32 or in float64 of the float32 scale
        spatial = np.asarray(layer.in_shape[1:])
        for sizes in (np.floor(spatial.astype(np.float32) * scales), np.floor(spatial * scales.astype(np.float64))):
            if tuple(int(n) for n in sizes) != wanted:
                raise _Refused(f"ONNX computes the output size floor(in * scale_factor) with a float32 scale, "
                               f"{tuple(int(n) for n in sizes)}, where PyTorch gives {wanted}; give the upsampling a size instead")
        same = [i for i, (n, o, f) in enumerate(zip(spatial, wanted, a["scale_factor"])) if n == o and f != 1]
        if same:
            raise _Refused(f"its output keeps the input's size {int(spatial[same[0]])} at scale_factor {a['scale_factor'][same[0]]}: "
                           "onnxruntime then copies the input, PyTorch samples at the scale (nearest) or copies "
                           "(linear); give the upsampling a size instead")
        inputs = [xs[0], "", b.const(f"{out}.scales", scales)]
    return b.node("Resize", inputs, out, mode=mode, axes=axes, **attrs)


def _channel_shuffle(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    groups = layer.attrs["groups"]
    c, *spatial = layer.in_shape
    split = _reshape_to(b, xs[0], [groups, c // groups, *spatial], f"{out}/split")
    rank = len(layer.in_shape) + 2
    swapped = b.node("Transpose", [split], f"{out}/transpose", perm=[0, 2, 1, *range(3, rank)])
    return _reshape_to(b, swapped, layer.in_shape, out)


def _silu(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    gate = b.node("Sigmoid", xs, f"{out}/sigmoid")
    return b.node("Mul", [xs[0], gate], out)


def _merge(two: str, many: str | None) -> Rule:
    def rule(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
        if len(xs) == 2 or many is None:
            result = xs[0]
            for i, x in enumerate(xs[1:], 1):
                result = b.node(two, [result, x], out if i == len(xs) - 1 else f"{out}/{i}")
            return result
        return b.node(many, xs, out)

    return rule


def _concat(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    return b.node("Concat", xs, out, axis=1)


def _identity(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    return b.node("Identity", xs[:1], out)


def _hardsigmoid(b: _Builder, layer: Layer, xs: list[str], p: dict[str, str], out: str) -> str:
    return b.node("HardSigmoid", xs, out, alpha=1 / 6, beta=0.5)  # relu6(x + 3) / 6


#: Each op type's ONNX form. A test checks that every op of the registry has one.
RULES: dict[str, Rule] = {
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "linear": _linear,
    "relu": _simple("Relu"),
    "leaky_relu": lambda b, layer, xs, p, out: b.node("LeakyRelu", xs, out, alpha=float(layer.attrs["negative_slope"])),
    "sigmoid": _simple("Sigmoid"),
    "tanh": _simple("Tanh"),
    "dropout": _dropout,
    "dropout2d": _identity,  # eval: the identity (ONNX's Dropout drops values, not channels)
    "stochastic_depth": _identity,  # eval: the identity
    "softmax": _softmax,
    "identity": _identity,
    "elu": lambda b, layer, xs, p, out: b.node("Elu", xs, out, alpha=float(layer.attrs["alpha"])),
    "flatten": _flatten,
    "gelu": _gelu,
    "layernorm": _layernorm,
    "groupnorm": _groupnorm,
    "hardsigmoid": _hardsigmoid,
    "hardswish": _simple("HardSwish"),
    "hardtanh": _hardtanh,
    "relu6": _clip(0.0, 6.0),
    "instancenorm": _instancenorm,
    "concat": _concat,
    "add": _merge("Add", "Sum"),
    "mul": _merge("Mul", None),
    "silu": _silu,
    "mish": _simple("Mish"),
    "batchnorm": _batchnorm,
    "lrn": _lrn,
    "pad": _pad,
    "permute": _permute,
    "maxpool": _maxpool,
    "avgpool": _avgpool,
    "global_avgpool": _global_avgpool,
    "adaptive_avgpool": _adaptive("AveragePool", "GlobalAveragePool"),
    "adaptive_maxpool": _adaptive("MaxPool", "GlobalMaxPool"),
    "prelu": _prelu,
    "reshape": _reshape,
    "scale": _scale,
    "slice": _slice,
    "crop": _crop,
    "upsample": _upsample,
    "channel_shuffle": _channel_shuffle,
}


# --- weights ------------------------------------------------------------------------------------


def _weights(graph: Graph, weights: Any, seed: int) -> dict[str, np.ndarray]:
    """Every parameter as ``{"layer.role": float32 array}``: the executor's initialisation at
    ``seed`` (weights None), zeros (``"zeros"``), or the given ones (the executor's
    ``{"layer.role": array}`` or ``{layer: {role: array}}``), checked against archcalc's shapes."""
    from archcalc.ops import get_op
    from archcalc.passes import infer_shapes

    layers = infer_shapes(graph)
    shapes = {f"{node.name}.{name}": param.shape for node in graph.nodes[1:]
              for name, param in get_op(node.type).params(layers[node.name]).items()}
    if weights is None:
        from archcalc.execute import Executor

        return {k: v.astype(np.float32, copy=False) for k, v in Executor(graph, seed=seed, dtype="float32").params.items()}
    if isinstance(weights, str):
        if weights != "zeros":
            raise SpecError(f"weights must be None (random, seeded), 'zeros' or a dict of arrays, got {weights!r}")
        return {key: np.zeros(shape, dtype=np.float32) for key, shape in shapes.items()}
    if not isinstance(weights, Mapping):
        raise SpecError(f"weights must be None (random, seeded), 'zeros' or a dict of arrays, got a {type(weights).__name__}")
    from archcalc.exporters import flat_weights

    flat = flat_weights(graph, weights)
    result = {}
    for key, value in flat.items():
        if key not in shapes:
            raise SpecError(f"weights: {key!r} is no parameter of the network")
        array = np.asarray(value, dtype=np.float32)
        if array.shape != tuple(shapes[key]):
            raise SpecError(f"weights: {key!r} has shape {array.shape}, the parameter {tuple(shapes[key])}")
        result[key] = array
    missing = [key for key in shapes if key not in result]
    if missing:
        raise SpecError(f"weights: missing {len(missing)} parameter(s), the first {missing[0]!r}")
    return result


def _layer_params(b: _Builder, node: Node, layer: Layer, values: dict[str, np.ndarray]) -> dict[str, str]:
    """Initializers of one layer's parameters, by role (weight, bias, scale, shift, running_mean,
    running_var, slope), plus the layouts some nodes take: ``weight_t`` (a linear layer's on
    (..., C), transposed for MatMul), ``*_b`` (per-channel values shaped (C, 1, ...) to broadcast
    over (N, C, *spatial)). Initializers are named as the executor names the parameters."""
    from archcalc.ops import get_op

    names = {}
    spatial = len(layer.in_shape) - 1
    for name, param in get_op(node.type).params(layer).items():
        key, role = f"{node.name}.{name}", param.role.name
        array = values[key]
        if node.type == "linear" and role == "weight" and len(layer.in_shape) > 1:
            names["weight_t"] = b.const(key, array.T)
        elif node.type in ("prelu", "scale"):
            names[f"{role}_b"] = b.const(key, array.reshape(array.shape + (1,) * spatial) if array.size > 1 else array)
        else:
            names[role] = b.const(key, array)
    return names


# --- the model ----------------------------------------------------------------------------------


def build_model(net: Any, *, weights: Any = None, seed: int = 0) -> Any:
    """The ``onnx.ModelProto`` of a network (see :func:`to_onnx`), checked by ``onnx.checker``."""
    from archcalc.exporters import refuse_opaque, where
    from archcalc.loading import load
    from archcalc.passes import infer_shapes

    onnx = _onnx()
    graph = load(net)
    refuse_opaque(graph, "ONNX")
    layers = infer_shapes(graph)
    missing = sorted({node.type for node in graph.nodes[1:] if node.type not in RULES})
    if missing:
        first = next(node for node in graph.nodes[1:] if node.type in missing)
        raise SpecError(f"{where(graph, first)}: no ONNX export rule for op type(s) {', '.join(missing)}")
    values = _weights(graph, weights, seed)
    b = _Builder(onnx)
    b.names.add(graph.nodes[0].name)
    tensors = {graph.nodes[0].name: graph.nodes[0].name}
    for node in graph.nodes[1:]:
        layer = layers[node.name]
        params = _layer_params(b, node, layer, values)
        try:
            tensors[node.name] = RULES[node.type](b, layer, [tensors[r] for r in node.inputs], params, node.name)
        except _Refused as refusal:
            raise SpecError(f"{where(graph, node)}: cannot export to ONNX: {refusal}") from None
    elem = onnx.TensorProto.FLOAT
    last = graph.nodes[-1]
    inputs = [onnx.helper.make_tensor_value_info(graph.nodes[0].name, elem, [BATCH, *graph.input_shape])]
    outputs = [onnx.helper.make_tensor_value_info(tensors[last.name], elem, [BATCH, *layers[last.name].out_shape])]
    doc = f"{graph.name}, exported by archcalc" + (f": {graph.description}" if graph.description else "")
    onnx_graph = b.graph
    onnx_graph.name = _graph_name(graph.name)
    onnx_graph.doc_string = doc
    onnx_graph.node.extend(b.nodes)
    onnx_graph.input.extend(inputs)
    onnx_graph.output.extend(outputs)
    model = b.model
    model.ir_version = 10
    model.producer_name = "archcalc"
    model.opset_import.append(onnx.helper.make_opsetid("", OPSET))
    return model


def _graph_name(name: str) -> str:
    return name or "archcalc"


def to_onnx(net: Any, path: Any, *, weights: Any = None, seed: int = 0) -> None:
    """Write a network as an ONNX model (opset :data:`OPSET`) that onnxruntime runs.

    Args:
        net: anything :func:`archcalc.load` takes.
        path: the ``.onnx`` file to write (its directory must exist).
        weights: None for the executor's random initialisation at ``seed`` (He-normal kernels,
            the roles' constants elsewhere: ``Executor(net, seed=seed, dtype="float32")``'s parameters), ``"zeros"``,
            or every parameter as the executor names them (``Executor.params``:
            ``{"conv1.weight": array}``) or ``{layer: {role: array}}``; stored as float32. A linear
            layer on (..., C) stores its weight transposed, (C, units), for MatMul; PReLU and
            scale store their per-channel values as (C, 1, ...) to broadcast.
        seed: the random initialisation's seed.

    Raises:
        SpecError: a bad spec, path or weights; a layer ONNX cannot express (a partial import's
            ``opaque`` layer, an adaptive pooling with uneven windows), naming it.
        MissingToolError: the onnx package is not installed.
    """
    from archcalc.exporters import check_output_path

    onnx = _onnx()
    target = check_output_path(path, "ONNX")
    model = build_model(net, weights=weights, seed=seed)
    try:
        weight_bytes = sum(len(tensor.raw_data) for tensor in model.graph.initializer)  # ByteSize() would serialise
        if weight_bytes < EXTERNAL_DATA_BYTES:
            with open(target, "wb") as file:
                file.write(model.SerializeToString())
        else:  # protobuf's 2 GiB limit: the weights go to a file beside the model, as torch.onnx.export does
            onnx.save_model(model, str(target), save_as_external_data=True, location=f"{target.name}.data")
    except OSError as error:
        raise SpecError(f"ONNX output path '{target}': {error.strerror or error}") from None
    onnx.checker.check_model(str(target), full_check=True)  # from the file: one serialisation, any size

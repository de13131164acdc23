"""Transposed convolution ("deconvolution", "up-convolution"): 1D, 2D or 3D by the rank of its kernel."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc import formulas
from archcalc.errors import RuleError, check
from archcalc.ops.attrs import MAX_INT, Attr, boolean, ints, positive_int
from archcalc.ops.base import (
    AXIS_NAMES,
    BIAS,
    WEIGHT,
    BackwardCost,
    Cost,
    Example,
    Layer,
    Op,
    Param,
    RunContext,
    Saved,
    Shape,
    Window,
    format_shape,
    keeps_input,
    keeps_param,
    register,
)
from archcalc.ops.window import per_axis


@register
class ConvTranspose(Op):
    """Transposed convolution of ``c`` input channels to ``f`` filters (PyTorch's ConvTranspose1d/2d/3d).

    out = (in - 1)*s - 2p + d*(k - 1) + output_padding + 1 per spatial axis
    params = c * (f/groups) * prod(k) weights (stored (c, f/groups, *k), as torch) + f biases (when bias)
    MACs = c * (f/groups) * prod(k) * prod(in); other ops = f * prod(out) bias adds
    receptive field: the conv of k, stride 1, dilation d over the input with s - 1 zeros
    inserted between values (input dilation s) and d*(k-1) - p padding before: the field grows
    by d*(k-1)/s input pixels and the jump is divided by s (a rational field)

    Every input value multiplies one kernel of (f/groups) * prod(k) weights and is added into
    the output: those are all the multiply-accumulates (PyTorch's FlopCounterMode, fvcore and
    ptflops count the same). thop and torchinfo apply the forward conv's formula to the output,
    f * (c/groups) * prod(k) * prod(out), which counts the zeros a stride-s transposed conv
    would insert: about s^d times too many (4x for DCGAN's 4x4 stride-2 layers).
    output_padding (< stride or < dilation, as torch requires) only lengthens the output's end;
    it chooses among the input sizes that a conv of the same k, s, p, d maps to ``in``.
    saved for backward: its input and weight
    backward: input gradient = forward MACs (dX = W dY_hat per group, dY_hat the im2col of dY over the
    adjoint conv's windows: the input gradient of a transposed conv is a conv), weight gradient = forward
    MACs (dW = X dY_hat^T per group), both divided by groups exactly as the forward; other ops =
    f * prod(out) additions of the bias gradient (when bias). Source: the adjoint relation of conv and
    transposed conv (Dumoulin and Visin 2016, "A guide to convolution arithmetic", section 4)
    """

    type = "conv_transpose"
    other_ops_rule = "f * prod(out) bias adds (when bias)"
    attrs = (
        Attr("filters", positive_int, doc="number of filters f (output channels)"),
        Attr("kernel", ints(1), doc="kernel size k: an int, or one per axis (its length sets 1D/2D/3D)"),
        Attr("stride", ints(1), 1, "stride s per axis: the output is about s times the input"),
        Attr("padding", ints(0), 0, "p per axis: removed from both ends of the output (PyTorch's padding)"),
        Attr("output_padding", ints(0), 0, "added to the output's end per axis; below stride or dilation"),
        Attr("dilation", ints(1), 1, "dilation d per axis"),
        Attr("groups", positive_int, 1, "channel groups; c and f must divide by it"),
        Attr("bias", boolean, True, "add a learned bias per filter"),
    )
    examples = (
        Example({"filters": 4, "kernel": 4, "stride": 2, "padding": 1}, ((3, 4, 4),), (4, 8, 8)),
        Example({"filters": 2, "kernel": 2, "stride": 2, "bias": False}, ((4, 3, 5),), (2, 6, 10)),
        Example({"filters": 4, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1, "groups": 2}, ((2, 5, 4),), (4, 10, 8)),
        Example({"filters": 3, "kernel": [5], "stride": 3, "padding": 2, "output_padding": 2}, ((2, 6),), (3, 18)),
        Example({"filters": 2, "kernel": [3, 2, 2], "stride": [1, 2, 2], "padding": [1, 0, 0]}, ((2, 3, 3, 3),), (2, 3, 6, 6)),
        Example({"filters": 2, "kernel": 3, "dilation": 2, "padding": 1, "output_padding": 1}, ((3, 6, 6),), (2, 9, 9)),
        Example({"filters": 3, "kernel": [2], "stride": 3, "dilation": 2, "groups": 3}, ((3, 4),), (3, 12)),
        Example({"filters": 2, "kernel": 1, "padding": [1, 0]}, ((2, 5, 4),), (2, 3, 4)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return keeps_input(layer), keeps_param("weight", self.params(layer)["weight"].shape)

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        in_shape = in_shapes[0]
        kernel = attrs["kernel"]
        rank = len(kernel) if isinstance(kernel, tuple) else max(len(in_shape) - 1, 1)
        spatial_names = ", ".join(name[0].upper() for name in AXIS_NAMES.get(rank, ()))
        check(len(in_shape) == rank + 1,
              lambda: f"conv_transpose with a {rank}D kernel expects input (C, {spatial_names}), got {format_shape(in_shape)}")
        resolved = {**attrs, **{name: per_axis(attrs[name], rank, name)
                                for name in ("kernel", "stride", "padding", "output_padding", "dilation")}}
        for axis, (s, d, e) in enumerate(zip(resolved["stride"], resolved["dilation"], resolved["output_padding"])):
            check(e < s or e < d, lambda axis=axis, s=s, d=d, e=e: (
                f"output_padding must be smaller than stride or dilation on the {AXIS_NAMES[rank][axis]} axis, "
                f"got output_padding={e}, stride={s}, dilation={d}"))
        channels, groups, filters = in_shape[0], attrs["groups"], attrs["filters"]
        check(channels % groups == 0, lambda: f"input channels {channels} do not divide by groups={groups}")
        check(filters % groups == 0, lambda: f"filters {filters} do not divide by groups={groups}")
        return resolved

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        sizes = in_shapes[0][1:]
        out = []
        for axis, args in enumerate(zip(sizes, *(attrs[n] for n in ("kernel", "stride", "padding", "dilation", "output_padding")))):
            name = AXIS_NAMES[len(sizes)][axis]
            try:
                size = formulas.conv_transpose_output_size(*args)
            except RuleError as error:
                raise RuleError(f"output {name} = {error}") from None
            check(size <= MAX_INT, lambda name=name, args=args, size=size: (
                f"output {name} must be at most {MAX_INT:,} (2**31 - 1), got "
                f"{formulas.explain_conv_transpose_size_text(*args)} = {size:,}"))
            out.append(size)
        return (attrs["filters"], *out)

    def params(self, layer: Layer) -> dict[str, Param]:
        a = layer.attrs
        weight = Param((layer.in_shape[0], a["filters"] // a["groups"], *a["kernel"]), WEIGHT)
        return {"weight": weight, "bias": Param((a["filters"],), BIAS)} if a["bias"] else {"weight": weight}

    def cost(self, layer: Layer) -> Cost:
        a = layer.attrs
        macs = formulas.conv_transpose_macs(layer.in_shape[0], a["filters"], a["kernel"], layer.in_shape[1:], a["groups"])
        return Cost(macs, a["filters"] * math.prod(layer.out_shape[1:]) if a["bias"] else 0)

    def backward_cost(self, layer: Layer) -> BackwardCost:
        """"backward" in the class docstring: each gradient's MACs equal the forward's."""
        forward = self.cost(layer)
        return BackwardCost(forward.macs, forward.macs, forward.other_ops)

    def window(self, layer: Layer) -> Window:
        """Stride insertion plus a stride-1 conv (JAX's lhs_dilation): padding counted on the dilated input."""
        a = layer.attrs
        spans = [d * (k - 1) for k, d in zip(a["kernel"], a["dilation"])]
        padding = tuple((span - p, span - p + e) for span, p, e in zip(spans, a["padding"], a["output_padding"]))
        ones = (1,) * len(spans)
        return Window(a["kernel"], ones, a["dilation"], padding, input_dilation=a["stride"])

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        from archcalc import kernels

        a, x = layer.attrs, inputs[0]
        y, cache = kernels.conv_transpose_forward_cached(
            x, params["weight"], params.get("bias"), a["stride"], a["padding"], a["output_padding"], a["dilation"], a["groups"]
        )
        ctx.macs += cache.macs  # counted from the operand shapes of the GEMMs the kernels ran
        return y, (cache, ctx.input_grads, ctx)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        from archcalc import kernels

        cache, input_grads, ctx = cache
        counted = kernels.BackwardMacs()
        dx, dw, db = kernels.conv_transpose_backward_cached(dy, cache, need_dx=input_grads, counted=counted)
        ctx.input_grad_macs += counted.input_grad  # from the operand shapes of the GEMMs run
        ctx.weight_grad_macs += counted.weight_grad
        return [dx], ({"weight": dw, "bias": db} if layer.attrs["bias"] else {"weight": dw})

    def workspace(self, layer: Layer, batch: int, itemsize: int) -> int:
        """The column matrix of one chunk of the batch (:func:`archcalc.kernels.conv_transpose_workspace`)."""
        from archcalc import kernels

        taps, positions = math.prod(layer.attrs["kernel"]), math.prod(layer.in_shape[1:])
        return kernels.conv_transpose_workspace(batch, layer.attrs["filters"], taps, positions, itemsize)

    def torch_module(self, layer: Layer) -> Any:
        from archcalc.ops import _torch

        a = layer.attrs
        classes = (_torch.nn.ConvTranspose1d, _torch.nn.ConvTranspose2d, _torch.nn.ConvTranspose3d)
        module = _torch.by_rank(classes, len(a["kernel"]))
        return module(layer.in_shape[0], a["filters"], a["kernel"], a["stride"], a["padding"], a["output_padding"],
                      a["groups"], a["bias"], a["dilation"])

    def summary(self, layer: Layer) -> str:
        a = layer.attrs

        def axes(values: tuple[int, ...]) -> str:
            return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))

        text = "x".join(map(str, a["kernel"])) + "/" + axes(a["stride"])
        if any(a["padding"]):
            text += " p" + axes(a["padding"])
        if any(a["output_padding"]):
            text += " op" + axes(a["output_padding"])
        if any(d != 1 for d in a["dilation"]):
            text += " d" + axes(a["dilation"])
        if a["groups"] != 1:
            text += f" g{a['groups']}"
        return f"{text}, {a['filters']}"

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        a = layer.attrs
        c, f, g = layer.in_shape[0], a["filters"], a["groups"]
        lines = []
        sizes = layer.in_shape[1:]
        for axis, name in enumerate(AXIS_NAMES[len(sizes)]):
            args = (sizes[axis], *(a[n][axis] for n in ("kernel", "stride", "padding", "dilation", "output_padding")))
            lines.append((f"output {name}", f"(in - 1)*s - 2p + d*(k - 1) + output_padding + 1 = "
                                            f"{formulas.explain_conv_transpose_size_text(*args)} = {layer.out_shape[1 + axis]:,}"))
        lines.append(("output shape", f"(f={f}, {', '.join(map(str, layer.out_shape[1:]))}) = {format_shape(layer.out_shape)}"))
        kernel = "*".join(map(str, a["kernel"]))
        per_group = f"({f}/{g})" if g != 1 else f"{f}"
        weights = formulas.conv_transpose_params(c, f, a["kernel"], g, bias=False)
        lines.append(("weights", f"c * (f/groups) * prod(k) = {c} * {per_group} * {kernel} = {weights}"))
        if a["bias"]:
            params = formulas.conv_transpose_params(c, f, a["kernel"], g, True)
            lines.append(("params", f"weights + f biases = {weights} + {f} = {params}"))
        spatial = "*".join(map(str, sizes))
        macs = formulas.conv_transpose_macs(c, f, a["kernel"], sizes, g)
        lines.append(("MACs", f"c * (f/groups) * prod(k) * prod(in) = {c} * {per_group} * {kernel} * {spatial} = {macs} "
                              "(each input value scatters one kernel)"))
        return lines

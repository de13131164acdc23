"""Convolution: 1D, 2D or 3D by the rank of its kernel (or of its input, for an int kernel)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc import formulas
from archcalc.errors import check
from archcalc.ops.attrs import Attr, boolean, ints, padding, positive_int
from archcalc.ops.base import (
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
    keeps_input,
    keeps_param,
    new_buffer,
    register,
)
from archcalc.ops.window import explain_output, geometry_text, resolve_window, window_of, window_output


@register
class Conv(Op):
    """Convolution of ``c`` input channels with ``f`` filters.

    out = floor((in + p_before + p_after - d*(k-1) - 1) / s) + 1 per spatial axis
    params = f * (c/groups) * prod(k) weights + f biases (when bias)
    MACs = f * (c/groups) * prod(k) * prod(out); other ops = f * prod(out) bias adds
    receptive field: a window of k, s, d and the resolved padding per axis
    saved for backward: its input and weight; with asymmetric padding (PyTorch pads with F.pad first) the
    padded copy of the input instead
    backward: input gradient = forward MACs (dX_hat = W^T dY per group: (c/groups)*prod(k) by f/groups
    by prod(out), then col2im sums the windows back, the accumulation over the taps of those same MACs),
    weight gradient = forward MACs (dW = dY X_hat^T per group), both divided by groups exactly as the
    forward; other ops = f * prod(out) additions of the bias gradient (when bias). Frameworks skip the input
    gradient when no input depends on a learned parameter (the first conv). Source: the im2col GEMMs of
    cs231n's conv backward; Goyal et al. 2017 and Kaplan et al. 2020 ("backward = 2 x forward")
    """

    type = "conv"
    other_ops_rule = "f * prod(out) bias adds (when bias)"
    attrs = (
        Attr("filters", positive_int, doc="number of filters f (output channels)"),
        Attr("kernel", ints(1), doc="kernel size k: an int, or one per axis (its length sets 1D/2D/3D)"),
        Attr("stride", ints(1), 1, "stride s per axis"),
        Attr("padding", padding, 0, "int, per axis, per side, pairs, 'same' or 'valid'"),
        Attr("dilation", ints(1), 1, "dilation d per axis"),
        Attr("groups", positive_int, 1, "channel groups; groups == c is depthwise"),
        Attr("bias", boolean, True, "add a learned bias per filter"),
    )
    examples = (
        Example({"filters": 4, "kernel": 3, "padding": 1}, ((3, 8, 8),), (4, 8, 8)),
        Example({"filters": 6, "kernel": [2, 3], "stride": 2, "padding": "same"}, ((4, 9, 7),), (6, 5, 4)),
        Example({"filters": 4, "kernel": 3, "dilation": 2, "groups": 2, "padding": [1, 0, 2, 1]}, ((2, 9, 9),), (4, 8, 6)),
        Example({"filters": 4, "kernel": 3, "groups": 4, "bias": False}, ((4, 6, 6),), (4, 4, 4)),
        Example({"filters": 3, "kernel": [5], "stride": 2, "padding": "valid"}, ((2, 16),), (3, 6)),
        Example({"filters": 2, "kernel": [3, 3, 3], "padding": 1, "stride": [1, 2, 2]}, ((2, 4, 6, 6),), (2, 4, 3, 3)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        a = layer.attrs
        if all(before == after for before, after in a["padding"]):
            return keeps_input(layer), keeps_param("weight", self.params(layer)["weight"].shape)
        padded = (layer.in_shape[0], *(n + b + e for n, (b, e) in zip(layer.in_shape[1:], a["padding"])))
        return new_buffer("padded input", padded), keeps_param("weight", self.params(layer)["weight"].shape)

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        in_shape = in_shapes[0]
        kernel = attrs["kernel"]
        rank = len(kernel) if isinstance(kernel, tuple) else max(len(in_shape) - 1, 1)
        resolved = resolve_window(attrs, in_shape, rank, f"conv with a {rank}D kernel")
        channels, groups, filters = in_shape[0], attrs["groups"], attrs["filters"]
        check(channels % groups == 0, lambda: f"input channels {channels} do not divide by groups={groups}")
        check(filters % groups == 0, lambda: f"filters {filters} do not divide by groups={groups}")
        return resolved

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return (attrs["filters"], *window_output(attrs, in_shapes[0]))

    def params(self, layer: Layer) -> dict[str, Param]:
        a = layer.attrs
        weight = Param((a["filters"], layer.in_shape[0] // a["groups"], *a["kernel"]), WEIGHT)
        return {"weight": weight, "bias": Param((a["filters"],), BIAS)} if a["bias"] else {"weight": weight}

    def cost(self, layer: Layer) -> Cost:
        a = layer.attrs
        spatial = layer.out_shape[1:]
        macs = formulas.conv_macs(layer.in_shape[0], a["filters"], a["kernel"], spatial, a["groups"])
        return Cost(macs, a["filters"] * math.prod(spatial) if a["bias"] else 0)

    def backward_cost(self, layer: Layer) -> BackwardCost:
        """"backward" in the class docstring: each gradient's MACs equal the forward's."""
        forward = self.cost(layer)
        return BackwardCost(forward.macs, forward.macs, forward.other_ops)

    def window(self, layer: Layer) -> Window:
        return window_of(layer)

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        from archcalc import kernels

        a, x = layer.attrs, inputs[0]
        y, cache = kernels.conv_forward_cached(
            x, params["weight"], params.get("bias"), a["stride"], a["padding"], a["dilation"], a["groups"]
        )
        ctx.macs += cache.macs  # what the GEMMs the kernels ran multiplied, from their operands' shapes
        return y, (cache, ctx.input_grads, ctx)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        from archcalc import kernels

        cache, input_grads, ctx = cache
        counted = kernels.BackwardMacs()
        dx, dw, db = kernels.conv_backward_cached(dy, cache, need_dx=input_grads, counted=counted)
        ctx.input_grad_macs += counted.input_grad  # from the operand shapes of the GEMMs run
        ctx.weight_grad_macs += counted.weight_grad
        return [dx], ({"weight": dw, "bias": db} if layer.attrs["bias"] else {"weight": dw})

    def workspace(self, layer: Layer, batch: int, itemsize: int) -> int:
        """The im2col buffers of the active kernels (:func:`archcalc.kernels.conv_workspace`)."""
        from archcalc import kernels

        taps, positions = math.prod(layer.attrs["kernel"]), math.prod(layer.out_shape[1:])
        return kernels.conv_workspace(batch, layer.in_shape[0], taps, positions, itemsize, filters=layer.out_shape[0],
                                      groups=layer.attrs["groups"])

    def stream_workspace(self, layer: Layer, batch: int, itemsize: int) -> int:
        """A large layer's chunk buffers on the C path (:func:`archcalc.kernels.conv_stream_workspace`)."""
        from archcalc import kernels

        taps, positions = math.prod(layer.attrs["kernel"]), math.prod(layer.out_shape[1:])
        return kernels.conv_stream_workspace(batch, layer.in_shape[0], taps, positions, itemsize,
                                             filters=layer.out_shape[0], groups=layer.attrs["groups"])

    def torch_module(self, layer: Layer) -> Any:
        from archcalc.ops import _torch

        a = layer.attrs
        conv = _torch.by_rank((_torch.nn.Conv1d, _torch.nn.Conv2d, _torch.nn.Conv3d), len(a["kernel"]))
        # symmetric padding is torch's own (what nn.Conv2d(padding=p) saves for backward is then the
        # input itself); asymmetric padding, which torch's conv cannot take, is an F.pad first
        symmetric = all(before == after for before, after in a["padding"])
        padding = tuple(before for before, _ in a["padding"]) if symmetric else 0
        inner = conv(layer.in_shape[0], a["filters"], a["kernel"], a["stride"], padding, a["dilation"], a["groups"], a["bias"])
        return _torch.Padded(inner, () if symmetric else a["padding"])

    def summary(self, layer: Layer) -> str:
        groups = f" g{layer.attrs['groups']}" if layer.attrs["groups"] != 1 else ""
        return f"{geometry_text(layer.attrs)}{groups}, {layer.attrs['filters']}"

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        a = layer.attrs
        c, f, g = layer.in_shape[0], a["filters"], a["groups"]
        kernel = "*".join(map(str, a["kernel"]))
        per_group = f"({c}/{g})" if g != 1 else f"{c}"
        weights = formulas.conv_params(c, f, a["kernel"], g, bias=False)
        params = formulas.conv_params(c, f, a["kernel"], g, a["bias"])
        spatial = "*".join(map(str, layer.out_shape[1:]))
        macs = formulas.conv_macs(c, f, a["kernel"], layer.out_shape[1:], g)
        lines = explain_output(a, layer, f"f={f}")
        lines.append(("weights", f"f * (c/groups) * prod(k) = {f} * {per_group} * {kernel} = {weights}"))
        if a["bias"]:
            lines.append(("params", f"weights + f biases = {weights} + {f} = {params}"))
        lines.append(("MACs", f"f * (c/groups) * prod(k) * prod(out) = {f} * {per_group} * {kernel} * {spatial} = {macs}"))
        return lines

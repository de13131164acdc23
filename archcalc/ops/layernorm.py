"""Layer normalisation: over the channel axis at every position (ConvNeXt), or over trailing axes.

Also the normalisation arithmetic that group and instance norm share (:func:`normalize`,
:func:`normalize_backward`, :func:`stats_ops`): each normalises groups of values of one sample
by the group's own mean and biased variance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc.errors import RuleError, check
from archcalc.ops.attrs import MAX_INT, Attr, boolean, describe, number
from archcalc.ops.base import (
    GLOBAL,
    POINTWISE,
    SCALE,
    SHIFT,
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
    new_buffer,
    register,
)

#: Other ops per value of a normalisation by the values' own statistics: an add for the mean's
#: sum, a subtraction of the mean, a square and an add for the variance's sum, a multiply by
#: 1/sqrt(var + eps). The per-group divisions and square root are not counted (one per group).
STATS_OPS_PER_VALUE = 5

#: The house text of that count, shared by layer, group and instance norm.
STATS_OPS_RULE = (
    "5 per value (mean's add, subtract the mean, square, variance's add, divide by the std), "
    "+1 per value for the scale and +1 for the shift when present"
)


def stats_ops(values: int, scale: bool, shift: bool, per_value: int = STATS_OPS_PER_VALUE) -> int:
    """Other ops of normalising ``values`` values: ``per_value`` each, plus one each for a scale
    and a shift when the layer has them."""
    return (per_value + int(scale) + int(shift)) * values


def normalize(x: Any, axes: tuple[int, ...], eps: float) -> tuple[Any, Any]:
    """``(x_hat, inv_std)``: ``x`` minus its mean over ``axes``, divided by sqrt(biased variance
    + eps), as PyTorch's layer, group and instance norms compute it."""
    import numpy as np

    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    inv_std = 1 / np.sqrt((centred * centred).mean(axis=axes, keepdims=True) + eps)
    return centred * inv_std, inv_std


def normalize_backward(d_hat: Any, x_hat: Any, inv_std: Any, axes: tuple[int, ...]) -> Any:
    """dL/dx from dL/dx_hat when the statistics came from x itself (over ``axes``):
    ``inv_std * (d_hat - mean(d_hat) - x_hat * mean(d_hat * x_hat))``."""
    mean_d = d_hat.mean(axis=axes, keepdims=True)
    mean_dx = (d_hat * x_hat).mean(axis=axes, keepdims=True)
    return inv_std * (d_hat - mean_d - x_hat * mean_dx)


def _normalized_shape(value: Any) -> tuple[int, ...]:
    """A positive int, or a list of 1 to 4 of them (the trailing axes to normalise over)."""
    ok = lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_INT  # noqa: E731
    if ok(value):
        return (value,)
    if isinstance(value, (list, tuple)) and 1 <= len(value) <= 4 and all(ok(v) for v in value):
        return tuple(value)
    raise RuleError(f"must be a positive int or a list of 1 to 4 of them (the trailing axes' sizes), got {describe(value)}")


@register
class LayerNorm(Op):
    """Normalise each sample over the channel axis at every position, or over its trailing axes.

    normalized_shape null (the default): over the c channels at each position of (C, *spatial),
    as ConvNeXt's channels-first LayerNorm (nn.LayerNorm(C) on the tensor permuted to channels
    last); given: over the trailing axes of that shape, as nn.LayerNorm(normalized_shape).
    y = (x - mean) / sqrt(var + eps) * weight + bias, var biased, per normalised group
    out = the input's shape; params = prod(normalized shape) scales (elementwise_affine) +
    as many shifts (and bias); MACs = 0
    other ops = 5 per value (mean's add, subtract, square, variance's add, divide by the std)
    + 1 per value for the scale, + 1 for the shift (fvcore counts 5 with affine, 4 without)
    receptive field: pointwise over channels; over normalised spatial axes every output reads
    the whole axis (global when every spatial axis is normalised)
    saved for backward: its input, weight and bias (affine) and per-position mean and reciprocal std
    """

    type = "layernorm"
    other_ops_rule = STATS_OPS_RULE
    attrs = (
        Attr("normalized_shape", lambda v: None if v is None else _normalized_shape(v), None,
             "the trailing axes' sizes to normalise over (nn.LayerNorm); null: the channel axis at "
             "every position (ConvNeXt's channels-first LayerNorm); for a channels-last tensor give [C]"),
        Attr("eps", number(0, open_low=True), 1e-5, "added to the variance (ConvNeXt uses 1e-6)"),
        Attr("elementwise_affine", boolean, True, "learn a scale (and a shift) per normalised value"),
        Attr("bias", boolean, True, "learn the shift too (with elementwise_affine)"),
    )
    examples = (
        Example({}, ((4, 3, 3),), (4, 3, 3)),
        Example({"eps": 1e-6}, ((5,),), (5,)),
        Example({}, ((3, 6),), (3, 6)),
        Example({"elementwise_affine": False}, ((3, 2, 2, 3),), (3, 2, 2, 3)),
        Example({"bias": False}, ((4, 3, 3),), (4, 3, 3)),
        Example({"normalized_shape": 5}, ((3, 4, 5),), (3, 4, 5)),
        Example({"normalized_shape": [4, 5]}, ((3, 4, 5),), (3, 4, 5)),
        Example({"normalized_shape": [3, 4, 5]}, ((3, 4, 5),), (3, 4, 5)),
        Example({"normalized_shape": [6]}, ((6,),), (6,)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        shape = layer.attrs["normalized_shape"]
        positions = layer.in_shape[1:] if shape is None else layer.in_shape[: len(layer.in_shape) - len(shape)]
        params = self.params(layer)
        kept = [keeps_input(layer), *(keeps_param(name, params[name].shape) for name in ("weight", "bias") if name in params)]
        return (*kept, new_buffer("mean", tuple(positions)), new_buffer("rstd", tuple(positions)))

    def resolve(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> dict[str, Any]:
        shape, normalized = in_shapes[0], attrs["normalized_shape"]
        if normalized is not None:
            check(
                len(normalized) <= len(shape) and tuple(shape[len(shape) - len(normalized):]) == normalized,
                lambda: f"normalized_shape {list(normalized)} must equal the sizes of the input's last "
                f"{len(normalized)} axes, got input {format_shape(shape)}; null normalises over the channel axis",
            )
        # one form per layer: over the channels of a (C,) input is over its last axis; no shift without affine
        if normalized is None and len(shape) == 1:
            normalized = tuple(shape)
        return {**attrs, "normalized_shape": normalized, "bias": attrs["bias"] and attrs["elementwise_affine"]}

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return in_shapes[0]

    def _axes(self, layer: Layer) -> tuple[int, ...]:
        """The normalised axes of a batch (N, *shape)."""
        normalized = layer.attrs["normalized_shape"]
        rank = len(layer.in_shape)
        return (1,) if normalized is None else tuple(range(rank + 1 - len(normalized), rank + 1))

    def _param_shape(self, layer: Layer) -> Shape:
        normalized = layer.attrs["normalized_shape"]
        return (layer.in_shape[0],) if normalized is None else tuple(normalized)

    def _affine(self, layer: Layer) -> tuple[bool, bool]:
        """Whether the layer has a scale, and a shift."""
        affine = layer.attrs["elementwise_affine"]
        return affine, affine and layer.attrs["bias"]

    def params(self, layer: Layer) -> dict[str, Param]:
        scale, shift = self._affine(layer)
        shape = self._param_shape(layer)
        params = {"weight": Param(shape, SCALE)} if scale else {}
        if shift:
            params["bias"] = Param(shape, SHIFT)
        return params

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, stats_ops(math.prod(layer.out_shape), *self._affine(layer)))

    def channel_mixing(self, layer: Layer) -> bool:
        """Normalising over the channel axis (the default, or a normalized_shape that spans the
        whole sample) reads every position along it; over trailing axes alone, it does not."""
        return 1 in self._axes(layer)

    def window(self, layer: Layer) -> Window | str:
        spatial = layer.in_shape[1:]
        normalized = [axis - 2 for axis in self._axes(layer) if axis >= 2]  # spatial axes normalised over
        if not normalized:
            return POINTWISE
        if len(normalized) == len(spatial):
            return GLOBAL
        # a normalised axis of size n: each output reads all n positions, one window over the axis
        # at stride 0 (as a linear layer acting on it: global along it); other axes: the unit itself
        kernel = tuple(n if a in normalized else 1 for a, n in enumerate(spatial))
        stride = tuple(0 if a in normalized else 1 for a in range(len(spatial)))
        return Window(kernel, stride, (1,) * len(spatial), ((0, 0),) * len(spatial))

    def summary(self, layer: Layer) -> str:
        normalized = layer.attrs["normalized_shape"]
        return "over C" if normalized is None else "over " + "x".join(map(str, normalized))

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        normalized = layer.attrs["normalized_shape"]
        shape = self._param_shape(layer)
        size = math.prod(shape)
        over = (f"the {shape[0]} channels at each position" if normalized is None
                else f"the trailing axes {format_shape(shape)}")
        scale, shift = self._affine(layer)
        count = int(scale) + int(shift)
        lines = [*super().explain(layer), ("normalised over", f"{over}: mean and biased variance of {size} values")]
        if count:
            what = "a scale and a shift" if count == 2 else "a scale"
            lines.append(("params", f"{count} * prod(normalised shape) ({what} per normalised value) = {count}*{size} = {count * size}"))
        else:
            lines.append(("params", "0 (elementwise_affine false)"))
        return lines

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        """The same in training and inference: statistics always come from the sample."""
        x = inputs[0]
        axes = self._axes(layer)
        x_hat, inv_std = normalize(x, axes, layer.attrs["eps"])
        shape = self._broadcast(layer, x.ndim)
        y = x_hat
        if "weight" in params:
            y = y * params["weight"].reshape(shape)
        if "bias" in params:
            y = y + params["bias"].reshape(shape)
        return y, (x_hat, inv_std, params.get("weight"))

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        x_hat, inv_std, weight = cache
        axes = self._axes(layer)
        shape = self._broadcast(layer, dy.ndim)
        # the parameters' gradient sums over every axis they are broadcast along
        summed = tuple(a for a in range(dy.ndim) if shape[a] == 1)
        grads = {}
        scale, shift = self._affine(layer)
        if scale:
            grads["weight"] = (dy * x_hat).sum(axis=summed).reshape(self._param_shape(layer))
        if shift:
            grads["bias"] = dy.sum(axis=summed).reshape(self._param_shape(layer))
        d_hat = dy * weight.reshape(shape) if weight is not None else dy
        return [normalize_backward(d_hat, x_hat, inv_std, axes)], grads

    def _broadcast(self, layer: Layer, ndim: int) -> tuple[int, ...]:
        """The parameters' shape broadcast against a batch of ``ndim`` axes."""
        if layer.attrs["normalized_shape"] is None:
            return (1, -1) + (1,) * (ndim - 2)
        normalized = tuple(layer.attrs["normalized_shape"])
        return (1,) * (ndim - len(normalized)) + normalized

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        from archcalc.ops import _torch

        a = layer.attrs
        if a["normalized_shape"] is None:
            return _torch.ChannelsFirstLayerNorm(layer.in_shape[0], a["eps"], a["elementwise_affine"], a["bias"])
        return nn.LayerNorm(list(a["normalized_shape"]), a["eps"], a["elementwise_affine"], a["bias"])

"""Stochastic depth: drop a residual branch per sample (row) or for the whole batch in training."""

from __future__ import annotations

from typing import Any

from archcalc.errors import RuleError
from archcalc.ops.attrs import Attr, describe, number
from archcalc.ops.base import UNKNOWN, Example, Layer, RunContext, Saved, keeps_input, keeps_output, keeps_param, new_buffer, register  # noqa: F401
from archcalc.ops.pointwise import _Elementwise


def mode(value: Any) -> str:
    """"row" (a draw per sample) or "batch" (one draw for the whole batch), as torchvision's ``mode``."""
    if value not in ("row", "batch"):
        raise RuleError(f'must be "row" or "batch", got {describe(value)}')
    return value


@register
class StochasticDepth(_Elementwise):
    """Zero a whole sample (row) or the whole batch with probability p in training, scale survivors by 1/(1-p).

    As torchvision.ops.StochasticDepth(p, mode), which has no defaults: mode "row" draws once per
    sample, "batch" once per batch; the identity at inference and when p = 0; p = 1 zeroes
    everything (torchvision then skips the division).
    out = the input's shape; params = 0; MACs = 0; other ops = 0 (the identity at inference)
    in place (stores nothing new at inference, where torchvision returns the input itself)
    receptive field: unchanged (pointwise)
    gradient: dy times the same mask (0, or 1/(1-p))
    Source: Huang et al., "Deep Networks with Stochastic Depth" (2016).
    saved for backward: the scaled noise: (1, ...) per sample in mode "row", one value in mode "batch", in the
    tensor's dtype; nothing at p = 0
    """

    type = "stochastic_depth"
    attrs = (
        Attr("p", number(0, 1), doc="probability of zeroing a sample (row) or the batch"),
        Attr("mode", mode, doc='"row" (a draw per sample) or "batch" (one draw for the whole batch)'),
    )
    other_ops_rule = "0 (the identity at inference)"
    ops_per_value = 0
    random = True
    examples = (
        Example({"p": 0.2, "mode": "row"}, ((3, 4, 4),), (3, 4, 4)),
        Example({"p": 0.5, "mode": "batch"}, ((5,),), (5,)),
        Example({"p": 0.3, "mode": "row"}, ((2, 7),), (2, 7)),
        Example({"p": 0.1, "mode": "batch"}, ((2, 3, 3, 4),), (2, 3, 3, 4)),
        Example({"p": 0.0, "mode": "row"}, ((3, 4, 4),), (3, 4, 4)),
        Example({"p": 1.0, "mode": "row"}, ((3, 4, 4),), (3, 4, 4)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        if layer.attrs["p"] == 0:
            return ()
        ones = tuple(1 for _ in layer.in_shape)
        if layer.attrs["mode"] == "row":
            return (new_buffer("noise", ones),)
        return (new_buffer("noise", (1, *ones), batched=False),)

    def summary(self, layer: Layer) -> str:
        return f"p {layer.attrs['p']:g} {layer.attrs['mode']}"

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        x, p = inputs[0], layer.attrs["p"]
        if not ctx.training or p == 0:
            return x, None
        rows = x.shape[0] if layer.attrs["mode"] == "row" else 1
        survive = ctx.rng.random((rows,) + (1,) * (x.ndim - 1)) < 1 - p  # Bernoulli(1 - p), as torchvision's noise
        mask = (survive / (1 - p) if p < 1 else survive * 0).astype(x.dtype)
        return x * mask, mask

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        return [dy if cache is None else dy * cache], {}

    def torch_module(self, layer: Layer) -> Any:
        from archcalc.ops import _torch

        return _torch.StochasticDepth(layer.attrs["p"], layer.attrs["mode"])

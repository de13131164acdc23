"""PyTorch building blocks for the ops' :meth:`~archcalc.ops.base.Op.torch_module` (imports torch).

Imported only inside those methods, so archcalc itself never needs torch: the tests use the
modules as an independent oracle (torch's own layers compute the shapes, parameters, MACs and
gradients that archcalc's rules predict).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


def pad_order(pads: tuple[tuple[int, int], ...]) -> list[int]:
    """archcalc's (before, after) per axis in ``F.pad``'s order: last axis first."""
    return [p for before_after in reversed(pads) for p in before_after]


class Padded(nn.Module):
    """``inner`` after padding with archcalc's resolved, possibly asymmetric, padding."""

    def __init__(self, inner: nn.Module, pads: tuple[tuple[int, int], ...], value: float = 0.0) -> None:
        super().__init__()
        self.inner = inner
        self.pads = pads
        self.value = value

    def forward(self, x: Any) -> Any:
        if any(p != (0, 0) for p in self.pads):
            x = F.pad(x, pad_order(self.pads), value=self.value)
        return self.inner(x)


class Cat(nn.Module):
    """``torch.cat`` of the inputs along the channel axis."""

    def forward(self, *xs: Any) -> Any:
        return torch.cat(xs, dim=1)


class Sum(nn.Module):
    """The element-wise sum of the inputs."""

    def forward(self, *xs: Any) -> Any:
        return sum(xs[1:], xs[0])


def by_rank(classes: tuple[type, ...], rank: int) -> type:
    """The 1D, 2D or 3D class of a family (``rank`` spatial axes)."""
    return classes[rank - 1]


class ChannelsFirstLayerNorm(nn.Module):
    """``nn.LayerNorm(C)`` over the channel axis of a channels-first tensor (N, C, *spatial), as
    ConvNeXt's LayerNorm2d (torchvision) computes it: permute to channels-last, normalise, permute
    back. Its parameters are ``inner.weight`` and ``inner.bias``."""

    def __init__(self, channels: int, eps: float, elementwise_affine: bool, bias: bool) -> None:
        super().__init__()
        self.inner = nn.LayerNorm(channels, eps, elementwise_affine, bias)

    def forward(self, x: Any) -> Any:
        return self.inner(x.movedim(1, -1)).movedim(-1, 1)


class Crop(nn.Module):
    """``x[:, :, o:o+s, ...]`` on each spatial axis (a view, as U-Net's crop slices); a second
    input, when given, only fixed the size (its values are not read, so torch gives it no gradient)."""

    def __init__(self, offset: tuple[int, ...], size: tuple[int, ...]) -> None:
        super().__init__()
        self.index = (slice(None), slice(None), *(slice(o, o + s) for o, s in zip(offset, size)))

    def forward(self, x: Any, *reference: Any) -> Any:
        return x[self.index]


class Pad(nn.Module):
    """``F.pad`` with archcalc's resolved (before, after) per spatial axis, in one of its modes."""

    def __init__(self, pads: tuple[tuple[int, int], ...], mode: str, value: float) -> None:
        super().__init__()
        self.pads, self.mode, self.value = pad_order(pads), mode, value

    def forward(self, x: Any) -> Any:
        if self.mode == "constant":
            return F.pad(x, self.pads, value=self.value)
        return F.pad(x, self.pads, mode=self.mode)


class Product(nn.Module):
    """The element-wise product of the inputs (broadcasting as torch does)."""

    def forward(self, *xs: Any) -> Any:
        product = xs[0]
        for x in xs[1:]:
            product = product * x
        return product


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth(p, mode), written out (torchvision is not a dependency):
    in training, ``input * noise`` with noise ~ Bernoulli(1 - p) per sample ("row") or once
    ("batch"), divided by 1 - p when that is positive; the input itself at inference or p = 0."""

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, x: Any) -> Any:
        if not self.training or self.p == 0.0:
            return x
        survival_rate = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival_rate)
        if survival_rate > 0.0:
            noise.div_(survival_rate)
        return x * noise


class ChannelScale(nn.Module):
    """``weight * x (+ bias)`` with one learned value per channel, broadcast over (N, C, *spatial)
    as torchvision's ConvNeXt ``layer_scale`` (shape (C, 1, 1)) is; ``weight`` and ``bias`` of shape (C,)."""

    def __init__(self, channels: int, init: float, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(init)))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: Any) -> Any:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = x * self.weight.reshape(shape)
        return y if self.bias is None else y + self.bias.reshape(shape)


class MeanStandIn(nn.Module):
    """The stand-in of an ``opaque`` layer: every output value is the mean of all input values."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        batch = xs[0].shape[0]
        total = sum(x.reshape(batch, -1).sum(dim=1) for x in xs)
        count = sum(x[0].numel() for x in xs)
        return (total / count).reshape(batch, *(1,) * len(self.shape)).expand(batch, *self.shape)

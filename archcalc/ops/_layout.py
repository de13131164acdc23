"""What the layout ops (flatten, permute, reshape, slice, linear) share: PyTorch's axis
numbering and the per-axis map the receptive-field pass follows through them.

Axis numbering: archcalc's shapes have no batch axis, but its layout attributes number axes as
PyTorch does, with the batch axis 0: the sample's (C, H, W) are axes 1, 2, 3 (or -3, -2, -1),
so ``start_dim: 2`` means what ``nn.Flatten(2)`` / ``x.flatten(2)`` means and ``dims: [0, 2, 3, 1]``
what ``x.permute(0, 2, 3, 1)`` means. Axis 0, the batch, cannot be flattened, moved or sliced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archcalc.errors import RuleError
from archcalc.ops.attrs import MAX_INT, describe


def signed_int(value: Any) -> int:
    """An int from -(2**31 - 1) to 2**31 - 1 (an axis or an index, negative from the end)."""
    if isinstance(value, int) and not isinstance(value, bool) and -MAX_INT <= value <= MAX_INT:
        return value
    raise RuleError(f"must be an int from -{MAX_INT} to {MAX_INT} (2**31 - 1), got {describe(value)}")


def optional_signed_int(value: Any) -> int | None:
    """:func:`signed_int`, or null."""
    return None if value is None else signed_int(value)


def signed_ints(value: Any) -> tuple[int, ...]:
    """A non-empty list of :func:`signed_int` (at most 64: no tensor has more axes)."""
    if isinstance(value, (list, tuple)) and 1 <= len(value) <= 64:
        try:
            return tuple(signed_int(v) for v in value)
        except RuleError:
            pass
    raise RuleError(f"must be a list of 1 to 64 ints, each from -{MAX_INT} to {MAX_INT}, got {describe(value)}")


def axes_text(rank: int) -> str:
    """``(N, C, H, W)``-style names of a sample of ``rank`` axes with its batch axis, for messages."""
    names = {1: ("C",), 2: ("C", "L"), 3: ("C", "H", "W"), 4: ("C", "D", "H", "W")}.get(rank)
    names = names or tuple(f"d{i}" for i in range(1, rank + 1))
    return "(" + ", ".join(("N", *names)) + ")"


def sample_axis(dim: int, rank: int, name: str) -> int:
    """The sample axis (0 to rank-1) of a PyTorch-numbered ``dim`` (1 to rank, or -rank to -1).

    Raises:
        RuleError: for 0 (the batch axis) or a dim outside the tensor.
    """
    if 1 <= dim <= rank:
        return dim - 1
    if -rank <= dim <= -1:
        return rank + dim
    if dim == 0:
        raise RuleError(
            f"{name} must be 1 to {rank} or -{rank} to -1, got 0: axes are numbered as in PyTorch, "
            f"0 being the batch axis of {axes_text(rank)}, which a layer cannot change"
        )
    raise RuleError(
        f"{name} must be 1 to {rank} or -{rank} to -1 (the axes of {axes_text(rank)} but the batch), got {dim}"
    )


@dataclass(frozen=True, slots=True)
class AxisStep:
    """Where one output axis of a layout op comes from, for the receptive-field pass.

    ``sources``: the input sample axes whose values make up this axis: one, the same axis
    perhaps moved, unless ``mixed``; several: merged by a flatten or reshape. ``mixed`` also
    marks one axis split into several by a reshape. ``kernel``, ``stride``, ``padding``: a
    window along the axis (a slice is kernel 1, stride ``step``, padding ``-start``; a linear
    layer's last axis is a window as wide as the axis with stride 0: every unit sees all of it).
    """

    sources: tuple[int, ...]
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    mixed: bool = False


def kept(axis: int) -> AxisStep:
    """An output axis that is input axis ``axis``, its positions unchanged."""
    return AxisStep((axis,))

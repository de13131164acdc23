"""Opaque: an op of an imported network that archcalc cannot count, passed through by ``--partial``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from archcalc.errors import RuleError
from archcalc.ops.attrs import MAX_INT, Attr, describe
from archcalc.ops.base import (
    MAX_RANK,
    UNKNOWN,
    Cost,
    Example,
    Layer,
    Op,
    RunContext,
    Saved,
    Shape,
    format_shape,
    register,
)

#: Longest source op name kept (``aten.roi_align``, ``torchvision.ops.MultiScaleRoIAlign``).
MAX_OP_NAME = 200


def _op_name(value: Any) -> str:
    """The source's name of the op: a non-empty single-line string."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_OP_NAME or not value.isprintable():
        raise RuleError(f"must be the source's op name, a printable string of 1 to {MAX_OP_NAME} characters, "
                        f"got {describe(value)}")
    return value


def _shape(value: Any) -> tuple[int, ...]:
    """The output shape of one sample: a list of positive ints."""
    if (isinstance(value, (list, tuple)) and 1 <= len(value) <= MAX_RANK
            and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_INT for v in value)):
        return tuple(value)
    raise RuleError(f"must be the output shape of one sample, a list of 1 to {MAX_RANK} ints from 1 to {MAX_INT}, "
                    f"got {describe(value)}")


@register
class Opaque(Op):
    """An op of an imported network that archcalc has no rule for, passed through (``--partial``).

    Only an import with ``partial=True`` (``--partial``) writes it: the source (ONNX shape
    inference, the traced PyTorch shapes, Caffe's layer) gives its output shape, and archcalc
    counts what it can around it. Every figure of this layer is unknown and counted as 0, and
    the report says so (``status: partial``, the uncounted ops in the table's footer), as
    torchscan's coverage status does; the executor refuses to run a network holding one.
    out = ``shape`` (the source's); params = 0 (uncounted); MACs = 0 (uncounted); other ops = 0
    (uncounted); receptive field: unknown, reported as the whole input (an upper bound, ``!``)
    The rules' forward (each output value the mean of all input values, with its gradient) is a
    stand-in with that field, so the registry-wide checks apply; it is not the source op.
    saved for backward: unknown (an imported op archcalc has no rule for): counted as nothing, and the memory
    report marks it
    """

    type = "opaque"
    stand_in = True
    arity = (1, None)
    other_ops_rule = "0 (not counted: archcalc has no rule for the source op)"
    attrs = (
        Attr("op", _op_name, doc="the source's name of the op (aten.roi_align, an ONNX op type, a Caffe layer type)"),
        Attr("shape", _shape, doc="its output shape for one sample, as the source gives it (no batch axis)"),
    )
    examples = (
        Example({"op": "aten.roi_align", "shape": [4, 2, 2]}, ((3, 8, 8),), (4, 2, 2)),
        Example({"op": "NonMaxSuppression", "shape": [7]}, ((3, 5, 5), (2, 5, 5)), (7,)),
        Example({"op": "Custom", "shape": [2, 3, 3, 3]}, ((1, 4, 4, 4),), (2, 3, 3, 3)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return UNKNOWN

    def output_shape(self, attrs: Mapping[str, Any], in_shapes: tuple[Shape, ...]) -> Shape:
        return attrs["shape"]

    def cost(self, layer: Layer) -> Cost:
        return Cost()

    def window(self, layer: Layer) -> str:
        return UNKNOWN

    def summary(self, layer: Layer) -> str:
        return f"{layer.attrs['op']} (not counted)"

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        return [
            ("output shape", f"{format_shape(layer.out_shape)}, as the source gives it"),
            ("params", f"not counted: archcalc has no rule for {layer.attrs['op']} (imported with --partial)"),
            ("MACs", "not counted (0 in the totals)"),
        ]

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        import numpy as np

        batch = inputs[0].shape[0]
        means = sum(x.reshape(batch, -1).sum(axis=1) for x in inputs) / sum(math.prod(x.shape[1:]) for x in inputs)
        y = np.broadcast_to(means.reshape(batch, *(1,) * len(layer.out_shape)), (batch, *layer.out_shape)).copy()
        return y, [x.shape for x in inputs]

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        import numpy as np

        batch = dy.shape[0]
        share = dy.reshape(batch, -1).sum(axis=1) / sum(math.prod(shape[1:]) for shape in cache)
        return [np.broadcast_to(share.reshape(batch, *(1,) * (len(shape) - 1)), shape).copy() for shape in cache], {}

    def torch_module(self, layer: Layer) -> Any:
        from archcalc.ops._torch import MeanStandIn

        return MeanStandIn(layer.out_shape)

"""What the passes produce: per-layer figures, totals, and their machine-readable forms.

Everything here is a number the passes computed; presentation (tables, SVG) formats these
and computes nothing. The JSON form is a stable contract documented in the README.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from archcalc.formulas import Field
from archcalc.ops import Shape


@dataclass(frozen=True)
class ReceptiveField:
    """A node's receptive field w.r.t. the network input, per spatial axis of the input.

    ``path_max`` / ``path_min`` are the fields along the input paths with the largest and the
    smallest size (equal in a chain); ``aligned`` is false where merged branches' centres or
    jumps differ. A global field (after a linear layer or global pooling) covers the input.
    """

    path_max: tuple[Field, ...]
    path_min: tuple[Field, ...]
    aligned: bool = True
    is_global: bool = False
    input_size: Shape = ()

    @classmethod
    def of(cls, largest: tuple[Field, ...], smallest: tuple[Field, ...], aligned: bool) -> ReceptiveField:
        """A field from its largest and smallest paths."""
        return cls(largest, smallest, aligned)

    @classmethod
    def whole(cls, input_size: Shape) -> ReceptiveField:
        """The global field: every output sees the whole input."""
        return cls((), (), True, True, tuple(input_size))

    @property
    def size(self) -> Shape:
        """Field size per axis (the input's size when global)."""
        return self.input_size if self.is_global else tuple(f.size for f in self.path_max)

    @property
    def size_min(self) -> Shape:
        """Smallest field size over the input paths, per axis."""
        return self.input_size if self.is_global else tuple(f.size for f in self.path_min)

    @property
    def stride(self) -> Shape | None:
        """Effective stride (jump) per axis; None when global."""
        return None if self.is_global else tuple(f.jump for f in self.path_max)

    @property
    def padding(self) -> Shape | None:
        """Effective padding per axis; None when global."""
        return None if self.is_global else tuple(f.padding for f in self.path_max)

    @property
    def centre(self) -> tuple[float, ...] | None:
        """Centre of output unit 0 in input coordinates, per axis; None when global."""
        return None if self.is_global else tuple(f.centre for f in self.path_max)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: size, stride, padding, centre, size_min, aligned, global."""
        return {
            "size": list(self.size),
            "stride": _list(self.stride),
            "padding": _list(self.padding),
            "centre": _list(self.centre),
            "size_min": list(self.size_min),
            "aligned": self.aligned,
            "global": self.is_global,
        }

    def text(self) -> str:
        """``7x7``, ``global``, ``7x7 (min 3x3)``, with ``!`` when branch centres differ."""
        if self.is_global:
            return "global"
        text = "x".join(map(str, self.size))
        if self.size_min != self.size:
            text += f" (min {'x'.join(map(str, self.size_min))})"
        return text if self.aligned else text + " !"


def _list(value: tuple[Any, ...] | None) -> list[Any] | None:
    return None if value is None else list(value)


@dataclass(frozen=True)
class LayerReport:
    """Every figure of one layer (for the whole batch where it scales with it)."""

    name: str
    type: str
    inputs: tuple[str, ...]
    scope: tuple[str, ...]
    summary: str
    attrs: Mapping[str, Any]
    output_shape: Shape
    params: int
    params_trainable: int
    params_weights_only: int
    macs: int
    other_ops: int
    activations: int
    activation_bytes: int
    stores_output: bool
    receptive_field: ReceptiveField

    @property
    def flops(self) -> int:
        """2 x MACs."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        """JSON form of the layer; every count an exact integer."""
        return {
            "name": self.name,
            "type": self.type,
            "inputs": list(self.inputs),
            "scope": list(self.scope),
            "output_shape": list(self.output_shape),
            "params": self.params,
            "params_trainable": self.params_trainable,
            "params_weights_only": self.params_weights_only,
            "macs": self.macs,
            "flops": self.flops,
            "other_ops": self.other_ops,
            "activations": self.activations,
            "activation_bytes": self.activation_bytes,
            "stores_output": self.stores_output,
            "receptive_field": self.receptive_field.to_dict(),
        }


@dataclass(frozen=True)
class Totals:
    """Whole-network figures. ``activations`` counts the input and every stored output."""

    params: int
    params_trainable: int
    params_weights_only: int
    macs: int
    other_ops: int
    activations: int
    activation_bytes: int
    training_bytes: int

    @property
    def flops(self) -> int:
        """2 x MACs."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, int]:
        """JSON form; every figure an exact integer."""
        return {
            "params": self.params,
            "params_trainable": self.params_trainable,
            "params_weights_only": self.params_weights_only,
            "macs": self.macs,
            "flops": self.flops,
            "other_ops": self.other_ops,
            "activations": self.activations,
            "activation_bytes": self.activation_bytes,
            "training_bytes": self.training_bytes,
        }


@dataclass(frozen=True)
class Analysis:
    """The result of :func:`archcalc.analyze`: one row per node (input first) and totals."""

    model: str
    input_shape: Shape
    batch: int
    dtype: str
    optimizer: str
    layers: tuple[LayerReport, ...]
    totals: Totals
    description: str = ""
    #: Doubts about the spec that are not errors (``Graph.warnings``), one line each.
    warnings: tuple[str, ...] = ()

    def layer(self, name: str) -> LayerReport:
        """The row of a layer by name."""
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (see README): model, input_shape, layers, totals, warnings."""
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "batch": self.batch,
            "dtype": self.dtype,
            "optimizer": self.optimizer,
            "layers": [row.to_dict() for row in self.layers],
            "totals": self.totals.to_dict(),
            "warnings": list(self.warnings),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_csv(self) -> str:
        """One row per layer with exact integers; also the blank template for grading."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in self.layers:
            writer.writerow(
                [
                    row.name,
                    row.type,
                    "x".join(map(str, row.output_shape)),
                    row.params,
                    row.params_trainable,
                    row.params_weights_only,
                    row.macs,
                    row.flops,
                    row.other_ops,
                    row.activations,
                    row.activation_bytes,
                    row.receptive_field.text(),
                ]
            )
        return out.getvalue()


CSV_COLUMNS = (
    "name", "type", "output_shape", "params", "params_trainable", "params_weights_only",
    "macs", "flops", "other_ops", "activations", "activation_bytes", "receptive_field",
)


def fold_key(scope: tuple[str, ...], depth: int | None) -> tuple[str, ...] | None:
    """The block a node folds into when ``depth`` levels are shown (None: it stays a row of its own).

    As torchinfo's depth: 1 shows the top level only, each top-level block instance one row.
    """
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be 1 or more (levels of blocks shown), got {depth}")
    if depth is None or len(scope) < depth:
        return None
    return scope[:depth]


def fold(layers: tuple[LayerReport, ...], depth: int) -> tuple[LayerReport, ...]:
    """Rows showing ``depth`` levels of blocks, each block at the last level folded into one row.

    ``depth=1`` folds every top-level instance; a folded row sums params, MACs and other ops,
    and shows the last layer's output shape, activations and receptive field.
    """
    rows: list[LayerReport] = []
    groups: dict[tuple[str, ...], int] = {}
    for row in layers:
        key = fold_key(row.scope, depth)
        if key is None:
            rows.append(row)
            continue
        if key not in groups:
            groups[key] = len(rows)
            rows.append(replace(row, name=".".join(key), type="block", summary="1 layer", attrs={}, scope=key[:-1]))
            continue
        folded = rows[groups[key]]
        rows[groups[key]] = replace(
            folded,
            summary=f"{int(folded.summary.split()[0]) + 1} layers",
            output_shape=row.output_shape,
            params=folded.params + row.params,
            params_trainable=folded.params_trainable + row.params_trainable,
            params_weights_only=folded.params_weights_only + row.params_weights_only,
            macs=folded.macs + row.macs,
            other_ops=folded.other_ops + row.other_ops,
            activations=row.activations,
            activation_bytes=row.activation_bytes,
            stores_output=folded.stores_output or row.stores_output,
            receptive_field=row.receptive_field,
        )
    return tuple(rows)

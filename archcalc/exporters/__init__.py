"""Exporters: an archcalc network as PyTorch source (:mod:`archcalc.exporters.torch`) or as an ONNX
graph built with ``onnx.helper`` (:mod:`archcalc.exporters.onnx`).

Neither imports its framework until called: without torch (or onnx) the call raises
:class:`~archcalc.errors.MissingToolError` saying which extra to install.
"""

from __future__ import annotations

from typing import Any

from archcalc.errors import SpecError
from archcalc.graph import Graph

__all__ = ["to_onnx", "to_torch", "torch_source"]

#: The pass-through op a partial import adds for an op archcalc cannot count: never exportable.
OPAQUE = "opaque"


def torch_source(net: Any) -> str:
    """Plain PyTorch source of ``net``: see :func:`archcalc.exporters.torch.torch_source`."""
    from archcalc.exporters.torch import torch_source as source

    return source(net)


def to_torch(net: Any, path: Any = None, *, weights: Any = None) -> Any:
    """``net`` as a torch module in eval mode: see :func:`archcalc.exporters.torch.to_torch`."""
    from archcalc.exporters.torch import to_torch as convert

    return convert(net, path, weights=weights)


def to_onnx(net: Any, path: Any, *, weights: Any = None, seed: int = 0) -> None:
    """``net`` as an ONNX file: see :func:`archcalc.exporters.onnx.to_onnx`."""
    from archcalc.exporters.onnx import to_onnx as convert

    convert(net, path, weights=weights, seed=seed)


def refuse_opaque(graph: Graph, target: str) -> None:
    """SpecError naming the first layer of a partial import's uncounted ops (type ``opaque``):
    archcalc does not know what they compute, so it cannot write them for ``target``."""
    for node in graph.nodes[1:]:
        if node.type == OPAQUE:
            raise SpecError(
                f"{where(graph, node)}: cannot export to {target}: the layer stands for {node.attrs.get('op', 'an op')}, which a "
                "partial import left uncounted (archcalc does not know what it computes)"
            )


def where(graph: Graph, node: Any) -> str:
    """Where a layer is, for export errors: ``model 'lenet5': layers[2] (name="pool1", type="maxpool")``."""
    return f"model '{graph.name}': {node.label()}"


def flat_weights(graph: Graph, weights: Any) -> dict[str, Any]:
    """Weights as the executor names them, ``{"layer.weight": array}``, from that form or from
    ``{layer: {name: array}}``, where a name is the parameter's (``weight``, ``running_var``) or
    its role's (a batchnorm's ``scale`` and ``shift`` are its ``weight`` and ``bias``).

    Raises:
        SpecError: weights that are not a dict.
    """
    from collections.abc import Mapping

    from archcalc.ops import get_op
    from archcalc.passes import infer_shapes

    if not isinstance(weights, Mapping):
        raise SpecError(f"weights must be a dict of arrays by parameter name, got a {type(weights).__name__}")
    layers = infer_shapes(graph)
    roles = {f"{node.name}.{param.role.name}": f"{node.name}.{name}" for node in graph.nodes[1:]
             for name, param in get_op(node.type).params(layers[node.name]).items()}
    flat: dict[str, Any] = {}
    for key, value in weights.items():
        items = [(f"{key}.{name}", array) for name, array in value.items()] if isinstance(value, Mapping) else [(key, value)]
        for name, array in items:
            flat[name if name not in roles or name in roles.values() else roles[name]] = array
    return flat


def check_output_path(path: Any, what: str) -> Any:
    """``path`` as a :class:`pathlib.Path` whose directory exists; SpecError (one line) otherwise."""
    from pathlib import Path

    try:
        target = Path(path)
    except TypeError:
        raise SpecError(f"{what} output path must be a file path, got {path!r}") from None
    if target.is_dir():
        raise SpecError(f"{what} output path '{target}' is a directory; give a file name in it")
    if not target.parent.is_dir():
        raise SpecError(f"{what} output path '{target}': directory '{target.parent}' does not exist")
    return target

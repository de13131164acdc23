"""The peer tools' oracle: archcalc's zoo models as the plain PyTorch modules archcalc exports.

Only tests import this (it imports torch: ``pytest.importorskip("tests.peer_oracle")``). The
module of :func:`exported` is :func:`archcalc.exporters.torch.to_torch` of the zoo model, whose
module names are the layer names (``layer1.0.conv1``), so a tool's per-module breakdown maps to
archcalc's layers by name. Each model is built once per process.
"""

from __future__ import annotations

import functools

import torch

import archcalc
from archcalc.exporters.torch import to_torch


@functools.cache
def exported(name: str, batch: int = 1):
    """``(graph, module in eval mode, input of the batch)`` for a zoo model (or spec path), seeded."""
    graph = archcalc.load(name)
    torch.manual_seed(0)
    module = to_torch(graph).eval()
    return graph, module, torch.randn(batch, *graph.input_shape)


def module_names(module) -> dict[str, object]:
    """Every submodule by its dotted name (the layer names of an exported model)."""
    return dict(module.named_modules())


def per_layer(graph, per_module):
    """A tool's per-module figures by archcalc layer (0 for a layer the export runs without a module).
    Every module that counted something must be a layer's."""
    from archcalc.exporters.torch import plan

    paths = {node: ".".join(path) for node, path in plan(graph).paths.items() if path is not None}
    assert not {name for name, figure in per_module.items() if figure} - set(paths.values())
    return {node.name: per_module.get(paths.get(node.name), 0) for node in graph.nodes[1:]}


def on_meta(model, batch=1):
    """(graph, exported module, input) on the meta device (shapes only: for the tools that count
    from shapes); ``model`` a zoo name (cached) or a Graph."""
    if isinstance(model, str):
        return _zoo_on_meta(model, batch)
    return _export_on_meta(model, batch)


@functools.cache
def _zoo_on_meta(model, batch):
    return _export_on_meta(archcalc.load(model), batch)


def _export_on_meta(graph, batch):
    with torch.device("meta"):
        module = to_torch(graph)
    return graph, module, torch.empty(batch, *graph.input_shape, device="meta")

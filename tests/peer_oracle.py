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

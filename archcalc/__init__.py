"""archcalc: ConvNet architecture analysis and cost calculator.

    import archcalc
    net = archcalc.load("vgg16")                 # zoo name, .json/.py path, dict or Net
    a = archcalc.analyze(net, batch=1, dtype="float32")
    a.totals.params, a.layers[1].output_shape, a.layers[1].receptive_field.size
"""

from __future__ import annotations

from archcalc.dsl import Net
from archcalc.errors import ArchcalcError, ShapeError, SpecError
from archcalc.explain import explain
from archcalc.graph import Graph, Node
from archcalc.loading import load
from archcalc.passes import analyze
from archcalc.render.dot import render, to_dot
from archcalc.report import Analysis, LayerReport, ReceptiveField, Totals

__version__ = "0.1.0"


#: Public names imported on first use: the executor loads NumPy, the importers and exporters
#: their optional packages (each module imports torch, onnx or protobuf only when called).
_LAZY = {
    "Executor": "archcalc.execute", "gradcheck": "archcalc.execute",
    "from_torch": "archcalc.importers", "from_onnx": "archcalc.importers", "from_caffe": "archcalc.importers",
    "to_torch": "archcalc.exporters.torch", "torch_source": "archcalc.exporters.torch", "to_onnx": "archcalc.exporters.onnx",
    "readable_spec": "archcalc.specwriter", "explain_im2col": "archcalc.im2col",
}


def __getattr__(name: str) -> object:
    """The lazily imported public names (:data:`_LAZY`)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'archcalc' has no attribute {name!r}")

__all__ = [
    "Analysis", "ArchcalcError", "Executor", "Graph", "LayerReport", "Net", "Node", "ReceptiveField",
    "ShapeError", "SpecError", "Totals", "analyze", "explain", "explain_im2col", "from_caffe", "from_onnx", "from_torch",
    "gradcheck", "load", "readable_spec", "render", "to_dot", "to_onnx", "to_torch", "torch_source", "__version__",
]

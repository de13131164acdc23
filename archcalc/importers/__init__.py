"""Bring your own network: PyTorch modules, ONNX files and Caffe prototxts as archcalc graphs.

Each importer returns the same :class:`~archcalc.graph.Graph` as :func:`archcalc.load`, built
through the spec's own validation (see :mod:`archcalc.importers._builder`). The format's
package is an optional extra, imported only when that importer runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archcalc.errors import SpecError
from archcalc.graph import Graph
from archcalc.spec import MAX_LAYERS

#: File suffixes each importer reads.
ONNX_SUFFIXES = (".onnx",)
CAFFE_SUFFIXES = (".prototxt", ".pbtxt")
#: The input torchvision's classification models are made for, when --input is not given.
TORCHVISION_INPUT = (3, 224, 224)


def from_torch(module: Any, input_shape: Any, *, name: str | None = None, partial: bool = False,
               max_layers: int = MAX_LAYERS) -> Graph:
    """A PyTorch ``nn.Module`` traced on one sample of ``input_shape`` (channels-first, no batch
    axis) as an archcalc graph; layer names are the module paths. See :mod:`archcalc.importers.torch`.

    Raises:
        MissingToolError: torch is not installed.
        SpecError: the module cannot be traced or mapped (UnsupportedOpsError lists every op
            without a rule, unless ``partial``).
    """
    from archcalc.importers import torch as torch_importer

    return torch_importer.from_torch(module, input_shape, name=name, partial=partial, max_layers=max_layers)


def from_onnx(path: Any, input_shape: Any = None, *, partial: bool = False, max_layers: int = MAX_LAYERS) -> Graph:
    """An ONNX file as an archcalc graph (the ``onnx`` package only; ``input_shape`` for a file with
    dynamic shapes). See :mod:`archcalc.importers.onnx`.

    Raises:
        MissingToolError: onnx is not installed.
        SpecError: the file cannot be read or mapped (UnsupportedOpsError lists every op
            without a rule, unless ``partial``).
    """
    from archcalc.importers import onnx as onnx_importer

    return onnx_importer.from_onnx(path, input_shape, partial=partial, max_layers=max_layers)


def from_caffe(path: Any, input_shape: Any = None, *, partial: bool = False, max_layers: int = MAX_LAYERS) -> Graph:
    """A Caffe prototxt (NetParameter in protobuf's text format) as an archcalc graph. See
    :mod:`archcalc.importers.caffe`.

    Raises:
        MissingToolError: protobuf is not installed.
        SpecError: the file cannot be parsed or mapped (UnsupportedOpsError lists every layer
            type without a rule, unless ``partial``).
    """
    from archcalc.importers import caffe as caffe_importer

    return caffe_importer.from_caffe(path, input_shape, partial=partial, max_layers=max_layers)


def source_kind(text: str) -> str | None:
    """Which importer reads ``text`` as a model argument: ``onnx``, ``caffe``, ``torchvision``,
    ``torch`` (``package.module:Name``), or None (a zoo name or spec)."""
    suffix = Path(text).suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    if suffix in CAFFE_SUFFIXES:
        return "caffe"
    if text.startswith("torchvision:"):
        return "torchvision"
    module, colon, attribute = text.partition(":")
    if colon and module and attribute and all(part.isidentifier() for part in module.split(".")) \
            and all(part.isidentifier() for part in attribute.split(".")):
        return "torch"
    return None


def load_source(text: str, input_shape: Any = None, partial: bool = False, max_layers: int = MAX_LAYERS) -> Graph:
    """The network a model argument names, through its importer (see :func:`source_kind`).

    ``torchvision:NAME`` builds torchvision's model NAME (no weights) at ``input_shape``
    (default 3x224x224); ``package.module:Name`` imports the module and takes ``Name``: an
    ``nn.Module`` instance, or a class or function called without arguments to make one (it
    runs that code: name only modules you trust); it needs ``input_shape``.

    Raises:
        SpecError: not a source archcalc can import, or what the importer raises.
    """
    kind = source_kind(text)
    if kind == "onnx":
        return from_onnx(_existing(text), input_shape, partial=partial, max_layers=max_layers)
    if kind == "caffe":
        return from_caffe(_existing(text), input_shape, partial=partial, max_layers=max_layers)
    if kind == "torchvision":
        module, name = _torchvision_model(text.partition(":")[2]), text.partition(":")[2]
        return from_torch(module, input_shape or TORCHVISION_INPUT, name=name, partial=partial, max_layers=max_layers)
    if kind == "torch":
        if input_shape is None:
            raise SpecError(f"{text}: give the input shape of one sample, e.g. --input 3x224x224")
        module = _python_module(text)
        return from_torch(module, input_shape, name=text.partition(":")[2], partial=partial, max_layers=max_layers)
    raise SpecError(f"{text!r:.200} is not a file or module archcalc can import (.onnx, .prototxt, torchvision:NAME, "
                    "package.module:Name)")


def _existing(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise SpecError(f"{text!r:.200}: " + ("is a directory" if path.is_dir() else "no such file"))
    return path


def _torchvision_model(name: str) -> Any:
    """torchvision's model ``name``, untrained (``weights=None``)."""
    from archcalc.importers._builder import missing
    from archcalc.ops.base import did_you_mean

    try:
        import torchvision
    except ImportError:
        raise missing("torchvision", "torch", f"torchvision:{name}") from None
    names = sorted(torchvision.models.list_models())
    if name not in names:
        raise SpecError(f"torchvision has no model {name!r}{did_you_mean(name, names)} "
                        "(torchvision.models.list_models() lists them)")
    return torchvision.models.get_model(name, weights=None).eval()


def _python_module(text: str) -> Any:
    """The ``nn.Module`` that ``package.module:Name`` names: an instance, or made by calling Name()."""
    import importlib
    import sys

    module_name, _, attribute = text.partition(":")
    added = "" not in sys.path and "." not in sys.path  # the current directory, as `python -m` would have it
    if added:
        sys.path.insert(0, "")
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise SpecError(f"{text}: cannot import {module_name!r}: {error}") from None
    except (Exception, SystemExit) as error:  # the user's module raised while importing: one line
        raise SpecError(f"{text}: importing {module_name!r} failed: {type(error).__name__}: {error}") from None
    finally:
        if added:
            sys.path.remove("")
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise SpecError(f"{text}: module {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    try:
        import torch
    except ImportError:
        from archcalc.importers._builder import missing

        raise missing("torch", "torch", text) from None
    if isinstance(value, torch.nn.Module):
        return value.eval()
    if callable(value):
        try:
            made = value()
        except (Exception, SystemExit) as error:  # the user's code: say what it raised, in one line
            raise SpecError(f"{text}: calling {attribute}() failed: {type(error).__name__}: {error}") from None
        if isinstance(made, torch.nn.Module):
            return made.eval()
        raise SpecError(f"{text}: {attribute}() returned a {type(made).__name__}, not a torch.nn.Module")
    raise SpecError(f"{text}: {attribute} is a {type(value).__name__}, not a torch.nn.Module or a callable making one")

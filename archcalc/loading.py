"""``archcalc.load``: one entry point for zoo names, spec files, dicts and DSL nets."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archcalc import zoo
from archcalc.dsl import Net, load_python
from archcalc.errors import SpecError
from archcalc.graph import Graph
from archcalc.ops.base import did_you_mean
from archcalc.spec import MAX_LAYERS, from_dict, from_json


def load(model: Any, max_layers: int = MAX_LAYERS, input_shape: Any = None, partial: bool = False) -> Graph:
    """Load a network.

    Args:
        model: a zoo name (``"vgg16"``), a path to a ``.json`` or ``.py`` spec, JSON text (a
            string starting with ``{``, such as ``Graph.to_json()``'s), a spec dict, a
            :class:`~archcalc.dsl.Net`, or a :class:`~archcalc.graph.Graph` (returned as is);
            or a network to import (:mod:`archcalc.importers`): an ``.onnx`` file, a Caffe
            ``.prototxt``, ``torchvision:NAME`` or ``package.module:Name`` (an ``nn.Module``).
            A ``.py`` spec or a Python module is code, run with your rights: load only what you trust.
        max_layers: the most layers a spec's blocks may expand to (checked before expanding).
        input_shape: an imported network's input, one sample without the batch axis
            ((3, 224, 224)): needed for ``package.module:Name`` and ONNX files with dynamic shapes.
        partial: an imported network's ops without a rule are passed through, counted as 0.

    Raises:
        SpecError: the model cannot be found or read, or its spec is invalid; ``input_shape``
            or ``partial`` given for a network that is not imported.
        MissingToolError: the importer's package (torch, onnx, protobuf) is not installed.
    """
    from archcalc.importers import load_source, source_kind

    if isinstance(model, (str, Path)) and source_kind(str(model)) is not None:
        return load_source(str(model), input_shape, partial, max_layers)
    if input_shape is not None or partial:
        given = "an input shape" if input_shape is not None else "partial"
        raise SpecError(f"{given} applies to imported networks (.onnx, .prototxt, torchvision:NAME, package.module:Name), "
                        f"not to {_shown(model)}")
    if isinstance(model, Graph):
        return model
    if isinstance(model, Net):
        return model.graph(max_layers=max_layers)
    if isinstance(model, Mapping):
        return from_dict(model, max_layers=max_layers)
    if not isinstance(model, (str, Path)):
        raise SpecError(f"cannot load a {type(model).__name__}: give a zoo name, a spec path, a dict or a Net")
    if isinstance(model, str) and model.lstrip().startswith("{"):  # JSON text, e.g. Graph.to_json()'s
        return from_json(model, "<json text>", max_layers=max_layers)
    text = str(model)
    path = Path(model)
    shown = repr(text if len(text) <= 200 else text[:197] + "...")
    looks_like_path = path.suffix in (".json", ".py") or os.sep in text or (os.altsep or os.sep) in text
    if "\x00" in text:
        raise SpecError(f"spec path {shown} contains a NUL byte")
    if not text.strip():
        raise SpecError("no model given: name a zoo model (`archcalc list`), a .json or .py spec, or - for standard input")
    kind = _kind(path, shown)
    if kind != "file" and not looks_like_path and text in zoo.names():
        return zoo.load(text, max_layers)
    if kind == "missing" and not looks_like_path:
        raise SpecError(f"no zoo model or spec file {shown}{did_you_mean(text, zoo.names())} (`archcalc list` shows the zoo)")
    if kind == "missing":
        raise SpecError(f"spec file {shown} does not exist")
    if kind == "directory":
        raise SpecError(f"spec file {shown} is a directory; give a .json or .py file in it")
    if kind != "file":
        raise SpecError(f"spec file {shown} is not a regular file ({kind}); give a .json or .py file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SpecError(f"spec file {shown} cannot be read: {_reason(error)}") from None
    if path.suffix == ".py":
        return load_python(path, data, max_layers=max_layers)
    return from_json(data, str(path), max_layers=max_layers)


def _shown(model: Any) -> str:
    """A model argument in a message: a name or path quoted, else its kind."""
    if isinstance(model, (str, Path)):
        text = str(model)
        return repr(text if len(text) <= 200 else text[:197] + "...")
    return f"a {type(model).__name__}"


def _kind(path: Path, shown: str) -> str:
    """``file``, ``directory``, ``missing`` or another kind, without raising on odd paths."""
    try:
        if path.is_dir():
            return "directory"
        if path.is_file():
            return "file"
        return "missing" if not path.exists() else "a device, socket or pipe"
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            return "missing"
        raise SpecError(f"spec file {shown} cannot be opened: {_reason(error)}") from None


def _reason(error: OSError) -> str:
    """``permission denied``: the OS's reason without Python's ``[Errno 13]`` and repeated path."""
    return (error.strerror or type(error).__name__).lower()

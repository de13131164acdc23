"""The zoo: JSON specs shipped inside the package (``specs/`` maps to ``archcalc.specs``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from archcalc.errors import SpecError
from archcalc.graph import Graph
from archcalc.ops.base import did_you_mean


def _folder() -> resources.abc.Traversable:
    """The installed ``archcalc/specs``; in a source checkout (editable install), ``specs/``."""
    try:
        return resources.files("archcalc.specs")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "specs"


def names() -> list[str]:
    """Names of the zoo's models, sorted."""
    return sorted(p.name[: -len(".json")] for p in _folder().iterdir() if p.name.endswith(".json"))


def load(name: str, max_layers: int | None = None) -> Graph:
    """A zoo model by name, e.g. ``vgg16``; ``max_layers`` as for :func:`archcalc.load`.

    Raises:
        SpecError: no zoo model has that name (with a did-you-mean), or it expands above max_layers.
    """
    from archcalc.spec import MAX_LAYERS, from_json

    entry = _folder() / f"{name}.json"
    if not entry.is_file():
        raise SpecError(f"no zoo model {name!r}{did_you_mean(name, names())} (`archcalc list` shows the zoo)")
    return from_json(entry.read_text(encoding="utf-8"), name, max_layers=max_layers or MAX_LAYERS)

"""CI runs the oracle tests for real: there, a missing torch is a failure, not a skip."""

from __future__ import annotations

import importlib.util
import os

import pytest


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="only CI must have the oracle installed")
def test_ci_has_the_torch_oracle():
    assert importlib.util.find_spec("torch") is not None, "CI must install torch (.ci/run: torch==2.14.1 torchvision==0.29.1)"


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="only CI must have the oracle installed")
@pytest.mark.parametrize("tool", ["fvcore", "ptflops", "thop", "torchinfo"])
def test_ci_has_the_peer_tools(tool):
    """The conventions' presets are checked against these tools (pyproject's oracle extra)."""
    assert importlib.util.find_spec(tool) is not None, f"CI must install {tool} (pip install -e '.[test]')"


def test_every_package_is_in_the_wheel():
    """A package missing from pyproject's list works in an editable install and is absent from the
    wheel (`pip install .`): every directory of archcalc with an __init__.py must be listed."""
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(path.parent.relative_to(root).parts) for path in (root / "archcalc").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)

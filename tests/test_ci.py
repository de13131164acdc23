"""CI runs the oracle tests for real: there, a missing torch is a failure, not a skip."""

from __future__ import annotations

import importlib.util
import os

import pytest


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="only CI must have the oracle installed")
def test_ci_has_the_torch_oracle():
    assert importlib.util.find_spec("torch") is not None, "CI must install torch (.ci/run: torch==2.14.1 torchvision==0.29.1)"

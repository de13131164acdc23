"""Shared pytest options: ``--update-golden`` rewrites the golden files of test_golden.py."""

from __future__ import annotations

from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/golden/* from the current output instead of comparing (then review the diff)")


@pytest.fixture
def golden(request):
    """``golden(name, text)``: assert ``text`` equals tests/golden/NAME, or rewrite it with --update-golden."""
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if update:
            path.write_text(text, encoding="utf-8")
            return
        assert path.exists(), f"no golden file {path.name}: run pytest --update-golden and review it"
        assert text == path.read_text(encoding="utf-8"), f"{name} changed: if intended, pytest --update-golden"

    return check

"""Argument types the benchmark scripts share (argparse turns their ValueError into a usage error, exit 2)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An int >= 1 from the command line."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value

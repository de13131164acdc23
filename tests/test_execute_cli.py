"""`archcalc run` and `archcalc gradcheck`: numeric options, progress and the executor's tables."""

from __future__ import annotations

import json

import click
import pytest

from archcalc.cli import ByteSize, FiniteFloat
from tests.helpers import run_main

TINY = {"name": "tiny", "input": [2, 5, 5], "layers": [
    {"type": "conv", "filters": 2, "kernel": 3}, {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "units": 3}]}


run = run_main


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return str(path)


@pytest.mark.parametrize(("text", "size"), [
    ("1GB", 10**9), ("1GiB", 2**30), ("1gib", 2**30), ("1 GB", 10**9), ("2G", 2 * 10**9), ("512MiB", 512 * 2**20),
    ("1.5GB", 1_500_000_000), ("0.5KiB", 512), (".5k", 500), ("100", 100), ("100B", 100), ("3TiB", 3 * 2**40),
    ("1PB", 10**15), ("123456789012345678901234567890", 123456789012345678901234567890),
])
def test_byte_sizes_are_exact(text, size):
    assert ByteSize().convert(text, None, None) == size


@pytest.mark.parametrize(("text", "problem"), [
    ("inf", "is not a size like 4GiB"), ("nan", "is not a size like 4GiB"), ("1e400", "is not a size like 4GiB"),
    ("-5", "is not a size like 4GiB"), ("0", "must be at least one byte"), ("0.1", "must be at least one byte"),
    ("lots", "is not a size like 4GiB"), ("", "is not a size like 4GiB"), ("5XB", "is not a size like 4GiB"),
    ("9" * 200, "is not a size like 4GiB"),
])
def test_bad_byte_sizes_are_refused(text, problem):
    with pytest.raises(click.BadParameter, match=problem):
        ByteSize().convert(text, None, None)


def test_finite_float_refuses_what_float_range_lets_through():
    assert FiniteFloat(0, 1).convert("0.9", None, None) == 0.9
    for text, problem in (("nan", "'nan' is not a finite number"), ("inf", "'inf' is not a finite number"),
                          ("1e400", "'1e400' is not a finite number"), ("-inf", "-inf is not in the range x>=0"),
                          ("x", "'x' is not a valid float"), ("-0.1", "-0.1 is not in the range x>=0")):
        with pytest.raises(click.BadParameter, match=problem):
            FiniteFloat(0).convert(text, None, None)
    with pytest.raises(click.BadParameter, match="'nan' is not a finite number"):
        FiniteFloat(0, 1).convert("nan", None, None)
    with pytest.raises(click.BadParameter, match="1.5 is not in the range 0<=x<=1"):
        FiniteFloat(0, 1).convert("1.5", None, None)


@pytest.mark.parametrize(("command", "option", "value", "problem"), [
    ("run", "--seed", "-1", "-1 is not in the range x>=0"),
    ("run", "--max-memory", "inf", "'inf' is not a size like 4GiB, 512MiB or 2G"),
    ("run", "--max-memory", "nan", "'nan' is not a size like"),
    ("run", "--max-memory", "1e400", "'1e400' is not a size like"),
    ("run", "--max-memory", "0", "'0' must be at least one byte"),
    ("run", "--max-memory", "-5", "'-5' is not a size like"),
    ("run", "--lr", "nan", "'nan' is not a finite number"),
    ("run", "--lr", "inf", "'inf' is not a finite number"),
    ("run", "--lr", "-1", "-1.0 is not in the range x>=0"),
    ("run", "--momentum", "nan", "'nan' is not a finite number"),
    ("run", "--momentum", "2", "2.0 is not in the range 0<=x<=1"),
    ("run", "--momentum", "inf", "inf is not in the range 0<=x<=1"),
    ("run", "--weight-decay", "inf", "'inf' is not a finite number"),
    ("run", "--batch", str(10**400), "is not in the range 1<=x<=9223372036854775807"),
    ("run", "--batch", "0", "0 is not in the range 1<=x<=9223372036854775807"),
    ("run", "--steps", "10000000", "10000000 is not in the range 1<=x<=1000000"),
    ("run", "--steps", "-3", "-3 is not in the range 1<=x<=1000000"),
    ("gradcheck", "--tolerance", "nan", "'nan' is not a finite number"),
    ("gradcheck", "--tolerance", "1e400", "'1e400' is not a finite number"),
    ("gradcheck", "--seed", "-1", "-1 is not in the range x>=0"),
    ("gradcheck", "--samples", "0", "0 is not in the range x>=1"),
    ("gradcheck", "--batch", "-2", "-2 is not in the range 1<=x<=9223372036854775807"),
    ("gradcheck", "--max-memory", "nan", "'nan' is not a size like"),
])
def test_bad_numbers_are_refused_as_bad_options(command, option, value, problem):
    code, out, err = run(command, "lenet5", option, value)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"error: Invalid value for '{option}': ") and err.endswith(f" (see 'archcalc {command} --help')\n")
    assert problem in err


NUMERIC_OPTIONS = {
    "run": ("--batch", "--steps", "--lr", "--momentum", "--weight-decay", "--seed", "--max-memory"),
    "gradcheck": ("--batch", "--samples", "--seed", "--tolerance", "--max-memory"),
}
ABSURD = (str(10**400), "-" + str(10**400), "1e400", "-1", "nan", "-inf", "0", "", "1" * 5000, "0x10")


@pytest.mark.parametrize("command", sorted(NUMERIC_OPTIONS))
def test_absurd_numbers_end_in_status_0_or_2_never_a_traceback(command, tiny):
    for option in NUMERIC_OPTIONS[command]:
        for value in ABSURD:
            code, out, err = run(command, tiny, option, value, *(("--steps", "1") if option != "--steps" and command == "run" else ()))
            # gradcheck's own verdict: status 1 when a tensor fails (here --tolerance 0)
            assert code in (0, 2) or (command, option, value, code) == ("gradcheck", "--tolerance", "0", 1), (option, value, err)
            if code == 2:
                assert len(err.splitlines()) == 1 and err.startswith("error: "), (option, value, err)


def test_max_memory_accepts_decimal_and_binary_units(tiny):
    for size in ("1GB", "1GiB", "64MB", "64 MiB"):
        code, out, _ = run("run", tiny, "--steps", "1", "--max-memory", size)
        assert code == 0 and "step    1  loss" in out
    code, _, err = run("run", "lenet5", "--max-memory", "2MB")
    assert code == 2 and "over the limit of 1.9 MiB" in err  # 2 * 10**6 bytes


def test_run_names_its_loss_and_prints_the_timing_table():
    code, out, _ = run("run", "lenet5", "--batch", "2", "--steps", "2", "--seed", str(10**30))
    assert code == 0
    assert out.startswith("lenet5: batch 2, float32, SGD lr 0.01 momentum 0.9, cross-entropy on one random batch")
    assert "time per layer (mean of the steps)" in out and "100.0%" not in out.split("conv1")[0]


def test_gradcheck_states_its_work_before_it_starts():
    code, out, _ = run("gradcheck", "lenet5", "--samples", "2")
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith("gradcheck lenet5 at batch 2, float64: 11 tensors, 44 forward passes, about ")
    assert "(one pass took " in first
    assert out.splitlines()[-1].startswith("passed: max relative error ")


def test_gradcheck_checks_every_entry_of_a_small_model_when_asked_for_more(tiny):
    code, out, _ = run("gradcheck", tiny, "--samples", str(10**400))
    assert code == 0
    # conv 2x2x3x3 + 2 biases, linear 3x18 + 3, input 2x2x5x5: every entry, twice
    assert "5 tensors, " + f"{2 * (36 + 2 + 54 + 3 + 100):,} forward passes" in out


def test_a_diverging_run_stops_with_one_warning(recwarn):
    code, out, err = run("run", "lenet5", "--lr", "1e308", "--steps", "5", "--batch", "2")
    assert code == 0 and "loss nan" in out
    assert err.splitlines() == ["warning: training diverged: the loss is nan at step 2; try a smaller --lr"]
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]  # no NumPy overflow warnings

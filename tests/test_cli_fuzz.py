"""Random command lines through ``archcalc.cli.main``: the exit status is 0, 2 or 3, never a traceback.

Each example builds an argv for one command (zoo names, missing files, small random spec files,
standard input ``-``, ``.py`` specs, answer files) with random options, absurd numbers included,
and runs it as the console script does. Status 1 is allowed only for a gradcheck that failed;
exit 0 must print something. Set ``ARCHCALC_FUZZ_EXAMPLES`` for a longer exploratory run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import traceback
from contextlib import contextmanager
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archcalc.cli import main
from archcalc.ops import REGISTRY

EXAMPLES = int(os.environ.get("ARCHCALC_FUZZ_EXAMPLES", "100"))
#: Every input kind, including those that once failed in the spec loader, the executor, render and
#: grade (all fixed since); ARCHCALC_FUZZ_ALL=0 leaves them out.
EVERYTHING = os.environ.get("ARCHCALC_FUZZ_ALL", "1") == "1"
#: Seconds one command may take before it counts as unbounded work.
TIME_LIMIT = 60

SMALL_MODELS = ("lenet5", "stack-3x3-2", "stack-3x3-3", "factorized-7x7", "inception-naive", "inception-reduced")
ZOO = (*SMALL_MODELS, "vgg16", "resnet18", "resnet50", "googlenet", "alexnet-grouped")
PLAIN_NAMES = ("conv1", "x", "input", "x.y", "", "a b", "é", "\u202e")
MARKUP_NAMES = ("branch[pool]", "m[/bold]", "[/]", "[bold]", "a]b[")
ABSURD_INTS = (0, -1, 1, 2, 3, 7, 2**31, 2**53 + 1, 2**63 - 1, 2**64, 10**30, 10**400)

ints = st.one_of(st.integers(-2, 12), st.sampled_from(ABSURD_INTS))
junk = st.one_of(ints, st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5), st.booleans(), st.none(),
                 st.lists(st.integers(-1, 6), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
plausible = st.one_of(st.integers(1, 5), st.lists(st.integers(1, 4), min_size=1, max_size=3), st.sampled_from(["same", "valid"]))


@st.composite
def layers(draw: st.DrawFn, names: list[str], names_shown: tuple[str, ...]) -> dict:
    """One layer: a registered type (or a typo), some of its attributes, sometimes junk ones."""
    op_type = draw(st.sampled_from([*REGISTRY, "maxpol", "block"]))
    layer: dict = {"type": op_type}
    for attr in getattr(REGISTRY.get(op_type), "attrs", ()):
        if draw(st.integers(0, 5)):  # usually present
            layer[attr.name] = draw(st.one_of(plausible, junk) if draw(st.integers(0, 3)) else junk)
    if draw(st.integers(0, 4)) == 0:
        layer[draw(st.sampled_from(["strides", "units", "name", "inputs", "kernel_size", "p"]))] = draw(junk)
    if draw(st.integers(0, 2)) == 0:
        layer["name"] = draw(st.sampled_from(names_shown))
    if names and draw(st.integers(0, 3)) == 0:
        layer["inputs"] = draw(st.lists(st.sampled_from([*names, "input", "nope"]), min_size=1, max_size=3))
    return layer


@st.composite
def specs(draw: st.DrawFn, markup: bool = True) -> dict:
    """A small spec: mostly sensible shapes, sometimes broken anywhere; names with rich markup if ``markup``."""
    names_shown = PLAIN_NAMES + (MARKUP_NAMES if markup else ())
    spec: dict = {"name": draw(st.sampled_from(names_shown))}
    if draw(st.integers(0, 1)):
        spec["description"] = draw(st.sampled_from(["d [bold]x[/]: y", "A net. More.", "", "x" * 300]))
    spec["input"] = draw(st.one_of(st.lists(st.integers(1, 12), min_size=1, max_size=4),
                                   st.lists(ints, max_size=4), junk))
    names = [f"l{i}" for i in range(draw(st.integers(0, 5)))]
    spec["layers"] = [{**draw(layers(names[:i], names_shown)), **({"name": name} if draw(st.booleans()) else {})}
                      for i, name in enumerate(names)]
    if draw(st.integers(0, 4)) == 0:
        repeat = draw(st.sampled_from([1, 2, 3, 0, -1, "2", None] + ([10**9] if EVERYTHING else [])))
        not_objects = [None, [8]] if EVERYTHING else []
        spec["blocks"] = {"b": {"args": draw(st.sampled_from([{"f": 4}, {"f": None}, {}, *not_objects])),
                                "layers": [{"type": "conv", "filters": "$f", "kernel": 1}, {"type": "relu"}]}}
        spec["layers"].append({"block": draw(st.sampled_from(["b", "c", 5])), "name": "s", "repeat": repeat,
                               "args": draw(st.sampled_from([{"f": 2}, {"f": "x"}, {"g": 1}, {}, *not_objects]))})
    if draw(st.integers(0, 6)) == 0:
        spec[draw(st.sampled_from(["inputs", "extra", "Layers"]))] = draw(junk)
    return spec


@st.composite
def spec_texts(draw: st.DrawFn, markup: bool = True) -> str | bytes:
    """The text of a spec file: JSON of a random spec, or broken text."""
    kind = draw(st.integers(0, 9))
    if kind <= 6:
        return json.dumps(draw(specs(markup)))
    broken = ["", "{", "[]", "null", '{"name": "a", "name": "b", "input": [1, 4], "layers": [{"type": "relu"}]}',
              '{"input": [1, 4], "layers": [{"type": "lrn", "alpha": NaN}]}']
    if EVERYTHING:
        broken += ["[" * 100_000 + "]" * 100_000, '{"input": [' + "9" * 5000 + "]}", b"\xff\xfe{"]
    return draw(st.sampled_from(broken))


PY_SPECS = (
    "from archcalc import Net\nmodel = Net('py', input=(3, 8, 8))\nmodel.conv(4, 3)\nmodel.relu()\n",
    "from archcalc import Net\nmodel = Net('py[/]', input=(3, 8, 8))\nmodel.conv(4, 9)\n",
    "syntax error (\n",
    "x = 1\n",
)
PY_SPECS_ELSEWHERE = (
    "from archcalc import Net\nmodel = Net('t', input=(3, 8, 8))\nmodel.lineer(10)\n",
    "from archcalc import Net\nmodel = Net('t', input=5)\n",
    "raise ValueError('boom')\n",
    "import sys\nsys.exit(0)\n",
)


@st.composite
def model_args(draw: st.DrawFn, workdir: Path, markup: bool = True) -> tuple[str, str | bytes | None]:
    """(MODEL argument, standard input): a zoo name, a typo, a missing file, a spec file or ``-``."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from(ZOO)), None
    if kind == 1:
        return draw(st.sampled_from(["vgg61", "missing.json", "sub/dir/net", "missing.py", str(workdir), "-x"])), None
    text = draw(spec_texts(markup))
    if kind == 2:
        return "-", text  # bytes reach main() as they are: not UTF-8 when broken
    if kind == 3:
        path = workdir / f"spec{draw(st.integers(0, 3))}.py"
        path.write_text(draw(st.sampled_from(PY_SPECS + (PY_SPECS_ELSEWHERE if EVERYTHING else ()))))
        return str(path), None
    path = workdir / f"spec{draw(st.integers(0, 3))}.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path), None


def numbers(absurd: bool = True) -> st.SearchStrategy[str]:
    """An option value: a sensible number, an absurd one or not a number at all."""
    choices = ["1", "2", "0", "-1", "3"] + (["10" + "0" * 400, "9" * 4299, "1e400", "nan", "abc", ""] if absurd else [])
    return st.sampled_from(choices)


@st.composite
def argvs(draw: st.DrawFn, workdir: Path) -> tuple[list[str], str | bytes | None]:
    """A whole command line and its standard input."""
    command = draw(st.sampled_from(["report", "list", "explain", "compare", "render", "template", "grade", "run",
                                    "gradcheck", "", "--version", "--help", "nope"]))
    markup = EVERYTHING or command not in ("run", "gradcheck", "grade")
    model, stdin = draw(model_args(workdir, markup))
    argv: list[str] = [command] if command else []
    if command == "report":
        argv.append(model)
        argv += draw(st.sampled_from([[], ["--format", "json"], ["--format", "csv"], ["--format", "markdown"],
                                      ["--format", "yaml"], ["--depth", draw(numbers())]]))
        argv += draw(st.sampled_from([[], ["--batch", draw(numbers())], ["--dtype", "int8"], ["--optimizer", "adam"]]))
    elif command == "list":
        argv += draw(st.sampled_from([[], ["--format", "json"], ["extra"]]))
    elif command == "explain":
        argv += [model, draw(st.sampled_from(["conv1", "l0", "l1", "input", "nope", "branch[pool]", "fc6", "s.0.l0"]))]
        argv += draw(st.sampled_from([[], ["--batch", draw(numbers())], ["--dtype", "float16"]]))
    elif command == "compare":
        argv += [model, *draw(st.lists(st.sampled_from([*SMALL_MODELS, "vgg61"]), max_size=2))]
        argv += draw(st.sampled_from([[], ["--format", "json"], ["--batch", draw(numbers())]]))
    elif command == "render":
        directory = workdir if EVERYTHING is False else workdir / draw(st.sampled_from(["", "missing"]))
        argv += [model, "-o", str(directory / draw(st.sampled_from(["g.dot", "g[1].dot"])))]
        argv += draw(st.sampled_from([[], ["--depth", draw(numbers())], ["--color", "macs"], ["--rankdir", "LR"]]))
    elif command == "template":
        argv += [model] + draw(st.sampled_from([[], ["--columns", "params,macs"], ["--columns", ",,"]]))
    elif command == "grade":
        answers = workdir / "answers.csv"
        rows = ["name,params", "conv1,456", "conv1,456", "fc9,x"] if EVERYTHING else ["name,params", "conv1,456"]
        answers.write_text("\n".join(rows) + "\n")
        argv += [model, draw(st.sampled_from([str(answers), str(workdir / "none.csv")]))]
        argv += draw(st.sampled_from([[], ["--format", "json"], ["--format", "gradescope"], ["--explain"]]))
    elif command in ("run", "gradcheck"):
        small = draw(st.sampled_from(SMALL_MODELS[:3]))
        argv.append(model if model.endswith((".json", ".py")) or model == "-" else small)
        batch = draw(numbers(absurd=EVERYTHING)) if EVERYTHING else draw(st.sampled_from(["1", "2", "0", "x"]))
        argv += ["--batch", batch, "--seed", draw(st.sampled_from(["0", "7"] + (["-1"] if EVERYTHING else [])))]
        if command == "run":
            argv += ["--steps", "1", "--max-memory", draw(st.sampled_from(["1GiB", "1GB", "lots", "0", "64MiB"]))]
            if EVERYTHING:
                argv += draw(st.sampled_from([[], ["--lr", "nan"], ["--momentum", "inf"], ["--max-memory", "inf"]]))
        else:
            argv += ["--samples", "1"] + (draw(st.sampled_from([[], ["--tolerance", "nan"]])) if EVERYTHING else [])
    return argv, stdin


@contextmanager
def time_limit(seconds: int):
    """Fail, instead of hanging the suite, when one command does unbounded work."""
    def expire(signum, frame):
        raise TimeoutError(f"the command ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class _Main:
    """CliRunner invokes a click command; this one calls main() exactly as the console script."""

    name = "archcalc"

    def main(self, args=None, prog_name=None, **extra):
        main(args)
        sys.exit(0)


def run_cli(argv: list[str], stdin: str | bytes | None, cwd: Path) -> tuple[int, str, str, BaseException | None]:
    """(exit status, stdout, stderr, the exception if main raised one) for one command line."""
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with time_limit(TIME_LIMIT):
            result = CliRunner().invoke(_Main(), argv, input=stdin, catch_exceptions=True, env={"COLUMNS": None})
    finally:
        os.chdir(old)
    error = None if isinstance(result.exception, SystemExit) or result.exception is None else result.exception
    return result.exit_code, result.stdout, result.stderr, error


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("ARCHCALC_FUZZ_EXAMPLES"),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_any_command_line_exits_0_2_or_3_without_a_traceback(data):
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        argv, stdin = data.draw(argvs(workdir), label="argv, stdin")
        code, out, err, error = run_cli(argv, stdin, workdir)
    where = f"archcalc {' '.join(argv)!r} (stdin {stdin!r:.300})"
    assert error is None, f"{where} raised:\n" + "".join(traceback.format_exception(error))
    assert "Traceback" not in out + err, f"{where} printed a traceback:\n{err}"
    allowed = {0, 2, 3} | ({1} if argv[:1] == ["gradcheck"] else set())
    assert code in allowed, f"{where} exited {code}:\n{err}"
    if code == 0:
        assert out.strip(), f"{where} exited 0 with no output"
    if code == 2:
        lines = err.splitlines()
        assert 1 <= len(lines) <= 21 and all(line.startswith("error: ") for line in lines), f"{where}:\n{err}"

"""Random specs, valid and broken, through load and analyze: only archcalc's own errors come out.

The specs mix plausible values (small sizes, real op types and attribute names) with wrong
JSON types, huge and non-finite numbers, odd strings, nesting and block structures (repeats,
nested and self-referring blocks), as dicts and as JSON text (mutated bytes included).
Derandomised, with a bounded example count (CI runs on 2 cores).
"""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archcalc
from archcalc.errors import ArchcalcError
from archcalc.ops import REGISTRY
from archcalc.spec import from_dict, from_json

TYPES = sorted(REGISTRY) + ["convolution", "", "input"]
ATTRS = sorted({a.name for op in REGISTRY.values() for a in op.attrs}) + ["strides", "scope", "inputs", "name"]
BLOCKS = ["a", "b", "c"]
NAMES = ["conv1", "relu1", "input", "a", "x.y", "x y", "\x1b[31m", "\ud800", "", "n" * 200]

odd_numbers = st.sampled_from([0, -1, 2**31, 2**63, 10**400, math.inf, -math.inf, math.nan, 1e308, 0.5, True])
small_ints = st.integers(1, 9)
scalars = st.one_of(small_ints, small_ints, odd_numbers, st.sampled_from(NAMES + ["same", "valid", "$f", "$g"]),
                    st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(["f", "block", "args"]), inner, max_size=2)),
                      max_leaves=6)


def mostly(good, bad):
    """``good`` nine times in ten, ``bad`` otherwise: broken specs that are broken in one place."""
    return st.sampled_from(range(10)).flatmap(lambda roll: bad if roll == 9 else good)


@st.composite
def layers(draw):
    """A layer list: ops with random attributes, block instances, and the odd non-object."""
    items = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["op", "op", "op", "instance", "junk"]))
        if kind == "junk":
            items.append(draw(values))
            continue
        if kind == "instance":
            layer = {"block": draw(mostly(st.sampled_from(BLOCKS + ["$b"]), values))}
            arguments = st.dictionaries(st.sampled_from(["f", "g", "b"]), mostly(small_ints, values), max_size=2)
            optional = {"repeat": mostly(small_ints, st.one_of(odd_numbers, st.just("$f"))),
                        "args": mostly(arguments, values),
                        "first": mostly(st.fixed_dictionaries({}, optional={"block": st.sampled_from(BLOCKS),
                                                                             "args": arguments}), values),
                        "name": mostly(st.sampled_from(["s1", "s2", "s1"]), st.sampled_from(NAMES)),
                        "inputs": mostly(st.sampled_from(["input", "conv1", "s1", ["relu1", "input"]]), values)}
        else:
            layer = {"type": draw(mostly(st.sampled_from(sorted(REGISTRY)), st.sampled_from(TYPES)))}
            names = draw(st.lists(mostly(st.sampled_from(["filters", "kernel", "units", "stride", "padding"]),
                                         st.sampled_from(ATTRS)), max_size=4))
            optional = {attr: mostly(small_ints, values) for attr in names}
        for key, strategy in optional.items():
            if draw(st.booleans()):
                layer[key] = draw(strategy)
        items.append(layer)
    return items


@st.composite
def specs(draw):
    """A whole spec dict; each top-level key usually right, sometimes missing or of a wrong type."""
    spec = {}
    if draw(st.sampled_from(range(20))) != 19:
        spec["name"] = draw(mostly(st.just("t"), st.one_of(st.sampled_from(NAMES), values)))
    if draw(st.sampled_from(range(20))) != 19:
        spec["input"] = draw(mostly(st.lists(st.integers(1, 12), min_size=1, max_size=4),
                                    st.one_of(st.lists(st.one_of(small_ints, odd_numbers), max_size=5), values)))
    if draw(st.booleans()):
        blocks = {}
        for name in draw(st.lists(mostly(st.sampled_from(BLOCKS), st.just("bad name")), max_size=3, unique=True)):
            block = {"layers": draw(mostly(layers(), values))}
            if draw(st.booleans()):
                block["args"] = draw(mostly(st.dictionaries(st.sampled_from(["f", "g", "b"]),
                                                            st.one_of(st.none(), small_ints, values), max_size=2), values))
            blocks[name] = draw(mostly(st.just(block), values))
        spec["blocks"] = draw(mostly(st.just(blocks), values))
    spec["layers"] = draw(mostly(layers(), values))
    if draw(st.sampled_from(range(20))) == 19:
        spec[draw(st.sampled_from(["description", "layer", "extra"]))] = draw(values)
    return spec


def _load_and_analyze(load, spec):
    try:
        archcalc.analyze(load(spec))
    except ArchcalcError as error:
        assert error.problems and all(isinstance(p, str) and "\n" not in p for p in error.problems)
        assert len(error.problems) <= 51


@settings(max_examples=250, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs())
def test_random_dict_specs_raise_only_archcalc_errors(spec):
    _load_and_analyze(lambda s: from_dict(s, "fuzz", max_layers=2000), spec)


def _as_json(spec):
    return json.dumps(spec, allow_nan=True, default=repr)


@settings(max_examples=120, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), cut=st.integers(0, 400), junk=st.binary(max_size=3))
def test_random_json_text_raises_only_archcalc_errors(spec, cut, junk):
    try:
        text = _as_json(spec).encode("utf-8", "surrogatepass")
    except ValueError:  # a 4300-digit-limit int: write a long number by hand instead
        text = b'{"name": "t", "input": [' + b"9" * 5000 + b'], "layers": [{"type": "relu"}]}'
    _load_and_analyze(lambda t: from_json(t, "fuzz", max_layers=2000), text)
    _load_and_analyze(lambda t: from_json(t, "fuzz", max_layers=2000), text[:cut] + junk + text[cut:])


@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs())
def test_cli_report_exits_0_or_2_on_random_specs(spec):
    from click.testing import CliRunner

    from archcalc.cli import main

    class Main:
        name = "archcalc"

        def main(self, args, **kwargs):
            return main(args)

    try:
        text = _as_json(spec).encode("utf-8", "surrogatepass")
    except ValueError:
        text = b"{}"
    result = CliRunner().invoke(Main(), ["--max-layers", "2000", "report", "-", "--format", "json"], input=text,
                                catch_exceptions=False)
    assert result.exit_code in (0, 2)
    if result.exit_code == 0:
        assert "warnings" in json.loads(result.stdout)
    else:
        assert result.stderr.startswith("error: ")

"""Speed of readable specs: readable_spec (and dump_spec) against loading the same graph.

Run: python benchmarks/specwriter.py [--layers N]
Each case is a flat spec (every layer named and wired, as an importer hands a graph over):
resnet152 from the zoo, expanded and flattened; a chain of N layers (default 100,000) whose
names are dotted units (``b.0.conv``, ``b.0.relu``, ``b.1.conv``...: it becomes one instance with
``repeat``); and the same chain with names without dots (``conv0``, ``relu0``...: written flat).
For each it prints the best-of time of ``from_dict`` (building the graph), ``readable_spec``
(which includes loading its result back once, to check it) and ``dump_spec`` of the result,
and the ratio readable_spec / from_dict, measured in the same run (these machines are noisy).
"""

from __future__ import annotations

import argparse
import time

import archcalc
from archcalc.spec import from_dict
from archcalc.specwriter import dump_spec, readable_spec


def best_of(fn, repeat):
    """Minimum wall time of ``repeat`` calls, in seconds, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def flat(spec_or_graph):
    """The expanded spec of a graph with every layer flat (no scope), as an importer's."""
    spec = spec_or_graph.to_dict()
    for layer in spec["layers"]:
        layer.pop("scope", None)
    return spec


def chain(length: int, dotted: bool) -> dict:
    layers = []
    for index in range(length // 2):
        conv, relu = (f"b.{index}.conv", f"b.{index}.relu") if dotted else (f"conv{index}", f"relu{index}")
        layers += [{"type": "conv", "name": conv, "filters": 4, "kernel": 3, "padding": 1}, {"type": "relu", "name": relu}]
    return {"name": "chain", "input": [4, 8, 8], "layers": layers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=100_000, help="layers of the chains (default 100,000)")
    options = parser.parse_args()
    cases = [("resnet152", flat(archcalc.load("resnet152")), 5),
             (f"chain of {options.layers:,}, dotted units", chain(options.layers, True), 1),
             (f"chain of {options.layers:,}, names without dots", chain(options.layers, False), 1)]
    for label, spec, repeat in cases:
        t_load, graph = best_of(lambda spec=spec: from_dict(spec), repeat)
        t_write, written = best_of(lambda graph=graph: readable_spec(graph), repeat)
        t_dump, text = best_of(lambda written=written: dump_spec(written), repeat)
        blocks = len(written.get("blocks", {}))
        print(f"{label}: {len(graph) - 1:,} layers -> {len(written['layers']):,} entries, {blocks} block(s), "
              f"{text.count(chr(10)):,} lines; from_dict {t_load * 1000:.1f} ms, readable_spec {t_write * 1000:.1f} ms "
              f"({t_write / t_load:.2f}x from_dict), dump_spec {t_dump * 1000:.1f} ms")


if __name__ == "__main__":
    main()

"""Speed and memory of the cumulative figure (archcalc.cumulative) on long and wide graphs.

Run: python benchmarks/cumulative.py [--layers N]   (default 100,000)

For each generated graph it prints the time of ``cumulative(graph, figure)`` against a plain pass
over the same graph (each node's figure plus its inputs' totals: what a running sum costs, and
what the naive, double-counting answer would cost), as a ratio measured in the same run (these
machines are noisy), and the peak memory cumulative() allocates beyond its input (tracemalloc),
in bytes per layer. The graphs: a chain; a chain whose every layer also reads the input; ResNet
blocks (3 layers and an add); one concat of N single-layer branches; DenseNet blocks (32 layers,
each concat reading all earlier outputs of the block); a U-Net-like chain whose decoder reads the
encoder every 1,000 layers.
"""

from __future__ import annotations

import argparse
import tracemalloc
from types import SimpleNamespace

from analyze import best_of  # benchmarks/analyze.py, beside this script

from archcalc.cumulative import cumulative


def _graph(edges: list[tuple[str, tuple[str, ...]]]) -> SimpleNamespace:
    return SimpleNamespace(nodes=[SimpleNamespace(name=name, inputs=inputs) for name, inputs in edges])


def chain(n: int) -> SimpleNamespace:
    return _graph([("n0", ())] + [(f"n{i}", (f"n{i - 1}",)) for i in range(1, n)])


def skip_to_input(n: int) -> SimpleNamespace:
    return _graph([("n0", ())] + [(f"n{i}", (f"n{i - 1}", "n0")) for i in range(1, n)])


def resnet(n: int) -> SimpleNamespace:
    edges = [("n0", ())]
    last = "n0"
    while len(edges) < n:
        k = len(edges)
        edges += [(f"a{k}", (last,)), (f"b{k}", (f"a{k}",)), (f"c{k}", (f"b{k}",)), (f"d{k}", (f"c{k}", last))]
        last = f"d{k}"
    return _graph(edges)


def wide_concat(n: int) -> SimpleNamespace:
    branches = [(f"b{i}", ("n0",)) for i in range(n - 2)]
    return _graph([("n0", ()), *branches, ("cat", tuple(name for name, _ in branches))])


def densenet(n: int, growth: int = 32) -> SimpleNamespace:
    edges = [("n0", ())]
    last = "n0"
    while len(edges) < n:
        features = [last]
        for _ in range(growth):
            cat = f"cat{len(edges)}"
            edges.append((cat, tuple(features)))
            conv = f"conv{len(edges)}"
            edges.append((conv, (cat,)))
            features.append(conv)
        last = f"t{len(edges)}"
        edges.append((last, tuple(features)))
    return _graph(edges)


def unet(n: int, every: int = 1000) -> SimpleNamespace:
    half = n // 2
    edges = [("e0", ())] + [(f"e{i}", (f"e{i - 1}",)) for i in range(1, half)]
    edges.append(("d0", (f"e{half - 1}",)))
    for i in range(1, half):
        edges.append((f"d{i}", (f"d{i - 1}",) + ((f"e{half - 1 - i}",) if i % every == 0 else ())))
    return _graph(edges)


def plain_pass(graph: SimpleNamespace, figure: dict[str, int]) -> dict[str, int]:
    """Each node's figure plus its inputs' totals (double-counting shared ancestors)."""
    totals: dict[str, int] = {}
    for node in graph.nodes:
        totals[node.name] = figure[node.name] + sum(totals[ref] for ref in node.inputs)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=100_000)
    n = parser.parse_args().layers
    print(f"{'graph':<16}{'layers':>9}{'plain s':>10}{'cumulative s':>14}{'ratio':>8}{'peak B/layer':>14}")
    for make in (chain, skip_to_input, resnet, wide_concat, densenet, unet):
        graph = make(n)
        figure = {node.name: 1_000_003 for node in graph.nodes}
        plain = best_of(lambda: plain_pass(graph, figure), repeat=3)  # noqa: B023
        mine = best_of(lambda: cumulative(graph, figure), repeat=3)  # noqa: B023
        tracemalloc.start()
        cumulative(graph, figure)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        layers = len(graph.nodes)
        print(f"{make.__name__:<16}{layers:>9,}{plain:>10.3f}{mine:>14.3f}{mine / plain:>8.2f}{peak / layers:>14.1f}")


if __name__ == "__main__":
    main()

"""Speed of drawing: to_dot and a full SVG render of resnet152 (516 nodes, 20 clusters).

Run: python benchmarks/render.py
Prints the time of each step and its ratio to analysing the same model in the same run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from analyze import best_of  # benchmarks/analyze.py, beside this script

import archcalc


def main() -> None:
    graph = archcalc.load("resnet152")
    t_analyze = best_of(lambda: archcalc.analyze(graph))
    t_dot = best_of(lambda: archcalc.to_dot(graph))
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "resnet152.svg"
        t_svg = best_of(lambda: archcalc.render(graph, out))
        size = out.stat().st_size
    print(f"resnet152: analyze {t_analyze * 1e3:.0f} ms; to_dot {t_dot * 1e3:.0f} ms ({t_dot / t_analyze:.1f}x analyze); "
          f"render to SVG with dot {t_svg * 1e3:.0f} ms ({t_svg / t_analyze:.1f}x analyze), {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()

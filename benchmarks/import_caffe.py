"""Speed of the Caffe import: ResNet-50's prototxt against analysing the zoo's resnet50.

Run: python benchmarks/import_caffe.py [--repeat N]
Prints, measured in one run (these machines are noisy, so the ratios are the figures to quote):

- in process, best of N: parsing tests/data/caffe/resnet50.prototxt (protobuf's text_format),
  building the graph (parse + Builder + spec validation), and importing and analysing it,
  against loading and analysing the zoo's resnet50 (its JSON spec);
- as fresh processes, best of N: ``from_caffe`` + analyse against ``load("resnet50")`` +
  analyse, each started as ``python -c``; the first includes importing protobuf and loading
  Caffe's schema (the descriptor set) once.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from analyze import best_of  # benchmarks/analyze.py, beside this script

import archcalc
from archcalc.importers import caffe

PROTOTXT = Path(__file__).resolve().parents[1] / "tests" / "data" / "caffe" / "resnet50.prototxt"



def process_time(code: str, repeat: int) -> float:
    """Best wall time of ``python -c code`` as a fresh process, in seconds."""
    return best_of(lambda: subprocess.run([sys.executable, "-c", code], check=True), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat

    caffe.net_parameter_class()  # protobuf imported and the schema loaded once, as in any process that imports
    zoo = best_of(lambda: archcalc.analyze(archcalc.load("resnet50")), repeat)
    parse = best_of(lambda: caffe.parse_prototxt(PROTOTXT), repeat)
    build = best_of(lambda: caffe.from_caffe(PROTOTXT), repeat)
    both = best_of(lambda: archcalc.analyze(caffe.from_caffe(PROTOTXT)), repeat)
    layers = len(caffe.parse_prototxt(PROTOTXT).layer)
    print(f"resnet50.prototxt: {PROTOTXT.stat().st_size:,} bytes, {layers} Caffe layers (best of {repeat})")
    print(f"  zoo resnet50: load + analyze          {zoo * 1e3:8.1f} ms   1.00x")
    print(f"  prototxt: text_format parse           {parse * 1e3:8.1f} ms   {parse / zoo:.2f}x")
    print(f"  prototxt: from_caffe (parse + build)  {build * 1e3:8.1f} ms   {build / zoo:.2f}x")
    print(f"  prototxt: from_caffe + analyze        {both * 1e3:8.1f} ms   {both / zoo:.2f}x")

    zoo_process = process_time("import archcalc; archcalc.analyze(archcalc.load('resnet50'))", repeat)
    caffe_process = process_time(f"import archcalc; from archcalc.importers.caffe import from_caffe; "
                                 f"archcalc.analyze(from_caffe({str(PROTOTXT)!r}))", repeat)
    bare = process_time("pass", repeat)
    print("fresh processes:")
    print(f"  python -c pass                        {bare * 1e3:8.1f} ms")
    print(f"  zoo resnet50: load + analyze          {zoo_process * 1e3:8.1f} ms   1.00x")
    print(f"  prototxt: from_caffe + analyze        {caffe_process * 1e3:8.1f} ms   {caffe_process / zoo_process:.2f}x")


if __name__ == "__main__":
    main()

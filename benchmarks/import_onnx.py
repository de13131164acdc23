"""Speed of ONNX import: resnet50 from an .onnx file against the zoo's resnet50 plus the file's parse.

Run: python benchmarks/import_onnx.py [--model resnet50] [--repeat 5]

The issue's target: importing resnet50 from ONNX in a fresh process takes at most 2x the time of
analysing the zoo's resnet50 in a fresh process plus reading the file (``onnx.load``, the
protobuf parse). The .onnx file is written here with ``onnx.helper`` from archcalc's own
resnet50 graph (a small writer for the ops resnet uses, random float32 weights: 97.7 MB as
torchvision's export), so no exporter or torch is needed. Every figure is the best of
``--repeat`` runs; the ratio is from the same run, because this machine is shared and noisy.

Prints, per step: ``archcalc report resnet50`` (the zoo) as a fresh process; ``onnx.load`` of the
file as a fresh process (Python's start, ``import onnx`` with NumPy, the parse) and inside this
process (the parse alone); ``archcalc report resnet50.onnx`` as a fresh process; the ratios; and
the import's own split in-process (load, shape inference, the rest).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from analyze import best_of  # benchmarks/analyze.py, beside this script

import archcalc
from archcalc.passes import infer_shapes

_PARSE = "import onnx, sys; onnx.load(sys.argv[1])"


def write_onnx(graph: archcalc.Graph, path: str, seed: int = 0) -> None:
    """Write an archcalc graph of conv/batchnorm/relu/maxpool/add/global_avgpool/flatten/linear as ONNX."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    layers = infer_shapes(graph)
    nodes, inits = [], []

    def param(name: str, shape: tuple[int, ...]) -> str:
        inits.append(numpy_helper.from_array(rng.standard_normal(shape, dtype=np.float32), name))
        return name

    for node in graph.nodes[1:]:
        layer, name, ins = layers[node.name], node.name, list(node.inputs)
        a = layer.attrs
        if node.type == "conv":
            c = layers[ins[0]].out_shape[0]
            inputs = [ins[0], param(name + ".weight", (a["filters"], c // a["groups"], *a["kernel"]))]
            if a["bias"]:
                inputs.append(param(name + ".bias", (a["filters"],)))
            pads = [p[0] for p in a["padding"]] + [p[1] for p in a["padding"]]
            nodes.append(helper.make_node("Conv", inputs, [name], name=name, kernel_shape=list(a["kernel"]),
                                          strides=list(a["stride"]), pads=pads, dilations=list(a["dilation"]),
                                          group=a["groups"]))
        elif node.type == "batchnorm":
            c = layer.out_shape[0]
            inputs = [ins[0]] + [param(f"{name}.{p}", (c,)) for p in ("weight", "bias", "running_mean", "running_var")]
            nodes.append(helper.make_node("BatchNormalization", inputs, [name], name=name, epsilon=a["eps"],
                                          momentum=1 - a["momentum"]))
        elif node.type == "relu":
            nodes.append(helper.make_node("Relu", ins, [name], name=name))
        elif node.type == "add":
            nodes.append(helper.make_node("Add", ins, [name], name=name))
        elif node.type == "maxpool":
            pads = [p[0] for p in a["padding"]] + [p[1] for p in a["padding"]]
            nodes.append(helper.make_node("MaxPool", ins, [name], name=name, kernel_shape=list(a["kernel"]),
                                          strides=list(a["stride"]), pads=pads, ceil_mode=int(a["ceil_mode"])))
        elif node.type == "global_avgpool":
            nodes.append(helper.make_node("GlobalAveragePool", ins, [name], name=name))
        elif node.type == "flatten":
            nodes.append(helper.make_node("Flatten", ins, [name], name=name, axis=1))
        elif node.type == "linear":
            n_in = layers[ins[0]].out_shape[-1]
            inputs = [ins[0], param(name + ".weight", (a["units"], n_in))]
            if a["bias"]:
                inputs.append(param(name + ".bias", (a["units"],)))
            nodes.append(helper.make_node("Gemm", inputs, [name], name=name, transB=1))
        else:
            raise SystemExit(f"the benchmark's writer has no {node.type}")
    last = graph.nodes[-1].name
    onnx_graph = helper.make_graph(nodes, graph.name, [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                     [1, *graph.input_shape])],
                                   [helper.make_tensor_value_info(last, TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def process_time(argv: list[str], repeat: int) -> float:
    """Best wall time of a fresh ``python argv...`` (the worktree first on the path), its output discarded."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, *argv], check=True, env=env, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import onnx

    from archcalc.importers import onnx as onnx_import

    graph = archcalc.load(args.model)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, f"{args.model}.onnx")
        write_onnx(graph, path)
        size = os.path.getsize(path)
        imported = archcalc.analyze(onnx_import.from_onnx(path))
        zoo = archcalc.analyze(graph)
        same = (imported.totals.params, imported.totals.macs) == (zoo.totals.params, zoo.totals.macs)
        print(f"{args.model}.onnx: {size / 1e6:.1f} MB; imported params {imported.totals.params:,}, MACs "
              f"{imported.totals.macs:,} ({'equal to' if same else 'DIFFERENT FROM'} the zoo's)")

        zoo_process = process_time(["-m", "archcalc", "report", args.model], args.repeat)
        parse_process = process_time(["-c", _PARSE, path], args.repeat)
        parse = best_of(lambda: onnx.load(path), args.repeat)
        import_process = process_time(["-m", "archcalc", "report", path], args.repeat)
        print(f"A  `archcalc report {args.model}` (the zoo), fresh process:       {zoo_process * 1e3:7.1f} ms")
        print(f"B  onnx.load of the file, fresh process (import onnx, parse): {parse_process * 1e3:7.1f} ms")
        print(f"B' onnx.load of the file, in process (the parse alone):       {parse * 1e3:7.1f} ms")
        print(f"C  `archcalc report {args.model}.onnx`, fresh process:             {import_process * 1e3:7.1f} ms")
        print(f"ratio C / (A + B)  = {import_process / (zoo_process + parse_process):.2f} (the target: <= 2)")
        print(f"ratio C / (A + B') = {import_process / (zoo_process + parse):.2f} (stricter: `import onnx` itself, "
              "with NumPy, is not in the baseline)")

        # where the import's time goes, in process
        model = onnx_import._load(onnx, onnx_import.Path(path), path)
        load_time = best_of(lambda: onnx_import._load(onnx, onnx_import.Path(path), path), args.repeat)
        whole = best_of(lambda: onnx_import.from_onnx(path), args.repeat)
        importer = onnx_import._Importer(onnx, model, path, None, False)
        importer._check_initializers()
        value = importer._input()
        sample = importer._sample_shape(value)
        infer = best_of(lambda: importer._infer(value, sample), args.repeat)
        print(f"in process (each the best of {args.repeat}): from_onnx {whole * 1e3:.1f} ms; of it, reading and parsing "
              f"the file {load_time * 1e3:.1f} ms, one shape inference {infer * 1e3:.1f} ms")


if __name__ == "__main__":
    main()

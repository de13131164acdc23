"""Bad and hostile inputs found by trying the importers and exporters: each is one line, status 2."""

from __future__ import annotations

import sys

import pytest

import archcalc
from archcalc.cli import main
from archcalc.errors import SpecError


def _model(tmp_path, nodes, name="m.onnx", initializers=(), shape=(1, 3, 8, 8), out_shape=(1, 3, 8, 8)):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, list(out_shape))],
                              list(initializers))
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_an_onnx_value_written_twice_is_refused(tmp_path):
    from onnx import helper

    path = _model(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="r1"),
                             helper.make_node("Sigmoid", ["x"], ["y"], name="r2")])
    with pytest.raises(SpecError) as error:
        archcalc.from_onnx(path)
    assert str(error.value).endswith("node 'r2' (Sigmoid) writes 'y', which node 'r1' (Relu) writes too; an ONNX value "
                                     "is written once")


def test_weights_two_onnx_nodes_share_are_counted_per_layer_with_a_warning(tmp_path):
    import numpy as np
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), "w")
    path = _model(tmp_path, [helper.make_node("Conv", ["x", "w"], ["a"], name="c1"),
                             helper.make_node("Conv", ["a", "w"], ["b"], name="c2")], initializers=[weight])
    graph = archcalc.from_onnx(path)
    assert archcalc.analyze(graph).totals.params == 2 * 9  # each layer's own 3x3x1x1 weights
    assert any("initializer 'w' (9 values) is the weights of 2 nodes (c1, c2)" in w for w in graph.warnings)


def test_an_input_replacing_a_fixed_onnx_input_is_a_warning(tmp_path):
    from onnx import helper

    path = _model(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="r")])
    graph = archcalc.from_onnx(path, (3, 4, 4))
    assert graph.input_shape == (3, 4, 4)
    assert any("the given input (3, 4, 4) replaces the file's fixed input (3, 8, 8)" in w for w in graph.warnings)


@pytest.mark.parametrize("argv", [["export", "lenet5", "--to", "onnx", "-o", "/dev/null"],
                                  ["memory", "lenet5", "--plot", "/dev/null"]])
def test_binary_outputs_must_be_regular_files(argv, capsys):
    with pytest.raises(SystemExit) as status:
        main(argv)
    assert status.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'/dev/null' is not a regular file" in err


def test_an_im2col_overflow_is_refused_not_printed_as_inf(capsys):
    with pytest.raises(SystemExit) as status:
        main(["im2col", "--x", "1e308,1e308", "--w", "1e308"])
    assert status.value.code == 2
    assert capsys.readouterr().err == "error: im2col: y overflows a float64 (beyond 1.8e308) with these values; give smaller numbers\n"


def test_a_forward_calling_sys_exit_is_an_import_error(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    (tmp_path / "exiting.py").write_text(
        "import sys\nfrom torch import nn\n\nclass Exit(nn.Module):\n    def forward(self, x):\n        sys.exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "exiting", raising=False)
    with pytest.raises(SystemExit) as status:
        main(["report", "exiting:Exit", "--input", "3x8x8"])
    assert status.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SystemExit: 0" in err


def test_an_initializer_without_values_is_counted_from_its_shape_with_a_warning(tmp_path):
    from onnx import TensorProto, helper

    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 3, 1, 1])  # dims, no data
    path = _model(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], initializers=[weight],
                  out_shape=(1, 4, 8, 8))
    graph = archcalc.from_onnx(path)
    assert archcalc.analyze(graph).totals.params == 12
    assert any("initializer 'w' declares a shape but holds no values" in w for w in graph.warnings)

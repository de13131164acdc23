"""The importers' shared core: the Builder, the opaque pass-through, partial status, --input/--partial."""

from __future__ import annotations

import json

import pytest

import archcalc
from archcalc.cli import main
from archcalc.errors import SpecError
from archcalc.importers import source_kind
from archcalc.importers._builder import Builder, UnsupportedOpsError, parse_input_shape, valid_name


def _conv_relu(builder):
    conv = builder.add("conv", {"filters": 4, "kernel": 3, "padding": 1}, [builder.input], "layer1.0.conv1",
                       where="node 'Conv_0' (Conv)")
    return builder.add("relu", {}, [conv], "layer1.0.relu")


def test_builder_keeps_module_paths_and_checks_shapes_and_params():
    b = Builder("net", (3, 8, 8), "net.onnx")
    relu = _conv_relu(b)
    b.expect("layer1.0.conv1", shape=(4, 8, 8), params={"weight": (4, 3, 3, 3), "bias": (4,)})
    b.expect(relu, shape=(4, 8, 8))
    graph = b.build()
    assert [n.name for n in graph] == ["input", "layer1.0.conv1", "layer1.0.relu"]
    # 4 filters of 3x3x3 plus 4 biases, by hand
    assert archcalc.analyze(graph).totals.params == 4 * 27 + 4


@pytest.mark.parametrize(("expected", "message"), [
    ({"shape": (4, 6, 6)}, "'net.onnx': node 'Conv_0' (Conv) (archcalc layer 'layer1.0.conv1', conv): archcalc's output "
                           "shape (4, 8, 8) differs from the source's (4, 6, 6)"),
    ({"params": {"weight": (4, 3, 5, 5)}}, "'net.onnx': node 'Conv_0' (Conv) (archcalc layer 'layer1.0.conv1', conv): "
                                           "the source's weight is (4, 3, 5, 5), archcalc's rule gives (4, 3, 3, 3)"),
    ({"params": {"running_mean": (4,)}}, "'net.onnx': node 'Conv_0' (Conv) (archcalc layer 'layer1.0.conv1', conv): the "
                                         "source has a running_mean tensor (4,); archcalc's rule has none (it has: weight, bias)"),
])
def test_a_disagreement_with_the_source_names_the_layer(expected, message):
    b = Builder("net", (3, 8, 8), "net.onnx")
    _conv_relu(b)
    b.expect("layer1.0.conv1", **expected)
    with pytest.raises(SpecError) as error:
        b.build()
    assert str(error.value) == message


def test_spec_problems_are_located_in_the_source():
    b = Builder("net", (3, 8, 8), "net.onnx")
    b.add("conv", {"filters": 4, "kernel": 3, "stride": 0}, [b.input], "c", where="node 'Conv_7' (Conv)")
    with pytest.raises(SpecError, match=r"^spec 'net.onnx': node 'Conv_7' \(Conv\) \(name=\"c\", type=\"conv\"\): stride"):
        b.build()


def test_unsupported_ops_are_listed_with_counts_and_first_location():
    b = Builder("net", (3, 8, 8), "det.onnx")
    relu = _conv_relu(b)
    for index in range(4):
        b.unsupported("aten.roi_align", [relu], (4, 2, 2), f"heads.box.{index}")
    b.unsupported("NonMaxSuppression", [relu], None, "nms")
    with pytest.raises(UnsupportedOpsError) as error:
        b.build()
    assert str(error.value) == ("'det.onnx': unsupported: aten.roi_align x4 (first at heads.box.0), NonMaxSuppression x1 "
                                "(first at nms); --partial (partial=True) counts them as 0 and marks the report partial")


def test_partial_passes_ops_through_as_opaque_layers_counted_as_zero():
    b = Builder("net", (3, 8, 8), "det.onnx", partial=True)
    relu = _conv_relu(b)
    roi = b.unsupported("aten.roi_align", [relu], (4, 2, 2), "heads.box.0")
    b.add("flatten", {}, [roi], "flat")
    analysis = archcalc.analyze(b.build())
    assert analysis.status == "partial"
    assert [u.text() for u in analysis.uncounted] == ["aten.roi_align x1 (first at heads.box.0)"]
    row = analysis.layer("heads.box.0")
    assert (row.output_shape, row.params, row.macs) == ((4, 2, 2), 0, 0)
    assert row.receptive_field.is_global and not row.receptive_field.exact  # unknown: the whole input, an upper bound
    data = analysis.to_dict()
    assert data["status"] == "partial" and data["uncounted"] == [{"op": "aten.roi_align", "count": 1, "first": "heads.box.0"}]
    # said by every command that loads it (compare, memory --fit), not only the report's footer
    assert data["warnings"] == ["'det.onnx': partial import: aten.roi_align x1 passed through uncounted; every count is a "
                                "lower bound (and a largest batch that fits, an upper bound)"]
    assert archcalc.analyze("lenet5").to_dict()["status"] == "complete"


def test_partial_cannot_pass_an_op_of_unknown_shape():
    b = Builder("net", (3, 8, 8), "det.onnx", partial=True)
    relu = _conv_relu(b)
    assert b.unsupported("Loop", [relu], None, "loop_0") is None
    with pytest.raises(UnsupportedOpsError, match="Loop x1 .*the source does not give their output shape"):
        b.build()


def test_the_executor_refuses_a_partial_network(tmp_path):
    b = Builder("net", (3, 8, 8), "det.onnx", partial=True)
    b.unsupported("aten.roi_align", [_conv_relu(b)], (4, 2, 2), "heads.box.0")
    graph = b.build()
    with pytest.raises(archcalc.ArchcalcError, match="cannot run 1 layer.*'heads.box.0' \\(aten.roi_align"):
        archcalc.Executor(graph)
    spec = tmp_path / "partial.json"
    spec.write_text(graph.to_json())
    with pytest.raises(SystemExit) as status:
        main(["run", str(spec), "--steps", "1"])
    assert status.value.code == 2


def test_a_partial_report_says_so(tmp_path, capsys):
    b = Builder("net", (3, 8, 8), "det.onnx", partial=True)
    b.unsupported("aten.roi_align", [_conv_relu(b)], (4, 2, 2), "heads.box.0")
    spec = tmp_path / "partial.json"
    spec.write_text(b.build().to_json())
    main(["report", str(spec)])
    out = capsys.readouterr().out
    assert "Partial: 1 layer(s) of ops archcalc has no rule for are counted as 0" in out
    assert "aten.roi_align x1 (first at heads.box.0)" in out
    main(["report", str(spec), "--format", "json"])
    assert json.loads(capsys.readouterr().out)["status"] == "partial"


@pytest.mark.parametrize(("name", "valid"), [
    ("layer1.0.conv1", "layer1.0.conv1"), ("conv 1", "conv_1"), ("", "conv"), ("input", "input_"),
    ("a\x1bb", "a_b"), ("/features/0/Conv", "/features/0/Conv"), ("x" * 300, "x" * 128),
])
def test_source_names_become_valid_names(name, valid):
    assert valid_name(name, "conv") == valid


def test_names_are_made_unique():
    b = Builder("net", (3, 8, 8), "x")
    names = [b.add("relu", {}, [b.input], "relu") for _ in range(3)]
    assert names == ["relu", "relu_2", "relu_3"]


@pytest.mark.parametrize(("text", "shape"), [("3x224x224", (3, 224, 224)), ("3,32,32", (3, 32, 32)), (" 10 ", (10,))])
def test_input_shapes_parse(text, shape):
    assert parse_input_shape(text) == shape


@pytest.mark.parametrize("text", ["", "3xx2", "3x0x4", "-3x4", "3x4.5", "1x" * 70 + "1", "3x99999999999"])
def test_bad_input_shapes_are_refused(text):
    with pytest.raises(SpecError, match="--input"):
        parse_input_shape(text)


@pytest.mark.parametrize(("text", "kind"), [
    ("model.onnx", "onnx"), ("dir/deploy.prototxt", "caffe"), ("x.PBTXT", "caffe"), ("torchvision:resnet50", "torchvision"),
    ("mypkg.models:MyNet", "torch"), ("vgg16", None), ("net.json", None), ("C:/nets/x.json", None), ("a:b:c", None),
])
def test_model_arguments_go_to_their_importer(text, kind):
    assert source_kind(text) == kind


@pytest.mark.parametrize(("argv", "message"), [
    (["report", "lenet5", "--input", "3x32x32"], "error: an input shape applies to imported networks"),
    (["report", "lenet5", "--partial"], "error: partial applies to imported networks"),
    (["report", "missing.onnx"], "error: 'missing.onnx': no such file"),
    (["report", "--input", "3x", "torchvision:resnet18"], "error: --input '3x': give one sample's shape"),
    (["report", "archcalc.zoo:nothing", "--input", "3x8x8"], "error: archcalc.zoo:nothing: module 'archcalc.zoo' has no "
                                                            "attribute 'nothing'"),
    (["report", "no_such_module_x:Net", "--input", "3x8x8"], "error: no_such_module_x:Net: cannot import 'no_such_module_x'"),
    (["report", "archcalc.zoo:names", "--input", "3x8x8"], "error: archcalc.zoo:names: names() returned a list, not a "
                                                          "torch.nn.Module"),
    (["report", "archcalc.zoo:names"], "error: archcalc.zoo:names: give the input shape of one sample, e.g. --input 3x224x224"),
])
def test_import_options_errors(argv, message, capsys):
    if "names()" in message:
        pytest.importorskip("torch")
    with pytest.raises(SystemExit) as status:
        main(argv)
    assert status.value.code == 2
    assert capsys.readouterr().err.startswith(message)


def test_compare_applies_the_import_options_to_the_imported_models(capsys):
    with pytest.raises(SystemExit) as status:
        main(["compare", "resnet18", "lenet5", "--input", "3x224x224"])
    assert status.value.code == 2
    assert "none of the models is one" in capsys.readouterr().err

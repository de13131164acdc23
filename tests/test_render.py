"""Rendering: DOT text (pure, deterministic, escaped) and SVG from Graphviz's dot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import archcalc
from archcalc import zoo
from archcalc.errors import ArchcalcError, MissingToolError
from archcalc.render.dot import RANKDIRS, default_output, render, to_dot
from archcalc.render.format import si
from archcalc.report import fold

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt-get install graphviz)")
SVG = "{http://www.w3.org/2000/svg}"


def svg_groups(path, kind):
    """The <g class=kind> elements of an SVG file: node, edge or cluster."""
    root = ET.parse(path).getroot()
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == kind]


def texts(group):
    return [t.text or "" for t in group.iter(f"{SVG}text")]


@needs_dot
@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_model_renders_to_svg(name, tmp_path):
    path = render(name, tmp_path / f"{name}.svg", compact=False, wrap=0)
    analysis = archcalc.analyze(archcalc.load(name))
    nodes = svg_groups(path, "node")
    assert len(nodes) == len(analysis.layers)
    edges = svg_groups(path, "edge")
    assert len(edges) == sum(len(row.inputs) for row in analysis.layers)
    # every labelled figure is the analyzer's
    by_title = {n.find(f"{SVG}title").text: texts(n) for n in nodes}
    for index, row in enumerate(analysis.layers):
        lines = by_title[f"n{index}"]
        assert " ".join("x".join(map(str, row.output_shape)) for _ in [0]) in lines
        if row.params or row.macs:
            figures = [f"{si(v)} {w}" for v, w in ((row.params, "params"), (row.macs, "MACs")) if v]
            assert ", ".join(figures) in lines, (row.name, lines)


@needs_dot
@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_model_renders_by_default(name, tmp_path):
    """The default drawing (compact above 60 layers, wrapped when long) of every zoo model."""
    dot = to_dot(name)
    path = render(name, tmp_path / f"{name}.svg")
    assert len(svg_groups(path, "node")) == len(node_lines(dot))
    compact = len(archcalc.load(name)) - 1 > 60
    assert ('tooltip="' in dot) == compact
    width, height = svg_size(path)
    assert max(width, height) / min(width, height) < 3.5, (width, height)


@needs_dot
def test_clusters_and_folding(tmp_path):
    googlenet = render("googlenet", tmp_path / "g.svg", wrap=0)
    assert len(svg_groups(googlenet, "cluster")) == 9  # one per Inception module
    resnet = render("resnet50", tmp_path / "r.svg", wrap=0)
    assert len(svg_groups(resnet, "cluster")) == 4 + (3 + 4 + 6 + 3)  # stages, and the blocks in them
    folded = render("resnet50", tmp_path / "r0.svg", depth=1, compact=False)
    analysis = archcalc.analyze(archcalc.load("resnet50"))
    rows = fold(analysis.layers, 1)
    nodes = svg_groups(folded, "node")
    assert len(nodes) == len(rows) and not svg_groups(folded, "cluster")
    layer3 = next(texts(n) for n in nodes if "layer3" in texts(n))
    row = next(r for r in rows if r.name == "layer3")
    assert f"{si(row.params)} params, {si(row.macs)} MACs" in layer3
    in_layer3 = sum(1 for r in analysis.layers if r.scope[:1] == ("layer3",))
    assert in_layer3 == 12 + 5 * 10  # a projection block, then five identity bottlenecks
    assert f"block {in_layer3} layers: 0.conv1 .. 5.relu3" in layer3
    one = render("resnet50", tmp_path / "r1.svg", depth=2, compact=False, wrap=0)
    assert len(svg_groups(one, "node")) == len(fold(analysis.layers, 2))
    assert len(svg_groups(one, "cluster")) == 4


@needs_dot
def test_color_legend_and_title(tmp_path):
    path = render("inception-reduced", tmp_path / "i.svg", color="macs", rankdir="LR")
    analysis = archcalc.analyze(archcalc.load("inception-reduced"))
    nodes = svg_groups(path, "node")
    assert len(nodes) == len(analysis.layers) + 1  # the legend
    conv5 = next(texts(n) for n in nodes if "conv5x5" in texts(n))
    share = 100 * analysis.layer("conv5x5").macs / analysis.totals.macs
    assert f"{share:.1f}% of MACs" in conv5
    title = " ".join(t.text or "" for t in ET.parse(path).getroot().iter(f"{SVG}text") if t.get("font-size") == "16.00")
    assert "346,720 params" in title and "271.35M MACs" in title
    dot = to_dot("inception-reduced", color="macs")
    assert "#ef6548" in dot  # the largest share gets the full colour


def test_names_are_escaped(tmp_path):
    spec = {"name": "x<y>", "input": [1, 4, 4], "layers": [{"type": "relu", "name": '<b>"x"&'}]}
    dot = to_dot(spec)
    assert '<b>"x"&' not in dot and "&lt;b&gt;&quot;x&quot;&amp;" in dot
    if shutil.which("dot"):
        path = render(spec, tmp_path / "e.svg")
        root = ET.parse(path).getroot()
        assert not list(root.iter(f"{SVG}b"))
        assert any(t.text == '<b>"x"&' for t in root.iter(f"{SVG}text"))


def test_dot_is_deterministic_across_processes(tmp_path):
    first = to_dot("googlenet", depth=1, color="params")
    assert first == to_dot("googlenet", depth=1, color="params")
    code = "import sys, archcalc; sys.stdout.write(archcalc.to_dot('googlenet', depth=1, color='params'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"}).stdout
    assert other == first


def test_dot_output_needs_no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here
    path = render("lenet5", tmp_path / "l.dot")
    assert path.read_text().startswith('digraph "lenet5" {')
    with pytest.raises(MissingToolError, match="Graphviz's dot program is not on PATH, so wrote"):
        render("lenet5", tmp_path / "l2.svg")
    assert (tmp_path / "l2.dot").read_text() == to_dot("lenet5")
    assert not (tmp_path / "l2.svg").exists()


def test_cli_render(tmp_path):
    from click.testing import CliRunner

    from tests.helpers import _Main

    runner = CliRunner()
    result = runner.invoke(_Main(), ["render", "lenet5", "-o", str(tmp_path / "l.dot"), "--rankdir", "LR"])
    assert result.exit_code == 0 and (tmp_path / "l.dot").read_text() == to_dot("lenet5", rankdir="LR")
    result = runner.invoke(_Main(), ["render", "lenet5", "-o", str(tmp_path / "l.txt")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "archcalc", "render", "lenet5", "-o", str(tmp_path / "m.svg")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 3 and len(done.stderr.splitlines()) == 1 and "apt-get install graphviz" in done.stderr
    assert (tmp_path / "m.dot").exists()


def test_python_api_returns_the_path(tmp_path):
    assert archcalc.render("stack-3x3-2", tmp_path / "s.dot") == tmp_path / "s.dot"
    text = archcalc.to_dot("stack-3x3-2")
    assert (tmp_path / "s.dot").read_text(encoding="utf-8") == text  # the file holds exactly to_dot's text
    assert text.startswith('digraph "stack-3x3-2" {\n') and text.endswith("\n}\n")
    analysis = archcalc.analyze(archcalc.load("stack-3x3-2"))
    for index, row in enumerate(analysis.layers):
        assert f"  n{index} [label=<<B>{row.name}</B>" in text


# --- writing files only where asked ---------------------------------------------------------------


def _cli(*args):
    from click.testing import CliRunner

    from tests.helpers import _Main

    return CliRunner().invoke(_Main(), list(args))


@pytest.mark.parametrize(("output", "reason"), [
    ("/nonexistent/dir/x.svg", "No such file or directory"),
    ("/nonexistent/dir/x.dot", "No such file or directory"),
    ("/proc/x.dot", "No such file or directory"),
    ("/proc/x.svg", "No such file or directory"),
    ("/etc/passwd/x.dot", "Not a directory"),
])
def test_unwritable_output_is_one_error_line(output, reason):
    if output.endswith(".svg") and shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    result = _cli("render", "lenet5", "-o", output)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: output '{output}' cannot be written: {reason}\n"


def test_unwritable_output_from_the_api(tmp_path):
    (tmp_path / "d.dot").mkdir()
    with pytest.raises(ArchcalcError, match=r"^output '.*d\.dot' cannot be written: Is a directory$"):
        render("lenet5", tmp_path / "d.dot")


def test_permission_and_disk_errors_name_the_path(tmp_path, monkeypatch):
    """Whatever the OS refuses (root ignores file modes, so the refusals are simulated)."""
    import errno
    import pathlib

    for code in (errno.EACCES, errno.ENOSPC, errno.EROFS):
        def refuse(self, data, code=code):
            raise OSError(code, os.strerror(code), str(self))

        monkeypatch.setattr(pathlib.Path, "write_bytes", refuse)
        with pytest.raises(ArchcalcError) as raised:
            render("lenet5", tmp_path / "x.dot")
        assert str(raised.value) == f"output '{tmp_path / 'x.dot'}' cannot be written: {os.strerror(code)}"


@pytest.mark.parametrize(("name", "expected"), [
    ("vgg16", "vgg16.svg"),
    ("../escaped", "escaped.svg"),
    ("/etc/passwd", "etc_passwd.svg"),
    ("sub/dir/net", "sub_dir_net.svg"),
    ("..\\..\\win", "win.svg"),
    ("..", "graph.svg"),
    (".hidden", "hidden.svg"),
    ("...", "graph.svg"),
    ("", "graph.svg"),
    ("/", "graph.svg"),
    ("a\x1b[31mred\x07", "a_[31mred_.svg"),
    ("tab\tname\n", "tab_name_.svg"),
    ("nul", "_nul.svg"),
    ("x" * 300, "x" * 100 + ".svg"),
    ("résnet 50", "résnet 50.svg"),
    ("net.v2", "net.v2.svg"),
])
def test_default_output_is_a_safe_name_here(name, expected):
    assert default_output(name) == expected
    assert os.path.basename(expected) == expected and not expected.startswith(".")


@pytest.mark.parametrize("name", ["../escaped", "/tmp/absolute-name", "sub/dir/net"])
def test_cli_default_output_stays_in_the_current_directory(name, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    spec = work / "spec.json"
    spec.write_text(json.dumps({"name": name, "input": [1, 4, 4], "layers": [{"type": "relu"}]}))
    monkeypatch.setenv("PATH", str(tmp_path))  # no Graphviz: the .dot fallback is written, status 3
    result = _cli("render", str(spec))
    expected = default_output(name, "dot")
    assert result.exit_code == 3
    assert f"so wrote '{expected}' instead of '{default_output(name)}'" in result.stderr
    assert sorted(p.name for p in work.iterdir()) == sorted(["spec.json", expected])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


@pytest.fixture
def no_graphviz(monkeypatch):
    """Make Graphviz's dot look missing to the graphviz package."""
    import graphviz

    def missing(*args, **kwargs):
        raise graphviz.ExecutableNotFound(("dot",))

    monkeypatch.setattr(graphviz.Source, "pipe", missing)


def test_fallback_never_overwrites_a_dot_file(tmp_path, no_graphviz):
    existing = tmp_path / "m.dot"
    existing.write_text("mine")
    with pytest.raises(MissingToolError) as raised:
        render("lenet5", tmp_path / "m.svg")
    assert existing.read_text() == "mine"
    assert (tmp_path / "m-1.dot").read_text() == to_dot("lenet5")
    assert str(raised.value) == (
        f"Graphviz's dot program is not on PATH, so wrote '{tmp_path / 'm-1.dot'}' instead of '{tmp_path / 'm.svg'}' "
        f"('{existing}' exists and was left alone); install Graphviz (Debian/Ubuntu: apt-get install graphviz; "
        "macOS: brew install graphviz) or write -o model.dot"
    )
    with pytest.raises(MissingToolError, match="so wrote '.*m-2.dot'"):
        render("lenet5", tmp_path / "m.png")
    assert (tmp_path / "m-1.dot").read_text() == to_dot("lenet5")


def test_fallback_refuses_when_every_fresh_name_is_taken(tmp_path, no_graphviz, monkeypatch):
    monkeypatch.setattr(sys.modules["archcalc.render.dot"], "_FRESH_NAMES", 2)
    for name in ("m.dot", "m-1.dot", "m-2.dot"):
        (tmp_path / name).write_text(name)
    with pytest.raises(MissingToolError, match=r"'.*m\.dot' and 'm-2\.dot' already exist, so nothing was written"):
        render("lenet5", tmp_path / "m.svg")
    assert [(tmp_path / n).read_text() for n in ("m.dot", "m-1.dot", "m-2.dot")] == ["m.dot", "m-1.dot", "m-2.dot"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-1.dot", "m-2.dot", "m.dot"]


def test_fallback_that_cannot_write_says_so(no_graphviz):
    with pytest.raises(MissingToolError, match=r"^Graphviz's dot program is not on PATH, and the DOT source could not be "
                                               r"written to '/nonexistent/dir/x\.dot' either: No such file or directory; "):
        render("lenet5", "/nonexistent/dir/x.svg")


def test_cli_fallback_exit_status_and_message(tmp_path, no_graphviz):
    (tmp_path / "m.dot").write_text("mine")
    result = _cli("render", "lenet5", "-o", str(tmp_path / "m.svg"))
    assert result.exit_code == 3 and result.stderr.count("\n") == 1
    assert f"so wrote '{tmp_path / 'm-1.dot'}'" in result.stderr and "exists and was left alone" in result.stderr
    assert (tmp_path / "m.dot").read_text() == "mine"


# --- readable deep networks: compact chains, quiet chain edges, wrapped columns -------------------

BRANCHY = {"name": "t", "input": [3, 8, 8], "layers": [
    {"type": "conv", "name": "c1", "filters": 4, "kernel": 3, "padding": 1},
    {"type": "batchnorm", "name": "bn1"},
    {"type": "relu", "name": "r1"},
    {"type": "maxpool", "name": "p1", "kernel": 2},
    {"type": "conv", "name": "c2", "filters": 4, "kernel": 1},
    {"type": "relu", "name": "r2"},  # c2 also feeds s: stays a node of its own
    {"type": "conv", "name": "c3", "filters": 4, "kernel": 1},
    {"type": "add", "name": "s", "inputs": ["c3", "c2"]},
    {"type": "relu", "name": "r3"},
    {"type": "flatten", "name": "f"},
    {"type": "linear", "name": "fc", "units": 10},
    {"type": "softmax", "name": "sm"},
]}


def node_lines(dot):
    return [line.strip() for line in dot.splitlines() if " [label=<" in line]


def edge_lines(dot):
    return [line.strip() for line in dot.splitlines() if " -> " in line]


def test_compact_folds_pointwise_chains_into_their_producer():
    dot = to_dot(BRANCHY, compact=True, wrap=0)
    analysis = archcalc.analyze(archcalc.load(BRANCHY))
    c1 = sum(analysis.layer(name).params for name in ("c1", "bn1", "r1"))
    assert node_lines(dot) == [
        '''n0 [label=<<B>input</B><BR/><FONT POINT-SIZE="10">3x8x8</FONT>>];''',
        f'''n1 [label=<<B>c1</B><BR/>conv 3x3/1 p1, 4<BR/>+ batchnorm + relu<BR/><FONT POINT-SIZE="10">4x8x8</FONT><BR/>'''
        f'''<FONT POINT-SIZE="10">{c1} params, 6.9K MACs</FONT>>, tooltip="c1, bn1, r1"];''',
        '''n4 [label=<<B>p1</B><BR/>maxpool 2x2/2<BR/><FONT POINT-SIZE="10">4x4x4</FONT>>];''',
        '''n5 [label=<<B>c2</B><BR/>conv 1x1/1, 4<BR/><FONT POINT-SIZE="10">4x4x4</FONT><BR/>'''
        '''<FONT POINT-SIZE="10">20 params, 256 MACs</FONT>>];''',
        '''n6 [label=<<B>r2</B><BR/>relu<BR/><FONT POINT-SIZE="10">4x4x4</FONT>>];''',
        '''n7 [label=<<B>c3</B><BR/>conv 1x1/1, 4<BR/><FONT POINT-SIZE="10">4x4x4</FONT><BR/>'''
        '''<FONT POINT-SIZE="10">20 params, 256 MACs</FONT>>];''',
        # the merged node shows its last op's shape (flatten's)
        '''n8 [label=<<B>s</B><BR/>add<BR/>+ relu + flatten<BR/><FONT POINT-SIZE="10">64</FONT>>, tooltip="s, r3, f"];''',
        '''n11 [label=<<B>fc</B><BR/>linear 10<BR/>+ softmax<BR/><FONT POINT-SIZE="10">10</FONT><BR/>'''
        '''<FONT POINT-SIZE="10">650 params, 640 MACs</FONT>>, tooltip="fc, sm"];''',
    ]
    assert c1 == analysis.layer("c1").params + analysis.layer("bn1").params > analysis.layer("c1").params
    # chain edges carry no label (the node above prints the shape); a branch and a merge keep theirs
    assert edge_lines(dot) == [
        "n0 -> n1;", "n1 -> n4;", "n4 -> n5;", 'n5 -> n6 [label="4x4x4"];', "n6 -> n7;",
        'n7 -> n8 [label="4x4x4"];', 'n5 -> n8 [label="4x4x4"];', "n8 -> n11;",
    ]


def test_compact_colours_by_the_summed_share():
    dot = to_dot(BRANCHY, compact=True, color="params", wrap=0)
    analysis = archcalc.analyze(archcalc.load(BRANCHY))
    fc = analysis.layer("fc").params + analysis.layer("sm").params
    assert f"{100 * fc / analysis.totals.params:.1f}% of params" in dot
    fc_line = next(line for line in node_lines(dot) if 'tooltip="fc, sm"' in line)
    assert 'fillcolor="#ef6548"' in fc_line  # fc and softmax hold the most params
    assert [line for line in node_lines(dot) if "#ef6548" in line] == [fc_line]


def test_what_folds_comes_from_the_declared_window_not_the_type_name(monkeypatch):
    from archcalc.ops import GLOBAL, get_op

    spec = {"name": "w", "input": [3, 8, 8], "layers": [
        {"type": "conv", "name": "c", "filters": 4, "kernel": 3},
        {"type": "leaky_relu", "name": "a"},  # an activation by no name the renderer knows
        {"type": "lrn", "name": "n", "size": 3},  # point-wise too
        {"type": "avgpool", "name": "p", "kernel": 1},  # a 1x1 window is still a window
    ]}
    assert [line.split(" [")[0] for line in node_lines(to_dot(spec, compact=True))] == ["n0", "n1", "n4"]
    assert 'tooltip="c, a, n"' in to_dot(spec, compact=True)
    relu = type(get_op("leaky_relu"))
    monkeypatch.setattr(relu, "window", lambda self, layer: GLOBAL)
    assert 'tooltip="c, n"' not in to_dot(spec, compact=True)
    assert len(node_lines(to_dot(spec, compact=True))) == 4  # c | a + n | p, and the input
    assert 'tooltip="a, n"' in to_dot(spec, compact=True)


def test_compact_never_folds_across_a_block_boundary_or_into_the_input():
    spec = {"name": "b", "input": [3, 8, 8],
            "blocks": {"act": {"layers": [{"type": "relu", "name": "r"}, {"type": "conv", "name": "c", "filters": 2, "kernel": 1},
                                          {"type": "relu", "name": "r2"}]}},
            "layers": [{"type": "relu", "name": "first"},
                       {"type": "conv", "name": "stem", "filters": 3, "kernel": 1},
                       {"block": "act", "name": "blk"}]}
    dot = to_dot(spec, compact=True, wrap=0)
    names = [line.split("<B>")[1].split("</B>")[0] for line in node_lines(dot)]
    assert names == ["input", "first", "stem", "r", "c"]  # blk.r stays (another cluster); r2 joins c inside it
    assert 'tooltip="blk.c, blk.r2"' in dot


def test_compact_is_the_default_above_60_layers():
    def chain(layers):
        return {"name": "c", "input": [3, 8, 8],
                "layers": [{"type": "conv", "filters": 3, "kernel": 1}] + [{"type": "relu"}] * (layers - 1)}

    assert len(node_lines(to_dot(chain(60)))) == 61  # every layer, and the input
    assert len(node_lines(to_dot(chain(61)))) == 2  # the conv holding 60 ReLUs
    assert len(node_lines(to_dot(chain(61), compact=False))) == 62
    assert len(node_lines(to_dot(chain(10), compact=True))) == 2


def test_compact_resnet_block_is_four_nodes():
    dot = to_dot("resnet50", wrap=0)
    assert len(node_lines(dot)) == 3 + 16 * 4 + 4 + 2  # stem, 16 bottlenecks, 4 projections, pool and fc
    analysis = archcalc.analyze(archcalc.load("resnet50"))
    conv1 = sum(analysis.layer(f"layer1.0.{n}").params for n in ("conv1", "bn1", "relu1"))
    line = next(line for line in node_lines(dot) if 'tooltip="layer1.0.conv1, layer1.0.bn1, layer1.0.relu1"' in line)
    assert "conv 1x1/1, 64<BR/>+ batchnorm + relu<BR/>" in line and f"{si(conv1)} params" in line


def test_edge_labels_stay_where_the_shape_is_news():
    dot = to_dot("lenet5", compact=False, wrap=0)
    assert all("label" not in line for line in edge_lines(dot))  # a plain chain: every shape is in the node above
    folded = to_dot("googlenet", depth=1, compact=False, wrap=0)
    assert all("label" not in line for line in edge_lines(folded))  # a module prints its output's (concat's) shape
    unfolded = to_dot("googlenet", compact=False, wrap=0)
    assert [line for line in edge_lines(unfolded) if line.startswith("n10 -> ")] == [  # pool2 feeds four branches
        f'n10 -> n{b} [label="192x28x28"];' for b in (11, 13, 17, 21)]
    branches = to_dot("inception-reduced", wrap=0)
    assert edge_lines(branches) == [  # the split and the concat say what flows; within a branch the node does
        'n0 -> n1 [label="256x28x28"];', 'n0 -> n2 [label="256x28x28"];', "n2 -> n3;", 'n0 -> n4 [label="256x28x28"];',
        "n4 -> n5;", 'n0 -> n6 [label="256x28x28"];', "n6 -> n7;", 'n1 -> n8 [label="128x28x28"];',
        'n3 -> n8 [label="192x28x28"];', 'n5 -> n8 [label="96x28x28"];', 'n7 -> n8 [label="64x28x28"];']


def chain(layers):
    return {"name": "chain", "input": [3, 8, 8], "layers": [{"type": "relu"}] * layers}


def test_wrap_cuts_a_chain_into_columns_of_at_most_n_ranks():
    dot = to_dot(chain(20), compact=False, wrap=5)  # 21 nodes: levels 0..20
    assert "  {rank=same; n0; n5; n10; n15; n20;}\n" in dot
    assert [line for line in edge_lines(dot) if "invis" in line] == [
        "n0 -> n5 [style=invis];", "n5 -> n10 [style=invis];", "n10 -> n15 [style=invis];", "n15 -> n20 [style=invis];"]
    assert [line for line in edge_lines(dot) if "constraint=false" in line] == [
        "n4 -> n5 [constraint=false];", "n9 -> n10 [constraint=false];", "n14 -> n15 [constraint=false];",
        "n19 -> n20 [constraint=false];"]
    assert "n3 -> n4;" in dot
    for never in (to_dot(chain(20), compact=False, wrap=0), to_dot(chain(3), compact=False),
                  to_dot(chain(20), compact=False, wrap=21), to_dot(chain(20), compact=False, wrap=10**400)):
        assert "rank=same" not in never and "invis" not in never and "constraint" not in never


def test_wrap_keeps_blocks_whole_and_unframes_only_an_outer_block_it_must_cut():
    stages = to_dot("resnet50", wrap=30)  # the longest stage (layer3) is 24 ranks: every stage stays framed
    assert all(f'"cluster_layer{i}"' in stages for i in range(1, 5)) and "rank=same" in stages
    blocks = to_dot("resnet50", wrap=4)  # a bottleneck is 4 ranks: the stages are cut between blocks
    assert not any(f'"cluster_layer{i}"' in blocks for i in range(1, 5))
    assert all(f'"cluster_layer3.{b}"' in blocks for b in range(6))
    ranks = blocks.split("{rank=same; ")[1].split("}")[0]
    assert "n0;" in ranks and ranks.count(";") > 16
    # a block longer than the limit is never cut through
    spec = {"name": "b", "input": [3, 8, 8], "blocks": {"four": {"layers": [{"type": "relu"}] * 4}},
            "layers": [{"block": "four", "name": "x", "repeat": 3}]}
    dot = to_dot(spec, compact=False, wrap=2)
    assert "  {rank=same; n0; n1; n5; n9;}\n" in dot  # input, then one column per instance


@pytest.mark.parametrize("rankdir", RANKDIRS)
def test_default_wrap_only_for_long_drawings(rankdir):
    assert "rank=same" not in to_dot("stack-3x3-2", rankdir=rankdir)
    assert "rank=same" in to_dot("vgg16", rankdir=rankdir)
    assert "rank=same" not in to_dot("vgg16", rankdir=rankdir, wrap=0)


@pytest.mark.parametrize("bad", [-1, True, 2.5, "3"])
def test_bad_wrap_is_refused(bad):
    with pytest.raises(ArchcalcError, match=r"^wrap must be a count of ranks per column, 0 for never, got "):
        to_dot("lenet5", wrap=bad)


def test_compact_and_wrapped_dot_is_deterministic_across_processes():
    first = to_dot("resnet50", rankdir="LR", color="macs")
    assert "rank=same" in first and "tooltip=" in first
    code = "import sys, archcalc; sys.stdout.write(archcalc.to_dot('resnet50', rankdir='LR', color='macs'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "7"}).stdout
    assert other == first


def svg_size(path):
    root = ET.parse(path).getroot()
    return float(root.get("width").removesuffix("pt")), float(root.get("height").removesuffix("pt"))


@needs_dot
def test_default_render_of_a_deep_network_is_compact_and_readable(tmp_path):
    path = render("resnet50", tmp_path / "r.svg")
    nodes = svg_groups(path, "node")
    assert len(nodes) == 3 + 16 * 4 + 4 + 2
    width, height = svg_size(path)
    assert max(width, height) / min(width, height) < 2.5 and height < 4000  # the full drawing: 690 x 15934 pt
    analysis = archcalc.analyze(archcalc.load("resnet50"))
    add = next(texts(n) for n in nodes if n.find(f"{SVG}title").text == next(
        f"n{i}" for i, row in enumerate(analysis.layers) if row.name == "layer4.2.add"))
    assert add == ["add", "+ relu", "2048x7x7"]
    wide = render("resnet50", tmp_path / "lr.svg", rankdir="LR")
    width, height = svg_size(wide)
    assert width / height < 2.5  # the full drawing: 31324 x 247 pt


def test_cli_compact_and_wrap_options(tmp_path):
    out = tmp_path / "v.dot"
    result = _cli("render", "vgg16", "-o", str(out), "--compact", "--wrap", "0")
    assert result.exit_code == 0 and out.read_text() == to_dot("vgg16", compact=True, wrap=0)
    result = _cli("render", "resnet50", "-o", str(out), "--no-compact", "--wrap", "6")
    assert result.exit_code == 0 and out.read_text() == to_dot("resnet50", compact=False, wrap=6)
    result = _cli("render", "resnet50", "-o", str(out), "--wrap", "-1")
    assert result.exit_code == 2 and "-1 is not in the range x>=0" in result.stderr
    help_text = _cli("render", "--help").output
    assert "on for networks over 60 layers" in " ".join(help_text.split())


@pytest.fixture
def dot_fails_on_wrapped_columns(monkeypatch):
    """Graphviz's dot failing as 2.43 does on some wrapped cluster layouts (resnet50 --wrap 7)."""
    import graphviz

    real_pipe = graphviz.Source.pipe

    def pipe(self, *args, **kwargs):
        if "rank=same" in self.source:
            raise graphviz.CalledProcessError(1, ["dot"], output=b"", stderr=b"\t%0 14\nError: trouble in init_rank\n")
        return real_pipe(self, *args, **kwargs)

    monkeypatch.setattr(graphviz.Source, "pipe", pipe)


@needs_dot
def test_wrapped_columns_dot_cannot_place_fall_back_to_one_column(tmp_path, dot_fails_on_wrapped_columns):
    with pytest.warns(UserWarning, match=r"Graphviz's dot could not place the wrapped columns \(Error: trouble in "
                                         r"init_rank\), so the graph is drawn in one column \(--wrap 0\)"):
        path = render("vgg16", tmp_path / "v.svg")
    assert len(svg_groups(path, "node")) == len(archcalc.analyze(archcalc.load("vgg16")).layers)
    result = _cli("render", "vgg16", "-o", str(tmp_path / "c.svg"))
    assert result.exit_code == 0 and result.stdout == f"wrote {tmp_path / 'c.svg'}\n"
    assert result.stderr.startswith(f"note: output '{tmp_path / 'c.svg'}': Graphviz's dot could not place")


def test_dot_failure_is_one_error_line(tmp_path, monkeypatch):
    import graphviz

    def pipe(self, *args, **kwargs):
        raise graphviz.CalledProcessError(1, ["dot"], output=b"", stderr=b"Warning: x\nError: out of memory\n")

    monkeypatch.setattr(graphviz.Source, "pipe", pipe)
    for wrap in (0, None):  # unwrapped: nothing to retry; wrapped: the retry fails too
        with pytest.raises(ArchcalcError) as raised:
            render("vgg16", tmp_path / "v.svg", wrap=wrap)
        assert str(raised.value) == (f"output '{tmp_path / 'v.svg'}': Graphviz's dot failed: Error: out of memory; "
                                     "try another --wrap, --depth or the .dot output")
    assert not (tmp_path / "v.svg").exists()


def test_a_drawing_too_big_for_graphviz_is_refused_but_its_dot_is_written(tmp_path):
    from archcalc.render.dot import MAX_DRAWN_NODES

    # conv + add pairs keep the compact drawing from merging them: one box per layer
    spec = {"name": "long", "input": [2, 4, 4], "blocks": {"unit": {"args": {}, "layers": [
        {"type": "conv", "name": "c", "filters": 2, "kernel": 1}, {"type": "add", "inputs": ["input", "c"]}]}},
        "layers": [{"block": "unit", "name": "u", "repeat": MAX_DRAWN_NODES // 2 + 1}]}
    with pytest.raises(ArchcalcError, match=r"boxes to draw, more than Graphviz lays out in reasonable time .*--depth 1"):
        render(spec, tmp_path / "long.svg")
    assert not (tmp_path / "long.svg").exists()
    assert render(spec, tmp_path / "long.dot").read_text().count("[label=<") > MAX_DRAWN_NODES

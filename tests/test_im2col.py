"""The worked im2col example (archcalc.explain_im2col, `archcalc im2col`): the lecture's slide by
hand, random 1D/2D cases against the executor and PyTorch, the printed text and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import archcalc
from archcalc import kernels
from archcalc.errors import ArchcalcError
from archcalc.execute import Executor
from archcalc.im2col import MAX_VALUES, explain_im2col, parse_sizes, parse_values

# ------------------------------------------------------------------------------ the lecture's slide

def test_the_lectures_example_by_hand() -> None:
    # CS5242 lecture 6, "Implementation (fwd)": x = 1 0 2 2 3 1, w = 3 2 1, s = 2
    e = explain_im2col([1, 0, 2, 2, 3, 1], [3, 2, 1], stride=2)
    # o = (6 - 3) / 2 + 1 = 2 windows; x_hat[i, t] = x[t*2 + i]
    assert e.x_hat.tolist() == [[1, 2],   # x[0], x[2]
                                [0, 2],   # x[1], x[3]
                                [2, 3]]   # x[2], x[4]
    assert e.source.tolist() == [[0, 2], [1, 3], [2, 4]]
    assert e.y.tolist() == [3 * 1 + 2 * 0 + 1 * 2, 3 * 2 + 2 * 2 + 1 * 3] == [5, 13]
    # backward with dL/dy = [1, 1]: dL/dX_hat = W^T dL/dy, one row per tap
    assert e.dy.tolist() == [1, 1]
    assert e.dx_hat.tolist() == [[3, 3], [2, 2], [1, 1]]
    # dL/dW = dL/dy X_hat^T = [1*1 + 1*2, 1*0 + 1*2, 1*2 + 1*3]
    assert e.dw.tolist() == [3, 2, 5]
    # col2im: x[2] is read by both windows (tap 2 of y[0], tap 0 of y[1]): 1*1 + 3*1; x[5] by none
    assert e.dx.tolist() == [3, 2, 1 + 3, 2, 1, 0]
    x2 = e.contributions[2]
    assert [(c.output, c.tap, c.weight, c.grad) for c in x2] == [((0,), (2,), 1, 1), ((1,), (0,), 3, 1)]
    assert e.contributions[5] == ()
    assert e.out_shape == (2,)


def test_the_lectures_example_with_a_given_gradient() -> None:
    # dL/dy = [2, -1]: dL/dx[j] = sum over windows t reading x[j] at tap i of w[i] * dL/dy[t]
    e = explain_im2col([1, 0, 2, 2, 3, 1], [3, 2, 1], stride=2, dy=[2, -1])
    assert e.dx_hat.tolist() == [[6, -3], [4, -2], [2, -1]]
    assert e.dx.tolist() == [6, 4, 2 + (-3), -2, -1, 0]
    assert e.dw.tolist() == [2 * 1 - 1 * 2, 2 * 0 - 1 * 2, 2 * 2 - 1 * 3]


def test_padding_and_dilation_by_hand() -> None:
    # x = [1, 2, 3], w = [1, 10], padding 1, dilation 2: windows read (x[t-1], x[t+1]) for t = 0..2
    e = explain_im2col([1, 2, 3], [1, 10], padding=1, dilation=2)
    assert e.source.tolist() == [[-1, 0, 1], [1, 2, -1]]
    assert e.x_hat.tolist() == [[0, 1, 2], [2, 3, 0]]
    assert e.y.tolist() == [0 + 10 * 2, 1 + 10 * 3, 2 + 0]
    # dL/dy = ones: x[0] <- w[0] from y[1]; x[1] <- w[1] from y[0] and w[0] from y[2]; x[2] <- w[1] from y[1]
    assert e.dx.tolist() == [1, 10 + 1, 10]


def test_2d_by_hand() -> None:
    # 3x3 input, 2x2 kernel, stride 1: four windows; x[1,1] is read by all four, at a different tap each
    e = explain_im2col([[1, 2, 3], [4, 5, 6], [7, 8, 9]], [[1, 2], [3, 4]])
    assert e.out_shape == (2, 2)
    assert e.y.tolist() == [[1 + 4 + 12 + 20, 2 + 6 + 15 + 24], [4 + 10 + 21 + 32, 5 + 12 + 24 + 36]]
    assert e.dx.tolist() == [[1, 1 + 2, 2], [1 + 3, 1 + 2 + 3 + 4, 2 + 4], [3, 3 + 4, 4]]
    centre = e.contributions[4]  # x[1,1]
    assert sorted((c.output, c.tap) for c in centre) == [((0, 0), (1, 1)), ((0, 1), (1, 0)), ((1, 0), (0, 1)), ((1, 1), (0, 0))]


def test_exported_and_frozen() -> None:
    e = archcalc.explain_im2col([1, 0, 2, 2, 3, 1], [3, 2, 1], stride=2)
    with pytest.raises(ValueError):
        e.x_hat[0, 0] = 9  # read-only arrays
    with pytest.raises(AttributeError):
        e.y = None  # type: ignore[misc]


# ------------------------------------------------------------------------------ random cases

def _cases() -> list[tuple]:
    """Seeded random geometries, 1D and 2D: (x, w, stride, padding, dilation, dy)."""
    rng = np.random.default_rng(17)
    cases = []
    for rank, _ in itertools.product((1, 2), range(8)):
        while True:
            size = tuple(int(v) for v in rng.integers(1, 9, rank))
            kernel = tuple(int(v) for v in rng.integers(1, 4, rank))
            stride = tuple(int(v) for v in rng.integers(1, 4, rank))
            padding = tuple(int(v) for v in rng.integers(0, 3, rank))
            dilation = tuple(int(v) for v in rng.integers(1, 3, rank))
            if all(d * (k - 1) + 1 <= n + 2 * p for n, k, p, d in zip(size, kernel, padding, dilation)):
                break
        out = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in zip(size, kernel, stride, padding, dilation))
        cases.append((rng.standard_normal(size), rng.standard_normal(kernel), stride, padding, dilation, rng.standard_normal(out)))
    return cases


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].ndim}d-x{c[0].shape}-k{c[1].shape}-s{c[2]}-p{c[3]}-d{c[4]}")
def test_random_cases_against_torch(case: tuple) -> None:
    torch = pytest.importorskip("torch")
    x, w, stride, padding, dilation, dy = case
    e = explain_im2col(x, w, stride=stride, padding=padding, dilation=dilation, dy=dy)
    conv = torch.nn.functional.conv1d if x.ndim == 1 else torch.nn.functional.conv2d
    tx = torch.tensor(x[None, None], requires_grad=True)
    tw = torch.tensor(w[None, None], requires_grad=True)
    ty = conv(tx, tw, stride=stride, padding=padding, dilation=dilation)
    ty.backward(torch.tensor(dy[None, None]))
    np.testing.assert_allclose(e.y, ty.detach().numpy()[0, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(e.dx, tx.grad.numpy()[0, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(e.dw, tw.grad.numpy()[0, 0], rtol=1e-12, atol=1e-12)
    # torch's unfold is im2col: the same matrix, row = tap, column = output position
    if x.ndim == 2:
        cols = torch.nn.functional.unfold(torch.tensor(x[None, None]), w.shape, dilation=dilation, padding=padding, stride=stride)
        np.testing.assert_array_equal(e.x_hat, cols.numpy()[0])


@pytest.mark.parametrize("case", CASES[::3], ids=lambda c: f"{c[0].ndim}d-x{c[0].shape}-k{c[1].shape}")
def test_random_cases_against_the_executor(case: tuple) -> None:
    x, w, stride, padding, dilation, dy = case
    e = explain_im2col(x, w, stride=stride, padding=padding, dilation=dilation, dy=dy)
    spec = {"name": "one-conv", "input": [1, *x.shape],
            "layers": [{"name": "conv", "type": "conv", "filters": 1, "kernel": list(w.shape), "stride": list(stride),
                        "padding": list(padding), "dilation": list(dilation), "bias": False}]}
    ex = Executor(spec, seed=0, dtype="float64")
    ex.params["conv.weight"][...] = w[None, None]
    np.testing.assert_allclose(ex.forward(x[None, None])[0, 0], e.y, rtol=1e-12, atol=1e-12)
    grads = ex.backward(dy[None, None])
    np.testing.assert_allclose(ex.input_grad[0, 0], e.dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads["conv.weight"][0, 0], e.dw, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].ndim}d-x{c[0].shape}-k{c[1].shape}")
def test_the_parts_add_up(case: tuple) -> None:
    x, w, stride, padding, dilation, dy = case
    e = explain_im2col(x, w, stride=stride, padding=padding, dilation=dilation, dy=dy)
    # y = W X_hat; dL/dX_hat = W^T dL/dy; every X_hat entry is the input it names (or a padding 0)
    np.testing.assert_allclose(w.ravel() @ e.x_hat, e.y.ravel(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.outer(w.ravel(), dy.ravel()), e.dx_hat, rtol=1e-15)
    np.testing.assert_array_equal(e.x_hat, np.where(e.source >= 0, x.ravel()[e.source], 0))
    # col2im's sum is the sum of the listed contributions, each an entry of dL/dX_hat
    for flat, terms in enumerate(e.contributions):
        np.testing.assert_allclose(sum(c.value for c in terms), e.dx.ravel()[flat], rtol=1e-12, atol=1e-12)
        assert len(terms) == int((e.source == flat).sum())


@pytest.mark.skipif(kernels.BACKEND != "c", reason="the C extension is not built")
def test_both_backends_agree() -> None:
    x, w, stride, padding, dilation, dy = CASES[-1]
    with kernels.backend("numpy"):
        slow = explain_im2col(x, w, stride=stride, padding=padding, dilation=dilation, dy=dy)
    fast = explain_im2col(x, w, stride=stride, padding=padding, dilation=dilation, dy=dy)
    for name in ("x_hat", "y", "dx", "dw", "dx_hat"):
        np.testing.assert_allclose(getattr(fast, name), getattr(slow, name), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(fast.source, slow.source)


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"x": [[1, 2], [3]], "w": [1]}, "im2col: x's rows must all have the same length"),
    ({"x": ["a", 1], "w": [1]}, "im2col: x must hold numbers, got 'a'"),
    ({"x": [True, 1], "w": [1]}, "im2col: x must hold numbers, got True"),
    ({"x": [1, float("nan")], "w": [1]}, "im2col: x must hold finite numbers, got nan"),
    ({"x": [1, 2], "w": [float("inf")]}, "im2col: w must hold finite numbers, got inf"),
    ({"x": [], "w": [1]}, "im2col: x must hold at least one value, got shape (0,)"),
    ({"x": [[[1]]], "w": [[[1]]]}, "im2col: x must be 1D (a list) or 2D (a list of equal rows), got 3 axes"),
    ({"x": 5, "w": [1]}, "im2col: x must be 1D (a list) or 2D (a list of equal rows), got 0 axes"),
    ({"x": [1, 2], "w": [[1]]}, "im2col: w must have as many axes as x (1D), got 2D"),
    ({"x": [1, 2], "w": [1, 2, 3]}, "im2col: kernel 3 exceeds the padded input 2 + 0 + 0 = 2"),
    ({"x": [1, 2], "w": [1, 2], "dilation": 2}, "im2col: kernel 2 at dilation 2 (span 3) exceeds the padded input 2 + 0 + 0 = 2"),
    ({"x": [1, 2], "w": [1], "stride": 0}, "im2col: stride must be positive, got (0,)"),
    ({"x": [1, 2], "w": [1], "padding": -1}, "im2col: padding"),
    ({"x": [1, 2], "w": [1], "dy": [1]}, "im2col: dy must have the output's shape [2], got [1]"),
    ({"x": list(range(MAX_VALUES + 1)), "w": [1]}, "im2col: x has 10,001 values; a worked example takes at most 10,000"),
    ({"x": [1, 2], "w": [1], "padding": 10**9}, "im2col: X_hat would hold 1 x 2,000,000,002 values"),
    ({"x": list(range(200)), "w": list(range(100))}, "im2col: X_hat would hold 100 x 101 values"),
])
def test_bad_input_is_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ArchcalcError) as caught:
        explain_im2col(**kwargs)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_parse_values() -> None:
    assert parse_values("1,0,2", "--x") == [1, 0, 2]
    assert parse_values(" 1 , 2 ; 3,4 ", "--x") == [[1, 2], [3, 4]]
    assert parse_values("-1.5,2e3", "--x") == [-1.5, 2000]
    assert parse_values("1,0,-1;", "--w") == [[1, 0, -1]]  # one row, 2D
    assert parse_values("1;2;", "--w") == [[1], [2]]
    assert parse_sizes("2", "--stride") == 2
    assert parse_sizes("2,1", "--stride") == (2, 1)
    assert parse_sizes("same", "--padding", ("same", "valid")) == "same"


# ------------------------------------------------------------------------------ the command

def test_cli_prints_the_lectures_example(capsys: pytest.CaptureFixture[str]) -> None:
    from archcalc.cli import main

    main(["im2col", "--x", "1,0,2,2,3,1", "--w", "3,2,1", "--stride", "2"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1] == "  output positions: floor((6 + 0 + 0 - 1*(3-1) - 1) / 2) + 1 = 2"
    assert "          y[0]    y[1]" in lines
    assert "  w[0]  x[0]=1  x[2]=2" in lines
    assert "  w[2]  x[2]=2  x[4]=3" in lines
    assert "y = W X_hat = [5, 13]" in lines
    assert "  y[0] = 3*1 + 2*0 + 1*2 = 5" in lines
    assert "  y[1] = 3*2 + 2*2 + 1*3 = 13" in lines
    assert "dL/dW = dL/dy X_hat^T = [3, 2, 5]" in lines
    assert "  x[2] = 1*1 from y[0] + 3*1 from y[1] = 4" in lines
    assert "  x[5] = 0 (no window reads it)" in lines
    assert lines[-1] == "dL/dx = [3, 2, 4, 2, 1, 0]"


def test_cli_2d_with_padding_and_dy(capsys: pytest.CaptureFixture[str]) -> None:
    from archcalc.cli import main

    main(["im2col", "--x", "1,2,3;4,5,6;7,8,9", "--w", "1,0;0,-1", "--padding", "1", "--stride", "2", "--dy", "1,0.5;2,-1"])
    lines = capsys.readouterr().out.splitlines()
    assert "  w[0,0]     pad=0     pad=0     pad=0  x[1,1]=5" in lines
    assert "y = W X_hat = [[-1, -3], [-7, -4]]" in lines
    assert "  y[0,0] = 1*0 + 0*0 + 0*0 + (-1)*1 = -1" in lines
    assert "  x[2,2] = (-1)*(-1) from y[1,1] = 1" in lines


@pytest.mark.parametrize(("args", "message"), [
    (["--x", "1,2,a", "--w", "1"], "error: im2col: --x value 3 must be a number, got 'a'"),
    (["--x", "1,2;3", "--w", "1"], "error: im2col: --x's rows must have equal lengths, got rows of 2, 1 values"),
    (["--x", "1,,2", "--w", "1"], "error: im2col: --x value 2 is empty in '1,,2'; write numbers separated by ',' (rows by ';')"),
    (["--x", "1;2,", "--w", "1"], "error: im2col: --x row 2 value 2 is empty"),
    (["--x", "1;;", "--w", "1"], "error: im2col: --x row 2 value 1 is empty"),
    (["--x", ";", "--w", "1"], "error: im2col: --x value 1 is empty"),
    (["--x", "1e400", "--w", "1"], "error: im2col: --x value 1 must be a finite number, got '1e400'"),
    (["--x", "1,2", "--w", "1,2,3"], "error: im2col: kernel 3 exceeds the padded input 2 + 0 + 0 = 2"),
    (["--x", "1,2", "--w", "1", "--stride", "x"], "error: im2col: --stride must be a whole number, or one per axis"),
    (["--x", "1,2", "--w", "1", "--padding", "-1"], "error: im2col: --padding must be a whole number, or one per axis"),
    (["--x", "1,2", "--w", "1", "--padding", "9" * 40], "error: im2col: --padding must be a whole number"),
    (["--x", "1,2", "--w", "1", "--dilation", "1,1"], "error: im2col: dilation has 2 values for 1 spatial axes, got [1, 1]"),
    (["--x", "1,2", "--w", "1", "--dy", "1"], "error: im2col: dy must have the output's shape [2], got [1]"),
    (["--x", ",".join(["1"] * (MAX_VALUES + 1)), "--w", "1"], "error: im2col: --x has more than 10,000 values"),
    (["--x", "1" * 300_000, "--w", "1"], "error: im2col: --x is 300,000 characters long"),
    (["--x", "1,2", "--w", "1", "--padding", "100000"], "error: im2col: X_hat would hold 1 x 200,002 values"),
])
def test_cli_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from archcalc.cli import main

    with pytest.raises(SystemExit) as status:
        main(["im2col", *args])
    assert status.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1


def test_the_readme_example_is_the_real_output(capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from archcalc.cli import main

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("$ archcalc im2col --x 1,0,2,2,3,1 --w 3,2,1 --stride 2\n", 1)[1].split("```", 1)[0]
    main(["im2col", "--x", "1,0,2,2,3,1", "--w", "3,2,1", "--stride", "2"])
    out = capsys.readouterr().out
    for line in block.splitlines():
        if line and line != "...":
            assert line.removesuffix(" ...").rstrip(":") in out, line


def test_per_side_padding(capsys: pytest.CaptureFixture[str]) -> None:
    from archcalc.cli import main

    # padded [0 | 1, 2, 3 | 0, 0]: windows of 2 sum neighbours
    e = explain_im2col([1, 2, 3], [1, 1], padding=(1, 2))
    assert e.y.tolist() == [0 + 1, 1 + 2, 2 + 3, 3 + 0, 0 + 0]
    assert e.dx.tolist() == [2, 2, 2]
    main(["im2col", "--x", "1,2;3,4", "--w", "1,1;1,1", "--padding", "1,0,0,1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "im2col, 2D: x (2 x 2), w (2 x 2), stride 1, padding (1, 0) and (0, 1) (before, after per axis), dilation 1"
    # padded rows [0, 0, 0], [1, 2, 0], [3, 4, 0]: each output sums one 2x2 window
    assert "y = W X_hat = [[3, 2], [10, 6]]" in lines


_VALUES = ["1,0,2,2,3,1", "3,2,1", "1", "1,2;3,4", "1,2;3", "", ";", "1,,2", "a", "nan", "1e400", "-1.5,2e3",
           "9" * 400, ",".join(["1"] * 10_001), "1,2,3;4,5,6;7,8,9"]
_SIZES = ["1", "2", "0", "-1", "2,1", "1,2,3,4,5", "same", "valid", "x", "", "9" * 40, "10" + "0" * 20, "100000"]


def test_any_im2col_command_line_exits_0_or_2(tmp_path) -> None:
    """Random (bounded, derandomised) option values: one error line and status 2, or the example."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from archcalc.cli import main

    @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(x=st.sampled_from(_VALUES), w=st.sampled_from(_VALUES), options=st.lists(
        st.tuples(st.sampled_from(["--stride", "--padding", "--dilation", "--dy"]), st.sampled_from(_SIZES + _VALUES[:6])),
        max_size=3))
    def check(x: str, w: str, options: list[tuple[str, str]]) -> None:
        import contextlib
        import io

        argv = ["im2col", "--x", x, "--w", w, *[item for pair in options for item in pair]]
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as status:
                code = status.code or 0
        where = f"archcalc {' '.join(a[:40] for a in argv)}"
        assert code in (0, 2), f"{where}: status {code}\n{err.getvalue()}"
        if code == 0:
            assert out.getvalue().startswith("im2col, "), where
        else:
            lines = err.getvalue().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), f"{where}:\n{err.getvalue()}"

    check()


def test_three_paths_at_stride_1() -> None:
    # the slide's "x contributes to L via three paths": at stride 1 a middle input is read by three windows
    e = explain_im2col([1, 0, 2, 2, 3, 1], [3, 2, 1], dy=[1, 10, 100, 1000])
    assert e.y.tolist() == [3 + 0 + 2, 0 + 4 + 2, 6 + 4 + 3, 6 + 6 + 1]
    assert [(c.output, c.weight, c.grad) for c in e.contributions[2]] == [((0,), 1, 1), ((1,), 2, 10), ((2,), 3, 100)]
    assert e.dx.tolist() == [3, 2 + 30, 1 + 20 + 300, 10 + 200 + 3000, 100 + 2000, 1000]


def test_one_row_2d_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    from archcalc.cli import main

    # a 1x3 horizontal kernel [-1, 0, 1] over a 2x4 input: differences two columns apart
    main(["im2col", "--x", "1,2,4,8;0,1,0,1", "--w", "-1,0,1;"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("im2col, 2D: x (2 x 4), w (1 x 3)")
    assert "y = W X_hat = [[3, 6], [0, 0]]" in lines

"""The executor refuses before it allocates: parameters, batches and gradient checks."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from archcalc import kernels
from archcalc.errors import ArchcalcError
from archcalc.execute import (
    Executor,
    available_memory,
    estimate_memory,
    gradcheck,
    train_step,
    training_batch,
)
from archcalc.render.format import binary_bytes
from tests.test_execute_cli import run

ROOT = Path(__file__).resolve().parent.parent
HINT = "(--max-memory on the command line, max_memory= in Python)"
# 200,000 x 200,000 weights: 4e10 parameters, 149 GiB in float32
HUGE = {"name": "huge", "input": [200000], "layers": [{"type": "linear", "units": 200000}]}
# every kind of op the executor holds memory for differently
ODD = {"name": "odd", "input": [3, 24, 24], "layers": [
    {"type": "conv", "filters": 8, "kernel": 3, "padding": 2}, {"type": "batchnorm"}, {"type": "gelu"},
    {"type": "lrn", "size": 5}, {"type": "maxpool", "kernel": 3, "stride": 2, "ceil_mode": True},
    {"type": "dropout", "p": 0.3}, {"type": "avgpool", "kernel": 2, "padding": 1}, {"type": "sigmoid"},
    {"type": "tanh"}, {"type": "flatten"}, {"type": "linear", "units": 10}, {"type": "softmax"}]}
BRANCHES = {"name": "branches", "input": [4, 16, 16], "layers": [
    {"type": "conv", "name": "a", "filters": 8, "kernel": 3, "padding": 1, "inputs": ["input"]},
    {"type": "conv", "name": "b", "filters": 8, "kernel": 1, "inputs": ["input"]},
    {"type": "add", "name": "sum", "inputs": ["a", "b"]}, {"type": "leaky_relu"},
    {"type": "concat", "inputs": ["sum", "b"]}, {"type": "global_avgpool"}, {"type": "flatten"},
    {"type": "linear", "units": 3}]}


def _peak(action):
    """Peak bytes traced (NumPy reports its arrays to tracemalloc) while ``action`` runs."""
    tracemalloc.start()
    with contextlib.suppress(ArchcalcError):
        action()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_cli_refuses_a_huge_batch_with_the_estimate_not_numpys_error():
    code, out, err = run("run", "lenet5", "--batch", "100000000", "--max-memory", "1GiB")
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("error: running lenet5 at batch 100000000 in float32 needs an estimated ")
    assert " TiB (parameters 242.2 KiB + gradients 242.2 KiB + momentum 242.2 KiB + activations and their gradients " in err
    assert f"over the limit of 1.0 GiB; use a smaller batch or raise the limit {HINT}" in err
    assert "Unable to allocate" not in err


def test_parameters_are_refused_before_any_array_exists(monkeypatch):
    def no_arrays(*args, **kwargs):
        raise AssertionError("a parameter array was created")

    monkeypatch.setattr(Executor, "_initial", no_arrays)
    for limit, shown in ((2**30, "1.0 GiB"), (None, binary_bytes(int(0.5 * available_memory()))[:-4])):
        with pytest.raises(ArchcalcError) as refused:
            Executor(HUGE, max_memory=limit)
        message = str(refused.value)
        assert message.startswith("creating the parameters of huge in float32 needs an estimated 447.0 GiB "
                                  "(parameters 149.0 GiB + gradients 149.0 GiB + momentum 149.0 GiB), over the limit of ")
        assert shown in message and message.endswith(f"raise the limit if the machine has the memory {HINT}")
    assert _peak(lambda: Executor(HUGE, max_memory=2**30)) < 2**20


def test_the_cli_refuses_huge_parameters_too(tmp_path):
    spec = tmp_path / "huge.json"
    spec.write_text(json.dumps(HUGE))
    for command in ("run", "gradcheck"):
        code, _, err = run(command, str(spec), "--max-memory", "1GB")
        assert code == 2 and len(err.splitlines()) == 1
        dtype = "float32" if command == "run" else "float64"
        batch = 8 if command == "run" else 2  # the CLI gives the batch up front: refused before the parameters exist
        assert f"error: running huge at batch {batch} in {dtype} needs an estimated " in err
        assert "over the limit of 953.7 MiB" in err  # 1GB = 10**9 bytes


def test_a_batch_is_refused_before_its_arrays_exist():
    executor = Executor("lenet5", max_memory=2**30)
    with pytest.raises(ArchcalcError, match=r"^running lenet5 at batch 100000000 in float32 needs an estimated "):
        training_batch(executor, 100_000_000)
    assert _peak(lambda: training_batch(executor, 100_000_000)) < 2**20
    with pytest.raises(ArchcalcError, match=r"^running lenet5 at batch 100000000 in float64 needs an estimated .* TiB"):
        gradcheck("lenet5", batch=100_000_000, max_memory=2**30)
    assert _peak(lambda: gradcheck("lenet5", batch=100_000_000, max_memory=2**30)) < 2**21


def test_parameters_are_created_in_their_final_dtype():
    spec = {"name": "wide", "input": [2000], "layers": [{"type": "linear", "units": 2000}]}
    weights = 2000 * 2000 * 4
    peak = _peak(lambda: Executor(spec, dtype="float32"))
    assert weights <= peak < 1.1 * weights  # no float64 draw first (that would be 3x)
    assert {p.dtype for p in Executor(spec, dtype="float32").params.values()} == {np.dtype("float32")}


@pytest.mark.parametrize("model", ["lenet5", ODD, BRANCHES], ids=["lenet5", "every-op", "branches"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_the_estimate_covers_what_training_holds(model, dtype, backend):
    if backend == "c" and kernels._C is None:
        pytest.skip("the C extension is not built")
    with kernels.backend(backend):
        holder = {}

        def train():
            executor = holder["executor"] = Executor(model, dtype=dtype)
            data = training_batch(executor, 16)
            for _ in range(2):
                train_step(executor, data, lr=1e-3, momentum=0.9, weight_decay=1e-4)

        peak = _peak(train)
        estimate = holder["executor"].memory_estimate(16)
        assert estimate == estimate_memory(model, 16, dtype)  # the workspace is the active kernels'
    # an upper bound, and not a loose one: within 5x (the temporaries' allowance, 32 B a value of the
    # largest layer's inputs and output, dominates these small networks; the C path's direct kernels
    # keep no im2col matrix, so its peak is the lowest)
    assert peak <= estimate.total <= 5 * peak, f"peak {binary_bytes(peak)}, estimate {binary_bytes(estimate.total)}"


def test_running_out_of_memory_anyway_is_a_clear_error(monkeypatch):
    from archcalc.ops.pool import MaxPool

    executor = Executor("lenet5")

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(MaxPool, "forward", exhausted)
    with pytest.raises(ArchcalcError, match=r"^lenet5 in float32: running a batch of 2 ran out of memory although the "
                                            r"estimate, .* MiB, is within the limit of .*; lower the limit or the batch"):
        executor.forward(np.zeros((2, 3, 32, 32), dtype="float32"))


def test_a_process_address_space_limit_is_respected(tmp_path):
    """Under a 3 GB RLIMIT_AS, a 1.6 GB model is refused cleanly, with or without --max-memory."""
    script = textwrap.dedent("""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3 * 10**9, 3 * 10**9))
        from archcalc.cli import main
        from archcalc.execute import available_memory
        assert available_memory() < 3 * 10**9, available_memory()
        spec = sys.argv[1]
        json.dump({"name": "big", "input": [20000], "layers": [{"type": "linear", "units": 20000}]}, open(spec, "w"))
        main(["run", spec, *sys.argv[2:]])
    """)
    for extra in (["--max-memory", "100MiB"], []):
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "big.json"), *extra], cwd=tmp_path,
                              capture_output=True, text=True, env=_env(), timeout=120)
        assert done.returncode == 2, done.stderr
        assert "MemoryError" not in done.stderr and "Traceback" not in done.stderr
        assert done.stderr.startswith("error: running big at batch 8 in float32 needs an estimated 7.5 GiB "
                                      "(parameters 1.5 GiB + gradients 1.5 GiB + momentum 1.5 GiB")
    # a limit set above what the process can have: the allocation fails, and says so in one line
    done = subprocess.run([sys.executable, "-c", script.replace("main([\"run\", spec,", "main([\"run\", \"lenet5\","),
                           str(tmp_path / "big.json"), "--batch", "1000000", "--max-memory", "1PB"],
                          cwd=tmp_path, capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: lenet5 in float32: making a batch of 1000000 ran out of memory although the "
                                  "estimate, ")
    assert ("is within the limit of 909.5 TiB: the machine, or the process's address-space limit, has less; lower the "
            "limit or the batch (--max-memory on the command line, max_memory= in Python)") in done.stderr


def _env():
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize(("call", "message"), [
    (lambda: Executor("lenet5", seed=-1), "seed must be a non-negative int, got -1"),
    (lambda: Executor("lenet5", max_memory=0), "max_memory must be a positive int (bytes), got 0"),
    (lambda: Executor("lenet5", max_memory=float("nan")), "max_memory must be a positive int (bytes), got nan"),
    (lambda: Executor("lenet5", max_memory=True), "max_memory must be a positive int (bytes), got True"),
    (lambda: Executor("lenet5").check_memory(0), "batch must be an int from 1 to 2**63 - 1 (NumPy's largest axis), got 0"),
    (lambda: Executor("lenet5").check_memory(2**63), "batch must be an int from 1 to 2**63 - 1"),
    (lambda: estimate_memory("lenet5", -3), "batch must be an int from 0 to 2**63 - 1"),
    (lambda: gradcheck("lenet5", tolerance=float("nan")), "tolerance must be a finite number at least 0, got nan"),
    (lambda: gradcheck("lenet5", eps=0), "eps must be a finite number above 0, got 0"),
    (lambda: gradcheck("lenet5", eps=10**400), "eps must be a finite number at least 0, got 1000"),
    (lambda: gradcheck("lenet5", samples=0), "samples must be a positive int, got 0"),
    (lambda: train_step(Executor("lenet5"), None, lr=float("inf")), "lr must be a finite number at least 0, got inf"),
    (lambda: train_step(Executor("lenet5"), None, momentum=float("nan")), "momentum must be a finite number from 0 to 1, got nan"),
    (lambda: train_step(Executor("lenet5"), None, weight_decay=-1), "weight_decay must be a finite number at least 0, got -1"),
    (lambda: Executor("lenet5").backward(np.zeros((1, 10))), "backward needs a forward pass first"),
    (lambda: Executor("lenet5").step({}, lr=float("nan")), "lr must be a finite number at least 0, got nan"),
    (lambda: Executor("lenet5").step({}, momentum=1.5), "momentum must be a finite number from 0 to 1, got 1.5"),
])
def test_bad_arguments_from_python_are_clear_errors(call, message):
    with pytest.raises(ArchcalcError) as refused:
        call()
    assert str(refused.value).startswith(message)


def test_a_batch_given_up_front_is_refused_before_any_parameter_exists():
    import tracemalloc

    from archcalc.execute import Executor

    tracemalloc.start()
    try:
        with pytest.raises(ArchcalcError, match="at batch 64"):
            Executor("vgg16", dtype="float32", max_memory=2**30, batch=64)  # vgg16's parameters alone are 528 MiB
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**24  # nothing of the 553 MB of weights was made

"""kernels.keep_freed_memory: glibc's malloc keeps freed blocks for reuse once an Executor exists.

Each case runs in a fresh interpreter: the setting is process-wide and made once. A "step"
allocates ten 1 MiB arrays and frees them all: with glibc's defaults the first free raises its
mmap threshold to 1 MiB and its trim threshold to twice that, so the 10 MiB freed at the heap's top
are given back to the system and every step faults its pages in again (as the executor's lenet5
steps did, one process in two); with the setting, they are reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from archcalc import kernels


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # another C library, or no confstr (Windows)
        return False


pytestmark = pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's")

SCRIPT = """
import json, resource, sys
import numpy as np
from archcalc import kernels
from archcalc.execute import Executor
if sys.argv[1] == "executor":
    Executor("lenet5")
kept = kernels._allocator_kept
def step():  # a step's activations: ten 1 MiB arrays allocated, written, then all freed
    arrays = [np.ones(2**18, dtype=np.float32) for _ in range(10)]
    del arrays
step()  # the step's pages, before the count
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"kept": kept, "faults": faults}))
"""

PAGES = 10 * 2**20 // os.sysconf("SC_PAGE_SIZE")  # one step's


#: Environment variables that set glibc's thresholds or archcalc's choice: not inherited by a case.
ALLOCATOR_VARIABLES = ("ARCHCALC_MALLOC", "GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                       "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def _run(how: str, **env: str) -> dict:
    inherited = {key: value for key, value in os.environ.items() if key not in ALLOCATOR_VARIABLES}
    result = subprocess.run([sys.executable, "-c", SCRIPT, how], capture_output=True, text=True, check=True,
                            env={**inherited, **env})
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_an_executor_keeps_freed_blocks_for_reuse():
    got = _run("executor")
    assert got["kept"] is True
    assert got["faults"] < PAGES // 2  # ten steps in memory faulted in already (one step anew would be PAGES)


def test_glibcs_defaults_fault_every_large_array_in_again():
    """The same loop in a process that never asked for the setting: glibc's defaults."""
    got = _run("plain")
    assert got["kept"] is None  # nothing asked for it: no Executor
    assert got["faults"] > 5 * PAGES


def test_archcalc_malloc_default_leaves_the_allocator_alone():
    got = _run("executor", ARCHCALC_MALLOC="default")
    assert got["kept"] is False
    assert got["faults"] > 5 * PAGES


def test_the_thresholds_fit_the_largest_streamed_im2col_chunk():
    assert kernels.MALLOC_MMAP_THRESHOLD > kernels.BATCHED_BYTES
    assert kernels.MALLOC_TRIM_THRESHOLD >= kernels.MALLOC_MMAP_THRESHOLD


def test_an_archcalc_malloc_value_it_does_not_know_is_said_and_ignored():
    inherited = {key: value for key, value in os.environ.items() if key not in ALLOCATOR_VARIABLES}
    result = subprocess.run([sys.executable, "-c", SCRIPT, "executor"], capture_output=True, text=True, check=True,
                            env={**inherited, "ARCHCALC_MALLOC": "DEFAULT"})
    assert "ARCHCALC_MALLOC='DEFAULT' is not understood" in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["kept"] is True

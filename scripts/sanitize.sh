#!/usr/bin/env bash
# Build archcalc._kernels with AddressSanitizer and UndefinedBehaviorSanitizer and run the
# kernel tests (the torch-oracle ones included), the kernel fuzz and the executor tests on it,
# in a throwaway venv. Any invalid read, write or undefined behaviour in the C code aborts the
# run with the sanitizer's report.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q pytest hypothesis numpy click rich graphviz threadpoolctl setuptools
# PyTorch, the tests' oracle: without it most kernel tests skip. 2.13.0 is the CPU build on this
# machine's disk (any other version downloads gigabytes).
python -m pip install -q torch==2.13.0
# a copy of the package, its extension built in place with the sanitizers
mkdir -p "$venv/src"
cp -r archcalc specs "$venv/src/"
rm -f "$venv"/src/archcalc/_kernels*.so
cp setup.py "$venv/src/"
(cd "$venv/src" && ARCHCALC_SANITIZE=1 python setup.py -q build_ext --inplace >/dev/null)
repo=$(pwd)
asan=$(gcc -print-file-name=libasan.so)
# Python and torch are not instrumented, so the ASan runtime is preloaded (it must come first).
#  detect_leaks=0: CPython and torch keep allocations alive until exit by design, and
#    LeakSanitizer would report them (and fail the run) at exit; leaks are not what this checks.
#  allocator_may_return_null=1: a request above ASan's 1 TiB cap (a kernel asked for an
#    impossible array, as the fuzz does on purpose) returns NULL, which NumPy turns into the
#    MemoryError users see; by default ASan would abort the whole run instead.
#  abort_on_error=1: a real report stops the run with a non-zero status.
# torch 2.13.0 then imports and runs under the preload as is: nothing else was needed.
export LD_PRELOAD="$asan" ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$venv/src:$repo" ARCHCALC_KERNELS=c
cd "$venv"
python -c "import archcalc._kernels as c, archcalc.kernels as k; assert k.BACKEND == 'c' and c.__file__.startswith('$venv'); print('sanitized:', c.__file__)"
# the torch-oracle tests must run here, not skip: fail early if torch does not load
python -c "import torch; print('torch', torch.__version__, 'under', '$asan')"
python -m pytest -q -p no:cacheprovider -o addopts="" -o pythonpath="" -rs "$repo/tests/test_kernels.py" \
    "$repo/tests/test_kernels_fuzz.py" "$repo/tests/test_direct_conv.py" "$repo/tests/test_execute.py" "$@"

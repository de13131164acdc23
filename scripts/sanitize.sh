#!/usr/bin/env bash
# Build archcalc._kernels with AddressSanitizer and UndefinedBehaviorSanitizer and run the
# kernel tests on it, in a throwaway venv. Any invalid read, write or undefined behaviour in
# the C code aborts the run with the sanitizer's report.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q pytest hypothesis numpy click rich graphviz setuptools
# a copy of the package, its extension built in place with the sanitizers
mkdir -p "$venv/src"
cp -r archcalc specs "$venv/src/"
rm -f "$venv"/src/archcalc/_kernels*.so
cp setup.py "$venv/src/"
(cd "$venv/src" && ARCHCALC_SANITIZE=1 python setup.py -q build_ext --inplace >/dev/null)
repo=$(pwd)
asan=$(gcc -print-file-name=libasan.so)
# Python itself is not instrumented: preload the runtime, and leave leak checks to CPython's owners
export LD_PRELOAD="$asan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$venv/src:$repo" ARCHCALC_KERNELS=c
cd "$venv"
python -c "import archcalc._kernels as c, archcalc.kernels as k; assert k.BACKEND == 'c' and c.__file__.startswith('$venv'); print('sanitized:', c.__file__)"
python -m pytest -q -p no:cacheprovider -o addopts="" -o pythonpath="" "$repo/tests/test_kernels.py" "$repo/tests/test_execute.py" "$@"

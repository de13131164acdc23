"""Builds the C extension behind archcalc.kernels; everything else is in pyproject.toml.

The extension is never optional: a failed build fails the install. ARCHCALC_SANITIZE=1 builds
it with AddressSanitizer and UndefinedBehaviorSanitizer instead (scripts/sanitize.sh).
"""

import os

from setuptools import Extension, setup

# -Werror too: the sanitized build, which CI runs, also keeps the code -Wall -Wextra clean
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g", "-Werror"]
sanitized = bool(os.environ.get("ARCHCALC_SANITIZE"))
flags = ["-O1" if sanitized else "-O3", "-std=c99", "-Wall", "-Wextra", *(SANITIZE if sanitized else [])]

setup(
    ext_modules=[
        Extension("archcalc._kernels", ["archcalc/_kernels.c"], depends=["archcalc/_direct.h"],
                  extra_compile_args=[*flags, "-pthread"], extra_link_args=[*(SANITIZE if sanitized else []), "-pthread"])
    ]
)

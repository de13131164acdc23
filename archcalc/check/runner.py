"""The sandboxed runner: a student's function in a forked child process, with a time limit.

The child contains crashes (a segfault, ``os._exit``) and hangs (killed at the limit); it is
not a security sandbox: the student's code runs with the user's rights and can read and write
their files. Also the bounds on every argument that sets the amount of work, checked before
any array or process is created.
"""

from __future__ import annotations

import math
import multiprocessing
import traceback
from collections.abc import Callable
from typing import Any

#: Seconds one case may take before it fails as hung.
TIME_LIMIT = 5.0
#: Largest time limit a checker accepts, in seconds.
MAX_TIME_LIMIT = 600.0
#: Most random cases a checker runs on top of its fixed ones (each is a child process).
MAX_RANDOM_CASES = 100


def bounded_int(checker: str, name: str, value: Any, low: int, high: int) -> int:
    """``value`` when it is an int in [low, high]; else ValueError naming the checker and the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        shown = f"{type(value).__name__} {value!r}" if not isinstance(value, int) or isinstance(value, bool) else (
            f"{value:,}" if abs(value) < 10**30 else f"an int of {len(str(abs(value))):,} digits")
        raise ValueError(f"{checker}: {name} must be an int from {low:,} to {high:,}, got {shown}")
    return value


def bounded_float(checker: str, name: str, value: Any, low: float, high: float, low_open: bool = True) -> float:
    """``value`` as a float when finite and in (low, high] (or [low, high]); else ValueError."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{checker}: {name} must be a number, got {type(value).__name__} {str(value)[:40]!r}") from None
    inside = (low < number if low_open else low <= number) and number <= high
    if isinstance(value, bool) or not math.isfinite(number) or not inside:
        side = "(" if low_open else "["
        raise ValueError(f"{checker}: {name} must be a finite number in {side}{low:g}, {high:g}], got {value!r}")
    return number


def check_run_options(checker: str, fn: Any, adapter: Any, random_cases: Any, seed: Any, time_limit: Any) -> None:
    """Refuse absurd arguments before any case is built or any child process started.

    Raises:
        ValueError: ``fn`` not callable, ``adapter`` not an Adapter, ``random_cases``
            outside 0..100, ``seed`` outside 0..2**63-1, ``time_limit`` not in (0, 600] seconds.
    """
    from archcalc.check.compare import Adapter

    if not callable(fn):
        raise ValueError(f"{checker}: the function to check must be callable, got {type(fn).__name__}")
    if adapter is not None and not isinstance(adapter, Adapter):
        raise ValueError(f"{checker}: adapter must be an archcalc.check.Adapter or None, got {type(adapter).__name__}")
    bounded_int(checker, "random_cases", random_cases, 0, MAX_RANDOM_CASES)
    bounded_int(checker, "seed", seed, 0, 2**63 - 1)
    bounded_float(checker, "time_limit", time_limit, 0.0, MAX_TIME_LIMIT)


def _run_child(fn: Callable[..., Any], args: tuple[Any, ...], conn: Any) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as error:  # noqa: BLE001 - any student error becomes the case's failure
        frames = traceback.extract_tb(error.__traceback__)
        where = f" (at {frames[-1].filename.split('/')[-1]}:{frames[-1].lineno})" if frames else ""
        conn.send(("error", f"{type(error).__name__}: {error}{where}"))


def call_with_time_limit(fn: Callable[..., Any], args: tuple[Any, ...], limit: float = TIME_LIMIT) -> tuple[str, Any]:
    """``("ok", result)``, ``("error", message)`` or ``("timeout", message)``.

    The call runs in a forked child process, so a hang is stopped and a crash is contained;
    where fork does not exist it runs in this process with no time limit.

    Raises:
        ValueError: ``limit`` is not a finite number of seconds in (0, 600].
    """
    return call_unchecked(fn, args, bounded_float("call_with_time_limit", "limit", limit, 0.0, MAX_TIME_LIMIT))


def call_unchecked(fn: Callable[..., Any], args: tuple[Any, ...], limit: float) -> tuple[str, Any]:
    """:func:`call_with_time_limit` for a limit the caller has bounded (a checker's total over many calls)."""
    try:
        context = multiprocessing.get_context("fork")
    except ValueError:
        try:
            return "ok", fn(*args)
        except Exception as error:  # noqa: BLE001
            return "error", f"{type(error).__name__}: {error}"
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_run_child, args=(fn, args, send), daemon=True)
    child.start()
    send.close()
    try:
        if receive.poll(limit):
            return receive.recv()
        if child.is_alive():
            return "timeout", f"did not return within {limit:g} s (an endless loop?)"
    except EOFError:  # the child closed the pipe by dying
        pass
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receive.close()
    return "error", f"the process died (exit code {child.exitcode}) without returning"

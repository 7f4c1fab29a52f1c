"""Other work on the machine: processes that keep every core busy while a measurement runs.

A sorter's controller PC also runs whatever else its owner puts there (a WMS export, a backup,
another engineer's test run); issue 14's report was a demo that lost reads on a busy 2-core
machine. These burners stand in for that work: plain CPU-bound processes at the default
priority, one per core, so that the controller, its camera worker and the simulated PLCs get a
core only by the priorities they run at.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from harness.procs import stop_process

__all__ = ["busy_cores"]

# an integer hash chain: all CPU, no memory to speak of, never finishes by itself
_BURN = "x = 1\nwhile True:\n    x = (x * 1103515245 + 12345) & 0xFFFFFFFF\n"


@contextmanager
def busy_cores(n: int | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``n`` processes (default: one per core) each keeping a core busy, stopped on exit."""
    count = n if n is not None else os.cpu_count() or 1
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-c", _BURN], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield procs
    finally:
        for p in procs:
            stop_process(p, 2.0)

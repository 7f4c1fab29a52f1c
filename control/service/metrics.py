"""Figures of a running controller that the status command, the demo and the benchmarks read.

Every latency series is a fixed-size numpy ring (``Window``): a service that runs for months
holds the same few megabytes as one that started a minute ago (8 series x 65,536 float64 =
4 MB), and a percentile over the window costs one ``np.percentile`` call.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["WINDOW", "Metrics", "Window", "health_record", "rss_mb"]

WINDOW = 65_536  # samples kept per series (at 100 cycles/s: the last ~11 minutes of cycles)


class Window:
    """The last ``size`` samples of a series, oldest first; fixed memory, no allocation per sample."""

    __slots__ = ("_buf", "_n", "total")

    def __init__(self, size: int = WINDOW) -> None:
        self._buf = np.zeros(size, dtype=np.float64)
        self._n = 0  # samples ever added
        self.total = 0.0  # their sum (a rate over the whole run needs no window)

    def add(self, x: float) -> None:
        self._buf[self._n % len(self._buf)] = x
        self._n += 1
        self.total += x

    def extend(self, xs: Iterable[float]) -> None:
        for x in xs:
            self.add(x)

    @property
    def count(self) -> int:
        """Samples ever added (the window holds at most ``size`` of them)."""
        return self._n

    def values(self) -> npt.NDArray[np.float64]:
        """The samples held, oldest first (a copy)."""
        size = len(self._buf)
        if self._n <= size:
            return self._buf[: self._n].copy()
        k = self._n % size
        return np.concatenate([self._buf[k:], self._buf[:k]])

    def percentile(self, q: float) -> float:
        v = self.values()
        return float(np.percentile(v, q)) if v.size else float("nan")

    def __len__(self) -> int:
        return min(self._n, len(self._buf))

    def __iter__(self) -> Iterator[float]:
        return iter(self.values().tolist())

    def __bool__(self) -> bool:
        return self._n > 0


def _window() -> Window:
    return Window()


@dataclass(slots=True)
class Metrics:
    """Latencies in seconds over a fixed window, and counters over the whole run."""

    decision_s: Window = field(default_factory=_window)
    arm_confirmed_s: Window = field(default_factory=_window)
    scan_to_decision_s: Window = field(default_factory=_window)
    cycle_lag_s: Window = field(default_factory=_window)
    cycle_work_s: Window = field(default_factory=_window)
    read_s: Window = field(default_factory=_window)
    decide_s: Window = field(default_factory=_window)
    commit_s: Window = field(default_factory=_window)
    publish_s: Window = field(default_factory=_window)
    cycles: int = 0
    inducted_seen: int = 0  # parcels known to the store (recovered + inducted since)
    decode_timeouts: int = 0
    store_failures: int = 0
    glitches: int = 0
    gaps: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)


def rss_mb() -> float:
    """Resident memory of this process, MB (Linux /proc; 0 where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)


def health_record(m: Metrics, last_cycles: int, **fields: object) -> dict[str, object]:
    """The service's vital signs: cycle lag p99 over the last ``last_cycles`` cycles, resident
    memory, and the caller's own ``fields`` (time, unit state, parcels in flight, faults)."""
    lag = m.cycle_lag_s.values()[-last_cycles:]
    return {
        **fields,
        "cycles": m.cycles,
        "lag_p99_ms": round(float(np.percentile(lag, 99)) * 1000.0 if lag.size else 0.0, 3),
        "rss_mb": rss_mb(),
    }

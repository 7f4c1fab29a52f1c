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

__all__ = ["BUCKETS_MS", "WINDOW", "Histogram", "Metrics", "Window", "health_record", "rss_mb"]

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


# Histogram bucket upper bounds (ms) for Prometheus: decision latency, cycle lag, commit time.
BUCKETS_MS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


class Histogram:
    """Cumulative bucket counts since the service started, folded in from a ``Window`` now and
    then (the hot path only appends to the window; the buckets cost one ``np.histogram`` per
    health record). Samples that fell out of the window before a fold are counted in the
    overflow bucket's total but not in a bucket: at 1 fold a second and 65,536 samples per
    window, that takes over 600 samples a second, far above any series here."""

    __slots__ = ("_edges", "_folded", "counts", "sum", "total")

    def __init__(self, bounds_ms: tuple[float, ...] = BUCKETS_MS) -> None:
        self._edges = np.array([-np.inf, *bounds_ms, np.inf]) / 1000.0
        self.counts = np.zeros(len(bounds_ms) + 1, np.int64)  # per bucket, not cumulative; last = +Inf
        self._folded = 0
        self.sum = 0.0
        self.total = 0

    def fold(self, w: Window) -> None:
        new = w.count - self._folded
        if new <= 0:
            return
        xs = w.values()[-min(new, len(w)):]
        self.counts += np.histogram(xs, self._edges)[0]
        self.total += new
        self.sum += float(xs.sum())
        self._folded = w.count

    def as_json(self) -> dict[str, object]:
        """Prometheus' shape, in ms: upper bounds and cumulative counts."""
        return {"le": list(BUCKETS_MS), "counts": np.cumsum(self.counts).tolist(),
                "sum": round(self.sum * 1000.0, 3), "count": self.total}


# histogram name -> the Metrics series it folds
_HISTS: dict[str, str] = {"decision_ms": "decision_s", "cycle_lag_ms": "cycle_lag_s", "commit_ms": "commit_s"}


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
    hist: dict[str, Histogram] = field(default_factory=lambda: {k: Histogram() for k in _HISTS})


def rss_mb() -> float:
    """Resident memory of this process, MB (Linux /proc; 0 where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)


def _p99_ms(xs: npt.NDArray[np.float64]) -> float:
    return round(float(np.percentile(xs, 99)) * 1000.0 if xs.size else 0.0, 3)


def health_record(m: Metrics, last_cycles: int, **fields: object) -> dict[str, object]:
    """The service's vital signs: cycle lag, decision and commit p99 over the last
    ``last_cycles`` cycles, histograms since start, resident memory, and the caller's own
    ``fields`` (time, unit state, parcels in flight, faults, links)."""
    for name, series in _HISTS.items():
        m.hist[name].fold(getattr(m, series))
    return {
        **fields,
        "cycles": m.cycles,
        "lag_p99_ms": _p99_ms(m.cycle_lag_s.values()[-last_cycles:]),
        "decision_p99_ms": _p99_ms(m.decision_s.values()[-last_cycles:]),
        "commit_p99_ms": _p99_ms(m.commit_s.values()[-last_cycles:]),
        "outcomes": dict(m.outcomes),
        "decode_timeouts": m.decode_timeouts,
        "rss_mb": rss_mb(),
        "hist": {k: h.as_json() for k, h in m.hist.items()},
    }

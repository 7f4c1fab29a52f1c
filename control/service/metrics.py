"""Figures of a running controller that the status command, the demo and the benchmarks read."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["Metrics"]


def _window(n: int) -> deque[float]:
    return deque(maxlen=n)


@dataclass(slots=True)
class Metrics:
    """Latencies in seconds, kept over a bounded window so a long-running service stays small."""

    decision_s: deque[float] = field(default_factory=lambda: _window(200_000))
    arm_confirmed_s: deque[float] = field(default_factory=lambda: _window(200_000))
    scan_to_decision_s: deque[float] = field(default_factory=lambda: _window(200_000))
    cycle_lag_s: deque[float] = field(default_factory=lambda: _window(500_000))
    cycle_work_s: deque[float] = field(default_factory=lambda: _window(500_000))
    read_s: deque[float] = field(default_factory=lambda: _window(500_000))
    decide_s: deque[float] = field(default_factory=lambda: _window(500_000))
    commit_s: deque[float] = field(default_factory=lambda: _window(500_000))
    publish_s: deque[float] = field(default_factory=lambda: _window(500_000))
    cycles: int = 0
    inducted_seen: int = 0  # parcels known to the store (recovered + inducted since)
    decode_timeouts: int = 0
    store_failures: int = 0
    glitches: int = 0
    gaps: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)

"""The service's latency histograms (``health.hist``): validation and quantiles.

The service publishes cumulative Prometheus-style histograms, ``{"le": [upper bounds],
"counts": [cumulative count per bucket], "sum": float, "count": int}``, that only grow
(``counts`` may carry one more entry than ``le``: the +Inf bucket, which equals ``count``). A
quantile over an interval comes from the difference of two records, interpolated linearly in
its bucket (as Prometheus's ``histogram_quantile`` does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Hist", "quantile_between"]


@dataclass(frozen=True, slots=True)
class Hist:
    le: tuple[float, ...]  # finite upper bounds, ascending
    counts: tuple[float, ...]  # cumulative, one per bound
    sum: float
    count: float  # every observation, those above the last bound included

    @classmethod
    def parse(cls, raw: Any) -> Hist | None:
        """A histogram from a health record; None for anything malformed (never raises)."""
        if not isinstance(raw, dict):
            return None
        try:
            le = [float(x) for x in raw.get("le", [])]
            counts = [float(x) for x in raw.get("counts", [])]
            total = float(raw.get("count", counts[-1] if counts else 0.0))
            s = float(raw.get("sum", 0.0))
        except (TypeError, ValueError):
            return None
        if len(counts) == len(le) + 1:  # the +Inf bucket's cumulative count given too: it is the count
            total = max(total, counts[-1])
            counts = counts[:-1]
        if not le or len(le) != len(counts):
            return None
        if math.isinf(le[-1]):  # an explicit +Inf bound: its count is the count
            total = max(total, counts[-1])
            le, counts = le[:-1], counts[:-1]
        if any(b >= a for a, b in zip(le[1:], le, strict=False)) or any(
            b > a for a, b in zip(counts[1:], counts, strict=False)
        ):
            return None
        return cls(tuple(le), tuple(counts), s, max(total, counts[-1] if counts else 0.0))


def quantile_between(new: Hist, old: Hist | None, q: float) -> float | None:
    """The ``q`` quantile of the observations made between ``old`` and ``new`` (all of
    ``new`` when ``old`` is None, has other bounds, or is from before a service restart)."""
    if old is not None and (old.le != new.le or old.count > new.count):
        old = None
    counts = [c - (old.counts[i] if old else 0.0) for i, c in enumerate(new.counts)]
    total = new.count - (old.count if old else 0.0)
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cum in zip(new.le, counts, strict=True):
        if cum >= rank:
            inside = cum - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, cum
    return new.le[-1]  # beyond the last bound: the most the histogram can say

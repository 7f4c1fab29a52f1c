"""Trend series for the last hours: per-minute parcel figures from the tally, latency and lag
from the service's health records, chute fill from samples of ``meta.chutes``.

Health history comes from the store's ``health`` table (one record every 10 s) when the service
writes one; otherwise from the samples this HMI took of ``meta.health`` while it ran. Chute fill
history likewise: from the health records' ``chute_fill`` when they carry it, else the HMI's own
samples of ``meta.chutes`` (one a minute, bounded, lost when the HMI restarts).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hmi.histogram import Hist, quantile_between
from hmi.tally import FINISHED_KINDS, Tally

__all__ = ["FillSample", "HealthSample", "fill_of", "health_series", "parcel_series", "sample_of"]

HIST_KEYS = {"decision_ms": "decision_p99_ms", "cycle_lag_ms": "cycle_lag_p99_ms", "commit_ms": "commit_p99_ms"}


@dataclass(frozen=True, slots=True)
class HealthSample:
    t: float
    lag_p99_ms: float | None
    in_flight: float | None
    hists: Mapping[str, Hist]
    own_p99: Mapping[str, float | None]  # the record's own p99 fields (used without histograms)


@dataclass(frozen=True, slots=True)
class FillSample:
    t: float
    fill: Mapping[int, float]  # chute id -> parcels in it


def _num(v: Any) -> float | None:
    try:
        return float(v) if v is not None and not isinstance(v, bool) else None
    except (TypeError, ValueError):
        return None


def fill_of(record: Mapping[str, Any]) -> FillSample | None:
    """The chute fill a health record carries (services from schema 2 on), if it has one."""
    t = _num(record.get("t"))
    raw = record.get("chute_fill")
    if t is None or not isinstance(raw, dict) or not raw:
        return None
    fill: dict[int, float] = {}
    for k, v in raw.items():
        n = _num(v)
        if n is not None and str(k).isdigit():
            fill[int(k)] = n
    return FillSample(t, fill)


def sample_of(record: Mapping[str, Any]) -> HealthSample | None:
    t = _num(record.get("t"))
    if t is None:
        return None
    raw = record.get("hist")
    hists: dict[str, Hist] = {}
    if isinstance(raw, dict):
        for key in HIST_KEYS:
            h = Hist.parse(raw.get(key))
            if h is not None:
                hists[key] = h
    own = {name: _num(record.get(name)) for name in ("decision_p99_ms", "commit_p99_ms")}
    return HealthSample(t, _num(record.get("lag_p99_ms")), _num(record.get("in_flight")), hists, own)


def health_series(samples: Iterable[HealthSample], start: float) -> dict[str, list[float | None]]:
    """p99 per interval between consecutive records (from the histograms' growth), the
    service's own cycle lag p99, and parcels in flight."""
    out: dict[str, list[float | None]] = {"t": [], "lag_p99_ms": [], "in_flight": [],
                                          **{v: [] for v in HIST_KEYS.values()}}
    prev: HealthSample | None = None
    for s in samples:
        if s.t >= start:
            out["t"].append(s.t)
            out["lag_p99_ms"].append(s.lag_p99_ms)
            out["in_flight"].append(s.in_flight)
            for key, name in HIST_KEYS.items():
                h = s.hists.get(key)
                q = quantile_between(h, prev.hists.get(key) if prev else None, 0.99) if h else s.own_p99.get(name)
                out[name].append(None if q is None else round(q, 3))
        prev = s
    return out


def parcel_series(tally: Tally, start: float, end: float) -> dict[str, list[float | None]]:
    """Per complete minute: finished parcels per hour, read rate, recirculations, inducted,
    rejected. The minute in progress is left out (its rate would read low until it ends), and
    the minutes before the store's first event are gaps, not zeros."""
    out: dict[str, list[float | None]] = {"t": [], "per_hour": [], "read_rate": [], "recirculated": [],
                                          "inducted": [], "rejected": []}
    first = min(tally.minutes, default=None)  # minutes before the store's first event: no data, not 0
    for t, b in tally.series(start, end - 60.0):
        routed = b.kinds["routed"]
        out["t"].append(float(t))
        if first is None or t // 60 < first:
            for k in ("per_hour", "read_rate", "recirculated", "inducted", "rejected"):
                out[k].append(None)
            continue
        out["per_hour"].append(float(sum(b.kinds[k] for k in FINISHED_KINDS) * 60))
        out["read_rate"].append(round((routed - b.routed_read_failed) / routed, 4) if routed else None)
        out["recirculated"].append(float(b.kinds["recirculated"]))
        out["inducted"].append(float(b.kinds["inducted"]))
        out["rejected"].append(float(b.kinds["rejected"]))
    return out


def fill_series(samples: deque[FillSample], start: float, capacity: Mapping[int, int],
                names: Mapping[int, str]) -> dict[str, object]:
    """Chute fill in percent of capacity over time, one line per chute."""
    kept = [s for s in samples if s.t >= start]
    ids = sorted(capacity)
    lines = [
        {"id": cid, "name": names.get(cid, str(cid)),
         "values": [round(100.0 * s.fill[cid] / capacity[cid], 1) if cid in s.fill else None for s in kept]}
        for cid in ids
    ]
    return {"t": [s.t for s in kept], "lines": lines}

"""What-if replay: a whole manifest through the engine in arrival order, chutes draining.

Every routed parcel is assumed to reach its chute (the replay confirms it at once); operators
empty each chute at its drain rate. The result says where the plan runs out of room.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from control.routing.engine import RoutingEngine
from control.routing.reasons import Reason


@dataclass(frozen=True, slots=True)
class ReplayResult:
    chute_ids: list[int]
    parcels: npt.NDArray[np.int64]  # per chute id
    peak: npt.NDArray[np.int64]  # per chute id
    times: npt.NDArray[np.float64]  # sample times (epoch s)
    fill: npt.NDArray[np.int64]  # (samples, chute id)
    reasons: dict[str, int]
    overflow_events: int
    groups_total: int
    groups_split: int
    parcels_total: int


def replay(
    engine: RoutingEngine,
    step_s: float = 30.0,
    drain_per_min: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    m = engine.manifest
    arrival = m.arrival.copy()
    if np.isnan(arrival).all():
        arrival[:] = 0.0
    # Rows without an arrival time come last, at the last known time.
    arrival = np.where(np.isnan(arrival), np.nanmax(arrival), arrival)
    order = np.argsort(arrival, kind="stable")
    t_sorted = arrival[order]
    size = engine.st.size
    rate = np.zeros(size)
    for c in engine.site.chutes:
        rate[c.id] = (c.drain_per_min if drain_per_min is None else drain_per_min) / 60.0
    credit = np.zeros(size)
    parcels = np.zeros(size, np.int64)
    peak = np.zeros(size, np.int64)
    chutes = np.zeros(len(m), np.int16)
    reasons = np.zeros(len(m), np.uint8)
    times: list[float] = []
    fills: list[npt.NDArray[np.int64]] = []
    n = len(order)
    if n == 0:
        return ReplayResult([c.id for c in engine.site.chutes], parcels, peak, np.zeros(0), np.zeros((0, size), np.int64), {}, 0, 0, 0, 0)
    t = float(t_sorted[0])
    i = 0
    while i < n:
        j = int(np.searchsorted(t_sorted, t + step_s, side="left"))
        j = max(j, i + 1) if t_sorted[i] < t + step_s else i
        if j > i:
            rows = order[i:j]
            d = engine.route(rows, t_sorted[i:j])
            engine.confirm(d.chute, d.chute, d.group)
            chutes[rows] = d.chute
            reasons[rows] = d.reason
            parcels += np.bincount(d.chute, minlength=size)
            peak = np.maximum(peak, engine.load())
            if progress:
                progress(j - i)
        times.append(t + step_s)
        fills.append(engine.load().copy())
        credit += rate * step_s
        take = np.floor(credit).astype(np.int64)
        take = np.minimum(take, engine.filled)
        credit -= take
        credit[engine.filled == 0] = 0.0  # an empty chute banks no drain
        engine.filled -= take
        i = j
        t += step_s
        if i < n and t_sorted[i] > t + step_s:  # skip idle stretches in one go
            t = float(t_sorted[i])
    counts = np.bincount(reasons, minlength=len(Reason))
    g = m.group
    has = g >= 0
    pairs = np.unique(np.stack([g[has].astype(np.int64), chutes[has].astype(np.int64)]), axis=1)
    per_group = np.bincount(pairs[0], minlength=len(m.group_names)) if pairs.size else np.zeros(0, np.int64)
    return ReplayResult(
        chute_ids=[c.id for c in engine.site.chutes],
        parcels=parcels, peak=peak, times=np.array(times), fill=np.array(fills),
        reasons={r.name: int(counts[r]) for r in Reason if counts[r]},
        overflow_events=int(counts[Reason.FALLBACK_FULL]),
        groups_total=len(m.group_names), groups_split=int((per_group > 1).sum()), parcels_total=n,
    )

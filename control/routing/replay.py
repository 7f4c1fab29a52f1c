"""What-if replay: a whole manifest through the engine in arrival order, chutes draining.

Every routed parcel is assumed to reach its chute (the replay confirms it at once); operators
empty each chute at its drain rate. The result says where the plan runs out of room.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
    # Why split groups split (a group counts under every cause it has): see ``split_causes``.
    split_because: dict[str, int] = field(default_factory=dict)


SPLIT_CAUSES = {
    "priority_deadline": "a member was due and went to the priority chute",
    "exception": "a member went to an exception chute (oversize, bad data, no rule)",
    "chute_full_or_unavailable": "a member found the group's chute full or unavailable",
    "other": "none of the above (e.g. no pool chute was free when the group opened)",
}


def split_causes(group: npt.NDArray[np.int32], chute: npt.NDArray[np.int16], reason: npt.NDArray[np.uint8],
                 n_groups: int) -> tuple[int, dict[str, int]]:
    """Groups whose members went to more than one chute, and why.

    A split is not always an overflow: a parcel close to its deadline leaves its group for the
    rule's priority chute, and an oversize parcel goes to the oversize chute, by design.
    """
    has = group >= 0
    g, c, r = group[has].astype(np.int64), chute[has].astype(np.int64), reason[has]
    if len(g) == 0:
        return 0, {}
    pairs = np.unique(g * 1024 + c)
    split = np.bincount(pairs // 1024, minlength=n_groups) > 1

    def groups_with(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        return np.bincount(g[mask], minlength=n_groups) > 0

    prio = groups_with(r == Reason.PRIORITY) & split
    exc = groups_with(r >= Reason.NO_RULE) & split
    full = groups_with((r == Reason.FALLBACK_FULL) | (r == Reason.CHUTE_UNAVAILABLE)) & split
    other = split & ~prio & ~exc & ~full
    counts = {"priority_deadline": prio, "exception": exc, "chute_full_or_unavailable": full, "other": other}
    return int(split.sum()), {k: int(v.sum()) for k, v in counts.items() if v.any()}


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
    # Rows without an arrival time come last, at the last known time. (An empty manifest has
    # no last time: nanmax of nothing raises, so it is skipped; the replay routes nothing.)
    if len(arrival):
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
    n_split, because = split_causes(m.group, chutes, reasons, len(m.group_names))
    return ReplayResult(
        chute_ids=[c.id for c in engine.site.chutes],
        parcels=parcels, peak=peak, times=np.array(times), fill=np.array(fills),
        reasons={r.name: int(counts[r]) for r in Reason if counts[r]},
        overflow_events=int(counts[Reason.FALLBACK_FULL]),
        groups_total=len(m.group_names), groups_split=n_split, parcels_total=n, split_because=because,
    )

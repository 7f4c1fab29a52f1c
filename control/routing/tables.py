"""The sort plan and site compiled into numpy lookup tables, built once per plan or site.

Chute ids index the per-chute arrays directly (ids are 1..999, index 0 means "no chute"), so
no id->index translation sits on the hot path. Longest-prefix matching is resolved here: the
nested key intervals of all prefix and country rules are cut into disjoint segments, each
labelled with its innermost (longest) rule; a lookup is one ``searchsorted``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from control.routing.plan import SortPlan
from control.routing.postal import prefix_interval
from plant.site import ChuteKind, Site

I16 = npt.NDArray[np.int16]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
NO_RULE = -1


@dataclass(frozen=True, slots=True)
class SiteTables:
    """Per-chute arrays indexed by chute id, and the exception chutes."""

    size: int
    capacity: I64
    kind_code: npt.NDArray[np.int8]
    chain_off: I64  # chute c: chain[chain_off[c]:chain_off[c]+chain_len[c]] = [c, *fallback]
    chain_len: I64
    chain: I16
    reject: int
    no_read: int  # reject when the site has no no_read chute
    oversize: int
    max_dims: tuple[float, float, float]
    max_weight: float
    recirculation_limit: int

    @classmethod
    def from_site(cls, site: Site) -> SiteTables:
        size = max(c.id for c in site.chutes) + 1
        capacity = np.zeros(size, np.int64)
        kind_code = np.full(size, -1, np.int8)
        kinds = list(ChuteKind)
        chain_off = np.zeros(size, np.int64)
        chain_len = np.zeros(size, np.int64)
        chain: list[int] = []
        for c in site.chutes:
            capacity[c.id] = c.capacity
            kind_code[c.id] = kinds.index(c.kind)
            chain_off[c.id] = len(chain)
            chain_len[c.id] = 1 + len(c.fallback)
            chain.extend((c.id, *c.fallback))
        reject = site.reject_chute.id

        def first(kind: ChuteKind) -> int:
            found = site.chutes_of_kind(kind)
            return found[0].id if found else reject

        s = site.sorter
        return cls(
            size, capacity, kind_code, chain_off, chain_len, np.array(chain, np.int16), reject,
            first(ChuteKind.NO_READ), first(ChuteKind.OVERSIZE),
            (s.max_parcel_length_mm, s.max_parcel_width_mm, s.max_parcel_height_mm),
            s.max_parcel_weight_kg, s.recirculation_limit,
        )

    def chain_of(self, chute: int) -> tuple[int, ...]:
        o, n = int(self.chain_off[chute]), int(self.chain_len[chute])
        return tuple(int(x) for x in self.chain[o : o + n])


@dataclass(frozen=True, slots=True)
class PlanTables:
    """Rules as arrays. Rule r: pool = pool[pool_off[r]:+pool_len[r]]; candidates = pool then
    the fallback chains of the pool's chutes (first occurrence kept); prio[r] = 0 if none."""

    plan: SortPlan
    pool_off: I64
    pool_len: I64
    pool: I16
    cand_off: I64
    cand_len: I64
    cand: I16
    prio: I16
    dest_rule: dict[str, int]
    seg_start: I64
    seg_rule: I32

    @property
    def n_rules(self) -> int:
        return len(self.pool_off)

    def rule_for_keys(self, keys: I64) -> I32:
        """Longest matching prefix/country rule for each postal key (-1: none or bad key)."""
        if len(self.seg_start) == 0:
            return np.full(len(keys), NO_RULE, np.int32)
        seg = np.searchsorted(self.seg_start, keys, side="right") - 1
        out = self.seg_rule[np.maximum(seg, 0)]
        return np.where((seg >= 0) & (keys >= 0), out, NO_RULE).astype(np.int32)

    def rule_for(self, destination_id: str, key: int) -> int:
        """One parcel: exact destination first, then longest prefix, then country default."""
        r = self.dest_rule.get(destination_id, NO_RULE) if destination_id else NO_RULE
        if r != NO_RULE or key < 0 or len(self.seg_start) == 0:
            return r
        seg = int(np.searchsorted(self.seg_start, key, side="right")) - 1
        return int(self.seg_rule[seg]) if seg >= 0 else NO_RULE


def _segments(intervals: list[tuple[int, int, int]]) -> tuple[I64, I32]:
    """Cut nested inclusive intervals (lo, hi, rule) into disjoint labelled segments.

    Sorted by (lo, -width) a parent comes before its children; a stack of open intervals gives
    the innermost one at every point. Gaps are labelled -1.
    """
    intervals.sort(key=lambda t: (t[0], -(t[1] - t[0])))
    starts: list[int] = []
    rules: list[int] = []

    def emit(at: int, rule: int) -> None:
        if starts and starts[-1] == at:
            rules[-1] = rule
        else:
            starts.append(at)
            rules.append(rule)

    stack: list[tuple[int, int]] = []  # (hi, rule)
    for lo, hi, rule in intervals:
        while stack and stack[-1][0] < lo:
            end, _ = stack.pop()
            emit(end + 1, stack[-1][1] if stack else NO_RULE)
            # Close every interval that ended before lo, each resuming its parent.
        stack.append((hi, rule))
        emit(lo, rule)
    while stack:
        end, _ = stack.pop()
        emit(end + 1, stack[-1][1] if stack else NO_RULE)
    return np.array(starts, np.int64), np.array(rules, np.int32)


def compile_plan(plan: SortPlan, site: SiteTables) -> PlanTables:
    """Compile a (site-checked) plan into lookup tables."""
    pool_off: list[int] = []
    pool_len: list[int] = []
    pool: list[int] = []
    cand_off: list[int] = []
    cand_len: list[int] = []
    cand: list[int] = []
    prio: list[int] = []
    dest_rule: dict[str, int] = {}
    intervals: list[tuple[int, int, int]] = []
    for i, r in enumerate(plan.rules):
        pool_off.append(len(pool))
        pool_len.append(len(r.chutes))
        pool.extend(r.chutes)
        seen: list[int] = list(r.chutes)
        for c in r.chutes:
            for f in site.chain_of(c)[1:]:
                if f not in seen:
                    seen.append(f)
        cand_off.append(len(cand))
        cand_len.append(len(seen))
        cand.extend(seen)
        prio.append(r.priority_chute or 0)
        if r.destination_id:
            dest_rule[r.destination_id] = i
        else:
            iv = prefix_interval(r.country, r.prefix)
            if iv is not None:
                intervals.append((iv[0], iv[1], i))
    seg_start, seg_rule = _segments(intervals)
    return PlanTables(
        plan, np.array(pool_off, np.int64), np.array(pool_len, np.int64), np.array(pool, np.int16),
        np.array(cand_off, np.int64), np.array(cand_len, np.int64), np.array(cand, np.int16),
        np.array(prio, np.int16), dest_rule, seg_start, seg_rule,
    )

"""A plain per-parcel Python implementation of the routing rules: the oracle and the baseline.

It shares no tables or arrays with the engine: its own dicts for the plan, its own manifest
reader (the ``csv`` module), its own counters. Tests check that the numpy engine gives the same
chute and reason for every parcel; the benchmark measures how much faster the engine is.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from control.routing.ids import parcel_key
from control.routing.plan import SortPlan
from control.routing.postal import normalise_postal
from control.routing.reasons import Reason
from control.routing.settings import RoutingSettings
from plant.site import ChuteKind, Site


@dataclass(frozen=True, slots=True)
class Record:
    parcel_id: str
    country: str
    postal_code: str
    destination_id: str
    consolidation_key: str
    deadline: float
    dims: tuple[float, float, float]
    weight: float


def _num(text: str) -> float:
    return float(text) if text.strip() else math.nan


def read_records(path: str | Path) -> dict[str, Record]:
    """Good rows of a manifest CSV by parcel id (first occurrence wins; bad rows skipped)."""
    out: dict[str, Record] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            pid = row["parcel_id"].strip().upper()
            try:
                deadline = datetime.strptime(row["deadline"].strip(), "%Y-%m-%dT%H:%M:%SZ")
                rec = Record(
                    pid, row["country"].strip().upper(), row["postal_code"], row["destination_id"].strip(),
                    row["consolidation_key"].strip(),
                    deadline.replace(tzinfo=__import__("datetime").timezone.utc).timestamp(),
                    (_num(row["length_mm"]), _num(row["width_mm"]), _num(row["height_mm"])), _num(row["weight_kg"]),
                )
            except (ValueError, KeyError):
                continue
            if parcel_key(pid) and pid not in out:
                out[pid] = rec
    return out


class ReferenceRouter:
    """Same rules as :class:`control.routing.engine.RoutingEngine`, one parcel at a time."""

    def __init__(self, site: Site, plan: SortPlan, records: dict[str, Record], settings: RoutingSettings | None = None) -> None:
        self.settings = settings or RoutingSettings()
        self.site = site
        self.records = records
        self.capacity = {c.id: c.capacity for c in site.chutes}
        self.fallback = {c.id: list(c.fallback) for c in site.chutes}
        self.available = {c.id: True for c in site.chutes}
        self.pending = dict.fromkeys(self.capacity, 0)
        self.filled = dict.fromkeys(self.capacity, 0)
        self.reject = site.reject_chute.id
        kinds = {k: [c.id for c in site.chutes if c.kind == k] for k in ChuteKind}
        self.no_read = kinds[ChuteKind.NO_READ][0] if kinds[ChuteKind.NO_READ] else self.reject
        self.oversize = kinds[ChuteKind.OVERSIZE][0] if kinds[ChuteKind.OVERSIZE] else self.reject
        self.expected: dict[str, int] = {}
        for r in records.values():
            if r.consolidation_key:
                self.expected[r.consolidation_key] = self.expected.get(r.consolidation_key, 0) + 1
        self.sorted: dict[str, int] = {}
        self.group_chute: dict[str, tuple[int, int, int]] = {}  # key -> (chute, rule, pool position)
        self.slot_load: dict[tuple[int, int], int] = {}
        self.set_plan(plan)

    def set_plan(self, plan: SortPlan) -> None:
        self.plan = plan
        self.by_dest = {r.destination_id: i for i, r in enumerate(plan.rules) if r.destination_id}
        self.by_prefix = {(r.country, r.prefix): i for i, r in enumerate(plan.rules) if not r.destination_id}
        self.slot_load = {}
        for key, (chute, _, _) in list(self.group_chute.items()):
            rec = next(r for r in self.records.values() if r.consolidation_key == key)
            rule = self.rule_for(rec.destination_id, rec.country, rec.postal_code)
            pool = list(plan.rules[rule].chutes) if rule >= 0 else []
            pos = pool.index(chute) if chute in pool else -1
            self.group_chute[key] = (chute, rule, pos)
            if pos >= 0:
                self.slot_load[(rule, pos)] = self.slot_load.get((rule, pos), 0) + 1

    def rule_for(self, destination_id: str, country: str, postal: str) -> int:
        if destination_id in self.by_dest:
            return self.by_dest[destination_id]
        p = normalise_postal(postal)
        if p is None or len(country) != 2 or not country.isalpha() or not country.isascii():
            return -1
        for k in range(len(p), -1, -1):
            rule = self.by_prefix.get((country, p[:k]))
            if rule is not None:
                return rule
        return -1

    def _ok(self, c: int) -> bool:
        return c == self.reject or (self.available[c] and self.pending[c] + self.filled[c] < self.capacity[c])

    def _place(self, candidates: list[int], primary: int, base: Reason) -> tuple[int, Reason]:
        for i, c in enumerate(candidates):
            if self._ok(c):
                self.pending[c] += 1
                if i < primary or base >= Reason.NO_RULE:
                    return c, base
                return c, self._why(candidates[0])
        self.pending[self.reject] += 1
        return self.reject, base if base >= Reason.NO_RULE else self._why(candidates[0])

    def _why(self, first: int) -> Reason:
        return Reason.FALLBACK_FULL if self.available[first] else Reason.CHUTE_UNAVAILABLE

    def _chain(self, c: int) -> list[int]:
        return [c, *self.fallback[c]]

    def route(
        self, parcel_id: str | None, now: float, read: int = 0, recirculations: int = 0,
        label: tuple[str, str] | None = None,
    ) -> tuple[int, Reason]:
        """Route one parcel by id (or by its AI 420 ``label`` = (country, postal))."""
        rec = self.records.get(parcel_id) if parcel_id else None
        exc: Reason | None = None
        rule = -1
        if recirculations > self.site.sorter.recirculation_limit:
            exc = Reason.RECIRCULATION_LIMIT
        elif read == 1:
            exc = Reason.NO_READ
        elif read == 2:
            exc = Reason.MULTI_READ
        elif read >= 3:
            exc = Reason.BAD_READ
        elif rec is not None:
            s = self.site.sorter
            limits = (s.max_parcel_length_mm, s.max_parcel_width_mm, s.max_parcel_height_mm)
            values = (*rec.dims, rec.weight)
            if any(v < 0 or math.isinf(v) for v in values):
                exc = Reason.BAD_DATA
            elif any(d > m for d, m in zip(rec.dims, limits, strict=True)) or rec.weight > s.max_parcel_weight_kg:
                exc = Reason.OVERSIZE
            else:
                rule = self.rule_for(rec.destination_id, rec.country, rec.postal_code)
                if rule < 0:
                    exc = Reason.NO_RULE
        elif label is not None:
            rule = self.rule_for("", label[0] or self.settings.home_country, label[1])
            if rule < 0:
                exc = Reason.NO_RULE
        else:
            exc = Reason.UNKNOWN_PARCEL
        if exc is not None:
            target = {Reason.OVERSIZE: self.oversize, Reason.NO_READ: self.no_read,
                      Reason.MULTI_READ: self.no_read, Reason.BAD_READ: self.no_read}.get(exc, self.reject)
            return self._place(self._chain(target), 1, exc)
        r = self.plan.rules[rule]
        candidates = list(r.chutes)
        for c in r.chutes:
            candidates += [f for f in self.fallback[c] if f not in candidates]
        if rec is not None:
            if r.priority_chute and rec.deadline - now < self.settings.priority_margin_s:
                return self._place(self._chain(r.priority_chute), 1, Reason.PRIORITY)
            key = rec.consolidation_key if self.settings.consolidation else ""
            if key:
                if key in self.group_chute:
                    return self._place(self._chain(self.group_chute[key][0]), 1, Reason.CONSOLIDATED)
                best = -1
                for pos, c in enumerate(r.chutes):
                    if self._ok(c) and (best < 0 or self.slot_load.get((rule, pos), 0) < self.slot_load.get((rule, best), 0)):
                        best = pos
                if best >= 0:
                    c = r.chutes[best]
                    self.group_chute[key] = (c, rule, best)
                    self.slot_load[(rule, best)] = self.slot_load.get((rule, best), 0) + 1
                    self.pending[c] += 1
                    return c, Reason.CONSOLIDATED
                return self._place(candidates, len(r.chutes), Reason.CONSOLIDATED)
        return self._place(candidates, len(r.chutes), Reason.SORTED_BY_RULE)

    def confirm(self, parcel_id: str | None, assigned: int, actual: int) -> None:
        self.pending[assigned] = max(0, self.pending[assigned] - 1)
        self.filled[actual] += 1
        rec = self.records.get(parcel_id) if parcel_id else None
        if rec is None or not rec.consolidation_key or not self.settings.consolidation:
            return
        key = rec.consolidation_key
        self.sorted[key] = self.sorted.get(key, 0) + 1
        if self.sorted[key] >= self.expected[key] and key in self.group_chute:
            _, rule, pos = self.group_chute.pop(key)
            if pos >= 0:
                self.slot_load[(rule, pos)] -= 1

    def missed(self, assigned: int) -> None:
        self.pending[assigned] = max(0, self.pending[assigned] - 1)

    def drained(self, chute: int) -> None:
        self.filled[chute] = 0

"""Parcel event counts, kept up to date incrementally: totals since the store began, and
per-minute buckets for the last hours (throughput, read rate, rejects, per chute).

Counting a shift's events afresh four times a second would read millions of rows; instead the
tally reads only the events stored since its last look (by rowid, which only grows), in
chunks of at most ``chunk`` rows, so even the first catch-up over a big store (a few hundred
thousand rows a second) is spread over many short reads and never holds the store thread
long; until it has caught up, the pages say so. Memory is bounded: the totals are
keyed by (kind, reason, chute) and the buckets cover ``keep_s`` seconds.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field

from hmi import queries

__all__ = ["FINAL_KINDS", "FINISHED_KINDS", "READ_FAILURES", "Bucket", "Tally", "rates"]

FINAL_KINDS = ("sorted", "rejected", "lost", "missorted")  # as harness/soak.py counts them
FINISHED_KINDS = ("sorted", "rejected")  # what PackML CurMachSpeed counts
READ_FAILURES = frozenset({"no_read", "multi_read", "bad_read", "decode_late"})  # routing reasons of a failed read


@dataclass(slots=True)
class Bucket:
    """One minute of parcel events."""

    kinds: Counter[str] = field(default_factory=Counter)
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    routed_read_failed: int = 0
    per_chute: Counter[int] = field(default_factory=Counter)  # sorted + rejected, by chute

    def add(self, kind: str, reason: str, chute: int, n: int) -> None:
        self.kinds[kind] += n
        if kind == "rejected":
            self.rejected_by_reason[reason or "-"] += n
        if kind == "routed" and reason in READ_FAILURES:
            self.routed_read_failed += n
        if kind in FINISHED_KINDS:
            self.per_chute[chute] += n


@dataclass(slots=True)
class Tally:
    keep_s: float = 12 * 3600.0
    chunk: int = 50_000  # rows per read: ~0.1 s of the store thread, so pages never wait long
    last_id: int = 0
    totals: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    minutes: dict[int, Bucket] = field(default_factory=dict)

    def advance(self, db: sqlite3.Connection, upto_id: int, now: float, max_chunks: int = 1) -> bool:
        """Read events up to ``upto_id`` (at most ``max_chunks`` chunks); True when caught up."""
        if upto_id < self.last_id:  # the store was replaced by a fresh one: start again
            self.last_id = 0
            self.totals.clear()
            self.minutes.clear()
        since = now - self.keep_s
        for _ in range(max_chunks):
            if self.last_id >= upto_id:
                break
            end = min(upto_id, self.last_id + self.chunk)
            for minute, kind, reason, chute, n in queries.parcel_event_counts(db, self.last_id, end, since):
                self.totals[(kind, reason, chute)] += n
                if minute >= 0:
                    self.minutes.setdefault(minute, Bucket()).add(kind, reason, chute, n)
            self.last_id = end
        first = int(since // 60)
        for m in [m for m in self.minutes if m < first]:
            del self.minutes[m]
        return self.last_id >= upto_id

    # -- questions the pages ask ------------------------------------------------------------
    def window(self, start: float, end: float) -> Bucket:
        """Everything in the minutes from ``start`` to ``end`` (whole minutes: a shift that
        began at 10:03:30 counts from 10:03:00)."""
        out = Bucket()
        lo, hi = int(start // 60), int(end // 60)
        for m, b in self.minutes.items():
            if lo <= m <= hi:
                out.kinds.update(b.kinds)
                out.rejected_by_reason.update(b.rejected_by_reason)
                out.routed_read_failed += b.routed_read_failed
                out.per_chute.update(b.per_chute)
        return out

    def series(self, start: float, end: float) -> list[tuple[int, Bucket]]:
        """One bucket per minute from ``start`` to ``end`` (empty minutes included)."""
        lo, hi = int(start // 60), int(end // 60)
        return [(m * 60, self.minutes.get(m) or Bucket()) for m in range(lo, hi + 1)]

    def by_outcome(self) -> Counter[tuple[str, str]]:
        """Final outcomes since the store began, by (kind, reason)."""
        out: Counter[tuple[str, str]] = Counter()
        for (kind, reason, _c), n in self.totals.items():
            if kind in FINAL_KINDS:
                out[(kind, reason)] += n
        return out

    def by_chute(self) -> Counter[int]:
        out: Counter[int] = Counter()
        for (kind, _r, chute), n in self.totals.items():
            if kind in FINISHED_KINDS:
                out[chute] += n
        return out

    def kind_total(self, kind: str) -> int:
        return sum(n for (k, _r, _c), n in self.totals.items() if k == kind)

    def routed_by_read(self) -> Counter[str]:
        """Routing decisions by what the scan gave: read, or the kind of failure."""
        out: Counter[str] = Counter()
        for (kind, reason, _c), n in self.totals.items():
            if kind == "routed":
                out[reason if reason in READ_FAILURES else "read"] += n
        return out


def rates(b: Bucket, seconds: float) -> dict[str, float | None]:
    """Throughput (finished parcels per hour), read rate and recirculation rate of a window."""
    finished = sum(b.kinds[k] for k in FINISHED_KINDS)
    routed = b.kinds["routed"]
    inducted = b.kinds["inducted"]
    return {
        "per_hour": finished * 3600.0 / seconds if seconds > 0 else 0.0,
        "read_rate": (routed - b.routed_read_failed) / routed if routed else None,
        "recirculation_rate": b.kinds["recirculated"] / inducted if inducted else None,
    }

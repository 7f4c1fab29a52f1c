"""The event store as an outbox: the rows after the relay's cursors, as messages to publish.

Read-only (``mode=ro``): the controller owns the store. Rows are read by row id, which only
grows while the controller writes (one writer, commits in order), so "everything after id N"
is exactly what is still to send.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host.messages import (
    FINAL_KINDS,
    ParcelEvent,
    UnitEvent,
    confirmation,
    encode,
    recirculation,
    unit_message,
)
from host.topics import Topics

__all__ = ["Batch", "Outgoing", "StoreTail"]

PARCEL_STREAM = "parcel_events"
UNIT_STREAM = "unit_events"
PUBLISHED_KINDS = (*FINAL_KINDS, "recirculated")


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes
    retain: bool = False


@dataclass(slots=True)
class Batch:
    """Messages to publish and where the cursors go once the broker has acknowledged them all."""

    messages: list[Outgoing] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    def __bool__(self) -> bool:
        return bool(self.cursors)


class StoreTail:
    def __init__(self, path: Path, topics: Topics) -> None:
        self.path = path
        self.topics = topics
        self._db: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection | None:
        if self._db is None:
            if not self.path.exists():
                return None
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=1.0)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def max_ids(self) -> dict[str, int]:
        db = self._open()
        if db is None:
            return {}
        return {s: int(db.execute(f"SELECT COALESCE(MAX(id), 0) FROM {s}").fetchone()[0])
                for s in (PARCEL_STREAM, UNIT_STREAM)}

    def fetch(self, cursors: dict[str, int], limit: int) -> Batch:
        """Up to ``limit`` rows of each stream after its cursor, as messages. Parcel events that
        are neither final nor a recirculation move the cursor without a message."""
        batch = Batch()
        db = self._open()
        if db is None:
            return batch
        try:
            self._parcels(db, cursors.get(PARCEL_STREAM, 0), limit, batch)
            self._units(db, cursors.get(UNIT_STREAM, 0), limit, batch)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a store the controller has not set up yet
                self.close()
                return Batch()
            raise
        return batch

    def _parcels(self, db: sqlite3.Connection, after: int, limit: int, batch: Batch) -> None:
        rows = db.execute(
            "SELECT id, t, tracking_id, kind, lap, chute, reason, identity, detail, boot_id, plan_version"
            " FROM parcel_events WHERE id > ? ORDER BY id LIMIT ?", (after, limit)).fetchall()
        if not rows:
            return
        sorter = self.topics.sorter
        for r in rows:
            kind = str(r[3])
            if kind not in PUBLISHED_KINDS:
                continue
            e = ParcelEvent(int(r[0]), float(r[1]), int(r[2]), kind, int(r[4]), int(r[5]), str(r[6]), str(r[7]),
                            str(r[8]), int(r[9]), int(r[10]))
            if kind == "recirculated":
                batch.messages.append(Outgoing(self.topics.recirculation, encode(recirculation(sorter, e))))
                batch.counts["total:recirculated"] += 1
            else:
                batch.messages.append(Outgoing(self.topics.confirmation, encode(confirmation(sorter, e))))
                batch.counts[f"total:{kind}"] += 1
                batch.counts[f"reason:{e.reason or '-'}"] += 1
                if e.chute:
                    batch.counts[f"chute:{e.chute}"] += 1
        batch.cursors[PARCEL_STREAM] = int(rows[-1][0])

    def _units(self, db: sqlite3.Connection, after: int, limit: int, batch: Batch) -> None:
        rows = db.execute("SELECT id, t, kind, name, code, detail FROM unit_events WHERE id > ? ORDER BY id LIMIT ?",
                          (after, limit)).fetchall()
        if not rows:
            return
        for r in rows:
            severity, alarm_id = "", None
            if r[2] in ("alarm", "alarm_clear"):
                a = db.execute("SELECT severity, id FROM alarms WHERE name=? AND raised_t <= ? ORDER BY id DESC LIMIT 1",
                               (r[3], r[1] + 1e-6)).fetchone()
                if a is not None:
                    severity, alarm_id = str(a[0]), int(a[1])
            e = UnitEvent(int(r[0]), float(r[1]), str(r[2]), str(r[3]), int(r[4]), str(r[5]), severity, alarm_id)
            category, payload = unit_message(self.topics.sorter, e)
            batch.messages.append(Outgoing(self._unit_topic(category), encode(payload)))
        batch.cursors[UNIT_STREAM] = int(rows[-1][0])

    def _unit_topic(self, category: str) -> str:
        return {"state": self.topics.state, "alarm": self.topics.alarm}.get(category, self.topics.event)

    def health(self) -> dict[str, Any]:
        """The controller's last health record (``meta.health``), or {}."""
        db = self._open()
        if db is None:
            return {}
        try:
            row = db.execute("SELECT value FROM meta WHERE key='health'").fetchone()
            data = json.loads(row[0]) if row and row[0] else {}
        except (sqlite3.Error, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

"""Read-only SQL against the event store (schema version 2), one function per question.

Every query here is cheap on a store that grows all shift: it uses a primary key, an index or
``MAX(rowid)``, or reads a small table (meta, alarms, plans, commands). The one exception,
`parcel_event_counts`, reads a bounded id range and is only used incrementally (`hmi.tally`).
All functions take an open connection and return plain data; they never write.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from control.store import AlarmRow

__all__ = [
    "Fingerprint",
    "TraceEvent",
    "TraceParcel",
    "alarm_history",
    "command",
    "commands",
    "fingerprint",
    "has_table",
    "health_records",
    "last_unit_event",
    "meta",
    "meta_json",
    "open_alarms",
    "parcel_event_counts",
    "plan_text",
    "plans",
    "trace",
]

_ALARM_COLS = ("id, name, code, severity, detail, raised_t, cleared_t, acked_t, acked_by, shelved_until,"
               " shelved_by, shelve_reason")


def has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row[0])


def meta_json(db: sqlite3.Connection, key: str) -> Any:
    """A meta value that holds JSON; None when absent or not JSON (an older service wrote it)."""
    text = meta(db, key)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The newest row of each growing table: a change says which page data may have changed."""

    parcel_event: int
    unit_event: int
    alarm: int
    command: int
    plan: int


def fingerprint(db: sqlite3.Connection) -> Fingerprint:
    row = db.execute(
        "SELECT (SELECT MAX(id) FROM parcel_events), (SELECT MAX(id) FROM unit_events),"
        " (SELECT MAX(id) FROM alarms), (SELECT MAX(id) FROM commands), (SELECT MAX(version) FROM plans)"
    ).fetchone()
    return Fingerprint(*(int(v or 0) for v in row))


def last_unit_event(db: sqlite3.Connection, kind: str) -> tuple[float, str, str] | None:
    """The newest unit event of ``kind``: (t, name, detail). It reads backwards from the newest
    row; state, mode and service events are frequent enough that this stops early."""
    row = db.execute(
        "SELECT t, name, detail FROM unit_events WHERE kind=? ORDER BY id DESC LIMIT 1", (kind,)
    ).fetchone()
    return None if row is None else (float(row[0]), str(row[1]), str(row[2]))


def parcel_event_counts(
    db: sqlite3.Connection, after_id: int, upto_id: int, since_t: float
) -> list[tuple[int, str, str, int, int]]:
    """Events with ``after_id < id <= upto_id`` counted by (minute, kind, reason, chute), in one
    pass; events older than ``since_t`` all count under minute -1. Reads by rowid range: the
    cost is bounded by the range, not by the table."""
    rows = db.execute(
        "SELECT CASE WHEN t >= ? THEN CAST(t / 60 AS INTEGER) ELSE -1 END AS m, kind, reason, chute, COUNT(*)"
        " FROM parcel_events WHERE id > ? AND id <= ? GROUP BY m, kind, reason, chute",
        (since_t, after_id, upto_id))
    return [(int(m), str(k), str(r), int(c), int(n)) for m, k, r, c, n in rows]


# -- alarms --------------------------------------------------------------------------------
def open_alarms(db: sqlite3.Connection, limit: int = 500) -> list[AlarmRow]:
    """Alarms that still need someone (ISA-18.2): active, or cleared but unacknowledged."""
    rows = db.execute(
        f"SELECT {_ALARM_COLS} FROM alarms WHERE cleared_t IS NULL OR acked_t IS NULL ORDER BY id DESC LIMIT ?",
        (limit,))
    return [AlarmRow(*r) for r in rows]


def alarm_history(db: sqlite3.Connection, search: str = "", limit: int = 1000) -> list[AlarmRow]:
    """Every alarm, newest first; ``search`` matches name, detail, who acknowledged or shelved."""
    sql = f"SELECT {_ALARM_COLS} FROM alarms"
    args: list[object] = []
    if search:
        like = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        sql += (" WHERE name LIKE ? ESCAPE '\\' OR detail LIKE ? ESCAPE '\\' OR acked_by LIKE ? ESCAPE '\\'"
                " OR shelved_by LIKE ? ESCAPE '\\' OR shelve_reason LIKE ? ESCAPE '\\'")
        args += [like] * 5
    sql += " ORDER BY id DESC LIMIT ?"
    return [AlarmRow(*r) for r in db.execute(sql, (*args, limit))]


# -- commands and plans ----------------------------------------------------------------------
def _command_row(r: tuple[Any, ...]) -> dict[str, object]:
    try:
        args = json.loads(r[6]) if r[6] else {}
    except ValueError:
        args = {}
    # a plan's or manifest's text can be megabytes: the list shows its size, not the text
    args = {k: (f"<{len(v)} characters>" if isinstance(v, str) and len(v) > 200 else v) for k, v in args.items()}
    return {"id": int(r[0]), "t": float(r[1]), "command": str(r[2]), "done": bool(r[3]), "result": str(r[4]),
            "user": str(r[5]), "args": args}


def commands(db: sqlite3.Connection, limit: int = 50, after_id: int = 0) -> list[dict[str, object]]:
    rows = db.execute(
        "SELECT id, t, command, done, result, user, args FROM commands WHERE id > ? ORDER BY id DESC LIMIT ?",
        (after_id, limit))
    return [_command_row(r) for r in rows]


def command(db: sqlite3.Connection, command_id: int) -> dict[str, object] | None:
    r = db.execute("SELECT id, t, command, done, result, user, args FROM commands WHERE id=?",
                   (command_id,)).fetchone()
    return None if r is None else _command_row(r)


def commands_by_id(db: sqlite3.Connection, ids: list[int]) -> list[dict[str, object]]:
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = db.execute(f"SELECT id, t, command, done, result, user, args FROM commands WHERE id IN ({marks})", ids)
    return [_command_row(r) for r in rows]


def plans(db: sqlite3.Connection, limit: int = 100) -> list[dict[str, object]]:
    """Plan versions newest first, without their text."""
    rows = db.execute(
        "SELECT version, t, user, source, state, detail, LENGTH(plan_csv), LENGTH(settings_yaml) FROM plans"
        " ORDER BY version DESC LIMIT ?", (limit,))
    return [{"version": int(v), "t": float(t), "user": str(u), "source": str(s), "state": str(st),
             "detail": str(d), "plan_chars": int(pc or 0), "settings_chars": int(sc or 0)}
            for v, t, u, s, st, d, pc, sc in rows]


def plan_text(db: sqlite3.Connection, version: int | None = None) -> tuple[int, str, str, str] | None:
    """(version, source, plan_csv, settings_yaml) of ``version``, or of the active plan."""
    if version is None:
        row = db.execute("SELECT version, source, plan_csv, settings_yaml FROM plans WHERE state='active'"
                         " ORDER BY version DESC LIMIT 1").fetchone()
    else:
        row = db.execute("SELECT version, source, plan_csv, settings_yaml FROM plans WHERE version=?",
                         (version,)).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]), str(row[3]))


# -- health records (the trends' table, written every 10 s by newer services) -----------------
def health_records(db: sqlite3.Connection, since_t: float, limit: int = 10_000) -> list[dict[str, Any]]:
    if not has_table(db, "health"):
        return []
    out: list[dict[str, Any]] = []
    for t, record in db.execute("SELECT t, record FROM health WHERE t >= ? ORDER BY t LIMIT ?", (since_t, limit)):
        try:
            rec = json.loads(record)
        except ValueError:
            continue
        if isinstance(rec, dict):
            rec.setdefault("t", float(t))
            out.append(rec)
    return out


# -- parcel trace ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TraceEvent:
    id: int
    t: float
    kind: str
    lap: int
    chute: int
    reason: str
    identity: str
    detail: str
    plan_version: int


@dataclass(frozen=True, slots=True)
class TraceParcel:
    boot_id: int
    tracking_id: int
    state: str
    final: bool
    lap: int
    chute: int
    reason: str
    identity: str
    scan_status: str
    length: int
    inducted_t: float
    updated_t: float
    plan_version: int
    events: tuple[TraceEvent, ...]


_PARCEL_COLS = ("boot_id, tracking_id, state, final, lap, chute, reason, identity, scan_status, trail - lead,"
                " inducted_t, updated_t, plan_version")


def _boot_ids(db: sqlite3.Connection) -> list[int]:
    """Distinct boot ids by skipping along the primary key (one index seek per boot id)."""
    rows = db.execute(
        "WITH RECURSIVE b(id) AS (SELECT MIN(boot_id) FROM parcels UNION ALL"
        " SELECT (SELECT MIN(boot_id) FROM parcels WHERE boot_id > b.id) FROM b WHERE b.id IS NOT NULL)"
        " SELECT id FROM b WHERE id IS NOT NULL LIMIT 10000")
    return [int(r[0]) for r in rows]


def trace(db: sqlite3.Connection, query: str, limit: int = 20) -> list[TraceParcel]:
    """Parcels matching a barcode identity (exact, any case) or a tracking id (``123`` or
    ``boot:123``), newest first, each with every lifecycle event stored for it."""
    q = query.strip()
    if not q:
        return []
    rows: list[tuple[Any, ...]] = []
    for ident in dict.fromkeys((q, q.upper())):
        rows += db.execute(f"SELECT {_PARCEL_COLS} FROM parcels WHERE identity=? LIMIT ?", (ident, limit)).fetchall()
    boot, _, tid = q.rpartition(":")
    if tid.isdigit() and (not boot or boot.isdigit()):
        boots = [int(boot)] if boot else _boot_ids(db)
        for b in boots:
            rows += db.execute(f"SELECT {_PARCEL_COLS} FROM parcels WHERE boot_id=? AND tracking_id=?",
                               (b, int(tid))).fetchall()
    seen: set[tuple[int, int]] = set()
    out: list[TraceParcel] = []
    for r in sorted(rows, key=lambda r: -float(r[10] or r[11] or 0)):
        key = (int(r[0]), int(r[1]))
        if key in seen:
            continue
        seen.add(key)
        events = tuple(
            TraceEvent(int(e[0]), float(e[1]), str(e[2]), int(e[3]), int(e[4]), str(e[5]), str(e[6]), str(e[7]),
                       int(e[8]))
            for e in db.execute(
                "SELECT id, t, kind, lap, chute, reason, identity, detail, plan_version FROM parcel_events"
                " WHERE boot_id=? AND tracking_id=? ORDER BY id", key)
        )
        out.append(TraceParcel(key[0], key[1], str(r[2]), bool(r[3]), int(r[4]), int(r[5]), str(r[6]), str(r[7]),
                               str(r[8]), int(r[9]), float(r[10]), float(r[11]), int(r[12]), events))
        if len(out) >= limit:
            break
    return out

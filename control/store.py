"""The event store: SQLite in WAL mode; every PLC event, parcel outcome and unit state change.

Contract with the PLC rings: a cycle's events and everything decided from them are committed
in ONE transaction, and only then are the rings acknowledged. Ring events are keyed on
(plc, stream, seq) with INSERT OR IGNORE, so replaying a ring after a reconnect or a restart
stores nothing twice.

Durability: ``synchronous=FULL`` by default. In WAL mode NORMAL survives a crash of this
process but may lose the last commits on power loss or an OS crash; since the PLC may
overwrite a ring slot as soon as we ack it, an acked event lost that way would be lost for
good. FULL syncs the WAL on every commit; we commit once per cycle that has something to
store, not per row, so the fsync cost is paid at most ~100 times a second.

The store is synchronous and not thread-safe: the service owns it from one writer thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["Batch", "EventStore", "ParcelRow", "StoreStatus"]

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS ring_events (
    plc TEXT NOT NULL, stream TEXT NOT NULL, seq INTEGER NOT NULL,
    t REAL NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (plc, stream, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parcels (
    boot_id INTEGER NOT NULL DEFAULT 0, tracking_id INTEGER NOT NULL,
    state TEXT NOT NULL, final INTEGER NOT NULL DEFAULT 0,
    lap INTEGER NOT NULL DEFAULT 0, chute INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
    identity TEXT NOT NULL DEFAULT '', scan_status TEXT NOT NULL DEFAULT '',
    lead INTEGER NOT NULL DEFAULT 0, trail INTEGER NOT NULL DEFAULT 0,
    inducted_t REAL NOT NULL DEFAULT 0, updated_t REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (boot_id, tracking_id)
);
CREATE INDEX IF NOT EXISTS parcels_open ON parcels(final) WHERE final = 0;
CREATE TABLE IF NOT EXISTS parcel_events (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, tracking_id INTEGER NOT NULL, kind TEXT NOT NULL,
    lap INTEGER NOT NULL, chute INTEGER NOT NULL, reason TEXT NOT NULL, identity TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '', boot_id INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS parcel_events_key ON parcel_events(boot_id, tracking_id);
CREATE TABLE IF NOT EXISTS unit_events (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    code INTEGER NOT NULL DEFAULT 0, detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, command TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0, result TEXT NOT NULL DEFAULT ''
);
"""

# Version 0 -> 1: a parcel is keyed by the conveyor PLC's boot id and its tracking id (a PLC
# that restarts numbers its parcels from 1 again; keyed by tracking id alone, new parcels
# overwrote the outcomes of old ones). Rows from version 0 get boot id 0.
_MIGRATE_0_1 = """
CREATE TABLE parcels_v1 (
    boot_id INTEGER NOT NULL DEFAULT 0, tracking_id INTEGER NOT NULL,
    state TEXT NOT NULL, final INTEGER NOT NULL DEFAULT 0,
    lap INTEGER NOT NULL DEFAULT 0, chute INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
    identity TEXT NOT NULL DEFAULT '', scan_status TEXT NOT NULL DEFAULT '',
    lead INTEGER NOT NULL DEFAULT 0, trail INTEGER NOT NULL DEFAULT 0,
    inducted_t REAL NOT NULL DEFAULT 0, updated_t REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (boot_id, tracking_id)
);
INSERT INTO parcels_v1 (boot_id, tracking_id, state, final, lap, chute, reason, identity, scan_status,
                        lead, trail, inducted_t, updated_t)
    SELECT 0, tracking_id, state, final, lap, chute, reason, identity, scan_status, lead, trail,
           inducted_t, updated_t FROM parcels;
DROP TABLE parcels;
ALTER TABLE parcels_v1 RENAME TO parcels;
ALTER TABLE parcel_events ADD COLUMN boot_id INTEGER NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS parcel_events_tid;
"""


@dataclass(slots=True)
class ParcelRow:
    """A parcel's durable summary: enough to rebuild its tracking slot after a restart."""

    tracking_id: int
    state: str
    final: bool = False
    lap: int = 0
    chute: int = 0
    reason: str = ""
    identity: str = ""
    scan_status: str = ""
    lead: int = 0
    trail: int = 0
    inducted_t: float = 0.0
    updated_t: float = 0.0
    boot_id: int = 0  # the conveyor PLC's boot id when it gave the tracking id

    @property
    def key(self) -> tuple[int, int]:
        return (self.boot_id, self.tracking_id)


@dataclass(slots=True)
class Batch:
    """Everything one cycle wants durable; committed as one transaction."""

    ring_events: list[tuple[str, str, int, float, dict[str, int]]] = field(default_factory=list)
    parcels: dict[tuple[int, int], ParcelRow] = field(default_factory=dict)
    parcel_events: list[tuple[float, int, str, int, int, str, str, str, int]] = field(default_factory=list)
    unit_events: list[tuple[float, str, str, int, str]] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    commands_done: list[tuple[str, int]] = field(default_factory=list)  # (result, command id)
    adopt_boot: int | None = None  # rows of boot 0 (a store from before boot ids) take this boot id

    def __bool__(self) -> bool:
        return bool(
            self.ring_events or self.parcels or self.parcel_events or self.unit_events or self.meta
            or self.commands_done or self.adopt_boot is not None
        )

    def ring(self, plc: str, stream: str, seq: int, t: float, data: dict[str, int]) -> None:
        self.ring_events.append((plc, stream, seq, t, data))

    def parcel(self, row: ParcelRow) -> None:
        self.parcels[row.key] = row

    def parcel_event(
        self, t: float, tid: int, kind: str, lap: int = 0, chute: int = 0, reason: str = "",
        identity: str = "", detail: str = "", boot_id: int = 0,
    ) -> None:
        self.parcel_events.append((t, tid, kind, lap, chute, reason, identity, detail, boot_id))

    def unit_event(self, t: float, kind: str, name: str, code: int = 0, detail: str = "") -> None:
        self.unit_events.append((t, kind, name, code, detail))

    def merge(self, other: Batch) -> None:
        """Fold a failed batch into the next one so a retry loses nothing."""
        self.ring_events[:0] = other.ring_events
        self.parcels = {**other.parcels, **self.parcels}
        self.parcel_events[:0] = other.parcel_events
        self.unit_events[:0] = other.unit_events
        self.meta = {**other.meta, **self.meta}
        self.commands_done[:0] = other.commands_done
        if self.adopt_boot is None:
            self.adopt_boot = other.adopt_boot


@dataclass(slots=True)
class StoreStatus:
    """What `sortctl status` shows."""

    unit_state: str
    unit_mode: str
    inducted: int
    in_flight: int
    by_state: dict[str, int]
    by_chute: dict[int, int]
    by_reason: dict[str, int]
    recirculations: int
    active_alarms: dict[str, str]
    last_seqs: dict[str, int]
    service: str = "unknown"  # "running" or "stopped", from the service's start/stop events
    cur_mach_speed: float = 0.0  # PackML CurMachSpeed: parcels/h finished in the last minute stored
    health: dict[str, object] = field(default_factory=dict)  # the service's last health record (every 10 s)

    def as_json(self) -> dict[str, object]:
        return {
            "unit_state": self.unit_state,
            "unit_mode": self.unit_mode,
            "inducted": self.inducted,
            "in_flight": self.in_flight,
            "by_state": self.by_state,
            "by_chute": {str(k): v for k, v in self.by_chute.items()},
            "by_reason": self.by_reason,
            "recirculations": self.recirculations,
            "active_alarms": self.active_alarms,
            "last_seqs": self.last_seqs,
            "service": self.service,
            "cur_mach_speed": self.cur_mach_speed,
            "health": self.health,
        }


class EventStore:
    def __init__(
        self, path: str | Path, synchronous: Literal["FULL", "NORMAL"] = "FULL", *, readonly: bool = False,
        busy_timeout_s: float = 0.05,
    ) -> None:
        self.path = Path(path)
        if readonly:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # a writer waits at most ``busy_timeout_s`` for a lock someone else holds (a backup, an
            # operator's command): the cycle must not stall; a failed commit is retried next cycle
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=busy_timeout_s)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            # a current store is opened without writing (it may be locked by a backup right now:
            # the service must still start; its commits are retried until the lock is gone)
            if int(self._db.execute("PRAGMA user_version").fetchone()[0]) < SCHEMA_VERSION:
                self._migrate()
                self._db.executescript(SCHEMA)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        """Bring a store written by an older version up to ``SCHEMA_VERSION``, in one transaction."""
        db = self._db
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        has_parcels = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='parcels'").fetchone()
        if version >= SCHEMA_VERSION or not has_parcels:
            return  # current, or a new file (the schema script makes it)
        cols = {r[1] for r in db.execute("PRAGMA table_info(parcels)")}
        db.execute("BEGIN IMMEDIATE")
        try:
            if "boot_id" not in cols:
                for stmt in _MIGRATE_0_1.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- writing ---------------------------------------------------------------------------
    def commit(self, batch: Batch) -> int:
        """Store a cycle's batch in one transaction; returns how many ring events were new.

        Raises sqlite3.Error on failure, after rolling back: nothing of the batch is stored,
        and the caller must neither ack nor drop it.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO ring_events (plc, stream, seq, t, data) VALUES (?,?,?,?,?)",
                [(p, s, q, t, json.dumps(d, separators=(",", ":"))) for p, s, q, t, d in batch.ring_events],
            )
            new = db.total_changes - before
            if batch.adopt_boot is not None:
                db.execute("UPDATE parcels SET boot_id=? WHERE boot_id=0", (batch.adopt_boot,))
                db.execute("UPDATE parcel_events SET boot_id=? WHERE boot_id=0", (batch.adopt_boot,))
            if batch.parcels:
                db.executemany(
                    "INSERT INTO parcels (boot_id, tracking_id, state, final, lap, chute, reason, identity,"
                    " scan_status, lead, trail, inducted_t, updated_t) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT(boot_id, tracking_id) DO UPDATE SET state=excluded.state, final=excluded.final,"
                    " lap=excluded.lap, chute=excluded.chute, reason=excluded.reason,"
                    " identity=CASE WHEN excluded.identity != '' THEN excluded.identity ELSE identity END,"
                    " scan_status=excluded.scan_status,"
                    " lead=excluded.lead, trail=excluded.trail, updated_t=excluded.updated_t",
                    [
                        (r.boot_id, r.tracking_id, r.state, int(r.final), r.lap, r.chute, r.reason, r.identity,
                         r.scan_status, r.lead, r.trail, r.inducted_t, r.updated_t)
                        for r in batch.parcels.values()
                    ],
                )
            if batch.parcel_events:
                db.executemany(
                    "INSERT INTO parcel_events (t, tracking_id, kind, lap, chute, reason, identity, detail,"
                    " boot_id) VALUES (?,?,?,?,?,?,?,?,?)",
                    batch.parcel_events,
                )
            if batch.unit_events:
                db.executemany(
                    "INSERT INTO unit_events (t, kind, name, code, detail) VALUES (?,?,?,?,?)", batch.unit_events
                )
            if batch.meta:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    list(batch.meta.items()),
                )
            if batch.commands_done:
                db.executemany("UPDATE commands SET done=1, result=? WHERE id=?", batch.commands_done)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return new

    def add_command(self, command: str, t: float) -> int:
        """An operator command for the running service (it polls this table)."""
        cur = self._db.execute("INSERT INTO commands (t, command) VALUES (?, ?)", (t, command))
        return int(cur.lastrowid or 0)

    def pending_commands(self) -> list[tuple[int, str]]:
        return [(int(i), str(c)) for i, c in self._db.execute("SELECT id, command FROM commands WHERE done=0 ORDER BY id")]

    def command_result(self, command_id: int) -> tuple[bool, str]:
        row = self._db.execute("SELECT done, result FROM commands WHERE id=?", (command_id,)).fetchone()
        return (bool(row[0]), str(row[1])) if row else (False, "")

    # -- reading -----------------------------------------------------------------------------
    def last_seq(self, plc: str, stream: str) -> int:
        row = self._db.execute(
            "SELECT MAX(seq) FROM ring_events WHERE plc=? AND stream=?", (plc, stream)
        ).fetchone()
        return int(row[0] or 0)

    def last_seqs(self) -> dict[str, int]:
        rows = self._db.execute("SELECT plc, stream, MAX(seq) FROM ring_events GROUP BY plc, stream")
        return {f"{p}.{s}": int(q) for p, s, q in rows}

    def has_ring_event(self, plc: str, stream: str, seq: int) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM ring_events WHERE plc=? AND stream=? AND seq=?", (plc, stream, seq)
        ).fetchone()
        return row is not None

    def ring_events(self, plc: str, stream: str) -> list[tuple[int, dict[str, int]]]:
        rows = self._db.execute(
            "SELECT seq, data FROM ring_events WHERE plc=? AND stream=? ORDER BY seq", (plc, stream)
        )
        return [(int(q), json.loads(d)) for q, d in rows]

    def parcels(self, *, open_only: bool = False) -> list[ParcelRow]:
        sql = (
            "SELECT tracking_id, state, final, lap, chute, reason, identity, scan_status, lead, trail,"
            " inducted_t, updated_t, boot_id FROM parcels"
        )
        if open_only:
            sql += " WHERE final = 0"
        return [
            ParcelRow(int(r[0]), r[1], bool(r[2]), int(r[3]), int(r[4]), r[5], r[6], r[7], int(r[8]),
                      int(r[9]), float(r[10]), float(r[11]), int(r[12]))
            for r in self._db.execute(sql + " ORDER BY boot_id, tracking_id")
        ]

    def count_parcels(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM parcels").fetchone()[0])

    def parcel_events(
        self, tracking_id: int | None = None, boot_id: int | None = None
    ) -> list[tuple[float, int, str, int, int, str, str, int]]:
        """(t, tracking id, kind, lap, chute, reason, identity, boot id) in the order stored."""
        sql = "SELECT t, tracking_id, kind, lap, chute, reason, identity, boot_id FROM parcel_events"
        where: list[str] = []
        args: list[int] = []
        if tracking_id is not None:
            where.append("tracking_id=?")
            args.append(tracking_id)
        if boot_id is not None:
            where.append("boot_id=?")
            args.append(boot_id)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [tuple(r) for r in self._db.execute(sql + " ORDER BY id", args)]

    def unit_events(self, kind: str | None = None) -> list[tuple[float, str, str, int, str]]:
        sql = "SELECT t, kind, name, code, detail FROM unit_events"
        args: tuple[str, ...] = ()
        if kind is not None:
            sql += " WHERE kind=?"
            args = (kind,)
        return [tuple(r) for r in self._db.execute(sql + " ORDER BY id", args)]

    def meta(self, key: str, default: str = "") -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else default

    def active_alarms(self) -> dict[str, str]:
        active: dict[str, str] = {}
        for _t, kind, name, _code, detail in self.unit_events():
            if kind == "alarm":
                active[name] = detail
            elif kind == "alarm_clear":
                active.pop(name, None)
        return active

    def finished_per_hour(self, window_s: float = 60.0) -> float:
        """Parcels given a final outcome (sorted or rejected) per hour, over the last
        ``window_s`` seconds of stored events: the measured machine speed (PackML CurMachSpeed)."""
        row = self._db.execute(
            "SELECT MAX(t) FROM parcel_events WHERE kind IN ('sorted', 'rejected')"
        ).fetchone()
        if row is None or row[0] is None:
            return 0.0
        n = self._db.execute(
            "SELECT COUNT(*) FROM parcel_events WHERE kind IN ('sorted', 'rejected') AND t > ?",
            (float(row[0]) - window_s,),
        ).fetchone()[0]
        return float(n) * 3600.0 / window_s

    def status(self) -> StoreStatus:
        db = self._db
        states = list(db.execute("SELECT name FROM unit_events WHERE kind='state' ORDER BY id DESC LIMIT 1"))
        modes = list(db.execute("SELECT name FROM unit_events WHERE kind='mode' ORDER BY id DESC LIMIT 1"))
        svc = list(db.execute("SELECT name FROM unit_events WHERE kind='service' ORDER BY id DESC LIMIT 1"))
        by_state = dict(db.execute("SELECT state, COUNT(*) FROM parcels GROUP BY state").fetchall())
        by_chute = {
            int(c): int(n)
            for c, n in db.execute(
                "SELECT chute, COUNT(*) FROM parcels WHERE state IN ('sorted','rejected') GROUP BY chute"
            )
        }
        by_reason = dict(
            db.execute("SELECT reason, COUNT(*) FROM parcels WHERE final=1 GROUP BY reason").fetchall()
        )
        recirc = db.execute("SELECT COUNT(*) FROM parcel_events WHERE kind='recirculated'").fetchone()[0]
        total = sum(by_state.values())
        in_flight = db.execute("SELECT COUNT(*) FROM parcels WHERE final=0").fetchone()[0]
        return StoreStatus(
            cur_mach_speed=self.finished_per_hour(),
            unit_state=states[0][0] if states else "UNKNOWN",
            unit_mode=modes[0][0] if modes else "PRODUCTION",
            inducted=int(total),
            in_flight=int(in_flight),
            by_state={str(k): int(v) for k, v in by_state.items()},
            by_chute=by_chute,
            by_reason={str(k): int(v) for k, v in by_reason.items()},
            recirculations=int(recirc),
            active_alarms=self.active_alarms(),
            last_seqs=self.last_seqs(),
            service={"start": "running", "stop": "stopped"}.get(svc[0][0], "unknown") if svc else "unknown",
            health=json.loads(self.meta("health", "{}") or "{}"),
        )


def count_states(rows: Iterable[ParcelRow]) -> Counter[str]:
    return Counter(r.state for r in rows)

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

from control.store.batch import (
    AlarmAck,
    AlarmClear,
    AlarmRaise,
    AlarmShelve,
    Batch,
    ParcelRow,
    PlanRow,
)
from control.store.schema import SCHEMA_VERSION, migrate

__all__ = [
    "SCHEMA_VERSION",
    "AlarmAck",
    "AlarmClear",
    "AlarmRaise",
    "AlarmRow",
    "AlarmShelve",
    "Batch",
    "Command",
    "EventStore",
    "ParcelRow",
    "PlanRow",
    "StoreStatus",
]

@dataclass(frozen=True, slots=True)
class Command:
    """An operator command waiting for the service."""

    id: int
    name: str
    user: str
    args: dict[str, object]


@dataclass(frozen=True, slots=True)
class AlarmRow:
    """One alarm's life (ISA-18.2): raised, maybe acknowledged (by whom), maybe cleared, maybe shelved."""

    id: int
    name: str
    code: int
    severity: str
    detail: str
    raised_t: float
    cleared_t: float | None
    acked_t: float | None
    acked_by: str
    shelved_until: float | None
    shelved_by: str
    shelve_reason: str

    def state(self, now: float) -> str:
        """``unack_active``, ``ack_active``, ``unack_cleared``, ``closed``, or ``shelved``."""
        if self.shelved_until is not None and now < self.shelved_until and self.cleared_t is None:
            return "shelved"
        if self.cleared_t is None:
            return "ack_active" if self.acked_t is not None else "unack_active"
        return "closed" if self.acked_t is not None else "unack_cleared"


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
    health: dict[str, object] = field(default_factory=dict)  # the service's last health record (every second)
    plan_version: int = 0  # the active sort plan version
    chutes_out: dict[str, dict[str, object]] = field(default_factory=dict)  # chute id -> who took it out, why

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
            "plan_version": self.plan_version,
            "chutes_out": self.chutes_out,
        }


class EventStore:
    def __init__(
        self, path: str | Path, synchronous: Literal["FULL", "NORMAL"] = "FULL", *, readonly: bool = False,
        busy_timeout_s: float = 0.05, autocheckpoint: bool = True,
    ) -> None:
        """``autocheckpoint=False``: commits never checkpoint the WAL; the owner runs a
        `Checkpointer` (the service does, so that no commit on a decision's path pays for one)."""
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
            if not autocheckpoint:
                self._db.execute("PRAGMA wal_autocheckpoint=0")
            # a current store is opened without writing (it may be locked by a backup right now:
            # the service must still start; its commits are retried until the lock is gone)
            migrate(self._db)

    def close(self) -> None:
        self._db.close()

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
                    " scan_status, lead, trail, inducted_t, updated_t, plan_version)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT(boot_id, tracking_id) DO UPDATE SET plan_version=excluded.plan_version, state=excluded.state, final=excluded.final,"
                    " lap=excluded.lap, chute=excluded.chute, reason=excluded.reason,"
                    " identity=CASE WHEN excluded.identity != '' THEN excluded.identity ELSE identity END,"
                    " scan_status=excluded.scan_status,"
                    " lead=excluded.lead, trail=excluded.trail, updated_t=excluded.updated_t",
                    [
                        (r.boot_id, r.tracking_id, r.state, int(r.final), r.lap, r.chute, r.reason, r.identity,
                         r.scan_status, r.lead, r.trail, r.inducted_t, r.updated_t, r.plan_version)
                        for r in batch.parcels.values()
                    ],
                )
            if batch.parcel_events:
                db.executemany(
                    "INSERT INTO parcel_events (t, tracking_id, kind, lap, chute, reason, identity, detail,"
                    " boot_id, plan_version) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
            for op in batch.alarm_ops:
                _apply_alarm(db, op)
            if batch.plans:
                db.executemany(
                    "INSERT INTO plans (version, t, user, source, plan_csv, settings_yaml, state, detail)"
                    " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(version) DO UPDATE SET state=excluded.state,"
                    " detail=excluded.detail",
                    [(p.version, p.t, p.user, p.source, p.plan_csv, p.settings_yaml, p.state, p.detail)
                     for p in batch.plans],
                )
            if batch.health:
                db.executemany("INSERT INTO health (t, record) VALUES (?,?)", batch.health)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return new

    def add_command(self, command: str, t: float, *, user: str = "", args: dict[str, object] | None = None) -> int:
        """An operator command for the running service (it polls this table); ``user`` is who
        sent it, ``args`` its arguments (a chute id, a plan's text, ...), stored as JSON."""
        cur = self._db.execute(
            "INSERT INTO commands (t, command, user, args) VALUES (?, ?, ?, ?)",
            (t, command, user, json.dumps(args, separators=(",", ":")) if args else ""),
        )
        return int(cur.lastrowid or 0)

    def pending_commands(self) -> list[Command]:
        return [
            Command(int(i), str(c), str(u), json.loads(a) if a else {})
            for i, c, u, a in self._db.execute("SELECT id, command, user, args FROM commands WHERE done=0 ORDER BY id")
        ]

    def commands(self, limit: int = 200) -> list[tuple[int, float, str, str, bool, str]]:
        """The latest commands, newest first: (id, t, command, user, done, result)."""
        rows = self._db.execute(
            "SELECT id, t, command, user, done, result FROM commands ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [(int(i), float(t), str(c), str(u), bool(d), str(r)) for i, t, c, u, d, r in rows]

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
            " inducted_t, updated_t, boot_id, plan_version FROM parcels"
        )
        if open_only:
            sql += " WHERE final = 0"
        return [
            ParcelRow(int(r[0]), r[1], bool(r[2]), int(r[3]), int(r[4]), r[5], r[6], r[7], int(r[8]),
                      int(r[9]), float(r[10]), float(r[11]), int(r[12]), int(r[13]))
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
        """Alarms raised and not cleared: name -> detail."""
        return {a.name: a.detail for a in self.alarms(open_only=True) if a.cleared_t is None}

    def alarms(self, *, open_only: bool = False, limit: int = 1000, search: str = "") -> list[AlarmRow]:
        """Alarms newest first. ``open_only``: those that still need someone - active, or cleared
        but not acknowledged (ISA-18.2: unacknowledged, acknowledged active, unacknowledged
        returned to normal)."""
        sql = ("SELECT id, name, code, severity, detail, raised_t, cleared_t, acked_t, acked_by, shelved_until,"
               " shelved_by, shelve_reason FROM alarms")
        where, args = [], []
        if open_only:
            where.append("(cleared_t IS NULL OR acked_t IS NULL)")
        if search:
            where.append("(name LIKE ? OR detail LIKE ? OR acked_by LIKE ?)")
            args += [f"%{search}%"] * 3
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        return [AlarmRow(*r) for r in self._db.execute(sql, (*args, limit))]

    def health_history(self, since: float = 0.0) -> list[tuple[float, dict[str, object]]]:
        """The service's health records (one every 10 s) from ``since`` on, oldest first."""
        return [(float(t), json.loads(r)) for t, r in
                self._db.execute("SELECT t, record FROM health WHERE t >= ? ORDER BY id", (since,))]

    def plans(self) -> list[PlanRow]:
        """Every sort plan version the service took or refused, newest first."""
        return [PlanRow(*r) for r in self._db.execute(
            "SELECT version, t, user, source, plan_csv, settings_yaml, state, detail FROM plans ORDER BY version DESC"
        )]

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
            plan_version=int((db.execute("SELECT MAX(version) FROM plans WHERE state='active'").fetchone() or [0])[0]
                             or 0),
            chutes_out=json.loads(self.meta("chutes_out", "{}") or "{}"),
        )


def count_states(rows: Iterable[ParcelRow]) -> Counter[str]:
    return Counter(r.state for r in rows)


def _apply_alarm(db: sqlite3.Connection, op: AlarmRaise | AlarmClear | AlarmAck | AlarmShelve) -> None:
    if isinstance(op, AlarmRaise):
        # raised again while still active (a restarted service sees the same fault): the same alarm
        cur = db.execute("UPDATE alarms SET detail=? WHERE name=? AND cleared_t IS NULL", (op.detail, op.name))
        if cur.rowcount == 0:
            db.execute("INSERT INTO alarms (name, code, severity, detail, raised_t) VALUES (?,?,?,?,?)",
                       (op.name, op.code, op.severity, op.detail, op.t))
    elif isinstance(op, AlarmClear):
        db.execute("UPDATE alarms SET cleared_t=? WHERE name=? AND cleared_t IS NULL", (op.t, op.name))
    elif isinstance(op, AlarmAck):
        db.execute("UPDATE alarms SET acked_t=?, acked_by=? WHERE id=? AND acked_t IS NULL",
                   (op.t, op.user, op.alarm_id))
    else:
        db.execute("UPDATE alarms SET shelved_until=?, shelved_by=?, shelve_reason=? WHERE id=?",
                   (op.until, op.user, op.reason, op.alarm_id))

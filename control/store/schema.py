"""The event store's tables, their version, and the migrations from older versions.

``PRAGMA user_version`` holds the version. A store opened by a newer service is migrated in
place, in one transaction per step, before anything else touches it; a current store is opened
without writing (it may be locked by a backup: the service must still start).
"""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA", "SCHEMA_VERSION", "migrate"]

SCHEMA_VERSION = 2
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
    plan_version INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (boot_id, tracking_id)
);
CREATE INDEX IF NOT EXISTS parcels_open ON parcels(final) WHERE final = 0;
CREATE INDEX IF NOT EXISTS parcels_identity ON parcels(identity);
CREATE TABLE IF NOT EXISTS parcel_events (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, tracking_id INTEGER NOT NULL, kind TEXT NOT NULL,
    lap INTEGER NOT NULL, chute INTEGER NOT NULL, reason TEXT NOT NULL, identity TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '', boot_id INTEGER NOT NULL DEFAULT 0,
    plan_version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS parcel_events_key ON parcel_events(boot_id, tracking_id);
CREATE INDEX IF NOT EXISTS parcel_events_t ON parcel_events(t);
CREATE TABLE IF NOT EXISTS unit_events (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    code INTEGER NOT NULL DEFAULT 0, detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, command TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0, result TEXT NOT NULL DEFAULT '',
    user TEXT NOT NULL DEFAULT '', args TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, code INTEGER NOT NULL, severity TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '', raised_t REAL NOT NULL, cleared_t REAL,
    acked_t REAL, acked_by TEXT NOT NULL DEFAULT '',
    shelved_until REAL, shelved_by TEXT NOT NULL DEFAULT '', shelve_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alarms_open ON alarms(name) WHERE cleared_t IS NULL;
CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, t REAL NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS health_t ON health(t);
CREATE TABLE IF NOT EXISTS plans (
    version INTEGER PRIMARY KEY, t REAL NOT NULL, user TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '', plan_csv TEXT NOT NULL, settings_yaml TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL, detail TEXT NOT NULL DEFAULT ''
);
"""

# Version 0 -> 1: a parcel is keyed by the conveyor PLC's boot id and its tracking id (a PLC
# that restarts numbers its parcels from 1 again; keyed by tracking id alone, new parcels
# overwrote the outcomes of old ones). Rows from version 0 get boot id 0.
_V1 = """
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

# Version 1 -> 2: the operator's side - who sent a command and with what arguments, alarms
# with their ISA-18.2 lifecycle (raised, acknowledged by whom, cleared, shelved), sort plan
# versions, and the plan version each decision used. Alarms of an older store are rebuilt from
# its unit events, counted as acknowledged (nobody could acknowledge them then).
_V2_COLUMNS = (
    ("commands", "user", "TEXT NOT NULL DEFAULT ''"),
    ("commands", "args", "TEXT NOT NULL DEFAULT ''"),
    ("parcels", "plan_version", "INTEGER NOT NULL DEFAULT 0"),
    ("parcel_events", "plan_version", "INTEGER NOT NULL DEFAULT 0"),
)
_V2_ALARMS = """
INSERT INTO alarms (name, code, severity, detail, raised_t, cleared_t, acked_t, acked_by)
    SELECT a.name, a.code, '', a.detail, a.t,
           (SELECT MIN(c.t) FROM unit_events c WHERE c.kind='alarm_clear' AND c.name=a.name AND c.id > a.id),
           a.t, '(before schema 2)'
    FROM unit_events a WHERE a.kind='alarm' ORDER BY a.id
"""


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}


def migrate(db: sqlite3.Connection) -> None:
    """Bring an older store up to ``SCHEMA_VERSION``, then make sure every table exists."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version >= SCHEMA_VERSION:
        return
    has_parcels = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='parcels'").fetchone()
    if has_parcels:
        db.execute("BEGIN IMMEDIATE")
        try:
            if "boot_id" not in _columns(db, "parcels"):
                _run(db, _V1)
            for table, column, decl in _V2_COLUMNS:
                cols = _columns(db, table)
                if cols and column not in cols:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    db.executescript(SCHEMA)
    if version < 2 and _columns(db, "unit_events") and not db.execute("SELECT 1 FROM alarms LIMIT 1").fetchone():
        db.execute(_V2_ALARMS)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _run(db: sqlite3.Connection, script: str) -> None:
    for stmt in script.split(";"):
        if stmt.strip():
            db.execute(stmt)

"""Store retention: rows older than a cutoff are exported to Parquet files, then deleted from
the live store in small transactions, while the controller keeps writing.

At 40,000 parcels/h the store grows by about 7 M rows a day; a floor keeps a few days live (the
HMI's trace and trends, the relay's backlog) and archives the rest. What is never deleted: a
parcel without its final outcome (and its events), an alarm still open, sort plan versions,
commands not yet answered, the meta table, and the newest ring event of every PLC stream (the
controller resumes each stream from the highest stored seq), nor the newest row of any table
(SQLite gives a new row the highest id + 1: an emptied table would hand out ids again that the
relay, which tails by id, has already passed).

Each delete is one short transaction of at most ``chunk`` rows with a pause after it, so the
controller's commits (which wait at most 50 ms for a lock) are never refused for long.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["ArchiveResult", "archive", "relay_cursors"]

# table -> (time column, extra condition that keeps a row live). Rows are selected by rowid.
_TABLES: dict[str, tuple[str, str]] = {
    "parcel_events": ("t", "NOT EXISTS (SELECT 1 FROM parcels p WHERE p.boot_id = parcel_events.boot_id"
                           " AND p.tracking_id = parcel_events.tracking_id AND p.final = 0)"),
    "parcels": ("updated_t", "final = 1"),
    "unit_events": ("t", "1"),
    "ring_events": ("t", "seq < (SELECT MAX(r.seq) FROM ring_events r WHERE r.plc = ring_events.plc"
                         " AND r.stream = ring_events.stream)"),
    "health": ("t", "1"),
    "commands": ("t", "done = 1"),
    "alarms": ("raised_t", "cleared_t IS NOT NULL AND acked_t IS NOT NULL AND cleared_t < :cutoff"),
}


# how a row is named for export and delete (ring_events has no rowid: its key is its name)
_KEYS: dict[str, tuple[str, ...]] = {"ring_events": ("plc", "stream", "seq")}
_ARROW = {"INTEGER": pa.int64(), "REAL": pa.float64(), "TEXT": pa.string()}


@dataclass(slots=True)
class ArchiveResult:
    cutoff: float
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows archived and deleted
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    relay_limits: dict[str, int] = field(default_factory=dict)  # table -> highest id every relay published


# the tables a relay tails by id (host/outbox.py): their rows stay until every relay has published them
RELAYED = ("parcel_events", "unit_events")


def relay_cursors(db_path: Path) -> dict[str, int]:
    """The lowest row id every relay of this store has published, per relayed table (the relays'
    state files lie beside the store as ``<store>.relay-<sorter>.sqlite``); no relay: no limit."""
    out: dict[str, int] = {}
    for f in sorted(db_path.parent.glob(db_path.name + ".relay-*.sqlite")):
        con = sqlite3.connect(f"file:{f}?mode=ro", uri=True)
        try:
            got = dict(con.execute("SELECT stream, last_id FROM cursor").fetchall())
        except sqlite3.Error:
            got = {}
        finally:
            con.close()
        for table in RELAYED:
            out[table] = min(out.get(table, 2**62), int(got.get(table, 0)))
    return out


def archive(
    db_path: Path, cutoff: float, out_dir: Path | None, *, chunk: int = 5000, pause_s: float = 0.02,
    dry_run: bool = False, progress: Callable[[str, int], None] | None = None, respect_relays: bool = True,
) -> ArchiveResult:
    """Export rows older than ``cutoff`` (epoch seconds) to ``out_dir`` (one Parquet file per
    table; ``None``: delete without exporting) and delete them; ``dry_run`` only counts. Rows a
    relay beside the store has not published yet stay (``respect_relays``)."""
    t0 = time.monotonic()
    res = ArchiveResult(cutoff)
    res.relay_limits = relay_cursors(db_path) if respect_relays else {}
    con = sqlite3.connect(db_path, isolation_level=None, timeout=5.0)
    try:
        con.execute("PRAGMA busy_timeout=200")
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(cutoff))
        for table, (tcol, keep) in _TABLES.items():
            where = f"{tcol} < :cutoff AND ({keep})"
            if table not in _KEYS:  # the newest row stays: ids must never start again (the relay's cursor)
                where += f" AND rowid < (SELECT MAX(rowid) FROM {table})"
            if table in res.relay_limits:  # not yet published by every relay: stays
                where += f" AND rowid <= {int(res.relay_limits[table])}"
            key = _KEYS.get(table, ("rowid",))
            ids = [tuple(r) for r in con.execute(f"SELECT {', '.join(key)} FROM {table} WHERE {where}"
                                                  f" ORDER BY {', '.join(key)}", {"cutoff": cutoff})]
            res.rows[table] = len(ids)
            if not ids or dry_run:
                continue
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                path = out_dir / f"{table}-before-{stamp}.parquet"
                _export(con, table, key, ids, path)
                res.files.append(path)
            for i in range(0, len(ids), chunk):
                part = ids[i: i + chunk]
                _begin(con)
                try:
                    match = " AND ".join(f"{k} = ?" for k in key)
                    con.executemany(f"DELETE FROM {table} WHERE {match}", part)
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                if progress is not None:
                    progress(table, len(part))
                time.sleep(pause_s)  # the controller's next commit gets the lock
        if not dry_run:
            con.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        con.close()
    res.seconds = time.monotonic() - t0
    return res


def _begin(con: sqlite3.Connection, patience_s: float = 60.0) -> None:
    """Take the write lock, waiting for the controller's commits however busy it is (it only
    holds the lock for a few ms at a time; SQLite's busy handler alone can starve behind it)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            con.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.002)


def _export(con: sqlite3.Connection, table: str, key: tuple[str, ...], ids: list[tuple[object, ...]],
            path: Path) -> None:
    """The rows, as they are, to one Parquet file (written beside, then renamed: a half-written
    archive never looks complete)."""
    info = [(str(r[1]), str(r[2]).upper()) for r in con.execute(f"PRAGMA table_info({table})")]
    cols = [c for c, _ in info]
    schema = pa.schema([(c, _ARROW.get(decl, pa.string())) for c, decl in info])
    writer: pq.ParquetWriter | None = None
    tmp = path.with_suffix(".parquet.part")
    try:
        for i in range(0, len(ids), 50_000):
            part = ids[i: i + 50_000]
            match = " AND ".join(f"{k} = ?" for k in key)
            rows = [con.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {match}", k).fetchone() for k in part]
            batch = pa.table({c: pa.array([r[k] for r in rows], type=schema.field(c).type)
                              for k, c in enumerate(cols)}, schema=schema)
            if writer is None:
                writer = pq.ParquetWriter(tmp, schema, compression="zstd")
            writer.write_table(batch)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(path)

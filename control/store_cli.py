"""`sortctl store info|archive`: the event store's size, and retention - rows older than N days
exported to Parquet and deleted from the live store while the controller runs."""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from control.store import SCHEMA_VERSION
from control.store.retention import archive

TABLES = ("parcels", "parcel_events", "unit_events", "ring_events", "alarms", "commands", "health", "plans")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["info", "archive"])
    parser.add_argument("--db", type=Path, default=Path("var/events.sqlite"), help="event store")
    parser.add_argument("--keep-days", type=float, default=7.0, help="archive: keep this many days live (default 7)")
    parser.add_argument("--to", type=Path, default=None, metavar="DIR",
                        help="archive: write the rows to Parquet files here first (default: var/archive beside the store)")
    parser.add_argument("--no-export", action="store_true", help="archive: delete without exporting")
    parser.add_argument("--dry-run", action="store_true", help="archive: count what would go, change nothing")
    parser.add_argument("--ignore-relays", action="store_true",
                        help="archive: also rows the relays beside the store have not published yet")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    if not args.db.exists():
        print(f"sortctl store: no event store at {args.db}")
        return 2
    if args.action == "info":
        return _info(args)
    if args.keep_days < 0:
        print("sortctl store: --keep-days must be 0 or more")
        return 2
    out = None if args.no_export else (args.to or args.db.parent / "archive")
    cutoff = time.time() - args.keep_days * 86400.0
    try:
        res = archive(args.db, cutoff, out, dry_run=args.dry_run, respect_relays=not args.ignore_relays)
    except sqlite3.Error as exc:
        print(f"sortctl store: {args.db}: {exc}")
        return 1
    report = {"cutoff": cutoff, "rows": res.rows, "files": [str(p) for p in res.files], "relay_limits": res.relay_limits,
              "seconds": round(res.seconds, 2), "dry_run": args.dry_run}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        verb = "would archive" if args.dry_run else "archived"
        Console().print(f"{verb} {sum(res.rows.values()):,} rows older than "
                        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(cutoff))} in {res.seconds:.1f} s: "
                        + ", ".join(f"{t} {n:,}" for t, n in res.rows.items() if n))
        for p in res.files:
            Console().print(f"  {p}")
    return 0


def _info(args: argparse.Namespace) -> int:
    con = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
    try:
        version = int(con.execute("PRAGMA user_version").fetchone()[0])
        counts: dict[str, int] = {}
        oldest: dict[str, float | None] = {}
        for t in TABLES:
            try:
                counts[t] = int(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
            except sqlite3.Error:
                continue
        for t, col in (("parcel_events", "t"), ("unit_events", "t"), ("ring_events", "t")):
            try:
                oldest[t] = con.execute(f"SELECT MIN({col}) FROM {t}").fetchone()[0]
            except sqlite3.Error:
                oldest[t] = None
    finally:
        con.close()
    size = sum(p.stat().st_size for p in args.db.parent.glob(args.db.name + "*"))
    info = {"schema_version": version, "current_schema": SCHEMA_VERSION, "bytes": size, "rows": counts,
            "oldest": oldest}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    table = Table(title=f"{args.db} - schema {version} (current {SCHEMA_VERSION}), {size / 1e6:.1f} MB with WAL")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("oldest")
    for name, n in counts.items():
        o = oldest.get(name)
        table.add_row(name, f"{n:,}", time.strftime("%Y-%m-%d %H:%M", time.localtime(o)) if o else "")
    Console().print(table)
    return 0

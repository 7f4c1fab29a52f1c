"""`sortctl alarm list|ack|shelve|unshelve`: alarms as ISA-18.2 keeps them - raised, acknowledged
(by whom), cleared, shelved (by whom, why, until when)."""

from __future__ import annotations

import argparse
import json
import time

from rich.console import Console
from rich.table import Table

from control.send import add_common, send
from control.store import AlarmRow, EventStore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "ack", "shelve", "unshelve"])
    parser.add_argument("alarm", type=int, nargs="?", default=None, help="alarm id (ack without one: all)")
    parser.add_argument("--minutes", type=float, default=60.0, help="shelve for this long (default 60)")
    parser.add_argument("--reason", default="", help="why it is shelved (required to shelve)")
    parser.add_argument("--all", action="store_true", help="list: history too, not only open alarms")
    parser.add_argument("--search", default="", help="list: only alarms whose name, text or acknowledger match")
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list(args)
    if args.action == "ack":
        return send(args, "ALARM_ACK", {"alarm": args.alarm or 0})
    if args.alarm is None:
        print(f"sortctl alarm: {args.action} which alarm? (its id, from `sortctl alarm list`)")
        return 2
    if args.action == "unshelve":
        return send(args, "ALARM_UNSHELVE", {"alarm": args.alarm})
    return send(args, "ALARM_SHELVE", {"alarm": args.alarm, "minutes": args.minutes, "reason": args.reason})


def _list(args: argparse.Namespace) -> int:
    if not args.db.exists():
        print(f"sortctl alarm: no event store at {args.db}")
        return 2
    store = EventStore(args.db, readonly=True)
    try:
        rows = store.alarms(open_only=not args.all, search=args.search)
    finally:
        store.close()
    now = time.time()
    if args.json:
        print(json.dumps([_json(a, now) for a in rows], indent=2))
        return 0
    t = Table(title="alarms" + ("" if args.all else " needing attention"))
    for col in ("id", "state", "name", "detail", "raised", "acknowledged", "cleared"):
        t.add_column(col)
    for a in rows:
        t.add_row(str(a.id), a.state(now), a.name, a.detail, _t(a.raised_t),
                  f"{_t(a.acked_t)} {a.acked_by}".strip(), _t(a.cleared_t))
    Console().print(t)
    return 0


def _t(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""


def _json(a: AlarmRow, now: float) -> dict[str, object]:
    return {"id": a.id, "state": a.state(now), "name": a.name, "code": a.code, "severity": a.severity,
            "detail": a.detail, "raised_t": a.raised_t, "acked_t": a.acked_t, "acked_by": a.acked_by,
            "cleared_t": a.cleared_t, "shelved_until": a.shelved_until, "shelved_by": a.shelved_by,
            "shelve_reason": a.shelve_reason}

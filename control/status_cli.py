"""`sortctl status`: the controller's state and counters, read from its event store."""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from control.send import who
from control.store import EventStore, StoreStatus
from host.endpoint import add_broker_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=Path("var/events.sqlite"), help="event store")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--send", metavar="COMMAND", choices=["reset", "start", "stop", "hold", "unhold", "abort", "clear"],
        help="queue a PackML command for the running service (e.g. reset after a jam is cleared)",
    )
    parser.add_argument("--user", default=None, help="who sends it (default: your login name)")
    parser.add_argument("--site", metavar="ROOT", help="the whole site from the MQTT broker: every sorter under "
                        "ROOT (<site>/<area>), as the relays publish them")
    add_broker_arguments(parser)  # with --site: the site's broker, its TLS and login
    parser.add_argument("--seconds", type=float, default=None,
                        help="with --site: watch this long (default: until Ctrl-C; 3 s with --json)")


def run(args: argparse.Namespace) -> int:
    if args.site:
        from host.site_cli import run_site  # the site view needs the broker client only here

        return run_site(args)
    if not args.db.exists():
        print(f"sortctl status: no event store at {args.db} (start the controller with `sortctl run --db ...`)")
        return 2
    if args.send:
        return _send(args.db, args.send, who(args.user))
    try:
        store = EventStore(args.db, readonly=True)
        try:
            st = store.status()
        finally:
            store.close()
    except sqlite3.Error as exc:
        print(f"sortctl status: cannot read {args.db}: {exc}")
        return 2
    if args.json:
        print(json.dumps(st.as_json(), indent=2))
    else:
        show(st, Console())
    return 0


def _send(db: Path, command: str, user: str) -> int:
    """Queue the command; wait up to 3 s for the service to take it and say what happened."""
    store = EventStore(db)
    try:
        cid = store.add_command(command.upper(), time.time(), user=user)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            done, result = store.command_result(cid)
            if done:
                print(f"{command}: {result}")
                return 0 if result == "accepted" else 1
            time.sleep(0.05)
    finally:
        store.close()
    print(f"{command}: queued; the service has not taken it yet (is it running?)")
    return 1


def show(st: StoreStatus, console: Console) -> None:
    t = Table(title=f"unit {st.unit_state} ({st.unit_mode}), service {st.service}")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("parcels known", str(st.inducted))
    t.add_row("in flight", str(st.in_flight))
    t.add_row("parcels by state", "")
    for state, n in sorted(st.by_state.items()):
        t.add_row(f"  {state}", str(n))
    t.add_row("recirculations", str(st.recirculations))
    t.add_row("CurMachSpeed (last minute)", f"{st.cur_mach_speed:,.0f} parcels/h")
    for reason, n in sorted(st.by_reason.items(), key=lambda kv: -kv[1]):
        t.add_row(f"reason {reason or '-'}", str(n))
    t.add_row("per chute", " ".join(f"{c}:{n}" for c, n in sorted(st.by_chute.items())) or "-")
    t.add_row("active alarms", ", ".join(f"{k} ({v})" if v else k for k, v in st.active_alarms.items()) or "none")
    t.add_row("sort plan version", str(st.plan_version or "-"))
    t.add_row("chutes out of service", ", ".join(
        f"{c} (by {w.get('by') or '-'}{': ' + str(w['reason']) if w.get('reason') else ''})"
        for c, w in sorted(st.chutes_out.items(), key=lambda kv: int(kv[0]))) or "none")
    t.add_row("last ring seqs", " ".join(f"{k}={v}" for k, v in sorted(st.last_seqs.items())))
    h = st.health
    if h:
        age = time.time() - float(str(h.get("t", 0)))
        t.add_row("service health", f"cycle lag p99 {h.get('lag_p99_ms')} ms, {h.get('rss_mb')} MB resident, "
                                    f"{h.get('in_flight')} in flight ({age:.0f} s ago)")
    console.print(t)

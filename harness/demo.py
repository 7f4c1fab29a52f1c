"""`sortctl demo`: the simulator and the controller sorting parcels end to end on the example site.

Embedded defaults: config/site.yaml, config/sortplan.csv, config/manifest.csv and
config/scenarios/demo.yaml (a clean stream when that file is absent), free ports on 127.0.0.1,
the event store in a temporary directory (or ``--db``). Exit code 1 on any missort or lost
parcel, so a script or CI can rely on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from harness.broker import DemoLink, mosquitto_path
from harness.hmiproc import HmiProcess
from harness.session import CONFIG, Progress, Session, SessionConfig, SessionResult, check_inputs
from plant.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parcels", type=int, default=3000, help="parcels to induct (default 3000)")
    parser.add_argument("--rate", type=float, default=40_000, metavar="PER_HOUR", help="arrival rate (default 40000)")
    parser.add_argument("--site", type=Path, default=CONFIG / "site.yaml")
    parser.add_argument("--scenario", type=Path, help="scenario file (default config/scenarios/demo.yaml)")
    parser.add_argument("--db", type=Path, help="keep the event store here (default: a temporary file)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--in-process", action="store_true", help="run the simulator in this process (default: a child process)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-hmi", action="store_true", help="do not start the operator HMI alongside")
    parser.add_argument("--hmi-port", type=int, default=None, help="HMI port on 127.0.0.1 (default 8080 if free)")
    parser.add_argument("--keep-open", action="store_true",
                        help="after the run, keep the HMI up (and the store) until Ctrl-C")
    parser.add_argument("--sorters", type=int, default=1,
                        help="a site of this many sorters (each its own simulator, controller, store and relay) on "
                             "one MQTT broker, and the site view from the broker (needs mosquitto)")
    parser.add_argument("--no-link", action="store_true", help="do not start the MQTT broker and relay alongside")
    parser.add_argument("-v", "--verbose", action="store_true")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.parcels <= 0 or args.rate <= 0 or args.sorters <= 0:
        print("sortctl demo: --parcels, --rate and --sorters must be positive", file=sys.stderr)
        return 2
    cfg = SessionConfig(parcels=args.parcels, rate_per_hour=args.rate, site=args.site, scenario=args.scenario,
                        db=args.db, sim_process=not args.in_process, seed=args.seed)
    try:  # every file checked before a process starts: the error names the file, not a dead child
        check_inputs(cfg)
    except ConfigError as exc:
        print(f"sortctl demo: {exc}", file=sys.stderr)
        return 2
    if args.sorters > 1:
        from harness.sitedemo import run_site_demo

        return run_site_demo(args)
    console = Console(stderr=args.json)
    session = Session(cfg)
    hmi: HmiProcess | None = None
    link: DemoLink | None = None
    try:
        if mosquitto_path() is not None and not args.no_link:  # the host link: a broker and `sortctl relay` on the demo's store
            link = DemoLink(session.db, args.site, session.tmp)
            try:
                link.start()
            except (RuntimeError, OSError) as exc:
                console.print(f"[yellow]MQTT host link not started:[/] {exc}")
                link = None
            else:
                console.print(f"host link (MQTT): one confirmation per parcel - watch with [bold]{link.watch}[/]")
        if not args.no_hmi:
            hmi = HmiProcess(session.db, session.tmp, port=args.hmi_port)
            try:
                hmi.start()
            except (RuntimeError, OSError) as exc:
                console.print(f"[yellow]HMI not started:[/] {exc}")
                hmi = None
            else:
                console.print(f"operator HMI: [bold]{hmi.url}[/]  user [bold]{hmi.user}[/], password "
                              f"[bold]{hmi.password}[/] (made for this demo, role {hmi.role})")
        with Live(Text("starting simulator and controller..."), console=console, refresh_per_second=4,
                  transient=True) as live:
            def show(p: Progress) -> None:
                live.update(_progress_line(p, cfg.parcels))

            try:
                result = asyncio.run(session.run(show))
            except ConfigError as exc:
                live.stop()
                print(f"sortctl demo: {exc}", file=sys.stderr)
                return 2
            except RuntimeError as exc:  # the simulator child died early: its stderr is in the message
                live.stop()
                print(f"sortctl demo: {exc}", file=sys.stderr)
                return 1
        if args.json:
            print(json.dumps(summary(result), indent=2))
        else:
            print_summary(result, console)
        if hmi is not None and args.keep_open:
            console.print(f"the HMI stays up on {hmi.url} - Ctrl-C to end")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(1.0)
    finally:
        if hmi is not None:
            hmi.stop()
        if link is not None:
            link.stop()
        session.close()
    a = result.audit
    return 1 if a.missorts or a.lost or a.misrecorded else 0


def _progress_line(p: Progress, total: int) -> Text:
    o = p.outcomes
    done = sum(o.values())
    rate = o.get("sorted", 0) / p.elapsed_s * 3600 if p.elapsed_s > 0 else 0.0
    return Text(
        f"{p.elapsed_s:6.1f} s  {p.unit_state:<9} inducted {p.inducted}/{total}  in flight {p.in_flight}  "
        f"sorted {o.get('sorted', 0)}  rejected {o.get('rejected', 0)}  lost {o.get('lost', 0)}  "
        f"missorted {o.get('missorted', 0)}  done {done}  ({rate:,.0f} sorted/h)"
    )


def _p99_ms(values: object) -> float:
    a = np.asarray(list(values), dtype=np.float64)  # type: ignore[call-overload]
    return float(np.percentile(a, 99) * 1000.0) if a.size else float("nan")


def summary(r: SessionResult) -> dict[str, object]:
    a = r.audit
    return {
        **a.as_json(),
        "wall_s": round(r.wall_s, 2),
        "parcels_per_hour": round(r.parcels_per_hour, 1),
        "unit_state": r.unit_state,
        "active_alarms": r.alarms,
        "decode_timeouts": r.metrics.decode_timeouts,
        "decision_p99_ms": round(_p99_ms(r.metrics.decision_s), 2),
        "scan_to_decision_p99_ms": round(_p99_ms(r.metrics.scan_to_decision_s), 2),
        "cycle_lag_p99_ms": round(_p99_ms(r.metrics.cycle_lag_s), 2),
        "timed_out": r.timed_out,
        "db": str(r.db),
    }


def print_summary(r: SessionResult, console: Console) -> None:
    s = summary(r)
    a = r.audit
    t = Table(title=f"sortctl demo: {a.inducted} parcels in {r.wall_s:.1f} s")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("inducted", str(a.inducted))
    t.add_row("sorted to planned chute", str(a.sorted_planned))
    t.add_row("rejected (exception chutes)", str(a.rejected))
    for reason, n in sorted(a.rejected_by_reason.items(), key=lambda kv: -kv[1]):
        t.add_row(f"  {reason}", str(n))
    t.add_row("recirculations", str(a.recirculated))
    t.add_row("missorts", f"[{'red' if a.missorts else 'green'}]{len(a.missorts)}[/]")
    t.add_row("lost", f"[{'red' if a.lost else 'green'}]{len(a.lost)}[/]")
    if a.misrecorded:
        t.add_row("misrecorded", f"[red]{len(a.misrecorded)}[/]")
    t.add_row("read rate", f"{a.read_rate:.1%}")
    t.add_row("throughput", f"{r.parcels_per_hour:,.0f} parcels/h sorted")
    t.add_row("decision p99", f"{s['decision_p99_ms']} ms")
    t.add_row("scan to decision p99", f"{s['scan_to_decision_p99_ms']} ms")
    t.add_row("cycle lag p99", f"{s['cycle_lag_p99_ms']} ms")
    t.add_row("unit state", r.unit_state)
    if r.alarms:
        t.add_row("active alarms", ", ".join(r.alarms))
    if r.timed_out:
        t.add_row("[yellow]timed out[/]", "parcels were still in flight")
    console.print(t)
    for line in a.missort_detail[:20]:
        console.print(f"[red]missort:[/] {line}")
    console.print(f"event store: {r.db}" + ("" if r.db.name != "events.sqlite" else " (temporary, removed)"))

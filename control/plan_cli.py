"""`sortctl plan`: replay a manifest through a sort plan and report chute load and exceptions
(what-if); `sortctl plan activate FILE` / `rollback` / `versions`: the running service's plan."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from control.routing.engine import RoutingEngine
from control.routing.manifest import load_manifest
from control.routing.plan import load_plan, parse_plan, read_plan_text
from control.routing.replay import SPLIT_CAUSES, ReplayResult, replay
from control.routing.settings import RoutingSettings, load_settings, settings_from_text
from control.send import add_common, send
from control.store import EventStore
from plant.errors import ConfigError
from plant.site import load_site
from plant.yamlfile import read_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, default=Path("config/manifest.csv"), help="CSV or Parquet")
    parser.add_argument("--plan", type=Path, default=Path("config/sortplan.csv"))
    parser.add_argument("--site", type=Path, default=Path("config/site.yaml"))
    parser.add_argument("--settings", type=Path, default=Path("config/routing.yaml"), help="routing settings")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--chart", type=Path, metavar="FILE.png", help="write a chart of chute fill over time")
    parser.add_argument("--drain-rate", type=float, metavar="PER_MIN", help="override every chute's drain rate")
    parser.add_argument("--step", type=float, default=30.0, help="replay time step in seconds")
    live = parser.add_subparsers(dest="action", metavar="ACTION",
                                 description="without an action: a what-if replay of the manifest")
    act = live.add_parser("activate", help="load a sort plan into the running service (validated first)")
    act.add_argument("file", type=Path, help="sort plan CSV")
    act.add_argument("--routing", type=Path, help="routing settings YAML to take with it (default: keep)")
    add_common(act)
    back = live.add_parser("rollback", help="go back to the plan the running one replaced")
    add_common(back)
    ver = live.add_parser("versions", help="every plan version the service took or refused")
    add_common(ver)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "action", None):
        return _live(args)
    console = Console(stderr=True)
    try:
        site = load_site(args.site)
        settings = load_settings(args.settings) if args.settings.exists() else RoutingSettings()
        plan = load_plan(args.plan, site)
        manifest = load_manifest(args.manifest)
    except ConfigError as exc:
        print(f"sortctl plan: {exc}", file=sys.stderr)
        return 2
    if len(manifest) == 0:
        print(f"sortctl plan: manifest {manifest.source} holds no parcels: every parcel would route as unknown; "
              "the replay has nothing to route", file=sys.stderr)
    for issue in manifest.issues(limit=20):
        console.print(Text("skipped ", style="yellow") + Text(issue.format(manifest.source)))
    if len(manifest.bad_line) > 20:
        console.print(f"[yellow]... {len(manifest.bad_line) - 20} more bad rows skipped[/]")
    engine = RoutingEngine(site, plan, manifest, settings)
    with Progress(console=console, transient=True, disable=len(manifest) < 200_000 or args.json) as bar:
        task = bar.add_task("replaying", total=len(manifest))
        result = replay(engine, args.step, args.drain_rate, lambda k: bar.advance(task, k))
    report = _report(result, engine, len(manifest.bad_line))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report, Console())
    if args.chart:
        _chart(result, engine, args.chart)
        console.print(f"chart written to {args.chart}")
    return 0


def _live(args: argparse.Namespace) -> int:
    if args.action == "rollback":
        return send(args, "PLAN_ROLLBACK", {})
    if args.action == "versions":
        return _versions(args)
    try:  # checked here too, so a typo is caught before it reaches the service
        text = read_plan_text(args.file)
        parse_plan(text, str(args.file))
        settings = read_text(args.routing) if args.routing else ""
        if settings:
            settings_from_text(settings, str(args.routing))
    except ConfigError as exc:
        print(f"sortctl plan activate: {exc}", file=sys.stderr)
        return 2
    return send(args, "PLAN_ACTIVATE", {"plan_csv": text, "settings_yaml": settings, "source": args.file.name})


def _versions(args: argparse.Namespace) -> int:
    if not args.db.exists():
        print(f"sortctl plan versions: no event store at {args.db}", file=sys.stderr)
        return 2
    store = EventStore(args.db, readonly=True)
    try:
        rows = store.plans()
    finally:
        store.close()
    if args.json:
        print(json.dumps([{"version": p.version, "t": p.t, "user": p.user, "source": p.source, "state": p.state,
                           "detail": p.detail, "rules": _rules(p.plan_csv)} for p in rows], indent=2))
        return 0
    t = Table(title="sort plan versions")
    for col in ("version", "state", "when", "by", "source", "rules", "detail"):
        t.add_column(col)
    for p in rows:
        t.add_row(str(p.version), p.state, time.strftime("%Y-%m-%d %H:%M", time.localtime(p.t)), p.user or "-",
                  p.source, str(_rules(p.plan_csv)), p.detail)
    Console().print(t)
    return 0


def _rules(text: str) -> int:
    return sum(1 for ln in text.splitlines()[1:] if ln.strip() and not ln.lstrip().startswith("#"))


def _report(r: ReplayResult, e: RoutingEngine, bad_rows: int) -> dict[str, object]:
    chutes = [
        {"id": c.id, "name": c.name, "kind": c.kind.value, "parcels": int(r.parcels[c.id]),
         "peak_fill": int(r.peak[c.id]), "capacity": c.capacity}
        for c in e.site.chutes
    ]
    return {
        "parcels": r.parcels_total, "manifest_bad_rows": bad_rows, "reasons": r.reasons,
        "overflow_events": r.overflow_events,
        "groups": {"total": r.groups_total, "split": r.groups_split, "split_because": r.split_because},
        "chutes": chutes,
    }


def _print(rep: dict[str, object], console: Console) -> None:
    t = Table(title="chute load")
    for col in ("chute", "kind", "parcels", "peak fill", "capacity"):
        t.add_column(col, justify="right" if col not in ("chute", "kind") else "left")
    for c in rep["chutes"]:  # type: ignore[attr-defined]
        full = c["peak_fill"] >= c["capacity"]
        peak = f"[red]{c['peak_fill']}[/]" if full else str(c["peak_fill"])
        t.add_row(f"{c['id']} {c['name']}", c["kind"], str(c["parcels"]), peak, str(c["capacity"]))
    console.print(t)
    r = Table(title="decisions by reason")
    r.add_column("reason")
    r.add_column("parcels", justify="right")
    for name, n in rep["reasons"].items():  # type: ignore[attr-defined]
        r.add_row(name, str(n))
    console.print(r)
    groups = rep["groups"]
    console.print(
        f"{rep['parcels']} parcels; overflow events (sent to a fallback or reject because full): "
        f"{rep['overflow_events']}; consolidation groups split: {groups['split']} of {groups['total']}"  # type: ignore[index]
    )
    for cause, n in groups["split_because"].items():  # type: ignore[index]
        console.print(f"  split because {SPLIT_CAUSES[cause]}: {n} groups")


def _chart(r: ReplayResult, e: RoutingEngine, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    hours = (r.times - r.times[0]) / 3600.0 if len(r.times) else r.times
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=110)
    ids = sorted(r.chute_ids, key=lambda c: -int(r.peak[c]))[:10]
    for cid in ids:
        c = e.site.chute(cid)
        ax.plot(hours, r.fill[:, cid] / c.capacity * 100.0, lw=1.2, label=f"{cid} {c.name}")
    ax.axhline(100, color="red", ls="--", lw=1, label="capacity")
    ax.set_xlabel("hours since first arrival")
    ax.set_ylabel("fill, % of capacity")
    ax.set_title(f"Chute fill over time (10 fullest of {len(r.chute_ids)}); {r.overflow_events} overflow events")
    ax.set_ylim(0, max(110.0, float(np.max(r.fill[:, ids] / np.array([e.site.chute(i).capacity for i in ids]) * 100)) + 5 if len(r.times) else 110.0))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)

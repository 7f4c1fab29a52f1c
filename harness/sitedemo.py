"""`sortctl demo --sorters N`: a site of N simulated sorters, each a demo of its own (simulator
and controller processes, its own event store) with its own relay, all on one MQTT broker; this
process is the site view, built from the broker alone, as the host would see the site.

At the end every sorter's own summary (judged against its simulator's ground truth) is set
beside what reached the broker: one confirmation per parcel that got a final outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from harness.broker import Broker, mosquitto_path
from harness.procs import stop_process
from host.site_cli import site_table
from host.siteview import SiteView, watch_site

__all__ = ["run_site_demo"]

SITE, AREA = "site", "area"
ROOT = Path(__file__).resolve().parent.parent


def run_site_demo(args: argparse.Namespace) -> int:
    console = Console(stderr=args.json)
    if mosquitto_path() is None:
        print("sortctl demo: --sorters needs Debian's mosquitto (./dev setup installs it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sortcentre-site-") as tmp:
        work = Path(tmp)
        broker = Broker(work / "mqtt")
        broker.start()
        sorters = [f"s{i + 1}" for i in range(args.sorters)]
        demos: dict[str, subprocess.Popen[bytes]] = {}
        relays: dict[str, subprocess.Popen[bytes]] = {}
        view = SiteView(f"{SITE}/{AREA}")
        try:
            for i, name in enumerate(sorters):
                d = work / name
                d.mkdir()
                db = d / "events.sqlite"
                demos[name] = subprocess.Popen(
                    [sys.executable, "-m", "sortctl.cli", "demo", "--no-hmi", "--no-link", "--json", "--db", str(db),
                     "--parcels", str(args.parcels), "--rate", str(args.rate), "--seed", str(args.seed + i),
                     "--site", str(args.site), *(["--scenario", str(args.scenario)] if args.scenario else [])],
                    stdout=open(d / "summary.json", "wb"), stderr=open(d / "demo.log", "wb"), cwd=ROOT,  # noqa: SIM115
                )
                relays[name] = subprocess.Popen(
                    [sys.executable, "-m", "sortctl.cli", "relay", "--db", str(db), "--broker", broker.url,
                     "--site", SITE, "--area", AREA, "--sorter", name, "--site-file", str(args.site)],
                    stdout=open(d / "relay.log", "wb"), stderr=subprocess.STDOUT, cwd=ROOT,  # noqa: SIM115
                )
            console.print(f"site of {len(sorters)} sorters on one broker: watch with [bold]mosquitto_sub -h 127.0.0.1 "
                          f"-p {broker.port} -t '{SITE}/{AREA}/#' -v[/], or [bold]sortctl status --site {SITE}/{AREA} "
                          f"--broker {broker.url}[/]")
            asyncio.run(_watch(broker, view, demos, console, quiet=args.json))
            time.sleep(3.0)  # the relays' last polls
            asyncio.run(_settle(broker, view))
        finally:
            for p in [*demos.values(), *relays.values()]:
                stop_process(p, 15.0)
            broker.close()
        summaries = {n: _summary(work / n) for n in sorters}
    return _report(view, summaries, console, as_json=args.json)


async def _watch(broker: Broker, view: SiteView, demos: dict[str, subprocess.Popen[bytes]], console: Console,
                 *, quiet: bool) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(watch_site(broker.endpoint(), view.root, view, stop))
    try:
        with Live(site_table(view, time.monotonic()), console=console, refresh_per_second=2, transient=quiet) as live:
            while any(p.poll() is None for p in demos.values()):
                live.update(site_table(view, time.monotonic()))
                await asyncio.sleep(0.5)
            live.update(site_table(view, time.monotonic()))
    finally:
        stop.set()
        await task


async def _settle(broker: Broker, view: SiteView) -> None:
    """A last look, a few seconds, for the confirmations the relays sent after the demos ended."""
    stop = asyncio.Event()
    task = asyncio.create_task(watch_site(broker.endpoint(), view.root, view, stop))
    await asyncio.sleep(3.0)
    stop.set()
    await task


def _summary(d: Path) -> dict[str, Any]:
    try:
        got: dict[str, Any] = json.loads((d / "summary.json").read_text() or "{}")
        return got
    except (OSError, ValueError):
        return {"error": (d / "demo.log").read_text(errors="replace")[-1000:]}


def _report(view: SiteView, summaries: dict[str, dict[str, Any]], console: Console, *, as_json: bool) -> int:
    now = time.monotonic()
    rows = []
    ok = True
    for name, s in summaries.items():
        v = view.sorters.get(name)
        finals = sum(int(n) for n in (s.get("outcomes") or {}).values())  # final outcomes its controller stored
        got = sum(v.dispositions.values()) if v else 0
        good = "error" not in s and not s.get("missorts") and not s.get("lost") and got == finals
        ok &= good
        rows.append({"sorter": name, "final_outcomes": finals, "confirmations_received": got,
                     "missorts": s.get("missorts"), "lost": s.get("lost"), "ok": good, "error": s.get("error", "")})
    if as_json:
        print(json.dumps({"site": view.as_json(now), "sorters": rows}, indent=2))
    else:
        console.print(site_table(view, now))
        for r in rows:
            mark = "[green]ok[/]" if r["ok"] else "[red]NOT OK[/]"
            console.print(f"{r['sorter']}: {r['final_outcomes']} final outcomes in its store, "
                          f"{r['confirmations_received']} confirmations at the broker, {r['missorts']} missorts, "
                          f"{r['lost']} lost: {mark}" + (f" ({r['error'][:300]})" if r["error"] else ""))
    return 0 if ok else 1

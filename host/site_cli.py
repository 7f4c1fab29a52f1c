"""`sortctl status --site ROOT --broker URL`: every sorter of a site, live from the broker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

from host.endpoint import broker_from_args
from host.siteview import SiteView, watch_site

__all__ = ["run_site", "site_table"]


def site_table(view: SiteView, now: float) -> Table:
    t = Table(title=f"site {view.root}")
    for col in ("sorter", "relay", "unit", "confirmed", "sorted", "rejected", "lost", "parcels/h (last min)"):
        t.add_column(col, justify="right" if col not in ("sorter", "relay", "unit") else "left")
    for name, v in sorted(view.sorters.items()):
        relay = "-" if v.online is None else ("online" if v.online else f"[red]offline[/] {v.status_reason}")
        d = v.dispositions
        t.add_row(name, relay, v.state, str(sum(d.values())), str(d["sorted"]), str(d["rejected"]),
                  str(d["lost"] + d["missorted"]), f"{v.per_hour(now):,.0f}")
    return t


def run_site(args: argparse.Namespace) -> int:
    try:
        broker = broker_from_args(args)
    except ValueError as exc:
        print(f"sortctl status: {exc}")
        return 2
    root = args.site.strip("/")
    view = SiteView(root)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(watch_site(broker, root, view, stop))
        seconds = args.seconds if args.seconds is not None else (3.0 if args.json else None)
        if args.json:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
        else:
            with Live(site_table(view, time.monotonic()), refresh_per_second=2) as live:
                end = None if seconds is None else time.monotonic() + seconds
                while not stop.is_set() and (end is None or time.monotonic() < end):
                    live.update(site_table(view, time.monotonic()))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)
        stop.set()
        await task

    asyncio.run(main())
    if args.json:
        print(json.dumps(view.as_json(time.monotonic()), indent=2))
    elif not view.sorters:
        Console().print(f"no sorter has published under {root}/ on {broker.url}")
    return 0

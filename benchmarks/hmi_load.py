"""Viewers for the HMI bench, in a process of their own (they must not share a core's event loop
with the controller they are measuring): ``viewers`` screens each holding the live stream open,
and one client loading every page in turn. Writes what it saw as JSON when told to stop
(SIGTERM) or after ``--seconds``.

Update latency: each ``overview`` update names the newest stored parcel event it counts
(``tally.last_event_id``); the event's stored time ``t`` (written by the controller when it
decided) against the moment this viewer received the update is store write -> screen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import aiohttp

PAGES = ("/overview", "/chutes", "/alarms", "/trace", "/plan", "/trends")


async def login(session: aiohttp.ClientSession, base: str, user: str, password: str) -> None:
    async with session.get(base + "/login") as r:
        html = await r.text()
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if m is None:
        raise RuntimeError("no CSRF token on the login page")
    data = {"csrf_token": m.group(1), "user": user, "password": password, "next": "/overview"}
    async with session.post(base + "/login", data=data, allow_redirects=False) as r:
        if r.status not in (200, 302, 303):
            raise RuntimeError(f"login refused: {r.status} {await r.text()}")


class Seen:
    def __init__(self, db: Path) -> None:
        self.db = db
        self.latency_ms: list[float] = []
        self.page_ms: list[float] = []
        self.updates = 0
        self.errors: list[str] = []
        self._con: sqlite3.Connection | None = None
        self._t: dict[int, float] = {}

    def event_t(self, event_id: int) -> float | None:
        if event_id in self._t:
            return self._t[event_id]
        if self._con is None:
            if not self.db.exists():
                return None
            self._con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        row = self._con.execute("SELECT t FROM parcel_events WHERE id=?", (event_id,)).fetchone()
        if row is None:
            return None
        self._t[event_id] = float(row[0])
        return self._t[event_id]


async def viewer(base: str, user: str, password: str, seen: Seen, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:  # cookies for 127.0.0.1
        await login(s, base, user, password)
        last_id = 0
        while not stop.is_set():
            try:
                async with s.get(base + "/api/stream?topics=overview", timeout=aiohttp.ClientTimeout(total=None)) as r:
                    event = ""
                    async for raw in r.content:
                        line = raw.decode().rstrip("\n")
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:") and event == "overview":
                            got = time.time()
                            seen.updates += 1
                            eid = int(json.loads(line[5:]).get("tally", {}).get("last_event_id") or 0)
                            if eid > last_id:
                                t = seen.event_t(eid)
                                if t is not None and last_id:  # the first message is a snapshot, not an update
                                    seen.latency_ms.append((got - t) * 1000.0)
                                last_id = eid
                        if stop.is_set():
                            return
            except (aiohttp.ClientError, TimeoutError) as exc:
                seen.errors.append(repr(exc))
                await asyncio.sleep(0.5)


async def pages(base: str, user: str, password: str, seen: Seen, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:  # cookies for 127.0.0.1
        await login(s, base, user, password)
        while not stop.is_set():
            for path in PAGES:
                t0 = time.perf_counter()
                async with s.get(base + path) as r:
                    await r.read()
                    if r.status != 200:
                        seen.errors.append(f"{path}: {r.status}")
                seen.page_ms.append((time.perf_counter() - t0) * 1000.0)
            await asyncio.sleep(0.2)


async def main_async(args: argparse.Namespace) -> None:
    seen = Seen(args.db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    base = args.url.rstrip("/")
    tasks = [asyncio.create_task(viewer(base, args.user, args.password, seen, stop)) for _ in range(args.viewers)]
    tasks.append(asyncio.create_task(pages(base, args.user, args.password, seen, stop)))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.seconds)
    stop.set()
    for t in tasks:
        t.cancel()
    for got in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(got, Exception):
            seen.errors.append(repr(got))
    args.out.write_text(json.dumps({"latency_ms": seen.latency_ms, "page_ms": seen.page_ms, "updates": seen.updates,
                                    "errors": seen.errors[:20], "viewers": args.viewers}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("url")
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", default=os.environ.get("SORTCENTRE_HMI_PASSWORD", ""),
                   help="(default: $SORTCENTRE_HMI_PASSWORD, kept off the command line)")
    p.add_argument("--viewers", type=int, default=20)
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--out", type=Path, required=True)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()

"""The host relay on loopback: store -> relay -> Mosquitto -> a subscriber.

- ``relay.msgs_per_s``: a backlog of confirmations (store rows written with ``Batch``)
  published by an in-process relay and received by ``mosquitto_sub`` (C, so the subscriber is
  not the limit), rows per second from the relay's start to the last one received;
- ``relay.latency_p99_ms``: row committed -> subscriber receives, at 10x one sorter's rate
  (400,000 parcels/h) with the relay as its own process (`sortctl relay`) and the subscriber in
  this one; the writer commits every 10 ms, as the controller's cycle does;
- ``relay.lost_in_outage`` / ``relay.duplicates_delivered``: 40,000 parcels/h written while the
  broker is stopped for 30 s (quick: 5 s) and started again; rows written vs distinct event ids
  received, and copies received beyond the first (the host drops them by event id).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.records import Record
from control.store import Batch, EventStore
from harness.broker import Broker, Watcher, mosquitto_path
from host.relay import Relay, RelayConfig
from host.topics import Topics
from plant.site import load_site

ROOT = Path(__file__).resolve().parent.parent
TOPICS = Topics("bench", "hall", "s1")
RATE = 40_000.0  # one sorter, parcels/h


def _write(store: EventStore, first: int, n: int, t: float | None = None) -> None:
    b = Batch()
    for tid in range(first, first + n):
        b.parcel_event(time.time() if t is None else t, tid, "sorted", chute=3, reason="planned", identity=f"P{tid}",
                       boot_id=1)
    store.commit(b)


def _relay_cmd(db: Path, broker: Broker) -> list[str]:
    return [sys.executable, "-m", "sortctl.cli", "relay", "--db", str(db), "--broker", broker.url, "--site",
            TOPICS.site, "--area", TOPICS.area, "--sorter", TOPICS.sorter, "--site-file",
            str(ROOT / "config" / "site.yaml")]


async def _until(cond: Callable[[], bool], within_s: float) -> bool:
    """Poll ``cond`` until true or ``within_s`` passed; whether it came true."""
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _throughput(work: Path, n: int) -> float:
    broker = Broker(work / "b1")
    broker.start()
    db = work / "tp.sqlite"
    store = EventStore(db, synchronous="NORMAL")
    for first in range(1, n + 1, 5000):
        _write(store, first, min(5000, n + 1 - first), 1.7e9)
    store.close()
    sub = await asyncio.to_thread(subprocess.Popen, ["mosquitto_sub", "-p", str(broker.port), "-q", "1", "-C", str(n), "-t",
                            TOPICS.confirmation], stdout=subprocess.DEVNULL)
    relay = Relay(RelayConfig(db=db, topics=TOPICS, site=load_site(ROOT / "config" / "site.yaml"),
                              broker=broker.endpoint()))
    stop = asyncio.Event()
    try:
        await asyncio.sleep(0.3)  # mosquitto_sub subscribed
        t0 = time.perf_counter()
        task = asyncio.ensure_future(relay.run(stop))
        await asyncio.wait_for(asyncio.to_thread(sub.wait), 300)
        rate = n / (time.perf_counter() - t0)
        stop.set()
        await task
    finally:
        if sub.poll() is None:
            sub.kill()
        relay.close()
        broker.close()
    return rate


async def _paced(work: Path, name: str, rate_per_h: float, seconds: float, outage: tuple[float, float] | None
                 ) -> tuple[int, list[float], int, int]:
    """Write at ``rate_per_h`` for ``seconds`` with the relay as a process; optionally stop the
    broker from ``outage[0]`` for ``outage[1]`` s. Returns (rows written, latencies s,
    distinct received, copies received)."""
    broker = Broker(work / name)
    broker.start()
    db = work / f"{name}.sqlite"
    store = EventStore(db, synchronous="NORMAL")
    _write(store, 0, 1)  # the store exists before the relay opens it
    watcher = Watcher(broker.port, f"{TOPICS.root}/parcel/#", identifier=f"bench-host-{name}")
    stop = asyncio.Event()
    wtask = asyncio.ensure_future(watcher.run(stop))
    proc = await asyncio.to_thread(subprocess.Popen, _relay_cmd(db, broker), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, cwd=ROOT)
    written = 1
    try:
        await asyncio.wait_for(watcher.subscribed.wait(), 10)
        await _until(lambda: bool(watcher.got), 20.0)  # the relay is up and publishing
        t0 = time.monotonic()
        due = 0.0
        stopped = False
        while (now := time.monotonic() - t0) < seconds:
            if outage is not None and not stopped and now >= outage[0]:
                await asyncio.to_thread(broker.stop)
                stopped = True
            if outage is not None and stopped and broker.proc is None and now >= outage[0] + outage[1]:
                await asyncio.to_thread(broker.start)
            due += rate_per_h / 3600.0 * 0.01
            k = int(due)
            if k:
                _write(store, written, k)
                written += k
                due -= k
            await asyncio.sleep(max(0.0, 0.01 - (time.monotonic() - t0 - now)))
        if broker.proc is None:
            broker.start()
        await _until(lambda: len({json.loads(r.payload)["event_id"] for r in watcher.got}) >= written, 60.0)
    finally:
        proc.terminate()
        proc.wait(10)
        stop.set()
        await wtask
        store.close()
        broker.close()
    payloads = [(json.loads(r.payload), r.t) for r in watcher.got]
    distinct = len({p["event_id"] for p, _ in payloads})
    lat = [t - p["t"] for p, t in payloads]
    return written, lat, distinct, len(payloads) - distinct


async def _main(quick: bool) -> list[Record]:
    with tempfile.TemporaryDirectory(prefix="sortcentre-relay-bench-") as tmp:
        work = Path(tmp)
        n = 5000 if quick else 30_000
        rate = await _throughput(work, n)
        lat_s = 10.0 if quick else 30.0
        written, lat, _, _ = await _paced(work, "lat", 10 * RATE, lat_s, None)
        out_s, out_len = (15.0, 5.0) if quick else (60.0, 30.0)
        w2, _, distinct, dup = await _paced(work, "out", RATE, out_s, (3.0, out_len))
    p99 = float(np.percentile(np.asarray(lat), 99) * 1000.0) if lat else float("nan")
    goal = 10 * RATE / 3600.0
    return [
        Record("relay.msgs_per_s", "msg/s", rate, f"{n:,} confirmations; {rate / goal:.0f}x the goal "
               f"(10x one sorter at 40,000/h = {goal:.0f}/s)"),
        Record("relay.latency_p99_ms", "ms", p99, f"row committed -> subscriber, {written:,} rows at 400,000/h, "
               f"median {float(np.median(lat)) * 1000:.1f} ms"),
        Record("relay.lost_in_outage", "parcels", float(w2 - distinct),
               f"{w2:,} written at 40,000/h over {out_s:.0f} s, broker down {out_len:.0f} s"),
        Record("relay.duplicates_delivered", "msgs", float(dup), "copies beyond the first (same event id)"),
    ]


def run(quick: bool = False) -> list[Record]:
    if mosquitto_path() is None:
        raise RuntimeError("mosquitto is not installed (./dev setup installs it)")
    return asyncio.run(_main(quick))

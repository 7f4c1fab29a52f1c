"""The relay as its own process (`sortctl relay`): ``kill -9`` in the middle of a backlog, then
a restart, loses nothing and repeats only messages with the same event id; the broker tells
the host the sorter went offline (the last will) and the restart says online again."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

from harness.broker import Broker, Watcher
from tests.host.conftest import ROOT, TOPICS, until, write_parcels

N = 6_000


def start_relay(db: Path, broker: Broker, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sortctl.cli", "relay", "--db", str(db), "--broker", broker.url,
             "--site", TOPICS.site, "--area", TOPICS.area, "--sorter", TOPICS.sorter,
             "--site-file", str(ROOT / "config" / "site.yaml"), "--counters-every", "1", "-v"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )


async def test_kill_9_mid_stream_then_restart_loses_nothing_and_the_last_will_says_offline(
    tmp_path: Path, broker: Broker
) -> None:
    db = tmp_path / "events.sqlite"
    write_parcels(db, 1, N)
    w = Watcher(broker.port, TOPICS.everything, identifier="host-kill9")
    stop = asyncio.Event()
    task = asyncio.ensure_future(w.run(stop))
    log = tmp_path / "relay.log"
    relay = start_relay(db, broker, log)
    try:
        await until(w.subscribed.is_set)
        await until(lambda: len(w.on("/parcel/confirmation")) >= 1000, 20.0, "relay publishing")
        relay.send_signal(signal.SIGKILL)
        relay.wait(5)
        seen_at_kill = len(w.on("/parcel/confirmation"))
        await until(lambda: any(json.loads(r.payload)["state"] == "offline" for r in w.on("/status")), 10.0,
                    "the last will")
        will = [json.loads(r.payload) for r in w.on("/status")][-1]
        assert will["state"] == "offline" and "last will" in will["reason"]
        assert seen_at_kill < N, "the relay finished before the kill: make N larger"

        relay = start_relay(db, broker, log)
        await until(lambda: len({json.loads(r.payload)["event_id"] for r in w.on("/parcel/confirmation")}) >= N,
                    30.0, f"{N} distinct confirmations after the restart")
        await until(lambda: json.loads(w.on("/status")[-1].payload)["state"] == "online")
        got = [json.loads(r.payload) for r in w.on("/parcel/confirmation")]
        assert {p["parcel_id"] for p in got} == {f"P{i}" for i in range(1, N + 1)}
        first: dict[str, bytes] = {}
        for r in w.on("/parcel/confirmation"):
            assert first.setdefault(json.loads(r.payload)["event_id"], r.payload) == r.payload
        dup = len(got) - N
        assert dup <= 2000, f"{dup} re-sends: more than the relay's unacknowledged window"
    finally:
        if relay.poll() is None:
            relay.send_signal(signal.SIGTERM)
            relay.wait(10)
        stop.set()
        await task
    assert "Traceback" not in log.read_text()

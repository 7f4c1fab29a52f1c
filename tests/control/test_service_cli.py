"""`sortctl run` as the sorting floor starts it: a process against the simulator's PLCs and
camera (a second process), stopped with SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from control.store import EventStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SORTCTL = [sys.executable, "-m", "sortctl"]


def _sorted_count(db: Path) -> int:
    if not db.exists():
        return 0
    store = EventStore(db, readonly=True)
    try:
        return sum(1 for r in store.parcels() if r.state == "sorted")
    except Exception:  # the service is creating its schema
        return 0
    finally:
        store.close()


def test_run_sorts_against_the_simulator_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    sim = subprocess.Popen(
        [*SORTCTL, "sim", "--site", str(ROOT / "config" / "site.yaml"), "--scenario",
         str(ROOT / "config" / "scenarios" / "demo.yaml"), "--port-base", "0", "--duration", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path,
    )
    try:
        assert sim.stdout is not None
        ep = json.loads(sim.stdout.readline())["endpoints"]  # printed first, once the servers listen
        db = tmp_path / "events.sqlite"
        log = tmp_path / "run.log"
        with log.open("w") as err:
            service = subprocess.Popen(
                [*SORTCTL, "run", "--site", str(ROOT / "config" / "site.yaml"), "--db", str(db),
                 "--conveyor-port", str(ep["conveyor"]["port"]), "--diverter-port", str(ep["diverter"]["port"]),
                 "--camera-port", str(ep["camera"]["port"]), "--log-format", "json"],
                stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path,
            )
            try:
                deadline = time.monotonic() + 60.0
                while _sorted_count(db) < 5 and time.monotonic() < deadline and service.poll() is None:
                    time.sleep(0.5)
                assert service.poll() is None, "sortctl run exited by itself"
                assert _sorted_count(db) >= 5
            finally:
                service.send_signal(signal.SIGTERM)
                code = service.wait(timeout=30)
        assert code == 0
    finally:
        sim.kill()
        sim.wait(timeout=10)
        if sim.stdout is not None:
            sim.stdout.close()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(rec) for rec in lines)
    assert not any(rec["logger"].startswith("asyncua") and rec["level"] == "info" for rec in lines)
    store = EventStore(db, readonly=True)
    try:
        service_events = [(e[2], e[4]) for e in store.unit_events("service")]
        assert service_events[0][0] == "start" and service_events[-1][0] == "stop"
        # no fault left behind; a late cycle (cycle_overrun: how loaded this machine is, cleared
        # 5 s after the last one) is not the controller's to answer for
        assert {k: v for k, v in store.active_alarms().items() if k != "cycle_overrun"} == {}
    finally:
        store.close()

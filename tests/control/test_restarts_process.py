"""Restarts as the floor does them: `sortctl sim` and `sortctl run` as real processes on loopback,
one of them stopped (SIGTERM) or killed (SIGKILL) and started again, the controller on the same
event store, the simulator on the same ports. After each the unit must be back in Execute by
itself, sorting, without flooding the log or the store, and without overwriting any outcome.

(The in-memory fault matrix, tests/control/test_fault_matrix.py, covers the combinations; these
keep the same story honest over the real protocols and real process deaths.)
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.store import EventStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SORTCTL = [sys.executable, "-m", "sortctl"]
SITE = ROOT / "config" / "site.yaml"
SCENARIO = ROOT / "config" / "scenarios" / "demo.yaml"
FINAL = ("sorted", "rejected", "lost", "missorted")


def free_base() -> int:
    """A port N with N, N+1 and N+2 free on 127.0.0.1 (the simulator's --port-base)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base > 65000:
            continue
        ok = True
        for p in (base, base + 1, base + 2):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return base
    raise RuntimeError("no three free consecutive ports")


class Floor:
    """One simulator and one controller process, started and stopped like a floor engineer does."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = tmp / "events.sqlite"
        self.base = free_base()
        self.sim: subprocess.Popen[str] | None = None
        self.ctl: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    def start_sim(self) -> None:
        self.sim = subprocess.Popen(
            [*SORTCTL, "sim", "--site", str(SITE), "--scenario", str(SCENARIO), "--port-base", str(self.base),
             "--duration", "600"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=self.tmp,
        )
        assert self.sim.stdout is not None
        json.loads(self.sim.stdout.readline())  # printed once the servers listen

    def kill_sim(self) -> None:
        assert self.sim is not None
        self.sim.kill()
        self.sim.wait(timeout=30)
        if self.sim.stdout is not None:
            self.sim.stdout.close()

    def start_controller(self) -> None:
        log = self.tmp / f"run{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as err:
            self.ctl = subprocess.Popen(
                [*SORTCTL, "run", "--site", str(SITE), "--db", str(self.db), "--conveyor-port", str(self.base),
                 "--diverter-port", str(self.base + 1), "--camera-port", str(self.base + 2), "--log-format", "json"],
                stdout=subprocess.DEVNULL, stderr=err, cwd=self.tmp,
            )

    def stop_controller(self, sig: signal.Signals) -> int:
        assert self.ctl is not None
        self.ctl.send_signal(sig)
        return self.ctl.wait(timeout=60)

    def close(self) -> None:
        for p in (self.ctl, self.sim):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        if self.sim is not None and self.sim.stdout is not None:
            self.sim.stdout.close()

    # -- what the store says ------------------------------------------------------------------
    def read(self) -> tuple[list[tuple[float, str, str, int, str]], list[tuple[float, int, str, int, int, str, str, int]]]:
        store = EventStore(self.db, readonly=True)
        try:
            return store.unit_events(), store.parcel_events()
        finally:
            store.close()

    def sorted_since(self, t: float) -> int:
        with contextlib.suppress(Exception):
            return sum(1 for e in self.read()[1] if e[2] == "sorted" and e[0] >= t)
        return 0

    def executing_since(self, t: float) -> float | None:
        """Seconds from ``t`` to the first Execute state stored after it (None: not yet)."""
        with contextlib.suppress(Exception):
            for when, kind, name, _, _ in self.read()[0]:
                if when >= t and kind == "state" and name == "EXECUTE":
                    return when - t
        return None

    def wait_for(self, cond: object, within_s: float, what: str) -> None:
        deadline = time.monotonic() + within_s
        while not cond():  # type: ignore[operator]
            assert self.ctl is not None and self.ctl.poll() is None, f"sortctl run exited ({what})"
            assert time.monotonic() < deadline, f"not within {within_s} s: {what}"
            time.sleep(0.25)


@pytest.fixture
def floor(tmp_path: Path) -> Iterator[Floor]:
    f = Floor(tmp_path)
    try:
        yield f
    finally:
        f.close()


def assert_no_outcome_twice(floor: Floor) -> None:
    finals = Counter((e[7], e[1]) for e in floor.read()[1] if e[2] in FINAL)
    twice = [k for k, n in finals.items() if n > 1]
    assert twice == [], f"keys (boot id, tracking id) with two final outcomes: {twice[:10]}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_controller_restarted_after_the_watchdog_sorts_again_by_itself(floor: Floor, sig: signal.Signals) -> None:
    """Seen on the floor: after a restart longer than the 1 s watchdog the unit went STOPPED ->
    RESETTING and stayed there for good (the belt, Held with its watchdog fault, refused Reset)."""
    floor.start_sim()
    floor.start_controller()
    t0 = time.time()
    floor.wait_for(lambda: floor.sorted_since(t0) >= 5, 90, "sorting before the restart")
    floor.stop_controller(sig)
    time.sleep(4.0)  # longer than the watchdog: the conveyor PLC holds the belt
    t1 = time.time()
    floor.start_controller()
    floor.wait_for(lambda: floor.executing_since(t1) is not None, 30, "back in Execute")
    took = floor.executing_since(t1)
    assert took is not None and took < 10.0
    floor.wait_for(lambda: floor.sorted_since(t1 + took) >= 5, 60, "sorting after the restart")
    units = [e for e in floor.read()[0] if e[0] >= t1]
    assert len(units) < 60, Counter((e[1], e[2]) for e in units).most_common(5)  # no flood
    assert len(floor.logs[-1].read_text().splitlines()) < 60
    assert_no_outcome_twice(floor)


def test_simulator_killed_and_started_again_under_a_running_controller(floor: Floor) -> None:
    """Seen on the floor: after a PLC restart the unit stayed HOLDING for good, refused belt
    commands were logged and stored every cycle (5,321 lines in 53 s), and the restarted PLC's
    tracking ids (from 1 again) overwrote the outcomes of earlier parcels."""
    floor.start_sim()
    floor.start_controller()
    t0 = time.time()
    floor.wait_for(lambda: floor.sorted_since(t0) >= 20, 120, "sorting before the PLC restart")
    floor.kill_sim()
    time.sleep(3.0)
    floor.start_sim()  # a new simulator: new boot ids, tracking ids and ring seqs from 1
    t1 = time.time()
    floor.wait_for(lambda: floor.executing_since(t1) is not None, 30, "back in Execute after the PLC restart")
    took = floor.executing_since(t1)
    assert took is not None and took < 15.0
    floor.wait_for(lambda: floor.sorted_since(t1 + took) >= 20, 90, "sorting the new PLC's parcels")
    units, _ = floor.read()
    after = [e for e in units if e[0] >= t1]
    assert len(after) < 80, Counter((e[1], e[2]) for e in after).most_common(5)
    assert len(floor.logs[-1].read_text().splitlines()) < 150
    restarts = [e for e in units if e[1] == "alarm" and e[2] == "plc_restarted"]
    assert {e[4].split()[0] for e in restarts} == {"conveyor", "diverter"}  # both PLCs' boot ids changed
    assert_no_outcome_twice(floor)
    store = EventStore(floor.db, readonly=True)
    try:
        alarms = store.active_alarms()
    finally:
        store.close()
    assert "host_watchdog" not in alarms and "encoder_glitch" not in alarms, alarms

"""A soak run: the simulator and the controller as separate processes over real protocols, in real
time, with the restarts a floor sees - the controller stopped with SIGTERM or killed with
SIGKILL and started again on the same store, each PLC restarted warm (link gone, memory kept) and
cold (power cycle: new boot id, counters from 1) - judged at the end against the simulator's
ground truth and the store.

What it measures (`benchmarks/soak.py` turns it into records):
- missorts, lost parcels and duplicated outcomes (a key with more than one final outcome);
- recovery: from the moment each cause cleared (controller process started again; PLC link
  back) to the unit's next Execute, read from the store's own state events; a recovery over
  10 s is a stall;
- the controller's health records (`meta.health`, every 10 s): cycle lag p99 and resident
  memory, first against last tenth of the run;
- store rows per parcel.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml

from control.store import EventStore
from harness.audit import ON_BELT, Audit, Truth, audit

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
SORTCTL = [sys.executable, "-m", "sortctl"]
FINAL_KINDS = ("sorted", "rejected", "lost", "missorted")
STALL_S = 10.0


@dataclass(frozen=True, slots=True)
class SoakPlan:
    """What happens when, in seconds from the start of arrivals."""

    arrivals_s: float
    rate_per_hour: float = 40_000.0
    controller_restarts: tuple[tuple[float, str], ...] = ()  # (at, "term" | "kill")
    plc_restarts: tuple[tuple[float, str, str], ...] = ()  # (at, "conveyor" | "diverter", "warm" | "cold")
    controller_down_s: float = 3.0  # longer than the PLCs' 1 s watchdog: the belt is held meanwhile
    plc_down_s: float = 2.0
    settle_s: float = 45.0
    site: Path = CONFIG / "site.yaml"
    scenario: Path = CONFIG / "scenarios" / "rush.yaml"

    @classmethod
    def quick(cls) -> SoakPlan:
        """About three minutes: one controller restart of each kind, one PLC restart of each kind."""
        return cls(
            arrivals_s=135.0,
            controller_restarts=((25.0, "term"), (75.0, "kill")),
            plc_restarts=((50.0, "conveyor", "cold"), (100.0, "diverter", "cold"),
                          (115.0, "conveyor", "warm"), (125.0, "diverter", "warm")),
        )

    @classmethod
    def full(cls, minutes: float = 30.0) -> SoakPlan:
        """``minutes`` of arrivals: a controller restart every 3 minutes (alternating SIGTERM and
        SIGKILL) and a PLC restart of each kind every 7.5 minutes, staggered between them."""
        end = minutes * 60.0
        ctl = tuple((t, "term" if k % 2 == 0 else "kill") for k, t in enumerate(np.arange(90.0, end - 60.0, 180.0)))
        kinds = (("conveyor", "cold"), ("diverter", "cold"), ("conveyor", "warm"), ("diverter", "warm"))
        plc = tuple((float(t), *kinds[k % 4]) for k, t in enumerate(np.arange(180.0, end - 60.0, 112.5)))
        return cls(arrivals_s=end, controller_restarts=ctl, plc_restarts=plc)


@dataclass(slots=True)
class Recovery:
    what: str
    cleared_at: float  # wall time the cause cleared
    recovered_s: float | None  # to Execute; None: never within the run


@dataclass(slots=True)
class SoakResult:
    plan: SoakPlan
    wall_s: float
    audit: Audit
    duplicates: int
    recoveries: list[Recovery]
    health: list[dict[str, Any]]
    rows_per_parcel: float
    unit_events: int
    log_lines: int
    lost_off_belt: int = 0  # parcels that left the belt with no final outcome under their key
    sim_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def stalls(self) -> int:
        return sum(1 for r in self.recoveries if r.recovered_s is None or r.recovered_s > STALL_S)

    @property
    def max_recovery_s(self) -> float:
        got = [r.recovered_s for r in self.recoveries if r.recovered_s is not None]
        return max(got, default=float("nan"))

    def tenth(self, key: str, last: bool) -> float:
        """Median of a health figure over the first (or last) tenth of the run."""
        if not self.health:
            return float("nan")
        t = np.array([h["t"] for h in self.health])
        lo, hi = t.min(), t.max()
        span = max(hi - lo, 1e-9)
        sel = t >= hi - 0.1 * span if last else t <= lo + 0.1 * span
        return float(np.median([self.health[i][key] for i in np.flatnonzero(sel)]))


def _scenario(plan: SoakPlan, path: Path) -> None:
    data: dict[str, Any] = yaml.safe_load(plan.scenario.read_text(encoding="utf-8")) or {}
    if data.get("manifest"):
        data["manifest"] = str((plan.scenario.parent / str(data["manifest"])).resolve())
    arrivals = dict(data.get("arrivals") or {})
    arrivals["rate_per_hour"] = plan.rate_per_hour
    arrivals["count"] = int(plan.rate_per_hour * plan.arrivals_s / 3600.0)
    data["arrivals"] = arrivals
    data["auto_start"] = False
    data["faults"] = [
        {"kind": "plc_power_cycle" if kind == "cold" else "plc_restart", "at_s": at, "duration_s": plan.plc_down_s,
         "plc": plc}
        for at, plc, kind in plan.plc_restarts
    ]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")


class _Processes:
    """The simulator and the controller as child processes of this one."""

    def __init__(self, plan: SoakPlan, tmp: Path) -> None:
        self.plan, self.tmp = plan, tmp
        self.db = tmp / "events.sqlite"
        self.truth = tmp / "truth.json"
        self.log = tmp / "controller.log"
        self.sim: subprocess.Popen[str] | None = None
        self.ctl: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self._log: IO[bytes] | None = None
        self.env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def start_sim(self, scenario: Path) -> None:
        self.sim = subprocess.Popen(
            [*SORTCTL, "sim", "--site", str(self.plan.site), "--scenario", str(scenario), "--port-base", "0",
             "--ground-truth", str(self.truth), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=self.tmp, env=self.env,
        )
        assert self.sim.stdout is not None
        ep = json.loads(self.sim.stdout.readline())["endpoints"]
        self.ports = {"conveyor": ep["conveyor"]["port"], "diverter": ep["diverter"]["port"],
                      "camera": ep["camera"]["port"]}

    def start_controller(self) -> None:
        self._log = self._log or self.log.open("ab")
        self.ctl = subprocess.Popen(
            [*SORTCTL, "run", "--site", str(self.plan.site), "--db", str(self.db),
             "--conveyor-port", str(self.ports["conveyor"]), "--diverter-port", str(self.ports["diverter"]),
             "--camera-port", str(self.ports["camera"]), "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=self._log, cwd=self.tmp, env=self.env,
        )

    def stop_controller(self, how: str) -> None:
        assert self.ctl is not None
        self.ctl.send_signal(signal.SIGTERM if how == "term" else signal.SIGKILL)
        self.ctl.wait(timeout=60)
        self.ctl = None

    def stop_sim(self) -> dict[str, Any]:
        assert self.sim is not None and self.sim.stdout is not None
        self.sim.send_signal(signal.SIGTERM)
        out, _ = self.sim.communicate(timeout=120)
        stats: dict[str, Any] = {}
        for line in out.splitlines():
            try:
                stats = json.loads(line).get("summary", stats)
            except ValueError:
                continue
        return stats

    def close(self) -> None:
        for p in (self.ctl, self.sim):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        if self._log is not None:
            self._log.close()


def _stop_belt(db: Path, within_s: float = 10.0) -> None:
    """`sortctl status --send stop`, then wait until the unit is Stopped and a second more."""
    store = EventStore(db)
    try:
        store.add_command("STOP", time.time())
    finally:
        store.close()
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        store = EventStore(db, readonly=True)
        try:
            states = [e[2] for e in store.unit_events("state")]
        finally:
            store.close()
        if states and states[-1] == "STOPPED":
            break
        time.sleep(0.2)
    time.sleep(1.0)


def _health(db: Path, seen: dict[float, dict[str, Any]]) -> None:
    if not db.exists():
        return
    try:
        store = EventStore(db, readonly=True)
    except Exception:  # the controller is creating the file
        return
    try:
        raw = store.meta("health", "")
    except Exception:
        raw = ""
    finally:
        store.close()
    if raw:
        h = json.loads(raw)
        seen[float(h["t"])] = h


def run_soak(plan: SoakPlan, progress: Callable[[str], None] | None = None, keep: Path | None = None) -> SoakResult:
    """Run the plan; ``keep``: leave the store, logs and ground truth in that folder."""
    say = progress or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="sortcentre-soak-") as d:
        tmp = keep or Path(d)
        tmp.mkdir(parents=True, exist_ok=True)
        scenario = tmp / "scenario.yaml"
        _scenario(plan, scenario)
        procs = _Processes(plan, tmp)
        health: dict[float, dict[str, Any]] = {}
        starts: list[tuple[float, str]] = []  # (wall time a controller process started, why)
        try:
            procs.start_sim(scenario)
            t0 = time.monotonic()
            w0 = time.time()
            procs.start_controller()
            starts.append((time.time(), "controller start"))
            todo = sorted(plan.controller_restarts)
            end = plan.arrivals_s + plan.settle_s
            while (el := time.monotonic() - t0) < end:
                if todo and el >= todo[0][0]:
                    _, how = todo.pop(0)
                    say(f"{el:6.0f} s: controller {'SIGTERM' if how == 'term' else 'SIGKILL'}, down "
                        f"{plan.controller_down_s:g} s")
                    procs.stop_controller(how)
                    time.sleep(plan.controller_down_s)
                    procs.start_controller()
                    starts.append((time.time(), f"controller restart ({how})"))
                assert procs.ctl is not None
                if procs.ctl.poll() is not None:
                    raise RuntimeError(f"sortctl run exited by itself with {procs.ctl.returncode}; log: {procs.log}")
                _health(procs.db, health)
                time.sleep(0.5)
            say("stopping")
            # end of shift: the operator stops the belt, the controller takes the last
            # confirmations, then the simulator and the controller go; a parcel still riding is
            # "on the belt", not lost
            _stop_belt(procs.db)
            sim_stats = procs.stop_sim()
            procs.stop_controller("term")
            wall = time.time() - w0
            truth = Truth.from_json(procs.truth)
            result = _judge(plan, procs, truth, starts, sorted(health.values(), key=lambda h: h["t"]), wall)
            result.sim_stats = sim_stats
            return result
        finally:
            procs.close()


def _judge(plan: SoakPlan, procs: _Processes, truth: Truth, starts: list[tuple[float, str]],
           health: list[dict[str, Any]], wall: float) -> SoakResult:
    store = EventStore(procs.db, readonly=True)
    try:
        rows = store.parcels()
        finals = Counter((e[7], e[1]) for e in store.parcel_events() if e[2] in FINAL_KINDS)
        units = store.unit_events()
        recirc = store.status().recirculations
        db = store._db
        counts = [int(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                  for t in ("ring_events", "parcel_events", "unit_events")]
    finally:
        store.close()
    duplicates = sum(1 for n in finals.values() if n > 1)
    final_keys = {r.key for r in rows if r.final}
    lost_off_belt = sum(
        1 for boot, tid, loc in zip(truth.boot_id.tolist(), truth.tracking_id.tolist(), truth.location.tolist(),
                                    strict=True)
        if loc != ON_BELT and (int(boot), int(tid)) not in final_keys
    )
    execute = [t for t, kind, name, _, _ in units if kind == "state" and name == "EXECUTE"]
    recoveries = [Recovery(why, t, _next_after(execute, t)) for t, why in starts[1:]]
    for t, kind, name, _, _ in units:
        # a PLC's cause clears when its heartbeat is back (link up, program running)
        if kind == "alarm_clear" and name in ("conveyor_heartbeat_lost", "diverter_heartbeat_lost"):
            recoveries.append(Recovery(f"{name.split('_')[0]} PLC back", t, _next_after(execute, t)))
    log_lines = len(procs.log.read_bytes().splitlines()) if procs.log.exists() else 0
    n = max(len(rows), 1)
    return SoakResult(plan, wall, audit(rows, truth, recirc), duplicates, recoveries, health,
                      sum(counts) / n, counts[2], log_lines, lost_off_belt)


def _next_after(times: list[float], t: float) -> float | None:
    later = [x for x in times if x >= t]
    return (min(later) - t) if later else None

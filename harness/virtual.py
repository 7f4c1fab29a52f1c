"""The real controller against the simulator's PLC programs in memory, in virtual time.

`VirtualFloor` holds one simulator (``transport="memory"``: the PLC programs and their memory
images, no sockets) and, when one is running, one real `Controller` (not a copy) talking to it
through `harness.memlink` links, on a clock that is the simulator's world time. Each ``tick``
is one PLC scan and one control cycle, so a minute of sorting runs in a few seconds of CPU and
the same inputs give the same run. The camera is `TruthCamera`: it answers each scan trigger
from the simulator's ground truth after a fixed decode time (vision is tested elsewhere; here
it only has to be on time or not at all).

Used by the fault matrix (tests/control/test_fault_matrix.py): restart the controller with or
without its last commit, restart either PLC warm or cold, inject faults, send operator commands
through the store's command table as `sortctl status --send` does, and judge the store against
the ground truth.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from control.lifecycle import ScanStatus
from control.routing.engine import RoutingEngine
from control.routing.manifest import Manifest, load_manifest
from control.routing.plan import SortPlan, load_plan
from control.routing.settings import RoutingSettings, load_settings
from control.service.controller import Controller
from control.service.feeds import DecodeResult
from control.service.links import LINK_BACKOFF
from control.service.routing import EngineRouter, PlanSource
from control.service.settings import ServiceSettings
from control.store import EventStore
from harness.memlink import memory_link
from plant.codes import PackMLState
from plant.site import Site
from plant.tagmap import TagMap
from plc_sim.parcels import LabelKind
from plc_sim.parcels import Manifest as SimManifest
from plc_sim.scenario import Scenario
from plc_sim.simulator import Simulator

__all__ = ["LogCount", "RoutingInputs", "TruthCamera", "VirtualFloor"]

WALL0 = 1_800_000_000.0  # the wall clock of a virtual run: fixed, so two runs store the same rows


class TruthCamera:
    """A `DecodeFeed` that reads labels from the simulator's ground truth, ``delay_s`` after the
    scan trigger; ``down`` models a camera that is not there (no stream, no results)."""

    def __init__(self, sim: Simulator, delay_s: float = 0.05) -> None:
        self.sim = sim
        self.delay_s = delay_s
        self.down = False
        self._down_since: float | None = None
        self._due: deque[tuple[float, DecodeResult]] = deque()

    def now(self) -> float:
        return self.sim.world.time_s

    @property
    def healthy(self) -> bool:
        return not self.down

    @property
    def down_for(self) -> float:
        return 0.0 if self._down_since is None else self.now() - self._down_since

    def set_down(self, down: bool) -> None:
        self.down = down
        self._down_since = self.now() if down else None
        if down:
            self._due.clear()

    def on_scans(self, scans: list[tuple[int, int, int]]) -> None:
        if self.down:
            return
        now = self.now()
        for tid, count, _lap in scans:
            pid, second, kind, _sev, _sym = self.sim.world.parcel_label(tid)
            if kind in (LabelKind.MISSING, LabelKind.DAMAGED):
                status, ident = ScanStatus.NO_READ, ""
            elif kind == LabelKind.DOUBLE:
                status, ident = ScanStatus.MULTI_READ, ""
            else:
                status, ident = ScanStatus.READ, pid
            done = now + self.delay_s
            self._due.append((done, DecodeResult(tid, count, status, ident, done, detail=second)))

    def poll(self) -> list[DecodeResult]:
        now = self.now()
        out = []
        while self._due and self._due[0][0] <= now:
            out.append(self._due.popleft()[1])
        return out


@dataclass(frozen=True, slots=True)
class RoutingInputs:
    """The sort plan and manifest, loaded once: each controller start compiles its own engine
    from them (a restarted controller starts with empty chute loads, as a real one does)."""

    plan: SortPlan
    manifest: Manifest
    settings: RoutingSettings | None
    source: PlanSource = PlanSource("", "", "")  # the texts, as the store keeps each plan version

    @classmethod
    def load(cls, site: Site, plan: Path, manifest: Path, settings: Path | None) -> RoutingInputs:
        source = PlanSource(plan.read_text(), settings.read_text() if settings else "", str(plan.resolve()))
        return cls(load_plan(plan, site), load_manifest(manifest), load_settings(settings) if settings else None,
                   source)


class LogCount(logging.Handler):
    """Counts the controller's log records (INFO and up) by virtual second: the no-flood
    invariant. ``with LogCount(floor) as logs:`` listens on the ``control`` logger meanwhile."""

    def __init__(self, floor: VirtualFloor) -> None:
        super().__init__(logging.INFO)
        self.floor = floor
        self.at: list[float] = []
        self.messages: list[str] = []
        self._level = logging.NOTSET

    def emit(self, record: logging.LogRecord) -> None:
        self.at.append(self.floor.now())
        self.messages.append(record.getMessage())

    def __enter__(self) -> LogCount:
        logger = logging.getLogger("control")
        self._level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("control")
        logger.removeHandler(self)
        logger.setLevel(self._level)


@dataclass
class VirtualFloor:
    """One simulated sorter in memory and, between restarts, one real controller."""

    site: Site
    tags: TagMap
    scenario: Scenario
    routing: RoutingInputs
    db: Path
    # NORMAL: a virtual crash is a process crash, which WAL survives without an fsync per commit;
    # a 1 ms busy timeout: a locked store fails each commit at once instead of after 50 ms
    settings: ServiceSettings = field(
        default_factory=lambda: ServiceSettings(synchronous="NORMAL", store_busy_timeout_s=0.001)
    )
    manifest: SimManifest | None = None
    tick_s: float = 0.01
    decode_delay_s: float = 0.05

    def __post_init__(self) -> None:
        self.sim = Simulator(self.site, self.tags, self.scenario, manifest=self.manifest, transport="memory",
                             scan_loop=False, camera=False, tick_s=self.tick_s)
        self.camera = TruthCamera(self.sim, self.decode_delay_s)
        self.controller: Controller | None = None
        self.starts = 0
        arrival = self.routing.manifest.arrival
        self._origin = float(np.nanmin(arrival)) if len(arrival) and np.isfinite(arrival).any() else WALL0

    def now(self) -> float:
        return self.sim.world.time_s

    def wall(self) -> float:
        return WALL0 + self.now()

    async def open(self) -> None:
        await self.sim.start()

    async def close(self) -> None:
        if self.controller is not None:
            await self.stop_controller("term")
        await self.sim.stop()

    # ------------------------------------------------------------------------------ the controller
    async def start_controller(self) -> Controller:
        assert self.controller is None, "a controller is running"
        r = self.routing
        engine = RoutingEngine(self.site, r.plan, r.manifest, r.settings)
        origin = self._origin
        router = EngineRouter(engine, r.manifest, clock=lambda: origin + self.now(), source=r.source)
        conveyor = memory_link(self.sim, "conveyor", clock=self.now, backoff=LINK_BACKOFF)
        diverter = memory_link(self.sim, "diverter", clock=self.now, backoff=LINK_BACKOFF)
        c = Controller(self.site, self.tags, conveyor, diverter, router, self.camera, str(self.db), self.settings,
                       clock=self.now, wall=self.wall)
        await c.start()
        self.controller = c
        self.starts += 1
        return c

    async def stop_controller(self, how: str) -> None:
        """``term``: a clean stop (the pending batch committed); ``kill``: a crash (nothing more)."""
        c, self.controller = self.controller, None
        assert c is not None
        if how == "term":
            await c.close()
        else:
            await c.kill()

    # ------------------------------------------------------------------------------ time
    async def tick(self) -> None:
        ev = await self.sim.scan(self.tick_s)
        self.camera.on_scans(ev.scans)
        c = self.controller
        if c is not None:
            c.note_lag(0.0)
            await c.step()
        await asyncio.sleep(0)  # background reconnects get their turn

    async def run_for(self, seconds: float) -> None:
        end = self.now() + seconds - 1e-9
        while self.now() < end:
            await self.tick()

    async def run_until(self, cond: object, within_s: float) -> float | None:
        """Tick until ``cond()``; the virtual seconds it took, or None if not within ``within_s``."""
        t0 = self.now()
        while not cond():  # type: ignore[operator]
            if self.now() - t0 >= within_s:
                return None
            await self.tick()
        return self.now() - t0

    # ------------------------------------------------------------------------------ what happens
    def executing(self) -> bool:
        c = self.controller
        return c is not None and c.unit.state == PackMLState.EXECUTE and self.sim.conveyor.state == PackMLState.EXECUTE

    async def plc_warm_restart_begin(self, plc: str) -> None:
        """The PLC's server goes away (network, communication processor); its program runs on."""
        await (self.sim.conveyor_plc if plc == "conveyor" else self.sim.diverter_plc).stop()

    async def plc_warm_restart_end(self, plc: str) -> None:
        await (self.sim.conveyor_plc if plc == "conveyor" else self.sim.diverter_plc).start()

    def plc_power(self, plc: str, on: bool) -> None:
        """Cold: off (belt stops, no events), then on (new boot id, counters from 1)."""
        self.sim.faults.plc_power(plc, on)

    def lock_store(self) -> sqlite3.Connection:
        """Another connection holding the store's write lock: every commit fails (database is
        locked) until ``unlock_store`` - a real SQLite failure, not a stand-in."""
        con = sqlite3.connect(self.db, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        return con

    @staticmethod
    def unlock_store(con: sqlite3.Connection) -> None:
        con.execute("ROLLBACK")
        con.close()

    def send(self, command: str, user: str = "", **args: object) -> int:
        """An operator command through the store's command table, as `sortctl status --send`
        and the HMI send them; returns its id."""
        store = EventStore(self.db)
        try:
            return store.add_command(command.upper(), self.wall(), user=user, args=args or None)
        finally:
            store.close()

    def result(self, command_id: int) -> tuple[bool, str]:
        """(done, result) of a command sent with ``send``."""
        store = EventStore(self.db, readonly=True)
        try:
            return store.command_result(command_id)
        finally:
            store.close()

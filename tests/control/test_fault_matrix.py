"""The fault matrix: the real controller against the simulator's PLC programs, in memory and in
virtual time (harness/virtual.py), through every kind of restart with every kind of fault active.

Restarts: the controller stopped cleanly (SIGTERM-like: its last batch committed) or killed
(kill-like: its last batch lost), down 0.2 s, 2 s or 30 s; each PLC restarted warm (link gone
2 s, program running, memory kept) or cold (power cycle: new boot id, belt Stopped, counters and
rings from 1, the conveyor's tracking ids from 1). Faults active across the restart: none (the
belt in Execute), a jam (Stopped), an e-stop (Aborted), a chute full, an encoder glitch, the
camera down (Held), the event store failing (Held). Every cell checks the same invariants:

- back in Execute with no operator action within 5 s of the cause clearing, where the fault
  table says it clears by itself; with the documented commands where it does not;
- no parcel in a chute other than the one the controller chose (the simulator's ground truth);
- every parcel key (conveyor boot id, tracking id) has exactly one final outcome, and its stored
  row says the same: nothing lost, duplicated or overwritten;
- log lines and `unit_events` rows stay few: no flood.

A pairwise selection keeps it fast: every restart kind with no fault, every fault with four
restart kinds, and the lenient PLC twice.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from control.faults import FAULTS, Clears, Fault
from control.service.settings import ServiceSettings
from control.store import EventStore
from harness.audit import Truth, audit
from harness.virtual import LogCount, RoutingInputs, VirtualFloor
from plant.codes import PackMLState
from plant.site import Site
from plant.tagmap import TagMap, load_tag_map
from plc_sim.parcels import read_manifest
from plc_sim.scenario import Scenario

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
FINAL = ("sorted", "rejected", "lost", "missorted")
RECOVER_S = 5.0
TICK_S = 0.02


@pytest.fixture(scope="module")
def fast_site() -> Site:
    """The example site compressed: a 24 m loop at 4 m/s (a lap in 6 s)."""
    data: dict[str, Any] = yaml.safe_load((CONFIG / "site.yaml").read_text())
    s = data["sorter"]
    s["length_mm"] *= 0.4
    s["scanner_position_mm"] *= 0.4
    s["speed_mps"] = 4.0
    for c in data["chutes"]:
        c["diverter"]["position_mm"] *= 0.4
    return Site.model_validate(data)


@pytest.fixture(scope="module")
def tags() -> TagMap:
    return load_tag_map(CONFIG / "tagmap.yaml")


@pytest.fixture(scope="module")
def routing(fast_site: Site) -> RoutingInputs:
    return RoutingInputs.load(fast_site, CONFIG / "sortplan.csv", CONFIG / "manifest.csv", CONFIG / "routing.yaml")


@pytest.fixture(scope="module")
def sim_manifest() -> Any:
    return read_manifest(CONFIG / "manifest.csv")


def scenario(packml: str = "strict") -> Scenario:
    return Scenario.model_validate({
        "name": "matrix", "seed": 5, "manifest": None,
        "arrivals": {"rate_per_hour": 18000, "count": 30, "length_mm": {"min": 80, "max": 160}},
        "labels": {"missing": 0.05, "double": 0.03, "unknown_id": 0.03},
        "plc": {"packml": packml},
    })


# ------------------------------------------------------------------------------------ restarts
@dataclass(frozen=True)
class Restart:
    name: str
    begin: Callable[[VirtualFloor], Awaitable[None]]
    end: Callable[[VirtualFloor], Awaitable[None]]
    down_s: float


def controller_restart(how: str, gap: float) -> Restart:
    async def begin(f: VirtualFloor) -> None:
        await f.stop_controller(how)

    async def end(f: VirtualFloor) -> None:
        await f.start_controller()

    return Restart(f"controller-{how}-{gap:g}s", begin, end, gap)


def plc_restart(plc: str, kind: str) -> Restart:
    async def begin(f: VirtualFloor) -> None:
        if kind == "warm":
            await f.plc_warm_restart_begin(plc)
        else:
            f.plc_power(plc, False)

    async def end(f: VirtualFloor) -> None:
        if kind == "warm":
            await f.plc_warm_restart_end(plc)
        else:
            f.plc_power(plc, True)

    return Restart(f"{plc}-{kind}", begin, end, 2.0)


RESTARTS = {r.name: r for r in (
    *(controller_restart(how, gap) for gap in (0.2, 2.0, 30.0) for how in ("term", "kill")),
    *(plc_restart(plc, kind) for plc in ("conveyor", "diverter") for kind in ("warm", "cold")),
)}


# ------------------------------------------------------------------------------------ faults
@dataclass
class Condition:
    """A fault active across the restart: how it starts, how it ends, and who ends it."""

    name: str
    fault: Fault | None  # the fault table row that says whether it clears by itself
    on: Callable[[VirtualFloor], None] = lambda f: None
    off: Callable[[VirtualFloor], None] = lambda f: None
    lock: sqlite3.Connection | None = None

    @property
    def by_operator(self) -> bool:
        return self.fault is not None and FAULTS[self.fault].clears == Clears.BY_OPERATOR


def conditions() -> dict[str, Condition]:
    def store_on(c: Condition) -> Callable[[VirtualFloor], None]:
        def on(f: VirtualFloor) -> None:
            c.lock = f.lock_store()
        return on

    def store_off(c: Condition) -> Callable[[VirtualFloor], None]:
        def off(f: VirtualFloor) -> None:
            assert c.lock is not None
            f.unlock_store(c.lock)
        return off

    store = Condition("store_failure", Fault.STORE_WRITE_FAILURE)
    store.on, store.off = store_on(store), store_off(store)
    return {c.name: c for c in (
        Condition("none", None),
        Condition("jam", Fault.JAM, lambda f: f.sim.faults.jam("scanner")),
        Condition("estop", Fault.ESTOP, lambda f: f.sim.faults.estop(True), lambda f: f.sim.faults.estop(False)),
        Condition("chute_full", Fault.DESTINATION_FULL, lambda f: f.sim.faults.chute_full(16, True),
                  lambda f: f.sim.faults.chute_full(16, False)),
        Condition("encoder_glitch", Fault.ENCODER_GLITCH, lambda f: f.sim.faults.encoder_glitch(400)),
        Condition("camera_down", Fault.CAMERA_DOWN, lambda f: f.camera.set_down(True),
                  lambda f: f.camera.set_down(False)),
        store,
    )}


async def operator_recovery(f: VirtualFloor, cond: Condition) -> None:
    """The documented commands (docs/operations.md): jam: reset; e-stop: clear, then reset."""
    c = f.controller
    assert c is not None
    if cond.name == "estop":
        f.send("clear")
        stopped = await f.run_until(lambda: c.unit.state == PackMLState.STOPPED, 5.0)
        assert stopped is not None, f"clear did not bring the unit to Stopped: {c.unit.state.name}"
    f.send("reset")


# ------------------------------------------------------------------------------------ one cell
@dataclass
class Cell:
    floor: VirtualFloor
    logs: LogCount
    recovered_s: float | None
    auto: bool


async def run_cell(tmp_path: Path, site: Site, tags: TagMap, routing: RoutingInputs, manifest: Any,
                   restart: Restart, cond: Condition, packml: str = "strict") -> Cell:
    # a 20 ms PLC scan and control cycle (both legitimate settings) halve the work of a cell
    settings = ServiceSettings(cycle_s=TICK_S, synchronous="NORMAL", store_busy_timeout_s=0.001)
    floor = VirtualFloor(site, tags, scenario(packml), routing, tmp_path / "events.sqlite", settings=settings,
                         manifest=manifest, tick_s=TICK_S)
    logs = LogCount(floor).__enter__()
    try:
        await floor.open()
        await floor.start_controller()
        assert await floor.run_until(floor.executing, 5.0) is not None, "never reached Execute"
        await floor.run_for(2.0)  # sorting
        cond.on(floor)
        await floor.run_for(1.5)  # the fault has its effect (a held or stopped belt, a latched bit)
        await restart.begin(floor)
        await floor.run_for(restart.down_s)
        await restart.end(floor)
        await floor.run_for(1.0)
        cond.off(floor)  # the cause is gone (the e-stop released, the camera back, the lock freed)
        if cond.by_operator:  # the operator acts once the controller sees the belt again
            def waiting() -> bool:
                c = floor.controller
                return c is not None and Fault.CONVEYOR_HEARTBEAT_LOST not in c.faults and c.unit.state in (
                    PackMLState.STOPPED, PackMLState.ABORTED)
            await floor.run_until(waiting, 5.0)
            await operator_recovery(floor, cond)
        recovered = await floor.run_until(floor.executing, 10.0)
        await floor.run_until(lambda: _settled(floor), 60.0)
        await floor.run_for(0.5)
        return Cell(floor, logs, recovered, not cond.by_operator)
    finally:
        logs.__exit__()
        await floor.close()


def _settled(f: VirtualFloor) -> bool:
    """Every parcel the simulator inducted is off the belt and the controller tracks none."""
    c = f.controller
    return (c is not None and len(c.table) == 0 and f.sim.world.parcels_on_belt() == 0
            and f.sim.world.ground_truth().waiting == 0)


def check(cell: Cell, what: str) -> None:
    f = cell.floor
    assert cell.recovered_s is not None and cell.recovered_s <= RECOVER_S, (
        f"{what}: not back in Execute within {RECOVER_S} s of the cause clearing "
        f"(took {cell.recovered_s}); last log lines: {cell.logs.messages[-8:]}"
    )
    truth = Truth.from_records(f.sim.ground_truth().records())
    store = EventStore(f.db, readonly=True)
    try:
        rows = store.parcels()
        events = store.parcel_events()
        units = store.unit_events()
    finally:
        store.close()
    a = audit(rows, truth, 0)
    assert a.missorts == [] and a.misrecorded == [], f"{what}: {a.missort_detail[:5]}"
    assert a.lost == [], f"{what}: parcels with no final outcome: {a.lost[:10]}"
    finals = Counter((e[7], e[1]) for e in events if e[2] in FINAL)
    twice = [k for k, n in finals.items() if n > 1]
    assert twice == [], f"{what}: keys with two final outcomes: {twice[:10]}"
    last_final = {(e[7], e[1]): e[2] for e in events if e[2] in FINAL}
    for r in rows:
        assert r.final == (r.key in last_final), f"{what}: parcel {r.key} row final={r.final}"
        if r.final:
            assert r.state == last_final[r.key], f"{what}: parcel {r.key} row {r.state}, event {last_final[r.key]}"
    # no flood: few rows and log lines, and never a burst
    span = max(f.now(), 1.0)
    per_s = Counter(int(t - units[0][0]) for t, *_ in units) if units else Counter()
    assert len(units) / span < 4.0 and max(per_s.values(), default=0) <= 25, (
        f"{what}: {len(units)} unit events in {span:.0f} s: {Counter((u[1], u[2]) for u in units).most_common(5)}"
    )
    log_per_s = Counter(int(t) for t in cell.logs.at)
    assert len(cell.logs.at) / span < 4.0 and max(log_per_s.values(), default=0) <= 25, (
        f"{what}: {len(cell.logs.at)} log lines: {Counter(cell.logs.messages).most_common(5)}"
    )
    assert np.isfinite(span)


CELLS = [
    *((r, "none", "strict") for r in RESTARTS),
    *((r, c, "strict") for c in ("jam", "estop", "chute_full", "encoder_glitch", "camera_down", "store_failure")
      for r in ("controller-kill-2s", "controller-term-30s", "conveyor-cold", "diverter-warm")),
    ("controller-kill-2s", "none", "reset_clears_all"),
    ("conveyor-cold", "camera_down", "reset_clears_all"),
]


@pytest.mark.parametrize(("restart", "condition", "packml"), CELLS,
                         ids=[f"{r}|{c}|{p}" for r, c, p in CELLS])
async def test_fault_matrix(tmp_path: Path, fast_site: Site, tags: TagMap, routing: RoutingInputs, sim_manifest: Any,
                            restart: str, condition: str, packml: str) -> None:
    cell = await run_cell(tmp_path, fast_site, tags, routing, sim_manifest, RESTARTS[restart],
                          conditions()[condition], packml)
    check(cell, f"{restart} with {condition} ({packml})")


async def test_the_same_cell_twice_is_the_same_run(tmp_path: Path, fast_site: Site, tags: TagMap,
                                                   routing: RoutingInputs, sim_manifest: Any) -> None:
    """Deterministic: no sleeps, no wall clock, so a failing cell fails the same way again."""
    rows = []
    for k in range(2):
        d = tmp_path / str(k)
        d.mkdir()
        cell = await run_cell(d, fast_site, tags, routing, sim_manifest, RESTARTS["conveyor-cold"],
                              conditions()["camera_down"])
        store = EventStore(cell.floor.db, readonly=True)
        try:
            rows.append([(r.key, r.state, r.chute, r.reason) for r in store.parcels()])
        finally:
            store.close()
    assert rows[0] == rows[1]


# ------------------------------------------------------------------------------------ beyond the matrix
async def open_floor(tmp_path: Path, site: Site, tags: TagMap, routing: RoutingInputs, manifest: Any) -> VirtualFloor:
    settings = ServiceSettings(cycle_s=TICK_S, synchronous="NORMAL", store_busy_timeout_s=0.001)
    floor = VirtualFloor(site, tags, scenario(), routing, tmp_path / "events.sqlite", settings=settings,
                         manifest=manifest, tick_s=TICK_S)
    await floor.open()
    await floor.start_controller()
    assert await floor.run_until(floor.executing, 5.0) is not None
    return floor


async def test_a_conveyor_module_serving_zero_memory_for_a_while_changes_nothing(
    tmp_path: Path, fast_site: Site, tags: TagMap, routing: RoutingInputs, sim_manifest: Any
) -> None:
    """Found by a PLC built from the docs alone: an OPC UA module that restarts serves its zero
    memory (boot id 0, ring heads 0) before the PLC program's values are back in it. The
    controller re-read the rings under the same boot id: 35 parcels got two final outcomes and
    sorted parcels were re-recorded lost. Boot id 0 means "not running yet": nothing it says counts."""
    floor = await open_floor(tmp_path, fast_site, tags, routing, sim_manifest)
    try:
        await floor.run_for(4.0)
        mem = floor.sim.conveyor_memory
        saved = dict(mem._values)
        columns = {r: {f: c.copy() for f, c in mem.ring(r).columns.items()} for r in ("induct", "scan")}
        for name, value in saved.items():
            mem._values[name] = type(value)(0)
        for r in columns:
            for c in mem.ring(r).columns.values():
                c[:] = 0
        c = floor.controller
        assert c is not None
        for _ in range(75):  # 1.5 s of control cycles while the module serves zeros (the PLC frozen)
            c.note_lag(0.0)
            await c.step()
        mem._values.update(saved)
        for r, cols in columns.items():
            for f, col in cols.items():
                mem.ring(r).columns[f][:] = col
        await floor.run_until(lambda: _settled(floor), 60.0)
        store = EventStore(floor.db, readonly=True)
        try:
            events = store.parcel_events()
            restarts = [u for u in store.unit_events() if u[1] in ("ring_restart",) or u[2] == "plc_restarted"]
        finally:
            store.close()
        finals = Counter((e[7], e[1]) for e in events if e[2] in FINAL)
        assert [k for k, n in finals.items() if n > 1] == []
        assert restarts == []
    finally:
        await floor.close()


async def test_diverter_encoder_not_the_conveyors_holds_and_arms_nothing(
    tmp_path: Path, fast_site: Site, tags: TagMap, routing: RoutingInputs, sim_manifest: Any
) -> None:
    """Found by a PLC built from the docs alone: with the diverter's counter 1.5 m behind the
    conveyor's, 7 of 9 diverted parcels went to chutes the controller had not chosen."""
    floor = await open_floor(tmp_path, fast_site, tags, routing, sim_manifest)
    try:
        await floor.run_for(2.0)
        div = floor.sim.diverter_memory
        for _ in range(200):  # 4 s with the diverter's count off by 1500
            ev = await floor.sim.scan(floor.tick_s)
            div.write("encoder_count", (floor.sim.world.encoder - 1500) & 0xFFFFFFFF)
            floor.camera.on_scans(ev.scans)
            c = floor.controller
            assert c is not None
            c.note_lag(0.0)
            await c.step()
        assert Fault.ENCODER_MISMATCH in c.faults and c.unit.state in (PackMLState.HOLDING, PackMLState.HELD)
        assert not c.arms.pending
        took = await floor.run_until(floor.executing, 5.0)  # the counts agree again: back by itself
        assert took is not None
        await floor.run_until(lambda: _settled(floor), 60.0)
        truth = Truth.from_records(floor.sim.ground_truth().records())
        store = EventStore(floor.db, readonly=True)
        try:
            a = audit(store.parcels(), truth, 0)
        finally:
            store.close()
        assert a.missorts == [] and a.misrecorded == [], a.missort_detail
    finally:
        await floor.close()


async def test_a_start_records_no_refused_command_and_event_faults_never_stay_active(
    tmp_path: Path, fast_site: Site, tags: TagMap, routing: RoutingInputs, sim_manifest: Any
) -> None:
    """Seen before: a refused Hold was logged on every start (the fault table's Hold applied to a
    Stopped unit), and `encoder_glitch`, an event, stayed active for good."""
    floor = await open_floor(tmp_path, fast_site, tags, routing, sim_manifest)
    try:
        await floor.run_for(2.0)
        floor.sim.faults.encoder_glitch(400)
        await floor.run_for(3.0)
        store = EventStore(floor.db, readonly=True)
        try:
            units = store.unit_events()
            active = store.active_alarms()
        finally:
            store.close()
        assert [u for u in units if u[1] == "refused"] == []
        assert ("alarm", "encoder_glitch") in [(u[1], u[2]) for u in units]
        events = {f.name.lower() for f, r in FAULTS.items() if r.clears == Clears.EVENT}
        assert not events & set(active), active
    finally:
        await floor.close()


async def test_a_failing_store_is_logged_once_when_it_fails_and_once_when_it_recovers(
    tmp_path: Path, fast_site: Site, tags: TagMap, routing: RoutingInputs, sim_manifest: Any
) -> None:
    floor = await open_floor(tmp_path, fast_site, tags, routing, sim_manifest)
    try:
        with LogCount(floor) as logs:
            lock = floor.lock_store()
            await floor.run_for(3.0)  # 150 cycles whose commits fail
            floor.unlock_store(lock)
            await floor.run_for(1.0)
        failed = [m for m in logs.messages if m.startswith("event store commit failed")]
        back = [m for m in logs.messages if m.startswith("event store commits again")]
        assert len(failed) == 1 and len(back) == 1, logs.messages
        assert floor.executing()  # held while it failed, back by itself
    finally:
        await floor.close()

"""The memory links beyond the shared contract: value rules equal to the OPC UA driver's, link
faults, backoff in virtual time, the simulator in memory, and the real controller on top of it.

The contract both wire and memory links keep is tests/control/test_plc_contract.py."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from control.plc import (
    Backoff,
    PlcConnectionError,
    PlcLink,
    PlcRefused,
    PlcValueError,
)
from control.plc.opcua import to_variant
from harness.memlink import ConveyorMemoryLink, DiverterMemoryLink, memory_link, opcua_value
from plant.site import Site, load_site
from plant.tagmap import TagMap
from plc_sim.scenario import Arrivals, Scenario, load_scenario
from plc_sim.servers import ConveyorMemory, DiverterMemory
from plc_sim.simulator import Simulator

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"

VALUES: list[Any] = [
    True, False, 0, 1, -1, 7, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32 - 1, 2**32, 2**63,
    0.0, 1.0, -2.5, 1e300, math.inf, math.nan, np.float64(2.5), np.int64(5), np.uint32(5), np.bool_(True),
    "7", None, b"\x01", [1],
]  # fmt: skip


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(CONFIG / "site.yaml")


@pytest.mark.parametrize("type_", ["Boolean", "Int32", "UInt32", "Double"])
def test_conveyor_value_rules_are_the_opcua_drivers(type_: str) -> None:
    """Same acceptances, same refusals, same value and Python type as ``to_variant`` sends."""
    for v in VALUES:
        try:
            want: Any = to_variant(type_, v, "tag").Value
        except PlcValueError:
            with pytest.raises(PlcValueError):
                opcua_value(type_, v, "tag")
            continue
        got = opcua_value(type_, v, "tag")
        assert type(got) is type(want) and (got == want or (got != got and want != want)), (type_, v)


def test_both_memory_links_are_plc_links(tag_map: TagMap) -> None:
    assert isinstance(ConveyorMemoryLink(ConveyorMemory(tag_map.conveyor), tag_map.conveyor), PlcLink)
    assert isinstance(DiverterMemoryLink(DiverterMemory(tag_map.diverter), tag_map.diverter), PlcLink)


async def test_drops_and_restarts_cut_every_open_link(tag_map: TagMap) -> None:
    image = ConveyorMemory(tag_map.conveyor)
    a = ConveyorMemoryLink(image, tag_map.conveyor)
    b = ConveyorMemoryLink(image, tag_map.conveyor)
    with pytest.raises(PlcConnectionError, match="not connected"):
        await a.read(["faults"])
    with pytest.raises(PlcConnectionError, match="not running"):
        await a.connect()  # a new image is off until started, like a server before start()
    await image.start()
    await a.connect()
    await b.connect()
    await a.connect()  # an open link stays as it is
    assert image.drop_connections() == 2
    assert not a.connected and not b.connected  # at once, as a closed socket reads
    with pytest.raises(PlcConnectionError, match="closed by the PLC"):
        await a.read(["faults"])
    with pytest.raises(PlcConnectionError, match="not connected"):
        await a.read(["faults"])  # forgotten: it stays down until connect()
    await a.connect()
    assert await a.read(["faults"]) == {"faults": 0}
    await image.stop()
    assert not a.connected
    with pytest.raises(PlcConnectionError):
        await b.connect()
    await image.start()
    await b.connect()
    await a.close()
    assert not a.connected and image.drop_connections() == 1  # only b was open


async def test_memory_refuses_what_the_plc_refuses(tag_map: TagMap) -> None:
    """The image's host side on its own: exact types and ownership, as the servers answer."""
    conveyor = ConveyorMemory(tag_map.conveyor)
    assert conveyor.host_write({"host_heartbeat": 5, "speed_setpoint": 1.5, "induct_enable": False}) == {}
    refused = conveyor.host_write({"faults": 1, "host_heartbeat": 1.0, "speed_setpoint": 2, "watchdog_ms": True,
                                   "nope": 1, "belt_command": 2**31})  # fmt: skip
    assert refused.keys() == {"faults", "host_heartbeat", "speed_setpoint", "watchdog_ms", "nope", "belt_command"}
    assert "BadUserAccessDenied" in refused["faults"] and "BadTypeMismatch" in refused["speed_setpoint"]
    assert conveyor.host_read(["host_heartbeat", "speed_setpoint"]) == [5, 1.5]
    diverter = DiverterMemory(tag_map.diverter)
    diverter.host_write(2, [1, 2])
    assert diverter.read("host_heartbeat") == 0x0001_0002
    for address, words in ((0, [1]), (1, [0, 0, 0]), (diverter.map.register_span - 1, [1, 1]), (12, [0])):
        with pytest.raises(Exception, match="exception 02"):
            diverter.host_write(address, words)
    assert diverter.read("host_heartbeat") == 0x0001_0002 and not diverter.regs[:2].any()


async def test_link_errors_are_plc_errors(tag_map: TagMap) -> None:
    image = ConveyorMemory(tag_map.conveyor)
    await image.start()
    link = ConveyorMemoryLink(image, tag_map.conveyor)
    await link.connect()
    with pytest.raises(PlcRefused, match="BadUserAccessDenied"):
        await link.write({"induct.head": 1})
    await link.ack_ring("induct", 3)
    assert await image.read("induct.ack") == 3
    with pytest.raises(PlcValueError):
        await link.ack_ring("induct", -1)
    with pytest.raises(PlcValueError):
        await link.write_ring("induct", [])


async def test_backoff_runs_on_the_simulators_clock(site: Site, tag_map: TagMap) -> None:
    """After a failure the link waits its backoff in virtual time: no wall-clock sleep decides
    when a memory run reconnects."""
    sim = Simulator(site, tag_map, Scenario(seed=2, manifest=None, arrivals=Arrivals(rate_per_hour=3600, count=0)),
                    transport="memory", scan_loop=False)  # fmt: skip
    await sim.start()
    link = memory_link(sim, "diverter", backoff=Backoff(base_s=0.5, cap_s=0.5, jitter=0.0))
    await link.connect()
    await sim.diverter_plc.stop()
    with pytest.raises(PlcConnectionError):
        await link.read(["faults"])
    await sim.diverter_plc.start()
    with pytest.raises(PlcConnectionError, match="next reconnect in 0.50 s"):
        await link.read(["faults"])  # up again, but the backoff has not run out in sim time
    for _ in range(49):
        await sim.scan(0.01)
    with pytest.raises(PlcConnectionError, match="next reconnect"):
        await link.read(["faults"])
    await sim.scan(0.01)
    assert (await link.read(["chute_slots"]))["chute_slots"] > 0  # the power-on values are there
    assert link.reconnects == 1
    await link.close()
    await sim.stop()


@pytest_asyncio.fixture
async def memory_sim(site: Site, tag_map: TagMap) -> AsyncIterator[Simulator]:
    sim = Simulator(site, tag_map, load_scenario(CONFIG / "scenarios" / "demo.yaml"), transport="memory", scan_loop=False)
    await sim.start()
    yield sim
    await sim.stop()


async def test_the_simulator_in_memory_opens_nothing_and_waits_for_scans(memory_sim: Simulator) -> None:
    sim = memory_sim
    assert sim.camera is None
    assert sim.endpoints == {"conveyor": {"url": "memory://conveyor"}, "diverter": {"url": "memory://diverter"}}
    with pytest.raises(RuntimeError, match="in memory"):
        _ = sim.conveyor_server
    assert sim.conveyor_plc is sim.conveyor_memory and sim.diverter_plc is sim.diverter_memory
    await asyncio.sleep(0.05)
    assert sim.scans == 0 and sim.world.time_s == 0.0  # no scan loop: time moves only by scan(dt)
    conv = memory_link(sim, "conveyor")
    assert await conv.read(["watchdog_ms", "induct_enable"]) == {"watchdog_ms": 1000, "induct_enable": True}
    for _ in range(10):
        await sim.scan(0.01)
    assert sim.scans == 10 and sim.world.time_s == pytest.approx(0.1)
    assert sim.faults.plc_drop("both") == 1 and not conv.connected
    await conv.close()


def test_the_network_simulator_has_no_memory_images(site: Site, tag_map: TagMap) -> None:
    sim = Simulator(site, tag_map, Scenario(seed=1, manifest=None, arrivals=Arrivals(rate_per_hour=3600, count=1)), camera=False)
    with pytest.raises(RuntimeError, match="transport='memory'"):
        _ = sim.conveyor_memory
    with pytest.raises(ValueError, match="transport"):
        Simulator(site, tag_map, Scenario(seed=1, manifest=None, arrivals=Arrivals(rate_per_hour=3600, count=1)), transport="carrier-pigeon")  # type: ignore[arg-type]


async def run_controller(site: Site, tag_map: TagMap, db: Path, cycles: int) -> tuple[list[tuple[int, str]], dict[str, Any], int]:
    """The real controller against the memory simulator, one scan and one cycle at a time."""
    from control.service.controller import Controller
    from control.service.routing import EngineRouter
    from control.store import EventStore

    sim = Simulator(site, tag_map, load_scenario(CONFIG / "scenarios" / "demo.yaml"), transport="memory", scan_loop=False)
    await sim.start()
    router = EngineRouter.from_files(
        site, CONFIG / "sortplan.csv", CONFIG / "manifest.csv", CONFIG / "routing.yaml", manifest_time=True
    )
    world = sim.world
    controller = Controller(
        site, tag_map, memory_link(sim, "conveyor"), memory_link(sim, "diverter"), router, None, str(db),
        clock=lambda: world.time_s, wall=lambda: 1.7e9 + world.time_s,
    )  # fmt: skip
    try:
        await controller.start()
        for _ in range(cycles):
            await sim.scan(0.01)
            await controller.step()
        state = int(controller.unit.state)
    finally:
        await controller.close()
        await sim.stop()
    store = EventStore(db, readonly=True)
    try:
        rows = sorted((r.tracking_id, r.state) for r in store.parcels())
    finally:
        store.close()
    return rows, {k: v for k, v in sim.stats.items() if k != "faults"}, state


@pytest.mark.slow
async def test_the_real_controller_runs_on_memory_links_the_same_way_every_time(
    site: Site, tag_map: TagMap, tmp_path: Path
) -> None:
    from plant.codes import PackMLState

    first = await run_controller(site, tag_map, tmp_path / "a.sqlite", 800)
    again = await run_controller(site, tag_map, tmp_path / "b.sqlite", 800)
    rows, stats, state = first
    assert state == PackMLState.EXECUTE and stats["belt_state"] == "EXECUTE"
    assert len(rows) > 10 and stats["inducted"] >= len(rows)
    assert first == again

"""One contract, both PLC drivers: each test runs over OPC UA and over Modbus TCP against the real servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from control.plc import (
    Backoff,
    Gap,
    PlcConnectionError,
    PlcError,
    PlcRefused,
    PlcValueError,
    ReconnectingLink,
    open_link,
)
from plant.site import Site, load_site
from plant.tagmap import TagMap
from plc_sim.servers import ConveyorPlcServer, DiverterPlcServer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.asyncio(loop_scope="module")

FAST = Backoff(base_s=0.01, cap_s=0.05, jitter=0.5)


@dataclass
class Rig:
    """What the contract needs to know about one protocol."""

    protocol: str
    server: Any
    link: ReconnectingLink
    writable: dict[str, bool | int | float]  # host-written tags and a value of their type
    plc_owned: dict[str, bool | int | float]  # PLC-written tags and a value of their type
    event_ring: str
    event_fields: dict[str, int]

    async def server_read(self, name: str) -> bool | int | float:
        if self.protocol == "opcua":
            return await self.server.read(name)  # type: ignore[no-any-return]
        return self.server.read(name)  # type: ignore[no-any-return]

    async def server_write(self, name: str, value: bool | int | float) -> None:
        if self.protocol == "opcua":
            await self.server.write(name, value)
        else:
            self.server.write(name, value)


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(ROOT / "config" / "site.yaml")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def conveyor_server(tag_map: TagMap) -> AsyncIterator[ConveyorPlcServer]:
    server = ConveyorPlcServer(tag_map.conveyor)
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def diverter_server(tag_map: TagMap) -> AsyncIterator[DiverterPlcServer]:
    server = DiverterPlcServer(tag_map.diverter)
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="module", params=["opcua", "modbus"])
async def rig(
    request: pytest.FixtureRequest,
    site: Site,
    tag_map: TagMap,
    conveyor_server: ConveyorPlcServer,
    diverter_server: DiverterPlcServer,
) -> AsyncIterator[Rig]:
    if request.param == "opcua":
        server: Any = conveyor_server
        await server.start()
        await server.reset()
        server.delay.seconds = 0.0
        link = open_link(site, tag_map, "conveyor", port=server.port, timeout_s=0.5, backoff=FAST)
        r = Rig(
            "opcua", server, link,
            writable={"induct_enable": True, "belt_command": -7, "host_heartbeat": 4_000_000_000, "speed_setpoint": 2.25},
            plc_owned={"faults": 0b10110, "belt_state": 6, "speed_actual": 1.5, "encoder_count": 0xFFFF_FFF0},
            event_ring="induct",
            event_fields={"tracking_id": 42, "leading_count": 0xFFFF_FFFF, "trailing_count": 17},
        )
    else:
        server = diverter_server
        await server.start()
        server.reset()
        server.delay.seconds = 0.0
        link = open_link(site, tag_map, "diverter", port=server.port, timeout_s=0.5, backoff=FAST)
        r = Rig(
            "modbus", server, link,
            writable={"host_heartbeat": 4_000_000_000, "reset_seq": 70_000},
            plc_owned={"faults": 0b101, "chute_slots": 29, "encoder_count": 0xFFFF_FFF0, "plc_heartbeat": 65_536},
            event_ring="confirm",
            event_fields={"tracking_id": 42, "count": 0xFFFF_FFFF, "chute": 29, "flags": 1},
        )
    await link.connect()
    yield r
    await link.close()


async def eventually(op: Callable[[], Awaitable[Any]], within_s: float = 5.0) -> Any:
    """Retry ``op`` through PlcErrors until it succeeds (reconnect with backoff takes a few tries)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        try:
            return await op()
        except PlcError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.01)


async def test_host_writes_arrive_typed_at_the_plc(rig: Rig) -> None:
    await rig.link.write(rig.writable)
    for name, value in rig.writable.items():
        got = await rig.server_read(name)
        assert got == value and type(got) is type(value), name


async def test_plc_values_read_in_one_call(rig: Rig) -> None:
    for name, value in rig.plc_owned.items():
        await rig.server_write(name, value)
    got = await rig.link.read(list(rig.plc_owned))
    assert got == rig.plc_owned
    assert {n: type(v) for n, v in got.items()} == {n: type(v) for n, v in rig.plc_owned.items()}


async def test_write_to_plc_owned_tag_is_refused_by_the_server(rig: Rig) -> None:
    name = next(iter(rig.plc_owned))
    before = await rig.server_read(name)
    with pytest.raises(PlcRefused):
        await rig.link.write({name: 1})
    assert await rig.server_read(name) == before
    assert rig.link.connected  # a refusal is an answer, not a link fault


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "7"])
async def test_out_of_range_value_is_refused_before_sending(rig: Rig, bad: Any) -> None:
    await rig.link.write({"host_heartbeat": 5})
    with pytest.raises(PlcValueError):
        await rig.link.write({"host_heartbeat": bad})
    assert await rig.server_read("host_heartbeat") == 5


async def test_unknown_tag_is_a_plc_error(rig: Rig) -> None:
    with pytest.raises(PlcValueError, match="no_such_tag"):
        await rig.link.read(["no_such_tag"])


async def test_ring_push_read_ack_round_trip(rig: Rig) -> None:
    ring = rig.server.ring(rig.event_ring)
    seqs = [await ring.push(**{**rig.event_fields, "tracking_id": t}) for t in (10, 11, 12)]
    assert seqs == [1, 2, 3]
    got = await rig.link.read_ring(rig.event_ring, 0)
    assert got.head == 3 and not got.gaps and not got.restarted
    assert [e["seq"] for e in got.entries] == [1, 2, 3]
    assert [e["tracking_id"] for e in got.entries] == [10, 11, 12]
    for e in got.entries:
        assert {k: e[k] for k in rig.event_fields if k != "tracking_id"} == {
            k: v for k, v in rig.event_fields.items() if k != "tracking_id"
        }
    later = await rig.link.read_ring(rig.event_ring, 2)
    assert [e["seq"] for e in later.entries] == [3]
    await rig.link.ack_ring(rig.event_ring, 3)
    assert await ring.acked() == 3
    assert ring.pending == 0
    assert (await rig.link.read_ring(rig.event_ring, 3)).entries == ()


async def test_ring_overflow_reports_the_lost_seqs(rig: Rig) -> None:
    ring = rig.server.ring(rig.event_ring)
    size = ring.size
    for i in range(size + 5):
        await ring.push(tracking_id=1000 + i)
    got = await rig.link.read_ring(rig.event_ring, 0)
    assert got.gaps == (Gap(1, 5),) and got.lost == 5
    assert [e["seq"] for e in got.entries] == list(range(6, size + 6))
    assert [e["tracking_id"] for e in got.entries] == [1000 + s - 1 for s in range(6, size + 6)]
    assert got.last_seq == size + 5


async def test_ring_read_sees_plc_restart(rig: Rig) -> None:
    ring = rig.server.ring(rig.event_ring)
    for _ in range(3):
        await ring.push(tracking_id=1)
    await ring.reset()
    await ring.push(tracking_id=2)
    got = await rig.link.read_ring(rig.event_ring, 3)
    assert got.restarted and got.entries == () and got.last_seq == 0
    again = await rig.link.read_ring(rig.event_ring, got.last_seq)
    assert [e["tracking_id"] for e in again.entries] == [2]


async def test_ring_read_with_the_head_already_read(rig: Rig) -> None:
    """The controller reads every ring head in its scalar read and passes it on: same entries."""
    ring = rig.server.ring(rig.event_ring)
    for t in (20, 21, 22):
        await ring.push(**{**rig.event_fields, "tracking_id": t})
    head = int((await rig.link.read([f"{rig.event_ring}.head"]))[f"{rig.event_ring}.head"])
    assert head == 3
    with_head = await rig.link.read_ring(rig.event_ring, 1, head)
    assert with_head == await rig.link.read_ring(rig.event_ring, 1)
    assert [e["tracking_id"] for e in with_head.entries] == [21, 22] and with_head.last_seq == 3
    # entries pushed after the head was read wait for the next read
    await ring.push(**{**rig.event_fields, "tracking_id": 23})
    got = await rig.link.read_ring(rig.event_ring, 0, head)
    assert [e["seq"] for e in got.entries] == [1, 2, 3] and got.head == 3 and not got.gaps
    nxt = await rig.link.read_ring(rig.event_ring, got.last_seq, 4)
    assert [e["tracking_id"] for e in nxt.entries] == [23]
    # a head behind what we stored: the PLC restarted
    assert (await rig.link.read_ring(rig.event_ring, 4, 1)).restarted


async def test_ring_read_with_a_stale_head_reports_overwritten_slots_as_lost(rig: Rig) -> None:
    ring = rig.server.ring(rig.event_ring)
    for t in (1, 2):
        await ring.push(tracking_id=t)
    head = int((await rig.link.read([f"{rig.event_ring}.head"]))[f"{rig.event_ring}.head"])
    for i in range(ring.size):  # the PLC laps the ring between our head read and the slot read
        await ring.push(tracking_id=100 + i)
    got = await rig.link.read_ring(rig.event_ring, 0, head)
    assert got.entries == () and got.gaps == (Gap(1, 2),) and got.last_seq == 2
    rest = await rig.link.read_ring(rig.event_ring, got.last_seq)
    assert [e["seq"] for e in rest.entries] == list(range(3, ring.size + 3)) and not rest.gaps


@pytest.mark.parametrize("bad", [-1, 2**32, True, 1.0])
async def test_ring_read_refuses_a_head_that_is_not_a_seq(rig: Rig, bad: Any) -> None:
    with pytest.raises(PlcValueError):
        await rig.link.read_ring(rig.event_ring, 0, bad)
    assert rig.link.connected


async def test_modbus_ring_read_with_head_saves_the_head_request(rig: Rig) -> None:
    if rig.protocol != "modbus":
        return  # OPC UA reads head and arrays in one request either way
    server: DiverterPlcServer = rig.server
    ring = server.ring(rig.event_ring)
    await ring.push(tracking_id=7)
    before = server.requests
    await rig.link.read_ring(rig.event_ring, 0)
    without = server.requests - before
    before = server.requests
    await rig.link.read_ring(rig.event_ring, 0, 1)
    assert (without, server.requests - before) == (2, 1)


async def test_reconnects_after_the_plc_drops_connections(rig: Rig) -> None:
    await rig.link.write({"host_heartbeat": 1})
    assert rig.server.drop_connections() >= 1
    await eventually(lambda: rig.link.write({"host_heartbeat": 2}))
    assert await rig.server_read("host_heartbeat") == 2
    assert rig.link.connected


async def test_reconnects_after_a_plc_restart(rig: Rig) -> None:
    await rig.link.write({"host_heartbeat": 11})
    port = rig.server.port
    await rig.server.stop()
    with pytest.raises(PlcConnectionError):
        await rig.link.read(["host_heartbeat"])
    assert not rig.link.connected
    await rig.server.start()
    assert rig.server.port == port
    got = await eventually(lambda: rig.link.read(["host_heartbeat"]))
    assert got == {"host_heartbeat": 11}  # retained memory survives the restart
    assert rig.link.connected and rig.link.reconnects >= 1


async def test_slow_plc_times_out_as_plc_error_then_recovers(rig: Rig) -> None:
    rig.link.inner.timeout_s = 0.1  # type: ignore[attr-defined]
    rig.server.delay.seconds = 0.3
    with pytest.raises(PlcConnectionError, match="timed out"):
        await rig.link.read(["host_heartbeat"])
    assert not rig.link.connected
    rig.server.delay.seconds = 0.0
    await eventually(lambda: rig.link.read(["host_heartbeat"]))
    assert rig.link.connected


async def test_write_ring_reaches_the_plc_with_seq(rig: Rig) -> None:
    if rig.protocol == "opcua":
        with pytest.raises(PlcValueError):
            await rig.link.write_ring("induct", [{"seq": 1}])
        return
    server: DiverterPlcServer = rig.server
    cmds = [{"seq": s, "tracking_id": 500 + s, "fire_count": 0xFFFF_0000 + s, "chute": s, "action": 1} for s in (1, 2, 3)]
    await rig.link.write_ring("arm", cmds)
    assert server.take_commands() == cmds
    assert (await rig.link.read(["arm.ack"]))["arm.ack"] == 3
    # a repeated write after a reconnect is harmless: seq 3 is not executed twice
    await rig.link.write_ring("arm", cmds[2:])
    assert server.take_commands() == []
    await rig.link.write_ring("arm", [{"seq": 4, "tracking_id": 9, "fire_count": 1, "chute": 2, "action": 2}])
    assert [c["seq"] for c in server.take_commands()] == [4]
    assert server.command_problems == []


async def test_connect_over_a_stale_connection_really_connects_or_raises(rig: Rig) -> None:
    inner: Any = rig.link.inner
    await rig.link.read(["host_heartbeat"])
    await inner.connect()  # a live connection: connect is a no-op that keeps it
    assert inner.connected
    await rig.server.stop()
    # the old client object still exists; connect must not report success off it
    with pytest.raises(PlcConnectionError):
        await inner.connect()
    assert not inner.connected
    await rig.server.start()
    await inner.connect()
    assert inner.connected
    await rig.server_write("faults", 5)
    assert await inner.read(["faults"]) == {"faults": 5}

"""One contract for every PLC link: each test runs over OPC UA and over Modbus TCP against the real
servers, and over the memory links (harness.memlink) against the memory images with each
protocol's rules. Where memory cannot behave like a wire (timeouts, slow answers, request
counts) the test is skipped and says why."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
from harness.memlink import ConveyorMemoryLink, DiverterMemoryLink
from plant.site import Site, load_site
from plant.tagmap import TagMap
from plc_sim.servers import ConveyorMemory, ConveyorPlcServer, DiverterMemory, DiverterPlcServer
from plc_sim.servers.image import ZERO, conveyor_tags

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.asyncio(loop_scope="module")

FAST = Backoff(base_s=0.01, cap_s=0.05, jitter=0.5)


@dataclass
class Rig:
    """What the contract needs to know about one protocol over one transport."""

    protocol: str  # "opcua" or "modbus": whose rules the link follows
    transport: str  # "wire" (real server, loopback) or "memory" (memory image, no socket)
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

    def skip_in_memory(self, why: str) -> None:
        if self.transport == "memory":
            pytest.skip(f"memory link: {why}")

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


@pytest.fixture(scope="module")
def conveyor_memory(tag_map: TagMap) -> ConveyorMemory:
    return ConveyorMemory(tag_map.conveyor)


@pytest.fixture(scope="module")
def diverter_memory(tag_map: TagMap) -> DiverterMemory:
    return DiverterMemory(tag_map.diverter)


@pytest_asyncio.fixture(loop_scope="module", params=["opcua", "modbus", "memory-opcua", "memory-modbus"])
async def rig(
    request: pytest.FixtureRequest,
    site: Site,
    tag_map: TagMap,
    conveyor_server: ConveyorPlcServer,
    diverter_server: DiverterPlcServer,
    conveyor_memory: ConveyorMemory,
    diverter_memory: DiverterMemory,
) -> AsyncIterator[Rig]:
    transport, _, protocol = str(request.param).rpartition("-")
    transport = transport or "wire"
    link: ReconnectingLink
    if protocol == "opcua":
        if transport == "wire":
            server: Any = conveyor_server
            link = open_link(site, tag_map, "conveyor", port=server.port, timeout_s=0.5, backoff=FAST)
        else:
            server = conveyor_memory
            link = ReconnectingLink(ConveyorMemoryLink(server, tag_map.conveyor), FAST)
        await server.start()
        await server.reset()
        server.delay.seconds = 0.0
        r = Rig(
            "opcua", transport, server, link,
            writable={"induct_enable": True, "belt_command": -7, "host_heartbeat": 4_000_000_000, "speed_setpoint": 2.25},
            plc_owned={"faults": 0b10110, "belt_state": 6, "speed_actual": 1.5, "encoder_count": 0xFFFF_FFF0},
            event_ring="induct",
            event_fields={"tracking_id": 42, "leading_count": 0xFFFF_FFFF, "trailing_count": 17},
        )
    else:
        if transport == "wire":
            server = diverter_server
            link = open_link(site, tag_map, "diverter", port=server.port, timeout_s=0.5, backoff=FAST)
        else:
            server = diverter_memory
            link = ReconnectingLink(DiverterMemoryLink(server, tag_map.diverter), FAST)
        await server.start()
        server.reset()
        server.delay.seconds = 0.0
        r = Rig(
            "modbus", transport, server, link,
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
    rig.skip_in_memory("no requests to count")
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
    port = getattr(rig.server, "port", None)  # memory images have no port
    await rig.server.stop()
    with pytest.raises(PlcConnectionError):
        await rig.link.read(["host_heartbeat"])
    assert not rig.link.connected
    await rig.server.start()
    assert getattr(rig.server, "port", None) == port
    got = await eventually(lambda: rig.link.read(["host_heartbeat"]))
    assert got == {"host_heartbeat": 11}  # retained memory survives the restart
    assert rig.link.connected and rig.link.reconnects >= 1


async def test_slow_plc_times_out_as_plc_error_then_recovers(rig: Rig) -> None:
    rig.skip_in_memory("answers at once; a slow PLC (delay) and timeouts need a wire")
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


async def test_writes_are_refused_exactly_where_the_plc_owns_the_value(rig: Rig, tag_map: TagMap) -> None:
    """Every name the tag map gives the host, written with a value of its type: accepted where the
    controller owns it, refused by the PLC (not before sending) where the PLC does."""
    if rig.protocol == "opcua":
        names = {n: (ZERO[t.type] if t.type != "Boolean" else True, t.writable) for n, t in conveyor_tags(tag_map.conveyor).items()}
    else:
        dm = tag_map.diverter
        names = {n: (1, r.access == "w") for n, r in dm.registers.items()}
        for rn, ring in dm.rings.items():
            names[f"{rn}.head"] = (1, ring.direction == "w")
            names[f"{rn}.ack"] = (1, ring.direction == "r")
    for name, (value, host_owned) in names.items():
        if host_owned:
            await rig.link.write({name: value})
            assert await rig.link.read([name]) == {name: value}, name
        else:
            with pytest.raises(PlcRefused):
                await rig.link.write({name: value})
        assert rig.link.connected, name


async def test_a_link_on_a_stopped_plc_cannot_connect(rig: Rig) -> None:
    inner: Any = rig.link.inner
    await rig.server.stop()
    try:
        await inner.close()
        with pytest.raises(PlcConnectionError):
            await inner.connect()
        assert not inner.connected
        with pytest.raises(PlcConnectionError):
            await inner.read(["host_heartbeat"])
    finally:
        await rig.server.start()
    await inner.connect()
    assert await inner.read(["host_heartbeat"]) == {"host_heartbeat": 0}


async def test_a_batch_with_a_plc_owned_value_is_refused_as_the_protocol_refuses_it(rig: Rig) -> None:
    """OPC UA answers each value of a Write on its own: the host's lands, the PLC's is refused.
    Modbus answers per request: registers next to each other go in one request and fall together;
    apart, the requests before the refused one stay written."""
    await rig.link.write({"host_heartbeat": 1})
    if rig.protocol == "opcua":
        with pytest.raises(PlcRefused, match="faults"):
            await rig.link.write({"faults": 1, "host_heartbeat": 9})
        assert await rig.server_read("host_heartbeat") == 9
        return
    with pytest.raises(PlcRefused):  # registers 0-3: one request
        await rig.link.write({"plc_heartbeat": 1, "host_heartbeat": 9})
    assert await rig.server_read("host_heartbeat") == 1
    with pytest.raises(PlcRefused):  # 2-3, then 6: two requests
        await rig.link.write({"host_heartbeat": 9, "faults": 1})
    assert await rig.server_read("host_heartbeat") == 9
    assert await rig.server_read("faults") == 0


@pytest.mark.parametrize(
    "entries",
    [
        [{"seq": 0, "chute": 1}],
        [{"seq": 1}, {"seq": 3}],
        [{"seq": 1, "colour": 2}],
        [{"tracking_id": 5}],
        [{"seq": 1, "chute": 70_000}],
        [{"seq": s} for s in range(1, 34)],
    ],
    ids=["seq0", "not-consecutive", "unknown-field", "no-seq", "out-of-range", "more-than-the-ring"],
)
async def test_bad_command_ring_writes_are_refused_before_sending(rig: Rig, entries: list[dict[str, int]]) -> None:
    if rig.protocol != "modbus":
        return  # the conveyor has no host->PLC ring: refused whatever the entries
    with pytest.raises(PlcValueError):
        await rig.link.write_ring("arm", entries)
    assert rig.server.read("arm.head") == 0 and not rig.server.take_commands()
    assert rig.link.connected


async def test_rings_and_blocks_the_plc_does_not_have_are_refused_before_sending(rig: Rig) -> None:
    with pytest.raises(PlcValueError):
        await rig.link.read_ring("no_such_ring", 0)
    with pytest.raises(PlcValueError):
        await rig.link.ack_ring("no_such_ring", 1)
    if rig.protocol == "modbus":
        with pytest.raises(PlcValueError):
            await rig.link.read_ring("arm", 0)  # the host's own ring is written, not read
        with pytest.raises(PlcValueError):
            await rig.link.write_ring("confirm", [{"seq": 1}])
        with pytest.raises(PlcValueError):
            await rig.link.read_block("chute_colour")
        with pytest.raises(PlcValueError):
            await rig.link.read_block("chute_fill", 257)
        assert (await rig.link.read_block("chute_fill", 4)).dtype == np.uint16
    assert rig.link.connected

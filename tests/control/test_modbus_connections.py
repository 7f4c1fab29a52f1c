"""The diverter link's second connection: arm commands travel beside reads, not behind them.

A Modbus TCP connection carries one request at a time (the client waits for each answer), so
on one connection an arm due now waits for whatever read is in flight. Real server, loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from control.plc import Backoff, ReconnectingLink
from control.plc.modbus import ModbusLink
from plant.site import ModbusEndpoint
from plant.tagmap import TagMap
from plc_sim.servers import DiverterPlcServer

ARM = [{"seq": 1, "tracking_id": 77, "fire_count": 1000, "chute": 3, "action": 1}]


@pytest_asyncio.fixture
async def server(tag_map: TagMap) -> AsyncIterator[DiverterPlcServer]:
    async with DiverterPlcServer(tag_map.diverter) as s:
        yield s


def _link(server: DiverterPlcServer, tag_map: TagMap, connections: int) -> ModbusLink:
    return ModbusLink(ModbusEndpoint(port=server.port, connections=connections), tag_map.diverter, timeout_s=5.0)


async def _read_in_flight(server: DiverterPlcServer, link: ModbusLink) -> asyncio.Task[object]:
    """A read the PLC is slow to answer (0.5 s), already at the server when this returns."""
    server.delay.seconds = 0.5
    before = server.requests
    read = asyncio.create_task(link.read(["plc_heartbeat"]))
    for _ in range(5000):
        if server.requests > before:
            break
        await asyncio.sleep(0.001)
    assert server.requests > before, "the read never reached the PLC"
    server.delay.seconds = 0.0  # later requests are answered at once
    return read


@pytest.mark.parametrize("connections", [1, 2])
async def test_an_arm_goes_out_while_a_slow_read_is_in_flight(
    server: DiverterPlcServer, tag_map: TagMap, connections: int
) -> None:
    link = _link(server, tag_map, connections)
    await link.connect()
    try:
        read = await _read_in_flight(server, link)
        await link.write_ring("arm", ARM)
        # the PLC has the arm; on one connection only after the read's answer came back
        assert server.take_commands() == ARM
        assert read.done() is (connections == 1)
        await read
    finally:
        await link.close()


async def test_the_link_is_down_when_either_connection_is_lost_and_a_reconnect_opens_both(
    server: DiverterPlcServer, tag_map: TagMap
) -> None:
    link = ReconnectingLink(_link(server, tag_map, 2), Backoff(base_s=0.01, cap_s=0.05, jitter=0.5))
    await link.connect()
    try:
        assert server.clients == 2
        inner = link.inner
        assert isinstance(inner, ModbusLink) and inner._commands is not None
        inner._commands.close()  # the command connection alone goes (private: no PLC does this on purpose)
        assert not link.connected
        for _ in range(200):  # the reconnecting link opens both again on its next call
            try:
                await link.write_ring("arm", ARM)
                break
            except Exception:
                await asyncio.sleep(0.01)
        assert link.connected and server.take_commands() == ARM
        assert server.clients == 2
    finally:
        await link.close()

"""PLC restarts inside a running simulator: same port, old connections really dropped.

The controller forks decode workers after the simulator's servers are up (same process in
the end-to-end harness), so the workers hold copies of the servers' sockets. A restart must
still free the port and a dropped client must still see its connection end; the tests fork a
process holding those copies, as the controller does.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import Client
from pymodbus.client import AsyncModbusTcpClient

from plant.site import Site
from plant.tagmap import TagMap, load_tag_map
from plc_sim.scenario import Arrivals, Scenario
from plc_sim.simulator import Ports, Simulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tags() -> TagMap:
    return load_tag_map(ROOT / "config" / "tagmap.yaml")


@pytest_asyncio.fixture
async def sim(site: Site, tags: TagMap) -> AsyncIterator[Simulator]:
    sc = Scenario(seed=3, manifest=None, arrivals=Arrivals(rate_per_hour=3600, count=3))
    s = Simulator(site, tags, sc, tick_s=0.01, ports=Ports.base(0), camera=False)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def eventually(cond: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if cond():
                return
            await asyncio.sleep(0.02)


async def restarted(sim: Simulator, plc: str, down_s: float) -> None:
    sim.faults.plc_restart(plc, down_s)
    await eventually(lambda: any(f.kind == "plc_restart" and not f.active for f in sim.faults.history))


async def modbus_read(port: int) -> list[int]:
    mb = AsyncModbusTcpClient("127.0.0.1", port=port, retries=0, reconnect_delay=0, timeout=1)
    try:
        assert await mb.connect()
        rr = await mb.read_holding_registers(4, count=2, device_id=1)
        return list(rr.registers)
    finally:
        mb.close()


async def test_both_plcs_restart_on_their_ports_with_clients_connected(sim: Simulator, tags: TagMap) -> None:
    cport, dport = sim.conveyor_server.port, sim.diverter_server.port
    old_mb = AsyncModbusTcpClient("127.0.0.1", port=dport, retries=0, reconnect_delay=0, timeout=1)
    assert await old_mb.connect()
    old_opc = Client(sim.conveyor_server.url, timeout=2)
    await old_opc.connect()
    try:
        forked = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,), daemon=True)
        forked.start()  # holds copies of the listeners and of both accepted connections
        try:
            await restarted(sim, "both", 0.2)
            assert [f.detail for f in sim.faults.history if f.kind == "plc_restart"] == [
                "both down for 0.2 s", "both back"]  # fmt: skip
            assert sim.conveyor_server.running and sim.diverter_server.running
            assert (sim.conveyor_server.port, sim.diverter_server.port) == (cport, dport)
            # the old connections ended (the PLC closed them), though the child still holds them
            await eventually(lambda: not old_mb.connected, 5.0)
            # new clients get answers on the same ports, from a scan loop that kept running
            assert len(await modbus_read(dport)) == 2
            new_opc = Client(sim.conveyor_server.url, timeout=2)
            await new_opc.connect()
            try:
                ns = await new_opc.get_namespace_index(tags.conveyor.namespace_uri)
                node = new_opc.get_node(f"ns={ns};s={tags.conveyor.tags['encoder_count'].node}")
                assert isinstance(await node.read_value(), int)
            finally:
                await new_opc.disconnect()
            # and a second restart works as well as the first
            sim.faults.history.clear()
            await restarted(sim, "diverter", 0.1)
            assert len(await modbus_read(dport)) == 2
        finally:
            forked.terminate()
            forked.join(5)
    finally:
        old_mb.close()
        with contextlib.suppress(Exception):  # the server it talked to is gone; nothing to close politely
            await asyncio.wait_for(old_opc.disconnect(), 2)

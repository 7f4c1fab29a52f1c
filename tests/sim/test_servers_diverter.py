"""The diverter PLC server as the simulator drives it: command ring, chute blocks, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from control.plc.modbus import ModbusLink
from plant.site import ModbusEndpoint
from plant.tagmap import TagMap
from plant.words import to_words
from plc_sim.servers import CommandProblem, DiverterPlcServer

ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture
async def server(tag_map: TagMap) -> AsyncIterator[DiverterPlcServer]:
    async with DiverterPlcServer(tag_map.diverter) as s:
        yield s


@pytest_asyncio.fixture
async def link(server: DiverterPlcServer, tag_map: TagMap) -> AsyncIterator[ModbusLink]:
    lk = ModbusLink(ModbusEndpoint(port=server.port), tag_map.diverter, timeout_s=1.0)
    await lk.connect()
    yield lk
    await lk.close()


def arm_slot(server: DiverterPlcServer, seq: int, **fields: int) -> None:
    """Write an arm slot the way a (buggy or lapping) host would, straight into memory."""
    ring = server.map.rings["arm"]
    a = ring.slot_address(seq)
    words = [0] * ring.slot_words
    for name, f in ring.fields.items():
        v = seq if name == "seq" else fields.get(name, 0)
        n = 2 if f.type.endswith("32") else 1
        words[f.offset : f.offset + n] = to_words(v, f.type)
    server.regs[a : a + ring.slot_words] = words


async def test_take_commands_reports_torn_and_overwritten_slots(server: DiverterPlcServer) -> None:
    for s in (1, 2, 3):
        arm_slot(server, s, chute=s)
    server.regs[server.map.rings["arm"].slot_address(2)] = 0  # slot 2 torn: seq high word lost
    server.regs[server.map.rings["arm"].slot_address(2) + 1] = 0
    server.write("arm.head", 3)
    got = server.take_commands()
    assert [c["seq"] for c in got] == [1, 3]
    assert server.command_problems == [CommandProblem(2, 0, "torn")]
    assert server.read("arm.ack") == 3
    # the host laps the PLC: writes seqs 4..40 into a ring of 32 before the PLC looks
    for s in range(4, 41):
        arm_slot(server, s, chute=1)
    server.write("arm.head", 40)
    got = server.take_commands()
    assert [c["seq"] for c in got] == list(range(9, 41))
    assert [p.seq for p in server.command_problems[1:]] == list(range(4, 9))
    assert all(p.reason == "overwritten" for p in server.command_problems[1:])


async def test_chute_blocks_read_as_arrays_by_chute_id(server: DiverterPlcServer, link: ModbusLink) -> None:
    server.set_chute_status(3, 0b001)
    server.set_chute_status(29, 0b110)
    server.set_chute_fill(29, 400)
    status = await link.read_block("chute_status")
    assert status.shape == (server.map.chute_status.size,)
    assert status[3] == 1 and status[29] == 6 and status.sum() == 7
    fill = await link.read_block("chute_fill", count=30)
    assert fill.shape == (30,) and fill[29] == 400
    server.set_chute_block("chute_fill", np.arange(30))
    assert (await link.read_block("chute_fill", count=30)).tolist() == list(range(30))
    with pytest.raises(ValueError):
        server.set_chute_fill(server.map.chute_fill.size, 1)
    with pytest.raises(ValueError):
        server.set_chute_status(1, 70_000)


async def test_push_refuses_unknown_fields_and_given_seq(server: DiverterPlcServer) -> None:
    ring = server.ring("confirm")
    with pytest.raises(ValueError, match="no field"):
        await ring.push(chute=1, colour=3)
    with pytest.raises(ValueError, match="seq"):
        await ring.push(seq=5)
    with pytest.raises(ValueError, match="out of range"):
        await ring.push(chute=70_000)
    assert ring.head == 0


async def test_ring_head_is_written_after_the_slot(server: DiverterPlcServer, link: ModbusLink) -> None:
    ring = server.ring("arm_result")
    seq = await ring.push(command_seq=9, tracking_id=77, result=0, chute=5)
    assert server.read("arm_result.head") == seq == 1
    got = await link.read_ring("arm_result", 0)
    assert got.entries == ({"seq": 1, "command_seq": 9, "tracking_id": 77, "result": 0, "chute": 5},)


async def test_wrong_device_id_never_connects(server: DiverterPlcServer, tag_map: TagMap) -> None:
    from control.plc import PlcConnectionError

    lk = ModbusLink(ModbusEndpoint(port=server.port, device_id=9), tag_map.diverter, timeout_s=0.3)
    with pytest.raises(PlcConnectionError, match="device id 9"):
        await lk.connect()
    assert not lk.connected


async def test_memory_survives_restart_and_reset_clears_it(server: DiverterPlcServer) -> None:
    server.write("encoder_count", 123_456)
    await server.ring("confirm").push(chute=1)
    port = server.port
    await server.stop()
    await server.start()
    assert server.port == port and server.read("encoder_count") == 123_456
    server.reset()
    assert server.read("encoder_count") == 0 and server.ring("confirm").head == 0

"""The diverter PLC as the simulator drives it: command ring, chute blocks, faults.

PLC-side tests run twice: on the Modbus server with ModbusLink, and on the memory image with
the memory link; the register image and its rules are one (the server serves the memory)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from control.plc import PlcConnectionError
from control.plc.modbus import ModbusLink
from harness.memlink import DiverterMemoryLink
from plant.codes import DiverterFeature
from plant.site import ModbusEndpoint
from plant.tagmap import TagMap
from plant.words import to_words
from plc_sim.servers import CommandProblem, DiverterMemory, DiverterPlcServer

ROOT = Path(__file__).resolve().parents[2]

Image = DiverterPlcServer | DiverterMemory
Link = ModbusLink | DiverterMemoryLink


@pytest_asyncio.fixture
async def server(tag_map: TagMap) -> AsyncIterator[DiverterPlcServer]:
    async with DiverterPlcServer(tag_map.diverter) as s:
        yield s


@pytest_asyncio.fixture(params=["server", "memory"])
async def image(request: pytest.FixtureRequest, tag_map: TagMap) -> AsyncIterator[Image]:
    if request.param == "server":
        async with DiverterPlcServer(tag_map.diverter) as s:
            yield s
    else:
        m = DiverterMemory(tag_map.diverter)
        await m.start()
        yield m
        await m.stop()


@pytest_asyncio.fixture
async def link(image: Image, tag_map: TagMap) -> AsyncIterator[Link]:
    lk: Link
    if isinstance(image, DiverterPlcServer):
        lk = ModbusLink(ModbusEndpoint(port=image.port), tag_map.diverter, timeout_s=1.0)
    else:
        lk = DiverterMemoryLink(image, tag_map.diverter)
    await lk.connect()
    yield lk
    await lk.close()


def arm_slot(server: Image, seq: int, **fields: int) -> None:
    """Write an arm slot the way a (buggy or lapping) host would, straight into memory."""
    ring = server.map.rings["arm"]
    a = ring.slot_address(seq)
    words = [0] * ring.slot_words
    for name, f in ring.fields.items():
        v = seq if name == "seq" else fields.get(name, 0)
        n = 2 if f.type.endswith("32") else 1
        words[f.offset : f.offset + n] = to_words(v, f.type)
    server.regs[a : a + ring.slot_words] = words


async def test_take_commands_reports_torn_and_overwritten_slots(image: Image) -> None:
    server = image
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


async def test_slots_are_taken_by_their_own_seq_without_a_head(image: Image) -> None:
    """The PLC announces features bit0: a slot holding the next seq is taken in the next scan,
    though the host wrote no head; a slot further on waits for the one before it."""
    server = image
    assert server.read("features") == DiverterFeature.ARM_BY_SLOT_SEQ
    arm_slot(server, 1, chute=4)
    arm_slot(server, 2, chute=5)
    assert [(c["seq"], c["chute"]) for c in server.take_commands()] == [(1, 4), (2, 5)]
    assert server.read("arm.ack") == 2 and server.read("arm.head") == 0
    arm_slot(server, 4, chute=7)  # seq 3 not there yet
    assert server.take_commands() == [] and server.read("arm.ack") == 2
    arm_slot(server, 3, chute=6)
    assert [c["seq"] for c in server.take_commands()] == [3, 4]
    server.write("arm.head", 4)  # the head catching up later changes nothing
    assert server.take_commands() == [] and server.read("arm.ack") == 4
    assert server.command_problems == []


async def test_a_plc_of_the_base_interface_waits_for_the_head(tag_map: TagMap) -> None:
    memory = DiverterMemory(tag_map.diverter, by_slot_seq=False)
    assert memory.read("features") == 0
    arm_slot(memory, 1)
    arm_slot(memory, 2)
    assert memory.take_commands() == [] and memory.read("arm.ack") == 0
    memory.write("arm.head", 2)
    assert [c["seq"] for c in memory.take_commands()] == [1, 2]
    memory.by_slot_seq = True  # a program update that announces it
    assert memory.read("features") == DiverterFeature.ARM_BY_SLOT_SEQ


async def test_a_host_that_laps_the_plc_without_a_head_is_reported(image: Image) -> None:
    """Seqs 1..40 written into a ring of 32 before the PLC looks, no head: 1..8 are gone (each
    reported), 9..40 are taken."""
    server = image
    for s in range(1, 41):
        arm_slot(server, s, chute=1)
    assert [c["seq"] for c in server.take_commands()] == list(range(9, 41))
    assert [p.seq for p in server.command_problems] == list(range(1, 9))
    assert all(p.reason == "overwritten" for p in server.command_problems)
    assert server.read("arm.ack") == 40


async def test_chute_blocks_read_as_arrays_by_chute_id(image: Image, link: Link) -> None:
    server = image
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


async def test_push_refuses_unknown_fields_and_given_seq(image: Image) -> None:
    ring = image.ring("confirm")
    with pytest.raises(ValueError, match="no field"):
        await ring.push(chute=1, colour=3)
    with pytest.raises(ValueError, match="seq"):
        await ring.push(seq=5)
    with pytest.raises(ValueError, match="out of range"):
        await ring.push(chute=70_000)
    assert ring.head == 0


async def test_ring_head_is_written_after_the_slot(image: Image, link: Link) -> None:
    server = image
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


async def test_memory_survives_restart_and_reset_clears_it(image: Image, tag_map: TagMap) -> None:
    server = image
    server.write("encoder_count", 123_456)
    await server.ring("confirm").push(chute=1)
    port = getattr(server, "port", None)
    await server.stop()
    assert not server.running
    await server.start()
    assert getattr(server, "port", None) == port and server.read("encoder_count") == 123_456
    server.reset()
    assert server.read("encoder_count") == 0 and server.ring("confirm").head == 0
    # a cold start clears every register but the program's own ``features``
    features = tag_map.diverter.registers["features"].address
    assert server.read("confirm.ack") == 0 and not np.delete(server.regs, features).any()
    assert server.read("features") == DiverterFeature.ARM_BY_SLOT_SEQ


async def test_plc_side_names_are_checked(image: Image) -> None:
    with pytest.raises(KeyError, match="nope"):
        image.read("nope")
    with pytest.raises(KeyError, match="no PLC->host ring"):
        image.ring("arm")  # the host's ring: the PLC takes it with take_commands
    with pytest.raises(ValueError, match="out of range"):
        image.write("faults", 70_000)  # uint16


async def test_one_register_image_served_over_modbus_and_in_memory(tag_map: TagMap) -> None:
    """A server built on an existing memory serves that memory: both links see the same
    registers, and the server's stop, start and drops are the PLC's for both."""
    memory = DiverterMemory(tag_map.diverter)
    with pytest.raises(ValueError, match="another diverter map"):
        DiverterPlcServer(tag_map.diverter.model_copy(update={"chute_fill": tag_map.diverter.chute_status}), memory=memory)
    async with DiverterPlcServer(tag_map.diverter, memory=memory) as server:
        assert memory.running and server.regs is memory.regs and server.delay is memory.delay
        wire = ModbusLink(ModbusEndpoint(port=server.port), tag_map.diverter, timeout_s=1.0)
        mem = DiverterMemoryLink(memory, tag_map.diverter)
        await wire.connect()
        await mem.connect()
        try:
            await wire.write({"host_heartbeat": 77})
            await mem.write({"reset_seq": 5})
            memory.write("encoder_count", 0xABCD_1234)
            await memory.ring("confirm").push(tracking_id=9, chute=3)
            names = ["host_heartbeat", "reset_seq", "encoder_count", "confirm.head"]
            assert await wire.read(names) == await mem.read(names) == {
                "host_heartbeat": 77, "reset_seq": 5, "encoder_count": 0xABCD_1234, "confirm.head": 1}  # fmt: skip
            assert await wire.read_ring("confirm", 0) == await mem.read_ring("confirm", 0)
            assert server.drop_connections() == 2  # one socket, one memory link
            assert not mem.connected
            with pytest.raises(PlcConnectionError):
                await mem.read(["host_heartbeat"])
            await mem.connect()
            await server.stop()
            assert not memory.running and not mem.connected
            with pytest.raises(PlcConnectionError):
                await mem.connect()
            await server.start()
            await mem.connect()
            assert await mem.read(["host_heartbeat"]) == {"host_heartbeat": 77}
        finally:
            await wire.close()
            await mem.close()

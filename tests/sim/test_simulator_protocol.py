"""The simulator over the wire: plain asyncua and pymodbus clients drive it like a controller."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from plant.codes import ArmAction, ArmResult, ConveyorFault, PackMLCommand, PackMLState
from plant.site import Site
from plant.tagmap import TagMap, load_tag_map
from plant.words import from_words, to_words
from plc_sim.clock import RealClock
from plc_sim.oracle import fire_count_for
from plc_sim.scenario import Arrivals, Scenario
from plc_sim.simulator import Ports, Simulator
from vision.camstream import read_frame

ROOT = Path(__file__).resolve().parents[2]
U32 = ua.VariantType.UInt32


def tiny_render(labels: object, deg: object, rng: np.random.Generator, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """A cheap stand-in frame for wire tests (the real renderer is the vision package's)."""
    return np.full((size[1], size[0]), 200, dtype=np.uint8)


@pytest.fixture(scope="module")
def tags() -> TagMap:
    return load_tag_map(ROOT / "config" / "tagmap.yaml")


@contextlib.asynccontextmanager
async def simulator(site: Site, tags: TagMap, count: int) -> AsyncIterator[Simulator]:
    sc = Scenario(seed=5, manifest=None, arrivals=Arrivals(rate_per_hour=3600, count=count))
    sim = Simulator(
        site, tags, sc, clock=RealClock(), tick_s=0.01, ports=Ports.base(0), camera_size=(64, 48), render=tiny_render
    )
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


class Host:
    """Just enough of a controller, written against the tag map with the raw client libraries."""

    def __init__(self, tags: TagMap, opc: Client, ns: int, mb: AsyncModbusTcpClient) -> None:
        self.tags, self.opc, self.ns, self.mb = tags, opc, ns, mb
        self.beat = 0
        self.cmd_seq = 0
        self.arm_seq = 0

    def node(self, name: str) -> object:
        tag = self.tags.conveyor.tags.get(name)
        ring, _, part = name.partition(".")
        ident = tag.node if tag else getattr(self.tags.conveyor.rings[ring], part)
        return self.opc.get_node(ua.NodeId(ident, self.ns))

    async def read(self, name: str) -> object:
        return await self.node(name).read_value()  # type: ignore[attr-defined]

    async def write(self, name: str, value: object, vt: ua.VariantType) -> None:
        await self.node(name).write_value(ua.DataValue(ua.Variant(value, vt)))  # type: ignore[attr-defined]

    async def heartbeat_forever(self) -> None:
        while True:
            self.beat += 1
            await self.write("host_heartbeat", self.beat, U32)
            await self.mb.write_registers(2, to_words(self.beat, "uint32"), device_id=1)
            await asyncio.sleep(0.05)

    async def command(self, cmd: PackMLCommand) -> int:
        self.cmd_seq += 1
        await self.write("belt_command", int(cmd), ua.VariantType.Int32)
        await self.write("belt_command_seq", self.cmd_seq, U32)
        await until(lambda: self.read("belt_command_ack"), lambda v: v == self.cmd_seq)
        return int(await self.read("belt_command_result"))  # type: ignore[call-overload]

    async def ring_entry(self, ring: str, seq: int) -> dict[str, int]:
        spec = self.tags.conveyor.rings[ring]
        await until(lambda: self.read(f"{ring}.head"), lambda v: v >= seq)
        out = {}
        for f, ident in spec.fields.items():
            arr = await self.opc.get_node(ua.NodeId(ident, self.ns)).read_value()
            out[f] = int(arr[seq % spec.size])
        assert out["seq"] == seq
        return out

    async def mb_u32(self, address: int) -> int:
        r = await self.mb.read_holding_registers(address, count=2, device_id=1)
        return from_words(r.registers, "uint32")

    async def arm(self, tid: int, chute: int, fire_count: int) -> None:
        spec = self.tags.diverter.rings["arm"]
        self.arm_seq += 1
        words = [0] * spec.slot_words
        for f, v in {"seq": self.arm_seq, "tracking_id": tid, "fire_count": fire_count, "chute": chute,
                     "action": int(ArmAction.ARM)}.items():  # fmt: skip
            fs = spec.fields[f]
            n = 2 if fs.type == "uint32" else 1
            words[fs.offset : fs.offset + n] = to_words(v, fs.type)
        await self.mb.write_registers(spec.slot_address(self.arm_seq), words, device_id=1)
        await self.mb.write_registers(spec.head.address, to_words(self.arm_seq, "uint32"), device_id=1)

    async def mb_ring_entry(self, ring: str, seq: int) -> dict[str, int]:
        spec = self.tags.diverter.rings[ring]
        await until(lambda: self.mb_u32(spec.head.address), lambda v: v >= seq)
        r = await self.mb.read_holding_registers(spec.slot_address(seq), count=spec.slot_words, device_id=1)
        return {f: from_words(r.registers, fs.type, fs.offset) for f, fs in spec.fields.items()}


async def until(get: Callable[[], Awaitable[object]], ok: Callable[[object], bool], within: float = 10.0) -> object:
    async with asyncio.timeout(within):
        while True:
            v = await get()
            if ok(v):
                return v
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def host(sim: Simulator, tags: TagMap) -> AsyncIterator[Host]:
    opc = Client(sim.conveyor_server.url)
    await opc.connect()
    mb = AsyncModbusTcpClient("127.0.0.1", port=sim.diverter_server.port)
    await mb.connect()
    try:
        ns = await opc.get_namespace_index(tags.conveyor.namespace_uri)
        yield Host(tags, opc, ns, mb)
    finally:
        mb.close()
        await opc.disconnect()


async def test_a_host_starts_the_belt_arms_a_diverter_and_gets_the_confirmation(
    site: Site, tags: TagMap
) -> None:
    async with simulator(site, tags, count=2) as sim, host(sim, tags) as h:
        cam_reader, cam_writer = await asyncio.open_connection("127.0.0.1", sim.endpoints["camera"]["port"])
        beat = asyncio.create_task(h.heartbeat_forever())
        try:
            assert await h.read("belt_state") == PackMLState.STOPPED
            assert await h.command(PackMLCommand.START) == 1  # refused: not Idle yet
            assert await h.command(PackMLCommand.RESET) == 0
            assert await h.read("belt_state") == PackMLState.RESETTING  # an acting state, done by itself
            assert await h.command(PackMLCommand.START) == 1  # refused: Resetting, not Idle yet
            await until(lambda: h.read("belt_state"), lambda v: v == PackMLState.IDLE)
            assert await h.command(PackMLCommand.START) == 0
            await until(lambda: h.read("belt_state"), lambda v: v == PackMLState.EXECUTE)
            # A repeated command seq is not executed again.
            await h.write("belt_command", int(PackMLCommand.STOP), ua.VariantType.Int32)
            await h.write("belt_command_seq", h.cmd_seq, U32)
            await asyncio.sleep(0.1)
            assert await h.read("belt_state") == PackMLState.EXECUTE

            induct = await h.ring_entry("induct", 1)
            scan = await h.ring_entry("scan", 1)
            assert induct["tracking_id"] == scan["tracking_id"] == 1 and scan["lap"] == 0
            length = (induct["trailing_count"] - induct["leading_count"]) & 0xFFFFFFFF
            await h.arm(1, 1, fire_count_for(site, 1, scan["trigger_count"], length))
            result = await h.mb_ring_entry("arm_result", 1)
            assert result["result"] == ArmResult.ARMED and result["tracking_id"] == 1
            # An arm for a chute that does not exist is refused with its own code.
            await h.arm(2, 200, 12345)
            assert (await h.mb_ring_entry("arm_result", 2))["result"] == ArmResult.UNKNOWN_CHUTE

            confirm = await h.mb_ring_entry("confirm", 1)
            assert confirm["tracking_id"] == 1 and confirm["chute"] == 1 and confirm["flags"] == 0
            gt = sim.ground_truth()
            assert gt.chute[0] == 1 and gt.fire_tracking_id[0] == 1

            frame = await asyncio.wait_for(read_frame(cam_reader), 5)
            assert frame.tracking_id == 1 and frame.trigger_count == scan["trigger_count"]
            assert frame.image.shape == (48, 64)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            cam_writer.close()


async def test_the_belt_holds_when_the_host_heartbeat_stops(site: Site, tags: TagMap) -> None:
    async with simulator(site, tags, count=0) as sim, host(sim, tags) as h:
        await h.write("watchdog_ms", 300, U32)
        beat = asyncio.create_task(h.heartbeat_forever())
        assert await h.command(PackMLCommand.RESET) == 0
        await until(lambda: h.read("belt_state"), lambda v: v == PackMLState.IDLE)
        assert await h.command(PackMLCommand.START) == 0
        await until(lambda: h.read("belt_state"), lambda v: v == PackMLState.EXECUTE)
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        await until(lambda: h.read("belt_state"), lambda v: v == PackMLState.HELD, within=3)
        assert int(await h.read("faults")) & ConveyorFault.HOST_WATCHDOG  # type: ignore[call-overload]
        assert not sim.world.running
        # The heartbeat comes back: Unhold runs the belt again.
        beat = asyncio.create_task(h.heartbeat_forever())
        try:
            assert await h.command(PackMLCommand.RESET) == 1  # a strict PLC refuses Reset in Held
            assert await h.command(PackMLCommand.UNHOLD) == 0
            await until(lambda: h.read("belt_state"), lambda v: v == PackMLState.EXECUTE)
            assert not int(await h.read("faults")) & ConveyorFault.HOST_WATCHDOG  # type: ignore[call-overload]
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat


async def test_an_encoder_jump_cancels_pending_arms_on_the_wire_and_latches_the_fault(
    site: Site, tags: TagMap
) -> None:
    async with simulator(site, tags, count=0) as sim, host(sim, tags) as h:
        beat = asyncio.create_task(h.heartbeat_forever())
        try:
            await asyncio.sleep(0.15)
            await h.arm(77, 1, (await h.mb_u32(4) + 50_000) & 0xFFFFFFFF)
            assert (await h.mb_ring_entry("arm_result", 1))["result"] == ArmResult.ARMED
            sim.faults.encoder_glitch(5000)
            dropped = await h.mb_ring_entry("arm_result", 2)  # the PLC reports it, unasked
            assert dropped == {"seq": 2, "command_seq": 1, "tracking_id": 77, "result": ArmResult.CANCELLED, "chute": 1}
            faults = await until(lambda: h.read("faults"), lambda v: int(v) & ConveyorFault.ENCODER != 0)  # type: ignore[call-overload]
            assert int(faults) & ConveyorFault.ENCODER  # type: ignore[call-overload]
            assert sim.world.stats.fires == 0 and sim.world.armed == 0
            await asyncio.sleep(0.3)  # the host has beaten since: arms are taken again
            await h.arm(78, 1, (await h.mb_u32(4) + 50_000) & 0xFFFFFFFF)
            assert (await h.mb_ring_entry("arm_result", 3))["result"] == ArmResult.ARMED
            assert sim.stats["encoder_faults"] == 1 and sim.stats["arms_dropped_by_encoder"] == 1
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

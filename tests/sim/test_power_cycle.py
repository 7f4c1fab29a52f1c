"""PLC power cycles (cold restarts) inside a running simulator, seen over the real protocols:
a new boot id, a belt that powers up Stopped, rings and tracking ids from 1, arms forgotten."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from plant.codes import ArmAction, ArmResult, PackMLCommand, PackMLState
from plant.site import Site
from plant.tagmap import TagMap, load_tag_map
from plant.words import from_words, to_words
from plc_sim.scenario import Arrivals, FaultSpec, Scenario
from plc_sim.simulator import Ports, Simulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tags() -> TagMap:
    return load_tag_map(ROOT / "config" / "tagmap.yaml")


@contextlib.asynccontextmanager
async def simulator(site: Site, tags: TagMap, count: int) -> AsyncIterator[Simulator]:
    sc = Scenario(seed=3, manifest=None, arrivals=Arrivals(rate_per_hour=7200, count=count))
    sim = Simulator(site, tags, sc, tick_s=0.01, ports=Ports.base(0), camera=False)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def eventually(cond: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if cond():
                return
            await asyncio.sleep(0.01)


class Opc:
    """A bare asyncua client that knows the tag map: read by name, send belt commands."""

    def __init__(self, client: Client, ns: int, tags: TagMap) -> None:
        self.client, self.ns, self.tags = client, ns, tags
        self.seq = 0

    def _node(self, name: str) -> Any:
        tag = self.tags.conveyor.tags.get(name)
        ring, _, part = name.partition(".")
        ident = tag.node if tag else getattr(self.tags.conveyor.rings[ring], part)
        return self.client.get_node(ua.NodeId(ident, self.ns))

    async def read(self, name: str) -> Any:
        return await self._node(name).read_value()

    async def until(self, name: str, ok: Callable[[Any], bool], within: float = 10.0) -> Any:
        async with asyncio.timeout(within):
            while True:
                v = await self.read(name)
                if ok(v):
                    return v
                await asyncio.sleep(0.01)

    async def command(self, cmd: PackMLCommand) -> int:
        self.seq += 1
        await self._node("belt_command").write_value(ua.DataValue(ua.Variant(int(cmd), ua.VariantType.Int32)))
        await self._node("belt_command_seq").write_value(ua.DataValue(ua.Variant(self.seq, ua.VariantType.UInt32)))
        await self.until("belt_command_ack", lambda v: v == self.seq)
        return int(await self.read("belt_command_result"))

    async def run_belt(self) -> None:
        assert await self.command(PackMLCommand.RESET) == 0
        await self.until("belt_state", lambda v: v == PackMLState.IDLE)
        assert await self.command(PackMLCommand.START) == 0
        await self.until("belt_state", lambda v: v == PackMLState.EXECUTE)

    async def ring_entry(self, ring: str, seq: int) -> dict[str, int]:
        spec = self.tags.conveyor.rings[ring]
        await self.until(f"{ring}.head", lambda v: v >= seq)
        out = {}
        for f, ident in spec.fields.items():
            arr = await self.client.get_node(ua.NodeId(ident, self.ns)).read_value()
            out[f] = int(arr[seq % spec.size])
        return out


@pytest_asyncio.fixture
async def opc_factory(tags: TagMap) -> AsyncIterator[Callable[[Simulator], Any]]:
    clients: list[Client] = []

    async def connect(sim: Simulator) -> Opc:
        c = Client(sim.conveyor_server.url, timeout=2)
        await c.connect()
        clients.append(c)
        return Opc(c, await c.get_namespace_index(tags.conveyor.namespace_uri), tags)

    yield connect
    for c in clients:
        with contextlib.suppress(Exception):  # the server of an old one is gone
            await asyncio.wait_for(c.disconnect(), 2)


class Modbus:
    def __init__(self, client: AsyncModbusTcpClient, tags: TagMap) -> None:
        self.mb, self.tags = client, tags
        self.seq = 0

    async def u32(self, address: int) -> int:
        r = await self.mb.read_holding_registers(address, count=2, device_id=1)
        return from_words(r.registers, "uint32")

    async def reg(self, name: str) -> int:
        """A register by name; ring heads and acks as "arm.ack", "confirm.head"."""
        ring, _, part = name.partition(".")
        spec = getattr(self.tags.diverter.rings[ring], part) if part else self.tags.diverter.registers[name]
        r = await self.mb.read_holding_registers(spec.address, count=spec.words, device_id=1)
        return from_words(r.registers, spec.type)

    async def arm(self, tid: int, chute: int, fire_count: int) -> dict[str, int]:
        spec = self.tags.diverter.rings["arm"]
        self.seq += 1
        words = [0] * spec.slot_words
        values = {"seq": self.seq, "tracking_id": tid, "fire_count": fire_count, "chute": chute,
                  "action": int(ArmAction.ARM)}  # fmt: skip
        for f, v in values.items():
            fs = spec.fields[f]
            words[fs.offset : fs.offset + (2 if fs.type == "uint32" else 1)] = to_words(v, fs.type)
        await self.mb.write_registers(spec.slot_address(self.seq), words, device_id=1)
        await self.mb.write_registers(spec.head.address, to_words(self.seq, "uint32"), device_id=1)
        res = self.tags.diverter.rings["arm_result"]
        async with asyncio.timeout(5):
            while True:
                if await self.reg("arm.ack") >= self.seq:
                    break
                await asyncio.sleep(0.01)
        head = await self.u32(res.head.address)
        r = await self.mb.read_holding_registers(res.slot_address(head), count=res.slot_words, device_id=1)
        return {f: from_words(r.registers, fs.type, fs.offset) for f, fs in res.fields.items()}


@contextlib.asynccontextmanager
async def modbus(sim: Simulator, tags: TagMap) -> AsyncIterator[Modbus]:
    mb = AsyncModbusTcpClient("127.0.0.1", port=sim.diverter_server.port, retries=0, reconnect_delay=0, timeout=1)
    assert await mb.connect()
    try:
        yield Modbus(mb, tags)
    finally:
        mb.close()


def back_on(sim: Simulator, plc: str) -> Callable[[], bool]:
    return lambda: any(f.kind == "plc_power_cycle" and f.detail == f"{plc} on" for f in sim.faults.history)


async def test_a_conveyor_power_cycle_boots_a_stopped_belt_with_a_new_boot_id_and_empty_rings(
    site: Site, tags: TagMap, opc_factory: Callable[[Simulator], Any]
) -> None:
    async with simulator(site, tags, count=40) as sim:
        host: Opc = await opc_factory(sim)
        boot1 = await host.read("plc_boot_id")
        assert boot1 == sim.conveyor.boot_id and boot1 != 0
        assert await host.read("belt_state") == PackMLState.STOPPED  # a strict PLC powers up Stopped
        await host.run_belt()
        await host.until("scan.head", lambda v: v >= 2)
        diverter_boot = sim.diverter.boot_id
        sim.faults.plc_power_cycle("conveyor", 0.3)
        await eventually(lambda: not sim.conveyor_server.running)
        assert not sim.world.running and sim.stats["on_belt"] > 0  # stopped at once, parcels on it
        travel = sim.world.travel_mm
        await eventually(back_on(sim, "conveyor"))
        await eventually(lambda: sim.conveyor_server.running)
        assert sim.world.travel_mm == travel  # nothing moved while the PLC was off

        host = await opc_factory(sim)  # the old connection went with the power
        boot2 = await host.read("plc_boot_id")
        assert boot2 not in (0, boot1) and boot2 == sim.conveyor.boot_id
        assert await host.read("belt_state") == PackMLState.STOPPED
        assert await host.read("faults") == 0 and await host.read("belt_command_ack") == 0
        assert await host.read("induct.head") == 0 and await host.read("scan.head") == 0
        assert await host.read("inducted_total") == 0
        assert await host.read("watchdog_ms") == 1000 and await host.read("induct_enable") is True
        assert await host.read("plc_heartbeat") < 20
        assert sim.diverter.boot_id == diverter_boot  # the other PLC did not notice

        await host.run_belt()  # the host's seq 1 is new to the cold PLC (ack 0)
        first = await host.ring_entry("induct", 1)
        assert first["seq"] == 1 and first["tracking_id"] == 1
        gt = sim.ground_truth()
        keys = {(int(b), int(t)) for b, t in zip(gt.boot_id, gt.tracking_id, strict=True)}
        assert (boot2, 1) in keys and (boot1, 1) in keys | {k for ks in gt.prior_keys for k in ks}


async def test_a_power_cycle_of_both_plcs_forgets_every_arm_and_restarts_the_diverter_rings(
    site: Site, tags: TagMap, opc_factory: Callable[[Simulator], Any]
) -> None:
    async with simulator(site, tags, count=0) as sim:
        conveyor_boot = sim.conveyor.boot_id
        async with modbus(sim, tags) as mb:
            boot1 = await mb.reg("boot_id")
            assert boot1 == sim.diverter.boot_id and boot1 != 0
            far = (await mb.reg("encoder_count") + 500_000) & 0xFFFFFFFF
            assert (await mb.arm(7, 3, far))["result"] == ArmResult.ARMED
            assert sim.world.armed == 1
        sim.faults.plc_power_cycle("both", 0.3)
        await eventually(lambda: not sim.diverter_server.running and not sim.conveyor_server.running)
        assert sim.world.armed == 0 and sim.stats["belt_state"] == "STOPPED"
        await eventually(back_on(sim, "both"))
        await eventually(lambda: sim.diverter_server.running and sim.conveyor_server.running)
        async with modbus(sim, tags) as mb:
            boot2 = await mb.reg("boot_id")
            assert boot2 not in (0, boot1) and boot2 == sim.diverter.boot_id
            assert await mb.reg("arm.ack") == 0 and await mb.reg("arm_result.head") == 0
            assert await mb.reg("confirm.head") == 0 and await mb.reg("faults") == 0
            assert await mb.reg("chute_slots") == max(c.id for c in site.chutes)  # power-on value
            assert sim.world.armed == 0 and sim.world.stats.fires == 0
            result = await mb.arm(8, 3, (await mb.reg("encoder_count") + 500_000) & 0xFFFFFFFF)
            assert result["seq"] == 1 and result["command_seq"] == 1 and result["result"] == ArmResult.ARMED
        host: Opc = await opc_factory(sim)
        assert await host.read("plc_boot_id") not in (0, conveyor_boot)


async def memory_run(site: Site, tags: TagMap) -> dict[str, Any]:
    """A run in memory and virtual time with both PLCs power-cycled on the scenario's schedule."""
    sc = Scenario(
        seed=9, manifest=None, arrivals=Arrivals(rate_per_hour=20_000, count=60),
        faults=(
            FaultSpec(kind="plc_power_cycle", at_s=8, duration_s=1.5, plc="conveyor"),
            FaultSpec(kind="plc_power_cycle", at_s=12, duration_s=0.5, plc="diverter"),
        ),
    )  # fmt: skip
    sim = Simulator(site, tags, sc, transport="memory", scan_loop=False)
    await sim.start()
    mem = sim.conveyor_memory
    seq = 0

    def read(name: str) -> Any:
        return mem.host_read([name])[0]

    async def command(cmd: PackMLCommand, then: PackMLState) -> None:
        nonlocal seq
        seq += 1
        assert mem.host_write({"belt_command": int(cmd), "belt_command_seq": seq}) == {}
        await sim.scan(0.01)
        assert read("belt_command_ack") == seq and read("belt_command_result") == 0
        for _ in range(100):
            if read("belt_state") == then:
                return
            await sim.scan(0.01)
        raise AssertionError(f"belt {read('belt_state')}, not {then}")

    async def until(t: float) -> None:
        while sim.world.time_s < t - 1e-9:
            await sim.scan(0.01)

    out: dict[str, Any] = {}
    try:
        await command(PackMLCommand.RESET, PackMLState.IDLE)
        await command(PackMLCommand.START, PackMLState.EXECUTE)
        out["boot1"], out["diverter1"] = read("plc_boot_id"), sim.diverter_memory.read("boot_id")
        await until(8.02)
        assert not mem.running and not sim.world.running
        await until(9.52)
        assert mem.running and read("belt_state") == PackMLState.STOPPED
        assert read("induct.head") == 0 and read("belt_command_ack") == 0 and read("plc_heartbeat") == 0
        out["boot2"] = read("plc_boot_id")
        seq = 0  # the host sees the new boot id and numbers its commands from 1 again
        await command(PackMLCommand.RESET, PackMLState.IDLE)
        await command(PackMLCommand.START, PackMLState.EXECUTE)
        await until(12.02)
        assert not sim.diverter_memory.running
        await until(12.52)
        assert sim.diverter_memory.running and sim.diverter_memory.read("arm_result.head") == 0
        out["diverter2"] = sim.diverter_memory.read("boot_id")
        await until(60)
        gt = sim.ground_truth()
        out["keys"] = list(zip(gt.boot_id.tolist(), gt.tracking_id.tolist(), strict=True))
        out["prior"] = gt.prior_keys
        out["induct_head"] = read("induct.head")
    finally:
        await sim.stop()
    return out


async def test_power_cycles_in_memory_and_virtual_time_are_the_same_run_every_time(site: Site, tags: TagMap) -> None:
    a = await memory_run(site, tags)
    assert a == await memory_run(site, tags)
    assert 0 not in (a["boot1"], a["boot2"], a["diverter1"], a["diverter2"])
    assert a["boot1"] != a["boot2"] and a["diverter1"] != a["diverter2"]
    renumbered = [k for k in a["prior"] if k]
    assert renumbered and all(ks[0][0] == a["boot1"] for ks in renumbered)
    assert {b for b, _ in a["keys"]} <= {a["boot1"], a["boot2"]}
    # the ring restarted with the new boot: one entry per id given since, re-acquisitions included
    assert a["induct_head"] == max(t for b, t in a["keys"] if b == a["boot2"])

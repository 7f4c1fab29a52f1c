"""An arm is one Modbus request where the diverter PLC takes a slot by its own seq.

Real parts: the simulator's OPC UA and Modbus servers on loopback and the controller's full
cycle. The simulated diverter announces ``features`` bit0; turned off, it is a PLC of the base
interface and the controller writes each chunk of slots and then ``arm.head``, as before.
Either way every arm is taken once, in order, with no ring problem at the PLC."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from control.service.app import Files, Service
from control.service.settings import ServiceSettings
from harness.session import _LocalSim

CONFIG = Path(__file__).resolve().parents[2] / "config"
ARMS = 6


@pytest.mark.parametrize("by_slot_seq", [True, False], ids=["slots-alone", "base-interface"])
async def test_each_arm_write_is_one_request_where_the_plc_takes_slots_by_seq(
    tmp_path: Path, by_slot_seq: bool
) -> None:
    sim = _LocalSim(CONFIG / "site.yaml", CONFIG / "scenarios" / "demo.yaml", camera=False)
    ep = await sim.start()
    try:
        memory = sim.sim.diverter_server.memory
        memory.by_slot_seq = by_slot_seq
        head_reg = memory.map.rings["arm"].head.address
        writes: list[int] = []  # start address of each host write request
        host_write = memory.host_write

        def observed_write(address: int, words: list[int]) -> None:
            writes.append(address)
            host_write(address, words)

        memory.host_write = observed_write  # type: ignore[method-assign]
        svc = Service.from_files(Files.beside(CONFIG / "site.yaml"), tmp_path / "e.sqlite", ServiceSettings(), ep,
                                 camera=False)
        async with svc:
            c = svc.controller
            per_call: list[list[int]] = []
            write_arms = c._write_arms
            stop = asyncio.Event()

            async def observed(*, committed: bool = True) -> bool:
                before, pending = len(writes), len(c.arms.pending)
                ok = await write_arms(committed=committed)
                if ok and len(c.arms.pending) < pending:
                    per_call.append(writes[before:])
                    if len(per_call) >= ARMS:
                        stop.set()
                return ok

            c._write_arms = observed  # type: ignore[method-assign]
            await asyncio.wait_for(c.run(stop), 60.0)
            written = c.arms.last_written
        if by_slot_seq:
            assert all(len(w) == 1 and w[0] != head_reg for w in per_call), per_call
        else:
            assert all(len(w) == 2 and w[1] == head_reg for w in per_call), per_call
        for _ in range(100):  # the PLC takes them in its next scans
            if memory.read("arm.ack") >= written:
                break
            await asyncio.sleep(0.01)
        # every command taken, none lost or torn at the PLC
        assert memory.read("arm.ack") == written and memory.command_problems == []
        assert not memory.read("faults") & 0b100
    finally:
        await sim.stop()

"""The control cycle's overlap: the next cycle's read goes out on schedule while the last
cycle's store and writes are still in flight, and that next cycle decides only after them.

Real parts: the simulator's OPC UA and Modbus servers on loopback, the real store and writer
thread. The test only observes the cycle's phases and holds one cycle's commit open until the
next cycle's read has gone out - which in a cycle run strictly in sequence never happens."""

from __future__ import annotations

import asyncio
from pathlib import Path

from control.service.app import Files, Service
from control.service.decide import Reading
from control.service.settings import ServiceSettings
from control.store import Batch, EventStore
from harness.session import _LocalSim

CONFIG = Path(__file__).resolve().parents[2] / "config"
CYCLES = 12


async def test_the_next_read_goes_out_while_a_commit_is_held_and_decides_only_after_it(tmp_path: Path) -> None:
    sim = _LocalSim(CONFIG / "site.yaml", CONFIG / "scenarios" / "demo.yaml", camera=False)
    ep = await sim.start()
    db = tmp_path / "events.sqlite"
    try:
        svc = Service.from_files(Files.beside(CONFIG / "site.yaml"), db, ServiceSettings(), ep, camera=False)
        async with svc:
            c = svc.controller
            log: list[tuple[str, int]] = []
            read_out = asyncio.Event()
            sense, decide, commit = c._sense, c._decide, c._commit

            async def observed_sense(now: float, tail: asyncio.Task[None] | None = None) -> tuple[Reading, Reading]:
                log.append(("read", c.metrics.cycles + 1))
                read_out.set()
                return await sense(now, tail)

            def observed_decide(conv: Reading, div: Reading, now: float) -> Batch:
                log.append(("decide", c.metrics.cycles))
                return decide(conv, div, now)

            async def held_commit(batch: Batch) -> bool:
                n = c.metrics.cycles
                read_out.clear()
                if n < CYCLES:  # (the last cycle has no next one)
                    await asyncio.wait_for(read_out.wait(), 5.0)  # the next cycle's read is out
                ok = await commit(batch)
                log.append(("stored", n))
                return ok

            c._sense, c._decide, c._commit = observed_sense, observed_decide, held_commit  # type: ignore[method-assign]
            await c.run(max_cycles=CYCLES)
        at = {e: i for i, e in enumerate(log)}
        for n in range(2, CYCLES + 1):
            assert at[("read", n)] < at[("stored", n - 1)], log  # read on schedule, store still open
            assert at[("stored", n - 1)] < at[("decide", n)], log  # decided after the last store
        assert ("stored", CYCLES) in at  # run() returns with its last cycle's tail done
        store = EventStore(db, readonly=True)
        try:
            assert [u for u in store.unit_events() if u[1] == "service" and u[2] == "start"]
        finally:
            store.close()
    finally:
        await sim.stop()


async def test_an_arm_due_at_the_diverters_count_is_accepted_before_the_cycle_reads(tmp_path: Path) -> None:
    """The arm step over loopback: in the cycle an arm falls due it reaches the diverter PLC
    before that cycle reads the conveyor; where the cycle could project the diverter's count
    from its last answer (`arm_ahead`), before it reads the diverter too, and the decision
    latency recorded for it is the table pass and the write."""
    sim = _LocalSim(CONFIG / "site.yaml", CONFIG / "scenarios" / "demo.yaml", camera=False)
    ep = await sim.start()
    try:
        svc = Service.from_files(Files.beside(CONFIG / "site.yaml"), tmp_path / "e.sqlite", ServiceSettings(), ep,
                                 camera=False)
        async with svc:
            c = svc.controller
            log: list[tuple[str, int, bool]] = []
            read_conveyor, read_diverter, write_arms = c._read_conveyor, c._read_diverter, c._write_arms
            arm_ahead = c.decider.arm_ahead
            ahead: set[int] = set()  # cycles that armed from the projected count
            stop = asyncio.Event()

            async def observed_read() -> Reading:
                log.append(("conveyor", c.metrics.cycles, False))
                return await read_conveyor()

            async def observed_diverter_read() -> Reading:
                log.append(("diverter", c.metrics.cycles, False))
                return await read_diverter()

            def observed_ahead(now: float, batch: Batch) -> bool:
                made = arm_ahead(now, batch)
                if made:
                    ahead.add(c.metrics.cycles)
                return made

            async def observed_write(*, committed: bool = True) -> bool:
                before = len(c.arms.pending)
                ok = await write_arms(committed=committed)
                if ok and len(c.arms.pending) < before:
                    log.append(("arm", c.metrics.cycles, committed))
                    if sum(e[0] == "arm" for e in log) >= 3:
                        stop.set()
                return ok

            c._read_conveyor, c._read_diverter, c._write_arms = (  # type: ignore[method-assign]
                observed_read, observed_diverter_read, observed_write)
            c.decider.arm_ahead = observed_ahead  # type: ignore[method-assign]
            await asyncio.wait_for(c.run(stop), 60.0)
        arms = [e for e in log if e[0] == "arm"]
        assert arms and all(not committed for _, _, committed in arms), log  # each went out early
        for _, cycle, _ in arms:
            assert log.index(("arm", cycle, False)) < log.index(("conveyor", cycle, False)), log
            if cycle in ahead:
                assert log.index(("arm", cycle, False)) < log.index(("diverter", cycle, False)), log
        assert ahead & {cycle for _, cycle, _ in arms}, "no arm went out on the projected count"
        assert c.metrics.decision_s.count == len(arms)
        assert max(c.metrics.decision_s.values()) < c.cfg.cycle_s  # within the cycle it fell due in
    finally:
        await sim.stop()

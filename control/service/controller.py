"""The controller: one asyncio cycle of read PLCs -> decide -> store -> publish.

Each cycle (default 10 ms, under a RateKeeper that reports lag):

1. **update** - one batched read per PLC (scalars, boot id and ring heads), ring entries only
   when a head moved; both PLCs read concurrently.
2. **decide** - pure work on in-memory state: heartbeats and fault bits through the fault
   book, PLC restarts (boot ids), the encoder plausibility check, ring events and decodes
   through the parcel flow (tracking, routing, arming), and the supervisor (the PackML unit
   and the belt handshake).
3. **store** - everything from step 2 in one SQLite transaction (writer thread).
4. **publish** - only after the commit: arm commands first, then ring acks, heartbeats, the
   belt command and the diverter reset.

A cycle whose commit fails acks nothing, arms nothing and commands nothing; its batch is
retried next cycle. This module keeps only the cycle and its I/O: the parcel side is
`ParcelFlow` (parcels.py), the unit and belt are the `Supervisor` (supervisor.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from control.faults import Fault
from control.packml import PackMLUnit
from control.plc import PlcError, PlcLink, RingRead
from control.service.alarms import CONVEYOR_BITS, DIVERTER_BITS, FaultBook
from control.service.arms import ArmQueue
from control.service.feeds import DecodeFeed, Router
from control.service.links import LinkKeeper
from control.service.metrics import Metrics
from control.service.parcels import ParcelFlow
from control.service.ratekeeper import RateKeeper
from control.service.settings import ServiceSettings
from control.service.streams import StreamBook
from control.service.supervisor import (
    BeltReading,
    Observed,
    OperatorCommand,
    Supervisor,
    SupervisorSettings,
)
from control.service.watch import EncoderWatch, HeartbeatWatch
from control.service.writer import StoreWriter
from control.store import Batch, EventStore, ParcelRow
from control.tracking import Geometry, TrackingTable
from plant.codes import ConveyorFault, DiverterFault, PackMLState
from plant.site import Site
from plant.tagmap import TagMap

__all__ = ["Controller"]

log = logging.getLogger(__name__)

S = PackMLState
CONVEYOR_SCALARS = (
    "plc_heartbeat", "plc_boot_id", "encoder_count", "speed_actual", "belt_state", "belt_command_ack",
    "belt_command_result", "faults", "jam_eye", "induct.head", "scan.head",
)
DIVERTER_SCALARS = ("plc_heartbeat", "boot_id", "faults", "arm.ack", "arm.head", "arm_result.head", "confirm.head")
RUNNING = frozenset({S.EXECUTE, S.SUSPENDED, S.SUSPENDING, S.UNSUSPENDING, S.COMPLETING})  # arms may go out
DIVERTER_LATCHED = DiverterFault.HOST_WATCHDOG | DiverterFault.ARM_OVERFLOW | DiverterFault.DIVERTER
HEALTH_EVERY = 1000  # cycles between health records in the store (10 s at 10 ms)


@dataclass(slots=True)
class _Read:
    """One PLC's reading this cycle (``rings``: ring name -> entries read)."""

    ok: bool = False
    scalars: dict[str, float | int | bool] = field(default_factory=dict)
    rings: dict[str, RingRead] = field(default_factory=dict)
    restarted: bool = False  # a new boot id: its rings were read from seq 1
    sent_at: float = 0.0  # the conveyor's encoder was sampled between these two instants
    received_at: float = 0.0


class Controller:
    """The sorter controller. Construct, ``await start()``, then ``await run(stop)``."""

    def __init__(
        self,
        site: Site,
        tag_map: TagMap,
        conveyor: PlcLink,
        diverter: PlcLink,
        router: Router,
        decoder: DecodeFeed | None,
        db_path: str,
        settings: ServiceSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.site = site
        self.tag_map = tag_map
        self.cfg = cfg = settings or ServiceSettings()
        self.conveyor = conveyor
        self.diverter = diverter
        self.router = router
        self.decoder = decoder
        self.clock = clock
        self.wall = wall
        self.geometry = Geometry.from_site(
            site,
            arm_horizon_mm=cfg.arm_horizon_mm,
            latency_budget_s=cfg.latency_budget_s,
            confirm_margin_mm=cfg.confirm_margin_mm,
            lost_margin_mm=cfg.lost_margin_mm,
            anchor_tolerance_mm=cfg.anchor_tolerance_mm,
        )
        self.unit = PackMLUnit()
        self.supervisor = Supervisor(
            SupervisorSettings(auto_start=cfg.auto_start, auto_recover=cfg.auto_recover,
                               retry_max_s=cfg.belt_retry_max_s, ack_timeout_s=cfg.belt_ack_timeout_s),
            unit=self.unit,
        )
        self.writer = StoreWriter(db_path, cfg.synchronous, cfg.store_busy_timeout_s)
        self.metrics = Metrics()
        self.faults = FaultBook(self.unit, wall)
        self.streams = StreamBook(wall, self.faults)
        self.arms = ArmQueue(tag_map.diverter.rings["arm"].size)
        self.parcels = ParcelFlow(
            site, self.geometry, cfg, router, decoder, unit=self.unit, faults=self.faults, arms=self.arms,
            streams=self.streams, metrics=self.metrics, clock=clock, wall=wall,
        )
        self.links = LinkKeeper({"conveyor": conveyor, "diverter": diverter})
        self._heartbeat = {plc: HeartbeatWatch(cfg.heartbeat_timeout_s) for plc in ("conveyor", "diverter")}
        self._encoder_watch = EncoderWatch(self.geometry.counts_per_mm, cfg.glitch_tolerance_mm)
        self._host_hb = 0
        self._pending_batch = Batch()
        self._conv_fault_bits = 0
        self._div_fault_bits = 0
        self._operator: list[OperatorCommand] = []
        self._handled: set[int] = set()  # operator commands taken, not yet seen done in the store
        self._belt_out: tuple[int, int] | None = None  # (command, seq) to write after the commit
        self._div_reset_out: int | None = None
        self._started = False
        self._overrun_at = 0.0
        self._glitch_cycle = -1
        self._store_failing = 0  # consecutive failed commits (logged once when it starts and once when it ends)

    @property
    def table(self) -> TrackingTable:
        return self.parcels.table

    @property
    def active_faults(self) -> dict[Fault, str]:
        return self.faults.active

    # ================================================================= start-up / recovery
    async def start(self) -> None:
        """Recover from the store, connect (best effort: the cycle retries), adopt PLC heads."""
        rec = await self.writer.call(_recover)
        self.streams.restore(rec.meta, rec.last_seqs)
        self.parcels.boot_id = self.streams.boot["conveyor"]
        self.arms.next_seq = rec.last_seqs.get(f"diverter.{self.streams.stream('arm')}", 0) + 1
        self.supervisor.belt_seq = int(rec.meta.get("belt_seq", "0") or 0)
        self.metrics.inducted_seen = rec.total
        batch = self._pending_batch
        for row in rec.open_parcels:
            self.parcels.restore(row, batch)
        batch.unit_event(self.wall(), "service", "start", 0, f"recovered {len(rec.open_parcels)} parcels in flight")
        for link in (self.conveyor, self.diverter):
            with contextlib.suppress(PlcError):
                await link.connect()
        with contextlib.suppress(PlcError):
            got = await self.diverter.read(["arm.head", "arm.ack", "reset_seq"])
            self._adopt_arm_heads(int(got["arm.head"]), int(got["arm.ack"]), batch)
            self.supervisor.diverter_reset_seq = int(got["reset_seq"])
        with contextlib.suppress(PlcError):
            got = await self.conveyor.read(["belt_command_ack", "belt_command_seq"])
            sup = self.supervisor
            sup.belt_seq = max(sup.belt_seq, int(got["belt_command_ack"]), int(got["belt_command_seq"]))
        await self._read_chutes(fill=True)  # the first decisions know which chutes are usable
        self._started = True

    def _adopt_arm_heads(self, head: int, ack: int, batch: Batch) -> None:
        if self.arms.adopt_heads(head, ack):
            self.streams.new_epoch("arm", batch)
            batch.unit_event(self.wall(), "ring_restart", "diverter.arm", head, "PLC arm ring restarted")

    # ================================================================= the loop
    async def run(self, stop: asyncio.Event | None = None, *, max_cycles: int | None = None) -> None:
        if not self._started:
            await self.start()
        rk = RateKeeper(self.cfg.cycle_s, clock=self.clock)
        n = 0
        while not (stop is not None and stop.is_set()) and (max_cycles is None or n < max_cycles):
            await rk.keep_time()
            self.note_lag(rk.lag_s)
            t0 = self.clock()
            await self.step()
            self.metrics.cycle_work_s.add(self.clock() - t0)
            n += 1

    def note_lag(self, lag_s: float) -> None:
        """How late this cycle started: recorded, and a lag of ten cycles raises the overrun alarm."""
        self.metrics.cycle_lag_s.add(lag_s)
        if lag_s > 10 * self.cfg.cycle_s:
            self._overrun_at = self.clock()
            self.faults.raise_(Fault.CYCLE_OVERRUN, f"cycle started {lag_s * 1000:.0f} ms late", self._pending_batch)
        elif Fault.CYCLE_OVERRUN in self.faults and self.clock() - self._overrun_at > 5.0:
            self.faults.clear(Fault.CYCLE_OVERRUN, self._pending_batch)

    async def kill(self) -> None:
        """Drop everything on the floor, as a crash would: no final commit, links cut."""
        await self.links.close()
        self.writer.close()

    async def close(self) -> None:
        """A clean stop: the pending batch and a stop event are committed, links closed."""
        await self.links.close()
        batch = self._pending_batch
        batch.unit_event(self.wall(), "service", "stop", 0, "")
        with contextlib.suppress(Exception):
            await self.writer.commit(batch)
        self._pending_batch = Batch()
        self.writer.close()

    async def step(self) -> None:
        """One cycle: update -> decide -> store -> publish."""
        now = self.clock()
        m = self.metrics
        m.cycles += 1
        conv, div = await asyncio.gather(self._read_conveyor(), self._read_diverter())
        t1 = self.clock()
        m.read_s.add(t1 - now)
        batch = self._pending_batch
        self._pending_batch = Batch()
        self._decide(conv, div, now, batch)
        t2 = self.clock()
        m.decide_s.add(t2 - t1)
        committed = await self._commit(batch)
        m.commit_s.add(self.clock() - t2)
        t3 = self.clock()
        await self._publish(committed, div.ok)
        m.publish_s.add(self.clock() - t3)
        await self._housekeeping()

    async def _commit(self, batch: Batch) -> bool:
        try:
            if batch:
                await self.writer.commit(batch)
        except Exception as exc:  # sqlite3.Error or disk trouble: keep everything, retry
            self.metrics.store_failures += 1
            self._store_failing += 1
            if self._store_failing == 1:
                log.error("event store commit failed: %s (retrying every cycle; nothing is acked meanwhile)", exc)
            retry = Batch()
            retry.merge(batch)
            self._pending_batch = retry
            self.faults.raise_(Fault.STORE_WRITE_FAILURE, str(exc), self._pending_batch)
            self.parcels.uncommitted()
            return False
        if self._store_failing:
            log.info("event store commits again after %d failed cycles", self._store_failing)
            self._store_failing = 0
        self.faults.clear(Fault.STORE_WRITE_FAILURE, self._pending_batch)
        self.parcels.committed(self.clock())
        return True

    async def _housekeeping(self) -> None:
        """Reads nothing this cycle's decisions wait for, done after the publish so they never
        delay an arm: chute status (5th cycle) and fill (50th), operator commands (25th cycle,
        four times a second) and a health record (every 10 s); all take effect next cycle."""
        cycles = self.metrics.cycles
        if cycles % 5 == 1:
            await self._read_chutes(fill=cycles % 50 == 1)
        if cycles % 25 == 0:
            await self._operator_commands()
        if cycles % HEALTH_EVERY == 0:
            self._pending_batch.meta["health"] = json.dumps(self.health(), separators=(",", ":"))

    def health(self) -> dict[str, object]:
        """The service's vital signs (``meta.health`` in the store, for `sortctl status` and the soak)."""
        m = self.metrics
        lag = m.cycle_lag_s.values()[-HEALTH_EVERY:]
        return {
            "t": round(self.wall(), 3),
            "cycles": m.cycles,
            "unit": self.unit.state.name,
            "lag_p99_ms": round(float(_p99(lag)) * 1000.0, 3),
            "rss_mb": _rss_mb(),
            "in_flight": len(self.table),
            "faults": self.faults.names(),
        }

    async def _read_chutes(self, *, fill: bool) -> None:
        block = getattr(self.diverter, "read_block", None)
        if block is None or not self.diverter.connected:
            return
        n_chutes = len(self.parcels.chute_status)
        try:
            status = await block("chute_status", n_chutes)
            levels = await block("chute_fill", n_chutes) if fill else None
        except PlcError as exc:
            log.debug("chute status read failed: %s", exc)
            return
        # applied now, outside the decisions: the next cycle routes and arms with them
        self.parcels.chute_status[: len(status)] = status
        self.parcels.check_destinations(self._pending_batch)
        if levels is not None:
            self.router.chute_fill(levels)

    async def _operator_commands(self) -> None:
        try:
            pending = await self.writer.call(lambda s: s.pending_commands())
        except Exception as exc:  # a locked or failing store must not stop the cycle
            log.debug("reading operator commands failed: %s", exc)
            return
        # a command is done once the batch that answers it commits; until then a poll sees it again
        fresh = [(cid, name) for cid, name in pending if cid not in self._handled]
        self._handled = {cid for cid, _ in pending}
        self._operator += [OperatorCommand(cid, name) for cid, name in fresh]

    # ================================================================= update
    async def _read_conveyor(self) -> _Read:
        out = _Read()
        if not self.links.usable("conveyor"):
            return out
        try:
            out.sent_at = self.clock()
            sc = await self.conveyor.read(CONVEYOR_SCALARS)
            out.received_at = self.clock()
            out.scalars = sc
            out.restarted = self.streams.restarted("conveyor", int(sc["plc_boot_id"]))
            await self._read_rings(self.conveyor, ("induct", "scan"), out)
            out.ok = True
        except PlcError as exc:
            log.debug("conveyor read failed: %s", exc)
        return out

    async def _read_diverter(self) -> _Read:
        out = _Read()
        if not self.links.usable("diverter"):
            return out
        try:
            sc = await self.diverter.read(DIVERTER_SCALARS)
            out.scalars = sc
            out.restarted = self.streams.restarted("diverter", int(sc["boot_id"]))
            await self._read_rings(self.diverter, ("arm_result", "confirm"), out)
            out.ok = True
        except PlcError as exc:
            log.debug("diverter read failed: %s", exc)
        return out

    async def _read_rings(self, link: PlcLink, rings: tuple[str, ...], out: _Read) -> None:
        """The rings whose head moved, with the heads just read (no second request for them);
        after a PLC restart from seq 1. Two rings of one PLC go as two requests in flight."""
        last = self.streams.last_seq
        moved = []
        for ring in rings:
            after = 0 if out.restarted else last[ring]
            head = int(out.scalars[f"{ring}.head"])
            if head != after:
                moved.append((ring, after, head))
        got = await asyncio.gather(*(link.read_ring(r, a, h) for r, a, h in moved))
        out.rings = {r: g for (r, _, _), g in zip(moved, got, strict=True)}

    # ================================================================= decide
    def _decide(self, conv: _Read, div: _Read, now: float, batch: Batch) -> None:
        flow = self.parcels
        self._liveness("conveyor", conv, now, batch)
        self._liveness("diverter", div, now, batch)
        if conv.ok:
            self._boot("conveyor", conv, now, batch)
            self._take_conveyor(conv, batch)
        if div.ok:
            self._boot("diverter", div, now, batch)
            ack = int(div.scalars["arm.ack"])
            if ack < self.arms.ack:  # the diverter PLC lost its ring state
                self._adopt_arm_heads(int(div.scalars["arm.head"]), ack, batch)
            self.arms.ack = ack
            self._diverter_faults(int(div.scalars["faults"]), batch)
        # ring events, in causal order: induct before scan before results and confirms
        self.streams.take("conveyor", "induct", conv.rings.get("induct"), batch, flow.on_induct)
        self.streams.take("conveyor", "scan", conv.rings.get("scan"), batch, flow.on_scan)
        self.streams.take("diverter", "arm_result", div.rings.get("arm_result"), batch, flow.on_arm_result)
        self.streams.take("diverter", "confirm", div.rings.get("confirm"), batch, flow.on_confirm)
        self.metrics.gaps = self.streams.lost
        if self.decoder is not None:
            if self.decoder.down_for > 1.0:
                self.faults.raise_(Fault.CAMERA_DOWN, "no camera stream", batch)
            elif self.decoder.healthy:
                self.faults.clear(Fault.CAMERA_DOWN, batch)
        flow.take_decodes(now, batch)
        if conv.ok:
            may_arm = self.unit.state in RUNNING and Fault.DIVERTER_HEARTBEAT_LOST not in self.faults
            flow.cycle_pass(now, batch, may_arm=may_arm)
        self._supervise(conv, div, now, batch)

    def _boot(self, plc: str, got: _Read, now: float, batch: Batch) -> None:
        """A PLC's boot id: adopted the first time, and a restart when it changes."""
        streams = self.streams
        boot_id = int(got.scalars["plc_boot_id" if plc == "conveyor" else "boot_id"])
        if got.restarted:
            old = streams.boot[plc]
            streams.take_boot(plc, boot_id, batch, restarted=True)
            if plc == "conveyor":
                closed = self.parcels.conveyor_restarted(boot_id, now, batch)
                what = f"{closed} parcels it tracked recorded lost (plc_restart)"
            else:
                self.arms.restart(int(got.scalars["arm.head"]), int(got.scalars["arm.ack"]))
                self.parcels.diverter_restarted(batch)
                what = "its arms are gone; armed parcels go round"
            self.faults.event(Fault.PLC_RESTARTED, f"{plc} PLC restarted (boot id {old} -> {boot_id}): {what}", batch)
        elif streams.first_boot(plc, boot_id):
            streams.take_boot(plc, boot_id, batch, restarted=False)
            if plc == "conveyor":
                self.parcels.adopt_boot(boot_id, batch)

    def _take_conveyor(self, conv: _Read, batch: Batch) -> None:
        sc = conv.scalars
        enc = int(sc["encoder_count"])
        speed = float(sc["speed_actual"])
        why = self._encoder_watch.check(enc, conv.sent_at, conv.received_at, speed)
        if why is not None:
            self._encoder_suspect(why, batch)
        self.parcels.encoder, self.parcels.speed_mps = enc, speed
        self._conveyor_faults(int(sc["faults"]), int(sc["jam_eye"]), batch)

    def _liveness(self, plc: str, got: _Read, now: float, batch: Batch) -> None:
        fault = Fault.CONVEYOR_HEARTBEAT_LOST if plc == "conveyor" else Fault.DIVERTER_HEARTBEAT_LOST
        lost = self._heartbeat[plc].update(got.ok, int(got.scalars["plc_heartbeat"]) if got.ok else None, now)
        if lost:
            self.faults.raise_(fault, "no heartbeat change" if got.ok else "link down", batch)
        elif got.ok:
            self.faults.clear(fault, batch)

    def _conveyor_faults(self, bits: int, jam_eye: int, batch: Batch) -> None:
        f = ConveyorFault(bits)
        for bit, fault in CONVEYOR_BITS.items():
            if bit in f:
                if fault == Fault.ENCODER_FAULT and fault not in self.faults:
                    self._encoder_suspect("the conveyor PLC reports an encoder fault", batch)
                self.faults.raise_(fault, f"jam at eye {jam_eye}" if fault == Fault.JAM else "", batch)
            elif not (fault == Fault.HOST_WATCHDOG and self._div_fault_bits & DiverterFault.HOST_WATCHDOG):
                self.faults.clear(fault, batch)  # (the watchdog fault is shared with the diverter's bit)
        self._conv_fault_bits = bits

    def _diverter_faults(self, bits: int, batch: Batch) -> None:
        f = DiverterFault(bits)
        conveyor_watchdog = ConveyorFault.HOST_WATCHDOG in ConveyorFault(self._conv_fault_bits)
        for bit, fault in DIVERTER_BITS.items():
            if bit in f:
                self.faults.raise_(fault, "diverter PLC", batch)
            elif not (fault == Fault.HOST_WATCHDOG and conveyor_watchdog):  # shared with the conveyor's bit
                self.faults.clear(fault, batch)
        self._div_fault_bits = bits

    def _encoder_suspect(self, detail: str, batch: Batch) -> None:
        """Every position anchored before now is suspect: cancel live arms, re-anchor at the scanner."""
        if self._glitch_cycle == self.metrics.cycles:  # seen twice in one cycle (our check and the PLC's bit)
            return
        self._glitch_cycle = self.metrics.cycles
        self.metrics.glitches += 1
        self.faults.event(Fault.ENCODER_GLITCH, detail, batch)
        self.parcels.encoder_glitch(self.clock(), batch)

    def _supervise(self, conv: _Read, div: _Read, now: float, batch: Batch) -> None:
        """The unit and the belt: what the supervisor decides goes to the batch and the publish."""
        sc = conv.scalars
        belt = BeltReading(int(sc["belt_state"]), int(sc["belt_command_ack"]), int(sc["belt_command_result"])) \
            if conv.ok else None
        obs = Observed(
            now=now, belt=belt, active=frozenset(self.faults.active), raised=tuple(self.faults.take_raised()),
            diverter_latched=bool(self._div_fault_bits & DIVERTER_LATCHED), diverter_seen=div.ok,
            operator=tuple(self._operator),
        )
        self._operator.clear()
        a = self.supervisor.step(obs)
        t = self.wall()
        for kind, name, code, detail in a.events:
            batch.unit_event(t, kind, name, code, detail)
        for level, msg in a.notes:
            log.log(level, msg)
        batch.commands_done += [(result, cid) for cid, result in a.operator_results]
        batch.meta.update(a.meta)
        self._belt_out = (int(a.belt_command[0]), a.belt_command[1]) if a.belt_command else None
        self._div_reset_out = a.diverter_reset

    # ================================================================= publish
    async def _publish(self, committed: bool, div_ok: bool) -> None:
        self._host_hb = (self._host_hb + 1) & 0xFFFFFFFF
        conv_w: dict[str, float | int | bool] = {
            "host_heartbeat": self._host_hb,
            "host_unit_state": int(self.unit.state),
            "induct_enable": self.unit.state == S.EXECUTE and not self.faults.no_entry(),
        }
        if self.metrics.cycles % 100 <= 2:  # settings the PLC keeps; refreshed after a PLC restart
            conv_w["watchdog_ms"] = self.cfg.watchdog_ms
            conv_w["speed_setpoint"] = float(self.site.sorter.speed_mps)
        div_w: dict[str, float | int | bool] = {"host_heartbeat": self._host_hb}
        belt, self._belt_out = self._belt_out, None
        reset, self._div_reset_out = self._div_reset_out, None
        if committed:
            acks = self.streams.ack_due
            for ring in ("induct", "scan"):
                if ring in acks:
                    conv_w[f"{ring}.ack"] = acks.pop(ring)
            for ring in ("arm_result", "confirm"):
                if ring in acks:
                    div_w[f"{ring}.ack"] = acks.pop(ring)
        # Belt commands and diverter resets go out even when the store fails (that is when the
        # unit must hold): their seqs need no durable record, since a restarted controller
        # continues after the larger of its stored seq and the PLC's own ack and seq registers.
        if belt is not None:  # command and seq in one request: the PLC applies the command first
            conv_w["belt_command"], conv_w["belt_command_seq"] = belt
        if reset is not None and div_ok:
            div_w["reset_seq"] = reset
        # The arms go out alone and first: sharing the loop with the OPC UA write doubled the
        # time to an accepted arm. A failed arm write skips the diverter's other writes.
        if committed and self.arms.pending and self.diverter.connected and not await self._write_arms():
            await self._write_conveyor(conv_w)
            return
        await asyncio.gather(self._write_conveyor(conv_w), self._write_diverter(div_w))

    async def _write_conveyor(self, values: dict[str, float | int | bool]) -> None:
        try:
            if not self.conveyor.connected:
                raise PlcError("conveyor link down")
            await self.conveyor.write(values)
        except PlcError as exc:
            if "belt_command" in values:
                self.supervisor.belt_write_failed()  # not sent: sent again (a new seq) next cycle
            log.debug("conveyor write failed: %s", exc)

    async def _write_arms(self) -> bool:
        """The next arm commands (already durable); False when the write failed."""
        chunk = self.arms.to_write()
        try:
            await self.diverter.write_ring("arm", chunk)
        except PlcError as exc:
            log.debug("diverter arm write failed: %s", exc)
            return False
        self.metrics.decision_s.extend(self.arms.written(chunk, self.clock()))
        return True

    async def _write_diverter(self, values: dict[str, float | int | bool]) -> None:
        if not self.diverter.connected:
            return
        try:
            await self.diverter.write(values)
        except PlcError as exc:
            log.debug("diverter write failed: %s", exc)


def _p99(values: object) -> float:
    a = np.asarray(values, dtype=np.float64)
    return float(np.percentile(a, 99)) if a.size else 0.0


def _rss_mb() -> float:
    """Resident memory of this process (Linux /proc; 0 where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)


@dataclass(slots=True)
class _Recovery:
    last_seqs: dict[str, int]
    open_parcels: list[ParcelRow]
    meta: dict[str, str]
    total: int


def _recover(store: EventStore) -> _Recovery:
    keys = ["belt_seq", "boot.conveyor", "boot.diverter",
            *(f"epoch.{r}" for r in ("induct", "scan", "arm_result", "confirm", "arm"))]
    meta = {k: store.meta(k, "0") for k in keys}
    return _Recovery(store.last_seqs(), store.parcels(open_only=True), meta, store.count_parcels())

"""The controller: one asyncio cycle of read PLCs -> decide -> store -> publish.

Each cycle (default 10 ms, under a RateKeeper that reports lag):

1. **update** - one batched read per PLC (scalars and ring heads), ring entries only when a
   head moved, chute status; both PLCs read concurrently.
2. **decide** - pure work on in-memory state: heartbeats and fault bits through the fault
   table, the encoder plausibility check, ring events and decodes through the parcel flow
   (tracking, routing, arming), the PackML unit.
3. **store** - everything from step 2 in one SQLite transaction (writer thread).
4. **publish** - only after the commit: ring acks, arm commands, heartbeats and belt command.

A cycle whose commit fails acks nothing and arms nothing; its batch is retried next cycle.

The parcel side lives in `ParcelFlow` (control/service/parcels.py); this module keeps the links,
the faults and the PackML unit, and the order in which things happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from control.faults import Fault
from control.packml import PackMLUnit
from control.plc import PlcError, PlcLink, RingRead
from control.service.alarms import CONVEYOR_BITS, DIVERTER_BITS, RESET_CLEARS, FaultBook
from control.service.arms import ArmQueue
from control.service.feeds import DecodeFeed, Router
from control.service.metrics import Metrics
from control.service.parcels import ParcelFlow
from control.service.ratekeeper import RateKeeper
from control.service.settings import ServiceSettings
from control.service.streams import StreamBook
from control.service.watch import EncoderWatch, HeartbeatWatch
from control.service.writer import StoreWriter
from control.store import Batch, EventStore, ParcelRow
from control.tracking import Geometry, TrackingTable
from plant.codes import (
    CommandResult,
    ConveyorFault,
    DiverterFault,
    PackMLCommand,
    PackMLState,
)
from plant.site import Site
from plant.tagmap import TagMap

__all__ = ["Controller"]

log = logging.getLogger(__name__)

S = PackMLState
C = PackMLCommand

CONVEYOR_SCALARS = (
    "plc_heartbeat", "encoder_count", "speed_actual", "belt_state", "belt_command_ack",
    "belt_command_result", "faults", "jam_eye", "induct.head", "scan.head",
)
DIVERTER_SCALARS = ("plc_heartbeat", "faults", "arm.ack", "arm.head", "arm_result.head", "confirm.head")

# acting state -> (belt command to send, belt state that completes it); None = completes at once
BELT_FOR_STATE: dict[PackMLState, tuple[PackMLCommand, frozenset[int]] | None] = {
    S.RESETTING: (C.RESET, frozenset({S.IDLE})),
    S.STARTING: (C.START, frozenset({S.EXECUTE})),
    S.HOLDING: (C.HOLD, frozenset({S.HELD})),
    S.UNHOLDING: (C.UNHOLD, frozenset({S.EXECUTE})),
    S.STOPPING: (C.STOP, frozenset({S.STOPPED})),
    S.ABORTING: (C.ABORT, frozenset({S.ABORTED})),
    S.CLEARING: (C.CLEAR, frozenset({S.STOPPED})),
    S.SUSPENDING: None,
    S.UNSUSPENDING: None,
    S.COMPLETING: None,
}
RUNNING = frozenset({S.EXECUTE, S.SUSPENDED, S.SUSPENDING, S.UNSUSPENDING})  # arms may go out


@dataclass(slots=True)
class _Conveyor:
    ok: bool = False
    scalars: dict[str, float | int | bool] = field(default_factory=dict)
    sent_at: float = 0.0  # the encoder was sampled between these two instants
    received_at: float = 0.0
    induct: RingRead | None = None
    scan: RingRead | None = None


@dataclass(slots=True)
class _Diverter:
    ok: bool = False
    scalars: dict[str, float | int | bool] = field(default_factory=dict)
    arm_result: RingRead | None = None
    confirm: RingRead | None = None


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
        self.writer = StoreWriter(db_path, cfg.synchronous)
        self.metrics = Metrics()
        self.faults = FaultBook(self.unit, wall, self._record_state)
        self.streams = StreamBook(wall)
        self.arms = ArmQueue(tag_map.diverter.rings["arm"].size)
        self.parcels = ParcelFlow(
            site, self.geometry, cfg, router, decoder, unit=self.unit, faults=self.faults, arms=self.arms,
            streams=self.streams, metrics=self.metrics, clock=clock, wall=wall,
        )
        self._heartbeat = {plc: HeartbeatWatch(cfg.heartbeat_timeout_s) for plc in ("conveyor", "diverter")}
        self._encoder_watch = EncoderWatch(self.geometry.counts_per_mm, cfg.glitch_tolerance_mm)
        self._belt_state = 0
        self._belt_seq = 0
        self._belt_ack = 0
        self._belt_sent_for: PackMLState | None = None
        self._belt_refused_in: PackMLState | None = None
        self._host_hb = 0
        self._pending_batch = Batch()
        self._conv_fault_bits = 0
        self._div_fault_bits = 0
        self._diverter_reset_seq = 0
        self._started = False
        self._overrun_at = 0.0
        self._reconnects: dict[str, asyncio.Task[None]] = {}
        self._glitch_cycle = -1
        self._retry_at = 0.0
        self._stop_requested = False
        self._first_cycle = True

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
        self.arms.next_seq = rec.last_seqs.get(f"diverter.{self.streams.stream('arm')}", 0) + 1
        self._belt_seq = int(rec.meta.get("belt_seq", "0") or 0)
        self.metrics.inducted_seen = rec.total
        batch = self._pending_batch
        for row in rec.open_parcels:
            self.parcels.restore(row, batch)
        batch.unit_event(self.wall(), "service", "start", 0, f"recovered {len(rec.open_parcels)} parcels in flight")
        for link in (self.conveyor, self.diverter):
            with contextlib.suppress(PlcError):
                await link.connect()
        with contextlib.suppress(PlcError):
            heads = await self.diverter.read(["arm.head", "arm.ack"])
            self._adopt_arm_heads(int(heads["arm.head"]), int(heads["arm.ack"]), batch)
        with contextlib.suppress(PlcError):
            got = await self.conveyor.read(["belt_command_ack"])
            self._belt_seq = max(self._belt_seq, int(got["belt_command_ack"]))
        await self._read_chutes(fill=True)  # the first decisions know which chutes are usable
        self._record_state(batch)
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
            self.metrics.cycle_lag_s.append(rk.lag_s)
            if rk.lag_s > 10 * self.cfg.cycle_s:
                self._overrun_at = self.clock()
                self.faults.raise_(Fault.CYCLE_OVERRUN, f"cycle started {rk.lag_s * 1000:.0f} ms late", self._pending_batch)
            elif Fault.CYCLE_OVERRUN in self.faults and self.clock() - self._overrun_at > 5.0:
                self.faults.clear(Fault.CYCLE_OVERRUN, self._pending_batch)
            t0 = self.clock()
            await self.step()
            self.metrics.cycle_work_s.append(self.clock() - t0)
            n += 1

    async def _stop_reconnects(self) -> None:
        for t in self._reconnects.values():
            t.cancel()
        for t in self._reconnects.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._reconnects.clear()

    async def kill(self) -> None:
        """Drop everything on the floor, as a crash would: no final commit, links cut."""
        await self._stop_reconnects()
        for link in (self.conveyor, self.diverter):
            with contextlib.suppress(Exception):
                await link.close()
        self.writer.close()

    async def close(self) -> None:
        await self._stop_reconnects()
        batch = self._pending_batch
        batch.unit_event(self.wall(), "service", "stop", 0, "")
        with contextlib.suppress(Exception):
            await self.writer.commit(batch)
        self._pending_batch = Batch()
        for link in (self.conveyor, self.diverter):
            with contextlib.suppress(Exception):
                await link.close()
        self.writer.close()

    async def step(self) -> None:
        """One cycle: update -> decide -> store -> publish."""
        now = self.clock()
        m = self.metrics
        m.cycles += 1
        conv, div = await asyncio.gather(self._read_conveyor(), self._read_diverter())
        t1 = self.clock()
        m.read_s.append(t1 - now)
        batch = self._pending_batch
        self._pending_batch = Batch()
        self._decide(conv, div, now, batch)
        t2 = self.clock()
        m.decide_s.append(t2 - t1)
        try:
            if batch:
                await self.writer.commit(batch)
                m.commit_s.append(self.clock() - t2)
            committed = True
        except Exception as exc:  # sqlite3.Error or disk trouble: keep everything, retry
            committed = False
            m.store_failures += 1
            log.error("event store commit failed: %s", exc)
            retry = Batch()
            retry.merge(batch)
            self._pending_batch = retry
            self.faults.raise_(Fault.STORE_WRITE_FAILURE, str(exc), self._pending_batch)
        if committed:
            self.faults.clear(Fault.STORE_WRITE_FAILURE, self._pending_batch)
            self.parcels.committed(self.clock())
        else:
            self.parcels.uncommitted()
        t3 = self.clock()
        await self._publish(committed, div.ok)
        m.publish_s.append(self.clock() - t3)
        await self._housekeeping()

    async def _housekeeping(self) -> None:
        """Reads nothing this cycle's decisions wait for, done after the publish so they never
        delay an arm: chute status (5th cycle) and fill (50th), and operator commands (25th
        cycle, four times a second); both take effect in the next cycle."""
        cycles = self.metrics.cycles
        if cycles % 5 == 1:
            await self._read_chutes(fill=cycles % 50 == 1)
        if cycles % 25 == 0:
            await self._operator_commands()

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

    # ================================================================= update
    def _usable(self, name: str, link: PlcLink) -> bool:
        """A link that is down is reconnected by a background task, never inside the cycle: a
        connect attempt can take the whole request timeout and must not stall the other PLC."""
        if link.connected:
            return True
        task = self._reconnects.get(name)
        if task is None or task.done():
            self._reconnects[name] = asyncio.create_task(self._reconnect(name, link), name=f"reconnect-{name}")
        return False

    async def _reconnect(self, name: str, link: PlcLink) -> None:
        delay = 0.05
        while not link.connected:
            try:
                await link.connect()
            except PlcError as exc:
                log.debug("%s: reconnect failed: %s", name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _read_conveyor(self) -> _Conveyor:
        out = _Conveyor()
        if not self._usable("conveyor", self.conveyor):
            return out
        last = self.streams.last_seq
        try:
            out.sent_at = self.clock()
            sc = await self.conveyor.read(CONVEYOR_SCALARS)
            out.received_at = self.clock()
            out.scalars = sc
            # the heads just read go with each ring read: no second request for them
            induct_head, scan_head = int(sc["induct.head"]), int(sc["scan.head"])
            new_induct, new_scan = induct_head != last["induct"], scan_head != last["scan"]
            if new_induct and new_scan:  # two requests in flight on one OPC UA session
                out.induct, out.scan = await asyncio.gather(
                    self.conveyor.read_ring("induct", last["induct"], induct_head),
                    self.conveyor.read_ring("scan", last["scan"], scan_head),
                )
            elif new_induct:
                out.induct = await self.conveyor.read_ring("induct", last["induct"], induct_head)
            elif new_scan:
                out.scan = await self.conveyor.read_ring("scan", last["scan"], scan_head)
            out.ok = True
        except PlcError as exc:
            log.debug("conveyor read failed: %s", exc)
        return out

    async def _read_diverter(self) -> _Diverter:
        out = _Diverter()
        if not self._usable("diverter", self.diverter):
            return out
        last = self.streams.last_seq
        try:
            sc = await self.diverter.read(DIVERTER_SCALARS)
            out.scalars = sc
            result_head, confirm_head = int(sc["arm_result.head"]), int(sc["confirm.head"])
            if result_head != last["arm_result"]:
                out.arm_result = await self.diverter.read_ring("arm_result", last["arm_result"], result_head)
            if confirm_head != last["confirm"]:
                out.confirm = await self.diverter.read_ring("confirm", last["confirm"], confirm_head)
            out.ok = True
        except PlcError as exc:
            log.debug("diverter read failed: %s", exc)
        return out

    # ================================================================= decide
    def _decide(self, conv: _Conveyor, div: _Diverter, now: float, batch: Batch) -> None:
        flow = self.parcels
        self._liveness("conveyor", conv.ok, conv.scalars, now, batch)
        self._liveness("diverter", div.ok, div.scalars, now, batch)
        if conv.ok:
            self._take_conveyor(conv, batch)
        if div.ok:
            ack = int(div.scalars["arm.ack"])
            if ack < self.arms.ack:  # the diverter PLC lost its ring state
                self._adopt_arm_heads(int(div.scalars["arm.head"]), ack, batch)
            self.arms.ack = ack
            self._diverter_faults(int(div.scalars["faults"]), batch)
        # ring events, in causal order: induct before scan before results and confirms
        self.streams.take("conveyor", "induct", conv.induct, batch, flow.on_induct)
        self.streams.take("conveyor", "scan", conv.scan, batch, flow.on_scan)
        self.streams.take("diverter", "arm_result", div.arm_result, batch, flow.on_arm_result)
        self.streams.take("diverter", "confirm", div.confirm, batch, flow.on_confirm)
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
        self._drive_unit(batch)

    def _take_conveyor(self, conv: _Conveyor, batch: Batch) -> None:
        sc = conv.scalars
        enc = int(sc["encoder_count"])
        speed = float(sc["speed_actual"])
        why = self._encoder_watch.check(enc, conv.sent_at, conv.received_at, speed)
        if why is not None:
            self._encoder_suspect(why, batch)
        self.parcels.encoder, self.parcels.speed_mps = enc, speed
        self._belt_state = int(sc["belt_state"])
        self._belt_ack = int(sc["belt_command_ack"])
        self._conveyor_faults(int(sc["faults"]), int(sc["jam_eye"]), batch)
        if (
            self._belt_ack == self._belt_seq
            and int(sc["belt_command_result"]) != CommandResult.ACCEPTED
            and self._belt_sent_for is not None
        ):
            log.warning("belt refused command seq %d (result %s)", self._belt_seq, sc["belt_command_result"])
            refused_in = self._belt_sent_for
            batch.unit_event(self.wall(), "belt_refused", str(refused_in.name), self._belt_seq, "")
            # not resent: a refused Unhold/Start/Reset means a latched PLC fault; stop, and let
            # the auto-start path Reset (after a pause) once nothing blocks it
            if self.unit.state in (S.UNHOLDING, S.STARTING, S.RESETTING):
                self.unit.command(C.STOP)
                self._retry_at = self.clock() + 2.0
            self._belt_refused_in = refused_in

    # ---------------------------------------------------------------- liveness and faults
    def _liveness(self, plc: str, ok: bool, sc: dict[str, float | int | bool], now: float, batch: Batch) -> None:
        fault = Fault.CONVEYOR_HEARTBEAT_LOST if plc == "conveyor" else Fault.DIVERTER_HEARTBEAT_LOST
        lost = self._heartbeat[plc].update(ok, int(sc["plc_heartbeat"]) if ok else None, now)
        if lost:
            self.faults.raise_(fault, "no heartbeat change" if ok else "link down", batch)
        elif ok:
            self.faults.clear(fault, batch)

    def _conveyor_faults(self, bits: int, jam_eye: int, batch: Batch) -> None:
        f = ConveyorFault(bits)
        for bit, fault in CONVEYOR_BITS.items():
            if bit in f:
                if fault == Fault.ENCODER_FAULT and fault not in self.faults:
                    self._encoder_suspect("the conveyor PLC reports an encoder fault", batch)
                self.faults.raise_(fault, f"jam at eye {jam_eye}" if fault == Fault.JAM else "", batch)
            else:
                self.faults.clear(fault, batch)
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
        batch.unit_event(self.wall(), "alarm", "encoder_glitch", int(Fault.ENCODER_GLITCH), detail)
        log.warning("encoder glitch: %s", detail)
        self.parcels.encoder_glitch(self.clock(), batch)

    # ---------------------------------------------------------------- PackML and the belt
    def _drive_unit(self, batch: Batch) -> None:
        unit = self.unit
        st = unit.state
        blocked = self.faults.blocking()
        if self.cfg.auto_start and not self._stop_requested:
            if (
                st == S.STOPPED and not blocked and self._links_up()
                and self._heartbeat["conveyor"].ever_ok and self.clock() >= self._retry_at
            ):
                if self._belt_state == S.EXECUTE:
                    # the belt is already running (we restarted): adopt it without a belt command
                    for step in (C.RESET, None, C.START, None):
                        unit.command(step) if step is not None else unit.state_complete()
                    self._record_state(batch)
                    return
                unit.command(C.RESET)
            elif st == S.IDLE:
                unit.command(C.START)
            elif st == S.ABORTED and not blocked:
                unit.command(C.CLEAR)
        if self.cfg.auto_recover and st == S.HELD and not blocked and self._links_up():
            if any(f in RESET_CLEARS for f in self.faults.active):
                unit.command(C.STOP)  # a latched PLC fault needs Reset: Stop, then Reset, Start
            else:
                unit.command(C.UNHOLD)
        st2 = unit.state
        if st2 in BELT_FOR_STATE:
            need = BELT_FOR_STATE[st2]
            if need is None or self._belt_state in need[1]:
                unit.state_complete()
                self._belt_sent_for = None
                if unit.state == S.EXECUTE:
                    unit.clear_stop_reason()
        if unit.state != st or self._first_cycle:
            self._record_state(batch)
        self._first_cycle = False

    def _links_up(self) -> bool:
        return Fault.CONVEYOR_HEARTBEAT_LOST not in self.faults and Fault.DIVERTER_HEARTBEAT_LOST not in self.faults

    def _record_state(self, batch: Batch) -> None:
        for out in self.unit.history:
            if out.accepted and out.before != out.after:
                batch.unit_event(self.wall(), "state", out.after.name, int(out.after), out.command)
            elif not out.accepted:
                batch.unit_event(self.wall(), "refused", out.command, int(out.before), out.reason)
        self.unit.history.clear()

    async def _operator_commands(self) -> None:
        try:
            pending = await self.writer.call(lambda s: s.pending_commands())
        except Exception as exc:  # a locked or failing store must not stop the cycle
            log.debug("reading operator commands failed: %s", exc)
            return
        batch = self._pending_batch
        for cid, name in pending:
            try:
                cmd = PackMLCommand[name.upper()]
            except KeyError:
                batch.commands_done.append((f"unknown command {name!r}", cid))
                continue
            if cmd == C.STOP:
                self._stop_requested = True
            elif cmd in (C.RESET, C.START, C.CLEAR):
                self._stop_requested = False
            out = self.unit.command(cmd)
            batch.unit_event(self.wall(), "operator", cmd.name, int(cmd), out.reason)
            batch.commands_done.append(("accepted" if out.accepted else f"refused: {out.reason}", cid))
            self._record_state(batch)

    def request_stop(self) -> None:
        """Operator Stop: the unit stops the belt and stays stopped."""
        self._stop_requested = True
        self.unit.command(C.STOP)

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
        if committed:
            acks = self.streams.ack_due
            for ring in ("induct", "scan"):
                if ring in acks:
                    conv_w[f"{ring}.ack"] = acks.pop(ring)
            for ring in ("arm_result", "confirm"):
                if ring in acks:
                    div_w[f"{ring}.ack"] = acks.pop(ring)
            need = BELT_FOR_STATE.get(self.unit.state)
            if (
                need and self._belt_sent_for != self.unit.state and self._belt_state not in need[1]
                and self._belt_refused_in != self.unit.state
            ):
                self._belt_seq += 1
                conv_w["belt_command"] = int(need[0])
                self._belt_sent_for = self.unit.state
                self._pending_batch.meta["belt_seq"] = str(self._belt_seq)
            if (self._div_fault_bits & DiverterFault.HOST_WATCHDOG) and div_ok:
                self._diverter_reset_seq += 1
                div_w["reset_seq"] = self._diverter_reset_seq
        # The arms go out alone and first: sharing the loop with the OPC UA write doubled the
        # time to an accepted arm. A failed arm write skips the diverter's other writes.
        if committed and self.arms.pending and self.diverter.connected and not await self._write_arms():
            await self._write_conveyor(conv_w)
            return
        await asyncio.gather(self._write_conveyor(conv_w), self._write_diverter(div_w))

    async def _write_conveyor(self, values: dict[str, float | int | bool]) -> None:
        if not self.conveyor.connected:
            self._belt_sent_for = None if "belt_command" in values else self._belt_sent_for
            return
        if "belt_command" in values:
            values["belt_command_seq"] = self._belt_seq  # same request; the PLC applies the command first
        try:
            await self.conveyor.write(values)
        except PlcError as exc:
            if "belt_command" in values:
                self._belt_sent_for = None  # not sent: send again (a new seq) next cycle
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


@dataclass(slots=True)
class _Recovery:
    last_seqs: dict[str, int]
    open_parcels: list[ParcelRow]
    meta: dict[str, str]
    total: int


def _recover(store: EventStore) -> _Recovery:
    keys = ["belt_seq", *(f"epoch.{r}" for r in ("induct", "scan", "arm_result", "confirm", "arm"))]
    meta = {k: store.meta(k, "0") for k in keys}
    return _Recovery(store.last_seqs(), store.parcels(open_only=True), meta, store.count_parcels())

"""The controller: one asyncio cycle of read PLCs -> decide -> store -> ack -> command.

Each cycle (default 10 ms, under a RateKeeper that reports lag):

1. **update** - one batched read per PLC (scalars and ring heads), ring entries only when a
   head moved, chute status; both PLCs read concurrently.
2. **decide** - pure work on in-memory state: heartbeats and fault bits through the fault
   table, encoder glitch check, ring events applied to the tracking table, decodes joined to
   their scan, routing, the per-cycle vector pass (arm due, too late, overdue, lost), PackML.
3. **store** - everything from step 2 in one SQLite transaction (writer thread).
4. **publish** - only after the commit: ring acks, arm commands, heartbeats and belt command.

A cycle whose commit fails acks nothing and arms nothing; its batch is retried next cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from control.config.site import ChuteKind, Site
from control.config.tagmap import TagMap
from control.faults import FAULTS, Fault, Reaction
from control.lifecycle import FINAL, ParcelState, ScanStatus, name_of
from control.packml import PackMLUnit
from control.plc import PlcError, PlcLink, RingRead
from control.plc.codes import (
    CONFIRM_UNEXPECTED,
    ArmAction,
    ArmResult,
    CommandResult,
    ConveyorFault,
    DiverterFault,
    PackMLCommand,
    PackMLState,
)
from control.service.feeds import DecodeFeed, DecodeResult, Router, RouteRequest
from control.service.ratekeeper import RateKeeper
from control.service.settings import ServiceSettings
from control.service.writer import StoreWriter
from control.store import Batch, EventStore, ParcelRow
from control.tracking import Geometry, TrackingTable, sdiff, wrap

__all__ = ["Controller", "Metrics"]

# latched PLC fault bits whose cause is gone once our heartbeat is back: a Reset clears them
RESET_CLEARS = frozenset({Fault.HOST_WATCHDOG})

log = logging.getLogger(__name__)

P = ParcelState
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


@dataclass(slots=True)
class Metrics:
    """Figures the benchmark and the demo read; latencies in seconds."""

    decision_s: deque[float] = field(default_factory=lambda: deque(maxlen=200_000))
    arm_confirmed_s: deque[float] = field(default_factory=lambda: deque(maxlen=200_000))
    scan_to_decision_s: deque[float] = field(default_factory=lambda: deque(maxlen=200_000))
    cycle_lag_s: deque[float] = field(default_factory=lambda: deque(maxlen=500_000))
    cycle_work_s: deque[float] = field(default_factory=lambda: deque(maxlen=500_000))
    read_s: deque[float] = field(default_factory=lambda: deque(maxlen=500_000))
    decide_s: deque[float] = field(default_factory=lambda: deque(maxlen=500_000))
    commit_s: deque[float] = field(default_factory=lambda: deque(maxlen=500_000))
    publish_s: deque[float] = field(default_factory=lambda: deque(maxlen=500_000))
    cycles: int = 0
    inducted_seen: int = 0  # parcels known to the store (recovered + inducted since)
    decode_timeouts: int = 0
    store_failures: int = 0
    glitches: int = 0
    gaps: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)


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
    chute_status: npt.NDArray[np.uint16] | None = None
    chute_fill: npt.NDArray[np.uint16] | None = None


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
        self.cfg = settings or ServiceSettings()
        self.conveyor = conveyor
        self.diverter = diverter
        self.router = router
        self.decoder = decoder
        self.clock = clock
        self.wall = wall
        self.geometry = Geometry.from_site(
            site,
            arm_horizon_mm=self.cfg.arm_horizon_mm,
            latency_budget_s=self.cfg.latency_budget_s,
            confirm_margin_mm=self.cfg.confirm_margin_mm,
            lost_margin_mm=self.cfg.lost_margin_mm,
            anchor_tolerance_mm=self.cfg.anchor_tolerance_mm,
        )
        self.table = TrackingTable(self.geometry, self.cfg.capacity)
        self.unit = PackMLUnit()
        self.writer = StoreWriter(db_path, self.cfg.synchronous)
        self.metrics = Metrics()
        n = max(c.id for c in site.chutes) + 1
        self._exception_chute = np.zeros(n, dtype=np.bool_)
        for c in site.chutes:
            self._exception_chute[c.id] = c.kind not in (ChuteKind.NORMAL, ChuteKind.PRIORITY)
        self.chute_status = np.zeros(n, dtype=np.uint16)
        # ring bookkeeping: last seq stored per PLC->host ring
        self.last_seq: dict[str, int] = {"induct": 0, "scan": 0, "arm_result": 0, "confirm": 0}
        self._ack_due: dict[str, int] = {}
        self.next_arm_seq = 1
        self.arm_ack = 0
        self._arm_pending: list[dict[str, int]] = []  # stored, not yet written to the PLC
        self._arm_written_at: dict[int, float] = {}  # command seq -> write time
        self._arm_due_at: dict[int, float] = {}  # command seq -> when arming became due
        # per-parcel side data that is not numeric
        self.identity: dict[int, str] = {}
        self.reason_name: dict[int, str] = {}
        self.inducted_t: dict[int, float] = {}
        self.decodes: dict[int, DecodeResult] = {}  # decodes whose scan event is not read yet
        self._decided_now: list[tuple[int, float]] = []
        # a PLC restart starts its seqs at 1 again: each restart opens a new stream epoch so
        # the store's (plc, stream, seq) key never confuses the old numbering with the new
        self.epoch: dict[str, int] = {"induct": 0, "scan": 0, "arm_result": 0, "confirm": 0, "arm": 0}
        self.finalised: dict[int, tuple[str, int, int]] = {}  # recent final ids -> (outcome, lead, trail)
        self._suspect: set[int] = set()  # armed when the encoder glitched: their fire may have hit another parcel
        self._final_order: deque[int] = deque()
        # liveness and faults
        self._hb: dict[str, tuple[int, float]] = {}
        self._link_ok_at: dict[str, float] = {}
        self.active_faults: dict[Fault, str] = {}
        self._last_encoder: tuple[int, float, float] | None = None
        self._encoder = 0
        self._speed_mps = 0.0
        self._belt_state = 0
        self._belt_seq = 0
        self._belt_ack = 0
        self._belt_sent_for: PackMLState | None = None
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
        self._belt_refused_in: PackMLState | None = None
        self._stop_requested = False
        self._first_cycle = True
        self._full_destinations: tuple[str, ...] = ()
        self._scan_timeouts_in_a_row = 0

    # ================================================================= start-up / recovery
    async def start(self) -> None:
        """Recover from the store, connect (best effort: the cycle retries), adopt PLC heads."""
        rec = await self.writer.call(_recover)
        for ring in self.epoch:
            self.epoch[ring] = int(rec.meta.get(f"epoch.{ring}", "0") or 0)
        for ring in self.last_seq:
            self.last_seq[ring] = rec.last_seqs.get(f"{self._plc_of(ring)}.{self._stream(ring)}", 0)
        self.next_arm_seq = rec.last_seqs.get(f"diverter.{self._stream('arm')}", 0) + 1
        self._belt_seq = int(rec.meta.get("belt_seq", "0") or 0)
        now = self.clock()
        self.metrics.inducted_seen = rec.total
        for row in rec.open_parcels:
            self._restore(row, now)
        batch = self._pending_batch
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
        self._record_state(batch)
        self._started = True

    def _adopt_arm_heads(self, head: int, ack: int, batch: Batch) -> None:
        """Continue the arm numbering where the PLC is; a PLC that restarted (its ack behind our
        numbering with nothing pending) starts a new arm epoch at its ack + 1."""
        if ack + 1 < self.next_arm_seq - len(self._arm_pending) and head < self.next_arm_seq - 1 - len(self._arm_pending):
            self.epoch["arm"] += 1
            batch.meta["epoch.arm"] = str(self.epoch["arm"])
            batch.unit_event(self.wall(), "ring_restart", "diverter.arm", head, "PLC arm ring restarted")
            self._arm_pending.clear()
            self.next_arm_seq = max(head, ack) + 1
        else:
            self.next_arm_seq = max(self.next_arm_seq, head + 1)
        self.arm_ack = ack

    @staticmethod
    def _plc_of(ring: str) -> str:
        return "conveyor" if ring in ("induct", "scan") else "diverter"

    def _stream(self, ring: str) -> str:
        e = self.epoch[ring]
        return ring if e == 0 else f"{ring}#{e}"

    def _restore(self, row: ParcelRow, now: float) -> None:
        """Rebuild a slot from its durable summary. Positions are not trusted across a restart:
        a parcel that was routed goes round once more rather than being armed from stale data."""
        t = self.table
        i = t.induct(row.tracking_id, row.lead, row.trail)
        if i is None:
            return
        self.identity[row.tracking_id] = row.identity
        self.inducted_t[row.tracking_id] = row.inducted_t
        t.lap[i] = row.lap
        if row.state in ("inducted",):
            return
        # scanned / routed / armed / missed / recirculated: expect it at the scanner next lap
        t.state[i] = P.RECIRCULATED
        if row.state not in ("recirculated", "missed"):
            self._pending_batch.parcel_event(self.wall(), row.tracking_id, "recirculated", row.lap, row.chute,
                                             row.reason, row.identity, "controller restarted")
        t.expect_scan[i] = wrap(row.lead + self.geometry.scanner_counts + (row.lap + 1) * self.geometry.loop_counts)
        # an arm written before the crash may still fire (a restart shorter than the diverter's
        # watchdog): a confirmation for the chute it was routed to is still a good sort
        t.chute[i] = row.chute
        self.reason_name[row.tracking_id] = row.reason
        if row.state == "armed":
            t.state[i] = P.MISSED

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
                self._raise(Fault.CYCLE_OVERRUN, f"cycle started {rk.lag_s * 1000:.0f} ms late", self._pending_batch)
            elif Fault.CYCLE_OVERRUN in self.active_faults and self.clock() - self._overrun_at > 5.0:
                self._clear(Fault.CYCLE_OVERRUN, self._pending_batch)
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
        self.metrics.cycles += 1
        m = self.metrics
        if m.cycles % 25 == 0:  # operator commands (sortctl status --send), four times a second
            await self._operator_commands()
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
            self.metrics.store_failures += 1
            log.error("event store commit failed: %s", exc)
            retry = Batch()
            retry.merge(batch)
            self._pending_batch = retry
            self._raise(Fault.STORE_WRITE_FAILURE, str(exc), self._pending_batch)
        if committed:
            if Fault.STORE_WRITE_FAILURE in self.active_faults:
                self._clear(Fault.STORE_WRITE_FAILURE, self._pending_batch)
            done = self.clock()
            for _tid, t_scan in self._decided_now:
                self.metrics.scan_to_decision_s.append(done - t_scan)
            self.table.release(self.table.final_slots())
        self._decided_now = []
        t3 = self.clock()
        await self._publish(committed, conv.ok, div.ok)
        m.publish_s.append(self.clock() - t3)

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
        try:
            out.sent_at = self.clock()
            sc = await self.conveyor.read(CONVEYOR_SCALARS)
            out.received_at = self.clock()
            out.scalars = sc
            new_induct = int(sc["induct.head"]) != self.last_seq["induct"]
            new_scan = int(sc["scan.head"]) != self.last_seq["scan"]
            if new_induct and new_scan:  # two requests in flight on one OPC UA session
                out.induct, out.scan = await asyncio.gather(
                    self.conveyor.read_ring("induct", self.last_seq["induct"]),
                    self.conveyor.read_ring("scan", self.last_seq["scan"]),
                )
            elif new_induct:
                out.induct = await self.conveyor.read_ring("induct", self.last_seq["induct"])
            elif new_scan:
                out.scan = await self.conveyor.read_ring("scan", self.last_seq["scan"])
            out.ok = True
        except PlcError as exc:
            log.debug("conveyor read failed: %s", exc)
        return out

    async def _read_diverter(self) -> _Diverter:
        out = _Diverter()
        if not self._usable("diverter", self.diverter):
            return out
        try:
            sc = await self.diverter.read(DIVERTER_SCALARS)
            out.scalars = sc
            if int(sc["arm_result.head"]) != self.last_seq["arm_result"]:
                out.arm_result = await self.diverter.read_ring("arm_result", self.last_seq["arm_result"])
            if int(sc["confirm.head"]) != self.last_seq["confirm"]:
                out.confirm = await self.diverter.read_ring("confirm", self.last_seq["confirm"])
            block = getattr(self.diverter, "read_block", None)
            if block is not None and self.metrics.cycles % 5 == 1:  # chute state changes slowly
                out.chute_status = await block("chute_status", len(self.chute_status))
                if self.metrics.cycles % 50 == 1:
                    out.chute_fill = await block("chute_fill", len(self.chute_status))
            out.ok = True
        except PlcError as exc:
            log.debug("diverter read failed: %s", exc)
        return out

    # ================================================================= decide
    def _decide(self, conv: _Conveyor, div: _Diverter, now: float, batch: Batch) -> None:
        wall = self.wall()
        self._liveness("conveyor", conv.ok, conv.scalars, now, batch)
        self._liveness("diverter", div.ok, div.scalars, now, batch)
        if conv.ok:
            enc = int(conv.scalars["encoder_count"])
            self._speed_mps = float(conv.scalars["speed_actual"])
            self._check_encoder(enc, conv.sent_at, conv.received_at, batch)
            self._encoder = enc
            self._belt_state = int(conv.scalars["belt_state"])
            self._belt_ack = int(conv.scalars["belt_command_ack"])
            self._conveyor_faults(int(conv.scalars["faults"]), int(conv.scalars["jam_eye"]), batch)
            if (
                self._belt_ack == self._belt_seq
                and int(conv.scalars["belt_command_result"]) != CommandResult.ACCEPTED
                and self._belt_sent_for is not None
            ):
                log.warning("belt refused command seq %d (result %s)", self._belt_seq,
                            conv.scalars["belt_command_result"])
                refused_in = self._belt_sent_for
                batch.unit_event(wall, "belt_refused", str(refused_in.name), self._belt_seq, "")
                # not resent: a refused Unhold/Start/Reset means a latched PLC fault; stop, and let
                # the auto-start path Reset (after a pause) once nothing blocks it
                if self.unit.state in (S.UNHOLDING, S.STARTING, S.RESETTING):
                    self.unit.command(C.STOP)
                    self._retry_at = self.clock() + 2.0
                self._belt_refused_in = refused_in
        if div.ok:
            ack = int(div.scalars["arm.ack"])
            if ack < self.arm_ack:  # the diverter PLC lost its ring state
                self._adopt_arm_heads(int(div.scalars["arm.head"]), ack, batch)
            self.arm_ack = ack
            self._diverter_faults(int(div.scalars["faults"]), batch)
            if div.chute_status is not None:
                self.chute_status[: len(div.chute_status)] = div.chute_status
                self._check_destinations(batch)
            if div.chute_fill is not None:
                self.router.chute_fill(div.chute_fill)
        # ring events, in causal order: induct before scan before results and confirms
        self._take_ring("conveyor", "induct", conv.induct, batch, self._on_induct)
        self._take_ring("conveyor", "scan", conv.scan, batch, self._on_scan)
        self._take_ring("diverter", "arm_result", div.arm_result, batch, self._on_arm_result)
        self._take_ring("diverter", "confirm", div.confirm, batch, self._on_confirm)
        if self.decoder is not None:
            if self.decoder.down_for > 1.0:
                self._raise(Fault.CAMERA_DOWN, "no camera stream", batch)
            elif self.decoder.healthy and Fault.CAMERA_DOWN in self.active_faults:
                self._clear(Fault.CAMERA_DOWN, batch)
        self._take_decodes(now, batch)
        self._decode_deadlines(now, batch)
        if conv.ok:
            self._cycle_pass(now, batch)
        self._drive_unit(batch)

    # ---------------------------------------------------------------- liveness and faults
    def _liveness(self, plc: str, ok: bool, sc: dict[str, float | int | bool], now: float, batch: Batch) -> None:
        fault = Fault.CONVEYOR_HEARTBEAT_LOST if plc == "conveyor" else Fault.DIVERTER_HEARTBEAT_LOST
        if ok:
            hb = int(sc["plc_heartbeat"])
            last = self._hb.get(plc)
            if last is None or last[0] != hb:
                self._hb[plc] = (hb, now)
            self._link_ok_at[plc] = now
        changed_at = self._hb.get(plc, (0, self._link_ok_at.get(plc, now)))[1]
        stale = now - changed_at > self.cfg.heartbeat_timeout_s
        if self._first_cycle:
            self._hb.setdefault(plc, (-1, now))
            stale = False
        if stale:
            self._raise(fault, "no heartbeat change" if ok else "link down", batch)
        elif fault in self.active_faults and ok:
            self._clear(fault, batch)

    def _conveyor_faults(self, bits: int, jam_eye: int, batch: Batch) -> None:
        f = ConveyorFault(bits)
        mapping = {
            ConveyorFault.ESTOP: Fault.ESTOP,
            ConveyorFault.JAM: Fault.JAM,
            ConveyorFault.HOST_WATCHDOG: Fault.HOST_WATCHDOG,
            ConveyorFault.ENCODER: Fault.ENCODER_FAULT,
            ConveyorFault.GAP_VIOLATION: Fault.INDUCT_GAP_VIOLATION,
        }
        for bit, fault in mapping.items():
            if bit in f:
                if fault == Fault.ENCODER_FAULT and fault not in self.active_faults:
                    self._encoder_suspect("the conveyor PLC reports an encoder fault", batch)
                self._raise(fault, f"jam at eye {jam_eye}" if fault == Fault.JAM else "", batch)
            elif fault in self.active_faults:
                self._clear(fault, batch)
        self._conv_fault_bits = bits

    def _diverter_faults(self, bits: int, batch: Batch) -> None:
        f = DiverterFault(bits)
        mapping = {
            DiverterFault.HOST_WATCHDOG: Fault.HOST_WATCHDOG,
            DiverterFault.DIVERTER: Fault.DIVERTER_FAULT,
            DiverterFault.ARM_OVERFLOW: Fault.ARM_QUEUE_OVERFLOW,
        }
        for bit, fault in mapping.items():
            if bit in f:
                self._raise(fault, "diverter PLC", batch)
            elif fault in self.active_faults and not (
                fault == Fault.HOST_WATCHDOG and ConveyorFault.HOST_WATCHDOG in ConveyorFault(self._conv_fault_bits)
            ):
                self._clear(fault, batch)
        self._div_fault_bits = bits

    def _check_destinations(self, batch: Batch) -> None:
        """Alarm while any destination has none of its own chutes usable (its parcels take
        fallbacks or exception chutes); a new list replaces the old alarm."""
        full = tuple(self.router.full_destinations(self.chute_status))
        if full == self._full_destinations:
            return
        self._full_destinations = full
        self._clear(Fault.DESTINATION_FULL, batch)
        if full:
            more = f" and {len(full) - 6} more" if len(full) > 6 else ""
            self._raise(Fault.DESTINATION_FULL, "no usable chute for " + ", ".join(full[:6]) + more, batch)

    def _raise(self, fault: Fault, detail: str, batch: Batch) -> None:
        if fault in self.active_faults:
            return
        rule = FAULTS[fault]
        self.active_faults[fault] = detail
        self.unit.raise_alarm(fault.name.lower(), detail)
        batch.unit_event(self.wall(), "alarm", fault.name.lower(), int(fault), detail)
        log.warning("fault %s (%s): %s -> %s", fault.name, rule.severity.name, detail or rule.why, rule.reaction.value)
        cmd = rule.reaction.command
        if cmd is not None:
            out = self.unit.command(cmd)
            if out.accepted:
                self.unit.set_stop_reason(int(fault), fault.name.lower())
            self._record_state(batch)

    def _clear(self, fault: Fault, batch: Batch) -> None:
        if self.active_faults.pop(fault, None) is None:
            return
        self.unit.clear_alarm(fault.name.lower())
        batch.unit_event(self.wall(), "alarm_clear", fault.name.lower(), int(fault), "")
        log.info("fault %s cleared", fault.name)

    def _check_encoder(self, enc: int, sent_at: float, received_at: float, batch: Batch) -> None:
        """An encoder step the belt speed cannot explain means every position is suspect.

        The PLC sampled the count somewhere between sending the read and its reply, so the
        time between two samples is only known as an interval; a late cycle or a slow reply
        widens it instead of looking like a jump.
        """
        last = self._last_encoder
        self._last_encoder = (enc, sent_at, received_at)
        if last is None:
            return
        step = sdiff(enc, last[0])
        g = self.geometry
        per_s = self._speed_mps * 1000.0 * g.counts_per_mm
        lo = per_s * max(0.0, sent_at - last[2])
        hi = per_s * (received_at - last[1])
        tol = self.cfg.glitch_tolerance_mm * g.counts_per_mm + 0.5 * hi  # + speed ramps
        if lo - tol <= step <= hi + tol:
            return
        self._encoder_suspect(
            f"encoder moved {step} counts in {(received_at - last[1]) * 1000:.0f} ms at most, "
            f"belt speed explains {lo:.0f}-{hi:.0f}",
            batch,
        )

    def _encoder_suspect(self, detail: str, batch: Batch) -> None:
        """Every position anchored before now is suspect: cancel live arms, re-anchor at the scanner."""
        if self._glitch_cycle == self.metrics.cycles:  # seen twice in one cycle (our check and the PLC's bit)
            return
        self._glitch_cycle = self.metrics.cycles
        self.metrics.glitches += 1
        batch.unit_event(self.wall(), "alarm", "encoder_glitch", int(Fault.ENCODER_GLITCH), detail)
        log.warning("encoder glitch: %s", detail)
        now = self.clock()
        armed = self.table.encoder_glitch()
        for i in armed.tolist():
            self._suspect.add(int(self.table.tid[i]))
            self._queue_arm(i, ArmAction.CANCEL, now, batch)

    # ---------------------------------------------------------------- ring events
    def _take_ring(
        self, plc: str, ring: str, got: RingRead | None, batch: Batch,
        apply: Callable[[dict[str, int], Batch], None],
    ) -> None:
        if got is None:
            return
        if got.restarted:
            log.warning("%s.%s: PLC head went back to %d: PLC restarted, resynchronising", plc, ring, got.head)
            batch.unit_event(self.wall(), "ring_restart", f"{plc}.{ring}", got.head, "")
            self.last_seq[ring] = 0
            self.epoch[ring] += 1
            batch.meta[f"epoch.{ring}"] = str(self.epoch[ring])
            return
        if got.gaps:
            self.metrics.gaps += got.lost
            detail = ", ".join(f"{g.first}-{g.last}" for g in got.gaps)
            batch.unit_event(self.wall(), "alarm", "event_sequence_gap", int(Fault.EVENT_SEQUENCE_GAP), f"{plc}.{ring}: {detail}")
            log.error("%s.%s: events lost: %s", plc, ring, detail)
        t = self.wall()
        for e in got.entries:
            seq = int(e["seq"])
            if seq <= self.last_seq[ring]:
                continue
            batch.ring(plc, self._stream(ring), seq, t, e)
            apply(e, batch)
            self.last_seq[ring] = seq
        self.last_seq[ring] = max(self.last_seq[ring], got.last_seq)
        self._ack_due[ring] = self.last_seq[ring]

    def _row(self, i: int, t: float) -> ParcelRow:
        tab = self.table
        tid = int(tab.tid[i])
        st = int(tab.state[i])
        return ParcelRow(
            tracking_id=tid, state=name_of(st), final=st in FINAL, lap=int(tab.lap[i]), chute=int(tab.chute[i]),
            reason=self.reason_name.get(tid, ""), identity=self.identity.get(tid, ""),
            scan_status=ScanStatus(int(tab.scan_status[i])).name.lower(), lead=int(tab.lead[i]),
            trail=int(tab.trail[i]), inducted_t=self.inducted_t.get(tid, 0.0), updated_t=t,
        )

    def _event(self, i: int, kind: str, batch: Batch, detail: str = "") -> None:
        t = self.wall()
        tid = int(self.table.tid[i])
        if kind in ("recirculated", "missed", "lost") and int(self.table.chute[i]):
            self.router.missed(tid, int(self.table.chute[i]))
        batch.parcel_event(t, tid, kind, int(self.table.lap[i]), int(self.table.chute[i]),
                           self.reason_name.get(tid, ""), self.identity.get(tid, ""), detail)
        batch.parcel(self._row(i, t))
        if int(self.table.state[i]) in FINAL:
            self._finalise(i, kind)

    def _finalise(self, i: int, kind: str) -> None:
        tid = int(self.table.tid[i])
        self.finalised[tid] = (kind, int(self.table.lead[i]), int(self.table.trail[i]))
        self._final_order.append(tid)
        while len(self._final_order) > 50_000:
            old = self._final_order.popleft()
            self.finalised.pop(old, None)
        m = self.metrics
        m.outcomes[kind] = m.outcomes.get(kind, 0) + 1
        reason = self.reason_name.get(tid, "")
        if kind == "sorted":
            self.unit.count_processed()
        else:
            self.unit.count_defective(reason or kind)
            key = reason or kind
            m.reasons[key] = m.reasons.get(key, 0) + 1
        self.identity.pop(tid, None)
        self.reason_name.pop(tid, None)
        self.inducted_t.pop(tid, None)

    def _on_induct(self, e: dict[str, int], batch: Batch) -> None:
        tid = int(e["tracking_id"])
        i = self.table.induct(tid, int(e["leading_count"]), int(e["trailing_count"]))
        if i is None:
            return
        self.inducted_t[tid] = self.wall()
        self.metrics.inducted_seen += 1
        self._event(i, "inducted", batch)

    def _on_scan(self, e: dict[str, int], batch: Batch) -> None:
        tid, trigger, lap = int(e["tracking_id"]), int(e["trigger_count"]), int(e["lap"])
        tab = self.table
        now = self.clock()
        if tid in self.finalised and tab.get(tid) is None:
            # a parcel we believed done is on the belt again (its confirmation came from another
            # parcel): alarm, and track it again from its induct edges; the scan re-anchors it
            kind, lead, trail = self.finalised.pop(tid)
            batch.unit_event(self.wall(), "alarm", "unexpected_parcel", int(Fault.UNEXPECTED_PARCEL),
                             f"tracking id {tid} ({kind}) seen at the scanner again")
            k = tab.induct(tid, lead, trail)
            if k is not None:
                tab.state[k] = P.RECIRCULATED
                tab.lap[k] = max(0, lap - 1)
                tab.epoch[k] = tab.glitch_epoch - 1  # never trusted on the lap it reappears
        i = tab.get(tid)
        if i is not None and lap > int(tab.lap[i]):
            st = int(tab.state[i])
            if st == P.ARMED:
                tab.transition(np.array([i]), P.MISSED)
                self._event(i, "missed", batch, "came round at the scanner")
            if int(tab.state[i]) in (P.SCANNED, P.ROUTED, P.MISSED):
                tab.transition(np.array([i]), P.RECIRCULATED)
                self._event(i, "recirculated", batch)
        j = tab.scan(tid, trigger, lap, now, now + self.cfg.decode_deadline_s)
        if j is None:
            return
        self._suspect.discard(tid)  # it came round: its old fire did not take it
        # when did the trigger happen, on our clock? From the encoder distance since then.
        v = max(self._speed_mps, 1e-3) * 1000.0 * self.geometry.counts_per_mm
        tab.scan_time[j] = now - max(0, sdiff(self._encoder, trigger)) / v
        if tid not in self.inducted_t:
            self.inducted_t[tid] = self.wall()
            if tid not in self.finalised and j is not None and int(tab.lap[j]) == lap and tab.length[j] == 0:
                self.metrics.inducted_seen += 1  # first seen here: its induct event was lost
        self._event(j, "scanned", batch, f"lap {lap}")
        if lap > self.geometry.recirculation_limit:
            self._route([j], [RouteRequest(tid, "", ScanStatus.PENDING, 0.0, lap)], batch, limit=True)

    def _on_arm_result(self, e: dict[str, int], batch: Batch) -> None:
        tid, cseq, res = int(e["tracking_id"]), int(e["command_seq"]), int(e["result"])
        now = self.clock()
        i = self.table.get(tid)
        written = self._arm_written_at.pop(cseq, None)
        due = self._arm_due_at.pop(cseq, None)
        if i is None:
            return
        tab = self.table
        if res == ArmResult.ARMED and int(tab.arm_seq[i]) == cseq and int(tab.state[i]) == P.ROUTED:
            tab.transition(np.array([i]), P.ARMED)
            self._event(i, "armed", batch, f"fire {int(tab.fire[i])}")
            if due is not None:
                self.metrics.arm_confirmed_s.append(now - due)
            del written
        elif res == ArmResult.CANCELLED and int(tab.state[i]) == P.ARMED:
            self._suspect.discard(tid)  # cancelled before it fired: nothing to check
            tab.transition(np.array([i]), P.RECIRCULATED)
            self._event(i, "recirculated", batch, "arm cancelled (position uncertain)")
        elif res == ArmResult.NOTHING_TO_CANCEL and int(tab.state[i]) == P.ARMED and tid in self._suspect:
            # the PLC holds no arm for it: dropped on its own encoder fault, or already fired.
            # It stays suspect: a confirmation that still comes is checked and alarmed.
            tab.transition(np.array([i]), P.RECIRCULATED)
            self._event(i, "recirculated", batch, "arm gone at cancel (position uncertain)")
        elif (
            res in (ArmResult.TOO_LATE, ArmResult.CHUTE_UNAVAILABLE, ArmResult.UNKNOWN_CHUTE, ArmResult.QUEUE_FULL)
            and int(tab.state[i]) == P.ROUTED
            and int(tab.arm_seq[i]) == cseq
        ):
            tab.transition(np.array([i]), P.RECIRCULATED)
            self._event(i, "recirculated", batch, f"arm refused: {ArmResult(res).name.lower()}")

    def _on_confirm(self, e: dict[str, int], batch: Batch) -> None:
        tid, chute, flags = int(e["tracking_id"]), int(e["chute"]), int(e["flags"])
        tab = self.table
        i = tab.get(tid) if tid else None
        if tid == 0 or flags & CONFIRM_UNEXPECTED or i is None:
            why = "no armed fire" if tid == 0 or flags & CONFIRM_UNEXPECTED else f"tracking id {tid} not in flight"
            self._raise(Fault.UNEXPECTED_PARCEL, f"chute {chute}: {why}", batch)
            self._clear(Fault.UNEXPECTED_PARCEL, batch)  # an event, not a standing condition
            return
        assigned = int(tab.chute[i])
        if tid in self._suspect:
            # its fire was live when the encoder jumped: the diverter may have taken another parcel
            self._suspect.discard(tid)
            batch.unit_event(self.wall(), "alarm", "suspect_divert", int(Fault.UNEXPECTED_PARCEL),
                             f"chute {chute}: tracking id {tid} fired across an encoder glitch; check the chute")
        if chute == assigned:
            final = P.REJECTED if self._exception_chute[chute] else P.SORTED
            if tab.transition(np.array([i]), final).size:
                self.router.confirmed(tid, assigned, chute)
                self._event(i, name_of(final), batch)
        else:
            if tab.transition(np.array([i]), P.MISSORTED).size:
                self.router.confirmed(tid, assigned, chute)
                tab.chute[i] = chute
                self._event(i, "missorted", batch, f"confirmed in chute {chute}")
                self._raise(Fault.UNEXPECTED_PARCEL, f"tracking id {tid} in chute {chute}", batch)
                self._clear(Fault.UNEXPECTED_PARCEL, batch)

    # ---------------------------------------------------------------- vision and routing
    def _take_decodes(self, now: float, batch: Batch) -> None:
        if self.decoder is None:
            return
        results = self.decoder.poll()
        if not results:
            return
        tab = self.table
        ready: list[int] = []
        reqs: list[RouteRequest] = []
        for r in results:
            i = tab.get(r.tracking_id)
            if i is None or int(tab.state[i]) != P.SCANNED or not self._same_pass(i, r.trigger_count):
                self.decodes[r.tracking_id] = r  # its scan event is not read yet
                continue
            ready.append(i)
            reqs.append(self._request(i, r, batch))
        if ready:
            self._route(ready, reqs, batch)
        if len(self.decodes) > 1024:  # decodes nobody claimed (parcel gone, stale pass)
            cutoff = now - 10.0
            self.decodes = {k: v for k, v in self.decodes.items() if v.done_at > cutoff}

    def _same_pass(self, i: int, trigger: int) -> bool:
        """A decode belongs to the scan whose trigger count it carries (this lap, not the last)."""
        this_trigger = wrap(int(self.table.expect_scan[i]) - self.geometry.loop_counts)
        return abs(sdiff(trigger, this_trigger)) <= self.geometry.loop_counts // 4

    def _request(self, i: int, r: DecodeResult, batch: Batch) -> RouteRequest:
        """A decode joined to its scan in time: the scanner works."""
        self._scan_timeouts_in_a_row = 0
        self._clear(Fault.SCANNER_TIMEOUT, batch)
        tab = self.table
        tid = int(tab.tid[i])
        tab.scan_status[i] = int(r.status)
        if r.identity:
            self.identity[tid] = r.identity
        length_mm = float(tab.length[i]) / self.geometry.counts_per_mm
        return RouteRequest(tid, r.identity, r.status, length_mm, int(tab.lap[i]), r.postal_code, r.country)

    def _decode_deadlines(self, now: float, batch: Batch) -> None:
        tab = self.table
        scanned = np.flatnonzero(tab.state == P.SCANNED)
        if scanned.size == 0:
            return
        # a decode that arrived before its scan event
        ready: list[int] = []
        reqs: list[RouteRequest] = []
        late: list[int] = []
        for i in scanned.tolist():
            tid = int(tab.tid[i])
            r = self.decodes.pop(tid, None)
            if r is not None and self._same_pass(i, r.trigger_count):
                ready.append(i)
                reqs.append(self._request(i, r, batch))
            elif now > float(tab.deadline[i]):
                late.append(i)
        if late:
            self._scan_timeouts_in_a_row += len(late)
            if self._scan_timeouts_in_a_row >= self.cfg.scanner_timeout_alarm:
                self._raise(Fault.SCANNER_TIMEOUT, f"{self._scan_timeouts_in_a_row} scans in a row not decoded "
                            f"within {self.cfg.decode_deadline_s:.2f} s", batch)
        for i in late:
            self.metrics.decode_timeouts += 1
            tid = int(tab.tid[i])
            tab.scan_status[i] = int(ScanStatus.TIMEOUT)
            ready.append(i)
            reqs.append(RouteRequest(tid, "", ScanStatus.TIMEOUT, float(tab.length[i]) / self.geometry.counts_per_mm,
                                     int(tab.lap[i])))
        if ready:
            self._route(ready, reqs, batch)

    def _route(self, slots: list[int], reqs: list[RouteRequest], batch: Batch, *, limit: bool = False) -> None:
        if limit:
            chute = self.site.reject_chute.id
            decided = [(chute, 11, "recirculation_limit") for _ in reqs]
        else:
            decided = self.router.route(reqs, self.chute_status)
        tab = self.table
        for i, req, (chute, _code, reason) in zip(slots, reqs, decided, strict=True):
            self.reason_name[req.tracking_id] = reason
            if tab.route(i, chute, _code):
                self._event(i, "routed", batch)
                self._decided_now.append((req.tracking_id, float(tab.scan_time[i])))

    # ---------------------------------------------------------------- per-cycle vector pass
    def _cycle_pass(self, now: float, batch: Batch) -> None:
        tab = self.table
        masks = tab.cycle(self._encoder)
        running = self.unit.state in (S.EXECUTE, S.SUSPENDED, S.SUSPENDING, S.UNSUSPENDING)
        for i in masks.too_late.tolist():
            why = "position uncertain" if not tab.trusted[i] else "too late to arm"
            if tab.transition(np.array([i]), P.RECIRCULATED).size:
                self._event(i, "recirculated", batch, why)
        for i in masks.overdue.tolist():
            if tab.transition(np.array([i]), P.MISSED).size:
                self._event(i, "missed", batch, "no confirmation")
                if self.geometry.loop and tab.transition(np.array([i]), P.RECIRCULATED).size:
                    self._event(i, "recirculated", batch, "missed divert")
        for i in masks.lost.tolist():
            if tab.transition(np.array([i]), P.LOST).size:
                self._event(i, "lost", batch, "not seen at the scanner")
        if not running or Fault.DIVERTER_HEARTBEAT_LOST in self.active_faults:
            return
        room = self.tag_map.diverter.rings["arm"].size - (self.next_arm_seq - 1 - self.arm_ack) - len(self._arm_pending)
        for i in masks.arm_due.tolist():
            if room <= 0:
                break
            if self.chute_status[int(tab.chute[i])] & 0b110:  # disabled or faulted: don't arm
                continue
            self._queue_arm(i, ArmAction.ARM, now, batch)
            room -= 1

    def _queue_arm(self, i: int, action: ArmAction, now: float, batch: Batch) -> None:
        tab = self.table
        seq = self.next_arm_seq
        self.next_arm_seq += 1
        entry = {
            "seq": seq, "tracking_id": int(tab.tid[i]), "fire_count": int(tab.fire[i]),
            "chute": int(tab.chute[i]), "action": int(action),
        }
        batch.ring("diverter", self._stream("arm"), seq, self.wall(), entry)
        self._arm_pending.append(entry)
        self._arm_due_at[seq] = now
        if action == ArmAction.ARM:
            tab.arm_seq[i] = seq

    # ---------------------------------------------------------------- PackML and the belt
    def _drive_unit(self, batch: Batch) -> None:
        unit = self.unit
        st = unit.state
        if self.cfg.auto_start and not self._stop_requested:
            if (
                st == S.STOPPED and not self._blocking_faults() and self._links_up()
                and "conveyor" in self._link_ok_at and self.clock() >= self._retry_at
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
            elif st == S.ABORTED and not self._blocking_faults():
                unit.command(C.CLEAR)
        if self.cfg.auto_recover and st == S.HELD and not self._blocking_faults() and self._links_up():
            if any(f in RESET_CLEARS for f in self.active_faults):
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

    def _blocking_faults(self) -> bool:
        """Faults that keep the unit from restarting by itself: any with a reaction, except
        latched PLC bits a Reset clears, once their cause (our heartbeat) is back."""
        return any(
            FAULTS[f].reaction != Reaction.ALARM and f not in RESET_CLEARS
            for f in self.active_faults
        )

    def _links_up(self) -> bool:
        return all(f not in self.active_faults for f in (Fault.CONVEYOR_HEARTBEAT_LOST, Fault.DIVERTER_HEARTBEAT_LOST))

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
    async def _publish(self, committed: bool, conv_ok: bool, div_ok: bool) -> None:
        self._host_hb = (self._host_hb + 1) & 0xFFFFFFFF
        conv_w: dict[str, float | int | bool] = {
            "host_heartbeat": self._host_hb,
            "host_unit_state": int(self.unit.state),
            "induct_enable": self.unit.state == S.EXECUTE and not any(FAULTS[f].no_entry for f in self.active_faults),
        }
        if self.metrics.cycles % 100 <= 2:  # settings the PLC keeps; refreshed after a PLC restart
            conv_w["watchdog_ms"] = self.cfg.watchdog_ms
            conv_w["speed_setpoint"] = float(self.site.sorter.speed_mps)
        div_w: dict[str, float | int | bool] = {"host_heartbeat": self._host_hb}
        if committed:
            for ring in ("induct", "scan"):
                if ring in self._ack_due:
                    conv_w[f"{ring}.ack"] = self._ack_due.pop(ring)
            for ring in ("arm_result", "confirm"):
                if ring in self._ack_due:
                    div_w[f"{ring}.ack"] = self._ack_due.pop(ring)
            need = BELT_FOR_STATE.get(self.unit.state)
            if need and self._belt_sent_for != self.unit.state and self._belt_state not in need[1] and self._belt_refused_in != self.unit.state:
                self._belt_seq += 1
                conv_w["belt_command"] = int(need[0])
                self._belt_sent_for = self.unit.state
                self._pending_batch.meta["belt_seq"] = str(self._belt_seq)
            if (self._div_fault_bits & DiverterFault.HOST_WATCHDOG) and div_ok:
                self._diverter_reset_seq += 1
                div_w["reset_seq"] = self._diverter_reset_seq
        await asyncio.gather(self._write_conveyor(conv_w), self._write_diverter(div_w, committed))

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

    async def _write_diverter(self, values: dict[str, float | int | bool], committed: bool) -> None:
        if not self.diverter.connected:
            return
        try:
            if committed and self._arm_pending:
                size = self.tag_map.diverter.rings["arm"].size
                chunk = self._arm_pending[:size]
                await self.diverter.write_ring("arm", chunk)
                t = self.clock()
                for e in chunk:
                    due = self._arm_due_at.get(e["seq"])
                    if due is not None and e["action"] == ArmAction.ARM:
                        self.metrics.decision_s.append(t - due)
                    self._arm_written_at[e["seq"]] = t
                del self._arm_pending[: len(chunk)]
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

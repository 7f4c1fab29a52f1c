"""The controller: one asyncio cycle of read PLCs -> decide -> store -> publish.

Each cycle (default 10 ms, under a RateKeeper that reports lag):

1. **update** - arms first: what is due at the diverter's count, projected to the cycle's
   start from its last answer, is stored in the cycle's batch and written before anything is
   read (`Decider.arm_ahead`: the decision latency is a pass over the table and one write; when
   the last cycle ran late or its answer was not whole, the diverter is read first,
   `Decider.arm_early`). Then one batched read per PLC (scalars, boot id and ring heads), ring
   entries only when a head moved: the diverter's scalars, then the conveyor and the diverter's
   rings concurrently.
2. **decide** - pure work on in-memory state: heartbeats and fault bits through the fault
   book, PLC restarts (boot ids), the encoder plausibility check, ring events and decodes
   through the parcel flow (tracking, routing, arming), and the supervisor (the PackML unit
   and the belt handshake).
3. **store** - everything from step 2 in one SQLite transaction (writer thread); arms for
   decisions an earlier cycle stored are written just before it (arms.py says why).
4. **publish** - only after the commit: the other arm commands first, then to each PLC that has
   something to hear (a change, acks, or the heartbeat's 0.1 s beat) one write with the
   heartbeat, the ring acks, the belt command and the diverter reset.

Steps 3-4 (and housekeeping: chute blocks, operator commands, the health record) run as the
cycle's tail, beside the next cycle's step 1: the next read goes out on schedule, and that cycle
decides only once the tail is done, so the order of decisions, commits and writes is the
sequential one. A cycle whose commit fails acks nothing and commands nothing, and arms nothing
but the arms for stored decisions that went out before it (none while the store keeps failing);
its batch is retried next cycle. This module keeps only the cycle and its I/O: the parcel side is
`ParcelFlow` (parcels.py), the unit and belt are the `Supervisor` (supervisor.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

from control.faults import Fault
from control.packml import PackMLUnit
from control.plc import PlcError, PlcLink
from control.service.alarms import FaultBook
from control.service.arms import ArmQueue
from control.service.decide import Decider, Outputs, Reading
from control.service.desk import DESK_COMMANDS, Desk
from control.service.feeds import DecodeFeed, Router
from control.service.links import LinkKeeper
from control.service.metrics import Metrics, health_record
from control.service.parcels import ParcelFlow
from control.service.ratekeeper import RateKeeper
from control.service.recovery import Recovery
from control.service.settings import ServiceSettings
from control.service.streams import StreamBook
from control.service.supervisor import OperatorCommand, Supervisor, SupervisorSettings
from control.service.writer import StoreWriter
from control.store import AlarmClear, AlarmRow, Batch
from control.tracking import Geometry, TrackingTable
from plant.codes import DiverterFeature, PackMLState, UnitMode
from plant.site import Site
from plant.tagmap import TagMap

__all__ = ["Controller"]

log = logging.getLogger(__name__)

S = PackMLState
CONVEYOR_SCALARS = (
    "plc_heartbeat", "plc_boot_id", "encoder_count", "speed_actual", "belt_state", "belt_command_ack",
    "belt_command_result", "faults", "jam_eye", "induct.head", "scan.head", "speed_setpoint", "watchdog_ms",
)
DIVERTER_SCALARS = (
    "plc_heartbeat", "boot_id", "encoder_count", "faults", "arm.ack", "arm.head", "arm_result.head", "confirm.head",
)
HEALTH_EVERY = 1000  # the health record's p99s are over this many latest cycles (10 s at 10 ms)
STORE_GRACE_S = 0.25  # commits failing this long (or this many in a row) raise the store fault
STORE_GRACE_CYCLES = 10
STALE_ALARM_GRACE_S = 10.0  # after a start, alarms of the last run not raised again by then are cleared
LIVE_S = 1.0  # seconds between refreshes of meta.health (the HMI's live view; it reads 5 s without one as stale)
HEALTH_TABLE_S = 10.0  # seconds between rows of the health table (trends)
BEAT_S = 0.1  # a PLC with nothing new hears the host heartbeat this often (its watchdog: 1 s)
ACK_AT_ONCE = 8  # a ring this many entries behind its last ack is acked without waiting for a beat
HEAD_S = 1.0  # arm.head behind slots written alone is brought up to date this often


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
        self.decider = Decider(
            cfg, self.geometry, unit=self.unit, supervisor=self.supervisor, faults=self.faults, streams=self.streams,
            arms=self.arms, parcels=self.parcels, metrics=self.metrics, decoder=decoder,
            speed_mps=float(site.sorter.speed_mps), clock=clock, wall=wall,
        )
        self.desk = Desk(site, self.parcels, self.unit, router, wall)
        self._chutes_meta = ""
        self._fill: dict[str, int] = {}
        self._live_at = float("-inf")
        self._table_at = float("-inf")
        self._mode_stored = ""
        self.files: dict[str, str] = {}  # the files the service was started with (for the HMI)
        self._host_hb = 0
        # the diverter's scalars; its ``features`` where its tag map has the register
        self._div_scalars = DIVERTER_SCALARS + (("features",) if "features" in tag_map.diverter.registers else ())
        self._arm_slots_alone = False  # the diverter PLC takes an arm slot by its own seq (features bit0)
        self._head_at = float("-inf")  # arm.head last written on a beat (slots written alone)
        self._beat_at = {"conveyor": float("-inf"), "diverter": float("-inf")}  # last write to each PLC
        self._sent_state: dict[str, float | int | bool] = {}  # the unit state and enable last written
        self._acked: dict[str, int] = {}  # ring -> last ack written
        self._pending_batch = Batch()
        self._handled: set[int] = set()  # operator commands taken, not yet seen done in the store
        self._out = Outputs()  # the belt command and diverter reset of this cycle, written after the commit
        self._started = False
        self._overrun_at = 0.0
        self._store_failing_since = 0.0
        self._stale_alarms: set[str] = set()
        self._started_at = 0.0
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
        rec = await self.writer.call(Recovery.read)
        self.streams.restore(rec.meta, rec.last_seqs)
        self.parcels.boot_id = int(rec.meta.get("key_boot.conveyor", "0") or 0) or self.streams.boot["conveyor"]
        self.arms.next_seq = rec.last_seqs.get(f"diverter.{self.streams.stream('arm')}", 0) + 1
        self.supervisor.belt_seq = int(rec.meta.get("belt_seq", "0") or 0)
        self.metrics.inducted_seen = rec.total
        batch = self._pending_batch
        for row in rec.open_parcels:
            self.parcels.restore(row, batch)
        self.desk.restore_chutes(rec.meta["chutes_out"])
        await self.desk.restore_plan(rec.plans, batch)
        if rec.meta["unit_mode"] in UnitMode.__members__:
            self.unit.set_mode(UnitMode[rec.meta["unit_mode"]])
        batch.unit_event(self.wall(), "service", "start", 0, f"recovered {len(rec.open_parcels)} parcels in flight")
        batch.meta["files"] = json.dumps(self.files)
        for link in (self.conveyor, self.diverter):
            with contextlib.suppress(PlcError):
                await link.connect()
        with contextlib.suppress(PlcError):
            got = await self.diverter.read(["arm.head", "arm.ack", "reset_seq"])
            self.decider.adopt_arm_heads(int(got["arm.head"]), int(got["arm.ack"]), batch)
            self.supervisor.diverter_reset_seq = int(got["reset_seq"])
        with contextlib.suppress(PlcError):
            got = await self.conveyor.read(["belt_command_ack", "belt_command_seq"])
            sup = self.supervisor
            sup.belt_seq = max(sup.belt_seq, int(got["belt_command_ack"]), int(got["belt_command_seq"]))
        await self._read_chutes(fill=True)  # the first decisions know which chutes are usable
        self._stale_alarms = set(rec.open_alarms)
        self._started_at = self.clock()
        self._started = True

    # ================================================================= the loop
    async def run(self, stop: asyncio.Event | None = None, *, max_cycles: int | None = None) -> None:
        if not self._started:
            await self.start()
        rk = RateKeeper(self.cfg.cycle_s, clock=self.clock)
        n = 0
        tail: asyncio.Task[None] | None = None  # the last cycle's store, publish and housekeeping
        try:
            while not (stop is not None and stop.is_set()) and (max_cycles is None or n < max_cycles):
                await rk.keep_time()
                self.note_lag(rk.lag_s)
                t0 = self.clock()
                # on time, while the last cycle's tail finishes; its writes are out and its
                # batch stored before this cycle arms or decides
                conv, div = await self._sense(t0, tail)
                batch = self._decide(conv, div, t0)
                tail = asyncio.create_task(self._act(batch, div.ok, t0), name="cycle-tail")
                n += 1
            if tail is not None:
                await tail
        finally:
            if tail is not None and not tail.done():  # cancelled (a kill): the tail goes too
                tail.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await tail

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
        """One cycle, start to end: update -> decide -> store -> publish -> housekeeping.

        ``run`` does the same with one overlap: the next cycle's read (the time-critical part:
        it samples the encoder and the rings on schedule) goes out while this cycle's store and
        writes are still in flight, and that next cycle decides only once they are done. Each
        cycle's work was ~7 ms at p50 of its 10 ms at 60,000 parcels/h, most of it waiting on
        the two PLCs; in sequence a slow write or commit made the next read late."""
        now = self.clock()
        conv, div = await self._sense(now)
        batch = self._decide(conv, div, now)
        await self._act(batch, div.ok, now)

    async def _sense(self, now: float, tail: asyncio.Task[None] | None = None) -> tuple[Reading, Reading]:
        """Update, arms first. When the last cycle's tail (its store and writes) is done, the
        arms due at the diverter's count projected from its last answer go out before anything
        is read (`Decider.arm_ahead`: the decision is one write); otherwise the diverter's
        scalars are read, and once they and the tail are in, the arms due at its count go out
        (`Decider.arm_early`). Either way the diverter's scalars are read before the conveyor
        and the diverter's rings, which are read concurrently.

        In this order, because the decisions wait on the slowest link: read concurrently, the
        diverter's answer came in 1.8 ms (p50) behind the conveyor's OPC UA answer, both in the
        simulator and in this loop; alone it takes 0.7 ms. The conveyor's values are read ~1-2 ms
        later than before, which nothing needs sooner (its ring entries carry their own counts)."""
        self.metrics.cycles += 1
        batch = self._pending_batch
        ahead = (tail is None or tail.done()) and self._may_arm_before_commit() and self.decider.arm_ahead(now, batch)
        if ahead:
            await self._write_arms(committed=False)
        div = await self._read_diverter()
        if tail is not None:
            await tail
        if not ahead and self._may_arm_before_commit() and self.decider.arm_early(div, now, batch):
            await self._write_arms(committed=False)
        conv, _ = await asyncio.gather(self._read_conveyor(), self._read_diverter_rings(div))
        self.metrics.read_s.add(max(conv.done_at, div.done_at, now) - now)
        return conv, div

    def _decide(self, conv: Reading, div: Reading, now: float) -> Batch:
        """Decide (pure, in memory); returns the batch that makes it durable."""
        t1 = self.clock()
        batch = self._pending_batch
        self._pending_batch = Batch()
        self._out = self.decider.decide(conv, div, now, batch)
        self.metrics.decide_s.add(self.clock() - t1)
        return batch

    async def _act(self, batch: Batch, div_ok: bool, t0: float) -> None:
        """Store, then publish, then housekeeping."""
        m = self.metrics
        # arms for decisions an earlier cycle stored go out before this cycle's commit (arms.py)
        if self.arms.pending and self._may_arm_before_commit():
            await self._write_arms(committed=False)
        t2 = self.clock()
        committed = await self._commit(batch)
        m.commit_s.add(self.clock() - t2)
        t3 = self.clock()
        await self._publish(committed, div_ok)
        m.publish_s.add(self.clock() - t3)
        await self._housekeeping()
        m.cycle_work_s.add(self.clock() - t0)

    async def _commit(self, batch: Batch) -> bool:
        try:
            if batch:
                await self.writer.commit(batch)
        except Exception as exc:  # sqlite3.Error or disk trouble: keep everything, retry
            self.metrics.store_failures += 1
            self._store_failing += 1
            now = self.clock()
            if self._store_failing == 1:
                self._store_failing_since = now
            # in front of whatever the next cycle has gathered meanwhile (its read overlaps this)
            self._pending_batch.merge(batch)
            # a lock held for a moment (an operator's command, a reader's checkpoint) costs a cycle
            # or two of acks, not a hold; a store that stays unwritable is a fault
            if now - self._store_failing_since >= STORE_GRACE_S or self._store_failing >= STORE_GRACE_CYCLES:
                if Fault.STORE_WRITE_FAILURE not in self.faults:
                    log.error("event store commit failed: %s (retrying every cycle; nothing is acked meanwhile)", exc)
                self.faults.raise_(Fault.STORE_WRITE_FAILURE, str(exc), self._pending_batch)
            self.parcels.uncommitted()
            return False
        if self._store_failing:
            if Fault.STORE_WRITE_FAILURE in self.faults:
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
        self.desk.poll(self._pending_batch)
        if self._stale_alarms and self.clock() - self._started_at >= STALE_ALARM_GRACE_S:
            self._close_stale_alarms()
        now = self.clock()
        if now - self._live_at >= LIVE_S:  # by time, not cycles: late cycles must not make it look dead
            self._live_at = now
            rec = json.dumps(self.health(), separators=(",", ":"))
            self._pending_batch.meta["health"] = rec
            if now - self._table_at >= HEALTH_TABLE_S:
                self._table_at = now
                self._pending_batch.health.append((self.wall(), rec))
        mode = self.unit.mode.name
        if self._mode_stored != mode:
            self._pending_batch.meta["unit_mode"] = self._mode_stored = mode

    def _close_stale_alarms(self) -> None:
        """Alarms the last run left active whose cause this run has not seen again: cleared. One
        still there has been raised again by now - onto the same alarm row, its acknowledgement
        kept - so only the ones that went away while the service was down are closed."""
        gone = sorted(self._stale_alarms - set(self.faults.names()))
        self._stale_alarms = set()
        t = self.wall()
        for name in gone:
            self._pending_batch.alarm_ops.append(AlarmClear(t, name))
            self._pending_batch.unit_event(t, "alarm_clear", name, 0, "not seen again after the restart")
        if gone:
            log.info("alarms from before the restart no longer active: %s", ", ".join(gone))

    def health(self) -> dict[str, object]:
        """The service's vital signs (``meta.health`` in the store every second, and a row of the
        health table every 10 s: `sortctl status`, the HMI, Prometheus, the soak)."""
        camera = self.decoder.healthy if self.decoder is not None else False
        return health_record(
            self.metrics, HEALTH_EVERY, t=self.wall(), unit=self.unit.state.name, mode=self.unit.mode.name,
            in_flight=len(self.table), faults=self.faults.names(),
            links={"conveyor": self.conveyor.connected, "diverter": self.diverter.connected, "camera": camera},
            speed_mps=round(self.parcels.speed_mps, 3), plan_version=self.router.plan_version,
            chute_fill=self._fill,  # the PLC's last fill counts, chute id -> parcels (trends of fill)
        )

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
        self.parcels.set_plc_chute_status(status)
        self.parcels.check_destinations(self._pending_batch)
        if levels is not None:
            self.router.chute_fill(levels)
            counts = [int(x) for x in levels]
            self._fill = {str(c): counts[c] for c in self.desk.chutes if c < len(counts)}
            snapshot = self.desk.chutes_meta(counts)
            if snapshot != self._chutes_meta:  # the HMI's chute grid: stored when something changed
                self._pending_batch.meta["chutes"] = self._chutes_meta = snapshot

    async def _operator_commands(self) -> None:
        try:
            pending = await self.writer.call(lambda s: s.pending_commands())
        except Exception as exc:  # a locked or failing store must not stop the cycle
            log.debug("reading operator commands failed: %s", exc)
            return
        # a command is done once the batch that answers it commits; until then a poll sees it again
        fresh = [c for c in pending if c.id not in self._handled]
        self._handled = {c.id for c in pending}
        desk = [OperatorCommand(c.id, c.name, c.user, c.args) for c in fresh if c.name in DESK_COMMANDS]
        self.decider.operator += [OperatorCommand(c.id, c.name, c.user, c.args) for c in fresh
                                  if c.name not in DESK_COMMANDS]
        if not desk:
            return
        alarms: dict[int, AlarmRow] = {}
        if any(c.name.startswith("ALARM_") for c in desk):
            try:
                alarms = {a.id: a for a in await self.writer.call(lambda s: s.alarms(open_only=True))}
            except Exception as exc:  # answered next poll: not marked handled
                log.debug("reading alarms failed: %s", exc)
                self._handled -= {c.id for c in desk}
                return
        for c in desk:
            self.desk.take(c, self._pending_batch, alarms)

    # ================================================================= update
    async def _read_conveyor(self) -> Reading:
        out = Reading()
        if not self.links.usable("conveyor"):
            return out
        try:
            out.sent_at = self.clock()
            sc = await self.conveyor.read(CONVEYOR_SCALARS)
            out.received_at = self.clock()
            out.scalars = sc
            boot = int(sc["plc_boot_id"])
            if boot == 0:  # the PLC program is not running yet (memory zero): nothing it says counts
                return out
            out.restarted = self.streams.restarted("conveyor", boot)
            last = self.streams.last_seq
            if not out.restarted and (int(sc["induct.head"]) < last["induct"] or int(sc["scan.head"]) < last["scan"]):
                out.restarted = out.rekey = True  # rings back to 0 under the same boot id: read them afresh
            await self._read_rings(self.conveyor, ("induct", "scan"), out)
            out.ok = True
        except PlcError as exc:
            log.debug("conveyor read failed: %s", exc)
        out.done_at = self.clock()
        return out

    async def _read_diverter(self) -> Reading:
        out = Reading()
        if not self.links.usable("diverter"):
            return out
        try:
            out.sent_at = self.clock()
            sc = await self.diverter.read(self._div_scalars)
            out.received_at = self.clock()
            out.scalars = sc
            self._arm_slots_alone = bool(int(sc.get("features", 0)) & DiverterFeature.ARM_BY_SLOT_SEQ)
            if int(sc["boot_id"]) == 0:  # not running yet
                return out
            out.restarted = self.streams.restarted("diverter", int(sc["boot_id"]))
            out.ok = True
        except PlcError as exc:
            log.debug("diverter read failed: %s", exc)
        out.done_at = self.clock()
        return out

    async def _read_diverter_rings(self, out: Reading) -> None:
        """The diverter's rings whose heads moved (a failed read leaves the reading not ok)."""
        if not out.ok:
            return
        try:
            await self._read_rings(self.diverter, ("arm_result", "confirm"), out)
        except PlcError as exc:
            log.debug("diverter ring read failed: %s", exc)
            out.ok = False
        out.done_at = self.clock()

    async def _read_rings(self, link: PlcLink, rings: tuple[str, ...], out: Reading) -> None:
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

    # ================================================================= publish
    async def _publish(self, committed: bool, div_ok: bool) -> None:
        """Arms first and alone; then each PLC gets a write only when it has something to hear.

        A write carries the host heartbeat, every value that changed and the ring acks due. The
        heartbeat needs to move only well within the PLCs' 1 s watchdog, so a PLC with nothing
        new hears from us every ``BEAT_S`` (0.1 s) instead of every 10 ms cycle: that cut the
        OPC UA and Modbus writes from ~200 to ~20-40 a second, on both sides of the wire. Every
        beat re-writes the unit state and induct enable, so a PLC that lost them (a cold
        restart) has them back within 0.1 s; a change goes out in the cycle that made it."""
        now = self.clock()
        state: dict[str, float | int | bool] = {
            "host_unit_state": int(self.unit.state),
            "induct_enable": self.unit.state == S.EXECUTE and not self.faults.no_entry(),
        }
        conv_w: dict[str, float | int | bool] = dict(state)
        conv_w.update(self._out.settings)  # settings the PLC does not hold (after a power cycle: zero)
        div_w: dict[str, float | int | bool] = {}
        belt, reset = self._out.belt_command, self._out.diverter_reset
        conv_news = bool(self._out.settings) or belt is not None or state != self._sent_state
        self._out = Outputs()
        conv_beat = now - self._beat_at["conveyor"] >= BEAT_S
        div_beat = now - self._beat_at["diverter"] >= BEAT_S
        if committed:
            conv_w.update(self._acks_due(("induct", "scan"), conv_beat))
            div_w.update(self._acks_due(("arm_result", "confirm"), div_beat))
        # Belt commands and diverter resets go out even when the store fails (that is when the
        # unit must hold): their seqs need no durable record, since a restarted controller
        # continues after the larger of its stored seq and the PLC's own ack and seq registers.
        if belt is not None:  # command and seq in one request: the PLC applies the command first
            conv_w["belt_command"], conv_w["belt_command_seq"] = int(belt[0]), belt[1]
        if reset is not None and div_ok:
            div_w["reset_seq"] = reset
        # slots written alone: the head only informs (a PLC HMI, a restarted controller), and
        # each write of it is one more request on the diverter's link, so it trails by up to 1 s
        if div_beat and self.arms.last_written != self.arms.head_sent and now - self._head_at >= HEAD_S:
            div_w["arm.head"] = self.arms.last_written
        conv_due = conv_beat or conv_news or any(k.endswith(".ack") for k in conv_w)
        div_due = div_beat or bool(div_w)
        if conv_due or div_due:
            self._host_hb = (self._host_hb + 1) & 0xFFFFFFFF
            conv_w["host_heartbeat"] = div_w["host_heartbeat"] = self._host_hb
        # The arms go out alone and first: sharing the loop with the OPC UA write doubled the
        # time to an accepted arm. A failed arm write skips the diverter's other writes.
        if committed and self.arms.pending and self.diverter.connected and not await self._write_arms():
            div_due = False
        writes = []
        if conv_due:
            writes.append(self._write_conveyor(conv_w, state, now))
        if div_due:
            writes.append(self._write_diverter(div_w, now))
        if writes:
            await asyncio.gather(*writes)

    def _acks_due(self, rings: tuple[str, ...], beat: bool) -> dict[str, int]:
        """The ring acks to send now: all of them on a beat, or one whose ring has fallen
        ``ACK_AT_ONCE`` entries behind (the rings hold 32-64: far from overflowing)."""
        out: dict[str, int] = {}
        for ring in rings:
            seq = self.streams.ack_due.get(ring)
            if seq is None:
                continue
            behind = seq - self._acked.get(ring, 0)
            if beat or behind >= ACK_AT_ONCE or behind < 0:  # < 0: the PLC restarted its ring
                out[f"{ring}.ack"] = seq
        return out

    def _acks_written(self, values: dict[str, float | int | bool]) -> None:
        for key, seq in values.items():
            if key.endswith(".ack"):
                ring = key[:-4]
                self._acked[ring] = int(seq)
                if self.streams.ack_due.get(ring) == seq:  # not moved on meanwhile
                    del self.streams.ack_due[ring]

    async def _write_conveyor(
        self, values: dict[str, float | int | bool], state: dict[str, float | int | bool], now: float
    ) -> None:
        try:
            if not self.conveyor.connected:
                raise PlcError("conveyor link down")
            await self.conveyor.write(values)
        except PlcError as exc:
            if "belt_command" in values:
                self.supervisor.belt_write_failed()  # not sent: sent again (a new seq) next cycle
            self._sent_state, self._beat_at["conveyor"] = {}, float("-inf")  # all again next cycle
            log.debug("conveyor write failed: %s", exc)
            return
        self._sent_state, self._beat_at["conveyor"] = state, now
        self._acks_written(values)

    def _may_arm_before_commit(self) -> bool:
        """Arms for stored decisions may go out ahead of a commit: not while commits fail."""
        return not self._store_failing and self.diverter.connected

    async def _write_arms(self, *, committed: bool = True) -> bool:
        """The next arm commands (before the cycle's commit: those that may go first); False
        when the write failed."""
        chunk = self.arms.to_write(committed=committed)
        if not chunk:
            return True
        head = not self._arm_slots_alone  # one request where the PLC takes a slot by its own seq
        try:
            await self.diverter.write_ring("arm", chunk, with_head=head)
        except PlcError as exc:
            log.debug("diverter arm write failed: %s", exc)
            return False
        self.metrics.decision_s.extend(self.arms.written(chunk, self.clock(), with_head=head))
        return True

    async def _write_diverter(self, values: dict[str, float | int | bool], now: float) -> None:
        if not self.diverter.connected:
            return
        try:
            await self.diverter.write(values)
        except PlcError as exc:
            self._beat_at["diverter"] = float("-inf")
            log.debug("diverter write failed: %s", exc)
            return
        self._beat_at["diverter"] = now
        self._acks_written(values)
        if "arm.head" in values:
            self.arms.head_sent, self._head_at = int(values["arm.head"]), now

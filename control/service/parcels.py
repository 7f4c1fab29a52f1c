"""The parcel side of the cycle: PLC events and decodes in, routing, arming, durable outcomes out.

`ParcelFlow` owns the tracking table and everything known about each parcel in flight. The
controller feeds it the cycle's ring events and the encoder, and it answers with parcel events
in the cycle's batch and arm commands in the `ArmQueue`; it never talks to a PLC itself, so the
rules that keep parcels out of wrong chutes sit in one place.

A parcel is known by its **key**: the conveyor PLC's boot id (high 32 bits) and the tracking id
that PLC gave it (low 32 bits). A PLC that restarts numbers its parcels from 1 again; with the
boot id in the key a new parcel never takes an old parcel's record, in memory or in the store.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from control.faults import Fault
from control.lifecycle import FINAL, ParcelState, ScanStatus, name_of
from control.packml import PackMLUnit
from control.service.alarms import FaultBook
from control.service.arms import ArmQueue
from control.service.boots import derived_boot
from control.service.decodes import DecodeJoin
from control.service.feeds import DecodeFeed, Router, RouteRequest
from control.service.metrics import Metrics
from control.service.settings import ServiceSettings
from control.service.streams import StreamBook
from control.store import Batch, ParcelRow
from control.tracking import Geometry, Slots, TrackingTable, sdiff, wrap
from plant.codes import CONFIRM_UNEXPECTED, ArmAction, ArmResult, ChuteStatus
from plant.site import ChuteKind, Site

__all__ = ["ParcelFlow", "parcel_key"]

log = logging.getLogger(__name__)

P = ParcelState
FINAL_KEEP = 50_000  # recently finalised keys remembered (a "final" parcel seen again is an alarm)
ARM_REFUSED = (ArmResult.TOO_LATE, ArmResult.CHUTE_UNAVAILABLE, ArmResult.UNKNOWN_CHUTE, ArmResult.QUEUE_FULL)
TID = 0xFFFFFFFF


def parcel_key(boot_id: int, tracking_id: int) -> int:
    return (boot_id << 32) | (tracking_id & TID)


class ParcelFlow:
    """Parcels in flight: the tracking table plus identities, reasons and outcomes."""

    def __init__(
        self,
        site: Site,
        geometry: Geometry,
        cfg: ServiceSettings,
        router: Router,
        decoder: DecodeFeed | None,
        *,
        unit: PackMLUnit,
        faults: FaultBook,
        arms: ArmQueue,
        streams: StreamBook,
        metrics: Metrics,
        clock: Callable[[], float],
        wall: Callable[[], float],
        boot_id: int = 0,
    ) -> None:
        self.site = site
        self.geometry = geometry
        self.cfg = cfg
        self.router = router
        self.unit = unit
        self.faults = faults
        self.arms = arms
        self.streams = streams
        self.metrics = metrics
        self.clock = clock
        self.wall = wall
        self.boot_id = boot_id  # the conveyor PLC's boot id: the high half of every new key
        self.table = TrackingTable(geometry, cfg.capacity)
        n = max(c.id for c in site.chutes) + 1
        self.exception_chute = np.zeros(n, dtype=np.bool_)
        for c in site.chutes:
            self.exception_chute[c.id] = c.kind not in (ChuteKind.NORMAL, ChuteKind.PRIORITY)
        # what routing and arming use: the diverter PLC's chute status, with DISABLED added for
        # every chute an operator took out of service (``plc_chute_status`` is the PLC's alone)
        self.chute_status = np.zeros(n, dtype=np.uint16)
        self.plc_chute_status = np.zeros(n, dtype=np.uint16)
        self.chute_out = np.zeros(n, dtype=np.bool_)
        self.encoder = 0  # this cycle's encoder count and belt speed (set by the controller)
        self.speed_mps = 0.0
        # per-parcel side data that is not numeric, by parcel key
        self.identity: dict[int, str] = {}
        self.reason_name: dict[int, str] = {}
        self.plan_version: dict[int, int] = {}  # the sort plan version of the parcel's latest decision
        self.inducted_t: dict[int, float] = {}
        self.finalised: dict[int, tuple[str, int, int]] = {}  # recent final keys -> (outcome, lead, trail)
        self._final_order: deque[int] = deque()
        self.suspect: set[int] = set()  # armed when the encoder glitched: their fire may have hit another parcel
        self.again: dict[int, int] = {}  # key of a parcel seen again after its final outcome -> its new key
        self._decided_now: list[float] = []  # scan times of this cycle's routing decisions
        self._routed_unstored: set[int] = set()  # keys whose latest routing decision is not committed yet
        self._full_destinations: tuple[str, ...] = ()
        self.decodes = DecodeJoin(self.table, geometry, cfg, decoder, faults=faults, metrics=metrics,
                                  identity=self.identity, key_of=self.key)

    def set_plc_chute_status(self, status: npt.NDArray[np.uint16]) -> None:
        self.plc_chute_status[: len(status)] = status[: len(self.plc_chute_status)]
        self._effective_status()

    def set_chute_out(self, chute: int, out: bool) -> None:
        """An operator took a chute out of service (or back): routing and arming see it as
        disabled from the next decision on, whatever the PLC says."""
        self.chute_out[chute] = out
        self._effective_status()

    def _effective_status(self) -> None:
        np.bitwise_or(self.plc_chute_status, np.where(self.chute_out, np.uint16(ChuteStatus.DISABLED), np.uint16(0)),
                      out=self.chute_status)

    def key(self, tracking_id: int) -> int:
        """The key of a tracking id the conveyor PLC reports now (a parcel that came back after
        its final outcome is known under a key of its own, see ``on_scan``)."""
        k = parcel_key(self.boot_id, tracking_id)
        while k in self.again:  # seen again more than once: follow to its latest key
            k = self.again[k]
        return k

    # ================================================================= restarts
    def restore(self, row: ParcelRow, batch: Batch) -> None:
        """Rebuild a slot from its durable summary. Positions are not trusted across a restart:
        a parcel that was routed goes round once more rather than being armed from stale data."""
        t = self.table
        key = parcel_key(row.boot_id, row.tracking_id)
        i = t.induct(key, row.lead, row.trail)
        if i is None:
            return
        self.identity[key] = row.identity
        self.inducted_t[key] = row.inducted_t
        t.lap[i] = row.lap
        if row.state == "inducted":
            return
        # scanned / routed / armed / missed / recirculated: expect it at the scanner next lap
        t.state[i] = P.RECIRCULATED
        if row.state not in ("recirculated", "missed"):
            batch.parcel_event(self.wall(), row.tracking_id, "recirculated", row.lap, row.chute,
                               row.reason, row.identity, "controller restarted", boot_id=row.boot_id)
        g = self.geometry
        t.expect_scan[i] = wrap(row.lead + g.scanner_counts + (row.lap + 1) * g.loop_counts)
        # an arm written before the crash may still fire (a restart shorter than the diverter's
        # watchdog): a confirmation for the chute it was routed to is still a good sort
        t.chute[i] = row.chute
        self.reason_name[key] = row.reason
        self.plan_version[key] = row.plan_version
        if row.state == "armed":
            t.state[i] = P.MISSED

    def adopt_boot(self, boot_id: int, batch: Batch) -> None:
        """The first boot id seen by a store written before boot ids existed: the open parcels of
        boot 0 are this PLC's (it has not restarted), so they take its boot id, here and stored."""
        tab = self.table
        for i in tab.active_slots().tolist():
            old = int(tab.key[i])
            if old >> 32 == 0:
                new = parcel_key(boot_id, old)
                tab.slot_of[new] = tab.slot_of.pop(old)
                tab.key[i] = new
                for names in (self.identity, self.reason_name):
                    if old in names:
                        names[new] = names.pop(old)
                if old in self.plan_version:
                    self.plan_version[new] = self.plan_version.pop(old)
                if old in self.inducted_t:
                    self.inducted_t[new] = self.inducted_t.pop(old)
        self.boot_id = boot_id
        batch.adopt_boot = boot_id

    def conveyor_restarted(self, boot_id: int, now: float, batch: Batch) -> int:
        """The conveyor PLC restarted (new boot id): it no longer knows its old tracking ids and
        gives them to new parcels. Every parcel of an older boot gets its final outcome now -
        lost, reason ``plc_restart`` - and its arm is cancelled; the PLC tracks the physical
        parcels again under new ids. Returns how many were closed."""
        tab = self.table
        closed = 0
        for i in tab.active_slots().tolist():
            key = int(tab.key[i])
            if key >> 32 == boot_id or int(tab.state[i]) in FINAL:
                continue
            if int(tab.state[i]) == P.ARMED or (int(tab.state[i]) == P.ROUTED and int(tab.arm_seq[i])):
                self._queue_arm(i, ArmAction.CANCEL, now, batch)
            self.reason_name[key] = "plc_restart"
            if self._move(i, P.LOST, "lost", batch, "conveyor PLC restarted: it no longer tracks this id"):
                closed += 1
        self.boot_id = boot_id
        self.again.clear()
        self.decodes.forget()
        return closed

    def diverter_restarted(self, batch: Batch) -> None:
        """The diverter PLC restarted: every arm it held is gone. Armed parcels will pass their
        diverter unfired, so they go round now; arms written but not answered may be re-sent."""
        tab = self.table
        for i in tab.in_state(P.ARMED).tolist():
            self.suspect.discard(int(tab.key[i]))
            if self._move(i, P.MISSED, "missed", batch, "diverter PLC restarted: its arms are gone"):
                self._move(i, P.RECIRCULATED, "recirculated", batch, "missed divert")
        routed = (tab.state == P.ROUTED) & (tab.arm_seq != 0)
        tab.arm_seq[routed] = 0

    # ================================================================= outcomes
    def _row(self, i: int, t: float) -> ParcelRow:
        tab = self.table
        key = int(tab.key[i])
        st = int(tab.state[i])
        return ParcelRow(
            tracking_id=key & TID, state=name_of(st), final=st in FINAL, lap=int(tab.lap[i]),
            chute=int(tab.chute[i]), reason=self.reason_name.get(key, ""), identity=self.identity.get(key, ""),
            scan_status=ScanStatus(int(tab.scan_status[i])).name.lower(), lead=int(tab.lead[i]),
            trail=int(tab.trail[i]), inducted_t=self.inducted_t.get(key, 0.0), updated_t=t, boot_id=key >> 32,
            plan_version=self.plan_version.get(key, 0),
        )

    def _event(self, i: int, kind: str, batch: Batch, detail: str = "") -> None:
        """A lifecycle step of slot ``i``: the event and the parcel's new summary row."""
        t = self.wall()
        tab = self.table
        key = int(tab.key[i])
        if kind in ("recirculated", "missed", "lost") and int(tab.chute[i]):
            self.router.missed(key, int(tab.chute[i]))
        batch.parcel_event(t, key & TID, kind, int(tab.lap[i]), int(tab.chute[i]), self.reason_name.get(key, ""),
                           self.identity.get(key, ""), detail, boot_id=key >> 32,
                           plan_version=self.plan_version.get(key, 0))
        batch.parcel(self._row(i, t))
        if int(tab.state[i]) in FINAL:
            self._finalise(i, kind)

    def _move(self, i: int, state: ParcelState, kind: str, batch: Batch, detail: str = "") -> bool:
        """Move slot ``i`` to ``state`` if the lifecycle allows it, and record the step."""
        if self.table.transition(np.array([i]), state).size == 0:
            return False
        self._event(i, kind, batch, detail)
        return True

    def _finalise(self, i: int, kind: str) -> None:
        key = int(self.table.key[i])
        self.finalised[key] = (kind, int(self.table.lead[i]), int(self.table.trail[i]))
        self._final_order.append(key)
        while len(self._final_order) > FINAL_KEEP:
            self.finalised.pop(self._final_order.popleft(), None)
        m = self.metrics
        m.outcomes[kind] = m.outcomes.get(kind, 0) + 1
        reason = self.reason_name.get(key, "")
        if kind == "sorted":
            self.unit.count_processed()
        else:
            self.unit.count_defective(reason or kind)
            m.reasons[reason or kind] = m.reasons.get(reason or kind, 0) + 1
        self.identity.pop(key, None)
        self.reason_name.pop(key, None)
        self.plan_version.pop(key, None)
        self.inducted_t.pop(key, None)

    def committed(self, done: float) -> None:
        """The cycle's batch is durable: decisions count as made, final parcels leave the table."""
        for t_scan in self._decided_now:
            self.metrics.scan_to_decision_s.add(done - t_scan)
        self._decided_now.clear()
        self._routed_unstored.clear()
        self.arms.stored()
        self.table.release(self.table.final_slots())

    def uncommitted(self) -> None:
        """The cycle's batch failed and will be retried: its decisions are not made yet."""
        self._decided_now.clear()

    # ================================================================= ring events
    def on_induct(self, e: dict[str, int], batch: Batch) -> None:
        key = self.key(int(e["tracking_id"]))
        i = self.table.induct(key, int(e["leading_count"]), int(e["trailing_count"]))
        if i is None:
            return
        self.inducted_t[key] = self.wall()
        self.metrics.inducted_seen += 1
        self._event(i, "inducted", batch)

    def on_scan(self, e: dict[str, int], batch: Batch) -> None:
        tid, trigger, lap = int(e["tracking_id"]), int(e["trigger_count"]), int(e["lap"])
        key = self.key(tid)
        tab = self.table
        now = self.clock()
        if key in self.finalised and tab.get(key) is None:
            # A parcel we believed done is on the belt again (its confirmation came from another
            # parcel). Its stored outcome stays as it was - an outcome is never overwritten - and
            # the alarm says it was wrong; the parcel is tracked again under a key of its own, from
            # its induct edges, and the scan re-anchors it.
            kind, lead, trail = self.finalised.pop(key)
            new = parcel_key(derived_boot(key >> 32, len(self.again) + 1), tid)
            self.again[key] = new
            self.faults.event(Fault.UNEXPECTED_PARCEL, f"tracking id {tid} ({kind}) seen at the scanner again: "
                              f"that outcome was wrong; tracked again as boot {new >> 32}", batch)
            key = new
            k = tab.induct(key, lead, trail)
            if k is not None:
                tab.state[k] = P.RECIRCULATED
                tab.lap[k] = max(0, lap - 1)
                tab.epoch[k] = tab.glitch_epoch - 1  # never trusted on the lap it reappears
        i = tab.get(key)
        if i is not None and lap > int(tab.lap[i]):
            if int(tab.state[i]) == P.ARMED:
                self._move(i, P.MISSED, "missed", batch, "came round at the scanner")
            if int(tab.state[i]) in (P.SCANNED, P.ROUTED, P.MISSED):
                self._move(i, P.RECIRCULATED, "recirculated", batch)
        j = tab.scan(key, trigger, lap, now, now + self.cfg.decode_deadline_s)
        if j is None:
            return
        self.suspect.discard(key)  # it came round: its old fire did not take it
        # when did the trigger happen, on our clock? From the encoder distance since then.
        v = max(self.speed_mps, 1e-3) * 1000.0 * self.geometry.counts_per_mm
        tab.scan_time[j] = now - max(0, sdiff(self.encoder, trigger)) / v
        if key not in self.inducted_t:
            self.inducted_t[key] = self.wall()
            if key not in self.finalised and int(tab.lap[j]) == lap and tab.length[j] == 0:
                self.metrics.inducted_seen += 1  # first seen here: its induct event was lost
        self._event(j, "scanned", batch, f"lap {lap}")
        if lap > self.geometry.recirculation_limit:
            # no decode needed: the router's recirculation limit decides (reject chute)
            length = float(tab.length[j]) / self.geometry.counts_per_mm
            self._route([j], [RouteRequest(key, "", ScanStatus.PENDING, length, lap)], batch)

    def on_arm_result(self, e: dict[str, int], batch: Batch) -> None:
        cseq, res = int(e["command_seq"]), int(e["result"])
        key, due = self.arms.result(cseq)
        if key is None:  # a result nobody asked for (an arm dropped on the PLC's encoder fault)
            key = self.key(int(e["tracking_id"]))
        tab = self.table
        i = tab.get(key)
        if i is None:
            return
        st = int(tab.state[i])
        ours = int(tab.arm_seq[i]) == cseq
        if res == ArmResult.ARMED and ours and st == P.ROUTED:
            self._move(i, P.ARMED, "armed", batch, f"fire {int(tab.fire[i])}")
            if due is not None:
                self.metrics.arm_confirmed_s.add(self.clock() - due)
        elif res == ArmResult.CANCELLED and st == P.ARMED:
            self.suspect.discard(key)  # cancelled before it fired: nothing to check
            self._move(i, P.RECIRCULATED, "recirculated", batch, "arm cancelled (position uncertain)")
        elif res == ArmResult.NOTHING_TO_CANCEL and st == P.ARMED and key in self.suspect:
            # the PLC holds no arm for it: dropped on its own encoder fault, or already fired.
            # It stays suspect: a confirmation that still comes is checked and alarmed.
            self._move(i, P.RECIRCULATED, "recirculated", batch, "arm gone at cancel (position uncertain)")
        elif res in ARM_REFUSED and st == P.ROUTED and ours:
            self._move(i, P.RECIRCULATED, "recirculated", batch, f"arm refused: {ArmResult(res).name.lower()}")

    def on_confirm(self, e: dict[str, int], batch: Batch) -> None:
        tid, chute, flags = int(e["tracking_id"]), int(e["chute"]), int(e["flags"])
        key = self.key(tid)
        tab = self.table
        i = tab.get(key) if tid else None
        if tid == 0 or flags & CONFIRM_UNEXPECTED or i is None:
            why = "no armed fire" if tid == 0 or flags & CONFIRM_UNEXPECTED else f"tracking id {tid} not in flight"
            self.faults.event(Fault.UNEXPECTED_PARCEL, f"chute {chute}: {why}", batch)
            return
        assigned = int(tab.chute[i])
        if key in self.suspect:
            # its fire was live when the encoder jumped: the diverter may have taken another parcel
            self.suspect.discard(key)
            self.faults.event(Fault.SUSPECT_DIVERT, f"chute {chute}: tracking id {tid} fired across an encoder "
                              "glitch; check the chute", batch)
        if chute == assigned:
            final = P.REJECTED if self.exception_chute[chute] else P.SORTED
            if tab.transition(np.array([i]), final).size:
                self.router.confirmed(key, assigned, chute)
                self._event(i, name_of(final), batch)
        elif tab.transition(np.array([i]), P.MISSORTED).size:
            self.router.confirmed(key, assigned, chute)
            tab.chute[i] = chute
            self._event(i, "missorted", batch, f"confirmed in chute {chute}")
            self.faults.event(Fault.UNEXPECTED_PARCEL, f"tracking id {tid} in chute {chute}", batch)

    # ================================================================= vision and routing
    def take_decodes(self, now: float, batch: Batch) -> None:
        """Route the parcels whose decode joined their scan, or whose decode is too late."""
        ready, reqs = self.decodes.take(now, batch, self.encoder)
        if ready:
            self._route(ready, reqs, batch)

    def _route(self, slots: list[int], reqs: list[RouteRequest], batch: Batch) -> None:
        decided = self.router.route(reqs, self.chute_status)
        version = self.router.plan_version
        tab = self.table
        for i, req, (chute, code, reason) in zip(slots, reqs, decided, strict=True):
            self.reason_name[req.key] = reason
            self.plan_version[req.key] = version
            if tab.route(i, chute, code):
                self._routed_unstored.add(req.key)
                self._event(i, "routed", batch)
                self._decided_now.append(float(tab.scan_time[i]))

    def check_destinations(self, batch: Batch) -> None:
        """Alarm while any destination has none of its own chutes usable (its parcels take
        fallbacks or exception chutes); a new list replaces the old alarm."""
        full = tuple(self.router.full_destinations(self.chute_status))
        if full == self._full_destinations:
            return
        self._full_destinations = full
        self.faults.clear(Fault.DESTINATION_FULL, batch)
        if full:
            more = f" and {len(full) - 6} more" if len(full) > 6 else ""
            self.faults.raise_(Fault.DESTINATION_FULL, "no usable chute for " + ", ".join(full[:6]) + more, batch)

    # ================================================================= per-cycle vector pass
    def cycle_pass(self, now: float, batch: Batch, *, may_arm: bool, fresh_only: bool = False) -> None:
        """The encoder moved: parcels too late to arm go round, overdue confirmations are missed
        diverts, parcels never seen at the scanner are lost, and (``may_arm``) arms fall due
        (``fresh_only``: only those of decisions not stored yet)."""
        tab = self.table
        masks = tab.cycle(self.encoder)
        for i in masks.too_late.tolist():
            why = "position uncertain" if not tab.trusted[i] else "too late to arm"
            self._move(i, P.RECIRCULATED, "recirculated", batch, why)
        for i in masks.overdue.tolist():
            if self._move(i, P.MISSED, "missed", batch, "no confirmation") and self.geometry.loop:
                self._move(i, P.RECIRCULATED, "recirculated", batch, "missed divert")
        for i in masks.lost.tolist():
            self._move(i, P.LOST, "lost", batch, "not seen at the scanner")
        if may_arm:
            due = masks.arm_due
            if fresh_only:
                due = due[[int(tab.key[i]) in self._routed_unstored for i in due.tolist()]]
            self._arm(due, now, batch)

    def arm_pass(self, encoder: int, now: float, batch: Batch) -> int:
        """Arm what is due at ``encoder`` (the diverter PLC's count, read before the conveyor
        answered: see `Decider.arm_early`); returns how many arms were queued."""
        return self._arm(self.table.arm_due(encoder), now, batch)

    def _arm(self, due_slots: Slots, now: float, batch: Batch) -> int:
        tab = self.table
        room = self.arms.room()
        due = due_slots.tolist()
        if self._routed_unstored:  # arms for stored decisions first: they may go out before the commit
            due.sort(key=lambda i: int(tab.key[i]) in self._routed_unstored)
        queued = 0
        for i in due:
            if queued >= room:
                break
            if self.chute_status[int(tab.chute[i])] & 0b110:  # disabled or faulted: don't arm
                continue
            self._queue_arm(i, ArmAction.ARM, now, batch)
            queued += 1
        return queued

    def encoder_glitch(self, now: float, batch: Batch) -> None:
        """Every position anchored before now is suspect: cancel every live arm (the parcels
        are re-anchored at the scanner on their next pass)."""
        for i in self.table.encoder_glitch().tolist():
            self.suspect.add(int(self.table.key[i]))
            self._queue_arm(i, ArmAction.CANCEL, now, batch)

    def _queue_arm(self, i: int, action: ArmAction, now: float, batch: Batch) -> None:
        tab = self.table
        key = int(tab.key[i])
        # an arm for a decision not stored yet goes out after the commit (arms.py says why)
        hold = action == ArmAction.ARM and key in self._routed_unstored
        entry = self.arms.queue(key, int(tab.fire[i]), int(tab.chute[i]), action, now, hold=hold)
        batch.ring("diverter", self.streams.stream("arm"), entry["seq"], self.wall(), entry)
        if action == ArmAction.ARM:
            tab.arm_seq[i] = entry["seq"]

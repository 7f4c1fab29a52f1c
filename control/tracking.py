"""The table of parcels in flight: numpy arrays, encoder arithmetic mod 2**32, per-cycle masks.

Positions are never stored in millimetres: every parcel keeps the encoder counts latched by the
PLC (induct edges, scan trigger) and all arithmetic is on uint32 counts, wrapping like the PLC's
counter. A signed distance is the wrapped difference reinterpreted as int32, which is right as
long as two counts being compared are less than 2**31 counts apart (at 1 count/mm: 2,147 km).

The diverter PLC fires by itself when its encoder reaches ``fire_count``; the controller only
has to arm in time. ``fire_count`` is the count at which the parcel's centre is on the diverter
centreline::

    fire = (leading + trailing) / 2 + diverter_mm * counts_per_mm + lap * loop_counts   (mod 2**32)

and it is cross-checked against the scan trigger of the same lap: a parcel whose two anchors
disagree, or whose anchors straddle an encoder glitch, has an uncertain position and is never
armed (it goes round again, or to reject) - an uncertain parcel must not reach a wrong chute.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from control.lifecycle import FINAL, ParcelState, check, log_refused
from plant.site import Site

__all__ = ["CycleMasks", "Geometry", "Mask", "Slots", "TrackingTable", "sdiff", "sdiff_arr", "wrap"]

_FINAL_STATE = np.zeros(len(ParcelState), dtype=np.bool_)  # state code -> final
_FINAL_STATE[sorted(FINAL)] = True

log = logging.getLogger(__name__)

MOD = 1 << 32
MASK = MOD - 1
P = ParcelState
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]
Slots = npt.NDArray[np.intp]
Mask = npt.NDArray[np.bool_]


def wrap(x: int) -> int:
    """An integer as the PLC's 32-bit counter would hold it."""
    return x & MASK


def sdiff(a: int, b: int) -> int:
    """Signed distance a - b on the 32-bit counter, in [-2**31, 2**31)."""
    d = (a - b) & MASK
    return d - MOD if d >= 1 << 31 else d


def sdiff_arr(a: npt.ArrayLike, b: npt.ArrayLike) -> I64:
    """Vector `sdiff`: uint32 subtraction wraps by itself; the int32 view gives the sign."""
    ua = np.atleast_1d(np.asarray(a, dtype=np.uint64) & MASK).astype(np.uint32)
    ub = np.atleast_1d(np.asarray(b, dtype=np.uint64) & MASK).astype(np.uint32)
    return np.subtract(ua, ub, dtype=np.uint32).view(np.int32).astype(np.int64)


# Tracking margins: the one set of defaults (the service settings take theirs from here).
ARM_HORIZON_MM = 2500.0  # arm when the fire point is this close
LATENCY_BUDGET_S = 0.06  # host write + PLC scan allowance before a fire is too late
CONFIRM_MARGIN_MM = 1200.0  # a confirmation is overdue this far past the fire point
LOST_MARGIN_MM = 1500.0  # a parcel expected at the scanner this far ago and not seen is lost
ANCHOR_TOLERANCE_MM = 20.0  # induct and scan anchors may disagree by this much


@dataclass(frozen=True, slots=True)
class Geometry:
    """The site's distances as encoder counts, per chute id (index = chute id)."""

    counts_per_mm: float
    loop_counts: int
    scanner_counts: int
    diverter_counts: I64  # -1 where no chute has that id
    min_lead_counts: I64  # arming later than this before the fire count is too late
    arm_horizon_counts: int  # arm when the fire count is at most this far ahead
    confirm_margin_counts: int  # confirmation overdue this far past the fire count
    lost_margin_counts: int  # a parcel expected at the scanner this far ago is lost
    anchor_tolerance_counts: int  # induct and scan anchors may disagree by this much
    recirculation_limit: int
    loop: bool

    @classmethod
    def from_site(
        cls,
        site: Site,
        *,
        arm_horizon_mm: float = ARM_HORIZON_MM,
        latency_budget_s: float = LATENCY_BUDGET_S,
        confirm_margin_mm: float = CONFIRM_MARGIN_MM,
        lost_margin_mm: float = LOST_MARGIN_MM,
        anchor_tolerance_mm: float = ANCHOR_TOLERANCE_MM,
    ) -> Geometry:
        s = site.sorter
        cpm = s.counts_per_mm
        n = max(c.id for c in site.chutes) + 1
        div = np.full(n, -1, dtype=np.int64)
        lead = np.zeros(n, dtype=np.int64)
        for c in site.chutes:
            div[c.id] = round(c.diverter.position_mm * cpm)
            # stroke time + our write path + half the window: later than this cannot be on time
            lead_mm = s.speed_mps * (c.diverter.actuation_ms / 1000 + latency_budget_s) * 1000
            lead[c.id] = round((lead_mm + c.diverter.window_mm / 2) * cpm)
        return cls(
            counts_per_mm=cpm,
            loop_counts=round(s.length_mm * cpm),
            scanner_counts=round(s.scanner_position_mm * cpm),
            diverter_counts=div,
            min_lead_counts=lead,
            arm_horizon_counts=round(arm_horizon_mm * cpm),
            confirm_margin_counts=round(confirm_margin_mm * cpm),
            lost_margin_counts=round(lost_margin_mm * cpm),
            anchor_tolerance_counts=round(anchor_tolerance_mm * cpm),
            recirculation_limit=s.recirculation_limit,
            loop=s.layout == "loop",
        )


@dataclass(frozen=True, slots=True)
class CycleMasks:
    """Slots that need action this cycle (all index arrays into the table)."""

    arm_due: Slots  # routed, trusted, fire count within the horizon and still in time
    too_late: Slots  # routed but the arm window has passed (or position uncertain): goes round
    overdue: Slots  # armed, centre well past the diverter, no confirmation: missed
    lost: Slots  # expected at the scanner long ago and never seen


class TrackingTable:
    """Parcels in flight, one slot each; preallocated, no per-cycle allocation beyond masks."""

    def __init__(self, geometry: Geometry, capacity: int = 4096) -> None:
        self.g = geometry
        self.capacity = capacity
        z = capacity
        self.key = np.zeros(z, np.uint64)  # parcel key: PLC boot id << 32 | tracking id
        self.tid = np.zeros(z, np.uint32)  # the PLC's tracking id (what arms and confirms carry)
        self.lead = np.zeros(z, np.uint32)
        self.trail = np.zeros(z, np.uint32)
        self.centre = np.zeros(z, np.uint32)  # count at which the centre crossed the induct eye
        self.length = np.zeros(z, np.int64)  # counts; 0 = unknown (seen first at the scanner)
        self.lap = np.zeros(z, np.int16)
        self.chute = np.zeros(z, np.int16)  # 0 = none
        self.reason = np.zeros(z, np.int16)
        self.fire = np.zeros(z, np.uint32)
        self.state = np.zeros(z, np.uint8)
        self.scan_status = np.zeros(z, np.uint8)
        self.trusted = np.zeros(z, np.bool_)
        self.arm_seq = np.zeros(z, np.uint32)  # arm command in flight (0 = none)
        self.expect_scan = np.zeros(z, np.uint32)  # count at which the next scan trigger is due
        self.epoch = np.zeros(z, np.int32)  # encoder glitch epoch of the position anchor
        self.deadline = np.zeros(z, np.float64)  # monotonic s: decode must be back by then
        self.scan_time = np.zeros(z, np.float64)
        self.due_time = np.zeros(z, np.float64)  # when arming became due (latency figure)
        self.slot_of: dict[int, int] = {}
        self._free: list[int] = list(range(z))  # a min-heap: slots fill from 0 up
        self._hi = 0  # slots at and above this are all free: per-cycle work looks below it only
        self.glitch_epoch = 0

    # -- membership -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.slot_of)

    def active_slots(self) -> Slots:
        return np.flatnonzero(self.state[: self._hi] != P.FREE)

    def in_state(self, state: ParcelState) -> Slots:
        return np.flatnonzero(self.state[: self._hi] == state)

    def get(self, key: int) -> int | None:
        return self.slot_of.get(key)

    def _alloc(self, key: int) -> int:
        if not self._free:
            raise OverflowError(f"tracking table full ({self.capacity} parcels in flight)")
        i = heapq.heappop(self._free)
        self._hi = max(self._hi, i + 1)
        self.slot_of[key] = i
        self.key[i] = key
        self.tid[i] = key & MASK
        self.lead[i] = self.trail[i] = self.centre[i] = self.fire[i] = 0
        self.length[i] = 0
        self.lap[i] = self.chute[i] = self.reason[i] = 0
        self.scan_status[i] = 0
        self.trusted[i] = False
        self.arm_seq[i] = 0
        self.expect_scan[i] = 0
        self.epoch[i] = self.glitch_epoch
        self.deadline[i] = self.scan_time[i] = self.due_time[i] = 0.0
        return i

    def release(self, slots: Slots) -> None:
        """Free final parcels' slots (after their outcome is durable)."""
        for i in np.asarray(slots, dtype=np.intp).tolist():
            if self.state[i] == P.FREE:
                continue
            self.slot_of.pop(int(self.key[i]), None)
            self.state[i] = P.FREE
            heapq.heappush(self._free, i)
        while self._hi and self.state[self._hi - 1] == P.FREE:
            self._hi -= 1

    # -- lifecycle ------------------------------------------------------------------------
    def transition(self, slots: Slots, new: ParcelState) -> Slots:
        """Move slots to ``new`` where the lifecycle allows it; refused moves are logged."""
        slots = np.asarray(slots, dtype=np.intp)
        if slots.size == 0:
            return slots
        ok = check(self.state[slots], int(new))
        if not ok.all():
            bad = slots[~ok]
            log_refused(self.tid[bad], self.state[bad], int(new))
        good = slots[ok]
        self.state[good] = int(new)
        return good

    # -- events from the PLC ----------------------------------------------------------------
    def induct(self, key: int, leading: int, trailing: int) -> int | None:
        """A parcel entered the belt; None if its key is already known (a replay)."""
        if key in self.slot_of:
            return None
        i = self._alloc(key)
        self._set_edges(i, leading, trailing)
        self.expect_scan[i] = wrap(leading + self.g.scanner_counts)
        self.state[i] = P.INDUCTED
        return i

    def _set_edges(self, i: int, leading: int, trailing: int) -> None:
        length = sdiff(trailing, leading)
        self.lead[i], self.trail[i] = wrap(leading), wrap(trailing)
        self.length[i] = max(length, 0)
        self.centre[i] = wrap(leading + max(length, 0) // 2)

    def scan(self, key: int, trigger: int, lap: int, now: float, deadline: float) -> int | None:
        """The leading edge crossed the scanner on lap ``lap``; anchor and check the position.

        Returns the slot, or None when this scan is stale (a replayed or older lap).
        """
        i = self.slot_of.get(key)
        if i is None:
            # seen first here (inducted while we were down and not recovered): position from
            # the trigger alone, length unknown -> never trusted to arm on this lap
            i = self._alloc(key)
            self.lap[i] = lap
            self.lead[i] = wrap(trigger - self.g.scanner_counts - lap * self.g.loop_counts)
            self.centre[i] = self.lead[i]
            self.state[i] = P.FREE
        elif lap < int(self.lap[i]) or (lap == int(self.lap[i]) and self.state[i] not in (P.INDUCTED, P.RECIRCULATED, P.MISSED)):
            return None
        if self.transition(np.array([i]), P.SCANNED).size == 0:
            return None
        g = self.g
        expected_lead = wrap(trigger - g.scanner_counts - lap * g.loop_counts)
        anchor_ok = self.length[i] > 0 and abs(sdiff(expected_lead, int(self.lead[i]))) <= g.anchor_tolerance_counts
        if self.length[i] > 0 and (self.epoch[i] != self.glitch_epoch or not anchor_ok):
            # Two anchors that disagree, or one taken before an encoder glitch: move the anchor
            # to this scan and do not trust it on this lap; the next lap's scan must agree with
            # it. Keeping the old anchor instead would leave a parcel whose edges were latched
            # just before a jump (and read after it) disagreeing on every lap: never trusted,
            # never armed, not even to the reject chute.
            self._set_edges(i, expected_lead, wrap(expected_lead + int(self.length[i])))
            self.epoch[i] = self.glitch_epoch
            anchor_ok = False
        self.lap[i] = lap
        self.trusted[i] = bool(anchor_ok)
        self.fire[i] = 0
        self.chute[i] = self.reason[i] = 0
        self.arm_seq[i] = 0
        self.scan_time[i] = now
        self.deadline[i] = deadline
        self.due_time[i] = 0.0
        self.expect_scan[i] = wrap(trigger + g.loop_counts)
        return i

    def route(self, i: int, chute: int, reason: int) -> bool:
        """Assign a chute (decision made); computes the fire count."""
        if self.transition(np.array([i]), P.ROUTED).size == 0:
            return False
        self.chute[i], self.reason[i] = chute, reason
        g = self.g
        d = int(g.diverter_counts[chute]) if 0 < chute < len(g.diverter_counts) else -1
        if d < 0:
            self.trusted[i] = False
            return True
        self.fire[i] = wrap(int(self.centre[i]) + d + int(self.lap[i]) * g.loop_counts)
        return True

    def fire_count(self, i: int) -> int:
        return int(self.fire[i])

    # -- the per-cycle vector pass ----------------------------------------------------------
    def _due(self, enc: np.uint32, n: int) -> tuple[Mask, Mask, Mask, npt.NDArray[np.int32]]:
        """(routed and not armed, in time, due, counts to fire) over the first ``n`` slots."""
        g = self.g
        routed = (self.state[:n] == P.ROUTED) & (self.arm_seq[:n] == 0)
        to_fire = (self.fire[:n] - enc).view(np.int32)  # sdiff: wrapped uint32 difference, signed
        lead = g.min_lead_counts[np.clip(self.chute[:n], 0, len(g.min_lead_counts) - 1)]
        in_time = to_fire >= lead
        due = routed & self.trusted[:n] & in_time & (to_fire <= g.arm_horizon_counts)
        return routed, in_time, due, to_fire

    def arm_due(self, encoder: int) -> Slots:
        """The slots due to be armed at ``encoder`` (the rule of ``cycle``, nothing else)."""
        n = self._hi
        return np.flatnonzero(self._due(np.uint32(encoder & MASK), n)[2])

    def cycle(self, encoder: int) -> CycleMasks:
        g = self.g
        n = self._hi  # every slot at or above is free
        st = self.state[:n]
        enc = np.uint32(encoder & MASK)
        routed, in_time, due, to_fire = self._due(enc, n)
        # an untrusted parcel is never armed: it is let go once it is past its arm window
        late = routed & ~in_time
        overdue = (st == P.ARMED) & (-to_fire.astype(np.int64) > g.confirm_margin_counts)
        waiting = (st == P.INDUCTED) | (st == P.RECIRCULATED) | (st == P.MISSED)
        # an expected scan count from before an encoder jump is off by the jump: allow a lap
        stale = self.epoch[:n] != self.glitch_epoch
        margin = g.lost_margin_counts + stale * np.int64(g.loop_counts)
        since = (enc - self.expect_scan[:n]).view(np.int32)
        lost = waiting & (since > margin)
        return CycleMasks(np.flatnonzero(due), np.flatnonzero(late), np.flatnonzero(overdue), np.flatnonzero(lost))

    def encoder_glitch(self) -> Slots:
        """The encoder jumped: every anchor taken before now is suspect.

        Returns the slots whose arms must be cancelled: armed ones, and routed ones whose arm
        command is already on its way (the PLC may accept it after the jump, with a count from
        the old frame). Routed-but-unarmed parcels lose their trust here and go round.
        """
        self.glitch_epoch += 1
        st = self.state
        self.trusted[(st == P.ROUTED) | (st == P.SCANNED)] = False
        return np.flatnonzero((st == P.ARMED) | ((st == P.ROUTED) & (self.arm_seq != 0)))

    def final_slots(self) -> Slots:
        return np.flatnonzero(_FINAL_STATE[self.state[: self._hi]])

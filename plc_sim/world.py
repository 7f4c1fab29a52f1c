"""The conveyor world: belt, encoder, photo-eyes, diverters and chutes as numpy arrays.

Pure and deterministic: no I/O, no clock of its own; ``step(dt)`` moves time on. Every
position is a function of belt travel (parcels ride the belt without slipping), so photo-eye
edges and diverter strokes are solved exactly between ticks and the tick size never changes
where a parcel lands. The encoder is the belt travel in counts plus an offset (the offset
moves on an encoder glitch), kept unwrapped inside and shown to PLCs modulo 2**32.

The diverter PLC's fire compare is modelled here too, with the plausibility check a safe
sorter PLC runs on its counter: a step between two scans that the belt travel cannot explain
(beyond ``encoder_tolerance_mm`` plus ``encoder_tolerance_rel`` of the expected counts) is an
encoder fault, not belt motion. Then every pending arm is dropped and reported instead of
firing, so no arm whose count the jump skipped over fires on whatever is at the diverter.

The conveyor PLC's tracking memory is modelled here as well (``plc_sim.tracking``): it gives
tracking ids at the induct eye, from 1 in each boot. A power cut (``switch_power``) makes every
parcel on the belt untracked; an untracked parcel gets a new id when its leading edge next
reaches the induct eye, and the ground truth keeps every (boot id, tracking id) key it had.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

import numpy as np
import numpy.typing as npt

from plant.codes import CONFIRM_UNEXPECTED, ArmResult, ChuteStatus
from plant.site import Site
from plc_sim.encoder import HALF, MASK
from plc_sim.parcels import ParcelBatch, ParcelSource
from plc_sim.tracking import TrackingIds
from plc_sim.truth import GroundTruth

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_CHUNK = 1024

Plc = Literal["conveyor", "diverter"]


class ParcelState(IntEnum):
    ON_BELT = 0
    IN_CHUTE = 1
    LOST = 2  # taken off the belt by hand (jam clearing)


class Eye(IntEnum):
    """Photo-eye ids as the conveyor PLC reports them in jam_eye (chute eyes are 100 + id)."""

    NONE = 0
    INDUCT = 1
    SCANNER = 2


@dataclass(slots=True)
class PlcPower:
    """Mains of each PLC: False while it is switched off (the ``plc_power_cycle`` fault).

    The world applies what power means physically (belt motor off, arm compares and tracking
    memory gone); the PLC programs and their servers follow it at their next scan. ``cuts``
    counts the times each was switched off, so that a cut shorter than a scan still reboots.
    """

    conveyor: bool = True
    diverter: bool = True
    conveyor_cuts: int = 0
    diverter_cuts: int = 0

    def on(self, plc: Plc) -> bool:
        return self.conveyor if plc == "conveyor" else self.diverter

    def cuts(self, plc: Plc) -> int:
        return self.conveyor_cuts if plc == "conveyor" else self.diverter_cuts


@dataclass(slots=True)
class StepEvents:
    """What the PLCs saw during one step, in belt order."""

    inducts: list[tuple[int, int, int]] = field(default_factory=list)  # tracking id, lead, trail
    scans: list[tuple[int, int, int]] = field(default_factory=list)  # tracking id, count, lap
    confirms: list[tuple[int, int, int, int]] = field(default_factory=list)  # tid, count, chute, flags
    fires: int = 0
    gap_violations: int = 0
    encoder_jump: int = 0  # counts the belt travel did not explain (0: the encoder is plausible)
    dropped: list[tuple[int, int, int]] = field(default_factory=list)  # tid, chute, arm seq: not fired


@dataclass(slots=True)
class WorldStats:
    inducted: int = 0  # induct events reported (re-acquisitions included)
    arrived: int = 0
    gap_violations: int = 0
    fires: int = 0
    fires_empty: int = 0  # fired with no parcel in the window
    fires_stuck: int = 0  # fired but the diverter did not move
    overflow: int = 0  # parcels pushed into a chute already full
    lost: int = 0
    end_of_line: int = 0
    confirms: int = 0
    confirms_unreported: int = 0  # landed in a chute while (or after) the diverter PLC was off
    reacquired: int = 0  # induct events for parcels the conveyor PLC had lost track of
    encoder_faults: int = 0  # implausible encoder steps seen by the PLCs
    arms_dropped_encoder: int = 0  # pending arms dropped (not fired) on an encoder fault
    arm_results: dict[str, int] = field(default_factory=dict)


class World:
    """One sorter: a loop (or linear) belt with its induct, scanner, diverters and chutes."""

    def __init__(
        self,
        site: Site,
        source: ParcelSource,
        *,
        encoder_start: int = 0,
        arm_queue_size: int = 32,
        encoder_tolerance_mm: float = 20.0,
        encoder_tolerance_rel: float = 0.1,
    ) -> None:
        s = site.sorter
        self.site = site
        self.source = source
        self.loop = s.layout == "loop"
        self.belt_mm = s.length_mm
        self.scanner_mm = s.scanner_position_mm
        self.cpm = s.counts_per_mm
        self.min_gap = s.min_gap_mm
        self.speed_setpoint_mps = s.speed_mps
        self.running = False
        self.induct_enabled = True
        self.arm_queue_size = arm_queue_size
        self.encoder_tolerance_mm = encoder_tolerance_mm
        self.encoder_tolerance_rel = encoder_tolerance_rel

        ch = site.chutes
        self.chute_ids = np.asarray([c.id for c in ch], dtype=np.int64)
        self._chute_k = {c.id: k for k, c in enumerate(ch)}
        self.div_pos = np.asarray([c.diverter.position_mm for c in ch], dtype=np.float64)
        self.div_win = np.asarray([c.diverter.window_mm for c in ch], dtype=np.float64)
        self.div_act_s = np.asarray([c.diverter.actuation_ms / 1000.0 for c in ch], dtype=np.float64)
        self.capacity = np.asarray([c.capacity for c in ch], dtype=np.int64)
        self.drain_per_s = np.asarray([c.drain_per_min / 60.0 for c in ch], dtype=np.float64)
        self.reject_k = self._chute_k[site.reject_chute.id]
        nc = len(ch)
        self.fill = np.zeros(nc, dtype=np.int64)
        self.landed = np.zeros(nc, dtype=np.int64)
        self._drain_credit = np.zeros(nc, dtype=np.float64)
        self.drain_stopped = np.zeros(nc, dtype=bool)
        self.disabled = np.zeros(nc, dtype=bool)
        self.faulted = np.zeros(nc, dtype=bool)
        self.stuck = np.zeros(nc, dtype=bool)

        self.time_s = 0.0
        self.travel_mm = 0.0
        self._enc0 = int(encoder_start)  # unwrapped count at travel 0
        self._enc_seen = self._enc0  # the count the PLCs read at the end of the last step
        self.jammed_eye = 0  # Eye, or 100 + chute id
        self.stats = WorldStats()
        self.power = PlcPower()
        self.tracking = TrackingIds()  # the conveyor PLC's ids; its program restarts them per boot
        self._diverter_epoch = 0  # +1 at every diverter power cut: fires before it are forgotten

        # Parcels on or off the belt, by induct order (index i is the i-th parcel inducted).
        self._n = 0
        cap = 4096
        self._s = np.zeros(cap)  # travel at which the leading edge crossed the induct eye
        self._len = np.zeros(cap)
        self._state = np.zeros(cap, dtype=np.int8)
        self._chute = np.zeros(cap, dtype=np.int64)
        self._laps = np.full(cap, -1, dtype=np.int64)
        self._fired_by = np.full(cap, -1, dtype=np.int64)
        self._t_in = np.zeros(cap)
        self._t_out = np.full(cap, np.nan)
        self._gapv = np.zeros(cap, dtype=bool)
        self._src = np.zeros(cap, dtype=np.int64)  # row in self._batches order
        self._nscan = np.full(cap, np.inf)  # travel of the next scanner crossing
        self._tid = np.zeros(cap, dtype=np.int64)  # current tracking id (its key: _boot, _tid)
        self._boot = np.zeros(cap, dtype=np.int64)  # conveyor boot id the current id was given in
        self._tracked = np.zeros(cap, dtype=bool)  # the conveyor PLC knows it (its id is live)
        self._lead = np.zeros(cap)  # travel of the induct-eye pass at which the current id was given
        self._plap = np.full(cap, -1, dtype=np.int64)  # the PLC's lap count for the current id
        self._nind = np.full(cap, np.inf)  # untracked: travel of its next induct-eye pass
        self._prior: dict[int, list[tuple[int, int]]] = {}  # index -> earlier (boot id, tracking id)
        self._untracked = 0  # parcels on the belt waiting to be re-acquired
        self._renumbered = False  # a parcel on the belt lost its id once: ids and laps need checks
        self._on = np.zeros(0, dtype=np.int64)  # indices of parcels on the belt
        self._last_trail = -math.inf
        self._last_idx = -1
        self._pending_induct: list[tuple[int, float]] = []  # (index, lead travel): trailing edge not past

        # The arriving stream: concatenated batches, a cursor to the next parcel to induct.
        self._batches: list[ParcelBatch] = []
        self._arrival = np.zeros(0)
        self._gap = np.zeros(0)
        self._blen = np.zeros(0)
        self._next = 0
        self._base = 0  # stream row of self._arrival[0]
        # arrival times count from here; None: not yet known (from the belt's first run)
        self._arrivals_origin: float | None = None if source.scenario.arrivals.from_first_run else 0.0

        # Armed fires (unwrapped encoder target at which the stroke starts).
        self._arm_k = np.zeros(0, dtype=np.int64)
        self._arm_tid = np.zeros(0, dtype=np.int64)
        self._arm_target = np.zeros(0, dtype=np.int64)
        self._arm_seq = np.zeros(0, dtype=np.int64)  # command seq that armed it (0: not from the ring)
        self._arm_boot = np.zeros(0, dtype=np.int64)  # conveyor boot id current when it was armed
        self._arm_min = 1 << 80  # smallest pending target: most steps fire nothing
        # Fire log: armed tracking id and conveyor boot id, chute id, parcel index taken (-1 none).
        self.fire_tid: list[int] = []
        self.fire_boot: list[int] = []
        self.fire_chute: list[int] = []
        self.fire_parcel: list[int] = []
        self._step_origin = (0.0, 0.0, 0.0)
        self._pending_confirms: list[tuple[float, int, int, int, int]] = []  # travel, tid, k, flags, epoch

    # ---- encoder -------------------------------------------------------------------------
    def _enc_at(self, travel: float) -> int:
        return self._enc0 + math.floor(travel * self.cpm + 1e-9)

    @property
    def encoder_unwrapped(self) -> int:
        return self._enc_at(self.travel_mm)

    @property
    def encoder(self) -> int:
        """The 32-bit count the PLCs show."""
        return self.encoder_unwrapped & MASK

    def glitch_encoder(self, counts: int) -> None:
        """The encoder jumps: belt positions stay, counts do not match them any more.

        The PLCs see the jump on the next step (``StepEvents.encoder_jump``) if it is beyond
        the tolerance.
        """
        self._enc0 += int(counts)

    def _encoder_jump(self, travel0: float, travel1: float) -> int:
        """Counts of this step's encoder change that the belt travel does not explain, or 0."""
        expected = (travel1 - travel0) * self.cpm
        off = (self._enc_at(travel1) - self._enc_seen) - expected
        tol = self.encoder_tolerance_mm * self.cpm + self.encoder_tolerance_rel * abs(expected)
        return round(off) if abs(off) > tol else 0

    @property
    def speed_mps(self) -> float:
        return self.speed_setpoint_mps if self.running and self.power.conveyor else 0.0

    # ---- PLC power ------------------------------------------------------------------------
    def switch_power(self, plc: Plc, on: bool) -> None:
        """Switch a PLC's mains. Off: the conveyor's belt stops at once and it forgets every
        parcel it tracked; the diverter forgets every pending arm (none fires) and reports no
        chute-eye confirmation of a fire made before the cut. On: the program boots at its next
        scan (the conveyor program then restarts the tracking ids under its new boot id)."""
        if plc == "conveyor":
            if self.power.conveyor and not on:
                self.running = False
                self._forget_tracking()
                self.power.conveyor_cuts += 1
            self.power.conveyor = on
        elif plc == "diverter":
            if self.power.diverter and not on:
                self._keep_arms(np.zeros(len(self._arm_k), dtype=bool))
                self._diverter_epoch += 1
                self.power.diverter_cuts += 1
            self.power.diverter = on
        else:
            raise ValueError(f"no PLC {plc!r}")

    # ---- the conveyor PLC's tracking ------------------------------------------------------
    def restart_tracking(self, boot_id: int) -> None:
        """The conveyor PLC program starts: ids from 1 under ``boot_id``, nothing on the belt tracked."""
        self._forget_tracking()
        self.tracking.restart(boot_id)

    def _forget_tracking(self) -> None:
        """Every parcel on the belt becomes untracked; each is re-acquired on its next pass of
        the induct eye (a full pass: a parcel already in the eye is not, it comes round)."""
        self.tracking.forget()
        self._pending_induct = []
        on = self._on
        self._renumbered |= len(on) > 0
        self._tracked[on] = False
        if self.loop:
            s = self._s[on]
            laps = np.floor((self.travel_mm - s) / self.belt_mm) + 1.0
            self._nind[on] = s + laps * self.belt_mm
        else:
            self._nind[on] = np.inf  # a linear belt never brings it back to the induct
        self._untracked = len(on)

    def _reacquire(self, travel1: float) -> list[tuple[float, int]]:
        """Untracked parcels whose leading edge reaches the induct eye by ``travel1``."""
        if not self._untracked:
            return []
        on = self._on
        due = on[~self._tracked[on] & (self._nind[on] <= travel1)]
        return [(float(self._nind[i]), int(i)) for i in due.tolist()]

    def _give_ids(self, placed: list[int], found: list[tuple[float, int]]) -> None:
        """The conveyor PLC gives ids at the leading edge, in the order parcels reach the eye:
        to parcels just placed on the belt (in eye order already) and to untracked ones found."""
        if not found:  # the common case: new parcels only, ids in one go
            if placed:
                idx = np.asarray(placed, dtype=np.int64)
                self._tid[idx] = self.tracking.give_many(placed)
                self._boot[idx] = self.tracking.boot_id
                self._tracked[idx] = True
                self._lead[idx] = self._s[idx]
                self._plap[idx] = -1
                self._pending_induct.extend(zip(placed, self._s[idx].tolist(), strict=True))
            return
        for lead, i in sorted([(float(self._s[i]), i) for i in placed] + found):
            if self._tid[i]:  # re-acquired: its old key is history now
                self._prior.setdefault(i, []).append((int(self._boot[i]), int(self._tid[i])))
                self._untracked -= 1
            self._tid[i] = self.tracking.give(i)
            self._boot[i] = self.tracking.boot_id
            self._tracked[i] = True
            self._lead[i] = lead
            self._plap[i] = -1
            self._nind[i] = np.inf
            self._pending_induct.append((i, lead))

    # ---- parcels in --------------------------------------------------------------------
    def _ensure_arrivals(self, t1: float) -> None:
        if self._arrivals_origin is None:  # nothing arrives before the belt first runs
            return
        while (len(self._arrival) == self._next or self._arrival[-1] <= t1) and not self.source.exhausted:
            b = self.source.draw(_CHUNK)
            if len(b) == 0:
                break
            if self._arrivals_origin:
                np.add(b.arrival_s, self._arrivals_origin, out=b.arrival_s)  # a frozen batch, its own array
            self._batches.append(b)
            self._arrival = np.concatenate([self._arrival[self._next :], b.arrival_s])
            self._gap = np.concatenate([self._gap[self._next :], b.gap_mm])
            self._blen = np.concatenate([self._blen[self._next :], b.length_mm])
            self._base += self._next
            self._next = 0

    @property
    def backlog(self) -> int:
        """Parcels arrived at the induct and still waiting for a free gap."""
        return int(np.searchsorted(self._arrival, self.time_s, side="right")) - self._next

    def _grow(self) -> None:
        cap = len(self._s) * 2
        for name in ("_s", "_len", "_state", "_chute", "_laps", "_fired_by", "_t_in", "_t_out", "_gapv", "_src",
                     "_nscan", "_tid", "_boot", "_tracked", "_lead", "_plap", "_nind"):  # fmt: skip
            old = getattr(self, name)
            fill_value = {"_laps": -1, "_fired_by": -1, "_t_out": np.nan, "_nscan": np.inf, "_plap": -1,
                          "_nind": np.inf}.get(name, 0)  # fmt: skip
            new = np.full(cap, fill_value, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def _free_from(self, t: float, length: float, gap_last: float) -> float:
        """Earliest travel >= t at which a parcel of ``length`` may cross the induct eye.

        Recirculating parcels have right of way: each one forbids an interval of start
        positions around each of its passes; the answer is the first point outside them all.
        """
        t = max(t, self._last_trail + gap_last)
        if not self.loop or len(self._on) == 0:
            return t
        s = self._s[self._on]
        ln = self._len[self._on]
        g = np.where(self._on == self._last_idx, gap_last, self.min_gap)
        d = np.mod(s - t, self.belt_mm)  # travel until each parcel's leading edge crosses 0
        if not ((d < length + self.min_gap).any() or (d - self.belt_mm + ln + g > 0).any()):
            return t  # the common case: nothing passes the induct eye around t
        lo = np.concatenate([d - self.belt_mm, d, d + self.belt_mm]) - length - self.min_gap
        hi = np.concatenate([d - self.belt_mm, d, d + self.belt_mm]) + np.tile(ln + g, 3)
        live = hi > 0
        lo, hi = lo[live], hi[live]
        order = np.argsort(lo)
        lo, hi = lo[order], hi[order]
        reach = np.maximum.accumulate(hi)
        cand = np.concatenate([[0.0], np.sort(hi)])
        before = np.searchsorted(lo, cand, side="left")  # intervals starting below each point
        free = (before == 0) | (reach[np.maximum(before - 1, 0)] <= cand)
        if not free.any():
            return math.inf
        return t + float(cand[int(np.argmax(free))])

    def _induct(self, t0: float, t1: float, v: float, travel0: float, travel1: float) -> tuple[int, list[int]]:
        """Release waiting parcels onto the belt; returns (gap violations, indices placed)."""
        self._ensure_arrivals(t1)
        violations = 0
        placed: list[int] = []
        while self._next < len(self._arrival):
            a = float(self._arrival[self._next])
            if a > t1:
                break
            gap = float(self._gap[self._next])
            length = float(self._blen[self._next])
            t_arr = travel0 + v * (a - t0) if a > t0 else travel0
            t = self._free_from(t_arr, length, gap)
            if t > travel1:
                break
            i = self._n
            if i == len(self._s):
                self._grow()
            self._s[i] = t
            self._nscan[i] = t + self.scanner_mm
            self._len[i] = length
            self._state[i] = ParcelState.ON_BELT
            self._t_in[i] = t0 + (t - travel0) / v
            self._src[i] = self._base + self._next
            gap_actual = t - self._last_trail
            if gap_actual < self.min_gap - 1e-9:
                self._gapv[i] = True
                violations += 1
            self._last_trail = t + length
            self._last_idx = i
            self._n += 1
            self._next += 1
            self._on = np.append(self._on, i)
            placed.append(i)
        return violations, placed

    # ---- arms --------------------------------------------------------------------------
    def chute_index(self, chute_id: int) -> int | None:
        return self._chute_k.get(chute_id)

    def arm(self, chute_id: int, tracking_id: int, fire_count: int, seq: int = 0) -> ArmResult:
        """Arm chute's diverter to fire for ``tracking_id`` when the parcel centre is on it.

        ``fire_count`` is the 32-bit count at which the centre is on the centreline; the stroke
        starts earlier by the diverter's actuation time at the set speed, as a PLC does.
        ``seq`` is the arm command's seq, reported back if the arm is dropped unfired. The arm
        is noted with the conveyor's current boot id: the key the ground truth says it was for.
        A diverter PLC that is switched off takes no arm.
        """
        res = self._arm(chute_id, tracking_id, fire_count, seq)
        self.stats.arm_results[res.name] = self.stats.arm_results.get(res.name, 0) + 1
        return res

    def _arm(self, chute_id: int, tracking_id: int, fire_count: int, seq: int) -> ArmResult:
        k = self._chute_k.get(chute_id)
        if k is None:
            return ArmResult.UNKNOWN_CHUTE
        if self.disabled[k] or self.faulted[k] or not self.power.diverter:
            return ArmResult.CHUTE_UNAVAILABLE
        lead = round(self.div_act_s[k] * self.speed_setpoint_mps * 1000.0 * self.cpm)
        now = self.encoder_unwrapped
        d = ((fire_count - lead) - now) & MASK
        if d >= HALF:
            return ArmResult.TOO_LATE
        target = now + d
        same = (self._arm_k == k) & (self._arm_tid == tracking_id)
        if same.any():
            self._arm_target[same] = target
            self._arm_seq[same] = seq
            self._arm_boot[same] = self.tracking.boot_id
            self._arms_changed()
            return ArmResult.ARMED
        if int((self._arm_k == k).sum()) >= self.arm_queue_size:
            return ArmResult.QUEUE_FULL
        self._arm_k = np.append(self._arm_k, k)
        self._arm_tid = np.append(self._arm_tid, tracking_id)
        self._arm_target = np.append(self._arm_target, target)
        self._arm_seq = np.append(self._arm_seq, seq)
        self._arm_boot = np.append(self._arm_boot, self.tracking.boot_id)
        self._arm_min = min(self._arm_min, target)
        return ArmResult.ARMED

    def cancel(self, chute_id: int, tracking_id: int) -> ArmResult:
        k = self._chute_k.get(chute_id)
        if k is None:
            return ArmResult.UNKNOWN_CHUTE
        same = (self._arm_k == k) & (self._arm_tid == tracking_id)
        if not same.any():
            return ArmResult.NOTHING_TO_CANCEL
        self._keep_arms(~same)
        return ArmResult.CANCELLED

    def drop_arms(self) -> int:
        """Forget every pending arm (the diverter PLC's host watchdog does this)."""
        n = len(self._arm_k)
        self._keep_arms(np.zeros(n, dtype=bool))
        return n

    def _drop_arms_unfired(self) -> list[tuple[int, int, int]]:
        """Forget every pending arm and say which: (tracking id, chute id, command seq)."""
        out = list(zip(self._arm_tid.tolist(), self.chute_ids[self._arm_k].tolist(), self._arm_seq.tolist(), strict=True))
        self._keep_arms(np.zeros(len(self._arm_k), dtype=bool))
        return out

    @property
    def armed(self) -> int:
        return len(self._arm_k)

    def _keep_arms(self, keep: npt.NDArray[np.bool_]) -> None:
        self._arm_k = self._arm_k[keep]
        self._arm_tid = self._arm_tid[keep]
        self._arm_target = self._arm_target[keep]
        self._arm_seq = self._arm_seq[keep]
        self._arm_boot = self._arm_boot[keep]
        self._arms_changed()

    def _arms_changed(self) -> None:
        self._arm_min = int(self._arm_target.min()) if len(self._arm_target) else 1 << 80

    def _fire(self, travel0: float, travel1: float, v: float, ev: StepEvents) -> None:
        e1 = self._enc_at(travel1)
        if self._arm_min > e1:
            return
        due = self._arm_target <= e1
        if not due.any():
            return
        order = np.argsort(self._arm_target[due], kind="stable")
        ks = self._arm_k[due][order]
        tids = self._arm_tid[due][order]
        targets = self._arm_target[due][order]
        boots = self._arm_boot[due][order]
        self._keep_arms(~due)
        for k, tid, target, boot in zip(ks.tolist(), tids.tolist(), targets.tolist(), boots.tolist(), strict=True):
            tf = max(travel0, (target - self._enc0) / self.cpm)
            te = tf + self.div_act_s[k] * v
            self.stats.fires += 1
            ev.fires += 1
            taken = -1
            if self.stuck[k]:
                self.stats.fires_stuck += 1
            else:
                taken = self._take(k, te)
                if taken < 0:
                    self.stats.fires_empty += 1
            fire_id = len(self.fire_tid)
            self.fire_tid.append(tid)
            self.fire_boot.append(boot)
            self.fire_chute.append(int(self.chute_ids[k]))
            self.fire_parcel.append(taken)
            if taken >= 0:
                self._fired_by[taken] = fire_id
                flags = 0 if tid else CONFIRM_UNEXPECTED
                self._pending_confirms.append((te, tid, k, flags, self._diverter_epoch))

    def _take(self, k: int, te: float) -> int:
        """The parcel whose centre is within diverter k's window at the end of its stroke."""
        on = self._on
        if len(on) == 0:
            return -1
        s = self._s[on]
        centre = (te - s) - self._len[on] / 2.0
        if self.loop:
            centre = np.mod(centre, self.belt_mm)
        off = np.abs(centre - self.div_pos[k])
        ok = (off <= self.div_win[k] / 2.0) & (s <= te)
        if not ok.any():
            return -1
        j = int(np.argmin(np.where(ok, off, np.inf)))
        i = int(on[j])
        self._remove(i, ParcelState.IN_CHUTE, int(self.chute_ids[k]), te)
        return i

    def _time_at(self, travel: float) -> float:
        """Simulated time at which the belt reaches ``travel`` within the current step."""
        t0, travel0, v = self._step_origin
        return t0 + (travel - travel0) / v if v > 0 else t0

    def _remove(self, i: int, state: ParcelState, chute: int, travel: float | None = None) -> None:
        self._state[i] = state
        self._chute[i] = chute
        self._t_out[i] = self.time_s if travel is None else self._time_at(travel)
        self._on = self._on[self._on != i]
        if not self._tracked[i]:
            self._untracked -= 1  # it left the belt before the conveyor PLC found it again: its last key stays

    # ---- time --------------------------------------------------------------------------
    def step(self, dt: float) -> StepEvents:
        """Move the world on by ``dt`` seconds at the current belt speed."""
        ev = StepEvents()
        t0, t1 = self.time_s, self.time_s + dt
        v = self.speed_mps * 1000.0
        travel0 = self.travel_mm
        travel1 = travel0 + v * dt
        self._step_origin = (t0, travel0, v)
        jump = self._encoder_jump(travel0, travel1)
        if jump:  # an encoder fault: no compare can be trusted, nothing that was armed fires
            ev.encoder_jump = jump
            ev.dropped = self._drop_arms_unfired()
            self.stats.encoder_faults += 1
            self.stats.arms_dropped_encoder += len(ev.dropped)
        self._enc_seen = self._enc_at(travel1)
        if v > 0:
            self._fire(travel0, travel1, v, ev)
        elif len(self._arm_k):
            self._fire(travel0, travel0, 0.0, ev)  # a jump within the tolerance may have passed a target
        placed: list[int] = []
        if v > 0 and self.induct_enabled and self.jammed_eye == Eye.NONE:
            if self._arrivals_origin is None:
                self._arrivals_origin = t0
            n, placed = self._induct(t0, t1, v, travel0, travel1)
            ev.gap_violations = n
            self.stats.gap_violations += n
        else:
            self._ensure_arrivals(t1)
        if v > 0:
            # ids are given at the induct eye before the scanner looks, so a parcel inducted (or
            # found again) in this step is scanned in it too, under its id
            if placed or self._untracked:
                self._give_ids(placed, self._reacquire(travel1))
            self._scan(travel0, travel1, ev)
            if not self.loop:
                self._end_of_line(travel1)
        self.time_s = t1
        self.travel_mm = travel1
        self._emit_inducts(travel1, ev)
        self._emit_confirms(travel1, ev)
        self._drain(dt)
        return ev

    def _scan(self, travel0: float, travel1: float, ev: StepEvents) -> None:
        on = self._on
        if len(on) == 0:
            return
        ns = self._nscan[on]  # travel at which each leading edge next reaches the scanner
        hit = ns <= travel1
        if not hit.any():
            return
        idx = on[hit]
        at = ns[hit]
        order = np.argsort(at)
        renumbered = self._renumbered
        for i, tc in zip(idx[order].tolist(), at[order].tolist(), strict=True):
            lap = int(self._laps[i]) + 1
            self._laps[i] = lap  # passes of the scanner, as the ground truth counts them
            self._nscan[i] = tc + self.belt_mm if self.loop else math.inf
            if renumbered:  # the PLC triggers only for parcels it tracks, and counts its own laps
                if not self._tracked[i] or tc < self._lead[i]:
                    continue
                lap = int(self._plap[i]) + 1  # 0 on the first pass under this id
                self._plap[i] = lap
            ev.scans.append((int(self._tid[i]), self._enc_at(tc) & MASK, lap))

    def _end_of_line(self, travel1: float) -> None:
        on = self._on
        gone = on[self._s[on] + self._len[on] / 2.0 + self.belt_mm <= travel1]
        for i in gone.tolist():
            self._remove(i, ParcelState.IN_CHUTE, int(self.chute_ids[self.reject_k]))
            self._land(self.reject_k)
            self.stats.end_of_line += 1

    def _emit_inducts(self, travel1: float, ev: StepEvents) -> None:
        if not self._pending_induct:
            return
        keep: list[tuple[int, float]] = []
        for i, s in self._pending_induct:
            ln = float(self._len[i])
            if s + ln <= travel1:
                ev.inducts.append((int(self._tid[i]), self._enc_at(s) & MASK, self._enc_at(s + ln) & MASK))
                self.stats.inducted += 1
                self.tracking.inducted += 1
                if i in self._prior:
                    self.stats.reacquired += 1
            else:
                keep.append((i, s))
        self._pending_induct = keep

    def _emit_confirms(self, travel1: float, ev: StepEvents) -> None:
        if not self._pending_confirms:
            return
        keep = []
        for item in self._pending_confirms:
            te, tid, k, flags, epoch = item
            if te <= travel1 + 1e-9:
                self._land(k)
                if epoch == self._diverter_epoch and self.power.diverter:
                    self.stats.confirms += 1
                    ev.confirms.append((tid, self._enc_at(te) & MASK, int(self.chute_ids[k]), flags))
                else:  # the PLC that fired lost its memory: it cannot say whose parcel this is
                    self.stats.confirms_unreported += 1
            else:
                keep.append(item)
        self._pending_confirms = keep

    def _land(self, k: int) -> None:
        if self.fill[k] >= self.capacity[k]:
            self.stats.overflow += 1
        self.fill[k] += 1
        self.landed[k] += 1

    def _drain(self, dt: float) -> None:
        rate = np.where(self.drain_stopped, 0.0, self.drain_per_s)
        self._drain_credit += rate * dt
        # a stopped chute drains nothing, whatever credit it built up while it was running
        n = np.where(self.drain_stopped, 0, np.minimum(self.fill, np.floor(self._drain_credit).astype(np.int64)))
        self.fill -= n
        self._drain_credit -= n
        self._drain_credit[self.fill == 0] = np.minimum(self._drain_credit[self.fill == 0], 1.0)

    # ---- chutes ------------------------------------------------------------------------
    def chute_status(self) -> dict[int, int]:
        """Status bits per chute id, as the diverter PLC publishes them."""
        full = self.fill >= self.capacity
        out: dict[int, int] = {}
        for k, cid in enumerate(self.chute_ids.tolist()):
            bits = 0
            if full[k]:
                bits |= ChuteStatus.FULL
            if self.disabled[k]:
                bits |= ChuteStatus.DISABLED
            if self.faulted[k]:
                bits |= ChuteStatus.FAULT
            out[cid] = bits
        return out

    def chute_fill(self) -> dict[int, int]:
        return dict(zip(self.chute_ids.tolist(), self.fill.tolist(), strict=True))

    # ---- jams --------------------------------------------------------------------------
    def jam(self, eye: int) -> None:
        self.jammed_eye = int(eye)

    def clear_jam(self) -> int:
        """The operator clears the jam by taking the parcel at the eye off the belt: lost.

        Returns the (last) tracking id of the parcel removed (0 if the eye was clear)."""
        eye, self.jammed_eye = self.jammed_eye, 0
        if eye == Eye.NONE or len(self._on) == 0:
            return 0
        at = 0.0 if eye == Eye.INDUCT else self.scanner_mm if eye == Eye.SCANNER else None
        if at is None:
            return 0
        on = self._on
        lead = self.travel_mm - self._s[on]
        if self.loop:
            lead = np.mod(lead, self.belt_mm)
        past = lead - self._len[on] - at  # how far each trailing edge is beyond the eye
        near = (lead >= at) & (past <= 1000.0)  # the jammed parcel is the one just past it
        if not near.any():
            return 0
        i = int(on[np.argmin(np.where(near, past, np.inf))])
        self._remove(i, ParcelState.LOST, 0)
        self.stats.lost += 1
        return int(self._tid[i])

    # ---- truth -------------------------------------------------------------------------
    def parcels_on_belt(self) -> int:
        return len(self._on)

    def ground_truth(self) -> GroundTruth:
        n = self._n
        src = self._src[:n]
        ids: list[str] = []
        second: list[str] = []
        label = np.zeros(n, dtype=np.int8)
        severity = np.zeros(n, dtype=np.float32)
        symb = np.zeros(n, dtype=np.int8)
        offsets = np.cumsum([0] + [len(b) for b in self._batches])
        for j, row in enumerate(src.tolist()):
            b = int(np.searchsorted(offsets, row, side="right")) - 1
            r = row - int(offsets[b])
            batch = self._batches[b]
            ids.append(batch.parcel_id[r])
            second.append(batch.second_id[r])
            label[j] = batch.label[r]
            severity[j] = batch.severity[r]
            symb[j] = batch.symbology[r]
        fire = self._fired_by[:n]
        armed = np.array([self.fire_tid[f] if f >= 0 else -1 for f in fire.tolist()], dtype=np.int64)
        armed_boot = np.array([self.fire_boot[f] if f >= 0 else -1 for f in fire.tolist()], dtype=np.int64)
        prior = self._prior
        return GroundTruth(
            tracking_id=self._tid[:n].copy(),
            boot_id=self._boot[:n].copy(),
            prior_keys=tuple(tuple(prior.get(i, ())) for i in range(n)),
            parcel_id=tuple(ids),
            second_id=tuple(second),
            label=label,
            severity=severity,
            symbology=symb,
            length_mm=self._len[:n].copy(),
            state=self._state[:n].copy(),
            chute=self._chute[:n].copy(),
            laps=np.maximum(self._laps[:n], 0),
            fire_id=fire.copy(),
            fire_tracking_id=armed,
            fire_boot_id=armed_boot,
            gap_violation=self._gapv[:n].copy(),
            inducted_s=self._t_in[:n].copy(),
            final_s=self._t_out[:n].copy(),
            waiting=self.backlog,
        )

    def parcel_label(self, tracking_id: int) -> tuple[str, str, int, float, int]:
        """(parcel id, second id, label kind, severity, symbology) of the parcel that holds
        ``tracking_id`` in the conveyor PLC's current boot (KeyError if none does)."""
        row = int(self._src[self.tracking.parcel(tracking_id)])
        for b in self._batches:
            if row < len(b):
                return (b.parcel_id[row], b.second_id[row], int(b.label[row]), float(b.severity[row]), int(b.symbology[row]))
            row -= len(b)
        raise KeyError(tracking_id)

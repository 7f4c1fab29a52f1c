"""The oracle arm: a perfect in-process controller for world-only tests and benchmarks.

It arms each parcel's diverter directly on the world (no protocol) from the scanner trigger,
the way the real controller does it over Modbus, so the physics can be checked alone.
"""

from __future__ import annotations

from collections.abc import Callable

from plant.codes import ArmResult
from plant.site import Site
from plc_sim.encoder import MASK
from plc_sim.world import StepEvents, World

ChuteChoice = Callable[[int], int | None]  # tracking id -> chute id (None: let it ride)


def fire_count_for(site: Site, chute_id: int, trigger_count: int, length_counts: int) -> int:
    """The count at which a parcel whose leading edge triggered the scanner is centred on chute."""
    s = site.sorter
    pos = site.chute(chute_id).diverter.position_mm
    travel = (pos - s.scanner_position_mm) * s.counts_per_mm + length_counts / 2.0
    return (trigger_count + round(travel)) & MASK


class OracleArm:
    """Arms on every scan event; remembers lengths from induct events."""

    def __init__(self, world: World, choose: ChuteChoice) -> None:
        self.world = world
        self.choose = choose
        self._length: dict[int, int] = {}
        self.results: dict[ArmResult, int] = {}
        self.intended: dict[int, int] = {}

    def feed(self, ev: StepEvents) -> None:
        for tid, lead, trail in ev.inducts:
            self._length[tid] = (trail - lead) & MASK
        for tid, count, _lap in ev.scans:
            chute = self.choose(tid)
            if chute is None:
                continue
            length = self._length.get(tid)
            if length is None:  # scanned before its trailing edge left the induct eye
                length = round(self.world.site.sorter.max_parcel_length_mm * self.world.cpm)
            fc = fire_count_for(self.world.site, chute, count, length)
            res = self.world.arm(chute, tid, fc)
            self.results[res] = self.results.get(res, 0) + 1
            if res == ArmResult.ARMED:
                self.intended[tid] = chute

    def step(self, dt: float) -> StepEvents:
        ev = self.world.step(dt)
        self.feed(ev)
        return ev

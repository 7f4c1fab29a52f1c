"""Simulator benchmark: the world alone, virtual time, 40,000 parcels/hour, oracle arms.

Target: one simulated hour in under 10 s of wall time. Records the speed-up over real time and
the wall cost per parcel; the missort count comes from the world's own ground truth.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.records import Record
from plant.site import ChuteKind, load_site
from plc_sim.oracle import OracleArm
from plc_sim.parcels import ParcelSource
from plc_sim.scenario import default_scenario
from plc_sim.world import World

SITE = Path(__file__).resolve().parents[1] / "config" / "site.yaml"
RATE = 40_000.0
TICK_S = 0.1  # a 10 Hz PLC scan; the physics is exact at any tick


def run(quick: bool) -> list[Record]:
    site = load_site(SITE)
    seconds = 300.0 if quick else 3600.0
    world = World(
        site,
        ParcelSource(default_scenario(RATE, seed=11), site.sorter.min_gap_mm, None),
        encoder_start=(1 << 32) - 1_000_000,  # wraps during the run
    )
    world.running = True
    normal = [c.id for c in site.chutes_of_kind(ChuteKind.NORMAL)]
    oracle = OracleArm(world, lambda tid: normal[tid % len(normal)])
    steps = round(seconds / TICK_S)
    t0 = time.perf_counter()
    for _ in range(steps):
        oracle.step(TICK_S)
    wall = time.perf_counter() - t0
    gt = world.ground_truth()
    inducted = len(gt)
    sorted_ = gt.state == 1
    intended = np.asarray([normal[t % len(normal)] for t in gt.tracking_id.tolist()], dtype=np.int64)
    missorts = int((sorted_ & (gt.chute != intended)).sum())
    return [
        Record("sim.speedup", "x real time", seconds / wall, f"{seconds:.0f} s simulated in {wall:.2f} s"),
        Record("sim.tick_per_parcel", "us", wall / max(inducted, 1) * 1e6, f"{inducted} parcels inducted"),
        Record("sim.hour_wall", "s", wall * 3600.0 / seconds, "wall time per simulated hour"),
        Record("sim.inducted_per_hour", "parcels/h", inducted * 3600.0 / seconds, f"backlog {gt.waiting}"),
        Record("sim.missorts", "parcels", float(missorts), "oracle arms; should be 0"),
        Record("sim.gap_violations", "parcels", float(world.stats.gap_violations)),
    ]

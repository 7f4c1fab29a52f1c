"""End to end in real time: the controller against the simulator over loopback OPC UA, Modbus TCP
and the camera stream, at 40,000 parcels/hour on the example site.

Figures (docs/benchmarks-e2e.md says how each is measured):
- ``e2e.parcels_per_hour``: parcels sorted to the chute the controller chose, per hour of wall
  time over the whole run (start-up, ramp-up and the settling tail included);
- ``e2e.missorts``, ``e2e.lost`` (a parcel that left the belt with no final outcome stored; parcels
  still riding the loop when the run ends are reported apart as ``e2e.in_flight_at_end``);
- ``e2e.decision_p99``: arming became due -> arm command accepted by the diverter PLC's server;
- ``e2e.scan_to_decision_p99``: camera trigger -> routing decision durable (decode included);
- ``e2e.cycle_lag_p99``: how late control cycles started against their 10 ms schedule;
- ``e2e.read_p99``, ``e2e.decide_p99``, ``e2e.commit_p99``, ``e2e.publish_p99``: the phases of a cycle.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from benchmarks.records import Record
from harness.audit import ON_BELT
from harness.session import CONFIG, Session, SessionConfig, SessionResult

RATE = 40_000.0


def _p99_ms(values: object) -> float:
    a = np.asarray(list(values), dtype=np.float64)  # type: ignore[call-overload]
    return float(np.percentile(a, 99) * 1000.0) if a.size else float("nan")


def _p50_ms(values: object) -> float:
    a = np.asarray(list(values), dtype=np.float64)  # type: ignore[call-overload]
    return float(np.percentile(a, 50) * 1000.0) if a.size else float("nan")


def measure(parcels: int, *, settle_s: float, sim_process: bool = True) -> SessionResult:
    induct_s = parcels / RATE * 3600.0
    cfg = SessionConfig(
        parcels=parcels,
        rate_per_hour=RATE,
        scenario=CONFIG / "scenarios" / "rush.yaml",
        sim_process=sim_process,
        duration_s=induct_s + settle_s,
    )
    session = Session(cfg)
    try:
        return asyncio.run(session.run())
    finally:
        session.close()


def records(r: SessionResult) -> list[Record]:
    a = r.audit
    on_belt = set(r.truth.tracking_id[r.truth.location == ON_BELT].tolist())
    lost = [t for t in a.lost if t not in on_belt]
    m = r.metrics
    note = f"{a.inducted} inducted in {r.wall_s:.0f} s wall"
    return [
        Record("e2e.parcels_per_hour", "parcels/h", r.parcels_per_hour, f"{a.sorted_planned} sorted; {note}"),
        Record("e2e.missorts", "parcels", float(len(a.missorts)), "; ".join(a.missort_detail[:3])),
        Record("e2e.lost", "parcels", float(len(lost)), "left the belt with no final outcome stored"),
        Record("e2e.misrecorded", "parcels", float(len(a.misrecorded)), "stored outcome contradicts ground truth"),
        Record("e2e.in_flight_at_end", "parcels", float(len(a.lost) - len(lost)), "still riding the loop"),
        Record("e2e.rejected", "parcels", float(a.rejected),
               ", ".join(f"{k} {v}" for k, v in sorted(a.rejected_by_reason.items()))),
        Record("e2e.read_rate", "fraction", a.read_rate),
        Record("e2e.decision_p99", "ms", _p99_ms(m.decision_s), f"p50 {_p50_ms(m.decision_s):.1f} ms; due -> arm accepted"),
        Record("e2e.arm_result_p99", "ms", _p99_ms(m.arm_confirmed_s), "due -> PLC's ARMED result read back"),
        Record("e2e.scan_to_decision_p99", "ms", _p99_ms(m.scan_to_decision_s),
               f"p50 {_p50_ms(m.scan_to_decision_s):.0f} ms; {m.decode_timeouts} decode timeouts"),
        Record("e2e.cycle_lag_p99", "ms", _p99_ms(m.cycle_lag_s), f"p50 {_p50_ms(m.cycle_lag_s):.1f} ms"),
        Record("e2e.cycle_work_p99", "ms", _p99_ms(m.cycle_work_s), f"p50 {_p50_ms(m.cycle_work_s):.1f} ms"),
        # the cycle's phases, every cycle (a decision is read + decide + commit + the arm write)
        Record("e2e.read_p99", "ms", _p99_ms(m.read_s), f"p50 {_p50_ms(m.read_s):.2f} ms; both PLCs"),
        Record("e2e.decide_p99", "ms", _p99_ms(m.decide_s), f"p50 {_p50_ms(m.decide_s):.2f} ms"),
        Record("e2e.commit_p99", "ms", _p99_ms(m.commit_s),
               f"p50 {_p50_ms(m.commit_s):.2f} ms; cycles with something to store"),
        Record("e2e.publish_p99", "ms", _p99_ms(m.publish_s), f"p50 {_p50_ms(m.publish_s):.2f} ms"),
    ]


def run(quick: bool) -> list[Record]:
    logging.getLogger().setLevel(logging.ERROR)
    # quick: ~22 s of arrivals then 15 s to settle (the far chutes are ~14 s from the induct)
    parcels, settle = (250, 15.0) if quick else (2500, 30.0)
    return records(measure(parcels, settle_s=settle))


if __name__ == "__main__":
    from benchmarks.records import print_table

    print_table("e2e (quick)", run(quick=True))

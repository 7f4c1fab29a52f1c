"""Tracking ids are the conveyor PLC's: numbered from 1 per boot, lost at a power cut, re-acquired
at the induct eye; the ground truth keeps every (boot id, tracking id) key a parcel had."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plant.codes import ArmResult
from plc_sim.encoder import MASK
from plc_sim.oracle import OracleArm, fire_count_for
from plc_sim.world import StepEvents, World

from .conftest import WorldFactory


@dataclass
class Log:
    """Every event of a run with the time and the conveyor boot it happened in."""

    inducts: list[tuple[float, int, int, int, int]] = field(default_factory=list)  # t, boot, tid, lead, trail
    scans: list[tuple[float, int, int, int, int]] = field(default_factory=list)  # t, boot, tid, lap, parcel index
    counts: list[int] = field(default_factory=list)  # each scan's trigger count

    def add(self, w: World, ev: StepEvents) -> None:
        boot = w.tracking.boot_id
        for tid, lead, trail in ev.inducts:
            self.inducts.append((w.time_s, boot, tid, lead, trail))
        for tid, count, lap in ev.scans:
            self.scans.append((w.time_s, boot, tid, lap, w.tracking.parcel(tid)))
            self.counts.append(count)


def run(w: World, seconds: float, log: Log, oracle: OracleArm | None = None, dt: float = 0.1) -> None:
    for _ in range(round(seconds / dt)):
        ev = oracle.step(dt) if oracle is not None else w.step(dt)
        log.add(w, ev)


def power_cycle(w: World, new_boot: int, off_s: float = 1.0, log: Log | None = None, dt: float = 0.1) -> None:
    """What a conveyor power cycle does to the world; the program's part is restart_tracking."""
    w.switch_power("conveyor", False)
    travel = w.travel_mm
    for _ in range(round(off_s / dt)):
        ev = w.step(dt)
        assert not ev.inducts and not ev.scans  # off: the belt stands, the PLC sees nothing
        if log is not None:
            log.add(w, ev)
    assert w.travel_mm == travel and w.speed_mps == 0.0
    w.switch_power("conveyor", True)
    w.restart_tracking(new_boot)
    w.running = True  # the host started the belt again


def test_after_a_conveyor_power_cycle_ids_restart_at_1_and_riding_parcels_are_renumbered(
    make_world: WorldFactory,
) -> None:
    w = make_world(rate=7200, count=30, seed=3)
    w.restart_tracking(100)
    log = Log()
    run(w, 6, log)
    gt = w.ground_truth()
    riding = {i: int(gt.tracking_id[i]) for i in range(len(gt))}  # nothing is armed: all ride
    assert len(riding) >= 8 and set(riding.values()) == set(range(1, len(riding) + 1))
    power_cycle(w, 200, log=log)
    cut_at = w.time_s
    with pytest.raises(KeyError):
        w.parcel_label(1)  # the PLC knows no parcel yet
    run(w, 40, log)  # more than a lap (24 s): every riding parcel passes the induct eye again
    after = [e for e in log.inducts if e[0] > cut_at]
    assert [e[2] for e in after] == list(range(1, len(after) + 1))  # 1, 2, 3, ... in eye order
    assert {e[1] for e in after} == {200}
    gt = w.ground_truth()
    assert len(gt) == 30 and (gt.state == 0).all()
    for i, old in riding.items():
        assert gt.boot_id[i] == 200 and gt.prior_keys[i] == ((100, old),)
        assert w.parcel_label(int(gt.tracking_id[i]))[0] == gt.parcel_id[i]  # labels by the new id
    fresh = [i for i in range(30) if i not in riding]
    assert all(gt.boot_id[i] == 200 and gt.prior_keys[i] == () for i in fresh)
    keys = [(int(b), int(t)) for b, t in zip(gt.boot_id, gt.tracking_id, strict=True)]
    keys += [k for ks in gt.prior_keys for k in ks]
    assert len(set(keys)) == len(keys) == 30 + len(riding)
    # a re-acquired parcel's induct entry has both edges, as for a new parcel
    by_tid = {e[2]: e for e in after}
    for i in riding:
        lead, trail = by_tid[int(gt.tracking_id[i])][3:]
        assert abs(((trail - lead) & MASK) - gt.length_mm[i] * w.cpm) <= 1
    # scans after the cut: only for parcels tracked in the new boot, each after its induct entry,
    # and a re-acquired parcel's first scan under its new id is lap 0 (the PLC's count)
    given_at = {e[2]: e[0] for e in after}
    for t, boot, tid, lap, i in (s for s in log.scans if s[0] > cut_at):
        assert boot == 200 and given_at[tid] <= t and int(gt.tracking_id[i]) == tid
        if i in riding and t - given_at[tid] < 20:
            assert lap == 0
    for i in riding:  # no scan for it between the cut and its new id
        assert not [s for s in log.scans if s[4] == i and cut_at < s[0] < given_at[int(gt.tracking_id[i])]]
    assert (gt.laps[list(riding)] >= 1).all()  # the truth counts physical passes


def test_an_arm_from_before_the_cut_fires_by_position_and_the_truth_names_parcel_and_key(
    make_world: WorldFactory,
) -> None:
    w = make_world(rate=3600, count=1)
    w.restart_tracking(100)
    oracle = OracleArm(w, lambda tid: 24)  # 33.6 m down the loop: armed well before it gets there
    log = Log()
    while not w.armed:
        log.add(w, oracle.step(0.1))
    power_cycle(w, 200)
    run(w, 20, log)
    gt = w.ground_truth()
    assert gt.state[0] == 1 and gt.chute[0] == 24  # the diverter fired on its own encoder compare
    assert (gt.boot_id[0], gt.tracking_id[0]) == (100, 1)  # it never came round: its key is the old one
    assert (gt.fire_boot_id[0], gt.fire_tracking_id[0]) == (100, 1)
    assert w.fire_parcel[int(gt.fire_id[0])] == 0 and not gt.wrong_parcel().any()


def test_an_arm_for_an_earlier_key_that_fires_after_re_acquisition_took_the_right_parcel(
    make_world: WorldFactory,
) -> None:
    w = make_world(rate=3600, count=1)
    w.restart_tracking(100)
    log = Log()
    while not log.scans:
        run(w, 0.1, log)
    tid = log.scans[0][2]
    _, _, _, lead, trail = log.inducts[0]
    next_lap = (fire_count_for(w.site, 2, log.counts[0], (trail - lead) & MASK) + round(w.belt_mm * w.cpm)) & MASK
    assert w.arm(2, tid, next_lap) == ArmResult.ARMED  # fire on the parcel's next lap
    power_cycle(w, 200)
    run(w, 30, log)
    gt = w.ground_truth()
    assert gt.state[0] == 1 and gt.chute[0] == 2
    assert gt.boot_id[0] == 200 and gt.prior_keys[0] == ((100, tid),)  # re-acquired before the fire
    assert (gt.fire_boot_id[0], gt.fire_tracking_id[0]) == (100, tid)
    assert not gt.wrong_parcel().any()  # the arm's key is one of the parcel's keys


def test_a_new_parcel_with_a_reused_id_is_not_the_old_one(make_world: WorldFactory) -> None:
    w = make_world(rate=7200, count=12, seed=5)
    w.restart_tracking(100)
    log = Log()
    run(w, 2, log)
    old_label = w.parcel_label(1)
    power_cycle(w, 200)
    run(w, 3, log)
    new_label = w.parcel_label(1)
    assert new_label[0] != old_label[0]
    gt = w.ground_truth()
    holders = [i for i in range(len(gt)) if gt.tracking_id[i] == 1]
    assert [(int(gt.boot_id[i])) for i in holders] == [100, 200]  # same id, two keys, two parcels
    # an arm for id 1 now is noted under the new boot: it is for the new parcel 1
    assert w.arm(20, 1, (w.encoder + 40_000) & MASK) == ArmResult.ARMED
    assert w._arm_boot.tolist() == [200]


def test_on_a_linear_belt_a_lost_parcel_is_never_found_again(make_world: WorldFactory) -> None:
    w = make_world(layout="linear", rate=7200, count=4)
    w.restart_tracking(100)
    log = Log()
    run(w, 3, log)
    n_before = len(w.ground_truth())
    power_cycle(w, 200)
    run(w, 40, log)
    gt = w.ground_truth()
    assert (gt.chute == w.site.reject_chute.id).all()  # end of line, nobody armed
    assert all(gt.boot_id[i] == 100 and gt.prior_keys[i] == () for i in range(n_before))


def test_the_tick_size_does_not_change_keys_or_outcomes_across_a_power_cycle(make_world: WorldFactory) -> None:
    outcomes = []
    for dt in (0.02, 0.1, 0.25):
        w = make_world(rate=20000, count=80, seed=3)
        w.restart_tracking(1)
        oracle = OracleArm(w, lambda tid: 1 + (tid * 7) % 26)
        log = Log()
        run(w, 10, log, oracle, dt)
        power_cycle(w, 2, 1.0, dt=dt)
        run(w, 70, log, oracle, dt)
        gt = w.ground_truth()
        assert gt.prior_keys != ((),) * len(gt)  # some were renumbered
        outcomes.append((gt.tracking_id.tolist(), gt.boot_id.tolist(), gt.prior_keys, gt.chute.tolist()))
    assert outcomes[0] == outcomes[1] == outcomes[2]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cuts=st.lists(st.tuples(st.floats(0.5, 30.0), st.floats(0.0, 3.0)), min_size=1, max_size=4),
    rate=st.sampled_from([7200.0, 20000.0]),
    dt=st.sampled_from([0.05, 0.2]),
)
def test_keys_stay_unique_ids_count_from_1_per_boot_and_no_fire_takes_a_stranger(
    make_world: WorldFactory, cuts: list[tuple[float, float]], rate: float, dt: float
) -> None:
    w = make_world(rate=rate, count=60, seed=11)
    w.restart_tracking(1)
    oracle = OracleArm(w, lambda tid: 1 + tid % 24)
    log = Log()
    boot = 1
    for run_s, off_s in cuts:
        run(w, run_s, log, oracle, dt)
        boot += 1
        power_cycle(w, boot, off_s)
    run(w, 60, log, oracle, dt)
    gt = w.ground_truth()
    keys = [(int(b), int(t)) for b, t in zip(gt.boot_id, gt.tracking_id, strict=True)]
    keys += [k for ks in gt.prior_keys for k in ks]
    assert len(set(keys)) == len(keys)
    for b in range(1, boot + 1):
        ids = [e[2] for e in log.inducts if e[1] == b]
        assert ids == sorted(set(ids))  # reported in order, once each (a cut may drop the last)...
        given = sorted({t for bb, t in keys if bb == b})
        assert given == list(range(1, len(given) + 1))  # ...and no id skipped or given twice
    for _t, b, tid, _lap, i in log.scans:
        assert (int(gt.boot_id[i]), int(gt.tracking_id[i])) == (b, tid) or (b, tid) in gt.prior_keys[i]
    assert not gt.wrong_parcel().any()
    assert set(np.unique(gt.state).tolist()) <= {0, 1}
    assert int(w.landed.sum()) == int((gt.state == 1).sum())

"""Physics of the conveyor world in virtual time, with oracle arms and no protocol."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plant.codes import ArmResult, ChuteStatus
from plant.site import Site
from plc_sim.encoder import MASK
from plc_sim.oracle import OracleArm, fire_count_for
from plc_sim.parcels import LabelKind
from plc_sim.scenario import LabelMix
from plc_sim.world import World

from .conftest import WorldFactory


def run(world: World, seconds: float, dt: float = 0.1, oracle: OracleArm | None = None) -> None:
    for _ in range(round(seconds / dt)):
        if oracle is not None:
            oracle.step(dt)
        else:
            world.step(dt)


def spacing_ok(world: World) -> bool:
    """No two parcels on the belt overlap or sit closer than the min gap (no violations)."""
    on = world._on
    lead = np.mod(world.travel_mm - world._s[on], world.belt_mm)
    order = np.argsort(lead)
    lead, ln = lead[order], world._len[on][order]
    gaps = lead[1:] - ln[1:] - lead[:-1]  # trailing edge of the one ahead minus our lead
    return bool((gaps >= world.min_gap - 1e-6).all())


def test_parcels_land_in_the_chutes_they_were_armed_for(make_world: WorldFactory) -> None:
    w = make_world(rate=7200, count=60)
    oracle = OracleArm(w, lambda tid: 1 + tid % 24)
    run(w, 60, oracle=oracle)
    gt = w.ground_truth()
    assert len(gt) == 60
    assert (gt.state == 1).all()
    assert (gt.chute == 1 + gt.tracking_id % 24).all()
    assert not gt.wrong_parcel().any()
    assert w.stats.confirms == 60
    assert sum(gt.per_chute().values()) == 60


def test_confirmations_carry_the_armed_tracking_id(make_world: WorldFactory) -> None:
    w = make_world(count=5)
    oracle = OracleArm(w, lambda tid: 3)
    confirms: list[tuple[int, int, int, int]] = []
    for _ in range(300):
        confirms += oracle.step(0.1).confirms
    assert [c[0] for c in confirms] == [1, 2, 3, 4, 5]
    assert {c[2] for c in confirms} == {3}
    assert all(c[3] == 0 for c in confirms)


def test_tick_size_does_not_change_where_parcels_land(make_world: WorldFactory) -> None:
    outcomes = []
    for dt in (0.01, 0.1, 0.37):
        w = make_world(rate=20000, count=80, seed=3)
        run(w, 70, dt=dt, oracle=OracleArm(w, lambda tid: 1 + (tid * 7) % 26))
        gt = w.ground_truth()
        outcomes.append((gt.chute.tolist(), np.round(w._s[: len(gt)], 6).tolist()))
    assert outcomes[0] == outcomes[1] == outcomes[2]


def test_an_arm_after_the_fire_point_is_refused_and_the_parcel_rides_on(
    make_world: WorldFactory, site: Site
) -> None:
    w = make_world(count=1)
    scans: list[tuple[int, int, int]] = []
    while not scans:
        scans += w.step(0.1).scans
    tid, trigger, _ = scans[0]
    # Wait until the parcel has passed chute 1's diverter, then try to arm it.
    run(w, 2.0)
    fc = fire_count_for(site, 1, trigger, 120)
    assert w.arm(1, tid, fc) == ArmResult.TOO_LATE
    run(w, 10)
    gt = w.ground_truth()
    assert gt.state[0] == 0 and w.stats.fires == 0


def test_arms_for_unknown_or_disabled_chutes_are_refused(make_world: WorldFactory) -> None:
    w = make_world(count=0)
    assert w.arm(999, 1, w.encoder + 10_000) == ArmResult.UNKNOWN_CHUTE
    w.disabled[w.chute_index(4)] = True  # type: ignore[index]
    assert w.arm(4, 1, w.encoder + 10_000) == ArmResult.CHUTE_UNAVAILABLE
    assert w.chute_status()[4] & ChuteStatus.DISABLED
    assert w.arm(5, 1, w.encoder + 10_000) == ArmResult.ARMED
    assert w.cancel(5, 1) == ArmResult.CANCELLED
    assert w.cancel(5, 1) == ArmResult.NOTHING_TO_CANCEL


def test_stuck_diverter_fires_but_the_parcel_rides_on_and_comes_round(make_world: WorldFactory) -> None:
    w = make_world(count=1)
    w.stuck[w.chute_index(2)] = True  # type: ignore[index]
    oracle = OracleArm(w, lambda tid: 2)
    run(w, 30, oracle=oracle)
    gt = w.ground_truth()
    assert w.stats.fires_stuck >= 1
    assert w.stats.confirms == 0
    assert gt.state[0] == 0 and gt.laps[0] >= 1  # still riding, seen again by the scanner


def test_chute_fills_up_reads_full_and_drains(make_world: WorldFactory) -> None:
    w = make_world(rate=7200, count=70)
    k = w.chute_index(1)
    assert k is not None
    w.drain_stopped[k] = True
    run(w, 60, oracle=OracleArm(w, lambda tid: 1))
    assert w.fill[k] == 70
    assert w.chute_status()[1] & ChuteStatus.FULL
    assert w.stats.overflow == 10
    w.drain_stopped[k] = False  # 40 per minute
    run(w, 60)
    assert 25 <= w.fill[k] <= 35
    run(w, 60)
    assert w.fill[k] == 0 and not w.chute_status()[1] & ChuteStatus.FULL
    assert w.landed[k] == 70


def test_a_stopped_chute_does_not_drain_on_credit_from_before(make_world: WorldFactory) -> None:
    # an empty, draining chute carries up to one parcel of drain credit; operators stopping
    # (the chute_full fault: filled to capacity at once) must leave it full, not one below
    w = make_world(count=0)
    k = w.chute_index(1)
    assert k is not None
    run(w, 5)
    w.drain_stopped[k] = True
    w.fill[k] = w.capacity[k]
    run(w, 5)
    assert w.fill[k] == w.capacity[k] and w.chute_status()[1] & ChuteStatus.FULL


def test_encoder_wraps_around_2_to_the_32(make_world: WorldFactory) -> None:
    probe = make_world(rate=7200, count=1)
    while not (ev := probe.step(0.1)).inducts:
        pass
    first_lead = ev.inducts[0][1]  # same seed, same stream: put the wrap inside parcel 1
    w = make_world(rate=7200, count=40, encoder_start=(1 << 32) - first_lead - 50)
    inducts: list[tuple[int, int, int]] = []
    oracle = OracleArm(w, lambda tid: 1 + tid % 24)
    for _ in range(600):
        inducts += oracle.step(0.1).inducts
    assert w.encoder < 1 << 31  # it wrapped
    assert any(lead > trail for _, lead, trail in inducts)  # an edge pair straddles the wrap
    assert all(0 < (trail - lead) & MASK < 200 for _, lead, trail in inducts)
    gt = w.ground_truth()
    assert (gt.chute == 1 + gt.tracking_id % 24).all()


def armed_world(make_world: WorldFactory, count: int = 1, rate: float = 3600.0) -> tuple[World, OracleArm]:
    w = make_world(count=count, rate=rate)
    oracle = OracleArm(w, lambda tid: 10)
    while not w.armed:
        oracle.step(0.1)
    return w, oracle


def test_an_encoder_jump_drops_every_arm_unfired_and_reports_it(make_world: WorldFactory) -> None:
    w, oracle = armed_world(make_world)
    w.arm(12, 99, w.encoder + 30_000, seq=7)  # a second pending arm, from ring seq 7
    w.glitch_encoder(5000)  # the count jumps 5 m ahead of the belt: past the first arm's target
    ev = oracle.step(0.1)
    assert ev.encoder_jump == 5000 and ev.fires == 0
    assert sorted(ev.dropped) == [(1, 10, 0), (99, 12, 7)]
    assert w.armed == 0 and w.stats.encoder_faults == 1 and w.stats.arms_dropped_encoder == 2
    assert oracle.step(0.1).encoder_jump == 0  # the new count is the new normal
    run(w, 10)
    assert w.stats.fires == 0
    assert w.ground_truth().state[0] == 0  # it rides on, to be scanned and armed again


def test_a_backward_jump_or_one_on_a_stopped_belt_is_a_fault_too(make_world: WorldFactory) -> None:
    w, _ = armed_world(make_world)
    w.glitch_encoder(-800)
    assert w.step(0.1).encoder_jump == -800 and w.armed == 0
    w2, _ = armed_world(make_world)
    w2.running = False
    w2.glitch_encoder(3000)
    ev = w2.step(0.1)
    assert ev.encoder_jump == 3000 and ev.fires == 0 and w2.armed == 0


def test_belt_motion_and_small_jitter_are_not_faults(make_world: WorldFactory) -> None:
    w, oracle = armed_world(make_world)
    w.glitch_encoder(round(w.encoder_tolerance_mm * w.cpm) - 1)  # within the tolerance
    assert oracle.step(0.01).encoder_jump == 0
    assert w.armed == 1
    for dt in (0.5, 0.001, 0.3):  # catch-up steps and short ones
        assert w.step(dt).encoder_jump == 0
    w.running = False
    assert w.step(0.2).encoder_jump == 0
    w.running = True
    w.speed_setpoint_mps = 4.0
    assert w.step(0.2).encoder_jump == 0
    assert w.stats.encoder_faults == 0


def test_a_glitch_in_dense_traffic_never_diverts_the_wrong_parcel(make_world: WorldFactory) -> None:
    w = make_world(rate=30000, count=150)
    oracle = OracleArm(w, lambda tid: 1 + tid % 24)
    run(w, 20, oracle=oracle)
    assert w.armed > 5
    w.glitch_encoder(300)  # about one parcel pitch: every early fire would take the parcel ahead
    run(w, 120, oracle=oracle)
    gt = w.ground_truth()
    assert w.stats.encoder_faults == 1 and w.stats.arms_dropped_encoder > 5
    assert not gt.wrong_parcel().any()
    assert (gt.state == 1).all() and (gt.chute == 1 + gt.tracking_id % 24).all()
    assert (gt.laps > 0).sum() >= w.stats.arms_dropped_encoder  # the dropped ones came round


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    counts=st.integers(-20_000, 20_000).filter(lambda c: abs(c) > 40),  # tolerance 20 + 10% of 125
    after_s=st.floats(0.0, 6.0),
)
def test_any_jump_beyond_the_tolerance_fires_nothing_armed_before_it(
    make_world: WorldFactory, counts: int, after_s: float
) -> None:
    w = make_world(rate=12000, count=40)
    oracle = OracleArm(w, lambda tid: 1 + tid % 24)
    run(w, 12 + after_s, dt=0.05, oracle=oracle)
    pending = w.armed
    fires = w.stats.fires
    w.glitch_encoder(counts)
    ev = oracle.step(0.05)
    assert ev.encoder_jump == counts and len(ev.dropped) == pending and ev.fires == 0
    assert w.stats.fires == fires
    run(w, 10, dt=0.05, oracle=oracle)
    assert not w.ground_truth().wrong_parcel().any()


def test_linear_belt_drops_unarmed_parcels_into_the_reject_chute(make_world: WorldFactory) -> None:
    w = make_world(layout="linear", count=5)
    run(w, 40)
    gt = w.ground_truth()
    assert (gt.chute == w.site.reject_chute.id).all()
    assert w.stats.end_of_line == 5


def test_induct_merges_only_into_free_gaps_and_queues_otherwise(make_world: WorldFactory) -> None:
    # Nothing is armed: everything recirculates, the loop fills and the induct must wait.
    w = make_world(rate=40000, count=None)
    for _ in range(60):
        run(w, 5)
        assert spacing_ok(w)
    assert w.backlog > 100
    assert w.stats.gap_violations == 0


def test_gap_violations_are_reported(make_world: WorldFactory) -> None:
    w = make_world(rate=20000, count=200, gap_violation=0.2)
    run(w, 60)
    gt = w.ground_truth()
    assert w.stats.gap_violations == int(gt.gap_violation.sum()) > 10


def test_label_mix_reaches_ground_truth(make_world: WorldFactory) -> None:
    w = make_world(rate=20000, count=400, labels=LabelMix(missing=0.1, double=0.1, unknown_id=0.1))
    run(w, 120)
    gt = w.ground_truth()
    frac = np.bincount(gt.label, minlength=5) / len(gt)
    assert 0.05 < frac[LabelKind.MISSING] < 0.15
    dbl = gt.label == LabelKind.DOUBLE
    assert all(gt.second_id[i] and gt.second_id[i] != gt.parcel_id[i] for i in np.flatnonzero(dbl))
    assert all(gt.parcel_id[i].startswith("UN") for i in np.flatnonzero(gt.label == LabelKind.UNKNOWN_ID))


def test_jam_clearing_takes_the_parcel_off_the_belt(make_world: WorldFactory) -> None:
    w = make_world(count=1)
    while w.parcels_on_belt() == 0:
        w.step(0.1)
    w.jam(1)
    w.running = False
    assert w.clear_jam() == 1
    gt = w.ground_truth()
    assert gt.state[0] == 2 and w.stats.lost == 1


arm_plan = st.lists(
    st.tuples(
        st.integers(1, 30),  # tracking id
        st.sampled_from([1, 2, 5, 12, 24, 29, 999]),  # chute
        st.integers(-400, 400),  # error in the fire count, counts
        st.floats(0, 40),  # when the arm is sent, s
    ),
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=arm_plan, stuck=st.booleans(), dt=st.sampled_from([0.05, 0.2]))
def test_every_parcel_ends_in_exactly_one_place(
    make_world: WorldFactory, plan: list[tuple[int, int, int, float]], stuck: bool, dt: float
) -> None:
    w = make_world(rate=30000, count=30)
    if stuck:
        w.stuck[w.chute_index(5)] = True  # type: ignore[index]
    triggers: dict[int, int] = {}
    pending = sorted(plan, key=lambda p: p[3])
    armed: set[tuple[int, int]] = set()
    for _ in range(round(60 / dt)):
        ev = w.step(dt)
        for tid, count, lap in ev.scans:
            if lap == 0:
                triggers[tid] = count
        while pending and pending[0][3] <= w.time_s:
            tid, chute, err, _ = pending.pop(0)
            if tid in triggers and w.chute_index(chute) is not None:
                fc = fire_count_for(w.site, chute, triggers[tid], 120) + err
                if w.arm(chute, tid, fc & MASK) == ArmResult.ARMED:
                    armed.add((tid, chute))
    gt = w.ground_truth()
    assert len(gt) + gt.waiting == 30
    # One place each: on the belt, in exactly one chute, or lost; counts agree with the chutes.
    in_chute = gt.state == 1
    assert set(np.unique(gt.state)) <= {0, 1}
    assert (gt.chute[in_chute] > 0).all() and (gt.chute[~in_chute] == 0).all()
    assert int(w.landed.sum()) == int(in_chute.sum()) == w.stats.confirms
    assert w.parcels_on_belt() == int((gt.state == 0).sum())
    # Nobody is diverted without an arm for that chute (perhaps for a neighbour's tracking id).
    for i in np.flatnonzero(in_chute):
        f = int(gt.fire_id[i])
        assert f >= 0
        assert (w.fire_tid[f], w.fire_chute[f]) in armed
        assert w.fire_chute[f] == gt.chute[i] and w.fire_parcel[f] == i
    # The stuck diverter never moved a parcel.
    if stuck:
        assert 5 not in gt.per_chute()


def test_arrivals_from_the_first_run_do_not_pile_up_while_the_belt_waits(make_world: WorldFactory) -> None:
    # 10 s with the belt stopped (a controller starting): from the simulator's start 100 parcels
    # would be waiting at the induct, released at the belt's full rate; from the first run none
    waiting = make_world(rate=36_000, count=None, running=False)
    later = make_world(rate=36_000, count=None, running=False, from_first_run=True)
    run(waiting, 10)
    run(later, 10)
    assert waiting.backlog >= 95
    assert later.backlog == 0 and later.stats.inducted == 0
    later.running = True
    run(later, 10)
    # then parcels come at the rate offered (10 a second), counted from the belt's first run
    assert 95 <= later.stats.inducted + later.backlog <= 105

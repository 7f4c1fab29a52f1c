"""Tracking table: encoder wrap-around, fire counts, arm horizon, overdue confirmations, glitches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from control.lifecycle import ParcelState
from control.tracking import Geometry, TrackingTable, sdiff, sdiff_arr, wrap
from plant.site import load_site

P = ParcelState
SITE = load_site(Path(__file__).resolve().parents[2] / "config" / "site.yaml")
u32 = st.integers(0, 2**32 - 1)
dist = st.integers(-(2**31), 2**31 - 1)


@given(u32, dist)
def test_sdiff_inverts_wrapped_addition(a: int, d: int) -> None:
    assert sdiff(wrap(a + d), a) == d
    assert sdiff_arr([wrap(a + d)], [a]).tolist() == [d]


@given(st.lists(st.tuples(u32, dist), min_size=1, max_size=64))
def test_vector_and_scalar_agree(pairs: list[tuple[int, int]]) -> None:
    a = np.array([p[0] for p in pairs], dtype=np.uint32)
    b = np.array([wrap(p[0] + p[1]) for p in pairs], dtype=np.uint32)
    assert sdiff_arr(b, a).tolist() == [p[1] for p in pairs]


def table() -> TrackingTable:
    return TrackingTable(Geometry.from_site(SITE, arm_horizon_mm=2500), capacity=64)


@given(u32, st.integers(100, 600), st.sampled_from([c.id for c in SITE.chutes]), st.integers(0, 2))
def test_fire_count_formula_across_wrap(lead: int, length: int, chute: int, lap: int) -> None:
    t = table()
    trail = wrap(lead + length)
    i = t.induct(7, lead, trail)
    assert i is not None
    trigger = wrap(lead + 3000 + lap * 60000)
    assert t.scan(7, trigger, lap, now=0.0, deadline=1.0) == i
    assert t.trusted[i]
    assert t.route(i, chute, 0)
    pos = SITE.chute(chute).diverter.position_mm
    want = wrap(lead + length // 2 + int(pos) + lap * 60000)
    assert t.fire_count(i) == want


def test_arm_due_within_horizon_and_too_late() -> None:
    t = table()
    lead = 2**32 - 1000  # the parcel's journey crosses the counter's wrap
    i = t.induct(1, lead, wrap(lead + 400))
    assert i is not None
    t.scan(1, wrap(lead + 3000), 0, 0.0, 1.0)
    t.route(i, 24, 0)  # diverter at 33600 mm
    fire = t.fire_count(i)
    assert t.cycle(wrap(fire - 2600)).arm_due.size == 0  # beyond the horizon
    assert t.cycle(wrap(fire - 2400)).arm_due.tolist() == [i]
    m = t.cycle(wrap(fire - 100))  # inside the minimum lead: too late
    assert m.arm_due.size == 0 and m.too_late.tolist() == [i]


def test_overdue_confirmation_is_missed_and_lost_after_a_lap() -> None:
    t = table()
    i = t.induct(5, 1000, 1400)
    assert i is not None
    t.scan(5, 4000, 0, 0.0, 1.0)
    t.route(i, 1, 0)
    t.transition(np.array([i]), P.ARMED)
    fire = t.fire_count(i)
    assert t.cycle(fire + 1000).overdue.size == 0
    assert t.cycle(fire + 1600).overdue.tolist() == [i]
    t.transition(np.array([i]), P.MISSED)
    t.transition(np.array([i]), P.RECIRCULATED)
    assert t.cycle(4000 + 60000).lost.size == 0
    assert t.cycle(4000 + 60000 + 1600).lost.tolist() == [i]


def test_disagreeing_anchors_are_never_armed() -> None:
    t = table()
    i = t.induct(9, 0, 400)
    assert i is not None
    t.scan(9, 3000 + 500, 0, 0.0, 1.0)  # scanner saw it 500 counts late: something slipped
    assert not t.trusted[i]
    t.route(i, 1, 0)
    fire = t.fire_count(i)
    assert t.cycle(wrap(fire - 1000)).arm_due.size == 0
    assert t.cycle(wrap(fire - 100)).too_late.tolist() == [i]


def test_glitch_untrusts_and_reanchors_next_lap() -> None:
    t = table()
    i = t.induct(3, 0, 400)
    assert i is not None
    t.scan(3, 3000, 0, 0.0, 1.0)
    t.route(i, 1, 0)
    t.transition(np.array([i]), P.ARMED)
    assert t.encoder_glitch().tolist() == [i]
    t.transition(np.array([i]), P.RECIRCULATED)
    # next lap the encoder is 700 counts ahead of where it was: first scan re-anchors, untrusted
    t.scan(3, 3000 + 60000 + 700, 1, 0.0, 1.0)
    assert not t.trusted[i]
    t.transition(np.array([i]), P.RECIRCULATED)
    t.scan(3, 3000 + 2 * 60000 + 700, 2, 0.0, 1.0)
    assert t.trusted[i]


def test_replayed_induct_and_stale_scan_ignored() -> None:
    t = table()
    assert t.induct(4, 0, 300) is not None
    assert t.induct(4, 0, 300) is None
    assert t.scan(4, 3000, 0, 0.0, 1.0) is not None
    assert t.scan(4, 3000, 0, 0.0, 1.0) is None
    assert len(t) == 1


def test_illegal_transition_refused() -> None:
    t = table()
    i = t.induct(8, 0, 300)
    assert i is not None
    assert t.transition(np.array([i]), P.SORTED).size == 0
    assert t.state[i] == P.INDUCTED


def test_release_frees_slots() -> None:
    t = table()
    slots = [t.induct(k, k * 1000, k * 1000 + 300) for k in range(1, 65)]
    assert None not in slots
    t.state[:] = P.LOST
    t.release(t.final_slots())
    assert len(t) == 0
    assert t.induct(100, 0, 300) is not None


def _next_lap(t: TrackingTable, tid: int, trigger: int, lap: int) -> int:
    i = t.get(tid)
    assert i is not None
    t.transition(np.array([i]), P.RECIRCULATED)
    j = t.scan(tid, trigger, lap, 0.0, 1.0)
    assert j == i
    return j


def test_scan_latched_before_a_glitch_is_not_kept_as_the_anchor() -> None:
    # the trigger was latched just before the jump but read after the glitch was seen: the
    # scan adopts it (untrusted); next lap the trigger is in the new coordinates and disagrees
    # with that stale anchor, so the parcel must re-anchor again and be trusted the lap after
    t = table()
    i = t.induct(5, 0, 400)
    assert i is not None
    t.encoder_glitch()
    assert t.scan(5, 3000, 0, 0.0, 1.0) == i
    assert not t.trusted[i]
    jump = 700
    _next_lap(t, 5, 3000 + 60000 + jump, 1)
    assert not t.trusted[i]  # disagrees with the anchor it had: re-anchored, not yet trusted
    _next_lap(t, 5, 3000 + 2 * 60000 + jump, 2)
    assert t.trusted[i]
    t.route(i, 1, 0)
    assert t.fire_count(i) == wrap(jump + 200 + int(t.g.diverter_counts[1]) + 2 * 60000)


def test_induct_latched_before_a_glitch_reanchors_at_the_scanner() -> None:
    # the induct edges were latched before the jump and read after it was detected
    t = table()
    t.encoder_glitch()
    i = t.induct(6, 0, 400)
    assert i is not None
    t.scan(6, 3000 + 900, 0, 0.0, 1.0)  # disagrees by the jump
    assert not t.trusted[i]
    _next_lap(t, 6, 3000 + 900 + 60000, 1)
    assert t.trusted[i]


def test_anchors_that_keep_disagreeing_are_never_trusted() -> None:
    # a parcel slipping on the belt every lap never gets two scans that agree
    t = table()
    i = t.induct(7, 0, 400)
    assert i is not None
    t.scan(7, 3000, 0, 0.0, 1.0)
    for lap in range(1, 5):
        _next_lap(t, 7, 3000 + lap * 60000 + 300 * lap, lap)
        assert not t.trusted[i]


def test_a_forward_jump_does_not_make_waiting_parcels_lost() -> None:
    # expected at the scanner at 3000; the encoder jumps 5000 forward: not lost on that count
    t = table()
    i = t.induct(11, 0, 400)
    assert i is not None
    t.encoder_glitch()
    assert t.cycle(3000 + 5000).lost.size == 0
    # but a parcel that never shows up is still lost, a lap later
    assert t.cycle(3000 + 60000 + 1600).lost.tolist() == [i]


def test_glitch_cancels_arms_already_on_their_way() -> None:
    t = table()
    a = t.induct(12, 0, 400)
    b = t.induct(13, 1000, 1400)
    assert a is not None and b is not None
    for tid, trig in ((12, 3000), (13, 4000)):
        t.scan(tid, trig, 0, 0.0, 1.0)
    t.route(a, 1, 0)
    t.route(b, 2, 0)
    t.arm_seq[a] = 7  # arm command written, result not back yet
    assert t.encoder_glitch().tolist() == [a]
    assert not t.trusted[b]

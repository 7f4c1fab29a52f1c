"""The routing engine against the per-parcel reference, and the behaviours the controller needs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.routing.engine import RoutingEngine
from control.routing.ids import s10_check_digit
from control.routing.manifest import HEADER, load_manifest
from control.routing.plan import Rule, SortPlan, parse_plan
from control.routing.reasons import ReadStatus, Reason
from control.routing.settings import RoutingSettings
from harness.generate import synthetic_site
from harness.reference import ReferenceRouter, read_records
from plant.site import Site

from .conftest import World, make_world

SMALL = RoutingSettings(block=64)


def sid(n: int) -> str:
    """A valid S10 id with serial ``n``."""
    s = f"{n:08d}"
    return f"CP{s}{s10_check_digit(s)}DE"


def _start(w: World) -> float:
    return float(np.nanmin(w.manifest.arrival))


# One step of a controller session: route some parcels, then feed back outcomes.
STEP = st.tuples(
    st.lists(st.integers(0, 10_000), min_size=1, max_size=150),  # parcel picks (index into ids)
    st.integers(0, 3),  # how to feed back: 0 none, 1 confirm all, 2 miss some, 3 confirm + drain
    st.integers(0, 5 * 3600),  # time advance
    st.booleans(),  # take a chute out of service
)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> list[World]:
    tmp = tmp_path_factory.mktemp("worlds")
    return [make_world(tmp, seed=s, capacity=c) for s, c in ((3, 8), (4, 25))]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 1), st.lists(STEP, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_batch_equals_one_by_one_equals_reference(worlds: list[World], which: int, steps: list, rnd) -> None:  # type: ignore[no-untyped-def,type-arg]
    w = worlds[which]
    batch = RoutingEngine(w.site, w.plan, w.manifest, SMALL)
    single = RoutingEngine(w.site, w.plan, w.manifest, SMALL)
    ref = ReferenceRouter(w.site, w.plan, w.records, SMALL)
    ids = [w.manifest.parcel_id(i) for i in range(len(w.manifest))] + ["RR000000000GB", ""]
    now = _start(w)
    for picks, feedback, advance, outage in steps:
        now += advance
        if outage:
            mask = batch.available.copy()
            c = rnd.choice([c.id for c in w.site.chutes])
            mask[c] = not mask[c]
            for e in (batch, single):
                e.set_available(mask)
            ref.available[c] = bool(mask[c])
        chosen = [ids[p % len(ids)] for p in picks]
        reads = [ReadStatus.NO_READ if p % 97 == 0 else ReadStatus.MULTI_READ if p % 89 == 0 else 0 for p in picks]
        recirc = [3 if p % 83 == 0 else p % 2 for p in picks]
        rows = np.array([w.manifest.row_of(i) if i else -1 for i in chosen], np.int64)
        d = batch.route(rows, now, read=reads, recirculations=recirc)
        for i, pid in enumerate(chosen):
            want = ref.route(pid or None, now, reads[i], recirc[i])
            one = single.route_one(int(rows[i]), now, reads[i], recirc[i])
            got = (int(d.chute[i]), Reason(int(d.reason[i])))
            assert got == want == one[:2], (i, pid)
            assert one[2] == int(d.group[i])
        # Feedback, identical for all three.
        for i, pid in enumerate(chosen):
            c, g = int(d.chute[i]), int(d.group[i])
            if feedback in (1, 3) or (feedback == 2 and i % 3):
                batch.confirm(c, c, g)
                single.confirm(c, c, g)
                ref.confirm(pid or None, c, c)
            elif feedback == 2:
                for e in (batch, single):
                    e.missed(c)
                ref.missed(c)
        if feedback == 3:
            c = rnd.choice([c.id for c in w.site.chutes])
            batch.drained(c)
            single.drained(c)
            ref.drained(c)
        assert (batch.load() == single.load()).all()
        for c in w.site.chutes:
            assert batch.load()[c.id] == ref.pending[c.id] + ref.filled[c.id]
            if c.id != batch.st.reject:
                assert batch.load()[c.id] <= c.capacity


# One step of a consolidation session: a batch of this many parcels (manifest rows drawn from
# the seed), then all confirmed or not.
GROUP_STEP = st.tuples(st.integers(1, 300), st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.integers(1, 300),  # groups: few (large groups) to many (most parcels open one)
    st.floats(0.2, 1.0),  # share of manifest rows in a group
    st.integers(1, 30),  # chute capacity: small fills chutes mid-batch
    st.lists(st.integers(1, 12), max_size=6),  # chutes out of service: pools with no usable chute
    st.lists(GROUP_STEP, min_size=1, max_size=4),
    st.integers(0, 2**32 - 1),
)
def test_consolidation_batch_equals_one_by_one(
    world: World, n_groups: int, share: float, capacity: int, down: list[int], steps: list, seed: int  # type: ignore[type-arg]
) -> None:
    """Many new groups per batch, members of one group under different rules, full and
    unavailable pool chutes, blocks of 64 restarting often: the batch opens the same groups
    on the same chutes as routing the parcels one by one."""
    m = world.manifest
    rng = np.random.default_rng(seed)
    group = np.where(rng.random(len(m)) < share, rng.integers(0, n_groups, len(m)), -1).astype(np.int32)
    mm = replace(m, group=group, group_names=[f"G{i}" for i in range(n_groups)])
    batch = RoutingEngine(world.site, world.plan, mm, SMALL)
    single = RoutingEngine(world.site, world.plan, mm, SMALL)
    mask = batch.available.copy()
    mask[down] = False
    for e in (batch, single):
        e.st.capacity[:] = np.minimum(e.st.capacity, capacity)
        e.set_available(mask)
    now = _start(world)
    for size, confirm in steps:
        rows = rng.integers(0, len(m), size)
        d = batch.route(rows, now)
        for i, row in enumerate(rows.tolist()):
            got = (int(d.chute[i]), Reason(int(d.reason[i])), int(d.group[i]))
            assert got == single.route_one(row, now), i
        assert (batch.group_chute == single.group_chute).all()
        assert (batch.group_slot == single.group_slot).all()
        assert (batch.slot_load == single.slot_load).all()
        assert (batch.load() == single.load()).all()
        if confirm:
            for e in (batch, single):
                e.confirm(d.chute, d.chute, d.group)


def test_groups_placed_for_the_whole_batch_until_a_pool_chute_fills(world: World) -> None:
    """Every pool chute is usable at the start of the batch, so the batch places its new groups
    once for all its blocks; pool chutes then fill up mid-batch, so the blocks from there on
    take those placements back and place their own. Decisions and group state equal routing
    one by one, whatever the block size."""
    m = world.manifest
    rng = np.random.default_rng(5)
    n_groups = 150
    group = np.where(rng.random(len(m)) < 0.7, rng.integers(0, n_groups, len(m)), -1).astype(np.int32)
    mm = replace(m, group=group, group_names=[f"G{i}" for i in range(n_groups)])
    pool_chutes = sorted({c for r in world.plan.rules for c in r.chutes})
    rows = np.concatenate([rng.permutation(len(m)), rng.permutation(len(m))])
    now = _start(world)
    for block in (64, 200, 4096):
        batch = RoutingEngine(world.site, world.plan, mm, RoutingSettings(block=block))
        single = RoutingEngine(world.site, world.plan, mm, RoutingSettings(block=block))
        for e in (batch, single):
            e.st.capacity[:] = np.minimum(e.st.capacity, 30)
        assert (batch.load()[pool_chutes] < batch.st.capacity[pool_chutes]).all()
        d = batch.route(rows, now)
        assert (batch.load()[pool_chutes] >= batch.st.capacity[pool_chutes]).any()  # some filled mid-batch
        for i, row in enumerate(rows.tolist()):
            assert (int(d.chute[i]), Reason(int(d.reason[i])), int(d.group[i])) == single.route_one(row, now), i
        assert (batch.group_chute == single.group_chute).all()
        assert (batch.group_slot == single.group_slot).all()
        assert (batch.slot_load == single.slot_load).all()
        assert (batch.load() == single.load()).all()


def test_group_opens_by_a_later_member_of_another_rule(tmp_path: Path, example_site: Site) -> None:
    """A group whose first parcel finds its pool unusable stays closed; a later parcel of the
    group under another rule opens it, and the members after it follow."""
    p = tmp_path / "m.csv"
    p.write_text(
        ",".join(HEADER) + "\n"
        f"{sid(1)},GB,AB1,,G1,2026-11-23T14:00:00Z,,1,1,1,1\n"
        f"{sid(2)},GB,AB2,,G1,2026-11-23T14:00:00Z,,1,1,1,1\n"
        f"{sid(3)},GB,CD1,,G1,2026-11-23T14:00:00Z,,1,1,1,1\n"
        f"{sid(4)},GB,AB3,,G1,2026-11-23T14:00:00Z,,1,1,1,1\n"
    )
    m = load_manifest(p)
    plan = parse_plan("destination_id,country,postal_prefix,chutes,priority_chute\n,GB,AB,3|4,\n,GB,CD,5|6,\n")
    out = []
    for one_by_one in (False, True):
        e = RoutingEngine(example_site, plan, m)
        mask = e.available.copy()
        mask[[3, 4]] = False
        e.set_available(mask)
        if one_by_one:
            out.append([e.route_one(i, 0.0)[:2] for i in range(4)])
        else:
            d = e.route(np.arange(4), 0.0)
            out.append([(int(c), Reason(int(r))) for c, r in zip(d.chute, d.reason, strict=True)])
        assert int(e.group_chute[0]) == 5
    assert out[0] == out[1]
    assert [c for c, _ in out[0]] == [29, 29, 5, 5]  # pool 3|4 down, its fallbacks too: reject


def test_consolidation_keeps_groups_together_and_releases_on_completion(world: World) -> None:
    e = RoutingEngine(world.site, world.plan, world.manifest, RoutingSettings(priority_margin_min=0))
    m = world.manifest
    e.st.capacity[:] = 10_000  # plenty of room: only grouping decides
    rows = np.arange(len(m))
    d = e.route(rows, 0.0)
    grouped = (m.group >= 0) & (d.reason == Reason.CONSOLIDATED)
    for g in np.unique(m.group[grouped]):
        assert len(np.unique(d.chute[grouped & (m.group == g)])) == 1
    # Every member confirmed -> every group released.
    assert (e.group_chute > 0).any()
    e.confirm(d.chute, d.chute, d.group)
    assert (e.group_chute == 0).all() and (e.slot_load == 0).all()


def test_exception_chutes_and_reasons(tmp_path: Path, example_site: Site) -> None:
    p = tmp_path / "m.csv"
    p.write_text(
        ",".join(HEADER) + "\n"
        "RR123456785CN,GB,SW1A1AA,,,2026-11-23T14:00:00Z,,300,200,100,1\n"
        f"{sid(1)},GB,SW1A1AA,,,2026-11-23T14:00:00Z,,900,200,100,1\n"
        f"{sid(2)},ZZ,1,,,2026-11-23T14:00:00Z,,300,200,100,1\n"
        f"{sid(3)},GB,SW1A1AA,,,2026-11-23T14:00:00Z,,300,200,100,45\n"
    )
    m = load_manifest(p)
    plan = parse_plan("destination_id,country,postal_prefix,chutes,priority_chute\n,GB,SW,3|4,25\n,GB,,5,\n")
    e = RoutingEngine(example_site, plan, m)
    due = float(m.deadline[0])
    early = due - 10 * 3600
    d = e.route([0, 1, 2, 3, -1, 0, 0, 0, 0], early, read=[0, 0, 0, 0, 0, 1, 2, 3, 0], recirculations=[0] * 8 + [3])
    got = [(int(c), Reason(int(r))) for c, r in zip(d.chute, d.reason, strict=True)]
    assert got == [
        (3, Reason.SORTED_BY_RULE), (27, Reason.OVERSIZE), (29, Reason.NO_RULE), (27, Reason.OVERSIZE),
        (29, Reason.UNKNOWN_PARCEL), (28, Reason.NO_READ), (28, Reason.MULTI_READ), (28, Reason.BAD_READ),
        (29, Reason.RECIRCULATION_LIMIT),
    ]
    # Close to its deadline -> the rule's priority chute.
    assert e.route_one(0, due - 600)[:2] == (25, Reason.PRIORITY)
    # AI 420 label without a manifest row: routed on postal code, home country by default.
    assert e.route_one(-1, early, label_key=e.label_key("SW9 9ZZ", None))[:2] == (3, Reason.SORTED_BY_RULE)
    assert e.route_one(-1, early, label_key=e.label_key("75001", "FR"))[:2] == (29, Reason.NO_RULE)


def test_full_and_unavailable_chutes_fall_back(example_site: Site, tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    rows = [f"{sid(s)},GB,1,,,2026-11-23T14:00:00Z,,1,1,1,1" for s in range(130)]
    p.write_text(",".join(HEADER) + "\n" + "\n".join(rows) + "\n")
    m = load_manifest(p)
    plan = SortPlan((Rule("", "GB", "", (1,)),))
    e = RoutingEngine(example_site, plan, m)
    d = e.route(np.arange(130), 0.0)
    # Chute 1 holds 60, its fallback chute 2 holds 60, the rest go to reject, reason FALLBACK_FULL.
    assert (d.chute[:60] == 1).all() and (d.reason[:60] == Reason.SORTED_BY_RULE).all()
    assert (d.chute[60:120] == 2).all() and (d.reason[60:120] == Reason.FALLBACK_FULL).all()
    assert (d.chute[120:] == 29).all() and (d.reason[120:] == Reason.FALLBACK_FULL).all()
    e.confirm(d.chute, d.chute, d.group)  # all arrived: still full
    assert e.route_one(0, 0.0)[:2] == (29, Reason.FALLBACK_FULL)
    e.drained([1, 2])  # bags changed: room again
    mask = e.available.copy()
    mask[1] = False
    e.set_available(mask)
    assert e.route_one(0, 0.0)[:2] == (2, Reason.CHUTE_UNAVAILABLE)


def test_plan_swap_is_atomic_and_keeps_open_groups(world: World) -> None:
    e = RoutingEngine(world.site, world.plan, world.manifest)
    e.st.capacity[:] = 10_000
    m = world.manifest
    d1 = e.route(np.arange(50), 0.0)
    other = SortPlan(tuple(Rule(r.destination_id, r.country, r.prefix, (1,), None, "", r.line) for r in world.plan.rules))
    prepared = e.prepare_plan(other)
    d_mid = e.route(np.arange(50, 60), 0.0)  # still the old plan: preparing changes nothing
    e.swap_plan(prepared)
    d2 = e.route(np.arange(60, len(m)), 0.0)
    assert e.plan is other
    new_groups = np.isin(m.group[60:], m.group[:60], invert=True) & (m.group[60:] >= 0)
    normal = d2.reason == Reason.SORTED_BY_RULE
    assert (d2.chute[normal] == 1).all()
    assert (d2.chute[new_groups & (d2.reason == Reason.CONSOLIDATED)] == 1).all()
    # A group opened before the swap keeps its chute.
    g0 = {int(g): int(c) for g, c, r in zip(d1.group, d1.chute, d1.reason, strict=True) if r == Reason.CONSOLIDATED}
    for g, c, r in zip(d2.group, d2.chute, d2.reason, strict=True):
        if r == Reason.CONSOLIDATED and int(g) in g0:
            assert int(c) == g0[int(g)]
    assert len(d_mid) == 10


def test_bad_dimensions_are_a_reason_not_an_exception(world: World) -> None:
    m = world.manifest
    dims = m.dims.copy()
    dims[0, 0] = -5.0
    dims[1, 1] = np.inf
    dims[2] = np.nan  # unknown: routed normally
    from dataclasses import replace

    e = RoutingEngine(world.site, world.plan, replace(m, dims=dims))
    d = e.route([0, 1, 2, 10**9], 0.0)
    assert Reason(int(d.reason[0])) == Reason.BAD_DATA and Reason(int(d.reason[1])) == Reason.BAD_DATA
    assert Reason(int(d.reason[2])) != Reason.BAD_DATA
    assert int(d.chute[0]) == world.site.reject_chute.id


def test_reference_reads_what_engine_loads(world: World) -> None:
    assert len(read_records(world.path)) == len(world.manifest)


def test_site_without_no_read_chute_rejects_no_reads(world: World) -> None:
    chutes = tuple(c for c in synthetic_site(4).chutes if c.kind != "no_read")
    site = Site(name="x", sorter=synthetic_site(4).sorter, chutes=chutes)
    plan = SortPlan((Rule("", "GB", "", (1,)),))
    e = RoutingEngine(site, plan, world.manifest)
    assert e.route_one(0, 0.0, read=ReadStatus.NO_READ)[:2] == (site.reject_chute.id, Reason.NO_READ)


def test_batch_labels_deadlines_and_reads_equal_one_by_one(world: World) -> None:
    """The batch's overrides (AI 420 labels for unknown ids, per-parcel times, read failures,
    laps) give what route_one gives parcel by parcel."""
    batch = RoutingEngine(world.site, world.plan, world.manifest, SMALL)
    single = RoutingEngine(world.site, world.plan, world.manifest, SMALL)
    m = world.manifest
    rng = np.random.default_rng(5)
    n = 300
    rows = rng.integers(-1, len(m), n)
    rows[rng.random(n) < 0.2] = -1
    keys = np.array([batch.label_key(p, c) for p, c in zip(
        rng.choice(["SW1A1AA", "10115", "75001", "!!", "1"], n), rng.choice(["GB", "DE", "US", ""], n), strict=True)])
    keys[rng.random(n) < 0.3] = -1
    start = _start(world)
    now = start + rng.integers(0, 12 * 3600, n).astype(np.float64)
    read = rng.choice([0, 0, 0, 0, 1, 2, 3, 4], n)
    laps = rng.choice([0, 0, 0, 1, 3], n)
    d = batch.route(rows, now, read, laps, keys)
    for i in range(n):
        one = single.route_one(int(rows[i]), float(now[i]), int(read[i]), int(laps[i]), int(keys[i]))
        assert (int(d.chute[i]), Reason(int(d.reason[i])), int(d.group[i])) == one, i
    assert (batch.load() == single.load()).all()
    seen = {Reason(int(r)) for r in d.reason}
    assert {Reason.PRIORITY, Reason.UNKNOWN_PARCEL, Reason.NO_RULE, Reason.BAD_READ, Reason.RECIRCULATION_LIMIT} <= seen
    by_label = (rows == -1) & (keys >= 0) & (read == 0) & (laps <= 2)
    assert (d.reason[by_label] == Reason.SORTED_BY_RULE).any()


def test_infinite_times_route_like_one_by_one(world: World) -> None:
    batch = RoutingEngine(world.site, world.plan, world.manifest, SMALL)
    single = RoutingEngine(world.site, world.plan, world.manifest, SMALL)
    rows = np.arange(20)
    for now in (-np.inf, np.inf, np.nan):
        d = batch.route(rows, now)
        assert [(int(c), int(r)) for c, r in zip(d.chute, d.reason, strict=True)] == [
            single.route_one(int(i), now)[:2] for i in rows
        ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.booleans(), min_size=13, max_size=13))
def test_starved_rules_are_those_with_no_usable_pool_chute(world: World, usable: list[bool]) -> None:
    e = RoutingEngine(world.site, world.plan, world.manifest)
    e.set_available(np.array(usable))
    ok = e.available
    expected = [r for r, rule in enumerate(world.plan.rules) if not any(ok[c] for c in rule.chutes)]
    assert e.starved_rules() == expected


def test_rule_labels_name_the_destination() -> None:
    assert Rule("", "GB", "", (1,), description="GB default").label == "GB default"
    assert Rule("LOCKER-7", "", "", (1,)).label == "LOCKER-7"
    assert Rule("", "DE", "555", (1,)).label == "DE 555*"
    assert Rule("", "FR", "", (1,)).label == "FR"

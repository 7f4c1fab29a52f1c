"""The HMI's pure parts: histogram quantiles, the incremental tally, the login limiter, sessions,
the chute layout and the command table."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control.store import AlarmRaise, Batch, EventStore
from hmi.auth import LoginLimiter, Sessions
from hmi.commands import CommandError, check
from hmi.histogram import Hist, quantile_between
from hmi.layout import chute_rows
from hmi.tally import Tally
from hmi.users import Role
from hmi.view import StoreView, ViewConfig
from plant.site import load_site
from tests.hmi.storefill import SITE, fill_store


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# ------------------------------------------------------------------------------- histograms
def test_quantile_interpolates_in_its_bucket() -> None:
    h = Hist.parse({"le": [1, 2, 4], "counts": [50, 90, 100], "sum": 120.0, "count": 100})
    assert h is not None
    assert quantile_between(h, None, 0.5) == pytest.approx(1.0)
    assert quantile_between(h, None, 0.95) == pytest.approx(3.0)
    old = Hist.parse({"le": [1, 2, 4], "counts": [50, 50, 50], "sum": 20.0, "count": 50})
    # between the two records every observation fell in (1, 2] or (2, 4]
    assert quantile_between(h, old, 0.5) == pytest.approx(1.0 + 25 / 40)


def test_quantile_beyond_the_last_bound_and_restarts() -> None:
    h = Hist.parse({"le": [1, 2], "counts": [1, 2], "sum": 50.0, "count": 10})
    assert h is not None and quantile_between(h, None, 0.99) == 2.0
    newer_service = Hist.parse({"le": [1, 2], "counts": [1, 1], "sum": 1.0, "count": 1})
    assert newer_service is not None
    assert quantile_between(newer_service, h, 0.5) == pytest.approx(0.5)  # a restart: counts went down


@pytest.mark.parametrize("raw", [None, {}, {"le": [1, 2], "counts": [3]}, {"le": [2, 1], "counts": [1, 2]},
                                 {"le": [1, 2], "counts": [5, 3]}, {"le": ["x"], "counts": [1]}, [1, 2]])
def test_malformed_histograms_are_ignored(raw: object) -> None:
    assert Hist.parse(raw) is None


@given(st.lists(st.integers(0, 50), min_size=1, max_size=8), st.floats(0.01, 1.0))
def test_quantile_stays_within_the_bounds(per_bucket: list[int], q: float) -> None:
    le = [float(2**i) for i in range(len(per_bucket))]
    counts = [float(sum(per_bucket[: i + 1])) for i in range(len(per_bucket))]
    h = Hist.parse({"le": le, "counts": counts, "sum": 0.0, "count": counts[-1]})
    assert h is not None
    v = quantile_between(h, None, q)
    assert (v is None) == (counts[-1] == 0)
    if v is not None:
        assert 0.0 <= v <= le[-1]


# ------------------------------------------------------------------------------- tally
def test_tally_reads_only_new_events_in_chunks(tmp_path: Path) -> None:
    db_path = tmp_path / "e.sqlite"
    store = EventStore(db_path)
    now = time.time()
    try:
        b = Batch()
        for i in range(50):
            b.parcel_event(now - 30 * 3600 + i, i, "sorted", chute=3, reason="sorted_by_rule")  # before the window
        for i in range(40):
            b.parcel_event(now - 120 + i, 100 + i, "rejected" if i % 4 == 0 else "sorted", chute=29 if i % 4 == 0 else 5,
                           reason="no_read" if i % 4 == 0 else "sorted_by_rule")
        store.commit(b)
    finally:
        store.close()
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        tally = Tally(chunk=16)
        assert not tally.advance(db, 90, now)  # one chunk at a time
        while not tally.advance(db, 90, now, max_chunks=3):
            pass
        assert tally.last_id == 90
        assert tally.by_chute() == {3: 50, 5: 30, 29: 10}  # totals: the whole store
        w = tally.window(now - 3600, now)  # buckets: only the window kept
        assert w.kinds["sorted"] == 30 and w.rejected_by_reason == {"no_read": 10} and w.per_chute[29] == 10
        assert tally.advance(db, 90, now)  # nothing new: nothing read
        assert tally.advance(db, 10, now) and tally.last_id == 10  # a fresh store: counted again
    finally:
        db.close()


# ------------------------------------------------------------------------------- login limiter, sessions
def test_limiter_blocks_after_failures_and_forgets_after_the_window() -> None:
    clock = Clock()
    lim = LoginLimiter(max_failures=3, window_s=60.0, clock=clock)
    keys = ["user:ana", "addr:10.0.0.5"]
    for _ in range(3):
        assert lim.retry_after(keys) == 0
        lim.failed(keys)
    assert lim.retry_after(keys) == pytest.approx(60.0)
    assert lim.retry_after(["user:bo", "addr:10.0.0.5"]) > 0  # same address, another name
    lim.succeeded("user:ana")
    assert lim.retry_after(["user:ana"]) == 0 and lim.retry_after(["addr:10.0.0.5"]) > 0
    clock.t += 61
    assert lim.retry_after(keys) == 0


def test_limiter_memory_is_bounded() -> None:
    clock = Clock()
    lim = LoginLimiter(max_keys=100, clock=clock)
    for i in range(1000):
        lim.failed([f"addr:{i}"])
    assert len(lim._failures) <= 101


def test_sessions_expire_when_idle_and_streams_do_not_keep_them() -> None:
    clock = Clock()
    s = Sessions(idle_s=60.0, max_age_s=300.0, clock=clock)
    a = s.create("ana", "tag")
    assert a.token != a.csrf and len(a.token) > 30
    clock.t += 50
    assert s.get(a.token, touch=False) is a
    clock.t += 20  # 70 s since the last real request
    assert s.get(a.token) is None
    b = s.create("bo", "tag")
    for _ in range(7):
        clock.t += 50
        s.get(b.token)
    assert s.get(b.token) is None  # max age, however busy
    assert s.get(None) is None and s.get("forged") is None


# ------------------------------------------------------------------------------- layout, commands
def test_loop_is_folded_in_belt_order() -> None:
    site = load_site(SITE)
    rows = chute_rows(site)
    assert [r[2] for r in rows] == [False, True]
    out, back = rows[0][1], rows[1][1]
    assert [c.id for c in out] == list(range(1, 16)) and [c.id for c in back] == list(range(29, 15, -1))


def test_command_table() -> None:
    assert check("STOP", {}, Role.OPERATOR) == {}
    assert check("CHUTE_OUT", {"chute": "7", "reason": " jam "}, Role.OPERATOR) == {"chute": 7, "reason": "jam"}
    assert check("MODE", {"mode": "maintenance"}, Role.ENGINEER) == {"mode": "MAINTENANCE"}
    assert check("ALARM_SHELVE", {"alarm": 3, "minutes": "15", "reason": "sensor swap"}, Role.OPERATOR)["minutes"] == 15.0
    with pytest.raises(PermissionError):
        check("STOP", {}, Role.VIEWER)
    with pytest.raises(PermissionError):
        check("PLAN_ACTIVATE", {"plan_csv": "x"}, Role.OPERATOR)
    for name, args in (("MODE", {"mode": "TURBO"}), ("CHUTE_IN", {"chute": 0}), ("CHUTE_IN", {"chute": True}),
                       ("ALARM_SHELVE", {"alarm": 3, "minutes": float("nan"), "reason": "x"}),
                       ("CHUTE_OUT", {"chute": 1, "reason": "x" * 201}), ("NOPE", {})):
        with pytest.raises(CommandError):
            check(name, args, Role.ENGINEER)


def test_the_alarms_topic_goes_out_only_when_an_alarm_changes(tmp_path: Path) -> None:
    """The alarms page redraws its table on every alarms message; a table redrawn under an
    operator's click loses it, so a poll that finds no alarm changed must not send the topic."""
    db = tmp_path / "events.sqlite"
    t0 = time.time()
    fill_store(db, t0)
    clock = [t0]
    view = StoreView(ViewConfig(db=db, site=SITE, clock=lambda: clock[0]))
    try:
        assert "alarms" in view.poll(force=True)
        for _ in range(5):  # full re-reads (one a second), nothing written
            clock[0] += 1.5
            changed = view.poll()
            assert "overview" in changed and "alarms" not in changed
        store = EventStore(db)
        try:
            b = Batch()
            b.alarm_ops.append(AlarmRaise(clock[0], "diverter_down", 5, "stop", "no heartbeat"))
            store.commit(b)
        finally:
            store.close()
        clock[0] += 0.1
        changed = view.poll()
        assert "diverter_down" in {a["name"] for a in changed["alarms"]["alarms"]}
    finally:
        view.close()

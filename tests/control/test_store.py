"""Event store: one transaction per batch, idempotent replays, recovery of open parcels; its writer thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from control.service.writer import StoreWriter
from control.store import (
    SCHEMA_VERSION,
    AlarmAck,
    AlarmClear,
    AlarmRaise,
    AlarmShelve,
    Batch,
    Command,
    EventStore,
    ParcelRow,
)


def test_replayed_ring_events_store_nothing_twice(tmp_path: Path) -> None:
    db = EventStore(tmp_path / "e.sqlite")
    b = Batch()
    for seq in (1, 2, 3):
        b.ring("conveyor", "induct", seq, 0.0, {"tracking_id": seq})
    assert db.commit(b) == 3
    b2 = Batch()
    for seq in (2, 3, 4):
        b2.ring("conveyor", "induct", seq, 1.0, {"tracking_id": 99})
    assert db.commit(b2) == 1
    assert db.last_seq("conveyor", "induct") == 4
    assert [d["tracking_id"] for _, d in db.ring_events("conveyor", "induct")] == [1, 2, 3, 99]


def test_wal_mode_and_reopen_recovers_open_parcels(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    db = EventStore(path)
    assert db._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    b = Batch()
    b.parcel(ParcelRow(1, "routed", lap=0, chute=3, reason="plan", lead=10, trail=300))
    b.parcel(ParcelRow(2, "sorted", final=True, chute=4, reason="plan"))
    b.unit_event(0.0, "state", "EXECUTE", 6)
    b.ring("diverter", "arm", 17, 0.0, {"tracking_id": 1})
    db.commit(b)
    db.close()
    db = EventStore(path)
    open_rows = db.parcels(open_only=True)
    assert [(r.tracking_id, r.state, r.chute, r.lead, r.trail) for r in open_rows] == [(1, "routed", 3, 10, 300)]
    assert db.last_seq("diverter", "arm") == 17
    st = db.status()
    assert st.unit_state == "EXECUTE" and st.by_chute == {4: 1} and st.in_flight == 1


def test_failed_batch_rolls_back_entirely(tmp_path: Path) -> None:
    db = EventStore(tmp_path / "e.sqlite")
    b = Batch()
    b.ring("conveyor", "scan", 1, 0.0, {"x": 1})
    b.parcel_events.append((0.0, 1, "routed"))  # type: ignore[arg-type]  # malformed row
    with pytest.raises(sqlite3.Error):
        db.commit(b)
    assert db.last_seq("conveyor", "scan") == 0


def test_batch_merge_keeps_failed_work(tmp_path: Path) -> None:
    failed = Batch()
    failed.ring("conveyor", "scan", 1, 0.0, {})
    failed.parcel(ParcelRow(1, "scanned"))
    nxt = Batch()
    nxt.parcel(ParcelRow(1, "routed"))
    nxt.merge(failed)
    db = EventStore(tmp_path / "e.sqlite")
    db.commit(nxt)
    assert db.parcels()[0].state == "routed"
    assert db.last_seq("conveyor", "scan") == 1


def test_alarms_raise_and_clear(tmp_path: Path) -> None:
    db = EventStore(tmp_path / "e.sqlite")
    b = Batch()
    b.alarm_ops += [AlarmRaise(0.0, "jam", 2, "stop", "eye 2"), AlarmRaise(0.0, "camera_down", 7, "hold", ""),
                    AlarmClear(1.0, "jam")]
    db.commit(b)
    assert db.active_alarms() == {"camera_down": ""}
    jam = next(a for a in db.alarms() if a.name == "jam")
    assert jam.state(2.0) == "unack_cleared"  # cleared, but nobody has acknowledged it yet


def test_alarm_lifecycle_ack_shelve_and_who(tmp_path: Path) -> None:
    db = EventStore(tmp_path / "e.sqlite")
    b = Batch()
    b.alarm_ops.append(AlarmRaise(0.0, "jam", 2, "stop", "eye 2"))
    db.commit(b)
    (jam,) = db.alarms()
    assert jam.state(1.0) == "unack_active"
    b = Batch()
    b.alarm_ops += [AlarmAck(5.0, jam.id, "ana"), AlarmAck(6.0, jam.id, "bo")]  # the first ack stands
    db.commit(b)
    (jam,) = db.alarms()
    assert (jam.state(7.0), jam.acked_t, jam.acked_by) == ("ack_active", 5.0, "ana")
    b = Batch()
    b.alarm_ops.append(AlarmShelve(jam.id, 100.0, "bo", "sensor being replaced"))
    db.commit(b)
    (jam,) = db.alarms()
    assert jam.state(50.0) == "shelved" and jam.state(100.0) == "ack_active"
    assert (jam.shelved_by, jam.shelve_reason) == ("bo", "sensor being replaced")
    b = Batch()
    b.alarm_ops.append(AlarmClear(8.0, "jam"))
    db.commit(b)
    assert db.alarms()[0].state(9.0) == "closed" and db.alarms(open_only=True) == []
    assert [a.name for a in db.alarms(search="eye")] == ["jam"]


def test_an_alarm_raised_again_while_open_is_the_same_alarm(tmp_path: Path) -> None:
    """A service restart re-raises a fault that is still there: it must not become a second alarm
    that someone has to acknowledge again."""
    db = EventStore(tmp_path / "e.sqlite")
    b = Batch()
    b.alarm_ops.append(AlarmRaise(0.0, "jam", 2, "stop", "eye 2"))
    db.commit(b)
    b = Batch()
    b.alarm_ops += [AlarmAck(1.0, db.alarms()[0].id, "ana"), AlarmRaise(2.0, "jam", 2, "stop", "eye 3")]
    db.commit(b)
    (jam,) = db.alarms()
    assert (jam.raised_t, jam.detail, jam.acked_by) == (0.0, "eye 3", "ana")
    b = Batch()
    b.alarm_ops += [AlarmClear(3.0, "jam"), AlarmRaise(4.0, "jam", 2, "stop", "eye 2")]
    db.commit(b)
    assert [a.raised_t for a in db.alarms()] == [4.0, 0.0]  # after it cleared, a new alarm


def test_operator_commands_queue_and_complete_in_a_batch(tmp_path: Path) -> None:
    db = EventStore(tmp_path / "e.sqlite")
    cid = db.add_command("RESET", 0.0)
    assert db.pending_commands() == [Command(cid, "RESET", "", {})]
    chute = db.add_command("CHUTE_OUT", 1.0, user="ana", args={"chute": 7})
    assert db.pending_commands()[1] == Command(chute, "CHUTE_OUT", "ana", {"chute": 7})
    b = Batch()
    b.commands_done.append(("accepted", cid))
    b.commands_done.append(("accepted", chute))
    db.commit(b)
    assert db.pending_commands() == []
    assert [(c[2], c[3]) for c in db.commands()] == [("CHUTE_OUT", "ana"), ("RESET", "")]
    assert db.command_result(cid) == (True, "accepted")


def test_cur_mach_speed_counts_final_outcomes_of_the_last_minute(tmp_path: Path) -> None:
    db = EventStore(tmp_path / "e.sqlite")
    assert db.status().cur_mach_speed == 0.0
    b = Batch()
    b.parcel_event(0.0, 1, "sorted", 0, 3, "sorted_by_rule", "RR123456785CN")  # older than a minute
    for i in range(10):
        b.parcel_event(100.0 + i, 10 + i, "sorted" if i % 2 else "rejected", 0, 3, "r", "")
        b.parcel_event(100.0 + i, 10 + i, "routed", 0, 3, "r", "")  # not a final outcome
    db.commit(b)
    assert db.status().cur_mach_speed == pytest.approx(10 * 60.0)  # 10 per minute = 600/h
    db.close()


async def test_writer_runs_jobs_in_order_on_its_own_thread(tmp_path: Path) -> None:
    w = StoreWriter(tmp_path / "e.sqlite")
    threads: set[int] = set()

    def batch(seq: int) -> Batch:
        b = Batch()
        b.ring("conveyor", "induct", seq, 0.0, {"tracking_id": seq})
        return b

    news = await asyncio.gather(*(w.commit(batch(s)) for s in (1, 2, 2, 3)))
    assert news == [1, 1, 0, 1]
    assert await w.call(lambda s: (threads.add(threading.get_ident()), s.last_seq("conveyor", "induct"))[1]) == 3
    assert threads and threading.get_ident() not in threads
    # a failing job reaches its caller as the store's own error, and the writer goes on
    bad = Batch()
    bad.parcel_events.append((0.0, 1, "x"))  # type: ignore[arg-type]  # wrong arity: sqlite refuses
    with pytest.raises(sqlite3.Error):
        await w.commit(bad)
    assert await w.commit(batch(4)) == 1
    w.close()
    w.close()  # idempotent
    with pytest.raises(RuntimeError):
        await w.commit(batch(5))
    assert EventStore(tmp_path / "e.sqlite").last_seq("conveyor", "induct") == 4


def _bulk(first: int, n: int) -> Batch:
    """``n`` ring events with 1 kB of data each (about a page apiece)."""
    b = Batch()
    for seq in range(first, first + n):
        b.ring("conveyor", "induct", seq, 0.0, {"tracking_id": seq, "pad": "x" * 1000})
    return b


def _runs_reach(w: StoreWriter, n: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while w.checkpointer.runs < n and time.monotonic() < deadline:
        time.sleep(0.005)
    return w.checkpointer.runs >= n


async def test_the_writers_commits_never_checkpoint_the_wal(tmp_path: Path) -> None:
    """A commit that checkpoints takes 10-35 ms instead of ~0.6: the writer leaves that to its
    checkpoint thread. With that thread idle, the log grows past SQLite's 1000-page automatic
    checkpoint, which would have restarted it."""
    w = StoreWriter(tmp_path / "e.sqlite", checkpoint_s=3600.0)
    try:
        for k in range(24):  # ~13 MB of log: over three times the 1000 pages (4 MB)
            await w.commit(_bulk(1 + k * 500, 500))
        wal = tmp_path / "e.sqlite-wal"
        assert wal.stat().st_size > 8 * 1024 * 1024
        assert w.checkpointer.runs == 0
    finally:
        w.close()
    assert EventStore(tmp_path / "e.sqlite").last_seq("conveyor", "induct") == 12000


async def test_the_checkpoint_thread_keeps_the_wal_short(tmp_path: Path) -> None:
    w = StoreWriter(tmp_path / "e.sqlite", checkpoint_s=0.02)
    try:
        await w.commit(_bulk(1, 3000))
        assert await asyncio.to_thread(_runs_reach, w, w.checkpointer.runs + 2)  # copied into the database
        await w.commit(_bulk(3001, 10))  # the log restarts from its beginning
        assert await asyncio.to_thread(_runs_reach, w, w.checkpointer.runs + 1)
        assert 0 < w.checkpointer.last_log_pages < 100  # this commit's pages, not the 3000 before
        assert w.checkpointer.failures == 0
    finally:
        w.close()
    assert EventStore(tmp_path / "e.sqlite").last_seq("conveyor", "induct") == 3010


def test_writer_reports_a_store_it_cannot_open(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(sqlite3.Error):
        StoreWriter(tmp_path / "dir.sqlite")


def test_a_restarted_plc_reusing_tracking_ids_never_overwrites_an_outcome(tmp_path: Path) -> None:
    db = EventStore(tmp_path / "e.sqlite")
    try:
        b = Batch()
        b.parcel(ParcelRow(1, "sorted", final=True, chute=4, reason="plan", boot_id=5))
        b.parcel_event(0.0, 1, "sorted", 0, 4, "plan", "RR1", boot_id=5)
        db.commit(b)
        b = Batch()  # the PLC restarted (boot id 6) and numbers its parcels from 1 again
        b.parcel(ParcelRow(1, "rejected", final=True, chute=29, reason="no_read", boot_id=6))
        b.parcel_event(1.0, 1, "rejected", 0, 29, "no_read", "", boot_id=6)
        db.commit(b)
        rows = {r.key: (r.state, r.chute) for r in db.parcels()}
        assert rows == {(5, 1): ("sorted", 4), (6, 1): ("rejected", 29)}
        assert [e[2] for e in db.parcel_events(tracking_id=1, boot_id=5)] == ["sorted"]
    finally:
        db.close()


def test_a_store_from_before_boot_ids_is_migrated_and_adopts_the_first_boot_id(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE parcels (
            tracking_id INTEGER PRIMARY KEY, state TEXT NOT NULL, final INTEGER NOT NULL DEFAULT 0,
            lap INTEGER NOT NULL DEFAULT 0, chute INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
            identity TEXT NOT NULL DEFAULT '', scan_status TEXT NOT NULL DEFAULT '',
            lead INTEGER NOT NULL DEFAULT 0, trail INTEGER NOT NULL DEFAULT 0,
            inducted_t REAL NOT NULL DEFAULT 0, updated_t REAL NOT NULL DEFAULT 0);
        CREATE TABLE parcel_events (
            id INTEGER PRIMARY KEY, t REAL NOT NULL, tracking_id INTEGER NOT NULL, kind TEXT NOT NULL,
            lap INTEGER NOT NULL, chute INTEGER NOT NULL, reason TEXT NOT NULL, identity TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '');
        INSERT INTO parcels (tracking_id, state, final, chute) VALUES (7, 'routed', 0, 3), (8, 'sorted', 1, 4);
        INSERT INTO parcel_events (t, tracking_id, kind, lap, chute, reason, identity) VALUES (1, 8, 'sorted', 0, 4, '', '');
        """
    )
    old.commit()
    old.close()
    db = EventStore(path)
    try:
        assert int(db._db.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION
        assert sorted(r.key for r in db.parcels()) == [(0, 7), (0, 8)]
        b = Batch(adopt_boot=41)  # the first boot id the PLC reports: its open parcels are ours
        db.commit(b)
        assert sorted(r.key for r in db.parcels()) == [(41, 7), (41, 8)]
        assert db.parcel_events(tracking_id=8)[0][-1] == 41
    finally:
        db.close()
    EventStore(path).close()  # opening a current store again changes nothing


def test_a_version_1_store_gets_users_plans_and_its_alarm_history(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    db = EventStore(path)
    db.close()
    old = sqlite3.connect(path)  # make it look like version 1: no alarms table, commands without user
    old.executescript(
        """
        DROP TABLE alarms; DROP TABLE plans; DROP TABLE commands;
        CREATE TABLE commands (id INTEGER PRIMARY KEY, t REAL NOT NULL, command TEXT NOT NULL,
                               done INTEGER NOT NULL DEFAULT 0, result TEXT NOT NULL DEFAULT '');
        ALTER TABLE parcels DROP COLUMN plan_version; ALTER TABLE parcel_events DROP COLUMN plan_version;
        INSERT INTO unit_events (t, kind, name, code, detail) VALUES (1, 'alarm', 'jam', 2, 'eye 1'),
            (2, 'alarm_clear', 'jam', 2, ''), (3, 'alarm', 'camera_down', 7, '');
        INSERT INTO commands (t, command) VALUES (0.5, 'RESET');
        PRAGMA user_version=1;
        """
    )
    old.commit()
    old.close()
    db = EventStore(path)
    try:
        assert [(a.name, a.raised_t, a.cleared_t) for a in db.alarms()] == [("camera_down", 3.0, None), ("jam", 1.0, 2.0)]
        assert db.active_alarms() == {"camera_down": ""}
        assert db.pending_commands() == [Command(1, "RESET", "", {})]
        b = Batch()
        b.parcel(ParcelRow(1, "routed", plan_version=3))
        db.commit(b)
        assert db.parcels()[0].plan_version == 3
    finally:
        db.close()

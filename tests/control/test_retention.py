"""Store retention: old rows go to Parquet and out of the live store; what the controller needs
to carry on stays; the controller's commits are not refused while it runs."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pyarrow.parquet as pq

from control.store import AlarmAck, AlarmClear, AlarmRaise, Batch, EventStore, ParcelRow
from control.store.retention import archive
from sortctl.cli import main

OLD, NEW, CUTOFF = 1_000.0, 9_000.0, 5_000.0


def fill(db: Path) -> None:
    store = EventStore(db)
    b = Batch()
    for tid in range(1, 101):  # 100 old parcels with final outcomes, one old parcel still open
        b.parcel(ParcelRow(tid, "sorted", final=True, chute=3, updated_t=OLD))
        b.parcel_event(OLD, tid, "inducted")
        b.parcel_event(OLD, tid, "sorted", chute=3)
    b.parcel(ParcelRow(101, "routed", chute=4, updated_t=OLD))
    b.parcel_event(OLD, 101, "inducted")
    for seq in range(1, 51):
        b.ring("conveyor", "induct", seq, OLD, {"tracking_id": seq})
    b.unit_event(OLD, "state", "EXECUTE", 6)
    b.alarm_ops += [AlarmRaise(OLD, "jam", 2, "stop", ""), AlarmClear(OLD + 1, "jam"),
                    AlarmRaise(OLD, "camera_down", 7, "hold", "")]
    b.health.append((OLD, "{}"))
    store.commit(b)
    jam = next(a for a in store.alarms() if a.name == "jam")
    b = Batch()
    b.alarm_ops.append(AlarmAck(OLD + 2, jam.id, "ana"))
    b.parcel(ParcelRow(200, "sorted", final=True, chute=5, updated_t=NEW))
    b.parcel_event(NEW, 200, "sorted", chute=5)
    store.commit(b)
    done = store.add_command("RESET", OLD)
    b = Batch()
    b.commands_done.append(("accepted", done))
    store.commit(b)
    store.add_command("START", OLD)  # still pending: stays
    store.close()


def test_old_rows_are_archived_and_what_the_controller_needs_stays(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite"
    fill(db)
    res = archive(db, CUTOFF, tmp_path / "archive", pause_s=0.0, chunk=37)
    assert res.rows["parcels"] == 100 and res.rows["parcel_events"] == 200
    assert res.rows["ring_events"] == 49 and res.rows["alarms"] == 1 and res.rows["commands"] == 1
    # every unit event and health row is old, but the newest of each stays: ids never start again
    assert res.rows["unit_events"] == 0 and res.rows["health"] == 0
    store = EventStore(db, readonly=True)
    try:
        assert sorted(r.tracking_id for r in store.parcels()) == [101, 200]
        assert store.parcel_events(tracking_id=101) != []  # an open parcel keeps its history
        assert store.last_seq("conveyor", "induct") == 50  # the stream resumes where it was
        assert [a.name for a in store.alarms()] == ["camera_down"]  # open alarms stay
        assert [c[2] for c in store.commands()] == ["START"]
    finally:
        store.close()
    archived = {f.name.split("-before-")[0]: pq.read_table(f) for f in res.files}
    assert archived["parcels"].num_rows == 100 and archived["parcel_events"].num_rows == 200
    assert set(archived["parcel_events"].column("kind").to_pylist()) == {"inducted", "sorted"}
    again = archive(db, CUTOFF, tmp_path / "archive2", pause_s=0.0)
    assert sum(again.rows.values()) == 0  # nothing twice


def test_archiving_while_the_controller_commits_refuses_none_of_its_commits(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite"
    fill(db)
    writer = EventStore(db)  # as the service opens it: a 50 ms busy timeout
    stop = threading.Event()
    failures: list[BaseException] = []
    commits = 0

    def controller() -> None:
        nonlocal commits
        tid = 1000
        while not stop.is_set():
            b = Batch()
            tid += 1
            b.parcel(ParcelRow(tid, "sorted", final=True, updated_t=NEW))
            b.parcel_event(NEW, tid, "sorted")
            try:
                writer.commit(b)
                commits += 1
            except Exception as exc:
                failures.append(exc)
            stop.wait(0.01)  # a control cycle

    th = threading.Thread(target=controller)
    th.start()
    try:
        archive(db, CUTOFF, tmp_path / "archive", chunk=20, pause_s=0.005)
    finally:
        stop.set()
        th.join()
        writer.close()
    assert commits > 0 and failures == []


def test_store_cli_info_and_archive(tmp_path: Path, capsys: object) -> None:
    db = tmp_path / "events.sqlite"
    fill(db)
    assert main(["store", "info", "--db", str(db), "--json"]) == 0
    assert main(["store", "archive", "--db", str(db), "--keep-days", "1", "--dry-run", "--json"]) == 0
    assert main(["store", "archive", "--db", str(tmp_path / "none.sqlite")]) == 2


def test_rows_a_relay_has_not_published_stay(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite"
    fill(db)
    relay = sqlite3.connect(tmp_path / "events.sqlite.relay-s1.sqlite")  # the relay's state, as host/state.py keeps it
    relay.executescript("CREATE TABLE cursor (stream TEXT PRIMARY KEY, last_id INTEGER NOT NULL);"
                        "INSERT INTO cursor VALUES ('parcel_events', 50), ('unit_events', 0);")
    relay.commit()
    relay.close()
    res = archive(db, CUTOFF, None, pause_s=0.0)
    assert res.relay_limits == {"parcel_events": 50, "unit_events": 0}
    assert res.rows["parcel_events"] == 50  # only what the relay has published
    store = EventStore(db, readonly=True)
    try:
        left = [e for e in store.parcel_events() if e[0] == OLD]
    finally:
        store.close()
    assert len(left) == 151  # 200 old final events + 1 open, less the 50 published

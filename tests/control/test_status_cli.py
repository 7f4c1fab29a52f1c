"""`sortctl status` reads the event store: state, counters per chute and reason, alarms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from control.store import AlarmRaise, Batch, EventStore, ParcelRow
from sortctl.cli import main


def test_status_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "e.sqlite"
    store = EventStore(db)
    b = Batch()
    b.unit_event(0.0, "state", "EXECUTE", 6)
    b.alarm_ops.append(AlarmRaise(0.0, "jam", 2, "stop", "eye 1"))
    b.parcel(ParcelRow(1, "sorted", final=True, chute=4, reason="sorted_by_rule"))
    b.parcel(ParcelRow(2, "rejected", final=True, chute=28, reason="no_read"))
    b.parcel(ParcelRow(3, "routed", chute=5))
    b.parcel_event(0.0, 3, "recirculated")
    store.commit(b)
    store.close()
    assert main(["status", "--db", str(db), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["unit_state"] == "EXECUTE"
    assert got["by_chute"] == {"4": 1, "28": 1}
    assert got["by_reason"] == {"sorted_by_rule": 1, "no_read": 1}
    assert got["in_flight"] == 1 and got["recirculations"] == 1
    assert got["active_alarms"] == {"jam": "eye 1"}
    assert main(["status", "--db", str(db)]) == 0
    assert "EXECUTE" in capsys.readouterr().out


def test_status_without_store_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no event store" in capsys.readouterr().out


def test_status_shows_the_services_health_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "e.sqlite"
    store = EventStore(db)
    try:
        b = Batch()
        b.meta["health"] = '{"t": 1.0, "lag_p99_ms": 4.2, "rss_mb": 180.5, "in_flight": 12, "unit": "EXECUTE"}'
        store.commit(b)
    finally:
        store.close()
    assert main(["status", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["health"]["lag_p99_ms"] == 4.2
    assert main(["status", "--db", str(db)]) == 0
    out = capsys.readouterr().out  # a table: the line may wrap
    assert "service health" in out and "4.2 ms" in out and "180.5 MB" in out

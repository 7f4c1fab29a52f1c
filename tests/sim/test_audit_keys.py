"""The ground truth's parcel keys (boot id, tracking id) and the audit that matches the store by them."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.audit import Truth, audit, readable_read_rate
from plc_sim.oracle import OracleArm

from .conftest import WorldFactory


@dataclass
class Row:
    """What the audit reads of a store row (``control.store.ParcelRow``, with its coming boot_id)."""

    tracking_id: int
    state: str
    boot_id: int = 0
    final: bool = True
    chute: int = 0
    reason: str = ""
    identity: str = ""


@dataclass
class LegacyRow:
    """A store row from before boot ids: no boot_id attribute at all."""

    tracking_id: int
    state: str
    final: bool = True
    chute: int = 0
    reason: str = ""
    identity: str = ""


def record(tid: int, boot: int, location: str, chute: int = 0, prior: list[list[int]] | None = None) -> dict[str, Any]:
    return {"tracking_id": tid, "boot_id": boot, "prior_keys": prior or [], "location": location, "chute": chute,
            "laps": 0, "label": "ok", "final_s": None if location == "on_belt" else 1.0}  # fmt: skip


def test_the_audit_matches_by_key_and_counts_earlier_keys_apart() -> None:
    truth = Truth.from_records(
        [
            record(1, 10, "chute", 4),  # sorted before the conveyor restart
            record(1, 20, "chute", 5, prior=[[10, 2]]),  # on the belt at the restart; id 1 again after it
            record(2, 20, "chute", 6, prior=[[10, 3]]),
            record(3, 20, "on_belt", prior=[[10, 4]]),  # still riding at the end: lost
        ]
    )
    rows = [
        Row(1, "sorted", 10, chute=4, identity="A"),
        Row(2, "lost", 10, reason="plc_restart"),  # the controller closed the old keys
        Row(3, "lost", 10, reason="plc_restart"),
        Row(4, "lost", 10, reason="plc_restart"),
        Row(1, "sorted", 20, chute=5, identity="B"),  # same tracking id, another boot: no overwrite
        Row(2, "sorted", 20, chute=6),
        Row(9, "sorted", 20, chute=7),  # a parcel that never was
    ]
    a = audit(rows, truth, recirculated=0)  # type: ignore[arg-type]
    assert a.missorts == [] and a.misrecorded == [], a.missort_detail
    assert a.lost == [3] and a.sorted_planned == 3 and a.read == 2
    assert a.superseded == [(10, 2), (10, 3), (10, 4)]
    assert a.superseded_outcomes == {"lost": 3}
    assert a.unmatched_rows == [(20, 9)]
    out = a.as_json()
    assert out["superseded_keys"] == 3 and out["unmatched_rows"] == 1 and out["lost"] == 1


def test_a_row_under_the_wrong_boot_is_not_taken_for_the_parcel() -> None:
    truth = Truth.from_records([record(1, 20, "chute", 5, prior=[[10, 1]])])
    a = audit([Row(1, "sorted", 10, chute=5)], truth, 0)  # type: ignore[list-item]
    assert a.lost == [1] and a.missorts == [1]  # its current key (20, 1) has no outcome
    assert "boot 20" in a.missort_detail[0]
    assert a.superseded_outcomes == {"sorted": 1}


def test_rows_without_boot_ids_and_truth_files_without_them_still_match() -> None:
    old_truth = Truth.from_records([{k: v for k, v in record(1, 0, "chute", 5).items()
                                     if k not in ("boot_id", "prior_keys")}])  # fmt: skip
    assert old_truth.boot_id.tolist() == [0] and old_truth.prior_keys == ((),)
    truth = Truth.from_records([record(1, 77, "chute", 5)])
    for t in (old_truth, truth):
        a = audit([LegacyRow(1, "sorted", chute=5)], t, 0)  # type: ignore[list-item]
        assert a.sorted_planned == 1 and a.lost == [] and a.unmatched_rows == []


def test_the_written_ground_truth_carries_keys_and_the_fire_key(make_world: WorldFactory, tmp_path: Path) -> None:
    w = make_world(rate=7200, count=8, seed=2)
    w.restart_tracking(100)
    oracle = OracleArm(w, lambda tid: 24 if tid <= 2 else None)  # 1 and 2 are armed, the rest ride
    for _ in range(40):
        oracle.step(0.1)
    w.switch_power("conveyor", False)
    w.switch_power("conveyor", True)
    w.restart_tracking(200)
    w.running = True
    for _ in range(400):
        oracle.step(0.1)
    gt = w.ground_truth()
    gt.write(tmp_path / "truth.json")
    gt.write(tmp_path / "truth.csv")
    data = json.loads((tmp_path / "truth.json").read_text())["parcels"]
    fired = [r for r in data if r["fire_id"] >= 0 and r["fire_boot_id"] == 100]
    assert fired and all(r["fire_tracking_id"] in (1, 2) for r in fired)
    renumbered = [r for r in data if r["prior_keys"]]
    assert renumbered and all(r["boot_id"] == 200 and r["prior_keys"][0][0] == 100 for r in renumbered)
    truth = Truth.from_json(tmp_path / "truth.json")
    assert [truth.key(i) for i in range(len(truth))] == [(r["boot_id"], r["tracking_id"]) for r in data]
    assert truth.prior_keys == tuple(tuple(tuple(k) for k in r["prior_keys"]) for r in data)
    with (tmp_path / "truth.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [json.loads(r["prior_keys"]) for r in rows] == [r["prior_keys"] for r in data]
    assert [int(r["boot_id"]) for r in rows] == [r["boot_id"] for r in data]


def test_readable_read_rate_leaves_out_labels_nothing_can_read() -> None:
    # Parcels 1-4 have readable labels (1 and 2 read, 3 stored without identity, 4 never
    # stored); 5 and 6 carry a missing and a damaged label and count neither way, read or not.
    truth = Truth.from_records([
        {"tracking_id": t, "location": "chute", "chute": 3, "laps": 0, "label": label, "final_s": None, "boot_id": 2}
        for t, label in [(1, "ok"), (2, "double"), (3, "ok"), (4, "ok"), (5, "missing"), (6, "damaged")]
    ])
    rows: list[Any] = [Row(1, "sorted", 2, identity="RR123456785CN"), Row(2, "rejected", 2, identity="X"),
                       Row(3, "rejected", 2, reason="no_read"), Row(5, "rejected", 2, identity="Y"),
                       Row(6, "rejected", 2, reason="no_read")]
    assert readable_read_rate(rows, truth) == (0.5, 2, 4)
    # a row of another boot with the same tracking id is another parcel; a boot-less row stands for any
    assert readable_read_rate([Row(1, "sorted", 9, identity="Z")], truth)[1] == 0
    assert readable_read_rate([LegacyRow(1, "sorted", identity="Z")], truth)[1] == 1

"""Judging a run: the controller's durable decisions against where parcels physically are.

The simulator's ground truth says which chute each parcel is in; the event store says which
chute the controller chose and what outcome it recorded. Both name a parcel by its key
(conveyor boot id, tracking id): a conveyor PLC that restarts numbers parcels from 1 again,
so a physical parcel may have had earlier keys before its current one.

A **missort** is a parcel in a chute other than the one the controller chose under its current
key (an exception parcel in a destination chute is one of those); a **lost** parcel is one
inducted whose current key has no final outcome in the store. The outcome the controller
records for an earlier key (``lost``, reason ``plc_restart``) is neither: those keys are
counted apart as **superseded**.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from control.store import ParcelRow

ON_BELT, IN_CHUTE, TAKEN_OFF = 0, 1, 2
_LOCATION = {"on_belt": ON_BELT, "chute": IN_CHUTE, "lost": TAKEN_OFF}


Key = tuple[int, int]  # (conveyor boot id, tracking id)


@dataclass(frozen=True, slots=True)
class Truth:
    """Where each inducted parcel is (simulator ground truth), by its current key."""

    tracking_id: npt.NDArray[np.int64]
    location: npt.NDArray[np.int8]
    chute: npt.NDArray[np.int64]
    laps: npt.NDArray[np.int64]
    label: tuple[str, ...]
    final_s: npt.NDArray[np.float64]  # simulator time the parcel left the belt (NaN: still on it)
    boot_id: npt.NDArray[np.int64]  # conveyor boot id of the current tracking id (0: none recorded)
    prior_keys: tuple[tuple[Key, ...], ...]  # earlier keys of each parcel, oldest first

    def __len__(self) -> int:
        return len(self.tracking_id)

    def key(self, i: int) -> Key:
        return int(self.boot_id[i]), int(self.tracking_id[i])

    @classmethod
    def from_records(cls, rows: list[dict[str, Any]]) -> Truth:
        """From ``GroundTruth.records()`` or its JSON; files from before boot ids read as boot 0."""
        return cls(
            np.array([int(r["tracking_id"]) for r in rows], dtype=np.int64),
            np.array([_LOCATION[str(r["location"])] for r in rows], dtype=np.int8),
            np.array([int(r["chute"]) for r in rows], dtype=np.int64),
            np.array([int(r["laps"]) for r in rows], dtype=np.int64),
            tuple(str(r["label"]) for r in rows),
            np.array([np.nan if r.get("final_s") is None else float(r["final_s"]) for r in rows], dtype=np.float64),
            np.array([int(r.get("boot_id", 0)) for r in rows], dtype=np.int64),
            tuple(tuple((int(b), int(t)) for b, t in r.get("prior_keys") or ()) for r in rows),
        )

    @classmethod
    def from_json(cls, path: str | Path) -> Truth:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls.from_records(list(data["parcels"]))


@dataclass(slots=True)
class Audit:
    inducted: int
    sorted_planned: int
    rejected: int
    rejected_by_reason: dict[str, int]
    recirculated: int
    missorts: list[int]
    misrecorded: list[int]  # the store says sorted/rejected into a chute the parcel is not in
    lost: list[int]
    still_on_belt: int
    taken_off: int
    read: int
    read_rate: float
    outcomes: dict[str, int] = field(default_factory=dict)
    missort_detail: list[str] = field(default_factory=list)
    superseded: list[Key] = field(default_factory=list)  # earlier keys of parcels (conveyor restarts)
    superseded_outcomes: dict[str, int] = field(default_factory=dict)  # what the store says of them
    unmatched_rows: list[Key] = field(default_factory=list)  # store rows whose key no parcel ever had

    def as_json(self) -> dict[str, object]:
        return {
            "inducted": self.inducted,
            "sorted": self.sorted_planned,
            "rejected": self.rejected,
            "rejected_by_reason": self.rejected_by_reason,
            "recirculated": self.recirculated,
            "missorts": len(self.missorts),
            "missorted_tracking_ids": self.missorts[:50],
            "misrecorded": len(self.misrecorded),
            "lost": len(self.lost),
            "lost_tracking_ids": self.lost[:50],
            "still_on_belt": self.still_on_belt,
            "taken_off_belt": self.taken_off,
            "read_rate": round(self.read_rate, 4),
            "outcomes": self.outcomes,
            "superseded_keys": len(self.superseded),
            "superseded_outcomes": self.superseded_outcomes,
            "unmatched_rows": len(self.unmatched_rows),
        }


def row_key(row: ParcelRow) -> Key:
    """A store row's key; a store from before boot ids has none (boot 0)."""
    return int(getattr(row, "boot_id", 0)), row.tracking_id


class _Rows:
    """The store's rows by key; a row without a boot id (0) stands for its tracking id in any boot."""

    def __init__(self, rows: list[ParcelRow]) -> None:
        self.by_key = {row_key(r): r for r in rows}
        self.used: set[Key] = set()

    def get(self, key: Key) -> ParcelRow | None:
        for k in (key, (0, key[1])):
            row = self.by_key.get(k)
            if row is not None:
                self.used.add(k)
                return row
        return None


def audit(rows: list[ParcelRow], truth: Truth, recirculated: int) -> Audit:
    """Compare the store's parcel rows with the ground truth, parcel by parcel, by key.

    ``missorts`` and ``lost`` list current tracking ids (the details name boot ids too).
    """
    store = _Rows(rows)
    superseded: list[Key] = []
    superseded_outcomes: Counter[str] = Counter()
    for keys in truth.prior_keys:
        for key in keys:
            superseded.append(key)
            old = store.get(key)
            superseded_outcomes[old.state if old is not None else "none"] += 1
    missorts: list[int] = []
    detail: list[str] = []
    lost: list[int] = []
    misrecorded: list[int] = []
    sorted_planned = 0
    rejected: Counter[str] = Counter()
    read = 0
    for i, (tid, loc, chute, lbl) in enumerate(
        zip(truth.tracking_id.tolist(), truth.location.tolist(), truth.chute.tolist(), truth.label, strict=True)
    ):
        boot = int(truth.boot_id[i])
        row = store.get((boot, tid))
        if row is not None and row.identity:
            read += 1
        if loc == IN_CHUTE:
            chosen = row.chute if row is not None else 0
            if chute != chosen:
                missorts.append(tid)
                detail.append(
                    f"tracking id {tid} (boot {boot}, {lbl}): in chute {chute}, controller chose {chosen or 'none'}"
                    f" ({row.state if row else 'unknown'})"
                )
        if row is None or not row.final:
            lost.append(tid)
            continue
        if row.state in ("sorted", "rejected") and not (loc == IN_CHUTE and chute == row.chute):
            misrecorded.append(tid)
            detail.append(f"tracking id {tid} (boot {boot}): recorded {row.state} in chute {row.chute}, really "
                          f"{'in chute ' + str(chute) if loc == IN_CHUTE else 'not in a chute'}")
        if row.state == "sorted" and loc == IN_CHUTE and chute == row.chute:
            sorted_planned += 1
        elif row.state == "rejected":
            rejected[row.reason or "rejected"] += 1
    n = len(truth.tracking_id)
    return Audit(
        inducted=n,
        sorted_planned=sorted_planned,
        rejected=sum(rejected.values()),
        rejected_by_reason=dict(rejected),
        recirculated=recirculated,
        missorts=missorts,
        misrecorded=misrecorded,
        lost=lost,
        still_on_belt=int((truth.location == ON_BELT).sum()),
        taken_off=int((truth.location == TAKEN_OFF).sum()),
        read=read,
        read_rate=read / n if n else float("nan"),
        outcomes=dict(Counter(r.state for r in rows)),
        missort_detail=detail,
        superseded=superseded,
        superseded_outcomes=dict(superseded_outcomes),
        unmatched_rows=[k for k in store.by_key if k not in store.used],
    )


UNREADABLE = ("missing", "damaged")  # the scenario's label kinds nothing can read


def readable_read_rate(rows: list[ParcelRow], truth: Truth) -> tuple[float, int, int]:
    """(rate, read, readable): parcels with a stored identity, of those whose label can be read
    at all (the scenario's missing and damaged labels are left out: no decoder reads them, so
    they say nothing about decoding that keeps up). Whole run."""
    by_key = _Rows(rows)
    readable = read = 0
    for i, label in enumerate(truth.label):
        if label in UNREADABLE:
            continue
        readable += 1
        row = by_key.get(truth.key(i))
        read += row is not None and bool(row.identity)
    return (read / readable if readable else float("nan")), read, readable

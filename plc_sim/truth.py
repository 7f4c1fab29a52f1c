"""Ground truth: where every inducted parcel physically is, which is what missorts are judged by.

The controller never sees this; tests and benchmarks compare its decisions against it. A
parcel is known to the controller by its key (conveyor boot id, tracking id); a conveyor PLC
that restarts numbers parcels from 1 again, so one physical parcel may have had several keys:
the current one and the earlier ones (``prior_keys``), oldest first.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

LABEL_NAMES = ("ok", "missing", "damaged", "double", "unknown_id")
STATE_NAMES = ("on_belt", "chute", "lost")
SYMBOLOGY_NAMES = ("code128", "datamatrix", "qr")

FIELDS = (
    "tracking_id", "boot_id", "prior_keys", "parcel_id", "second_id", "label", "severity", "symbology", "length_mm",
    "location", "chute", "laps", "fire_id", "fire_tracking_id", "fire_boot_id", "gap_violation", "inducted_s",
    "final_s",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """One row per inducted parcel, in the order they first entered the belt.

    Without a conveyor PLC restart row i has tracking id i + 1 and no prior keys.
    """

    tracking_id: npt.NDArray[np.int64]  # current tracking id (the last one the conveyor PLC gave it)
    boot_id: npt.NDArray[np.int64]  # conveyor boot id under which that id was given (0: no PLC program)
    prior_keys: tuple[tuple[tuple[int, int], ...], ...]  # earlier (boot id, tracking id), oldest first
    parcel_id: tuple[str, ...]
    second_id: tuple[str, ...]  # the other parcel's id on a double label, else ""
    label: npt.NDArray[np.int8]  # LabelKind
    severity: npt.NDArray[np.float32]
    symbology: npt.NDArray[np.int8]
    length_mm: npt.NDArray[np.float64]
    state: npt.NDArray[np.int8]  # ParcelState: 0 on belt, 1 in a chute, 2 lost
    chute: npt.NDArray[np.int64]  # chute id when state == 1, else 0
    laps: npt.NDArray[np.int64]  # extra passes of the scanner (0 = seen once)
    fire_id: npt.NDArray[np.int64]  # the fire that diverted it (-1 none, e.g. end of line)
    fire_tracking_id: npt.NDArray[np.int64]  # tracking id that fire was armed for (-1 none)
    fire_boot_id: npt.NDArray[np.int64]  # conveyor boot id current when that arm was taken (-1 none)
    gap_violation: npt.NDArray[np.bool_]
    inducted_s: npt.NDArray[np.float64]
    final_s: npt.NDArray[np.float64]  # when it left the belt; NaN while on it
    waiting: int  # arrived at the induct, not inducted yet

    def __len__(self) -> int:
        return len(self.tracking_id)

    def wrong_parcel(self) -> npt.NDArray[np.bool_]:
        """Parcels diverted by a fire armed for a key the parcel never had (another parcel's).

        A fire armed for one of its earlier keys (armed before a conveyor restart, fired by
        position after it) took the parcel it was meant for: not wrong.
        """
        fired = self.fire_id >= 0
        same = (self.fire_tracking_id == self.tracking_id) & (self.fire_boot_id == self.boot_id)
        wrong: npt.NDArray[np.bool_] = fired & ~same
        for i in np.flatnonzero(wrong).tolist():
            if (int(self.fire_boot_id[i]), int(self.fire_tracking_id[i])) in self.prior_keys[i]:
                wrong[i] = False
        return wrong

    def per_chute(self) -> dict[int, int]:
        ids, counts = np.unique(self.chute[self.state == 1], return_counts=True)
        return dict(zip(ids.tolist(), counts.tolist(), strict=True))

    def records(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for i in range(len(self)):
            fs = float(self.final_s[i])
            out.append(
                {
                    "tracking_id": int(self.tracking_id[i]),
                    "boot_id": int(self.boot_id[i]),
                    "prior_keys": [list(k) for k in self.prior_keys[i]],
                    "parcel_id": self.parcel_id[i],
                    "second_id": self.second_id[i],
                    "label": LABEL_NAMES[int(self.label[i])],
                    "severity": round(float(self.severity[i]), 4),
                    "symbology": SYMBOLOGY_NAMES[int(self.symbology[i])],
                    "length_mm": round(float(self.length_mm[i]), 1),
                    "location": STATE_NAMES[int(self.state[i])],
                    "chute": int(self.chute[i]),
                    "laps": int(self.laps[i]),
                    "fire_id": int(self.fire_id[i]),
                    "fire_tracking_id": int(self.fire_tracking_id[i]),
                    "fire_boot_id": int(self.fire_boot_id[i]),
                    "gap_violation": bool(self.gap_violation[i]),
                    "inducted_s": round(float(self.inducted_s[i]), 4),
                    "final_s": None if math.isnan(fs) else round(fs, 4),
                }
            )
        return out

    def write(self, path: str | Path) -> None:
        """Write as CSV when the name ends in .csv (``prior_keys`` as a JSON list), JSON otherwise."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        rows = self.records()
        if p.suffix.lower() == ".csv":
            with p.open("w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=FIELDS)
                w.writeheader()
                w.writerows({**r, "prior_keys": json.dumps(r["prior_keys"])} for r in rows)
        else:
            p.write_text(json.dumps({"waiting": self.waiting, "parcels": rows}) + "\n", encoding="utf-8")

"""The parcel stream a scenario sends to the induct: arrival times, sizes, gaps and labels.

Drawn in vectorised chunks from one seeded generator, so a run is reproducible and a long run
never holds more than a chunk of future parcels in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from plant.errors import ConfigError
from plc_sim.scenario import Scenario
from vision.labels import s10_check_digits

SYMBOLOGIES = ("code128", "datamatrix", "qr")

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]


class LabelKind(IntEnum):
    OK = 0
    MISSING = 1  # no label: the camera sees a blank parcel
    DAMAGED = 2  # torn or smeared label
    DOUBLE = 3  # two labels of two different parcels
    UNKNOWN_ID = 4  # a valid id that the manifest does not hold


@dataclass(frozen=True, slots=True)
class Manifest:
    """The ids (and lengths) of a manifest CSV: all the simulator needs of it."""

    ids: tuple[str, ...]
    length_mm: F64


def read_manifest(path: str | Path) -> Manifest:
    """The ids and lengths of a manifest, read by the controller's own loader.

    One loader for both sides means the simulator can never induct a parcel the controller
    would have refused to load; rows the loader rejects are not inducted. A file with no good
    row, or a bad header, is a ConfigError (file, line, field).
    """
    from control.routing.manifest import load_manifest

    m = load_manifest(path)
    if len(m) == 0:
        raise ConfigError(Path(path), None, "", "the manifest holds no parcels")
    ids = tuple(m.parcel_id(r) for r in range(len(m)))
    length = np.where(np.isfinite(m.dims[:, 0]), m.dims[:, 0], 120.0).astype(np.float64)
    return Manifest(ids, length)


def s10_id(prefix: str, serial: int, country: str = "GB") -> str:
    """A UPU S10 id with a valid check digit."""
    return s10_ids(prefix, np.asarray([serial], dtype=np.int64), country)[0]


def s10_ids(prefix: str, serials: I64, country: str = "GB") -> list[str]:
    """Many S10 ids at once, the check digit computed over the whole array."""
    sn = np.asarray(serials, dtype=np.int64) % 100_000_000
    check = s10_check_digits(sn)
    return [f"{prefix}{a:08d}{c}{country}" for a, c in zip(sn.tolist(), check.tolist(), strict=True)]


@dataclass(frozen=True, slots=True)
class ParcelBatch:
    """Parcels in arrival order; row i of every array is the same parcel."""

    arrival_s: F64
    length_mm: F64
    width_mm: F64
    gap_mm: F64  # spacing the induct keeps behind the previous parcel
    label: I8  # LabelKind
    severity: npt.NDArray[np.float32]
    symbology: I8  # index into SYMBOLOGIES
    parcel_id: tuple[str, ...]
    second_id: tuple[str, ...]  # "" unless label == DOUBLE

    def __len__(self) -> int:
        return len(self.arrival_s)


class ParcelSource:
    """Draws the scenario's parcel stream chunk by chunk."""

    def __init__(self, scenario: Scenario, min_gap_mm: float, manifest: Manifest | None) -> None:
        self.scenario = scenario
        self.min_gap_mm = min_gap_mm
        self.manifest = manifest
        self._rng = np.random.default_rng(scenario.seed)
        self._t = 0.0
        self._drawn = 0
        self._cursor = 0  # next manifest row
        self._unknown_serial = 0

    @property
    def exhausted(self) -> bool:
        count = self.scenario.arrivals.count
        return count is not None and self._drawn >= count

    def draw(self, n: int) -> ParcelBatch:
        a = self.scenario.arrivals
        if a.count is not None:
            n = min(n, a.count - self._drawn)
        n = max(n, 0)
        rng = self._rng
        mean = 3600.0 / a.rate_per_hour
        if a.process == "poisson":
            steps = rng.exponential(mean, n)
        else:
            steps = mean * rng.uniform(0.9, 1.1, n)
        gap_rng = a.gap_mm
        lo = gap_rng.min if gap_rng else self.min_gap_mm
        hi = gap_rng.max if gap_rng else self.min_gap_mm + 40.0
        gap = rng.uniform(lo, hi, n)
        bad = rng.random(n) < a.gap_violation
        gap[bad] = rng.uniform(0.0, 0.8 * self.min_gap_mm, int(bad.sum()))
        steps[bad] = 0.0  # it comes tight behind the one before: the spacing is the induct's
        arrival = self._t + np.cumsum(steps)
        if n:
            self._t = float(arrival[-1])
        width = rng.uniform(a.width_mm.min, a.width_mm.max, n)

        mix = self.scenario.labels
        u = rng.random(n)
        label = np.zeros(n, dtype=np.int8)
        edges = np.cumsum([mix.missing, mix.damaged, mix.double, mix.unknown_id])
        for kind, lo_e, hi_e in zip(
            (LabelKind.MISSING, LabelKind.DAMAGED, LabelKind.DOUBLE, LabelKind.UNKNOWN_ID),
            (0.0, *edges[:-1]),
            edges,
            strict=True,
        ):
            label[(u >= lo_e) & (u < hi_e)] = kind
        q = self.scenario.quality
        severity = rng.uniform(q.severity.min, q.severity.max, n).astype(np.float32)
        names = list(q.symbology)
        weights = np.asarray([q.symbology[k] for k in names], dtype=np.float64)
        picks = rng.choice(len(names), size=n, p=weights / weights.sum())
        symbology = np.asarray([SYMBOLOGIES.index(k) for k in names], dtype=np.int8)[picks]

        rows = self._next_rows(n)
        ids = self._ids_of(rows)
        unknown = np.flatnonzero(label == LabelKind.UNKNOWN_ID)
        serials = np.arange(self._unknown_serial + 1, self._unknown_serial + 1 + len(unknown))
        self._unknown_serial += len(unknown)
        for i, pid in zip(unknown.tolist(), s10_ids("UN", serials, "DE"), strict=True):
            ids[i] = pid
        second = [""] * n
        double = np.flatnonzero(label == LabelKind.DOUBLE)
        for i, pid in zip(double.tolist(), self._ids_of(rows[double] + 7919), strict=True):
            second[i] = pid
        if a.dimensions == "manifest" and self.manifest is not None:
            length = self.manifest.length_mm[rows % len(self.manifest.ids)].copy()
        else:
            length = rng.uniform(a.length_mm.min, a.length_mm.max, n)
        self._drawn += n
        return ParcelBatch(
            arrival_s=arrival,
            length_mm=length,
            width_mm=width,
            gap_mm=gap,
            label=label,
            severity=severity,
            symbology=symbology,
            parcel_id=tuple(ids),
            second_id=tuple(second),
        )

    def _next_rows(self, n: int) -> I64:
        rows = np.arange(self._cursor, self._cursor + n, dtype=np.int64)
        self._cursor += n
        return rows

    def _ids_of(self, rows: I64) -> list[str]:
        if self.manifest is not None:
            m = self.manifest.ids
            return [m[r] for r in (rows % len(m)).tolist()]
        return s10_ids("SC", rows + 1, "GB")

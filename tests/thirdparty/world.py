"""The little conveyor world the third-party PLCs control, written from docs/ alone.

Everything physical lives here: a loop belt (``sorter.length_mm``) whose travel is integrated
from the belt speed, parcels lying still on the belt, the induct photo-eye at 0, the scanner
line at ``scanner_position_mm``, a diverter and a chute (with its photo-eye) per chute of
config/site.yaml, and the encoder (``counts_per_mm``, 32-bit, wrapping).

Why belt coordinates: a parcel does not move relative to the belt, so it is kept as the belt
travel ``b`` at which its leading edge passed the induct eye. Every eye edge then happens at an
exactly known travel (``b + offset + k * length``) and the encoder count a PLC latches there is
exact, whatever the tick length of this simulation. The only timing left to chance is the
controller's (when it writes an arm), which is what the test is about.

Parcels are fed at a fixed belt pitch (``speed / rate``), jittered by a seeded RNG, so the
parcel stream is the same on every run in belt terms. The world is the ground truth: which chute
each physical parcel ended in and under which conveyor key (boot id, tracking id) the conveyor
PLC tracked it when it landed. It imports nothing from the product.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

U32 = 1 << 32


def sdiff(a: int, b: int) -> int:
    """Signed distance a - b between two 32-bit counts (docs: all position arithmetic mod 2^32)."""
    d = (a - b) % U32
    return d - U32 if d >= 1 << 31 else d


@dataclass(frozen=True)
class Chute:
    """A chute of config/site.yaml with its diverter."""

    id: int
    name: str
    kind: str
    capacity: int
    drain_per_min: float
    position_mm: float
    window_mm: float
    actuation_ms: float


@dataclass(frozen=True)
class Site:
    """The parts of config/site.yaml the PLCs and the world need (docs/configuration.md)."""

    name: str
    layout: str
    length_mm: float
    speed_mps: float
    counts_per_mm: float
    scanner_mm: float
    min_gap_mm: float
    chutes: tuple[Chute, ...]
    conveyor_path: str
    diverter_device_id: int
    camera_width: int
    camera_height: int

    @property
    def loop_counts(self) -> int:
        """Encoder counts per lap (docs: ``length_mm * counts_per_mm``)."""
        return round(self.length_mm * self.counts_per_mm)

    def chute(self, chute_id: int) -> Chute | None:
        """The chute with this id, or None."""
        for c in self.chutes:
            if c.id == chute_id:
                return c
        return None


def load_site(path: Path) -> Site:
    """Read site.yaml with the defaults docs/configuration.md gives (no product import)."""
    raw = yaml.safe_load(path.read_text())
    s = raw["sorter"]
    chutes = []
    for c in raw["chutes"]:
        d = c["diverter"]
        chutes.append(Chute(
            id=int(c["id"]), name=str(c.get("name", "")), kind=str(c.get("kind", "normal")),
            capacity=int(c["capacity"]), drain_per_min=float(c.get("drain_per_min", 30)),
            position_mm=float(d["position_mm"]), window_mm=float(d.get("window_mm", 120)),
            actuation_ms=float(d.get("actuation_ms", 40)),
        ))
    plc = raw.get("plc", {})
    conv = plc.get("conveyor", {})
    div = plc.get("diverter", {})
    cam = plc.get("camera", {})
    return Site(
        name=str(raw["name"]), layout=str(s.get("layout", "loop")), length_mm=float(s["length_mm"]),
        speed_mps=float(s.get("speed_mps", 2.0)), counts_per_mm=float(s.get("counts_per_mm", 1.0)),
        scanner_mm=float(s["scanner_position_mm"]), min_gap_mm=float(s.get("min_gap_mm", 50)),
        chutes=tuple(chutes), conveyor_path=str(conv.get("path", "/sortcentre/conveyor")),
        diverter_device_id=int(div.get("device_id", 1)), camera_width=int(cam.get("width", 1280)),
        camera_height=int(cam.get("height", 1024)),
    )


@dataclass(frozen=True)
class Label:
    """A manifest row the world turns into a physical parcel."""

    parcel_id: str
    length_mm: float


def load_labels(path: Path, min_len: float = 100.0, max_len: float = 300.0) -> list[Label]:
    """Manifest rows whose length is 100-300 mm (the brief's parcels; manifest length = physical)."""
    out = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            length = float(row["length_mm"])
            if min_len <= length <= max_len:
                out.append(Label(row["parcel_id"], length))
    return out


@dataclass
class Parcel:
    """One physical parcel. ``b``: belt travel (mm) when its leading edge passed the induct eye."""

    pid: int
    label: str
    length_mm: float
    b: float
    next_lead_induct: float = 0.0  # travel of the next leading-edge / trailing-edge / scanner event
    next_trail_induct: float = 0.0
    next_scan: float = 0.0
    keys: list[tuple[int, int]] = field(default_factory=list)  # conveyor (boot id, tracking id)s
    chute: int | None = None  # where it physically ended
    landed_key: tuple[int, int] | None = None  # conveyor key current when it landed
    fired_for: tuple[int, int] | None = None  # (diverter boot id, tracking id) of the fire that took it
    landed_at: float | None = None  # wall clock

    def centre_at(self, travel: float, length_mm: float) -> float:
        """Where the parcel's centre is along the loop when the belt has travelled ``travel``."""
        return (travel - self.b - self.length_mm / 2.0) % length_mm


@dataclass(frozen=True)
class EyeEvent:
    """A photo-eye edge, latched by PLC hardware at an exact encoder count."""

    eye: str  # "induct" | "scanner"
    edge: str  # "lead" | "trail"
    travel: float
    count: int
    parcel: Parcel  # physical truth: never used by the PLC logic, only for ground-truth records
    released: bool = False  # the first leading edge of a parcel the induct just released: the
    # PLC knows it (it opened the induct gate), so a parcel dropped into a diverted parcel's old
    # slot is never taken for that parcel coming round


class World:
    """Belt kinematics, parcel feed, eyes and diverter strokes; advanced by the plant's tick."""

    ACCEL_MM_S2 = 10_000.0  # 10 m/s^2: 0 -> 2.5 m/s in 0.25 s

    def __init__(self, site: Site, labels: list[Label], rate_per_hour: float = 10_000.0,
                 seed: int = 7, induct_gap_mm: float = 250.0, encoder_start: int = U32 - 20_000) -> None:
        self.site = site
        self.labels = labels
        self.rng = random.Random(seed)
        self.pitch_mm = site.speed_mps * 1000.0 * 3600.0 / rate_per_hour
        self.induct_gap_mm = max(induct_gap_mm, site.min_gap_mm)
        self.travel = 0.0  # mm
        self.speed = 0.0  # mm/s
        self.target_speed = 0.0
        self.encoder_start = encoder_start  # starts near the wrap so that it wraps during a run
        self.parcels: list[Parcel] = []  # on the belt
        self.done: list[Parcel] = []  # in a chute
        self.next_label = 0
        self.next_feed_travel = 0.0
        self.feeding = False  # set by the conveyor PLC (Execute, induct enabled, at speed)
        self.fill: dict[int, float] = {c.id: 0.0 for c in site.chutes}
        self.strokes = 0
        self.empty_strokes = 0

    # -- encoder -----------------------------------------------------------------------------
    def count_at(self, travel: float) -> int:
        """The encoder count at a belt travel: floor(travel * counts_per_mm), offset, mod 2^32."""
        return (self.encoder_start + math.floor(travel * self.site.counts_per_mm)) % U32

    @property
    def encoder(self) -> int:
        """The encoder count now."""
        return self.count_at(self.travel)

    # -- motion ------------------------------------------------------------------------------
    def advance(self, dt: float, on_eye: Callable[[EyeEvent], None]) -> tuple[float, float]:
        """Move the belt by ``dt`` seconds (speed ramped toward the target); report eye edges.

        Returns (travel before, travel after) so the diverter PLC can run its compares.
        """
        s1 = self.travel
        v0 = self.speed
        step = self.ACCEL_MM_S2 * dt
        if self.target_speed > v0:
            v1 = min(self.target_speed, v0 + step)
        else:
            v1 = max(self.target_speed, v0 - step)
        self.speed = v1
        self.travel = s1 + (v0 + v1) / 2.0 * dt
        s2 = self.travel
        if s2 <= s1:
            return s1, s2
        if self.feeding:
            self._feed(s2)
        events: list[EyeEvent] = []
        L = self.site.length_mm
        for p in self.parcels:
            while p.next_lead_induct <= s2:
                events.append(EyeEvent("induct", "lead", p.next_lead_induct, self.count_at(p.next_lead_induct), p,
                                       released=p.next_lead_induct == p.b))
                p.next_lead_induct += L
            while p.next_trail_induct <= s2:
                events.append(EyeEvent("induct", "trail", p.next_trail_induct, self.count_at(p.next_trail_induct), p))
                p.next_trail_induct += L
            while p.next_scan <= s2:
                events.append(EyeEvent("scanner", "lead", p.next_scan, self.count_at(p.next_scan), p))
                p.next_scan += L
        events.sort(key=lambda e: e.travel)
        for e in events:
            on_eye(e)
        return s1, s2

    def stop_dead(self) -> None:
        """Power cut on the conveyor: the belt stops where it is (no coasting modelled)."""
        self.speed = 0.0
        self.target_speed = 0.0
        self.feeding = False

    def _free(self, b_new: float, length: float) -> bool:
        """No parcel within the induct gap of a new parcel whose leading edge is at travel b_new."""
        L = self.site.length_mm
        g = self.induct_gap_mm
        for p in self.parcels:
            # in belt coordinates the new parcel covers [b_new, b_new + length] and P covers
            # [p.b, p.b + p.length_mm] (mod L); d is where P starts, seen from the new parcel
            d = (p.b - b_new) % L
            if not length + g <= d <= L - p.length_mm - g:
                return False
        return True

    def _feed(self, s2: float) -> None:
        """Put the next parcel on the belt at the induct eye when the pitch has passed and it fits."""
        if s2 < self.next_feed_travel or not self.labels:
            return
        label = self.labels[self.next_label % len(self.labels)]
        if not self._free(s2, label.length_mm):
            return
        self.next_label += 1
        p = Parcel(pid=self.next_label, label=label.parcel_id, length_mm=label.length_mm, b=s2)
        # the leading edge reaches the eye just after this instant (next tick reports it)
        p.b = s2 + 1e-6
        p.next_lead_induct = p.b
        p.next_trail_induct = p.b + label.length_mm
        p.next_scan = p.b + self.site.scanner_mm
        self.parcels.append(p)
        self.next_feed_travel = s2 + self.pitch_mm * self.rng.uniform(0.75, 1.25)

    # -- diverters ---------------------------------------------------------------------------
    def stroke(self, chute: Chute, travel_at_stroke: float) -> Parcel | None:
        """A diverter's stroke completes at this travel: it takes the parcel whose centre is
        within +-window/2 of the centreline (docs/configuration.md ``diverter.window_mm``)."""
        self.strokes += 1
        L = self.site.length_mm
        best: Parcel | None = None
        best_d = chute.window_mm / 2.0
        for p in self.parcels:
            d = (p.centre_at(travel_at_stroke, L) - chute.position_mm + L / 2.0) % L - L / 2.0
            if abs(d) <= best_d:
                best, best_d = p, abs(d)
        if best is None:
            self.empty_strokes += 1
            return None
        self.parcels.remove(best)
        best.chute = chute.id
        self.done.append(best)
        self.fill[chute.id] = self.fill.get(chute.id, 0.0) + 1.0
        return best

    def drain(self, dt: float) -> None:
        """Operators empty the chutes at ``drain_per_min``."""
        for c in self.site.chutes:
            self.fill[c.id] = max(0.0, self.fill.get(c.id, 0.0) - c.drain_per_min / 60.0 * dt)

    # -- ground truth --------------------------------------------------------------------------
    def truth(self) -> dict[str, Any]:
        """Every physical parcel fed so far: where it is and under which keys it was tracked."""
        def row(p: Parcel, where: str) -> dict[str, Any]:
            return {
                "pid": p.pid, "label": p.label, "length_mm": p.length_mm, "where": where,
                "keys": [list(k) for k in p.keys], "chute": p.chute,
                "landed_key": list(p.landed_key) if p.landed_key else None,
                "fired_for": list(p.fired_for) if p.fired_for else None, "landed_at": p.landed_at,
                "centre_mm": None if where != "belt" else p.centre_at(self.travel, self.site.length_mm),
            }
        return {
            "parcels": [row(p, "chute") for p in self.done] + [row(p, "belt") for p in self.parcels],
            "travel_mm": self.travel, "encoder": self.encoder, "strokes": self.strokes,
            "empty_strokes": self.empty_strokes,
        }

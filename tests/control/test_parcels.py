"""The parcel flow without a PLC: ring events in, outcomes out, keyed so nothing is overwritten."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import numpy.typing as npt

from control.faults import Fault
from control.packml import PackMLUnit
from control.service.alarms import FaultBook
from control.service.arms import ArmQueue
from control.service.feeds import RouteRequest
from control.service.metrics import Metrics
from control.service.parcels import ParcelFlow
from control.service.settings import ServiceSettings
from control.service.streams import StreamBook
from control.store import Batch
from control.tracking import Geometry
from plant.site import load_site

SITE = load_site(Path(__file__).resolve().parents[2] / "config" / "site.yaml")
FINAL = ("sorted", "rejected", "lost", "missorted")


class NoReadRouter:
    """Routing is not under test here: every parcel to the no-read chute (28)."""

    plan_version = 1

    def route(self, requests: list[RouteRequest], chute_status: npt.NDArray[np.uint16]) -> list[tuple[int, int, str]]:
        return [(28, 8, "no_read") for _ in requests]

    def confirmed(self, key: int, assigned: int, actual: int) -> None: ...

    def missed(self, key: int, assigned: int) -> None: ...

    def chute_fill(self, fill: npt.NDArray[np.uint16]) -> None: ...

    def full_destinations(self, chute_status: npt.NDArray[np.uint16]) -> list[str]:
        return []


def flow(boot: int = 77) -> tuple[ParcelFlow, FaultBook]:
    unit = PackMLUnit()
    faults = FaultBook(unit, lambda: 0.0)
    g = Geometry.from_site(SITE)
    f = ParcelFlow(SITE, g, ServiceSettings(), NoReadRouter(), None, unit=unit, faults=faults, arms=ArmQueue(32),
                   streams=StreamBook(lambda: 0.0, faults), metrics=Metrics(), clock=lambda: 0.0, wall=lambda: 0.0,
                   boot_id=boot)
    return f, faults


def test_a_finished_parcel_seen_again_keeps_its_first_outcome_and_gets_a_key_of_its_own() -> None:
    """A parcel recorded rejected (a confirmation from another parcel) comes round to the scanner:
    its stored outcome must not be overwritten, and it must not get two final outcomes."""
    f, faults = flow()
    g = f.geometry
    b = Batch()
    f.on_induct({"tracking_id": 7, "leading_count": 1000, "trailing_count": 1200}, b)
    f.on_scan({"tracking_id": 7, "trigger_count": 1000 + g.scanner_counts, "lap": 0}, b)
    f.take_decodes(0.0, b)  # no camera: a no-read, routed to chute 28
    f.on_confirm({"tracking_id": 7, "chute": 28, "flags": 0}, b)
    f.committed(0.0)
    assert f.table.get(f.key(7)) is None  # done and released
    f.on_scan({"tracking_id": 7, "trigger_count": 1000 + g.scanner_counts + g.loop_counts, "lap": 1}, b)
    assert Fault.UNEXPECTED_PARCEL in faults.take_raised()
    new = f.key(7)
    assert new != (77 << 32 | 7) and new & 0xFFFFFFFF == 7
    f.take_decodes(0.0, b)
    f.on_confirm({"tracking_id": 7, "chute": 28, "flags": 0}, b)
    finals = Counter((e[8], e[1]) for e in b.parcel_events if e[2] in FINAL)
    assert finals == Counter({(77, 7): 1, (new >> 32, 7): 1})
    assert b.parcels[(77, 7)].state == "rejected" and b.parcels[(new >> 32, 7)].state == "rejected"

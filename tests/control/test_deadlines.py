"""Service deadlines judged on any date: by the wall clock on a live floor, by the manifest's
own time for recorded data (the example manifest), and a warning when wall-clock judging would
make most parcels late."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from control.lifecycle import ScanStatus
from control.service.feeds import RouteRequest
from control.service.routing import EngineRouter
from plant.site import load_site

CONFIG = Path(__file__).resolve().parents[2] / "config"


def priority_share(router: EngineRouter, n: int = 2000) -> float:
    """Route the manifest's first ``n`` parcels as read; the share sent for priority."""
    m = router.manifest
    reqs = [RouteRequest(key=i, identity=m.parcel_id(i), status=ScanStatus.READ, length_mm=300.0, lap=0) for i in range(n)]
    status = np.zeros(64, np.uint16)
    out = router.route(reqs, status)
    return sum(1 for _, _, why in out if why == "priority") / n


def make(tmp_path: Path, clock: str, now: float) -> EngineRouter:
    settings = tmp_path / f"routing-{clock}.yaml"
    settings.write_text((CONFIG / "routing.yaml").read_text().replace("deadline_clock: manifest",
                                                                       f"deadline_clock: {clock}"))
    site = load_site(CONFIG / "site.yaml")
    r = EngineRouter.from_files(site, CONFIG / "sortplan.csv", CONFIG / "manifest.csv", settings)
    r.wall = lambda: now
    r._origin = float(np.nanmin(r.manifest.arrival)) - now
    return r


@pytest.mark.parametrize("years_later", [0, 1, 5])
def test_the_example_manifest_routes_the_same_on_any_date_in_manifest_time(tmp_path: Path, years_later: int) -> None:
    now = 1_795_000_000.0 + years_later * 365 * 86400.0
    share = priority_share(make(tmp_path, "manifest", now))
    assert share < 0.15, f"{share:.0%} priority in manifest time"
    again = priority_share(make(tmp_path, "manifest", now + 86400.0 * 40))
    assert again == share


def test_by_the_wall_clock_stale_deadlines_are_late_and_the_service_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="control.service.routing"):
        r = make(tmp_path, "wall", 1_900_000_000.0)  # 2030: every example deadline is past
        r._warn_stale_deadlines()
    # late parcels do get priority (that is the rule): on stale data, every one with a priority chute
    assert priority_share(r) > 2 * priority_share(make(tmp_path, "manifest", 1_900_000_000.0))
    assert any("deadline_clock: manifest" in m for m in caplog.messages)


def test_a_parcel_decoded_too_late_goes_where_a_no_read_goes_and_says_why(tmp_path: Path) -> None:
    r = make(tmp_path, "manifest", 1_795_000_000.0)
    m = r.manifest
    late = RouteRequest(key=1, identity="", status=ScanStatus.TIMEOUT, length_mm=300.0, lap=0)
    unread = RouteRequest(key=2, identity="", status=ScanStatus.NO_READ, length_mm=300.0, lap=0)
    read = RouteRequest(key=3, identity=m.parcel_id(0), status=ScanStatus.READ, length_mm=300.0, lap=0)
    (c_late, _, why_late), (c_unread, _, why_unread), (_, _, why_read) = r.route(
        [late, unread, read], np.zeros(64, np.uint16))
    assert (why_late, why_unread) == ("decode_late", "no_read")
    assert c_late == c_unread and why_read not in ("decode_late", "no_read")

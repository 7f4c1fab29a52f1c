"""The site view: what the relays publish, folded into one line per sorter (idempotent on event
ids), and the two-sorter site demo end to end on a real Mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.broker import mosquitto_path
from host.messages import ParcelEvent, UnitEvent, confirmation, encode, status, unit_message
from host.siteview import SiteView

ROOT = Path(__file__).resolve().parents[2]


def test_the_site_view_counts_each_confirmation_once_and_knows_who_is_offline() -> None:
    view = SiteView("hub/out")
    sorted_ = ParcelEvent(7, 1.0, 3, "sorted", 0, 12, "sorted_by_rule", "RR123456785GB", "", 1, 2)
    rejected = ParcelEvent(8, 1.5, 4, "rejected", 1, 29, "no_read", "", "", 1, 2)
    for _ in range(2):  # at-least-once: the second copy of each is ignored
        view.take("hub/out/s1/parcel/confirmation", encode(confirmation("s1", sorted_)), 1.0)
        view.take("hub/out/s1/parcel/confirmation", encode(confirmation("s1", rejected)), 1.0)
    topic, msg = unit_message("s1", UnitEvent(3, 1.0, "state", "EXECUTE", 6, ""))
    view.take(f"hub/out/s1/unit/{topic}", encode(msg), 1.0)
    view.take("hub/out/s2/status", encode(status("s2", False, 2.0, "connection lost (last will)", "r")), 2.0)
    view.take("hub/out/s2/parcel/confirmation", b"not json", 2.0)
    got = view.as_json(2.0)
    s1, s2 = got["sorters"]
    assert (s1["sorter"], s1["state"], s1["confirmations"], s1["by_disposition"]) == (
        "s1", "EXECUTE", 2, {"sorted": 1, "rejected": 1})
    assert got["duplicates_ignored"] == 2
    assert (s2["online"], s2["status_reason"], s2["confirmations"]) == (False, "connection lost (last will)", 0)


@pytest.mark.slow
@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto not installed (./dev setup installs it)")
def test_two_sorters_on_one_broker_every_final_outcome_reaches_the_site_view() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sortctl.cli", "demo", "--sorters", "2", "--parcels", "40", "--rate", "20000",
         "--json"], capture_output=True, text=True, timeout=240, cwd=ROOT, check=False,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert [r["sorter"] for r in report["sorters"]] == ["s1", "s2"]
    for r in report["sorters"]:
        assert r["ok"] and r["final_outcomes"] == 40 and r["confirmations_received"] == 40, r
    assert all(s["online"] for s in report["site"]["sorters"])

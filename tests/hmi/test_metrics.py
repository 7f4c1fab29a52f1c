"""/metrics: Prometheus text that parses, with the families and values the store holds."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from control.store import Batch, EventStore
from hmi.metrics import FAMILIES
from tests.hmi.conftest import Hmi


async def scrape(hmi: Hmi) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    r = await hmi.client.get("/metrics")  # no login: a scraper has none
    assert r.status == 200 and r.content_type == "text/plain"
    out: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for fam in text_string_to_metric_families(await r.text()):
        out[fam.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}
    return out


async def test_metrics_parse_and_match_the_store(hmi: Hmi) -> None:
    m = await scrape(hmi)
    assert {"sortcentre_" + f for f in FAMILIES} <= set(m)
    parcels = m["sortcentre_parcels"]
    assert parcels[("sortcentre_parcels_total", (("outcome", "sorted"), ("reason", "sorted_by_rule")))] == \
        hmi.counts["sorted"]
    assert sum(v for (_n, labels), v in parcels.items() if ("outcome", "rejected") in labels) == hmi.counts["rejected"]
    assert m["sortcentre_chute_parcels"][("sortcentre_chute_parcels_total", (("chute", "7"), ("name", "D07")))] == \
        hmi.counts["chute7"]
    assert m["sortcentre_recirculations"][("sortcentre_recirculations_total", ())] == hmi.counts["recirculated"]
    state = {dict(labels)["state"]: v for (_n, labels), v in m["sortcentre_unit_state"].items()}
    assert state["EXECUTE"] == 1 and sum(state.values()) == 1 and len(state) == 17
    links = {dict(labels)["link"]: v for (_n, labels), v in m["sortcentre_link_up"].items()}
    assert links == {"conveyor": 1.0, "diverter": 1.0, "camera": 0.0}
    assert m["sortcentre_alarms_active"][("sortcentre_alarms_active", ())] == 1  # camera_down (chute_full is shelved)
    hist = m["sortcentre_decision_latency_seconds"]
    assert hist[("sortcentre_decision_latency_seconds_bucket", (("le", "0.002"),))] == 900
    assert hist[("sortcentre_decision_latency_seconds_bucket", (("le", "+Inf"),))] == 1000
    assert abs(hist[("sortcentre_decision_latency_seconds_sum", ())] - 1.4) < 1e-9
    assert ("sortcentre_store_commit_seconds_count", ()) in m["sortcentre_store_commit_seconds"]
    age = m["sortcentre_health_age_seconds"][("sortcentre_health_age_seconds", ())]
    assert 0 <= age < 60


async def test_counters_follow_new_events(hmi: Hmi) -> None:
    before = await scrape(hmi)
    key = ("sortcentre_parcels_total", (("outcome", "lost"), ("reason", "")))
    assert key not in before["sortcentre_parcels"]
    store = EventStore(hmi.db)
    try:
        b = Batch()
        for tid in (901, 902):
            b.parcel_event(time.time(), tid, "lost", detail="not seen at the scanner", boot_id=5)
        store.commit(b)
    finally:
        store.close()
    after = await scrape(hmi)
    assert after["sortcentre_parcels"][key] == 2

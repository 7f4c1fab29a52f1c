"""Store -> broker -> host: every final parcel event reaches a subscriber once per parcel (by
event id), through a broker outage and across relay restarts; birth and death are retained."""

from __future__ import annotations

from pathlib import Path

from harness.broker import Broker
from plant.site import Site
from tests.host.conftest import TOPICS, conforms, payloads, running, until, write_parcels, write_unit


async def test_every_final_parcel_event_reaches_the_host_once_with_a_schema_valid_payload(
    tmp_path: Path, broker: Broker, site: Site
) -> None:
    db = tmp_path / "events.sqlite"
    write_parcels(db, 1, 300)
    write_parcels(db, 301, 5, kinds=("inducted", "recirculated", "rejected"))
    write_unit(db, "state", "EXECUTE", 6, "started by ana")
    write_unit(db, "alarm", "jam", 12, "jam at induct")
    write_unit(db, "operator", "CHUTE_OUT", 0, "ana: accepted")
    async with running(db, broker, site) as r:
        w = r.watcher
        await until(lambda: len(w.on("/parcel/confirmation")) >= 305, what="305 confirmations")
        await until(lambda: w.on("/counters") and w.on("/unit/event"))
        confs = payloads(w, "/parcel/confirmation")
        ids = [c["event_id"] for c in confs]
        assert len(set(ids)) == 305
        assert {c["parcel_id"] for c in confs} == {f"P{i}" for i in range(1, 306)}
        assert {c["disposition"] for c in confs} == {"sorted", "rejected"}
        assert all(c["event_id"].startswith("sorter3:pe:") for c in confs)
        assert len(payloads(w, "/parcel/recirculation")) == 5
        for suffix in ("/parcel/confirmation", "/parcel/recirculation", "/unit/state", "/unit/alarm",
                       "/unit/event", "/counters", "/status"):
            got = payloads(w, suffix)
            assert got, suffix
            for p in got:
                conforms(p)
        status = payloads(w, "/status")
        assert status[-1]["state"] == "online"
        counters = payloads(w, "/counters")[-1]
        await until(lambda: payloads(w, "/counters")[-1]["totals"]["sorted"] == 300)
        counters = payloads(w, "/counters")[-1]
        assert counters["totals"]["rejected"] == 5 and counters["totals"]["recirculated"] == 5
        # rows written while the relay runs are published too, in order
        write_parcels(db, 1000, 50)
        await until(lambda: len(w.on("/parcel/confirmation")) >= 355)
    assert TOPICS.root == "plant1/hall2/sorter3"

"""Store -> broker -> host: every final parcel event reaches a subscriber once per parcel (by
event id), through a broker outage and across relay restarts; birth and death are retained."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from harness.broker import Broker, Watcher
from plant.site import Site
from tests.host.conftest import (
    TOPICS,
    conforms,
    payloads,
    running,
    until,
    write_parcels,
    write_unit,
)


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
        # counters follow the events they count: the one after the last batch says it all (one
        # published between the batches said sorted 300, rejected 0: CI read that one)
        def totals() -> tuple[int, int, int]:
            t = payloads(w, "/counters")[-1]["totals"]
            return t["sorted"], t["rejected"], t["recirculated"]

        await until(lambda: totals() == (300, 5, 5), what="counters 300 sorted, 5 rejected, 5 recirculated")
        # rows written while the relay runs are published too, in order
        write_parcels(db, 1000, 50)
        await until(lambda: len(w.on("/parcel/confirmation")) >= 355)
    assert TOPICS.root == "plant1/hall2/sorter3"


async def test_a_broker_outage_loses_nothing_and_duplicates_only_by_event_id(
    tmp_path: Path, broker: Broker, site: Site
) -> None:
    db = tmp_path / "events.sqlite"
    write_parcels(db, 1, 100)
    async with running(db, broker, site) as r:
        w = r.watcher
        await until(lambda: len(w.on("/parcel/confirmation")) >= 100)
        broker.stop()  # clean stop: the broker keeps the host's session and queue
        for i in range(10):  # the controller keeps writing while the broker is away
            write_parcels(db, 200 + i * 20, 20)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        broker.start()
        await until(lambda: len({p["event_id"] for p in payloads(w, "/parcel/confirmation")}) >= 300, 20.0,
                    "300 distinct confirmations after the outage")
        got = payloads(w, "/parcel/confirmation")
        assert {p["parcel_id"] for p in got} == {f"P{i}" for i in [*range(1, 101), *range(200, 400)]}
        by_id: dict[str, dict[str, object]] = {}
        for p in got:  # a copy is the same message: same event id, same content
            assert by_id.setdefault(p["event_id"], p) == p
        assert r.relay.stats.connects >= 2


async def test_birth_is_retained_online_and_a_clean_stop_leaves_offline(
    tmp_path: Path, broker: Broker, site: Site
) -> None:
    db = tmp_path / "events.sqlite"
    write_parcels(db, 1, 1)
    async with running(db, broker, site):
        pass
    # a host that connects later still learns the sorter's link state from the retained message
    late = Watcher(broker.port, TOPICS.status, identifier="late-host")
    stop = asyncio.Event()
    task = asyncio.ensure_future(late.run(stop))
    try:
        await until(lambda: late.got)
    finally:
        stop.set()
        await task
    last = json.loads(late.got[-1].payload)
    assert late.got[-1].retain and last["state"] == "offline" and last["reason"] == "relay stopped"

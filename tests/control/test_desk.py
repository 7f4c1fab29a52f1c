# ruff: noqa: F811  (the fault matrix fixtures, imported by name)
"""Operator commands the controller answers itself (control/service/desk.py), against the real
controller and the simulator's PLC programs in virtual time: chutes out of service, unit mode,
alarm acknowledgement and shelving, live sort plan versions with rollback, pre-advice updates.
Each is sent through the store's command table with a user, as the HMI and the CLI send them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from control.store import EventStore
from harness.audit import Truth, audit
from harness.virtual import RoutingInputs, VirtualFloor
from plant.codes import PackMLState
from plant.site import Site
from plant.tagmap import TagMap
from tests.control.test_fault_matrix import (  # noqa: F401  (fixtures)
    CONFIG,
    fast_site,
    open_floor,
    routing,
    sim_manifest,
    tags,
)

PLAN = (CONFIG / "sortplan.csv").read_text()


async def answered(f: VirtualFloor, cid: int, within_s: float = 5.0) -> str:
    got = await f.run_until(lambda: f.result(cid)[0], within_s)
    assert got is not None, f"command {cid} not answered within {within_s} s"
    return f.result(cid)[1]


def rows(f: VirtualFloor) -> Any:
    store = EventStore(f.db, readonly=True)
    try:
        return store.parcels(), store.parcel_events(), store.commands(), store.plans(), store.unit_events()
    finally:
        store.close()


def no_missorts(f: VirtualFloor) -> None:
    parcels = rows(f)[0]
    a = audit(parcels, Truth.from_records(f.sim.ground_truth().records()), 0)
    assert a.missorts == [] and a.misrecorded == [], a.missort_detail[:5]


async def test_a_chute_out_of_service_gets_no_parcel_and_its_parcels_take_their_fallback(
    tmp_path: Path, fast_site: Site, tags: TagMap, routing: RoutingInputs, sim_manifest: Any
) -> None:
    (tmp_path / "a").mkdir()
    base = await open_floor(tmp_path / "a", fast_site, tags, routing, sim_manifest)
    await base.run_for(25.0)
    await base.close()
    sorted_to = {(r.identity): r.chute for r in rows(base)[0] if r.state == "sorted"}
    busiest, n = Counter(sorted_to.values()).most_common(1)[0]
    assert n >= 2

    (tmp_path / "b").mkdir()
    f = await open_floor(tmp_path / "b", fast_site, tags, routing, sim_manifest)
    try:
        cid = f.send("CHUTE_OUT", "ana", chute=busiest, reason="bag jammed")
        assert (await answered(f, cid)).startswith("accepted")
        t_out = f.wall()
        await f.run_for(25.0)
        parcels, events, commands, _, units = rows(f)
        into = [e for e in events if e[2] in ("sorted", "routed") and e[4] == busiest and e[0] > t_out + 0.5]
        assert into == [], f"decisions for chute {busiest} after it was taken out: {into[:3]}"
        moved = [r for r in parcels if sorted_to.get(r.identity) == busiest and r.final]
        assert moved and all(r.chute != busiest for r in moved)
        no_missorts(f)
        assert ("CHUTE_OUT", "ana") in [(c[2], c[3]) for c in commands]
        assert any(u[1] == "chute" and "ana" in u[4] and "bag jammed" in u[4] for u in units)
        # it stays out across a controller restart, and comes back in with CHUTE_IN
        await f.stop_controller("kill")
        await f.start_controller()
        assert f.controller is not None and bool(f.controller.parcels.chute_out[busiest])
        cid = f.send("CHUTE_IN", "bo", chute=busiest)
        assert (await answered(f, cid)).startswith("accepted")
        assert not f.controller.parcels.chute_out[busiest]
        bad = f.send("CHUTE_OUT", "bo", chute=999)
        assert "no chute 999" in await answered(f, bad)
        reject = f.send("CHUTE_OUT", "bo", chute=29)
        assert "the reject chute" in await answered(f, reject)
    finally:
        await f.close()


async def test_a_bad_plan_is_refused_with_its_line_and_a_good_one_is_swapped_in_and_rolled_back(
    tmp_path: Path, fast_site: Site, tags: TagMap, routing: RoutingInputs, sim_manifest: Any
) -> None:
    f = await open_floor(tmp_path, fast_site, tags, routing, sim_manifest)
    try:
        await f.run_for(3.0)
        assert f.controller is not None and f.controller.router.plan_version == 1
        lines = PLAN.splitlines()
        broken = "\n".join([*lines[:5], ",GB,ZZ9,16|18|999,,bad chute", *lines[5:]])
        cid = f.send("PLAN_ACTIVATE", "eve", plan_csv=broken, source="tonight.csv")
        result = await answered(f, cid)
        assert result.startswith("refused") and "tonight.csv:6" in result and "999" in result, result
        assert f.controller.router.plan_version == 1  # the old plan keeps running

        # everything GB to one chute: a plan a person can see at work
        gb_one = "\n".join(ln.replace("16|18|20", "18") for ln in lines)
        cid = f.send("PLAN_ACTIVATE", "eve", plan_csv=gb_one, source="gb-one.csv")
        result = await answered(f, cid)
        assert result.startswith("accepted") and "version 3" in result, result  # 2 was the refused one
        t_swap = f.wall()
        await f.run_for(20.0)
        _, events, _, plans, _ = rows(f)
        after = [e for e in events if e[2] == "routed" and e[0] > t_swap]
        assert after, "no decisions after the swap"
        store = EventStore(f.db, readonly=True)
        try:
            versions = {r[0] for r in store._db.execute(
                "SELECT plan_version FROM parcel_events WHERE kind='routed' AND t > ?", (t_swap,))}
        finally:
            store.close()
        assert versions == {3}
        assert [(p.version, p.state, p.user) for p in plans] == [
            (3, "active", "eve"), (2, "refused", "eve"), (1, "replaced", "")]
        cid = f.send("PLAN_ROLLBACK", "eve")
        assert "to version 1" in await answered(f, cid)
        assert f.controller.router.plan_version == 1
        # a restart runs the plan that was active, not the file's again
        await f.stop_controller("term")
        await f.start_controller()
        assert f.controller.router.plan_version == 1
        no_missorts(f)
    finally:
        await f.close()


async def test_a_live_plan_survives_a_restart(tmp_path: Path, fast_site: Site, tags: TagMap,
                                              routing: RoutingInputs, sim_manifest: Any) -> None:
    f = await open_floor(tmp_path, fast_site, tags, routing, sim_manifest)
    try:
        gb_one = PLAN.replace("16|18|20", "18")
        assert (await answered(f, f.send("PLAN_ACTIVATE", "eve", plan_csv=gb_one, source="x.csv"))).startswith(
            "accepted")
        await f.stop_controller("kill")
        await f.start_controller()
        assert f.controller is not None and f.controller.router.plan_version == 2
        assert "16|18|20" not in f.controller.router.source.plan_csv
    finally:
        await f.close()


async def test_maintenance_mode_needs_a_stopped_sorter_and_takes_automatic_restarts_away(
    tmp_path: Path, fast_site: Site, tags: TagMap, routing: RoutingInputs, sim_manifest: Any
) -> None:
    f = await open_floor(tmp_path, fast_site, tags, routing, sim_manifest)
    try:
        assert "refused" in await answered(f, f.send("MODE", "eve", mode="MAINTENANCE"))
        assert (await answered(f, f.send("STOP", "eve"))) == "accepted"
        assert await f.run_until(lambda: f.sim.conveyor.state == PackMLState.STOPPED, 5.0) is not None
        assert "MAINTENANCE" in await answered(f, f.send("MODE", "eve", mode="maintenance"))
        # a restarted controller starts a Stopped belt by itself in Production; not in Maintenance,
        # which it keeps across the restart
        await f.stop_controller("kill")
        await f.start_controller()
        assert f.controller is not None and f.controller.unit.mode.name == "MAINTENANCE"
        await f.run_for(5.0)
        assert f.sim.conveyor.state == PackMLState.STOPPED
        assert "PRODUCTION" in await answered(f, f.send("MODE", "eve", mode="PRODUCTION"))
        assert await f.run_until(f.executing, 5.0) is not None
        units = rows(f)[4]
        assert [u[2] for u in units if u[1] == "mode"] == ["MAINTENANCE", "PRODUCTION"]
    finally:
        await f.close()


async def test_alarms_are_acknowledged_and_shelved_by_name(
    tmp_path: Path, fast_site: Site, tags: TagMap, routing: RoutingInputs, sim_manifest: Any
) -> None:
    f = await open_floor(tmp_path, fast_site, tags, routing, sim_manifest)
    try:
        f.camera.set_down(True)
        await f.run_for(6.0)
        store = EventStore(f.db, readonly=True)
        try:
            (alarm,) = [a for a in store.alarms(open_only=True) if a.name == "camera_down"]
        finally:
            store.close()
        assert alarm.state(f.wall()) == "unack_active"
        assert "reason" in await answered(f, f.send("ALARM_SHELVE", "ana", alarm=alarm.id, minutes=30))
        assert "shelved" in await answered(f, f.send("ALARM_SHELVE", "ana", alarm=alarm.id, minutes=30,
                                                      reason="camera being cleaned"))
        assert "acknowledged" in await answered(f, f.send("ALARM_ACK", "ana", alarm=alarm.id))
        assert "already acknowledged by ana" in await answered(f, f.send("ALARM_ACK", "bo", alarm=alarm.id))
        f.camera.set_down(False)
        await f.run_for(6.0)
        store = EventStore(f.db, readonly=True)
        try:
            (a,) = [a for a in store.alarms() if a.id == alarm.id]
        finally:
            store.close()
        assert (a.acked_by, a.shelved_by, a.shelve_reason) == ("ana", "ana", "camera being cleaned")
        assert a.cleared_t is not None and a.state(f.wall()) == "closed"
    finally:
        await f.close()


async def test_pre_advice_rows_are_added_live_and_bad_rows_are_reported_by_line(
    tmp_path: Path, fast_site: Site, tags: TagMap, routing: RoutingInputs, sim_manifest: Any
) -> None:
    f = await open_floor(tmp_path, fast_site, tags, routing, sim_manifest)
    try:
        assert f.controller is not None
        header, first = (CONFIG / "manifest.csv").read_text().splitlines()[:2]
        n = len(f.controller.router.manifest)
        csv = "\n".join([header, "RR123456785GB,GB,SW1A1AA,,,2026-11-23T18:00:00Z,,300,200,100,1.5",
                         "XX1,GB,SW1A1AA,,,2026-11-23T18:00:00Z,,300,200,100,1.5", first])
        result = await answered(f, f.send("MANIFEST_ADD", "wms", csv=csv, source="batch-7.csv"))
        assert "1 rows added" in result and "1 rows rejected" in result and "batch-7.csv:3" in result, result
        assert "1 parcels already pre-advised (lines 4)" in result, result
        router = f.controller.router
        assert len(router.manifest) == n + 1 and router.manifest.row_of("RR123456785GB") == n
        await f.run_for(5.0)  # the new engine routes on
        no_missorts(f)
    finally:
        await f.close()


async def test_after_a_restart_an_alarm_still_there_is_the_same_alarm_and_one_gone_is_cleared(
    tmp_path: Path, fast_site: Site, tags: TagMap, routing: RoutingInputs, sim_manifest: Any
) -> None:
    f = await open_floor(tmp_path, fast_site, tags, routing, sim_manifest)

    def camera_alarms() -> list[Any]:
        store = EventStore(f.db, readonly=True)
        try:
            return [a for a in store.alarms() if a.name == "camera_down"]
        finally:
            store.close()

    try:
        f.camera.set_down(True)
        await f.run_for(6.0)
        (alarm,) = camera_alarms()
        assert "acknowledged" in await answered(f, f.send("ALARM_ACK", "ana", alarm=alarm.id))
        await f.stop_controller("kill")
        await f.start_controller()
        await f.run_for(15.0)
        (again,) = camera_alarms()  # still down: the same alarm, still acknowledged by ana
        assert (again.id, again.cleared_t, again.acked_by) == (alarm.id, None, "ana")
        await f.stop_controller("kill")
        f.camera.set_down(False)  # repaired while the controller was down
        await f.start_controller()
        await f.run_for(15.0)
        (gone,) = camera_alarms()
        assert gone.cleared_t is not None and gone.state(f.wall()) == "closed"
    finally:
        await f.close()

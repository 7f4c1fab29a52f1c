# ruff: noqa: F811  (the fault matrix fixtures, imported by name)
"""Host -> sorter: requests over MQTT reach the real controller (in virtual time, as
tests/control/test_desk.py runs it) as commands from user ``host``; each is answered once on
``response/<id>``, a bad line is named, and a replayed request id is not applied twice."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt

from control.store import EventStore
from harness.broker import Broker
from harness.virtual import RoutingInputs, VirtualFloor
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
from tests.host.conftest import TOPICS, conforms, payloads, running

PLAN = (CONFIG / "sortplan.csv").read_text()
MANIFEST_HEADER = (CONFIG / "manifest.csv").read_text().splitlines()[0]


async def ask(port: int, kind: str, rid: str, body: object | bytes) -> None:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"host-pub-{rid}") as c:
        await c.publish(TOPICS.request(kind, rid), payload, qos=1)


async def answer(f: VirtualFloor, w: Any, rid: str, n: int = 1, within_s: float = 20.0) -> dict[str, Any]:
    """Tick the floor (virtual time) with a breath of real time for the relay, until the
    ``n``-th response to ``rid`` is in."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while len(got := payloads(w, f"/response/{rid}")) < n:
        assert loop.time() < deadline, f"no response {n} to {rid} within {within_s} s"
        await f.tick()
        await asyncio.sleep(0.002)
    conforms(got[-1])
    return got[-1]


def host_commands(db: Path) -> list[tuple[str, str]]:
    store = EventStore(db, readonly=True)
    try:
        return [(c, json.loads(a).get("request_id", "")) for c, a in store._db.execute(
            "SELECT command, args FROM commands WHERE user='host' ORDER BY id")]
    finally:
        store.close()


async def test_plan_and_manifest_requests_reach_the_controller_once_and_bad_lines_are_named(
    tmp_path: Path, broker: Broker, fast_site: Site, tags: TagMap, routing: RoutingInputs, sim_manifest: Any
) -> None:
    f = await open_floor(tmp_path, fast_site, tags, routing, sim_manifest)
    try:
        async with running(f.db, broker, fast_site) as r:
            w = r.watcher
            # a good plan: validated by the relay, activated by the controller
            gb_one = "\n".join(ln.replace("16|18|20", "18") for ln in PLAN.splitlines())
            await ask(broker.port, "plan", "plan-1", {"plan_csv": gb_one, "source": "gb-one.csv"})
            ok = await answer(f, w, "plan-1")
            assert ok["accepted"] and ok["stage"] == "controller" and "version 2" in ok["result"], ok
            assert f.controller is not None and f.controller.router.plan_version == 2

            # the same request id again (a QoS 1 redelivery or a host retry): the same answer, not applied again
            await ask(broker.port, "plan", "plan-1", {"plan_csv": gb_one, "source": "gb-one.csv"})
            again = await answer(f, w, "plan-1", n=2)
            assert again == ok
            assert host_commands(f.db) == [("PLAN_ACTIVATE", "plan-1")]

            # a plan naming a chute the site lacks: refused by the relay, with file, line and field
            lines = PLAN.splitlines()
            broken = "\n".join([*lines[:5], ",GB,ZZ9,16|18|999,,bad chute", *lines[5:]])
            await ask(broker.port, "plan", "plan-2", {"plan_csv": broken, "source": "tonight.csv"})
            bad = await answer(f, w, "plan-2")
            assert not bad["accepted"] and bad["stage"] == "relay"
            assert bad["errors"] == [{"file": "tonight.csv", "line": 6, "field": "chutes",
                                      "message": "chute 999 is not in the site"}], bad
            assert "tonight.csv:6" in bad["result"]

            # pre-advice with one bad row: nothing taken, the line named
            good_row = "RR000000014GB,GB,EC1A1BB,,,2026-11-23T14:00:00Z,,300,200,100,1.5"
            bad_row = "NOTANID,GB,EC1A1BB,,,2026-11-23T14:00:00Z,,300,200,100,1.5"
            await ask(broker.port, "manifest", "m-1", {"csv": "\n".join([MANIFEST_HEADER, good_row, bad_row]) + "\n",
                                                       "source": "batch7.csv"})
            m1 = await answer(f, w, "m-1")
            assert not m1["accepted"] and m1["errors"][0]["line"] == 3 and m1["errors"][0]["field"] == "parcel_id", m1

            # the good row alone: taken by the controller
            await ask(broker.port, "manifest", "m-2", {"csv": f"{MANIFEST_HEADER}\n{good_row}\n", "source": "batch8.csv"})
            m2 = await answer(f, w, "m-2")
            assert m2["accepted"] and "1 rows added" in m2["result"], m2

            # a rollback goes through the controller; it answers (the plan it replaced is version 1)
            await ask(broker.port, "plan-rollback", "rb-1", {})
            rb = await answer(f, w, "rb-1")
            assert rb["accepted"] and "version 1" in rb["result"], rb
            assert host_commands(f.db) == [("PLAN_ACTIVATE", "plan-1"), ("MANIFEST_ADD", "m-2"), ("PLAN_ROLLBACK", "rb-1")]
            # and a second rollback is the controller's refusal, said as such
            await ask(broker.port, "plan-rollback", "rb-2", b"")
            rb2 = await answer(f, w, "rb-2")
            assert not rb2["accepted"] and rb2["stage"] == "controller", rb2
    finally:
        await f.close()

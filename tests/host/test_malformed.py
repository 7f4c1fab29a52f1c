"""Malformed host requests: any bytes on any request topic end in a nack with a reason (or a
logged refusal for a topic that names no request id), never a traceback, never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import aiomqtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.broker import Broker
from host.requests import check_request
from host.topics import REQUEST_KINDS, parse_request_topic
from plant.site import Site
from tests.host.conftest import TOPICS, conforms, payloads, running, until, write_parcels

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["plan_csv", "csv", "source", "settings_yaml", "x"]) | st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(REQUEST_KINDS), payload=st.binary(max_size=400) | JSONISH.map(lambda v: json.dumps(v).encode()))
def test_any_payload_is_checked_without_raising(kind: str, payload: bytes, site: Site) -> None:
    checked = check_request(kind, "r1", payload, site)
    assert checked.ok or checked.reason


@settings(max_examples=200, deadline=None)
@given(body=st.text(max_size=300))
def test_any_text_as_a_plan_or_a_manifest_is_checked_without_raising(body: str, site: Site) -> None:
    for kind, key in (("plan", "plan_csv"), ("manifest", "csv")):
        checked = check_request(kind, "r1", json.dumps({key: body}).encode(), site)
        assert checked.ok or checked.reason


@given(tail=st.text(max_size=80))
def test_any_topic_parses_to_a_request_or_a_reason(tail: str) -> None:
    got = parse_request_topic(TOPICS, f"{TOPICS.root}/request/{tail}")
    assert isinstance(got, str) or (got[0] in REQUEST_KINDS and got[1])


async def test_malformed_requests_over_the_broker_are_nacked_and_the_relay_keeps_publishing(
    tmp_path: Path, broker: Broker, site: Site
) -> None:
    db = tmp_path / "events.sqlite"
    write_parcels(db, 1, 10)
    cases = {
        "plan/not-json": b"\xff\xfe{{{",
        "plan/wrong-fields": json.dumps({"plan": "x", "extra": 1}).encode(),
        "manifest/wrong-type": json.dumps({"csv": 12}).encode(),
        "manifest/huge": json.dumps({"csv": "x" * 5000}).encode(),
        "plan/empty": b"",
        "plan/list": b"[1,2,3]",
        "manifest/bad-header": json.dumps({"csv": "a,b\n1,2\n"}).encode(),
    }
    async with running(db, broker, site, max_payload=4096) as r:
        w = r.watcher
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="fuzz-host") as c:
            for topic, payload in cases.items():
                await c.publish(f"{TOPICS.root}/request/{topic}", payload, qos=1)
            await c.publish(f"{TOPICS.root}/request/sing/a-song", b"{}", qos=1)
            await c.publish(f"{TOPICS.root}/request/plan", b"{}", qos=1)
        for topic in cases:
            rid = topic.split("/")[1]
            await until(lambda rid=rid: w.on(f"/response/{rid}"), what=f"nack for {rid}")
            nack = payloads(w, f"/response/{rid}")[-1]
            conforms(nack)
            assert not nack["accepted"] and nack["stage"] == "relay" and nack["result"].startswith("refused: ")
        assert "over the limit" in payloads(w, "/response/huge")[-1]["result"]
        assert "not JSON" in payloads(w, "/response/not-json")[-1]["result"]
        assert "tmp" not in json.dumps(payloads(w, "/response/bad-header"))  # no paths of ours leak
        await until(lambda: len(w.on("/response/_invalid")) >= 2, what="the two bad topics answered")
        write_parcels(db, 100, 5)  # still publishing
        await until(lambda: len(w.on("/parcel/confirmation")) >= 15)
        assert len(r.relay.stats.ignored) == len(cases) + 2

"""The HMI over real loopback HTTP against a real event store: login, roles, CSRF, commands,
plan uploads, alarms CSV, the parcel trace, the live stream and security headers."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from control.store import AlarmRaise, Batch, EventStore
from tests.hmi.conftest import Hmi, make_users, start_hmi
from tests.hmi.storefill import PLAN

MANIFEST_HEAD = (PLAN.parent / "manifest.csv").read_text(encoding="utf-8").splitlines()[:11]
PLAN_TEXT = PLAN.read_text(encoding="utf-8")


def commands_in(db: Path) -> list[tuple[str, str, dict[str, Any]]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT command, user, args FROM commands ORDER BY id").fetchall()
    finally:
        con.close()
    return [(str(c), str(u), json.loads(a) if a else {}) for c, u, a in rows]


# ------------------------------------------------------------------------------- login
async def test_login_and_logout(hmi: Hmi) -> None:
    r = await hmi.client.get("/api/me")
    assert r.status == 401
    page = await hmi.client.get("/overview", allow_redirects=False)
    assert page.status == 303 and page.headers["Location"].startswith("/login")
    csrf = await hmi.login("otto")
    me = await (await hmi.client.get("/api/me")).json()
    assert me["user"] == "otto" and me["role"] == "operator" and me["csrf"] == csrf
    cookie = next(c for c in hmi.set_cookies if c.startswith("hmi_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie  # plain HTTP here
    html = await (await hmi.client.get("/overview")).text()
    assert 'id="pml-state-EXECUTE"' in html and "current" in html
    r = await hmi.client.post("/logout", headers={"X-CSRF-Token": csrf, "Accept": "application/json"})
    assert r.status == 200
    assert (await hmi.client.get("/api/me")).status == 401


async def test_wrong_password_is_refused(hmi: Hmi) -> None:
    await hmi.login("otto", "not-the-password", expect=401)
    await hmi.login("nobody", "whatever-it-is", expect=401)
    assert (await hmi.client.get("/api/me")).status == 401


async def test_a_refused_login_keeps_the_page_it_was_going_to(hmi: Hmi) -> None:
    page = await (await hmi.client.get("/login", params={"next": "/chutes"})).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    r = await hmi.client.post("/login", data={"csrf_token": token.group(1), "user": "otto", "password": "wrong-one",
                                              "next": "/chutes"})
    assert r.status == 401
    assert 'name="next" value="/chutes"' in await r.text()


async def test_login_without_its_form_token_is_refused(hmi: Hmi) -> None:
    r = await hmi.client.post("/login", data={"user": "otto", "password": "operator-pass-1"},
                              headers={"Accept": "application/json"})
    assert r.status == 403


async def test_failed_logins_are_rate_limited(hmi: Hmi) -> None:
    for _ in range(5):
        await hmi.login("otto", "guess-guess", expect=401)
    r = await hmi.client.get("/login")
    token = (await r.text()).split('name="csrf_token" value="')[1].split('"')[0]
    r = await hmi.client.post("/login", data={"csrf_token": token, "user": "otto", "password": "operator-pass-1"},
                              headers={"Accept": "application/json"})
    assert r.status == 429  # even the right password, until the window passes
    assert 0 < int(r.headers["Retry-After"]) <= 60
    # per address too: another user from the same address is held back as well
    await hmi.login("enid", expect=429)


# ------------------------------------------------------------------------------- roles, CSRF
async def test_viewer_may_not_send_commands(hmi: Hmi) -> None:
    csrf = await hmi.login("vera")
    before = commands_in(hmi.db)
    r = await hmi.client.post("/api/command", json={"command": "STOP", "args": {}}, headers={"X-CSRF-Token": csrf})
    assert r.status == 403
    r = await hmi.client.post("/api/command", json={"command": "CHUTE_OUT", "args": {"chute": 4, "reason": "x"}},
                              headers={"X-CSRF-Token": csrf})
    assert r.status == 403
    assert commands_in(hmi.db) == before
    # but every page and JSON endpoint reads fine
    for path in ("/overview", "/chutes", "/alarms", "/trace", "/plan", "/trends", "/api/overview", "/api/chutes",
                 "/api/alarms", "/api/plans", "/api/trends", "/api/commands"):
        assert (await hmi.client.get(path)).status == 200, path


async def test_post_without_csrf_token_is_refused(hmi: Hmi) -> None:
    csrf = await hmi.login("otto")
    before = commands_in(hmi.db)
    r = await hmi.client.post("/api/command", json={"command": "HOLD"})
    assert r.status == 403
    r = await hmi.client.post("/api/command", json={"command": "HOLD"}, headers={"X-CSRF-Token": csrf[:-1] + "x"})
    assert r.status == 403
    r = await hmi.client.post("/api/command", data={"command": "HOLD"})  # a form without its hidden field
    assert r.status == 403
    assert commands_in(hmi.db) == before


async def test_operator_chute_out_is_stored_with_user_and_args(hmi: Hmi) -> None:
    csrf = await hmi.login("otto")
    r = await hmi.client.post("/api/command", json={"command": "CHUTE_OUT", "args": {"chute": 7, "reason": "bag change"}},
                              headers={"X-CSRF-Token": csrf})
    assert r.status == 202
    cid = (await r.json())["id"]
    assert commands_in(hmi.db)[-1] == ("CHUTE_OUT", "otto", {"chute": 7, "reason": "bag change"})
    status = await (await hmi.client.get(f"/api/commands/{cid}")).json()
    assert status["done"] is False and status["user"] == "otto"
    # the service takes it and answers
    store = EventStore(hmi.db)
    try:
        b = Batch()
        b.commands_done.append(("accepted", cid))
        store.commit(b)
    finally:
        store.close()
    status = await (await hmi.client.get(f"/api/commands/{cid}")).json()
    assert status["done"] is True and status["result"] == "accepted"


async def test_bad_arguments_and_roles_are_refused_before_storing(hmi: Hmi) -> None:
    csrf = await hmi.login("otto")
    before = commands_in(hmi.db)
    h = {"X-CSRF-Token": csrf}
    for body, status in (
        ({"command": "CHUTE_OUT", "args": {"chute": 7}}, 400),  # a reason is required
        ({"command": "CHUTE_OUT", "args": {"chute": "seven", "reason": "x"}}, 400),
        ({"command": "ALARM_SHELVE", "args": {"alarm": 2, "minutes": 0, "reason": "x"}}, 400),
        ({"command": "SELF_DESTRUCT"}, 400),
        ({"command": "MODE", "args": {"mode": "MAINTENANCE"}}, 403),  # engineer only
        ({"command": "PLAN_ROLLBACK"}, 403),
    ):
        r = await hmi.client.post("/api/command", json=body, headers=h)
        assert r.status == status, (body, await r.text())
    assert (await hmi.client.post("/api/plan/rollback", json={}, headers=h)).status == 403
    assert commands_in(hmi.db) == before
    r = await hmi.client.post("/api/command", json={"command": "ALARM_ACK", "args": {"alarm": 0}}, headers=h)
    assert r.status == 202
    assert commands_in(hmi.db)[-1] == ("ALARM_ACK", "otto", {"alarm": 0})


# ------------------------------------------------------------------------------- sort plans
async def test_bad_plan_upload_names_file_line_and_field(hmi: Hmi) -> None:
    csrf = await hmi.login("enid")
    bad = "destination_id,country,postal_prefix,chutes,priority_chute,description\n,GB,,16|18,,GB\n,DE,,99,,x\n"
    form = aiohttp.FormData()
    form.add_field("plan", bad.encode(), filename="night.csv", content_type="text/csv")
    r = await hmi.client.post("/api/plan/validate", data=form, headers={"X-CSRF-Token": csrf})
    assert r.status == 422
    err = (await r.json())["error"]
    assert err["file"] == "night.csv" and err["line"] == 3 and err["field"] == "chutes"
    assert err["text"].startswith("night.csv:3: chutes:")
    form = aiohttp.FormData()
    form.add_field("plan", bad.encode(), filename="night.csv", content_type="text/csv")
    r = await hmi.client.post("/api/plan/activate", data=form, headers={"X-CSRF-Token": csrf})
    assert r.status == 422
    assert not [c for c in commands_in(hmi.db) if c[0] == "PLAN_ACTIVATE"]


async def test_good_plan_previews_then_activates(hmi: Hmi) -> None:
    csrf = await hmi.login("enid")
    text = PLAN_TEXT

    def form() -> aiohttp.FormData:
        f = aiohttp.FormData()
        f.add_field("plan", text.encode(), filename="sortplan.csv", content_type="text/csv")
        f.add_field("settings", b"home_country: GB\npriority_margin_min: 30\n", filename="routing.yaml")
        return f

    r = await hmi.client.post("/api/plan/validate", data=form(), headers={"X-CSRF-Token": csrf})
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["ok"] and body["rules"] > 10 and body["settings_given"]
    p = body["preview"]
    assert p["parcels"] > 1000 and len(p["chutes"]) == 29
    assert p["series"]["lines"] and len(p["series"]["hours"]) == len(p["series"]["lines"][0]["values"])
    # and the same replay with the plan in force, to compare against
    cur = body["current"]
    assert isinstance(cur["overflow_events"], int) and set(cur["peak_fill"]) == {str(c["id"]) for c in p["chutes"]}
    r = await hmi.client.post("/api/plan/activate", data=form(), headers={"X-CSRF-Token": csrf})
    assert r.status == 202
    name, user, args = commands_in(hmi.db)[-1]
    assert (name, user) == ("PLAN_ACTIVATE", "enid")
    assert args["plan_csv"] == text and args["source"] == "sortplan.csv" and "priority_margin_min" in args["settings_yaml"]


async def test_bad_routing_settings_are_named(hmi: Hmi) -> None:
    csrf = await hmi.login("enid")
    f = aiohttp.FormData()
    f.add_field("plan", PLAN_TEXT.encode(), filename="sortplan.csv")
    f.add_field("settings", b"home_country: GB\npriority_margin_min: -5\n", filename="routing.yaml")
    r = await hmi.client.post("/api/plan/validate", data=f, headers={"X-CSRF-Token": csrf})
    assert r.status == 422
    err = (await r.json())["error"]
    assert err["file"] == "routing.yaml" and err["line"] == 2 and err["field"] == "priority_margin_min"


async def test_manifest_rows_are_checked_then_sent(hmi: Hmi) -> None:
    csrf = await hmi.login("enid")
    rows = MANIFEST_HEAD
    f = aiohttp.FormData()
    f.add_field("manifest", ("\n".join(rows) + "\n").encode(), filename="late.csv")
    r = await hmi.client.post("/api/manifest", data=f, headers={"X-CSRF-Token": csrf})
    assert r.status == 202, await r.text()
    name, user, args = commands_in(hmi.db)[-1]
    assert (name, user, args["source"]) == ("MANIFEST_ADD", "enid", "late.csv") and args["csv"].count("\n") == 11
    f = aiohttp.FormData()
    f.add_field("manifest", b"id,where\n1,2\n", filename="wrong.csv")
    r = await hmi.client.post("/api/manifest", data=f, headers={"X-CSRF-Token": csrf})
    assert r.status == 422 and (await r.json())["error"]["file"] == "wrong.csv"


# ------------------------------------------------------------------------------- reading
async def test_overview_figures_match_the_store(hmi: Hmi) -> None:
    await hmi.login("vera")
    ov = await (await hmi.client.get("/api/overview")).json()
    assert ov["unit"]["state"] == "EXECUTE" and ov["unit"]["mode"] == "PRODUCTION"
    assert set(ov["unit"]["allowed"]) == {"STOP", "HOLD", "SUSPEND", "ABORT", "COMPLETE"}
    assert ov["service"]["status"] == "running"
    assert ov["links"] == {"conveyor": "up", "diverter": "up", "camera": "down"}
    r = ov["rates"]
    assert r["shift_sorted"] == hmi.counts["sorted"] and r["shift_rejected"] == hmi.counts["rejected"]
    assert r["shift_recirculated"] == hmi.counts["recirculated"]
    assert {x["reason"]: x["count"] for x in ov["rejects"]}["no_read"] == hmi.counts["no_read"]
    assert 0.9 < r["read_rate"] < 1.0 and ov["alarms"]["unack"] == 1 and ov["alarms"]["shelved"] == 1
    chutes = await (await hmi.client.get("/api/chutes")).json()
    tiles = {c["id"]: c for row in chutes["rows"] for c in row["chutes"]}
    assert len(tiles) == 29 and [len(row["chutes"]) for row in chutes["rows"]] == [15, 14]
    assert tiles[7]["full"] and tiles[12]["fault"] and tiles[3]["out"] and tiles[3]["out_by"] == "ana"
    assert tiles[7]["count_shift"] == hmi.counts["chute7"] and "FR default" in tiles[7]["destinations"]


async def test_trace_by_barcode_and_tracking_id(hmi: Hmi) -> None:
    await hmi.login("vera")
    for q in ("RR000000014GB", "rr000000014gb", "14", "5:14"):
        body = await (await hmi.client.get("/api/trace", params={"q": q})).json()
        assert len(body["parcels"]) == 1, q
        p = body["parcels"][0]
        assert p["tracking_id"] == 14 and p["state"] == "sorted" and p["plan_version"] == 1
        kinds = [e["kind"] for e in p["events"]]
        assert kinds == ["inducted", "scanned", "routed", "recirculated", "scanned", "routed", "armed", "sorted"]
    html = await (await hmi.client.get("/trace", params={"q": "RR000000014GB"})).text()
    assert "recirculated" in html and "missed divert" in html
    assert (await (await hmi.client.get("/api/trace", params={"q": "NOPE"})).json())["parcels"] == []


async def test_alarms_csv_export(hmi: Hmi) -> None:
    await hmi.login("vera")
    r = await hmi.client.get("/alarms.csv")
    assert r.status == 200 and r.content_type == "text/csv"
    assert r.headers["Content-Disposition"].startswith("attachment; filename=\"alarms-")
    rows = list(csv.DictReader(io.StringIO(await r.text())))
    assert {row["name"] for row in rows} == {"jam", "camera_down", "chute_full"}
    jam = next(row for row in rows if row["name"] == "jam")
    assert jam["state"] == "closed" and jam["acknowledged_by"] == "ana" and jam["cleared"]
    rows = list(csv.DictReader(io.StringIO(await (await hmi.client.get("/alarms.csv", params={"q": "bag"})).text())))
    assert [row["name"] for row in rows] == ["chute_full"]  # found by its shelve reason
    active = await (await hmi.client.get("/api/alarms")).json()
    assert {a["name"]: a["state"] for a in active["alarms"]} == {"camera_down": "unack_active", "chute_full": "shelved"}


async def test_security_headers_everywhere(hmi: Hmi) -> None:
    for path in ("/login", "/static/hmi.css", "/static/common.js", "/metrics"):
        r = await hmi.client.get(path)
        assert r.status == 200, path
        assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Referrer-Policy"] == "no-referrer"
    await hmi.login("vera")
    for path in ("/overview", "/chutes", "/alarms", "/trace", "/plan", "/trends"):
        html = await (await hmi.client.get(path)).text()
        assert "<script>" not in html and "style=" not in html and " on" + "click=" not in html, path


async def test_stream_pushes_a_store_write(hmi: Hmi) -> None:
    await hmi.login("vera")
    resp = await hmi.client.get("/api/stream", params={"topics": "alarms"})
    try:
        assert resp.headers["Content-Type"] == "text/event-stream"

        async def next_event() -> tuple[str, dict[str, Any]]:
            event = ""
            while True:
                line = (await resp.content.readline()).decode().rstrip("\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event:
                    return event, json.loads(line[5:])

        topic, first = await asyncio.wait_for(next_event(), 5)
        assert topic == "alarms" and "diverter_down" not in {a["name"] for a in first["alarms"]}
        store = EventStore(hmi.db)
        try:
            b = Batch()
            b.alarm_ops.append(AlarmRaise(time.time(), "diverter_down", 5, "stop", "no heartbeat"))
            store.commit(b)
        finally:
            store.close()
        t0 = time.monotonic()
        while True:
            topic, data = await asyncio.wait_for(next_event(), 5)
            if topic == "alarms" and "diverter_down" in {a["name"] for a in data["alarms"]}:
                break
        assert time.monotonic() - t0 < 3.0
    finally:
        resp.close()


# ------------------------------------------------------------------------------- the store's absence
async def test_no_store_yet_is_shown_and_commands_refused(tmp_path: Path) -> None:
    db = tmp_path / "var" / "events.sqlite"
    users = make_users(tmp_path / "hmi-users.json")
    client = await start_hmi(db, users)
    try:
        h = Hmi(client, db, users, {})
        csrf = await h.login("otto")
        ov = await (await client.get("/api/overview")).json()
        assert ov["store"]["ok"] is False and "no event store" in ov["store"]["error"]
        html = await (await client.get("/overview")).text()
        assert "no event store" in html
        r = await client.post("/api/command", json={"command": "STOP"}, headers={"X-CSRF-Token": csrf})
        assert r.status == 503
        assert not db.exists()  # the HMI never creates the store
        metrics = await (await client.get("/metrics")).text()
        assert "sortcentre_store_readable 0.0" in metrics
    finally:
        await client.close()


async def test_password_change_ends_the_session(hmi: Hmi) -> None:
    await hmi.login("otto")
    assert (await hmi.client.get("/api/me")).status == 200
    hmi.users.passwd("otto", "a-new-password-2")
    assert (await hmi.client.get("/api/me")).status == 401


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
async def test_login_never_redirects_off_site(hmi: Hmi, target: str) -> None:
    page = await hmi.client.get("/login", params={"next": target})
    html = await page.text()
    token = html.split('name="csrf_token" value="')[1].split('"')[0]
    r = await hmi.client.post("/login", data={"csrf_token": token, "user": "vera", "password": "viewer-pass-1",
                                              "next": target}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/overview"


async def test_trends_from_parcel_events_and_the_health_table(hmi: Hmi) -> None:
    await hmi.login("vera")
    d = await (await hmi.client.get("/api/trends", params={"hours": "1"})).json()
    p = d["parcels"]
    assert len(p["t"]) in (59, 60, 61) and all(t % 60 == 0 for t in p["t"])
    # every minute but the one in progress (left out: its rate would read low)
    assert hmi.counts["rejected"] - 2 <= sum(v or 0 for v in p["rejected"]) <= hmi.counts["rejected"]
    # the store begins half an hour ago: the half hour before is no data, not zero parcels
    before = [v for t, v in zip(p["t"], p["per_hour"], strict=True) if t < d["end"] - 1860]
    after = [v for t, v in zip(p["t"], p["per_hour"], strict=True) if t > d["end"] - 1740]
    assert before and all(v is None for v in before) and all(v is not None for v in after)
    assert d["health_source"] == "table"
    h = d["health"]
    assert len(h["t"]) == 180
    p99 = h["decision_p99_ms"]
    slow = p99[100]
    assert slow is not None and 5.0 < slow <= 10.0  # the burst interval
    assert all(v is not None and v <= 2.0 for i, v in enumerate(p99) if i not in (0, 100))
    assert all(v is not None and v <= 2.0 for v in h["cycle_lag_p99_ms"][1:])
    # chute fill over time from the service's own counts in the health table
    assert d["fill_source"] == "table"
    seven = next(line for line in d["chute_fill"]["lines"] if line["id"] == 7)
    pct = [v for v in seven["values"] if v is not None]
    assert len(pct) >= 170 and pct[0] < pct[-1]
    html = await (await hmi.client.get("/trends")).text()
    assert 'id="chart-decision"' in html

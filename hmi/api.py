"""The JSON endpoints, the SSE stream, commands, plan and manifest uploads, CSV and /metrics.

Everything a page shows is also here as JSON (the browser tests and the bench read these).
Commands are checked (role, arguments, and for a plan or manifest its content) before the one
insert into the store's ``commands`` table; the answer is the command's id, and
``/api/commands/<id>`` says when the service has taken it and what it answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import io
import json
import time
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hmi import queries
from hmi.commands import CommandError, check
from hmi.config import RUNTIME, Runtime
from hmi.db import StoreUnavailable, send_command
from hmi.pages import store_call
from hmi.planning import (
    compare_summary,
    current_settings,
    error_json,
    file_name,
    plan_in_force,
    preview,
    validate_manifest,
    validate_plan,
)
from hmi.users import Role
from hmi.webkeys import SESSION, USER, require
from hmi.workers import Pool
from plant.errors import ConfigError

__all__ = ["add_routes"]

SNAPSHOT_TOPICS = ("overview", "chutes", "alarms", "commands", "plans")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics)
    r.add_get("/api/me", me)
    for topic in SNAPSHOT_TOPICS:
        r.add_get(f"/api/{topic}", _snapshot_handler(topic))
    r.add_get("/api/alarms/history", alarm_history)
    r.add_get("/alarms.csv", alarms_csv)
    r.add_get("/api/trace", trace)
    r.add_get("/api/plans/{version:\\d+}", plan_version)
    r.add_get("/api/trends", trends)
    r.add_get("/api/commands/{id:\\d+}", command_status)
    r.add_post("/api/command", post_command)
    r.add_post("/api/plan/validate", plan_validate)
    r.add_post("/api/plan/activate", plan_activate)
    r.add_post("/api/plan/rollback", plan_rollback)
    r.add_post("/api/manifest/validate", manifest_validate)
    r.add_post("/api/manifest", manifest_add)
    r.add_get("/api/stream", stream)


def _rt(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, default=str))


# ============================================================================ read
async def healthz(request: web.Request) -> web.Response:
    """The HMI process is alive (no login; says nothing about the plant)."""
    return _json({"ok": True, "viewers": _rt(request).hub.viewers, "polls": _rt(request).hub.polls})


async def metrics(request: web.Request) -> web.Response:
    rt = _rt(request)
    body = await rt.workers.run(Pool.STORE, lambda: generate_latest(rt.registry))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def me(request: web.Request) -> web.Response:
    user = request[USER]
    return _json({"user": user.name, "role": user.role.value, "csrf": request[SESSION].csrf})


def _snapshot_handler(topic: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        rt = _rt(request)
        return _json(await store_call(request, lambda: rt.view.snapshot(topic)))

    handler.__name__ = f"api_{topic}"
    return handler


def _limit(request: web.Request, default: int, most: int) -> int:
    try:
        return max(1, min(most, int(request.query.get("limit", default))))
    except ValueError:
        return default


async def alarm_history(request: web.Request) -> web.Response:
    rt = _rt(request)
    q = request.query.get("q", "").strip()[:100]
    limit = _limit(request, 500, 10_000)
    try:
        rows = await store_call(request, lambda: rt.view.alarm_history(q, limit))
    except StoreUnavailable as exc:
        return _json(rt.view.unavailable(str(exc)), status=503)
    return _json({"q": q, "alarms": rows})


def _iso(t: object) -> str:
    return datetime.fromtimestamp(float(str(t))).astimezone().isoformat(timespec="seconds") if t else ""


def _cell(v: object) -> str:
    """A spreadsheet must not run what a user typed (a shelve reason starting with '=')."""
    s = "" if v is None else str(v)
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


async def alarms_csv(request: web.Request) -> web.StreamResponse:
    rt = _rt(request)
    q = request.query.get("q", "").strip()[:100]
    try:
        rows = await store_call(request, lambda: rt.view.alarm_history(q, 100_000))
    except StoreUnavailable as exc:
        return _json(rt.view.unavailable(str(exc)), status=503)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["id", "name", "code", "severity", "state", "detail", "raised", "cleared", "acknowledged",
                "acknowledged_by", "shelved_until", "shelved_by", "shelve_reason"])
    for a in rows:
        w.writerow([a["id"], _cell(a["name"]), a["code"], _cell(a["severity"]), a["state"], _cell(a["detail"]),
                    _iso(a["raised_t"]), _iso(a["cleared_t"]), _iso(a["acked_t"]), _cell(a["acked_by"]),
                    _iso(a["shelved_until"]), _cell(a["shelved_by"]), _cell(a["shelve_reason"])])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return web.Response(text=buf.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="alarms-{stamp}.csv"'})


async def trace(request: web.Request) -> web.Response:
    rt = _rt(request)
    q = request.query.get("q", "").strip()[:100]
    try:
        found = await store_call(request, lambda: rt.view.read(lambda db: queries.trace(db, q)))
    except StoreUnavailable as exc:
        return _json(rt.view.unavailable(str(exc)), status=503)
    return _json({"q": q, "parcels": [dataclasses.asdict(p) for p in found]})


async def plan_version(request: web.Request) -> web.Response:
    rt = _rt(request)
    version = int(request.match_info["version"])
    try:
        row = await store_call(request, lambda: rt.view.read(lambda db: queries.plan_text(db, version)))
    except StoreUnavailable as exc:
        return _json(rt.view.unavailable(str(exc)), status=503)
    if row is None:
        return _json({"error": f"no plan version {version}"}, status=404)
    v, source, plan_csv, settings_yaml = row
    return _json({"version": v, "source": source, "plan_csv": plan_csv, "settings_yaml": settings_yaml})


async def trends(request: web.Request) -> web.Response:
    rt = _rt(request)
    try:
        hours = max(0.25, min(12.0, float(request.query.get("hours", "4"))))
    except ValueError:
        hours = 4.0
    try:
        return _json(await store_call(request, lambda: rt.view.trends(hours)))
    except StoreUnavailable as exc:
        return _json(rt.view.unavailable(str(exc)), status=503)


async def command_status(request: web.Request) -> web.Response:
    rt = _rt(request)
    cid = int(request.match_info["id"])
    try:
        row = await store_call(request, lambda: rt.view.read(lambda db: queries.command(db, cid)))
    except StoreUnavailable as exc:
        return _json(rt.view.unavailable(str(exc)), status=503)
    if row is None:
        return _json({"error": f"no command {cid}"}, status=404)
    return _json(row)


# ============================================================================ commands
async def _send(request: web.Request, name: str, args: dict[str, object]) -> web.Response:
    """Store one checked command as the logged-in user; 202 with its id."""
    rt = _rt(request)
    user = request[USER]
    try:
        cid = await rt.workers.run(Pool.COMMAND, lambda: send_command(rt.cfg.db, name, user.name, args))
    except StoreUnavailable as exc:
        return _json({"error": str(exc)}, status=503)
    rt.hub.wake()
    return _json({"id": cid, "command": name, "user": user.name, "status_url": f"/api/commands/{cid}"},
                 status=202)


async def _body(request: web.Request) -> dict[str, Any]:
    """A JSON object body, or the fields of a form."""
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text='{"error": "body is not JSON"}', content_type="application/json") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text='{"error": "expected a JSON object"}', content_type="application/json")
        return data
    form = await request.post()
    return {k: v for k, v in form.items() if k != "csrf_token"}


async def post_command(request: web.Request) -> web.Response:
    user = request[USER]
    body = await _body(request)
    name = str(body.get("command", "")).upper()
    raw_args = body.get("args", {})
    if isinstance(raw_args, str):  # a form sends its args as JSON text
        try:
            raw_args = json.loads(raw_args) if raw_args else {}
        except ValueError:
            return _json({"error": "args: not JSON"}, status=400)
    try:
        args = check(name, raw_args, user.role)
    except PermissionError as exc:
        return _json({"error": str(exc)}, status=403)
    except CommandError as exc:
        return _json({"error": str(exc)}, status=400)
    if name == "PLAN_ACTIVATE":
        error, _found = await _check_plan(request, str(args["plan_csv"]), str(args["source"]),
                                          str(args["settings_yaml"]))
        if error is not None:
            return _json({"ok": False, "error": error}, status=422)
    if name == "MANIFEST_ADD":
        try:
            await _rt(request).workers.run(Pool.REPLAY,
                                           lambda: validate_manifest(str(args["csv"]), str(args["source"])))
        except ConfigError as exc:
            return _json({"ok": False, "error": error_json(exc)}, status=422)
    return await _send(request, name, args)


# ============================================================================ plans, manifests
async def _upload(request: web.Request, file_field: str, text_field: str, default_name: str) -> tuple[str, str]:
    """An uploaded file's text and name (multipart file, form text, or JSON field)."""
    if request.content_type == "application/json":
        body = await _body(request)
        text, name = body.get(text_field, ""), body.get(f"{file_field}_name") or body.get("source")
        return (text if isinstance(text, str) else ""), file_name(str(name or ""), default_name)
    form = await request.post()
    v = form.get(file_field)
    if isinstance(v, web.FileField):
        name = file_name(v.filename, default_name)
        raw = v.file.read()
        try:
            return raw.decode("utf-8-sig"), name
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(name, line, "", f"not UTF-8 text (byte {exc.start})") from None
    text = form.get(text_field, "")
    return (text if isinstance(text, str) else ""), file_name(str(form.get(f"{file_field}_name", "")), default_name)


async def _plan_upload(request: web.Request) -> tuple[str, str, str, str]:
    plan_csv, source = await _upload(request, "plan", "plan_csv", "upload.csv")
    settings_yaml, settings_source = await _upload(request, "settings", "settings_yaml", "routing.yaml")
    return plan_csv, source, settings_yaml, settings_source


PlanCheck = tuple[dict[str, object] | None, dict[str, object]]  # (error, what the check found)


async def _check_plan(request: web.Request, plan_csv: str, source: str, settings_yaml: str,
                      settings_source: str = "routing.yaml", *, with_preview: bool = False) -> PlanCheck:
    """The plan checked against the service's site (on the replay thread); with a what-if
    replay of the service's manifest when asked."""
    rt = _rt(request)
    files = await store_call(request, rt.view.files)
    stored = None
    if with_preview:
        with contextlib.suppress(StoreUnavailable):
            stored = await store_call(request, lambda: rt.view.read(queries.plan_text))

    def work() -> PlanCheck:
        site, err = rt.plan_sites.get(files.site)
        if site is None:
            return {"text": f"cannot check the plan: {err}", "file": str(files.site), "line": None,
                    "field": "", "message": err}, {}
        try:
            plan, settings = validate_plan(plan_csv, source, site, settings_yaml, settings_source)
        except ConfigError as exc:
            return error_json(exc), {}
        found: dict[str, object] = {"rules": len(plan.rules), "settings_given": settings is not None}
        if with_preview:
            try:
                manifest = rt.manifests.get(files.manifest)
                found["preview"] = preview(site, plan, settings or current_settings(files.routing), manifest)
                now = plan_in_force(site, stored, files.plan, files.routing)
                if now is not None:  # the same replay with the plan in force, to compare
                    found["current"] = compare_summary(preview(site, *now, manifest))
            except ConfigError as exc:
                found["preview_error"] = str(exc)
        return None, found

    return await rt.workers.run(Pool.REPLAY, work)


async def plan_validate(request: web.Request) -> web.Response:
    require(request, Role.ENGINEER)
    try:
        plan_csv, source, settings_yaml, settings_source = await _plan_upload(request)
    except ConfigError as exc:
        return _json({"ok": False, "error": error_json(exc)}, status=422)
    error, found = await _check_plan(request, plan_csv, source, settings_yaml, settings_source, with_preview=True)
    if error is not None:
        return _json({"ok": False, "error": error, "source": source}, status=422)
    return _json({"ok": True, "source": source, **found})


async def plan_activate(request: web.Request) -> web.Response:
    require(request, Role.ENGINEER)
    try:
        plan_csv, source, settings_yaml, settings_source = await _plan_upload(request)
    except ConfigError as exc:
        return _json({"ok": False, "error": error_json(exc)}, status=422)
    error, _found = await _check_plan(request, plan_csv, source, settings_yaml, settings_source)
    if error is not None:
        return _json({"ok": False, "error": error, "source": source}, status=422)
    return await _send(request, "PLAN_ACTIVATE",
                       {"plan_csv": plan_csv, "settings_yaml": settings_yaml, "source": source})


async def plan_rollback(request: web.Request) -> web.Response:
    require(request, Role.ENGINEER)
    return await _send(request, "PLAN_ROLLBACK", {})


async def _manifest_upload(request: web.Request) -> tuple[str, str, dict[str, object]]:
    text, source = await _upload(request, "manifest", "csv", "manifest.csv")
    report = await _rt(request).workers.run(Pool.REPLAY, lambda: validate_manifest(text, source))
    return text, source, report


async def manifest_validate(request: web.Request) -> web.Response:
    require(request, Role.ENGINEER)
    try:
        _text, source, report = await _manifest_upload(request)
    except ConfigError as exc:
        return _json({"ok": False, "error": error_json(exc)}, status=422)
    return _json({"ok": True, "source": source, **report})


async def manifest_add(request: web.Request) -> web.Response:
    require(request, Role.ENGINEER)
    try:
        text, source, report = await _manifest_upload(request)
    except ConfigError as exc:
        return _json({"ok": False, "error": error_json(exc)}, status=422)
    if not report["rows"]:
        return _json({"ok": False, "error": {"text": f"{source}: no usable rows", **report}}, status=422)
    return await _send(request, "MANIFEST_ADD", {"csv": text, "source": source})


# ============================================================================ live
async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the asked-for topics now, then each change (``event: <topic>``).

    The stream ends when the session does (``event: logout``), when the viewer falls too far
    behind, or when the HMI stops; the browser's EventSource reconnects by itself.
    """
    rt = _rt(request)
    token = request[SESSION].token
    topics = [t for t in request.query.get("topics", "").split(",") if t]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    sub = rt.hub.subscribe(topics)
    try:
        await resp.write(b"retry: 2000\n\n")
        while True:
            session = rt.sessions.get(token, touch=False)
            user = rt.users.get(session.user) if session else None
            if session is None or user is None or user.hash_tag != session.hash_tag:
                await resp.write(b"event: logout\ndata: {}\n\n")
                break
            try:
                message = await asyncio.wait_for(sub.queue.get(), rt.cfg.keepalive_s)
            except TimeoutError:
                await resp.write(b": keepalive\n\n")
                continue
            if message is None:
                break
            await resp.write(message)
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        rt.hub.unsubscribe(sub)
    with contextlib.suppress(ConnectionError):
        await resp.write_eof()
    return resp

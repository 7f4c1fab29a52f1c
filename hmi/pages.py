"""The HTML pages: each rendered on the server with the store's current figures, then kept live
by the browser from the SSE stream (``hmi/static/*.js``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hmi import diagram
from hmi.commands import COMMANDS
from hmi.config import RUNTIME
from hmi.db import StoreUnavailable
from hmi.queries import TraceParcel, trace
from hmi.users import Role
from hmi.webkeys import SESSION, USER
from hmi.workers import Pool

__all__ = ["NAV", "add_routes", "render", "store_call"]

NAV = (("overview", "Overview"), ("chutes", "Chutes"), ("alarms", "Alarms"), ("trace", "Parcel trace"),
       ("plan", "Sort plan"), ("trends", "Trends"))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", root)
    app.router.add_get("/overview", overview)
    app.router.add_get("/chutes", chutes)
    app.router.add_get("/alarms", alarms)
    app.router.add_get("/trace", trace_page)
    app.router.add_get("/plan", plan)
    app.router.add_get("/trends", trends)


async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/overview")


def render(request: web.Request, template: str, status: int = 200, **ctx: Any) -> web.Response:
    rt = request.app[RUNTIME]
    user = request.get(USER)
    session = request.get(SESSION)
    base = {
        "user": user, "csrf": session.csrf if session else "", "nav": NAV, "page": ctx.pop("page", ""),
        "can_operate": bool(user and user.role.allows(Role.OPERATOR)),
        "can_engineer": bool(user and user.role.allows(Role.ENGINEER)),
        "db_path": str(rt.cfg.db),
    }
    text = rt.templates.get_template(template).render(**base, **ctx)
    return web.Response(text=text, content_type="text/html", status=status)


async def store_call(request: web.Request, fn: Any) -> Any:
    rt = request.app[RUNTIME]
    return await rt.workers.run(Pool.STORE, fn)


async def _page(request: web.Request, template: str, page: str, *topics: str, **ctx: Any) -> web.Response:
    rt = request.app[RUNTIME]
    data = {t: await store_call(request, lambda t=t: rt.view.snapshot(t)) for t in ("overview", *topics)}
    return render(request, template, page=page, data=data, **ctx)


async def overview(request: web.Request) -> web.Response:
    return await _page(request, "overview.html", "overview", "commands", boxes=diagram.BOXES,
                       arrows=diagram.ARROWS, width=diagram.WIDTH, height=diagram.HEIGHT,
                       running_height=diagram.RUNNING_HEIGHT,
                       packml=[c for c, s in COMMANDS.items() if s.what.startswith("PackML")])


async def chutes(request: web.Request) -> web.Response:
    return await _page(request, "chutes.html", "chutes", "chutes")


async def alarms(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    q = request.query.get("q", "").strip()[:100]
    try:
        history = await store_call(request, lambda: rt.view.alarm_history(q, 500))
        error = ""
    except StoreUnavailable as exc:
        history, error = [], str(exc)
    return await _page(request, "alarms.html", "alarms", "alarms", q=q, history=history, history_error=error)


async def trace_page(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    q = request.query.get("q", "").strip()[:100]
    found: list[TraceParcel] = []
    error = ""
    if q:
        try:
            found = await store_call(request, lambda: rt.view.read(lambda db: trace(db, q)))
        except StoreUnavailable as exc:
            error = str(exc)
    return await _page(request, "trace.html", "trace", q=q, parcels=found, trace_error=error)


async def plan(request: web.Request) -> web.Response:
    return await _page(request, "plan.html", "plan", "plans")


async def trends(request: web.Request) -> web.Response:
    return await _page(request, "trends.html", "trends")

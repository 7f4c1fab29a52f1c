"""The HMI's aiohttp application: routes, the security middleware, start-up and shutdown.

Every request passes one middleware that decides who is asking (session cookie -> user, role
looked up afresh in the users file) and refuses a state-changing request without the
session's CSRF token. Security headers are added to every response, static files and errors
included. Handlers live in `hmi.pages` (HTML), `hmi.api` (JSON, SSE, commands) and
`hmi.login` (login, logout).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from hmi import api, login, pages
from hmi.auth import LoginLimiter, Sessions, same_token
from hmi.config import RUNTIME, HmiConfig, Runtime
from hmi.layout import SiteCache
from hmi.live import Hub
from hmi.metrics import make_registry
from hmi.planning import ManifestCache
from hmi.templating import make_templates
from hmi.users import UserError, UserFile, first_user_hint
from hmi.view import StoreView, ViewConfig
from hmi.webkeys import SESSION, USER
from hmi.workers import Workers

__all__ = ["NoUsers", "make_app"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
PUBLIC_PREFIXES = ("/static/", "/login", "/metrics", "/healthz", "/favicon.ico")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
       " font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class NoUsers(RuntimeError):
    """The users file has nobody in it: the HMI refuses to start (there is no default login)."""


def make_app(cfg: HmiConfig, users: UserFile | None = None) -> web.Application:
    users = users or UserFile(cfg.users)
    try:
        known = users.load()
    except UserError as exc:
        raise NoUsers(str(exc)) from exc
    if not known:
        raise NoUsers(f"no HMI users in {cfg.users}. Create the first one with:\n  {first_user_hint(cfg.users)}")
    app = web.Application(middlewares=[_security], client_max_size=cfg.max_upload_bytes)
    workers = Workers()
    view = StoreView(ViewConfig(cfg.db, cfg.site, cfg.stale_after_s))
    hub = Hub(view, workers, cfg.poll_s)
    app[RUNTIME] = Runtime(
        cfg=cfg, users=users,
        sessions=Sessions(idle_s=cfg.idle_s, max_age_s=cfg.max_session_s),
        limiter=LoginLimiter(max_failures=cfg.login_failures, window_s=cfg.login_window_s),
        workers=workers, view=view, hub=hub, plan_sites=SiteCache(), manifests=ManifestCache(),
        registry=make_registry(view, lambda: hub.viewers), templates=make_templates(),
    )
    login.add_routes(app)
    pages.add_routes(app)
    api.add_routes(app)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.on_response_prepare.append(_headers)
    app.on_startup.append(_start)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    return app


async def _start(app: web.Application) -> None:
    await app[RUNTIME].hub.start()


async def _shutdown(app: web.Application) -> None:
    await app[RUNTIME].hub.stop()  # ends the SSE streams, so shutdown does not wait on them


async def _cleanup(app: web.Application) -> None:
    rt = app[RUNTIME]
    await rt.hub.stop()
    rt.workers.shutdown()
    rt.view.close()


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if not request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-store")
    if request.secure:
        h.setdefault("Strict-Transport-Security", "max-age=31536000")


def _wants_html(request: web.Request) -> bool:
    return request.method == "GET" and not request.path.startswith("/api/") and not request.path.endswith(".csv")


@web.middleware
async def _security(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who is asking, and may they: session -> user; CSRF on every state-changing request."""
    rt = request.app[RUNTIME]
    if request.path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    token = request.cookies.get(login.SESSION_COOKIE)
    # a live stream is not activity: a screen left open still logs out when nobody uses it
    session = rt.sessions.get(token, touch=request.path != "/api/stream")
    user = rt.users.get(session.user) if session else None
    if session is not None and (user is None or user.hash_tag != session.hash_tag):
        rt.sessions.drop(session.token)  # removed, or password changed: the session ends
        session, user = None, None
    if session is None or user is None:
        if _wants_html(request):
            raise web.HTTPSeeOther(f"/login?next={request.path_qs}" if request.path != "/" else "/login")
        return web.json_response({"error": "log in first"}, status=401)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get("X-CSRF-Token")
        if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            field = form.get("csrf_token")
            sent = field if isinstance(field, str) else None
        if not same_token(sent, session.csrf):
            return web.json_response({"error": "missing or wrong CSRF token"}, status=403)
    request[SESSION] = session
    request[USER] = user
    return await handler(request)

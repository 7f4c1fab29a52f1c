"""Login and logout.

The login form is protected against cross-site posting like every other form: before there is
a session, a random token is set in a cookie and repeated in the form (double submit), and
SameSite=Strict keeps other sites from sending either. Failed logins are counted per user and
per client address; past the limit the answer is 429 with Retry-After, and the password is not
even checked. A JSON client (tests, a bench) gets JSON back when it asks for it.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from aiohttp import web

from hmi.auth import same_token
from hmi.config import RUNTIME
from hmi.pages import render
from hmi.webkeys import SESSION
from hmi.workers import Pool

__all__ = ["LOGIN_COOKIE", "SESSION_COOKIE", "add_routes"]

SESSION_COOKIE = "hmi_session"
LOGIN_COOKIE = "hmi_login"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_post)
    app.router.add_post("/logout", logout)


def _safe_next(target: str | None) -> str:
    """Only a path on this server (never ``//evil`` or ``https://evil``): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/overview"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/overview"


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
                max_age: int | None = None) -> None:
    rt = request.app[RUNTIME]
    response.set_cookie(name, value, httponly=True, samesite="Strict", path="/", max_age=max_age,
                        secure=rt.cfg.secure_cookies or request.secure)


def _see_other(location: str) -> web.Response:
    """A redirect returned, not raised: the cookies set on it must go out with it."""
    return web.Response(status=303, headers={"Location": location})


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


async def login_page(request: web.Request, *, error: str = "", status: int = 200,
                     user: str = "") -> web.Response:
    token = secrets.token_urlsafe(24)
    resp = render(request, "login.html", status=status, login_csrf=token, error=error, user_name=user,
                  next=_safe_next(request.query.get("next")))
    _set_cookie(request, resp, LOGIN_COOKIE, token, max_age=3600)
    return resp


async def login_post(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    form = await request.post()
    name = str(form.get("user", "")).strip()
    password = str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "")) or None)
    if not same_token(str(form.get("csrf_token", "")) or None, request.cookies.get(LOGIN_COOKIE, "")):
        return _refuse(request, 403, "the login form expired or came from elsewhere; try again", name, target)
    keys = [f"user:{name.lower()}", f"addr:{request.remote or '?'}"]
    wait = rt.limiter.retry_after(keys)
    if wait > 0:
        limited = _refuse(request, 429, f"too many failed logins: try again in {int(wait) + 1} s", name, target)
        limited.headers["Retry-After"] = str(int(wait) + 1)
        return limited
    user = rt.users.get(name) if name else None
    ok = await rt.workers.run(Pool.AUTH, lambda: rt.users.password_matches(user, password))
    if not ok or user is None:
        rt.limiter.failed(keys)
        return _refuse(request, 401, "wrong user name or password", name, target)
    rt.limiter.succeeded(keys[0])
    old = request.cookies.get(SESSION_COOKIE)
    rt.sessions.drop(old)  # a fresh token at every login (no session fixation)
    session = rt.sessions.create(user.name, user.hash_tag)
    resp: web.StreamResponse
    if _wants_json(request):
        resp = web.json_response({"ok": True, "user": user.name, "role": user.role.value, "csrf": session.csrf})
    else:
        resp = _see_other(target)
    _set_cookie(request, resp, SESSION_COOKIE, session.token)
    resp.del_cookie(LOGIN_COOKIE, path="/")
    return resp


def _refuse(request: web.Request, status: int, message: str, name: str, target: str = "/overview") -> web.StreamResponse:
    if _wants_json(request):
        return web.json_response({"ok": False, "error": message}, status=status)
    # the page again, with a new login token (the old one is single use in spirit)
    token = secrets.token_urlsafe(24)
    resp = render(request, "login.html", status=status, login_csrf=token, error=message, user_name=name,
                  next=target)
    _set_cookie(request, resp, LOGIN_COOKIE, token, max_age=3600)
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    """POST only, with the session's CSRF token (checked by the middleware)."""
    rt = request.app[RUNTIME]
    rt.sessions.drop(request[SESSION].token)
    resp: web.StreamResponse = (web.json_response({"ok": True}) if _wants_json(request)
                                else _see_other("/login"))
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp

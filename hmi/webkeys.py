"""Typed keys for what the security middleware attaches to a request, and the role check."""

from __future__ import annotations

from aiohttp import web

from hmi.auth import Session
from hmi.users import Role, User

__all__ = ["SESSION", "USER", "require"]

SESSION = web.RequestKey("session", Session)
USER = web.RequestKey("user", User)


def require(request: web.Request, role: Role) -> User:
    """The logged-in user if their role allows ``role``; 403 (nothing done) otherwise."""
    user = request[USER]
    if not user.role.allows(role):
        raise web.HTTPForbidden(
            text=f'{{"error": "needs the {role.value} role (you are {user.role.value})"}}',
            content_type="application/json")
    return user

"""The HMI's settings (from the command line) and the objects one running HMI shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2
from aiohttp import web
from prometheus_client.registry import CollectorRegistry

from hmi.auth import LoginLimiter, Sessions
from hmi.layout import SiteCache
from hmi.live import Hub
from hmi.planning import ManifestCache
from hmi.users import UserFile
from hmi.view import StoreView
from hmi.workers import Workers

__all__ = ["RUNTIME", "HmiConfig", "Runtime"]


@dataclass(frozen=True, slots=True)
class HmiConfig:
    db: Path
    users: Path
    site: Path = Path("config/site.yaml")  # when the store does not name the service's site file
    stale_after_s: float = 5.0  # health older than this: the service counts as down
    idle_s: float = 3600.0  # a session unused this long ends
    max_session_s: float = 12 * 3600.0
    secure_cookies: bool = False  # True when served over TLS
    poll_s: float = 0.25
    login_failures: int = 5
    login_window_s: float = 60.0
    keepalive_s: float = 15.0  # SSE comment lines keep proxies from closing an idle stream
    max_upload_bytes: int = 64 * 1024 * 1024


@dataclass(slots=True)
class Runtime:
    cfg: HmiConfig
    users: UserFile
    sessions: Sessions
    limiter: LoginLimiter
    workers: Workers
    view: StoreView
    hub: Hub
    plan_sites: SiteCache  # used on the replay thread only (the view's cache is the store thread's)
    manifests: ManifestCache
    registry: CollectorRegistry
    templates: jinja2.Environment


RUNTIME = web.AppKey("runtime", Runtime)

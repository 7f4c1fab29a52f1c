"""HMI test fixtures: a real event store with a shift in it, users of every role, and the HMI
app served over loopback HTTP (aiohttp's test server on a free port; no mocks of the store)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from hmi.app import make_app
from hmi.config import HmiConfig
from hmi.users import Role, UserFile
from tests.hmi.storefill import SITE, fill_store

# argon2id still, with small parameters: the tests log in dozens of times
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
PASSWORDS = {"vera": "viewer-pass-1", "otto": "operator-pass-1", "enid": "engineer-pass-1"}
ROLES = {"vera": Role.VIEWER, "otto": Role.OPERATOR, "enid": Role.ENGINEER}


@dataclass
class Hmi:
    client: TestClient
    db: Path
    users: UserFile
    counts: dict[str, int]
    set_cookies: tuple[str, ...] = ()

    async def login(self, user: str, password: str | None = None, *, expect: int = 200) -> str:
        """Log in as a browser does (login page token, form post); returns the CSRF token."""
        page = await self.client.get("/login")
        html = await page.text()
        token = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert token is not None
        r = await self.client.post("/login", data={"csrf_token": token.group(1), "user": user,
                                                   "password": PASSWORDS.get(user, "") if password is None else password},
                                   headers={"Accept": "application/json"})
        assert r.status == expect, await r.text()
        self.set_cookies = tuple(r.headers.getall("Set-Cookie", []))
        body = await r.json()
        return str(body.get("csrf", ""))


def make_users(path: Path) -> UserFile:
    users = UserFile(path, hasher=CHEAP)
    for name, password in PASSWORDS.items():
        users.add(name, ROLES[name], password)
    return users


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    db = tmp_path / "events.sqlite"
    return db, fill_store(db, time.time())


async def start_hmi(db: Path, users: UserFile, **cfg: object) -> TestClient:
    config = HmiConfig(db=db, users=users.path, site=SITE, poll_s=0.05, **cfg)  # type: ignore[arg-type]
    client = TestClient(TestServer(make_app(config, users)))
    await client.start_server()
    return client


@pytest.fixture
async def hmi(tmp_path: Path, store: tuple[Path, dict[str, int]]) -> AsyncIterator[Hmi]:
    db, counts = store
    users = make_users(tmp_path / "hmi-users.json")
    client = await start_hmi(db, users)
    try:
        yield Hmi(client, db, users, counts)
    finally:
        await client.close()

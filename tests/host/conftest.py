"""Fixtures of the host interface tests: a real Mosquitto on a free loopback port (skipped
with a reason when it is not installed), an event store filled through the store's own
``Batch``, a relay in this process, a subscriber standing in for the host."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from control.store import Batch, EventStore
from harness.broker import Broker, Watcher, mosquitto_path
from host.relay import Relay, RelayConfig
from host.schemacheck import errors, load_schema
from host.topics import Topics
from plant.site import Site, load_site

ROOT = Path(__file__).resolve().parents[2]
TOPICS = Topics("plant1", "hall2", "sorter3")


def started_broker(workdir: Path, **kw: Any) -> Iterator[Broker]:
    """A Mosquitto started in ``workdir`` (``Broker``'s options: TLS, users), closed after; the
    test is skipped with the reason when Mosquitto is not installed."""
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto mosquitto-clients, or ./dev setup)")
    b = Broker(workdir, **kw)
    b.start()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    yield from started_broker(tmp_path / "broker")


@pytest.fixture(scope="session")
def site() -> Site:
    return load_site(ROOT / "config" / "site.yaml")


def write_parcels(db: Path, first: int, n: int, *, kinds: tuple[str, ...] = ("inducted", "sorted")) -> None:
    """``n`` parcels (tracking ids ``first``...), each with the event kinds given, one commit."""
    store = EventStore(db, synchronous="NORMAL")
    try:
        b = Batch()
        for tid in range(first, first + n):
            for k in kinds:
                b.parcel_event(1_700_000_000.0 + tid, tid, k, lap=0, chute=3 if k == "sorted" else 0,
                               reason="planned" if k == "sorted" else "", identity=f"P{tid}", boot_id=1)
        store.commit(b)
    finally:
        store.close()


def write_unit(db: Path, kind: str, name: str, code: int = 0, detail: str = "") -> None:
    store = EventStore(db, synchronous="NORMAL")
    try:
        b = Batch()
        b.unit_event(1_700_000_000.0, kind, name, code, detail)
        store.commit(b)
    finally:
        store.close()


def relay_config(db: Path, broker: Broker, site: Site, **kw: Any) -> RelayConfig:
    endpoint = kw.pop("endpoint", None) or broker.endpoint()
    return RelayConfig(db=db, topics=TOPICS, site=site, broker=endpoint, counters_s=kw.pop("counters_s", 0.5),
                       reconnect_s=(0.05, 0.3), **kw)


class Running:
    """A relay and a watcher running as tasks of this loop, stopped in order. The watcher goes
    first: a confirmation published before the host subscribed is not queued for it."""

    def __init__(self, relay: Relay, watcher: Watcher) -> None:
        self.relay, self.watcher = relay, watcher
        self.stop_relay, self.stop_watcher = asyncio.Event(), asyncio.Event()
        self.tasks = [asyncio.ensure_future(watcher.run(self.stop_watcher))]

    def start_relay(self) -> None:
        self.tasks.append(asyncio.ensure_future(self.relay.run(self.stop_relay)))

    async def close(self) -> None:
        self.stop_relay.set()
        self.stop_watcher.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 10.0)
        self.relay.close()


@contextlib.asynccontextmanager
async def running(db: Path, broker: Broker, site: Site, **kw: Any) -> AsyncIterator[Running]:
    watcher = Watcher(broker.port, TOPICS.everything, identifier=kw.pop("watcher_id", "test-host"),
                      endpoint=kw.pop("watcher_endpoint", None))
    r = Running(Relay(relay_config(db, broker, site, **kw)), watcher)
    try:
        await asyncio.wait_for(watcher.subscribed.wait(), 10.0)
        r.start_relay()
        await asyncio.wait_for(r.relay.connected.wait(), 10.0)
        yield r
    finally:
        await r.close()


async def until(cond: Any, within_s: float = 10.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within_s} s: {what or cond}")
        await asyncio.sleep(0.02)


def payloads(watcher: Watcher, suffix: str) -> list[dict[str, Any]]:
    return [json.loads(r.payload) for r in watcher.on(suffix)]


def conforms(payload: dict[str, Any]) -> None:
    name = payload["type"]
    problems = errors(load_schema(name), payload)
    assert problems == [], f"{name} payload breaks its schema: {problems}"

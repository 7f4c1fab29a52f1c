"""The site view: every sorter of a site as the host sees it, from the broker alone - online or
not (the relays' retained birth/death status), unit state, confirmations by disposition and the
rate of the last minute. Idempotent on event ids, as any consumer of the relay must be."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from host.endpoint import BrokerEndpoint

__all__ = ["SiteView", "SorterView", "watch_site"]


@dataclass(slots=True)
class SorterView:
    name: str
    online: bool | None = None
    status_reason: str = ""
    state: str = "UNKNOWN"
    mode: str = ""
    dispositions: Counter[str] = field(default_factory=Counter)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))  # confirmation receive times
    last_t: float = 0.0

    def per_hour(self, now: float, window_s: float = 60.0) -> float:
        while self.recent and now - self.recent[0] > window_s:
            self.recent.popleft()
        return len(self.recent) * 3600.0 / window_s

    def as_json(self, now: float) -> dict[str, Any]:
        return {"sorter": self.name, "online": self.online, "status_reason": self.status_reason,
                "state": self.state, "mode": self.mode, "confirmations": sum(self.dispositions.values()),
                "by_disposition": dict(self.dispositions), "per_hour_last_minute": round(self.per_hour(now), 1)}


@dataclass(slots=True)
class SiteView:
    """Folds the relays' messages into one line per sorter; a message seen twice (at-least-once
    delivery) counts once."""

    root: str  # "<site>/<area>"
    sorters: dict[str, SorterView] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0

    def take(self, topic: str, payload: bytes, now: float) -> None:
        rest = topic[len(self.root) + 1:] if topic.startswith(self.root + "/") else ""
        sorter, _, what = rest.partition("/")
        if not sorter or not what:
            return
        try:
            msg = json.loads(payload)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        view = self.sorters.setdefault(sorter, SorterView(sorter))
        if what == "status":  # retained: the latest says whether the sorter's relay is up
            view.online = msg.get("state") == "online"
            view.status_reason = str(msg.get("reason", ""))
            return
        event_id = str(msg.get("event_id", ""))
        if what in ("parcel/confirmation", "unit/state"):
            if event_id in self.seen:
                self.duplicates += 1
                return
            self.seen.add(event_id)
        if what == "parcel/confirmation":
            view.dispositions[str(msg.get("disposition", "?"))] += 1
            view.recent.append(now)
            view.last_t = now
        elif what == "unit/state":
            if msg.get("what") == "mode":
                view.mode = str(msg.get("name", ""))
            else:
                view.state = str(msg.get("name", view.state))

    def as_json(self, now: float) -> dict[str, Any]:
        return {"root": self.root, "duplicates_ignored": self.duplicates,
                "sorters": [v.as_json(now) for _, v in sorted(self.sorters.items())]}


async def watch_site(
    broker: BrokerEndpoint, root: str, view: SiteView, stop: asyncio.Event,
    *, on_change: Callable[[], None] | None = None,
) -> None:
    """Subscribe to ``root/+/...`` and fold every message into ``view`` until ``stop``; a broker
    that goes away is waited for (the view keeps what it had)."""
    while not stop.is_set():
        try:
            async with aiomqtt.Client(**broker.client_options(), identifier=f"siteview-{time.time_ns()}") as client:
                for sub in ("+/status", "+/unit/state", "+/parcel/confirmation"):
                    await client.subscribe(f"{root}/{sub}", qos=1)
                async for message in _until(client, stop):
                    view.take(str(message.topic), bytes(message.payload or b""), time.monotonic())
                    if on_change is not None:
                        on_change()
        except aiomqtt.MqttError:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def _until(client: aiomqtt.Client, stop: asyncio.Event) -> AsyncIterator[aiomqtt.Message]:
    messages = client.messages.__aiter__()
    while not stop.is_set():
        nxt = asyncio.ensure_future(messages.__anext__())
        halt = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({nxt, halt}, return_when=asyncio.FIRST_COMPLETED)
        if nxt in done:
            halt.cancel()
            yield nxt.result()
        else:
            nxt.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await nxt
            return

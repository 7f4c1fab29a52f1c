"""The live hub: one poller for every viewer, fanning out what changed to each SSE stream.

However many screens are open, the store is polled by one task (about four times a second, on
the store thread); each viewer has a bounded queue of the topics it asked for. A viewer that
cannot keep up is dropped rather than buffered without end: its browser's EventSource
reconnects by itself and starts again from a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hmi.view import TOPICS, StoreView
from hmi.workers import Pool, Workers

__all__ = ["Hub", "Subscriber", "encode"]

log = logging.getLogger(__name__)

Message = bytes | None  # one SSE event, encoded once for every viewer; None: the stream must end


@dataclass(eq=False, slots=True)
class Subscriber:
    topics: frozenset[str]
    queue: asyncio.Queue[Message] = field(default_factory=lambda: asyncio.Queue(maxsize=64))

    def offer(self, message: Message) -> bool:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            return False
        return True


class Hub:
    def __init__(self, view: StoreView, workers: Workers, interval_s: float = 0.25) -> None:
        self.view = view
        self.workers = workers
        self.interval_s = interval_s
        self.latest: dict[str, Any] = {}
        self._encoded: dict[str, bytes] = {}
        self.polls = 0
        self._subs: set[Subscriber] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def viewers(self) -> int:
        return len(self._subs)

    async def start(self) -> None:
        await self.poll(force=True)
        self._task = asyncio.create_task(self._run(), name="hmi-poller")

    async def stop(self) -> None:
        for s in list(self._subs):
            with contextlib.suppress(asyncio.QueueFull):
                s.queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """Poll now rather than at the next tick (a command was just sent)."""
        self._wake.set()

    def subscribe(self, topics: Iterable[str]) -> Subscriber:
        wanted = frozenset(t for t in topics if t in TOPICS) or frozenset(TOPICS)
        sub = Subscriber(wanted)
        for topic in TOPICS:
            if topic in wanted and topic in self._encoded:
                sub.offer(self._encoded[topic])
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    async def poll(self, *, force: bool = False) -> None:
        changed = await self.workers.run(Pool.STORE, lambda: self.view.poll(force=force))
        self.polls += 1
        if changed:
            self.publish(changed)

    def publish(self, changed: dict[str, Any]) -> None:
        self.latest.update(changed)
        encoded = {topic: encode(topic, payload) for topic, payload in changed.items()}
        self._encoded.update(encoded)
        for sub in list(self._subs):
            for topic, event in encoded.items():
                if topic in sub.topics and not sub.offer(event):
                    # too slow: end its stream (the browser reconnects and gets a fresh snapshot)
                    self._subs.discard(sub)
                    while not sub.queue.empty():
                        sub.queue.get_nowait()
                    sub.offer(None)
                    break

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
                if self._failing:
                    log.info("store polling works again")
                    self._failing = False
            except Exception:  # one failure type for the log, once; the next tick tries again
                if not self._failing:
                    log.exception("store polling failed (retrying every tick)")
                    self._failing = True
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)


def encode(topic: str, payload: Any) -> bytes:
    """One server-sent event: ``event: <topic>`` and the payload as one line of JSON."""
    data = json.dumps(payload, separators=(",", ":"), default=str)
    return f"event: {topic}\ndata: {data}\n\n".encode()

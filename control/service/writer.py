"""The event store behind one dedicated thread, so an fsync never blocks the control loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

from control.store import Batch, EventStore

T = TypeVar("T")


class StoreWriter:
    """Owns the EventStore; every call runs on the writer thread, in submission order."""

    def __init__(self, path: str | Path, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-store")
        self.path = Path(path)
        self.store: EventStore = self._pool.submit(EventStore, path, synchronous).result()

    async def call(self, fn: Callable[[EventStore], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, self.store)

    async def commit(self, batch: Batch) -> int:
        """Durable when this returns; raises sqlite3.Error (nothing stored) otherwise."""
        return await self.call(lambda s: s.commit(batch))

    def close(self) -> None:
        self._pool.submit(self.store.close).result()
        self._pool.shutdown(wait=True)

"""The HMI's worker threads: blocking work (SQLite, argon2, what-if replays) kept off the web
event loop, one named single-thread pool per kind of work.

One thread per pool on purpose: the read connection is used by one thread only; commands are
written one at a time; a long replay cannot starve the pages' reads, and a slow password hash
cannot delay either. The pools are shut down with the app (no thread outlives it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import TypeVar

__all__ = ["Pool", "Workers"]

T = TypeVar("T")


class Pool(StrEnum):
    STORE = "store"  # the read-only connection, the tally, /metrics
    COMMAND = "command"  # inserting commands (may wait for the writer's lock)
    AUTH = "auth"  # argon2 verification (~0.2 s of CPU by design)
    REPLAY = "replay"  # plan validation and what-if replays (seconds on a big manifest)


class Workers:
    def __init__(self) -> None:
        self._pools = {p: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hmi-{p.value}") for p in Pool}

    async def run(self, pool: Pool, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pools[pool], fn)

    def shutdown(self) -> None:
        for p in self._pools.values():
            p.shutdown(wait=True, cancel_futures=True)

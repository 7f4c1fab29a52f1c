"""Injectable clocks: real time for protocol tests and demos, virtual time for long runs."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    virtual: bool

    def now(self) -> float: ...

    async def sleep_until(self, t: float) -> None: ...


class RealClock:
    """Seconds since the clock was made, on the monotonic clock."""

    virtual = False

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self.now()))


class VirtualClock:
    """Time that jumps to whatever the simulator waits for: runs as fast as the CPU allows.

    ``sleep_until`` still yields to the event loop once, so servers and clients keep being served.
    """

    virtual = True

    def __init__(self, start: float = 0.0) -> None:
        self._t = start

    def now(self) -> float:
        return self._t

    async def sleep_until(self, t: float) -> None:
        self._t = max(self._t, t)
        await asyncio.sleep(0)

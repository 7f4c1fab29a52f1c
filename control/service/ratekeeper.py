"""A fixed-rate loop timer that knows when it lags (openpilot's Ratekeeper, async)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class RateKeeper:
    """Sleeps to the next period boundary; a cycle that overran starts the next one at once.

    ``lag_s`` is how late the current cycle started against its schedule; the schedule is
    re-based after a large overrun so one stall does not make the next cycles run back to back.
    """

    def __init__(
        self,
        period_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        print_delay_threshold_s: float | None = None,
    ) -> None:
        self.period_s = period_s
        self._clock = clock
        self._sleep = sleep
        self._next = clock() + period_s
        self.frame = 0
        self.lag_s = 0.0
        self.lagging_frames = 0
        self._warn = print_delay_threshold_s if print_delay_threshold_s is not None else period_s

    async def keep_time(self) -> bool:
        """Wait for the next cycle; True if this cycle started late by more than one period."""
        now = self._clock()
        remaining = self._next - now
        if remaining > 0:
            await self._sleep(remaining)
        else:
            await self._sleep(0)  # let other tasks run even when we are behind
        now = self._clock()
        self.lag_s = max(0.0, now - self._next)
        self.frame += 1
        lagged = self.lag_s > self._warn
        if lagged:
            self.lagging_frames += 1
            log.debug("cycle %d started %.1f ms late", self.frame, self.lag_s * 1000)
        if self.lag_s > 5 * self.period_s:
            self._next = now + self.period_s  # re-base after a stall
        else:
            self._next += self.period_s
        return lagged

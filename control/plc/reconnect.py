"""Reconnect with capped exponential backoff and jitter around any PlcLink.

Like Home Assistant's update coordinator: every driver failure is a PlcError, the first one is
logged once (warning), the recovery once (info), and ``connected`` is derived from the last
request's outcome. A call while the link is down and the backoff has not expired fails fast
with PlcConnectionError; the next call after the backoff reconnects first.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from control.plc.link import PlcConnectionError, PlcError, PlcLink, RingRead, Value

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before reconnect attempt n (0-based): min(cap, base * 2**n), less up to ``jitter`` of it."""

    base_s: float = 0.1
    cap_s: float = 5.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.cap_s, self.base_s * 2.0 ** min(attempt, 32))
        return d * (1.0 - self.jitter * rng.random())


class ReconnectingLink:
    """A PlcLink that reconnects its inner link after failures, with backoff."""

    def __init__(
        self,
        inner: PlcLink,
        backoff: Backoff | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._rng = rng or random.Random()
        self._ok = False
        self._attempt = 0
        self._retry_at = 0.0
        self._down_since: float | None = None
        self._lock = asyncio.Lock()
        self.failures = 0
        self.reconnects = 0
        self.last_error: PlcError | None = None

    @property
    def connected(self) -> bool:
        return self._ok and self.inner.connected

    @property
    def retry_in(self) -> float:
        """Seconds until the next reconnect attempt is allowed (0 when up or due)."""
        return 0.0 if self.connected else max(0.0, self._retry_at - self._clock())

    async def connect(self) -> None:
        """Connect now (ignoring backoff); raises PlcError and arms the backoff on failure."""
        async with self._lock:
            await self._connect()

    async def close(self) -> None:
        self._ok = False
        await self.inner.close()

    async def read(self, names: Sequence[str]) -> dict[str, Value]:
        return await self._run(lambda: self.inner.read(names))

    async def write(self, values: Mapping[str, Value]) -> None:
        await self._run(lambda: self.inner.write(values))

    async def read_ring(self, ring: str, after_seq: int, head: int | None = None) -> RingRead:
        return await self._run(lambda: self.inner.read_ring(ring, after_seq, head))

    async def ack_ring(self, ring: str, seq: int) -> None:
        await self._run(lambda: self.inner.ack_ring(ring, seq))

    async def write_ring(self, ring: str, entries: Sequence[Mapping[str, int]], *, with_head: bool = True) -> None:
        await self._run(lambda: self.inner.write_ring(ring, entries, with_head=with_head))

    async def read_block(self, name: str, count: int | None = None) -> npt.NDArray[np.uint16]:
        """The diverter link's chute blocks (PlcError on a link that has none)."""
        fn: Any = getattr(self.inner, "read_block", None)
        if fn is None:
            raise PlcError(f"{self.name}: this PLC has no register blocks")
        return await self._run(lambda: fn(name, count))

    # -- internals -----------------------------------------------------------------------------
    async def _run(self, op: Callable[[], Awaitable[T]]) -> T:
        if not self.inner.connected:
            async with self._lock:
                if not self.inner.connected:
                    if self._clock() < self._retry_at:
                        raise PlcConnectionError(
                            f"{self.name}: link down, next reconnect in {self._retry_at - self._clock():.2f} s"
                            + (f" (last error: {self.last_error})" if self.last_error else "")
                        )
                    await self._connect()
        try:
            result = await op()
        except PlcConnectionError as exc:
            self._failed(exc)
            await self.inner.close()
            raise
        self._succeeded()
        return result

    async def _connect(self) -> None:
        try:
            await self.inner.connect()
        except PlcError as exc:
            self._failed(exc)
            raise
        except Exception as exc:  # a driver bug must still look like a PLC fault to the caller
            err = PlcConnectionError(f"{self.name}: connect failed: {type(exc).__name__}: {exc}")
            self._failed(err)
            raise err from exc
        if self._down_since is not None:
            self.reconnects += 1
        self._succeeded()

    def _failed(self, exc: PlcError) -> None:
        self.failures += 1
        self.last_error = exc
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
            log.warning("%s: PLC link lost: %s", self.name, exc)
        else:
            log.debug("%s: still down: %s", self.name, exc)
        self._ok = False
        self._retry_at = now + self.backoff.delay(self._attempt, self._rng)
        self._attempt += 1

    def _succeeded(self) -> None:
        if self._down_since is not None:
            log.info("%s: PLC link recovered after %.2f s", self.name, self._clock() - self._down_since)
            self._down_since = None
        self._ok = True
        self._attempt = 0
        self._retry_at = 0.0

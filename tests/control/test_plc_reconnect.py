"""Reconnect policy: backoff bounds, fail-fast while down, one log line per outage and recovery."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control.plc import Backoff, PlcConnectionError, PlcRefused, ReconnectingLink, RingRead
from control.plc.link import PlcLink, Value


class FlakyPlc:
    """An in-memory PlcLink whose connection can be cut: the policy under test has no I/O."""

    name = "flaky"

    def __init__(self) -> None:
        self.up = True
        self.is_connected = False
        self.connects = 0
        self.mem: dict[str, Value] = {}

    @property
    def connected(self) -> bool:
        return self.is_connected

    async def connect(self) -> None:
        self.connects += 1
        if not self.up:
            raise PlcConnectionError("refused")
        self.is_connected = True

    async def close(self) -> None:
        self.is_connected = False

    def _check(self) -> None:
        if not (self.up and self.is_connected):
            self.is_connected = False
            raise PlcConnectionError("connection lost")

    async def read(self, names: Sequence[str]) -> dict[str, Value]:
        self._check()
        return {n: self.mem.get(n, 0) for n in names}

    async def write(self, values: Mapping[str, Value]) -> None:
        self._check()
        if "ro" in values:
            raise PlcRefused("read-only")
        self.mem.update(values)

    async def read_ring(self, ring: str, after_seq: int) -> RingRead:
        self._check()
        return RingRead(head=after_seq)

    async def ack_ring(self, ring: str, seq: int) -> None:
        self._check()

    async def write_ring(self, ring: str, entries: Sequence[Mapping[str, int]], *, with_head: bool = True) -> None:
        self._check()


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@given(attempt=st.integers(0, 100), base=st.floats(0.001, 1), cap=st.floats(0.01, 10), seed=st.integers(0, 99))
def test_backoff_is_capped_exponential_with_bounded_jitter(attempt: int, base: float, cap: float, seed: int) -> None:
    b = Backoff(base_s=base, cap_s=cap, jitter=0.5)
    d = b.delay(attempt, random.Random(seed))
    full = min(cap, base * 2**attempt)
    assert full * 0.5 <= d <= full


def test_flaky_plc_satisfies_the_protocol() -> None:
    assert isinstance(FlakyPlc(), PlcLink)


async def test_outage_logs_once_fails_fast_and_recovers_once(caplog: pytest.LogCaptureFixture) -> None:
    plc, clock = FlakyPlc(), Clock()
    link = ReconnectingLink(plc, Backoff(base_s=1.0, cap_s=4.0, jitter=0.0), clock=clock)
    await link.connect()
    await link.write({"x": 1})
    assert link.connected
    caplog.set_level(logging.DEBUG, logger="control.plc.reconnect")

    plc.up = False
    with pytest.raises(PlcConnectionError):
        await link.read(["x"])
    assert not link.connected
    connects = plc.connects
    for _ in range(5):  # inside the backoff window: no connection attempts at all
        with pytest.raises(PlcConnectionError, match="next reconnect"):
            await link.read(["x"])
    assert plc.connects == connects
    clock.t += 1.0
    with pytest.raises(PlcConnectionError):
        await link.read(["x"])  # one attempt, fails, backoff doubles
    assert plc.connects == connects + 1
    assert link.retry_in == pytest.approx(2.0)

    plc.up = True
    clock.t += 2.0
    assert await link.read(["x"]) == {"x": 1}
    assert link.connected and link.reconnects == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and "lost" in warnings[0].getMessage()
    assert len(infos) == 1 and "recovered" in infos[0].getMessage()


async def test_refusal_is_an_answer_not_an_outage() -> None:
    plc = FlakyPlc()
    link = ReconnectingLink(plc, clock=Clock())
    await link.connect()
    with pytest.raises(PlcRefused):
        await link.write({"ro": 1})
    assert link.connected and link.failures == 0


async def test_first_call_connects_lazily() -> None:
    plc = FlakyPlc()
    link = ReconnectingLink(plc, clock=Clock())
    assert not link.connected
    assert await link.read(["a"]) == {"a": 0}
    assert link.connected and plc.connects == 1

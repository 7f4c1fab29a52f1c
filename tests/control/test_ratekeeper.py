"""RateKeeper: fixed-rate cycles on an injected clock, lag reported, schedule re-based after a stall."""

from __future__ import annotations

from control.service.ratekeeper import RateKeeper


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


async def test_keeps_the_period_and_reports_lag() -> None:
    clk = FakeClock()
    rk = RateKeeper(0.01, clock=clk, sleep=clk.sleep)
    assert not await rk.keep_time()
    assert abs(clk.t - 0.01) < 1e-12 and rk.lag_s == 0.0
    clk.t += 0.004  # a cycle's work
    await rk.keep_time()
    assert abs(clk.t - 0.02) < 1e-12  # slept only the rest of the period
    clk.t += 0.025  # an overrun of 1.5 periods
    lagged = await rk.keep_time()
    assert lagged and abs(rk.lag_s - 0.015) < 1e-9
    assert rk.lagging_frames == 1


async def test_rebases_after_a_stall() -> None:
    clk = FakeClock()
    rk = RateKeeper(0.01, clock=clk, sleep=clk.sleep)
    await rk.keep_time()
    clk.t += 1.0  # a one-second stall
    await rk.keep_time()
    t = clk.t
    await rk.keep_time()
    assert abs(clk.t - t - 0.01) < 1e-9  # next cycle a period later, not a burst of catch-up cycles

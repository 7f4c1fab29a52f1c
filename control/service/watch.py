"""Liveness and plausibility derived from what the PLCs report: heartbeats and the encoder.

Each watch is fed one cycle's reading and answers one question, with no I/O, so the rules are
tested without a PLC and the controller only applies the answers through the fault table.
"""

from __future__ import annotations

from control.tracking import sdiff

__all__ = ["EncoderWatch", "HeartbeatWatch"]


class HeartbeatWatch:
    """A PLC is alive while its heartbeat counter keeps changing.

    A link that answers with a frozen heartbeat is as dead as one that does not answer: the PLC
    program has stopped, whatever its communication processor says. Staleness counts from the
    first cycle, so a PLC that never answered is reported after the timeout, not at once.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.ever_ok = False  # answered at least once since start-up
        self._value: int | None = None
        self._changed_at: float | None = None

    def update(self, ok: bool, heartbeat: int | None, now: float) -> bool:
        """One cycle's read (``ok``: the read succeeded); True while the PLC counts as lost."""
        if ok:
            self.ever_ok = True
            if self._changed_at is None or heartbeat != self._value:
                self._value, self._changed_at = heartbeat, now
        elif self._changed_at is None:
            self._changed_at = now
        return now - self._changed_at > self.timeout_s


class EncoderWatch:
    """An encoder step the belt speed cannot explain means every latched position is suspect.

    The PLC sampled the count somewhere between sending the read and its reply, so the time
    between two samples is only known as an interval; a late cycle or a slow reply widens the
    interval instead of looking like a jump.
    """

    def __init__(self, counts_per_mm: float, tolerance_mm: float) -> None:
        self.counts_per_mm = counts_per_mm
        self.tolerance_counts = tolerance_mm * counts_per_mm
        self._last: tuple[int, float, float] | None = None  # count, sent_at, received_at

    def check(self, count: int, sent_at: float, received_at: float, speed_mps: float) -> str | None:
        """None when the step since the last sample is plausible, else what was wrong."""
        last = self._last
        self._last = (count, sent_at, received_at)
        if last is None:
            return None
        step = sdiff(count, last[0])
        per_s = speed_mps * 1000.0 * self.counts_per_mm
        lo = per_s * max(0.0, sent_at - last[2])
        hi = per_s * (received_at - last[1])
        tol = self.tolerance_counts + 0.5 * hi  # + speed ramps
        if lo - tol <= step <= hi + tol:
            return None
        return (
            f"encoder moved {step} counts in {(received_at - last[1]) * 1000:.0f} ms at most, "
            f"belt speed explains {lo:.0f}-{hi:.0f}"
        )

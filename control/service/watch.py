"""Liveness and plausibility derived from what the PLCs report: heartbeats and the encoder.

Each watch is fed one cycle's reading and answers one question, with no I/O, so the rules are
tested without a PLC and the controller only applies the answers through the fault table.
"""

from __future__ import annotations

from control.tracking import sdiff

__all__ = ["EncoderAgreement", "EncoderWatch", "HeartbeatWatch", "follows"]


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

    The PLC sampled the count somewhere between sending the read and its reply, and its value
    may be up to ``max_age_s`` old (an OPC UA server samples PLC memory on its own cycle), so the
    time between two samples is only known as an interval; a late cycle, a slow reply or a stale
    value widens the interval instead of looking like a jump. The belt may change speed between
    samples, so the slower of the two speeds bounds the step from below and the faster from
    above. Samples more than ``max_gap_s`` apart (a link that was down) are not compared: the
    belt may have run, ramped and stopped meanwhile, and the PLC's own per-scan check (its
    encoder-fault bit) covers that time.
    """

    def __init__(self, counts_per_mm: float, tolerance_mm: float, *, max_age_s: float = 0.05,
                 max_gap_s: float = 0.25) -> None:
        self.counts_per_mm = counts_per_mm
        self.tolerance_counts = tolerance_mm * counts_per_mm
        self.max_age_s = max_age_s
        self.max_gap_s = max_gap_s
        self._last: tuple[int, float, float, float] | None = None  # count, sent_at, received_at, speed

    def reset(self) -> None:
        """The next sample starts afresh (the link was down, or the PLC restarted)."""
        self._last = None

    def check(self, count: int, sent_at: float, received_at: float, speed_mps: float) -> str | None:
        """None when the step since the last sample is plausible, else what was wrong."""
        last = self._last
        self._last = (count, sent_at, received_at, speed_mps)
        if last is None or sent_at - last[2] > self.max_gap_s:
            return None
        step = sdiff(count, last[0])
        lo, hi = travel(last[:3], (count, sent_at, received_at), min(speed_mps, last[3]), max(speed_mps, last[3]),
                        self.counts_per_mm, self.max_age_s)
        if explained(step, lo, hi, self.tolerance_counts):
            return None
        return (
            f"encoder moved {step} counts in {(received_at - last[1]) * 1000:.0f} ms at most, "
            f"belt speed explains {lo:.0f}-{hi:.0f}"
        )


class EncoderAgreement:
    """The diverter PLC fires on its own encoder input; the controller computes every fire count
    from the conveyor PLC's. The two must be the same count (one encoder), or every fire lands
    on the wrong parcel. Compared every cycle both are read, allowing for the belt travel between
    the two reads and for values ``max_age_s`` old. A cycle that disagrees arms nothing (its
    counts cannot both be right); a disagreement that lasts ``persist_s`` is a mismatch (a
    counter offset, or one reset by a power cycle), while a PLC's value that lags for a moment
    (an OPC UA server sampling its PLC late) is not.
    """

    def __init__(self, counts_per_mm: float, tolerance_mm: float, *, persist_s: float = 0.5,
                 max_age_s: float = 0.05) -> None:
        self.counts_per_mm = counts_per_mm
        self.tolerance_counts = tolerance_mm * counts_per_mm
        self.persist_s = persist_s
        self.max_age_s = max_age_s
        self.agree = True  # this cycle's verdict
        self.mismatch = False
        self._since: float | None = None  # when the current disagreement (or agreement after a mismatch) began
        self.detail = ""

    def check(self, conveyor: int, diverter: int, spread_s: float, speed_mps: float, now: float) -> str | None:
        """Feed one cycle; returns what is wrong while they are in mismatch (None otherwise)."""
        off = sdiff(diverter, conveyor)
        allowed = self.tolerance_counts + speed_mps * 1000.0 * self.counts_per_mm * (spread_s + self.max_age_s)
        agree = abs(off) <= allowed
        if agree != self.agree:
            self._since = now
        self.agree = agree
        if self._since is not None and now - self._since >= (0.2 if agree else self.persist_s):
            self.mismatch = not agree
        if not agree:
            self.detail = f"diverter encoder {off:+d} counts from the conveyor's (allowed {allowed:.0f})"
        return self.detail if self.mismatch else None



Sample = tuple[int, float, float]  # an encoder count, and the instants its read was sent and answered


def travel(before: Sample, after: Sample, slow_mps: float, fast_mps: float, counts_per_mm: float,
           max_age_s: float) -> tuple[float, float]:
    """The fewest and most counts the belt can have moved between two samples. Each PLC sampled
    its count somewhere between sending the read and its reply, and the value may be
    ``max_age_s`` old, so the time between them is only known as an interval; the slower of the
    belt's speeds bounds it from below and the faster from above."""
    per_mps = 1000.0 * counts_per_mm
    lo = slow_mps * per_mps * max(0.0, after[1] - max_age_s - before[2])
    hi = fast_mps * per_mps * (after[2] - (before[1] - max_age_s))
    return lo, hi


def explained(step: int, lo: float, hi: float, tolerance_counts: float) -> bool:
    """Whether the belt's travel explains a step: a belt never runs backwards, so below only the
    tolerance; above, half again for ramps."""
    return lo - tolerance_counts <= step <= 1.5 * hi + tolerance_counts


def follows(before: Sample, after: Sample, speed_mps: float,
            counts_per_mm: float, tolerance_mm: float, max_age_s: float) -> bool:
    """Whether the count ``after`` can follow ``before`` on one encoder at ``speed_mps``: the
    two samples may come from different PLCs of the same encoder (the conveyor's last cycle, the
    diverter's this cycle); the rule of `EncoderWatch`."""
    lo, hi = travel(before, after, speed_mps, speed_mps, counts_per_mm, max_age_s)
    return explained(sdiff(after[0], before[0]), lo, hi, tolerance_mm * counts_per_mm)

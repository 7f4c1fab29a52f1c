"""What the PackTags server shows, computed from the controller's own objects: pure, no I/O.

The server thread calls ``Snapshotter.take`` at its refresh rate; everything here is plain
arithmetic on values it copies out of the controller (`PackMLUnit.tags`, the fault book), so
the state-time bookkeeping (StateCurrentTime, StateCumulativeTime per mode and state) and the
rates are testable with a fake clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from control.faults import FAULTS, Fault, Severity
from control.packml import UnitTags
from plant.codes import PackMLState, UnitMode

__all__ = ["N_MODES", "N_STATES", "Snapshot", "Snapshotter", "StateClock", "UnitView"]

# Admin time arrays are indexed [mode][state] by the standard's numbers (0 is unused), so a
# SCADA can index them with UnitModeCurrent and StateCurrent directly.
N_MODES = max(UnitMode) + 1
N_STATES = max(PackMLState) + 1
RATE_WINDOW_S = 60.0  # CurMachSpeed: parcels processed over the last minute, per hour
STARVED_AFTER_S = 30.0  # Execute with nothing on the belt and nothing processed this long = starved


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One refresh of every PackTag (seconds, counts, codes as the standard numbers them)."""

    state: int
    mode: int
    cur_mach_speed: float  # parcels/h over the last minute (as `sortctl status` reports it)
    mach_speed: float  # belt speed setpoint, m/s
    belt_speed: float  # belt speed measured, m/s
    blocked: bool
    starved: bool
    processed: int
    defective: tuple[tuple[str, int], ...]  # by reason
    stop_reason: tuple[int, str]
    warnings: tuple[tuple[int, str], ...]
    alarms: tuple[tuple[int, str], ...]
    state_current_time: tuple[tuple[int, ...], ...]
    state_cumulative_time: tuple[tuple[int, ...], ...]
    mode_current_time: tuple[int, ...]
    mode_cumulative_time: tuple[int, ...]
    acc_time_since_reset: int

    def to_json(self) -> dict[str, Any]:
        """Shallow (``dataclasses.asdict`` deep-copies every tuple: ~5x slower on the control loop)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Snapshot:
        """Back from JSON (lists for tuples, which is all the address space needs)."""
        return cls(**d)


@dataclass(frozen=True, slots=True)
class UnitView:
    """The controller values a snapshot is made of, copied out in one go."""

    tags: UnitTags
    faults: Mapping[Fault, str]
    in_flight: int
    belt_speed: float
    speed_setpoint: float


class StateClock:
    """Seconds in the current state and mode, and cumulative per (mode, state) and per mode."""

    def __init__(self, now: float) -> None:
        self._t0 = self._since_state = self._since_mode = self._last = now
        self._state = 0
        self._mode = 0
        self._cum = [[0.0] * N_STATES for _ in range(N_MODES)]
        self._mode_cum = [0.0] * N_MODES

    def feed(self, state: int, mode: int, now: float) -> None:
        """Account the time since the last feed to the state and mode that held until now."""
        dt = max(0.0, now - self._last)
        self._last = now
        if self._state:
            self._cum[self._mode][self._state] += dt
            self._mode_cum[self._mode] += dt
        if state != self._state or mode != self._mode:
            self._since_state = now
        if mode != self._mode:
            self._since_mode = now
        self._state, self._mode = state, mode

    def current(self, now: float) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
        """StateCurrentTime[mode][state] (only the current cell is non-zero), ModeCurrentTime[mode]."""
        cells = [[0] * N_STATES for _ in range(N_MODES)]
        modes = [0] * N_MODES
        if self._state:
            cells[self._mode][self._state] = int(now - self._since_state)
            modes[self._mode] = int(now - self._since_mode)
        return tuple(tuple(r) for r in cells), tuple(modes)

    def cumulative(self) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
        return tuple(tuple(int(x) for x in r) for r in self._cum), tuple(int(x) for x in self._mode_cum)

    def since_reset(self, now: float) -> int:
        return int(now - self._t0)


class Snapshotter:
    """Turns successive UnitViews into Snapshots; keeps the state clock and the rate window."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.states = StateClock(clock())
        self._counts: deque[tuple[float, int]] = deque()
        self._last_progress = clock()
        self._last_processed = -1

    def take(self, view: UnitView) -> Snapshot:
        now = self._clock()
        tags = view.tags
        state, mode = int(tags.state_current), int(tags.unit_mode_current)
        self.states.feed(state, mode, now)
        processed = tags.prod_processed_count
        self._counts.append((now, processed))
        while len(self._counts) > 1 and now - self._counts[0][0] > RATE_WINDOW_S:
            self._counts.popleft()
        t_old, n_old = self._counts[0]
        rate = (processed - n_old) * 3600.0 / (now - t_old) if now - t_old >= 1.0 else 0.0
        if processed != self._last_processed or view.in_flight or state != PackMLState.EXECUTE:
            self._last_progress = now
            self._last_processed = processed
        cur, mode_cur = self.states.current(now)
        cum, mode_cum = self.states.cumulative()
        warnings: list[tuple[int, str]] = []
        alarms: list[tuple[int, str]] = []
        for fault, text in sorted(view.faults.items()):
            (warnings if FAULTS[fault].severity <= Severity.WARNING else alarms).append((int(fault), text))
        return Snapshot(
            state=state,
            mode=mode,
            cur_mach_speed=rate,
            mach_speed=view.speed_setpoint,
            belt_speed=view.belt_speed,
            blocked=Fault.DESTINATION_FULL in view.faults,
            starved=state == PackMLState.EXECUTE and now - self._last_progress >= STARVED_AFTER_S,
            processed=processed,
            defective=tuple(sorted(dict(tags.prod_defective_count).items())),
            stop_reason=(tags.stop_reason, tags.stop_reason_text),
            warnings=tuple(warnings),
            alarms=tuple(alarms),
            state_current_time=cur,
            state_cumulative_time=cum,
            mode_current_time=mode_cur,
            mode_cumulative_time=mode_cum,
            acc_time_since_reset=self.states.since_reset(now),
        )

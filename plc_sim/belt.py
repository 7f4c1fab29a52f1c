"""The conveyor PLC's belt as a PackML unit: command table, acting states, PLC-initiated stops.

Pure: no world, no clock, no I/O; the conveyor program (``plc_sim.plc_logic``) feeds it the
host's commands and the causes it reads each scan, and applies ``moving`` to the belt motor.

By default it behaves like the strictest PLC the standard allows, because a simulator that
accepts more than a real PLC hides controller bugs until commissioning: the command table is
``plant.packml.ACCEPTS`` (the one the controller follows too), acting states take ``acting_s``
before they complete to ``plant.packml.SC_NEXT``, and a command is refused (result 1) while the
cause that stopped the belt is still there. ``reset_clears_all`` imitates the lenient conveyor
PLCs many sites run: Reset from any non-running state straight to Idle.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from plant.codes import CommandResult, ConveyorFault, PackMLCommand, PackMLState
from plant.packml import ACCEPTS, ACTING_STATES, SC_NEXT

__all__ = ["MOVING", "Belt", "BeltSettings", "Causes", "Conformance"]

S = PackMLState
C = PackMLCommand
F = ConveyorFault


class Conformance(StrEnum):
    """Which PLC's PackML behaviour the belt imitates."""

    STRICT = "strict"  # the standard's command table, nothing more
    RESET_CLEARS_ALL = "reset_clears_all"  # Reset from every non-running state straight to Idle


STRICT_ACTING_S = 0.1


@dataclass(frozen=True, slots=True)
class BeltSettings:
    """How the belt follows PackML; ``acting_s`` 0 = acting states complete in the same scan."""

    packml: Conformance = Conformance.STRICT
    acting_s: float = STRICT_ACTING_S

    @classmethod
    def of(cls, packml: str = "strict", acting_ms: float | None = None) -> BeltSettings:
        """Settings from a scenario's ``plc`` block: strict acts 100 ms, the lenient PLC one scan."""
        mode = Conformance(packml)
        if acting_ms is None:
            acting_s = STRICT_ACTING_S if mode == Conformance.STRICT else 0.0
        else:
            acting_s = acting_ms / 1000.0
        return cls(mode, acting_s)


@dataclass(frozen=True, slots=True)
class Causes:
    """Conditions the PLC reads this scan that last as long as their cause does."""

    estop: bool = False  # the e-stop button is pressed
    jam: bool = False  # a photo-eye reports a jam
    host_stale: bool = False  # the host heartbeat has not changed for watchdog_ms


# The belt motor runs here. Starting and Unholding sound the start-up horn first; Completing
# and the suspend states keep the belt moving so that parcels on it are still sorted.
MOVING: frozenset[PackMLState] = frozenset({S.EXECUTE, S.COMPLETING, S.SUSPENDING, S.SUSPENDED, S.UNSUSPENDING})
# The host watchdog acts where the belt moves or is about to.
WATCHED: frozenset[PackMLState] = MOVING | {S.STARTING, S.UNHOLDING}
_STOPPABLE = frozenset(s for s in S if C.STOP in ACCEPTS[s])
_HOLDABLE = frozenset(s for s in S if C.HOLD in ACCEPTS[s])
_ABORTABLE = frozenset(s for s in S if C.ABORT in ACCEPTS[s])
_LENIENT_RESET_FROM = frozenset({S.HELD, S.ABORTED, S.IDLE, S.STOPPED, S.COMPLETE})
_BLOCKS_RUNNING = F.ESTOP | F.JAM  # latched faults that keep the belt from starting again


class Belt:
    """One belt's PackML state, latched fault bits and the timer of its acting state."""

    def __init__(self, settings: BeltSettings = BeltSettings(), state: PackMLState = S.STOPPED, now: float = 0.0) -> None:
        self.settings = settings
        self.state = state
        self.faults = F(0)
        self.entered_s = now  # when the current state was entered
        self.watchdog_trips = 0

    @property
    def moving(self) -> bool:
        return self.state in MOVING

    def power_up(self, state: PackMLState, now: float, estop: bool) -> None:
        """The PLC program starts: latched faults are gone, except an e-stop still pressed."""
        self.state = state
        self.entered_s = now
        self.faults = F.ESTOP if estop else F(0)

    # ---- commands from the host ----------------------------------------------------------
    def destination(self, cmd: PackMLCommand) -> PackMLState | None:
        """Where ``cmd`` takes the belt from its state by the table alone (None: not accepted)."""
        if (
            self.settings.packml == Conformance.RESET_CLEARS_ALL
            and cmd == C.RESET
            and self.state in _LENIENT_RESET_FROM
        ):
            return S.IDLE
        return ACCEPTS[self.state].get(cmd)

    def refusal(self, cmd: PackMLCommand, causes: Causes) -> bool:
        """True when a strict PLC refuses ``cmd`` because the cause of a stop is still there."""
        if cmd in (C.CLEAR, C.RESET) and causes.estop:
            return True  # nothing is cleared or reset while the e-stop is pressed
        if cmd in (C.START, C.UNHOLD) and self.faults & _BLOCKS_RUNNING:
            return True
        return cmd == C.UNHOLD and causes.host_stale

    def command(self, cmd: int, now: float, causes: Causes) -> CommandResult:
        """Execute one host command (once per new command seq): 0 accepted, 1 refused, 2 unknown."""
        try:
            c = C(cmd)
        except ValueError:
            return CommandResult.UNKNOWN
        dst = self.destination(c)
        if dst is None or self.refusal(c, causes):
            return CommandResult.REFUSED
        if c == C.UNHOLD:
            self.faults &= ~F.HOST_WATCHDOG  # the host is back: its watchdog fault is answered
        if c == C.RESET:
            self.faults = F(0)  # a Reset clears every latched fault as it is accepted
        self._enter(dst, now)
        return CommandResult.ACCEPTED

    # ---- what the PLC does by itself -------------------------------------------------------
    def tick(self, now: float, causes: Causes) -> None:
        """One scan: react to the causes present, then complete an acting state whose time is up."""
        self.react(now, causes)
        if self.state in ACTING_STATES and now - self.entered_s >= self.settings.acting_s - 1e-9:
            self._enter(SC_NEXT[self.state], now)

    def react(self, now: float, causes: Causes) -> None:
        """PLC-initiated transitions: e-stop aborts, a jam stops, a silent host holds the belt."""
        if causes.estop:
            self.faults |= F.ESTOP
            if self.state in _ABORTABLE:
                self._enter(S.ABORTING, now)
        if causes.jam:
            self.faults |= F.JAM
            if self.state in _STOPPABLE:
                self._enter(S.STOPPING, now)
        if causes.host_stale and self.state in WATCHED:
            self.faults |= F.HOST_WATCHDOG
            self.watchdog_trips += 1
            # Completing is moving but not holdable in the standard's table: it stops instead
            self._enter(S.HOLDING if self.state in _HOLDABLE else S.STOPPING, now)

    def _enter(self, state: PackMLState, now: float) -> None:
        self.state = state
        self.entered_s = now

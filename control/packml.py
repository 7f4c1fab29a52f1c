"""The sorter's PackML unit: the 17-state machine, unit modes and the standard PackTags.

Pure: no I/O, no clock of its own. The service feeds commands and state-complete events in and
applies what comes out (belt commands, stored state changes). The transition table follows
ISA-TR88.00.02 / OPC 30050 and is written out once, in ``plant.packml.TRANSITIONS`` (the
simulated belt PLC follows the same table), so a test can walk every state against every command.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from transitions import Machine

from plant.codes import PackMLCommand, PackMLState, UnitMode
from plant.packml import ACTING_STATES, SC_NEXT, TRANSITIONS

__all__ = [
    "ACTING_STATES",
    "MODE_CHANGE_STATES",
    "MODE_DISABLED_STATES",
    "TRANSITIONS",
    "CommandOutcome",
    "PackMLUnit",
    "UnitTags",
]

log = logging.getLogger(__name__)

S = PackMLState
C = PackMLCommand

# Unit modes: where a mode change is allowed (the unit is at rest, nothing half done) and which
# states a mode leaves out (TR88 lets a mode disable states; a disabled state's command is
# refused). Maintenance and Manual run the belt without holding or suspending production.
MODE_CHANGE_STATES: frozenset[PackMLState] = frozenset({S.STOPPED, S.IDLE, S.ABORTED, S.COMPLETE})
MODE_DISABLED_STATES: dict[UnitMode, frozenset[PackMLState]] = {
    UnitMode.PRODUCTION: frozenset(),
    UnitMode.MAINTENANCE: frozenset({S.SUSPENDING, S.SUSPENDED, S.UNSUSPENDING, S.COMPLETING, S.COMPLETE}),
    UnitMode.MANUAL: frozenset(
        {S.SUSPENDING, S.SUSPENDED, S.UNSUSPENDING, S.COMPLETING, S.COMPLETE, S.HOLDING, S.HELD, S.UNHOLDING}
    ),
}


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What a command did: refused commands say why instead of raising at the caller."""

    accepted: bool
    command: str
    before: PackMLState
    after: PackMLState
    reason: str = ""


@dataclass(slots=True)
class UnitTags:
    """The PackTags an HMI or host reads (Status tags of TR88 / OPC 30050)."""

    state_current: PackMLState = S.STOPPED
    unit_mode_current: UnitMode = UnitMode.PRODUCTION
    cur_mach_speed: float = 0.0  # parcels per hour, measured
    mach_speed_setpoint: float = 0.0  # belt m/s the unit runs at
    prod_processed_count: int = 0
    prod_defective_count: Counter[str] = field(default_factory=Counter)  # by reason
    stop_reason: int = 0  # fault code of the first fault that stopped/held the unit
    stop_reason_text: str = ""
    alarms: dict[str, str] = field(default_factory=dict)  # active alarm name -> text


class _Model:
    """The object `transitions` drives; holds nothing but the state name."""

    state: str


class PackMLUnit:
    """One PackML unit. Commands and SC events return a CommandOutcome; nothing raises."""

    def __init__(self, mode: UnitMode = UnitMode.PRODUCTION, initial: PackMLState = S.STOPPED) -> None:
        self._model = _Model()
        self._machine = Machine(
            model=self._model,
            states=[s.name for s in S],
            initial=initial.name,
            auto_transitions=False,
            ignore_invalid_triggers=False,
        )
        for cmd, src, dst in TRANSITIONS:
            self._machine.add_transition(cmd.name, src.name, dst.name)
        for src, dst in SC_NEXT.items():
            self._machine.add_transition("SC", src.name, dst.name)
        self.tags = UnitTags(state_current=initial, unit_mode_current=mode)
        self.history: list[CommandOutcome] = []  # drained by the service into the event store

    @property
    def state(self) -> PackMLState:
        return PackMLState[self._model.state]

    @property
    def mode(self) -> UnitMode:
        return self.tags.unit_mode_current

    def allowed_commands(self) -> list[PackMLCommand]:
        """Commands accepted in the current state and mode (for the HMI and tests)."""
        return [c for c in C if self._target(c.name) is not None]

    def _target(self, trigger: str) -> PackMLState | None:
        cur = self.state
        for t in self._machine.get_transitions(trigger=trigger, source=cur.name):
            dst = PackMLState[str(t.dest)]
            if dst in MODE_DISABLED_STATES[self.mode]:
                return None
            return dst
        return None

    def _fire(self, trigger: str, label: str) -> CommandOutcome:
        before = self.state
        dst = self._target(trigger)
        if dst is None:
            reason = f"{label} not allowed in {before.name} ({self.mode.name} mode)"
            out = CommandOutcome(False, label, before, before, reason)
            log.warning("packml: refused %s", reason)
        else:
            event: Any = self._machine.events[trigger]
            event.trigger(self._model)
            self.tags.state_current = self.state
            out = CommandOutcome(True, label, before, self.state)
            log.info("packml: %s %s -> %s", label, before.name, self.state.name)
        self.history.append(out)
        return out

    def command(self, cmd: PackMLCommand) -> CommandOutcome:
        """Apply an operator/host command (Reset, Start, Stop, Hold, ...)."""
        return self._fire(PackMLCommand(cmd).name, PackMLCommand(cmd).name)

    def state_complete(self) -> CommandOutcome:
        """The acting state's work is done: move to the state the standard says follows."""
        return self._fire("SC", "SC")

    def resync(self, state: PackMLState, why: str) -> CommandOutcome:
        """Take the state the equipment reports when it contradicts the unit.

        The unit's own moves are the standard's commands and state-complete events. The belt
        PLC also moves by itself (its watchdog holds it, a jam stops it, it restarts in Stopped,
        a command is refused, a local operator resets it); then no legal path through the state
        model is honest (it would record states that never happened), so the unit takes the
        reported state in one recorded step, with the reason, and the supervisor goes on from
        there.
        """
        before = self.state
        if state == before:
            return CommandOutcome(True, "RESYNC", before, before, why)
        self._machine.set_state(state.name, model=self._model)
        self.tags.state_current = state
        out = CommandOutcome(True, "RESYNC", before, state, why)
        log.info("packml: %s -> %s (%s)", before.name, state.name, why)
        self.history.append(out)
        return out

    def set_mode(self, mode: UnitMode) -> CommandOutcome:
        before = self.state
        label = f"MODE:{UnitMode(mode).name}"
        if before not in MODE_CHANGE_STATES:
            out = CommandOutcome(False, label, before, before, f"mode change not allowed in {before.name}")
            log.warning("packml: refused %s", out.reason)
        else:
            self.tags.unit_mode_current = UnitMode(mode)
            out = CommandOutcome(True, label, before, before)
            log.info("packml: mode -> %s", UnitMode(mode).name)
        self.history.append(out)
        return out

    # -- PackTags bookkeeping -------------------------------------------------------------
    def count_processed(self, n: int = 1) -> None:
        self.tags.prod_processed_count += n

    def count_defective(self, reason: str, n: int = 1) -> None:
        self.tags.prod_defective_count[reason] += n

    def raise_alarm(self, name: str, text: str) -> bool:
        """Set an alarm; True if it was not active before (log and store it once)."""
        new = name not in self.tags.alarms
        self.tags.alarms[name] = text
        return new

    def clear_alarm(self, name: str) -> bool:
        return self.tags.alarms.pop(name, None) is not None

    def set_stop_reason(self, code: int, text: str) -> None:
        """Keep the first reason: the root cause, not its consequences."""
        if self.tags.stop_reason == 0:
            self.tags.stop_reason, self.tags.stop_reason_text = code, text

    def clear_stop_reason(self) -> None:
        self.tags.stop_reason, self.tags.stop_reason_text = 0, ""

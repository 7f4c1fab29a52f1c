"""The faults active now: raising and clearing them is always the alarm on the PackML unit, a
stored event and one log line, in one place, so no code path can do two of them and forget the
third. What the unit *does* about a fault is the supervisor's job (control/service/supervisor.py),
read from the one fault table (control/faults.py); this book only says what is active and what
was raised since the supervisor last looked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from control.faults import FAULTS, Fault
from control.packml import PackMLUnit
from control.store import AlarmClear, AlarmRaise, Batch
from plant.codes import ConveyorFault, DiverterFault

__all__ = ["CONVEYOR_BITS", "DIVERTER_BITS", "FaultBook"]

log = logging.getLogger(__name__)

CONVEYOR_BITS: dict[ConveyorFault, Fault] = {
    ConveyorFault.ESTOP: Fault.ESTOP,
    ConveyorFault.JAM: Fault.JAM,
    ConveyorFault.HOST_WATCHDOG: Fault.HOST_WATCHDOG,
    ConveyorFault.ENCODER: Fault.ENCODER_FAULT,
    ConveyorFault.GAP_VIOLATION: Fault.INDUCT_GAP_VIOLATION,
}
DIVERTER_BITS: dict[DiverterFault, Fault] = {
    DiverterFault.HOST_WATCHDOG: Fault.HOST_WATCHDOG,
    DiverterFault.DIVERTER: Fault.DIVERTER_FAULT,
    DiverterFault.ARM_OVERFLOW: Fault.ARM_QUEUE_OVERFLOW,
}


class FaultBook:
    """Active faults with their detail, and the ones raised since ``take_raised``."""

    def __init__(self, unit: PackMLUnit, wall: Callable[[], float]) -> None:
        self.unit = unit
        self.wall = wall
        self.active: dict[Fault, str] = {}
        self._raised: list[Fault] = []

    def __contains__(self, fault: Fault) -> bool:
        return fault in self.active

    def raise_(self, fault: Fault, detail: str, batch: Batch) -> None:
        """Raise once: a fault already active is not raised (nor stored, nor logged) again."""
        if fault in self.active:
            return
        rule = FAULTS[fault]
        self.active[fault] = detail
        self._raised.append(fault)
        self.unit.raise_alarm(fault.name.lower(), detail)
        t = self.wall()
        batch.unit_event(t, "alarm", fault.name.lower(), int(fault), detail)
        batch.alarm_ops.append(AlarmRaise(t, fault.name.lower(), int(fault), rule.severity.name.lower(), detail))
        log.warning("fault %s (%s): %s -> %s", fault.name, rule.severity.name, detail or rule.why, rule.reaction.value)

    def clear(self, fault: Fault, batch: Batch) -> None:
        if self.active.pop(fault, None) is None:
            return
        self.unit.clear_alarm(fault.name.lower())
        t = self.wall()
        batch.unit_event(t, "alarm_clear", fault.name.lower(), int(fault), "")
        batch.alarm_ops.append(AlarmClear(t, fault.name.lower()))
        log.info("fault %s cleared", fault.name)

    def event(self, fault: Fault, detail: str, batch: Batch) -> None:
        """A fault that is an event, not a standing condition: raised and cleared at once."""
        self.raise_(fault, detail, batch)
        self.clear(fault, batch)

    def take_raised(self) -> list[Fault]:
        """Faults raised since the last call (the supervisor applies their reactions once)."""
        out, self._raised = self._raised, []
        return out

    def no_entry(self) -> bool:
        """Some active fault closes the induct."""
        return any(FAULTS[f].no_entry for f in self.active)

    def names(self) -> list[str]:
        return sorted(f.name.lower() for f in self.active)

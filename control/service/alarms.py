"""The faults active now, applied through the one fault table (control/faults.py).

Raising a fault is always the same four things: the alarm on the PackML unit, a stored event, a
log line, and the table's reaction (a PackML command). Keeping them here means no code path can
do three of them and forget the fourth.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from control.faults import FAULTS, Fault, Reaction
from control.packml import PackMLUnit
from control.store import Batch
from plant.codes import ConveyorFault, DiverterFault

__all__ = ["CONVEYOR_BITS", "DIVERTER_BITS", "RESET_CLEARS", "FaultBook"]

log = logging.getLogger(__name__)

# latched PLC fault bits whose cause is gone once our heartbeat is back: a Reset clears them
RESET_CLEARS = frozenset({Fault.HOST_WATCHDOG})

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
    """Active faults with their detail; ``on_command`` stores the unit's state changes."""

    def __init__(self, unit: PackMLUnit, wall: Callable[[], float], on_command: Callable[[Batch], None]) -> None:
        self.unit = unit
        self.wall = wall
        self.on_command = on_command
        self.active: dict[Fault, str] = {}

    def __contains__(self, fault: Fault) -> bool:
        return fault in self.active

    def raise_(self, fault: Fault, detail: str, batch: Batch) -> None:
        """Raise once: a fault already active is not raised (nor reacted to) again."""
        if fault in self.active:
            return
        rule = FAULTS[fault]
        self.active[fault] = detail
        self.unit.raise_alarm(fault.name.lower(), detail)
        batch.unit_event(self.wall(), "alarm", fault.name.lower(), int(fault), detail)
        log.warning("fault %s (%s): %s -> %s", fault.name, rule.severity.name, detail or rule.why, rule.reaction.value)
        cmd = rule.reaction.command
        if cmd is not None:
            if self.unit.command(cmd).accepted:
                self.unit.set_stop_reason(int(fault), fault.name.lower())
            self.on_command(batch)

    def clear(self, fault: Fault, batch: Batch) -> None:
        if self.active.pop(fault, None) is None:
            return
        self.unit.clear_alarm(fault.name.lower())
        batch.unit_event(self.wall(), "alarm_clear", fault.name.lower(), int(fault), "")
        log.info("fault %s cleared", fault.name)

    def event(self, fault: Fault, detail: str, batch: Batch) -> None:
        """A fault that is an event, not a standing condition: raised and cleared at once."""
        self.raise_(fault, detail, batch)
        self.clear(fault, batch)

    def blocking(self) -> bool:
        """Faults that keep the unit from restarting by itself: any with a reaction, except
        latched PLC bits a Reset clears, once their cause (our heartbeat) is back."""
        return any(FAULTS[f].reaction != Reaction.ALARM and f not in RESET_CLEARS for f in self.active)

    def no_entry(self) -> bool:
        """Some active fault closes the induct."""
        return any(FAULTS[f].no_entry for f in self.active)

    def names(self) -> list[str]:
        return sorted(f.name.lower() for f in self.active)

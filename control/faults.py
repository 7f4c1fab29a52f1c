"""The one fault table: every fault the controller knows -> what the unit does and how bad it is.

The service never decides a reaction inline; it looks the fault up here and applies the rule.
Reactions are PackML commands (Abort, Stop, Hold) or "alarm only"; ``no_entry`` also closes the
induct so no new parcel joins a belt that cannot be sorted safely. ``auto_clear`` says the
service may Unhold by itself once the condition has gone (a link that came back), instead of
waiting for an operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from plant.codes import PackMLCommand

__all__ = ["FAULTS", "Fault", "FaultRule", "Reaction", "Severity", "rule"]


class Reaction(StrEnum):
    ABORT = "abort"
    STOP = "stop"
    HOLD = "hold"
    ALARM = "alarm"

    @property
    def command(self) -> PackMLCommand | None:
        return {
            Reaction.ABORT: PackMLCommand.ABORT,
            Reaction.STOP: PackMLCommand.STOP,
            Reaction.HOLD: PackMLCommand.HOLD,
        }.get(self)


class Severity(IntEnum):
    INFO = 0
    WARNING = 1
    MAJOR = 2
    CRITICAL = 3


class Fault(IntEnum):
    """Fault codes; the number is what PackML StopReason shows."""

    ESTOP = 1
    JAM = 2
    CONVEYOR_HEARTBEAT_LOST = 3
    DIVERTER_HEARTBEAT_LOST = 4
    EVENT_SEQUENCE_GAP = 5
    DESTINATION_FULL = 6
    CAMERA_DOWN = 7
    ENCODER_FAULT = 8
    ENCODER_GLITCH = 9
    DIVERTER_FAULT = 10
    STORE_WRITE_FAILURE = 11
    HOST_WATCHDOG = 12
    UNEXPECTED_PARCEL = 13
    ARM_QUEUE_OVERFLOW = 14
    INDUCT_GAP_VIOLATION = 15
    CYCLE_OVERRUN = 16
    SCANNER_TIMEOUT = 17


@dataclass(frozen=True, slots=True)
class FaultRule:
    reaction: Reaction
    severity: Severity
    no_entry: bool
    auto_clear: bool
    why: str


R, V = Reaction, Severity
FAULTS: dict[Fault, FaultRule] = {
    Fault.ESTOP: FaultRule(R.ABORT, V.CRITICAL, True, False, "safety circuit opened: everything stops now"),
    Fault.JAM: FaultRule(
        R.STOP, V.MAJOR, True, False, "the PLC stops the belt; an operator clears the jam, then Reset and Start"
    ),
    Fault.CONVEYOR_HEARTBEAT_LOST: FaultRule(
        R.HOLD, V.MAJOR, True, True,
        "no encoder or events: nothing can be armed safely; the PLC's own watchdog holds the belt",
    ),
    Fault.DIVERTER_HEARTBEAT_LOST: FaultRule(
        R.HOLD, V.MAJOR, True, True, "arms cannot be written or confirmed; the PLC drops its arms (no fire)"
    ),
    Fault.EVENT_SEQUENCE_GAP: FaultRule(
        R.ALARM, V.MAJOR, False, False, "events were overwritten before we stored them: parcels may be unaccounted"
    ),
    Fault.DESTINATION_FULL: FaultRule(
        R.ALARM, V.WARNING, False, True, "routing sends the destination's parcels round again or to exceptions"
    ),
    Fault.CAMERA_DOWN: FaultRule(
        R.HOLD, V.MAJOR, True, True, "every parcel would be a no-read; hold instead of flooding the no-read chute"
    ),
    Fault.ENCODER_FAULT: FaultRule(
        R.ALARM, V.MAJOR, False, False,
        "the PLC saw its encoder jump: handled as a glitch (arms cancelled, positions re-anchored at the scanner)",
    ),
    Fault.ENCODER_GLITCH: FaultRule(
        R.ALARM, V.MAJOR, False, False, "parcels in flight lose their position: their arms are cancelled, they go round"
    ),
    Fault.DIVERTER_FAULT: FaultRule(
        R.ALARM, V.MAJOR, False, True, "the chute reads faulted; routing uses its fallback"
    ),
    Fault.STORE_WRITE_FAILURE: FaultRule(
        R.HOLD, V.CRITICAL, True, True, "no durable record means no ack and no decision: hold until writes succeed"
    ),
    Fault.HOST_WATCHDOG: FaultRule(
        R.HOLD, V.MAJOR, True, True, "the PLC saw our heartbeat stop and held the belt"
    ),
    Fault.UNEXPECTED_PARCEL: FaultRule(
        R.ALARM, V.CRITICAL, False, False, "a chute saw a parcel nobody sent there: possible missort"
    ),
    Fault.ARM_QUEUE_OVERFLOW: FaultRule(R.ALARM, V.MAJOR, False, True, "the diverter PLC refused arms"),
    Fault.INDUCT_GAP_VIOLATION: FaultRule(R.ALARM, V.WARNING, False, True, "parcels inducted too close together"),
    Fault.CYCLE_OVERRUN: FaultRule(R.ALARM, V.WARNING, False, True, "the control cycle is lagging"),
    Fault.SCANNER_TIMEOUT: FaultRule(
        R.ALARM, V.MAJOR, False, True,
        "scans in a row not decoded in time (camera connected but silent, or decoding overloaded): "
        "those parcels go to the no-read outcome; clears with the next decode back in time",
    ),
}


def rule(fault: Fault) -> FaultRule:
    return FAULTS[fault]

"""The one fault table: every fault the controller knows -> what the unit does and how it clears.

The service never decides a reaction inline: the supervisor (control/service/supervisor.py)
looks the fault up here and applies the rule. Reactions are PackML commands (Abort, Stop,
Hold) or "alarm only"; ``no_entry`` also closes the induct so no new parcel joins a belt that
cannot be sorted safely. ``clears`` says how the fault goes away, which decides whether the
unit may go back to Execute by itself:

- ``by_itself``: the condition goes away (a link comes back, a write succeeds); while it lasts a
  Hold fault keeps the unit held, and once it is gone the unit recovers with no operator.
- ``on_recovery``: a bit the PLC latched whose cause is already gone once we are back (the host
  watchdog: our heartbeat runs again); the recovery command itself (Unhold, or the diverter's
  reset) clears it, so it never blocks recovery.
- ``on_reset``: a bit the PLC latches until its next Reset; an alarm only, it blocks nothing.
- ``by_operator``: someone must act on the floor (release the e-stop, clear the jam), then send
  the documented commands; the unit does not restart by itself.
- ``event``: not a standing condition; raised and cleared at once, stored as an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from plant.codes import PackMLCommand

__all__ = ["FAULTS", "Clears", "Fault", "FaultRule", "Reaction", "Severity", "rule"]


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


class Clears(StrEnum):
    BY_ITSELF = "by_itself"
    ON_RECOVERY = "on_recovery"
    ON_RESET = "on_reset"
    BY_OPERATOR = "by_operator"
    EVENT = "event"


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
    SUSPECT_DIVERT = 18
    PLC_RESTARTED = 19
    ENCODER_MISMATCH = 20


@dataclass(frozen=True, slots=True)
class FaultRule:
    reaction: Reaction
    severity: Severity
    no_entry: bool
    clears: Clears
    why: str
    source: str = ""  # where it comes from (for docs/operations.md)

    @property
    def auto_clear(self) -> bool:
        """The unit goes back to Execute by itself once this fault is gone (or at once)."""
        return self.clears != Clears.BY_OPERATOR

    @property
    def holds_while_active(self) -> bool:
        """A condition the unit must not run through: held while it lasts, recovered after."""
        return self.reaction == Reaction.HOLD and self.clears == Clears.BY_ITSELF

    @property
    def blocks_recovery(self) -> bool:
        """While active, the unit stays where it is: no automatic Reset, Start, Unhold or Clear."""
        return self.reaction != Reaction.ALARM and self.clears in (Clears.BY_ITSELF, Clears.BY_OPERATOR)


R, V, K = Reaction, Severity, Clears
FAULTS: dict[Fault, FaultRule] = {
    Fault.ESTOP: FaultRule(
        R.ABORT, V.CRITICAL, True, K.BY_OPERATOR,
        "safety circuit opened: everything stops now; release it, then Clear and Reset",
        source="conveyor `faults` bit0",
    ),
    Fault.JAM: FaultRule(
        R.STOP, V.MAJOR, True, K.BY_OPERATOR, "the PLC stops the belt; an operator clears the jam, then Reset",
        source="conveyor `faults` bit1 (`jam_eye` names the eye)",
    ),
    Fault.CONVEYOR_HEARTBEAT_LOST: FaultRule(
        R.HOLD, V.MAJOR, True, K.BY_ITSELF,
        "no encoder or events: nothing can be armed safely; the PLC's own watchdog holds the belt",
        source="conveyor `plc_heartbeat` unchanged for `heartbeat_timeout_s`, or the link down",
    ),
    Fault.DIVERTER_HEARTBEAT_LOST: FaultRule(
        R.HOLD, V.MAJOR, True, K.BY_ITSELF, "arms cannot be written or confirmed; the PLC drops its arms (no fire)",
        source="diverter `plc_heartbeat` unchanged for `heartbeat_timeout_s`, or the link down",
    ),
    Fault.EVENT_SEQUENCE_GAP: FaultRule(
        R.ALARM, V.MAJOR, False, K.EVENT, "events were overwritten before we stored them: parcels may be unaccounted",
        source="a ring's seqs skipped (entries overwritten before they were stored)",
    ),
    Fault.DESTINATION_FULL: FaultRule(
        R.ALARM, V.WARNING, False, K.BY_ITSELF, "routing sends the destination's parcels round again or to exceptions",
        source="diverter chute status: none of a destination's own chutes usable",
    ),
    Fault.CAMERA_DOWN: FaultRule(
        R.HOLD, V.MAJOR, True, K.BY_ITSELF,
        "every parcel would be a no-read; hold instead of flooding the no-read chute",
        source="no camera stream for 1 s",
    ),
    Fault.ENCODER_FAULT: FaultRule(
        R.ALARM, V.MAJOR, False, K.ON_RESET,
        "the PLC saw its encoder jump (latched until its next Reset): handled as a glitch (arms cancelled, "
        "positions re-anchored at the scanner); have the encoder checked",
        source="conveyor `faults` bit3",
    ),
    Fault.ENCODER_GLITCH: FaultRule(
        R.ALARM, V.MAJOR, False, K.EVENT, "parcels in flight lose their position: their arms are cancelled, they go round",
        source="an encoder step the belt speed cannot explain (`glitch_tolerance_mm`)",
    ),
    Fault.DIVERTER_FAULT: FaultRule(
        R.ALARM, V.MAJOR, False, K.BY_ITSELF, "a chute reads faulted; routing uses its fallback",
        source="diverter `faults` bit1 / a chute's status bit2",
    ),
    Fault.STORE_WRITE_FAILURE: FaultRule(
        R.HOLD, V.CRITICAL, True, K.BY_ITSELF, "no durable record means no ack and no decision: hold until writes succeed",
        source="an event store commit failed",
    ),
    Fault.HOST_WATCHDOG: FaultRule(
        R.HOLD, V.MAJOR, True, K.ON_RECOVERY,
        "the PLC saw our heartbeat stop and held the belt (or dropped its arms); Unhold (diverter: a new reset_seq) "
        "clears it once our heartbeat runs again",
        source="conveyor `faults` bit2 / diverter `faults` bit0",
    ),
    Fault.UNEXPECTED_PARCEL: FaultRule(
        R.ALARM, V.CRITICAL, False, K.EVENT, "a chute saw a parcel nobody sent there: possible missort",
        source="a confirmation with no armed fire, in another chute, or a finished parcel seen again",
    ),
    Fault.ARM_QUEUE_OVERFLOW: FaultRule(R.ALARM, V.MAJOR, False, K.BY_ITSELF, "the diverter PLC refused arms", source="diverter `faults` bit2"),
    Fault.INDUCT_GAP_VIOLATION: FaultRule(
        R.ALARM, V.WARNING, False, K.ON_RESET, "parcels inducted too close together (latched until the next Reset)",
        source="conveyor `faults` bit4",
    ),
    Fault.CYCLE_OVERRUN: FaultRule(
        R.ALARM, V.WARNING, False, K.BY_ITSELF, "the control cycle started 10 cycles late; clears after 5 s on time",
        source="a control cycle started more than 10 periods late",
    ),
    Fault.SCANNER_TIMEOUT: FaultRule(
        R.ALARM, V.MAJOR, False, K.BY_ITSELF,
        "scans in a row not decoded in time (camera connected but silent, or decoding overloaded): "
        "those parcels go to the no-read outcome; clears with the next decode back in time",
        source="`scanner_timeout_alarm` scans in a row not decoded by their deadline",
    ),
    Fault.SUSPECT_DIVERT: FaultRule(
        R.ALARM, V.CRITICAL, False, K.EVENT,
        "a fire that was live when the encoder jumped was confirmed: the diverter may have taken another parcel; "
        "check the chute",
        source="a confirmation of a fire that was live across an encoder glitch",
    ),
    Fault.ENCODER_MISMATCH: FaultRule(
        R.HOLD, V.CRITICAL, True, K.BY_ITSELF,
        "the diverter PLC's encoder count is not the conveyor's: every fire count would be wrong, so nothing is "
        "armed and the unit holds until the two agree again",
        source="diverter `encoder_count` against the conveyor's, beyond `glitch_tolerance_mm` plus the travel "
        "between the two reads, for 0.5 s (a cycle that disagrees arms nothing)",
    ),
    Fault.PLC_RESTARTED: FaultRule(
        R.ALARM, V.MAJOR, False, K.EVENT,
        "a PLC's boot id changed: it restarted and numbers its events (conveyor: its parcels) from 1 again; "
        "parcels it no longer tracks are recorded lost (reason plc_restart) and tracked again under new ids",
        source="a PLC's boot id changed",
    ),
}


def rule(fault: Fault) -> FaultRule:
    return FAULTS[fault]

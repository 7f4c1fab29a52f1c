"""Numbers on the wire: PackML states and commands, fault bits, arm results (tag map docs).

Shared by the controller and the simulator so that a code means the same on both sides.
PackML numbers follow OPC 30050 / ISA-TR88.00.02.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


class PackMLState(IntEnum):
    CLEARING = 1
    STOPPED = 2
    STARTING = 3
    IDLE = 4
    SUSPENDED = 5
    EXECUTE = 6
    STOPPING = 7
    ABORTING = 8
    ABORTED = 9
    HOLDING = 10
    HELD = 11
    UNHOLDING = 12
    SUSPENDING = 13
    UNSUSPENDING = 14
    RESETTING = 15
    COMPLETING = 16
    COMPLETE = 17


class PackMLCommand(IntEnum):
    RESET = 1
    START = 2
    STOP = 3
    HOLD = 4
    UNHOLD = 5
    SUSPEND = 6
    UNSUSPEND = 7
    ABORT = 8
    CLEAR = 9
    COMPLETE = 10


class UnitMode(IntEnum):
    PRODUCTION = 1
    MAINTENANCE = 2
    MANUAL = 3


class CommandResult(IntEnum):
    ACCEPTED = 0
    REFUSED = 1
    UNKNOWN = 2


class ConveyorFault(IntFlag):
    ESTOP = 1 << 0
    JAM = 1 << 1
    HOST_WATCHDOG = 1 << 2
    ENCODER = 1 << 3
    GAP_VIOLATION = 1 << 4


class DiverterFault(IntFlag):
    HOST_WATCHDOG = 1 << 0
    DIVERTER = 1 << 1
    ARM_OVERFLOW = 1 << 2


class DiverterFeature(IntFlag):
    """The diverter PLC's ``features`` register: what its program offers beyond the base
    interface. A PLC that does not have the register (or reads 0 there) gets the base one."""

    ARM_BY_SLOT_SEQ = 1 << 0  # takes an arm slot once its own seq is the next one; arm.head only informs


class ArmAction(IntEnum):
    ARM = 1
    CANCEL = 2


class ArmResult(IntEnum):
    ARMED = 0
    TOO_LATE = 1
    CHUTE_UNAVAILABLE = 2
    UNKNOWN_CHUTE = 3
    QUEUE_FULL = 4
    CANCELLED = 5
    NOTHING_TO_CANCEL = 6


class ChuteStatus(IntFlag):
    FULL = 1 << 0
    DISABLED = 1 << 1
    FAULT = 1 << 2


CONFIRM_UNEXPECTED = 1 << 0

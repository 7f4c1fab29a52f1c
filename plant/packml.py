"""The PackML state model both sides of the wire follow: which command is accepted in which
state, and which state an acting state completes to (OPC 30050 / ISA-TR88.00.02).

The controller's unit (`control/packml.py`) and the simulated belt PLC (`plc_sim/plc_logic.py`)
are both built from this one table, and docs/plc-interface.md publishes it: a real PLC that
follows PackML strictly accepts exactly these commands and refuses the rest (CommandResult 1).

Source: the transitions of `PackMLBaseStateMachineType` and its sub-machines in the official
NodeSet (OPCFoundation/UA-Nodeset, `PackML/Opc.Ua.PackML.NodeSet2.xml`): e.g. `StoppedToRunning`
(cause Reset), `RunningToStopping` (cause Stop, from every state inside Running), and Hold from
Execute, Starting, Suspending, Suspended, Unholding and Unsuspending.
"""

from __future__ import annotations

from plant.codes import PackMLCommand, PackMLState

__all__ = ["ACCEPTS", "ACTING_STATES", "SC_NEXT", "TRANSITIONS", "WAIT_STATES", "next_state"]

S = PackMLState
C = PackMLCommand

# Acting states complete by themselves ("state complete", SC) when their work is done.
SC_NEXT: dict[PackMLState, PackMLState] = {
    S.RESETTING: S.IDLE,
    S.STARTING: S.EXECUTE,
    S.EXECUTE: S.COMPLETING,  # Execute's SC is "the job is done" (batch complete)
    S.COMPLETING: S.COMPLETE,
    S.HOLDING: S.HELD,
    S.UNHOLDING: S.EXECUTE,
    S.SUSPENDING: S.SUSPENDED,
    S.UNSUSPENDING: S.EXECUTE,
    S.STOPPING: S.STOPPED,
    S.ABORTING: S.ABORTED,
    S.CLEARING: S.STOPPED,
}
ACTING_STATES: frozenset[PackMLState] = frozenset(SC_NEXT) - {S.EXECUTE}
WAIT_STATES: frozenset[PackMLState] = frozenset(S) - ACTING_STATES

# Running: the sub-machine Stop leaves (everything inside Cleared except Stopped, Stopping and
# Clearing). Abort is accepted everywhere except where the unit is already aborting or aborted.
_RUNNING = frozenset(S) - {S.STOPPED, S.STOPPING, S.CLEARING, S.ABORTING, S.ABORTED}
_ABORTABLE = frozenset(S) - {S.ABORTING, S.ABORTED}
_HOLDABLE = (S.EXECUTE, S.STARTING, S.SUSPENDING, S.SUSPENDED, S.UNHOLDING, S.UNSUSPENDING)

# (command, source, destination): the whole command table.
TRANSITIONS: tuple[tuple[PackMLCommand, PackMLState, PackMLState], ...] = (
    (C.RESET, S.STOPPED, S.RESETTING),
    (C.RESET, S.COMPLETE, S.RESETTING),
    (C.START, S.IDLE, S.STARTING),
    (C.COMPLETE, S.EXECUTE, S.COMPLETING),
    *((C.HOLD, s, S.HOLDING) for s in _HOLDABLE),
    (C.UNHOLD, S.HELD, S.UNHOLDING),
    (C.SUSPEND, S.EXECUTE, S.SUSPENDING),
    (C.UNSUSPEND, S.SUSPENDED, S.UNSUSPENDING),
    (C.CLEAR, S.ABORTED, S.CLEARING),
    *((C.STOP, s, S.STOPPING) for s in sorted(_RUNNING)),
    *((C.ABORT, s, S.ABORTING) for s in sorted(_ABORTABLE)),
)

# state -> command -> destination
ACCEPTS: dict[PackMLState, dict[PackMLCommand, PackMLState]] = {s: {} for s in S}
for _cmd, _src, _dst in TRANSITIONS:
    ACCEPTS[_src][_cmd] = _dst


def next_state(state: PackMLState, command: PackMLCommand) -> PackMLState | None:
    """Where ``command`` takes a unit in ``state``; None when the standard refuses it there."""
    return ACCEPTS[state].get(command)

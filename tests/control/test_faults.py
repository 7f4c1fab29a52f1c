"""The fault table: every fault has a rule, and the dangerous ones stop parcels entering."""

from __future__ import annotations

from control.faults import FAULTS, Fault, Reaction, Severity
from plant.codes import PackMLCommand


def test_every_fault_has_a_rule() -> None:
    assert set(FAULTS) == set(Fault)


def test_reactions_map_to_packml_commands() -> None:
    assert Reaction.ABORT.command == PackMLCommand.ABORT
    assert Reaction.HOLD.command == PackMLCommand.HOLD
    assert Reaction.ALARM.command is None


def test_named_reactions() -> None:
    assert FAULTS[Fault.ESTOP].reaction == Reaction.ABORT
    assert FAULTS[Fault.JAM].reaction == Reaction.STOP
    assert FAULTS[Fault.CONVEYOR_HEARTBEAT_LOST].reaction == Reaction.HOLD
    assert FAULTS[Fault.STORE_WRITE_FAILURE].severity == Severity.CRITICAL


def test_stopping_faults_close_the_induct() -> None:
    for f, r in FAULTS.items():
        if r.reaction in (Reaction.ABORT, Reaction.STOP, Reaction.HOLD):
            assert r.no_entry, f

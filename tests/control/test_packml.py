"""PackML unit: every state against every command, modes, tags."""

from __future__ import annotations

import logging

import pytest

from control.packml import MODE_CHANGE_STATES, PackMLUnit
from plant.codes import PackMLCommand as C
from plant.codes import PackMLState as S
from plant.codes import UnitMode

STOPPABLE = set(S) - {S.STOPPED, S.STOPPING, S.CLEARING, S.ABORTING, S.ABORTED}

# The standard's table written out independently of the implementation.
EXPECTED: dict[tuple[S, C], S] = {
    (S.STOPPED, C.RESET): S.RESETTING,
    (S.COMPLETE, C.RESET): S.RESETTING,
    (S.IDLE, C.START): S.STARTING,
    (S.EXECUTE, C.COMPLETE): S.COMPLETING,
    (S.EXECUTE, C.HOLD): S.HOLDING,
    (S.SUSPENDED, C.HOLD): S.HOLDING,
    # OPC 30050 NodeSet: StartingToHolding, SuspendingToHolding, UnholdingToHolding,
    # UnsuspendingToHolding (cause Hold), besides ExecuteToHolding and SuspendedToHolding
    (S.STARTING, C.HOLD): S.HOLDING,
    (S.SUSPENDING, C.HOLD): S.HOLDING,
    (S.UNHOLDING, C.HOLD): S.HOLDING,
    (S.UNSUSPENDING, C.HOLD): S.HOLDING,
    (S.HELD, C.UNHOLD): S.UNHOLDING,
    (S.EXECUTE, C.SUSPEND): S.SUSPENDING,
    (S.SUSPENDED, C.UNSUSPEND): S.UNSUSPENDING,
    (S.ABORTED, C.CLEAR): S.CLEARING,
}
for s in STOPPABLE:
    EXPECTED[(s, C.STOP)] = S.STOPPING
for s in set(S) - {S.ABORTING, S.ABORTED}:
    EXPECTED[(s, C.ABORT)] = S.ABORTING

SC: dict[S, S] = {
    S.RESETTING: S.IDLE, S.STARTING: S.EXECUTE, S.EXECUTE: S.COMPLETING, S.COMPLETING: S.COMPLETE,
    S.HOLDING: S.HELD, S.UNHOLDING: S.EXECUTE, S.SUSPENDING: S.SUSPENDED, S.UNSUSPENDING: S.EXECUTE,
    S.STOPPING: S.STOPPED, S.ABORTING: S.ABORTED, S.CLEARING: S.STOPPED,
}


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.name)
@pytest.mark.parametrize("cmd", list(C), ids=lambda c: c.name)
def test_every_state_against_every_command(state: S, cmd: C, caplog: pytest.LogCaptureFixture) -> None:
    unit = PackMLUnit(initial=state)
    out = unit.command(cmd)
    want = EXPECTED.get((state, cmd))
    if want is None:
        assert not out.accepted
        assert unit.state == state
        assert cmd.name in out.reason and state.name in out.reason
        assert any("refused" in r.message for r in caplog.records)
    else:
        assert out.accepted, out.reason
        assert unit.state == want
        assert unit.tags.state_current == want
    assert unit.history[-1] == out


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.name)
def test_state_complete(state: S) -> None:
    unit = PackMLUnit(initial=state)
    out = unit.state_complete()
    assert out.accepted == (state in SC)
    assert unit.state == SC.get(state, state)


def test_state_numbers_are_the_standards() -> None:
    assert [s.value for s in (S.CLEARING, S.STOPPED, S.EXECUTE, S.ABORTED, S.HELD, S.COMPLETE)] == [1, 2, 6, 9, 11, 17]


def test_normal_run_cycle() -> None:
    unit = PackMLUnit()
    for step in (C.RESET, "SC", C.START, "SC", C.HOLD, "SC", C.UNHOLD, "SC", C.STOP, "SC"):
        out = unit.state_complete() if step == "SC" else unit.command(step)  # type: ignore[arg-type]
        assert out.accepted, out.reason
    assert unit.state == S.STOPPED


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.name)
def test_mode_change_only_at_rest(state: S) -> None:
    unit = PackMLUnit(initial=state)
    out = unit.set_mode(UnitMode.MAINTENANCE)
    assert out.accepted == (state in MODE_CHANGE_STATES)
    assert unit.mode == (UnitMode.MAINTENANCE if out.accepted else UnitMode.PRODUCTION)


def test_manual_mode_disables_hold_and_suspend() -> None:
    unit = PackMLUnit(mode=UnitMode.MANUAL, initial=S.EXECUTE)
    assert not unit.command(C.HOLD).accepted
    assert not unit.command(C.SUSPEND).accepted
    assert C.HOLD not in unit.allowed_commands()
    assert unit.command(C.STOP).accepted


def test_tags_counters_alarms_stop_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    unit = PackMLUnit()
    unit.count_processed(3)
    unit.count_defective("no_read")
    unit.count_defective("no_read")
    assert unit.tags.prod_processed_count == 3
    assert unit.tags.prod_defective_count["no_read"] == 2
    assert unit.raise_alarm("jam", "jam at eye 2")
    assert not unit.raise_alarm("jam", "jam at eye 2")
    assert unit.clear_alarm("jam") and not unit.clear_alarm("jam")
    unit.set_stop_reason(2, "jam")
    unit.set_stop_reason(3, "heartbeat")
    assert unit.tags.stop_reason == 2

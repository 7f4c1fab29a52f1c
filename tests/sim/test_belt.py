"""The simulated belt as a PackML unit, alone: every state x every command, acting states, causes.

The expected command table is written out here by hand from OPC 30050 (the PackML NodeSet's
transitions), not imported from plant.packml, so that a mistake there shows up here.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plant.codes import CommandResult, ConveyorFault
from plant.codes import PackMLCommand as C
from plant.codes import PackMLState as S
from plc_sim.belt import Belt, BeltSettings, Causes, Conformance

STRICT = BeltSettings()
LENIENT = BeltSettings.of("reset_clears_all")

# state -> {command accepted there: state it goes to}; every other command is refused.
STRICT_TABLE: dict[S, dict[C, S]] = {
    S.CLEARING: {C.ABORT: S.ABORTING},
    S.STOPPED: {C.RESET: S.RESETTING, C.ABORT: S.ABORTING},
    S.STARTING: {C.HOLD: S.HOLDING, C.STOP: S.STOPPING, C.ABORT: S.ABORTING},
    S.IDLE: {C.START: S.STARTING, C.STOP: S.STOPPING, C.ABORT: S.ABORTING},
    S.SUSPENDED: {C.UNSUSPEND: S.UNSUSPENDING, C.HOLD: S.HOLDING, C.STOP: S.STOPPING, C.ABORT: S.ABORTING},
    S.EXECUTE: {
        C.HOLD: S.HOLDING, C.SUSPEND: S.SUSPENDING, C.COMPLETE: S.COMPLETING, C.STOP: S.STOPPING,
        C.ABORT: S.ABORTING,
    },
    S.STOPPING: {C.ABORT: S.ABORTING},
    S.ABORTING: {},
    S.ABORTED: {C.CLEAR: S.CLEARING},
    S.HOLDING: {C.STOP: S.STOPPING, C.ABORT: S.ABORTING},
    S.HELD: {C.UNHOLD: S.UNHOLDING, C.STOP: S.STOPPING, C.ABORT: S.ABORTING},
    S.UNHOLDING: {C.HOLD: S.HOLDING, C.STOP: S.STOPPING, C.ABORT: S.ABORTING},
    S.SUSPENDING: {C.HOLD: S.HOLDING, C.STOP: S.STOPPING, C.ABORT: S.ABORTING},
    S.UNSUSPENDING: {C.HOLD: S.HOLDING, C.STOP: S.STOPPING, C.ABORT: S.ABORTING},
    S.RESETTING: {C.STOP: S.STOPPING, C.ABORT: S.ABORTING},
    S.COMPLETING: {C.STOP: S.STOPPING, C.ABORT: S.ABORTING},
    S.COMPLETE: {C.RESET: S.RESETTING, C.STOP: S.STOPPING, C.ABORT: S.ABORTING},
}  # fmt: skip

# acting state -> where it completes by itself
COMPLETES_TO = {
    S.RESETTING: S.IDLE, S.STARTING: S.EXECUTE, S.HOLDING: S.HELD, S.UNHOLDING: S.EXECUTE,
    S.STOPPING: S.STOPPED, S.ABORTING: S.ABORTED, S.CLEARING: S.STOPPED, S.SUSPENDING: S.SUSPENDED,
    S.UNSUSPENDING: S.EXECUTE, S.COMPLETING: S.COMPLETE,
}  # fmt: skip
MOVING = {S.EXECUTE, S.COMPLETING, S.SUSPENDING, S.SUSPENDED, S.UNSUSPENDING}
LENIENT_RESET = {S.HELD, S.ABORTED, S.IDLE, S.STOPPED, S.COMPLETE}

ALL = [(s, c) for s in S for c in C]


def test_the_table_here_covers_every_state() -> None:
    assert set(STRICT_TABLE) == set(S)


@pytest.mark.parametrize(("state", "cmd"), ALL, ids=[f"{s.name}-{c.name}" for s, c in ALL])
def test_strict_belt_accepts_exactly_the_standard_table(state: S, cmd: C) -> None:
    belt = Belt(STRICT, state, now=5.0)
    belt.faults = ConveyorFault.ENCODER | ConveyorFault.GAP_VIOLATION  # alarms only: block nothing
    result = belt.command(cmd, 5.0, Causes())
    dst = STRICT_TABLE[state].get(cmd)
    if dst is None:
        assert result == CommandResult.REFUSED and belt.state == state
        assert belt.faults == ConveyorFault.ENCODER | ConveyorFault.GAP_VIOLATION  # a refusal changes nothing
    else:
        assert result == CommandResult.ACCEPTED and belt.state == dst and belt.entered_s == 5.0
        if cmd == C.RESET:
            assert belt.faults == 0  # latched faults clear as Resetting is entered


@pytest.mark.parametrize(("state", "cmd"), ALL, ids=[f"{s.name}-{c.name}" for s, c in ALL])
def test_lenient_belt_adds_reset_from_every_non_running_state(state: S, cmd: C) -> None:
    belt = Belt(LENIENT, state)
    belt.faults = ConveyorFault.HOST_WATCHDOG | ConveyorFault.ENCODER
    result = belt.command(cmd, 1.0, Causes())
    if cmd == C.RESET and state in LENIENT_RESET:
        assert result == CommandResult.ACCEPTED and belt.state == S.IDLE and belt.faults == 0
    elif cmd == C.UNHOLD and state == S.HELD:
        assert result == CommandResult.ACCEPTED and belt.state == S.UNHOLDING
    else:
        assert (result == CommandResult.ACCEPTED) == (cmd in STRICT_TABLE[state])


@pytest.mark.parametrize("cmd", [0, 11, 12, 99, -1, 2**31 - 1])
def test_an_unknown_command_number_is_result_2_and_changes_nothing(cmd: int) -> None:
    for state in S:
        belt = Belt(STRICT, state)
        assert belt.command(cmd, 0.0, Causes()) == CommandResult.UNKNOWN and belt.state == state


def test_clear_and_reset_are_refused_while_the_estop_is_pressed() -> None:
    pressed = Causes(estop=True)
    for state, cmd in ((S.ABORTED, C.CLEAR), (S.STOPPED, C.RESET), (S.COMPLETE, C.RESET)):
        belt = Belt(STRICT, state)
        assert belt.command(cmd, 0.0, pressed) == CommandResult.REFUSED and belt.state == state
        assert belt.command(cmd, 0.0, Causes()) == CommandResult.ACCEPTED
    for state in LENIENT_RESET:
        belt = Belt(LENIENT, state)
        assert belt.command(C.RESET, 0.0, pressed) == CommandResult.REFUSED and belt.state == state


@pytest.mark.parametrize("fault", [ConveyorFault.ESTOP, ConveyorFault.JAM])
def test_start_and_unhold_are_refused_while_an_estop_or_jam_fault_is_latched(fault: ConveyorFault) -> None:
    for state, cmd in ((S.IDLE, C.START), (S.HELD, C.UNHOLD)):
        belt = Belt(STRICT, state)
        belt.faults = fault
        assert belt.command(cmd, 0.0, Causes()) == CommandResult.REFUSED and belt.state == state
        belt.faults = ConveyorFault.ENCODER
        assert belt.command(cmd, 0.0, Causes()) == CommandResult.ACCEPTED


def test_unhold_is_refused_while_the_host_heartbeat_is_stale_and_then_clears_the_watchdog_bit() -> None:
    belt = Belt(STRICT, S.HELD)
    belt.faults = ConveyorFault.HOST_WATCHDOG | ConveyorFault.GAP_VIOLATION
    assert belt.command(C.UNHOLD, 0.0, Causes(host_stale=True)) == CommandResult.REFUSED
    assert belt.state == S.HELD and belt.faults & ConveyorFault.HOST_WATCHDOG
    assert belt.command(C.UNHOLD, 0.0, Causes()) == CommandResult.ACCEPTED
    assert belt.state == S.UNHOLDING and belt.faults == ConveyorFault.GAP_VIOLATION


@pytest.mark.parametrize("state", sorted(COMPLETES_TO))
def test_an_acting_state_lasts_acting_s_then_completes(state: S) -> None:
    belt = Belt(BeltSettings(acting_s=0.25), state, now=10.0)
    belt.tick(10.0, Causes())
    belt.tick(10.24, Causes())
    assert belt.state == state
    belt.tick(10.25, Causes())
    assert belt.state == COMPLETES_TO[state] and belt.entered_s == 10.25
    belt.tick(99.0, Causes())  # a wait state (or Execute) stays where it is
    assert belt.state == COMPLETES_TO[state]


def test_wait_states_never_complete_by_themselves() -> None:
    for state in set(S) - set(COMPLETES_TO):
        belt = Belt(STRICT, state)
        belt.tick(1e6, Causes())
        assert belt.state == state


def test_the_lenient_belt_completes_acting_states_in_the_scan_that_entered_them() -> None:
    belt = Belt(LENIENT, S.STOPPED)
    assert belt.command(C.RESET, 1.0, Causes()) == CommandResult.ACCEPTED and belt.state == S.IDLE
    belt.command(C.START, 1.0, Causes())
    belt.tick(1.0, Causes())
    assert belt.state == S.EXECUTE
    assert LENIENT.packml == Conformance.RESET_CLEARS_ALL and LENIENT.acting_s == 0.0
    assert BeltSettings.of("reset_clears_all", 50).acting_s == 0.05
    assert BeltSettings.of().acting_s == 0.1


def test_the_belt_moves_only_in_execute_completing_and_the_suspend_states() -> None:
    for state in S:
        assert Belt(STRICT, state).moving == (state in MOVING)


def test_an_estop_aborts_from_every_state_and_latches_bit0() -> None:
    for state in S:
        belt = Belt(STRICT, state)
        belt.react(1.0, Causes(estop=True))
        assert belt.faults & ConveyorFault.ESTOP
        assert belt.state == (state if state in (S.ABORTING, S.ABORTED) else S.ABORTING)
        assert not belt.moving


def test_a_jam_stops_the_belt_from_every_running_state_and_latches_bit1() -> None:
    for state in S:
        belt = Belt(STRICT, state)
        belt.react(1.0, Causes(jam=True))
        assert belt.faults & ConveyorFault.JAM
        stoppable = C.STOP in STRICT_TABLE[state]
        assert belt.state == (S.STOPPING if stoppable else state)


def test_a_stale_host_holds_a_running_belt_and_latches_bit2() -> None:
    watched = MOVING | {S.STARTING, S.UNHOLDING}
    for state in S:
        belt = Belt(STRICT, state)
        belt.react(1.0, Causes(host_stale=True))
        if state not in watched:
            assert belt.state == state and not belt.faults
        elif state == S.COMPLETING:  # moving, but the standard has no Hold there: it stops
            assert belt.state == S.STOPPING and belt.faults == ConveyorFault.HOST_WATCHDOG
        else:
            assert belt.state == S.HOLDING and belt.faults == ConveyorFault.HOST_WATCHDOG
    assert Belt(STRICT, S.EXECUTE).watchdog_trips == 0


causes = st.builds(Causes, estop=st.booleans(), jam=st.booleans(), host_stale=st.booleans())
latched = st.sampled_from([0, 1, 2, 4, 8, 16, 3, 5, 6, 31]).map(ConveyorFault)


@given(
    state=st.sampled_from(list(S)),
    cmd=st.one_of(st.sampled_from(list(C)), st.integers(-5, 20)),
    c=causes,
    faults=latched,
    lenient=st.booleans(),
)
def test_a_command_is_accepted_only_by_the_table_and_without_a_blocking_cause(
    state: S, cmd: int, c: Causes, faults: ConveyorFault, lenient: bool
) -> None:
    belt = Belt(LENIENT if lenient else STRICT, state, now=0.0)
    belt.faults = faults
    result = belt.command(cmd, 1.0, c)
    if cmd not in set(C):
        assert result == CommandResult.UNKNOWN
    else:
        cmd = C(cmd)
        in_table = cmd in STRICT_TABLE[state] or (lenient and cmd == C.RESET and state in LENIENT_RESET)
        blocked = (
            (cmd in (C.CLEAR, C.RESET) and c.estop)
            or (cmd in (C.START, C.UNHOLD) and bool(faults & (ConveyorFault.ESTOP | ConveyorFault.JAM)))
            or (cmd == C.UNHOLD and c.host_stale)
        )
        assert result == (CommandResult.ACCEPTED if in_table and not blocked else CommandResult.REFUSED)
    if result != CommandResult.ACCEPTED:
        assert belt.state == state and belt.faults == faults and belt.entered_s == 0.0


@given(
    start=st.sampled_from(list(S)),
    steps=st.lists(st.tuples(st.sampled_from(list(C)), causes, st.floats(0.0, 0.3)), max_size=30),
)
def test_the_belt_never_moves_while_a_stop_cause_is_present(
    start: S, steps: list[tuple[C, Causes, float]]
) -> None:
    belt = Belt(STRICT, start)
    now = 0.0
    for cmd, c, dt in steps:
        now += dt
        belt.command(cmd, now, c)
        belt.tick(now, c)
        if c.estop or c.jam:
            assert not belt.moving
        if c.estop:
            assert belt.state in (S.ABORTING, S.ABORTED)

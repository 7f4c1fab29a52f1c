"""The supervisor against a belt PLC that follows PackML strictly, with no I/O and no sleeps.

The belt here is written from the standard (OPC 30050 / ISA-TR88), independently of
`plant/packml.py` and of the simulator: which command each state accepts, acting states that
take a while, faults that latch, and the extra refusals a strict PLC makes while a cause is still
present. Every scenario runs the supervisor cycle by cycle (10 ms) on a virtual clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from control.faults import Fault
from control.service.supervisor import (
    Actions,
    BeltReading,
    Observed,
    OperatorCommand,
    Supervisor,
    SupervisorSettings,
)
from plant.codes import PackMLCommand as C
from plant.codes import PackMLState as S

CYCLE = 0.01
RUNNING = {S.RESETTING, S.IDLE, S.STARTING, S.EXECUTE, S.COMPLETING, S.COMPLETE, S.HOLDING, S.HELD,
           S.UNHOLDING, S.SUSPENDING, S.SUSPENDED, S.UNSUSPENDING}
# The command table, written out from the standard: state -> command -> acting state entered.
ACCEPT: dict[S, dict[C, S]] = {s: {C.ABORT: S.ABORTING} for s in S if s not in (S.ABORTING, S.ABORTED)}
for _s in RUNNING:
    ACCEPT[_s][C.STOP] = S.STOPPING
ACCEPT[S.ABORTED] = {C.CLEAR: S.CLEARING}
ACCEPT[S.STOPPED][C.RESET] = S.RESETTING
ACCEPT[S.COMPLETE][C.RESET] = S.RESETTING
ACCEPT[S.IDLE][C.START] = S.STARTING
ACCEPT[S.HELD][C.UNHOLD] = S.UNHOLDING
ACCEPT[S.SUSPENDED][C.UNSUSPEND] = S.UNSUSPENDING
ACCEPT[S.EXECUTE][C.SUSPEND] = S.SUSPENDING
ACCEPT[S.EXECUTE][C.COMPLETE] = S.COMPLETING
for _s in (S.EXECUTE, S.STARTING, S.SUSPENDING, S.SUSPENDED, S.UNHOLDING, S.UNSUSPENDING):
    ACCEPT[_s][C.HOLD] = S.HOLDING
DONE: dict[S, S] = {
    S.RESETTING: S.IDLE, S.STARTING: S.EXECUTE, S.COMPLETING: S.COMPLETE, S.HOLDING: S.HELD,
    S.UNHOLDING: S.EXECUTE, S.SUSPENDING: S.SUSPENDED, S.UNSUSPENDING: S.EXECUTE, S.STOPPING: S.STOPPED,
    S.ABORTING: S.ABORTED, S.CLEARING: S.STOPPED,
}


@dataclass
class StrictBelt:
    """A belt PLC: executes a command once per new seq, acting states take ``acting_s``."""

    state: S = S.STOPPED
    acting_s: float = 0.3
    estop_pressed: bool = False
    estop_latched: bool = False
    jam_latched: bool = False
    watchdog_latched: bool = False
    host_alive: bool = True  # the host heartbeat is changing (the watchdog condition is gone)
    reset_clears_all: bool = False  # the lenient PLC many conveyors have
    refuse_until: float = -1.0  # a cause still latched for a while: everything refused until then
    ignore_writes: bool = False  # a PLC that never answers (link half dead)
    ack: int = 0
    result: int = 0
    _entered: float = 0.0
    commands: list[tuple[float, C, int]] = field(default_factory=list)

    def command(self, now: float, cmd: C, seq: int) -> None:
        self.commands.append((now, cmd, seq))
        if self.ignore_writes or seq == self.ack:
            return
        self.ack, self.result = seq, 1
        if now < self.refuse_until:
            return
        if self.reset_clears_all and cmd == C.RESET and self.state in (S.HELD, S.ABORTED, S.IDLE, S.STOPPED, S.COMPLETE):
            if not self.estop_pressed:
                self._clear_faults()
                self._go(S.IDLE, now)
                self.result = 0
            return
        dst = ACCEPT[self.state].get(cmd)
        if dst is None:
            return
        if cmd == C.CLEAR and self.estop_pressed:
            return
        if cmd in (C.START, C.UNHOLD) and (self.estop_latched or self.jam_latched):
            return
        if cmd == C.UNHOLD and not self.host_alive:
            return
        if cmd == C.RESET:
            self._clear_faults()
        if cmd == C.UNHOLD:
            self.watchdog_latched = False
        self._go(dst, now)
        self.result = 0

    def _clear_faults(self) -> None:
        self.estop_latched = self.estop_pressed
        self.jam_latched = self.watchdog_latched = False

    def _go(self, state: S, now: float) -> None:
        self.state, self._entered = state, now

    def scan(self, now: float) -> BeltReading:
        if self.state in DONE and now - self._entered >= self.acting_s:
            self._go(DONE[self.state], now)
        return BeltReading(int(self.state), self.ack, self.result)

    def faults(self) -> set[Fault]:
        out = set()
        if self.estop_latched:
            out.add(Fault.ESTOP)
        if self.jam_latched:
            out.add(Fault.JAM)
        if self.watchdog_latched:
            out.add(Fault.HOST_WATCHDOG)
        return out


@dataclass
class Run:
    """The supervisor and a belt, cycle by cycle on a virtual clock."""

    belt: StrictBelt
    sup: Supervisor = field(default_factory=Supervisor)
    now: float = 0.0
    extra: set[Fault] = field(default_factory=set)  # controller-side faults (camera down...)
    link_up: bool = True
    operator: list[str] = field(default_factory=list)
    actions: list[Actions] = field(default_factory=list)
    _active: set[Fault] = field(default_factory=set)
    _next_op: int = 1

    def cycle(self) -> Actions:
        self.now += CYCLE
        reading = self.belt.scan(self.now) if self.link_up else None
        active = self.belt.faults() | self.extra if self.link_up else self._active | self.extra
        raised = tuple(sorted(active - self._active))
        self._active = active
        ops = tuple(OperatorCommand(self._next_op + i, n) for i, n in enumerate(self.operator))
        self._next_op += len(ops)
        self.operator.clear()
        a = self.sup.step(Observed(self.now, reading, frozenset(active), raised, operator=ops))
        if a.belt_command is not None and self.link_up:
            self.belt.command(self.now, *a.belt_command)
        self.actions.append(a)
        return a

    def until(self, cond: object, within_s: float) -> float:
        """Cycle until ``cond()`` holds; the virtual time it took (fails after ``within_s``)."""
        t0 = self.now
        while not cond():  # type: ignore[operator]
            assert self.now - t0 < within_s, (f"not within {within_s} s: unit {self.sup.unit.state.name}, "
                                              f"belt {self.belt.state.name}, commands {self.belt.commands[-5:]}")
            self.cycle()
        return self.now - t0

    def run_for(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.cycle()

    def executing(self) -> bool:
        return self.sup.unit.state == S.EXECUTE and self.belt.state == S.EXECUTE

    def events(self, kind: str | None = None) -> list[tuple[str, str, int, str]]:
        return [e for a in self.actions for e in a.events if kind is None or e[0] == kind]

    def notes(self) -> list[str]:
        return [n for a in self.actions for _, n in a.notes]


# ---------------------------------------------------------------------------------------- restarts
@pytest.mark.parametrize("belt_state", list(S), ids=lambda s: s.name)
@pytest.mark.parametrize("watchdog", [False, True], ids=["", "watchdog-latched"])
def test_from_any_belt_state_the_unit_reaches_execute_by_itself(belt_state: S, watchdog: bool) -> None:
    """A controller starting (or restarting) finds the belt in any state, maybe with the host
    watchdog latched: it reaches Execute with no operator, using only commands the state accepts."""
    belt = StrictBelt(state=belt_state, watchdog_latched=watchdog)
    r = Run(belt)
    took = r.until(r.executing, within_s=5.0)
    assert took < 5.0
    sent = [c for _, c, _ in belt.commands]
    refused = [e for e in r.events() if e[0] == "belt_refused"]
    assert refused == [], (sent, refused)  # never a command the belt's state refuses
    if belt_state == S.HELD:
        assert sent == [C.UNHOLD]  # a Held belt is unheld, not reset


def test_held_with_the_host_watchdog_still_stale_is_retried_then_unheld() -> None:
    belt = StrictBelt(state=S.HELD, watchdog_latched=True, host_alive=False)
    r = Run(belt)
    r.run_for(1.0)
    assert belt.state == S.HELD and r.sup.unit.state == S.HELD
    assert 2 <= len(belt.commands) <= 6  # retried with backoff, not every cycle (100 cycles)
    belt.host_alive = True  # our heartbeat reaches the PLC again
    assert r.until(r.executing, within_s=2.6) <= 2.6  # the next retry (backoff at most 2 s) succeeds
    assert len(r.events("belt_refused")) == 1 and len(r.events("belt_accepted")) == 1


@pytest.mark.parametrize("lasting_s", [0.05, 1.0, 3.0])
def test_a_refused_reset_is_retried_never_abandoned(lasting_s: float) -> None:
    """The first Reset meets a fault still latched for a moment (result 1): retried with backoff."""
    belt = StrictBelt(state=S.STOPPED, refuse_until=lasting_s)
    r = Run(belt)
    took = r.until(r.executing, within_s=lasting_s + 3.0)
    assert took <= lasting_s + 2.0 + 2 * belt.acting_s + 0.1
    assert len(belt.commands) <= 10  # a handful of retries, not one per cycle


def test_a_belt_that_refuses_everything_does_not_flood_the_log_or_the_store() -> None:
    belt = StrictBelt(state=S.STOPPED, refuse_until=float("inf"))
    r = Run(belt)
    r.run_for(600.0)  # ten minutes
    assert r.sup.unit.state == S.STOPPED
    assert 250 <= len(belt.commands) <= 320  # one try every 2 s, never every cycle
    assert len(r.events()) <= 12 and len(r.notes()) <= 12  # the streak noted, then once a minute


def test_a_command_never_acknowledged_is_sent_again_with_a_new_seq() -> None:
    belt = StrictBelt(state=S.STOPPED, ignore_writes=True)
    r = Run(belt)
    r.run_for(5.0)
    seqs = [s for _, _, s in belt.commands]
    assert len(seqs) >= 2 and len(set(seqs)) == len(seqs)  # each resend is a new seq
    assert all(b - a >= 2.0 - 1e-9 for a, b in zip([t for t, _, _ in belt.commands], [t for t, _, _ in belt.commands][1:],
                                                   strict=False))
    belt.ignore_writes = False
    assert r.until(r.executing, within_s=6.0)


def test_a_belt_that_restarts_in_stopped_is_reset_and_started() -> None:
    belt = StrictBelt(state=S.EXECUTE)
    r = Run(belt)
    r.run_for(0.1)
    assert r.executing()
    belt.state, belt.ack = S.STOPPED, 0  # power cycle: Stopped, its command ack from 0
    assert r.until(r.executing, within_s=2.0)
    assert [c for _, c, _ in belt.commands][-2:] == [C.RESET, C.START]
    resync = [e for e in r.events("state") if e[3].startswith("RESYNC")]
    assert [e[1] for e in resync] == ["EXECUTE", "STOPPED"]  # adopted at start, then the restart


def test_lenient_plc_that_resets_from_anywhere_still_recovers() -> None:
    belt = StrictBelt(state=S.HELD, watchdog_latched=True, reset_clears_all=True)
    r = Run(belt)
    assert r.until(r.executing, within_s=2.0)


def test_an_unknown_belt_state_number_gets_no_command_and_one_note() -> None:
    r = Run(StrictBelt())
    for _ in range(100):
        r.now += CYCLE
        r.sup.step(Observed(r.now, BeltReading(0, 0, 0)))
    assert r.sup.pending is None
    a = r.sup.step(Observed(r.now + CYCLE, BeltReading(0, 0, 0)))
    assert a.belt_command is None and a.notes == []


# ---------------------------------------------------------------------------------------- faults
def test_a_controller_hold_fault_holds_and_recovers_when_it_clears() -> None:
    belt = StrictBelt(state=S.EXECUTE)
    r = Run(belt)
    r.until(r.executing, within_s=1.0)
    r.extra.add(Fault.CAMERA_DOWN)
    r.until(lambda: belt.state == S.HELD and r.sup.unit.state == S.HELD, within_s=1.0)
    r.run_for(3.0)
    assert belt.state == S.HELD  # held for as long as the fault lasts
    r.extra.clear()
    assert r.until(r.executing, within_s=1.0) <= 1.0
    assert r.sup.unit.tags.stop_reason == 0


def test_link_down_holds_the_unit_and_a_belt_held_by_its_watchdog_is_unheld_after() -> None:
    belt = StrictBelt(state=S.EXECUTE)
    r = Run(belt)
    r.until(r.executing, within_s=1.0)
    r.link_up = False
    r.extra.add(Fault.CONVEYOR_HEARTBEAT_LOST)
    r.run_for(2.0)
    assert r.sup.unit.state == S.HOLDING  # held at once; the belt command waits for the link
    belt.state, belt.watchdog_latched = S.HELD, True  # the PLC held itself meanwhile
    r.link_up = True
    r.extra.clear()
    assert r.until(r.executing, within_s=2.0) < 2.0


def test_jam_waits_for_the_operator_reset() -> None:
    belt = StrictBelt(state=S.EXECUTE)
    r = Run(belt)
    r.until(r.executing, within_s=1.0)
    belt.state, belt.jam_latched = S.STOPPED, True
    r.run_for(30.0)
    assert r.sup.unit.state == S.STOPPED and belt.state == S.STOPPED  # no automatic reset over a jam
    assert [c for _, c, _ in belt.commands] == []
    r.operator.append("reset")
    assert r.until(r.executing, within_s=2.0)
    assert r.actions[-1] is not None
    results = [res for a in r.actions for _, res in a.operator_results]
    assert results == ["accepted"]


def test_estop_needs_release_clear_and_reset() -> None:
    belt = StrictBelt(state=S.EXECUTE)
    r = Run(belt)
    r.until(r.executing, within_s=1.0)
    belt.state, belt.estop_pressed, belt.estop_latched = S.ABORTED, True, True
    r.run_for(5.0)
    assert r.sup.unit.state == S.ABORTED and belt.commands == []
    r.operator.append("clear")  # still pressed: the PLC refuses
    r.run_for(1.0)
    assert belt.state == S.ABORTED and r.sup.unit.state == S.ABORTED
    belt.estop_pressed = False
    r.run_for(5.0)
    assert belt.state == S.ABORTED  # the operator's Clear is not repeated by itself
    r.operator.append("clear")
    r.until(lambda: belt.state == S.STOPPED and r.sup.unit.state == S.STOPPED, within_s=2.0)
    r.run_for(3.0)
    assert belt.state == S.STOPPED  # e-stop latched until Reset: still no automatic Reset
    r.operator.append("reset")
    assert r.until(r.executing, within_s=2.0)


# ---------------------------------------------------------------------------------------- operator
def test_operator_stop_keeps_the_unit_stopped_until_reset() -> None:
    belt = StrictBelt(state=S.EXECUTE)
    r = Run(belt)
    r.until(r.executing, within_s=1.0)
    r.operator.append("stop")
    r.until(lambda: belt.state == S.STOPPED, within_s=1.0)
    n = len(belt.commands)
    r.run_for(60.0)
    assert belt.state == S.STOPPED and len(belt.commands) == n
    r.operator.append("reset")
    assert r.until(r.executing, within_s=2.0)


def test_operator_hold_keeps_it_held_until_unhold() -> None:
    belt = StrictBelt(state=S.EXECUTE)
    r = Run(belt)
    r.until(r.executing, within_s=1.0)
    r.operator.append("hold")
    r.run_for(10.0)
    assert belt.state == S.HELD and r.sup.unit.state == S.HELD
    r.operator.append("unhold")
    assert r.until(r.executing, within_s=1.0)


def test_operator_commands_the_state_refuses_say_why() -> None:
    belt = StrictBelt(state=S.EXECUTE)
    r = Run(belt)
    r.until(r.executing, within_s=1.0)
    r.operator += ["reset", "frobnicate"]
    r.cycle()
    results = [res for a in r.actions for _, res in a.operator_results]
    assert results[0].startswith("refused: RESET not allowed in EXECUTE")
    assert results[1] == "unknown command 'frobnicate'"
    assert r.executing()


def test_diverter_reset_is_written_at_most_once_a_second_while_latched() -> None:
    sup = Supervisor(SupervisorSettings(), diverter_reset_seq=41)
    sent = []
    for k in range(300):
        a = sup.step(Observed(k * CYCLE, None, diverter_latched=True, diverter_seen=True))
        if a.diverter_reset is not None:
            sent.append(a.diverter_reset)
    assert sent == [42, 43, 44]  # 3 s, continuing from the PLC's register


def test_a_plc_that_answers_unknown_command_is_treated_like_a_refusal() -> None:
    """Result 2 (a PLC that does not know the command number): retried with backoff like a
    refusal, recorded once, never written every cycle."""
    belt = StrictBelt(state=S.STOPPED)
    r = Run(belt)
    real = belt.command

    def unknown(now: float, cmd: C, seq: int) -> None:
        real(now, cmd, seq)
        if cmd == C.RESET and now < 3.0:
            belt.state, belt.result = S.STOPPED, 2

    belt.command = unknown  # type: ignore[method-assign]
    r.run_for(3.0)
    refused = r.events("belt_refused")
    assert len(refused) == 1 and "result 2" in refused[0][3]
    assert 3 <= len(belt.commands) <= 8
    assert r.until(r.executing, within_s=3.0) is not None

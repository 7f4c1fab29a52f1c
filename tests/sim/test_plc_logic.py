"""The PLC programs and the fault schedule, without servers: commands, watchdogs, latched faults."""

from __future__ import annotations

from plant.codes import ArmAction, ArmResult, CommandResult, ConveyorFault, DiverterFault
from plant.codes import PackMLCommand as C
from plant.codes import PackMLState as S
from plc_sim.faults import Faults
from plc_sim.plc_logic import ConveyorInputs, ConveyorProgram, DiverterProgram
from plc_sim.scenario import FaultSpec

from .conftest import WorldFactory


class Host:
    """Feeds a ConveyorProgram the way the I/O layer does, one scan at a time."""

    def __init__(self, prog: ConveyorProgram) -> None:
        self.prog = prog
        self.inp = ConveyorInputs(watchdog_ms=500)
        self.now = 0.0

    def scan(self, dt: float = 0.01, beat: bool = True) -> None:
        if beat:
            self.inp.host_heartbeat += 1
        self.now += dt
        self.prog.scan(self.now, self.inp)

    def command(self, cmd: int) -> CommandResult:
        self.inp.belt_command = cmd
        self.inp.belt_command_seq += 1
        self.scan()
        assert self.prog.command_ack == self.inp.belt_command_seq
        return self.prog.command_result


def test_belt_commands_follow_the_state_model_and_run_once_per_seq(make_world: WorldFactory) -> None:
    w = make_world(count=0, running=False)
    h = Host(ConveyorProgram(w))
    assert h.command(C.START) == CommandResult.REFUSED and h.prog.state == S.STOPPED
    assert h.command(C.RESET) == CommandResult.ACCEPTED and h.prog.state == S.IDLE
    assert h.command(C.START) == CommandResult.ACCEPTED and h.prog.state == S.EXECUTE and w.running
    assert h.command(99) == CommandResult.UNKNOWN
    h.inp.belt_command = C.STOP  # same seq as before: not executed
    h.scan()
    assert h.prog.state == S.EXECUTE
    assert h.command(C.HOLD) == CommandResult.ACCEPTED and not w.running
    assert h.command(C.UNHOLD) == CommandResult.ACCEPTED and w.running
    assert h.command(C.ABORT) == CommandResult.ACCEPTED and h.prog.state == S.ABORTED
    assert h.command(C.RESET) == CommandResult.REFUSED
    assert h.command(C.CLEAR) == CommandResult.ACCEPTED and h.prog.state == S.STOPPED


def test_host_watchdog_holds_the_belt(make_world: WorldFactory) -> None:
    w = make_world(count=0)
    h = Host(ConveyorProgram(w))
    h.command(C.RESET)
    h.command(C.START)
    for _ in range(100):
        h.scan()
    assert h.prog.state == S.EXECUTE
    for _ in range(60):  # 0.6 s without a heartbeat change, watchdog 0.5 s
        h.scan(beat=False)
    assert h.prog.state == S.HELD and h.prog.faults & ConveyorFault.HOST_WATCHDOG and not w.running
    assert h.command(C.UNHOLD) == CommandResult.ACCEPTED and w.running
    assert not h.prog.faults & ConveyorFault.HOST_WATCHDOG


def test_jam_and_estop_stop_the_belt_and_latch_until_reset(make_world: WorldFactory) -> None:
    w = make_world(count=1)
    prog = ConveyorProgram(w)
    h = Host(prog)
    faults = Faults(w, prog)
    h.command(C.RESET)
    h.command(C.START)
    while w.parcels_on_belt() == 0:
        w.step(0.05)
    faults.jam("induct")
    h.scan()
    assert prog.state == S.STOPPED and prog.faults & ConveyorFault.JAM and not w.running
    assert h.command(C.START) == CommandResult.REFUSED
    assert h.command(C.RESET) == CommandResult.ACCEPTED and prog.faults == 0
    assert w.ground_truth().state[0] == 2  # the jammed parcel was taken off: lost, and known
    faults.estop(True)
    assert prog.state == S.ABORTED and prog.faults & ConveyorFault.ESTOP
    assert h.command(C.CLEAR) == CommandResult.REFUSED  # still pressed
    faults.estop(False)
    assert h.command(C.CLEAR) == CommandResult.ACCEPTED
    assert h.command(C.RESET) == CommandResult.ACCEPTED and prog.state == S.IDLE


def test_diverter_watchdog_drops_arms_and_refuses_new_ones(make_world: WorldFactory) -> None:
    w = make_world(count=0)
    d = DiverterProgram(w)
    d.scan(0.0, 1, 0)
    d.scan(0.1, 2, 0)
    assert d.command(0.1, ArmAction.ARM, 3, 9, w.encoder + 50_000) == ArmResult.ARMED
    assert d.command(0.1, 7, 3, 9, 0) == ArmResult.UNKNOWN_CHUTE  # unknown action
    d.scan(1.5, 2, 0)  # no heartbeat change for 1.4 s
    assert w.armed == 0 and d.dropped_arms == 1 and d.faults & DiverterFault.HOST_WATCHDOG
    assert d.command(1.5, ArmAction.ARM, 3, 10, w.encoder + 50_000) == ArmResult.CHUTE_UNAVAILABLE
    d.scan(1.6, 3, 0)
    assert d.command(1.6, ArmAction.ARM, 3, 10, w.encoder + 50_000) == ArmResult.ARMED
    d.scan(1.7, 4, 1)  # a new reset_seq clears the latched fault
    assert d.faults == 0


def test_scheduled_faults_start_and_end_on_time(make_world: WorldFactory) -> None:
    w = make_world(count=0)
    faults = Faults(w, ConveyorProgram(w))
    faults.schedule(
        (
            FaultSpec(kind="chute_disabled", at_s=1, duration_s=2, chute=4),
            FaultSpec(kind="chute_full", at_s=2, duration_s=0, chute=6),
            FaultSpec(kind="encoder_glitch", at_s=2, counts=500),
        )
    )
    before = w.encoder
    faults.due(0.5)
    assert not w.disabled.any()
    faults.due(1.0)
    assert w.chute_status()[4] & 2
    faults.due(2.0)
    assert w.chute_status()[6] & 1 and w.encoder == before + 500
    faults.due(3.0)
    assert not w.chute_status()[4] & 2 and w.chute_status()[6] & 1  # duration 0: stays
    assert [(e.kind, e.active) for e in faults.history] == [
        ("chute_disabled", True), ("chute_full", True), ("encoder_glitch", True), ("chute_disabled", False),
    ]  # fmt: skip


def test_after_an_encoder_fault_arms_are_refused_until_the_host_has_seen_it(make_world: WorldFactory) -> None:
    w = make_world(count=0)
    d = DiverterProgram(w)
    d.scan(0.00, 1, 0)
    d.scan(0.01, 2, 0)
    assert d.command(0.01, ArmAction.ARM, 3, 9, w.encoder + 50_000, seq=1) == ArmResult.ARMED
    w.glitch_encoder(5000)
    ev = w.step(0.01)
    assert ev.dropped == [(9, 3, 1)]
    d.encoder_fault(len(ev.dropped))
    far = w.encoder + 50_000
    # arms the host computed before it read the jump are refused: until two new heartbeats
    # (a whole host cycle after the fault) and the scan that saw the second one
    for t, hb in ((0.02, 2), (0.03, 3), (0.04, 3), (0.05, 4)):
        d.scan(t, hb, 0)
        assert d.settling and d.command(t, ArmAction.ARM, 3, 10, far, seq=2) == ArmResult.CHUTE_UNAVAILABLE
    assert d.command(0.05, ArmAction.CANCEL, 3, 9, 0) == ArmResult.NOTHING_TO_CANCEL  # already dropped
    d.scan(0.06, 4, 0)
    assert not d.settling and d.command(0.06, ArmAction.ARM, 3, 10, far, seq=3) == ArmResult.ARMED
    assert d.encoder_faults == 1 and d.dropped_by_encoder == 1 and d.faults == 0


def test_the_conveyor_encoder_fault_latches_until_reset(make_world: WorldFactory) -> None:
    w = make_world(count=0, running=False)
    h = Host(ConveyorProgram(w))
    h.command(C.RESET)
    h.command(C.START)
    faults = Faults(w, h.prog)
    faults.encoder_glitch(400)
    assert not h.prog.faults  # the injector only moves the count; the PLC has to notice
    ev = w.step(0.01)
    assert ev.encoder_jump == 400
    h.prog.encoder_fault()  # as the simulator's scan does on ev.encoder_jump
    for _ in range(10):
        h.scan()
        assert w.step(0.01).encoder_jump == 0
    assert h.prog.faults == ConveyorFault.ENCODER and h.prog.state == S.EXECUTE  # an alarm, the belt runs
    assert h.command(C.STOP) == CommandResult.ACCEPTED
    assert h.command(C.RESET) == CommandResult.ACCEPTED and h.prog.faults == 0

"""The PLC programs and the fault schedule, without servers: commands, watchdogs, latched faults,
acting states and power cycles."""

from __future__ import annotations

import pytest

from plant.codes import ArmAction, ArmResult, CommandResult, ConveyorFault, DiverterFault
from plant.codes import PackMLCommand as C
from plant.codes import PackMLState as S
from plc_sim.belt import BeltSettings, Conformance
from plc_sim.faults import Faults
from plc_sim.oracle import OracleArm
from plc_sim.parcels import ParcelSource
from plc_sim.plc_logic import ConveyorInputs, ConveyorProgram, DiverterProgram
from plc_sim.scenario import Arrivals, FaultSpec, PlcBehaviour, Scenario
from plc_sim.world import World

from .conftest import WorldFactory


class Host:
    """Feeds a ConveyorProgram the way the I/O layer does, one 10 ms scan at a time."""

    def __init__(self, prog: ConveyorProgram) -> None:
        self.prog = prog
        self.inp = ConveyorInputs(watchdog_ms=500)
        self.now = 0.0
        self.commanded_at = 0.0

    def scan(self, dt: float = 0.01, beat: bool = True) -> None:
        if beat:
            self.inp.host_heartbeat += 1
        self.now += dt
        self.prog.scan(self.now, self.inp)

    def command(self, cmd: int, beat: bool = True) -> CommandResult:
        self.inp.belt_command = cmd
        self.inp.belt_command_seq += 1
        self.scan(beat=beat)
        self.commanded_at = self.now
        assert self.prog.command_ack == self.inp.belt_command_seq
        return self.prog.command_result

    def until(self, state: S, within_s: float = 1.0, beat: bool = True) -> float:
        """Scan until the belt is in ``state``; returns the simulated seconds since the last command."""
        t0 = self.now
        while self.prog.state != state:
            assert self.now - t0 < within_s, f"still {self.prog.state.name}, waiting for {state.name}"
            self.scan(beat=beat)
        return self.now - self.commanded_at

    def run(self) -> None:
        """Stopped -> Reset -> Idle -> Start -> Execute, the strict way."""
        assert self.command(C.RESET) == CommandResult.ACCEPTED
        self.until(S.IDLE)
        assert self.command(C.START) == CommandResult.ACCEPTED
        self.until(S.EXECUTE)


def test_a_strict_belt_powers_up_stopped_and_acts_before_it_runs(make_world: WorldFactory) -> None:
    w = make_world(count=0, running=False)
    h = Host(ConveyorProgram(w))
    assert h.prog.state == S.STOPPED and h.prog.settings.packml == Conformance.STRICT
    assert h.command(C.START) == CommandResult.REFUSED and h.prog.state == S.STOPPED
    assert h.command(C.RESET) == CommandResult.ACCEPTED and h.prog.state == S.RESETTING
    reset_at = h.now
    assert h.command(C.START) == CommandResult.REFUSED  # not Idle yet
    h.until(S.IDLE)
    assert 0.1 - 1e-9 <= h.now - reset_at <= 0.11  # acting_s = 0.1 by default (10 ms scans)
    assert h.command(C.START) == CommandResult.ACCEPTED and h.prog.state == S.STARTING
    assert not w.running and not w.induct_enabled  # the start-up horn: not moving yet
    h.until(S.EXECUTE)
    assert w.running and w.induct_enabled
    assert h.command(99) == CommandResult.UNKNOWN and h.prog.state == S.EXECUTE
    h.inp.belt_command = C.STOP  # same seq as before: not executed
    h.scan()
    assert h.prog.state == S.EXECUTE
    assert h.command(C.HOLD) == CommandResult.ACCEPTED and h.prog.state == S.HOLDING
    assert not w.running  # stops as Holding begins
    h.until(S.HELD)
    assert h.command(C.UNHOLD) == CommandResult.ACCEPTED and h.prog.state == S.UNHOLDING and not w.running
    h.until(S.EXECUTE)
    assert w.running
    assert h.command(C.SUSPEND) == CommandResult.ACCEPTED
    h.until(S.SUSPENDED)
    assert w.running and not w.induct_enabled  # parcels on the belt still sort; none come in
    assert h.command(C.UNSUSPEND) == CommandResult.ACCEPTED
    h.until(S.EXECUTE)
    assert h.command(C.COMPLETE) == CommandResult.ACCEPTED
    h.until(S.COMPLETE)
    assert not w.running
    assert h.command(C.RESET) == CommandResult.ACCEPTED
    h.until(S.IDLE)


def test_acting_time_comes_from_the_scenario_plc_block(site: object) -> None:
    from plant.site import Site

    assert isinstance(site, Site)
    sc = Scenario(
        manifest=None, arrivals=Arrivals(rate_per_hour=3600, count=0), plc=PlcBehaviour(acting_ms=300)
    )
    w = World(site, ParcelSource(sc, site.sorter.min_gap_mm, None))
    h = Host(ConveyorProgram(w))
    h.command(C.RESET)
    assert 0.3 - 1e-9 <= h.until(S.IDLE) <= 0.31


def test_host_watchdog_holds_the_belt_and_only_unhold_with_a_live_host_resumes(make_world: WorldFactory) -> None:
    w = make_world(count=0)
    h = Host(ConveyorProgram(w))
    h.run()
    for _ in range(100):
        h.scan()
    assert h.prog.state == S.EXECUTE
    silent_from = h.now
    while h.prog.state == S.EXECUTE:
        h.scan(beat=False)
    assert 0.5 < h.now - silent_from <= 0.52  # watchdog_ms 500
    assert h.prog.state == S.HOLDING and h.prog.faults == ConveyorFault.HOST_WATCHDOG and not w.running
    h.until(S.HELD, beat=False)
    assert h.command(C.RESET, beat=False) == CommandResult.REFUSED  # Held needs Unhold, not Reset
    assert h.command(C.UNHOLD, beat=False) == CommandResult.REFUSED  # the host is still silent
    assert h.prog.state == S.HELD and h.prog.faults & ConveyorFault.HOST_WATCHDOG
    assert h.command(C.UNHOLD) == CommandResult.ACCEPTED  # this scan carries a new heartbeat
    assert h.prog.state == S.UNHOLDING and not h.prog.faults & ConveyorFault.HOST_WATCHDOG
    h.until(S.EXECUTE)
    assert w.running and h.prog.watchdog_trips == 1


def test_the_watchdog_arms_only_once_the_host_heartbeat_has_moved(make_world: WorldFactory) -> None:
    w = make_world(count=0)
    h = Host(ConveyorProgram(w, auto_start=True))
    assert h.prog.state == S.EXECUTE and w.running  # sortctl sim --auto-start
    for _ in range(200):
        h.scan(beat=False)
    assert h.prog.state == S.EXECUTE


def test_estop_aborts_at_once_and_only_clear_then_reset_brings_the_belt_back(make_world: WorldFactory) -> None:
    w = make_world(count=0)
    prog = ConveyorProgram(w)
    h = Host(prog)
    faults = Faults(w, prog)
    h.run()
    faults.estop(True)
    assert prog.state == S.ABORTING and not w.running  # before any scan
    h.until(S.ABORTED)
    assert prog.faults == ConveyorFault.ESTOP
    assert h.command(C.CLEAR) == CommandResult.REFUSED  # still pressed
    assert h.command(C.RESET) == CommandResult.REFUSED
    faults.estop(False)
    assert h.command(C.CLEAR) == CommandResult.ACCEPTED and prog.state == S.CLEARING
    h.until(S.STOPPED)
    assert prog.faults == ConveyorFault.ESTOP  # latched until Reset
    assert h.command(C.START) == CommandResult.REFUSED
    assert h.command(C.RESET) == CommandResult.ACCEPTED and prog.faults == 0
    h.until(S.IDLE)
    assert h.command(C.START) == CommandResult.ACCEPTED


def test_a_jam_stops_the_belt_and_reset_clears_it_taking_the_parcel_off(make_world: WorldFactory) -> None:
    w = make_world(count=1)
    prog = ConveyorProgram(w)
    h = Host(prog)
    faults = Faults(w, prog)
    h.run()
    while w.parcels_on_belt() == 0:
        w.step(0.05)
    faults.jam("induct")
    h.scan()
    assert prog.state == S.STOPPING and prog.faults & ConveyorFault.JAM and not w.running
    h.until(S.STOPPED)
    assert h.command(C.START) == CommandResult.REFUSED
    assert h.command(C.RESET) == CommandResult.ACCEPTED and prog.faults == 0 and not w.jammed_eye
    assert w.ground_truth().state[0] == 2  # the jammed parcel was taken off: lost, and known
    h.until(S.IDLE)
    assert h.command(C.START) == CommandResult.ACCEPTED
    h.until(S.EXECUTE)


def test_the_lenient_plc_resets_held_and_aborted_belts_straight_to_idle(make_world: WorldFactory) -> None:
    w = make_world(count=0)
    prog = ConveyorProgram(w, belt=BeltSettings.of("reset_clears_all"))
    h = Host(prog)
    faults = Faults(w, prog)
    assert h.command(C.RESET) == CommandResult.ACCEPTED and prog.state == S.IDLE
    assert h.command(C.START) == CommandResult.ACCEPTED and prog.state == S.EXECUTE and w.running
    for _ in range(60):
        h.scan(beat=False)
    assert prog.state == S.HELD and prog.faults == ConveyorFault.HOST_WATCHDOG
    assert h.command(C.RESET) == CommandResult.ACCEPTED and prog.state == S.IDLE and prog.faults == 0
    h.command(C.START)
    faults.estop(True)
    h.scan()
    assert prog.state == S.ABORTED
    assert h.command(C.RESET) == CommandResult.REFUSED  # not while the button is pressed
    faults.estop(False)
    assert h.command(C.RESET) == CommandResult.ACCEPTED and prog.state == S.IDLE and prog.faults == 0


@pytest.mark.parametrize("auto_start", [False, True])
def test_a_conveyor_power_cycle_restarts_the_program_as_at_power_up(
    make_world: WorldFactory, auto_start: bool
) -> None:
    w = make_world(count=0)
    prog = ConveyorProgram(w, auto_start=auto_start)
    h = Host(prog)
    first = prog.boot_id
    if not auto_start:
        h.run()
    assert h.command(C.SUSPEND) == CommandResult.ACCEPTED
    for _ in range(50):
        h.scan()
    prog.encoder_fault()
    prog.press_estop()
    h.until(S.ABORTED)
    beat, ack = prog.heartbeat, prog.command_ack
    assert beat > 0 and ack > 0
    w.switch_power("conveyor", False)
    assert not w.running and w.speed_mps == 0.0
    h.inp.belt_command, h.inp.belt_command_seq = C.STOP, ack + 1
    for _ in range(30):  # off: no scans, nothing executed, heartbeat frozen
        h.scan()
    assert prog.heartbeat == beat and prog.command_ack == ack and prog.boot_id == first
    w.switch_power("conveyor", True)
    h.inp.belt_command_seq = 0  # the cold memory the host writes into again
    h.scan()
    assert prog.boot_id not in (0, first) and prog.boots == 2
    assert prog.command_ack == 0 and prog.heartbeat == 0
    # faults cleared, except the e-stop that is still pressed (it aborts the fresh belt at once)
    assert prog.faults == ConveyorFault.ESTOP and prog.state == S.ABORTING
    prog.release_estop()
    w.switch_power("conveyor", False)
    w.switch_power("conveyor", True)
    h.scan()
    assert prog.faults == 0 and prog.state == (S.EXECUTE if auto_start else S.STOPPED)
    assert prog.boots == 3 and w.tracking.boot_id == prog.boot_id


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
    h.run()
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
    h.until(S.STOPPED)
    assert h.prog.faults == ConveyorFault.ENCODER
    assert h.command(C.RESET) == CommandResult.ACCEPTED and h.prog.faults == 0


def test_a_diverter_power_cycle_drops_every_arm_and_boots_afresh(make_world: WorldFactory) -> None:
    w = make_world(count=3)
    d = DiverterProgram(w)
    first = d.boot_id
    oracle = OracleArm(w, lambda tid: 20)  # far down the loop: armed long before the fire
    while w.armed < 2:
        d.scan(w.time_s, 1, 0)
        oracle.step(0.1)
    d.scan(w.time_s, 2, 5)
    d.scan(w.time_s + 0.01, 3, 5)
    w.switch_power("diverter", False)
    assert w.armed == 0  # dropped, nothing reported: the PLC is off
    assert w.arm(20, 99, w.encoder + 50_000) == ArmResult.CHUTE_UNAVAILABLE
    beat = d.heartbeat
    for _ in range(300):  # 30 s: every parcel passes chute 20 and nothing fires
        d.scan(w.time_s, 3, 5)
        assert not oracle.step(0.1).confirms
    assert d.heartbeat == beat and d.boot_id == first
    assert w.stats.fires == 0 and w.armed == 0
    w.switch_power("diverter", True)
    d.scan(w.time_s, 0, 0)
    assert d.boot_id not in (0, first) and d.boots == 2 and d.heartbeat == 0 and d.faults == 0
    assert d.command(w.time_s, ArmAction.ARM, 3, 10, w.encoder + 50_000) == ArmResult.ARMED


def test_confirmations_of_fires_before_a_diverter_cut_are_not_reported(make_world: WorldFactory) -> None:
    w = make_world(count=1)
    oracle = OracleArm(w, lambda tid: 1)
    while w.stats.fires == 0:
        oracle.step(0.001)  # stop right after the fire, before the parcel reaches the chute eye
    assert w.stats.confirms == 0
    w.switch_power("diverter", False)
    w.switch_power("diverter", True)  # even if it is back by then: its memory of the fire is gone
    for _ in range(100):
        assert not oracle.step(0.01).confirms
    gt = w.ground_truth()
    assert gt.state[0] == 1 and gt.chute[0] == 1  # it is in the chute all the same
    assert w.stats.confirms_unreported == 1 and w.landed[w.chute_index(1)] == 1


def test_boot_ids_follow_the_scenario_seed(make_world: WorldFactory) -> None:
    def boots(seed: int) -> list[int]:
        w = make_world(count=0, seed=seed)
        c, d = ConveyorProgram(w), DiverterProgram(w)
        out = [c.boot_id, d.boot_id]
        for _ in range(3):
            w.switch_power("conveyor", False)
            w.switch_power("diverter", False)
            w.switch_power("conveyor", True)
            w.switch_power("diverter", True)
            c.sync_power(1.0)
            d.sync_power(1.0)
            out += [c.boot_id, d.boot_id]
        return out

    a, b = boots(7), boots(8)
    assert a == boots(7) and a != b  # reproducible, and another seed gives other ids
    assert 0 not in a and len(set(a)) == len(a)


def test_the_scheduled_power_cycle_switches_off_and_back_on(make_world: WorldFactory) -> None:
    w = make_world(count=0)
    faults = Faults(w, ConveyorProgram(w))
    faults.schedule(
        (
            FaultSpec(kind="plc_power_cycle", at_s=1, duration_s=2, plc="both"),
            FaultSpec(kind="plc_power_cycle", at_s=5, plc="diverter"),  # duration 0: stays off
        )
    )
    faults.due(1.0)
    assert not w.power.conveyor and not w.power.diverter
    faults.due(2.9)
    assert not w.power.conveyor
    faults.due(3.0)
    assert w.power.conveyor and w.power.diverter
    faults.due(5.0)
    faults.due(500.0)
    assert w.power.conveyor and not w.power.diverter
    assert [(e.kind, e.detail, e.active) for e in faults.history] == [
        ("plc_power_cycle", "both off", True), ("plc_power_cycle", "both on", False),
        ("plc_power_cycle", "diverter off", True),
    ]  # fmt: skip
    w.time_s = 600.0
    faults.plc_power_cycle("conveyor", 0.5)  # the runtime call: back on after 0.5 simulated s
    assert not w.power.conveyor
    faults.due(600.4)
    assert not w.power.conveyor
    faults.due(600.5)
    assert w.power.conveyor

"""The PLC programs: what the conveyor and diverter PLCs decide each scan, with no I/O.

``ConveyorProgram`` runs the belt's PackML state machine (``plc_sim.belt``), executes belt
commands once per new command seq, watches the host heartbeat and the plant (e-stop, jam,
induct gaps) and latches faults. ``DiverterProgram`` validates arm commands, watches its own
host heartbeat and drops every arm when it stops. Both react to an encoder fault the world's
counter check reports (``StepEvents.encoder_jump``): the conveyor latches its fault bit, the
diverter has already dropped its pending arms and refuses new ones until the host has shown
it has seen the fault (see ``DiverterProgram.encoder_fault``).

Each program has a boot id (new at every start of the program) and follows its PLC's mains
(``World.power``): while off it does nothing; when power returns it starts as at power-up.
Both act on the World; the async layer in ``plc_sim.plc_io`` moves their inputs and outputs
to and from the protocol servers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from plant.codes import (
    ArmAction,
    ArmResult,
    CommandResult,
    ConveyorFault,
    DiverterFault,
    PackMLCommand,
    PackMLState,
)
from plc_sim.belt import Belt, BeltSettings, Causes
from plc_sim.bootid import BootIds
from plc_sim.world import Plc, World

HEARTBEAT_S = 0.1
DIVERTER_WATCHDOG_S = 1.0
ENCODER_SETTLE_BEATS = 2  # host heartbeat changes after an encoder fault before arms are taken again
S = PackMLState
C = PackMLCommand


@dataclass(slots=True)
class ConveyorInputs:
    """What the host wrote, as the PLC reads it at the start of a scan."""

    host_heartbeat: int = 0
    watchdog_ms: int = 0
    belt_command: int = 0
    belt_command_seq: int = 0
    induct_enable: bool = True
    speed_setpoint: float = 0.0


def boot_seed(world: World) -> int:
    """Where the PLCs' boot ids come from: the scenario's ``plc.boot_seed``, else its seed."""
    scenario = world.source.scenario
    return scenario.seed if scenario.plc.boot_seed is None else scenario.plc.boot_seed


class _Powered(Protocol):
    powered: bool
    _cuts: int


def _rebooted(prog: _Powered, world: World, plc: Plc) -> bool:
    """Bring ``prog.powered`` in line with the PLC's mains; True when the program must boot."""
    power = world.power
    if not power.on(plc):
        prog.powered = False
        return False
    if prog.powered and prog._cuts == power.cuts(plc):
        return False
    prog.powered, prog._cuts = True, power.cuts(plc)
    return True


class HeartbeatWatch:
    """Time since a counter last changed; armed only once it has changed at least once."""

    def __init__(self) -> None:
        self.last_value: int | None = None
        self.last_change = 0.0
        self.seen = False

    def update(self, value: int, now: float) -> None:
        if self.last_value is None:
            self.last_value, self.last_change = value, now
        elif value != self.last_value:
            self.last_value, self.last_change, self.seen = value, now, True

    def stale(self, now: float, timeout_s: float) -> bool:
        return self.seen and now - self.last_change > timeout_s


class ConveyorProgram:
    """The conveyor PLC: PackML belt, command handshake, host watchdog, latched faults.

    ``belt`` and ``seed`` (of the boot ids) default to the world's scenario (``boot_seed``).
    """

    def __init__(
        self,
        world: World,
        *,
        auto_start: bool = False,
        belt: BeltSettings | None = None,
        seed: int | None = None,
    ) -> None:
        self.world = world
        scenario = world.source.scenario
        self.settings = belt or BeltSettings.of(scenario.plc.packml, scenario.plc.acting_ms)
        self.auto_start = auto_start
        self._boot_ids = BootIds(boot_seed(world) if seed is None else seed, "conveyor")
        self.belt = Belt(self.settings)
        self.estop_pressed = False  # the button: a plant input, pressed whether or not the PLC is on
        self.powered = world.power.conveyor
        self._cuts = world.power.conveyor_cuts  # power cuts seen: a new one means a reboot
        self.boot_id = 0
        self.command_ack = 0
        self.command_result = CommandResult.ACCEPTED
        self.heartbeat = 0
        self.boots = 0
        self._beat_at = 0.0
        self.host = HeartbeatWatch()
        self._timeout_s = 1.0
        self._induct_enable = True
        self._gapv_seen = 0
        self._now = 0.0
        if self.powered:
            self._power_up(0.0)

    @property
    def state(self) -> PackMLState:
        return self.belt.state

    @property
    def running_program(self) -> bool:
        """The program runs: powered, and the mains are on (a cut takes effect before its next scan)."""
        return self.powered and self.world.power.conveyor

    @property
    def faults(self) -> ConveyorFault:
        return self.belt.faults

    @property
    def watchdog_trips(self) -> int:
        return self.belt.watchdog_trips

    # ---- power -------------------------------------------------------------------------------
    def sync_power(self, now: float) -> None:
        """Follow the PLC's mains: nothing while off; a fresh start when power comes back."""
        if _rebooted(self, self.world, "conveyor"):
            self._power_up(now)

    def _power_up(self, now: float) -> None:
        """Program state as at power-up; the tracking ids start again from 1 under a new boot id."""
        self.belt.power_up(S.EXECUTE if self.auto_start else S.STOPPED, now, self.estop_pressed)
        self.command_ack = 0
        self.command_result = CommandResult.ACCEPTED
        self.heartbeat = 0
        self._beat_at = now
        self._now = now
        self.host = HeartbeatWatch()
        self._timeout_s = 1.0
        self._induct_enable = True
        self._gapv_seen = self.world.stats.gap_violations
        self.boot_id = self._boot_ids.next()
        self.boots += 1
        self.world.restart_tracking(self.boot_id)
        self._apply()

    # ---- faults from the world and the fault injector --------------------------------------
    def press_estop(self) -> None:
        """The e-stop acts at once, not at the next scan: the belt stops now."""
        self.estop_pressed = True
        if self.running_program:
            self.belt.react(self._now, self._causes(self._now))
            self._apply()

    def release_estop(self) -> None:
        self.estop_pressed = False  # the fault stays latched until Reset

    def encoder_fault(self) -> None:
        """The counter moved in a way the belt speed cannot explain; latched until Reset."""
        if self.running_program:
            self.belt.faults |= ConveyorFault.ENCODER

    # ---- one PLC scan ------------------------------------------------------------------
    def scan(self, now: float, inp: ConveyorInputs) -> None:
        self.sync_power(now)
        if not self.powered:
            return
        if now - self._beat_at >= HEARTBEAT_S:
            self.heartbeat = (self.heartbeat + 1) & 0xFFFFFFFF
            self._beat_at = now
        self._now = now
        if inp.speed_setpoint > 0:
            self.world.speed_setpoint_mps = min(float(inp.speed_setpoint), 5.0)
        self._induct_enable = bool(inp.induct_enable)
        self.host.update(inp.host_heartbeat, now)  # before the command: an Unhold sees a live host
        self._timeout_s = (inp.watchdog_ms or 1000) / 1000.0
        if inp.belt_command_seq != self.command_ack:
            self.command_result = self.belt.command(inp.belt_command, now, self._causes(now))
            self.command_ack = inp.belt_command_seq
            if (
                self.command_result == CommandResult.ACCEPTED
                and inp.belt_command == C.RESET
                and self.world.jammed_eye
            ):
                self.world.clear_jam()  # the operator takes the jammed parcel off
        self.belt.tick(now, self._causes(now))
        if self.world.stats.gap_violations > self._gapv_seen:
            self._gapv_seen = self.world.stats.gap_violations
            self.belt.faults |= ConveyorFault.GAP_VIOLATION
        self._apply()

    def _causes(self, now: float) -> Causes:
        return Causes(
            estop=self.estop_pressed,
            jam=bool(self.world.jammed_eye),
            host_stale=self.host.stale(now, self._timeout_s),
        )

    def _apply(self) -> None:
        """Outputs to the plant: the belt motor, and the induct open only while producing."""
        self.world.running = self.belt.moving
        self.world.induct_enabled = self._induct_enable and self.belt.state == S.EXECUTE


class DiverterProgram:
    """The diverter PLC: arm queue validation, host watchdog, latched faults.

    ``seed`` (of its boot ids) defaults to the world's scenario (``boot_seed``).
    """

    def __init__(self, world: World, *, seed: int | None = None) -> None:
        self.world = world
        self._boot_ids = BootIds(boot_seed(world) if seed is None else seed, "diverter")
        self.powered = world.power.diverter
        self._cuts = world.power.diverter_cuts
        self.boot_id = 0
        self.boots = 0
        self.faults = DiverterFault(0)
        self.heartbeat = 0
        self._beat_at = 0.0
        self.host = HeartbeatWatch()
        self._reset_seq: int | None = None
        self.dropped_arms = 0
        self._tripped = False
        self.encoder_faults = 0
        self.dropped_by_encoder = 0
        self._settle: int | None = None  # host beats still to see after an encoder fault
        if self.powered:
            self._power_up(0.0)

    # ---- power -------------------------------------------------------------------------------
    def sync_power(self, now: float) -> None:
        """Follow the PLC's mains (the world already dropped the pending arms at the cut)."""
        if _rebooted(self, self.world, "diverter"):
            self._power_up(now)

    def _power_up(self, now: float) -> None:
        self.faults = DiverterFault(0)
        self.heartbeat = 0
        self._beat_at = now
        self.host = HeartbeatWatch()
        self._reset_seq = None
        self._tripped = False
        self._settle = None
        self.boot_id = self._boot_ids.next()
        self.boots += 1

    # ---- faults ------------------------------------------------------------------------------
    def encoder_fault(self, dropped: int) -> None:
        """The world's counter check dropped ``dropped`` pending arms on an encoder jump.

        Arms the host computed before it saw the jump carry counts from the old frame and
        would fire on the wrong parcel. The host writes its heartbeat once per cycle, after
        that cycle's arms, so once the heartbeat has changed ``ENCODER_SETTLE_BEATS`` times
        every arm written before the first post-fault cycle has reached the PLC: arms taken up
        to and including that scan are refused (code 2, the parcel rides on), later ones run.
        """
        if not (self.powered and self.world.power.diverter):
            return
        self.encoder_faults += 1
        self.dropped_by_encoder += dropped
        self._settle = ENCODER_SETTLE_BEATS

    @property
    def settling(self) -> bool:
        """True while arms are refused after an encoder fault."""
        return self._settle is not None

    # ---- one PLC scan ------------------------------------------------------------------
    def scan(self, now: float, host_heartbeat: int, reset_seq: int) -> None:
        self.sync_power(now)
        if not self.powered:
            return
        if now - self._beat_at >= HEARTBEAT_S:
            self.heartbeat = (self.heartbeat + 1) & 0xFFFFFFFF
            self._beat_at = now
        beat = self.host.last_value is not None and host_heartbeat != self.host.last_value
        if self._settle is not None:
            if self._settle == 0:
                self._settle = None  # the scan after the one that saw the last beat: arms run again
            elif beat:
                self._settle -= 1
        self.host.update(host_heartbeat, now)
        if self._reset_seq is None:
            self._reset_seq = reset_seq
        elif reset_seq != self._reset_seq:
            self._reset_seq = reset_seq
            self.faults = DiverterFault(0)
        stale = self.host.stale(now, DIVERTER_WATCHDOG_S)
        if stale and not self._tripped:
            self.dropped_arms += self.world.drop_arms()
            self.faults |= DiverterFault.HOST_WATCHDOG
        self._tripped = stale
        if self.world.faulted.any():
            self.faults |= DiverterFault.DIVERTER

    def command(
        self, now: float, action: int, chute: int, tracking_id: int, fire_count: int, seq: int = 0
    ) -> ArmResult:
        """Execute one arm-ring command (``seq``: its ring seq); the result goes to the arm_result ring."""
        if action == ArmAction.CANCEL:
            return self.world.cancel(chute, tracking_id)
        if action != ArmAction.ARM:
            return ArmResult.UNKNOWN_CHUTE
        if self._tripped or self._settle is not None:  # no host, or counts from before a jump: no fire
            return ArmResult.CHUTE_UNAVAILABLE
        res = self.world.arm(chute, tracking_id, fire_count, seq)
        if res == ArmResult.QUEUE_FULL:
            self.faults |= DiverterFault.ARM_OVERFLOW
        return res

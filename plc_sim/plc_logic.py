"""The PLC programs: what the conveyor and diverter PLCs decide each scan, with no I/O.

``ConveyorProgram`` runs the belt's PackML-ish state (Stopped, Idle, Execute, Held, Aborted),
executes belt commands once per new command seq, watches the host heartbeat and latches
faults until Reset. ``DiverterProgram`` validates arm commands, watches its own host
heartbeat and drops every arm when it stops. Both react to an encoder fault the world's
counter check reports (``StepEvents.encoder_jump``): the conveyor latches its fault bit, the
diverter has already dropped its pending arms and refuses new ones until the host has shown
it has seen the fault (see ``DiverterProgram.encoder_fault``). Both act on the World; the async layer in
``plc_sim.plc_io`` moves their inputs and outputs to and from the protocol servers.
"""

from __future__ import annotations

from dataclasses import dataclass

from plant.codes import (
    ArmAction,
    ArmResult,
    CommandResult,
    ConveyorFault,
    DiverterFault,
    PackMLCommand,
    PackMLState,
)
from plc_sim.world import World

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
    """The conveyor PLC: belt state machine, command handshake, watchdog, latched faults."""

    def __init__(self, world: World, *, auto_start: bool = False) -> None:
        self.world = world
        self.state = S.EXECUTE if auto_start else S.STOPPED
        self.faults = ConveyorFault(0)
        self.estop_pressed = False
        self.command_ack = 0
        self.command_result = CommandResult.ACCEPTED
        self.heartbeat = 0
        self._beat_at = 0.0
        self.host = HeartbeatWatch()
        self.watchdog_trips = 0
        self._gapv_seen = 0
        self._now = 0.0
        self._apply()

    # ---- faults from the world and the fault injector --------------------------------------
    def press_estop(self) -> None:
        self.estop_pressed = True
        self.faults |= ConveyorFault.ESTOP
        self.state = S.ABORTED
        self._apply()

    def release_estop(self) -> None:
        self.estop_pressed = False  # the fault stays latched until Clear/Reset

    def encoder_fault(self) -> None:
        """The counter moved in a way the belt speed cannot explain; latched until Reset."""
        self.faults |= ConveyorFault.ENCODER

    # ---- one PLC scan ------------------------------------------------------------------
    def scan(self, now: float, inp: ConveyorInputs) -> None:
        if now - self._beat_at >= HEARTBEAT_S:
            self.heartbeat = (self.heartbeat + 1) & 0xFFFFFFFF
            self._beat_at = now
        self._now = now
        if inp.speed_setpoint > 0:
            self.world.speed_setpoint_mps = min(float(inp.speed_setpoint), 5.0)
        self.world.induct_enabled = bool(inp.induct_enable)
        if inp.belt_command_seq != self.command_ack:
            self.command_result = self._command(inp.belt_command)
            self.command_ack = inp.belt_command_seq
        self.host.update(inp.host_heartbeat, now)
        timeout = (inp.watchdog_ms or 1000) / 1000.0
        if self.state == S.EXECUTE and self.host.stale(now, timeout):
            self.faults |= ConveyorFault.HOST_WATCHDOG
            self.state = S.HELD
            self.watchdog_trips += 1
        if self.world.jammed_eye and self.state in (S.EXECUTE, S.HELD, S.IDLE):
            self.faults |= ConveyorFault.JAM
            self.state = S.STOPPED
        if self.world.stats.gap_violations > self._gapv_seen:
            self._gapv_seen = self.world.stats.gap_violations
            self.faults |= ConveyorFault.GAP_VIOLATION
        self._apply()

    def _command(self, cmd: int) -> CommandResult:
        try:
            c = C(cmd)
        except ValueError:
            return CommandResult.UNKNOWN
        st = self.state
        if c == C.ABORT and st != S.ABORTED:
            self.state = S.ABORTED
        elif (c == C.CLEAR and st == S.ABORTED and not self.estop_pressed) or (
            c == C.STOP and st not in (S.STOPPED, S.ABORTED)
        ):
            self.state = S.STOPPED
        elif c == C.RESET and st == S.STOPPED and not self.estop_pressed:
            if self.world.jammed_eye:
                self.world.clear_jam()  # the operator takes the jammed parcel off
            self.faults = ConveyorFault(0)
            self.state = S.IDLE
        elif c == C.START and st == S.IDLE and not self.faults & (ConveyorFault.ESTOP | ConveyorFault.JAM):
            self.state = S.EXECUTE
        elif c == C.HOLD and st == S.EXECUTE:
            self.state = S.HELD
        elif c == C.UNHOLD and st == S.HELD and not self.faults & (ConveyorFault.ESTOP | ConveyorFault.JAM):
            self.faults &= ~ConveyorFault.HOST_WATCHDOG
            self.host.last_change = self._now  # a fresh grace period for the heartbeat
            self.state = S.EXECUTE
        else:
            return CommandResult.REFUSED
        self._apply()
        return CommandResult.ACCEPTED

    def _apply(self) -> None:
        self.world.running = self.state == S.EXECUTE


class DiverterProgram:
    """The diverter PLC: arm queue validation, host watchdog, latched faults."""

    def __init__(self, world: World) -> None:
        self.world = world
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

    def encoder_fault(self, dropped: int) -> None:
        """The world's counter check dropped ``dropped`` pending arms on an encoder jump.

        Arms the host computed before it saw the jump carry counts from the old frame and
        would fire on the wrong parcel. The host writes its heartbeat once per cycle, after
        that cycle's arms, so once the heartbeat has changed ``ENCODER_SETTLE_BEATS`` times
        every arm written before the first post-fault cycle has reached the PLC: arms taken up
        to and including that scan are refused (code 2, the parcel rides on), later ones run.
        """
        self.encoder_faults += 1
        self.dropped_by_encoder += dropped
        self._settle = ENCODER_SETTLE_BEATS

    @property
    def settling(self) -> bool:
        """True while arms are refused after an encoder fault."""
        return self._settle is not None

    def scan(self, now: float, host_heartbeat: int, reset_seq: int) -> None:
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

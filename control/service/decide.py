"""The cycle's decide step: one cycle's PLC readings applied, in causal order, to the fault book,
the stream book, the parcel flow and the supervisor.

Pure: it reads nothing and writes nothing; the controller hands it what it read and takes back
what to write (`Outputs`) plus the cycle's batch for the store. Keeping the order of things in
one place is the point: liveness and PLC restarts first (a restarted PLC's rings are read from
seq 1 and its old parcels closed before its new events arrive), then fault bits and the encoder,
then ring events (induct before scan before arm results and confirms), decodes, the vector pass,
and last the unit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from control.faults import Fault
from control.packml import PackMLUnit
from control.plc import RingRead
from control.service.alarms import CONVEYOR_BITS, DIVERTER_BITS, FaultBook
from control.service.arms import ArmQueue
from control.service.boots import derived_boot
from control.service.feeds import DecodeFeed
from control.service.metrics import Metrics
from control.service.parcels import ParcelFlow
from control.service.settings import ServiceSettings
from control.service.streams import StreamBook
from control.service.supervisor import BeltReading, Observed, OperatorCommand, Supervisor
from control.service.watch import EncoderAgreement, EncoderWatch, HeartbeatWatch, follows
from control.store import Batch
from control.tracking import Geometry, wrap
from plant.codes import ConveyorFault, DiverterFault, PackMLCommand, PackMLState

__all__ = ["Decider", "Outputs", "Reading"]

log = logging.getLogger("control.service.supervisor")  # the supervisor's notes are its log lines

S = PackMLState
RUNNING = frozenset({S.EXECUTE, S.SUSPENDED, S.SUSPENDING, S.UNSUSPENDING, S.COMPLETING})  # arms may go out
DIVERTER_LATCHED = DiverterFault.HOST_WATCHDOG | DiverterFault.ARM_OVERFLOW | DiverterFault.DIVERTER
CAMERA_DOWN_S = 1.0  # no camera stream this long: the camera is down
AHEAD_CYCLES = 2.0  # a diverter answer older than this many cycles is not projected from (`arm_ahead`)


@dataclass(slots=True)
class Reading:
    """One PLC's reading this cycle (``rings``: ring name -> entries read)."""

    ok: bool = False
    scalars: dict[str, float | int | bool] = field(default_factory=dict)
    rings: dict[str, RingRead] = field(default_factory=dict)
    restarted: bool = False  # a new boot id (or a ring that went back): its rings were read from seq 1
    rekey: bool = False  # a conveyor ring went back under the same boot id: new keys must not collide
    sent_at: float = 0.0  # the encoder was sampled between these two instants
    received_at: float = 0.0
    done_at: float = 0.0  # the whole read (rings included) was in


@dataclass(slots=True)
class Outputs:
    """What the publish writes besides ring acks and arms."""

    belt_command: tuple[PackMLCommand, int] | None = None  # (command, seq)
    diverter_reset: int | None = None
    settings: dict[str, float | int | bool] = field(default_factory=dict)  # conveyor settings to (re)write


class Decider:
    """Turns a cycle's readings into state changes, stored events and outputs."""

    def __init__(
        self,
        cfg: ServiceSettings,
        geometry: Geometry,
        *,
        unit: PackMLUnit,
        supervisor: Supervisor,
        faults: FaultBook,
        streams: StreamBook,
        arms: ArmQueue,
        parcels: ParcelFlow,
        metrics: Metrics,
        decoder: DecodeFeed | None,
        speed_mps: float,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self.unit = unit
        self.supervisor = supervisor
        self.faults = faults
        self.streams = streams
        self.arms = arms
        self.parcels = parcels
        self.metrics = metrics
        self.decoder = decoder
        self.cfg = cfg
        self.speed_mps = speed_mps
        self.clock = clock
        self.wall = wall
        self.operator: list[OperatorCommand] = []  # taken from the store, for the next decide
        self._heartbeat = {plc: HeartbeatWatch(cfg.heartbeat_timeout_s) for plc in ("conveyor", "diverter")}
        self._encoder_watch = EncoderWatch(geometry.counts_per_mm, cfg.glitch_tolerance_mm,
                                           max_age_s=cfg.encoder_max_age_s)
        self._encoders = EncoderAgreement(geometry.counts_per_mm, cfg.glitch_tolerance_mm,
                                          max_age_s=cfg.encoder_max_age_s)
        self._conv_fault_bits = 0
        self._div_fault_bits = 0
        self._glitch_cycle = -1
        self._geometry = geometry
        self.conveyor_sample: tuple[int, float, float] | None = None  # last good conveyor count, sent, received
        # the diverter's last count, sent, received, where the last decide found both answers
        # whole (no encoder suspicion, no diverter fault bit, no restart): to arm ahead from
        self.diverter_sample: tuple[int, float, float] | None = None
        self._armed_early = False  # this cycle's arms were taken at the diverter's count

    def arm_ahead(self, now: float, batch: Batch) -> bool:
        """Arm what is due at ``now`` by the diverter's count as its last answer projects it,
        before this cycle reads anything; False (nothing done) when that answer is not fit to
        project from.

        The decision's critical path is then one Modbus write instead of a read and a write. The
        projection is the belt's travel since the diverter sampled its count, at the speed the
        conveyor reported: within a cycle's age the belt's acceleration moves a parcel by well
        under a millimetre against an arm window of metres, and the PLC fires on its own count
        whatever we projected. What the last answer could not show (a fault or restart since)
        is what a write issued after a read could not show either: this cycle's read, a
        millisecond later, is decided on as always, and a restart's arms go round. Only an
        answer the last decide found whole is projected from (both PLCs read, counts agreeing,
        no diverter fault bit, its boot unchanged), only while arming is allowed, and only
        from the cycle just before: a late cycle reads first."""
        s = self.diverter_sample
        if s is None or not self._may_arm():
            return False
        enc, sent, received = s
        age = now - (sent + received) / 2.0
        if not 0.0 <= age <= AHEAD_CYCLES * self.cfg.cycle_s:
            return False
        travel = round(self.parcels.speed_mps * 1000.0 * self._geometry.counts_per_mm * age)
        self._armed_early = True
        self.parcels.arm_pass(wrap(enc + travel), now, batch)
        return True

    def _may_arm(self) -> bool:
        """Arms may go out: the unit runs, the diverter is alive and the two counts agree."""
        return (self.unit.state in RUNNING and Fault.DIVERTER_HEARTBEAT_LOST not in self.faults
                and Fault.ENCODER_MISMATCH not in self.faults and self._encoders.agree)

    def arm_early(self, div: Reading, now: float, batch: Batch) -> int:
        """Arm, from the diverter PLC's answer alone, what is due at its encoder count; returns
        how many arms were queued (written by the caller before this cycle's commit).

        The diverter usually answers while the conveyor's read is still in flight, and it is
        the PLC that fires, on its own count. Arms go out only when nothing in this answer
        needs the full decide first: the unit running with no arm-stopping fault as of the last
        cycle, this diverter neither restarted nor reporting any fault bit nor behind on its
        ring, and its count a plausible successor of the conveyor's last one. Anything else
        leaves the arming to `decide`, as before. Whatever this cycle's conveyor answer then
        reveals is applied as it would be to arms of the cycle before: an encoder jump
        cancels every live arm, these included."""
        sc = div.scalars
        last = self.conveyor_sample
        if not div.ok or div.restarted or last is None or int(sc["faults"]) or int(sc["arm.ack"]) < self.arms.ack:
            return 0
        if not self._may_arm():
            return 0
        enc = int(sc["encoder_count"])
        g = self._geometry
        if not follows(last, (enc, div.sent_at, div.received_at), self.parcels.speed_mps, g.counts_per_mm,
                       self.cfg.glitch_tolerance_mm, self.cfg.encoder_max_age_s):
            return 0
        self.arms.ack = int(sc["arm.ack"])
        self._armed_early = True
        return self.parcels.arm_pass(enc, now, batch)

    def decide(self, conv: Reading, div: Reading, now: float, batch: Batch) -> Outputs:
        flow = self.parcels
        self._liveness("conveyor", conv, now, batch)
        self._liveness("diverter", div, now, batch)
        if not conv.ok:
            self._encoder_watch.reset()  # a gap in the samples is not a jump
            self.conveyor_sample = None
        if conv.ok:
            self._boot("conveyor", conv, now, batch)
            self._take_conveyor(conv, batch)
        if div.ok:
            self._boot("diverter", div, now, batch)
            ack = int(div.scalars["arm.ack"])
            if ack < self.arms.ack:  # the diverter PLC lost its ring state
                self.adopt_arm_heads(int(div.scalars["arm.head"]), ack, batch)
            self.arms.ack = ack
            self._diverter_faults(int(div.scalars["faults"]), batch)
        if conv.ok and div.ok:
            self._encoder_agreement(conv, div, batch)
        # ring events, in causal order: induct before scan before results and confirms
        self.streams.take("conveyor", "induct", conv.rings.get("induct"), batch, flow.on_induct)
        self.streams.take("conveyor", "scan", conv.rings.get("scan"), batch, flow.on_scan)
        self.streams.take("diverter", "arm_result", div.rings.get("arm_result"), batch, flow.on_arm_result)
        self.streams.take("diverter", "confirm", div.rings.get("confirm"), batch, flow.on_confirm)
        self.metrics.gaps = self.streams.lost
        if self.decoder is not None:
            if self.decoder.down_for > CAMERA_DOWN_S:
                self.faults.raise_(Fault.CAMERA_DOWN, "no camera stream", batch)
            elif self.decoder.healthy:
                self.faults.clear(Fault.CAMERA_DOWN, batch)
        flow.take_decodes(now, batch)
        if conv.ok:
            # the diverter takes no arm while its watchdog fault is latched (until our reset_seq
            # reaches it), and no fire count is right while its encoder disagrees with the conveyor's
            may_arm = self._may_arm() and not (div.ok and self._div_fault_bits & DiverterFault.HOST_WATCHDOG)
            # after an early pass, only decisions of this cycle are armed now; what came due
            # between the two counts is armed by the next cycle's early pass, 10 ms on
            flow.cycle_pass(now, batch, may_arm=may_arm, fresh_only=self._armed_early)
        self._armed_early = False
        whole = (conv.ok and div.ok and not div.restarted and self.conveyor_sample is not None
                 and not self._div_fault_bits)
        self.diverter_sample = (int(div.scalars["encoder_count"]), div.sent_at, div.received_at) if whole else None
        settings = self._settings_to_write(conv) if conv.ok else {}
        out = self._supervise(conv, div, now, batch, plc_ready=conv.ok and not settings)
        out.settings = settings
        return out

    def _settings_to_write(self, conv: Reading) -> dict[str, float | int | bool]:
        """The settings the conveyor PLC must hold: written whenever it holds others (a power
        cycle zeroes them); the unit starts the belt only once it holds them (``plc_ready``)."""
        want: dict[str, float | int | bool] = {"watchdog_ms": self.cfg.watchdog_ms, "speed_setpoint": self.speed_mps}
        sc = conv.scalars
        return {k: v for k, v in want.items() if abs(float(sc[k]) - float(v)) > 1e-6}

    def _encoder_agreement(self, conv: Reading, div: Reading, batch: Batch) -> None:
        spread = max(conv.received_at, div.received_at) - min(conv.sent_at, div.sent_at)
        why = self._encoders.check(int(conv.scalars["encoder_count"]), int(div.scalars["encoder_count"]), spread,
                                   float(conv.scalars["speed_actual"]), self.clock())
        if why is not None:
            self.faults.raise_(Fault.ENCODER_MISMATCH, why, batch)
        else:
            self.faults.clear(Fault.ENCODER_MISMATCH, batch)

    def adopt_arm_heads(self, head: int, ack: int, batch: Batch) -> None:
        """Continue the arm numbering where the diverter PLC's ring is (a new epoch if it restarted)."""
        if self.arms.adopt_heads(head, ack):
            self.streams.new_epoch("arm", batch)
            batch.unit_event(self.wall(), "ring_restart", "diverter.arm", head, "PLC arm ring restarted")

    def _boot(self, plc: str, got: Reading, now: float, batch: Batch) -> None:
        """A PLC's boot id: adopted the first time, and a restart when it changes."""
        streams = self.streams
        boot_id = int(got.scalars["plc_boot_id" if plc == "conveyor" else "boot_id"])
        if got.restarted:
            was = f"boot id {streams.boot[plc]} -> {boot_id}"
            streams.take_boot(plc, boot_id, batch, restarted=True)
            if plc == "conveyor":
                key_boot = boot_id
                if got.rekey:  # same boot id, rings from 1: its tracking ids will repeat
                    key_boot = derived_boot(boot_id, streams.epoch["induct"])
                    was = f"rings back to 0 under boot id {boot_id}; parcel keys now use {key_boot}"
                batch.meta["key_boot.conveyor"] = str(key_boot)
                closed = self.parcels.conveyor_restarted(key_boot, now, batch)
                what = f"{closed} parcels it tracked recorded lost (plc_restart)"
            else:
                self.arms.restart(int(got.scalars["arm.head"]), int(got.scalars["arm.ack"]))
                self.parcels.diverter_restarted(batch)
                what = "its arms are gone; armed parcels go round"
            self._encoder_watch.reset()
            self.faults.event(Fault.PLC_RESTARTED, f"{plc} PLC restarted ({was}): {what}", batch)
        elif streams.first_boot(plc, boot_id):
            streams.take_boot(plc, boot_id, batch, restarted=False)
            if plc == "conveyor":
                batch.meta["key_boot.conveyor"] = str(boot_id)
                self.parcels.adopt_boot(boot_id, batch)

    def _take_conveyor(self, conv: Reading, batch: Batch) -> None:
        sc = conv.scalars
        enc = int(sc["encoder_count"])
        speed = float(sc["speed_actual"])
        why = self._encoder_watch.check(enc, conv.sent_at, conv.received_at, speed)
        if why is not None:
            self._encoder_suspect(why, batch)
        self.parcels.encoder, self.parcels.speed_mps = enc, speed
        self.conveyor_sample = (enc, conv.sent_at, conv.received_at) if why is None else None
        self._conveyor_faults(int(sc["faults"]), int(sc["jam_eye"]), batch)

    def _liveness(self, plc: str, got: Reading, now: float, batch: Batch) -> None:
        fault = Fault.CONVEYOR_HEARTBEAT_LOST if plc == "conveyor" else Fault.DIVERTER_HEARTBEAT_LOST
        lost = self._heartbeat[plc].update(got.ok, int(got.scalars["plc_heartbeat"]) if got.ok else None, now)
        if lost:
            self.faults.raise_(fault, "no heartbeat change" if got.ok else "link down", batch)
        elif got.ok:
            self.faults.clear(fault, batch)

    def _conveyor_faults(self, bits: int, jam_eye: int, batch: Batch) -> None:
        f = ConveyorFault(bits)
        for bit, fault in CONVEYOR_BITS.items():
            if bit in f:
                if fault == Fault.ENCODER_FAULT and fault not in self.faults:
                    self._encoder_suspect("the conveyor PLC reports an encoder fault", batch)
                self.faults.raise_(fault, f"jam at eye {jam_eye}" if fault == Fault.JAM else "", batch)
            elif not (fault == Fault.HOST_WATCHDOG and self._div_fault_bits & DiverterFault.HOST_WATCHDOG):
                self.faults.clear(fault, batch)  # (the watchdog fault is shared with the diverter's bit)
        self._conv_fault_bits = bits

    def _diverter_faults(self, bits: int, batch: Batch) -> None:
        f = DiverterFault(bits)
        conveyor_watchdog = ConveyorFault.HOST_WATCHDOG in ConveyorFault(self._conv_fault_bits)
        for bit, fault in DIVERTER_BITS.items():
            if bit in f:
                self.faults.raise_(fault, "diverter PLC", batch)
            elif not (fault == Fault.HOST_WATCHDOG and conveyor_watchdog):  # shared with the conveyor's bit
                self.faults.clear(fault, batch)
        self._div_fault_bits = bits

    def _encoder_suspect(self, detail: str, batch: Batch) -> None:
        """Every position anchored before now is suspect: cancel live arms, re-anchor at the scanner."""
        if self._glitch_cycle == self.metrics.cycles:  # seen twice in one cycle (our check and the PLC's bit)
            return
        self._glitch_cycle = self.metrics.cycles
        self.metrics.glitches += 1
        self.faults.event(Fault.ENCODER_GLITCH, detail, batch)
        self.parcels.encoder_glitch(self.clock(), batch)

    def _supervise(self, conv: Reading, div: Reading, now: float, batch: Batch, *, plc_ready: bool) -> Outputs:
        """The unit and the belt: the supervisor's decisions to the batch and the outputs."""
        sc = conv.scalars
        belt = BeltReading(int(sc["belt_state"]), int(sc["belt_command_ack"]), int(sc["belt_command_result"])) \
            if conv.ok else None
        obs = Observed(
            now=now, belt=belt, active=frozenset(self.faults.active), raised=tuple(self.faults.take_raised()),
            diverter_latched=bool(self._div_fault_bits & DIVERTER_LATCHED), diverter_seen=div.ok,
            operator=tuple(self.operator), plc_ready=plc_ready,
        )
        self.operator.clear()
        a = self.supervisor.step(obs)
        t = self.wall()
        for kind, name, code, detail in a.events:
            batch.unit_event(t, kind, name, code, detail)
        for level, msg in a.notes:
            log.log(level, msg)
        batch.commands_done += [(result, cid) for cid, result in a.operator_results]
        batch.meta.update(a.meta)
        return Outputs(a.belt_command, a.diverter_reset)


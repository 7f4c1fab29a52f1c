"""When an arm may go out: before its cycle's commit only for a decision an earlier cycle stored,
and from the diverter's answer alone only when nothing in it needs the full decide first.

Pure logic, no PLC: the parcel flow and the decider with real parts (tracking table, arm queue,
fault book, unit); the cycle's I/O around them is covered over loopback in test_cycle_overlap."""

from __future__ import annotations

from pathlib import Path

from control.faults import Fault
from control.packml import PackMLUnit
from control.service.alarms import FaultBook
from control.service.arms import ArmQueue
from control.service.decide import Decider, Reading
from control.service.metrics import Metrics
from control.service.parcels import ParcelFlow
from control.service.settings import ServiceSettings
from control.service.streams import StreamBook
from control.service.supervisor import Supervisor
from control.service.watch import follows
from control.store import Batch
from control.tracking import Geometry, wrap
from plant.codes import ArmAction, DiverterFault, PackMLCommand, PackMLState
from plant.site import load_site
from tests.control.test_parcels import NoReadRouter

SITE = load_site(Path(__file__).resolve().parents[2] / "config" / "site.yaml")
CFG = ServiceSettings()
SPEED = float(SITE.sorter.speed_mps)


def parts(state: PackMLState = PackMLState.EXECUTE) -> tuple[ParcelFlow, Decider]:
    unit = PackMLUnit(initial=state)
    faults = FaultBook(unit, lambda: 0.0)
    g = Geometry.from_site(SITE)
    arms = ArmQueue(32)
    streams = StreamBook(lambda: 0.0, faults)
    metrics = Metrics()
    f = ParcelFlow(SITE, g, CFG, NoReadRouter(), None, unit=unit, faults=faults, arms=arms, streams=streams,
                   metrics=metrics, clock=lambda: 0.0, wall=lambda: 0.0, boot_id=5)
    f.speed_mps = SPEED
    d = Decider(CFG, g, unit=unit, supervisor=Supervisor(unit=unit), faults=faults, streams=streams, arms=arms,
                parcels=f, metrics=metrics, decoder=None, speed_mps=SPEED, clock=lambda: 0.0, wall=lambda: 0.0)
    return f, d


def routed(f: ParcelFlow, tid: int, lead: int, b: Batch) -> int:
    """A parcel inducted, scanned and routed (no camera: to the no-read chute); its fire count."""
    g = f.geometry
    f.on_induct({"tracking_id": tid, "leading_count": lead, "trailing_count": lead + 200}, b)
    f.on_scan({"tracking_id": tid, "trigger_count": lead + g.scanner_counts, "lap": 0}, b)
    f.take_decodes(0.0, b)
    i = f.table.get(f.key(tid))
    assert i is not None and int(f.table.chute[i]) > 0
    return int(f.table.fire[i])


def due_at(f: ParcelFlow, fire: int) -> int:
    """An encoder count at which a parcel with this fire count is due to be armed."""
    return wrap(fire - f.geometry.arm_horizon_counts // 2)


def test_an_arm_for_a_decision_of_this_cycle_waits_for_the_commit_and_one_stored_before_does_not() -> None:
    f, _ = parts()
    b = Batch()
    fire_a = routed(f, 1, 1000, b)
    f.committed(0.0)  # parcel 1's decision is stored
    fire_b = routed(f, 2, 1000 + 400, b)  # parcel 2's is in this cycle's batch only
    f.encoder = due_at(f, max(fire_a, fire_b))
    f.cycle_pass(0.0, b, may_arm=True)
    assert [e["tracking_id"] for e in f.arms.pending] == [1, 2]  # the stored decision first
    assert [e["tracking_id"] for e in f.arms.to_write(committed=False)] == [1]
    f.committed(0.0)
    assert [e["tracking_id"] for e in f.arms.to_write(committed=False)] == [1, 2]
    assert len(b.ring_events) == 2  # both commands are stored, whenever they go out


def test_a_held_arm_keeps_every_later_seq_behind_the_commit() -> None:
    """Seqs reach the PLC in order: nothing after a held command goes before the commit."""
    q = ArmQueue(32)
    q.queue(1 << 32 | 1, 5000, 3, ArmAction.ARM, 0.0, hold=True)
    q.queue(1 << 32 | 2, 6000, 4, ArmAction.ARM, 0.0)
    assert q.to_write(committed=False) == []
    assert [e["seq"] for e in q.to_write()] == [1, 2]
    q.written(q.to_write(), 0.0)
    assert not q.held and not q.pending


def test_a_failed_commit_keeps_the_decision_unstored() -> None:
    f, _ = parts()
    b = Batch()
    fire = routed(f, 1, 1000, b)
    f.uncommitted()  # the batch with the routing decision failed to commit
    f.encoder = due_at(f, fire)
    f.cycle_pass(0.0, b, may_arm=True)
    assert f.arms.pending and f.arms.to_write(committed=False) == []


def diverter(enc: int, t: float, *, faults: int = 0, ack: int = 0, restarted: bool = False) -> Reading:
    sc: dict[str, float | int | bool] = {"plc_heartbeat": 1, "boot_id": 9, "encoder_count": enc, "faults": faults,
                                         "arm.ack": ack, "arm.head": ack, "arm_result.head": 0, "confirm.head": 0}
    return Reading(ok=True, scalars=sc, restarted=restarted, sent_at=t, received_at=t + 0.0005)


def ready(state: PackMLState = PackMLState.EXECUTE) -> tuple[ParcelFlow, Decider, int]:
    """A routed, stored parcel, due at the returned count; the conveyor read it 10 ms earlier."""
    f, d = parts(state)
    b = Batch()
    enc = due_at(f, routed(f, 1, 1000, b))
    f.committed(0.0)
    travel = round(SPEED * 1000.0 * f.geometry.counts_per_mm * 0.010)
    d.conveyor_sample = (wrap(enc - travel), 0.0, 0.0005)
    return f, d, enc


def test_the_diverters_answer_arms_what_is_due_at_its_count() -> None:
    f, d, enc = ready()
    assert d.arm_early(diverter(enc, 0.010), 0.010, Batch()) == 1
    assert [e["tracking_id"] for e in f.arms.to_write(committed=False)] == [1]


def test_no_early_arm_unless_everything_in_the_answer_is_as_expected() -> None:
    f, d, enc = ready(PackMLState.HELD)
    assert d.arm_early(diverter(enc, 0.010), 0.010, Batch()) == 0, "unit held"
    f, d, enc = ready()
    assert d.arm_early(diverter(enc, 0.010, faults=int(DiverterFault.HOST_WATCHDOG)), 0.010, Batch()) == 0
    assert d.arm_early(diverter(enc, 0.010, faults=int(DiverterFault.DIVERTER)), 0.010, Batch()) == 0
    assert d.arm_early(diverter(enc, 0.010, restarted=True), 0.010, Batch()) == 0
    d.arms.ack = 3  # the PLC's ring went back (it lost its state): the full decide adopts it first
    assert d.arm_early(diverter(enc, 0.010, ack=2), 0.010, Batch()) == 0
    assert not f.arms.pending


def test_no_early_arm_on_a_count_that_cannot_follow_the_conveyors() -> None:
    f, d, enc = ready()
    jumped = wrap(enc + round(300 * f.geometry.counts_per_mm))  # 300 mm more than 10 ms of belt
    assert d.arm_early(diverter(jumped, 0.010), 0.010, Batch()) == 0
    d.conveyor_sample = None  # the conveyor's last read failed: no count to compare with
    assert d.arm_early(diverter(enc, 0.010), 0.010, Batch()) == 0
    assert not f.arms.pending


def test_no_early_arm_while_an_arm_stopping_fault_is_active() -> None:
    for fault in (Fault.DIVERTER_HEARTBEAT_LOST, Fault.ENCODER_MISMATCH):
        f, d, enc = ready()
        d.faults.raise_(fault, "test", Batch())
        assert d.arm_early(diverter(enc, 0.010), 0.010, Batch()) == 0, fault
        assert not f.arms.pending


def test_after_an_early_pass_the_conveyor_pass_arms_only_this_cycles_decisions() -> None:
    """What came due between the diverter's count and the conveyor's waits for the next cycle's
    early pass; a decision made this cycle is armed now (after the commit)."""
    f, _ = parts()
    b = Batch()
    fire_old = routed(f, 1, 1000, b)
    f.committed(0.0)
    fire_new = routed(f, 2, 1000 + 400, b)
    f.encoder = due_at(f, max(fire_old, fire_new))
    f.cycle_pass(0.0, b, may_arm=True, fresh_only=True)
    assert [e["tracking_id"] for e in f.arms.pending] == [2]
    assert f.arms.to_write(committed=False) == []


def test_a_count_follows_another_by_the_belt_travel_between_them() -> None:
    cpm = 10.0
    before = (1_000, 0.0, 0.001)
    per_10ms = round(2.0 * 1000 * cpm * 0.010)  # 2 m/s
    assert follows(before, (1_000 + per_10ms, 0.010, 0.011), 2.0, cpm, 5.0, 0.0)
    assert not follows(before, (1_000 + 5 * per_10ms, 0.010, 0.011), 2.0, cpm, 5.0, 0.0)
    assert not follows(before, (1_000 - 10 * per_10ms, 0.010, 0.011), 2.0, cpm, 5.0, 0.0)  # backwards
    assert follows((2**32 - 100, 0.0, 0.001), (per_10ms - 100, 0.010, 0.011), 2.0, cpm, 5.0, 0.0)  # 32-bit wrap


def test_slots_written_alone_leave_the_head_to_the_beat_and_numbering_follows_the_ack() -> None:
    """A PLC that takes slots by their own seq: the queue knows which seq the PLC's head should
    show, and a restarted controller numbers on after the PLC's ack when the head trails it."""
    q = ArmQueue(32)
    for tid in (1, 2, 3):
        q.queue(tid, 1000 * tid, 4, ArmAction.ARM, 0.0)
    q.written(q.to_write(), 0.001, with_head=False)
    assert (q.last_written, q.head_sent) == (3, 0)  # the beat writes arm.head = 3
    q.head_sent = 3
    q.queue(4, 4000, 4, ArmAction.ARM, 0.0)
    q.written(q.to_write(), 0.002)  # base interface: slots and head in the same write
    assert (q.last_written, q.head_sent) == (4, 4)
    fresh = ArmQueue(32)  # a restarted controller: head 3 written on a beat, seqs up to 7 taken
    assert not fresh.adopt_heads(3, 7)
    assert fresh.next_seq == 8 and (fresh.last_written, fresh.head_sent) == (7, 3)


def conveyor(enc: int, t: float, *, ok: bool = True) -> Reading:
    sc: dict[str, float | int | bool] = {
        "plc_heartbeat": 1, "plc_boot_id": 5, "encoder_count": enc, "speed_actual": SPEED, "faults": 0,
        "jam_eye": 0, "belt_state": int(PackMLState.EXECUTE), "belt_command_ack": 0, "belt_command_result": 0,
        "watchdog_ms": CFG.watchdog_ms, "speed_setpoint": SPEED, "induct.head": 0, "scan.head": 0,
    }
    return Reading(ok=ok, scalars=sc if ok else {}, sent_at=t, received_at=t + 0.0005)


def before_horizon() -> tuple[ParcelFlow, Decider, int]:
    """A routed, stored parcel; the returned count is half a cycle of belt short of its arm
    horizon (not due), so it is due at that count projected one cycle on."""
    f, d = parts()
    b = Batch()
    fire = routed(f, 1, 1000, b)
    f.committed(0.0)
    half_cycle = round(SPEED * 1000.0 * f.geometry.counts_per_mm * CFG.cycle_s / 2)
    return f, d, wrap(fire - f.geometry.arm_horizon_counts - half_cycle)


def test_a_cycle_arms_ahead_at_the_diverters_count_projected_from_its_last_answer() -> None:
    f, d, enc = before_horizon()
    d.decide(conveyor(enc, 0.0), diverter(enc, 0.0), 0.0, Batch())
    assert not f.arms.pending  # not due at the count read
    assert d.arm_ahead(0.00025, Batch())  # projected to the instant it was read: still not due
    assert not f.arms.pending
    d.decide(conveyor(enc, 0.0), diverter(enc, 0.0), 0.0, Batch())
    assert d.arm_ahead(CFG.cycle_s, Batch())  # the next cycle: a cycle of belt on, due
    assert [e["tracking_id"] for e in f.arms.to_write(committed=False)] == [1]
    assert f.arms.due_at[f.arms.pending[0]["seq"]] == CFG.cycle_s


def test_no_arm_ahead_from_an_answer_the_last_decide_did_not_find_whole() -> None:
    t = CFG.cycle_s
    f, d, enc = before_horizon()
    assert not d.arm_ahead(t, Batch()), "no cycle yet"
    cases: dict[str, tuple[Reading, Reading]] = {
        "conveyor read failed": (conveyor(enc, 0.0, ok=False), diverter(enc, 0.0)),
        "diverter restarted": (conveyor(enc, 0.0), diverter(enc, 0.0, restarted=True)),
        "diverter fault bit": (conveyor(enc, 0.0), diverter(enc, 0.0, faults=int(DiverterFault.DIVERTER))),
    }
    for why, (conv, div) in cases.items():
        f, d, enc = before_horizon()
        d.decide(conv, div, 0.0, Batch())
        assert not d.arm_ahead(t, Batch()), why
        assert not f.arms.pending, why
    f, d, enc = before_horizon()
    d.decide(conveyor(enc, 0.0), diverter(enc, 0.0), 0.0, Batch())
    assert not d.arm_ahead(3 * CFG.cycle_s, Batch()), "a late cycle reads first"
    d.unit.command(PackMLCommand.HOLD)
    assert d.unit.state == PackMLState.HOLDING
    assert not d.arm_ahead(t, Batch()), "unit holding"
    assert not f.arms.pending

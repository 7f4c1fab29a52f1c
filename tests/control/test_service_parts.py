"""The controller's pure parts, without a PLC: heartbeat and encoder watches, the arm queue,
stream bookkeeping and the fault book."""

from __future__ import annotations

from pathlib import Path

from control.faults import Fault
from control.lifecycle import ScanStatus
from control.packml import PackMLUnit
from control.plc import RingRead
from control.plc.link import Gap
from control.service.alarms import FaultBook
from control.service.arms import ArmQueue
from control.service.feeds import DecodeResult
from control.service.streams import StreamBook
from control.service.watch import EncoderWatch, HeartbeatWatch
from control.store import Batch
from plant.codes import ArmAction, PackMLState


def test_heartbeat_lost_when_frozen_or_unanswered_and_back_when_it_moves() -> None:
    w = HeartbeatWatch(1.0)
    assert not w.update(False, None, 0.0)  # counts from the first cycle, not from zero
    assert not w.ever_ok
    assert w.update(False, None, 1.5)  # never answered for 1.5 s
    assert not w.update(True, 7, 1.6)
    assert not w.update(True, 7, 2.5)
    assert w.update(True, 7, 2.7)  # answers, but its program is not counting
    assert not w.update(True, 8, 2.8)
    assert w.ever_ok


def test_encoder_steps_the_belt_explains_pass_and_jumps_do_not() -> None:
    w = EncoderWatch(counts_per_mm=1.0, tolerance_mm=60.0)
    assert w.check(2**32 - 10, 0.000, 0.001, 2.5) is None  # first sample: nothing to compare
    assert w.check(15, 0.010, 0.011, 2.5) is None  # 25 mm in 10 ms at 2.5 m/s, across the 32-bit wrap
    why = w.check(15 + 25 + 400, 0.020, 0.021, 2.5)  # a 400-count jump on top of the travel
    assert why is not None and "moved 425 counts" in why
    # a slow reply widens what is plausible instead of looking like a jump
    assert w.check(440 + 250, 0.030, 0.131, 2.5) is None
    assert w.check(690 - 200, 0.140, 0.141, 2.5) is not None  # backwards


def test_arm_queue_numbers_once_and_respects_the_ring() -> None:
    q = ArmQueue(ring_size=4)
    e1 = q.queue(11, 1000, 3, ArmAction.ARM, now=1.0)
    e2 = q.queue(12, 2000, 4, ArmAction.CANCEL, now=1.0)
    assert (e1["seq"], e2["seq"]) == (1, 2) and q.room() == 2
    chunk = q.to_write()
    assert q.written(chunk, 1.004) == [1.004 - 1.0]  # only arms count for the decision latency
    assert q.pending == [] and q.room() == 2  # written, not yet taken by the PLC
    q.ack = 2
    assert q.room() == 4
    assert q.result(1) == (11, 1.0) and q.result(1) == (None, None)


def test_arm_answers_find_their_parcel_by_command_seq_not_tracking_id() -> None:
    q = ArmQueue(ring_size=4)
    old = (5 << 32) | 7  # boot 5, tracking id 7
    new = (6 << 32) | 7  # the restarted PLC gave id 7 to another parcel
    e = q.queue(old, 100, 3, ArmAction.CANCEL, now=0.0)
    assert e["tracking_id"] == 7  # the PLC sees its own tracking id
    q.queue(new, 200, 4, ArmAction.ARM, now=0.0)
    assert q.result(e["seq"])[0] == old
    q.restart(head=0, ack=0)
    assert q.next_seq == 1 and q.pending == [] and q.result(2) == (None, None)


def test_arm_queue_restarts_numbering_after_a_plc_restart() -> None:
    q = ArmQueue(ring_size=8, next_seq=41, ack=40)
    assert not q.adopt_heads(head=40, ack=40)  # where we were
    assert q.next_seq == 41
    assert not q.adopt_heads(head=45, ack=40)  # the PLC is ahead of us (we lost a commit)
    assert q.next_seq == 46
    q.queue(1, 1, 1, ArmAction.ARM, 0.0)
    assert q.adopt_heads(head=0, ack=0)  # the PLC came back empty
    assert q.next_seq == 1 and q.pending == []


def test_streams_apply_each_entry_once_and_report_gaps_and_restarts() -> None:
    book = StreamBook(wall=lambda: 5.0, faults=FaultBook(PackMLUnit(), lambda: 5.0))
    seen: list[int] = []
    batch = Batch()
    entries = tuple({"seq": s, "x": s} for s in (3, 4))
    book.take("conveyor", "scan", RingRead(head=4, entries=entries, gaps=(Gap(1, 2),)), batch,
              lambda e, b: seen.append(e["seq"]))
    book.take("conveyor", "scan", RingRead(head=4, entries=entries), batch, lambda e, b: seen.append(e["seq"]))
    assert seen == [3, 4] and book.lost == 2 and book.ack_due["scan"] == 4
    assert [(e[1], e[2]) for e in batch.unit_events] == [("alarm", "event_sequence_gap"),
                                                         ("alarm_clear", "event_sequence_gap")]
    book.take("conveyor", "scan", RingRead(head=1, restarted=True), batch, lambda e, b: seen.append(e["seq"]))
    assert book.last_seq["scan"] == 0 and book.stream("scan") == "scan#1"
    assert batch.meta["epoch.scan"] == "1"
    book.take("conveyor", "scan", RingRead(head=1, entries=({"seq": 1},)), batch, lambda e, b: seen.append(e["seq"]))
    assert seen == [3, 4, 1]
    assert [r[1] for r in batch.ring_events][-1] == "scan#1"


def test_a_new_boot_id_restarts_every_ring_of_that_plc() -> None:
    book = StreamBook(wall=lambda: 5.0, faults=FaultBook(PackMLUnit(), lambda: 5.0))
    batch = Batch()
    assert book.first_boot("conveyor", 77) and not book.restarted("conveyor", 77)
    book.take_boot("conveyor", 77, batch, restarted=False)
    book.last_seq.update(induct=40, scan=90)
    assert not book.restarted("conveyor", 77) and not book.restarted("conveyor", 0)  # 0: not a boot id
    assert book.restarted("conveyor", 78)
    book.take_boot("conveyor", 78, batch, restarted=True)
    # read again from seq 1 in new epochs, though the restarted PLC may already be past seq 40
    assert book.last_seq["induct"] == 0 and book.last_seq["scan"] == 0
    assert (book.stream("induct"), book.stream("scan"), book.stream("confirm")) == ("induct#1", "scan#1", "confirm")
    assert batch.meta["boot.conveyor"] == "78"


def test_fault_book_raises_once_and_reports_what_was_raised() -> None:
    unit = PackMLUnit()
    book = FaultBook(unit, lambda: 1.0)
    batch = Batch()
    book.raise_(Fault.JAM, "eye 2", batch)
    book.raise_(Fault.JAM, "eye 2", batch)  # already active: nothing again
    assert book.take_raised() == [Fault.JAM] and book.take_raised() == []
    assert unit.state == PackMLState.STOPPED  # the book reacts to nothing: the supervisor does
    assert Fault.JAM in book and book.no_entry() and unit.tags.alarms == {"jam": "eye 2"}
    book.event(Fault.UNEXPECTED_PARCEL, "chute 3", batch)
    assert Fault.UNEXPECTED_PARCEL not in book
    book.clear(Fault.JAM, batch)
    assert book.names() == [] and not book.no_entry()
    assert [(e[1], e[2]) for e in batch.unit_events] == [
        ("alarm", "jam"), ("alarm", "unexpected_parcel"), ("alarm_clear", "unexpected_parcel"), ("alarm_clear", "jam"),
    ]


def test_encoder_samples_across_a_link_outage_or_with_a_stale_value_are_no_glitch() -> None:
    w = EncoderWatch(counts_per_mm=1.0, tolerance_mm=60.0, max_age_s=0.05, max_gap_s=0.25)
    assert w.check(1000, 0.0, 0.001, 2.5) is None
    # the link was down 7 s: the belt ran 1 s, then its watchdog held it (speed 0 now)
    assert w.check(1000 + 2831, 7.4, 7.401, 0.0) is None
    # a value up to 50 ms old: 118 counts in 13 ms at 2.5 m/s is plausible
    assert w.check(3831 + 118, 7.413, 7.414, 2.5) is None
    assert w.check(3949 + 118 + 400, 7.424, 7.425, 2.5) is not None  # a real jump still is one


def test_the_two_plcs_encoders_must_agree() -> None:
    from control.service.watch import EncoderAgreement

    a = EncoderAgreement(counts_per_mm=1.0, tolerance_mm=60.0, persist_s=0.5, max_age_s=0.0)
    t = 0.0
    for _ in range(5):
        t += 0.01
        assert a.check(10_000, 10_000 + 20, spread_s=0.002, speed_mps=2.5, now=t) is None and a.agree
    for _ in range(30):  # a value stuck for 0.3 s: those cycles arm nothing, but it is no mismatch
        t += 0.01
        assert a.check(10_000, 11_500, 0.002, 2.5, t) is None and not a.agree
    for _ in range(25):
        t += 0.01
        why = a.check(10_000, 11_500, 0.002, 2.5, t)
    assert why is not None and "+1500 counts" in why  # an offset that lasts half a second is one
    for _ in range(10):
        t += 0.01
        assert a.check(20, 2**32 - 5, 0.002, 2.5, t) is not None  # agreeing again, across the wrap...
    for _ in range(15):
        t += 0.01
        why = a.check(20, 2**32 - 5, 0.002, 2.5, t)
    assert why is None and a.agree  # ...for 0.2 s


def test_without_a_camera_scans_are_no_reads_at_once_and_raise_no_scanner_alarm() -> None:
    """`sortctl run --no-camera` used to raise `scanner_timeout` after five parcels, for good."""
    from control.lifecycle import ParcelState, ScanStatus
    from control.service.decodes import DecodeJoin
    from control.service.metrics import Metrics
    from control.service.settings import ServiceSettings
    from control.tracking import Geometry, TrackingTable
    from plant.site import load_site

    site = load_site(Path(__file__).resolve().parents[2] / "config" / "site.yaml")
    g = Geometry.from_site(site)
    table = TrackingTable(g, 64)
    book = FaultBook(PackMLUnit(), lambda: 0.0)
    join = DecodeJoin(table, g, ServiceSettings(), None, faults=book, metrics=Metrics(), identity={},
                      key_of=lambda tid: tid)
    for tid in range(1, 11):
        table.induct(tid, tid * 1000, tid * 1000 + 200)
        table.scan(tid, tid * 1000 + g.scanner_counts, 0, 0.0, 0.5)
    batch = Batch()
    ready, reqs = join.take(now=5.0, batch=batch, encoder=20_000)  # long past every deadline
    assert len(ready) == 10 and {r.status for r in reqs} == {ScanStatus.NO_READ}
    assert Fault.SCANNER_TIMEOUT not in book and batch.unit_events == []
    assert all(table.state[i] == ParcelState.SCANNED for i in ready)


class _Stream:
    """A camera stream that is up or not and delivers no decodes: what a decode join sees of a
    camera whose frames never come."""

    def __init__(self) -> None:
        self.healthy = False
        self.down_for = 0.0

    def poll(self) -> list[DecodeResult]:
        return []


def _timeouts_after_the_stream_comes_up(triggers: list[int], up_at: int) -> tuple[list[ScanStatus], FaultBook]:
    """Parcels scanned at ``triggers`` (encoder counts), the camera stream up from ``up_at``,
    no decode ever: their statuses once every deadline has passed, and the fault book."""
    from control.service.decodes import DecodeJoin
    from control.service.metrics import Metrics
    from control.service.settings import ServiceSettings
    from control.tracking import Geometry, TrackingTable
    from plant.site import load_site

    site = load_site(Path(__file__).resolve().parents[2] / "config" / "site.yaml")
    g = Geometry.from_site(site)
    table = TrackingTable(g, 64)
    book = FaultBook(PackMLUnit(), lambda: 0.0)
    stream = _Stream()
    join = DecodeJoin(table, g, ServiceSettings(), stream, faults=book, metrics=Metrics(), identity={},
                      key_of=lambda tid: tid)
    for tid, trigger in enumerate(triggers, start=1):
        table.induct(tid, trigger - g.scanner_counts, trigger - g.scanner_counts + 200)
        table.scan(tid, trigger, 0, 0.0, 0.5)
    stream.healthy = True
    batch = Batch()
    join.take(now=0.1, batch=batch, encoder=up_at)  # the first cycle that sees the stream up
    _, reqs = join.take(now=5.0, batch=batch, encoder=up_at + 50_000)  # every deadline past
    return [r.status for r in reqs], book


def test_scans_from_before_the_camera_stream_came_up_raise_no_scanner_alarm() -> None:
    """After a controller restart the scans of the seconds it was down are read at once; their
    frames went nowhere. They are routed as timeouts but are no sign of a broken scanner (the
    alarm used to be raised, MAJOR, and cleared again, after every restart); scans triggered
    once the stream is up and still not decoded do raise it."""
    from control.service.settings import ServiceSettings

    n = ServiceSettings().scanner_timeout_alarm
    up_at = 100_000
    before = [up_at - 1000 * k for k in range(1, 2 * n + 1)]
    statuses, book = _timeouts_after_the_stream_comes_up(before, up_at)
    assert statuses == [ScanStatus.TIMEOUT] * 2 * n and Fault.SCANNER_TIMEOUT not in book
    after = [up_at + 1000 * k for k in range(n)]
    statuses, book = _timeouts_after_the_stream_comes_up(before + after, up_at)
    assert statuses == [ScanStatus.TIMEOUT] * 3 * n and Fault.SCANNER_TIMEOUT in book


def test_tracking_margins_have_one_default() -> None:
    """confirm_margin_mm defaulted to 1200 in the settings and 1500 in tracking.py."""
    from control import tracking
    from control.service.settings import ServiceSettings
    from plant.site import load_site

    site = load_site(Path(__file__).resolve().parents[2] / "config" / "site.yaml")
    s = ServiceSettings()
    from_settings = tracking.Geometry.from_site(
        site, arm_horizon_mm=s.arm_horizon_mm, latency_budget_s=s.latency_budget_s,
        confirm_margin_mm=s.confirm_margin_mm, lost_margin_mm=s.lost_margin_mm,
        anchor_tolerance_mm=s.anchor_tolerance_mm,
    )
    plain = tracking.Geometry.from_site(site)
    assert (plain.confirm_margin_counts, plain.lost_margin_counts, plain.anchor_tolerance_counts,
            plain.arm_horizon_counts) == (from_settings.confirm_margin_counts, from_settings.lost_margin_counts,
                                          from_settings.anchor_tolerance_counts, from_settings.arm_horizon_counts)


def test_the_interface_doc_states_the_request_timeout_the_service_uses() -> None:
    from control.service.settings import ServiceSettings

    doc = (Path(__file__).resolve().parents[2] / "docs" / "plc-interface.md").read_text()
    assert f"`plc_timeout_s`, default {ServiceSettings().plc_timeout_s:g} s" in doc

"""Bookkeeping of the PLC event streams: the last seq stored, stream epochs, acks due.

Every stream is a ring buffer with a sequence number. The store keys each entry by (PLC,
stream, seq), which a PLC restart would break (its seqs start at 1 again): each restart opens a
new stream epoch, stored as ``ring#epoch``, so the old numbering is never confused with the new.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from control.faults import Fault
from control.plc import RingRead
from control.store import Batch

__all__ = ["IN_RINGS", "StreamBook"]

log = logging.getLogger(__name__)

IN_RINGS = ("induct", "scan", "arm_result", "confirm")  # PLC -> host, acknowledged by us
ALL_RINGS = (*IN_RINGS, "arm")  # arm: host -> PLC commands


def plc_of(ring: str) -> str:
    return "conveyor" if ring in ("induct", "scan") else "diverter"


class StreamBook:
    """Where each stream stands; ``take`` turns a ring read into entries to apply, once each."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self.wall = wall
        self.last_seq: dict[str, int] = dict.fromkeys(IN_RINGS, 0)
        self.epoch: dict[str, int] = dict.fromkeys(ALL_RINGS, 0)
        self.ack_due: dict[str, int] = {}
        self.lost = 0  # entries overwritten in a PLC ring before we read them

    def restore(self, meta: dict[str, str], last_seqs: dict[str, int]) -> None:
        """Continue from what the store holds (``last_seqs`` keyed ``plc.stream``)."""
        for ring in self.epoch:
            self.epoch[ring] = int(meta.get(f"epoch.{ring}", "0") or 0)
        for ring in self.last_seq:
            self.last_seq[ring] = last_seqs.get(f"{plc_of(ring)}.{self.stream(ring)}", 0)

    def stream(self, ring: str) -> str:
        e = self.epoch[ring]
        return ring if e == 0 else f"{ring}#{e}"

    def new_epoch(self, ring: str, batch: Batch) -> None:
        self.epoch[ring] += 1
        batch.meta[f"epoch.{ring}"] = str(self.epoch[ring])

    def take(self, plc: str, ring: str, got: RingRead | None, batch: Batch,
             apply: Callable[[dict[str, int], Batch], None]) -> None:
        """Store and apply every new entry in order; a PLC restart opens a new epoch and a gap
        is an alarm event naming the lost seqs, never guessed at."""
        if got is None:
            return
        if got.restarted:
            log.warning("%s.%s: PLC head went back to %d: PLC restarted, resynchronising", plc, ring, got.head)
            batch.unit_event(self.wall(), "ring_restart", f"{plc}.{ring}", got.head, "")
            self.last_seq[ring] = 0
            self.new_epoch(ring, batch)
            return
        if got.gaps:
            self.lost += got.lost
            detail = ", ".join(f"{g.first}-{g.last}" for g in got.gaps)
            batch.unit_event(self.wall(), "alarm", "event_sequence_gap", int(Fault.EVENT_SEQUENCE_GAP),
                             f"{plc}.{ring}: {detail}")
            log.error("%s.%s: events lost: %s", plc, ring, detail)
        t = self.wall()
        stream = self.stream(ring)
        for e in got.entries:
            seq = int(e["seq"])
            if seq <= self.last_seq[ring]:
                continue
            batch.ring(plc, stream, seq, t, e)
            apply(e, batch)
            self.last_seq[ring] = seq
        self.last_seq[ring] = max(self.last_seq[ring], got.last_seq)
        self.ack_due[ring] = self.last_seq[ring]

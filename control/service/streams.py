"""Bookkeeping of the PLC event streams: the last seq stored, stream epochs, PLC boots, acks due.

Every stream is a ring buffer with a sequence number. The store keys each entry by (PLC,
stream, seq), which a PLC restart would break (its seqs start at 1 again): each restart opens a
new stream epoch, stored as ``ring#epoch``, so the old numbering is never confused with the new.

A restart is known from the PLC's boot id (a new value at every start of its program, read with
the cycle's scalars): every ring of that PLC opens a new epoch and is read again from seq 1, even
when the restarted PLC has already written more entries than we had stored (a head that went
back would not show that). A ring whose head goes back without a new boot id (a PLC that reset
one ring) opens a new epoch for that ring alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from control.faults import Fault
from control.plc import RingRead
from control.service.alarms import FaultBook
from control.store import Batch

__all__ = ["IN_RINGS", "PLC_RINGS", "StreamBook"]

log = logging.getLogger(__name__)

IN_RINGS = ("induct", "scan", "arm_result", "confirm")  # PLC -> host, acknowledged by us
ALL_RINGS = (*IN_RINGS, "arm")  # arm: host -> PLC commands
PLC_RINGS: dict[str, tuple[str, ...]] = {"conveyor": ("induct", "scan"), "diverter": ("arm_result", "confirm", "arm")}


def plc_of(ring: str) -> str:
    return "conveyor" if ring in ("induct", "scan") else "diverter"


class StreamBook:
    """Where each stream stands; ``take`` turns a ring read into entries to apply, once each."""

    def __init__(self, wall: Callable[[], float], faults: FaultBook) -> None:
        self.wall = wall
        self.faults = faults
        self.last_seq: dict[str, int] = dict.fromkeys(IN_RINGS, 0)
        self.epoch: dict[str, int] = dict.fromkeys(ALL_RINGS, 0)
        self.boot: dict[str, int] = dict.fromkeys(PLC_RINGS, 0)  # 0: none seen yet
        self.ack_due: dict[str, int] = {}
        self.lost = 0  # entries overwritten in a PLC ring before we read them

    def restore(self, meta: dict[str, str], last_seqs: dict[str, int]) -> None:
        """Continue from what the store holds (``last_seqs`` keyed ``plc.stream``)."""
        for ring in self.epoch:
            self.epoch[ring] = int(meta.get(f"epoch.{ring}", "0") or 0)
        for plc in self.boot:
            self.boot[plc] = int(meta.get(f"boot.{plc}", "0") or 0)
        for ring in self.last_seq:
            self.last_seq[ring] = last_seqs.get(f"{plc_of(ring)}.{self.stream(ring)}", 0)

    def stream(self, ring: str) -> str:
        e = self.epoch[ring]
        return ring if e == 0 else f"{ring}#{e}"

    def new_epoch(self, ring: str, batch: Batch) -> None:
        self.epoch[ring] += 1
        batch.meta[f"epoch.{ring}"] = str(self.epoch[ring])

    # ------------------------------------------------------------------------------ PLC boots
    def restarted(self, plc: str, boot_id: int) -> bool:
        """The PLC reports a boot id other than the one our records belong to."""
        return boot_id != 0 and self.boot[plc] != 0 and boot_id != self.boot[plc]

    def first_boot(self, plc: str, boot_id: int) -> bool:
        """The first boot id this store sees for the PLC (a new store, or one from before boot ids)."""
        return boot_id != 0 and self.boot[plc] == 0

    def take_boot(self, plc: str, boot_id: int, batch: Batch, *, restarted: bool) -> None:
        """Record the PLC's boot id; after a restart every ring of it starts a new epoch at seq 0."""
        if restarted:
            for ring in PLC_RINGS[plc]:
                self.new_epoch(ring, batch)
                if ring in self.last_seq:
                    self.last_seq[ring] = 0
                self.ack_due.pop(ring, None)
        self.boot[plc] = boot_id
        batch.meta[f"boot.{plc}"] = str(boot_id)

    # ------------------------------------------------------------------------------ entries
    def take(self, plc: str, ring: str, got: RingRead | None, batch: Batch,
             apply: Callable[[dict[str, int], Batch], None]) -> None:
        """Store and apply every new entry in order; a ring restart opens a new epoch and a gap
        is an alarm event naming the lost seqs, never guessed at."""
        if got is None:
            return
        if got.restarted:
            log.warning("%s.%s: PLC head went back to %d: ring restarted, resynchronising", plc, ring, got.head)
            batch.unit_event(self.wall(), "ring_restart", f"{plc}.{ring}", got.head, "")
            self.last_seq[ring] = 0
            self.new_epoch(ring, batch)
            return
        if got.gaps:
            self.lost += got.lost
            detail = ", ".join(f"{g.first}-{g.last}" for g in got.gaps)
            self.faults.event(Fault.EVENT_SEQUENCE_GAP, f"{plc}.{ring}: {detail}", batch)
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

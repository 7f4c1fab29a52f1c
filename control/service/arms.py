"""Arm commands on their way to the diverter PLC: numbering, flow control, write timing.

Commands are numbered once and for ever (the PLC executes each seq once, so a command written
again after a reconnect is harmless). A command is stored in the cycle's batch when it is
queued. It is written to the PLC before that batch commits when what it carries out is durable
already - an arm for a parcel whose routing decision an earlier cycle stored - and only after
the commit otherwise (``held``: an arm for a decision of this very cycle).

Why an arm need not wait for its own record: the record says which seq went to which parcel,
and the PLC keeps that too. A controller that dies between the write and the commit finds the
seq in the PLC's ``arm.head`` or, where the PLC takes a slot by its own seq and the head
trails on the beat, in its ``arm.ack`` (numbering continues after both), the answer carries the parcel's
tracking id and chute, and the parcel's stored state is the routed one either way (it becomes
"armed" only on the PLC's answer). What must not happen is an arm for a decision that is not
stored: a restarted controller could decide otherwise and record a correct divert as a
missort. The commit's fsync (0.6 ms at the median, 10-80 ms when the disk stalls) is thus off
the path of most decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plant.codes import ArmAction

__all__ = ["ArmQueue"]


@dataclass(slots=True)
class ArmQueue:
    """Commands stored but not yet written, and what the PLC has taken (``ack``)."""

    ring_size: int
    next_seq: int = 1
    ack: int = 0
    pending: list[dict[str, int]] = field(default_factory=list)  # queued, not yet written
    held: set[int] = field(default_factory=set)  # pending seqs that may go out only after the next commit
    due_at: dict[int, float] = field(default_factory=dict)  # command seq -> when it became due
    key_of: dict[int, int] = field(default_factory=dict)  # command seq -> parcel key it is for
    last_written: int = 0  # the newest seq whose slot reached the PLC
    head_sent: int = 0  # arm.head as last written (behind last_written while slots go out alone)

    def room(self) -> int:
        """Commands that may still be queued without overrunning the PLC's ring: every seq
        issued and not yet taken by the PLC (written or still pending) holds a slot."""
        return self.ring_size - (self.next_seq - 1 - self.ack)

    def queue(
        self, key: int, fire_count: int, chute: int, action: ArmAction, now: float, *, hold: bool = False
    ) -> dict[str, int]:
        """A new command for the parcel ``key`` (the caller stores it in this cycle's batch);
        ``hold``: written only once that batch has committed.

        The PLC knows the parcel by its tracking id (the key's low 32 bits); its answer is
        matched back to the key by the command seq, never by the tracking id, which a restarted
        conveyor PLC gives again to another parcel."""
        entry = {
            "seq": self.next_seq, "tracking_id": key & 0xFFFFFFFF, "fire_count": fire_count,
            "chute": chute, "action": int(action),
        }
        self.next_seq += 1
        self.pending.append(entry)
        if hold:
            self.held.add(entry["seq"])
        self.due_at[entry["seq"]] = now
        self.key_of[entry["seq"]] = key
        return entry

    def adopt_heads(self, head: int, ack: int) -> bool:
        """Continue the numbering where the PLC is. True when the PLC has restarted (its ack
        behind our numbering with nothing pending): numbering restarts at its ack + 1 and
        unwritten commands are dropped (the caller opens a new stream epoch)."""
        restarted = ack + 1 < self.next_seq - len(self.pending) and head < self.next_seq - 1 - len(self.pending)
        if restarted:
            self.pending.clear()
            self.held.clear()
            self.key_of.clear()
            self.due_at.clear()
            self.next_seq = max(head, ack) + 1
        else:  # a PLC that takes slots by their own seq may have taken some past its head
            self.next_seq = max(self.next_seq, head + 1, ack + 1)
        self.ack = ack
        self.head_sent, self.last_written = head, self.next_seq - 1 - len(self.pending)
        return restarted

    def restart(self, head: int, ack: int) -> None:
        """The PLC restarted (a new boot id): nothing pending will be taken or answered; the
        numbering continues where the PLC's ring is now (the caller opens a new stream epoch)."""
        self.pending.clear()
        self.held.clear()
        self.key_of.clear()
        self.due_at.clear()
        self.next_seq = max(head, ack) + 1
        self.ack = ack
        self.head_sent, self.last_written = head, self.next_seq - 1

    def to_write(self, *, committed: bool = True) -> list[dict[str, int]]:
        """The next commands to write: at most a ring's worth; before the cycle's commit
        (``committed=False``) only those up to the first held one (seqs go out in order)."""
        chunk = self.pending[: self.ring_size]
        if committed or not self.held:
            return chunk
        for n, e in enumerate(chunk):
            if e["seq"] in self.held:
                return chunk[:n]
        return chunk

    def stored(self) -> None:
        """The batch holding every queued command committed: none waits any more."""
        self.held.clear()

    def written(self, chunk: list[dict[str, int]], t: float, *, with_head: bool = True) -> list[float]:
        """``chunk`` reached the PLC at ``t`` (``with_head``: and ``arm.head`` with it); returns
        the decision latency of each arm in it."""
        if chunk:
            self.last_written = chunk[-1]["seq"]
            if with_head:
                self.head_sent = self.last_written
        latencies = []
        for e in chunk:
            due = self.due_at.get(e["seq"])
            if due is not None and e["action"] == ArmAction.ARM:
                latencies.append(t - due)
        del self.pending[: len(chunk)]
        if self.held:
            self.held.difference_update(e["seq"] for e in chunk)
        stale = self.next_seq - 4 * self.ring_size  # answers this old will not come any more
        if chunk and min(self.key_of, default=stale) < stale:
            self.forget_before(stale)
        return latencies

    def result(self, seq: int) -> tuple[int | None, float | None]:
        """The PLC answered command ``seq``: forget it; returns (parcel key, when it became due).

        The PLC may also answer commands it was never sent by this controller (arms it dropped
        on its own encoder fault carry the seq of the command that armed them): then the key is
        unknown (None) and the caller falls back to the tracking id."""
        return self.key_of.pop(seq, None), self.due_at.pop(seq, None)

    def forget_before(self, seq: int) -> None:
        """Commands below ``seq`` will never be answered (the PLC restarted): drop their records."""
        for s in [s for s in self.key_of if s < seq]:
            self.key_of.pop(s, None)
            self.due_at.pop(s, None)

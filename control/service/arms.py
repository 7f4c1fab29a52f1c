"""Arm commands on their way to the diverter PLC: numbering, flow control, write timing.

Commands are numbered once and for ever (the PLC executes each seq once, so a command written
again after a reconnect is harmless). A command is stored in the cycle's batch when it is
queued and written to the PLC only after that batch has committed.
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
    pending: list[dict[str, int]] = field(default_factory=list)  # stored, not yet written
    due_at: dict[int, float] = field(default_factory=dict)  # command seq -> when it became due

    def room(self) -> int:
        """Commands that may still be queued without overrunning the PLC's ring: every seq
        issued and not yet taken by the PLC (written or still pending) holds a slot."""
        return self.ring_size - (self.next_seq - 1 - self.ack)

    def queue(self, tracking_id: int, fire_count: int, chute: int, action: ArmAction, now: float) -> dict[str, int]:
        """A new command (the caller stores it in this cycle's batch)."""
        entry = {
            "seq": self.next_seq, "tracking_id": tracking_id, "fire_count": fire_count,
            "chute": chute, "action": int(action),
        }
        self.next_seq += 1
        self.pending.append(entry)
        self.due_at[entry["seq"]] = now
        return entry

    def adopt_heads(self, head: int, ack: int) -> bool:
        """Continue the numbering where the PLC is. True when the PLC has restarted (its ack
        behind our numbering with nothing pending): numbering restarts at its ack + 1 and
        unwritten commands are dropped (the caller opens a new stream epoch)."""
        restarted = ack + 1 < self.next_seq - len(self.pending) and head < self.next_seq - 1 - len(self.pending)
        if restarted:
            self.pending.clear()
            self.next_seq = max(head, ack) + 1
        else:
            self.next_seq = max(self.next_seq, head + 1)
        self.ack = ack
        return restarted

    def to_write(self) -> list[dict[str, int]]:
        """The next commands to write: at most a ring's worth."""
        return self.pending[: self.ring_size]

    def written(self, chunk: list[dict[str, int]], t: float) -> list[float]:
        """``chunk`` reached the PLC at ``t``; returns the decision latency of each arm in it."""
        latencies = []
        for e in chunk:
            due = self.due_at.get(e["seq"])
            if due is not None and e["action"] == ArmAction.ARM:
                latencies.append(t - due)
        del self.pending[: len(chunk)]
        return latencies

    def result(self, seq: int) -> float | None:
        """The PLC answered command ``seq``: forget it; returns when it became due."""
        return self.due_at.pop(seq, None)

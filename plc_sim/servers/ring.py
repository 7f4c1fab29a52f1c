"""The PLC side of an event ring: write the slot, then the head, so a reader never sees half an entry."""

from __future__ import annotations

import abc
from collections.abc import Mapping


class ServerRing(abc.ABC):
    """A PLC->host event ring as the PLC program drives it: ``push`` one entry at a time.

    Sequence numbers start at 1 and only increase; entry ``seq`` lives in slot ``seq % size``.
    ``push`` refuses nothing for a full ring: like a real PLC it overwrites the oldest slot and
    the host detects the gap from the seq jump. Check ``pending`` if the world should stall.
    """

    def __init__(self, name: str, size: int, fields: tuple[str, ...]) -> None:
        self.name = name
        self.size = size
        self.fields = fields
        self.head = 0
        self._last_ack = 0

    async def push(self, **fields: int) -> int:
        """Write one entry with the next seq; returns that seq. Missing fields are 0."""
        unknown = set(fields) - set(self.fields)
        if unknown:
            raise ValueError(f"ring {self.name!r} has no field(s) {sorted(unknown)}")
        if "seq" in fields:
            raise ValueError(f"ring {self.name!r}: seq is assigned by push, not given")
        seq = self.head + 1
        values = {f: int(fields.get(f, 0)) for f in self.fields}
        values["seq"] = seq
        await self._write_slot(seq % self.size, values)
        await self._write_head(seq)
        self.head = seq
        return seq

    @property
    def pending(self) -> int:
        """Entries pushed but not yet acknowledged, per the last ack read (see ``acked``)."""
        return self.head - self._last_ack

    async def acked(self) -> int:
        """The last seq the host acknowledged (it has stored everything up to it)."""
        ack = await self._read_ack()
        self._last_ack = ack
        return ack

    async def reset(self) -> None:
        """Forget all entries and start again at seq 1 (a PLC cold start)."""
        self.forget()
        await self._clear()

    def forget(self) -> None:
        """Reset the seq counter only (the memory was cleared by other means)."""
        self.head = 0
        self._last_ack = 0

    @abc.abstractmethod
    async def _write_slot(self, slot: int, values: Mapping[str, int]) -> None: ...

    @abc.abstractmethod
    async def _write_head(self, seq: int) -> None: ...

    @abc.abstractmethod
    async def _read_ack(self) -> int: ...

    @abc.abstractmethod
    async def _clear(self) -> None: ...

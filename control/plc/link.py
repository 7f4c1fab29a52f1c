"""The one async interface every PLC driver implements, and the one error type it raises."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Value = bool | int | float


class PlcError(Exception):
    """Anything that went wrong talking to a PLC; the controller catches only this."""


class PlcConnectionError(PlcError):
    """The link is down, or a request timed out (the connection's state is then unknown)."""


class PlcRefused(PlcError):
    """The PLC answered but refused the request (read-only tag, bad address, wrong type)."""


class PlcValueError(PlcError):
    """Refused before sending: unknown tag name, value out of range or of the wrong type."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Ring entries ``first..last`` (inclusive) were overwritten before we read them: lost."""

    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class RingRead:
    """New entries of a PLC->host ring, oldest first, and what could not be read.

    ``restarted`` means the PLC's head went backwards (PLC restarted and began again at 1):
    nothing is returned, the caller decides how to resynchronise (usually: read again with
    ``after_seq=0``).
    """

    head: int
    entries: tuple[dict[str, int], ...] = ()
    gaps: tuple[Gap, ...] = ()
    restarted: bool = False

    @property
    def lost(self) -> int:
        return sum(g.count for g in self.gaps)

    @property
    def last_seq(self) -> int:
        """The seq to pass as ``after_seq`` next time (entries and gaps are both consumed)."""
        return self.head if not self.restarted else 0


@runtime_checkable
class PlcLink(Protocol):
    """A connection to one PLC. Batched by design: one request for many tags."""

    name: str

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def connected(self) -> bool: ...

    async def read(self, names: Sequence[str]) -> dict[str, Value]: ...

    async def write(self, values: Mapping[str, Value]) -> None: ...

    async def read_ring(self, ring: str, after_seq: int, head: int | None = None) -> RingRead:
        """New entries of a PLC->host ring after ``after_seq``, up to the ring's head.

        ``head``: the ring's head as the caller just read it from this PLC (``<ring>.head`` in a
        batched ``read``); the driver then does not fetch it again, which saves a request. It
        must not be newer than the PLC's head: entries after it are left for the next read.
        """
        ...

    async def ack_ring(self, ring: str, seq: int) -> None: ...

    async def write_ring(self, ring: str, entries: Sequence[Mapping[str, int]], *, with_head: bool = True) -> None:
        """Command slots, then ``<ring>.head`` (``with_head=False``: the slots alone, for a PLC
        that takes a slot by its own seq; the head follows later)."""
        ...


def given_head(link: str, ring: str, head: object) -> int:
    """A ring head passed in by the caller, checked before anything is sent."""
    if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head <= 0xFFFF_FFFF:
        raise PlcValueError(f"{link}: ring {ring}: head {head!r} is not a uint32 seq")
    return head

"""The simulated PLCs' memory as their programs see it, whatever carries it to the host.

``ConveyorImage`` and ``DiverterImage`` are the PLC-side interfaces that ``plc_sim.plc_io`` and
``plc_sim.faults`` drive. The protocol servers (OPC UA, Modbus TCP) implement them, and so do the
in-memory images of ``plc_sim.servers.memory`` that a socket-free link reads. The rules every
transport must agree on live here once: the conveyor's scalar table (names, types, who writes),
the value checks on both sides, the conveyor's ring layout and its PLC-side API
(``ConveyorBase``, over an abstract value store), and the command-ring problems.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike

from plant.tagmap import ConveyorMap, OpcuaRing
from plc_sim.servers.faults import ResponseDelay
from plc_sim.servers.ring import ServerRing

__all__ = [
    "RANGES",
    "ZERO",
    "CommandProblem",
    "ConveyorBase",
    "ConveyorImage",
    "ConveyorRing",
    "ConveyorTag",
    "DiverterImage",
    "ImageRefused",
    "PlcImage",
    "Value",
    "coerce",
    "conveyor_tags",
    "exact",
    "typed",
]

Value = bool | int | float

RANGES: dict[str, tuple[int, int]] = {"Int32": (-(2**31), 2**31 - 1), "UInt32": (0, 2**32 - 1)}
ZERO: dict[str, Value] = {"Boolean": False, "Int32": 0, "UInt32": 0, "Double": 0.0}


class ImageRefused(Exception):
    """The PLC answered a host request with "no": a PLC-owned tag or register, an address or node
    it does not have, a value of the wrong type. The links report it as ``PlcRefused``."""


@dataclass(frozen=True, slots=True)
class CommandProblem:
    """A host->PLC ring entry that could not be taken: ``found`` is the seq its slot held."""

    seq: int
    found: int
    reason: str  # "overwritten" (host lapped the PLC) or "torn" (slot not written before head)


# -- values ------------------------------------------------------------------------------------
def coerce(type_: str, value: Value, what: str) -> Value:
    """A PLC-side value of the right kind for ``type_``; raises ValueError instead of wrapping.

    Lenient where the PLC program may be (0/1 for a Boolean, an integral float for an integer),
    never where it would change the value.
    """
    if type_ == "Boolean":
        if not isinstance(value, bool | int) or value not in (0, 1):
            raise ValueError(f"{what}: {value!r} is not a Boolean")
        return bool(value)
    if type_ == "Double":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{what}: {value!r} is not a number")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{what}: {value!r} is not an integer")
    lo, hi = RANGES[type_]
    if not lo <= value <= hi:
        raise ValueError(f"{what}: {value} out of range for {type_}")
    return value


def exact(type_: str, value: object, what: str) -> Value:
    """A host write as an OPC UA server takes it: exactly the tag's type or ImageRefused.

    The server never converts (an Int64 written to a UInt32 is BadTypeMismatch), so neither does
    the memory image: bool for Boolean, float for Double, int in range for (U)Int32.
    """
    want = bool if type_ == "Boolean" else float if type_ == "Double" else int
    if type(value) is not want:
        raise ImageRefused(f"{what}: {type(value).__name__} written to a {type_} (BadTypeMismatch)")
    assert isinstance(value, bool | int | float)
    if type_ in RANGES:
        lo, hi = RANGES[type_]
        if not lo <= value <= hi:
            raise ImageRefused(f"{what}: {value} out of range for {type_} (BadOutOfRange)")
    return value


def typed(type_: str, value: Any) -> Value:
    """A stored value as the Python type of its tag type (what a read hands back)."""
    return bool(value) if type_ == "Boolean" else float(value) if type_ == "Double" else int(value)


# -- the conveyor's layout -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ConveyorTag:
    """One scalar the conveyor PLC serves: its node, its OPC UA type and whether the host writes it."""

    node: str
    type: str
    writable: bool


def conveyor_tags(tags: ConveyorMap) -> dict[str, ConveyorTag]:
    """Every scalar by the name the host uses: the map's tags, then each ring's ``<ring>.head``
    (the PLC writes it) and ``<ring>.ack`` (the host writes it), all UInt32."""
    out = {n: ConveyorTag(t.node, t.type, t.access == "w") for n, t in tags.tags.items()}
    for rn, ring in tags.rings.items():
        out[f"{rn}.head"] = ConveyorTag(ring.head, "UInt32", False)
        out[f"{rn}.ack"] = ConveyorTag(ring.ack, "UInt32", True)
    return out


class ConveyorRing(ServerRing):
    """A conveyor ring: one UInt32[size] column per field, plus ``<ring>.head`` and ``<ring>.ack``.

    ``columns`` is the PLC's own copy of the arrays; the store it belongs to gets each column
    whole after a slot changes (an OPC UA array variable is written as one value).
    """

    def __init__(self, store: ConveyorBase, name: str, spec: OpcuaRing) -> None:
        super().__init__(name, spec.size, tuple(spec.fields))
        self._store = store
        self.spec = spec
        self.columns = {f: np.zeros(spec.size, dtype=np.uint32) for f in spec.fields}

    async def _write_slot(self, slot: int, values: Mapping[str, int]) -> None:
        checked = {f: coerce("UInt32", v, f"{self.name}.{f}") for f, v in values.items()}
        for f, v in checked.items():
            self.columns[f][slot] = v
            await self._store._store_column(self.name, f, self.columns[f])

    async def _write_head(self, seq: int) -> None:
        await self._store._store(f"{self.name}.head", seq)

    async def _read_ack(self) -> int:
        return int(await self._store._load(f"{self.name}.ack"))

    async def _clear(self) -> None:
        for f, col in self.columns.items():
            col[:] = 0
            await self._store._store_column(self.name, f, col)
        await self._store._store(f"{self.name}.head", 0)
        await self._store._store(f"{self.name}.ack", 0)


class ConveyorBase(abc.ABC):
    """The conveyor PLC's program-side API over any store of its values.

    Reads and writes by tag name with the tag's type and range (``coerce``), rings, cold reset.
    The OPC UA server stores values in its address space, the memory image in a dict: the rules
    are these, once.
    """

    def __init__(self, tags: ConveyorMap) -> None:
        self.tags = tags
        self.table = conveyor_tags(tags)
        self._rings = {n: ConveyorRing(self, n, r) for n, r in tags.rings.items()}

    def names(self) -> list[str]:
        """Every scalar name (tags, ring heads and acks)."""
        return list(self.table)

    async def read(self, name: str) -> Value:
        return typed(self._tag(name).type, await self._load(name))

    async def write(self, name: str, value: Value) -> None:
        await self._store(name, coerce(self._tag(name).type, value, name))

    async def write_many(self, values: Mapping[str, Value]) -> None:
        """Check every value first: nothing of a refused batch is written."""
        checked = [(n, coerce(self._tag(n).type, v, n)) for n, v in values.items()]
        for n, v in checked:
            await self._store(n, v)

    def ring(self, name: str) -> ConveyorRing:
        try:
            return self._rings[name]
        except KeyError:
            raise KeyError(f"no ring {name!r}; rings: {sorted(self._rings)}") from None

    async def reset(self) -> None:
        """Cold start of the PLC memory: every tag to zero/false, every ring empty from seq 1."""
        for name, tag in self.table.items():
            await self._store(name, ZERO[tag.type])
        for ring in self._rings.values():
            await ring.reset()

    def _tag(self, name: str) -> ConveyorTag:
        try:
            return self.table[name]
        except KeyError:
            raise KeyError(f"no tag {name!r} in the conveyor map") from None

    # -- the store -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def _load(self, name: str) -> Any:
        """The stored value of scalar ``name``."""

    @abc.abstractmethod
    async def _store(self, name: str, value: Value) -> None:
        """Store an already checked value of scalar ``name``."""

    @abc.abstractmethod
    async def _store_column(self, ring: str, field: str, column: npt.NDArray[np.uint32]) -> None:
        """Publish a ring column after one of its slots changed."""


# -- the PLC-side interfaces ----------------------------------------------------------------------
class PlcImage(Protocol):
    """What every simulated PLC offers the fault injector, whatever carries its memory.

    ``stop()`` then ``start()`` is a PLC restart (memory retained); ``drop_connections()`` closes
    every host connection and says how many there were; ``delay.seconds`` slows every answer
    (only a transport with a wire models it).
    """

    @property
    def delay(self) -> ResponseDelay: ...

    @property
    def running(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def drop_connections(self) -> int: ...


class ConveyorImage(PlcImage, Protocol):
    """The conveyor PLC's memory as its program drives it: typed tags by name and event rings."""

    async def read(self, name: str) -> Value: ...

    async def write(self, name: str, value: Value) -> None: ...

    async def write_many(self, values: Mapping[str, Value]) -> None: ...

    def ring(self, name: str) -> ServerRing: ...

    async def reset(self) -> None: ...


class DiverterImage(PlcImage, Protocol):
    """The diverter PLC's register image as its program drives it: registers by name, rings,
    the arm command ring, the chute blocks."""

    @property
    def command_problems(self) -> list[CommandProblem]: ...

    def read(self, name: str) -> int: ...

    def write(self, name: str, value: int) -> None: ...

    def ring(self, name: str) -> ServerRing: ...

    def take_commands(self, ring: str = "arm") -> list[dict[str, int]]: ...

    def set_chute_status(self, chute_id: int, bits: int) -> None: ...

    def set_chute_fill(self, chute_id: int, n: int) -> None: ...

    def set_chute_block(self, block: str, values: ArrayLike) -> None: ...

    def reset(self) -> None: ...

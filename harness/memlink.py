"""PLC links with no socket: ConveyorMemoryLink and DiverterMemoryLink, over the simulator's memory images.

Like httpx's ``MockTransport``: the real controller (``control.service.controller.Controller``)
runs unchanged against the simulator's PLC programs, in virtual time, thousands of cycles a
second. Each link is a ``control.plc.PlcLink`` built from the tag map, taking the names the real
drivers take (tags, ``<ring>.head``, ``<ring>.ack``) and refusing what they and the real PLCs
refuse:

- ``PlcValueError`` before anything reaches the PLC: an unknown name, ring or block, a value of
  the wrong Python type or out of range (OpcuaLink's ``to_variant`` rules for the conveyor,
  ModbusLink's register rules for the diverter), a malformed ring write or head;
- ``PlcRefused`` when the PLC says no: a write to a PLC-owned tag or register;
- ``PlcConnectionError`` while the image is stopped (``stop()`` until ``start()``: a PLC
  restart), and on the next call after ``drop_connections()`` (``connected`` is False from the
  drop until ``connect()`` succeeds).

Ring arithmetic is the drivers' own (``control.plc.rings``). What a wire has and memory has not:
no request ever times out and the image's ``delay`` (a slow PLC) is not modelled - a call
answers at once, without yielding to the event loop (so a run is the same run every time);
test slow PLCs and timeouts over loopback (tests/control/test_plc_contract.py does).

``memory_link(sim, "conveyor")`` is ``control.plc.open_link`` for a ``Simulator`` built with
``transport="memory"``: the link wrapped in a ``ReconnectingLink`` whose backoff runs on the
simulator's clock, so reconnects happen at the same virtual moment on every run.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from control.plc import (
    Backoff,
    PlcConnectionError,
    PlcRefused,
    PlcValueError,
    ReconnectingLink,
    RingRead,
    Value,
)
from control.plc.link import given_head
from control.plc.rings import collect, collect_slots, command_words, slot_runs, wanted
from plant.tagmap import ConveyorMap, DiverterMap, ModbusRegister, ModbusRing, RingField
from plant.words import from_words, to_words
from plc_sim.servers.image import ImageRefused, conveyor_tags
from plc_sim.servers.memory import ConveyorMemory, DiverterMemory, ImageDown

if TYPE_CHECKING:
    from control.plc import PlcLink
    from plc_sim.simulator import Simulator

    def _implements_plclink(c: ConveyorMemoryLink, d: DiverterMemoryLink) -> list[PlcLink]:
        return [c, d]  # mypy proves both links satisfy the PlcLink protocol

__all__ = ["ConveyorMemoryLink", "DiverterMemoryLink", "MemoryLink", "memory_link", "opcua_value"]

MAX_WRITE = 123  # registers per Modbus write request (FC 16): a refusal stops at the same request

_INT_RANGE: dict[str, tuple[int, int]] = {"Int32": (-(2**31), 2**31 - 1), "UInt32": (0, 2**32 - 1)}


def opcua_value(type_: str, value: Value, name: str) -> Value:
    """``value`` as exactly ``type_``'s Python type, by ``control.plc.opcua.to_variant``'s rules.

    The same acceptances and refusals without loading asyncua; tests/control/test_memlink.py
    checks the two agree value by value.
    """
    if type_ == "Boolean":
        if not isinstance(value, bool):
            raise PlcValueError(f"{name}: {value!r} is not a bool (tag type Boolean)")
        return value
    if type_ == "Double":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PlcValueError(f"{name}: {value!r} is not a number (tag type Double)")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlcValueError(f"{name}: {value!r} is not an int (tag type {type_})")
    lo, hi = _INT_RANGE[type_]
    if not lo <= value <= hi:
        raise PlcValueError(f"{name}: {value} out of range for {type_} ({lo}..{hi})")
    return int(value)


class MemoryLink:
    """The connection half every memory link shares: a token from the image's ``LinkPort``.

    Not reconnecting by itself, like the real drivers: wrap it in ReconnectingLink.
    """

    def __init__(self, image: ConveyorMemory | DiverterMemory, name: str) -> None:
        self.name = name
        self.image = image
        self._token: int | None = None

    @property
    def connected(self) -> bool:
        """False from the moment the PLC stops or drops the connection, as a closed socket reads."""
        return self._token is not None and self.image.links.is_open(self._token)

    async def connect(self) -> None:
        """Connect, or keep a connection that is still open; PlcConnectionError while the PLC is down."""
        if self.connected:
            return
        self._token = None
        try:
            self._token = self.image.links.open()
        except ImageDown as exc:
            raise PlcConnectionError(f"{self.name}: cannot connect to {self.image.url}: {exc}") from None

    async def close(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            self.image.links.close(token)

    def _live(self) -> None:
        """Raise PlcConnectionError unless the connection is open; a dropped one is forgotten."""
        if self._token is None:
            raise PlcConnectionError(f"{self.name}: not connected")
        if not self.image.links.is_open(self._token):
            self._token = None
            raise PlcConnectionError(f"{self.name}: connection closed by the PLC")


class ConveyorMemoryLink(MemoryLink):
    """The conveyor PLC's link in memory, with OpcuaLink's rules: exact types, per-tag refusals,
    a ring's head and arrays in one snapshot."""

    def __init__(self, image: ConveyorMemory, tags: ConveyorMap, *, name: str = "conveyor") -> None:
        super().__init__(image, name)
        self.conveyor = image
        self.tags = tags
        self._types = {n: t.type for n, t in conveyor_tags(tags).items()}
        self._rings = {n: (list(r.fields), r.size) for n, r in tags.rings.items()}

    async def read(self, names: Sequence[str]) -> dict[str, Value]:
        self._live()
        types = [self._type(n) for n in names]
        try:
            got = self.conveyor.host_read(names)
        except ImageRefused as exc:
            raise PlcRefused(f"{self.name}: read refused: {exc}") from None
        out: dict[str, Value] = {}
        for n, t, v in zip(names, types, got, strict=True):
            out[n] = bool(v) if t == "Boolean" else float(v) if t == "Double" else int(v)
        return out

    async def write(self, values: Mapping[str, Value]) -> None:
        if not values:
            return
        self._live()
        types = {n: self._type(n) for n in values}
        data = {n: opcua_value(types[n], v, n) for n, v in values.items()}
        refused = self.conveyor.host_write(data)
        if refused:
            what = ", ".join(f"{n}: {r}" for n, r in refused.items())
            raise PlcRefused(f"{self.name}: write refused ({what})")

    async def read_ring(self, ring: str, after_seq: int, head: int | None = None) -> RingRead:
        fields, size = self._ring(ring)
        if head is not None:
            head = given_head(self.name, ring, head)
        try:
            plc_head, columns = self.conveyor.host_read_ring(ring)
        except ImageRefused as exc:
            raise PlcRefused(f"{self.name}: read ring refused: {exc}") from None
        for f in fields:
            col = columns.get(f)
            shape = None if col is None else col.shape
            if shape != (size,):
                raise PlcRefused(f"{self.name}: ring {ring}.{f} has {shape} entries, the tag map says {size}")
        return collect(after_seq, plc_head if head is None else head, size, {f: columns[f] for f in fields})

    async def ack_ring(self, ring: str, seq: int) -> None:
        self._ring(ring)
        await self.write({f"{ring}.ack": seq})

    async def write_ring(self, ring: str, entries: Sequence[Mapping[str, int]], *, with_head: bool = True) -> None:
        raise PlcValueError(f"{self.name}: the conveyor PLC has no host->PLC ring {ring!r}")

    def _type(self, name: str) -> str:
        try:
            return self._types[name]
        except KeyError:
            raise PlcValueError(f"{self.name}: no tag {name!r} in the conveyor tag map") from None

    def _ring(self, ring: str) -> tuple[list[str], int]:
        self._live()
        try:
            return self._rings[ring]
        except KeyError:
            raise PlcValueError(f"{self.name}: no ring {ring!r} in the conveyor tag map") from None


class DiverterMemoryLink(MemoryLink):
    """The diverter PLC's link in memory, with ModbusLink's rules: named registers, 32-bit values
    high word first, PLC-owned registers refused by the PLC, chute blocks."""

    def __init__(self, image: DiverterMemory, regs: DiverterMap, *, name: str = "diverter") -> None:
        super().__init__(image, name)
        self.diverter = image
        self.map = regs
        self._regs: dict[str, ModbusRegister] = dict(regs.registers)
        for rn, ring in regs.rings.items():
            self._regs[f"{rn}.head"] = ring.head
            self._regs[f"{rn}.ack"] = ring.ack

    async def read(self, names: Sequence[str]) -> dict[str, Value]:
        regs = [(n, self._reg(n)) for n in names]
        self._live()
        if not regs:
            return {}
        lo = min(r.address for _, r in regs)
        hi = max(r.address + r.words for _, r in regs)
        words = self._read_range(lo, hi - lo).tolist()
        return {n: from_words(words, r.type, r.address - lo) for n, r in regs}

    async def write(self, values: Mapping[str, Value]) -> None:
        words: dict[int, int] = {}
        for n, v in values.items():
            r = self._reg(n)
            if isinstance(v, bool) or not isinstance(v, int):
                raise PlcValueError(f"{self.name}: {n}: {v!r} is not an int (register type {r.type})")
            try:
                for i, w in enumerate(to_words(v, r.type)):
                    words[r.address + i] = w
            except ValueError as exc:
                raise PlcValueError(f"{self.name}: {n}: {exc}") from None
        self._write_words(words)

    async def read_ring(self, ring: str, after_seq: int, head: int | None = None) -> RingRead:
        spec = self._ring(ring, "r")
        if head is None:
            self._live()
            head = from_words(self._read_range(spec.head.address, spec.head.words).tolist(), spec.head.type)
        else:
            head = given_head(self.name, ring, head)
        if head < after_seq:
            return RingRead(head=head, restarted=True)
        seqs, gap = wanted(after_seq, head, spec.size)
        if not seqs:
            return RingRead(head=head)
        self._live()
        rows = []
        for first, n in slot_runs(seqs, spec.size):
            got = self._read_range(spec.base + first * spec.slot_words, n * spec.slot_words)
            rows.append(got.reshape(n, spec.slot_words))
        return collect_slots(after_seq, head, seqs, gap, _decode(np.concatenate(rows), spec.fields))

    async def ack_ring(self, ring: str, seq: int) -> None:
        self._ring(ring, "r")
        await self.write({f"{ring}.ack": seq})

    async def write_ring(self, ring: str, entries: Sequence[Mapping[str, int]], *, with_head: bool = True) -> None:
        """Command slots, then the head (``with_head``), validated as ModbusLink validates them."""
        spec = self._ring(ring, "w")
        if not entries:
            return
        words, last = command_words(self.name, ring, spec, entries)
        self._write_words(words)
        if with_head:
            await self.write({f"{ring}.head": last})

    async def read_block(self, name: str, count: int | None = None) -> npt.NDArray[np.uint16]:
        """``chute_status`` or ``chute_fill`` as an array indexed by chute id (``count`` ids)."""
        if name == "chute_status":
            base, size = self.map.chute_status.base, self.map.chute_status.size
        elif name == "chute_fill":
            base, size = self.map.chute_fill.base, self.map.chute_fill.size
        else:
            raise PlcValueError(f"{self.name}: no block {name!r} (chute_status, chute_fill)")
        n = size if count is None else count
        if not 0 < n <= size:
            raise PlcValueError(f"{self.name}: {name} has {size} entries, asked for {n}")
        self._live()
        return self._read_range(base, n)

    # -- internals -----------------------------------------------------------------------------
    def _reg(self, name: str) -> ModbusRegister:
        try:
            return self._regs[name]
        except KeyError:
            raise PlcValueError(f"{self.name}: no register {name!r} in the diverter tag map") from None

    def _ring(self, ring: str, direction: str) -> ModbusRing:
        spec = self.map.rings.get(ring)
        if spec is None or spec.direction != direction:
            kind = "PLC->host" if direction == "r" else "host->PLC"
            raise PlcValueError(f"{self.name}: no {kind} ring {ring!r} in the diverter tag map")
        return spec

    def _read_range(self, address: int, count: int) -> npt.NDArray[np.uint16]:
        try:
            return self.diverter.host_read(address, count)
        except ImageRefused as exc:
            raise PlcRefused(f"{self.name}: read {count} registers at {address} refused by the PLC: {exc}") from None

    def _write_words(self, words: Mapping[int, int]) -> None:
        """One request per run of consecutive registers (at most MAX_WRITE): the first refused
        request stops the write, the ones before it stay written, as on the wire."""
        if not words:
            return
        self._live()
        for a, n in _runs(sorted(words)):
            try:
                self.diverter.host_write(a, [words[i] for i in range(a, a + n)])
            except ImageRefused as exc:
                raise PlcRefused(f"{self.name}: write {n} registers at {a} refused by the PLC: {exc}") from None


def _runs(addresses: list[int]) -> list[tuple[int, int]]:
    """Sorted addresses -> (first, count) runs of consecutive ones, at most MAX_WRITE long."""
    out: list[tuple[int, int]] = []
    for a in addresses:
        if out and out[-1][0] + out[-1][1] == a and out[-1][1] < MAX_WRITE:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((a, 1))
    return out


def _decode(words: npt.NDArray[np.integer], fields: Mapping[str, RingField]) -> dict[str, npt.NDArray[np.int64]]:
    """Ring slots as rows of registers -> one int64 column per field (high word first)."""
    w = words.astype(np.int64) & 0xFFFF
    out: dict[str, npt.NDArray[np.int64]] = {}
    for name, f in fields.items():
        if f.type in ("uint32", "int32"):
            v = (w[:, f.offset] << 16) | w[:, f.offset + 1]
            out[name] = np.where(v >= 1 << 31, v - (1 << 32), v) if f.type == "int32" else v
        else:
            v = w[:, f.offset]
            out[name] = np.where(v >= 1 << 15, v - (1 << 16), v) if f.type == "int16" else v
    return out


def memory_link(
    sim: Simulator,
    which: Literal["conveyor", "diverter"],
    *,
    backoff: Backoff | None = None,
    clock: Callable[[], float] | None = None,
    rng: random.Random | None = None,
) -> ReconnectingLink:
    """A reconnecting link to one of a memory-transport simulator's PLCs, not connected yet.

    The backoff runs on ``clock`` (default: the simulator's world time, which ``scan(dt)``
    advances) with ``rng`` (default: seeded from the scenario), so a run driven in virtual time
    reconnects at the same moment every time.
    """
    tags = sim.tags
    inner: ConveyorMemoryLink | DiverterMemoryLink
    if which == "conveyor":
        inner = ConveyorMemoryLink(sim.conveyor_memory, tags.conveyor)
    elif which == "diverter":
        inner = DiverterMemoryLink(sim.diverter_memory, tags.diverter)
    else:
        raise ValueError(f"unknown PLC {which!r}: conveyor or diverter")
    world = sim.world
    return ReconnectingLink(
        inner,
        backoff,
        clock=clock or (lambda: world.time_s),
        rng=rng or random.Random(f"{sim.scenario.seed}:{which}"),
    )

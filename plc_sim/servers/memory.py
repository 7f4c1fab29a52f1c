"""The simulated PLCs' memory images with no server around them: ConveyorMemory, DiverterMemory.

Each offers the PLC-side API its protocol server offers (``ConveyorImage`` / ``DiverterImage``)
plus a host side that answers as the wire would, so that a link can run the controller against
the PLC programs without a socket (``harness.memlink``):

- ``ConveyorMemory.host_read/host_write/host_read_ring``: OPC UA's rules (exact types, writes to
  PLC-owned tags refused per tag, a ring's head and arrays in one snapshot);
- ``DiverterMemory.host_read/host_write``: Modbus holding registers (one block, PLC-owned
  registers read-only). ``DiverterPlcServer`` serves this same object over Modbus TCP: the
  register image and its rules exist once.

Link faults: ``links`` counts the host connections; ``stop()`` (until ``start()``) refuses new
ones and ends the open ones, ``drop_connections()`` ends the open ones. ``delay`` exists for the
fault injector but nothing in memory waits: a slow PLC needs a wire (see ``harness.memlink``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from plant.codes import DiverterFeature
from plant.tagmap import ConveyorMap, DiverterMap, ModbusRegister, ModbusRing
from plant.words import from_words, to_words
from plc_sim.servers.faults import ResponseDelay
from plc_sim.servers.image import ZERO, CommandProblem, ConveyorBase, ImageRefused, Value, exact
from plc_sim.servers.ring import ServerRing

__all__ = ["ConveyorMemory", "DiverterMemory", "DiverterRing", "ImageDown", "LinkPort"]

log = logging.getLogger(__name__)


class ImageDown(Exception):
    """The PLC is not running: nothing to connect to."""


class LinkPort:
    """Where in-memory host connections plug into an image: the socket a real PLC would have.

    A connection is a token; it stays open until the host closes it, the PLC drops it or the
    PLC stops. A new image is not running, like a server before ``start()``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.running = False
        self._open: set[int] = set()
        self._next = 0

    def open(self) -> int:
        if not self.running:
            raise ImageDown("the PLC is not running")
        self._next += 1
        self._open.add(self._next)
        return self._next

    def is_open(self, token: int) -> bool:
        return token in self._open

    def close(self, token: int) -> None:
        self._open.discard(token)

    def drop_all(self) -> int:
        n = len(self._open)
        self._open.clear()
        return n

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False
        self.drop_all()


class _Lifecycle:
    """start/stop/running/drop_connections/delay/url of an image served by its ``LinkPort``."""

    def __init__(self, url: str) -> None:
        self.links = LinkPort(url)
        self.delay = ResponseDelay()

    @property
    def url(self) -> str:
        return self.links.url

    @property
    def running(self) -> bool:
        return self.links.running

    async def start(self) -> None:
        """Accept connections (again). Memory survives a stop/start, like a PLC's retained memory."""
        self.links.start()

    async def stop(self) -> None:
        """The PLC goes down: every open connection ends, new ones are refused until ``start()``."""
        self.links.stop()

    def drop_connections(self) -> int:
        """Close every host connection (PLC connection drop); the PLC keeps running."""
        return self.links.drop_all()


# ================================================================== conveyor
class ConveyorMemory(_Lifecycle, ConveyorBase):
    """The conveyor PLC's tags and rings in plain Python and numpy: ``ConveyorPlcServer`` without
    the OPC UA address space (building one costs ~2 s; this costs microseconds)."""

    def __init__(self, tags: ConveyorMap, url: str = "memory://conveyor") -> None:
        _Lifecycle.__init__(self, url)
        ConveyorBase.__init__(self, tags)
        self._values: dict[str, Value] = {name: ZERO[tag.type] for name, tag in self.table.items()}

    # -- store (PLC side) ------------------------------------------------------------------------
    async def _load(self, name: str) -> Any:
        return self._values[name]

    async def _store(self, name: str, value: Value) -> None:
        self._values[name] = value

    async def _store_column(self, ring: str, field: str, column: npt.NDArray[np.uint32]) -> None:
        return None  # the ring's columns are the memory itself

    # -- host side ---------------------------------------------------------------------------------
    def host_read(self, names: Sequence[str]) -> list[Value]:
        """Values of scalars, as one OPC UA Read would return them; an unknown name is refused."""
        try:
            return [self._values[n] for n in names]
        except KeyError as exc:
            raise ImageRefused(f"no node for {exc.args[0]!r} (BadNodeIdUnknown)") from None

    def host_write(self, values: Mapping[str, Value]) -> dict[str, str]:
        """One OPC UA Write: each value applied or refused on its own; returns the refusals by name.

        A PLC-owned tag answers BadUserAccessDenied (as the simulator's server does), a value not
        exactly of the tag's type BadTypeMismatch; the others are written.
        """
        refused: dict[str, str] = {}
        for n, v in values.items():
            tag = self.table.get(n)
            if tag is None:
                refused[n] = "BadNodeIdUnknown"
            elif not tag.writable:
                refused[n] = "BadUserAccessDenied"
            else:
                try:
                    self._values[n] = exact(tag.type, v, n)
                except ImageRefused as exc:
                    refused[n] = str(exc)
        return refused

    def host_read_ring(self, ring: str) -> tuple[int, dict[str, npt.NDArray[np.uint32]]]:
        """A ring's head and every field array in one snapshot (copies: the PLC writes on)."""
        r = self._rings.get(ring)
        if r is None:
            raise ImageRefused(f"no ring {ring!r} (BadNodeIdUnknown)")
        return int(self._values[f"{ring}.head"]), {f: c.copy() for f, c in r.columns.items()}


# ================================================================== diverter
def host_writable(regs: DiverterMap) -> npt.NDArray[np.bool_]:
    """Per register of the block: may the host write it? Host-owned registers, the host's ring
    heads and slots, and the PLC rings' acks; everything else (gaps included) is read-only."""
    writable = np.zeros(regs.register_span, dtype=bool)
    for r in regs.registers.values():
        if r.access == "w":
            writable[r.address : r.address + r.words] = True
    for ring in regs.rings.values():
        if ring.direction == "w":
            writable[ring.head.address : ring.head.address + ring.head.words] = True
            writable[ring.base : ring.base + ring.size * ring.slot_words] = True
        else:
            writable[ring.ack.address : ring.ack.address + ring.ack.words] = True
    return writable


class DiverterRing(ServerRing):
    """A Modbus ring: ``size`` slots of ``slot_words`` registers at ``base``; head/ack registers."""

    def __init__(self, memory: DiverterMemory, name: str, spec: ModbusRing) -> None:
        super().__init__(name, spec.size, tuple(spec.fields))
        self._memory = memory
        self.spec = spec

    async def _write_slot(self, slot: int, values: Mapping[str, int]) -> None:
        self._memory._put_slot(self.spec, slot, values)

    async def _write_head(self, seq: int) -> None:
        self._memory._put(self.spec.head, seq)

    async def _read_ack(self) -> int:
        return self._memory._get(self.spec.ack)

    async def _clear(self) -> None:
        n = self.spec.size * self.spec.slot_words
        self._memory.regs[self.spec.base : self.spec.base + n] = 0
        self._memory._put(self.spec.head, 0)
        self._memory._put(self.spec.ack, 0)


class DiverterMemory(_Lifecycle):
    """The diverter PLC's holding registers 0..register_span as one numpy uint16 array.

    PLC side: registers by name, rings, the arm command ring, chute blocks, cold reset. Host
    side: ``host_read``/``host_write`` of register ranges with Modbus's rules (``writable``).
    """

    def __init__(self, regs: DiverterMap, url: str = "memory://diverter", *, by_slot_seq: bool = True) -> None:
        super().__init__(url)
        self.map = regs
        self.regs: npt.NDArray[np.uint16] = np.zeros(regs.register_span, dtype=np.uint16)
        self.writable = host_writable(regs)
        self._rings = {n: DiverterRing(self, n, r) for n, r in regs.rings.items() if r.direction == "r"}
        self._commands = {n: r for n, r in regs.rings.items() if r.direction == "w"}
        self._taken: dict[str, int] = dict.fromkeys(self._commands, 0)
        self.command_problems: list[CommandProblem] = []
        self._by_slot_seq = by_slot_seq
        self._announce()

    @property
    def by_slot_seq(self) -> bool:
        """Does this PLC take an arm slot by its own seq (``features`` bit0)? Settable: a test
        runs the host against a PLC of the base interface, which waits for ``arm.head``."""
        return self._by_slot_seq

    @by_slot_seq.setter
    def by_slot_seq(self, on: bool) -> None:
        self._by_slot_seq = on
        self._announce()

    def reset(self) -> None:
        """Cold start of the PLC memory: every register zero, every ring empty from seq 1."""
        self.regs[:] = 0
        for ring in self._rings.values():
            ring.forget()
        self._taken = dict.fromkeys(self._commands, 0)
        self.command_problems.clear()
        self._announce()

    def _announce(self) -> None:
        """The ``features`` register (where the map has one): part of the program, so it is
        there from power-on, before the first scan."""
        if "features" in self.map.registers:
            self.write("features", int(DiverterFeature.ARM_BY_SLOT_SEQ) if self._by_slot_seq else 0)

    # -- PLC side ----------------------------------------------------------------------------------
    def read(self, name: str) -> int:
        return self._get(self._register(name))

    def write(self, name: str, value: int) -> None:
        self._put(self._register(name), value)

    def ring(self, name: str) -> DiverterRing:
        try:
            return self._rings[name]
        except KeyError:
            raise KeyError(f"no PLC->host ring {name!r}; rings: {sorted(self._rings)}") from None

    def set_chute_status(self, chute_id: int, bits: int) -> None:
        self._chute(self.map.chute_status.base, self.map.chute_status.size, chute_id, bits)

    def set_chute_fill(self, chute_id: int, n: int) -> None:
        self._chute(self.map.chute_fill.base, self.map.chute_fill.size, chute_id, n)

    def set_chute_block(self, block: str, values: npt.ArrayLike) -> None:
        """Write a whole chute block (index = chute id) in one go; values must fit 16 bits."""
        spec = self.map.chute_status if block == "chute_status" else self.map.chute_fill
        arr = np.asarray(values)
        if arr.shape[0] > spec.size or (arr.size and (arr.min() < 0 or arr.max() > 0xFFFF)):
            raise ValueError(f"{block}: values must be <= {spec.size} entries of 0..65535")
        self.regs[spec.base : spec.base + arr.shape[0]] = arr.astype(np.uint16)

    def take_commands(self, ring: str = "arm") -> list[dict[str, int]]:
        """New host->PLC entries since the last call, oldest first; acks the last one taken.

        Entries are taken by seq up to the host-written head and, with ``by_slot_seq`` (the
        ``features`` bit0 this PLC announces), also beyond it: the next slot is taken as soon as
        it holds the next seq, so the host may write a slot alone, in one request (a Modbus
        request is applied whole between two scans here). A slot the head covers that holds
        another seq is reported in ``command_problems`` (and logged) instead of being executed.
        """
        spec = self._commands[ring]
        head = self._get(spec.head)
        last = self._taken[ring]
        out: list[dict[str, int]] = []
        if head > last:
            first = max(last + 1, head - spec.size + 1)
            for seq in range(last + 1, first):
                self._problem(CommandProblem(seq, 0, "overwritten"))
            for seq in range(first, head + 1):
                entry = self._get_slot(spec, seq % spec.size)
                if entry["seq"] == seq:
                    out.append(entry)
                else:
                    self._problem(CommandProblem(seq, entry["seq"], "overwritten" if entry["seq"] > seq else "torn"))
            last = head
        if self.by_slot_seq:
            last = self._take_by_slot_seq(spec, last, out)
        if last != self._taken[ring]:
            self._taken[ring] = last
            self._put(spec.ack, last)
        return out

    def _take_by_slot_seq(self, spec: ModbusRing, last: int, out: list[dict[str, int]]) -> int:
        """Slots past ``last`` that hold their own next seq, in order; returns the last taken.

        A slot holding a later lap's seq means the host ran more than a ring ahead: the seqs
        it overwrote are reported lost and taking goes on from the oldest one still there."""
        seq = last + 1
        while True:
            entry = self._get_slot(spec, seq % spec.size)
            found = entry["seq"]
            if found == seq:
                out.append(entry)
                seq += 1
            elif found > seq and (found - seq) % spec.size == 0:
                newest = max(self._get_slot(spec, i)["seq"] for i in range(spec.size))
                for lost in range(seq, newest - spec.size + 1):
                    self._problem(CommandProblem(lost, found if lost == seq else 0, "overwritten"))
                seq = newest - spec.size + 1
            else:
                return seq - 1

    # -- host side ---------------------------------------------------------------------------------
    def host_read(self, address: int, count: int) -> npt.NDArray[np.uint16]:
        """Function 3: ``count`` registers from ``address`` (a copy); outside the block refused."""
        if count < 1 or address < 0 or address + count > len(self.regs):
            raise ImageRefused(f"registers {address}..{address + count - 1} outside 0..{len(self.regs) - 1} (exception 02)")
        return self.regs[address : address + count].copy()

    def host_write(self, address: int, words: Sequence[int]) -> None:
        """Function 16: all of ``words`` from ``address``, or nothing if any register is the PLC's."""
        n = len(words)
        if n < 1 or address < 0 or address + n > len(self.regs):
            raise ImageRefused(f"registers {address}..{address + n - 1} outside 0..{len(self.regs) - 1} (exception 02)")
        if not self.writable[address : address + n].all():
            raise ImageRefused(f"registers {address}..{address + n - 1} include read-only ones (exception 02)")
        if any(not 0 <= int(w) <= 0xFFFF for w in words):
            raise ImageRefused(f"registers {address}..{address + n - 1}: a value is not 16 bits (exception 03)")
        self.regs[address : address + n] = words

    # -- memory ------------------------------------------------------------------------------------
    def _register(self, name: str) -> ModbusRegister:
        if name in self.map.registers:
            return self.map.registers[name]
        ring, _, part = name.partition(".")
        if ring in self.map.rings and part in ("head", "ack"):
            r = self.map.rings[ring]
            return r.head if part == "head" else r.ack
        raise KeyError(f"no register {name!r} in the diverter map")

    def _problem(self, p: CommandProblem) -> None:
        log.warning("command ring entry seq %d not taken: %s (slot holds seq %d)", p.seq, p.reason, p.found)
        self.command_problems.append(p)

    def _get(self, reg: ModbusRegister) -> int:
        return from_words(self.regs[reg.address : reg.address + reg.words].tolist(), reg.type)

    def _put(self, reg: ModbusRegister, value: int) -> None:
        self.regs[reg.address : reg.address + reg.words] = to_words(int(value), reg.type)

    def _put_slot(self, spec: ModbusRing, slot: int, values: Mapping[str, int]) -> None:
        words = [0] * spec.slot_words
        for f, v in values.items():
            fs = spec.fields[f]
            words[fs.offset : fs.offset + (2 if fs.type.endswith("32") else 1)] = to_words(int(v), fs.type)
        a = spec.base + slot * spec.slot_words
        self.regs[a : a + spec.slot_words] = words

    def _get_slot(self, spec: ModbusRing, slot: int) -> dict[str, int]:
        a = spec.base + slot * spec.slot_words
        words = self.regs[a : a + spec.slot_words].tolist()
        return {f: from_words(words, fs.type, fs.offset) for f, fs in spec.fields.items()}

    def _chute(self, base: int, size: int, chute_id: int, value: int) -> None:
        if not 0 <= chute_id < size:
            raise ValueError(f"chute id {chute_id} outside 0..{size - 1}")
        self.regs[base + chute_id] = to_words(int(value), "uint16")[0]

"""The diverter PLC's memory image served over Modbus TCP, built from the tag map.

One block of holding registers 0..register_span on one device id. The memory is a numpy
uint16 array owned here; pymodbus's SimDevice action hook copies it into each response and
copies each accepted write back, so PLC logic and the wire always see the same registers.
Registers the PLC owns (access "r") are read-only on the wire: a host write gets an exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from plant.tagmap import DiverterMap, ModbusRegister, ModbusRing
from plant.words import from_words, to_words
from plc_sim.servers.faults import ResponseDelay, shut, shut_listener
from plc_sim.servers.ring import ServerRing

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CommandProblem:
    """A host->PLC ring entry that could not be taken: ``found`` is the seq its slot held."""

    seq: int
    found: int
    reason: str  # "overwritten" (host lapped the PLC) or "torn" (slot not written before head)


class DiverterRing(ServerRing):
    """A Modbus ring: ``size`` slots of ``slot_words`` registers at ``base``; head/ack registers."""

    def __init__(self, server: DiverterPlcServer, name: str, spec: ModbusRing) -> None:
        super().__init__(name, spec.size, tuple(spec.fields))
        self._server = server
        self.spec = spec

    async def _write_slot(self, slot: int, values: Mapping[str, int]) -> None:
        self._server._put_slot(self.spec, slot, values)

    async def _write_head(self, seq: int) -> None:
        self._server._put(self.spec.head, seq)

    async def _read_ack(self) -> int:
        return self._server._get(self.spec.ack)

    async def _clear(self) -> None:
        n = self.spec.size * self.spec.slot_words
        self._server.regs[self.spec.base : self.spec.base + n] = 0
        self._server._put(self.spec.head, 0)
        self._server._put(self.spec.ack, 0)


class DiverterPlcServer:
    """pymodbus TCP server holding every register and ring of ``TagMap.diverter``."""

    def __init__(self, regs: DiverterMap, host: str = "127.0.0.1", port: int = 0, device_id: int = 1) -> None:
        self.map = regs
        self.host = host
        self._port = port
        self.device_id = device_id
        self.delay = ResponseDelay()
        self.regs: npt.NDArray[np.uint16] = np.zeros(regs.register_span, dtype=np.uint16)
        self._server: ModbusTcpServer | None = None
        self._rings = {n: DiverterRing(self, n, r) for n, r in regs.rings.items() if r.direction == "r"}
        self._commands = {n: r for n, r in regs.rings.items() if r.direction == "w"}
        self._taken: dict[str, int] = dict.fromkeys(self._commands, 0)
        self.command_problems: list[CommandProblem] = []
        self.requests = 0
        self._device = SimDevice(id=device_id, simdata=self._blocks(), action=self._action)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (again). Register memory survives a stop/start, like a PLC's retained memory."""
        if self._server is not None:
            return
        server = ModbusTcpServer(self._device, address=(self.host, self._port))
        await server.serve_forever(background=True)
        listener = server.transport
        sockets = getattr(listener, "sockets", None)
        if self._port == 0 and sockets:
            self._port = int(sockets[0].getsockname()[1])
        self._server = server
        log.debug("diverter PLC server listening on %s:%d", self.host, self._port)

    async def stop(self) -> None:
        """Stop listening and close every connection, so that ``start()`` can take the port again."""
        server, self._server = self._server, None
        if server is None:
            return
        listener = server.transport
        shut_listener(listener if isinstance(listener, asyncio.AbstractServer) else None)
        self._shut_connections(server)
        await server.shutdown()  # type: ignore[no-untyped-call]
        if isinstance(listener, asyncio.AbstractServer):
            await listener.wait_closed()

    def reset(self) -> None:
        """Cold start of the PLC memory: every register zero, every ring empty from seq 1."""
        self.regs[:] = 0
        for ring in self._rings.values():
            ring.forget()
        self._taken = dict.fromkeys(self._commands, 0)
        self.command_problems.clear()

    def drop_connections(self) -> int:
        """Close every client connection (PLC connection drop); the server keeps listening."""
        if self._server is None:
            return 0
        return self._shut_connections(self._server)

    @staticmethod
    def _shut_connections(server: ModbusTcpServer) -> int:
        conns = list(server.active_connections.values())
        for c in conns:
            if c.transport is not None:
                shut(c.transport.get_extra_info("socket"))
            c.close()
        return len(conns)

    async def __aenter__(self) -> DiverterPlcServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- PLC-side access -----------------------------------------------------------------------
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

        Entries are taken by seq up to the host-written head. A slot holding another seq is
        reported in ``command_problems`` (and logged) instead of being executed.
        """
        spec = self._commands[ring]
        head = self._get(spec.head)
        last = self._taken[ring]
        if head <= last:
            return []
        out: list[dict[str, int]] = []
        first = max(last + 1, head - spec.size + 1)
        for seq in range(last + 1, first):
            self._problem(CommandProblem(seq, 0, "overwritten"))
        for seq in range(first, head + 1):
            entry = self._get_slot(spec, seq % spec.size)
            if entry["seq"] == seq:
                out.append(entry)
            else:
                self._problem(CommandProblem(seq, entry["seq"], "overwritten" if entry["seq"] > seq else "torn"))
        self._taken[ring] = head
        self._put(spec.ack, head)
        return out

    def _problem(self, p: CommandProblem) -> None:
        log.warning("command ring entry seq %d not taken: %s (slot holds seq %d)", p.seq, p.reason, p.found)
        self.command_problems.append(p)

    # -- memory --------------------------------------------------------------------------------
    def _register(self, name: str) -> ModbusRegister:
        if name in self.map.registers:
            return self.map.registers[name]
        ring, _, part = name.partition(".")
        if ring in self.map.rings and part in ("head", "ack"):
            r = self.map.rings[ring]
            return r.head if part == "head" else r.ack
        raise KeyError(f"no register {name!r} in the diverter map")

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

    def _blocks(self) -> list[SimData]:
        """Contiguous SimData runs over 0..span, read-only wherever the PLC owns the register."""
        writable = np.zeros(len(self.regs), dtype=bool)
        for r in self.map.registers.values():
            if r.access == "w":
                writable[r.address : r.address + r.words] = True
        for ring in self.map.rings.values():
            host_owned = ring.direction == "w"
            owner_head, owner_ack = (ring.head, ring.ack)
            if host_owned:
                writable[owner_head.address : owner_head.address + owner_head.words] = True
                writable[ring.base : ring.base + ring.size * ring.slot_words] = True
            else:
                writable[owner_ack.address : owner_ack.address + owner_ack.words] = True
        edges = np.flatnonzero(np.diff(writable.astype(np.int8))) + 1
        starts = [0, *edges.tolist()]
        ends = [*edges.tolist(), len(writable)]
        return [
            SimData(address=s, count=e - s, values=0, datatype=DataType.REGISTERS, readonly=not bool(writable[s]))
            for s, e in zip(starts, ends, strict=True)
        ]

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        await self.delay.wait()
        off = address - start_address
        if address + count > len(self.regs):
            return ExcCodes.ILLEGAL_ADDRESS
        if set_values is None:
            current[off : off + count] = self.regs[address : address + count].tolist()
        else:
            self.regs[address : address + count] = [int(v) for v in set_values]
        return None

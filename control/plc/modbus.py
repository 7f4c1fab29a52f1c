"""The diverter PLC link over Modbus TCP (pymodbus client): holding registers named by the tag map.

Reads are merged into as few requests as the 125-register limit allows; a ring read fetches the
head (unless the caller passes the one it just read with the scalars), then only the slots that
are new. 32-bit values are two registers, high word first
(plant.words); every value is range-checked before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from control.plc.link import (
    PlcConnectionError,
    PlcError,
    PlcRefused,
    PlcValueError,
    RingRead,
    Value,
    given_head,
)
from control.plc.rings import collect_slots, command_words, slot_runs, wanted
from plant.site import ModbusEndpoint
from plant.tagmap import DiverterMap, ModbusRegister, ModbusRing, RingField
from plant.words import from_words, to_words

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_READ = 125  # registers per read request (Modbus application protocol, FC 3)
MAX_WRITE = 123  # registers per write request (FC 16)
MERGE_GAP = 32  # read across up to this many unused registers rather than send another request


def decode_columns(words: npt.NDArray[np.integer], fields: Mapping[str, RingField]) -> dict[str, npt.NDArray[np.int64]]:
    """Ring slots as rows of registers -> one int64 column per field, vectorised."""
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


def spans(regs: Sequence[tuple[int, int]], limit: int = MAX_READ, gap: int = MERGE_GAP) -> list[tuple[int, int]]:
    """Merge (address, count) ranges into (address, count) requests of at most ``limit`` registers."""
    out: list[tuple[int, int]] = []
    for a, n in sorted(regs):
        if out:
            a0, n0 = out[-1]
            end = max(a0 + n0, a + n)
            if a <= a0 + n0 + gap and end - a0 <= limit:
                out[-1] = (a0, end - a0)
                continue
        while n > limit:
            out.append((a, limit))
            a, n = a + limit, n - limit
        out.append((a, n))
    return out


class ModbusLink:
    """A PlcLink to the diverter PLC. Not reconnecting by itself: wrap it in ReconnectingLink."""

    def __init__(
        self,
        endpoint: ModbusEndpoint,
        regs: DiverterMap,
        *,
        host: str | None = None,
        port: int | None = None,
        timeout_s: float = 1.0,
        name: str = "diverter",
    ) -> None:
        self.name = name
        self.map = regs
        self.host = host or endpoint.host
        self.port = endpoint.port if port is None else port
        self.device_id = endpoint.device_id
        self.timeout_s = timeout_s
        self._client: AsyncModbusTcpClient | None = None
        self._regs: dict[str, ModbusRegister] = dict(regs.registers)
        for rn, ring in regs.rings.items():
            self._regs[f"{rn}.head"] = ring.head
            self._regs[f"{rn}.ack"] = ring.ack

    @property
    def connected(self) -> bool:
        """True while a socket is open; a PLC that closed it reads as disconnected at once."""
        return self._client is not None and self._client.connected

    async def connect(self) -> None:
        """Connect, or prove the existing connection answers; raises PlcConnectionError otherwise.

        A client object left from before an outage is never taken on trust: it answers a read
        now or it is closed and a new connection is made (so "connected" means it).
        """
        if self._client is not None:
            if self._client.connected:
                with contextlib.suppress(PlcError):
                    await self._probe()
                    return
            await self.close()
        client = AsyncModbusTcpClient(
            self.host, port=self.port, timeout=self.timeout_s, retries=0, reconnect_delay=0, name=self.name
        )
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                ok = await client.connect()
        except TimeoutError:
            ok = False
        if not ok:
            client.close()
            raise PlcConnectionError(f"{self.name}: cannot connect to {self.host}:{self.port}")
        self._client = client
        # A server answering for another device id stays silent: prove ours answers now.
        try:
            await self._probe()
        except PlcError as exc:
            await self.close()
            raise PlcConnectionError(f"{self.name}: device id {self.device_id} does not answer: {exc}") from exc

    async def _probe(self) -> None:
        await self._read_range(min(r.address for r in self.map.registers.values()), 1)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    # -- PlcLink -------------------------------------------------------------------------------
    async def read(self, names: Sequence[str]) -> dict[str, Value]:
        regs = [(n, self._reg(n)) for n in names]
        mem = await self._read_many([(r.address, r.words) for _, r in regs])
        return {n: from_words(mem[r.address : r.address + r.words].tolist(), r.type) for n, r in regs}

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
        await self._write_words(words)

    async def read_ring(self, ring: str, after_seq: int, head: int | None = None) -> RingRead:
        spec = self._ring(ring, "r")
        if head is None:
            head = from_words(await self._read_range(spec.head.address, spec.head.words), spec.head.type)
        else:
            head = given_head(self.name, ring, head)
        if head < after_seq:
            return RingRead(head=head, restarted=True)
        seqs, gap = wanted(after_seq, head, spec.size)
        if not seqs:
            return RingRead(head=head)
        rows = []
        for first, n in slot_runs(seqs, spec.size):
            a = spec.base + first * spec.slot_words
            got = await self._read_many([(a, n * spec.slot_words)])
            rows.append(got[a : a + n * spec.slot_words].reshape(n, spec.slot_words))
        columns = decode_columns(np.concatenate(rows), spec.fields)
        return collect_slots(after_seq, head, seqs, gap, columns)

    async def ack_ring(self, ring: str, seq: int) -> None:
        self._ring(ring, "r")
        await self.write({f"{ring}.ack": seq})

    async def write_ring(self, ring: str, entries: Sequence[Mapping[str, int]], *, with_head: bool = True) -> None:
        """Write command slots, then the head: the PLC takes entries up to head by seq.

        ``with_head=False``: the slots alone, in one request, for a PLC that takes a slot once
        it holds the next seq (diverter ``features`` bit0); the caller writes the head later.
        Entries need consecutive seqs (the PLC detects a slot whose seq is not the one it
        expects). Writing a seq again after a reconnect is harmless: the PLC executes each seq
        once. Flow control is the caller's: do not run more than ``size`` ahead of ``ring.ack``.
        """
        spec = self._ring(ring, "w")
        if not entries:
            return
        words, last = command_words(self.name, ring, spec, entries)
        await self._write_words(words)
        if with_head:
            await self.write({f"{ring}.head": last})

    # -- diverter extras -----------------------------------------------------------------------
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
        mem = await self._read_many([(base, n)])
        return mem[base : base + n].copy()

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

    async def _read_many(self, ranges: Sequence[tuple[int, int]]) -> npt.NDArray[np.uint16]:
        """Registers covering ``ranges``, as a sparse image indexed by address."""
        reqs = spans(ranges)
        top = max(a + n for a, n in reqs)
        mem = np.zeros(top, dtype=np.uint16)
        for a, n in reqs:
            mem[a : a + n] = await self._read_range(a, n)
        return mem

    async def _read_range(self, address: int, count: int) -> list[int]:
        rr = await self._call(
            f"read {count} registers at {address}",
            lambda c: c.read_holding_registers(address, count=count, device_id=self.device_id),
        )
        if len(rr.registers) < count:
            raise PlcConnectionError(f"{self.name}: short read at {address}: {len(rr.registers)} of {count}")
        return list(rr.registers[:count])

    async def _write_words(self, words: Mapping[int, int]) -> None:
        for a, n in spans([(a, 1) for a in words], limit=MAX_WRITE, gap=0):
            await self._write_range(a, [words[i] for i in range(a, a + n)])

    async def _write_range(self, address: int, values: list[int]) -> None:
        await self._call(
            f"write {len(values)} registers at {address}",
            lambda c: c.write_registers(address, values, device_id=self.device_id),
        )

    async def _call(self, what: str, fn: Callable[[AsyncModbusTcpClient], Awaitable[ModbusPDU]]) -> ModbusPDU:
        client = self._client
        if client is None:
            raise PlcConnectionError(f"{self.name}: not connected")
        if not client.connected:  # the PLC closed the socket: fail now, not after a timeout
            await self.close()
            raise PlcConnectionError(f"{self.name}: connection closed by the PLC")
        try:
            async with asyncio.timeout(self.timeout_s):
                rr = await fn(client)
        except (TimeoutError, ModbusException, OSError) as exc:
            await self.close()
            kind = "timed out" if isinstance(exc, TimeoutError) else f"failed: {exc}"
            raise PlcConnectionError(f"{self.name}: {what} {kind}") from exc
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            raise PlcRefused(f"{self.name}: {what} refused by the PLC (exception code {code})")
        return rr

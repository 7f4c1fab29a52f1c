"""The diverter PLC's register image served over Modbus TCP: DiverterPlcServer.

The registers and their rules are a ``DiverterMemory`` (plc_sim/servers/memory.py): one block of
holding registers 0..register_span on one device id. pymodbus's SimDevice action hook copies the
memory into each response and each accepted write back into it, so PLC logic, an in-memory host
link and the wire all see the same registers. Registers the PLC owns (the memory's ``writable``
mask) are read-only on the wire: a host write gets exception 02.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import numpy.typing as npt
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

from plant.tagmap import DiverterMap
from plc_sim.servers.faults import ResponseDelay, shut, shut_listener
from plc_sim.servers.image import CommandProblem, ImageRefused
from plc_sim.servers.memory import DiverterMemory, DiverterRing

__all__ = ["CommandProblem", "DiverterPlcServer", "DiverterRing"]

log = logging.getLogger(__name__)


class _OwnDeviceOnly(SimCore):
    """pymodbus's SimCore, answering a request for any other device id with exception 0x0B.

    SimCore falls back to a device 0 that we do not have, so such a request raised KeyError
    inside pymodbus, which logged a traceback per request. The Modbus TCP implementation guide
    gives 0x0B (gateway target device failed to respond) for a unit id no device answers to;
    the first such request is logged, the rest are only counted (``unknown``).
    """

    def __init__(self, device: SimDevice) -> None:
        super().__init__(device)
        self.unknown: dict[int, int] = {}  # device id -> requests refused

    def _known(self, device_id: int) -> bool:
        if device_id in self.devices:
            return True
        if not self.unknown:
            log.warning("diverter PLC: request for device id %d, which is not this PLC's (%s): answered "
                        "with exception 0x0B; further ones are counted, not logged", device_id, sorted(self.devices))
        self.unknown[device_id] = self.unknown.get(device_id, 0) + 1
        return False

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        if not self._known(device_id):
            return ExcCodes.GATEWAY_NO_RESPONSE
        return await super().async_getValues(device_id, func_code, address, count)

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        if not self._known(device_id):
            return ExcCodes.GATEWAY_NO_RESPONSE
        return await super().async_setValues(device_id, func_code, address, values)


class DiverterPlcServer:
    """pymodbus TCP server over a ``DiverterMemory`` holding every register and ring of the map.

    Pass ``memory`` to serve an image that already exists (a memory link may read it too); by
    default the server makes its own. The PLC-side API is the memory's, passed through. The
    server's ``start``/``stop``/``drop_connections`` are the PLC's: they start, stop and drop the
    memory's in-memory connections as well as the sockets.
    """

    def __init__(
        self,
        regs: DiverterMap,
        host: str = "127.0.0.1",
        port: int = 0,
        device_id: int = 1,
        *,
        memory: DiverterMemory | None = None,
    ) -> None:
        if memory is not None and memory.map != regs:
            raise ValueError("the memory image was built from another diverter map")
        self.memory = memory if memory is not None else DiverterMemory(regs)
        self.host = host
        self._port = port
        self.device_id = device_id
        self._server: ModbusTcpServer | None = None
        self.requests = 0
        self._device = SimDevice(id=device_id, simdata=self._blocks(), action=self._action)

    # -- the memory's API ------------------------------------------------------------------------
    @property
    def map(self) -> DiverterMap:
        return self.memory.map

    @property
    def regs(self) -> npt.NDArray[np.uint16]:
        """The register image itself (not a copy): tests may write torn slots straight into it."""
        return self.memory.regs

    @property
    def delay(self) -> ResponseDelay:
        return self.memory.delay

    @property
    def command_problems(self) -> list[CommandProblem]:
        return self.memory.command_problems

    def read(self, name: str) -> int:
        return self.memory.read(name)

    def write(self, name: str, value: int) -> None:
        self.memory.write(name, value)

    def ring(self, name: str) -> DiverterRing:
        return self.memory.ring(name)

    def set_chute_status(self, chute_id: int, bits: int) -> None:
        self.memory.set_chute_status(chute_id, bits)

    def set_chute_fill(self, chute_id: int, n: int) -> None:
        self.memory.set_chute_fill(chute_id, n)

    def set_chute_block(self, block: str, values: npt.ArrayLike) -> None:
        self.memory.set_chute_block(block, values)

    def take_commands(self, ring: str = "arm") -> list[dict[str, int]]:
        return self.memory.take_commands(ring)

    def reset(self) -> None:
        """Cold start of the PLC memory: every register zero, every ring empty from seq 1."""
        self.memory.reset()

    @property
    def unknown_device_requests(self) -> dict[int, int]:
        """Requests refused with 0x0B because they named another device id, by id (this start)."""
        ctx = self._server.context if self._server is not None else None
        return dict(ctx.unknown) if isinstance(ctx, _OwnDeviceOnly) else {}

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
        server.context = _OwnDeviceOnly(self._device)
        await server.serve_forever(background=True)
        listener = server.transport
        sockets = getattr(listener, "sockets", None)
        if self._port == 0 and sockets:
            self._port = int(sockets[0].getsockname()[1])
        self._server = server
        await self.memory.start()
        log.debug("diverter PLC server listening on %s:%d", self.host, self._port)

    async def stop(self) -> None:
        """Stop listening and close every connection, so that ``start()`` can take the port again."""
        await self.memory.stop()
        server, self._server = self._server, None
        if server is None:
            return
        listener = server.transport
        shut_listener(listener if isinstance(listener, asyncio.AbstractServer) else None)
        self._shut_connections(server)
        await server.shutdown()  # type: ignore[no-untyped-call]
        if isinstance(listener, asyncio.AbstractServer):
            await listener.wait_closed()

    def drop_connections(self) -> int:
        """Close every client connection (PLC connection drop); the server keeps listening."""
        if self._server is None:
            return 0
        return self._shut_connections(self._server) + self.memory.drop_connections()

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

    # -- the wire ------------------------------------------------------------------------------
    def _blocks(self) -> list[SimData]:
        """Contiguous SimData runs over 0..span, read-only wherever the PLC owns the register."""
        writable = self.memory.writable
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
        try:
            if set_values is None:
                current[off : off + count] = self.memory.host_read(address, count).tolist()
            else:
                self.memory.host_write(address, [int(v) for v in set_values])
        except ImageRefused:
            return ExcCodes.ILLEGAL_ADDRESS
        return None

"""The simulated PLCs' memory images, in memory or served over the real protocols (OPC UA, Modbus TCP).

The simulator's PLC logic drives these through one PLC-side interface per PLC (``ConveyorImage``,
``DiverterImage``); the controller talks to the servers through control.plc exactly as it would
to real PLCs, or to the memory images through ``harness.memlink`` with no socket. Typical tick::

    async with ConveyorPlcServer(tm.conveyor) as conv, DiverterPlcServer(tm.diverter) as div:
        await conv.write_many({"encoder_count": enc, "plc_heartbeat": hb})
        await conv.ring("induct").push(tracking_id=t, leading_count=a, trailing_count=b)
        cmd = await conv.read("belt_command_seq")          # what the host wrote
        for arm in div.take_commands():                     # new arm commands, acked
            await div.ring("arm_result").push(command_seq=arm["seq"], ...)
        div.set_chute_fill(chute_id, n)

``ConveyorMemory(tm.conveyor)`` and ``DiverterMemory(tm.diverter)`` take the place of the servers
one for one. Ring heads and acks are readable by name too: ``"induct.ack"``, ``"confirm.ack"``.
Fault hooks on all: ``delay.seconds`` (slow answers; servers only), ``drop_connections()``,
``stop()`` then ``start()`` (restart, memory retained), ``reset()`` (cold start: all zero).

The servers load asyncua and pymodbus (about a second) only when first asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from plc_sim.servers.image import (
    CommandProblem,
    ConveyorImage,
    ConveyorRing,
    DiverterImage,
    ImageRefused,
    PlcImage,
)
from plc_sim.servers.memory import ConveyorMemory, DiverterMemory, DiverterRing
from plc_sim.servers.ring import ServerRing

if TYPE_CHECKING:
    from plc_sim.servers.modbus_server import DiverterPlcServer
    from plc_sim.servers.opcua_server import ConveyorPlcServer

__all__ = [
    "CommandProblem",
    "ConveyorImage",
    "ConveyorMemory",
    "ConveyorPlcServer",
    "ConveyorRing",
    "DiverterImage",
    "DiverterMemory",
    "DiverterPlcServer",
    "DiverterRing",
    "ImageRefused",
    "PlcImage",
    "ServerRing",
]

_SERVERS = {
    "ConveyorPlcServer": "plc_sim.servers.opcua_server",
    "DiverterPlcServer": "plc_sim.servers.modbus_server",
}


def __getattr__(name: str) -> Any:
    module = _SERVERS.get(name)
    if module is None:
        raise AttributeError(f"module 'plc_sim.servers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

"""The simulated PLCs' memory images served over the real protocols (OPC UA, Modbus TCP).

The simulator's PLC logic drives these; the controller talks to them through control.plc
exactly as it would to real PLCs. Typical tick::

    async with ConveyorPlcServer(tm.conveyor) as conv, DiverterPlcServer(tm.diverter) as div:
        await conv.write_many({"encoder_count": enc, "plc_heartbeat": hb})
        await conv.ring("induct").push(tracking_id=t, leading_count=a, trailing_count=b)
        cmd = await conv.read("belt_command_seq")          # what the host wrote
        for arm in div.take_commands():                     # new arm commands, acked
            await div.ring("arm_result").push(command_seq=arm["seq"], ...)
        div.set_chute_fill(chute_id, n)

Ring heads and acks are readable by name too: ``"induct.ack"``, ``"confirm.ack"``.
Fault hooks on both: ``delay.seconds`` (slow answers), ``drop_connections()``, ``stop()`` then
``start()`` (restart on the same port, memory retained), ``reset()`` (cold start: all zero).
"""

from plc_sim.servers.modbus_server import CommandProblem, DiverterPlcServer, DiverterRing
from plc_sim.servers.opcua_server import ConveyorPlcServer, ConveyorRing
from plc_sim.servers.ring import ServerRing

__all__ = [
    "CommandProblem",
    "ConveyorPlcServer",
    "ConveyorRing",
    "DiverterPlcServer",
    "DiverterRing",
    "ServerRing",
]

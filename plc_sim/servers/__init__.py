"""The simulated PLCs' memory images served over the real protocols (OPC UA, Modbus TCP)."""

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

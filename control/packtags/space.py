"""The PackTags address space: the official PackML NodeSet (OPC 30050) imported into asyncua,
one PackMLBaseObjectType instance for the sorter, and the values a Snapshot gives it.

The NodeSet (``Opc.Ua.PackML.NodeSet2.xml``, OPC Foundation UA-Nodeset, MIT licence) supplies
the types; instantiating PackMLBaseObjectType creates only its mandatory children, so the
optional Admin and Status variables this unit reports are added here with the NodeSet's browse
names and data types. What OPC 30050 does not have - TR88's ``Command`` tags (CntrlCmd and
CmdChangeRequest, UnitMode and UnitModeChangeRequest, MachSpeed) and a plain Int32
``StateCurrent`` - lives in our own namespace, ``urn:sortcentre:packtags``, so nobody mistakes it
for the standard's. Node ids are strings, ``Sorter.Status.CurMachSpeed`` and so on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server
from asyncua.ua.uaerrors import UaError

from control.packtags.model import Snapshot
from plant.codes import PackMLState, UnitMode
from plant.uatypes import string_node

__all__ = ["NODESET", "OUR_URI", "PACKML_URI", "Space", "build_space"]

NODESET = Path(__file__).with_name("Opc.Ua.PackML.NodeSet2.xml")
PACKML_URI = "http://opcfoundation.org/UA/PackML/"
OUR_URI = "urn:sortcentre:packtags"
ROOT = "Sorter"
_BASE_OBJECT_TYPE = 6  # PackMLBaseObjectType, i=6 in the PackML namespace
_STATE_MACHINE_TYPES = (3, 2, 1)  # Base, Machine, Execute state machine types
_ALARM_TYPE, _COUNT_TYPE = 15, 14
_PARCEL = ua.EUInformation(
    NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact", UnitId=-1,
    DisplayName=ua.LocalizedText("parcel"), Description=ua.LocalizedText("parcel"),
)
V = ua.VariantType

# Admin/Status variables this unit fills: name -> (parent, type NodeId in the PackML ns or a
# VariantType, value rank)
_OPTIONAL: dict[str, tuple[str, int | V, int]] = {
    "ProdProcessedCount": ("Admin", _COUNT_TYPE, 1),
    "ProdDefectiveCount": ("Admin", _COUNT_TYPE, 1),
    "StopReason": ("Admin", _ALARM_TYPE, -1),
    "StopReasonExtent": ("Admin", V.Int32, -1),
    "Warning": ("Admin", _ALARM_TYPE, 1),
    "WarningExtent": ("Admin", V.Int32, -1),
    "Alarm": ("Admin", _ALARM_TYPE, 1),
    "AlarmExtent": ("Admin", V.Int32, -1),
    "StateCurrentTime": ("Admin", V.Int32, 2),
    "StateCumulativeTime": ("Admin", V.Int32, 2),
    "ModeCurrentTime": ("Admin", V.Int32, 1),
    "ModeCumulativeTime": ("Admin", V.Int32, 1),
    "AccTimeSinceReset": ("Admin", V.Int32, -1),
}
# ours: name -> (parent, type, initial, writable when commands are enabled)
_OURS: dict[str, tuple[str, V, Any, bool]] = {
    "StateCurrent": ("Status", V.Int32, 0, False),
    "BeltSpeed": ("Status", V.Float, 0.0, False),
    "CntrlCmd": ("Command", V.Int32, 0, True),
    "CmdChangeRequest": ("Command", V.Boolean, False, True),
    "UnitMode": ("Command", V.Int32, int(UnitMode.PRODUCTION), True),
    "UnitModeChangeRequest": ("Command", V.Boolean, False, True),
    "MachSpeed": ("Command", V.Float, 0.0, False),
}


@dataclass(slots=True)
class Space:
    """Node ids by tag name ("Status.CurMachSpeed"), and the last value written to each."""

    server: Server
    ns: int
    pns: int
    nodes: dict[str, ua.NodeId] = field(default_factory=dict)
    types: dict[str, V] = field(default_factory=dict)
    state_ids: dict[str, ua.NodeId] = field(default_factory=dict)  # state name -> its node in the types
    last: dict[str, Any] = field(default_factory=dict)

    def node(self, name: str) -> Node:
        return self.server.get_node(self.nodes[name])

    async def write(self, name: str, value: Any) -> None:
        """Write ``value`` to the tag if it changed (a subscriber sees changes, not refreshes)."""
        if self.last.get(name, _UNSET) == value:
            return
        self.last[name] = value
        vt = self.types[name]
        if isinstance(value, tuple | list):
            value = [list(x) if isinstance(x, tuple | list) else x for x in value]
        await self.server.write_attribute_value(self.nodes[name], ua.DataValue(ua.Variant(value, vt)))

    async def apply(self, snap: Snapshot) -> None:
        """Every tag from one snapshot."""
        await self.write("Status.StateCurrent", snap.state)
        await self.write("Status.UnitModeCurrent", snap.mode)
        await self.write("Status.CurMachSpeed", float(snap.cur_mach_speed))
        await self.write("Status.MachSpeed", float(snap.mach_speed))
        await self.write("Command.MachSpeed", float(snap.mach_speed))
        await self.write("Status.BeltSpeed", float(snap.belt_speed))
        await self.write("Status.EquipmentBlocked", snap.blocked)
        await self.write("Status.EquipmentStarved", snap.starved)
        await self._write_states(snap.state)
        # made by load_data_type_definitions from the NodeSet, so unknown to the type checker
        count: Any = ua.PackMLCountDataType  # type: ignore[attr-defined]
        alarm: Any = ua.PackMLAlarmDataType  # type: ignore[attr-defined]
        if self.last.get("_processed") != snap.processed:
            self.last["_processed"] = snap.processed
            await self._raw("Admin.ProdProcessedCount", [count(ID=1, Name="parcels sorted to their chute", Unit=_PARCEL,
                                                               Count=snap.processed, AccCount=snap.processed)])
        if self.last.get("_defective") != snap.defective:
            self.last["_defective"] = snap.defective
            await self._raw("Admin.ProdDefectiveCount", [
                count(ID=i, Name=reason, Unit=_PARCEL, Count=n, AccCount=n)
                for i, (reason, n) in enumerate(snap.defective, start=1)])
        if self.last.get("_stop") != snap.stop_reason:
            self.last["_stop"] = snap.stop_reason
            code, text = snap.stop_reason
            await self._raw("Admin.StopReason", alarm(ID=code, Value=code, Message=text))
            await self.write("Admin.StopReasonExtent", 1)
        for name, items in (("Warning", snap.warnings), ("Alarm", snap.alarms)):
            if self.last.get(f"_{name}") != items:
                self.last[f"_{name}"] = items
                await self._raw(f"Admin.{name}", [alarm(ID=c, Value=c, Message=t) for c, t in items])
                await self.write(f"Admin.{name}Extent", len(items))
        await self.write("Admin.StateCurrentTime", snap.state_current_time)
        await self.write("Admin.StateCumulativeTime", snap.state_cumulative_time)
        await self.write("Admin.ModeCurrentTime", snap.mode_current_time)
        await self.write("Admin.ModeCumulativeTime", snap.mode_cumulative_time)
        await self.write("Admin.AccTimeSinceReset", snap.acc_time_since_reset)

    async def _raw(self, name: str, value: Any) -> None:
        await self.server.write_attribute_value(self.nodes[name], ua.DataValue(ua.Variant(value, V.ExtensionObject)))

    async def _write_states(self, state: int) -> None:
        """BaseStateMachine / MachineState / ExecuteState CurrentState (text and Id) for ``state``."""
        if self.last.get("_state") == state:
            return
        self.last["_state"] = state
        name = PackMLState(state).name.title() if state in PackMLState._value2member_map_ else ""
        levels = _levels(name)
        for level, current in zip(("BaseStateMachine", "BaseStateMachine.MachineState",
                                   "BaseStateMachine.MachineState.ExecuteState"), levels, strict=True):
            await self.server.write_attribute_value(
                self.nodes[f"{level}.CurrentState"], ua.DataValue(ua.Variant(ua.LocalizedText(current), V.LocalizedText)))
            sid = self.state_ids.get(current, ua.NodeId())
            await self.server.write_attribute_value(
                self.nodes[f"{level}.CurrentState.Id"], ua.DataValue(ua.Variant(sid, V.NodeId)))


_UNSET = object()
_BASE_STATES = {"Aborting", "Aborted"}
_MACHINE_STATES = {"Stopped", "Stopping", "Clearing"}


def _levels(name: str) -> tuple[str, str, str]:
    """The state at each level of OPC 30050's nested machines: Base (Aborting, Aborted, Cleared),
    Machine inside Cleared (Stopped, Stopping, Clearing, Running), Execute inside Running."""
    if name in _BASE_STATES:
        return name, "", ""
    if name in _MACHINE_STATES:
        return "Cleared", name, ""
    return "Cleared", "Running", name


async def build_space(server: Server, tag_id: str, *, commands_enabled: bool) -> Space:
    """Import the NodeSet and make the sorter's unit object under Objects/PackMLObjects."""
    await server.import_xml(str(NODESET))
    await server.load_data_type_definitions()
    pns = await server.get_namespace_index(PACKML_URI)
    ns = await server.register_namespace(OUR_URI)
    sp = Space(server, ns, pns)
    parent = server.get_node(_num(72, pns))  # PackMLObjects folder of the NodeSet
    unit = await parent.add_object(string_node(ROOT, ns), ua.QualifiedName(ROOT, ns), objecttype=_num(_BASE_OBJECT_TYPE, pns))
    await server.get_node(string_node(f"{ROOT}.TagID", ns)).write_value(ua.Variant(tag_id, V.String))
    for name, vt in (("Status.UnitModeCurrent", V.Int32), ("Status.CurMachSpeed", V.Float),
                     ("Status.MachSpeed", V.Float), ("Status.EquipmentBlocked", V.Boolean),
                     ("Status.EquipmentStarved", V.Boolean)):
        sp.nodes[name], sp.types[name] = string_node(f"{ROOT}.{name}", ns), vt
    await sp.node("Status.UnitModeCurrent").write_value(ua.Variant(int(UnitMode.PRODUCTION), V.Int32))
    for level in ("BaseStateMachine", "BaseStateMachine.MachineState", "BaseStateMachine.MachineState.ExecuteState"):
        sp.nodes[f"{level}.CurrentState"] = string_node(f"{ROOT}.{level}.CurrentState", ns)
        sp.nodes[f"{level}.CurrentState.Id"] = await _ensure_id(server, ns, f"{ROOT}.{level}.CurrentState")
    for tid in _STATE_MACHINE_TYPES:
        for child in await server.get_node(_num(tid, pns)).get_children():
            if await child.read_node_class() == ua.NodeClass.Object:
                bn = await child.read_browse_name()
                sp.state_ids.setdefault(bn.Name, child.nodeid)
    objs = {"Status": server.get_node(string_node(f"{ROOT}.Status", ns)), "Admin": server.get_node(string_node(f"{ROOT}.Admin", ns))}
    objs["Command"] = await unit.add_object(string_node(f"{ROOT}.Command", ns), ua.QualifiedName("Command", ns))
    for name, (where, dtype, rank) in _OPTIONAL.items():
        key = f"{where}.{name}"
        nid = string_node(f"{ROOT}.{key}", ns)
        if not isinstance(dtype, V):  # a PackML structure (VariantType is an int too)
            initial: Any = [] if rank == 1 else None
            var = await objs[where].add_variable(nid, ua.QualifiedName(name, pns), ua.Variant(initial, V.ExtensionObject),
                                                 datatype=_num(dtype, pns))
            sp.types[key] = V.ExtensionObject
        else:
            initial = [] if rank == 1 else [[]] if rank == 2 else 0
            var = await objs[where].add_variable(nid, ua.QualifiedName(name, pns), ua.Variant(initial, dtype))
            sp.types[key] = dtype
        if rank >= 1:
            await var.write_value_rank(rank)
        sp.nodes[key] = nid
    for name, (where, vt, initial, writable) in _OURS.items():
        key = f"{where}.{name}"
        nid = string_node(f"{ROOT}.{key}", ns)
        var = await objs[where].add_variable(nid, ua.QualifiedName(name, ns), ua.Variant(initial, vt))
        if writable and commands_enabled:
            await var.set_writable(True)
        sp.nodes[key], sp.types[key] = nid, vt
    return sp


async def _ensure_id(server: Server, ns: int, state_var: str) -> ua.NodeId:
    """The ``Id`` property of a CurrentState variable (mandatory only on the top machine)."""
    nid = string_node(f"{state_var}.Id", ns)
    try:
        await server.get_node(nid).read_browse_name()
    except UaError:
        await server.get_node(string_node(state_var, ns)).add_property(nid, ua.QualifiedName("Id", 0), ua.Variant(ua.NodeId(), V.NodeId))
    return nid


def _num(identifier: int, ns: int) -> ua.NodeId:
    """A numeric NodeId (asyncua's annotations want its own int aliases)."""
    return ua.NodeId(identifier, ns)  # type: ignore[arg-type]

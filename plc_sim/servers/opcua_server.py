"""The conveyor PLC's memory image served over OPC UA, built from the tag map.

The simulator's PLC logic reads and writes tags by name here; the controller sees exactly what
it would see on a real PLC: string NodeIds in the map's namespace, exact variant types, and
writes refused where the map says the PLC owns the tag.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from asyncua import ua
from asyncua.common.callback import CallbackType
from asyncua.common.node import Node
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.attribute_ids import AttributeIds

from plant.tagmap import ConveyorMap
from plant.uatypes import VARIANT, string_node
from plc_sim.servers.faults import ResponseDelay, shut_connections, shut_listener
from plc_sim.servers.ring import ServerRing

log = logging.getLogger(__name__)

Value = bool | int | float

APPLICATION_URI = "urn:sortcentre:conveyor-plc:server"
RANGES: dict[str, tuple[int, int]] = {"Int32": (-(2**31), 2**31 - 1), "UInt32": (0, 2**32 - 1)}


def coerce(type_: str, value: Value, what: str) -> Value:
    """A Python value of the right kind for ``type_``; raises ValueError instead of wrapping."""
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


class _PasswordUsers(UserManager):
    """Accepts only the configured user names and passwords; anonymous only when none are set."""

    def __init__(self, users: Mapping[str, str] | None) -> None:
        self._users = dict(users or {})

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if not self._users:
            return User(role=UserRole.User)
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class _Tag:
    __slots__ = ("nodeid", "type", "writable")

    def __init__(self, nodeid: ua.NodeId, type_: str, writable: bool) -> None:
        self.nodeid = nodeid
        self.type = type_
        self.writable = writable


class ConveyorRing(ServerRing):
    """An OPC UA ring: one UInt32[size] array per field, plus head (PLC) and ack (host) scalars."""

    def __init__(self, server: ConveyorPlcServer, name: str, size: int, fields: dict[str, ua.NodeId],
                 head: ua.NodeId, ack: ua.NodeId) -> None:
        super().__init__(name, size, tuple(fields))
        self._server = server
        self._nodes = fields
        self._head = head
        self._ack = ack
        self.columns = {f: np.zeros(size, dtype=np.uint32) for f in fields}

    async def _write_slot(self, slot: int, values: Mapping[str, int]) -> None:
        checked = {f: coerce("UInt32", v, f"{self.name}.{f}") for f, v in values.items()}
        for f, v in checked.items():
            self.columns[f][slot] = v
            await self._server._write_node(self._nodes[f], self.columns[f].tolist(), ua.VariantType.UInt32)

    async def _write_head(self, seq: int) -> None:
        await self._server._write_node(self._head, seq, ua.VariantType.UInt32)

    async def _read_ack(self) -> int:
        return int(self._server._read_node(self._ack))

    async def _clear(self) -> None:
        for f, col in self.columns.items():
            col[:] = 0
            await self._server._write_node(self._nodes[f], col.tolist(), ua.VariantType.UInt32)
        await self._write_head(0)
        await self._server._write_node(self._ack, 0, ua.VariantType.UInt32)


class ConveyorPlcServer:
    """asyncua server holding every tag and ring of ``TagMap.conveyor``.

    ``start`` after ``stop`` is a PLC restart on the same port; tag values survive (retained
    memory), connections do not. Building the standard address space costs ~2 s once per
    instance, so restart the same instance rather than making a new one.
    """

    def __init__(
        self,
        tags: ConveyorMap,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/sortcentre/conveyor",
        *,
        users: Mapping[str, str] | None = None,
        certificate: str | None = None,
        private_key: str | None = None,
    ) -> None:
        self.tags = tags
        self.host = host
        self._port = port
        self.path = path
        self.delay = ResponseDelay()
        self._users = users
        self._cert = certificate
        self._key = private_key
        self._server: Server | None = None
        self._running = False
        self._ns = 0
        self._tags: dict[str, _Tag] = {}
        self._rings: dict[str, ConveyorRing] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self._port}{self.path}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def namespace_index(self) -> int:
        return self._ns

    @property
    def running(self) -> bool:
        return self._running

    async def start(self) -> None:
        if self._running:
            return
        if self._server is None:
            await self._build()
        assert self._server is not None
        self._server.set_endpoint(self.url)
        await self._server.start()
        bs = self._server.bserver
        if bs is not None and self._port == 0:
            self._port = int(bs.port or 0)
        self._running = True
        log.debug("conveyor PLC server listening on %s", self.url)

    async def stop(self) -> None:
        """Stop listening and close every connection, so that ``start()`` can take the port again."""
        if self._server is not None and self._running:
            self._running = False
            bs = self._server.bserver
            shut_listener(getattr(bs, "_server", None) if bs is not None else None)
            shut_connections(self._server.iserver.asyncio_transports)
            await self._server.stop()

    async def reset(self) -> None:
        """Cold start of the PLC memory: every tag to zero/false, every ring empty from seq 1."""
        zero: dict[str, Value] = {"Boolean": False, "Int32": 0, "UInt32": 0, "Double": 0.0}
        for tag in self._tags.values():
            await self._write_node(tag.nodeid, zero[tag.type], VARIANT[tag.type])
        for ring in self._rings.values():
            await ring.reset()

    def drop_connections(self) -> int:
        """Close every client connection (PLC connection drop); the server keeps listening."""
        if self._server is None:
            return 0
        return shut_connections(self._server.iserver.asyncio_transports)

    async def __aenter__(self) -> ConveyorPlcServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- PLC-side access ------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self._tags)

    async def read(self, name: str) -> Value:
        tag = self._tag(name)
        v = self._read_node(tag.nodeid)
        return bool(v) if tag.type == "Boolean" else float(v) if tag.type == "Double" else int(v)

    async def write(self, name: str, value: Value) -> None:
        tag = self._tag(name)
        await self._write_node(tag.nodeid, coerce(tag.type, value, name), VARIANT[tag.type])

    async def write_many(self, values: Mapping[str, Value]) -> None:
        checked = [(self._tag(n), coerce(self._tag(n).type, v, n)) for n, v in values.items()]
        for tag, v in checked:
            await self._write_node(tag.nodeid, v, VARIANT[tag.type])

    def ring(self, name: str) -> ConveyorRing:
        try:
            return self._rings[name]
        except KeyError:
            raise KeyError(f"no ring {name!r}; rings: {sorted(self._rings)}") from None

    def nodeid(self, name: str) -> ua.NodeId:
        return self._tag(name).nodeid

    def _tag(self, name: str) -> _Tag:
        try:
            return self._tags[name]
        except KeyError:
            raise KeyError(f"no tag {name!r} in the conveyor map") from None

    def _read_node(self, nodeid: ua.NodeId) -> Any:
        assert self._server is not None, "server not built: call start() first"
        dv = self._server.read_attribute_value(nodeid)
        return dv.Value.Value if dv.Value is not None else None

    async def _write_node(self, nodeid: ua.NodeId, value: Any, vt: ua.VariantType) -> None:
        assert self._server is not None, "server not built: call start() first"
        await self._server.write_attribute_value(nodeid, ua.DataValue(ua.Variant(value, vt)))

    # -- address space --------------------------------------------------------------------------
    async def _build(self) -> None:
        server = Server(user_manager=_PasswordUsers(self._users))
        await server.init()
        server.disable_clock(True)  # its 1 s time loop would make stop() take a second
        server.set_server_name("sortcentre conveyor PLC (simulated)")
        await server.set_application_uri(APPLICATION_URI)
        policies = [ua.SecurityPolicyType.NoSecurity]
        if self._cert and self._key:
            await server.load_certificate(self._cert)
            await server.load_private_key(self._key)
            policies += [
                ua.SecurityPolicyType.Basic256Sha256_Sign,
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ]
        server.set_security_policy(policies)
        self._ns = await server.register_namespace(self.tags.namespace_uri)
        self._server = server
        await self._build_nodes(server)
        server.subscribe_server_callback(CallbackType.PreRead, self._delay_hook)
        server.subscribe_server_callback(CallbackType.PreWrite, self._delay_hook)

    async def _delay_hook(self, event: Any, dispatcher: Any) -> None:
        await self.delay.wait()

    async def _build_nodes(self, server: Server) -> None:
        ns = self._ns
        root_name = self.tags.root
        folders: dict[str, Node] = {}

        async def parent_of(node: str) -> Node:
            parts = node.split(".")
            if parts[0] != root_name or len(parts) < 2:
                raise ValueError(f"node {node!r} is not under the root object {root_name!r}")
            parent = server.nodes.objects
            for i in range(1, len(parts)):
                key = ".".join(parts[:i])
                if key not in folders:
                    folders[key] = await parent.add_object(string_node(key, ns), ua.QualifiedName(parts[i - 1], ns))
                parent = folders[key]
            return parent

        async def add(node: str, type_: str, writable: bool, doc: str, unit: str, initial: Any) -> ua.NodeId:
            parent = await parent_of(node)
            nid = string_node(node, ns)
            var = await parent.add_variable(nid, ua.QualifiedName(node.rsplit(".", 1)[1], ns), initial, VARIANT[type_])
            if isinstance(initial, list):
                await var.write_value_rank(1)
                await var.write_attribute(
                    AttributeIds.ArrayDimensions, ua.DataValue(ua.Variant([len(initial)], ua.VariantType.UInt32))
                )
            if writable:
                await var.set_writable(True)
            if doc:
                await var.write_attribute(
                    AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(doc), ua.VariantType.LocalizedText))
                )
            if unit:
                eu = ua.EUInformation(
                    NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
                    UnitId=-1,
                    DisplayName=ua.LocalizedText(unit),
                    Description=ua.LocalizedText(unit),
                )
                await var.add_property(string_node(node + ".EngineeringUnits", ns), ua.QualifiedName("EngineeringUnits", 0), eu)
            return nid

        zero: dict[str, Any] = {"Boolean": False, "Int32": 0, "UInt32": 0, "Double": 0.0}
        for name, tag in self.tags.tags.items():
            nid = await add(tag.node, tag.type, tag.access == "w", tag.doc, tag.unit, zero[tag.type])
            self._tags[name] = _Tag(nid, tag.type, tag.access == "w")
        for rname, ring in self.tags.rings.items():
            head = await add(ring.head, "UInt32", False,
                             f"{rname} ring: seq of the newest entry; the PLC writes the slot first, then head", "seq", 0)
            ack = await add(ring.ack, "UInt32", True,
                            f"{rname} ring: seq of the newest entry the controller has stored", "seq", 0)
            self._tags[f"{rname}.head"] = _Tag(head, "UInt32", False)
            self._tags[f"{rname}.ack"] = _Tag(ack, "UInt32", True)
            fields: dict[str, ua.NodeId] = {}
            for fname, fnode in ring.fields.items():
                fields[fname] = await add(
                    fnode, "UInt32", False,
                    f"{rname} ring field {fname}: entry seq is at index seq % {ring.size}", "", [0] * ring.size,
                )
            self._rings[rname] = ConveyorRing(self, rname, ring.size, fields, head, ack)

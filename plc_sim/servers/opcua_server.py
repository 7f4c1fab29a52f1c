"""The conveyor PLC's memory image served over OPC UA, built from the tag map: ConveyorPlcServer.

The simulator's PLC logic reads and writes tags by name here; the controller sees exactly what
it would see on a real PLC: string NodeIds in the map's namespace, exact variant types, and
writes refused where the map says the PLC owns the tag. The program-side API, its value checks
and the ring layout are ``ConveyorBase``'s (plc_sim/servers/image.py), shared with the
socket-free ``ConveyorMemory``; the values themselves live in the asyncua address space.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
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
from plc_sim.servers.image import RANGES, ZERO, ConveyorBase, ConveyorRing, Value, coerce

if TYPE_CHECKING:
    from plc_sim.scenario import PlcSecurity

__all__ = ["APPLICATION_URI", "RANGES", "ConveyorPlcServer", "ConveyorRing", "coerce"]

log = logging.getLogger(__name__)

APPLICATION_URI = "urn:sortcentre:conveyor-plc:server"


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


class ConveyorPlcServer(ConveyorBase):
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
        security: PlcSecurity | None = None,
    ) -> None:
        super().__init__(tags)
        self.host = host
        self._port = port
        self.path = path
        self.delay = ResponseDelay()
        self._users = users
        self._cert = certificate
        self._key = private_key
        # the scenario's plc.opcua_security: when its mode is not None it replaces the
        # certificate/private_key pair above (which also keeps the unsecured endpoint)
        self.security = security if security is not None and security.mode != "None" else None
        self._server: Server | None = None
        self._running = False
        self._ns = 0
        self._nodes: dict[str, ua.NodeId] = {}
        self._columns: dict[tuple[str, str], ua.NodeId] = {}

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

    # -- the address space as ConveyorBase's store ------------------------------------------------
    def nodeid(self, name: str) -> ua.NodeId:
        self._tag(name)
        return self._node(name)

    def _node(self, name: str) -> ua.NodeId:
        assert self._server is not None, "server not built: call start() first"
        return self._nodes[name]

    async def _load(self, name: str) -> Any:
        return self._read_node(self._node(name))

    async def _store(self, name: str, value: Value) -> None:
        await self._write_node(self._node(name), value, VARIANT[self.table[name].type])

    async def _store_column(self, ring: str, field: str, column: npt.NDArray[np.uint32]) -> None:
        assert self._server is not None, "server not built: call start() first"
        await self._write_node(self._columns[ring, field], column.tolist(), ua.VariantType.UInt32)

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
        if self.security is not None:
            await self._secure(server)
        else:
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

    async def _secure(self, server: Server) -> None:
        """The same set-up as the controller's own servers (plant/opcua_security.py): one policy
        and mode offered, client certificates checked against the trust list (refused ones saved
        to rejected/), users from the users file besides any given to the constructor."""
        from plant.opcua_security import load_users, secure_server

        sec = self.security
        assert sec is not None
        users = {**(self._users or {}), **load_users(sec.users_file)}
        await secure_server(server, sec.pki_dir, sec.policy, sec.mode, users=users, who="conveyor PLC client")

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

        for name, tag in self.tags.tags.items():
            t = self.table[name]
            self._nodes[name] = await add(t.node, t.type, t.writable, tag.doc, tag.unit, ZERO[t.type])
        for rname, ring in self.tags.rings.items():
            for part, doc in (
                ("head", f"{rname} ring: seq of the newest entry; the PLC writes the slot first, then head"),
                ("ack", f"{rname} ring: seq of the newest entry the controller has stored"),
            ):
                t = self.table[f"{rname}.{part}"]
                self._nodes[f"{rname}.{part}"] = await add(t.node, t.type, t.writable, doc, "seq", ZERO[t.type])
            for fname, fnode in ring.fields.items():
                self._columns[rname, fname] = await add(
                    fnode, "UInt32", False,
                    f"{rname} ring field {fname}: entry seq is at index seq % {ring.size}", "", [0] * ring.size,
                )

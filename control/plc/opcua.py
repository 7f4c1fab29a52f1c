"""The conveyor PLC link over OPC UA (asyncua client): batched reads and writes, rings by polling.

NodeIds are resolved once at connect (namespace index looked up by URI, never assumed), every
value goes out as a Variant of the tag's declared type, and a ring is one read of head plus all
field arrays, so an entry is never seen half-written. A caller that has just read the head (with
the scalars) passes it and the ring read fetches only the arrays: every entry up to that head was
complete before the head was set, and a slot overwritten since shows up by its seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.crypto import security_policies
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError

from control.plc.link import (
    PlcConnectionError,
    PlcError,
    PlcRefused,
    PlcValueError,
    RingRead,
    Value,
    given_head,
)
from control.plc.rings import collect
from plant.site import OpcuaEndpoint
from plant.tagmap import ConveyorMap
from plant.uatypes import VARIANT, string_node

if TYPE_CHECKING:
    from plant.opcua_security import OpcuaSecuritySettings

log = logging.getLogger(__name__)
T = TypeVar("T")

_INT_RANGE: dict[str, tuple[int, int]] = {"Int32": (-(2**31), 2**31 - 1), "UInt32": (0, 2**32 - 1)}
# Status codes meaning "the server answered and said no"; anything else is treated as a link fault.
_REFUSALS = {
    StatusCodes.BadUserAccessDenied,
    StatusCodes.BadNotWritable,
    StatusCodes.BadTypeMismatch,
    StatusCodes.BadNodeIdUnknown,
    StatusCodes.BadNodeIdInvalid,
    StatusCodes.BadOutOfRange,
    StatusCodes.BadWriteNotSupported,
    StatusCodes.BadAttributeIdInvalid,
    StatusCodes.BadIdentityTokenRejected,
    StatusCodes.BadIdentityTokenInvalid,
}


def to_variant(type_: str, value: Value, name: str) -> ua.Variant:
    """``value`` as a Variant of exactly ``type_``; raises PlcValueError rather than wrap or round."""
    if type_ == "Boolean":
        if not isinstance(value, bool):
            raise PlcValueError(f"{name}: {value!r} is not a bool (tag type Boolean)")
        return ua.Variant(value, ua.VariantType.Boolean)
    if type_ == "Double":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PlcValueError(f"{name}: {value!r} is not a number (tag type Double)")
        return ua.Variant(float(value), ua.VariantType.Double)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlcValueError(f"{name}: {value!r} is not an int (tag type {type_})")
    lo, hi = _INT_RANGE[type_]
    if not lo <= value <= hi:
        raise PlcValueError(f"{name}: {value} out of range for {type_} ({lo}..{hi})")
    return ua.Variant(value, VARIANT[type_])


class OpcuaLink:
    """A PlcLink to the conveyor PLC. Not reconnecting by itself: wrap it in ReconnectingLink."""

    def __init__(
        self,
        endpoint: OpcuaEndpoint,
        tags: ConveyorMap,
        *,
        url: str | None = None,
        timeout_s: float = 1.0,
        name: str = "conveyor",
        cert_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.tags = tags
        self.url = url or endpoint.url
        self.timeout_s = timeout_s
        self.cert_dir = cert_dir
        self._client: Client | None = None
        # the service's opcua_security section; when its mode is not None it replaces the
        # site file's security_policy (trust list, own certificate, user from a password file)
        self.security: OpcuaSecuritySettings | None = None
        self._nodes: dict[str, Node] = {}
        self._types: dict[str, str] = {}
        self._rings: dict[str, tuple[Node, list[Node], list[str], int]] = {}

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def connect(self) -> None:
        """Connect, or prove the existing session answers; raises PlcConnectionError otherwise.

        A client left from before an outage is never taken on trust: it answers a read of the
        server state now, or it is dropped and a new session is made.
        """
        if self._client is not None:
            try:
                await self._call("probe", lambda c: c.get_node(ObjectIds.Server_ServerStatus_State).read_value())
                return
            except PlcError:
                await self._drop()
        client = Client(self.url, timeout=self.timeout_s, watchdog_intervall=max(1.0, 2 * self.timeout_s))
        client.application_uri = "urn:sortcentre:controller"
        client.session_timeout = 60_000
        if self.endpoint.username is not None:
            client.set_user(self.endpoint.username)
        if self.endpoint.password is not None:
            client.set_password(self.endpoint.password)
        try:
            async with asyncio.timeout(self.timeout_s * 5):
                await self._set_security(client)
                await client.connect()
        except BaseException as exc:
            await self._quiet_disconnect(client)
            if isinstance(exc, asyncio.CancelledError):
                raise
            if isinstance(exc, Exception):
                raise self._translate(exc, f"connect to {self.url}") from exc
            raise
        try:
            await self._resolve(client)
        except BaseException:
            await self._quiet_disconnect(client)
            raise
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._quiet_disconnect(client)

    async def _drop(self) -> None:
        """Forget a connection in an unknown state: no goodbye round trips to a PLC that is gone."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.disconnect_socket()
            await self._quiet_disconnect(client)

    # -- PlcLink -------------------------------------------------------------------------------
    async def read(self, names: Sequence[str]) -> dict[str, Value]:
        nodes = [self._node(n) for n in names]
        dvs = await self._call("read", lambda c: c.read_attributes(nodes, AttributeIds.Value))
        out: dict[str, Value] = {}
        for n, dv in zip(names, dvs, strict=True):
            out[n] = self._value(n, dv)
        return out

    async def write(self, values: Mapping[str, Value]) -> None:
        if not values:
            return
        names = list(values)
        nodes = [self._node(n) for n in names]
        # Value only, no timestamps: asyncua stamps a bare Variant with SourceTimestamp=now, and
        # PLC servers may refuse timestamped writes (Siemens S7-1200/1500 and Kepware answer
        # BadWriteNotSupported, OPC UA Part 4 5.10.4.2); tests/interop checks this against one.
        data = [ua.DataValue(to_variant(self._types[n], values[n], n)) for n in names]
        results = await self._call(
            "write", lambda c: c.write_values(nodes, data, raise_on_partial_error=False)
        )
        bad = [(n, r) for n, r in zip(names, results, strict=True) if not r.is_good()]
        if bad:
            what = ", ".join(f"{n}: {r.name}" for n, r in bad)
            raise PlcRefused(f"{self.name}: write refused ({what})")

    async def read_ring(self, ring: str, after_seq: int, head: int | None = None) -> RingRead:
        head_node, field_nodes, field_names, size = self._ring(ring)
        if head is None:
            nodes = [head_node, *field_nodes]
        else:
            head = given_head(self.name, ring, head)
            nodes = field_nodes
        dvs = await self._call("read ring", lambda c: c.read_attributes(nodes, AttributeIds.Value))
        if head is None:
            head = int(self._value(f"{ring}.head", dvs[0]))
            dvs = dvs[1:]
        columns = {}
        for f, dv in zip(field_names, dvs, strict=True):
            arr = np.asarray(self._raw(f"{ring}.{f}", dv), dtype=np.int64)
            if arr.shape != (size,):
                raise PlcRefused(f"{self.name}: ring {ring}.{f} has {arr.shape} entries, the tag map says {size}")
            columns[f] = arr
        return collect(after_seq, head, size, columns)

    async def ack_ring(self, ring: str, seq: int) -> None:
        self._ring(ring)
        await self.write({f"{ring}.ack": seq})

    async def write_ring(self, ring: str, entries: Sequence[Mapping[str, int]], *, with_head: bool = True) -> None:
        raise PlcValueError(f"{self.name}: the conveyor PLC has no host->PLC ring {ring!r}")

    # -- internals -----------------------------------------------------------------------------
    def _node(self, name: str) -> Node:
        if self._client is None:
            raise PlcConnectionError(f"{self.name}: not connected")
        try:
            return self._nodes[name]
        except KeyError:
            raise PlcValueError(f"{self.name}: no tag {name!r} in the conveyor tag map") from None

    def _ring(self, ring: str) -> tuple[Node, list[Node], list[str], int]:
        if self._client is None:
            raise PlcConnectionError(f"{self.name}: not connected")
        try:
            return self._rings[ring]
        except KeyError:
            raise PlcValueError(f"{self.name}: no ring {ring!r} in the conveyor tag map") from None

    def _raw(self, name: str, dv: ua.DataValue) -> Any:
        if dv.StatusCode is not None and not dv.StatusCode.is_good():
            raise PlcRefused(f"{self.name}: read of {name} refused: {dv.StatusCode.name}")
        if dv.Value is None:
            raise PlcRefused(f"{self.name}: read of {name} returned no value")
        return dv.Value.Value

    def _value(self, name: str, dv: ua.DataValue) -> Value:
        v = self._raw(name, dv)
        t = self._types[name]
        if t == "Boolean":
            return bool(v)
        if t == "Double":
            return float(v)
        return int(v)

    async def _call(self, what: str, fn: Callable[[Client], Awaitable[T]]) -> T:
        client = self._client
        if client is None:
            raise PlcConnectionError(f"{self.name}: not connected")
        try:
            async with asyncio.timeout(self.timeout_s):
                return await fn(client)
        except PlcError:
            raise
        except Exception as exc:
            err = self._translate(exc, what)
            if isinstance(err, PlcConnectionError):
                await self._drop()
            raise err from exc

    def _translate(self, exc: Exception, what: str) -> PlcError:
        trust = self._trust_problem(exc)
        if trust is not None:  # still a link fault: the trust list is re-read on every attempt
            return PlcConnectionError(f"{self.name}: {what} refused: {trust}")
        if isinstance(exc, TimeoutError):
            return PlcConnectionError(f"{self.name}: {what} timed out after {self.timeout_s} s")
        if isinstance(exc, UaStatusCodeError) and exc.code in _REFUSALS:
            return PlcRefused(f"{self.name}: {what} refused: {exc}")
        return PlcConnectionError(f"{self.name}: {what} failed: {type(exc).__name__}: {exc}")

    def _trust_problem(self, exc: BaseException) -> str | None:
        """What an engineer must do when certificates are the reason, else None.

        asyncua wraps our validator's refusal in a status code error, so the text naming the
        PLC's certificate and the command that trusts it (plant/opcua_security.py) is found in
        the exception chain; a refusal by the PLC itself names our certificate to hand over.
        """
        from plant.opcua_security import UntrustedCertificate

        seen: BaseException | None = exc
        for _ in range(8):
            if seen is None:
                break
            if isinstance(seen, UntrustedCertificate):
                return str(seen)
            seen = seen.__cause__ or seen.__context__
        sec = self.security
        if (sec is not None and sec.mode != "None" and isinstance(exc, UaStatusCodeError)
                and exc.code in (StatusCodes.BadCertificateUntrusted, StatusCodes.BadSecurityChecksFailed)):
            return (f"the PLC does not trust our certificate ({type(exc).__name__}): "
                    f"it must trust {Path(sec.pki_dir) / 'own' / 'cert.der'}")
        return None

    async def _set_security(self, client: Client) -> None:
        if self.security is not None and self.security.mode != "None":
            from plant.opcua_security import secure_client

            await secure_client(client, self.security, f"{self.name} PLC")
            return
        policy = self.endpoint.security_policy
        if policy == "None":
            return
        mode = ua.MessageSecurityMode.Sign if policy.endswith("_Sign") else ua.MessageSecurityMode.SignAndEncrypt
        cert_dir = self.cert_dir or Path(tempfile.gettempdir()) / "sortcentre-opcua-client"
        cert, key = await client.setup_self_signed_certificate(
            cert_dir / "controller-key.pem", cert_dir / "controller-cert.der"
        )
        await client.set_security(security_policies.SecurityPolicyBasic256Sha256, str(cert), str(key), mode=mode)

    async def _resolve(self, client: Client) -> None:
        """Namespace by URI, NodeIds once; then one read proves every tag exists on the server."""
        async with asyncio.timeout(self.timeout_s * 5):
            try:
                ns = await client.get_namespace_index(self.tags.namespace_uri)
            except ValueError as exc:
                raise PlcRefused(f"{self.name}: server has no namespace {self.tags.namespace_uri!r}") from exc
            except Exception as exc:
                raise self._translate(exc, "namespace lookup") from exc
            nodes: dict[str, Node] = {}
            types: dict[str, str] = {}
            for n, tag in self.tags.tags.items():
                nodes[n] = client.get_node(string_node(tag.node, ns))
                types[n] = tag.type
            rings: dict[str, tuple[Node, list[Node], list[str], int]] = {}
            for rn, ring in self.tags.rings.items():
                head = client.get_node(string_node(ring.head, ns))
                nodes[f"{rn}.head"], nodes[f"{rn}.ack"] = head, client.get_node(string_node(ring.ack, ns))
                types[f"{rn}.head"] = types[f"{rn}.ack"] = "UInt32"
                fnames = list(ring.fields)
                rings[rn] = (head, [client.get_node(string_node(ring.fields[f], ns)) for f in fnames], fnames, ring.size)
            every = list(nodes.values()) + [fn for r in rings.values() for fn in r[1]]
            try:
                dvs = await client.read_attributes(every, AttributeIds.Value)
            except Exception as exc:
                raise self._translate(exc, "tag check") from exc
        missing = [str(node.nodeid.Identifier) for node, dv in zip(every, dvs, strict=True)
                   if dv.StatusCode is not None and not dv.StatusCode.is_good()]
        if missing:
            raise PlcRefused(f"{self.name}: server lacks tag-map nodes {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        self._nodes, self._types, self._rings = nodes, types, rings

    @staticmethod
    async def _quiet_disconnect(client: Client) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await client.disconnect()
        with contextlib.suppress(Exception):
            client.disconnect_socket()

"""The conveyor PLC server as the simulator drives it: typed tags, rings, users, restart.

The program-side checks run on the memory image too: both are ConveyorBase over another store."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest
import pytest_asyncio
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from control.plc import PlcConnectionError, PlcError
from control.plc.opcua import OpcuaLink
from plant.site import OpcuaEndpoint
from plant.tagmap import TagMap
from plc_sim.servers import ConveyorMemory, ConveyorPlcServer
from plc_sim.servers.opcua_server import APPLICATION_URI

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server(tag_map: TagMap, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ConveyorPlcServer]:
    certs = tmp_path_factory.mktemp("server-certs")
    key, cert = certs / "key.pem", certs / "cert.der"
    await setup_self_signed_certificate(
        key, cert, APPLICATION_URI, socket.gethostname(), [ExtendedKeyUsageOID.SERVER_AUTH], {}
    )
    async with ConveyorPlcServer(
        tag_map.conveyor, users={"line1": "s3cret"}, certificate=str(cert), private_key=str(key)
    ) as s:
        yield s


async def test_plc_side_writes_are_typed_and_range_checked(server: ConveyorPlcServer) -> None:
    await check_plc_side_writes(server)


async def test_memory_plc_side_writes_are_typed_and_range_checked(tag_map: TagMap) -> None:
    await check_plc_side_writes(ConveyorMemory(tag_map.conveyor))


async def check_plc_side_writes(server: ConveyorPlcServer | ConveyorMemory) -> None:
    await server.write_many({"speed_actual": 2, "belt_state": 6, "faults": 3})
    assert await server.read("speed_actual") == 2.0 and isinstance(await server.read("speed_actual"), float)
    assert await server.read("belt_state") == 6
    with pytest.raises(ValueError, match="out of range"):
        await server.write("faults", -1)
    with pytest.raises(ValueError, match="not a Boolean"):
        await server.write("induct_enable", 3)
    with pytest.raises(KeyError, match="nope"):
        await server.read("nope")
    with pytest.raises(ValueError):  # nothing of a refused batch is written
        await server.write_many({"belt_state": 4, "faults": 2**32})
    assert await server.read("belt_state") == 6
    await server.write("induct_enable", 1)  # the PLC program may write 0/1 and integral floats
    await server.write("jam_eye", 3.0)
    assert await server.read("induct_enable") is True and await server.read("jam_eye") == 3
    ring = server.ring("scan")
    assert await ring.push(tracking_id=5, trigger_count=2**32 - 1, lap=1) == 1
    assert ring.columns["trigger_count"][1] == 2**32 - 1 and await server.read("scan.head") == 1
    with pytest.raises(ValueError, match="out of range"):
        await ring.push(tracking_id=-1)
    assert ring.head == 1
    await server.reset()
    assert await server.read("belt_state") == 0 and await server.read("scan.head") == 0
    assert ring.head == 0 and not ring.columns["trigger_count"].any()


async def test_password_is_required_when_users_are_configured(server: ConveyorPlcServer, tag_map: TagMap) -> None:
    anonymous = OpcuaLink(OpcuaEndpoint(port=server.port), tag_map.conveyor, timeout_s=1.0)
    with pytest.raises(PlcError):
        await anonymous.connect()
    assert not anonymous.connected
    wrong = OpcuaLink(OpcuaEndpoint(port=server.port, username="line1", password="x"), tag_map.conveyor)
    with pytest.raises(PlcError):
        await wrong.connect()
    good = OpcuaLink(OpcuaEndpoint(port=server.port, username="line1", password="s3cret"), tag_map.conveyor)
    await good.connect()
    try:
        await good.write({"watchdog_ms": 1000})
        assert await server.read("watchdog_ms") == 1000
    finally:
        await good.close()


async def test_link_refuses_a_server_without_the_tag_map_namespace(server: ConveyorPlcServer, tag_map: TagMap) -> None:
    other = tag_map.conveyor.model_copy(update={"namespace_uri": "urn:someone-else"})
    link = OpcuaLink(OpcuaEndpoint(port=server.port, username="line1", password="s3cret"), other)
    with pytest.raises(PlcError, match="namespace"):
        await link.connect()
    assert not link.connected


async def test_nothing_listens_after_stop(server: ConveyorPlcServer, tag_map: TagMap) -> None:
    await server.stop()
    link = OpcuaLink(OpcuaEndpoint(port=server.port, username="line1", password="s3cret"), tag_map.conveyor, timeout_s=0.5)
    try:
        with pytest.raises(PlcConnectionError):
            await link.connect()
    finally:
        await server.start()


@pytest.mark.parametrize("policy", ["Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"])
async def test_basic256sha256_with_self_made_certificates(
    server: ConveyorPlcServer,
    tag_map: TagMap,
    tmp_path: Path,
    policy: Literal["Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"],
) -> None:
    ep = OpcuaEndpoint(port=server.port, security_policy=policy, username="line1", password="s3cret")
    link = OpcuaLink(ep, tag_map.conveyor, timeout_s=2.0, cert_dir=tmp_path)
    await link.connect()
    try:
        client = link._client  # white-box: prove the channel really is secured, not a silent fallback
        assert client is not None and client.security_policy.URI.endswith("#Basic256Sha256")
        await link.write({"speed_setpoint": 1.75})
        assert await server.read("speed_setpoint") == 1.75
        assert (await link.read(["speed_setpoint"])) == {"speed_setpoint": 1.75}
    finally:
        await link.close()
    assert (tmp_path / "controller-cert.der").exists()

"""The simulator's conveyor PLC served securely (scenario ``plc.opcua_security``) and the
controller's driver (``OpcuaLink`` with the service's ``opcua_security``) against it over
127.0.0.1: SignAndEncrypt with both policies and a user login, a wrong password and an
anonymous session refused, an untrusted controller or PLC certificate refused and saved to
rejected/. One server per policy for the module: building its address space costs ~2 s, and the
trust list is re-read on every connection, so each test sets the trust it needs."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from control.certs_cli import add_arguments, run
from control.plc import PlcConnectionError, PlcRefused
from control.plc.opcua import OpcuaLink
from plant.opcua_security import OpcuaSecuritySettings, Pki, load_any_certificate, thumbprint
from plant.site import load_site
from plant.tagmap import TagMap
from plc_sim.scenario import PlcSecurity
from plc_sim.servers import ConveyorPlcServer
from plc_sim.servers.opcua_server import APPLICATION_URI as PLC_URI

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "belt-2-chute"


def certs(*argv: str) -> int:
    """`sortctl certs ...` in this process."""
    p = argparse.ArgumentParser()
    add_arguments(p)
    return run(p.parse_args(list(argv)))


class Floor:
    """Two PKIs (the controller's, the PLC's), a users file and a password file."""

    def __init__(self, root: Path) -> None:
        self.controller = Pki(root / "controller-pki")
        self.plc = Pki(root / "plc-pki")
        assert certs("create", "--dir", str(self.controller.root)) == 0
        assert certs("create", "--uri", PLC_URI, "--name", "conveyor PLC", "--dir", str(self.plc.root)) == 0
        self.users = root / "plc-users"
        self.users.write_text(f"# conveyor PLC sessions\noperator:{PASSWORD}\n")
        self.password = root / "plc-password"
        self.password.write_text(PASSWORD + "\n")

    def trust_both(self) -> None:
        assert certs("trust", str(self.controller.cert), "--dir", str(self.plc.root)) == 0
        assert certs("trust", str(self.plc.cert), "--dir", str(self.controller.root)) == 0

    def distrust_all(self) -> None:
        for pki in (self.controller, self.plc):
            for folder in (pki.trusted, pki.rejected):
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)

    def client(self, policy: str, *, user: str | None = "operator", password_file: Path | None = None
               ) -> OpcuaSecuritySettings:
        return OpcuaSecuritySettings.model_validate({
            "mode": "SignAndEncrypt", "policy": policy, "pki_dir": str(self.controller.root), "user": user,
            "password_file": str(password_file or self.password) if user is not None else None,
        })


@pytest.fixture(scope="module")
def floor(tmp_path_factory: pytest.TempPathFactory) -> Floor:
    return Floor(tmp_path_factory.mktemp("sim-security"))


@pytest_asyncio.fixture(loop_scope="module", scope="module", params=["Basic256Sha256", "Aes256_Sha256_RsaPss"])
async def plc(request: pytest.FixtureRequest, floor: Floor, tag_map: TagMap) -> AsyncIterator[ConveyorPlcServer]:
    sec = PlcSecurity(mode="SignAndEncrypt", policy=request.param, pki_dir=str(floor.plc.root),
                      users_file=str(floor.users))
    async with ConveyorPlcServer(tag_map.conveyor, security=sec) as server:
        yield server


def link_to(plc: ConveyorPlcServer, tag_map: TagMap, sec: OpcuaSecuritySettings) -> OpcuaLink:
    ep = load_site(ROOT / "config" / "site.yaml").plc.conveyor.model_copy(update={"port": plc.port})
    lk = OpcuaLink(ep, tag_map.conveyor, timeout_s=2.0)
    lk.security = sec
    return lk


async def test_driver_signs_encrypts_and_logs_in(plc: ConveyorPlcServer, floor: Floor, tag_map: TagMap) -> None:
    assert plc.security is not None
    floor.distrust_all()
    floor.trust_both()
    lk = link_to(plc, tag_map, floor.client(plc.security.policy))
    try:
        await lk.connect()
        client = lk._client
        assert client is not None
        assert client.security_policy.Mode.name == "SignAndEncrypt"
        assert client.security_policy.URI.endswith("#" + plc.security.policy)
        await plc.write("belt_state", 6)
        assert await lk.read(["belt_state"]) == {"belt_state": 6}
        await lk.write({"host_heartbeat": 41})
        assert await plc.read("host_heartbeat") == 41
    finally:
        await lk.close()


async def test_only_the_secure_endpoint_is_offered(plc: ConveyorPlcServer) -> None:
    """No unsecured endpoint beside it: a client cannot choose to skip security."""
    from asyncua.client.client import Client

    client = Client(plc.url, timeout=2)
    endpoints = await client.connect_and_get_server_endpoints()
    assert {e.SecurityMode.name for e in endpoints} == {"SignAndEncrypt"}
    assert {str(t.TokenType.name) for e in endpoints for t in e.UserIdentityTokens} == {"UserName"}


async def test_wrong_password_and_anonymous_are_refused(plc: ConveyorPlcServer, floor: Floor, tag_map: TagMap,
                                                        tmp_path: Path) -> None:
    assert plc.security is not None
    floor.distrust_all()
    floor.trust_both()
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    for sec in (floor.client(plc.security.policy, password_file=wrong), floor.client(plc.security.policy, user=None)):
        lk = link_to(plc, tag_map, sec)
        with pytest.raises(PlcRefused, match="BadIdentityToken|BadUserAccessDenied"):
            await lk.connect()
        assert not lk.connected


async def test_untrusted_controller_is_refused_and_lands_in_the_plcs_rejected(
        plc: ConveyorPlcServer, floor: Floor, tag_map: TagMap) -> None:
    assert plc.security is not None
    floor.distrust_all()
    assert certs("trust", str(floor.plc.cert), "--dir", str(floor.controller.root)) == 0  # we trust the PLC only
    lk = link_to(plc, tag_map, floor.client(plc.security.policy))
    with pytest.raises(PlcConnectionError, match="the PLC does not trust our certificate") as refused:
        await lk.connect()
    assert str(floor.controller.cert) in str(refused.value)
    saved = floor.plc.rejected / f"{thumbprint(load_any_certificate(floor.controller.cert))}.der"
    assert saved.exists()
    # the PLC's engineer trusts it from rejected/: the next attempt gets in, no restart
    assert certs("trust", str(saved), "--dir", str(floor.plc.root)) == 0
    try:
        await lk.connect()
        assert lk.connected
    finally:
        await lk.close()


async def test_untrusted_plc_is_refused_with_the_fix_in_the_message(
        plc: ConveyorPlcServer, floor: Floor, tag_map: TagMap, caplog: pytest.LogCaptureFixture) -> None:
    assert plc.security is not None
    floor.distrust_all()
    assert certs("trust", str(floor.controller.cert), "--dir", str(floor.plc.root)) == 0  # the PLC would let us in
    lk = link_to(plc, tag_map, floor.client(plc.security.policy))
    with pytest.raises(PlcConnectionError, match="conveyor PLC certificate not trusted") as refused:
        await lk.connect()
    tp = thumbprint(load_any_certificate(floor.plc.cert))
    saved = floor.controller.rejected / f"{tp}.der"
    assert saved.exists()
    # the error (which the service logs) names the certificate, where it went and the fix
    assert f"URI={PLC_URI}" in str(refused.value) and f"sortctl certs trust {saved}" in str(refused.value)
    said = [r.getMessage() for r in caplog.records if "not trusted" in r.getMessage()]
    assert any(f"sortctl certs trust {saved}" in m for m in said), said

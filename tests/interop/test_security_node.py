"""OPC UA security against an independent stack, node-opcua, in both directions.

1. A node-opcua client (``secure_read_check.js``) against our asyncua servers set up by
   plant/opcua_security.py - the PackTags server and the simulator's conveyor PLC - with
   SignAndEncrypt: refused while its certificate is untrusted (the certificate lands in our
   rejected/), let in once `sortctl certs trust` took it from there, with Basic256Sha256 and with
   Aes256_Sha256_RsaPss; it logs in with a user and reads StateCurrent / belt_state.
2. The controller's driver (``OpcuaLink`` with ``opcua_security``) against a node-opcua server
   (``conveyor_plc_server.js`` with a ``security`` spec: SignAndEncrypt only, its own PKI that
   trusts only the certificates put in it, users only): refused with the certificate named and
   the fix while the node server's certificate is untrusted, connected once trusted, a wrong
   password refused.

Skipped without Node.js or tests/interop/node_modules (``npm ci --prefix tests/interop``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from control.certs_cli import add_arguments, run
from control.packtags.server import PackTagsServer
from control.packtags.space import OUR_URI
from control.plc import PlcConnectionError, PlcRefused
from control.plc.opcua import OpcuaLink
from control.service.settings import PackTagsSettings
from plant.opcua_security import (
    OpcuaSecuritySettings,
    Pki,
    load_any_certificate,
    server_configurator,
    thumbprint,
)
from plant.site import Site, load_site
from plant.tagmap import TagMap
from plc_sim.scenario import PlcSecurity
from plc_sim.servers import ConveyorPlcServer
from plc_sim.servers.opcua_server import APPLICATION_URI as PLC_URI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NODE = shutil.which("node")
if NODE is None:
    pytest.skip("Node.js is not installed (node-opcua interop tests need node >= 20 and npm)", allow_module_level=True)


@pytest.fixture(autouse=True, scope="module")
def _node_opcua(node_modules: Path) -> Path:
    """node-opcua installed (``npm ci`` once per session, conftest.py) before any test here."""
    return node_modules

pytestmark = [pytest.mark.interop, pytest.mark.asyncio(loop_scope="module")]

USER, PASSWORD = "scada", "tr88-packml"
MODE = "SignAndEncrypt"


def certs(*argv: str) -> int:
    """`sortctl certs ...` in this process."""
    p = argparse.ArgumentParser()
    add_arguments(p)
    return run(p.parse_args(list(argv)))


async def _node(script: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        NODE or "node", str(HERE / script), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


class NodeClient:
    """secure_read_check.js as one child for the module (loading node-opcua costs 2-4 s)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def attempt(self, url: str, pki: Path, **opts: Any) -> dict[str, Any]:
        """One connection attempt with SignAndEncrypt and our SCADA user unless ``opts`` say
        otherwise; the report (``error`` set when refused)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        req = {"url": url, "pki": str(pki), "mode": MODE, "user": USER, "password": PASSWORD, **opts}
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 45)
        if not line:
            _out, err = await self.proc.communicate()
            pytest.fail(f"secure_read_check.js ended ({self.proc.returncode}): {err.decode()[-3000:]}")
        return json.loads(line)  # type: ignore[no-any-return]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def node_client() -> AsyncIterator[NodeClient]:
    # The module's loop runs getaddrinfo in its default executor; start that thread now, so the
    # suite's leaked-thread guard does not take it for a test's.
    await asyncio.get_running_loop().run_in_executor(None, lambda: None)
    proc = await _node("secure_read_check.js")
    yield NodeClient(proc)
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        await asyncio.wait_for(proc.communicate(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.communicate()


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(ROOT / "config" / "site.yaml")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PKIs, users files; node-opcua's PKI folders too (nothing lands in the home directory)."""
    w = tmp_path_factory.mktemp("interop-security")
    assert certs("create", "--dir", str(w / "controller-pki")) == 0
    assert certs("create", "--uri", PLC_URI, "--name", "conveyor PLC", "--dir", str(w / "plc-pki")) == 0
    (w / "users").write_text(f"{USER}:{PASSWORD}\n")
    return w


def _reset_trust(pki: Pki) -> None:
    for folder in (pki.trusted, pki.rejected):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)


@contextlib.asynccontextmanager
async def our_server(kind: str, policy: str, work: Path, tag_map: TagMap) -> AsyncIterator[tuple[str, Pki, str, str]]:
    """One of our two servers, SignAndEncrypt with ``policy`` and users only: its URL, its PKI,
    the namespace and the string NodeId of its state variable."""
    if kind == "packtags":
        pki = Pki(work / "controller-pki")
        _reset_trust(pki)
        sec = OpcuaSecuritySettings(mode=MODE, policy=policy, pki_dir=str(pki.root))
        pt = PackTagsServer(PackTagsSettings(enabled=True, port=0), server_configurator(sec, str(work / "users")))
        await pt.start()
        try:
            yield pt.url, pki, OUR_URI, "Sorter.Status.StateCurrent"
        finally:
            await pt.stop()
    else:
        pki = Pki(work / "plc-pki")
        _reset_trust(pki)
        psec = PlcSecurity(mode=MODE, policy=policy, pki_dir=str(pki.root),
                           users_file=str(work / "users"))
        async with ConveyorPlcServer(tag_map.conveyor, security=psec) as plc:
            await plc.write("belt_state", 6)
            yield plc.url, pki, tag_map.conveyor.namespace_uri, tag_map.conveyor.tags["belt_state"].node


# == 1. node-opcua client -> our servers =============================================================
@pytest.mark.parametrize("kind", ["conveyor", "packtags"])
async def test_node_client_is_refused_until_trusted_then_reads_the_state(kind: str, work: Path, tag_map: TagMap,
                                                                          node_client: NodeClient) -> None:
    node_pki = work / f"node-client-{kind}"
    async with our_server(kind, "Basic256Sha256", work, tag_map) as (url, pki, ns_uri, state):
        opts = {"policy": "Basic256Sha256", "namespace_uri": ns_uri, "nodes": [state]}
        rep = await node_client.attempt(url, node_pki, **opts)
        assert "BadCertificateUntrusted" in rep.get("error", ""), rep
        saved = pki.rejected / f"{thumbprint(load_any_certificate(Path(rep['certificate'])))}.der"
        assert saved.exists(), (rep, list(pki.rejected.iterdir()))
        assert certs("trust", str(saved), "--dir", str(pki.root)) == 0  # the engineer's step; no restart
        rep = await node_client.attempt(url, node_pki, **opts)
        assert "error" not in rep, rep
        assert rep["security"] == {"mode": MODE, "policy": "Basic256Sha256"}
        got = rep["reads"][state]
        assert got["status"] == "Good" and got["type"] == "Int32", got
        if kind == "conveyor":
            assert got["value"] == 6  # the PLC program's Execute


@pytest.mark.parametrize("kind", ["conveyor", "packtags"])
async def test_node_client_reads_over_aes256_sha256_rsapss_and_a_wrong_password_is_refused(
        kind: str, work: Path, tag_map: TagMap, node_client: NodeClient) -> None:
    node_pki = work / f"node-client-{kind}"  # the certificate of the test above, if it ran
    async with our_server(kind, "Aes256_Sha256_RsaPss", work, tag_map) as (url, pki, ns_uri, state):
        opts = {"policy": "Aes256_Sha256_RsaPss", "namespace_uri": ns_uri, "nodes": [state]}
        rep = await node_client.attempt(url, node_pki, **opts)  # a trust list emptied: refused
        assert "BadCertificateUntrusted" in rep.get("error", ""), rep
        assert certs("trust", rep["certificate"], "--dir", str(pki.root)) == 0
        rep = await node_client.attempt(url, node_pki, **opts)
        assert "error" not in rep, rep
        assert rep["reads"][state]["status"] == "Good" and rep["reads"][state]["type"] == "Int32", rep
        rep = await node_client.attempt(url, node_pki, **{**opts, "password": "guess"})
        assert any(c in rep.get("error", "") for c in ("BadIdentityTokenRejected", "BadUserAccessDenied")), rep
        rep = await node_client.attempt(url, node_pki, **{**opts, "user": None})  # anonymous
        assert "error" in rep, rep


# == 2. our driver -> a node-opcua server ==============================================================
class NodePlc:
    """conveyor_plc_server.js with security: SignAndEncrypt + Basic256Sha256 only, users only."""

    def __init__(self, proc: asyncio.subprocess.Process, ready: dict[str, Any]) -> None:
        self.proc = proc
        self.port = int(ready["port"])
        self.certificate = Path(ready["certificate"])

    async def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.communicate(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.communicate()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def node_plc(work: Path, tag_map: TagMap, site: Site) -> AsyncIterator[NodePlc]:
    spec = work / "secure-server-spec.json"
    spec.write_text(json.dumps({
        **tag_map.conveyor.model_dump(mode="json"), "path": site.plc.conveyor.path, "users": {USER: PASSWORD},
        "security": {"policies": ["Basic256Sha256"], "modes": [MODE], "allow_anonymous": False},
    }))
    pki = work / "node-plc-pki"
    # the node server's own trust list holds the controller's certificate (node-opcua's layout)
    (pki / "server" / "trusted" / "certs").mkdir(parents=True)
    shutil.copy(work / "controller-pki" / "own" / "cert.der", pki / "server" / "trusted" / "certs" / "controller.der")
    proc = await _node("conveyor_plc_server.js", str(spec), str(pki), "0")
    assert proc.stdout is not None and proc.stderr is not None
    try:
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        assert ready.get("ready"), ready
    except (TimeoutError, ValueError, AssertionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        _out, err = await proc.communicate()
        pytest.fail(f"conveyor_plc_server.js did not start: {err.decode()[-3000:]}")
    plc = NodePlc(proc, ready)
    yield plc
    await plc.stop()


def _link(node_plc: NodePlc, site: Site, tag_map: TagMap, work: Path, password: str = PASSWORD) -> OpcuaLink:
    pw = work / f"password-{abs(hash(password))}"
    pw.write_text(password + "\n")
    ep = site.plc.conveyor.model_copy(update={"port": node_plc.port})
    lk = OpcuaLink(ep, tag_map.conveyor, timeout_s=3.0)
    lk.security = OpcuaSecuritySettings(mode=MODE, policy="Basic256Sha256", pki_dir=str(work / "controller-pki"),
                                        user=USER, password_file=str(pw))
    return lk


async def test_driver_refuses_the_untrusted_node_server_then_connects_once_trusted(
        node_plc: NodePlc, site: Site, tag_map: TagMap, work: Path) -> None:
    pki = Pki(work / "controller-pki")
    _reset_trust(pki)
    lk = _link(node_plc, site, tag_map, work)
    with pytest.raises(PlcConnectionError, match="conveyor PLC certificate not trusted") as refused:
        await lk.connect()
    assert not lk.connected
    tp = thumbprint(load_any_certificate(node_plc.certificate))
    saved = pki.rejected / f"{tp}.der"
    assert saved.exists()
    msg = str(refused.value)
    assert "URI=urn:sortcentre:interop:node-opcua-plc" in msg and f"sortctl certs trust {saved}" in msg, msg

    assert certs("trust", str(saved), "--dir", str(pki.root)) == 0
    try:
        await lk.connect()
        client = lk._client
        assert client is not None and client.security_policy.Mode.name == MODE
        await lk.write({"host_heartbeat": 1234, "speed_setpoint": 1.75})
        assert await lk.read(["host_heartbeat", "speed_setpoint"]) == {"host_heartbeat": 1234, "speed_setpoint": 1.75}
    finally:
        await lk.close()


async def test_driver_with_a_wrong_password_is_refused_by_the_node_server(
        node_plc: NodePlc, site: Site, tag_map: TagMap, work: Path) -> None:
    pki = Pki(work / "controller-pki")
    assert certs("trust", str(node_plc.certificate), "--dir", str(pki.root)) == 0
    lk = _link(node_plc, site, tag_map, work, password="guess")
    with pytest.raises(PlcRefused, match="BadIdentityToken|BadUserAccessDenied"):
        await lk.connect()
    assert not lk.connected

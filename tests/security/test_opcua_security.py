"""OPC UA security between our own ends over 127.0.0.1: the PackTags server and an asyncua
client set up by `plant.opcua_security`, SignAndEncrypt, certificates from `sortctl certs`."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua.client.client import Client

from control.certs_cli import add_arguments, run
from control.packtags.server import PackTagsServer
from control.service.settings import PackTagsSettings
from plant.opcua_security import (
    OpcuaSecuritySettings,
    Pki,
    TrustList,
    UntrustedCertificate,
    create_certificate,
    load_any_certificate,
    secure_client,
    server_configurator,
    thumbprint,
)

SCADA_URI = "urn:sortcentre:test-scada"


def _certs(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    return run(p.parse_args(argv))


@pytest.fixture
def pkis(tmp_path: Path) -> tuple[Pki, Pki]:
    server, client = Pki(tmp_path / "server"), Pki(tmp_path / "client")
    assert _certs(["create", "--dir", str(server.root)]) == 0
    assert _certs(["create", "--dir", str(server.root)]) == 1  # never replaced silently
    create_certificate(client, SCADA_URI, "test scada")
    return server, client


@pytest_asyncio.fixture
async def secure_server(pkis: tuple[Pki, Pki]) -> AsyncIterator[PackTagsServer]:
    spki, _ = pkis
    sec = OpcuaSecuritySettings(mode="SignAndEncrypt", policy="Basic256Sha256", pki_dir=str(spki.root))
    srv = PackTagsServer(PackTagsSettings(enabled=True, port=0), server_configurator(sec, None))
    await srv.start()
    yield srv
    await srv.stop()


def _client_sec(pki: Pki, policy: str = "Basic256Sha256") -> OpcuaSecuritySettings:
    return OpcuaSecuritySettings(mode="SignAndEncrypt", policy=policy,  # type: ignore[arg-type]
                                 pki_dir=str(pki.root), application_uri=SCADA_URI)


async def test_trusted_both_ways_connects_with_sign_and_encrypt(secure_server: PackTagsServer,
                                                                pkis: tuple[Pki, Pki]) -> None:
    spki, cpki = pkis
    assert _certs(["trust", str(cpki.cert), "--dir", str(spki.root)]) == 0
    assert _certs(["trust", str(spki.cert), "--dir", str(cpki.root)]) == 0
    client = Client(secure_server.url, timeout=5)
    await secure_client(client, _client_sec(cpki))
    async with client:
        ns = await client.get_namespace_index("urn:sortcentre:packtags")
        assert ns > 0
        assert client.security_policy.Mode.name == "SignAndEncrypt"


async def test_untrusted_client_is_refused_and_lands_in_rejected(secure_server: PackTagsServer,
                                                                 pkis: tuple[Pki, Pki]) -> None:
    spki, cpki = pkis
    assert _certs(["trust", str(spki.cert), "--dir", str(cpki.root)]) == 0  # the client trusts the server
    client = Client(secure_server.url, timeout=5)
    await secure_client(client, _client_sec(cpki))
    with pytest.raises(Exception, match="BadCertificateUntrusted|Untrusted|untrusted"):
        async with client:
            pass
    tp = thumbprint(load_any_certificate(cpki.cert))
    assert (spki.rejected / f"{tp}.der").exists()
    # the engineer trusts it from rejected/: the next attempt gets in, no restart
    assert _certs(["trust", str(spki.rejected / f"{tp}.der"), "--dir", str(spki.root)]) == 0
    assert not (spki.rejected / f"{tp}.der").exists()
    client = Client(secure_server.url, timeout=5)
    await secure_client(client, _client_sec(cpki))
    async with client:
        await client.get_namespace_index("urn:sortcentre:packtags")


async def test_untrusted_server_is_refused_by_our_client(secure_server: PackTagsServer, pkis: tuple[Pki, Pki]) -> None:
    spki, cpki = pkis
    shutil.copy(cpki.cert, spki.trusted / "scada.der")  # the server would let us in
    client = Client(secure_server.url, timeout=5)
    await secure_client(client, _client_sec(cpki))
    with pytest.raises(Exception):  # noqa: B017 - asyncua wraps the validator's refusal
        async with client:
            pass
    tp = thumbprint(load_any_certificate(spki.cert))
    assert (cpki.rejected / f"{tp}.der").exists()


def test_trust_list_check_names_the_file_and_the_fix(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "p")
    other = Pki(tmp_path / "o")
    cert = create_certificate(other, "urn:x", "x")
    with pytest.raises(UntrustedCertificate, match="sortctl certs trust"):
        TrustList(pki).check(cert, "PLC")

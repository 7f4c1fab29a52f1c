"""The host broker over TLS with logins, as a WMS runs it: a real Mosquitto with a TLS listener,
a password file and (for mutual TLS) client certificates from a test CA; the relay and a host
stand-in connect with their own credentials. Bad settings are refused when the command starts."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.store import EventStore
from harness.broker import Broker, BrokerTls, Watcher
from harness.testpki import TestCa
from host.endpoint import PASSWORD_ENV, BrokerEndpoint, parse_broker
from host.relay import Relay
from plant.site import Site
from tests.host.conftest import (
    ROOT,
    TOPICS,
    relay_config,
    running,
    started_broker,
    until,
    write_parcels,
)

USERS = {"sorter3": "s3-secret-pw", "wms": "wms-secret-pw"}


@pytest.fixture
def ca(tmp_path: Path) -> TestCa:
    return TestCa(tmp_path / "pki")


def _broker(tmp_path: Path, ca: TestCa, *, client_certificates: bool = False) -> Iterator[Broker]:
    server = ca.server()
    yield from started_broker(tmp_path / "broker", tls=BrokerTls(ca.cert, server.cert, server.key, client_certificates),
                              users=USERS)


@pytest.fixture
def tls_broker(tmp_path: Path, ca: TestCa) -> Iterator[Broker]:
    yield from _broker(tmp_path, ca)


@pytest.fixture
def mtls_broker(tmp_path: Path, ca: TestCa) -> Iterator[Broker]:
    yield from _broker(tmp_path, ca, client_certificates=True)


# ------------------------------------------------------------------------------ over the wire
async def test_confirmations_reach_the_host_over_tls_with_logins(tmp_path: Path, tls_broker: Broker, site: Site) -> None:
    db = tmp_path / "events.sqlite"
    write_parcels(db, 1, 40)
    async with running(db, tls_broker, site, endpoint=tls_broker.endpoint("sorter3"),
                       watcher_endpoint=tls_broker.endpoint("wms")) as r:
        await until(lambda: len(r.watcher.on("/parcel/confirmation")) >= 40, what="40 confirmations over TLS")
        assert r.relay.stats.connects == 1


async def _refused(db: Path, broker: Broker, site: Site, endpoint: BrokerEndpoint,
                   caplog: pytest.LogCaptureFixture) -> tuple[Relay, list[str]]:
    """Run a relay for ~1.5 s of retries against a broker that refuses it; its warnings."""
    relay = Relay(relay_config(db, broker, site, endpoint=endpoint))
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="host.relay"):
        task = asyncio.ensure_future(relay.run(stop))
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.wait_for(task, 10.0)
    relay.close()
    return relay, [r.getMessage() for r in caplog.records if r.name == "host.relay"]


@pytest.mark.parametrize("why", ["wrong password", "unknown user", "no login"])
async def test_a_refused_login_is_said_once_and_nothing_is_published(
    tmp_path: Path, tls_broker: Broker, site: Site, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "events.sqlite"
    write_parcels(db, 1, 5)
    good = tls_broker.endpoint("sorter3")
    endpoint = {"wrong password": BrokerEndpoint(good.host, good.port, True, good.ca_file, username="sorter3",
                                                 password="not-it"),
                "unknown user": BrokerEndpoint(good.host, good.port, True, good.ca_file, username="mallory",
                                               password="x"),
                "no login": BrokerEndpoint(good.host, good.port, True, good.ca_file)}[why]
    relay, warnings = await _refused(db, tls_broker, site, endpoint, caplog)
    assert relay.stats.connects == 0 and relay.stats.published == 0
    assert len(warnings) == 1, warnings  # retried all along, said once
    assert "authori" in warnings[0].lower() or "password" in warnings[0].lower(), warnings[0]


# paho leaves the socket of a failed TLS handshake to the garbage collector (a ResourceWarning
# per attempt, no lasting leak): not ours to close, so not an error here
HANDSHAKE_FAILS = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@HANDSHAKE_FAILS
async def test_a_broker_certificate_from_another_ca_is_refused(
    tmp_path: Path, tls_broker: Broker, site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "events.sqlite"
    write_parcels(db, 1, 5)
    stranger = TestCa(tmp_path / "other-pki", "some other CA")
    good = tls_broker.endpoint("sorter3")
    endpoint = BrokerEndpoint(good.host, good.port, True, stranger.cert, username="sorter3", password=good.password)
    relay, warnings = await _refused(db, tls_broker, site, endpoint, caplog)
    assert relay.stats.connects == 0 and len(warnings) == 1
    assert "certificate verify failed" in warnings[0], warnings[0]


@HANDSHAKE_FAILS
async def test_mutual_tls_takes_a_client_certificate_from_the_ca_and_refuses_none(
    tmp_path: Path, mtls_broker: Broker, ca: TestCa, site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "events.sqlite"
    write_parcels(db, 1, 20)
    mine, host = ca.client("sorter3"), ca.client("wms")
    relay, _ = await _refused(db, mtls_broker, site, mtls_broker.endpoint("sorter3"), caplog)
    assert relay.stats.connects == 0  # no client certificate: the TLS handshake fails
    async with running(db, mtls_broker, site, endpoint=mtls_broker.endpoint("sorter3", cert=mine.cert, key=mine.key),
                       watcher_endpoint=mtls_broker.endpoint("wms", cert=host.cert, key=host.key)) as r:
        await until(lambda: len(r.watcher.on("/parcel/confirmation")) >= 20, what="20 confirmations over mutual TLS")


async def test_the_relay_command_connects_over_tls_with_a_password_file(tmp_path: Path, tls_broker: Broker) -> None:
    """`sortctl relay` as an operator starts it: mqtts URL, CA file, user, password from a file."""
    db = tmp_path / "events.sqlite"
    write_parcels(db, 1, 3)
    pw = tmp_path / "pw"
    pw.write_text(USERS["sorter3"] + "\n")
    assert tls_broker.tls is not None
    watcher = Watcher(tls_broker.port, TOPICS.everything, identifier="wms", endpoint=tls_broker.endpoint("wms"))
    stop = asyncio.Event()
    watching = asyncio.ensure_future(watcher.run(stop))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sortctl.cli", "relay", "--db", str(db), "--broker", tls_broker.url,
        "--ca-file", str(tls_broker.tls.ca), "--username", "sorter3", "--password-file", str(pw),
        "--site", TOPICS.site, "--area", TOPICS.area, "--sorter", TOPICS.sorter,
        "--site-file", str(ROOT / "config" / "site.yaml"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != PASSWORD_ENV},
    )
    try:
        await until(lambda: len(watcher.on("/parcel/confirmation")) >= 3, 30.0, "3 confirmations from `sortctl relay`")
    finally:
        proc.terminate()
        out = (await asyncio.wait_for(proc.communicate(), 20.0))[0].decode(errors="replace")
        stop.set()
        await asyncio.wait_for(watching, 10.0)
    assert "mqtts://sorter3@127.0.0.1" in out and USERS["sorter3"] not in out


# ------------------------------------------------------------------------------ at start-up
def test_addresses_and_defaults() -> None:
    assert parse_broker("mqtts://broker.plant:8884", env={}).port == 8884
    e = parse_broker("mqtts://broker.plant", env={})
    assert (e.tls, e.port, e.url) == (True, 8883, "mqtts://broker.plant:8883")
    assert (parse_broker("10.0.0.5", env={}).port, parse_broker("mqtt://h", env={}).tls) == (1883, False)
    e = parse_broker("mqtts://sorter3@h", env={PASSWORD_ENV: "pw1"})
    assert (e.username, e.password) == ("sorter3", "pw1") and "pw1" not in e.url and "pw1" not in repr(e)


@pytest.mark.parametrize(("url", "kw", "says"), [
    ("http://h", {}, "expected mqtt://"),
    ("mqtt://u:secret@h", {}, "no password in the address"),
    ("mqtt://h", {"ca_file": Path("ca.pem")}, "need TLS"),
    ("mqtts://h", {"ca_file": Path("/nonexistent/ca.pem")}, "--ca-file /nonexistent/ca.pem: no such file"),
    ("mqtts://h", {"cert_file": Path("c.pem")}, "go together"),
    ("mqtt://h:99999", {}, "port"),
])
def test_bad_settings_are_refused_naming_what_is_wrong(url: str, kw: dict[str, Path], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_broker(url, env={}, **kw)  # type: ignore[arg-type]


def test_passwords_come_from_a_file_or_the_environment_never_alone(tmp_path: Path, ca: TestCa) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-file\nignored\n")
    assert parse_broker("mqtts://h", username="u", password_file=pw, env={PASSWORD_ENV: "env"}).password == "from-file"
    with pytest.raises(ValueError, match="needs a user name"):
        parse_broker("mqtt://h", env={PASSWORD_ENV: "pw"})
    pw.write_text("")
    with pytest.raises(ValueError, match="first line"):
        parse_broker("mqtt://h", username="u", password_file=pw, env={})
    not_a_cert = tmp_path / "junk.pem"
    not_a_cert.write_text("hello\n")
    with pytest.raises(ValueError, match="junk.pem"):
        parse_broker("mqtts://h", ca_file=not_a_cert, env={})
    other = ca.client("x")
    with pytest.raises(ValueError, match="TLS files"):  # a key that is not the certificate's
        parse_broker("mqtts://h", cert_file=ca.client("y").cert, key_file=other.key, env={})


def test_the_relay_command_exits_2_naming_a_missing_ca_file(tmp_path: Path) -> None:
    EventStore(tmp_path / "events.sqlite").close()
    got = subprocess.run(
        [sys.executable, "-m", "sortctl.cli", "relay", "--db", str(tmp_path / "events.sqlite"),
         "--broker", "mqtts://127.0.0.1:1", "--ca-file", str(tmp_path / "missing.pem"),
         "--site", "s", "--area", "a", "--sorter", "x", "--site-file", str(ROOT / "config" / "site.yaml")],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert got.returncode == 2 and "missing.pem: no such file" in got.stdout + got.stderr

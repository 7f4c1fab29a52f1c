"""The whole floor with OPC UA security on, as it is started: `sortctl sim` serving the conveyor
PLC with Basic256Sha256 SignAndEncrypt and a user login only, `sortctl run` with the
``opcua_security`` section and the PLC user's password file, each with its own PKI made by
`sortctl certs create` and the other's certificate trusted. The controller must sort."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from control.store import EventStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SORTCTL = [sys.executable, "-m", "sortctl"]
PLC_URI = "urn:sortcentre:conveyor-plc:server"


def _sortctl(*argv: str, cwd: Path) -> None:
    subprocess.run([*SORTCTL, *argv], cwd=cwd, check=True, capture_output=True, timeout=60)


def _sorted_count(db: Path) -> int:
    if not db.exists():
        return 0
    store = EventStore(db, readonly=True)
    try:
        return sum(1 for r in store.parcels() if r.state == "sorted")
    except Exception:  # the service is creating its schema
        return 0
    finally:
        store.close()


def test_controller_sorts_against_the_simulator_over_sign_and_encrypt_with_a_user(tmp_path: Path) -> None:
    _sortctl("certs", "create", "--dir", "controller-pki", cwd=tmp_path)
    _sortctl("certs", "create", "--uri", PLC_URI, "--name", "conveyor PLC", "--dir", "plc-pki", cwd=tmp_path)
    _sortctl("certs", "trust", "controller-pki/own/cert.der", "--dir", "plc-pki", cwd=tmp_path)
    _sortctl("certs", "trust", "plc-pki/own/cert.der", "--dir", "controller-pki", cwd=tmp_path)
    (tmp_path / "plc-users").write_text("operator:s3cret-belt\n")
    (tmp_path / "plc-password").write_text("s3cret-belt\n")
    (tmp_path / "service.yaml").write_text(
        "opcua_security:\n  mode: SignAndEncrypt\n  policy: Basic256Sha256\n  pki_dir: controller-pki\n"
        "  user: operator\n  password_file: plc-password\n")
    sim = subprocess.Popen(
        [*SORTCTL, "sim", "--site", str(ROOT / "config" / "site.yaml"), "--scenario",
         str(ROOT / "config" / "scenarios" / "demo.yaml"), "--port-base", "0", "--duration", "120",
         "--opcua-mode", "SignAndEncrypt", "--opcua-policy", "Basic256Sha256", "--pki-dir", "plc-pki",
         "--plc-users", "plc-users"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path,
    )
    try:
        assert sim.stdout is not None
        ep = json.loads(sim.stdout.readline())["endpoints"]  # printed first, once the servers listen
        db = tmp_path / "events.sqlite"
        log = tmp_path / "run.log"
        with log.open("w") as err:
            service = subprocess.Popen(
                [*SORTCTL, "run", "--site", str(ROOT / "config" / "site.yaml"), "--db", str(db),
                 "--settings", "service.yaml",
                 "--conveyor-port", str(ep["conveyor"]["port"]), "--diverter-port", str(ep["diverter"]["port"]),
                 "--camera-port", str(ep["camera"]["port"]), "--log-format", "json"],
                stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path,
            )
            try:
                deadline = time.monotonic() + 45.0
                while _sorted_count(db) < 3 and time.monotonic() < deadline and service.poll() is None:
                    time.sleep(0.25)
                assert service.poll() is None, f"sortctl run exited by itself:\n{log.read_text()[-3000:]}"
                assert _sorted_count(db) >= 3, log.read_text()[-3000:]
            finally:
                service.send_signal(signal.SIGTERM)
                service.wait(timeout=20)
        assert not list((tmp_path / "plc-pki" / "rejected").iterdir())
        assert not list((tmp_path / "controller-pki" / "rejected").iterdir())
        assert "not trusted" not in log.read_text()
    finally:
        sim.kill()
        sim.wait(timeout=10)
        if sim.stdout is not None:
            sim.stdout.close()


def test_sim_refuses_to_serve_securely_without_its_certificate(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*SORTCTL, "sim", "--site", str(ROOT / "config" / "site.yaml"), "--port-base", "0", "--duration", "1",
         "--opcua-mode", "SignAndEncrypt", "--pki-dir", "nowhere"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "no conveyor PLC certificate in nowhere/own" in proc.stderr
    assert "sortctl certs create --uri urn:sortcentre:conveyor-plc:server --dir nowhere" in proc.stderr

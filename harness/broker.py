"""Debian's Mosquitto for tests, benchmarks and the demo: a broker on a free loopback port with
a temporary configuration (persistence on, so a restart keeps QoS 1 sessions and queues), and
a subscriber that records what it receives across broker restarts.

Stop with SIGTERM (Mosquitto then saves its persistence file); ``kill()`` is the crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from harness.procs import free_port, stop_process
from host.endpoint import BrokerEndpoint

__all__ = ["Broker", "BrokerTls", "DemoLink", "Received", "Watcher", "mosquitto_path"]


def mosquitto_path() -> str | None:
    """The broker executable, or None when Mosquitto is not installed (`./dev setup` installs it)."""
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """The broker's TLS listener: the CA clients are checked against, its certificate and key."""

    ca: Path
    cert: Path
    key: Path
    client_certificates: bool = False  # clients must present a certificate from ``ca``


class Broker:
    """``start()``, ``stop()``, ``start()`` again: same port, same persistence directory."""

    def __init__(
        self, workdir: Path | None = None, port: int | None = None, *, tls: BrokerTls | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        """``tls``: a TLS listener with these files; ``users``: logins required (no anonymous)."""
        exe = mosquitto_path()
        if exe is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto, or ./dev setup)")
        self.exe = exe
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="sortcentre-mqtt-")
        self.dir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "mosquitto.log"
        self.conf = self.dir / "mosquitto.conf"
        self.tls = tls
        self.users = dict(users or {})
        access = "allow_anonymous true\n"
        if users:
            passwd = self.dir / "passwd"
            passwd.write_text("")
            tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"  # Debian's mosquitto package
            for name, password in users.items():
                subprocess.run([tool, "-b", str(passwd), name, password], check=True, capture_output=True)
            access = f"allow_anonymous false\npassword_file {passwd}\n"
        if tls is not None:
            access += (f"cafile {tls.ca}\ncertfile {tls.cert}\nkeyfile {tls.key}\n"
                       f"require_certificate {'true' if tls.client_certificates else 'false'}\n")
        # started by root (CI, the demo box), Mosquitto would become user "mosquitto", who may
        # not read these temporary files (its log, persistence, the TLS key): it stays root
        stay = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            + stay + access +
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            "autosave_interval 1\n"       # a killed broker loses at most the last second
            "max_queued_messages 0\n"     # no limit: a subscriber away for long still gets everything
            "max_inflight_messages 100\n"
            "message_size_limit 0\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def endpoint(self, user: str | None = None, **files: Path) -> BrokerEndpoint:
        """How a client reaches this broker: its CA when TLS, and ``user``'s login if given."""
        return BrokerEndpoint("127.0.0.1", self.port, self.tls is not None, self.tls.ca if self.tls else None,
                              files.get("cert"), files.get("key"), user, self.users.get(user or ""))

    def start(self, wait_s: float = 10.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {wait_s:.0f} s")

    def stop(self) -> None:
        """A clean stop: the broker saves its sessions and queues."""
        stop_process(self.proc, 10.0)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    t: float  # time.time() when it arrived
    retain: bool


@dataclass(slots=True)
class Watcher:
    """A host stand-in: subscribes (QoS 1, persistent session) and records every message, and
    reconnects after a broker restart so the broker's queue for it is delivered."""

    port: int
    topic: str
    identifier: str = "sortcentre-watcher"
    endpoint: BrokerEndpoint | None = None  # TLS and login; default: plain 127.0.0.1:port
    got: list[Received] = field(default_factory=list)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    connects: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                where = (self.endpoint or BrokerEndpoint("127.0.0.1", self.port)).client_options()
                async with aiomqtt.Client(**where, identifier=self.identifier, clean_session=False,
                                          keepalive=5) as client:
                    self.connects += 1
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    reader = asyncio.ensure_future(self._read(client))
                    waiter = asyncio.ensure_future(stop.wait())
                    try:
                        await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for task in (reader, waiter):
                            task.cancel()
                        await asyncio.gather(reader, waiter, return_exceptions=True)
                    if reader.done() and not reader.cancelled() and reader.exception() is not None:
                        raise reader.exception()  # type: ignore[misc]
            except (aiomqtt.MqttError, OSError):
                self.subscribed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for m in client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload or "").encode()
            self.got.append(Received(m.topic.value, payload, time.time(), bool(m.retain)))

    def on(self, suffix: str) -> list[Received]:
        return [r for r in self.got if r.topic.endswith(suffix)]


class DemoLink:
    """The demo's host link: a broker on a free loopback port and `sortctl relay` publishing the
    demo's store under ``site/area/sorter``; ``watch`` is the command that shows it."""

    def __init__(self, db: Path, site_file: Path, workdir: Path) -> None:
        self.broker = Broker(workdir / "mqtt")
        self.db, self.site_file, self.workdir = db, site_file, workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.root = "site/area/sorter"

    @property
    def watch(self) -> str:
        return f"mosquitto_sub -h 127.0.0.1 -p {self.broker.port} -t '{self.root}/#' -v"

    def start(self) -> None:
        import sys

        self.broker.start()
        site, area, sorter = self.root.split("/")
        with open(self.workdir / "relay.log", "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sortctl.cli", "relay", "--db", str(self.db), "--broker", self.broker.url,
                 "--site", site, "--area", area, "--sorter", sorter, "--site-file", str(self.site_file)],
                stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent,
            )

    def stop(self) -> None:
        stop_process(self.proc, 10.0)
        self.proc = None
        self.broker.close()

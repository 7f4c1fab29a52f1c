"""Where the host's MQTT broker is, and how the sorter proves who it is there: TLS and a login.

A broker a WMS runs is on the plant network, not on loopback: it takes TLS (``mqtts://``, port
8883) with a server certificate the sorter checks against a CA, and a user name and password,
often a client certificate as well. Everything is checked when the command starts (a file that
is missing or a key that does not match its certificate is named then, not at the first
reconnect), and a password never goes on a command line, where ``ps`` shows it: it comes from a
file or from ``SORTCENTRE_MQTT_PASSWORD``.
"""

from __future__ import annotations

import argparse
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["PASSWORD_ENV", "BrokerEndpoint", "add_broker_arguments", "broker_from_args", "parse_broker"]

PASSWORD_ENV = "SORTCENTRE_MQTT_PASSWORD"
_PLAIN, _TLS = ("mqtt", "tcp"), ("mqtts", "ssl")


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: Path | None = None  # None with TLS: the system's trusted CAs
    cert_file: Path | None = None  # a client certificate, for brokers that ask for one
    key_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The address as people write it (no secrets)."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        """The client's TLS context (server certificate and host name checked), None without TLS."""
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return ctx

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of ``aiomqtt.Client`` for this endpoint."""
        return {"hostname": self.host, "port": self.port, "username": self.username, "password": self.password,
                "tls_context": self.tls_context()}


def parse_broker(
    url: str,
    *,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    username: str | None = None,
    password_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> BrokerEndpoint:
    """A checked endpoint; ValueError saying what is wrong (and with which file) otherwise."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    scheme = parts.scheme.lower()
    if scheme not in _PLAIN + _TLS or not parts.hostname:
        raise ValueError(f"broker {url!r}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS)")
    if parts.password is not None:
        raise ValueError(f"broker {url!r}: no password in the address (the process list shows it): "
                         f"use --password-file or {PASSWORD_ENV}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"broker {url!r}: the port is not a number from 0 to 65535") from None
    tls = scheme in _TLS
    if not tls and (ca_file or cert_file or key_file):
        raise ValueError(f"broker {url!r}: --ca-file, --client-cert and --client-key need TLS (mqtts://)")
    if (cert_file is None) != (key_file is None):
        raise ValueError("--client-cert and --client-key go together")
    for what, path in (("--ca-file", ca_file), ("--client-cert", cert_file), ("--client-key", key_file)):
        if path is not None and not path.is_file():
            raise ValueError(f"{what} {path}: no such file")
    user = username if username is not None else parts.username
    password = _password(password_file, os.environ if env is None else env)
    if password is not None and not user:
        raise ValueError("a broker password needs a user name (--username)")
    endpoint = BrokerEndpoint(parts.hostname, port or (8883 if tls else 1883), tls, ca_file, cert_file, key_file,
                              user or None, password)
    try:
        endpoint.tls_context()  # a CA file that is no certificate, a key that is not the certificate's
    except (ssl.SSLError, OSError) as exc:
        files = ", ".join(str(p) for p in (ca_file, cert_file, key_file) if p is not None)
        raise ValueError(f"TLS files {files}: {exc}") from None
    return endpoint


def _password(path: Path | None, env: Mapping[str, str]) -> str | None:
    if path is None:
        return env.get(PASSWORD_ENV) or None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--password-file {path}: {exc}") from None
    if not lines or not lines[0]:
        raise ValueError(f"--password-file {path}: the first line (the password) is empty")
    return lines[0]


def add_broker_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument("--broker", required=required, default=None if required else "mqtt://127.0.0.1:1883",
                        metavar="URL", help="mqtt://HOST[:PORT], or mqtts://HOST[:PORT] for TLS (port 8883)")
    parser.add_argument("--ca-file", type=Path, metavar="PEM",
                        help="CA certificate(s) the broker's certificate must chain to (TLS; default: the system's)")
    parser.add_argument("--client-cert", type=Path, metavar="PEM", help="client certificate, if the broker asks for one")
    parser.add_argument("--client-key", type=Path, metavar="PEM", help="the client certificate's private key")
    parser.add_argument("--username", help="broker user name")
    parser.add_argument("--password-file", type=Path, metavar="FILE",
                        help=f"file whose first line is the broker password (or set {PASSWORD_ENV})")


def broker_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> BrokerEndpoint:
    return parse_broker(args.broker, ca_file=args.ca_file, cert_file=args.client_cert, key_file=args.client_key,
                        username=args.username, password_file=args.password_file, env=env)

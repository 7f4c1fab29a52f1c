"""`sortctl hmi`: the operator HMI, a web process of its own beside the controller service.

A process of its own on purpose: web traffic (page renders, SSE streams, CSV exports, metric
scrapes) must never share an event loop with the control cycle. It reads the event store
read-only and sends commands through the store's ``commands`` table.
"""

from __future__ import annotations

import argparse
import logging
import re
import ssl
import sys
from pathlib import Path

from aiohttp import web

from control.logs import setup_logging
from hmi.app import NoUsers, make_app
from hmi.config import HmiConfig
from hmi.users import UserFile, default_users_path

log = logging.getLogger("hmi")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=Path("var/events.sqlite"), help="event store (read only)")
    parser.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                        help="address to serve on (default 127.0.0.1:8080: this machine only)")
    parser.add_argument("--users", type=Path, help="users file (default: hmi-users.json beside --db)")
    parser.add_argument("--site", type=Path, default=Path("config/site.yaml"),
                        help="site file when the store does not name the service's (older services)")
    parser.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    parser.add_argument("--idle-min", type=float, default=60.0, help="log a session out after this many idle minutes")
    parser.add_argument("--stale-after", type=float, default=5.0, metavar="S",
                        help="the service counts as down when its health record is older than this")
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="stderr log lines")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs")


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``; the port may be 0 (any free one)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--listen: expected HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen: port out of range in {text!r}")
    return host, int(port)


def config_from(args: argparse.Namespace) -> HmiConfig:
    return HmiConfig(
        db=args.db, users=args.users or default_users_path(args.db), site=args.site,
        stale_after_s=args.stale_after, idle_s=args.idle_min * 60.0, secure_cookies=bool(args.tls_cert),
    )


def run(args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        print(f"sortctl hmi: {exc}", file=sys.stderr)
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("sortctl hmi: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    ctx: ssl.SSLContext | None = None
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"sortctl hmi: cannot load the TLS certificate: {exc}", file=sys.stderr)
            return 2
    cfg = config_from(args)
    try:
        app = make_app(cfg)
    except NoUsers as exc:
        print(f"sortctl hmi: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_format, verbose=args.verbose)  # only once it will serve
    if UserFile(cfg.users).insecure_mode():
        log.warning("%s is readable by other users of this machine: chmod 600 it", cfg.users)
    if not cfg.db.exists():
        log.warning("no event store at %s yet: the pages say so until the controller service creates it", cfg.db)
    # aiohttp's start-up line names the real address (with --listen HOST:0, the port it got)
    web.run_app(app, host=host, port=port, ssl_context=ctx, access_log=None, shutdown_timeout=5.0,
                print=lambda m: log.info("HMI serving %s (store %s)",
                                         ", ".join(re.findall(r"https?://\S+", m)) or m.strip(), cfg.db))
    return 0

"""`sortctl relay`: publish the event store to the host over MQTT and take the host's requests.

    sortctl relay --db var/events.sqlite --broker mqtt://127.0.0.1:1883 --site SITE --area AREA --sorter NAME
    sortctl relay ... --broker mqtts://wms-broker:8883 --ca-file ca.pem --username sorter3 --password-file pw

Runs until SIGTERM or Ctrl-C (then publishes its retained ``offline`` status and disconnects
cleanly); a crash or a kill leaves the broker to publish the last will (``offline`` too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from host.endpoint import add_broker_arguments, broker_from_args
from host.relay import Relay, RelayConfig
from host.topics import Topics
from plant.errors import ConfigError
from plant.site import load_site

log = logging.getLogger("host.relay")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=Path("var/events.sqlite"), help="event store to publish")
    add_broker_arguments(parser)
    parser.add_argument("--site", dest="site_name", required=True, help="ISA-95 site: first topic level")
    parser.add_argument("--area", required=True, help="ISA-95 area: second topic level")
    parser.add_argument("--sorter", required=True, help="this sorter's name: third topic level, event id prefix")
    parser.add_argument("--site-file", type=Path, default=Path("config/site.yaml"),
                        help="the site layout the controller runs (sort plans from the host are checked against it)")
    parser.add_argument("--state-file", type=Path, help="the relay's cursor and request record "
                        "(default: beside the store, <db>.relay-<sorter>.sqlite)")
    parser.add_argument("--counters-every", type=float, default=10.0, metavar="S", help="counters period (s)")
    parser.add_argument("-v", "--verbose", action="store_true")


def config(args: argparse.Namespace) -> RelayConfig:
    return RelayConfig(
        db=args.db, topics=Topics(args.site_name, args.area, args.sorter), site=load_site(args.site_file),
        broker=broker_from_args(args), state_file=args.state_file, counters_s=args.counters_every,
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config(args)
    except (ValueError, ConfigError) as exc:
        print(f"sortctl relay: {exc}")
        return 2
    print(f"sortctl relay: {cfg.db} -> {cfg.broker.url} {cfg.topics.everything}"
          f" (state {cfg.state_path})", flush=True)
    asyncio.run(_main(cfg))
    return 0


async def _main(cfg: RelayConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    relay = Relay(cfg)
    try:
        await relay.run(stop)
    finally:
        relay.close()

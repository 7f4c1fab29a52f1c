"""`sortctl run`: the controller service against the site's PLCs, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

from control.logs import setup_logging
from control.service.app import Endpoints, Files, Service
from control.service.settings import ServiceSettings, load_service_settings
from plant.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", type=Path, default=Path("config/site.yaml"), help="site file")
    parser.add_argument("--plan", type=Path, help="sort plan CSV (default: sortplan.csv beside the site)")
    parser.add_argument("--manifest", type=Path, help="manifest CSV (default: manifest.csv beside the site)")
    parser.add_argument("--db", type=Path, default=Path("var/events.sqlite"), help="event store")
    parser.add_argument("--conveyor-port", type=int, help="override the site's OPC UA port")
    parser.add_argument("--diverter-port", type=int, help="override the site's Modbus port")
    parser.add_argument("--camera-port", type=int, help="override the site's camera port")
    parser.add_argument("--settings", type=Path,
                        help="service settings YAML (default: service.yaml beside the site, if there)")
    parser.add_argument("--cycle-ms", type=float, help="control cycle period (overrides the settings file)")
    parser.add_argument("--no-camera", action="store_true", help="run without vision (every parcel a no-read)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="stderr log lines: text for people, json (one object per line) for collectors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs, protocol stacks included")


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_format, verbose=args.verbose)
    files = Files.beside(args.site)
    if args.plan or args.manifest:
        files = Files(args.site, args.plan or files.plan, args.manifest or files.manifest, files.routing)
    try:
        settings_file = args.settings or (args.site.parent / "service.yaml")
        settings = (
            load_service_settings(settings_file)
            if args.settings or settings_file.exists() else ServiceSettings()
        )
        if args.cycle_ms is not None:  # the override obeys the same bounds as the file
            settings = ServiceSettings.model_validate({**settings.model_dump(), "cycle_s": args.cycle_ms / 1000.0})
        service = Service.from_files(
            files, args.db, settings,
            Endpoints(args.conveyor_port, args.diverter_port, args.camera_port),
            camera=not args.no_camera,
        )
    except ConfigError as exc:
        print(f"sortctl run: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"sortctl run: --cycle-ms: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(service))


async def _serve(service: Service) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)
    async with service:
        await service.run()
    return 0

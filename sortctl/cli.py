"""The `sortctl` command: one entry point, one module per subcommand.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; it is imported only when chosen, so `sortctl --help` stays fast and a
broken optional dependency of one command does not take the others down.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from plant.errors import ConfigError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("harness.demo", "simulator + controller sorting parcels end to end"),
    "run": ("control.service.cli", "run the controller service against the site's PLCs"),
    "status": ("control.status_cli", "show the controller's state and counters"),
    "plan": ("control.plan_cli", "what-if replay of a sort plan; activate, roll back, list versions"),
    "chute": ("control.chute_cli", "take a chute out of service or back in"),
    "alarm": ("control.alarm_cli", "list, acknowledge, shelve alarms"),
    "mode": ("control.mode_cli", "set the unit mode: production, maintenance, manual"),
    "manifest": ("control.manifest_cli", "add pre-advice rows to the running service"),
    "hmi": ("hmi.cli", "the operator HMI: web pages, live updates, Prometheus metrics"),
    "users": ("hmi.users_cli", "manage HMI users: add, passwd, remove, list"),
    "relay": ("host.relay_cli", "publish the event store to the host over MQTT; take the host's requests"),
    "certs": ("control.certs_cli", "OPC UA certificates: create, trust, list"),
    "store": ("control.store_cli", "event store size, and retention: archive old rows to Parquet"),
    "sim": ("plc_sim.cli", "run the PLC simulator (OPC UA + Modbus TCP + camera)"),
    "bench": ("benchmarks.cli", "run a benchmark and print its figures"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with the one error form every command uses: ``sortctl <command>: <message>``
    on stderr, exit 2 (argparse's own is ``sortctl <command>: error: <message>``)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # Build only the chosen subcommand's arguments: cheap start-up, isolated failures.
    parser = _Parser(
        prog="sortctl", description="sortcentre: parcel sorter control, simulation and planning."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = args_list[0] if args_list else None
    subparsers: dict[str, argparse.ArgumentParser] = {}
    for name, (module_name, help_text) in COMMANDS.items():
        sp = subparsers[name] = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module_name)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(sp)
    args, extra = parser.parse_known_args(args_list)
    if extra:  # said by the command's parser, so the message starts "sortctl <command>:"
        subparsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:  # a command that let one through still names the file, never a traceback
        print(f"sortctl {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

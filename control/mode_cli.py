"""`sortctl mode production|maintenance|manual`: the PackML unit mode (the sorter must be at
rest: Stopped, Idle, Aborted or Complete). Outside Production the controller starts and
recovers nothing by itself: a person drives the belt."""

from __future__ import annotations

import argparse

from control.send import add_common, send


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mode", choices=["production", "maintenance", "manual"])
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    return send(args, "MODE", {"mode": args.mode.upper()})

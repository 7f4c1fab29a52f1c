"""`sortctl chute out|in ID`: take a chute out of service (routing sends its parcels to their
fallbacks at once) or back in."""

from __future__ import annotations

import argparse

from control.send import add_common, send


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["out", "in"], help="out of service, or back in")
    parser.add_argument("chute", type=int, help="chute id")
    parser.add_argument("--reason", default="", help="why (stored, shown on the HMI)")
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    return send(args, "CHUTE_OUT" if args.action == "out" else "CHUTE_IN",
                {"chute": args.chute, "reason": args.reason})

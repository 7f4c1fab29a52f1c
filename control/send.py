"""Operator commands from a terminal: queued in the store's command table, as the HMI queues
them, with the user who sent them; the answer is waited for and printed."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sqlite3
import time
from pathlib import Path

from control.store import EventStore

__all__ = ["add_common", "send", "who"]


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=Path("var/events.sqlite"), help="event store")
    parser.add_argument("--user", default=None, help="who sends it (default: your login name)")
    parser.add_argument("--wait", type=float, default=10.0, metavar="S",
                        help="seconds to wait for the service's answer (default 10)")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")


def who(user: str | None) -> str:
    """The user a terminal command is stored with: given, or the login name (under sudo, the
    person who ran sudo, not root)."""
    if user:
        return user
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _command(args: argparse.Namespace) -> str:
    """The subcommand for messages (``sortctl plan: ...``); ``sortctl`` sets ``args.command``."""
    return str(getattr(args, "command", "") or "").strip() or "command"


def send(args: argparse.Namespace, command: str, cmd_args: dict[str, object] | None = None) -> int:
    """Queue ``command``; exit code 0 when accepted, 1 when refused or not answered, 2 when
    there is no store."""
    name = command.lower()
    if not args.db.exists():
        print(f"sortctl {_command(args)}: no event store at {args.db} (start the controller with `sortctl run --db ...`)")
        return 2
    user = who(args.user)
    try:
        store = EventStore(args.db)
    except sqlite3.Error as exc:
        print(f"sortctl {_command(args)}: cannot open {args.db}: {exc}")
        return 2
    try:
        cid = store.add_command(command, time.time(), user=user, args=cmd_args)
        deadline = time.monotonic() + args.wait
        done, result = False, ""
        while time.monotonic() < deadline:
            done, result = store.command_result(cid)
            if done:
                break
            time.sleep(0.05)
    finally:
        store.close()
    if not done:
        result = "queued; the service has not answered yet (is it running?)"
    ok = done and result.startswith("accepted")
    if getattr(args, "json", False):
        print(json.dumps({"command": command, "id": cid, "user": user, "done": done, "accepted": ok,
                          "result": result}))
    else:
        print(f"{name}: {result}")
    return 0 if ok else 1

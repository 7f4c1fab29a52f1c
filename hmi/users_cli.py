"""`sortctl users`: add, change, remove and list the HMI's users (the only writer of the file)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from hmi.users import Role, UserError, UserFile, default_users_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # the file options belong to each action, so they may follow it: `users add ana --users FILE`
    files = argparse.ArgumentParser(add_help=False)
    files.add_argument("--db", type=Path, default=Path("var/events.sqlite"),
                       help="event store (the users file lives beside it unless --users says otherwise)")
    files.add_argument("--users", type=Path, help="users file (default: hmi-users.json beside --db)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add a user (asks for the password twice)", parents=[files])
    add.add_argument("name")
    add.add_argument("--role", choices=[r.value for r in Role], required=True)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    pw = sub.add_parser("passwd", help="set a user's password (and optionally a new role)", parents=[files])
    pw.add_argument("name")
    pw.add_argument("--role", choices=[r.value for r in Role], help="change the role too")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    rm = sub.add_parser("remove", help="remove a user (their sessions end at their next request)",
                        parents=[files])
    rm.add_argument("name")
    ls = sub.add_parser("list", help="list users and roles (never the hashes)", parents=[files])
    ls.add_argument("--json", action="store_true", help="print JSON")


def users_path(args: argparse.Namespace) -> Path:
    return Path(args.users) if args.users else default_users_path(Path(args.db))


def run(args: argparse.Namespace) -> int:
    users = UserFile(users_path(args))
    try:
        if args.action == "list":
            return _list(users, as_json=args.json)
        if args.action == "remove":
            users.remove(args.name)
            print(f"removed {args.name} from {users.path}")
            return 0
        password = _password(args.password_stdin)
        if args.action == "add":
            user = users.add(args.name, Role(args.role), password)
            print(f"added {user.name} ({user.role.value}) to {users.path}")
        else:
            user = users.passwd(args.name, password, Role(args.role) if args.role else None)
            print(f"password of {user.name} ({user.role.value}) changed in {users.path}")
    except UserError as exc:
        print(f"sortctl users: {exc}", file=sys.stderr)
        return 2
    return 0


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the two passwords differ")
    return first


def _list(users: UserFile, *, as_json: bool) -> int:
    rows = sorted(users.load().values(), key=lambda u: u.name)
    if as_json:
        print(json.dumps([{"name": u.name, "role": u.role.value, "created": u.created, "changed": u.changed}
                          for u in rows], indent=2))
        return 0
    if not rows:
        print(f"no users in {users.path}")
    for u in rows:
        print(f"{u.name:<32} {u.role.value}")
    if users.insecure_mode():
        print(f"warning: {users.path} is readable by others; chmod 600 it", file=sys.stderr)
    return 0

"""The operator commands the HMI may send: who may send each, and what its arguments must be.

One table, checked before anything is stored: a command refused here (wrong role, bad
arguments) never reaches the commands table, so the service only ever sees well-formed
commands from people entitled to send them. Whether a command makes sense *now* (a PackML
command in this state, a chute that is already out) is the service's call; its answer lands in
``commands.result``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from hmi.users import Role
from plant.codes import PackMLCommand, UnitMode

__all__ = ["COMMANDS", "CommandError", "Spec", "check"]

MAX_REASON = 200
MAX_SHELVE_MIN = 12 * 60.0
MAX_TEXT = 64 * 1024 * 1024  # a plan or manifest travels in the command's args


class CommandError(ValueError):
    """The command is unknown or its arguments are wrong; the message says which."""


Args = dict[str, object]


def _int(args: Args, key: str, *, lo: int = 0, hi: int = 1_000_000) -> int:
    v = args.get(key)
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise CommandError(f"{key}: expected a whole number")
    try:
        n = int(v)
    except ValueError:
        raise CommandError(f"{key}: expected a whole number, got {v!r}") from None
    if not lo <= n <= hi:
        raise CommandError(f"{key}: must be between {lo} and {hi}")
    return n


def _text(args: Args, key: str, *, required: bool, limit: int = MAX_REASON) -> str:
    v = args.get(key, "")
    if not isinstance(v, str):
        raise CommandError(f"{key}: expected text")
    v = v.strip() if limit <= MAX_REASON else v
    if required and not v.strip():
        raise CommandError(f"{key}: required")
    if len(v) > limit:
        raise CommandError(f"{key}: at most {limit} characters")
    return v


def _none(args: Args) -> Args:
    return {}


def _chute_out(args: Args) -> Args:
    return {"chute": _int(args, "chute", lo=1, hi=999), "reason": _text(args, "reason", required=True)}


def _chute_in(args: Args) -> Args:
    return {"chute": _int(args, "chute", lo=1, hi=999)}


def _mode(args: Args) -> Args:
    mode = str(args.get("mode", "")).upper()
    if mode not in UnitMode.__members__:
        raise CommandError(f"mode: one of {', '.join(UnitMode.__members__)}")
    return {"mode": mode}


def _ack(args: Args) -> Args:
    return {"alarm": _int(args, "alarm", hi=2**62)}


def _shelve(args: Args) -> Args:
    raw = args.get("minutes")
    try:
        minutes = float(str(raw))
    except ValueError:
        raise CommandError("minutes: expected a number") from None
    if not math.isfinite(minutes) or not 0 < minutes <= MAX_SHELVE_MIN:
        raise CommandError(f"minutes: more than 0, at most {MAX_SHELVE_MIN:.0f}")
    return {"alarm": _int(args, "alarm", lo=1, hi=2**62), "minutes": minutes,
            "reason": _text(args, "reason", required=True)}


def _unshelve(args: Args) -> Args:
    return {"alarm": _int(args, "alarm", lo=1, hi=2**62)}


def _plan(args: Args) -> Args:
    return {"plan_csv": _text(args, "plan_csv", required=True, limit=MAX_TEXT),
            "settings_yaml": _text(args, "settings_yaml", required=False, limit=MAX_TEXT),
            "source": _text(args, "source", required=False) or "upload.csv"}


def _manifest(args: Args) -> Args:
    return {"csv": _text(args, "csv", required=True, limit=MAX_TEXT),
            "source": _text(args, "source", required=False) or "upload.csv"}


@dataclass(frozen=True, slots=True)
class Spec:
    role: Role
    clean: Callable[[Args], Args]
    what: str  # for the docs and the audit list


COMMANDS: dict[str, Spec] = {
    **{c.name: Spec(Role.OPERATOR, _none, f"PackML {c.name.title()}") for c in PackMLCommand},
    "CHUTE_OUT": Spec(Role.OPERATOR, _chute_out, "take a chute out of service"),
    "CHUTE_IN": Spec(Role.OPERATOR, _chute_in, "put a chute back into service"),
    "ALARM_ACK": Spec(Role.OPERATOR, _ack, "acknowledge an alarm (0: every unacknowledged one)"),
    "ALARM_SHELVE": Spec(Role.OPERATOR, _shelve, "shelve an alarm for some minutes"),
    "ALARM_UNSHELVE": Spec(Role.OPERATOR, _unshelve, "unshelve an alarm"),
    "MODE": Spec(Role.ENGINEER, _mode, "change the unit mode"),
    "PLAN_ACTIVATE": Spec(Role.ENGINEER, _plan, "activate a sort plan"),
    "PLAN_ROLLBACK": Spec(Role.ENGINEER, _none, "go back to the previous sort plan"),
    "MANIFEST_ADD": Spec(Role.ENGINEER, _manifest, "add manifest rows"),
}


def check(name: str, args: object, role: Role) -> Args:
    """The command's cleaned arguments; `CommandError` (bad) or `PermissionError` (role)."""
    spec = COMMANDS.get(name)
    if spec is None:
        raise CommandError(f"unknown command {name!r}")
    if not role.allows(spec.role):
        raise PermissionError(f"{name} needs the {spec.role.value} role (you are {role.value})")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise CommandError("args: expected an object")
    return spec.clean(args)

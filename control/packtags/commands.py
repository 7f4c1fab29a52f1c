"""SCADA commands written to the PackTags Command object, turned into operator commands.

A SCADA never drives the unit directly: a CntrlCmd (with CmdChangeRequest) or a UnitMode
(with UnitModeChangeRequest) becomes a row in the event store's commands table, user
``scada``, exactly as `sortctl` or the HMI would queue it, and the supervisor decides. With
``packtags.commands_enabled`` off the Command variables are read-only on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

from plant.codes import PackMLCommand, UnitMode

__all__ = ["SCADA_USER", "Request", "mode_request", "state_request"]

SCADA_USER = "scada"


@dataclass(frozen=True, slots=True)
class Request:
    """An operator command to queue (name and arguments as the store's commands table takes them),
    or why the write was not a command."""

    name: str = ""
    args: dict[str, object] | None = None
    refused: str = ""


def state_request(cntrl_cmd: int) -> Request:
    """CntrlCmd (OPC 30050 / TR88 numbers: 1 Reset ... 10 Complete) -> the supervisor's command name."""
    try:
        return Request(PackMLCommand(cntrl_cmd).name)
    except ValueError:
        return Request(refused=f"CntrlCmd {cntrl_cmd} is not a PackML command (1..10)")


def mode_request(unit_mode: int) -> Request:
    """UnitMode (1 Produce, 2 Maintenance, 3 Manual) -> the MODE command `sortctl mode` sends."""
    try:
        return Request("MODE", {"mode": UnitMode(unit_mode).name})
    except ValueError:
        return Request(refused=f"UnitMode {unit_mode} is not a unit mode (1..3)")

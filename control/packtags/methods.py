"""OPC 30050's methods on the sorter's unit: the state machine commands and SetUnitMode.

A SCADA that speaks PackML through methods calls ``Hold`` on the ExecuteState machine or
``SetUnitMode(2)`` on the unit object instead of writing CntrlCmd and CmdChangeRequest. A call
becomes the same Request a Command-tag write does (an operator command, user ``scada``, that
the supervisor decides), so both ways reach the unit one way. Unlike a tag write a call has an
answer, and it says at once what is wrong: Good once the command is queued;
BadUserAccessDenied with ``packtags.commands_enabled`` off; BadInvalidState for a command the
current PackML state does not take (Start in Held); BadOutOfRange for a mode that is not one;
BadNotSupported for SetMachSpeed (the belt speed comes from the site file), SetProduct,
SetParameter, RemoteCommand and SetInterlock (no products, parameters or interlocks here).

The NodeSet declares the state machine methods optional, so instantiating PackMLBaseObjectType
does not create them: they are added to this instance's machines with the NodeSet's browse
names (Abort and Clear on BaseStateMachine, Stop and Reset on MachineState, Start, Hold, Unhold,
Suspend, Unsuspend, ToComplete and Reset on ExecuteState).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from control.packtags.commands import Request, mode_request
from control.packtags.space import ROOT, Space
from plant.codes import PackMLCommand, PackMLState
from plant.packml import ACCEPTS
from plant.uatypes import string_node

__all__ = ["STATE_METHODS", "Methods"]

log = logging.getLogger(__name__)
C = PackMLCommand
# machine (under the unit object) -> method browse name -> the command it asks for
STATE_METHODS: dict[str, dict[str, PackMLCommand]] = {
    "BaseStateMachine": {"Abort": C.ABORT, "Clear": C.CLEAR},
    "BaseStateMachine.MachineState": {"Stop": C.STOP, "Reset": C.RESET},
    "BaseStateMachine.MachineState.ExecuteState": {
        "Start": C.START, "Hold": C.HOLD, "Unhold": C.UNHOLD, "Suspend": C.SUSPEND, "Unsuspend": C.UNSUSPEND,
        "ToComplete": C.COMPLETE, "Reset": C.RESET,
    },
}
_UNSUPPORTED = ("SetMachSpeed", "SetProduct", "SetParameter", "RemoteCommand", "SetInterlock")
_PARAMETER_TYPE = 16  # PackMLDescriptorDataType: Start's optional parameters
Callback = Callable[..., Awaitable[Any]]


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(code)  # type: ignore[arg-type]


class Methods:
    """Binds the methods once the space is built; ``take()`` hands over what calls queued."""

    def __init__(self, space: Space, *, commands_enabled: bool) -> None:
        self.space = space
        self.enabled = commands_enabled
        self._called: list[Request] = []

    def take(self) -> list[Request]:
        out, self._called = self._called, []
        return out

    async def bind(self) -> None:
        sp, server = self.space, self.space.server
        server.link_method(server.get_node(string_node(f"{ROOT}.SetUnitMode", sp.ns)), self._set_unit_mode)
        for name in _UNSUPPORTED:
            server.link_method(server.get_node(string_node(f"{ROOT}.{name}", sp.ns)), _not_supported(name))
        for machine, methods in STATE_METHODS.items():
            node = server.get_node(string_node(f"{ROOT}.{machine}", sp.ns))
            for name, command in methods.items():
                inputs = [ua.Argument(Name="Parameter", DataType=ua.NodeId(_PARAMETER_TYPE, sp.pns),  # type: ignore[arg-type]
                                      ValueRank=1, ArrayDimensions=[0])] if name == "Start" else []
                await node.add_method(string_node(f"{ROOT}.{machine}.{name}", sp.ns), ua.QualifiedName(name, sp.pns),
                                      self._command(command), inputs, [])

    def _command(self, command: PackMLCommand) -> Callback:
        async def call(parent: ua.NodeId, *args: ua.Variant) -> ua.StatusCode:
            if not self.enabled:
                return _status(StatusCodes.BadUserAccessDenied)
            state = self.space.last.get("Status.StateCurrent")
            try:
                accepted = command in ACCEPTS[PackMLState(int(state))] if state is not None else True
            except ValueError:
                accepted = True  # a state we do not know yet: the supervisor decides
            if not accepted:
                return _status(StatusCodes.BadInvalidState)
            self._called.append(Request(command.name))
            return _status(StatusCodes.Good)

        return call

    async def _set_unit_mode(self, parent: ua.NodeId, *args: ua.Variant) -> ua.StatusCode:
        if not self.enabled:
            return _status(StatusCodes.BadUserAccessDenied)
        value = args[0].Value if args and isinstance(args[0], ua.Variant) else (args[0] if args else None)
        if isinstance(value, bool) or not isinstance(value, int):
            return _status(StatusCodes.BadTypeMismatch)
        req = mode_request(value)
        if req.refused:
            return _status(StatusCodes.BadOutOfRange)
        self._called.append(req)
        return _status(StatusCodes.Good)


def _not_supported(name: str) -> Callback:
    async def call(parent: ua.NodeId, *args: ua.Variant) -> ua.StatusCode:
        log.info("packtags: %s called: not supported by this unit", name)
        return _status(StatusCodes.BadNotSupported)

    return call

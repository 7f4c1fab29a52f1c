"""PackTagsServer: the asyncua server itself, run inside the PackTags process (child.py).

It holds the address space (space.py), applies each Snapshot the controller sends, and reports
the SCADA's change requests (CmdChangeRequest, UnitModeChangeRequest) as Requests, clearing
them as TR88 says the unit does once it has taken a command, together with the commands
asked for by method calls (methods.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from asyncua import ua
from asyncua.server.server import Server

from control.packtags.commands import Request, mode_request, state_request
from control.packtags.methods import Methods
from control.packtags.model import Snapshot
from control.packtags.space import Space, build_space
from control.service.settings import PackTagsSettings

__all__ = ["APPLICATION_URI", "Configure", "PackTagsServer"]

log = logging.getLogger(__name__)

APPLICATION_URI = "urn:sortcentre:controller:packtags"
# extra set-up of the asyncua server before it starts (security: certificates, policies, users)
Configure = Callable[[Server], Awaitable[None]]


class PackTagsServer:
    """``await start()``, then ``apply`` snapshots and ``take_requests``; ``await stop()``."""

    def __init__(self, cfg: PackTagsSettings, configure: Configure | None = None) -> None:
        self.cfg = cfg
        self._configure = configure
        self._server: Server | None = None
        self._space: Space | None = None
        self._methods: Methods | None = None
        self.port = cfg.port

    @property
    def url(self) -> str:
        return f"opc.tcp://{self.cfg.host}:{self.port}{self.cfg.path}"

    async def start(self) -> None:
        server = Server()
        await server.init()
        server.disable_clock(True)
        server.set_server_name("sortcentre controller PackTags")
        await server.set_application_uri(APPLICATION_URI)
        server.set_endpoint(self.url)
        if self._configure is not None:
            await self._configure(server)
        self._space = await build_space(server, self.cfg.tag_id, commands_enabled=self.cfg.commands_enabled)
        self._methods = Methods(self._space, commands_enabled=self.cfg.commands_enabled)
        await self._methods.bind()
        await server.start()
        self._server = server
        bs = server.bserver
        if bs is not None and bs.port:
            self.port = int(bs.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def apply(self, snap: Snapshot) -> None:
        assert self._space is not None
        await self._space.apply(snap)

    async def take_requests(self) -> list[Request]:
        """The SCADA's change requests since the last call (empty when commands are disabled)."""
        sp = self._space
        if sp is None or not self.cfg.commands_enabled:
            return []
        out: list[Request] = self._methods.take() if self._methods is not None else []
        for flag, value_tag, make in (("Command.CmdChangeRequest", "Command.CntrlCmd", state_request),
                                      ("Command.UnitModeChangeRequest", "Command.UnitMode", mode_request)):
            if not await sp.node(flag).read_value():
                continue
            req = make(int(await sp.node(value_tag).read_value()))
            await sp.server.write_attribute_value(sp.nodes[flag], ua.DataValue(ua.Variant(False, ua.VariantType.Boolean)))
            if req.refused:
                log.warning("packtags: SCADA command refused: %s", req.refused)
            else:
                out.append(req)
        return out

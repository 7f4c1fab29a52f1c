"""PackTags served by a real controller (simulator PLCs over real OPC UA/Modbus), read and
commanded by an asyncua client over 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaStatusCodeError

from control.store import EventStore
from tests.packtags.floor import floor, tag_nodes, wait_state

pytestmark = pytest.mark.slow

EXECUTE, HELD = 6, 11
HOLD, UNHOLD = 4, 5


async def _command(client: Client, nodes: dict[str, ua.NodeId], cmd: int) -> None:
    await client.get_node(nodes["CntrlCmd"]).write_value(ua.Variant(cmd, ua.VariantType.Int32))
    await client.get_node(nodes["CmdChangeRequest"]).write_value(ua.Variant(True, ua.VariantType.Boolean))


async def test_scada_sees_the_unit_and_commands_reach_the_supervisor(tmp_path: Path) -> None:
    async with floor(tmp_path, commands_enabled=True) as f:
        async with Client(f.url, timeout=5) as client:
            nodes = await tag_nodes(client)
            await wait_state(client, nodes["StateCurrent"], EXECUTE)
            assert (await client.get_node(nodes["CurrentState"]).read_value()).Text == "Cleared"
            assert await client.get_node(nodes["UnitModeCurrent"]).read_value() == 1
            await _command(client, nodes, HOLD)
            seen = await wait_state(client, nodes["StateCurrent"], HELD)
            assert seen[0] == EXECUTE and HELD in seen
            # the change request is taken (cleared) once the command is queued
            assert await client.get_node(nodes["CmdChangeRequest"]).read_value() is False
            cum = await client.get_node(nodes["StateCumulativeTime"]).read_value()
            assert cum[1][EXECUTE] >= 0 and len(cum) == 4 and len(cum[1]) == 18
            await _command(client, nodes, UNHOLD)
            await wait_state(client, nodes["StateCurrent"], EXECUTE)
        db = f.service.controller.writer.path
    store = EventStore(db, readonly=True)
    try:
        scada = [(c[2], c[3], c[4]) for c in store.commands() if c[3] == "scada"]
    finally:
        store.close()
    assert ("HOLD", "scada", True) in scada and ("UNHOLD", "scada", True) in scada


async def test_commands_are_refused_on_the_wire_when_not_enabled(tmp_path: Path) -> None:
    async with floor(tmp_path) as f, Client(f.url, timeout=5) as client:
        nodes = await tag_nodes(client)
        await wait_state(client, nodes["StateCurrent"], EXECUTE)
        with pytest.raises(UaStatusCodeError) as err:
            await _command(client, nodes, HOLD)
        assert err.value.code in (ua.StatusCodes.BadNotWritable, ua.StatusCodes.BadUserAccessDenied)
        assert f.service.packtags is not None and f.service.packtags.commands_queued == 0
        assert int(await client.get_node(nodes["StateCurrent"]).read_value()) == EXECUTE

"""PackTags served by a real controller (simulator PLCs over real OPC UA/Modbus), read and
commanded by an asyncua client over 127.0.0.1."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.uaerrors import UaStatusCodeError

from control.packtags.space import OUR_URI, PACKML_URI
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


async def _machines(client: Client) -> tuple[Node, Node, Node, int]:
    """The unit object, its MachineState and ExecuteState machines, and the PackML namespace."""
    pns = await client.get_namespace_index(PACKML_URI)
    ns = await client.get_namespace_index(OUR_URI)
    unit = await client.nodes.root.get_child(["0:Objects", f"{pns}:PackMLObjects", f"{ns}:Sorter"])
    machine = await unit.get_child([f"{pns}:BaseStateMachine", f"{pns}:MachineState"])
    execute = await machine.get_child(f"{pns}:ExecuteState")
    return unit, machine, execute, pns


async def _refused(code: int, call: Awaitable[object]) -> None:
    with pytest.raises(UaStatusCodeError) as err:
        await call
    assert err.value.code == code, ua.StatusCode(err.value.code).name


async def test_scada_commands_by_opc_30050_method_calls(tmp_path: Path) -> None:
    """Hold / Unhold on the ExecuteState machine and SetUnitMode on the unit reach the supervisor
    as the Command tags do; a call answers at once what the tags cannot: a command the state
    does not take, a mode that is none, a method this unit does not support."""
    async with floor(tmp_path, commands_enabled=True) as f, Client(f.url, timeout=5) as client:
        nodes = await tag_nodes(client)
        unit, machine, execute, pns = await _machines(client)
        await wait_state(client, nodes["StateCurrent"], EXECUTE)
        await execute.call_method(f"{pns}:Hold")
        await wait_state(client, nodes["StateCurrent"], HELD)
        await _refused(ua.StatusCodes.BadInvalidState, execute.call_method(f"{pns}:Start", ua.Variant([], ua.VariantType.ExtensionObject)))
        await _refused(ua.StatusCodes.BadInvalidState, machine.call_method(f"{pns}:Reset"))  # PackML: no Reset in Held
        await execute.call_method(f"{pns}:Unhold")
        await wait_state(client, nodes["StateCurrent"], EXECUTE)
        await _refused(ua.StatusCodes.BadOutOfRange, unit.call_method(f"{pns}:SetUnitMode", ua.Variant(9, ua.VariantType.Int32)))
        await _refused(ua.StatusCodes.BadNotSupported, unit.call_method(f"{pns}:SetMachSpeed", ua.Variant(3.0, ua.VariantType.Float)))
        db = f.service.controller.writer.path
    store = EventStore(db, readonly=True)
    try:
        scada = [c[2] for c in store.commands() if c[3] == "scada"]
    finally:
        store.close()
    assert sorted(scada) == ["HOLD", "UNHOLD"]  # the refused calls queued nothing


async def test_commands_are_refused_on_the_wire_when_not_enabled(tmp_path: Path) -> None:
    async with floor(tmp_path) as f, Client(f.url, timeout=5) as client:
        nodes = await tag_nodes(client)
        await wait_state(client, nodes["StateCurrent"], EXECUTE)
        with pytest.raises(UaStatusCodeError) as err:
            await _command(client, nodes, HOLD)
        assert err.value.code in (ua.StatusCodes.BadNotWritable, ua.StatusCodes.BadUserAccessDenied)
        _, _, execute, pns = await _machines(client)
        await _refused(ua.StatusCodes.BadUserAccessDenied, execute.call_method(f"{pns}:Hold"))
        assert f.service.packtags is not None and f.service.packtags.commands_queued == 0
        assert int(await client.get_node(nodes["StateCurrent"]).read_value()) == EXECUTE

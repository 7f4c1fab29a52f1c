# ruff: noqa: F811  (the fault matrix fixtures, imported by name)
"""The operator's terminal commands (`sortctl plan activate|rollback|versions`, `chute`, `alarm`,
`mode`, `manifest add`, `status --send --user`) against a running controller (virtual time): each
is stored with its user, answered by the service, and its exit code says how it went."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from control.store import EventStore
from harness.virtual import RoutingInputs, VirtualFloor
from plant.site import Site
from plant.tagmap import TagMap
from sortctl.cli import main
from tests.control.test_fault_matrix import (  # noqa: F401  (fixtures)
    CONFIG,
    fast_site,
    open_floor,
    routing,
    sim_manifest,
    tags,
)


async def cli(f: VirtualFloor, *argv: str) -> int:
    """Run a sortctl command in a thread while the floor runs on (it waits for the answer)."""
    task = asyncio.ensure_future(asyncio.to_thread(main, list(argv)))
    while not task.done():
        await f.tick()
    return task.result()


async def test_terminal_commands_are_answered_and_stored_with_their_user(
    tmp_path: Path, fast_site: Site, tags: TagMap, routing: RoutingInputs, sim_manifest: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    f = await open_floor(tmp_path, fast_site, tags, routing, sim_manifest)
    db = str(f.db)
    try:
        assert await cli(f, "chute", "out", "18", "--reason", "bag full", "--db", db, "--user", "ana") == 0
        assert "chute 18 out of service" in capsys.readouterr().out
        assert await cli(f, "chute", "out", "29", "--db", db, "--user", "ana") == 1  # the reject chute: refused
        assert "reject chute" in capsys.readouterr().out
        bad = tmp_path / "bad.csv"
        bad.write_text("destination_id,country,postal_prefix,chutes,priority_chute,description\n,GB,,16|77,,x\n")
        assert await cli(f, "plan", "activate", str(bad), "--db", db, "--user", "eve") == 1
        assert "bad.csv:2: chutes: chute 77 is not in the site" in capsys.readouterr().out
        good = tmp_path / "good.csv"
        good.write_text((CONFIG / "sortplan.csv").read_text().replace("16|18|20", "20"))
        assert await cli(f, "plan", "activate", str(good), "--db", db, "--user", "eve", "--json") == 0
        got = json.loads(capsys.readouterr().out)
        assert got["accepted"] and "version 3" in got["result"] and got["user"] == "eve"
        assert await cli(f, "plan", "versions", "--db", db, "--json") == 0
        versions = json.loads(capsys.readouterr().out)
        assert [(v["version"], v["state"]) for v in versions] == [(3, "active"), (2, "refused"), (1, "replaced")]
        assert await cli(f, "plan", "rollback", "--db", db, "--user", "eve") == 0
        assert "to version 1" in capsys.readouterr().out
        assert await cli(f, "mode", "maintenance", "--db", db, "--user", "eve") == 1  # running: refused
        capsys.readouterr()
        assert await cli(f, "status", "--db", db, "--send", "stop", "--user", "bo") == 0
        capsys.readouterr()
        assert await cli(f, "alarm", "ack", "--db", db, "--user", "bo") == 0
        assert "acknowledged" in capsys.readouterr().out
        rows = tmp_path / "more.csv"
        header = (CONFIG / "manifest.csv").read_text().splitlines()[0]
        rows.write_text(header + "\nRR123456785GB,GB,SW1A1AA,,,2026-11-23T18:00:00Z,,300,200,100,1.5\n")
        assert await cli(f, "manifest", "add", str(rows), "--db", db, "--user", "wms") == 0
        assert "1 rows added" in capsys.readouterr().out
        store = EventStore(f.db, readonly=True)
        try:
            sent = [(c[2], c[3]) for c in reversed(store.commands())]
        finally:
            store.close()
        assert sent == [("CHUTE_OUT", "ana"), ("CHUTE_OUT", "ana"), ("PLAN_ACTIVATE", "eve"),
                        ("PLAN_ACTIVATE", "eve"), ("PLAN_ROLLBACK", "eve"), ("MODE", "eve"), ("STOP", "bo"),
                        ("ALARM_ACK", "bo"), ("MANIFEST_ADD", "wms")]
    finally:
        await f.close()


def test_a_command_without_a_store_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chute", "out", "3", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no event store" in capsys.readouterr().out

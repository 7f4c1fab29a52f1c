"""The controller's PackTags server read and commanded by an independent OPC UA stack: the
node-opcua SCADA client (``packtags_client_check.js``) against a real controller."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from tests.packtags.floor import floor, tag_nodes, wait_state

HERE = Path(__file__).resolve().parent
NODE = shutil.which("node")
if NODE is None:
    pytest.skip("Node.js is not installed (node-opcua interop tests need node >= 20 and npm)", allow_module_level=True)


@pytest.fixture(autouse=True, scope="module")
def _node_opcua(node_modules: Path) -> Path:
    """node-opcua installed (``npm ci`` once per session, conftest.py) before any test here."""
    return node_modules

pytestmark = [pytest.mark.interop, pytest.mark.slow]


async def _node_client(url: str, pki: Path, opts: dict[str, object]) -> tuple[int, dict[str, object]]:
    path = pki / "opts.json"
    pki.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a test, before the child starts
    path.write_text(json.dumps(opts))  # noqa: ASYNC240
    proc = await asyncio.create_subprocess_exec(
        NODE or "node", str(HERE / "packtags_client_check.js"), url, str(pki), str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    try:
        return int(proc.returncode or 0), json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        pytest.fail(f"no report from packtags_client_check.js ({proc.returncode}): {err.decode()[-3000:]}")


async def test_node_opcua_scada_reads_the_tags_and_commands_the_unit(tmp_path: Path) -> None:
    from asyncua.client.client import Client

    async with floor(tmp_path, commands_enabled=True) as f:
        async with Client(f.url, timeout=5) as client:
            nodes = await tag_nodes(client)
            await wait_state(client, nodes["StateCurrent"], 6)
        code, rep = await _node_client(f.url, tmp_path / "pki", {"command": 4, "wait_state": 11, "within_ms": 20000})
        assert code == 0, rep
        reads = rep["reads"]
        assert isinstance(reads, dict)
        assert reads["Status.StateCurrent"]["value"] == 6 and reads["Status.StateCurrent"]["type"] == "Int32"
        assert reads["Status.UnitModeCurrent"]["value"] == 1
        assert reads["BaseStateMachine.CurrentState"]["value"] == "Cleared"
        assert reads["Admin.ProdProcessedCount"]["status"] == "Good"
        assert rep["command_write"] == ["Good", "Good"]
        assert rep["states_seen"][-1] == 11, rep["states_seen"]

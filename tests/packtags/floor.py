"""A real floor for PackTags tests: the simulator's PLCs (in this process, real OPC UA and
Modbus on 127.0.0.1) and the real controller service with its PackTags server on a free port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client

from control.packtags.space import OUR_URI, PACKML_URI
from control.service.app import Endpoints, Files, Service
from control.service.settings import ServiceSettings
from plant.site import load_site
from plant.tagmap import load_tag_map
from plc_sim.clock import RealClock
from plc_sim.scenario import Arrivals, Scenario
from plc_sim.simulator import Ports, Simulator

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "config" / "site.yaml"


@dataclass
class Floor:
    service: Service
    sim: Simulator
    url: str


@contextlib.asynccontextmanager
async def floor(tmp_path: Path, **packtags: Any) -> AsyncIterator[Floor]:
    site = load_site(SITE)
    tags = load_tag_map(SITE.parent / site.plc.conveyor.tag_map)
    scenario = Scenario(seed=3, manifest=None, arrivals=Arrivals(rate_per_hour=20_000, count=40))
    sim = Simulator(site, tags, scenario, clock=RealClock(), tick_s=0.01, ports=Ports.base(0), camera=False)
    await sim.start()
    settings = ServiceSettings.model_validate({
        "auto_recover": False,  # an operator's Hold stays held until Unhold
        "decode_executor": "thread",
        "packtags": {"enabled": True, "port": 0, "rate_hz": 10.0, **packtags},
    })
    ep = sim.endpoints
    service = Service.from_files(
        Files.beside(SITE), tmp_path / "events.sqlite", settings,
        Endpoints(ep["conveyor"]["port"], ep["diverter"]["port"]), camera=False,
    )
    task: asyncio.Task[None] | None = None
    try:
        async with service:
            task = asyncio.get_running_loop().create_task(service.run())
            assert service.packtags is not None
            assert await service.packtags.wait_ready(30.0), service.packtags.error
            yield Floor(service, sim, service.packtags.url)
            service.stop()
            await asyncio.wait_for(task, 10.0)
    finally:
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await sim.stop()


async def tag_nodes(client: Client) -> dict[str, ua.NodeId]:
    """The tags' NodeIds by browse path from Objects, namespaces looked up by URI."""
    pns = await client.get_namespace_index(PACKML_URI)
    ns = await client.get_namespace_index(OUR_URI)
    base = ["0:Objects", f"{pns}:PackMLObjects", f"{ns}:Sorter"]
    paths = {
        "StateCurrent": [f"{pns}:Status", f"{ns}:StateCurrent"],
        "UnitModeCurrent": [f"{pns}:Status", f"{pns}:UnitModeCurrent"],
        "CurMachSpeed": [f"{pns}:Status", f"{pns}:CurMachSpeed"],
        "ProdProcessedCount": [f"{pns}:Admin", f"{pns}:ProdProcessedCount"],
        "StateCumulativeTime": [f"{pns}:Admin", f"{pns}:StateCumulativeTime"],
        "StopReason": [f"{pns}:Admin", f"{pns}:StopReason"],
        "CurrentState": [f"{pns}:BaseStateMachine", "0:CurrentState"],
        "CntrlCmd": [f"{ns}:Command", f"{ns}:CntrlCmd"],
        "CmdChangeRequest": [f"{ns}:Command", f"{ns}:CmdChangeRequest"],
    }
    out = {}
    for k, p in paths.items():
        node = await client.nodes.root.get_child([*base, *p])
        out[k] = node.nodeid
    return out


async def wait_state(client: Client, node: ua.NodeId, want: int, within_s: float = 20.0) -> list[int]:
    seen: list[int] = []
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        v = int(await client.get_node(node).read_value())
        if not seen or seen[-1] != v:
            seen.append(v)
        if v == want:
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"StateCurrent never became {want}: saw {seen}")

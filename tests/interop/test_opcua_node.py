"""OPC UA interoperability with an independent stack, node-opcua (Node.js), in both directions.

Both ends of our OPC UA link are asyncua, so an asyncua quirk on one end can hide a bug in the
other that a real PLC (Siemens, B&R, Beckhoff ...) would expose. Here:

1. a node-opcua *client* (``conveyor_client_check.js``) works the simulator's conveyor PLC
   (``plc_sim/servers/opcua_server.py``) from docs/plc-interface.md alone: namespace by URI,
   every node by browse path, attributes, typed writes and refusals, the belt command
   handshake with a host heartbeat, and a ring read in one Read request;
2. the controller's asyncua *client driver* (``control/plc/opcua.py``) works a node-opcua
   *server* (``conveyor_plc_server.js``) built from the same tag map: connect, typed reads and
   writes, rings, reconnect after a PLC restart, and a PLC that refuses client timestamps.

Node.js >= 20 and npm are needed; without node the module is skipped. ``npm ci`` runs once
(output kept unless it fails) when ``tests/interop/node_modules`` is missing or older than
``package-lock.json``. Everything listens on 127.0.0.1 on ports the OS picks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.client.client import Client

from control.plc import (
    Backoff,
    PlcConnectionError,
    PlcError,
    PlcRefused,
    ReconnectingLink,
    open_link,
)
from control.plc.opcua import OpcuaLink
from plant.site import Site, load_site
from plant.tagmap import TagMap
from plc_sim.clock import RealClock
from plc_sim.scenario import Arrivals, Scenario
from plc_sim.simulator import Ports, Simulator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MIN_NODE = 20  # node-opcua 2.182's dependencies need Node.js 20


def _node_version(node: str | None) -> tuple[int, str] | None:
    if node is None:
        return None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=20, check=True).stdout
        return int(out.strip().lstrip("v").split(".")[0]), out.strip()
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


NODE = shutil.which("node")
NPM = shutil.which("npm")
_version = _node_version(NODE)
if NODE is None or _version is None:
    pytest.skip("Node.js is not installed (node-opcua interop tests need node >= 20 and npm)", allow_module_level=True)
if _version[0] < MIN_NODE:
    pytest.skip(f"Node.js {_version[1]} is too old: node-opcua needs node >= {MIN_NODE}", allow_module_level=True)

pytestmark = [pytest.mark.interop, pytest.mark.asyncio(loop_scope="module")]

FAST = Backoff(base_s=0.01, cap_s=0.05, jitter=0.5)
# variant types a careless client might send; each must be refused (docs: "Types are exact")
WRONG_TYPES = {
    "UInt32": ["Int64", "Int32", "Double"],
    "Int32": ["Int64", "UInt32"],
    "Double": ["Float", "Int64"],
    "Boolean": ["Byte", "Int32"],
}
DATA_TYPE_IDS = {"Boolean": "ns=0;i=1", "Int32": "ns=0;i=6", "UInt32": "ns=0;i=7", "Double": "ns=0;i=11"}
PROCESS_TIMEOUT_S = 60.0
USERS = {"operator": "s3cret pass"}  # the node-opcua PLC's user (anonymous is allowed too)


# -- Node.js set-up: the session fixture `node_modules` (npm ci once) is in conftest.py ----


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(ROOT / "config" / "site.yaml")


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Spec files and the node-opcua PKI folders (nothing lands in the home directory)."""
    return tmp_path_factory.mktemp("interop")


async def _finish(proc: asyncio.subprocess.Process, timeout_s: float = 10.0) -> tuple[bytes, bytes]:
    """Wait for a child to end (killing it after ``timeout_s``), its pipes drained and closed."""
    try:
        return await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        return await proc.communicate()


def _tail(text: str | bytes, n: int = 4000) -> str:
    s = text.decode(errors="replace") if isinstance(text, bytes) else text
    return s[-n:]


def _log_tail(path: Path) -> str:
    return _tail(path.read_bytes()) if path.exists() else ""


# == 1. node-opcua client -> the simulator's asyncua server ==========================================
def client_spec(tags: TagMap, site: Site) -> dict[str, Any]:
    """What conveyor_client_check.js checks, written out from the tag map."""
    c = tags.conveyor
    items: list[dict[str, Any]] = [
        {"key": n, "node": t.node, "type": t.type, "access": t.access, "unit": t.unit, "doc": t.doc}
        for n, t in c.tags.items()
    ]
    for rn, r in c.rings.items():
        items.append({"key": f"{rn}.head", "node": r.head, "type": "UInt32", "access": "r", "unit": "seq", "doc": ""})
        items.append({"key": f"{rn}.ack", "node": r.ack, "type": "UInt32", "access": "w", "unit": "seq", "doc": ""})
        for f, node in r.fields.items():
            items.append({"key": f"{rn}.{f}", "node": node, "type": "UInt32", "access": "r", "unit": "", "doc": "",
                          "size": r.size})
    # one value per host-written scalar, chosen so that the wrong type could not carry it
    # (UInt32 above 2^31, negative Int32, fractional Double); belt_command_seq is exercised by
    # the command handshake instead (a write there runs a command).
    probe: dict[str, Any] = {"host_heartbeat": 4_000_000_000, "watchdog_ms": 3000, "host_unit_state": -5,
                             "belt_command": -7, "speed_setpoint": site.sorter.speed_mps - 0.25,
                             "induct_enable": False}
    probe.update({f"{rn}.ack": 3 for rn in c.rings})
    induct = c.rings["induct"]
    return {
        "namespace_uri": c.namespace_uri,
        "root": c.root,
        "items": items,
        "probe": probe,
        "wrong": WRONG_TYPES,
        "commands": [1, 2],  # Reset, Start
        "ring": {"name": "induct", "head": "induct.head", "ack": "induct.ack",
                 "fields": {f: f"induct.{f}" for f in induct.fields}, "min_head": 3, "within_ms": 20_000},
    }


@dataclass
class ClientRun:
    """The node-opcua client's report, and what the simulator had when it finished."""

    spec: dict[str, Any]
    report: dict[str, Any]
    namespace_index: int
    plc_columns: dict[str, list[int]]  # the simulator's induct ring memory
    plc_acked: int
    truth_tracking_id: list[int]
    truth_length_mm: list[float]
    plc_values: dict[str, Any]  # tag values in the simulator's memory after the run


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client_run(node_modules: Path, work_dir: Path, tag_map: TagMap, site: Site) -> ClientRun:
    spec = client_spec(tag_map, site)
    spec_path = work_dir / "client-spec.json"
    spec_path.write_text(json.dumps(spec))
    scenario = Scenario(seed=5, manifest=None, arrivals=Arrivals(rate_per_hour=20_000, count=8))
    sim = Simulator(site, tag_map, scenario, clock=RealClock(), tick_s=0.01, ports=Ports.base(0), camera=False)
    await sim.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            NODE or "node", str(HERE / "conveyor_client_check.js"), sim.conveyor_server.url, str(spec_path),
            str(work_dir / "pki-client"),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await _finish(proc, PROCESS_TIMEOUT_S)
        if proc.returncode != 0:
            pytest.fail(f"conveyor_client_check.js exited {proc.returncode}:\n{_tail(err)}")
        try:
            report = json.loads(out)
        except ValueError:
            pytest.fail(f"conveyor_client_check.js printed no JSON report:\n{_tail(out)}\n{_tail(err)}")
        ring = sim.conveyor_server.ring("induct")
        truth = sim.ground_truth()
        values = {n: await sim.conveyor_server.read(n) for n in sim.conveyor_server.names()}
        return ClientRun(
            spec=spec,
            report=report,
            namespace_index=sim.conveyor_server.namespace_index,
            plc_columns={f: col.tolist() for f, col in ring.columns.items()},
            plc_acked=await ring.acked(),
            truth_tracking_id=truth.tracking_id.tolist(),
            truth_length_mm=truth.length_mm.tolist(),
            plc_values=values,
        )
    finally:
        await sim.stop()


def _items(run: ClientRun) -> dict[str, dict[str, Any]]:
    return {it["key"]: it for it in run.spec["items"]}


async def test_node_client_finds_the_namespace_by_uri(client_run: ClientRun, tag_map: TagMap) -> None:
    r = client_run.report
    assert r["namespace_array"][r["namespace_index"]] == tag_map.conveyor.namespace_uri
    assert r["namespace_index"] == client_run.namespace_index


async def test_every_tag_map_node_is_reached_by_browse_path(client_run: ClientRun, tag_map: TagMap) -> None:
    r = client_run.report
    ns = r["namespace_index"]
    wrong = {}
    for key, item in _items(client_run).items():
        got = r["nodes"][key]
        if got["node_id"] != f"ns={ns};s={item['node']}":
            wrong[key] = got
    assert not wrong, f"browse path from Objects does not lead to the documented string NodeId: {wrong}"
    # the way there: Objects/Sorter/<middle parts>, every step an Object
    assert r["objects"][tag_map.conveyor.root]["node_class"] == "Object"
    not_objects = {k: v for k, v in r["objects"].items() if v.get("node_class") != "Object"}
    assert not not_objects


async def test_variables_have_the_documented_attributes(client_run: ClientRun) -> None:
    r = client_run.report
    ns = r["namespace_index"]
    problems: list[str] = []
    for key, item in _items(client_run).items():
        got = r["nodes"][key]
        size = item.get("size")
        access = 3 if item["access"] == "w" else 1  # CurrentRead | CurrentWrite, or CurrentRead
        expect = {
            "node_class": "Variable",
            "browse_name": {"ns": ns, "name": item["node"].rsplit(".", 1)[1]},
            "data_type": DATA_TYPE_IDS[item["type"]],
            "value_rank": 1 if size else -1,
            "access_level": access,
            "user_access_level": access,
            "value_type": item["type"],
            "value_is_array": bool(size),
        }
        for attr, want in expect.items():
            if got.get(attr) != want:
                problems.append(f"{key}.{attr}: {got.get(attr)!r}, documented {want!r}")
        if size:
            if got.get("array_dimensions") != [size]:
                problems.append(f"{key}.array_dimensions: {got.get('array_dimensions')!r}, documented [{size}]")
            if got.get("value") != [0] * size:
                problems.append(f"{key}: not {size} zeros at start: {got.get('value')!r}")
        elif got.get("array_dimensions") not in (None, []):
            problems.append(f"{key}.array_dimensions: {got.get('array_dimensions')!r} on a scalar")
        if item["doc"] and got.get("description") != item["doc"]:
            problems.append(f"{key}.description: {got.get('description')!r}, tag map says {item['doc']!r}")
    assert not problems, "\n".join(problems)


async def test_units_are_euinformation_properties(client_run: ClientRun) -> None:
    problems = []
    for key, item in _items(client_run).items():
        if not item["unit"]:
            continue
        eu = client_run.report["nodes"][key].get("eu", {})
        want = {"path_status": "Good", "status": "Good", "value_type": "ExtensionObject",
                "decoded_as": "EUInformation", "display_name": item["unit"]}
        if {k: eu.get(k) for k in want} != want:
            problems.append(f"{key}: {eu}")
    assert not problems, "EngineeringUnits not readable as EUInformation by node-opcua:\n" + "\n".join(problems)


async def test_host_written_variables_take_their_declared_type_and_read_back(client_run: ClientRun) -> None:
    items = _items(client_run)
    writes = client_run.report["writes"]
    assert set(writes) == set(client_run.spec["probe"])
    for key, w in writes.items():
        typ = items[key]["type"]
        assert w["status"] == "Good", (key, w)
        assert w["readback"] == {"status": "Good", "type": typ, "value": w["wrote"]}, key
        assert w["restore_status"] == "Good" and w["restored"] == w["before"], key


async def test_other_variant_types_are_refused_and_change_nothing(client_run: ClientRun) -> None:
    tried = client_run.report["wrong_type"]
    assert {(t["key"], t["sent"]) for t in tried} == {
        (k, s) for k in client_run.spec["probe"] for s in WRONG_TYPES[_items(client_run)[k]["type"]]
    }
    bad = [t for t in tried if t["status"] != "BadTypeMismatch" or t["after"] != t["before"]]
    assert not bad, f"writes of another variant type not refused with BadTypeMismatch: {bad}"


async def test_plc_owned_variables_refuse_writes(client_run: ClientRun) -> None:
    tried = client_run.report["plc_owned"]
    assert {t["key"] for t in tried} == {k for k, it in _items(client_run).items() if it["access"] == "r"}
    bad = [t for t in tried
           if t["status"] not in ("BadNotWritable", "BadUserAccessDenied")
           or (t["after"] != t["before"] and not t["key"].endswith("heartbeat") and t["key"] != "encoder_count")]
    assert not bad, f"PLC-owned variables took a client write: {bad}"


async def test_belt_command_handshake_in_one_write_request(client_run: ClientRun) -> None:
    cmds = client_run.report["commands"]
    assert [(c["command"], c["seq"], c["ack"], c["result"]) for c in cmds] == [(1, 1, 1, 0), (2, 2, 2, 0)]
    assert all(c["write_status"] == ["Good", "Good"] for c in cmds)
    assert [c["belt_state"] for c in cmds] == [4, 6]  # Idle after Reset, Execute after Start
    hb = client_run.report["heartbeat"]
    assert hb["errors"] == 0 and hb["last"] > 0
    assert hb["readback"] == hb["last"] == client_run.plc_values["host_heartbeat"]


async def test_ring_read_in_one_request_matches_the_simulator(client_run: ClientRun, site: Site) -> None:
    ring = client_run.report["ring"]
    assert ring["statuses"] == ["Good"] * (1 + len(ring["fields"]))
    assert ring["head_type"] == "UInt32" and set(ring["field_types"].values()) == {"UInt32"}
    head = ring["head"]
    size = len(ring["fields"]["seq"])
    assert 3 <= head < size, ring
    cols = {f: np.asarray(v, dtype=np.int64) for f, v in ring["fields"].items()}
    seqs = np.arange(1, head + 1)
    slots = seqs % size
    assert cols["seq"][slots].tolist() == seqs.tolist()  # every slot carries its own seq
    # the PLC's memory, as the simulator holds it, is what the foreign client read
    for f, col in cols.items():
        assert col[slots].tolist() == [client_run.plc_columns[f][s] for s in slots], f
    # and it is the physical truth: tracking ids in induct order, lengths in encoder counts
    assert cols["tracking_id"][slots].tolist() == client_run.truth_tracking_id[:head]
    length_counts = (cols["trailing_count"][slots] - cols["leading_count"][slots]) % 2**32
    expect = np.asarray(client_run.truth_length_mm[:head]) * site.sorter.counts_per_mm
    assert np.all(np.abs(length_counts - expect) <= 2), (length_counts, expect)
    # the ack written by node-opcua reached the PLC program
    assert ring["ack_status"] == "Good" and ring["ack_readback"] == head
    assert client_run.plc_acked == head


# == 2. the controller's asyncua driver -> a node-opcua server ========================================
class NodePlc:
    """conveyor_plc_server.js as a child process, and its PLC-side request channel."""

    def __init__(self, proc: asyncio.subprocess.Process, ready: dict[str, Any], log: Path) -> None:
        self.proc = proc
        self.port = int(ready["port"])
        self.url = str(ready["url"])
        self.namespace_index = int(ready["namespace_index"])
        self.log = log
        self._next = 0

    @classmethod
    async def start(cls, spec_path: Path, pki: Path, log: Path, port: int = 0) -> NodePlc:
        args = [str(HERE / "conveyor_plc_server.js"), str(spec_path), str(pki), str(port)]
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                NODE or "node", *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err
            )
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            ready = json.loads(line)
            assert ready.get("ready"), ready
        except (TimeoutError, ValueError, AssertionError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await _finish(proc)
            pytest.fail(f"conveyor_plc_server.js did not start:\n{_log_tail(log)}")
        return cls(proc, ready, log)

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._next += 1
        self.proc.stdin.write((json.dumps({"id": self._next, "op": op, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        reply = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 10))
        assert reply.get("id") == self._next and reply.get("ok"), (reply, _log_tail(self.log))
        return reply  # type: ignore[no-any-return]

    async def get(self, *names: str) -> dict[str, tuple[str, Any]]:
        values = (await self.call("get", names=list(names)))["values"]
        return {n: (v["type"], v["value"]) for n, v in values.items()}

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"op": "stop"}\n')
                await self.proc.stdin.drain()
        await _finish(self.proc)

    async def kill(self) -> None:
        """A power cut: no goodbye to the clients."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await _finish(self.proc)


@pytest.fixture(scope="module")
def server_spec(work_dir: Path, tag_map: TagMap, site: Site) -> Path:
    path = work_dir / "server-spec.json"
    path.write_text(json.dumps({**tag_map.conveyor.model_dump(mode="json"), "path": site.plc.conveyor.path,
                                "users": USERS}))
    return path


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def node_plc(node_modules: Path, server_spec: Path, work_dir: Path) -> AsyncIterator[NodePlc]:
    plc = await NodePlc.start(server_spec, work_dir / "pki-server", work_dir / "node-plc.log")
    yield plc
    await plc.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def link(node_plc: NodePlc, site: Site, tag_map: TagMap) -> AsyncIterator[ReconnectingLink]:
    lk = open_link(site, tag_map, "conveyor", port=node_plc.port, timeout_s=1.0, backoff=FAST)
    await lk.connect()
    yield lk
    await lk.close()


async def test_link_connects_with_the_namespace_elsewhere_than_ns2(node_plc: NodePlc, link: ReconnectingLink,
                                                                   tag_map: TagMap) -> None:
    assert node_plc.namespace_index != 2  # else this proves nothing about the URI lookup
    assert link.connected
    await node_plc.call("set", values={"plc_heartbeat": 123_456})
    assert await link.read(["plc_heartbeat"]) == {"plc_heartbeat": 123_456}


async def test_link_reads_plc_values_with_their_types(node_plc: NodePlc, link: ReconnectingLink) -> None:
    plc_owned = {"faults": 0b10110, "belt_state": -3, "speed_actual": 1.5, "encoder_count": 0xFFFF_FFF0,
                 "belt_command_result": 2, "inducted_total": 2**31 + 5}
    await node_plc.call("set", values=plc_owned)
    got = await link.read(list(plc_owned))
    assert got == plc_owned
    assert {n: type(v) for n, v in got.items()} == {n: type(v) for n, v in plc_owned.items()}
    await node_plc.call("set", values={"induct_enable": True})
    assert await link.read(["induct_enable"]) == {"induct_enable": True}


async def test_link_writes_arrive_with_the_declared_types(node_plc: NodePlc, link: ReconnectingLink,
                                                          tag_map: TagMap) -> None:
    host = {"host_heartbeat": 4_000_000_000, "watchdog_ms": 1500, "host_unit_state": -6, "belt_command": 9,
            "belt_command_seq": 2**32 - 1, "speed_setpoint": 2.25, "induct_enable": True,
            "induct.ack": 17, "scan.ack": 2**31}
    await link.write(host)
    got = await node_plc.get(*host)
    types = {n: t.type for n, t in tag_map.conveyor.tags.items()} | {"induct.ack": "UInt32", "scan.ack": "UInt32"}
    assert got == {n: (types[n], v) for n, v in host.items()}


async def test_link_write_to_a_plc_owned_tag_is_refused(node_plc: NodePlc, link: ReconnectingLink) -> None:
    await node_plc.call("set", values={"faults": 4})
    with pytest.raises(PlcRefused):
        await link.write({"faults": 1})
    assert await node_plc.get("faults") == {"faults": ("UInt32", 4)}
    assert link.connected  # a refusal is an answer, not a link fault


async def test_link_reads_a_ring_in_one_read_and_acks(node_plc: NodePlc, link: ReconnectingLink,
                                                      tag_map: TagMap) -> None:
    size = tag_map.conveyor.rings["scan"].size
    before = (await link.read(["scan.head"]))["scan.head"]
    pushed = [{"tracking_id": 40 + i, "trigger_count": 0xFFFF_FFFF - i, "lap": i % 2} for i in range(3)]
    head = (await node_plc.call("push", ring="scan", entries=pushed))["head"]
    assert head == before + 3
    got = await link.read_ring("scan", before)
    assert got.head == head and not got.gaps and not got.restarted
    assert [{k: e[k] for k in ("tracking_id", "trigger_count", "lap")} for e in got.entries] == pushed
    assert [e["seq"] for e in got.entries] == list(range(before + 1, head + 1))
    await link.ack_ring("scan", head)
    assert await node_plc.get("scan.ack") == {"scan.ack": ("UInt32", head)}
    # an overrun ring: the lost seqs are reported as a gap, the rest read
    await node_plc.call("push", ring="scan", entries=[{"tracking_id": 1000 + i} for i in range(size + 5)])
    over = await link.read_ring("scan", head)
    assert over.lost == 5 and over.gaps[0].first == head + 1
    assert [e["tracking_id"] for e in over.entries] == [1000 + i for i in range(5, size + 5)]


@pytest.mark.parametrize("policy", ["None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"])
async def test_link_logs_in_with_user_and_security_policy(node_plc: NodePlc, site: Site, tag_map: TagMap,
                                                          work_dir: Path, policy: str) -> None:
    """Real PLCs are run with a user and Basic256Sha256: asyncua's certificate, user token
    (password encrypted per the token policy) and message security against node-opcua's."""
    def link_as(password: str) -> OpcuaLink:
        ep = site.plc.conveyor.model_copy(update={
            "port": node_plc.port, "security_policy": policy, "username": "operator", "password": password,
        })
        return OpcuaLink(ep, tag_map.conveyor, timeout_s=2.0, cert_dir=work_dir / "controller-certs")

    lk = link_as(USERS["operator"])
    try:
        await lk.connect()
        await lk.write({"host_unit_state": 11, "speed_setpoint": 0.5})
        assert await node_plc.get("host_unit_state", "speed_setpoint") == {
            "host_unit_state": ("Int32", 11), "speed_setpoint": ("Double", 0.5)}
        await node_plc.call("set", values={"jam_eye": 107})
        assert await lk.read(["jam_eye"]) == {"jam_eye": 107}
    finally:
        await lk.close()
    bad = link_as("not the password")
    with pytest.raises(PlcRefused):
        await bad.connect()
    assert not bad.connected


async def test_link_reconnects_after_the_plc_restarts(server_spec: Path, work_dir: Path, site: Site,
                                                      tag_map: TagMap) -> None:
    log = work_dir / "node-plc-restart.log"
    plc = await NodePlc.start(server_spec, work_dir / "pki-restart", log)
    lk = open_link(site, tag_map, "conveyor", port=plc.port, timeout_s=0.5, backoff=FAST)
    try:
        await lk.write({"host_heartbeat": 11})
        await plc.kill()
        with pytest.raises(PlcConnectionError):
            await lk.read(["host_heartbeat"])
        plc = await NodePlc.start(server_spec, work_dir / "pki-restart", log, port=plc.port)
        await plc.call("set", values={"plc_heartbeat": 77})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            try:
                got = await lk.read(["plc_heartbeat", "host_heartbeat"])
                break
            except PlcError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)
        assert got == {"plc_heartbeat": 77, "host_heartbeat": 0}  # a cold PLC: no retained memory
        assert lk.connected and lk.reconnects >= 1
    finally:
        await lk.close()
        await plc.stop()


async def test_a_write_without_timestamps_passes_a_plc_that_refuses_them(node_plc: NodePlc,
                                                                          tag_map: TagMap) -> None:
    """The strict PLC refuses only timestamps: a bare DataValue (what UaExpert and node-opcua
    send) goes through. This is the write the driver makes (next test)."""
    client = Client(node_plc.url, timeout=2)
    await client.connect()
    try:
        ns = await client.get_namespace_index(tag_map.conveyor.namespace_uri)
        node = client.get_node(ua.NodeId(tag_map.conveyor.tags["host_heartbeat"].node, ns))
        await node_plc.call("refuse_timestamps", on=True)
        try:
            stamped = await client.write_values([node], [ua.Variant(5, ua.VariantType.UInt32)],
                                                raise_on_partial_error=False)
            bare = await client.write_values([node], [ua.DataValue(ua.Variant(6, ua.VariantType.UInt32))],
                                             raise_on_partial_error=False)
        finally:
            refused = (await node_plc.call("refuse_timestamps", on=False))["refused_writes"]
    finally:
        await client.disconnect()
    assert stamped[0].name == "BadWriteNotSupported" and len(refused) == 1
    assert bare[0].is_good()
    assert await node_plc.get("host_heartbeat") == {"host_heartbeat": ("UInt32", 6)}


async def test_link_writes_carry_no_timestamps(node_plc: NodePlc, link: ReconnectingLink) -> None:
    await node_plc.call("refuse_timestamps", on=True)
    try:
        await link.write({"host_heartbeat": 8, "speed_setpoint": 1.25})
        await link.ack_ring("induct", 0)
    finally:
        await node_plc.call("refuse_timestamps", on=False)
    assert await node_plc.get("host_heartbeat") == {"host_heartbeat": ("UInt32", 8)}

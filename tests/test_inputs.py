"""Bad inputs as a new user met them, each through the real CLI: a clear error naming the file,
the line and the field (exit 2), never a traceback, never a silent drop, never a hang.

One test (or one parametrised group) per report; the fuzz suite in ``tests/fuzz/`` covers the
same parsers with generated input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from control.routing import engine as engine_module
from control.routing.engine import RoutingEngine
from control.routing.manifest import load_manifest
from control.routing.plan import MAX_PLAN_BYTES, load_plan
from control.service.routing import EngineRouter
from harness.session import _ChildSim
from plant.errors import ConfigError
from plant.site import load_site
from plant.tagmap import TagMap
from plc_sim.servers.modbus_server import DiverterPlcServer
from sortctl.cli import main

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
HEADER = (CONFIG / "manifest.csv").read_text(encoding="utf-8").splitlines()[0]
ROWS = (CONFIG / "manifest.csv").read_text(encoding="utf-8").splitlines()[1:3]


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    """Exit code and everything printed (stdout + stderr) of ``sortctl argv``."""
    code = main(argv)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    return code, text


def _plan_args(tmp_path: Path, **files: Path) -> list[str]:
    """`sortctl plan` (what-if) with the example files unless replaced."""
    paths = {"site": CONFIG / "site.yaml", "plan": CONFIG / "sortplan.csv", "manifest": CONFIG / "manifest.csv",
             "settings": CONFIG / "routing.yaml", **files}
    return ["plan", *[a for k, v in paths.items() for a in (f"--{k}", str(v))], "--json"]


BAD_TEXT = {  # and the line the first bad byte is on
    "binary": bytes(range(256)) * 2,  # byte 10 is a line end: the first non-UTF-8 byte is on line 2
    "latin1": "name: caf\xe9\n".encode("latin-1"),
    "utf16": "name: x\n".encode("utf-16"),
    "nul": b"name: a\x00b\n",
}


# ------------------------------------------------------------ binary / non-UTF-8 YAML files
@pytest.mark.parametrize("kind", sorted(BAD_TEXT))
def test_binary_or_non_utf8_yaml_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(BAD_TEXT[kind])
    cases = [
        ["sim", "--site", str(bad), "--duration", "1"],
        ["sim", "--site", str(CONFIG / "site.yaml"), "--scenario", str(bad), "--duration", "1"],
        ["run", "--site", str(CONFIG / "site.yaml"), "--settings", str(bad), "--db", str(tmp_path / "e.sqlite")],
        _plan_args(tmp_path, settings=bad),
        _plan_args(tmp_path, site=bad),
    ]
    for argv in cases:
        code, text = _run(capsys, argv)
        assert code == 2, (argv, text)
        assert f"sortctl {argv[0]}: {bad}:{2 if kind == 'binary' else 1}: " in text, text
        assert "\x00" not in text


# ------------------------------------------------------------ sortctl demo --site BAD
def test_demo_with_a_bad_site_names_the_error_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text((CONFIG / "site.yaml").read_text(encoding="utf-8").replace("length_mm:", "length_mmm:", 1),
                    encoding="utf-8")
    t0 = time.monotonic()
    code, text = _run(capsys, ["demo", "--site", str(site), "--no-hmi", "--parcels", "5"])
    assert code == 2
    assert f"sortctl demo: {site}:6: sorter.length_mm: Field required" in text
    assert "exited before printing" not in text
    assert time.monotonic() - t0 < 10.0


def test_demo_with_a_bad_scenario_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scen = tmp_path / "scen.yaml"
    scen.write_text("name: x\narrivals:\n  process: weird\n", encoding="utf-8")
    code, text = _run(capsys, ["demo", "--scenario", str(scen), "--no-hmi", "--parcels", "5"])
    assert code == 2
    assert f"sortctl demo: {scen}:3: arrivals.process:" in text


async def test_a_simulator_child_that_dies_early_shows_its_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_bytes(BAD_TEXT["latin1"])
    sim = _ChildSim(bad, CONFIG / "scenarios" / "demo.yaml", tmp_path / "truth.json", camera=False, nice=None)
    with pytest.raises(RuntimeError) as err:
        await sim.start()
    msg = str(err.value)
    assert "before printing its endpoints" in msg
    assert f"sortctl sim: {bad}:1: not UTF-8 text" in msg  # the child's own error, from its stderr
    assert sim.proc is not None and sim.proc.returncode == 2


# ------------------------------------------------------------ manifest with a header only
def test_header_only_manifest_routes_everything_as_unknown_and_says_so_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    m = tmp_path / "manifest.csv"
    m.write_text(HEADER + "\n", encoding="utf-8")
    code, text = _run(capsys, _plan_args(tmp_path, manifest=m))
    assert code == 0
    assert text.count("holds no parcels") == 1
    assert '"parcels": 0' in text
    site = load_site(CONFIG / "site.yaml")
    with caplog.at_level(logging.WARNING):
        router = EngineRouter.from_files(site, CONFIG / "sortplan.csv", m, CONFIG / "routing.yaml")
    assert len(router.manifest) == 0
    assert [r.getMessage() for r in caplog.records].count(
        f"manifest {m} holds no parcels: every parcel routes as unknown (reject chute) until pre-advice arrives"
    ) == 1


# ------------------------------------------------------------ a 50 MB sort plan
def test_a_huge_sort_plan_is_refused_before_it_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.write(b"destination_id,country,postal_prefix,chutes,priority_chute\n")
        f.write(b",DE,1,1,\n" * (50_000_000 // 9))
    assert big.stat().st_size > MAX_PLAN_BYTES
    t0 = time.monotonic()
    code, text = _run(capsys, _plan_args(tmp_path, plan=big))
    assert code == 2
    assert f"sortctl plan: {big}: 50.0 MB is more than a sort plan can be" in text
    code, text = _run(capsys, ["plan", "activate", str(big), "--db", str(tmp_path / "e.sqlite")])
    assert code == 2 and f"sortctl plan activate: {big}: 50.0 MB" in text
    assert time.monotonic() - t0 < 2.0


def test_a_plan_too_large_for_the_engine_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    site = load_site(CONFIG / "site.yaml")
    plan = load_plan(CONFIG / "sortplan.csv", site)
    monkeypatch.setattr(engine_module, "OFF_MASK", 10)
    with pytest.raises(ConfigError) as err:
        RoutingEngine(site, plan, load_manifest(CONFIG / "manifest.csv"))
    assert err.value.file == str(CONFIG / "sortplan.csv") and err.value.field == "chutes"
    assert "sort plan too large" in err.value.message


# ------------------------------------------------------------ manifest CSV parse errors
LATIN1_ROW = ROWS[1].replace(",DE,", ",D\xe9,")
MANIFEST_CASES: dict[str, tuple[bytes, str]] = {
    "extra_column": (f"{HEADER}\n{ROWS[0]}\n{ROWS[1]},extra\n".encode(), ":3: column 12: 12 values where the header has 11"),
    "unterminated_quote": (f'{HEADER}\n{ROWS[0]}\n"{ROWS[1]}\n'.encode(), ":3: parcel_id: unterminated quote"),
    "utf16": (f"{HEADER}\n{ROWS[0]}\n".encode("utf-16"), ":1: UTF-16 text"),
    "latin1": (f"{HEADER}\n{ROWS[0]}\n{LATIN1_ROW}\n".encode("latin-1"),
               ":3: country: not UTF-8 text"),
    "binary": (f"{HEADER}\n{ROWS[0]}\n".encode() + b"\x1b[31m\x00" + bytes(range(256)) * 4 + b"\n",
               ":3: parcel_id: binary data"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_manifest_parse_errors_name_line_and_column_and_echo_no_raw_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    data, expected = MANIFEST_CASES[case]
    m = tmp_path / "manifest.csv"
    m.write_bytes(data)
    code, text = _run(capsys, _plan_args(tmp_path, manifest=m))
    assert code == 2
    assert f"sortctl plan: {m}{expected}" in text, text
    assert not any(c in text for c in "\x00\x1b\ufffd")


def test_bom_before_a_comment_line_of_a_sort_plan(tmp_path: Path) -> None:
    p = tmp_path / "plan.csv"
    p.write_text("\ufeff# exported from a spreadsheet\n" + (CONFIG / "sortplan.csv").read_text(encoding="utf-8"),
                 encoding="utf-8")
    site = load_site(CONFIG / "site.yaml")
    example = load_plan(CONFIG / "sortplan.csv", site).rules
    assert load_plan(p, site).rules == tuple(dataclasses.replace(r, line=r.line + 1) for r in example)


# ------------------------------------------------------------ Modbus request to an unknown device id
async def test_simulator_answers_an_unknown_device_id_with_exception_0x0b_and_logs_once(
    tag_map: TagMap, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with DiverterPlcServer(tag_map.diverter, device_id=1) as server:
        client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=2, retries=0)
        await client.connect()
        try:
            answers = [await client.read_holding_registers(0, count=2, device_id=d) for d in (0, 5, 5, 1)]
            wrote = await client.write_register(0, 1, device_id=9)
        finally:
            client.close()
        assert [a.exception_code if a.isError() else None for a in answers] == [0x0B, 0x0B, 0x0B, None]
        assert wrote.isError() and wrote.exception_code == 0x0B
        assert server.unknown_device_requests == {0: 1, 5: 2, 9: 1}
    await asyncio.sleep(0)
    assert "KeyError" not in caplog.text and "Traceback" not in caplog.text
    assert sum("not this PLC's" in r.getMessage() for r in caplog.records) == 1


# ------------------------------------------------------------ one error form for every command
def test_every_command_says_sortctl_command_colon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text("name: x\n", encoding="utf-8")
    plan = tmp_path / "plan.csv"
    plan.write_text("destination_id,country,postal_prefix,chutes,priority_chute\n,DE,1,x,\n", encoding="utf-8")
    db = str(tmp_path / "e.sqlite")
    cases = {
        "run": ["run", "--site", str(bad), "--db", db],
        "sim": ["sim", "--site", str(bad)],
        "demo": ["demo", "--site", str(bad), "--no-hmi"],
        "plan": _plan_args(tmp_path, site=bad),
        "plan activate": ["plan", "activate", str(plan), "--db", db],
        "manifest": ["manifest", "add", str(tmp_path / "missing.csv"), "--db", db],
        "chute": ["chute", "out", "3", "--db", db],
        "status": ["status", "--db", db],
    }
    for command, argv in cases.items():
        code, text = _run(capsys, argv)
        assert code == 2, (command, text)
        assert text.startswith(f"sortctl {command}: "), (command, text)
        assert "error:" not in text
    with pytest.raises(SystemExit) as exit_:
        main(["plan", "--no-such-option"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "sortctl plan: unrecognized arguments: --no-such-option" in err and "error:" not in err

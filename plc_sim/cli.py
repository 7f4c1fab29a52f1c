"""`sortctl sim`: run the PLC simulator (OPC UA conveyor PLC, Modbus diverter PLC, camera).

The first line on stdout is one JSON object with the endpoints, so a parent process can find
the ports; the summary follows on exit (SIGINT/SIGTERM or --duration).

Every `sortctl sim` process is a power-up of both PLCs, so unless told otherwise (`--boot-seed`
or the scenario's `plc.boot_seed`) it draws a fresh seed for their boot ids: a simulator killed
and started again shows the host new boot ids, as real PLCs would. The summary says which seed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from plant import priority
from plant.errors import ConfigError
from plant.site import Site, load_site
from plant.tagmap import load_tag_map
from plc_sim.clock import RealClock, VirtualClock
from plc_sim.parcels import Manifest, read_manifest
from plc_sim.scenario import PlcSecurity, Scenario, load_scenario
from plc_sim.simulator import Ports, Simulator
from vision.parent_death import die_with_parent

ROOT = Path(__file__).resolve().parents[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", type=Path, default=ROOT / "config" / "site.yaml", help="site layout file")
    parser.add_argument(
        "--scenario", type=Path, default=ROOT / "config" / "scenarios" / "demo.yaml", help="scenario file"
    )
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S simulated seconds")
    parser.add_argument("--virtual", action="store_true", help="virtual time: as fast as the CPU allows")
    parser.add_argument("--ground-truth", type=Path, metavar="FILE", help="write ground truth (.json or .csv)")
    parser.add_argument("--json", action="store_true", help="summary as JSON instead of a table")
    parser.add_argument(
        "--port-base", type=int, metavar="N",
        help="conveyor on N, diverter on N+1, camera on N+2; 0 = any free ports (default: the site's)",
    )  # fmt: skip
    parser.add_argument("--tick", type=float, default=0.01, metavar="S", help="PLC scan period (default 0.01)")
    parser.add_argument("--auto-start", action="store_true", help="run the belt without a host's Start")
    parser.add_argument("--no-camera", action="store_true", help="do not render or serve camera frames")
    parser.add_argument(
        "--parent-pid", type=int, metavar="PID",
        help="end when process PID ends, however it ends (a harness's child: never an orphan holding ports)",
    )
    parser.add_argument(
        "--nice", type=int, metavar="N",
        help="nice value of the PLC scan and servers (a stand-in for PLC hardware, which has its own CPU: "
        "benches give it the controller's)",
    )
    parser.add_argument(
        "--boot-seed", type=int, metavar="N",
        help="seed of the PLCs' boot ids (default: the scenario's plc.boot_seed, else a new one per run)",
    )  # fmt: skip
    # the conveyor PLC's OPC UA security; each overrides the scenario's plc.opcua_security
    parser.add_argument("--opcua-mode", choices=("None", "Sign", "SignAndEncrypt"),
                        help="conveyor PLC message security (default: the scenario's, else None)")
    parser.add_argument("--opcua-policy", choices=("Basic256Sha256", "Aes256_Sha256_RsaPss"),
                        help="conveyor PLC security policy (default Basic256Sha256)")
    parser.add_argument("--pki-dir", type=Path, metavar="DIR",
                        help="conveyor PLC's own/, trusted/, rejected/ (sortctl certs create --dir DIR)")
    parser.add_argument("--plc-users", type=Path, metavar="FILE",
                        help="'name:password' lines: only these users get a conveyor PLC session")


def load_inputs(args: argparse.Namespace) -> tuple[Site, Scenario, Manifest | None]:
    site = load_site(args.site)
    scenario = load_scenario(args.scenario)
    if getattr(args, "auto_start", False):
        scenario = scenario.model_copy(update={"auto_start": True})
    scenario = with_security(scenario, args)
    manifest = None
    if scenario.manifest is not None:
        path = (Path(args.scenario).parent / scenario.manifest).resolve()
        manifest = read_manifest(path)
    return site, scenario, manifest


def run(args: argparse.Namespace) -> int:
    err = Console(stderr=True)
    try:
        site, scenario, manifest = load_inputs(args)
        tags = load_tag_map(Path(args.site).parent / site.plc.conveyor.tag_map)
    except ConfigError as exc:
        err.print(f"sortctl sim: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        return 2
    if args.duration is not None and args.duration <= 0:
        err.print("[red]sortctl sim: --duration must be positive[/]")
        return 2
    if args.boot_seed is not None and args.boot_seed < 0:
        err.print("[red]sortctl sim: --boot-seed must be >= 0[/]")
        return 2
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
    if args.nice is not None and not -20 <= args.nice <= 19:
        err.print("[red]sortctl sim: --nice must be -20..19[/]")
        return 2
    if args.nice is not None:  # before any thread starts: they inherit it
        priority.set_nice(args.nice, "simulator")
    scenario = with_boot_seed(scenario, args.boot_seed)
    problem = security_problem(scenario)
    if problem is not None:
        err.print(f"sortctl sim: {problem}", style="red", markup=False, highlight=False, soft_wrap=True)
        return 2
    sim = Simulator(
        site,
        tags,
        scenario,
        manifest=manifest,
        clock=VirtualClock() if args.virtual else RealClock(),
        tick_s=args.tick,
        ports=Ports() if args.port_base is None else Ports.base(args.port_base),
        camera=not args.no_camera,
    )
    try:
        stats = asyncio.run(_serve(sim, args.duration))
    except OSError as exc:
        err.print(f"sortctl sim: cannot listen: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        return 1
    stats["boot_seed"] = scenario.plc.boot_seed
    if args.ground_truth:
        sim.write_ground_truth(args.ground_truth)
    if args.json:
        print(json.dumps({"summary": stats}), flush=True)
    else:
        print_summary(stats, Console(stderr=False))
    return 0


def with_security(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    """The scenario with the conveyor PLC's OPC UA security as the command line overrides it."""
    update = {k: str(v) for k, v in (("mode", getattr(args, "opcua_mode", None)),
                                     ("policy", getattr(args, "opcua_policy", None)),
                                     ("pki_dir", getattr(args, "pki_dir", None)),
                                     ("users_file", getattr(args, "plc_users", None))) if v is not None}
    if not update:
        return scenario
    sec = PlcSecurity.model_validate({**scenario.plc.opcua_security.model_dump(), **update})
    return scenario.model_copy(update={"plc": scenario.plc.model_copy(update={"opcua_security": sec})})


def security_problem(scenario: Scenario) -> str | None:
    """Why the conveyor PLC cannot serve securely (no certificate, no users file), before any port opens."""
    sec = scenario.plc.opcua_security
    if sec.mode == "None":
        return None
    own = Path(sec.pki_dir) / "own"
    if not ((own / "cert.der").exists() and (own / "key.pem").exists()):
        return (f"no conveyor PLC certificate in {own} (create one: sortctl certs create "
                f"--uri urn:sortcentre:conveyor-plc:server --dir {sec.pki_dir})")
    if sec.users_file is not None and not Path(sec.users_file).is_file():
        return f"conveyor PLC users file {sec.users_file} not found"
    return None


def with_boot_seed(scenario: Scenario, boot_seed: int | None) -> Scenario:
    """The scenario with the boot-id seed this process uses: the one given, the scenario's, or new."""
    seed = boot_seed if boot_seed is not None else scenario.plc.boot_seed
    if seed is None:
        seed = secrets.randbits(63)  # a power-up: boot ids the host has not seen from an earlier run
    return scenario.model_copy(update={"plc": scenario.plc.model_copy(update={"boot_seed": seed})})


async def _serve(sim: Simulator, duration: float | None) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await sim.start()
    try:
        print(json.dumps({"endpoints": sim.endpoints}), flush=True)
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        if duration is not None:
            waiters.append(asyncio.ensure_future(sim.run_until(duration)))
        _done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for p in pending:
            p.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await p
    finally:
        await sim.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return sim.stats


def print_summary(stats: dict[str, Any], console: Console) -> None:
    t = Table(title=f"simulator: {stats['sim_time_s']:.1f} s simulated")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for key in (
        "inducted", "induct_backlog", "on_belt", "rejected", "recirculated", "lost", "gap_violations",
        "fires", "fires_empty", "fires_stuck", "chute_overflow", "wrong_parcel_diverted", "belt_state",
        "watchdog_trips", "lagged_scans",
    ):  # fmt: skip
        t.add_row(key.replace("_", " "), str(stats[key]))
    per = stats["sorted_per_chute"]
    t.add_row("sorted per chute", " ".join(f"{k}:{v}" for k, v in sorted(per.items())) or "-")
    t.add_row("arm results", " ".join(f"{k}:{v}" for k, v in stats["arm_results"].items()) or "-")
    t.add_row("ring overflows", " ".join(f"{k}:{v}" for k, v in stats["ring_overflows"].items()))
    if "camera" in stats:
        t.add_row("camera", " ".join(f"{k}:{v:.4g}" if isinstance(v, float) else f"{k}:{v}" for k, v in stats["camera"].items()))
    t.add_row("faults", str(len(stats["faults"])))
    if stats.get("boot_seed") is not None:
        t.add_row("boot seed", str(stats["boot_seed"]))
    console.print(t)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    add_arguments(p)
    sys.exit(run(p.parse_args()))

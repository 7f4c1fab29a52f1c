"""The HMI under load during a real-time demo run: does it keep up, and does it leave the control
cycle alone?

Two runs of the same session (simulator in its own process, controller in this one, 40,000
parcels/h): first with nothing watching, then with the HMI process up and ``VIEWERS`` screens on
its live stream plus one client loading every page in turn (benchmarks/hmi_load.py, a process
of its own). Figures:
- ``hmi.page_p99_ms``: a page request -> its last byte, over every page, during the loaded run;
- ``hmi.update_p99_ms``: a parcel event stored by the controller -> a viewer receives the live
  update that counts it (each of the viewers, every update);
- ``hmi.control_cycle_lag_p99_ms``: the control cycle's start lag p99 with the HMI loaded, and
  ``hmi.control_cycle_lag_p99_ms_idle`` the same without it, run in this process just before:
  their ratio is ``hmi.cycle_lag_ratio`` (both after the first 10 s of the run) (1.0 = the HMI costs the cycle nothing; a 2-core machine
  running simulator, controller, HMI and viewers shares its cores, so expect some).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.records import Record
from harness.hmiproc import HmiProcess
from harness.session import CONFIG, Session, SessionConfig, SessionResult

RATE = 40_000.0
VIEWERS = 20


def _p99(xs: list[float]) -> float:
    return float(np.percentile(np.asarray(xs), 99)) if xs else float("nan")


def _session(parcels: int, db: Path | None = None) -> Session:
    return Session(SessionConfig(parcels=parcels, rate_per_hour=RATE, scenario=CONFIG / "scenarios" / "rush.yaml",
                                 db=db, duration_s=parcels / RATE * 3600.0 + 8.0))


WARM_CYCLES = 1000  # the first 10 s of cycles (start-up: decode workers, connects) are not the HMI's doing


def _lag_p99_ms(r: SessionResult) -> float:
    return _p99(list(r.metrics.cycle_lag_s)[WARM_CYCLES:]) * 1000.0


def run(quick: bool = False) -> list[Record]:
    parcels = 400 if quick else 3000
    idle = _session(parcels)
    try:
        base = asyncio.run(idle.run())
    finally:
        idle.close()
    with tempfile.TemporaryDirectory(prefix="sortcentre-hmi-bench-") as tmp:
        work = Path(tmp)
        db = work / "events.sqlite"
        hmi = HmiProcess(db, work, user="bench", role="viewer")
        hmi.start()
        out = work / "seen.json"
        env = {**os.environ, "SORTCENTRE_HMI_PASSWORD": hmi.password}
        load = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.hmi_load", hmi.url, "--db", str(db), "--user", hmi.user,
             "--viewers", str(VIEWERS), "--out", str(out)], env=env,
        )
        loaded = _session(parcels, db)
        try:
            r = asyncio.run(loaded.run())
        finally:
            load.terminate()
            load.wait(30)
            hmi.stop()
            loaded.close()
        seen: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {
            "latency_ms": [], "page_ms": [], "updates": 0, "errors": ["no results"]}
    idle_lag, lag = _lag_p99_ms(base), _lag_p99_ms(r)
    errs = seen["errors"]
    note = f"{VIEWERS} viewers, {len(seen['page_ms'])} page loads, {seen['updates']} updates received"
    return [
        Record("hmi.page_p99_ms", "ms", _p99(seen["page_ms"]),
               f"p50 {float(np.median(seen['page_ms'])) if seen['page_ms'] else float('nan'):.1f} ms; {note}"),
        Record("hmi.update_p99_ms", "ms", _p99(seen["latency_ms"]),
               f"store write -> viewer; {len(seen['latency_ms'])} samples" + (f"; errors: {errs[:2]}" if errs else "")),
        Record("hmi.control_cycle_lag_p99_ms", "ms", lag, f"with the HMI loaded; {r.audit.inducted} parcels"),
        Record("hmi.control_cycle_lag_p99_ms_idle", "ms", idle_lag, "the same run, no HMI"),
        Record("hmi.cycle_lag_ratio", "x", lag / idle_lag if idle_lag else float("nan"), "loaded / idle"),
        Record("hmi.missorts", "parcels", float(len(r.audit.missorts)), "during the loaded run"),
    ]

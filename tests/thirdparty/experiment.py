"""Reproduce one of README.md's findings: the plant (with experiment switches) + ``sortctl run``.

Why a script and not more tests: each experiment puts the plant into a state the spec allows or
leaves open (a counter offset, a module that serves zeros first, ...) and needs a minute or so
of sorting; the findings are about what the controller then does, so the script prints the
judgement (ground truth vs event store) instead of asserting it. Examples:

    .venv/bin/python tests/thirdparty/experiment.py --plant-args="--diverter-encoder-offset 1500" \\
        --actions wait:45
    .venv/bin/python tests/thirdparty/experiment.py --plant-args="--encoder-resets" \\
        --actions wait:20,cold:conveyor,wait:30
    .venv/bin/python tests/thirdparty/experiment.py --plant-args="--serve-zeros-s 1.5" \\
        --actions wait:25,warm:conveyor,wait:30

Actions (comma separated): ``wait:S``, ``warm:conveyor|diverter``, ``cold:conveyor|diverter``,
``term:S`` / ``kill:S`` (controller SIGTERM / SIGKILL, restarted S seconds later).
Everything listens on 127.0.0.1; files go to --work (default: a new temporary directory).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FINAL = ("sorted", "rejected", "lost", "missorted")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plant-args", default="", help="extra plant.py arguments (experiment switches)")
    ap.add_argument("--actions", default="wait:30")
    ap.add_argument("--work", default="")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="thirdparty-exp-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "events.sqlite"
    for f in work.glob("events.sqlite*"):
        f.unlink()
    with (work / "plant.log").open("w") as plant_err:
        plant = subprocess.Popen(
            [sys.executable, str(HERE / "plant.py"), "--site", str(ROOT / "config" / "site.yaml"),
             "--workdir", str(work / "plant"), *shlex.split(a.plant_args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=plant_err, text=True, cwd=ROOT)
    assert plant.stdin is not None and plant.stdout is not None
    ready = json.loads(plant.stdout.readline())
    print("plant:", ready, flush=True)

    def request(op: str, **kw: Any) -> dict[str, Any]:
        assert plant.stdin is not None and plant.stdout is not None
        plant.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        plant.stdin.flush()
        return json.loads(plant.stdout.readline())  # type: ignore[no-any-return]

    def controller() -> subprocess.Popen[bytes]:
        with (work / "controller.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "sortctl", "run", "--site", str(ROOT / "config" / "site.yaml"),
                 "--db", str(db), "--conveyor-port", str(ready["conveyor_port"]),
                 "--diverter-port", str(ready["diverter_port"]), "--camera-port", str(ready["camera_port"])],
                stdout=log, stderr=log, cwd=ROOT)

    ctl = controller()
    try:
        for action in a.actions.split(","):
            kind, _, arg = action.partition(":")
            if kind == "wait":
                time.sleep(float(arg))
            elif kind in ("warm", "cold"):
                print(action, request("restart", plc=arg, kind=kind, off_s=2.0), flush=True)
            elif kind in ("term", "kill"):
                ctl.send_signal(signal.SIGTERM if kind == "term" else signal.SIGKILL)
                ctl.wait(20)
                time.sleep(float(arg or 4))
                ctl = controller()
            else:
                raise SystemExit(f"unknown action {action}")
        before = rows(db)
        truth = request("truth")
        time.sleep(1.0)
        after = rows(db)
    finally:
        ctl.send_signal(signal.SIGTERM)
        ctl.wait(20)
        assert plant.stdin is not None
        plant.stdin.write('{"op": "stop"}\n')
        plant.stdin.flush()
        plant.wait(30)
    (work / "truth.json").write_text(json.dumps(truth))
    report(truth, before, after, db)
    print(f"files: {work}")
    return 0


def rows(db: Path) -> dict[tuple[int, int], tuple[str, int]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return {(b, t): (s, ch) for b, t, s, ch in c.execute("SELECT boot_id, tracking_id, state, chute FROM parcels")}


def report(truth: dict[str, Any], before: dict[tuple[int, int], tuple[str, int]],
           after: dict[tuple[int, int], tuple[str, int]], db: Path) -> None:
    landed = [p for p in truth["parcels"] if p["chute"] is not None]
    wrong = [p for p in landed if not p["landed_key"] or after.get(tuple(p["landed_key"]), ("", -1))[1] != p["chute"]]
    where = {tuple(k): p for p in truth["parcels"] for k in p["keys"]}
    phantom = [k for k, (s, ch) in before.items() if s == "sorted" and (k not in where or where[k]["chute"] != ch)]
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        marks = ",".join("?" * len(FINAL))
        doubles = c.execute(f"SELECT boot_id, tracking_id, group_concat(kind) FROM parcel_events WHERE kind IN ({marks}) "
                            "GROUP BY 1, 2 HAVING count(*) > 1", FINAL).fetchall()
        kinds = c.execute("SELECT kind, count(*) FROM parcel_events GROUP BY kind").fetchall()
        alarms = c.execute("SELECT name, count(*) FROM unit_events WHERE kind NOT IN ('state', 'service') "
                           "GROUP BY name").fetchall()
    print(f"landed {len(landed)}, in a chute the controller did not choose: {len(wrong)}, "
          f"stored sorted but not there: {len(phantom)}, keys with two final outcomes: {len(doubles)}")
    for p in wrong[:10]:
        print(f"  {p['label']} in chute {p['chute']} (key {p['landed_key']}, fire for {p['fired_for']}); "
              f"controller row {after.get(tuple(p['landed_key'] or ()))}")
    print("doubles:", doubles[:10])
    print("parcel events:", kinds)
    print("unit events:", alarms)
    print("strokes:", truth["strokes"], "empty:", truth["empty_strokes"])
    print("diverter:", truth["status"]["diverter"])


if __name__ == "__main__":
    sys.exit(main())

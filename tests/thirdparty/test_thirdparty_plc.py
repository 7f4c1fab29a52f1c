"""The controller against PLCs a third party built from the written interface alone.

``plant.py`` (world + conveyor PLC on node-opcua + diverter PLC on pymodbus + camera, all from
docs/plc-interface.md, config/site.yaml and config/tagmap.yaml) runs as one child process;
``sortctl run`` runs as another against its ports with a temporary event store. The tests run in
file order on one rig (module fixture): start, then six disruptions, each judged from the event
store and the plant's ground truth:

1. controller SIGTERM, restarted 4 s later;    2. controller SIGKILL, restarted 4 s later;
3. conveyor PLC warm restart (OPC UA module away 2 s, program running, memory kept);
4. conveyor PLC cold restart (power off 2 s: new boot id, memory zero, belt Stopped);
5. diverter PLC warm restart;                   6. diverter PLC cold restart.

After each: the unit's last ``state`` row is Execute within 10 s of the cause clearing with no
operator command (docs/operations.md), parcels are sorted again, no physical parcel sits in a
chute other than the one the controller chose for its (boot id, tracking id), and no key has two
final outcomes. Nothing from the product is imported: only ``python -m sortctl run`` and the
SQLite store (tables per docs/architecture.md) are used. Needs Node.js >= 20 (node-opcua).
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
INTEROP = ROOT / "tests" / "interop"
SITE = ROOT / "config" / "site.yaml"
NODE = shutil.which("node")
NPM = shutil.which("npm")
FINAL = ("sorted", "rejected", "lost", "missorted")
RECOVERY_S = 10.0  # docs/operations.md / the brief: back in Execute this soon after the cause clears
EXECUTE = 6



def _node_major() -> int | None:
    if NODE is None:
        return None
    try:
        out = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=20, check=True).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


_major = _node_major()
if _major is None:
    pytest.skip("Node.js is not installed: the third-party conveyor PLC serves OPC UA through "
                "node-opcua (tests/interop/conveyor_plc_server.js), which needs node >= 20",
                allow_module_level=True)
if _major < 20:
    pytest.skip(f"Node.js {_major} is too old: node-opcua (the third-party conveyor PLC's OPC UA "
                "server) needs node >= 20", allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def _npm_ci() -> None:
    """``npm ci`` in tests/interop when node_modules is missing or older than the lock file
    (what tests/interop/test_opcua_node.py does)."""
    modules = INTEROP / "node_modules"
    stamp = modules / ".package-lock.json"
    lock = INTEROP / "package-lock.json"
    if (modules / "node-opcua" / "package.json").exists() and stamp.exists() \
            and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    if NPM is None:
        pytest.skip("npm is not installed: cannot install node-opcua for the third-party conveyor PLC")
    proc = subprocess.run([NPM, "ci", "--prefix", str(INTEROP), "--no-audit", "--no-fund", "--loglevel=error"],
                          cwd=INTEROP, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        pytest.fail(f"npm ci in tests/interop failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


class PlantProc:
    """plant.py as a child: JSON lines on stdin/stdout (a reader thread queues the replies)."""

    def __init__(self, work: Path) -> None:
        self.log = work / "plant.log"
        self._err = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "plant.py"), "--site", str(SITE), "--workdir", str(work / "plant")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True, cwd=ROOT,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True)
        self._pump_thread.start()
        self._lock = threading.Lock()
        self.ready = self._next(60)

    def _pump(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self._lines.put(line)

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"plant did not answer in {timeout} s:\n{self.tail()}") from None
        return json.loads(line)  # type: ignore[no-any-return]

    def call(self, op: str, timeout: float = 30, **args: Any) -> dict[str, Any]:
        with self._lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
            reply = self._next(timeout)
        assert reply.get("ok"), (reply, self.tail())
        return reply

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text()[-n:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"op": "stop"}\n')
                self.proc.stdin.flush()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._pump_thread.join(5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        self._err.close()


@dataclass
class Phase:
    """One disruption and what the store and the ground truth said about it."""

    name: str
    t_cause: float
    t_clear: float
    recovered_at: float | None = None
    state_trail: list[tuple[float, str]] = field(default_factory=list)
    sorted_after: int = 0
    notes: list[str] = field(default_factory=list)


class Rig:
    """The plant and the controller (restartable), with the event store to judge them."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.db = work / "events.sqlite"
        self.ctl_log = work / "controller.log"
        self.plant = PlantProc(work)
        self.ports = self.plant.ready
        self.ctl: subprocess.Popen[bytes] | None = None
        self.phases: list[Phase] = []
        self.started = time.time()

    # -- controller ----------------------------------------------------------------------------
    def start_controller(self) -> float:
        with self.ctl_log.open("ab") as log:
            log.write(f"\n==== sortctl run started {time.time():.3f} ====\n".encode())
            log.flush()
            self.ctl = subprocess.Popen(
                [sys.executable, "-m", "sortctl", "run", "--site", str(SITE), "--db", str(self.db),
                 "--conveyor-port", str(self.ports["conveyor_port"]),
                 "--diverter-port", str(self.ports["diverter_port"]),
                 "--camera-port", str(self.ports["camera_port"])],
                stdout=log, stderr=log, cwd=ROOT,
            )
        return time.time()

    def stop_controller(self, sig: int = signal.SIGTERM) -> int | None:
        if self.ctl is None or self.ctl.poll() is not None:
            return None if self.ctl is None else self.ctl.returncode
        self.ctl.send_signal(sig)
        try:
            return self.ctl.wait(20)
        except subprocess.TimeoutExpired:
            self.ctl.kill()
            return self.ctl.wait(10)

    def controller_log_tail(self, n: int = 4000) -> str:
        return self.ctl_log.read_text(errors="replace")[-n:] if self.ctl_log.exists() else ""

    # -- event store (read-only) -----------------------------------------------------------------
    def q(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if not self.db.exists():
            return []
        for _ in range(20):
            try:
                with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)) as c:
                    return c.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:  # schema not there yet / busy
                last = exc
                time.sleep(0.1)
        raise last

    def last_state(self) -> tuple[float, str, int] | None:
        rows = self.q("SELECT t, name, code FROM unit_events WHERE kind = 'state' ORDER BY id DESC LIMIT 1")
        return (float(rows[0][0]), str(rows[0][1]), int(rows[0][2])) if rows else None

    def sorted_since(self, t: float) -> int:
        return int(self.q("SELECT count(*) FROM parcel_events WHERE kind = 'sorted' AND t >= ?", t)[0][0])

    # -- judging -------------------------------------------------------------------------------------
    def wait_execute(self, phase: Phase, limit_s: float = RECOVERY_S) -> None:
        """Poll until the last state row is a fresh Execute (written after the cause began)."""
        deadline = phase.t_clear + limit_s + 2.0  # 2 s of polling slack; the bound is checked on t
        while time.time() < deadline:
            st = self.last_state()
            if st and st[2] == EXECUTE and st[0] >= phase.t_cause:
                phase.recovered_at = st[0]
                break
            time.sleep(0.1)
        phase.state_trail = [(round(float(t) - phase.t_clear, 2), str(n)) for t, n in self.q(
            "SELECT t, name FROM unit_events WHERE kind = 'state' AND t >= ? ORDER BY id", phase.t_cause - 1)]

    def wait_sorting(self, phase: Phase, want: int = 3, limit_s: float = 30.0) -> None:
        since = phase.recovered_at or phase.t_clear
        deadline = time.time() + limit_s
        while time.time() < deadline:
            phase.sorted_after = self.sorted_since(since)
            if phase.sorted_after >= want:
                return
            time.sleep(0.25)

    def truth(self) -> dict[str, Any]:
        return self.plant.call("truth")

    def misplaced(self) -> tuple[list[str], list[str]]:
        """Physical chute vs the controller's choice for the key the parcel had when it landed;
        and 'sorted' rows whose physical parcel is not in that chute."""
        def rows_now() -> dict[tuple[int, int], tuple[str, int, str]]:
            return {(int(b), int(t)): (s, int(c), r) for b, t, s, c, r in self.q(
                "SELECT boot_id, tracking_id, state, chute, reason FROM parcels")}

        before = rows_now()  # a parcel stored sorted here must already be in its chute
        truth = self.truth()
        time.sleep(1.0)  # let the controller store what it saw of the last landings
        rows = rows_now()
        wrong: list[str] = []
        by_key: dict[tuple[int, int], dict[str, Any]] = {}
        for p in truth["parcels"]:
            for k in p["keys"]:
                by_key[(int(k[0]), int(k[1]))] = p
            if p["chute"] is None:
                continue
            key = tuple(p["landed_key"]) if p["landed_key"] else None
            row = rows.get(key) if key else None  # type: ignore[arg-type]
            if row is None or row[1] != p["chute"]:
                wrong.append(f"parcel {p['label']} (pid {p['pid']}) landed in chute {p['chute']} under "
                             f"conveyor key {key} by the fire for {p['fired_for']}; controller row: {row}")
        phantom = []
        for key, (state, chute, _reason) in before.items():
            if state == "sorted":
                p = by_key.get(key)
                if p is None or p["chute"] != chute:
                    phantom.append(f"{key} stored sorted to {chute}; physically: "
                                   f"{None if p is None else (p['where'], p['chute'])}")
        return wrong, phantom

    def double_finals(self) -> list[tuple[Any, ...]]:
        marks = ",".join("?" * len(FINAL))
        return self.q(f"SELECT boot_id, tracking_id, group_concat(kind), count(*) FROM parcel_events "
                      f"WHERE kind IN ({marks}) GROUP BY boot_id, tracking_id HAVING count(*) > 1", *FINAL)

    def operator_commands(self) -> list[tuple[Any, ...]]:
        return self.q("SELECT id, t, command, result FROM commands")

    def close(self) -> None:
        self.stop_controller(signal.SIGTERM)
        with contextlib.suppress(Exception):
            summary = {"phases": [vars(p) for p in self.phases], "status": self.plant.call("status"),
                       "elapsed_s": time.time() - self.started}
            (self.work / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
            (self.work / "truth.json").write_text(json.dumps(self.truth()))
        self.plant.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    _npm_ci()
    work = tmp_path_factory.mktemp("thirdparty")
    r = Rig(work)
    try:
        r.start_controller()
        yield r
    finally:
        r.close()
        print(f"\nthird-party rig files: {work}")


def judge(rig: Rig, phase: Phase) -> None:
    """The brief's four assertions, after the phase's cause has cleared."""
    rig.phases.append(phase)
    rig.wait_execute(phase)
    rig.wait_sorting(phase)
    wrong, phantom = rig.misplaced()
    doubles = rig.double_finals()
    cmds = rig.operator_commands()
    status = rig.plant.call("status")
    context = (f"\nphase {phase.name}: state rows (s after the cause cleared): {phase.state_trail}\n"
               f"plant: {json.dumps(status)[:1500]}\ncontroller log tail:\n{rig.controller_log_tail(2500)}")
    assert not cmds, f"operator commands were sent: {cmds}"
    assert phase.recovered_at is not None, f"unit not back in Execute within {RECOVERY_S} s{context}"
    took = phase.recovered_at - phase.t_clear
    assert took <= RECOVERY_S, f"back in Execute {took:.1f} s after the cause cleared{context}"
    assert phase.sorted_after >= 3, f"only {phase.sorted_after} parcels sorted after recovery{context}"
    assert not wrong, "parcels in a chute the controller did not choose for them:\n" + "\n".join(wrong) + context
    assert not doubles, f"keys with two final outcomes: {doubles}{context}"
    assert not phantom, "stored 'sorted' but not physically there:\n" + "\n".join(phantom) + context


def test_starts_and_sorts(rig: Rig) -> None:
    """Power-up: both PLCs answer, the unit drives the belt Stopped -> Execute and sorts."""
    phase = Phase("start", t_cause=rig.started, t_clear=rig.started)
    rig.phases.append(phase)
    rig.wait_execute(phase, limit_s=30.0)
    assert phase.recovered_at is not None, f"never reached Execute:\n{rig.controller_log_tail()}"
    rig.wait_sorting(phase, want=5, limit_s=40.0)
    assert phase.sorted_after >= 5, f"only {phase.sorted_after} sorted:\n{rig.controller_log_tail()}"
    wrong, phantom = rig.misplaced()
    assert not wrong and not phantom, (wrong, phantom)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_controller_restart(rig: Rig, sig: int) -> None:
    """The controller dies (clean or not) and comes back 4 s later; the PLCs held the belt."""
    t_cause = time.time()
    rc = rig.stop_controller(sig)
    time.sleep(4.0)
    t_clear = rig.start_controller()
    phase = Phase(f"controller-{signal.Signals(sig).name}", t_cause=t_cause, t_clear=t_clear)
    phase.notes.append(f"exit code {rc}")
    judge(rig, phase)


@pytest.mark.parametrize(("plc", "kind"), [("conveyor", "warm"), ("conveyor", "cold"),
                                           ("diverter", "warm"), ("diverter", "cold")])
def test_plc_restart(rig: Rig, plc: str, kind: str) -> None:
    """A PLC restarts (warm: its server away 2 s; cold: power cycle); the controller recovers."""
    assert rig.ctl is not None and rig.ctl.poll() is None, "controller not running"
    reply = rig.plant.call("restart", timeout=60, plc=plc, kind=kind, off_s=2.0)
    phase = Phase(f"{plc}-{kind}", t_cause=float(reply["t_off"]), t_clear=float(reply["t_back"]))
    judge(rig, phase)


def test_whole_run_ground_truth(rig: Rig) -> None:
    """After everything: every landed parcel in its chosen chute, one final outcome per key."""
    wrong, phantom = rig.misplaced()
    assert not wrong, "\n".join(wrong)
    assert not rig.double_finals()
    assert not phantom, "\n".join(phantom)
    took = {p.name: None if p.recovered_at is None else round(p.recovered_at - p.t_clear, 2) for p in rig.phases}
    print(f"\nrecovery (s after the cause cleared): {took}")

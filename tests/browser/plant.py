"""The system the browser tests drive, as real processes on 127.0.0.1: `sortctl demo --no-hmi`
(the simulator and the controller sorting parcels) and `sortctl hmi` (via `HmiProcess`), with
one HMI user of each role; the event store is read back read-only to cross-check the pages."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from control.store import EventStore
from harness.hmiproc import HmiProcess
from harness.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
DISABLED_CHUTE = 2  # the scenario disables it for good: its destinations have no usable chute (an alarm)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    role: str
    password: str


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 30.0, every_s: float = 0.25) -> T:
    """``probe()`` until it returns something truthy; AssertionError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


class Plant:
    """Start with `start()`, end with `stop()` (every child process, whatever happened)."""

    def __init__(self, workdir: Path, *, parcels: int = 4000, rate_per_hour: float = 14_000) -> None:
        self.workdir = workdir
        self.db = workdir / "events.sqlite"
        self.parcels = parcels
        self.rate = rate_per_hour
        self.viewer = Account("vera", "viewer", secrets.token_urlsafe(12))
        self.operator = Account("otto", "operator", secrets.token_urlsafe(12))
        self.hmi = HmiProcess(self.db, workdir, port=free_port(0), user="enid", role="engineer")
        self.engineer = Account(self.hmi.user, self.hmi.role, self.hmi.password)
        self.demo: subprocess.Popen[bytes] | None = None
        self.demo_log = workdir / "demo.log"

    @property
    def url(self) -> str:
        return self.hmi.url.rstrip("/")

    # ------------------------------------------------------------------ processes
    def start(self) -> None:
        scenario = self.workdir / "scenario.yaml"
        scenario.write_text(yaml.safe_dump(_scenario()), encoding="utf-8")
        for acct in (self.viewer, self.operator):
            self._add_user(acct)
        with open(self.demo_log, "wb") as out:
            # its own process group: the simulator and decode workers it starts end with it
            self.demo = subprocess.Popen(
                [sys.executable, "-m", "sortctl", "demo", "--no-hmi", "--db", str(self.db),
                 "--parcels", str(self.parcels), "--rate", str(self.rate), "--scenario", str(scenario)],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.hmi.start(wait_s=30.0)  # makes the engineer, then waits for the HMI to answer
        wait_for("the demo to sort its first parcels in EXECUTE", self._sorting, timeout_s=90.0, every_s=0.5)

    def _add_user(self, acct: Account) -> None:
        made = subprocess.run(
            [sys.executable, "-m", "sortctl", "users", "add", acct.name, "--role", acct.role, "--password-stdin",
             "--users", str(self.hmi.users)],
            input=(acct.password + "\n").encode(), capture_output=True, check=False, cwd=ROOT,
        )
        assert made.returncode == 0, f"sortctl users add {acct.name}: {made.stdout!r} {made.stderr!r}"

    def _sorting(self) -> bool:
        if self.demo is not None and self.demo.poll() is not None:
            raise RuntimeError(f"sortctl demo exited ({self.demo.returncode}): {self.log_tail()}")
        if not self.db.exists():
            return False
        try:
            with self.store() as s:
                st = s.status()
        except sqlite3.Error:
            return False  # the schema is still being made
        return st.unit_state == "EXECUTE" and st.by_state.get("sorted", 0) > 0

    def log_tail(self) -> str:
        return self.demo_log.read_text(errors="replace")[-2000:] if self.demo_log.exists() else ""

    def stop(self) -> None:
        try:
            self.hmi.stop()
        finally:
            self._stop_demo()

    def _stop_demo(self) -> None:
        demo, self.demo = self.demo, None
        if demo is None:
            return
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)  # the demo stops its simulator and controller itself
            try:
                demo.wait(20.0)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
        # whatever of its group is left (a simulator or worker it could not stop)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(demo.pid, signal.SIGKILL)

    # ------------------------------------------------------------------ the store, read-only
    @contextlib.contextmanager
    def store(self) -> Iterator[EventStore]:
        s = EventStore(self.db, readonly=True)
        try:
            yield s
        finally:
            s.close()

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A read-only query for what `EventStore` does not return (``parcel_events.plan_version``)."""
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def commands_by(self, user: str) -> list[tuple[int, float, str, str, bool, str]]:
        with self.store() as s:
            return [c for c in s.commands(10_000) if c[3] == user]

    def command_done(self, user: str, name: str, after_id: int = 0) -> tuple[int, float, str, str, bool, str] | None:
        """The latest command ``name`` sent by ``user`` (newer than ``after_id``) once the service answered it."""
        for c in self.commands_by(user):
            if c[2] == name and c[0] > after_id:
                return c if c[4] else None
        return None

    def last_command_id(self) -> int:
        with self.store() as s:
            got = s.commands(1)
        return got[0][0] if got else 0


def _scenario() -> dict[str, Any]:
    """The README demo's parcel stream, plus one chute disabled for good from the belt's first run
    (the alarm the tests acknowledge: its destinations have no usable chute)."""
    data: dict[str, Any] = yaml.safe_load((CONFIG / "scenarios" / "demo.yaml").read_text(encoding="utf-8"))
    data["manifest"] = str(CONFIG / "manifest.csv")
    data["faults"] = [{"kind": "chute_disabled", "at_s": 2, "duration_s": 0, "chute": DISABLED_CHUTE}]
    data["faults_from_first_run"] = True
    return data

"""The HMI as a child process of a demo or a bench: a user made for the run (a random password,
printed, never a default one), `sortctl hmi` on a free loopback port, stopped with the run."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness.procs import free_port, stop_process

__all__ = ["HmiProcess"]


class HmiProcess:
    def __init__(self, db: Path, workdir: Path, *, port: int | None = None, user: str = "demo",
                 role: str = "engineer") -> None:
        self.db = db
        self.users = workdir / "hmi-users.json"
        self.port = port if port is not None else free_port(8080)
        self.user = user
        self.role = role
        self.password = secrets.token_urlsafe(9)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "hmi.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, wait_s: float = 15.0) -> None:
        sortctl = [sys.executable, "-m", "sortctl.cli"]
        made = subprocess.run(
            [*sortctl, "users", "add", self.user, "--role", self.role, "--password-stdin", "--users", str(self.users)],
            input=(self.password + "\n").encode(), capture_output=True, check=False,
        )
        if made.returncode != 0:
            raise RuntimeError(f"sortctl users add: {made.stdout.decode()}{made.stderr.decode()}".strip())
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [*sortctl, "hmi", "--db", str(self.db), "--listen", f"127.0.0.1:{self.port}", "--users", str(self.users)],
                stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sortctl hmi exited: {self.log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(urllib.error.URLError, OSError):
                urllib.request.urlopen(self.url + "login", timeout=1.0).close()
                return
            time.sleep(0.1)
        raise RuntimeError(f"sortctl hmi did not answer on {self.url} within {wait_s:.0f} s")

    def stop(self) -> None:
        stop_process(self.proc, 5.0)
        self.proc = None

"""Decode worker processes die with the service that started them: killed (SIGKILL) or exiting
cleanly, nothing of the process pool is left running (real processes, watched through /proc)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the parent-death signal and /proc are Linux's"
)

ROOT = Path(__file__).resolve().parents[2]

# The service, cut down to what matters here: a socket standing for a PLC connection, a process
# decoder with its workers running, then wait for the test to close stdin (or kill it).
SERVICE = """
import asyncio, multiprocessing, os, socket, sys
import numpy as np
from vision import ParcelDecoder

async def main(close: bool) -> None:
    plc = socket.create_server(("127.0.0.1", 0))
    dec = ParcelDecoder(workers=1, executor="process")
    await dec.decode_parcel([np.zeros((32, 32), np.uint8)], deadline_s=60.0)
    workers = [p.pid for p in multiprocessing.active_children()]
    if close:
        await dec.close()
    print(os.getpid(), plc.fileno(), *workers, flush=True)
    sys.stdin.read()
    plc.close()

asyncio.run(main(sys.argv[1] == "close"))
"""

Proc = tuple[int, int]  # pid, start time: a pid alone may be reused by another process


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and ')'
    return int(fields[1]), fields[0], int(fields[19])


def _descendants(root: int) -> set[Proc]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            children.setdefault(st[0], []).append(int(entry.name))
    found: set[Proc] = set()
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if (st := _stat(pid)) is not None:
            found.add((pid, st[2]))
            todo += children.get(pid, [])
    return found


def _running(procs: set[Proc]) -> set[Proc]:
    """Those still running (a zombie is dead: it only waits for its new parent to reap it)."""
    return {
        (pid, start) for pid, start in procs
        if (st := _stat(pid)) is not None and st[2] == start and st[1] != "Z"
    }


def _wait_gone(procs: set[Proc], timeout: float) -> set[Proc]:
    deadline = time.monotonic() + timeout
    while (left := _running(procs)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return "(gone)"


def _fd_targets(pid: int) -> set[str]:
    targets: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed while we looked
            targets.add(os.readlink(fd))
    return targets


def _start_service(mode: str, log: Path) -> subprocess.Popen[str]:
    with log.open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-c", SERVICE, mode], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
        )


def _ready(proc: subprocess.Popen[str], log: Path) -> tuple[int, str, list[int]]:
    """The service's pid, what its PLC socket is (as /proc shows it) and its workers' pids."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60.0)
    line = proc.stdout.readline() if ready else ""
    assert line, f"the service did not start; its stderr:\n{log.read_text()}"
    pid, plc_fd, *workers = map(int, line.split())
    return pid, os.readlink(f"/proc/{pid}/fd/{plc_fd}"), workers


def _kill_leftovers(procs: set[Proc]) -> None:
    """A failing test must not leave ~100 MB workers behind it: kill ours that still run."""
    for pid, _ in _running(procs):
        os.kill(pid, signal.SIGKILL)


def _describe(procs: set[Proc]) -> list[str]:
    return [f"{pid}: {_cmdline(pid)[:120]}" for pid, _ in sorted(procs)]


def test_a_killed_service_leaves_no_decode_process(tmp_path: Path) -> None:
    log = tmp_path / "service.err"
    family: set[Proc] = set()
    with _start_service("keep", log) as proc:
        try:
            pid, plc_socket, workers = _ready(proc, log)
            family = _descendants(pid)
            assert workers and set(workers) <= {p for p, _ in family}
            holders = [p for p, _ in family if plc_socket in _fd_targets(p)]
            assert not holders, f"processes holding the service's socket: {_describe(family)}"
            os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=10.0)
            left = _wait_gone(family, timeout=10.0)
            assert not left, f"alive 10 s after the service was killed: {_describe(left)}"
        finally:
            family |= _descendants(proc.pid)
            proc.kill()
            _kill_leftovers(family)


@pytest.mark.parametrize("mode", ["close", "keep"])
def test_a_clean_exit_leaves_nothing(tmp_path: Path, mode: str) -> None:
    # "close": the decoder is closed, then the service exits; "keep": it exits with the
    # decoder still open (multiprocessing's exit hook stops the workers).
    log = tmp_path / "service.err"
    family: set[Proc] = set()
    with _start_service(mode, log) as proc:
        try:
            pid, _, workers = _ready(proc, log)
            family = _descendants(pid)
            pids = {p for p, _ in family}
            assert workers
            if mode == "close":
                # The workers are gone while the service runs on; only multiprocessing's
                # resource tracker (one per process, kept until it exits) may remain.
                assert not pids & set(workers)
                assert all("resource_tracker" in _cmdline(p) for p in pids), _describe(family)
            else:
                assert set(workers) <= pids
            assert proc.stdin is not None
            proc.stdin.close()
            assert proc.wait(timeout=30.0) == 0, log.read_text()
            left = _wait_gone(family, timeout=10.0)
            assert not left, f"alive 10 s after the service exited: {_describe(left)}"
        finally:
            family |= _descendants(proc.pid)
            proc.kill()
            _kill_leftovers(family)


def test_the_signal_is_set_and_a_child_orphaned_before_asking_dies_at_once() -> None:
    # Run in a child: the signal is asked for from inside the process it protects. A wrong
    # expected parent is what a child sees when its parent died before it asked.
    code = """
import ctypes, os, sys
from vision.parent_death import die_with_parent
expected = os.getppid() if sys.argv[1] == "parent" else os.getpid()
die_with_parent(expected)
got = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(got))  # PR_GET_PDEATHSIG
print(got.value)
"""

    def run(expected: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-c", code, expected]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)

    ok = run("parent")
    assert ok.returncode == 0 and ok.stdout.split() == [str(int(signal.SIGKILL))], ok.stderr
    orphan = run("other")
    assert orphan.returncode == -signal.SIGKILL and not orphan.stdout, orphan.stderr

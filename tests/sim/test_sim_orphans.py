"""A simulator started by a harness ends when the harness ends, however it ends: a `sortctl sim`
left running holds its ports and a core (three were found running for half an hour after their
benches had been killed)."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.proctools import alive, gone_within

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")

ROOT = Path(__file__).resolve().parents[2]

HARNESS = """
import os, subprocess, sys, time
sim = subprocess.Popen([sys.executable, "-m", "sortctl", "sim", "--no-camera", "--port-base", "0", "--json",
                        "--parent-pid", str(os.getpid())], stdout=subprocess.PIPE, text=True)
sim.stdout.readline()  # its endpoints: it is serving
print(sim.pid, flush=True)
time.sleep(600)
"""


def test_a_killed_harness_leaves_no_simulator() -> None:
    with subprocess.Popen([sys.executable, "-c", HARNESS], cwd=ROOT, text=True, stdout=subprocess.PIPE) as harness:
        assert harness.stdout is not None
        ready, _, _ = select.select([harness.stdout], [], [], 60.0)
        line = harness.stdout.readline() if ready else ""
        assert line, "the simulator did not start"
        sim = int(line)
        try:
            assert alive(sim)
            harness.send_signal(signal.SIGKILL)
            harness.wait(10)
            assert gone_within(sim, 10.0), "the simulator outlived the harness that started it"
        finally:
            if alive(sim):
                subprocess.run(["kill", "-9", str(sim)], check=False)

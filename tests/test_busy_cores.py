"""The busy-machine load of the e2e bench: it really keeps cores busy, and it always goes away."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.load import busy_cores


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_burners_use_cpu_and_are_stopped_on_exit() -> None:
    with busy_cores(2) as procs:
        assert len(procs) == 2
        before = [_cpu_s(p.pid) for p in procs]
        time.sleep(1.0)
        assert all(p.poll() is None for p in procs)
        used = [_cpu_s(p.pid) - b for p, b in zip(procs, before, strict=True)]
        assert all(u > 0.2 for u in used), used  # computing, not sleeping (a free core gives 1.0)
    assert all(p.returncode is not None for p in procs)


def test_burners_are_stopped_when_the_measurement_fails() -> None:
    with pytest.raises(RuntimeError), busy_cores(1) as procs:
        raise RuntimeError("the run failed")
    assert procs[0].returncode is not None

"""The node-opcua interop modules' shared set-up: node_modules installed once per session."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
NPM = shutil.which("npm")


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """``npm ci`` once when node_modules is missing or stale; its output only if it fails."""
    modules = HERE / "node_modules"
    stamp = modules / ".package-lock.json"  # written by npm ci / npm install
    lock = HERE / "package-lock.json"
    fresh = (modules / "node-opcua" / "package.json").exists() and stamp.exists()
    if fresh and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return modules
    if NPM is None:
        pytest.skip("npm is not installed: cannot install node-opcua for the interop tests")
    try:
        proc = subprocess.run(
            [NPM, "ci", "--prefix", str(HERE), "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE, capture_output=True, text=True, timeout=100,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"npm ci --prefix tests/interop took over 100 s:\n{exc.stdout!r}\n{exc.stderr!r}")
    if proc.returncode != 0:
        pytest.fail(f"npm ci --prefix tests/interop failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return modules



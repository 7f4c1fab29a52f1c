"""Suite-wide fixtures and guards: a test that leaves a thread running fails (a leaked socket
loop or worker would otherwise hang CI or bleed into the next test)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from plant.tagmap import TagMap, load_tag_map

ROOT = Path(__file__).resolve().parent.parent
WATCHED = frozenset({"event-store"})  # daemon threads of ours that a test must still close


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-screenshots", action="store_true", default=False,
                     help="the browser tests also save each HMI page as docs/img/hmi-<page>.png")


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and (not t.daemon or t.name in WATCHED)]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not leaked, f"test leaked threads: {[t.name for t in leaked]}"


@pytest.fixture(scope="session")
def tag_map() -> TagMap:
    """The example tag map (a frozen model: one copy serves every test)."""
    return load_tag_map(ROOT / "config" / "tagmap.yaml")

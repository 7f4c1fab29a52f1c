"""The PLC simulator: conveyor world, PLC programs, protocol servers, camera, faults.

Heavy modules (asyncua, pymodbus, the label renderer) load only when asked for, so that the
world alone (``plc_sim.world``) stays cheap to import for benchmarks and tests.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "World": "plc_sim.world",
    "StepEvents": "plc_sim.world",
    "GroundTruth": "plc_sim.truth",
    "OracleArm": "plc_sim.oracle",
    "Scenario": "plc_sim.scenario",
    "load_scenario": "plc_sim.scenario",
    "ParcelSource": "plc_sim.parcels",
    "read_manifest": "plc_sim.parcels",
    "Simulator": "plc_sim.simulator",
    "Ports": "plc_sim.simulator",
    "RealClock": "plc_sim.clock",
    "VirtualClock": "plc_sim.clock",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'plc_sim' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

"""Boot ids: the value a PLC shows to say "my counters and rings started again from here".

A real PLC draws one at random at power-up (or keeps a retained counter + 1). The simulator
draws them from the scenario seed and the PLC's name, so a run is reproducible and the two
PLCs of one sorter get different sequences.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["BootIds"]

_U32 = 1 << 32
_U64_MASK = (1 << 64) - 1


class BootIds:
    """One PLC's boot ids in order: never 0, never a value this PLC has shown before."""

    def __init__(self, seed: int, plc: str) -> None:
        self._rng = np.random.default_rng([seed & _U64_MASK, zlib.crc32(plc.encode())])
        self._used: set[int] = set()

    def next(self) -> int:
        while True:
            value = int(self._rng.integers(1, _U32))
            if value not in self._used:
                self._used.add(value)
                return value

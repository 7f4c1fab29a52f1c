"""The conveyor PLC's tracking memory: its tracking-id counter and which parcel holds which id.

Tracking ids are the PLC's, not the simulator's: they count from 1 in the order parcels reach
the induct photo-eye, and a PLC that loses its memory (power cycle) counts from 1 again under
a new boot id and no longer knows the parcels already on the belt.
"""

from __future__ import annotations

__all__ = ["TrackingIds"]

_LAST_ID = 0xFFFFFFFF  # UInt32 on the wire; 0 means "none"


class TrackingIds:
    """Counter and id -> parcel table of one conveyor PLC boot."""

    def __init__(self) -> None:
        self.boot_id = 0  # 0 until a conveyor program has started (a world run without one)
        self.inducted = 0  # induct events reported under this boot (the PLC's inducted_total)
        self._next = 1
        self._index: dict[int, int] = {}

    def restart(self, boot_id: int) -> None:
        """The PLC program starts: ids from 1 under ``boot_id``, nothing tracked."""
        self.boot_id = boot_id
        self.inducted = 0
        self._next = 1
        self._index.clear()

    def forget(self) -> None:
        """The PLC lost its memory: no id refers to a parcel any more."""
        self._index.clear()

    def give(self, parcel: int) -> int:
        """The next tracking id, now held by parcel index ``parcel``."""
        tid = self._next
        self._next = tid % _LAST_ID + 1
        self._index[tid] = parcel
        return tid

    def give_many(self, parcels: list[int]) -> list[int]:
        """The next ids, one per parcel index, in order."""
        return [self.give(i) for i in parcels]

    def parcel(self, tracking_id: int) -> int:
        """Index of the parcel holding ``tracking_id`` in this boot; KeyError if none."""
        return self._index[tracking_id]

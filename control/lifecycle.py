"""The parcel lifecycle as a transition matrix over small integer state codes.

A `transitions` object per parcel would cost a Python object and a dict lookup per event at
tens of parcels a second; instead every parcel's state is one uint8 in the tracking table and
``ALLOWED[current, requested]`` says whether a move is legal, for a whole vector at once.
"""

from __future__ import annotations

import logging
from enum import IntEnum

import numpy as np
import numpy.typing as npt

__all__ = ["ALLOWED", "FINAL", "ParcelState", "ScanStatus", "check", "name_of"]

log = logging.getLogger(__name__)


class ParcelState(IntEnum):
    FREE = 0  # an empty tracking slot
    INDUCTED = 1  # edges latched at the induct eye, identity unknown
    SCANNED = 2  # passed the scanner; identity known, or no-read / multi-read decided
    ROUTED = 3  # chute and reason chosen, durable
    ARMED = 4  # diverter PLC accepted the arm
    SORTED = 5  # confirmed in the destination chute chosen for it (final)
    MISSED = 6  # armed, but no confirmation by the time its centre was well past the diverter
    RECIRCULATED = 7  # going round the loop for another scan
    REJECTED = 8  # confirmed in the exception chute chosen for it (final)
    LOST = 9  # no longer anywhere we can see (final)
    MISSORTED = 10  # confirmed in a chute other than the one chosen (final, alarm)


class ScanStatus(IntEnum):
    PENDING = 0
    READ = 1
    NO_READ = 2
    MULTI_READ = 3
    TIMEOUT = 4


P = ParcelState
N_STATES = len(P)
FINAL = frozenset({P.SORTED, P.REJECTED, P.LOST, P.MISSORTED})

_EDGES: dict[ParcelState, tuple[ParcelState, ...]] = {
    P.FREE: (P.INDUCTED, P.SCANNED),  # SCANNED: first seen at the scanner (inducted before restart)
    P.INDUCTED: (P.SCANNED, P.LOST),
    P.SCANNED: (P.ROUTED, P.RECIRCULATED, P.LOST),
    P.ROUTED: (P.ARMED, P.RECIRCULATED, P.LOST, P.SORTED, P.REJECTED, P.MISSORTED),
    P.ARMED: (P.SORTED, P.REJECTED, P.MISSORTED, P.MISSED, P.RECIRCULATED, P.LOST),  # LOST: its PLC restarted
    P.MISSED: (P.RECIRCULATED, P.SORTED, P.REJECTED, P.MISSORTED, P.LOST),
    P.RECIRCULATED: (P.SCANNED, P.LOST, P.SORTED, P.REJECTED, P.MISSORTED),
    P.SORTED: (P.FREE,),
    P.REJECTED: (P.FREE,),
    P.LOST: (P.FREE, P.SORTED, P.REJECTED, P.MISSORTED),  # a late confirmation finds it after all
    P.MISSORTED: (P.FREE,),
}

ALLOWED: npt.NDArray[np.bool_] = np.zeros((N_STATES, N_STATES), dtype=np.bool_)
for _src, _dsts in _EDGES.items():
    for _dst in _dsts:
        ALLOWED[_src, _dst] = True
ALLOWED.setflags(write=False)

_NAMES = np.array([s.name.lower() for s in P])


def name_of(state: int) -> str:
    return str(_NAMES[state])


def check(
    current: npt.NDArray[np.uint8], requested: npt.NDArray[np.uint8] | int
) -> npt.NDArray[np.bool_]:
    """Which of the requested moves are legal; pure, vectorised, no side effects."""
    cur = np.asarray(current, dtype=np.intp)
    req = np.broadcast_to(np.asarray(requested, dtype=np.intp), cur.shape)
    ok = (req >= 0) & (req < N_STATES) & (cur >= 0) & (cur < N_STATES)
    out = np.zeros(cur.shape, dtype=np.bool_)
    out[ok] = ALLOWED[cur[ok], req[ok]]
    return out


def log_refused(tids: npt.NDArray[np.uint32], current: npt.NDArray[np.uint8], requested: int) -> None:
    for tid, cur in zip(tids.tolist(), current.tolist(), strict=True):
        log.warning("parcel %d: refused %s -> %s", tid, name_of(cur), name_of(requested))

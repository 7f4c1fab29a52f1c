"""Geometry of the PackML state diagram the overview draws (SVG, rendered by the template).

The layout follows the ISA-TR88.00.02 picture: the production line across the middle (Idle to
Complete), Hold above it and Suspend below it mirrored around Execute, Reset up the left side,
Stop and Abort along the bottom. Wait states are square-cornered, acting states rounded.
"""

from __future__ import annotations

from dataclasses import dataclass

from plant.codes import PackMLState
from plant.packml import ACTING_STATES

__all__ = ["ARROWS", "BOXES", "HEIGHT", "RUNNING_HEIGHT", "WIDTH", "Arrow", "Box"]

S = PackMLState
COL, ROW = 190, 78  # grid pitch in SVG units
BOX_W, BOX_H = 120, 40
X0, Y0 = 20, 20
WIDTH = X0 * 2 + COL * 4 + BOX_W
HEIGHT = Y0 * 2 + ROW * 4 + BOX_H + 22  # room for the note under the last row
RUNNING_HEIGHT = ROW * 2 + BOX_H + 2 * (Y0 - 6)  # the dashed box round the states Stop leaves


@dataclass(frozen=True, slots=True)
class Box:
    state: str
    x: float
    y: float
    w: float
    h: float
    acting: bool

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    @property
    def label(self) -> str:
        return self.state.title()


@dataclass(frozen=True, slots=True)
class Arrow:
    x1: float
    y1: float
    x2: float
    y2: float
    label: str

    @property
    def label_at(self) -> tuple[float, float, str]:
        """Where the command's name goes: above a horizontal arrow, beside any other."""
        mx, my = (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2
        if abs(self.y2 - self.y1) < 1:
            return round(mx, 1), round(my - 6, 1), "middle"
        return round(mx + 6, 1), round(my + 4, 1), "start"


GRID: dict[PackMLState, tuple[int, int]] = {
    S.UNHOLDING: (1, 0), S.HELD: (2, 0), S.HOLDING: (3, 0),
    S.IDLE: (0, 1), S.STARTING: (1, 1), S.EXECUTE: (2, 1), S.COMPLETING: (3, 1), S.COMPLETE: (4, 1),
    S.RESETTING: (0, 2), S.UNSUSPENDING: (1, 2), S.SUSPENDED: (2, 2), S.SUSPENDING: (3, 2),
    S.STOPPED: (0, 3), S.STOPPING: (2, 3),
    S.CLEARING: (0, 4), S.ABORTED: (2, 4), S.ABORTING: (4, 4),
}

BOXES: tuple[Box, ...] = tuple(
    Box(s.name, X0 + c * COL, Y0 + r * ROW, BOX_W, BOX_H, s in ACTING_STATES)
    for s, (c, r) in GRID.items()
)
_BY = {b.state: b for b in BOXES}


def _edge(a: str, b: str, label: str = "") -> Arrow:
    """A straight arrow from box ``a``'s border to box ``b``'s, along their centre line."""
    p, q = _BY[a], _BY[b]
    dx, dy = q.cx - p.cx, q.cy - p.cy

    def exit_point(box: Box, sx: float, sy: float) -> tuple[float, float]:
        # where the ray from the centre in direction (sx, sy) leaves the box
        tx = (box.w / 2) / abs(sx) if sx else float("inf")
        ty = (box.h / 2) / abs(sy) if sy else float("inf")
        t = min(tx, ty)
        return box.cx + sx * t, box.cy + sy * t

    x1, y1 = exit_point(p, dx, dy)
    x2, y2 = exit_point(q, -dx, -dy)
    return Arrow(round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1), label)


ARROWS: tuple[Arrow, ...] = (
    _edge("IDLE", "STARTING", "Start"), _edge("STARTING", "EXECUTE"), _edge("EXECUTE", "COMPLETING", "Complete"),
    _edge("COMPLETING", "COMPLETE"), _edge("EXECUTE", "HOLDING", "Hold"), _edge("HOLDING", "HELD"),
    _edge("HELD", "UNHOLDING", "Unhold"), _edge("UNHOLDING", "EXECUTE"),
    _edge("EXECUTE", "SUSPENDING", "Suspend"), _edge("SUSPENDING", "SUSPENDED"),
    _edge("SUSPENDED", "UNSUSPENDING", "Unsuspend"), _edge("UNSUSPENDING", "EXECUTE"),
    _edge("STOPPED", "RESETTING", "Reset"), _edge("RESETTING", "IDLE"), _edge("STOPPING", "STOPPED"),
    _edge("ABORTING", "ABORTED"), _edge("ABORTED", "CLEARING", "Clear"), _edge("CLEARING", "STOPPED"),
)

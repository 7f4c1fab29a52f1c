"""What the cycle needs from routing and vision, as small interfaces (the service wires them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from control.lifecycle import ScanStatus


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """A camera decode for one scan trigger, back from the vision workers."""

    tracking_id: int
    trigger_count: int
    status: ScanStatus
    identity: str  # parcel id when status is READ, else ""
    done_at: float  # monotonic time the decode finished
    postal_code: str | None = None  # GS1 AI 420 ship-to postal code, when the label has one
    country: str | None = None
    detail: str = ""


class DecodeFeed(Protocol):
    """Camera frames in, decode results out; runs off the control loop."""

    @property
    def healthy(self) -> bool: ...

    @property
    def down_for(self) -> float: ...

    def poll(self) -> list[DecodeResult]: ...


@dataclass(frozen=True, slots=True)
class RouteRequest:
    key: int  # the parcel's key (conveyor boot id << 32 | tracking id)
    identity: str
    status: ScanStatus
    length_mm: float
    lap: int
    postal_code: str | None = None
    country: str | None = None


class Router(Protocol):
    """Chute and reason for each parcel, plus the feedback that keeps chute loads true."""

    plan_version: int  # the sort plan version the next decisions use (stored with each decision)

    def route(
        self, requests: list[RouteRequest], chute_status: npt.NDArray[np.uint16]
    ) -> list[tuple[int, int, str]]: ...  # (chute, reason code, reason name) per request

    def confirmed(self, key: int, assigned: int, actual: int) -> None: ...

    def missed(self, key: int, assigned: int) -> None: ...

    def chute_fill(self, fill: npt.NDArray[np.uint16]) -> None: ...

    def full_destinations(self, chute_status: npt.NDArray[np.uint16]) -> list[str]:
        """Destinations none of whose own chutes is usable, as operators name them."""
        ...

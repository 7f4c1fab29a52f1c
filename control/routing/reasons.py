"""Reason codes for routing decisions and read statuses from the camera tunnel."""

from __future__ import annotations

from enum import IntEnum


class Reason(IntEnum):
    """Why a parcel went where it went; the controller logs it and the host reports it.

    Values below ``NO_RULE`` are normal sorts; from ``NO_RULE`` on they are exceptions and go to
    a defined exception chute (see ``EXCEPTION_CHUTE_KIND``), never to a guessed destination.
    """

    SORTED_BY_RULE = 0
    CONSOLIDATED = 1
    PRIORITY = 2
    FALLBACK_FULL = 3
    CHUTE_UNAVAILABLE = 4
    NO_RULE = 5
    UNKNOWN_PARCEL = 6
    OVERSIZE = 7
    NO_READ = 8
    MULTI_READ = 9
    BAD_READ = 10
    RECIRCULATION_LIMIT = 11
    BAD_DATA = 12
    # Not decoded before its decision point (the decode ran late, not the label that failed):
    # routed exactly as a no-read, named apart so that load-induced losses are counted as such.
    DECODE_LATE = 13

    @property
    def is_exception(self) -> bool:
        return self >= Reason.NO_RULE


class ReadStatus(IntEnum):
    """What the camera tunnel made of the parcel's labels."""

    OK = 0
    NO_READ = 1
    MULTI_READ = 2
    BAD_READ = 3


# Exception reason -> chute kind it goes to (falls back to the reject chute when the site has
# none of that kind, or when that chute is full or unavailable). Not listed: reject chute.
EXCEPTION_CHUTE_KIND: dict[Reason, str] = {
    Reason.NO_READ: "no_read",
    Reason.MULTI_READ: "no_read",
    Reason.BAD_READ: "no_read",
    Reason.DECODE_LATE: "no_read",
    Reason.OVERSIZE: "oversize",
}

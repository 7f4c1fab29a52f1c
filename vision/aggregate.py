"""Per-parcel verdict from all its frames' reads: read, no-read or multi-read, with the evidence.

A parcel is routed on one identity or not at all: the same id seen many times is one read;
two different valid ids is a multi-read (double-labelled or two parcels in one window) and
goes to an exception chute. Reads that are not identities are kept as bad reads for the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from vision.engines import Read
from vision.labels import BadRead, Identity

ParcelStatus = Literal["read", "no_read", "multi_read", "timeout"]


@dataclass(frozen=True, slots=True)
class ParcelRead:
    """What the camera tunnel says about one parcel, and why."""

    status: ParcelStatus
    identity: Identity | None  # the identity to route on; only when status == "read"
    identities: tuple[Identity, ...]  # every distinct valid identity (2+ on a multi-read)
    evidence: tuple[Read, ...]  # the reads behind `identities` (symbology, engine, region, frame)
    bad_reads: tuple[BadRead, ...]  # decoded strings that failed grammar or check digits
    frames: int  # frames decoded (a timeout may have decoded fewer than it was given)
    elapsed_s: float = 0.0
    failed_frames: int = 0  # frames whose decoding raised (logged); their reads are missing

    @property
    def parcel_id(self) -> str | None:
        return self.identity.id if self.identity else None


def _merge(a: Identity, b: Identity) -> Identity:
    """Two reads of one id: fields they disagree on are dropped, never picked."""
    postal = a.postal_code if a.postal_code == b.postal_code else a.postal_code or b.postal_code
    if a.postal_code and b.postal_code and a.postal_code != b.postal_code:
        postal = None
    country = a.country if a.country == b.country else None if a.country and b.country else a.country or b.country
    elements = tuple(dict.fromkeys((*a.elements, *b.elements)))
    return replace(a, postal_code=postal, country=country, elements=elements)


def aggregate(reads: Iterable[Read], frames: int, elapsed_s: float = 0.0, timed_out: bool = False) -> ParcelRead:
    ids: dict[str, Identity] = {}
    evidence: list[Read] = []
    bad: dict[tuple[str, str], BadRead] = {}
    for r in reads:
        got = r.identity()
        if isinstance(got, Identity):
            ids[got.id] = _merge(ids[got.id], got) if got.id in ids else got
            evidence.append(r)
        else:
            bad.setdefault((got.text, got.symbology), got)
    found = tuple(ids.values())
    status: ParcelStatus
    if len(found) > 1:
        status = "multi_read"  # known even if the deadline passed: two ids is never routable
    elif timed_out:
        status = "timeout"
    else:
        status = "read" if found else "no_read"
    return ParcelRead(
        status=status,
        identity=found[0] if status == "read" else None,
        identities=found,
        evidence=tuple(evidence),
        bad_reads=tuple(bad.values()),
        frames=frames,
        elapsed_s=elapsed_s,
    )

"""One frame to barcode reads: a cheap pass first, wider and slower steps only when it reads nothing.

Cheap pass: locate with OpenCV on a half-size copy, then one narrow zxing-cpp call per
located region: a 1-D looking region (coherent gradients) is deskewed and only a band across
its middle is decoded as Code 128, without rotations; any other region is decoded as
DataMatrix/QR from the half-size copy (their modules are large). That reads a clean label in
about a millisecond or two, all told.

Escalation, only when the cheap pass gives no valid identity, in order: each region at full
resolution with every wanted symbology (deskewed or upright as its gradients suggest); the
large regions whose 2-D symbols were looked for in the half-size copy, at full size; zbar on
the same crops; then the whole frame by zxing-cpp and by zbar, so that the union of engines
still reads at least what either reads alone. The whole frame is skipped when the frame holds
no region that looks like a symbol (bars or modules, not text, lines or bare board): see
`_candidate`. A region is worth the slower steps when it looks like a symbol or zxing-cpp saw a
symbol in it that it could not decode.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from vision.engines import Read, zbar_read, zxing_read
from vision.labels import SYMBOLOGIES, Identity
from vision.locate import Region, crop_deskewed, crop_upright, downscale, gray_image, locate

__all__ = ["Effort", "decode_frame"]

Effort = Literal["cheap", "full"]
Image = npt.NDArray[np.uint8]

_REL_SCORE = 0.35  # regions much weaker than the strongest are text, not symbols
_MAX_REGIONS = 4
_MIXED_COHERENCE = 0.3
_BAND = 0.4  # share of a 1-D code's bar length the cheap pass decodes
_MATRIX = ("datamatrix", "qr")


def _valid(reads: Sequence[Read]) -> bool:
    return any(isinstance(r.identity(), Identity) for r in reads)


_MIN_AXIAL = 0.64  # text scores lower: strokes at every angle
_MIN_WIDTH = 60.0  # frame pixels across a region: box edges and straps are thinner
_MAX_WIDTH = 700.0  # a region wider than this both ways is background, not a label's symbol
_MAX_LENGTH = 900.0  # nor one longer than this (two straps side by side look like two bars)
_HALF_SIZE_FROM = 300.0  # 2-D regions at least this long are decoded from the half-size copy
_SQUARE = 1.6  # a 2-D symbol's region (with a quiet zone and some text about it) is about square
_MIN_AXIAL_2D = 0.4  # a Data Matrix turned at an odd angle scores 0.44-0.6; blank board and most text below


def _candidate(region: Region) -> bool:
    """A region that may be a symbol: gradients along two perpendicular axes (bars, modules),
    not a lone line."""
    short, long_ = sorted(region.size)
    return region.axial >= _MIN_AXIAL and _MIN_WIDTH <= short <= _MAX_WIDTH and long_ <= _MAX_LENGTH




def _maybe_matrix(region: Region) -> bool:
    """A large region that may hold a Data Matrix or QR symbol `_candidate` does not take: about
    square (the symbol and its quiet zone; blocks of text are longer), not background-sized, and
    with some of its gradients along two perpendicular axes."""
    short, long_ = sorted(region.size)
    return region.axial >= _MIN_AXIAL_2D and short <= _MAX_WIDTH and long_ <= _SQUARE * short


def _crop(gray: Image, region: Region, deskew: bool) -> Image:
    return crop_deskewed(gray, region) if deskew else crop_upright(gray, region)


def _cheap_region(
    gray: Image, small: Image, f: float, region: Region, syms: Sequence[str], failed: list[str], halved: list[Region]
) -> list[Read]:
    """The narrowest call that reads a clean symbol in this region. A region whose 2-D symbols
    were looked for in the half-size copy only, in vain, is added to ``halved`` when it may hold
    one (`_maybe_matrix`)."""
    quad = tuple(region.quad())
    reads: list[Read] = []
    if "code128" in syms and region.coherence >= _MIXED_COHERENCE:
        crop = crop_deskewed(gray, region, band=_BAND)
        reads = zxing_read(crop, ["code128"], upright=True, region=quad, failed=failed)
        if region.linear or _valid(reads):
            return reads
    matrix = [s for s in syms if s in _MATRIX]
    if matrix:
        # Large regions hold large modules: the half-size copy reads them at a quarter the cost.
        half = max(region.size) >= _HALF_SIZE_FROM
        src, k = (small, f) if half else (gray, 1.0)
        got = zxing_read(crop_upright(src, region, scale=k), matrix, region=quad, failed=failed)
        if half and not _valid(got) and _maybe_matrix(region):
            halved.append(region)
        reads += got
    return reads


def _matrix_full(gray: Image, region: Region, syms: Sequence[str]) -> list[Read]:
    """2-D symbols of a region at full resolution: a large region can hold a small-module Data
    Matrix (a small label turned at an odd angle) that the half-size copy blurs away, and its
    module pattern can look as little like a symbol's as text does (`_candidate` says no)."""
    matrix = [s for s in syms if s in _MATRIX]
    return zxing_read(crop_upright(gray, region), matrix, region=tuple(region.quad())) if matrix else []


def _zxing_region(gray: Image, region: Region, syms: Sequence[str]) -> list[Read]:
    quad = tuple(region.quad())
    linear = [s for s in syms if s == "code128"]
    if region.linear and linear:
        reads = zxing_read(_crop(gray, region, True), linear, upright=True, region=quad)
        if not _valid(reads) and len(linear) < len(syms):
            reads += zxing_read(_crop(gray, region, False), syms, region=quad)
        return reads
    reads = zxing_read(_crop(gray, region, False), syms, region=quad)
    if not _valid(reads) and linear and region.coherence >= _MIXED_COHERENCE:
        # Bars plus text can look only half coherent: a 1-D code at an odd angle needs deskewing.
        reads += zxing_read(_crop(gray, region, True), linear, upright=True, region=quad)
    return reads


def _zbar_region(gray: Image, region: Region, syms: Sequence[str]) -> list[Read]:
    quad = tuple(region.quad())
    deskew = region.coherence >= _MIXED_COHERENCE and "code128" in syms
    return zbar_read(_crop(gray, region, deskew), syms, region=quad)


def decode_frame(
    image: npt.NDArray[np.generic],
    *,
    symbologies: Sequence[str] = SYMBOLOGIES,
    fallback: bool = True,
    deadline: float | None = None,
    effort: Effort = "full",
) -> list[Read]:
    """Every barcode read in one image (BGR or gray, any size), duplicates removed.

    `symbologies` restricts the engines (fewer is faster). `effort="cheap"` stops after the
    cheap pass (about a millisecond or two); "full" escalates when it read nothing valid.
    `fallback` lets a frame in which no located region gives a valid identity be decoded whole
    by both engines. `deadline` is a `time.monotonic()` instant after which no further
    (costly) step is started; the cheap pass always runs.
    """
    syms = [s for s in symbologies if s in SYMBOLOGIES]
    gray = gray_image(image)
    small, f = downscale(gray)
    regions = locate(gray, max_regions=_MAX_REGIONS, small=(small, f), min_rel_score=_REL_SCORE)
    best = regions[0].score if regions else 0.0
    regions = [r for r in regions if r.score >= _REL_SCORE * best]
    reads: list[Read] = []
    worth: list[Region] = []  # regions worth the slower steps
    halved: list[Region] = []  # 2-D symbols looked for at half size only, in vain
    for region in regions:
        # Every region, even after an identity is read: a second label (a multi-read) must not
        # go unseen, and a small symbol beside text can look as little like one as text does.
        failed: list[str] = []
        reads += _cheap_region(gray, small, f, region, syms, failed, halved)
        if failed or _candidate(region):
            worth.append(region)
    if effort == "full" and not _valid(reads):
        reads += _escalate(gray, worth, [r for r in halved if r not in worth], syms, fallback, deadline)
    seen: set[tuple[str, str]] = set()
    out: list[Read] = []
    for r in reads:
        if (r.text, r.symbology) not in seen:
            seen.add((r.text, r.symbology))
            out.append(r)
    return out


def _escalate(
    gray: Image,
    regions: Sequence[Region],
    halved: Sequence[Region],
    syms: Sequence[str],
    fallback: bool,
    deadline: float | None,
) -> list[Read]:
    """``regions`` (worth every step) and ``halved`` (worth one 2-D call at full resolution; not
    the whole frame: text regions are in it too) in turn, cheapest steps first."""

    def expired() -> bool:
        return deadline is not None and time.monotonic() > deadline

    steps: tuple[tuple[Sequence[Region], Callable[[Image, Region, Sequence[str]], list[Read]]], ...] = (
        (regions, _zxing_region), (halved, _matrix_full), (regions, _zbar_region),
    )
    reads: list[Read] = []
    for todo, step in steps:
        for region in todo:
            if expired():
                return reads
            reads += step(gray, region, syms)
        if _valid(reads):
            return reads
    if fallback and regions and not expired():
        reads += zxing_read(gray, syms)
        if not _valid(reads) and not expired():
            reads += zbar_read(gray, syms)
    return reads

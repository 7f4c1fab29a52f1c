"""One frame to barcode reads: locate with OpenCV, deskew, decode each region with the engine that reads it.

zxing-cpp decodes every located region first (it is the faster engine, the only one that
reads DataMatrix, and it reports the GS1 flag); zbar gets the same crops only when zxing
found no valid identity in any of them. Only when no region gives an identity does the whole frame go to both
engines, so a frame costs one localisation plus one small decode in the common case, and the
union of engines still reads at least what either reads alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from vision.engines import Read, zbar_read, zxing_read
from vision.labels import SYMBOLOGIES, Identity
from vision.locate import Region, crop_deskewed, crop_upright, gray_image, locate

__all__ = ["decode_frame"]

_REL_SCORE = 0.35  # regions much weaker than the strongest are text, not symbols
_MAX_REGIONS = 4
_MIXED_COHERENCE = 0.3


def _valid(reads: Sequence[Read]) -> bool:
    return any(isinstance(r.identity(), Identity) for r in reads)


def _crop(gray: npt.NDArray[np.uint8], region: Region, deskew: bool) -> npt.NDArray[np.uint8]:
    return crop_deskewed(gray, region) if deskew else crop_upright(gray, region)


def _zxing_region(gray: npt.NDArray[np.uint8], region: Region, syms: Sequence[str]) -> list[Read]:
    quad = tuple(region.quad())
    linear = [s for s in syms if s == "code128"]
    if region.linear and linear:
        return zxing_read(_crop(gray, region, True), linear, upright=True, region=quad)
    reads = zxing_read(_crop(gray, region, False), syms, region=quad)
    if not _valid(reads) and linear and region.coherence >= _MIXED_COHERENCE:
        # Bars plus text can look only half coherent: a 1-D code at an odd angle needs deskewing.
        reads += zxing_read(_crop(gray, region, True), linear, upright=True, region=quad)
    return reads


def _zbar_region(gray: npt.NDArray[np.uint8], region: Region, syms: Sequence[str]) -> list[Read]:
    quad = tuple(region.quad())
    deskew = region.coherence >= _MIXED_COHERENCE and "code128" in syms
    return zbar_read(_crop(gray, region, deskew), syms, region=quad)


def decode_frame(
    image: npt.NDArray[np.generic],
    *,
    symbologies: Sequence[str] = SYMBOLOGIES,
    fallback: bool = True,
    deadline: float | None = None,
) -> list[Read]:
    """Every barcode read in one image (BGR or gray, any size), duplicates removed.

    `symbologies` restricts the engines (fewer is faster). `fallback` lets a frame in which no
    located region gives a valid identity be decoded whole by both engines. `deadline` is a
    `time.monotonic()` instant after which no further (costly) step is started.
    """
    syms = [s for s in symbologies if s in SYMBOLOGIES]
    gray = gray_image(image)
    reads: list[Read] = []
    regions = locate(gray)
    best = regions[0].score if regions else 0.0
    regions = [r for r in regions[:_MAX_REGIONS] if r.score >= _REL_SCORE * best]

    def expired() -> bool:
        return deadline is not None and time.monotonic() > deadline

    # zxing on every region first; zbar (slower) only if zxing found no identity anywhere;
    # the whole frame only if no region gave one.
    for region in regions:
        if expired():
            break
        reads += _zxing_region(gray, region, syms)
    if not _valid(reads):
        for region in regions:
            if expired():
                break
            reads += _zbar_region(gray, region, syms)
    if fallback and not _valid(reads) and not expired():
        reads += zxing_read(gray, syms)
        if not _valid(reads) and not expired():
            reads += zbar_read(gray, syms)
    seen: set[tuple[str, str]] = set()
    out: list[Read] = []
    for r in reads:
        if (r.text, r.symbology) not in seen:
            seen.add((r.text, r.symbology))
            out.append(r)
    return out

"""One frame to barcode reads: locate with OpenCV, deskew, decode each region with the engine that reads it.

Per region zxing-cpp goes first (it is the faster engine and the only one that reads
DataMatrix, and it reports the GS1 flag); zbar gets the same crop only when zxing's result
is not a valid identity. Only when no region gives an identity does the whole frame go to both
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


def _decode_region(gray: npt.NDArray[np.uint8], region: Region, syms: Sequence[str]) -> list[Read]:
    quad = tuple(region.quad())
    linear = [s for s in syms if s == "code128"]
    matrix = [s for s in syms if s != "code128"]
    reads: list[Read] = []
    if region.linear and linear:
        crop = crop_deskewed(gray, region)
        reads = zxing_read(crop, linear, upright=True, region=quad)
        if not _valid(reads):
            reads += zbar_read(crop, linear, region=quad)
        return reads
    crop = crop_upright(gray, region)
    reads = zxing_read(crop, syms, region=quad)
    if not _valid(reads):
        reads += zbar_read(crop, matrix or linear, region=quad)
    if not _valid(reads) and linear and region.coherence >= _MIXED_COHERENCE:
        # Bars plus text can look only half coherent: a 1-D code at an odd angle needs deskewing.
        crop = crop_deskewed(gray, region)
        reads += zxing_read(crop, linear, upright=True, region=quad)
    return reads


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
    for region in regions[:_MAX_REGIONS]:
        if region.score < _REL_SCORE * best or (deadline is not None and time.monotonic() > deadline):
            break
        reads += _decode_region(gray, region, syms)
    if fallback and not _valid(reads) and (deadline is None or time.monotonic() < deadline):
        reads += zxing_read(gray, syms)
        if not _valid(reads):
            reads += zbar_read(gray, syms)
    seen: set[tuple[str, str]] = set()
    out: list[Read] = []
    for r in reads:
        if (r.text, r.symbology) not in seen:
            seen.add((r.text, r.symbology))
            out.append(r)
    return out

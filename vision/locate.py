"""Barcode localisation with OpenCV: where the symbols are, which way their bars run, deskewed crops.

OpenCV only finds regions here, it never decodes (its own barcode decoder invents
check-digit-valid EAN numbers for Code 128). Everything runs on a downscaled copy: a symbol is
a patch of dense, strong gradients; for a 1-D code those gradients all point one way (high
coherence of the structure tensor), which also gives the angle to deskew by, at any rotation.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]

LOCATE_WIDTH = 480  # frames wider than this are localised at half size
_BLOCK = 4  # density cell, in half-size pixels
_MIN_CELLS = 12  # smallest blob worth decoding, in density cells
MIN_DENSITY = 8  # below this 99.5th-percentile edge density a frame has no symbol-like texture
_K3 = np.ones((3, 3), np.uint8)
_scratch_local = threading.local()


def _scratch(key: str, shape: tuple[int, ...], dtype: type[Any]) -> npt.NDArray[Any]:
    """A reusable array for a large temporary, one per thread and key (contents undefined).

    Temporaries of a few hundred kB allocated afresh for every frame come from pages glibc has
    given back to the kernel: on this VM their page faults cost more than the OpenCV call that
    fills them (about 130 faults, 0.3-0.5 ms a frame)."""
    bufs: dict[str, npt.NDArray[Any]] = _scratch_local.__dict__.setdefault("bufs", {})
    need = math.prod(shape)
    buf = bufs.get(key)
    if buf is None or buf.size < need or buf.dtype != dtype:
        buf = bufs[key] = np.empty(need, dtype)
    return buf[:need].reshape(shape)


@dataclass(frozen=True, slots=True)
class Region:
    """A candidate symbol: its rotated box in full-frame pixels and its gradient statistics."""

    center: tuple[float, float]
    size: tuple[float, float]  # (along the bars' gradient, along the bars), full-frame pixels
    angle_deg: float  # gradient direction; rotating by it makes the bars vertical
    coherence: float  # 0..1; a 1-D code is near 1, a 2-D code or text much lower
    score: float  # gradient energy: how strongly this looks like a symbol
    strength: float = 0.0  # mean edge density over the region (gray levels per pixel, half size)
    axial: float = 0.0  # 0..1; gradients along two perpendicular axes only (bars, modules) near 1

    @property
    def linear(self) -> bool:
        return self.coherence >= 0.45

    def quad(self) -> list[tuple[float, float]]:
        """The region's four corners in frame pixels, for the event log."""
        pts = cv2.boxPoints((self.center, self.size, self.angle_deg))
        return [(round(float(x), 1), round(float(y), 1)) for x, y in pts]


def gray_image(image: npt.NDArray[np.generic]) -> Image:
    """A contiguous 2-D uint8 view of any image (gray, BGR, BGRA, other depths)."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if img.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if img.dtype != np.uint8:
        lo, hi = float(img.min()), float(img.max())
        img = ((img - lo) * (255.0 / max(hi - lo, 1e-9))).astype(np.uint8)
    return np.ascontiguousarray(img, dtype=np.uint8)


def downscale(gray: Image) -> tuple[Image, float]:
    """The copy localisation works on and its scale: half size for frames wider than
    `LOCATE_WIDTH` (a 2x area resize is the cheapest OpenCV has), else the frame itself."""
    if gray.shape[1] > LOCATE_WIDTH:
        half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        return np.asarray(half, np.uint8), 0.5
    return gray, 1.0


def locate(
    gray: Image,
    max_regions: int = 6,
    small: tuple[Image, float] | None = None,
    min_rel_score: float = 0.0,
) -> list[Region]:
    """Candidate symbol regions, strongest first.

    Works on a half-size copy (`small`, from `downscale`, when the caller has it already): a
    morphological gradient marks edges, its block average is an edge density that is high only
    where edges are packed (symbols, text), not along single lines (label and box edges). Each
    dense blob then gets a structure tensor for its bar direction and coherence. Blobs scoring
    below `min_rel_score` times the strongest are dropped before that (the costly part).
    Large temporaries live in per-thread buffers (`_scratch`), a few MB per decoding thread.
    """
    half, f = small if small is not None else downscale(gray)
    # The morphological gradient, dilation minus erosion, in reused buffers.
    edge = cv2.dilate(half, _K3, dst=_scratch("dilate", half.shape, np.uint8))
    ero = cv2.erode(half, _K3, dst=_scratch("erode", half.shape, np.uint8))
    edge = cv2.subtract(edge, ero, dst=edge)
    hh, hw = half.shape
    cw, ch = max(1, hw // _BLOCK), max(1, hh // _BLOCK)
    dens = cv2.resize(edge, (cw, ch), interpolation=cv2.INTER_AREA)
    dens = np.asarray(cv2.blur(dens, (3, 3)), np.uint8)
    hist = cv2.calcHist([dens], [0], None, [256], [0, 256]).ravel()
    ref = float(np.searchsorted(np.cumsum(hist), 0.995 * dens.size))  # the 99.5th percentile
    if ref < MIN_DENSITY:
        return []
    # dens > 0.45 ref; for integer densities that is dens > floor(0.45 ref).
    _, mask = cv2.threshold(dens, math.floor(0.45 * ref), 1, cv2.THRESH_BINARY)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _K3)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_16U)
    # Mean density per blob (the background, 0, and specks excepted), over its bounding box.
    ranked: list[tuple[float, float, int, int, npt.NDArray[np.uint8]]] = []
    for i, (x, y, bw, bh, area) in enumerate(stats.tolist()):
        if i == 0 or area < _MIN_CELLS:
            continue
        box = (labels[y : y + bh, x : x + bw] == i).view(np.uint8)
        strength = float(cv2.mean(dens[y : y + bh, x : x + bw], mask=box)[0])
        if strength > 0:
            ranked.append((strength * math.sqrt(area), strength, x, y, box))
    ranked.sort(key=lambda t: -t[0])
    ranked = ranked[:max_regions]
    if not ranked:
        return []
    floor = min_rel_score * ranked[0][0]
    scale = _BLOCK / f  # density cell -> frame pixels
    out: list[Region] = []
    for score, strength, x, y, box in ranked:
        if score < floor:
            break
        region = _region(half, box, x, y, scale, score, strength)
        if region is not None:
            out.append(region)
    return out


def _region(
    half: Image, blob: Image, x: int, y: int, scale: float, score: float, strength: float
) -> Region | None:
    """One blob's box and gradient statistics: the structure tensor over its bounding box.
    `blob` marks its density cells within that box, whose corner is cell (`x`, `y`)."""
    bh, bw = blob.shape
    crop = half[y * _BLOCK : (y + bh) * _BLOCK, x * _BLOCK : (x + bw) * _BLOCK]
    shape = crop.shape
    dx, dy = _scratch("dx", shape, np.int16), _scratch("dy", shape, np.int16)
    dx, dy = cv2.spatialGradient(crop, dx=dx, dy=dy)  # 3x3 Sobel, both at once
    # Squares and product in one pass each, exact in float32 (|Sobel| <= 1020, so < 2^21).
    gxx = cv2.multiply(dx, dx, dst=_scratch("gxx", shape, np.float32), dtype=cv2.CV_32F).ravel()
    gyy = cv2.multiply(dy, dy, dst=_scratch("gyy", shape, np.float32), dtype=cv2.CV_32F).ravel()
    gxy = cv2.multiply(dx, dy, dst=_scratch("gxy", shape, np.float32), dtype=cv2.CV_32F).ravel()
    sxx, syy, sxy = cv2.sumElems(gxx)[0], cv2.sumElems(gyy)[0], cv2.sumElems(gxy)[0]  # in float64
    tot, cos2, sin2 = sxx + syy, sxx - syy, 2.0 * sxy  # sums of m^2, m^2 cos 2t, m^2 sin 2t
    if tot <= 0:
        return None
    coherence = math.hypot(cos2, sin2) / tot
    # Four-fold coherence: gradients along two perpendicular axes only (bars, matrix modules)
    # score near 1, strokes at every angle (text) lower: |sum m^4 e^{4it}| / sum m^4, with
    # m^2 cos 2t = gxx - gyy and m^2 sin 2t = 2 gxy expanded into dot products.
    xx4, yy4, xy4 = float(gxx @ gxx), float(gyy @ gyy), float(gxx @ gyy)  # gxx @ gyy == gxy @ gxy
    axx, ayy = float(gxx @ gxy), float(gyy @ gxy)
    c4 = xx4 - 2.0 * xy4 + yy4 - 4.0 * xy4  # sum (m^2 cos 2t)^2 - (m^2 sin 2t)^2
    s4 = 4.0 * (axx - ayy)  # sum 2 (m^2 cos 2t)(m^2 sin 2t)
    axial = math.hypot(c4, s4) / max(xx4 + 2.0 * xy4 + yy4, 1e-9)
    theta = 0.5 * math.degrees(math.atan2(sin2, cos2))  # gradient direction
    c, s = math.cos(math.radians(theta)), math.sin(math.radians(theta))
    # Cell indices along the gradient (u) and along the bars (v), extremes only: those lie on
    # the blob's outline, which its contour's corners span.
    outline, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    xy = np.concatenate(outline).reshape(-1, 2).astype(np.float64)
    uv = xy @ np.array([[c, -s], [s, c]])
    (u0, v0), (u1, v1) = uv.min(axis=0), uv.max(axis=0)
    cu = ((u0 + u1) / 2 + (x + 0.5) * c + (y + 0.5) * s) * scale
    cv_ = ((v0 + v1) / 2 + (y + 0.5) * c - (x + 0.5) * s) * scale
    center = (float(cu * c - cv_ * s), float(cu * s + cv_ * c))
    size = (float((u1 - u0) * scale + scale), float((v1 - v0) * scale + scale))
    return Region(center, size, theta, coherence, score, strength, axial)


def crop_deskewed(gray: Image, region: Region, margin: float = 0.15, band: float = 1.0) -> Image:
    """The region cut out of the full frame and rotated so a 1-D code's bars stand vertical.

    `band` < 1 keeps only that share of the bars' length, around the middle: enough rows for a
    row-scanning decoder at a fraction of the pixels."""
    (cx, cy), (su, sv) = region.center, region.size
    pad = margin * max(su, sv) + 8
    out_w, out_h = int(su + 2 * pad), int(sv + 2 * pad) if band >= 1.0 else max(8, int(sv * band))
    a = math.radians(region.angle_deg)
    c, s = math.cos(a), math.sin(a)
    # Map output (x, y) to frame: x runs along the gradient, y along the bars.
    m = np.array(
        [[c, -s, cx - c * out_w / 2 + s * out_h / 2], [s, c, cy - s * out_w / 2 - c * out_h / 2]],
        np.float64,
    )
    out = cv2.warpAffine(
        gray, m, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.asarray(out, dtype=np.uint8)


def crop_upright(gray: Image, region: Region, margin: float = 0.15, scale: float = 1.0) -> Image:
    """The region's axis-aligned bounding box with a margin (2-D decoders handle rotation);
    `scale` is the size of `gray` relative to the frame the region was located in."""
    pts = np.array(region.quad(), np.float32) * scale
    pad = (margin * max(region.size) + 8) * scale
    h, w = gray.shape
    x0, y0 = max(0, int(pts[:, 0].min() - pad)), max(0, int(pts[:, 1].min() - pad))
    x1, y1 = min(w, int(pts[:, 0].max() + pad)), min(h, int(pts[:, 1].max() + pad))
    return np.ascontiguousarray(gray[y0:y1, x0:x1])

"""Barcode localisation with OpenCV: where the symbols are, which way their bars run, deskewed crops.

OpenCV only finds regions here, it never decodes (its own barcode decoder invents
check-digit-valid EAN numbers for Code 128). Everything runs on a downscaled copy: a symbol is
a patch of dense, strong gradients; for a 1-D code those gradients all point one way (high
coherence of the structure tensor), which also gives the angle to deskew by, at any rotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]

LOCATE_WIDTH = 480  # frames wider than this are localised at half size
_BLOCK = 4  # density cell, in half-size pixels
_MIN_CELLS = 12  # smallest blob worth decoding, in density cells
_K3 = np.ones((3, 3), np.uint8)


@dataclass(frozen=True, slots=True)
class Region:
    """A candidate symbol: its rotated box in full-frame pixels and its gradient statistics."""

    center: tuple[float, float]
    size: tuple[float, float]  # (along the bars' gradient, along the bars), full-frame pixels
    angle_deg: float  # gradient direction; rotating by it makes the bars vertical
    coherence: float  # 0..1; a 1-D code is near 1, a 2-D code or text much lower
    score: float  # gradient energy: how strongly this looks like a symbol

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


def locate(gray: Image, max_regions: int = 6) -> list[Region]:
    """Candidate symbol regions, strongest first.

    Works on a half-size copy: a morphological gradient marks edges, its block average is
    an edge density that is high only where edges are packed (symbols, text), not along
    single lines (label and box edges). Each dense blob then gets a structure tensor for its
    bar direction and coherence.
    """
    h, w = gray.shape
    f = 0.5 if w > LOCATE_WIDTH else 1.0
    half = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else gray
    edge = cv2.morphologyEx(half, cv2.MORPH_GRADIENT, _K3)
    hh, hw = half.shape
    dens = cv2.resize(edge, (max(1, hw // _BLOCK), max(1, hh // _BLOCK)), interpolation=cv2.INTER_AREA)
    dens = cv2.blur(dens, (3, 3))
    ref = float(np.percentile(dens, 99.5))
    if ref < 8:
        return []
    mask = (dens > 0.45 * ref).astype(np.uint8)
    mask = np.asarray(cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _K3), dtype=np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    scale = _BLOCK / f  # density cell -> frame pixels
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1
    out: list[Region] = []
    for i in order[: max_regions * 2]:
        if stats[i, cv2.CC_STAT_AREA] < _MIN_CELLS:
            break
        x, y, bw, bh = (int(v) for v in stats[i, :4])
        sel = labels[y : y + bh, x : x + bw] == i
        strength = float(dens[y : y + bh, x : x + bw][sel].mean())
        crop = half[y * _BLOCK : (y + bh) * _BLOCK, x * _BLOCK : (x + bw) * _BLOCK]
        gx = cv2.Sobel(crop, cv2.CV_32F, 1, 0, ksize=3).ravel()
        gy = cv2.Sobel(crop, cv2.CV_32F, 0, 1, ksize=3).ravel()
        sxx, syy, sxy = float(gx @ gx), float(gy @ gy), float(gx @ gy)
        tot = sxx + syy
        if tot <= 0:
            continue
        coherence = math.hypot(sxx - syy, 2 * sxy) / tot
        theta = 0.5 * math.degrees(math.atan2(2 * sxy, sxx - syy))  # gradient direction
        ys, xs = np.nonzero(sel)
        pts = (np.stack([xs + x, ys + y], axis=1).astype(np.float32) + 0.5) * scale
        c, s = math.cos(math.radians(theta)), math.sin(math.radians(theta))
        u = pts @ np.array([c, s], np.float32)
        v = pts @ np.array([-s, c], np.float32)
        cu, cv_ = (float(u.min()) + float(u.max())) / 2, (float(v.min()) + float(v.max())) / 2
        center = (cu * c - cv_ * s, cu * s + cv_ * c)
        size = (float(u.max() - u.min()) + scale, float(v.max() - v.min()) + scale)
        out.append(Region(center, size, theta, coherence, strength * math.sqrt(len(pts))))
    out.sort(key=lambda r: -r.score)
    return out[:max_regions]


def crop_deskewed(gray: Image, region: Region, margin: float = 0.15) -> Image:
    """The region cut out of the full frame and rotated so a 1-D code's bars stand vertical."""
    (cx, cy), (su, sv) = region.center, region.size
    pad = margin * max(su, sv) + 8
    out_w, out_h = int(su + 2 * pad), int(sv + 2 * pad)
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


def crop_upright(gray: Image, region: Region, margin: float = 0.15) -> Image:
    """The region's axis-aligned bounding box with a margin (2-D decoders handle rotation)."""
    pts = np.array(region.quad(), np.float32)
    pad = margin * max(region.size) + 8
    h, w = gray.shape
    x0, y0 = max(0, int(pts[:, 0].min() - pad)), max(0, int(pts[:, 1].min() - pad))
    x1, y1 = min(w, int(pts[:, 0].max() + pad)), min(h, int(pts[:, 1].max() + pad))
    return np.ascontiguousarray(gray[y0:y1, x0:x1])

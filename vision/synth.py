"""Synthetic parcel labels in camera frames, with controlled degradations, for tests and the simulator.

Rendering is cheap because everything that depends only on the label (barcode modules, text,
layout) is drawn once and cached; a frame is then a background copy, one perspective warp of
the label into its bounding box, and a few whole-array OpenCV operations (no per-pixel Python).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
import zxingcpp

from vision.labels import GS, gs1_hri, parse_identity

Image = npt.NDArray[np.uint8]

PAPER = 236  # label paper gray level
INK = 28  # thermal-print black


@dataclass(frozen=True)
class LabelSpec:
    """What one label carries. GS1 labels carry the SSCC as AI 00 and the postal code as AI 420."""

    parcel_id: str  # S10 ("RR123456785CN") or 18-digit SSCC
    symbology: Literal["code128", "datamatrix", "qr"] = "code128"
    postal_code: str | None = None  # carried as AI 420 on GS1 labels


@dataclass(frozen=True)
class Degradation:
    """How the camera sees the label. Defaults are a clean, upright, well-lit label.

    Units: `rotation_deg` degrees (any value, 360 wraps); `perspective` 0..1, corner
    displacement as a fraction of the label size (0.3 is a steep view); `blur` Gaussian sigma in
    frame pixels (defocus, motion); `noise` sensor noise sigma in gray levels; `contrast` 0..1
    factor on the print's ink-to-paper difference (faded print); `glare` 0..1 strength of a
    specular highlight over the label (1 saturates it); `damage` 0..1 share of the symbol
    destroyed (1.0 = unreadable); `scale` label size factor (1.0 = about 0.45 of frame width
    for an S10 Code 128); `glare_patch` 0..1 share of the symbol's area under a saturated
    specular highlight (pure white core, soft rim), on top of `glare`; `tape` 0..1 share of the
    symbol's width, from one end, under clear packing tape (ink washed out towards paper, a
    sheen across it, a faint edge line where the tape ends).
    """

    rotation_deg: float = 0.0
    perspective: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    contrast: float = 1.0
    glare: float = 0.0
    damage: float = 0.0
    scale: float = 1.0
    glare_patch: float = 0.0
    tape: float = 0.0


# ------------------------------------------------------------------------- symbol content

_FORMATS = {"code128": zxingcpp.Code128, "datamatrix": zxingcpp.DataMatrix, "qr": zxingcpp.QRCode}
_MODULE_PX = {"code128": 3, "datamatrix": 9, "qr": 8}  # label-canvas pixels per module
_CANVAS_TO_FRAME = 0.72  # label canvas pixel -> frame pixel at scale 1.0


def label_content(spec: LabelSpec) -> tuple[str, bool]:
    """(writer content, is GS1) for a label: S10 as plain text, SSCC as GS1 (420 first, 00 last)."""
    pid = spec.parcel_id
    if len(pid) == 18 and pid.isdigit():
        fields = ([("420", spec.postal_code)] if spec.postal_code else []) + [("00", pid)]
        return gs1_hri(fields), True
    return pid, False


def expected_text(spec: LabelSpec) -> str:
    """The text a decoder should return for this label (GS1 raw form, GS as 0x1D)."""
    content, gs1 = label_content(spec)
    if not gs1:
        return content
    return (f"420{spec.postal_code}{GS}" if spec.postal_code else "") + "00" + spec.parcel_id


@lru_cache(maxsize=512)
def symbol_modules(spec: LabelSpec) -> Image:
    """The symbol's module matrix (one pixel per module, 0 = bar), no quiet zone."""
    content, gs1 = label_content(spec)
    if gs1:
        ident = parse_identity(expected_text(spec), spec.symbology, gs1=True)
        if not hasattr(ident, "kind"):
            raise ValueError(f"label {spec} does not make a valid GS1 identity: {ident}")
        bc = zxingcpp.create_barcode(content, _FORMATS[spec.symbology], gs1=True)
    else:
        bc = zxingcpp.create_barcode(content, _FORMATS[spec.symbology])
    img = np.asarray(bc.to_image(scale=1, add_quiet_zones=False), dtype=np.uint8)
    if spec.symbology == "code128":
        img = img[:1]  # one row is the whole symbol
    return np.ascontiguousarray(img)


# ------------------------------------------------------------------------- label canvas


@dataclass(frozen=True, slots=True)
class _Label:
    canvas: Image  # label paper with symbol, text and clutter
    symbol_box: tuple[int, int, int, int]  # x, y, w, h of the symbol on the canvas


def _text(canvas: Image, text: str, x: int, y: int, size: float, thick: int = 2) -> None:
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, size, INK, thick, cv2.LINE_AA)


@lru_cache(maxsize=512)
def _label(spec: LabelSpec) -> _Label:
    seed = int.from_bytes(hashlib.blake2b(repr(spec).encode(), digest_size=8).digest(), "big")
    rng = np.random.default_rng(seed)
    mods = symbol_modules(spec)
    px = _MODULE_PX[spec.symbology]
    if spec.symbology == "code128":
        sw = mods.shape[1] * px
        sh = max(150, sw // 4)
        symbol = np.repeat(np.repeat(mods, px, axis=1), sh, axis=0)
    else:
        symbol = np.repeat(np.repeat(mods, px, axis=0), px, axis=1)
        sh, sw = symbol.shape
    symbol = np.where(symbol > 127, PAPER, INK).astype(np.uint8)
    quiet = 12 * px if spec.symbology == "code128" else 4 * px
    width = max(sw + 2 * quiet + 40, 620)
    height = 190 + sh + 2 * quiet + 150
    canvas = np.full((height, width), PAPER, np.uint8)
    # Sender block, service banner and rules: the clutter a real label has around its symbols.
    _text(canvas, "FROM: " + "".join(rng.choice(list("ABCDEFGHKLMNPRSTUVW"), 8)), 24, 44, 0.9)
    _text(canvas, f"{rng.integers(1, 400)} {''.join(rng.choice(list('ABEFLMNORSTU'), 6))} ST", 24, 82, 0.8)
    cv2.rectangle(canvas, (width - 150, 16), (width - 24, 120), INK, -1)
    _text(canvas, "P" + str(rng.integers(1, 9)), width - 128, 92, 2.0, 6)
    canvas[130:136, 16 : width - 16] = INK
    ox, oy = (width - sw) // 2, 150 + quiet
    canvas[oy : oy + sh, ox : ox + sw] = symbol
    hri = spec.parcel_id
    if len(hri) == 13:
        hri = f"{hri[:2]} {hri[2:5]} {hri[5:8]} {hri[8:11]} {hri[11:]}"
    elif len(hri) == 18:
        hri = f"(00) {hri}"
    ty = oy + sh + quiet + 40
    _text(canvas, hri, max(16, (width - 22 * len(hri)) // 2), ty, 1.1)
    canvas[ty + 20 : ty + 24, 16 : width - 16] = INK
    _text(canvas, "TO: " + (spec.postal_code or "".join(rng.choice(list("0123456789"), 5))), 24, ty + 70, 1.0)
    return _Label(canvas, (ox, oy, sw, sh))


def _damaged(label: _Label, damage: float, rng: np.random.Generator) -> Image:
    """Scratches, stains and torn patches over `damage` of the symbol; 1.0 wipes it out."""
    canvas = label.canvas.copy()
    x, y, w, h = label.symbol_box
    if damage >= 1.0:
        canvas[y : y + h, x : x + w] = PAPER - 10
        cv2.line(canvas, (x, y + h // 2), (x + w, y + h // 3), INK, 9)
        return canvas
    # Patches spanning part of the symbol's height, so a scan line may still get past them.
    covered = 0.0
    while covered < damage:
        pw = int(w * rng.uniform(0.05, 0.2))
        ph = int(h * rng.uniform(0.3, 0.8))
        px_, py = x + int(rng.integers(0, max(1, w - pw))), y + int(rng.integers(0, max(1, h - ph)))
        colour = PAPER if rng.random() < 0.7 else INK
        cv2.ellipse(canvas, (px_ + pw // 2, py + ph // 2), (pw // 2, ph // 2), 0, 0, 360, colour, -1)
        covered += (math.pi / 4) * pw * ph / (w * h)
    return canvas


def _taped(label: _Label, canvas: Image, share: float, rng: np.random.Generator) -> Image:
    """Clear tape across one end of the symbol (and the label's edge beyond it), running along
    the bars: the ink under it washes out towards paper, a sheen brightens it unevenly, and its
    inner edge leaves a faint line."""
    x, _, w, _ = label.symbol_box
    height, width = canvas.shape
    covered = int(round(w * min(share, 1.0)))
    if covered <= 0:
        return canvas
    if rng.random() < 0.5:
        x0, x1, edge = 0, x + covered, x + covered  # the start end, out to the label's edge
    else:
        x0, x1, edge = x + w - covered, width, x + w - covered
    out = canvas.astype(np.float32)
    band = out[:, x0:x1]
    t = np.linspace(0.0, math.pi, band.shape[1], dtype=np.float32)
    sheen = 30.0 * np.sin(t + float(rng.uniform(0, 1))) ** 2  # brighter along the tape's crown
    band[:] = PAPER - (PAPER - band) * 0.55 + sheen[None, :]
    out[:, max(0, edge - 1) : edge + 1] -= 14.0
    return _u8(np.clip(out, 0, 255))


def _glare_patched(label: _Label, canvas: Image, share: float, rng: np.random.Generator) -> Image:
    """A saturated specular highlight over `share` of the symbol's area: pure white in its core
    (half the ellipse's area), fading out to its rim."""
    x, y, w, h = label.symbol_box
    aspect = float(rng.uniform(1.0, 2.0))
    # Core area 0.5 * pi * a * b = share * w * h, with a = aspect * b.
    b = math.sqrt(2.0 * share * w * h / (math.pi * aspect))
    a = aspect * b
    cx = x + w * float(rng.uniform(0.25, 0.75))
    cy = y + h * float(rng.uniform(0.25, 0.75))
    yy, xx = np.mgrid[0 : canvas.shape[0], 0 : canvas.shape[1]].astype(np.float32)
    r2 = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2
    spot = np.clip((1.0 - r2) * 2.0, 0.0, 1.0)
    return _u8(np.clip(canvas.astype(np.float32) + 255.0 * spot, 0, 255))


# ------------------------------------------------------------------------- frame


def _u8(a: object) -> Image:
    return np.asarray(a, dtype=np.uint8)


@lru_cache(maxsize=4)
def _backgrounds(width: int, height: int) -> tuple[Image, ...]:
    """Cardboard: smooth shading plus fibre texture, a few variants per frame size."""
    out = []
    for seed in range(4):
        rng = np.random.default_rng(1000 + seed)
        low = rng.normal(150, 14, (height // 64 + 2, width // 64 + 2)).astype(np.float32)
        shade = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
        fibre = cv2.GaussianBlur(rng.normal(0, 6, (height, width)).astype(np.float32), (0, 0), 1.2)
        out.append(np.clip(shade + fibre, 0, 255).astype(np.uint8))
    return tuple(out)


@lru_cache(maxsize=4)
def _unit_noise(width: int, height: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(7)
    return rng.standard_normal((height + 64, width + 64), dtype=np.float32)


@lru_cache(maxsize=4)
def _glare_spot(radius: int) -> npt.NDArray[np.float32]:
    r = np.arange(-3 * radius, 3 * radius + 1, dtype=np.float32)
    g = np.exp(-(r[:, None] ** 2 + (0.6 * r[None, :]) ** 2) / (2.0 * radius**2))
    g = (g - math.exp(-4.5 * 0.36)) / (1 - math.exp(-4.5 * 0.36))  # zero at the window's edge
    return np.clip(g, 0, 1).astype(np.float32)


def _place(
    frame: Image,
    canvas: Image,
    deg: Degradation,
    rng: np.random.Generator,
    region: tuple[int, int, int, int],
) -> npt.NDArray[np.float64]:
    """Warp `canvas` into `frame` inside region (x0, y0, x1, y1); returns its corner quad."""
    h, w = canvas.shape
    s = _CANVAS_TO_FRAME * deg.scale
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    quad = (src - [w / 2, h / 2]) * s
    if deg.perspective > 0:
        quad += rng.uniform(-1, 1, (4, 2)) * deg.perspective * 0.5 * np.array([w, h]) * s
    a = math.radians(deg.rotation_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    quad = np.asarray(quad @ rot.T, dtype=np.float64)
    lo, hi = quad.min(axis=0), quad.max(axis=0)
    x0, y0, x1, y1 = region
    cx = rng.uniform(min(x0 - lo[0], (x0 + x1) / 2), max(x1 - hi[0], (x0 + x1) / 2))
    cy = rng.uniform(min(y0 - lo[1], (y0 + y1) / 2), max(y1 - hi[1], (y0 + y1) / 2))
    quad += [cx, cy]
    fh, fw = frame.shape
    bx0, by0 = max(0, int(quad[:, 0].min())), max(0, int(quad[:, 1].min()))
    bx1, by1 = min(fw, int(quad[:, 0].max()) + 2), min(fh, int(quad[:, 1].max()) + 2)
    if bx1 <= bx0 or by1 <= by0:
        return quad
    m = cv2.getPerspectiveTransform(src.astype(np.float32), (quad - [bx0, by0]).astype(np.float32))
    roi = frame[by0:by1, bx0:bx1]
    # BORDER_TRANSPARENT leaves the frame untouched outside the label: no mask needed.
    cv2.warpPerspective(
        canvas, m, (bx1 - bx0, by1 - by0), dst=roi, flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_TRANSPARENT,
    )
    return quad


CLUTTER = ("print", "tape", "label", "straps")
_WORDS = ("FRAGILE", "THIS SIDE UP", "HANDLE WITH CARE", "KEEP DRY", "ACME LOGISTICS", "NO HOOKS", "25 KG")


def _layer(frame: Image, draw: Image, alpha: Image, rng: np.random.Generator) -> None:
    """Composite a drawing centred on a canvas (gray levels `draw`, opacity `alpha` 0..255)
    onto `frame`, turned by a random angle and centred on a random point of the frame."""
    h, w = frame.shape
    ch, cw = draw.shape
    m = cv2.getRotationMatrix2D((cw / 2, ch / 2), float(rng.uniform(0, 360)), 1.0)
    m[:, 2] += (float(rng.uniform(0.25, 0.75) * w) - cw / 2, float(rng.uniform(0.25, 0.75) * h) - ch / 2)
    d = cv2.warpAffine(draw, m, (w, h), flags=cv2.INTER_LINEAR)
    a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    frame[:] = _u8(frame * (1.0 - a) + d * a)


def _clutter(frame: Image, kind: str, rng: np.random.Generator) -> None:
    """What a parcel top carries besides its label: printed marks, tape, an address label with no
    symbol, straps. Drawn centred, then turned and moved at random."""
    h, w = frame.shape
    h, w = 2 * h, 2 * w  # drawn on a canvas twice the frame's size, so tape and straps cross it
    draw = np.zeros((h, w), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    cx, cy = w // 2, h // 2
    if kind == "print":  # shipping marks printed on the board
        for k in range(int(rng.integers(1, 4))):
            word = str(rng.choice(_WORDS))
            size = float(rng.uniform(1.5, 3.5))
            cv2.putText(alpha, word, (cx - 330, cy - 100 + 120 * k), cv2.FONT_HERSHEY_DUPLEX, size, 255,
                        int(rng.integers(3, 8)), cv2.LINE_AA)
        draw[:] = int(rng.integers(20, 70))
    elif kind == "tape":  # packing tape across the box, printed with a warning
        tw = int(rng.integers(70, 110))
        alpha[cy - tw // 2 : cy + tw // 2] = 150
        draw[cy - tw // 2 : cy + tw // 2] = 205
        word = str(rng.choice(_WORDS[:4]))
        for x in range(-200, w + 200, 420):
            cv2.putText(draw, word, (x, cy + 14), cv2.FONT_HERSHEY_SIMPLEX, 1.3, 60, 4, cv2.LINE_AA)
            cv2.putText(alpha, word, (x, cy + 14), cv2.FONT_HERSHEY_SIMPLEX, 1.3, 255, 4, cv2.LINE_AA)
    elif kind == "label":  # an address label that carries no symbol
        lw, lh = int(rng.integers(380, 560)), int(rng.integers(260, 400))
        alpha[cy - lh // 2 : cy + lh // 2, cx - lw // 2 : cx + lw // 2] = 255
        draw[cy - lh // 2 : cy + lh // 2, cx - lw // 2 : cx + lw // 2] = PAPER
        for k in range(int(rng.integers(4, 8))):
            line = "".join(rng.choice(list("ABCDEFGHKLMNPRSTUVW 0123456789"), int(rng.integers(8, 20))))
            cv2.putText(draw, line, (cx - lw // 2 + 20, cy - lh // 2 + 45 + 42 * k), cv2.FONT_HERSHEY_SIMPLEX,
                        0.9, INK, 2, cv2.LINE_AA)
    elif kind == "straps":  # two plastic straps, each a band with a ridge down its middle
        for off in (-int(rng.integers(120, 300)), int(rng.integers(120, 300))):
            alpha[cy + off - 8 : cy + off + 8] = 255
            draw[cy + off - 8 : cy + off + 8] = 90
            draw[cy + off - 1 : cy + off + 1] = 130
    else:
        raise ValueError(f"unknown clutter {kind!r}; known: {', '.join(CLUTTER)}")
    _layer(frame, draw, alpha, rng)


def render_frame(
    labels: Sequence[LabelSpec],
    degradation: Degradation,
    rng: np.random.Generator,
    size: tuple[int, int] = (1280, 1024),
    clutter: Sequence[str] = (),
) -> Image:
    """A (H, W) uint8 gray camera frame of a parcel top carrying `labels` ([] = label missing).

    `size` is (width, height). Two labels are put side by side (a double-labelled parcel).
    `clutter` adds what else a parcel top shows, under the labels (kinds in `CLUTTER`).
    """
    width, height = size
    bg = _backgrounds(width, height)
    frame = bg[int(rng.integers(len(bg)))].copy()
    # A box edge and a strip of tape: long straight edges a localiser must not fall for.
    ex = int(rng.integers(0, width))
    cv2.line(frame, (ex, 0), (ex + int(rng.integers(-200, 200)), height), 70, 5)
    ty = int(rng.integers(0, height - 60))
    frame[ty : ty + 50] = np.minimum(frame[ty : ty + 50], 230) + 25
    for kind in clutter:
        _clutter(frame, kind, rng)
    deg = degradation
    n = len(labels)
    for i, spec in enumerate(labels):
        lab = _label(spec)
        canvas = _damaged(lab, deg.damage, rng) if deg.damage > 0 else lab.canvas
        if deg.contrast != 1.0:
            c = float(np.clip(deg.contrast, 0.0, 1.0))
            canvas = _u8(cv2.convertScaleAbs(canvas, alpha=c, beta=(1 - c) * PAPER))
        if deg.tape > 0:
            canvas = _taped(lab, canvas, deg.tape, rng)
        if deg.glare_patch > 0:
            canvas = _glare_patched(lab, canvas, deg.glare_patch, rng)
        region = (i * width // n, 0, (i + 1) * width // n, height)
        quad = _place(frame, canvas, deg, rng, region)
        if deg.glare > 0:
            _add_glare(frame, quad, deg.glare, rng)
    if deg.blur > 0:
        frame = _u8(cv2.GaussianBlur(frame, (0, 0), deg.blur))
    if deg.noise > 0:
        nz = _unit_noise(width, height)
        ox, oy = int(rng.integers(0, 64)), int(rng.integers(0, 64))
        window = nz[oy : oy + height, ox : ox + width]
        frame = _u8(cv2.addWeighted(frame, 1.0, window, deg.noise, 0.0, dtype=cv2.CV_8U))
    return frame


def _add_glare(frame: Image, quad: npt.NDArray[np.float64], glare: float, rng: np.random.Generator) -> None:
    spot = _glare_spot(70)
    sh, sw = spot.shape
    t = rng.uniform(0.2, 0.8, 2)
    cx = int(quad[0, 0] + t[0] * (quad[1, 0] - quad[0, 0]) + t[1] * (quad[3, 0] - quad[0, 0]))
    cy = int(quad[0, 1] + t[0] * (quad[1, 1] - quad[0, 1]) + t[1] * (quad[3, 1] - quad[0, 1]))
    fh, fw = frame.shape
    x0, y0 = cx - sw // 2, cy - sh // 2
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(fw, x0 + sw), min(fh, y0 + sh)
    if fx1 <= fx0 or fy1 <= fy0:
        return
    part = spot[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    roi = frame[fy0:fy1, fx0:fx1]
    # Specular light adds to dark ink as much as to paper: ink washes out, paper saturates.
    roi[:] = cv2.addWeighted(roi, 1.0, part, 230.0 * glare, 0.0, dtype=cv2.CV_8U)

"""The locator: regions it keeps, the same in any thread, the same with or without a cut-off."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from vision.labels import make_s10, make_sscc
from vision.locate import Region, downscale, locate
from vision.synth import CLUTTER, Degradation, LabelSpec, render_frame

LABELS = [
    LabelSpec(make_s10("RR", 12345678, "CN")),
    LabelSpec(make_sscc(3, 4012345000017), "code128", "SW1A1AA"),
    LabelSpec(make_sscc(0, 5012345000042), "datamatrix", "75008"),
    LabelSpec(make_sscc(7, 9912345000099), "qr", "10115"),
]


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = [
        render_frame([spec], Degradation(rotation_deg=float(rng.uniform(0, 360)), noise=2), rng)
        for spec in LABELS * 2
    ]
    out += [render_frame([], Degradation(noise=3), rng, clutter=list(CLUTTER)) for _ in range(2)]
    return out


def _key(regions: list[Region]) -> list[tuple[float, ...]]:
    return [(*r.center, *r.size, r.angle_deg, r.coherence, r.axial, r.score) for r in regions]


def test_min_rel_score_only_drops_the_weaker_regions() -> None:
    for frame in _frames():
        every = locate(frame, max_regions=4)
        kept = locate(frame, max_regions=4, min_rel_score=0.35)
        best = every[0].score if every else 0.0
        assert _key(kept) == _key([r for r in every if r.score >= 0.35 * best])


def test_the_same_regions_in_every_thread() -> None:
    """The locator's reused buffers are per thread: threads decoding at once do not mix."""
    frames = _frames()
    alone = [_key(locate(f, max_regions=4, small=downscale(f))) for f in frames]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            together = list(pool.map(lambda f: _key(locate(f, max_regions=4)), frames))
            assert together == alone


def test_a_code_128_is_found_at_its_angle() -> None:
    rng = np.random.default_rng(3)
    for angle in (0.0, 37.0, 90.0, 143.0, 200.0):
        frame = render_frame([LABELS[0]], Degradation(rotation_deg=angle, noise=1), rng)
        regions = locate(frame, max_regions=4, min_rel_score=0.35)
        assert regions and regions[0].linear
        off = (regions[0].angle_deg - angle) % 180  # bars have no front and back
        assert min(off, 180 - off) < 6

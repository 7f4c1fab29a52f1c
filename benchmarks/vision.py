"""Vision benchmark: frames/s and read rate of the pipeline against each engine alone, same frames.

Frames are synthetic 1280x1024 gray camera frames with one label at a random angle (S10 and
GS1 Code 128, GS1 DataMatrix, GS1 QR in turn). Speed is measured on one core (OpenCV's own
threads off), for labelled frames and for frames with no label (parcel tops with printed
marks, tape, an address label without a symbol, straps). Read rate is measured per
degradation level and per named condition (saturating glare, faded print, tape over one end of
a Code 128, Data Matrix labels); "wrong" counts frames in which any valid identity other than
the label's own was reported, including frames whose label was destroyed on purpose and frames
with no label. The engines alone read the whole frame, restricted to our symbologies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from benchmarks.records import Record
from vision.decode import decode_frame
from vision.engines import Read, zbar_read, zxing_read
from vision.labels import SYMBOLOGIES, Identity, make_s10, make_sscc
from vision.synth import CLUTTER, Degradation, LabelSpec, render_frame

Image = npt.NDArray[np.uint8]
Engine = Callable[[Image], list[Read]]

ENGINES: dict[str, Engine] = {
    "pipeline": lambda f: decode_frame(f),
    "zxing": lambda f: zxing_read(f, SYMBOLOGIES),
    "pyzbar": lambda f: zbar_read(f, SYMBOLOGIES),
}

# Degradation levels; every level also turns the label to a random angle.
LEVELS: dict[str, dict[str, float]] = {
    "L0": {},
    "L1": {"perspective": 0.05, "blur": 0.4, "noise": 2, "contrast": 0.85, "glare": 0.15},
    "L2": {"perspective": 0.1, "blur": 0.6, "noise": 4, "contrast": 0.7, "glare": 0.3},
    "L3": {"perspective": 0.15, "blur": 0.8, "noise": 6, "contrast": 0.55, "glare": 0.45, "damage": 0.02},
    "L4": {"perspective": 0.2, "blur": 1.0, "noise": 8, "contrast": 0.4, "glare": 0.6, "damage": 0.05},
}


# Named conditions: (degradation, label kinds) - kinds as in `_label`, 4 = S10 DataMatrix.
# Every frame also turns the label to a random angle; "datamatrix" also varies its size.
CONDITIONS: dict[str, tuple[dict[str, float], tuple[int, ...]]] = {
    "glare": ({"glare_patch": 0.22, "noise": 2}, (0, 1, 2, 3)),  # saturated over 22 % of the symbol
    "low_contrast": ({"contrast": 0.2, "noise": 3}, (0, 1, 2, 3)),  # print contrast ~0.18
    "tape": ({"tape": 0.2, "noise": 2}, (0, 1)),  # clear tape over one end of a Code 128
    "datamatrix": ({"noise": 1}, (2, 4)),  # clean Data Matrix labels, 0.45-1.3x size
}


@dataclass
class _Tally:
    frames: int = 0
    read: int = 0
    wrong: int = 0
    seconds: float = 0.0


def _label(rng: np.random.Generator, i: int, kind: int | None = None) -> LabelSpec:
    kind = i % 4 if kind is None else kind
    if kind == 0:
        return LabelSpec(make_s10("RR", int(rng.integers(10**8)), "CN"))
    if kind == 4:
        return LabelSpec(make_s10("CP", int(rng.integers(10**8)), "DE"), "datamatrix")
    sscc = make_sscc(int(rng.integers(10)), int(rng.integers(10**16)))
    postal = ["SW1A1AA", "75008", "D02X285", "10115"][i % 4]
    return LabelSpec(sscc, ("code128", "datamatrix", "qr")[kind - 1], postal)


def _frames(n: int, level: dict[str, float], seed: int) -> list[tuple[LabelSpec | None, Image]]:
    rng = np.random.default_rng(seed)
    out: list[tuple[LabelSpec | None, Image]] = []
    for i in range(n):
        spec = _label(rng, i)
        deg = Degradation(rotation_deg=float(rng.uniform(0, 360)), **level)
        out.append((spec, render_frame([spec], deg, rng)))
    return out


def _condition_frames(n: int, name: str, seed: int) -> list[tuple[LabelSpec | None, Image]]:
    level, kinds = CONDITIONS[name]
    rng = np.random.default_rng(seed)
    out: list[tuple[LabelSpec | None, Image]] = []
    for i in range(n):
        spec = _label(rng, i, kinds[i % len(kinds)])
        scale = float(rng.uniform(0.45, 1.3)) if name == "datamatrix" else 1.0
        deg = Degradation(rotation_deg=float(rng.uniform(0, 360)), scale=scale, **level)
        out.append((spec, render_frame([spec], deg, rng)))
    return out


def _empty_frames(n: int, seed: int) -> list[tuple[LabelSpec | None, Image]]:
    """Parcel tops with no label: bare board (box edge, tape strip) plus a random mix of the
    renderer's clutter, one kind at a time for most frames."""
    rng = np.random.default_rng(seed)
    out: list[tuple[LabelSpec | None, Image]] = []
    for i in range(n):
        if i % 6 == 5:
            kinds = [k for k in CLUTTER if rng.random() < 0.5]
        else:
            kinds = [CLUTTER[i % len(CLUTTER)]] if i % 6 else []
        deg = Degradation(noise=float(rng.uniform(0, 4)), blur=float(rng.uniform(0, 0.8)))
        out.append((None, render_frame([], deg, rng, clutter=kinds)))
    return out


def _score(engine: Engine, frames: list[tuple[LabelSpec | None, Image]], tally: _Tally) -> None:
    for spec, frame in frames:
        t0 = time.perf_counter()
        reads = engine(frame)
        tally.seconds += time.perf_counter() - t0
        ids = {g.id for r in reads if isinstance(g := r.identity(), Identity)}
        expected = {spec.parcel_id} if spec else set()
        tally.frames += 1
        tally.read += bool(spec) and ids == expected
        tally.wrong += bool(ids - expected)


def run(quick: bool) -> list[Record]:
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return _run(quick)
    finally:
        cv2.setNumThreads(threads)


def _run(quick: bool) -> list[Record]:
    n_speed, n_level, n_damaged, n_cond, n_empty = (40, 16, 8, 8, 18) if quick else (400, 160, 60, 80, 180)
    records: list[Record] = []
    speed = _frames(n_speed, {"noise": 2}, seed=1)
    for f in speed[:4]:  # warm caches and libraries outside the timing
        for engine in ENGINES.values():
            engine(f[1])
    fps: dict[str, float] = {}
    for name, engine in ENGINES.items():
        t = _Tally()
        _score(engine, speed, t)
        fps[name] = t.frames / t.seconds
    empty = _empty_frames(n_empty, seed=2)
    fps_empty: dict[str, float] = {}
    empty_ms: list[float] = []
    empty_wrong: dict[str, int] = {}
    for name, engine in ENGINES.items():
        t = _Tally()
        for spec, frame in empty:
            t0 = time.perf_counter()
            _score(engine, [(spec, frame)], t)
            if name == "pipeline":
                empty_ms.append((time.perf_counter() - t0) * 1e3)
        fps_empty[name] = t.frames / t.seconds
        empty_wrong[name] = t.wrong
    totals = {name: _Tally() for name in ENGINES}
    per_level: dict[str, dict[str, float]] = {}
    for lvl, (level_name, level) in enumerate(LEVELS.items()):
        frames = _frames(n_level, level, seed=100 + lvl)
        per_level[level_name] = {}
        for name, engine in ENGINES.items():
            t = _Tally()
            _score(engine, frames, t)
            per_level[level_name][name] = t.read / t.frames
            totals[name].frames += t.frames
            totals[name].read += t.read
            totals[name].wrong += t.wrong
    # Destroyed labels: a read here could only be a wrong one.
    destroyed = _frames(n_damaged, {"damage": 1.0, "noise": 4}, seed=999)
    for name, engine in ENGINES.items():
        t = _Tally()
        _score(engine, destroyed, t)
        totals[name].wrong += t.wrong
    per_cond: dict[str, dict[str, float]] = {}
    for k, cond in enumerate(CONDITIONS):
        frames = _condition_frames(n_cond, cond, seed=500 + k)
        per_cond[cond] = {}
        for name, engine in ENGINES.items():
            t = _Tally()
            _score(engine, frames, t)
            per_cond[cond][name] = t.read / t.frames
            totals[name].wrong += t.wrong
    for name in ENGINES:
        totals[name].wrong += empty_wrong[name]
    rate = {name: t.read / t.frames for name, t in totals.items()}
    records += [
        Record("vision.fps", "frames/s", fps["pipeline"], "pipeline, 1280x1024, one label, any angle, 1 core"),
        Record("vision.read_rate", "ratio", rate["pipeline"], f"all levels, {totals['pipeline'].frames} frames"),
        Record("vision.wrong", "count", float(totals["pipeline"].wrong), "frames with a wrong identity"),
        Record("vision.pyzbar_fps", "frames/s", fps["pyzbar"], "pyzbar alone, whole frame"),
        Record("vision.pyzbar_read_rate", "ratio", rate["pyzbar"]),
        Record("vision.pyzbar_wrong", "count", float(totals["pyzbar"].wrong)),
        Record("vision.zxing_fps", "frames/s", fps["zxing"], "zxing-cpp alone, whole frame"),
        Record("vision.zxing_read_rate", "ratio", rate["zxing"]),
        Record("vision.zxing_wrong", "count", float(totals["zxing"].wrong)),
        Record("vision.fps_vs_pyzbar", "ratio", fps["pipeline"] / fps["pyzbar"]),
        Record(
            "vision.fps_empty",
            "frames/s",
            fps_empty["pipeline"],
            f"no label: board, print, tape, label without symbol, straps; {len(empty)} frames, "
            f"median {float(np.median(empty_ms)):.1f} ms, p90 {float(np.percentile(empty_ms, 90)):.1f} ms",
        ),
        Record("vision.empty_median_ms", "ms", float(np.median(empty_ms)), "pipeline, frame with no label"),
        Record("vision.zxing_fps_empty", "frames/s", fps_empty["zxing"]),
        Record("vision.pyzbar_fps_empty", "frames/s", fps_empty["pyzbar"]),
    ]
    for cond, rates in per_cond.items():
        records.append(
            Record(
                f"vision.read_rate.{cond}",
                "ratio",
                rates["pipeline"],
                f"{n_cond} frames; zxing {rates['zxing']:.2f}, pyzbar {rates['pyzbar']:.2f}",
            )
        )
        records.append(Record(f"vision.zxing_read_rate.{cond}", "ratio", rates["zxing"]))
        records.append(Record(f"vision.pyzbar_read_rate.{cond}", "ratio", rates["pyzbar"]))
    for level_name, rates in per_level.items():
        best = max(rates["zxing"], rates["pyzbar"])
        records.append(
            Record(
                f"vision.read_rate.{level_name}",
                "ratio",
                rates["pipeline"],
                f"zxing {rates['zxing']:.2f}, pyzbar {rates['pyzbar']:.2f}, best single {best:.2f}",
            )
        )
        records.append(Record(f"vision.pyzbar_read_rate.{level_name}", "ratio", rates["pyzbar"]))
        records.append(Record(f"vision.zxing_read_rate.{level_name}", "ratio", rates["zxing"]))
    return records

"""The cheap pass, the early-out for frames with no label, the new render conditions, the per-parcel budget."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vision.decode as decode_mod
from benchmarks.vision import LEVELS
from vision import Identity, ParcelDecoder, decode_frame
from vision.engines import Read, zbar_read, zxing_read
from vision.labels import SYMBOLOGIES, make_s10, make_sscc
from vision.synth import CLUTTER, Degradation, LabelSpec, render_frame

S10 = LabelSpec(make_s10("RR", 12345678, "CN"))
GS1_128 = LabelSpec(make_sscc(3, 4012345000017), "code128", "SW1A1AA")
GS1_DM = LabelSpec(make_sscc(0, 5012345000042), "datamatrix", "75008")
GS1_QR = LabelSpec(make_sscc(7, 9912345000099), "qr", "10115")
S10_DM = LabelSpec(make_s10("CP", 98765432, "DE"), "datamatrix")
LABELS = [S10, GS1_128, GS1_DM, GS1_QR, S10_DM]


def _ids(reads: list[Read]) -> set[str]:
    return {g.id for r in reads if isinstance(g := r.identity(), Identity)}


@pytest.fixture
def whole_frame_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Counts the escalation's whole-frame decoder calls (a read with no region)."""
    calls: list[str] = []

    def zx(image: np.ndarray, syms: object, **kw: object) -> list[Read]:
        if not kw.get("region"):
            calls.append("zxing")
        return zxing_read(image, syms, **kw)  # type: ignore[arg-type]

    def zb(image: np.ndarray, syms: object, **kw: object) -> list[Read]:
        if not kw.get("region"):
            calls.append("zbar")
        return zbar_read(image, syms, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(decode_mod, "zxing_read", zx)
    monkeypatch.setattr(decode_mod, "zbar_read", zb)
    yield calls


# ----------------------------------------------------------------------- no label: early out


@pytest.mark.parametrize("clutter", [[], *([k] for k in CLUTTER), list(CLUTTER)], ids=str)
def test_a_frame_with_no_label_yields_no_identity(clutter: list[str]) -> None:
    for seed in range(3):
        frame = render_frame([], Degradation(noise=3), np.random.default_rng(seed), clutter=clutter)
        assert _ids(decode_frame(frame)) == set()


@pytest.mark.parametrize("seed", range(4))
def test_bare_board_and_address_label_skip_the_whole_frame_fallback(
    seed: int, whole_frame_calls: list[str]
) -> None:
    # Board with its box edge and tape strip, and an address label with text only: nothing
    # there looks like a symbol, so neither engine is run on the whole frame.
    for clutter in ([], ["label"]):
        frame = render_frame([], Degradation(noise=2), np.random.default_rng(seed), clutter=clutter)
        assert decode_frame(frame) == []
    assert whole_frame_calls == []


def test_a_label_read_by_the_cheap_pass_costs_no_escalation(whole_frame_calls: list[str]) -> None:
    for i, label in enumerate(LABELS):
        frame = render_frame([label], Degradation(rotation_deg=37.0 * i, noise=2), np.random.default_rng(i))
        assert _ids(decode_frame(frame, effort="cheap")) == {label.parcel_id}
        assert _ids(decode_frame(frame)) == {label.parcel_id}
    assert whole_frame_calls == []


def test_cheap_effort_never_escalates(whole_frame_calls: list[str]) -> None:
    frame = render_frame([S10], Degradation(rotation_deg=20, damage=1.0), np.random.default_rng(1))
    assert decode_frame(frame, effort="cheap") == []
    assert whole_frame_calls == []


# ----------------------------------------------------------------------- the levels still read


@pytest.mark.parametrize("level", list(LEVELS)[:4])
def test_each_level_reads_at_least_what_each_engine_alone_reads(level: str) -> None:
    # The early-out must not cost reads: the pipeline reads every frame either engine reads.
    rng = np.random.default_rng(40 + len(level))
    read = 0
    for i in range(8):
        label = LABELS[i % 4]
        frame = render_frame([label], Degradation(rotation_deg=float(rng.uniform(0, 360)), **LEVELS[level]), rng)
        ours = _ids(decode_frame(frame))
        assert ours <= {label.parcel_id}
        for alone in (zxing_read(frame, SYMBOLOGIES), zbar_read(frame, SYMBOLOGIES)):
            if _ids(alone) == {label.parcel_id}:
                assert ours == {label.parcel_id}
        read += ours == {label.parcel_id}
    if level in ("L0", "L1", "L2"):
        assert read == 8


# ----------------------------------------------------------------------- new conditions


@pytest.mark.parametrize("label", [S10, GS1_128], ids=lambda s: s.parcel_id)
def test_tape_over_one_end_of_a_code128(label: LabelSpec) -> None:
    for seed in range(3):
        deg = Degradation(rotation_deg=25.0 + 60 * seed, tape=0.2, noise=2)
        assert _ids(decode_frame(render_frame([label], deg, np.random.default_rng(seed)))) == {label.parcel_id}


@pytest.mark.parametrize("label", LABELS, ids=lambda s: f"{s.symbology}-{s.parcel_id}")
def test_faded_print(label: LabelSpec) -> None:
    deg = Degradation(rotation_deg=80, contrast=0.2, noise=3)  # print contrast about 0.18
    assert _ids(decode_frame(render_frame([label], deg, np.random.default_rng(2)))) == {label.parcel_id}


@pytest.mark.parametrize("scale", [0.45, 0.7, 1.3])
@pytest.mark.parametrize("label", [GS1_DM, S10_DM], ids=lambda s: s.parcel_id)
def test_datamatrix_at_any_size(label: LabelSpec, scale: float) -> None:
    deg = Degradation(rotation_deg=200 * scale, scale=scale, noise=1)
    assert _ids(decode_frame(render_frame([label], deg, np.random.default_rng(3)))) == {label.parcel_id}


@pytest.mark.parametrize("rotation", [15, 105, 315])
def test_a_small_module_datamatrix_the_half_size_copy_misses_is_read_at_full_size(rotation: int) -> None:
    # A 0.75x GS1 Data Matrix turned at these angles: its region is large enough to be decoded
    # from the half-size copy, whose modules are then too small to read, and it looks no more
    # like a symbol than text does, so it was not escalated (zxing-cpp alone read it).
    deg = Degradation(rotation_deg=rotation, scale=0.75, noise=1)
    frame = render_frame([GS1_DM], deg, np.random.default_rng(rotation))
    assert _ids(decode_frame(frame, effort="cheap")) == set()  # the case: the cheap pass misses it
    assert _ids(zxing_read(frame, SYMBOLOGIES)) == {GS1_DM.parcel_id}
    assert _ids(decode_frame(frame)) == {GS1_DM.parcel_id}


def test_saturating_glare_is_rendered_and_never_misread() -> None:
    frame = render_frame([S10], Degradation(rotation_deg=0, glare_patch=0.3), np.random.default_rng(4))
    assert (frame == 255).sum() > 2000  # a saturated patch
    for i, label in enumerate(LABELS):
        deg = Degradation(rotation_deg=50.0 * i, glare_patch=0.22, noise=2)
        assert _ids(decode_frame(render_frame([label], deg, np.random.default_rng(i)))) <= {label.parcel_id}


def test_new_conditions_off_leave_frames_unchanged() -> None:
    # The benchmark's frames must stay the same frames: disabled conditions draw nothing.
    a = render_frame([GS1_QR], Degradation(rotation_deg=5, noise=5), np.random.default_rng(9))
    b = render_frame([GS1_QR], Degradation(rotation_deg=5, noise=5, tape=0.0, glare_patch=0.0),
                     np.random.default_rng(9), clutter=())
    assert np.array_equal(a, b)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    label=st.sampled_from(LABELS),
    rotation=st.floats(0, 360),
    blur=st.floats(0, 1.2),
    noise=st.floats(0, 8),
    contrast=st.floats(0.15, 1.0),
    glare_patch=st.sampled_from([0.0, 0.1, 0.25]),
    tape=st.sampled_from([0.0, 0.15, 0.3]),
    damage=st.sampled_from([0.0, 0.05, 0.3]),
    clutter=st.lists(st.sampled_from(CLUTTER), max_size=2, unique=True),
    seed=st.integers(0, 2**16),
)
def test_no_wrong_identity_under_random_degradations(
    label: LabelSpec, rotation: float, blur: float, noise: float, contrast: float,
    glare_patch: float, tape: float, damage: float, clutter: list[str], seed: int,
) -> None:
    deg = Degradation(rotation_deg=rotation, blur=blur, noise=noise, contrast=contrast,
                      glare_patch=glare_patch, tape=tape, damage=damage)
    frame = render_frame([label], deg, np.random.default_rng(seed), clutter=clutter)
    assert _ids(decode_frame(frame)) <= {label.parcel_id}


# ----------------------------------------------------------------------- per-parcel budget


async def test_a_parcel_read_by_the_cheap_pass_is_not_escalated() -> None:
    rng = np.random.default_rng(5)
    frames = [render_frame([S10], Degradation(rotation_deg=70.0 * k, noise=3), rng) for k in range(3)]
    async with ParcelDecoder(workers=2) as dec:
        got = await dec.decode_parcel(frames, deadline_s=30.0)
    assert got.status == "read" and got.parcel_id == S10.parcel_id
    assert dec.escalations == 0


async def test_frames_that_read_nothing_are_escalated_and_can_be_kept_cheap() -> None:
    rng = np.random.default_rng(6)
    empty = [render_frame([], Degradation(noise=3), rng, clutter=["print"]) for _ in range(2)]
    async with ParcelDecoder(workers=1) as dec:
        full = await dec.decode_parcel(empty, deadline_s=30.0)
        assert full.status == "no_read" and dec.escalations == 2
        cheap = await dec.decode_parcel(empty, deadline_s=30.0, escalate=False)
        assert cheap.status == "no_read" and cheap.frames == 2 and dec.escalations == 2


async def test_a_label_in_one_frame_is_read_while_the_others_hold_nothing() -> None:
    rng = np.random.default_rng(7)
    frames = [render_frame([], Degradation(noise=3), rng, clutter=["tape"]) for _ in range(3)]
    frames.insert(2, render_frame([GS1_DM], Degradation(rotation_deg=33, noise=3), rng))
    async with ParcelDecoder(workers=1) as dec:
        got = await dec.decode_parcel(frames, deadline_s=30.0)
    assert got.status == "read" and got.parcel_id == GS1_DM.parcel_id
    assert {r.frame for r in got.evidence} == {2}

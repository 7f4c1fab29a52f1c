"""ParcelDecoder off the event loop, with deadlines; frame sources from files and the camera stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision import ParcelDecoder
from vision.camstream import CameraFrame, write_frame
from vision.labels import make_s10, make_sscc
from vision.sources import FrameSourceError, camera_frames, image_directory, parcel_frames
from vision.synth import Degradation, LabelSpec, render_frame

S10 = LabelSpec(make_s10("RR", 12345678, "CN"))
SSCC = LabelSpec(make_sscc(3, 4012345000017), "datamatrix", "SW1A1AA")


def _frames(labels: list[LabelSpec], n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [render_frame(labels, Degradation(rotation_deg=70.0 * k, noise=4), rng) for k in range(n)]


async def test_decode_parcel_read_with_evidence() -> None:
    async with ParcelDecoder(workers=2) as dec:
        got = await dec.decode_parcel(_frames([SSCC], 3), deadline_s=10.0)
    assert got.status == "read" and got.parcel_id == SSCC.parcel_id
    assert got.identity is not None and got.identity.postal_code == "SW1A1AA"
    assert got.frames == 3
    assert {r.frame for r in got.evidence} == {0, 1, 2}
    assert all(r.symbology == "datamatrix" and r.engine and r.region for r in got.evidence)


async def test_no_read_multi_read_and_empty() -> None:
    async with ParcelDecoder(workers=1) as dec:
        blank = await dec.decode_parcel(_frames([], 2), deadline_s=10.0)
        double = await dec.decode_parcel(_frames([S10, SSCC], 1), deadline_s=10.0)
        nothing = await dec.decode_parcel([], deadline_s=1.0)
    assert blank.status == "no_read" and blank.identity is None
    assert double.status == "multi_read" and double.identity is None and len(double.identities) == 2
    assert nothing.status == "no_read" and nothing.frames == 0


async def test_deadline_passed_is_a_timeout_and_the_decoder_stays_usable() -> None:
    async with ParcelDecoder(workers=1) as dec:
        late = await dec.decode_parcel(_frames([S10], 6), deadline_s=0.0)
        assert late.status == "timeout" and late.identity is None
        again = await dec.decode_parcel(_frames([S10], 1), deadline_s=10.0)
        assert again.status == "read" and again.parcel_id == S10.parcel_id


async def test_process_workers_give_the_same_answer() -> None:
    async with ParcelDecoder(workers=1, executor="process") as dec:
        got = await dec.decode_parcel(_frames([S10], 2), deadline_s=30.0)
    assert got.status == "read" and got.parcel_id == S10.parcel_id


async def test_closed_decoder_refuses_work() -> None:
    dec = ParcelDecoder(workers=1)
    await dec.close()
    await dec.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await dec.decode_parcel(_frames([S10], 1), deadline_s=1.0)


def test_image_directory_in_name_order_and_bad_files_named(tmp_path: Path) -> None:
    frames = _frames([S10], 2)
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), f)
    (tmp_path / "notes.txt").write_text("not an image")
    got = list(image_directory(tmp_path))
    assert [p.name for p, _ in got] == ["f0.png", "f1.png"]
    assert np.array_equal(got[0][1], frames[0])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(FrameSourceError, match="broken.png"):
        list(image_directory(tmp_path))
    with pytest.raises(FrameSourceError, match="not a directory"):
        image_directory(tmp_path / "nowhere")


async def test_camera_stream_frames_grouped_by_parcel() -> None:
    images = _frames([S10], 3)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for seq, (tid, img) in enumerate(zip([7, 7, 8], images, strict=True)):
            frame = CameraFrame(seq, tid, 100 + tid, "top", 0.0, img)
            await write_frame(writer, frame, "png" if seq == 1 else "gray8")
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        groups = [(tid, fs) async for tid, fs in parcel_frames(camera_frames(reader))]
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    assert [(tid, len(fs)) for tid, fs in groups] == [(7, 2), (8, 1)]
    assert np.array_equal(groups[0][1][1].image, images[1])
    async with ParcelDecoder(workers=1) as dec:
        got = await dec.decode_parcel([f.image for f in groups[0][1]], deadline_s=10.0)
    assert got.parcel_id == S10.parcel_id


async def test_a_dead_decode_worker_is_replaced() -> None:
    # A decoder library crashing kills its worker process; the pool is then broken for good.
    # The parcel being decoded fails (a no-read, not an exception); the next one is read again.
    async with ParcelDecoder(workers=1, executor="process") as dec:
        first = await dec.decode_parcel(_frames([S10], 1), deadline_s=30.0)
        assert first.status == "read"
        for proc in list(dec._pool._processes.values()):  # type: ignore[attr-defined]
            proc.kill()
            proc.join()
        await asyncio.sleep(0.2)  # the pool notices its dead worker
        during = await dec.decode_parcel(_frames([S10], 1), deadline_s=30.0)
        after = await dec.decode_parcel(_frames([S10], 1), deadline_s=30.0)
    assert during.status in ("read", "no_read")  # read if the pool was already replaced on submit
    assert after.status == "read" and after.parcel_id == S10.parcel_id
    assert dec.pool_restarts == 1

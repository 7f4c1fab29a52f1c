"""The camera stream: every consumer gets every frame, tagged; an overloaded renderer drops."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from plc_sim.camera import CameraServer, label_view
from plc_sim.parcels import LabelKind
from vision.camstream import CameraFrame, read_frame
from vision.synth import Degradation, render_frame


def flat(labels: object, deg: object, rng: np.random.Generator, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    return np.full((size[1], size[0]), 128, dtype=np.uint8)


async def eventually(ok: Callable[[], bool]) -> None:
    for _ in range(500):
        if ok():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5 s")


async def test_every_consumer_receives_every_frame_in_order() -> None:
    cam = CameraServer(port=0, size=(32, 24), render=flat)
    await cam.start()
    try:
        conns = [await asyncio.open_connection("127.0.0.1", cam.port) for _ in range(2)]
        await eventually(lambda: cam.stats.clients == 2)
        for tid in (5, 6, 7):
            assert cam.trigger(tid, 1000 + tid, [], Degradation())
        for reader, _ in conns:
            frames = [await asyncio.wait_for(read_frame(reader), 5) for _ in range(3)]
            assert [f.seq for f in frames] == [1, 2, 3]
            assert [(f.tracking_id, f.trigger_count) for f in frames] == [(5, 1005), (6, 1006), (7, 1007)]
            assert frames[0].image.shape == (24, 32)
        for _, writer in conns:
            writer.close()
        assert cam.stats.frames == 3 and len(cam.stats.lag_s) == 3
    finally:
        await cam.stop()


async def test_a_slow_renderer_drops_frames_and_counts_them() -> None:
    gate = threading.Event()

    def slow(labels: object, deg: object, rng: np.random.Generator, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
        gate.wait(5)
        return flat(labels, deg, rng, size)

    cam = CameraServer(port=0, size=(8, 8), render=slow, max_pending=2)
    await cam.start()
    try:
        results = [cam.trigger(t, t, [], Degradation()) for t in range(5)]
        assert results == [True, True, False, False, False]
        assert cam.stats.dropped == 3
        gate.set()
        await eventually(lambda: cam.stats.frames == 2)
    finally:
        gate.set()
        await cam.stop()


def test_the_real_renderer_draws_what_the_label_kind_says() -> None:
    rng = np.random.default_rng(1)
    labels, deg = label_view("RR123456785CN", "", int(LabelKind.OK), 0.1, 0, rng)
    assert [s.parcel_id for s in labels] == ["RR123456785CN"] and deg.damage == 0
    labels, deg = label_view("RR123456785CN", "CC000000013GB", int(LabelKind.DOUBLE), 0.1, 1, rng)
    assert [s.parcel_id for s in labels] == ["RR123456785CN", "CC000000013GB"]
    assert labels[0].symbology == "datamatrix"
    assert label_view("RR123456785CN", "", int(LabelKind.MISSING), 0.1, 0, rng)[0] == []
    assert label_view("RR123456785CN", "", int(LabelKind.DAMAGED), 0.5, 0, rng)[1].damage >= 0.6
    img = render_frame(*label_view("RR123456785CN", "", int(LabelKind.OK), 0.0, 0, rng), rng, (320, 256))
    assert img.shape == (256, 320) and img.dtype == np.uint8 and img.std() > 5


async def _frames(reader: asyncio.StreamReader, n: int) -> list[CameraFrame]:
    return [await read_frame(reader) for _ in range(n)]


async def test_a_consumer_that_stops_reading_loses_frames_not_the_others_and_not_the_loop() -> None:
    """Frames leave from sender threads: a stuck consumer costs itself frames (counted), while
    the loop keeps answering and the consumer that reads gets every frame in order."""
    cam = CameraServer(port=0, size=(1280, 1024), render=flat, max_pending=64)
    await cam.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", cam.port)
        stuck = socket.create_connection(("127.0.0.1", cam.port))  # connected, never reads
        await eventually(lambda: cam.stats.clients == 2)
        n = 60  # 80 MB: more than the stuck consumer's queue and both socket buffers hold
        reading = asyncio.create_task(_frames(reader, n))
        for tid in range(1, n + 1):
            assert cam.trigger(tid, tid, [], Degradation())
            await asyncio.sleep(0.005)  # a camera's pace; the loop is free while frames are written
        frames = await asyncio.wait_for(reading, 30)
        assert [f.tracking_id for f in frames] == list(range(1, n + 1))
        await eventually(lambda: cam.stats.frames == n)
        assert cam.stats.skipped > 0 and cam.stats.dropped == 0
        writer.close()
        stuck.close()
        await eventually(lambda: cam.stats.clients == 0)  # both hang-ups noticed
    finally:
        await cam.stop()

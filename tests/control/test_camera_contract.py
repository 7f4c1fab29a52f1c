"""A camera built from docs/plc-interface.md ("Camera stream") alone, against the real consumer.

The camera here frames its bytes with `struct` and `json` as the doc says (it does not use
`vision.camstream`); the controller's `CameraFeed` and its camera worker consume them, so a
frame with a rendered label must come back as its parcel's identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from control.lifecycle import ScanStatus
from control.service.camera import CameraFeed
from control.service.feeds import DecodeResult
from vision.labels import make_s10, make_sscc
from vision.synth import Degradation, LabelSpec, render_frame

DOC = Path(__file__).resolve().parents[2] / "docs" / "plc-interface.md"

# --- the camera side, from the doc --------------------------------------------------------
MAGIC = b"SCF1"
U32 = struct.Struct(">I")  # "all integers are unsigned 32-bit big-endian"
MAX_HEADER = 65536
MAX_PAYLOAD = 67108864
SIZE = (1280, 1024)  # plc.camera.width x height in config/site.yaml


def header(seq: int, tracking_id: int, trigger_count: int, width: int, height: int, encoding: str) -> bytes:
    return json.dumps(
        {"seq": seq, "tracking_id": tracking_id, "trigger_count": trigger_count, "camera": "tunnel-1",
         "timestamp": 1700000000.25, "width": width, "height": height, "encoding": encoding},
        separators=(",", ":"),
    ).encode("utf-8")


def message(head: bytes, payload: bytes) -> bytes:
    return MAGIC + U32.pack(len(head)) + head + U32.pack(len(payload)) + payload


def frame(
    seq: int, tracking_id: int, trigger_count: int, image: npt.NDArray[np.uint8], encoding: str = "gray8"
) -> bytes:
    height, width = image.shape
    if encoding == "gray8":
        payload = np.ascontiguousarray(image, dtype=np.uint8).tobytes()  # rows top to bottom
    else:
        ok, png = cv2.imencode(".png", image)
        assert ok
        payload = png.tobytes()
    return message(header(seq, tracking_id, trigger_count, width, height, encoding), payload)


def blank(seq: int, tracking_id: int) -> bytes:
    """A small frame with no label (a no-read): cheap to decode."""
    return frame(seq, tracking_id, 1000 + tracking_id, np.full((16, 16), 200, dtype=np.uint8))


class Camera:
    """The TCP server side: every connected consumer gets every frame; consumers send nothing."""

    def __init__(self) -> None:
        self.clients: list[asyncio.StreamWriter] = []
        self.connections = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def listen(self, sock: socket.socket | None = None) -> int:
        if sock is None:
            self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        else:
            self._server = await asyncio.start_server(self._on_client, sock=sock)
        return int(self._server.sockets[0].getsockname()[1])

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        self.clients.append(writer)
        try:
            await reader.read()  # returns at EOF: the consumer left
        except ConnectionError:
            pass
        finally:
            self.clients.remove(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)

    async def send(self, data: bytes) -> None:
        for w in list(self.clients):
            w.write(data)
            await w.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for w in list(self.clients):
            w.close()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)


# --- helpers --------------------------------------------------------------------------------
async def eventually(ok: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not ok():
        if loop.time() > end:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        await asyncio.sleep(0.01)


async def results(feed: CameraFeed, n: int) -> list[DecodeResult]:
    got: list[DecodeResult] = []

    def enough() -> bool:
        got.extend(feed.poll())
        return len(got) >= n

    await eventually(enough, f"{n} decode result(s)")
    return got


Executor = Literal["thread", "process"]


@pytest.fixture
def executor() -> Executor:
    return "thread"  # the camera worker in threads of the test process (same protocol, no spawn)


@pytest.fixture
async def camera() -> AsyncIterator[Camera]:
    cam = Camera()
    try:
        yield cam
    finally:
        await cam.close()


@contextlib.asynccontextmanager
async def feed_on(port: int, executor: Executor) -> AsyncIterator[CameraFeed]:
    # a generous decode deadline: these tests check what comes back, not how fast
    feed = CameraFeed("127.0.0.1", port, deadline_s=30.0, executor=executor)
    await feed.warm_up()
    try:
        yield feed
    finally:
        await feed.close()


async def connected(camera: Camera, feed: CameraFeed, connections: int) -> None:
    await eventually(lambda: camera.connections == connections and len(camera.clients) == 1 and feed.healthy,
                     f"connection {connections} up")


# --- the doc's worked example ---------------------------------------------------------------
def doc_example() -> bytes:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Camera stream"):]
    example = section[section.index("### Worked example"):]
    dump = example[example.index("```\n") + 4:]
    dump = dump[: dump.index("```")]
    out = bytearray()
    for line in dump.splitlines():
        m = re.match(r"([0-9a-f]{4})  ((?:[0-9a-f]{2} ?){1,16})", line)
        assert m is not None, line
        assert int(m.group(1), 16) == len(out)
        out += bytes.fromhex(m.group(2))
    return bytes(out)


async def test_the_docs_worked_example_is_a_frame_the_controller_reads(
    camera: Camera, executor: Executor
) -> None:
    image = np.array([[0x00, 0x40, 0x80, 0xFF], [0xFF, 0x80, 0x40, 0x00]], dtype=np.uint8)
    ours = frame(7, 1042, 305000, image)
    assert ours == doc_example()
    assert ours[4:8] == bytes.fromhex("00000089")
    port = await camera.listen()
    async with feed_on(port, executor) as feed:
        await connected(camera, feed, 1)
        await camera.send(ours)
        (got,) = await results(feed, 1)
    assert (got.tracking_id, got.trigger_count, got.status) == (1042, 305000, ScanStatus.NO_READ)
    assert feed.frames == 1 and feed.lost_frames == 0


# --- real labels, both encodings ------------------------------------------------------------
S10 = LabelSpec(make_s10("RR", 12345678, "CN"), "code128")
SSCC = LabelSpec(make_sscc(3, 4012345000017), "datamatrix", "SW1A1AA")


@pytest.mark.parametrize("executor", ["thread", "process"])
@pytest.mark.parametrize(("spec", "encoding"), [(S10, "gray8"), (SSCC, "png")], ids=["s10-gray8", "sscc-png"])
async def test_a_label_frame_comes_back_as_its_parcels_identity(
    camera: Camera, executor: Executor, spec: LabelSpec, encoding: str
) -> None:
    rng = np.random.default_rng(7)
    image = render_frame([spec], Degradation(rotation_deg=30.0, noise=3.0), rng, SIZE)
    assert image.shape == (SIZE[1], SIZE[0])
    port = await camera.listen()
    async with feed_on(port, executor) as feed:
        await connected(camera, feed, 1)
        await camera.send(frame(1, 501, 4_294_967_000, image, encoding))  # a count near the wrap
        (got,) = await results(feed, 1)
    assert got.status == ScanStatus.READ, got
    assert (got.tracking_id, got.trigger_count, got.identity) == (501, 4_294_967_000, spec.parcel_id)
    assert got.postal_code == spec.postal_code


async def test_every_consumer_gets_every_frame(camera: Camera, executor: Executor) -> None:
    port = await camera.listen()
    async with feed_on(port, executor) as a, feed_on(port, executor) as b:
        await eventually(lambda: len(camera.clients) == 2 and a.healthy and b.healthy, "two consumers")
        for seq, tid in ((1, 11), (2, 12)):
            await camera.send(blank(seq, tid))
        for feed in (a, b):
            got = await results(feed, 2)
            assert sorted((r.tracking_id, r.trigger_count) for r in got) == [(11, 1011), (12, 1012)]


# --- bad frames: the connection ends, the feed reconnects and keeps working -----------------
def _bad_frames() -> dict[str, bytes]:
    good = header(2, 20, 1020, 4, 2, "gray8")
    return {
        "bad-magic": b"SCF2" + U32.pack(len(good)) + good + U32.pack(8) + bytes(8),
        "header-over-limit": MAGIC + U32.pack(MAX_HEADER + 1),  # refused before the header is read
        "payload-over-limit": MAGIC + U32.pack(len(good)) + good + U32.pack(MAX_PAYLOAD + 1),
        "header-not-json": message(b"seq=2", bytes(8)),
        "header-key-missing": message(json.dumps({"seq": 2, "width": 4, "height": 2}).encode(), bytes(8)),
        "gray8-wrong-length": message(good, bytes(7)),
        "unknown-encoding": message(header(2, 20, 1020, 4, 2, "jpeg"), bytes(8)),
        "png-wrong-size": message(header(2, 20, 1020, 4, 2, "png"),
                                  cv2.imencode(".png", np.zeros((3, 3), np.uint8))[1].tobytes()),
        # these two used to end the feed's task for good (cv2.error, OverflowError): camera down
        # and the unit held until someone restarted the service
        "png-empty-payload": message(header(2, 20, 1020, 4, 2, "png"), b""),
        "number-out-of-range": message(header(2, 20, 1020, 4, 2, "gray8").replace(b'"tracking_id":20', b'"tracking_id":1e400'),
                                       bytes(8)),
    }


@pytest.mark.parametrize("bad", list(_bad_frames()))
async def test_a_bad_frame_ends_the_connection_and_the_feed_reconnects(
    camera: Camera, executor: Executor, bad: str
) -> None:
    port = await camera.listen()
    async with feed_on(port, executor) as feed:
        await connected(camera, feed, 1)
        await camera.send(blank(1, 10))
        await results(feed, 1)
        await camera.send(_bad_frames()[bad])
        await connected(camera, feed, 2)  # the feed closed the stream and came back by itself
        await camera.send(blank(3, 30))
        (got,) = await results(feed, 1)
        assert (got.tracking_id, got.trigger_count) == (30, 1030)
        assert feed.frames == 2  # the bad frame is not one


async def test_a_header_at_the_limit_is_accepted(camera: Camera, executor: Executor) -> None:
    head = header(1, 40, 1040, 16, 16, "gray8")
    head = head[:-1] + b" " * (MAX_HEADER - len(head)) + b"}"  # JSON whitespace up to 64 KiB
    assert len(head) == MAX_HEADER
    port = await camera.listen()
    async with feed_on(port, executor) as feed:
        await connected(camera, feed, 1)
        await camera.send(message(head, bytes(16 * 16)))
        (got,) = await results(feed, 1)
        assert (got.tracking_id, got.trigger_count) == (40, 1040)
        assert camera.connections == 1


# --- seq gaps and a camera that is not up yet -----------------------------------------------
async def test_skipped_seqs_are_counted_as_lost_frames(camera: Camera, executor: Executor) -> None:
    port = await camera.listen()
    async with feed_on(port, executor) as feed:
        await connected(camera, feed, 1)
        for seq, tid in ((1, 1), (2, 2), (5, 5), (6, 6), (9, 9)):  # 3, 4, 7, 8 never sent
            await camera.send(blank(seq, tid))
        got = await results(feed, 5)
        assert sorted(r.tracking_id for r in got) == [1, 2, 5, 6, 9]
        assert feed.frames == 5 and feed.lost_frames == 4


async def test_the_feed_connects_once_the_camera_listens(camera: Camera, executor: Executor) -> None:
    # a bound socket that does not listen yet refuses connections: the camera is "down"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        async with feed_on(port, executor) as feed:
            await asyncio.sleep(0.2)  # a few refused connects
            assert not feed.healthy and feed.down_for > 0
            await camera.listen(sock)  # the server owns the socket from here
            sock = None
            await connected(camera, feed, 1)
            assert feed.down_for == 0.0
            await camera.send(blank(1, 50))
            (got,) = await results(feed, 1)
            assert got.tracking_id == 50
    finally:
        if sock is not None:
            sock.close()


# --- the worker: its budget, its death, and ours ---------------------------------------------
async def test_a_frame_that_waited_past_its_budget_is_answered_late_not_decoded(camera: Camera) -> None:
    # a budget of a microsecond has always passed by the time a decode thread takes the frame
    rng = np.random.default_rng(3)
    image = render_frame([S10], Degradation(), rng, SIZE)
    port = await camera.listen()
    feed = CameraFeed("127.0.0.1", port, deadline_s=1e-6, executor="thread")
    await feed.warm_up()
    try:
        await connected(camera, feed, 1)
        await camera.send(frame(1, 70, 1070, image))
        (got,) = await results(feed, 1)
    finally:
        await feed.close()
    assert (got.tracking_id, got.status, got.identity) == (70, ScanStatus.TIMEOUT, "")
    assert "budget" in got.detail


async def test_a_killed_worker_process_is_replaced_and_decoding_goes_on(camera: Camera) -> None:
    port = await camera.listen()
    async with feed_on(port, "process") as feed:
        await connected(camera, feed, 1)
        await camera.send(blank(1, 80))
        await results(feed, 1)
        proc = feed._proc
        assert proc is not None and proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)  # a decoder library crashing on an image
        await eventually(lambda: feed.restarts == 1, "the worker replaced")
        await connected(camera, feed, 2)
        await camera.send(blank(2, 81))
        (got,) = await results(feed, 1)
        assert got.tracking_id == 81 and feed.frames == 2

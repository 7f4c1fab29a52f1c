"""The camera stream wire format: how a (simulated or real) camera pushes frames over TCP.

A camera is a TCP server; every connected consumer receives every frame. One message is

    b"SCF1" | u32 header_len | header (UTF-8 JSON) | u32 payload_len | payload

all integers big-endian. The header carries ``seq`` (per camera, +1 per frame, so a consumer
detects lost frames), ``tracking_id`` and ``trigger_count`` (the conveyor PLC's scan trigger
the frame belongs to), ``camera`` (name), ``width``, ``height``, ``encoding`` ("gray8": raw
row-major uint8, or "png") and ``timestamp`` (camera clock, seconds).
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

MAGIC = b"SCF1"
MAX_HEADER = 64 * 1024
MAX_PAYLOAD = 64 * 1024 * 1024
_U32 = struct.Struct(">I")


class StreamError(Exception):
    """The byte stream is not a valid camera stream (bad magic, oversize, bad header)."""


@dataclass(frozen=True, slots=True)
class CameraFrame:
    """One frame as a camera delivers it, tagged with the trigger it was taken for."""

    seq: int
    tracking_id: int
    trigger_count: int
    camera: str
    timestamp: float
    image: npt.NDArray[np.uint8]  # 2-D gray (H, W)


def encode_frame(frame: CameraFrame, encoding: str = "gray8") -> bytes:
    img = np.ascontiguousarray(frame.image, dtype=np.uint8)
    if img.ndim != 2:
        raise ValueError("camera frames are single-channel gray images")
    if encoding == "gray8":
        payload = img.tobytes()
    elif encoding == "png":
        ok, buf = cv2.imencode(".png", img)
        if not ok:
            raise ValueError("PNG encoding failed")
        payload = buf.tobytes()
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    header = json.dumps(
        {
            "seq": frame.seq,
            "tracking_id": frame.tracking_id,
            "trigger_count": frame.trigger_count,
            "camera": frame.camera,
            "timestamp": frame.timestamp,
            "width": int(img.shape[1]),
            "height": int(img.shape[0]),
            "encoding": encoding,
        },
        separators=(",", ":"),
    ).encode()
    return b"".join((MAGIC, _U32.pack(len(header)), header, _U32.pack(len(payload)), payload))


def decode_message(header_bytes: bytes, payload: bytes) -> CameraFrame:
    try:
        h = json.loads(header_bytes)
        width, height, encoding = int(h["width"]), int(h["height"]), str(h["encoding"])
        image: npt.NDArray[np.uint8]
        if encoding == "gray8":
            if len(payload) != width * height:
                raise StreamError(f"payload {len(payload)} bytes, expected {width * height}")
            image = np.frombuffer(payload, dtype=np.uint8).reshape(height, width)
        elif encoding == "png":
            decoded = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
            if decoded is None or decoded.shape != (height, width):
                raise StreamError("PNG payload does not decode to the announced size")
            image = np.asarray(decoded, dtype=np.uint8)
        else:
            raise StreamError(f"unknown encoding {encoding!r}")
        return CameraFrame(
            seq=int(h["seq"]),
            tracking_id=int(h["tracking_id"]),
            trigger_count=int(h["trigger_count"]),
            camera=str(h["camera"]),
            timestamp=float(h["timestamp"]),
            image=image,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StreamError(f"bad frame header: {exc}") from exc


def check_magic(magic: bytes | bytearray) -> None:
    """A message's first 4 bytes."""
    if magic != MAGIC:
        raise StreamError(f"bad magic {bytes(magic)!r}")


def header_length(word: bytes | bytearray) -> int:
    """The u32 after the magic, refused over the limit before the header is read."""
    (hlen,) = _U32.unpack(word)
    if hlen > MAX_HEADER:
        raise StreamError(f"header of {hlen} bytes is over the limit")
    return int(hlen)


def payload_length(word: bytes | bytearray) -> int:
    """The u32 after the header, refused over the limit before the payload is read."""
    (plen,) = _U32.unpack(word)
    if plen > MAX_PAYLOAD:
        raise StreamError(f"payload of {plen} bytes is over the limit")
    return int(plen)


async def read_frame(reader: asyncio.StreamReader) -> CameraFrame:
    """Read one frame; raises asyncio.IncompleteReadError at a clean end of stream."""
    check_magic(await reader.readexactly(4))
    header = await reader.readexactly(header_length(await reader.readexactly(4)))
    payload = await reader.readexactly(payload_length(await reader.readexactly(4)))
    return decode_message(header, payload)


async def write_frame(writer: asyncio.StreamWriter, frame: CameraFrame, encoding: str = "gray8") -> None:
    writer.write(encode_frame(frame, encoding))
    await writer.drain()

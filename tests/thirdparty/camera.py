"""A camera tunnel built from docs/plc-interface.md "Camera stream" alone.

It is a TCP server; every consumer gets every frame (``SCF1`` framing, big-endian lengths, a
JSON header, a ``gray8`` payload). The conveyor PLC hands it each scan trigger directly (the
"I/O message from the PLC" option of the spec), with the tracking id and trigger count copied
unchanged; the frame shows the physical parcel under the scanner: a gray belt, the parcel's top,
and a white label with the parcel's id as a Code 128 (a GS1-128 ``(00)`` SSCC for the 18-digit
ids, since a plain Code 128 of an SSCC is "anything else that decodes": a bad read, docs/vision
rules as quoted in plc-interface.md). Narrow bar 2 px, label about 0.45 of the frame wide, as
the spec says the decoder is measured on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from functools import lru_cache

import numpy as np
import zxingcpp

log = logging.getLogger("thirdparty.camera")
MAX_BACKLOG = 64 * 1024 * 1024  # a consumer this far behind is dropped (one slow consumer
# must not delay the others; asyncio buffers per connection, so the others are never blocked)


@lru_cache(maxsize=4096)
def barcode(parcel_id: str) -> np.ndarray:
    """The label's symbol: Code 128 for an S10 id, GS1-128 with AI 00 for an SSCC."""
    if re.fullmatch(r"\d{18}", parcel_id):
        code = zxingcpp.create_barcode(f"(00){parcel_id}", zxingcpp.BarcodeFormat.Code128, gs1=True)
    else:
        code = zxingcpp.create_barcode(parcel_id, zxingcpp.BarcodeFormat.Code128)
    img = np.asarray(zxingcpp.write_barcode_to_image(code, scale=2, add_quiet_zones=True), dtype=np.uint8)
    if img.ndim == 3:
        img = img[:, :, 0]
    # stretch the bars vertically to a label-like height
    return np.repeat(img[:1, :], 140, axis=0) if img.shape[0] < 140 else img


def render(parcel_id: str, width: int, height: int, variant: int) -> np.ndarray:
    """One gray8 frame: belt, parcel top, white label with the symbol (position varies a little)."""
    frame = np.full((height, width), 70, dtype=np.uint8)
    code = barcode(parcel_id)
    label_w = max(int(width * 0.45), code.shape[1] + 40)
    label_h = code.shape[0] + 80
    top_w, top_h = min(width - 20, label_w + 160), min(height - 20, label_h + 200)
    dx = (variant * 37) % 61 - 30
    dy = (variant * 53) % 81 - 40
    y0, x0 = (height - top_h) // 2 + dy, (width - top_w) // 2 + dx
    frame[y0:y0 + top_h, x0:x0 + top_w] = 165
    ly, lx = y0 + (top_h - label_h) // 2, x0 + (top_w - label_w) // 2
    frame[ly:ly + label_h, lx:lx + label_w] = 245
    cy, cx = ly + 40, lx + (label_w - code.shape[1]) // 2
    frame[cy:cy + code.shape[0], cx:cx + code.shape[1]] = np.where(code < 128, 10, 245)
    return frame


def frame_bytes(header: dict[str, object], payload: bytes) -> bytes:
    """magic, header_len, header, payload_len, payload (all lengths u32 big-endian)."""
    h = json.dumps(header, separators=(",", ":")).encode()
    return b"SCF1" + len(h).to_bytes(4, "big") + h + len(payload).to_bytes(4, "big") + payload


class Camera:
    """The tunnel: a TCP server that sends one frame per scan trigger to every consumer."""

    def __init__(self, width: int, height: int, name: str = "tunnel-3p") -> None:
        self.width, self.height, self.name = width, height, name
        self.seq = 0
        self.port = 0
        self.clients: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.frames_sent = 0
        self.frames_dropped = 0  # taken while no consumer was connected
        self.connections = 0

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.add(writer)
        self.connections += 1
        try:
            while await reader.read(4096):
                pass  # consumers send nothing; anything they do send is ignored
        except (ConnectionError, OSError):
            pass
        finally:
            self.clients.discard(writer)
            writer.close()

    def trigger(self, tracking_id: int, trigger_count: int, parcel_id: str, variant: int) -> None:
        """A scan trigger: take the frame and send it to every consumer (or drop it)."""
        if not self.clients:
            self.frames_dropped += 1
            return
        self.seq = self.seq % (2**32 - 1) + 1
        img = render(parcel_id, self.width, self.height, variant)
        header = {"seq": self.seq, "tracking_id": tracking_id, "trigger_count": trigger_count,
                  "camera": self.name, "timestamp": time.time(), "width": self.width,
                  "height": self.height, "encoding": "gray8"}
        data = frame_bytes(header, img.tobytes())
        for w in list(self.clients):
            if w.transport.get_write_buffer_size() > MAX_BACKLOG:
                log.warning("camera consumer too slow, closing it")
                self.clients.discard(w)
                w.close()
                continue
            w.write(data)
        self.frames_sent += 1

    async def close(self) -> None:
        for w in list(self.clients):
            w.close()
        if self.server:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

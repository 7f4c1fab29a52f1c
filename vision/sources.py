"""Frame sources: image files, a directory of them, and the camera stream (`vision.camstream`).

Each source yields gray uint8 frames; a file that cannot be read is a `FrameSourceError`
naming it, never a silently skipped frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from vision.camstream import CameraFrame, read_frame

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".webp"})


class FrameSourceError(Exception):
    """A frame source could not deliver a frame (unreadable file, missing directory)."""


def read_image(path: Path) -> npt.NDArray[np.uint8]:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise FrameSourceError(f"{path}: not a readable image")
    return np.asarray(image, dtype=np.uint8)


def image_files(paths: Iterable[Path]) -> Iterator[tuple[Path, npt.NDArray[np.uint8]]]:
    for p in paths:
        yield p, read_image(p)


def image_directory(directory: Path) -> Iterator[tuple[Path, npt.NDArray[np.uint8]]]:
    """Every image in `directory` (not recursive), in name order."""
    if not directory.is_dir():
        raise FrameSourceError(f"{directory}: not a directory")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return image_files(files)


async def camera_frames(reader: asyncio.StreamReader) -> AsyncIterator[CameraFrame]:
    """Frames from a camera stream until it ends cleanly."""
    while True:
        try:
            yield await read_frame(reader)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise FrameSourceError(f"camera stream cut mid-frame ({len(exc.partial)} bytes)") from exc
            return


async def parcel_frames(frames: AsyncIterator[CameraFrame]) -> AsyncIterator[tuple[int, list[CameraFrame]]]:
    """Group consecutive frames by tracking id: (tracking_id, frames) once the next parcel
    starts or the stream ends. A controller that knows when a parcel has left the tunnel
    (trigger end) can group by itself instead and not wait for the next parcel."""
    current: list[CameraFrame] = []
    async for f in frames:
        if current and f.tracking_id != current[0].tracking_id:
            yield current[0].tracking_id, current
            current = []
        current.append(f)
    if current:
        yield current[0].tracking_id, current

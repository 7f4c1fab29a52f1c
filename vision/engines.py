"""Barcode decoding engines behind one call shape: zxing-cpp and zbar (pyzbar), symbologies restricted.

Both engines return `Read`s with the data as text (GS1 separators kept as 0x1D) and the
symbology as one of our names, so that the rest of the pipeline never sees an engine's types.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import zxingcpp
from pyzbar import pyzbar
from pyzbar.pyzbar import ZBarSymbol

from vision.labels import BadRead, Identity, parse_identity

Image = npt.NDArray[np.uint8]
Quad = tuple[tuple[float, float], ...]

_ZX_FORMAT = {
    "code128": zxingcpp.BarcodeFormat.Code128,
    "datamatrix": zxingcpp.BarcodeFormat.DataMatrix,
    "qr": zxingcpp.BarcodeFormat.QRCode,
}
_ZX_NAME = {v.name: k for k, v in _ZX_FORMAT.items()}
# zbar has no DataMatrix reader.
_ZBAR_SYMBOL = {"code128": ZBarSymbol.CODE128, "qr": ZBarSymbol.QRCODE}
_ZBAR_NAME = {"CODE128": "code128", "QRCODE": "qr"}


@dataclass(frozen=True, slots=True)
class Read:
    """One decoded symbol and where it came from (the evidence the event log keeps)."""

    text: str  # decoded data, GS1 separators as 0x1D, no symbology identifier
    symbology: str  # "code128", "datamatrix", "qr" (or the engine's name for anything else)
    engine: str  # "zxing" or "zbar"
    aim: str = ""  # AIM symbology identifier (]C1, ]d2, ]Q3...) when the engine reports it
    region: Quad = ()  # the located region (frame pixels) the read came from; () = whole frame
    frame: int = 0  # index of the frame within its parcel
    gs1: bool | None = field(default=None)  # FNC1 in first position; None = engine cannot tell

    def identity(self) -> Identity | BadRead:
        return parse_identity(self.text, self.symbology, self.gs1)


def zxing_read(
    image: Image,
    symbologies: Iterable[str],
    *,
    upright: bool = False,
    region: Quad = (),
    downscale: bool | None = None,
    failed: list[str] | None = None,
) -> list[Read]:
    """zxing-cpp; `upright` says the image is deskewed so rotated scans can be skipped, and a
    non-empty `region` that the image is a crop at full resolution (no downscaled passes unless
    `downscale` says so). With a `failed` list, the symbologies of symbols zxing detected but
    could not decode are appended to it (evidence that a symbol is there)."""
    wanted = [_ZX_FORMAT[s] for s in symbologies if s in _ZX_FORMAT]
    if not wanted:
        return []
    found = zxingcpp.read_barcodes(
        image,
        formats=zxingcpp.BarcodeFormats(wanted),
        try_rotate=not upright,
        try_downscale=not region if downscale is None else downscale,
        try_invert=False,
        text_mode=zxingcpp.TextMode.Plain,
        return_errors=failed is not None,
    )
    out = []
    for bc in found:
        if not bc.valid:
            if failed is not None:
                failed.append(_ZX_NAME.get(bc.format.name, bc.format.name.lower()))
            continue
        aim = bc.symbology_identifier
        out.append(
            Read(
                text=bc.text,
                symbology=_ZX_NAME.get(bc.format.name, bc.format.name.lower()),
                engine="zxing",
                aim=aim,
                region=region,
                gs1=aim in ("]C1", "]d2", "]Q3"),
            )
        )
    return out


def zbar_read(image: Image, symbologies: Iterable[str], *, region: Quad = ()) -> list[Read]:
    """zbar via pyzbar; it cannot report the GS1 flag, so `gs1` stays None."""
    symbols = [_ZBAR_SYMBOL[s] for s in symbologies if s in _ZBAR_SYMBOL]
    if not symbols:
        return []
    out = []
    for d in pyzbar.decode(image, symbols=symbols):
        out.append(
            Read(
                text=d.data.decode("latin-1"),
                symbology=_ZBAR_NAME.get(d.type, d.type.lower()),
                engine="zbar",
                region=region,
            )
        )
    return out

"""Decoding image files at the edge of the program, with OpenCV: EXIF orientation honoured, 8- and
16-bit, grey, RGB and RGBA accepted, BGR turned RGB at once. `read_image` gives what training
needs (8-bit, a fixed channel count); `read_native` keeps depth and alpha for `convert`. A file
that cannot be read raises `DataError` naming it."""
from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

from ..errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | Path, channels: int, min_size: int = 0) -> np.ndarray:
    """Decode `path` to an HxWxC uint8 RGB (C = channels, 1 or 3) array, EXIF orientation applied.

    16-bit images are scaled to 8 bits with rounding; RGBA is composited over white, then the
    alpha is dropped; grey is replicated to RGB and RGB turned grey with luminance weights.

    `min_size`: the caller resizes the image to min_size x min_size next. A JPEG whose sides are
    both at least 2, 4 or 8 times that (and divide by it) is then decoded at 1/2, 1/4 or 1/8 scale:
    libjpeg scales while decoding, several times faster than a full decode and a larger shrink.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    return convert_channels(_to_rgb8(_decode_upright(path, min_size), path), channels)


def _decode_upright(path: str | Path, min_size: int = 0) -> np.ndarray:
    """The file as OpenCV decodes it (BGR order, native depth and channels), EXIF-oriented."""
    _quiet_opencv()
    data = _read_bytes(path)
    raw = data.tobytes()
    header = _jpeg_header(raw) if raw[:2] == b"\xff\xd8" else None
    try:
        # IMREAD_UNCHANGED is the only flag that keeps 16 bits *and* alpha, and it is also the one
        # flag for which OpenCV skips EXIF orientation, so the orientation is applied below.
        image = cv2.imdecode(data, _reduced_flags(header, min_size) or cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise DataError(f"cannot read image {path}: {_opencv_reason(exc)}") from None
    if image is None:
        raise DataError(f"cannot read image {path}: not a decodable image file")
    return _orient(image, _orientation(raw, header))


@functools.cache
def _quiet_opencv() -> None:
    """OpenCV's own `[ WARN:0@...]` lines would reach the user's terminal; img2img reports every
    file it cannot read itself, with the file's name (set once, on the first decode)."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _opencv_reason(exc: cv2.error) -> str:
    """OpenCV's failure in words a user can act on, not its assertion text."""
    text = str(exc.err or exc)
    if "CV_IO_MAX_IMAGE_PIXELS" in text:
        return ("the image has more pixels than OpenCV decodes by default (2^30); set "
                "OPENCV_IO_MAX_IMAGE_PIXELS higher to allow it")
    return "OpenCV could not decode it (" + text.strip().splitlines()[-1][:200] + ")"


def _read_bytes(path: str | Path) -> np.ndarray:
    # np.fromfile + imdecode rather than cv2.imread, which cannot open non-ASCII paths on Windows.
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if data.size == 0:
        raise DataError(f"cannot read image {path}: the file is empty")
    return data


def exif_orientation(data: np.ndarray) -> int:
    """The EXIF orientation tag (1..8) of an encoded image; 1 when absent or unreadable."""
    raw = data.tobytes()
    return _orientation(raw, _jpeg_header(raw) if raw[:2] == b"\xff\xd8" else None)


def _orientation(raw: bytes, header: JpegHeader | None) -> int:
    # Only ask PIL when an EXIF block can be there: PIL decodes a whole PNG to look for one.
    # A JPEG keeps EXIF in an APP1 segment before its image data, so its header says.
    if header is not None:
        if not header.exif:
            return 1
    elif raw[:4] not in (b"II*\x00", b"MM\x00*") and not any(
            tag in raw for tag in (b"Exif", b"eXIf", b"EXIF")):  # TIFF is an EXIF structure
        return 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(raw)) as img:
                value = img.getexif().get(0x0112, 1)
    except Exception:  # PIL cannot parse every file OpenCV can; no orientation is the safe answer
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


class JpegHeader(NamedTuple):
    exif: bool  # an APP1 "Exif" segment is there
    frame: tuple[int, int, int, int, int] | None  # (marker, precision, height, width, components)


def _jpeg_header(raw: bytes) -> JpegHeader | None:
    """What a JPEG's segments before its first scan say; None if they do not parse (then the
    caller treats the file as it treats other formats)."""
    exif, frame, pos = False, None, 2
    while pos + 4 <= len(raw):
        if raw[pos] != 0xFF:
            return None
        marker = raw[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image: the header is over
            return JpegHeader(exif, frame)
        if marker == 0xE1 and raw[pos + 4:pos + 10] == b"Exif\x00\x00":
            exif = True
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and frame is None:
            size = raw[pos + 5:pos + 9]  # start of frame: precision, height, width, components
            frame = (marker, raw[pos + 4], int.from_bytes(size[:2], "big"),
                     int.from_bytes(size[2:], "big"), raw[pos + 9])
        pos += 2 + int.from_bytes(raw[pos + 2:pos + 4], "big")
    return None


_REDUCED = {8: (cv2.IMREAD_REDUCED_GRAYSCALE_8, cv2.IMREAD_REDUCED_COLOR_8),
            4: (cv2.IMREAD_REDUCED_GRAYSCALE_4, cv2.IMREAD_REDUCED_COLOR_4),
            2: (cv2.IMREAD_REDUCED_GRAYSCALE_2, cv2.IMREAD_REDUCED_COLOR_2)}


def _reduced_flags(header: JpegHeader | None, min_size: int) -> int | None:
    """imdecode flags for the largest exact 1/2, 1/4 or 1/8 scale decode of a plain 8-bit grey or
    colour DCT JPEG that keeps both sides at least `min_size`; None for a full-size decode."""
    if min_size <= 0 or header is None or header.frame is None:
        return None
    marker, precision, height, width, components = header.frame
    if marker not in (0xC0, 0xC1, 0xC2) or precision != 8 or components not in (1, 3):
        return None
    for factor, (grey, colour) in _REDUCED.items():
        if height % factor == 0 and width % factor == 0 and min(height, width) >= factor * min_size:
            return (grey if components == 1 else colour) | cv2.IMREAD_IGNORE_ORIENTATION
    return None


def _orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Undo EXIF `orientation` (1..8) so the array is upright; works for any channel layout."""
    if orientation in (5, 6, 7, 8):
        image = np.swapaxes(image, 0, 1)  # transpose, then each case is at most one flip
    flips = {2: (1,), 3: (0, 1), 4: (0,), 6: (1,), 7: (0, 1), 8: (0,)}.get(orientation, ())
    for axis in flips:
        image = np.flip(image, axis)
    return np.ascontiguousarray(image)


def _to_rgb8(image: np.ndarray, path: str | Path) -> np.ndarray:
    """HxWxC (C = 1 or 3) uint8 RGB from a decoded grey/BGR/BGRA array of any supported depth."""
    if image.ndim == 2:
        image = image[:, :, None]
    peak = {"uint8": 255.0, "uint16": 65535.0, "float32": 1.0, "float64": 1.0}.get(image.dtype.name)
    if peak is None:
        raise DataError(f"cannot read image {path}: unsupported pixel type {image.dtype}")
    if image.shape[2] in (2, 4):
        # Transparent pixels become white: training data with alpha is usually a cut-out on paper.
        pixels = image.astype(np.float32) / peak
        alpha = np.clip(pixels[:, :, -1:], 0.0, 1.0)
        image = np.rint(np.clip(pixels[:, :, :-1] * alpha + (1.0 - alpha), 0.0, 1.0) * 255.0)
        image = image.astype(np.uint8)
    elif image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(x * 255 / 65535)
    elif image.dtype != np.uint8:
        image = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if image.shape[2] == 3:
        # OpenCV decodes BGR. cvtColor swaps in one vectorised pass; a ::-1 copy is ~60x slower.
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.shape[2] != 1:
        raise DataError(f"cannot read image {path}: {image.shape[2]} channels are not supported")
    return image


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if image.shape[2] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=2)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]  # ITU-R 601 luminance weights


def read_native(path: str | Path) -> np.ndarray:
    """Decode `path` upright as HxWxC with C = 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA),
    keeping its bit depth (uint8 or uint16)."""
    image = _decode_upright(path)
    if image.dtype not in (np.uint8, np.uint16):
        raise DataError(f"cannot read image {path}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return np.ascontiguousarray(image)

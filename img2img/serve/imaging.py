"""What the server does to an image, without HTTP: decode an upload the way `img2img convert`
reads a file (OpenCV, EXIF orientation, alpha and bit depth kept), refusing more pixels than the
limit before decoding them; translate it as `convert` does (the run's preset pipeline when it
has one); encode the result as `convert` writes it; and draw a cgan sample grid as
`img2img sample` lays it out. Everything here runs in a worker thread, never on the event loop."""
from __future__ import annotations

import io
import math
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.decode import read_native
from ..data.images import encode_image, grid
from ..errors import DataError, Img2ImgError
from ..inference.convert import for_format
from ..inference.translator import Sampler, Translator
from .models import ApiError

# Output formats by the name a request gives; the file suffix each one is encoded as.
FORMATS = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg", "webp": ".webp", "bmp": ".bmp",
           "tiff": ".tiff", "tif": ".tiff"}
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp",
               ".bmp": "image/bmp", ".tiff": "image/tiff"}
_PIL_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "WEBP": ".webp", "BMP": ".bmp",
               "TIFF": ".tiff"}
MAX_PER_LABEL = 64  # images per label in one /api/sample request
MAX_SAMPLES = 1024  # images in one sample grid, over all labels
# torch's global generator is what a seed sets; two requests must not interleave their draws.
_RNG_LOCK = threading.Lock()


@dataclass(frozen=True)
class Upload:
    image: np.ndarray  # HxWxC, C in 1..4, uint8 or uint16, as read_native gives it
    suffix: str  # the format it came in (".png", ...), what the result is encoded as by default
    name: str  # the file name the client sent, for messages and the download name


def output_suffix(requested: str | None, upload_suffix: str) -> str:
    """The suffix for the format a request names ("png", "jpeg", ...; empty: the input's)."""
    if not requested:
        return upload_suffix
    suffix = FORMATS.get(requested.strip().lower().lstrip("."))
    if suffix is None:
        raise ApiError(422, f"unknown format '{requested}'; choose one of: "
                            f"{', '.join(sorted(set(FORMATS) - {'jpg', 'tif'}))}")
    return suffix


def _too_many(pixels: int, width: int, height: int, max_pixels: int) -> ApiError:
    return ApiError(413, f"the image is {width}x{height} = {pixels} pixels; this server takes "
                         f"at most {max_pixels} pixels (--max-pixels)")


def _peek(data: bytes, max_pixels: int) -> str | None:
    """The format of `data` from its header alone (PIL reads no pixels to open a file), after
    refusing one with more pixels than allowed; None when PIL cannot tell (OpenCV may yet)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's own decompression-bomb warning
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                kind = image.format
    except Image.DecompressionBombError:
        raise ApiError(413, f"the image has far more pixels than this server takes "
                            f"({max_pixels}, --max-pixels)") from None
    except Exception:  # not a format PIL knows, or a damaged header: OpenCV decides below
        return None
    if width * height > max_pixels:
        raise _too_many(width * height, width, height, max_pixels)
    return _PIL_SUFFIX.get(kind or "", ".png")


def decode(data: bytes, name: str, max_pixels: int) -> Upload:
    """An uploaded file decoded as `convert` reads one (`read_native`), or 400/413."""
    if not data:
        raise ApiError(400, "the 'image' file is empty")
    suffix = _peek(data, max_pixels)
    with tempfile.TemporaryDirectory(prefix="img2img-serve-") as folder:
        path = Path(folder) / f"upload{suffix or Path(name).suffix or '.img'}"
        path.write_bytes(data)
        try:
            image = read_native(path)
        except DataError:
            raise ApiError(400, f"'{name}' is not an image this server can read (PNG, JPEG, "
                                "WebP, BMP or TIFF; 8 or 16 bits; grey, RGB or RGBA)") from None
        except Exception as exc:  # a hostile file must not reach the server's error log as a bug
            raise ApiError(400, f"'{name}' is not an image this server can read "
                                f"({type(exc).__name__})") from None
    height, width = image.shape[:2]
    if height * width > max_pixels:
        raise _too_many(height * width, width, height, max_pixels)
    return Upload(image, suffix or ".png", name)


def check_choice(translator: Translator, direction: str | None, style: str | None
                 ) -> tuple[str | None, str | None]:
    """The direction and style a request names, checked against the run (422 otherwise)."""
    model = translator.model
    direction, style = (direction or None), (style or None)
    if direction is not None and direction not in model.directions:
        raise ApiError(422, f"model '{translator.name}' has no direction '{direction}'; choose "
                            f"one of: {', '.join(model.directions)}")
    classes = model.spec.classes
    if style is not None and not classes:
        raise ApiError(422, f"style '{style}': this {translator.name} run was trained without "
                            "styles; leave 'style' out")
    if style is not None and style not in classes:
        raise ApiError(422, f"unknown style '{style}'; this run knows: {', '.join(classes)}")
    return direction, style


def translate(translator: Translator, upload: Upload, direction: str | None,
              style: str | None, suffix: str, seed: int | None = None) -> bytes:
    """The upload translated and encoded exactly as `img2img convert` writes it (with `seed`,
    as `convert --seed` does, for runs trained with a noise input)."""
    if seed is not None and not translator.noise_dim:
        raise ApiError(422, f"seed: model '{translator.name}' was trained without a noise "
                            "input, so it gives one output per image")
    noise = None if seed is None else translator.noise(seed)
    try:
        if translator.pipeline is not None:
            result = translator.convert_image(upload.image, direction, None, style,
                                              source=upload.name, noise=noise)
        else:
            result = translator.translate_many([upload.image], direction, None, style,
                                               noise=noise)[0]
    except (Img2ImgError, RuntimeError, ValueError) as exc:
        raise ApiError(500, f"cannot translate '{upload.name}': {exc}") from None
    return encode(result, suffix)


def encode(image: np.ndarray, suffix: str) -> bytes:
    try:
        return encode_image(for_format(image, suffix), suffix)
    except Img2ImgError as exc:
        raise ApiError(422, f"{exc}; choose another format") from None


def resolve_labels(sampler: Sampler, requested: list[str]) -> list[int]:
    """Class indices for label fields: a class name, an index, or 'all' (default: all)."""
    classes = list(sampler.model.spec.classes)
    count = max(1, len(classes))
    indices: list[int] = []
    for item in requested or ["all"]:
        text = item.strip()
        if text in classes:
            indices.append(classes.index(text))
        elif text.lower() == "all":
            indices.extend(range(count))
        elif text.isdigit() and int(text) < count:
            indices.append(int(text))
        else:
            known = ", ".join(classes) if classes else "0 (an unlabelled model)"
            raise ApiError(422, f"unknown label '{item}'; this model's classes: {known} "
                                "(or 'all')")
    return indices


def sample_grid(sampler: Sampler, indices: list[int], n: int, seed: int, suffix: str) -> bytes:
    """`n` images per class index from `seed`, one row per class (a near-square block for one
    class), as `img2img sample --seed SEED` draws and lays them out."""
    if not 1 <= n <= MAX_PER_LABEL:
        raise ApiError(422, f"n must be between 1 and {MAX_PER_LABEL}, got {n}")
    if len(indices) * n > MAX_SAMPLES:
        raise ApiError(422, f"{len(indices)} label(s) x {n} = {len(indices) * n} images; one "
                            f"request draws at most {MAX_SAMPLES}")
    with _RNG_LOCK, torch.random.fork_rng(devices=[]):
        # The noise is drawn on the CPU: seed its generator alone (torch.manual_seed would
        # reseed every GPU's too, and the fork restores only the CPU's).
        torch.random.default_generator.manual_seed(seed)
        try:
            images = sampler.sample(indices, n).cpu() * 2 - 1
        except (Img2ImgError, RuntimeError, ValueError) as exc:
            raise ApiError(500, f"cannot sample: {exc}") from None
    columns = n if len(indices) > 1 else math.ceil(math.sqrt(n))
    blank = torch.full_like(images[0], -1.0)
    rows = []
    for g in range(len(indices)):
        mine = list(images[g * n:(g + 1) * n])
        for start in range(0, n, columns):
            row = mine[start:start + columns]
            rows.append(row + [blank] * (columns - len(row)))
    laid_out = {f"column_{j}": torch.stack([row[j] for row in rows]) for j in range(columns)}
    return encode(grid(laid_out, channels=images.shape[1]), suffix)


__all__ = ["FORMATS", "MEDIA_TYPES", "Upload", "check_choice", "decode", "encode",
           "output_suffix", "resolve_labels", "sample_grid", "translate"]


# -- video ----------------------------------------------------------------------------------------
def translate_video(translator: Translator, data: bytes, name: str, direction: str | None,
                    style: str | None, stabilize: str | None, max_frames: int,
                    max_pixels: int) -> bytes:
    """An uploaded clip translated as `img2img convert clip -o out.mp4` would (every frame, the
    timing and the audio kept), as H.264 MP4 bytes, which browsers play; a clip with more than
    `max_frames` frames, or frames of more than `max_pixels` pixels, is a 413 before any frame
    is translated (or as soon as the count passes the limit, where the header does not say)."""
    from ..inference.video import (
        Clip, TooManyFrames, TruncatedVideo, VideoError, translate_video as run_video,
    )

    if not data:
        raise ApiError(400, "the 'video' file is empty")
    with tempfile.TemporaryDirectory(prefix="img2img-serve-") as folder:
        src = Path(folder) / f"upload{Path(name).suffix.lower()[:8] or '.video'}"
        src.write_bytes(data)
        try:
            with Clip(src) as clip:
                width, height = clip.stream.width, clip.stream.height
                if width * height > max_pixels:
                    raise _too_many(width * height, width, height, max_pixels)
            out = Path(folder) / "result.mp4"
            run_video(translator, src, out, direction=direction, label=style,
                      stabilize=stabilize, max_frames=max_frames)
        except TooManyFrames as exc:
            raise ApiError(413, str(exc).replace(str(src), f"'{name}'") + " (--max-frames)") \
                from None
        except TruncatedVideo as exc:
            raise ApiError(400, str(exc).replace(str(src), f"'{name}'").split("; the ")[0]) \
                from None
        except VideoError as exc:
            raise ApiError(400, str(exc).replace(str(src), f"'{name}'")) from None
        return out.read_bytes()

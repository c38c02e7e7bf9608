"""The face preset's convert pipeline: find each face in a full photo, align it to the square
crop the model was trained on (as `img2img prepare faces` made them), translate the crop, warp
it back and blend it in with a feathered mask. A photo without a face is returned unchanged,
with a warning."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

from .align import crop, crop_matrix, feather_mask, paste
from .detect import Face, choose, make_detector

log = logging.getLogger("img2img")

DEFAULT_MARGIN = 0.4
DEFAULT_SIZE = 256
FACE_CHOICES = ("all", "largest")


def _peak(dtype: np.dtype) -> float:
    return 65535.0 if dtype == np.uint16 else 255.0


def _channels(image: np.ndarray, channels: int) -> np.ndarray:
    """float32 HxWx`channels`: grey repeated to colour, colour to luminance (as the model did)."""
    if image.shape[2] == channels:
        return image.astype(np.float32)
    if channels == 3:
        return np.repeat(image, 3, axis=2).astype(np.float32)
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    return (image.astype(np.float32) @ weights)[..., None]


def translate_faces(translate: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                    faces: list[Face], *, margin: float = DEFAULT_MARGIN,
                    size: int = DEFAULT_SIZE) -> np.ndarray:
    """Translate each face's aligned `size` px crop and blend it back into `image` (HxW[xC],
    uint8/uint16, alpha last when C is 2 or 4). The result has the model's colour channels
    (and `image`'s alpha); with no faces, `image` itself is returned."""
    if not faces:
        return image
    array = image if image.ndim == 3 else image[..., None]
    has_alpha = array.shape[2] in (2, 4)
    colour = array[..., :-1] if has_alpha else array
    base = None
    mask = feather_mask(size, margin)
    for face in faces:
        matrix = crop_matrix(face, size, margin)
        patch = np.asarray(translate(np.ascontiguousarray(crop(colour, matrix, size))))
        patch = patch if patch.ndim == 3 else patch[..., None]
        if base is None:
            base = _channels(colour, patch.shape[2])
        paste(base, patch.astype(np.float32), matrix, mask)
    out = np.clip(np.rint(base), 0, _peak(array.dtype)).astype(array.dtype)
    if has_alpha:
        if out.shape[2] == 1:  # grey + alpha is written as RGBA, as plain convert does
            out = np.repeat(out, 3, axis=2)
        out = np.concatenate([out, array[..., -1:]], axis=2)
    return out[..., 0] if image.ndim == 2 and out.shape[2] == 1 else out


class FacePipeline:
    """What `img2img convert` does with a run trained with the `face` preset (see the module
    docstring); `convert_options` are its own convert flags."""

    convert_options = [
        click.Option(["--faces"], type=click.Choice(FACE_CHOICES), default="all",
                     show_default=True,
                     help="face runs: translate every face found, or only the largest"),
        click.Option(["--face-margin"], type=click.FloatRange(0, 3), default=DEFAULT_MARGIN,
                     show_default=True,
                     help="face runs: margin around each face box, as a fraction of its size "
                          "(use the --margin the training crops were prepared with)"),
        click.Option(["--face-size"], type=click.IntRange(min=16), default=None,
                     help="face runs: side of the aligned crop handed to the model (default: "
                          "the size the run trained at)"),
        click.Option(["--face-detector"], type=click.Path(dir_okay=False, path_type=Path),
                     default=None,
                     help="face runs: a YuNet ONNX model for cv2.FaceDetectorYN (default: "
                          "OpenCV's bundled Haar cascades)"),
    ]

    def __init__(self) -> None:
        self._detectors: dict[Path | None, object] = {}

    def detector(self, model: Path | None = None):
        """The detector for `model` (None: Haar cascades), built once and kept."""
        if model not in self._detectors:
            self._detectors[model] = make_detector(model)
        return self._detectors[model]

    def convert(self, translate: Callable[[np.ndarray], np.ndarray], image: np.ndarray, *,
                faces: str = "all", face_margin: float = DEFAULT_MARGIN,
                face_size: int | None = None, face_detector: Path | None = None,
                source: str | Path | None = None) -> np.ndarray:
        """`image` with its faces (all, or the largest) translated in place; unchanged, with a
        warning naming `source` when given, if it holds no face."""
        if faces not in FACE_CHOICES:
            raise ValueError(f"faces must be one of {FACE_CHOICES}, got {faces!r}")
        found = choose(self.detector(face_detector)(image), faces)
        if not found:
            log.warning("no face found in %s; it is left as it is",
                        source if source is not None else "an image")
            return image
        if face_size is None:  # the run's own training size, as its checkpoint records
            face_size = getattr(getattr(translate, "spec", None), "size", DEFAULT_SIZE)
        return translate_faces(translate, image, found, margin=face_margin, size=face_size)

    def __repr__(self) -> str:
        return "FacePipeline()"

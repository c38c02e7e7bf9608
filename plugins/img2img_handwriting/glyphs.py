"""Glyph images as the handwriting preset sees them: grey uint8 arrays of dark ink on white paper.
It owns ink normalisation, the ink box and the affine fit that scales every glyph (printed or
handwritten) into the same box of a square canvas, font rendering, Otsu binarisation, and the
small geometric jitter (rotation, scale, shear, elastic) that preparation adds to a pair."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

import img2img

PAPER = 255
INK_LEVEL = 128  # a pixel darker than this (after normalisation) is ink


def to_grey(image: np.ndarray) -> np.ndarray:
    """HxW / HxWxC (C = 1..4, uint8 or uint16) -> HxW uint8; transparent pixels become paper."""
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if image.ndim == 2:
        return image
    channels = image.shape[2]
    colour = image[..., : 3 if channels >= 3 else 1].astype(np.float32)
    grey = colour.mean(axis=2) if colour.shape[2] == 3 else colour[..., 0]
    if channels in (2, 4):
        alpha = image[..., -1].astype(np.float32) / 255
        grey = grey * alpha + PAPER * (1 - alpha)
    return grey.round().astype(np.uint8)


def normalise_ink(image: np.ndarray) -> np.ndarray:
    """Grey image with dark ink on white paper, whatever it was: light-on-dark images are inverted
    (paper is the majority of a glyph image, so the median is the paper level), then the paper
    is stretched to white and the darkest ink to black."""
    grey = to_grey(image).astype(np.float32)
    if np.median(grey) < 128:
        grey = 255 - grey
    paper, ink = np.median(grey), np.percentile(grey, 0.5)
    if paper - ink < 16:  # no ink to speak of: leave the page as it is
        return grey.round().astype(np.uint8)
    stretched = (grey - ink) * (255.0 / (paper - ink))
    return stretched.clip(0, 255).round().astype(np.uint8)


def whiten_paper(grey: np.ndarray) -> np.ndarray:
    """Scale levels so the paper (the median) is pure white and black stays black: a generated
    glyph's slightly grey paper would otherwise show as a box where it is pasted onto a page."""
    paper = float(np.median(grey))
    if paper <= 0:
        return grey
    return (grey.astype(np.float32) * (255.0 / paper)).clip(0, 255).round().astype(np.uint8)


def fade_border(grey: np.ndarray, margin: int) -> np.ndarray:
    """Fade a glyph canvas to paper over its outer `margin` px, where training glyphs have none:
    a generator's border artefacts would otherwise draw a frame around every pasted glyph."""
    if margin <= 0:
        return grey
    ramps = [np.clip(np.minimum(np.arange(n), np.arange(n)[::-1]) / margin, 0, 1)
             for n in grey.shape[:2]]
    weight = ramps[0][:, None] * ramps[1][None, :]
    return (255 - (255 - grey.astype(np.float32)) * weight).round().astype(np.uint8)


def ink_box(grey: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), exclusive ends, of the pixels darker than INK_LEVEL; None if blank."""
    ys, xs = np.nonzero(grey < INK_LEVEL)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@dataclass(frozen=True)
class Fit:
    """The affine map from an image to a glyph canvas: its ink box scaled (aspect kept) so its
    longer side spans `size - 2 * margin`, centred. `matrix` is cv2's 2x3 forward matrix."""

    matrix: np.ndarray
    size: int

    def apply(self, grey: np.ndarray) -> np.ndarray:
        matrix = self.matrix.copy()
        if matrix[0, 0] < 1:  # shrink with area averaging first: a warp alone would alias
            small = cv2.resize(grey, None, fx=matrix[0, 0], fy=matrix[0, 0],
                               interpolation=cv2.INTER_AREA)
            matrix[0, 0] *= grey.shape[1] / small.shape[1]
            matrix[1, 1] *= grey.shape[0] / small.shape[0]
            grey = small
        return cv2.warpAffine(grey, matrix, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=PAPER)

    def invert(self, canvas: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """The canvas mapped back onto an image of `shape` (H, W), paper elsewhere."""
        inverse = cv2.invertAffineTransform(self.matrix)
        return cv2.warpAffine(canvas, inverse, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=PAPER)


def fit(grey: np.ndarray, size: int = 64, margin: int = 8,
        box: tuple[int, int, int, int] | None = None) -> Fit:
    """How to centre and scale `grey`'s ink (or `box`) into a `size` px canvas."""
    box = box or ink_box(grey) or (0, 0, grey.shape[1], grey.shape[0])
    x0, y0, x1, y1 = box
    scale = (size - 2 * margin) / max(x1 - x0, y1 - y0, 1)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # Pixel centres: a box [x0, x1) has its middle at (x0 + x1) / 2 - 0.5.
    tx = (size - 1) / 2 - scale * (cx - 0.5)
    ty = (size - 1) / 2 - scale * (cy - 0.5)
    return Fit(np.array([[scale, 0.0, tx], [0.0, scale, ty]], np.float64), size)


def normalise_glyph(image: np.ndarray, size: int = 64, margin: int = 8) -> np.ndarray:
    """A glyph image of any size and polarity as a `size` px canvas, ink fitted and centred."""
    grey = normalise_ink(image)
    return fit(grey, size, margin).apply(grey)


def load_font(font: str | Path | None, size: int) -> ImageFont.FreeTypeFont:
    """A TrueType/OpenType file at `size` px, or Pillow's built-in font when `font` is None."""
    if font is None:
        return ImageFont.load_default(size=size)
    try:
        return ImageFont.truetype(str(font), size)
    except OSError as exc:
        raise img2img.DataError(f"cannot load font {font}: {exc}") from None


def render_text(text: str, font: ImageFont.FreeTypeFont, pad: int = 0
                ) -> tuple[np.ndarray, int]:
    """`text` in black on white, tall enough for the font's ascent and descent; also returns the
    baseline row. Width is the advance of the text plus `pad` px on each side."""
    ascent, descent = font.getmetrics()
    width = int(np.ceil(font.getlength(text))) + 2 * pad
    canvas = Image.new("L", (max(width, 1), ascent + descent + 2 * pad), PAPER)
    ImageDraw.Draw(canvas).text((pad, pad + ascent), text, fill=0, font=font, anchor="ls")
    return np.asarray(canvas).copy(), pad + ascent


def render_glyph(char: str, font: ImageFont.FreeTypeFont, size: int = 64,
                 margin: int = 8) -> np.ndarray:
    """The printed `char` on a `size` px canvas, fitted like a handwritten glyph."""
    grey, _ = render_text(char, font, pad=font.size // 4)
    return fit(grey, size, margin).apply(grey)


def binarize(grey: np.ndarray) -> np.ndarray:
    """Otsu's threshold: pure black ink on pure white paper (uint8 0 / 255)."""
    _, binary = cv2.threshold(to_grey(grey), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return binary


@dataclass(frozen=True)
class Jitter:
    """Small random geometric changes shared by both sides of a pair, as a writer's hand varies:
    rotation (degrees), scale (fraction), shear (degrees), and an elastic displacement field of
    `elastic` px amplitude smoothed over `smoothness` px."""

    rotation: float = 5.0
    scale: float = 0.08
    shear: float = 8.0
    elastic: float = 2.0
    smoothness: float = 6.0

    def draw(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """One random (affine 2x3, displacement HxWx2) draw for `size` px canvases."""
        angle = np.deg2rad(rng.uniform(-self.rotation, self.rotation))
        scale = 1 + rng.uniform(-self.scale, self.scale)
        shear = np.tan(np.deg2rad(rng.uniform(-self.shear, self.shear)))
        linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        linear = linear @ np.array([[1.0, shear], [0.0, 1.0]])
        centre = np.array([(size - 1) / 2] * 2)
        affine = np.hstack([linear, (centre - linear @ centre)[:, None]])
        field = rng.normal(size=(size, size, 2)).astype(np.float32)
        field = cv2.GaussianBlur(field, (0, 0), self.smoothness)
        field *= self.elastic / max(float(np.abs(field).max()), 1e-6)
        return affine, field

    def apply(self, grey: np.ndarray, draw: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        affine, field = draw
        size = grey.shape[0]
        moved = cv2.warpAffine(grey, affine, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=PAPER)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        return cv2.remap(moved, xs + field[..., 0], ys + field[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=PAPER)

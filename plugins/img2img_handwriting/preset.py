"""The `handwriting` preset for pix2pix (printed glyph -> handwritten glyph) and its convert
pipeline: a glyph image of any size or polarity is normalised to dark ink on white, fitted into
the 64 px canvas the model trained on, translated (in a chosen style), mapped back onto the
input's frame and, with `--binarize`, thresholded with Otsu's method."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

import img2img

from .glyphs import binarize, fade_border, fit, normalise_ink, to_grey

GLYPH_SIZE = 64
MARGIN = 8  # px of paper around the ink box on every glyph canvas, printed and handwritten alike

BINARIZE_OPTION = click.Option(["--binarize/--no-binarize"], default=False,
                               help="handwriting runs: threshold outputs to pure black ink on "
                                    "white paper (Otsu)")


class GlyphPipeline:
    """`convert` for handwriting runs: one glyph per image, as the model saw glyphs in training."""

    convert_options = (BINARIZE_OPTION,)

    def __init__(self, size: int = GLYPH_SIZE, margin: int = MARGIN):
        self.size, self.margin = size, margin

    def convert(self, translate: Callable[[np.ndarray], np.ndarray], image: np.ndarray, *,
                source: str | Path | None = None, binarize: bool = False) -> np.ndarray:
        """The glyph in `image` translated in its own frame (`translate` already carries the
        run's style, the core's `--style`)."""
        grey = normalise_ink(image)
        placement = fit(grey, self.size, self.margin)
        canvas = to_grey(translate(placement.apply(grey)))  # a colour model's output too
        canvas = fade_border(canvas, self.margin // 2)
        out = placement.invert(canvas, grey.shape)
        return _binarize(out) if binarize else out


def _binarize(grey: np.ndarray) -> np.ndarray:
    return binarize(grey) if grey.min() < grey.max() else grey


HANDWRITING = img2img.Preset(
    "handwriting", "pix2pix",
    "printed -> handwritten glyphs: grey 64 px, U-Net-64, no flips, small random rotation, "
    "scale, shear and elastic jitter per pair; convert fits each glyph and can --binarize",
    options={"generator": "unet-64"},
    training={"channels": 1, "load_size": GLYPH_SIZE, "crop_size": GLYPH_SIZE, "flip": False,
              "color_jitter": 0.0, "rotate": 5.0, "scale_jitter": 0.08, "shear": 8.0,
              "elastic": 0.3},
    pipeline=GlyphPipeline(),
)



"""Per-sample CPU augmentation: an `AugmentRecipe` (resize, optional geometric jitter: zoom,
rotation, shear, elastic warp; random crop, flip, colour jitter) turned into an albumentations
pipeline. A pair is augmented with one random draw (same warp, same crop, same flip), and every
draw is reproducible from one integer seed so resumed runs and loader workers repeat."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


def _albumentations() -> Any:
    """Import albumentations on first use: it costs a second, and `img2img --help` needs none
    of it. It would otherwise ask PyPI for a newer version on import, a network call that
    offline training machines should never make."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations

__all__ = ["GEOMETRY_LIMITS", "AugmentRecipe", "apply", "build_transform", "elastic_field",
           "geometry_error"]

# The geometric jitter settings (TrainConfig and AugmentRecipe fields) and each one's largest value.
GEOMETRY_LIMITS = {"scale_jitter": 0.5, "rotate": 180.0, "shear": 45.0, "elastic": 1.0}


def geometry_error(name: str, value: float) -> str | None:
    """Why `value` is not a valid `name` geometric setting (a flag-naming message), or None."""
    top = GEOMETRY_LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
        return f"--{name.replace('_', '-')} must be between 0 (off) and {top:g}, got {value!r}"
    return None


def elastic_field(size: int, strength: float) -> tuple[float, float, int]:
    """(alpha, sigma, pad) in pixels for an elastic warp of `strength` on size x size images.

    A field of uniform [-1, 1] noise, blurred with a Gaussian of sigma = size / 16 and scaled by
    alpha, moves a pixel by alpha / (2 * sqrt(6) * sigma) on average. Alpha is chosen so that
    the mean displacement is strength * size / 20 (5% of the side at strength 1), at any size.
    The image is warped with `pad` pixels of replicated border around it (then cropped back):
    the blurred noise is only uniform in strength that far (3 sigma) from the field's edges.
    """
    sigma = size / 16
    alpha = strength * size / 20 * 2 * math.sqrt(6) * sigma
    return alpha, sigma, math.ceil(3 * sigma)


@dataclass(frozen=True)
class AugmentRecipe:
    """What the data loader does to each image before it reaches the model.

    load_size: both sides are resized to load_size x load_size first (so small images grow).
    crop_size: then a random crop_size x crop_size window is taken (no-op when equal).
    flip: horizontal flip with probability 0.5.
    color_jitter: strength s in [0, 1]; 0 is off. Brightness, contrast and saturation factors are
        drawn from [1 - s, 1 + s] and the hue shift from [-s/4, s/4] (of a full turn), because a
        hue shift is far more visible than the same amount of brightness change.
    Geometric jitter, after the resize and before the crop (0 is off; edges are replicated, so
    no black corners appear): scale_jitter s zooms by a factor from [1 - s, 1 + s] (s <= 0.5),
    rotate r turns by [-r, r] degrees, shear h slants horizontally by [-h, h] degrees, and
    elastic e (<= 1) is a smooth random warp moving pixels by e * 5% of the side on average
    (see `elastic_field`).
    """

    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    color_jitter: float = 0.0
    scale_jitter: float = 0.0
    rotate: float = 0.0
    shear: float = 0.0
    elastic: float = 0.0

    def __post_init__(self) -> None:
        for flag, value in (("--load-size", self.load_size), ("--crop-size", self.crop_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{flag} must be a positive whole number, got {value!r}")
        if self.load_size < self.crop_size:
            raise ValueError(
                f"--load-size ({self.load_size}) must be at least --crop-size ({self.crop_size}): "
                "images are resized to the load size and then cropped"
            )
        if not 0.0 <= float(self.color_jitter) <= 1.0:
            raise ValueError(f"--color-jitter must be between 0 and 1, got {self.color_jitter!r}")
        for name in GEOMETRY_LIMITS:
            message = geometry_error(name, getattr(self, name))
            if message:
                raise ValueError(message)


def build_transform(recipe: AugmentRecipe, paired: bool) -> Any:
    """The albumentations pipeline for `recipe`; with `paired`, target "b" shares the draw of "image".

    Call it through `apply(transform, seed, image=..., b=...)` for reproducible draws.
    """
    A = _albumentations()
    size = recipe.load_size
    # Bicubic like the pix2pix reference when enlarging; area averaging when shrinking avoids aliasing.
    steps: list[Any] = [A.Resize(size, size, interpolation=cv2.INTER_CUBIC, area_for_downscale="image")]
    steps += _geometry_steps(A, recipe)
    if recipe.crop_size < size:
        steps.append(A.RandomCrop(recipe.crop_size, recipe.crop_size))
    if recipe.flip:
        steps.append(A.HorizontalFlip(p=0.5))
    if recipe.color_jitter > 0:
        s = float(recipe.color_jitter)
        steps.append(A.ColorJitter(brightness=s, contrast=s, saturation=s, hue=s / 4, p=1.0))
    return A.Compose(
        steps,
        additional_targets={"b": "image"} if paired else None,
        # The two sides of a pair may differ in size; the resize comes first and makes them equal,
        # so the shape check albumentations runs before any step would reject valid pairs.
        is_check_shapes=False,
    )


def _geometry_steps(A: Any, recipe: AugmentRecipe) -> list[Any]:
    """Affine jitter and elastic warp on the load_size image; replicated edges fill the border."""
    steps: list[Any] = []
    zoom, angle, slant = recipe.scale_jitter, recipe.rotate, recipe.shear
    if zoom or angle or slant:
        steps.append(A.Affine(scale=(1 - zoom, 1 + zoom), keep_ratio=True, rotate=(-angle, angle),
                              shear={"x": (-slant, slant), "y": (0.0, 0.0)},
                              border_mode=cv2.BORDER_REPLICATE, p=1.0))
    if recipe.elastic > 0:
        size = recipe.load_size
        alpha, sigma, pad = elastic_field(size, recipe.elastic)
        steps += [
            A.PadIfNeeded(size + 2 * pad, size + 2 * pad, border_mode=cv2.BORDER_REPLICATE),
            A.ElasticTransform(alpha=alpha, sigma=sigma, noise_distribution="uniform",
                               border_mode=cv2.BORDER_REPLICATE, p=1.0),
            A.CenterCrop(size, size),
        ]
    return steps


def apply(transform: Any, seed: int, **images: np.ndarray) -> dict[str, np.ndarray]:
    """Run `transform` on `images` (HxWxC uint8) with the random draw fixed by `seed`.

    Returns albumentations' output dict (same keys as `images`). Not thread-safe: the transform
    holds its random state, so give each thread its own (loader worker processes are fine).
    """
    # Compose.set_random_seed hands the *same* seed to every step, which would correlate their
    # draws (the crop offset and the flip coin would be the same number); give each its own.
    states = np.random.SeedSequence(int(seed) % 2**64).generate_state(len(transform.transforms) + 1)
    transform.set_random_seed(int(states[0]))
    for step, state in zip(transform.transforms, states[1:]):
        step.set_random_seed(int(state))
    return transform(**images)

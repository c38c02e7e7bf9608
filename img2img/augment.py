"""Per-sample CPU augmentation: an `AugmentRecipe` (resize, random crop, flip, colour jitter) turned
into an albumentations pipeline. A pair is augmented with one random draw (same crop, same flip),
and every draw is reproducible from one integer seed so resumed runs and loader workers repeat."""
from __future__ import annotations

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

__all__ = ["AugmentRecipe", "build_transform", "apply"]


@dataclass(frozen=True)
class AugmentRecipe:
    """What the data loader does to each image before it reaches the model.

    load_size: both sides are resized to load_size x load_size first (so small images grow).
    crop_size: then a random crop_size x crop_size window is taken (no-op when equal).
    flip: horizontal flip with probability 0.5.
    color_jitter: strength s in [0, 1]; 0 is off. Brightness, contrast and saturation factors are
        drawn from [1 - s, 1 + s] and the hue shift from [-s/4, s/4] (of a full turn), because a
        hue shift is far more visible than the same amount of brightness change.
    """

    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    color_jitter: float = 0.0

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


def build_transform(recipe: AugmentRecipe, paired: bool) -> Any:
    """The albumentations pipeline for `recipe`; with `paired`, target "b" shares the draw of "image".

    Call it through `apply(transform, seed, image=..., b=...)` for reproducible draws.
    """
    A = _albumentations()
    size = recipe.load_size
    # Bicubic like the pix2pix reference when enlarging; area averaging when shrinking avoids aliasing.
    steps: list[Any] = [A.Resize(size, size, interpolation=cv2.INTER_CUBIC, area_for_downscale="image")]
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

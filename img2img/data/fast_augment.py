"""The common training recipe (resize to the load size, random crop, random flip, nothing else) run
directly with OpenCV and numpy. It gives, for every seed, the very pixels and random draw that the
albumentations pipeline of `augment.build_transform` gives through `augment.apply` (a test checks
it), without the per-call set-up that costs as much as the resize itself, and it hands the images
back as contiguous (C,H,W) arrays ready for `torch.from_numpy`.

`plain_plan(transform)` recognises such a pipeline; any other (colour or geometric jitter, a step
it does not know) gives None and stays with albumentations.
"""
from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .augment import _albumentations

__all__ = ["PlainPlan", "plain_plan", "run_plan", "to_chw"]


@dataclass(frozen=True)
class PlainPlan:
    """What a resize [+ random crop] [+ horizontal flip] pipeline does. Indices count seeds the
    way `augment.apply` hands them out: one for the pipeline, then one per step in order."""

    size: tuple[int, int]  # (height, width) after the resize
    interpolation: int  # when enlarging (or with no INTER_AREA for shrinking)
    area_for_downscale: bool  # INTER_AREA when either side shrinks
    seeds: int  # how many seeds `augment.apply` draws
    crop: tuple[int, int] | None = None  # (height, width) of the random crop
    crop_seed: int = 0
    flip: float = 0.0  # probability of a horizontal flip
    flip_seed: int = 0


def plain_plan(transform: Any) -> PlainPlan | None:
    """The plan of an albumentations `Compose` of exactly Resize, then RandomCrop (optional), then
    HorizontalFlip (optional), all plain; None for anything else."""
    A = _albumentations()
    steps = list(getattr(transform, "transforms", ()))
    if type(transform) is not A.Compose or transform.p < 1 or not steps:
        return None
    resize = steps.pop(0)
    if type(resize) is not A.Resize or resize.p < 1:
        return None
    size = (int(resize.height), int(resize.width))
    fields: dict[str, Any] = {
        "size": size, "interpolation": int(resize.interpolation), "seeds": len(steps) + 2,
        "area_for_downscale": resize.area_for_downscale in ("image", "image_mask")}
    index = 2  # augment.apply gives seed 0 to the pipeline and seed i + 1 to step i
    if steps and type(steps[0]) is A.RandomCrop:
        crop = steps.pop(0)
        shape = (int(crop.height), int(crop.width))
        if crop.p < 1 or crop.pad_if_needed or shape[0] > size[0] or shape[1] > size[1]:
            return None
        fields.update(crop=shape, crop_seed=index)
        index += 1
    if steps and type(steps[0]) is A.HorizontalFlip:
        fields.update(flip=float(steps.pop(0).p), flip_seed=index)
    return None if steps else PlainPlan(**fields)


def run_plan(plan: PlainPlan, seed: int, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Augment `images` (HxWxC uint8) with one shared random draw fixed by `seed`; returns
    contiguous (C,H,W) arrays."""
    states = np.random.SeedSequence(int(seed) % 2**64).generate_state(plan.seeds)
    origin = None
    if plan.crop is not None:
        draw = random.Random(int(states[plan.crop_seed]))
        h_start, w_start = draw.random(), draw.random()  # the order RandomCrop draws them in
        (height, width), (crop_h, crop_w) = plan.size, plan.crop
        origin = (int((height - crop_h + 1) * h_start), int((width - crop_w + 1) * w_start))
    # HorizontalFlip draws its coin only when 0 < p < 1, as every albumentations step does.
    flip = plan.flip >= 1 or (plan.flip > 0 and random.Random(int(states[plan.flip_seed])).random() < plan.flip)
    return [_finish(_resize(image, plan), plan.crop, origin, flip) for image in images]


def _resize(image: np.ndarray, plan: PlainPlan) -> np.ndarray:
    """albumentations' Resize: unchanged at the target size, INTER_AREA if either side shrinks."""
    height, width = plan.size
    if image.shape[:2] == (height, width):
        return image
    shrinks = height < image.shape[0] or width < image.shape[1]
    interpolation = cv2.INTER_AREA if shrinks and plan.area_for_downscale else plan.interpolation
    out = cv2.resize(image, (width, height), interpolation=interpolation)
    return out if out.ndim == 3 else out[:, :, None]


def _finish(image: np.ndarray, crop: tuple[int, int] | None, origin: tuple[int, int] | None,
            flip: bool) -> np.ndarray:
    """Crop (a view), flip and turn (H,W,C) into a contiguous (C,H,W) array, copying once or twice."""
    if crop is not None and origin is not None:
        (y, x), (h, w) = origin, crop
        image = image[y:y + h, x:x + w]
    if flip:
        image = cv2.flip(image, 1)
        image = image if image.ndim == 3 else image[:, :, None]
    return to_chw(image)


def to_chw(image: np.ndarray) -> np.ndarray:
    """A contiguous (C,H,W) copy of an (H,W,C) array. cv2.split writing each channel plane into
    place is about three times faster than numpy copying a transposed view."""
    channels = image.shape[2]
    if channels == 1:
        return np.ascontiguousarray(image.reshape(1, *image.shape[:2]))
    if _splits_in_place() and channels <= 4 and min(image.strides) > 0:  # OpenCV: no negative strides
        out = np.empty((channels, *image.shape[:2]), image.dtype)
        cv2.split(image, list(out))
        return out
    return np.ascontiguousarray(image.transpose(2, 0, 1))


@functools.cache
def _splits_in_place() -> bool:
    """Whether this OpenCV's cv2.split fills the arrays it is given (checked once, on first use,
    so importing the module does no work)."""
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)[:, 1:]
    out = np.zeros((3, 2, 2), np.uint8)
    try:
        cv2.split(image, list(out))
    except cv2.error:
        return False
    return bool(np.array_equal(out, image.transpose(2, 0, 1)))


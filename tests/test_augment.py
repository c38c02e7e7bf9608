"""Tests for img2img.augment: recipe validation, output sizes, shared pair draws, seeded repeats."""
from __future__ import annotations

import numpy as np
import pytest

from img2img.augment import AugmentRecipe, apply, build_transform


def gradient(height: int, width: int) -> np.ndarray:
    """An image whose left and right halves differ, so flips and crops are visible."""
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    return np.broadcast_to(ramp, (height, width, 3)).astype(np.uint8).copy()


def test_image_smaller_than_crop_comes_out_at_crop_size():
    transform = build_transform(AugmentRecipe(load_size=40, crop_size=32), paired=False)
    out = apply(transform, 0, image=np.zeros((7, 5, 3), np.uint8))["image"]
    assert out.shape == (32, 32, 3)


def test_equal_load_and_crop_keeps_the_whole_resized_image():
    transform = build_transform(AugmentRecipe(load_size=16, crop_size=16, flip=False), paired=False)
    image = gradient(16, 16)
    assert np.array_equal(apply(transform, 3, image=image)["image"], image)


def test_grey_image_keeps_its_channel_axis():
    transform = build_transform(AugmentRecipe(20, 16, color_jitter=0.5), paired=False)
    assert apply(transform, 1, image=np.zeros((30, 30, 1), np.uint8))["image"].shape == (16, 16, 1)


def test_pair_shares_crop_and_flip():
    transform = build_transform(AugmentRecipe(load_size=48, crop_size=32, color_jitter=0.3), paired=True)
    image = gradient(40, 40)
    flipped = 0
    for seed in range(20):
        out = apply(transform, seed, image=image, b=image.copy())
        assert np.array_equal(out["image"], out["b"])
        flipped += out["image"][0, 0, 0] > out["image"][0, -1, 0]
    assert 0 < flipped < 20, "both flipped and unflipped draws should occur over 20 seeds"


def test_pair_of_different_sizes_and_channels():
    transform = build_transform(AugmentRecipe(24, 16), paired=True)
    out = apply(transform, 5, image=np.zeros((30, 40, 1), np.uint8), b=np.zeros((60, 80, 3), np.uint8))
    assert out["image"].shape == (16, 16, 1) and out["b"].shape == (16, 16, 3)


def test_same_seed_same_draw_and_seeds_differ():
    transform = build_transform(AugmentRecipe(64, 32, color_jitter=0.5), paired=False)
    image = np.random.default_rng(0).integers(0, 256, (50, 50, 3), dtype=np.uint8)
    first = apply(transform, 42, image=image)["image"]
    apply(transform, 7, image=image)
    assert np.array_equal(apply(transform, 42, image=image)["image"], first)
    assert not np.array_equal(apply(transform, 43, image=image)["image"], first)


def test_crop_position_and_flip_are_not_correlated():
    # Seeding every step with the same number would make "crop near the left" imply "flipped".
    transform = build_transform(AugmentRecipe(load_size=64, crop_size=32), paired=False)
    image = gradient(64, 64)
    image[..., 1] = image[..., 0].T  # channel 1 ramps top to bottom: shows the vertical offset
    combos = set()
    for seed in range(80):
        out = apply(transform, seed, image=image)["image"].astype(int)
        flipped = bool(out[0, 0, 0] > out[0, -1, 0])
        combos.add((out[..., 0].mean() > 127, out[..., 1].mean() > 127, flipped))
    assert len(combos) == 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"load_size": 100, "crop_size": 128}, "--load-size"),
        ({"crop_size": 0, "load_size": 10}, "--crop-size"),
        ({"load_size": -1}, "--load-size"),
        ({"color_jitter": 1.5}, "--color-jitter"),
    ],
)
def test_invalid_recipe_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AugmentRecipe(**kwargs)

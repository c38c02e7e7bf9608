"""Tests for img2img.data.augment: recipe validation, output sizes, shared pair draws, seeded repeats."""
from __future__ import annotations

import numpy as np
import pytest

from img2img.data.augment import AugmentRecipe, apply, build_transform


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


# -- geometric jitter ---------------------------------------------------------------------------
GEOMETRY = {"rotate": 20.0, "scale_jitter": 0.2, "shear": 15.0, "elastic": 0.8}


def bright(size: int) -> np.ndarray:
    """A bright textured image (values 128..255): a warp shows, and black corners would too."""
    texture = np.random.default_rng(1).integers(128, 256, (size, size, 3), dtype=np.uint8)
    return np.maximum(texture, gradient(size, size)).astype(np.uint8)


def step_names(recipe: AugmentRecipe) -> list[str]:
    return [type(step).__name__ for step in build_transform(recipe, paired=True).transforms]


def test_default_recipe_has_no_warp():
    names = step_names(AugmentRecipe())
    assert names == ["Resize", "RandomCrop", "HorizontalFlip"]
    assert "Affine" in step_names(AugmentRecipe(rotate=3))
    assert "ElasticTransform" in step_names(AugmentRecipe(elastic=0.2))
    assert "ElasticTransform" not in step_names(AugmentRecipe(rotate=3, shear=2, scale_jitter=0.1))


@pytest.mark.parametrize("setting", [{"rotate": 30.0}, {"scale_jitter": 0.3}, {"shear": 20.0},
                                     {"elastic": 1.0}, GEOMETRY])
def test_geometric_jitter_warps_with_replicated_edges(setting):
    image = bright(48)
    plain = build_transform(AugmentRecipe(48, 40, flip=False), paired=False)
    warped = build_transform(AugmentRecipe(48, 40, flip=False, **setting), paired=False)
    for seed in range(4):
        out = apply(warped, seed, image=image)["image"]
        assert out.shape == (40, 40, 3) and out.dtype == np.uint8
        assert out.min() >= 128, "the border must extend the image, not fill it with black"
        assert np.abs(out.astype(int) - apply(plain, seed, image=image)["image"]).mean() > 2


def test_pair_shares_the_warp_also_across_channel_counts():
    transform = build_transform(AugmentRecipe(40, 32, **GEOMETRY), paired=True)
    colour = bright(40)
    grey = colour[..., :1].copy()
    for seed in range(6):
        same = apply(transform, seed, image=colour, b=colour.copy())
        assert np.array_equal(same["image"], same["b"])
        mixed = apply(transform, seed, image=grey, b=np.repeat(grey, 3, axis=2))
        assert mixed["image"].shape == (32, 32, 1) and mixed["b"].shape == (32, 32, 3)
        for channel in range(3):
            assert np.array_equal(mixed["b"][..., channel], mixed["image"][..., 0])


def test_same_seed_same_warp_and_seeds_differ():
    transform = build_transform(AugmentRecipe(40, 40, flip=False, **GEOMETRY), paired=False)
    image = bright(40)
    first = apply(transform, 11, image=image)["image"]
    apply(transform, 12, image=image)
    assert np.array_equal(apply(transform, 11, image=image)["image"], first)
    assert not np.array_equal(apply(transform, 12, image=image)["image"], first)


@pytest.mark.parametrize("size", [32, 128])
def test_elastic_strength_means_the_same_at_any_size(size):
    # A coordinate image shows where every output pixel was sampled from.
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.stack([xs, ys, np.zeros_like(xs)], axis=-1)
    transform = build_transform(AugmentRecipe(size, size, flip=False, elastic=0.5), paired=False)
    means = []
    for seed in range(8):
        moved = apply(transform, seed, image=image)["image"][..., :2] - image[..., :2]
        means.append(np.hypot(moved[..., 0], moved[..., 1]).mean())
    assert np.mean(means) == pytest.approx(0.5 * size / 20, rel=0.15)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"rotate": -1.0}, "--rotate"), ({"rotate": 181.0}, "--rotate"),
     ({"scale_jitter": 0.6}, "--scale-jitter"), ({"shear": 46.0}, "--shear"),
     ({"elastic": 1.5}, "--elastic"), ({"elastic": float("nan")}, "--elastic"),
     ({"shear": "5"}, "--shear")],
)
def test_invalid_geometry_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AugmentRecipe(**kwargs)

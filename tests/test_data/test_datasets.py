"""Tests for img2img.data (and the folders, sampler and fast_augment modules it is built on):
decoding (depths, channels, alpha, EXIF), folder layouts and their errors, unreadable-file warnings,
seeded indexing, the resumable sampler and the OpenCV fast path matching albumentations."""
from __future__ import annotations

import logging
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from img2img.data import (
    LabelledDataset, PairedDataset, SeededSampler, UnpairedDataset, list_images, open_dataset, read_image,
)
from img2img.data.augment import AugmentRecipe, apply, build_transform
from img2img.data.decode import _jpeg_header, exif_orientation
from img2img.data.fast_augment import plain_plan, run_plan, to_chw
from img2img.errors import DataError

FIXED = AugmentRecipe(load_size=16, crop_size=16, flip=False)  # no randomness: pixels predictable
RANDOM = AugmentRecipe(load_size=24, crop_size=16, flip=True, color_jitter=0.4)


def solid(path: Path, rgb, size=(16, 16)) -> Path:
    """Write a solid-colour image; `rgb` in RGB order (cv2 wants BGR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), rgb[::-1], np.uint8))
    return path


def noise(path: Path, seed: int, size=(20, 20)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))
    return path


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image")
    return path


# ------------------------------------------------------------------------------------ read_image

def test_bgr_is_converted_to_rgb(tmp_path):
    image = read_image(solid(tmp_path / "red.png", (255, 0, 0)), 3)
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [255, 0, 0]


def test_16_bit_png_is_scaled_with_rounding(tmp_path):
    values = np.array([[0, 128, 129, 257 * 100, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), values)
    image = read_image(tmp_path / "deep.png", 1)
    assert image.dtype == np.uint8 and image[0, :, 0].tolist() == [0, 0, 1, 100, 255]


def test_grey_image_to_three_channels_and_rgb_to_grey(tmp_path):
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((4, 6), 77, np.uint8))
    rgb = read_image(tmp_path / "grey.png", 3)
    assert rgb.shape == (4, 6, 3) and (rgb == 77).all()
    green = read_image(solid(tmp_path / "green.png", (0, 255, 0)), 1)
    assert green.shape == (16, 16, 1) and abs(int(green[0, 0, 0]) - 150) <= 1  # 0.587 * 255


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 2] = 255  # red in BGRA
    rgba[0, 0, 3], rgba[0, 1, 3], rgba[1, :, 3] = 255, 0, 128
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    image = read_image(tmp_path / "alpha.png", 3)
    assert image[0, 0].tolist() == [255, 0, 0]
    assert image[0, 1].tolist() == [255, 255, 255]
    assert image[1, 0].tolist() == [255, 127, 127]


def test_16_bit_rgba_is_composited(tmp_path):
    rgba = np.zeros((1, 1, 4), np.uint16)
    rgba[..., 0], rgba[..., 3] = 65535, 65535  # opaque blue in BGRA
    cv2.imwrite(str(tmp_path / "deep_alpha.png"), rgba)
    assert read_image(tmp_path / "deep_alpha.png", 3)[0, 0].tolist() == [0, 0, 255]


def test_exif_orientation_in_jpeg_is_honoured(tmp_path):
    # Stored 40 wide x 20 high, left half black, right half white; orientation 6 means the camera
    # was turned: upright, the picture is 20 wide x 40 high with the white half on the bottom.
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, 20:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "turned.jpg", exif=exif.tobytes(), quality=95)
    image = read_image(tmp_path / "turned.jpg", 3)
    assert image.shape == (40, 20, 3)
    assert image[:15].mean() < 30 and image[25:].mean() > 225


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pil(tmp_path, orientation):
    stored = np.random.default_rng(orientation).integers(0, 256, (3, 5, 4), dtype=np.uint8)
    stored[..., 3] = 255  # RGBA takes OpenCV's unchanged-decoding path, which ignores EXIF itself
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored, "RGBA").save(tmp_path / "o.png", exif=exif.tobytes())
    with Image.open(tmp_path / "o.png") as img:
        expected = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    assert np.array_equal(read_image(tmp_path / "o.png", 3), expected)


def test_non_ascii_path(tmp_path):
    assert read_image(solid(tmp_path / "äöü 画像.png", (1, 2, 3)), 3)[0, 0].tolist() == [1, 2, 3]


def test_unreadable_file_raises_data_error_with_path(tmp_path):
    with pytest.raises(DataError, match="bad.png"):
        read_image(corrupt(tmp_path / "bad.png"), 3)
    with pytest.raises(DataError, match="missing.png"):
        read_image(tmp_path / "missing.png", 3)


def test_list_images_filters_and_sorts(tmp_path):
    for name in ["b.PNG", "a.jpg", ".hidden.png", "notes.txt", "c.webp"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.webp"]


# ------------------------------------------------------------------------------------ paired

def test_paired_folders_match_stems_and_warn_about_the_rest(tmp_path, caplog):
    for stem in ["1", "2", "3"]:
        noise(tmp_path / "a" / f"{stem}.png", int(stem))
        noise(tmp_path / "b" / f"{stem}.jpg", int(stem))
    noise(tmp_path / "a" / "only_a.png", 9)
    noise(tmp_path / "b" / "only_b.png", 9)
    with caplog.at_level(logging.WARNING, logger="img2img"):
        dataset = PairedDataset(tmp_path, RANDOM, 3)
    assert dataset.mode == "folders" and len(dataset) == 3
    assert "only_a.png" in caplog.text and "only_b.png" in caplog.text
    item = dataset[0]
    assert item["a"].shape == item["b"].shape == (3, 16, 16) and item["a"].dtype == torch.uint8


def test_paired_folders_without_common_names(tmp_path):
    noise(tmp_path / "a" / "x.png", 0)
    noise(tmp_path / "b" / "y.png", 0)
    with pytest.raises(DataError, match="match"):
        PairedDataset(tmp_path, FIXED, 3)


def test_pair_gets_one_random_draw(tmp_path):
    for stem in ["p", "q"]:
        noise(tmp_path / "a" / f"{stem}.png", 5, size=(30, 40))
        noise(tmp_path / "b" / f"{stem}.png", 5, size=(30, 40))
    dataset = PairedDataset(tmp_path, RANDOM, 3)
    for seed in range(10):
        item = dataset[(seed % 2, seed)]
        assert torch.equal(item["a"], item["b"])


def test_side_by_side_is_split_into_halves(tmp_path, caplog):
    left_right = np.zeros((16, 32, 3), np.uint8)
    left_right[:, :16] = (10, 20, 30)  # BGR
    left_right[:, 16:] = (200, 210, 220)
    cv2.imwrite(str(tmp_path / "pair.png"), left_right)
    cv2.imwrite(str(tmp_path / "odd.png"), np.zeros((16, 33, 3), np.uint8))
    with caplog.at_level(logging.WARNING, logger="img2img"):
        dataset = PairedDataset(tmp_path, FIXED, (3, 1))
    assert dataset.mode == "side_by_side" and len(dataset) == 1 and "odd.png" in caplog.text
    item = dataset[0]
    assert item["a"].shape == (3, 16, 16) and item["a"][:, 0, 0].tolist() == [30, 20, 10]
    assert item["b"].shape == (1, 16, 16) and 205 <= item["b"][0, 0, 0] <= 215


def test_corrupt_files_skipped_with_one_warning(tmp_path, caplog):
    for stem in ["1", "2"]:
        noise(tmp_path / "a" / f"{stem}.png", 1)
        noise(tmp_path / "b" / f"{stem}.png", 1)
    bad = [corrupt(tmp_path / "a" / "3.png"), corrupt(tmp_path / "b" / "4.png")]
    noise(tmp_path / "b" / "3.png", 1)
    noise(tmp_path / "a" / "4.png", 1)
    with caplog.at_level(logging.WARNING, logger="img2img"):
        dataset = PairedDataset(tmp_path, FIXED, 3)
    assert len(dataset) == 2
    unreadable = [r for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(unreadable) == 1 and all(str(p) in unreadable[0].getMessage() for p in bad)


@pytest.mark.parametrize("layout", ["missing", "file", "empty", "unreadable"])
def test_bad_paired_folder_names_it(tmp_path, layout):
    root = tmp_path / "my_data"
    if layout == "file":
        root.write_bytes(b"")
    elif layout == "empty":
        root.mkdir()
    elif layout == "unreadable":
        corrupt(root / "x.png")
    with pytest.raises(DataError, match="my_data") as info:
        PairedDataset(root, FIXED, 3)
    assert "a/ and b/" in str(info.value)


# ------------------------------------------------------------------------------------ unpaired

def test_unpaired_length_and_independent_folders(tmp_path):
    for i in range(3):
        solid(tmp_path / "x" / f"{i}.png", (i, 0, 0))
    for i in range(5):
        solid(tmp_path / "y" / f"{i}.png", (0, 10 * i, 0))
    dataset = UnpairedDataset(tmp_path / "x", tmp_path / "y", FIXED, 3)
    assert len(dataset) == 5
    assert dataset[(4, 0)]["a"][0, 0, 0] == 1  # item 4 uses a[4 % 3]
    picked = {int(dataset[(0, seed)]["b"][1, 0, 0]) for seed in range(40)}
    assert len(picked) > 2, "the b image should change with the sample seed"


@pytest.mark.parametrize("names", [("a", "b"), ("trainA", "trainB")])
def test_unpaired_from_data_folder(tmp_path, names):
    noise(tmp_path / names[0] / "1.png", 1)
    for i in range(2):
        noise(tmp_path / names[1] / f"{i}.png", i)
    dataset = open_dataset("unpaired", data=tmp_path, channels=1, recipe=FIXED)
    assert isinstance(dataset, UnpairedDataset) and len(dataset) == 2
    assert dataset[0]["a"].shape == (1, 16, 16)


def test_unpaired_flags_are_named_when_missing(tmp_path):
    with pytest.raises(DataError, match="--a and --b"):
        open_dataset("unpaired")
    with pytest.raises(DataError, match="--b"):
        open_dataset("unpaired", a=tmp_path)
    with pytest.raises(DataError, match="trainA"):
        open_dataset("unpaired", data=tmp_path)
    with pytest.raises(DataError, match="--data"):
        open_dataset("paired")


def test_unpaired_empty_folder_is_named(tmp_path):
    noise(tmp_path / "x" / "1.png", 1)
    (tmp_path / "nothing_here").mkdir()
    with pytest.raises(DataError, match="nothing_here"):
        UnpairedDataset(tmp_path / "x", tmp_path / "nothing_here", FIXED, 3)


# ------------------------------------------------------------------------------------ labelled

def test_labelled_classes_and_labels(tmp_path):
    solid(tmp_path / "dog" / "1.png", (200, 0, 0))
    solid(tmp_path / "cat" / "1.png", (0, 200, 0))
    solid(tmp_path / "cat" / "2.png", (0, 200, 0))
    (tmp_path / ".cache").mkdir()
    dataset = open_dataset("labelled", data=tmp_path, channels=3, recipe=FIXED)
    assert isinstance(dataset, LabelledDataset) and dataset.classes == ("cat", "dog")
    items = [dataset[i] for i in range(len(dataset))]
    assert [int(item["label"]) for item in items] == [0, 0, 1]
    assert items[2]["label"].dtype == torch.int64 and items[2]["label"].shape == ()
    assert items[2]["image"][0, 0, 0] == 200 and items[0]["image"][1, 0, 0] == 200


def test_labelled_errors_name_the_folder(tmp_path):
    solid(tmp_path / "cat" / "1.png", (1, 1, 1))
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="empty_class"):
        LabelledDataset(tmp_path, FIXED, 3)
    flat = tmp_path / "flat"
    solid(flat / "1.png", (1, 1, 1))
    with pytest.raises(DataError, match="flat.*per class"):
        LabelledDataset(flat, FIXED, 3)


# ------------------------------------------------------------------------------------ seeding

@pytest.fixture
def paired(tmp_path) -> PairedDataset:
    for i in range(6):
        noise(tmp_path / "a" / f"{i}.png", i, size=(30, 30))
        noise(tmp_path / "b" / f"{i}.png", i + 100, size=(30, 30))
    return PairedDataset(tmp_path, RANDOM, 3)


def test_same_seed_same_item(paired):
    first, again, other = paired[(2, 1234)], paired[(2, 1234)], paired[(2, 99)]
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["a"], other["a"])
    with pytest.raises(IndexError):
        paired[6]


def test_sampler_is_deterministic_per_epoch():
    sampler = SeededSampler(10, seed=3)
    sampler.set_epoch(0)
    epoch0 = list(sampler)
    assert list(SeededSampler(10, seed=3)) == epoch0
    assert sorted(i for i, _ in epoch0) == list(range(10))
    assert len({s for _, s in epoch0}) == 10
    sampler.set_epoch(1)
    assert [i for i, _ in sampler] != [i for i, _ in epoch0]
    assert list(SeededSampler(10, seed=4)) != epoch0


def test_sampler_skip_resumes_mid_epoch():
    sampler = SeededSampler(10, seed=7)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, skip=4)
    assert len(sampler) == 6 and list(sampler) == full[4:]
    with pytest.raises(ValueError):
        sampler.set_epoch(0, skip=11)


def test_sampler_without_shuffle_keeps_order():
    assert [i for i, _ in SeededSampler(5, seed=0, shuffle=False)] == [0, 1, 2, 3, 4]


def test_data_loader_batches_and_repeats(paired):
    def batches():
        sampler = SeededSampler(len(paired), seed=11)
        sampler.set_epoch(1)
        return list(torch.utils.data.DataLoader(paired, batch_size=4, sampler=sampler))

    first, again = batches(), batches()
    assert first[0]["a"].shape == (4, 3, 16, 16) and first[0]["a"].dtype == torch.uint8
    assert first[1]["b"].shape == (2, 3, 16, 16)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(first, again) for k in x)


def test_dataset_pickles_for_spawned_workers(paired):
    clone = pickle.loads(pickle.dumps(paired))
    assert torch.equal(clone[(3, 5)]["a"], paired[(3, 5)]["a"])


# ------------------------------------------------------------------ the OpenCV fast path

PLAIN = [(286, 256, True), (24, 16, True), (16, 16, False), (16, 16, True), (20, 13, False)]


@pytest.mark.parametrize(("load", "crop", "flip"), PLAIN)
@pytest.mark.parametrize("paired", [True, False])
def test_fast_path_gives_albumentations_pixels_and_draws(load, crop, flip, paired):
    transform = build_transform(AugmentRecipe(load, crop, flip), paired=paired)
    plan = plain_plan(transform)
    assert plan is not None
    rng = np.random.default_rng(load + crop)
    # Enlarged, shrunk, both at once (INTER_AREA then), already the right size; grey and colour.
    for shape in [(256, 256, 3), (300, 20, 1), (40, 30, 3), (load, load, 3), (9, 500, 1)]:
        for seed in [0, 1, 5, 12345, 2**62 - 1]:
            side_by_side = rng.integers(0, 256, (shape[0], 2 * shape[1], shape[2]), np.uint8)
            images = [side_by_side[:, :shape[1]], side_by_side[:, shape[1]:]][:1 + paired]
            expected = apply(transform, seed, **dict(zip(("image", "b"), images)))
            for got, key in zip(run_plan(plan, seed, images), ("image", "b")):
                assert got.flags.c_contiguous
                assert np.array_equal(got, expected[key].transpose(2, 0, 1)), (shape, seed, key)


@pytest.mark.parametrize("extra", [{"color_jitter": 0.3}, {"rotate": 5.0}, {"elastic": 0.2}])
def test_fast_path_leaves_other_recipes_to_albumentations(extra):
    assert plain_plan(build_transform(AugmentRecipe(24, 16, **extra), paired=True)) is None


def test_datasets_take_the_fast_path_with_unchanged_items(tmp_path):
    for i in range(3):
        noise(tmp_path / "a" / f"{i}.png", i, size=(30, 40))
        noise(tmp_path / "b" / f"{i}.png", i + 9, size=(20, 20))
    fast = PairedDataset(tmp_path, AugmentRecipe(24, 16), 3)
    slow = PairedDataset(tmp_path, AugmentRecipe(24, 16), 3)
    slow.plan = None
    assert fast.plan is not None and PairedDataset(tmp_path, RANDOM, 3).plan is None
    for i in range(3):
        got, expected = fast[(i, 7 + i)], slow[(i, 7 + i)]
        assert all(torch.equal(got[k], expected[k]) and got[k].is_contiguous() for k in "ab")


def test_to_chw_copies_any_layout():
    image = np.random.default_rng(0).integers(0, 256, (6, 8, 3), np.uint8)
    for view in (image, image[1:5, 2:7], image[:, ::-1], image[..., :1]):
        out = to_chw(view)
        assert out.flags.c_contiguous and np.array_equal(out, view.transpose(2, 0, 1))


def test_jpeg_exif_is_found_in_the_header_only(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 3
    stored = np.zeros((8, 12, 3), np.uint8)
    Image.fromarray(stored).save(tmp_path / "exif.jpg", exif=exif.tobytes(), dpi=(72, 72))
    Image.fromarray(stored).save(tmp_path / "plain.jpg")
    raw = (tmp_path / "plain.jpg").read_bytes()
    assert exif_orientation(np.fromfile(tmp_path / "exif.jpg", np.uint8)) == 3
    assert exif_orientation(np.frombuffer(raw + b"Exif", np.uint8)) == 1  # after the scan: not EXIF
    assert _jpeg_header(raw[:2] + b"junk" + raw[2:]) is None  # unparsable: search it all
    assert _jpeg_header(raw).frame[1:] == (8, 8, 12, 3)  # precision, height, width, components


@pytest.mark.parametrize(("size", "shape"), [((64, 96), (16, 24)), ((64, 90), (32, 45)),
                                             ((30, 40), (30, 40))])
def test_large_jpeg_is_decoded_at_a_reduced_scale_that_still_fits(tmp_path, size, shape):
    photo = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (*size, 3), np.uint8), (0, 0), 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # turned: the reduced decode is oriented like the full one
    Image.fromarray(photo).save(tmp_path / "big.jpg", exif=exif.tobytes(), quality=95)
    full = read_image(tmp_path / "big.jpg", 3)
    small = read_image(tmp_path / "big.jpg", 3, min_size=16)
    assert small.shape == (shape[1], shape[0], 3) and full.shape == (size[1], size[0], 3)
    shrunk = cv2.resize(full, small.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(shrunk.astype(int) - small).mean() < 4
    assert read_image(tmp_path / "big.jpg", 1, min_size=16).shape == (shape[1], shape[0], 1)

"""The "images" data kind: one folder of images (`--data DIR`) for models that derive their own
inputs, read by `ImageFolderDataset`; items are {"image": uint8 (C,H,W)}."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from img2img.data import ImageFolderDataset, open_dataset
from img2img.data.augment import AugmentRecipe
from img2img.errors import DataError
from img2img.model import DATA_KINDS
from img2img.testing import write_sample_images

FIXED = AugmentRecipe(load_size=16, crop_size=16, flip=False)


def write(path: Path, rgb=(10, 200, 30), size=(16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), rgb[::-1], np.uint8))
    return path


def test_images_is_a_data_kind():
    assert "images" in DATA_KINDS


def test_items_are_uint8_chw_images_in_rgb_order(tmp_path):
    write(tmp_path / "one.png")
    write(tmp_path / "two.jpg", rgb=(0, 0, 255))
    dataset = ImageFolderDataset(tmp_path, FIXED)
    assert len(dataset) == 2
    item = dataset[0]
    assert set(item) == {"image"}
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 16, 16)
    assert item["image"][:, 0, 0].tolist() == [10, 200, 30]


def test_grey_channels(tmp_path):
    write(tmp_path / "one.png")
    assert ImageFolderDataset(tmp_path, FIXED, channels=1)[0]["image"].shape == (1, 16, 16)


def test_same_seed_same_augmentation(tmp_path):
    cv2.imwrite(str(tmp_path / "noise.png"),
                np.random.default_rng(0).integers(0, 256, (24, 24, 3), np.uint8))
    dataset = ImageFolderDataset(tmp_path, AugmentRecipe(load_size=24, crop_size=16, flip=True))
    assert torch.equal(dataset[(0, 5)]["image"], dataset[(0, 5)]["image"])


def test_large_jpeg_items_decode_reduced_and_look_the_same(tmp_path):
    photo = cv2.GaussianBlur(np.random.default_rng(2).integers(0, 256, (64, 64, 3), np.uint8), (0, 0), 3)
    cv2.imwrite(str(tmp_path / "big.jpg"), photo, [cv2.IMWRITE_JPEG_QUALITY, 95])
    item = ImageFolderDataset(tmp_path, FIXED)[0]["image"]  # 64 px: decoded at 1/4, 16 px
    full = cv2.resize(photo[:, :, ::-1], (16, 16), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    assert item.shape == (3, 16, 16) and np.abs(item.numpy().astype(int) - full).mean() < 4


def test_open_dataset_reads_an_images_folder(tmp_path):
    write(tmp_path / "photos" / "a.png")
    dataset = open_dataset("images", data=tmp_path / "photos", recipe=FIXED)
    assert isinstance(dataset, ImageFolderDataset) and len(dataset) == 1


def test_open_dataset_needs_data(tmp_path):
    with pytest.raises(DataError, match="needs --data"):
        open_dataset("images")


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "does not exist"),
    (lambda root: root.mkdir(), "no images in"),
])
def test_missing_or_empty_folder_is_a_data_error(tmp_path, make, message):
    root = tmp_path / "photos"
    make(root)
    with pytest.raises(DataError, match=message):
        ImageFolderDataset(root)


def test_unreadable_files_are_skipped_with_a_warning(tmp_path, caplog):
    write(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING, logger="img2img"):
        dataset = ImageFolderDataset(tmp_path, FIXED)
    assert len(dataset) == 1
    assert "bad.png" in caplog.text


def test_write_sample_images_lays_out_one_folder(tmp_path):
    folders = write_sample_images("images", tmp_path / "data", n=3)
    assert folders == {"data": tmp_path / "data"}
    assert len(list((tmp_path / "data").glob("*.png"))) == 3

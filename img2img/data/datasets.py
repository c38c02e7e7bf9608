"""The folder datasets (paired, unpaired, labelled, images) the trainer reads from. Files are checked
once when a dataset is built (`folders`): unreadable ones are skipped with one warning and layout
problems raise `DataError`. Items are uint8 (C,H,W) tensors, augmented with a per-item seed;
`SeededSampler` (`sampler`) hands out the order and the seeds.

Labels are one concept: a dataset with class or style sub-folders has `.classes` (sorted folder
names) and `.labels` (each item's index), and its items carry it as "label", an int64 scalar."""
from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .augment import AugmentRecipe, apply, build_transform
from .decode import convert_channels, read_image
from .fast_augment import plain_plan, run_plan, to_chw
from .folders import (
    IMAGES_LAYOUT, LABELLED_LAYOUT, PAIRED_LAYOUT, UNPAIRED_LAYOUT, matched_pairs,
    readable_images, require_folder, side_by_side_files, style_folders, unpaired_roots, warn_skipped,
)
from .sampler import child_seeds

__all__ = ["PairedDataset", "UnpairedDataset", "LabelledDataset", "ImageFolderDataset",
           "open_dataset"]


def _fresh_seed() -> int:
    # torch's generator (not os entropy): seeded runs and seeded loader workers stay reproducible.
    return int(torch.randint(0, 2**62, ()).item())


def _channel_pair(channels: int | tuple[int, int]) -> tuple[int, int]:
    pair = (channels, channels) if isinstance(channels, int) else tuple(channels)
    if len(pair) != 2 or any(c not in (1, 3) for c in pair):
        raise ValueError(f"channels must be 1, 3 or a pair of them, got {channels!r}")
    return pair  # type: ignore[return-value]


def _one_channel_count(channels: int) -> int:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    return channels


class _SeededDataset(Dataset):
    """Indexing shared by all datasets: `ds[i]` draws a fresh seed, `ds[(i, seed)]` uses `seed`.

    `transform` is the recipe's albumentations pipeline; `plan` its OpenCV fast path (same pixels,
    same draws) when the recipe only resizes, crops and flips, else None.

    With `substitute` on (the trainer sets it), an item whose file cannot be read any more (it
    vanished, was replaced, a network share dropped) is replaced by the next readable item, and
    every item carries "skipped": the reason for the one it replaced, or "" (the trainer warns
    and counts them). Off, such an item raises DataError naming the file.
    """

    items: list
    substitute: bool = False
    TRIES = 8  # items tried after a failing one before the error stands

    def __getitem__(self, index) -> dict[str, Any]:
        i, seed = self._split(index)
        if not self.substitute:
            return self._item(i, seed)
        reason = ""
        for k in range(self.TRIES + 1):
            try:
                return {**self._item((i + k) % len(self), seed), "skipped": reason}
            except (DataError, OSError, cv2.error) as exc:
                reason = reason or str(exc)
        raise DataError(f"{self.TRIES + 1} items in a row could not be read; the first: {reason}")

    def _set_recipe(self, recipe: AugmentRecipe, paired: bool) -> None:
        self.transform = build_transform(recipe, paired=paired)
        self.plan = plain_plan(self.transform)
        self.load_size = recipe.load_size  # every recipe resizes to it first

    def _read(self, path: Path, channels: int) -> np.ndarray:
        # Large JPEGs decode at a reduced scale that still covers the resize that follows.
        return read_image(path, channels, min_size=self.load_size)

    def __len__(self) -> int:
        return len(self.items)

    def _split(self, index) -> tuple[int, int]:
        i, seed = index if isinstance(index, tuple) else (index, _fresh_seed())
        i, n = operator.index(i), len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} items")
        return i % n, int(seed)

    def _augment(self, seed: int, *images: np.ndarray) -> list[torch.Tensor]:
        """`images` (one, or a pair sharing the draw) augmented as `seed` says: uint8 (C,H,W)."""
        if self.plan is not None:
            arrays = run_plan(self.plan, seed, images)
        else:
            out = apply(self.transform, seed, **dict(zip(("image", "b"), images)))
            arrays = [to_chw(out[key]) for key in ("image", "b")[:len(images)]]
        return [torch.from_numpy(array) for array in arrays]


class PairedDataset(_SeededDataset):
    """Aligned pairs: `root/a/` + `root/b/` with matching file stems (`mode == "folders"`), or one
    folder of side-by-side A|B images (`mode == "side_by_side"`). Items: {"a", "b"} uint8 (C,H,W).

    `channels` is one count for both sides or an (a, b) pair, e.g. (1, 3) for colourisation.

    Styles (`mode == "styles"`): a root holding no images but sub-folders that each hold a/ and
    b/ (`root/<style>/a`, `root/<style>/b`). Sorted folder names are `.classes`, `.labels` gives
    each item's style index, and items gain "label", an int64 scalar (as labelled items do).
    """

    classes: tuple[str, ...] = ()
    labels: list[int] | None = None

    def __init__(self, root: str | Path, recipe: AugmentRecipe = AugmentRecipe(),
                 channels: int | tuple[int, int] = 3) -> None:
        self.root = require_folder(Path(root), PAIRED_LAYOUT)
        self.channels = _channel_pair(channels)
        self._set_recipe(recipe, paired=True)
        if (self.root / "a").is_dir() and (self.root / "b").is_dir():
            self.mode = "folders"
            self.items = matched_pairs(self.root)
        elif styles := style_folders(self.root):
            self.mode = "styles"
            self.classes = tuple(p.name for p in styles)
            self.items, self.labels = [], []
            for label, folder in enumerate(styles):
                pairs = matched_pairs(folder)
                self.items += pairs
                self.labels += [label] * len(pairs)
        else:
            self.mode = "side_by_side"
            self.items = [(p, p) for p in side_by_side_files(self.root)]

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        path_a, path_b = self.items[i]
        ca, cb = self.channels
        if self.mode != "side_by_side":
            return self._read(path_a, ca), self._read(path_b, cb)
        image = read_image(path_a, ca if ca == cb else 3)  # full size: the halves must split exactly
        if image.shape[1] % 2:  # checked at construction; only a file changed since then gets here
            raise DataError(f"cannot split side-by-side image {path_a}: its width {image.shape[1]} is odd")
        half = image.shape[1] // 2
        # Views, not copies: the resize reads the halves in place.
        return convert_channels(image[:, :half], ca), convert_channels(image[:, half:], cb)

    def _item(self, i: int, seed: int) -> dict[str, torch.Tensor]:
        a, b = self._augment(seed, *self._load(i))
        item = {"a": a, "b": b}
        if self.labels is not None:
            item["label"] = torch.tensor(self.labels[i], dtype=torch.int64)
        return item


class UnpairedDataset(_SeededDataset):
    """Two independent folders. Item i pairs a[i % len_a] with a b image picked by the item's seed,
    so pairings change between epochs (the CycleGAN reference draws B at random too); each side
    gets its own augmentation draw. `len` is the larger folder's size."""

    def __init__(self, root_a: str | Path, root_b: str | Path, recipe: AugmentRecipe = AugmentRecipe(),
                 channels: int | tuple[int, int] = 3) -> None:
        self.channels = _channel_pair(channels)
        self._set_recipe(recipe, paired=False)
        self.roots = (Path(root_a), Path(root_b))
        self.a_paths, bad_a = readable_images(Path(root_a), UNPAIRED_LAYOUT)
        self.b_paths, bad_b = readable_images(Path(root_b), UNPAIRED_LAYOUT)
        warn_skipped(bad_a + bad_b)

    def __len__(self) -> int:
        return max(len(self.a_paths), len(self.b_paths))

    def _item(self, i: int, seed: int) -> dict[str, torch.Tensor]:
        seed_a, seed_b, seed_pick = child_seeds(seed, 3)
        a = self._read(self.a_paths[i % len(self.a_paths)], self.channels[0])
        b = self._read(self.b_paths[seed_pick % len(self.b_paths)], self.channels[1])
        return {"a": self._augment(seed_a, a)[0], "b": self._augment(seed_b, b)[0]}


class LabelledDataset(_SeededDataset):
    """One sub-folder per class under `root`; sorted folder names are `.classes` and labels index
    them. Items: {"image": uint8 (C,H,W), "label": int64 scalar}."""

    def __init__(self, root: str | Path, recipe: AugmentRecipe = AugmentRecipe(), channels: int = 3) -> None:
        self.root = require_folder(Path(root), LABELLED_LAYOUT)
        self.channels = _one_channel_count(channels)
        self._set_recipe(recipe, paired=False)
        folders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise DataError(f"no class folders in {self.root}: {LABELLED_LAYOUT}")
        self.classes = tuple(p.name for p in folders)
        self.items: list[tuple[Path, int]] = []
        skipped: list[Path] = []
        for label, folder in enumerate(folders):
            paths, bad = readable_images(folder, f"every class folder needs images ({LABELLED_LAYOUT})")
            self.items += [(p, label) for p in paths]
            skipped += bad
        warn_skipped(skipped)

    @property
    def labels(self) -> list[int]:
        """The class index of every item, in item order (what class-balanced sampling needs)."""
        return [label for _, label in self.items]

    def _item(self, i: int, seed: int) -> dict[str, torch.Tensor]:
        path, label = self.items[i]
        (image,) = self._augment(seed, self._read(path, self.channels))
        return {"image": image, "label": torch.tensor(label, dtype=torch.int64)}


class ImageFolderDataset(_SeededDataset):
    """One folder of images, for models that derive their own inputs (colourisation from the
    photo's grey version, for instance). Items: {"image": uint8 (C,H,W)}."""

    def __init__(self, root: str | Path, recipe: AugmentRecipe = AugmentRecipe(), channels: int = 3) -> None:
        self.channels = _one_channel_count(channels)
        self.root = Path(root)
        self._set_recipe(recipe, paired=False)
        self.items, bad = readable_images(self.root, IMAGES_LAYOUT)
        warn_skipped(bad)

    def _item(self, i: int, seed: int) -> dict[str, torch.Tensor]:
        (image,) = self._augment(seed, self._read(self.items[i], self.channels))
        return {"image": image}


def open_dataset(kind: str, *, data: str | Path | None = None, a: str | Path | None = None,
                 b: str | Path | None = None, channels: int | tuple[int, int] = 3,
                 recipe: AugmentRecipe = AugmentRecipe(), split: str = "train") -> Dataset:
    """The dataset a model's `data` kind ("paired", "unpaired", "labelled", "images") reads,
    from CLI folders. `split` "test" (evaluation) reads a dataset's held-out part when it has
    one: `DATA/test/` for one-folder kinds, `testA/` and `testB/` for unpaired data."""
    if kind not in ("paired", "unpaired", "labelled", "images"):
        raise ValueError(f"unknown data kind {kind!r}: expected paired, unpaired, labelled or images")
    if kind == "unpaired":
        root_a, root_b = unpaired_roots(data, a, b, split)
        return UnpairedDataset(root_a, root_b, recipe, channels)
    if data is None:
        raise DataError(f"{kind} data needs --data")
    if split == "test" and (Path(data) / "test").is_dir():
        data = Path(data) / "test"
    if kind == "paired":
        return PairedDataset(data, recipe, channels)
    if kind == "images":
        return ImageFolderDataset(data, recipe, channels)  # type: ignore[arg-type]
    return LabelledDataset(data, recipe, channels)  # type: ignore[arg-type]

"""The folder datasets (paired, unpaired, labelled, images) the trainer reads from, and the seeded
sampler that makes their order and augmentation reproducible. Files are checked once when a dataset is built: unreadable ones are skipped with one warning and
layout problems raise `DataError`. Items are uint8 (C,H,W) tensors, augmented with a per-item seed."""
from __future__ import annotations

import logging
import operator
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .augment import AugmentRecipe, apply, build_transform
from .decode import IMAGE_EXTENSIONS, convert_channels, exif_orientation, read_image
from .errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS", "read_image", "list_images", "PairedDataset", "UnpairedDataset",
    "LabelledDataset", "ImageFolderDataset", "open_dataset", "SeededSampler",
]

log = logging.getLogger("img2img")

PAIRED_LAYOUT = ("expected a/ and b/ folders with matching file names, "
                 "or one folder of side-by-side A|B images")
UNPAIRED_LAYOUT = ("expected one folder of images per domain (--a and --b, "
                   "or --data holding a/ and b/ or trainA/ and trainB/)")
LABELLED_LAYOUT = "expected one sub-folder of images per class"
IMAGES_LAYOUT = "expected one folder of images (--data)"


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in `folder` (not recursive), sorted by name; hidden files skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    return sorted(
        p for p in folder.iterdir()
        if not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def _require_folder(folder: Path, layout: str) -> Path:
    if not folder.exists():
        raise DataError(f"data folder {folder} does not exist: {layout}")
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: {layout}")
    return folder


def _probe_small(path: Path) -> tuple[int, int] | None:
    # A 1/8-scale grey decode is enough to know a file is readable and costs a fraction of a read.
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8) if data.size else None
    return None if image is None else image.shape[:2]


def _probe_full(path: Path) -> tuple[int, int] | None:
    # Full-size shape, oriented the way read_image orients it (side-by-side files need the width).
    data = np.fromfile(str(path), dtype=np.uint8)
    flags = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        return None
    h, w = image.shape[:2]
    return (w, h) if exif_orientation(data) in (5, 6, 7, 8) else (h, w)


def _scan(paths: Sequence[Path], probe: Callable = _probe_small) -> tuple[dict, list[Path]]:
    """Probe every file in a small thread pool (OpenCV releases the GIL while decoding).

    Returns ({path: (h, w)} for readable files, [unreadable paths]).
    """
    def safe(path: Path):
        try:
            return probe(path)
        except (OSError, cv2.error):
            return None

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # we report bad files ourselves
    try:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            shapes = list(pool.map(safe, paths))
    finally:
        cv2.utils.logging.setLogLevel(level)
    good = {p: s for p, s in zip(paths, shapes) if s is not None}
    return good, [p for p, s in zip(paths, shapes) if s is None]


def _warn_skipped(skipped: Sequence[Path], what: str = "unreadable image file(s)") -> None:
    if skipped:
        listing = "\n".join(f"  {p}" for p in skipped)
        log.warning("skipping %d %s:\n%s", len(skipped), what, listing)


def _readable_images(folder: Path, layout: str) -> tuple[list[Path], list[Path]]:
    """(readable images, unreadable files) directly in `folder`; DataError if none is readable."""
    paths = list_images(_require_folder(folder, layout))
    if not paths:
        raise DataError(f"no images in {folder}: {layout}")
    good, bad = _scan(paths)
    if not good:
        raise DataError(f"no readable image in {folder}: {layout}")
    return list(good), bad


def _fresh_seed() -> int:
    # torch's generator (not os entropy): seeded runs and seeded loader workers stay reproducible.
    return int(torch.randint(0, 2**62, ()).item())


def _child_seeds(seed: int, n: int, *more: int) -> list[int]:
    """`n` well-mixed 32-bit seeds derived from `seed` (and `more` integers, e.g. the epoch)."""
    entropy = [int(v) % 2**64 for v in (seed, *more)]
    return [int(s) for s in np.random.SeedSequence(entropy).generate_state(n)]


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def _channel_pair(channels: int | tuple[int, int]) -> tuple[int, int]:
    pair = (channels, channels) if isinstance(channels, int) else tuple(channels)
    if len(pair) != 2 or any(c not in (1, 3) for c in pair):
        raise ValueError(f"channels must be 1, 3 or a pair of them, got {channels!r}")
    return pair  # type: ignore[return-value]


class _SeededDataset(Dataset):
    """Indexing shared by all datasets: `ds[i]` draws a fresh seed, `ds[(i, seed)]` uses `seed`."""

    items: list

    def __len__(self) -> int:
        return len(self.items)

    def _split(self, index) -> tuple[int, int]:
        i, seed = index if isinstance(index, tuple) else (index, _fresh_seed())
        i, n = operator.index(i), len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} items")
        return i % n, int(seed)


class PairedDataset(_SeededDataset):
    """Aligned pairs: `root/a/` + `root/b/` with matching file stems (`mode == "folders"`), or one
    folder of side-by-side A|B images (`mode == "side_by_side"`). Items: {"a", "b"} uint8 (C,H,W).

    `channels` is one count for both sides or an (a, b) pair, e.g. (1, 3) for colourisation.

    Styles (`mode == "styles"`): a root holding no images but sub-folders that each hold a/ and
    b/ (`root/<style>/a`, `root/<style>/b`). Sorted folder names are `.classes`, `.labels` gives
    each item's style index, and items gain "style", an int64 scalar.
    """

    classes: tuple[str, ...] = ()
    labels: list[int] | None = None

    def __init__(self, root: str | Path, recipe: AugmentRecipe = AugmentRecipe(),
                 channels: int | tuple[int, int] = 3) -> None:
        self.root = _require_folder(Path(root), PAIRED_LAYOUT)
        self.channels = _channel_pair(channels)
        self.transform = build_transform(recipe, paired=True)
        if (self.root / "a").is_dir() and (self.root / "b").is_dir():
            self.mode = "folders"
            self.items = self._match_folders()
        elif styles := _style_folders(self.root):
            self.mode = "styles"
            self.classes = tuple(p.name for p in styles)
            self.items, self.labels = [], []
            for label, folder in enumerate(styles):
                pairs = self._match_folders(folder)
                self.items += pairs
                self.labels += [label] * len(pairs)
        else:
            self.mode = "side_by_side"
            self.items = [(p, p) for p in self._side_by_side_files()]

    def _match_folders(self, root: Path | None = None) -> list[tuple[Path, Path]]:
        root = root or self.root
        side_a, side_b = (_by_stem(root / side) for side in "ab")
        common = sorted(side_a.keys() & side_b.keys())
        if not common:
            a, b = root / "a", root / "b"
            raise DataError(f"no file names in {a} match any in {b}: {PAIRED_LAYOUT}")
        lonely = [side_a.get(s) or side_b[s] for s in sorted(side_a.keys() ^ side_b.keys())]
        _warn_skipped(lonely, "image(s) without a partner of the same name")
        pairs = [(side_a[s], side_b[s]) for s in common]
        good, bad = _scan([p for pair in pairs for p in pair])
        _warn_skipped(bad)
        pairs = [(a, b) for a, b in pairs if a in good and b in good]
        if not pairs:
            raise DataError(f"no readable image pair in {root}: {PAIRED_LAYOUT}")
        return pairs

    def _side_by_side_files(self) -> list[Path]:
        paths = list_images(self.root)
        if not paths:
            raise DataError(f"no images in {self.root}: {PAIRED_LAYOUT}")
        good, bad = _scan(paths, _probe_full)
        _warn_skipped(bad)
        odd = [p for p, (_, w) in good.items() if w % 2]
        _warn_skipped(odd, "side-by-side image(s) of odd width, which cannot be split in half")
        files = [p for p in good if p not in odd]
        if not files:
            raise DataError(f"no readable side-by-side image in {self.root}: {PAIRED_LAYOUT}")
        return files

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        path_a, path_b = self.items[i]
        ca, cb = self.channels
        if self.mode != "side_by_side":
            return read_image(path_a, ca), read_image(path_b, cb)
        image = read_image(path_a, ca if ca == cb else 3)
        if image.shape[1] % 2:  # checked at construction; only a file changed since then gets here
            raise DataError(f"cannot split side-by-side image {path_a}: its width {image.shape[1]} is odd")
        half = image.shape[1] // 2
        return convert_channels(image[:, :half], ca), convert_channels(image[:, half:], cb)

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        i, seed = self._split(index)
        a, b = self._load(i)
        out = apply(self.transform, seed, image=a, b=b)
        item = {"a": _to_tensor(out["image"]), "b": _to_tensor(out["b"])}
        if self.labels is not None:
            item["style"] = torch.tensor(self.labels[i], dtype=torch.int64)
        return item


def _style_folders(root: Path) -> list[Path]:
    """Sub-folders of `root` holding a/ and b/, when `root` itself holds no images."""
    if list_images(root):
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / "a").is_dir() and (p / "b").is_dir())


def _by_stem(folder: Path) -> dict[str, Path]:
    by_stem: dict[str, Path] = {}
    for path in list_images(folder):
        if path.stem in by_stem:  # x.png and x.jpg: which one pairs with b/x is anyone's guess
            raise DataError(f"{by_stem[path.stem]} and {path} have the same name; keep one of them")
        by_stem[path.stem] = path
    return by_stem


class UnpairedDataset(_SeededDataset):
    """Two independent folders. Item i pairs a[i % len_a] with a b image picked by the item's seed,
    so pairings change between epochs (the CycleGAN reference draws B at random too); each side
    gets its own augmentation draw. `len` is the larger folder's size."""

    def __init__(self, root_a: str | Path, root_b: str | Path, recipe: AugmentRecipe = AugmentRecipe(),
                 channels: int | tuple[int, int] = 3) -> None:
        self.channels = _channel_pair(channels)
        self.transform = build_transform(recipe, paired=False)
        self.a_paths, bad_a = _readable_images(Path(root_a), UNPAIRED_LAYOUT)
        self.b_paths, bad_b = _readable_images(Path(root_b), UNPAIRED_LAYOUT)
        _warn_skipped(bad_a + bad_b)

    def __len__(self) -> int:
        return max(len(self.a_paths), len(self.b_paths))

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        i, seed = self._split(index)
        seed_a, seed_b, seed_pick = _child_seeds(seed, 3)
        a = read_image(self.a_paths[i % len(self.a_paths)], self.channels[0])
        b = read_image(self.b_paths[seed_pick % len(self.b_paths)], self.channels[1])
        a = apply(self.transform, seed_a, image=a)["image"]
        b = apply(self.transform, seed_b, image=b)["image"]
        return {"a": _to_tensor(a), "b": _to_tensor(b)}


class LabelledDataset(_SeededDataset):
    """One sub-folder per class under `root`; sorted folder names are `.classes` and labels index
    them. Items: {"image": uint8 (C,H,W), "label": int64 scalar}."""

    def __init__(self, root: str | Path, recipe: AugmentRecipe = AugmentRecipe(), channels: int = 3) -> None:
        self.root = _require_folder(Path(root), LABELLED_LAYOUT)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.channels = channels
        self.transform = build_transform(recipe, paired=False)
        folders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise DataError(f"no class folders in {self.root}: {LABELLED_LAYOUT}")
        self.classes = tuple(p.name for p in folders)
        self.items: list[tuple[Path, int]] = []
        skipped: list[Path] = []
        for label, folder in enumerate(folders):
            paths, bad = _readable_images(folder, f"every class folder needs images ({LABELLED_LAYOUT})")
            self.items += [(p, label) for p in paths]
            skipped += bad
        _warn_skipped(skipped)

    @property
    def labels(self) -> list[int]:
        """The class index of every item, in item order (what class-balanced sampling needs)."""
        return [label for _, label in self.items]

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        i, seed = self._split(index)
        path, label = self.items[i]
        image = apply(self.transform, seed, image=read_image(path, self.channels))["image"]
        return {"image": _to_tensor(image), "label": torch.tensor(label, dtype=torch.int64)}


class ImageFolderDataset(_SeededDataset):
    """One folder of images, for models that derive their own inputs (colourisation from the
    photo's grey version, for instance). Items: {"image": uint8 (C,H,W)}."""

    def __init__(self, root: str | Path, recipe: AugmentRecipe = AugmentRecipe(), channels: int = 3) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.root, self.channels = Path(root), channels
        self.transform = build_transform(recipe, paired=False)
        self.items, bad = _readable_images(self.root, IMAGES_LAYOUT)
        _warn_skipped(bad)

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        i, seed = self._split(index)
        image = apply(self.transform, seed, image=read_image(self.items[i], self.channels))["image"]
        return {"image": _to_tensor(image)}


def open_dataset(kind: str, *, data: str | Path | None = None, a: str | Path | None = None,
                 b: str | Path | None = None, channels: int | tuple[int, int] = 3,
                 recipe: AugmentRecipe = AugmentRecipe()) -> Dataset:
    """The dataset a model's `data` kind ("paired", "unpaired", "labelled", "images") reads,
    from CLI folders."""
    if kind not in ("paired", "unpaired", "labelled", "images"):
        raise ValueError(f"unknown data kind {kind!r}: expected paired, unpaired, labelled or images")
    if kind == "unpaired":
        root_a, root_b = _unpaired_roots(data, a, b)
        return UnpairedDataset(root_a, root_b, recipe, channels)
    if data is None:
        raise DataError(f"{kind} data needs --data")
    if kind == "paired":
        return PairedDataset(data, recipe, channels)
    if kind == "images":
        return ImageFolderDataset(data, recipe, channels)  # type: ignore[arg-type]
    return LabelledDataset(data, recipe, channels)  # type: ignore[arg-type]


def _unpaired_roots(data, a, b) -> tuple[Path, Path]:
    if a is not None or b is not None:
        if a is None or b is None:
            raise DataError("unpaired data needs both --a and --b (or --data)")
        return Path(a), Path(b)
    if data is None:
        raise DataError("unpaired data needs --data, or --a and --b")
    root = _require_folder(Path(data), UNPAIRED_LAYOUT)
    for names in (("a", "b"), ("trainA", "trainB")):
        if all((root / n).is_dir() for n in names):
            return root / names[0], root / names[1]
    raise DataError(f"no a/ and b/ (or trainA/ and trainB/) folders in {root}: {UNPAIRED_LAYOUT}")


class SeededSampler(Sampler):
    """Yields `(index, sample_seed)` for one epoch; order and seeds depend only on (seed, epoch).

    `set_epoch(epoch, skip)` picks the epoch and drops its first `skip` items without touching
    them, so a run resumed mid-epoch sees exactly the samples it would have seen.

    With `labels` (one class index per item) an epoch is class-balanced: its `length` draws are
    split evenly between the classes (counts differ by at most one), small classes repeat their
    items and large ones contribute a fresh random subset each epoch.
    """

    def __init__(self, length: int, seed: int, shuffle: bool = True,
                 labels: Sequence[int] | None = None) -> None:
        if length <= 0:
            raise ValueError(f"length must be positive, got {length}")
        self.length, self.seed, self.shuffle = length, int(seed), shuffle
        self.epoch, self.skip = 0, 0
        self.classes: list[torch.Tensor] | None = None
        if labels is not None:
            if len(labels) != length:
                raise ValueError(f"got {len(labels)} labels for {length} items")
            by_class: dict[int, list[int]] = {}
            for index, label in enumerate(labels):
                by_class.setdefault(int(label), []).append(index)
            self.classes = [torch.tensor(by_class[c]) for c in sorted(by_class)]

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        if not 0 <= skip <= self.length:
            raise ValueError(f"skip must be between 0 and {self.length}, got {skip}")
        self.epoch, self.skip = int(epoch), int(skip)

    def __len__(self) -> int:
        return self.length - self.skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator()
        high, low = _child_seeds(self.seed, 2, self.epoch)
        generator.manual_seed(high << 32 | low)
        if self.classes is not None:
            order = self._balanced_order(generator)
        elif self.shuffle:
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        # Seeds follow the position in the epoch, drawn after the permutation from the same stream.
        seeds = torch.randint(0, 2**62, (self.length,), generator=generator).tolist()
        yield from zip(order[self.skip:], seeds[self.skip:])

    def _balanced_order(self, generator: torch.Generator) -> list[int]:
        assert self.classes is not None
        count = len(self.classes)
        quota = torch.full((count,), self.length // count)
        quota[torch.randperm(count, generator=generator)[: self.length % count]] += 1
        picks = []
        for members, wanted in zip(self.classes, quota.tolist()):
            rounds = -(-wanted // len(members))
            shuffled = [members[torch.randperm(len(members), generator=generator)]
                        for _ in range(rounds)]
            picks.append(torch.cat(shuffled)[:wanted])
        order = torch.cat(picks)
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=generator)]
        return order.tolist()

"""Finding the images a dataset reads: listing folders, matching pairs by name, checking every file
once (unreadable ones are skipped with one warning) and the `DataError` messages that name the
expected layout. The datasets in `img2img.data` are built on these."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError
from .decode import IMAGE_EXTENSIONS, exif_orientation

__all__ = ["list_images"]

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


def require_folder(folder: Path, layout: str) -> Path:
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


def scan(paths: Sequence[Path], probe: Callable = _probe_small) -> tuple[dict, list[Path]]:
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


def warn_skipped(skipped: Sequence[Path], what: str = "unreadable image file(s)") -> None:
    if skipped:
        listing = "\n".join(f"  {p}" for p in skipped)
        log.warning("skipping %d %s:\n%s", len(skipped), what, listing)


def readable_images(folder: Path, layout: str) -> tuple[list[Path], list[Path]]:
    """(readable images, unreadable files) directly in `folder`; DataError if none is readable."""
    paths = list_images(require_folder(folder, layout))
    if not paths:
        raise DataError(f"no images in {folder}: {layout}")
    good, bad = scan(paths)
    if not good:
        raise DataError(f"no readable image in {folder}: {layout}")
    return list(good), bad


def matched_pairs(root: Path) -> list[tuple[Path, Path]]:
    """Readable (a, b) files of `root/a/` and `root/b/` sharing a file stem, sorted by stem."""
    side_a, side_b = (_by_stem(root / side) for side in "ab")
    common = sorted(side_a.keys() & side_b.keys())
    if not common:
        raise DataError(f"no file names in {root / 'a'} match any in {root / 'b'}: {PAIRED_LAYOUT}")
    lonely = [side_a.get(s) or side_b[s] for s in sorted(side_a.keys() ^ side_b.keys())]
    warn_skipped(lonely, "image(s) without a partner of the same name")
    pairs = [(side_a[s], side_b[s]) for s in common]
    good, bad = scan([p for pair in pairs for p in pair])
    warn_skipped(bad)
    pairs = [(a, b) for a, b in pairs if a in good and b in good]
    if not pairs:
        raise DataError(f"no readable image pair in {root}: {PAIRED_LAYOUT}")
    unequal = [(a, b) for a, b in pairs if good[a] != good[b]]
    if unequal:  # both sides are resized to --load-size, so a pair stays aligned if it was
        log.warning("%d pair(s) whose a and b images differ in size are each resized to the "
                    "training size, e.g. %s and %s", len(unequal), *unequal[0])
    return pairs


def side_by_side_files(root: Path) -> list[Path]:
    """Readable images directly in `root` whose width splits into two halves."""
    paths = list_images(root)
    if not paths:
        raise DataError(f"no images in {root}: {PAIRED_LAYOUT}")
    good, bad = scan(paths, _probe_full)
    warn_skipped(bad)
    odd = [p for p, (_, w) in good.items() if w % 2]
    warn_skipped(odd, "side-by-side image(s) of odd width, which cannot be split in half")
    files = [p for p in good if p not in odd]
    if not files:
        raise DataError(f"no readable side-by-side image in {root}: {PAIRED_LAYOUT}")
    # A folder of ordinary photos is also "even-width images": say how it is being read.
    log.info("reading %d image(s) in %s as side-by-side A|B pairs (left half = a); for "
             "separate files use %s/a/ and %s/b/", len(files), root, root, root)
    return files


def style_folders(root: Path) -> list[Path]:
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


def unpaired_roots(data, a, b, split: str = "train") -> tuple[Path, Path]:
    """The two domain folders of unpaired data, from --a and --b or from --data. `split` "test"
    (evaluation) prefers testA/ and testB/, then a/ and b/, then trainA/ and trainB/."""
    if a is not None or b is not None:
        if a is None or b is None:
            raise DataError("unpaired data needs both --a and --b (or --data)")
        return Path(a), Path(b)
    if data is None:
        raise DataError("unpaired data needs --data, or --a and --b")
    root = require_folder(Path(data), UNPAIRED_LAYOUT)
    order = [("a", "b"), ("trainA", "trainB")]
    if split == "test":
        order.insert(0, ("testA", "testB"))
    for names in order:
        if all((root / n).is_dir() for n in names):
            return root / names[0], root / names[1]
    raise DataError(f"no a/ and b/ (or trainA/ and trainB/) folders in {root}: {UNPAIRED_LAYOUT}")

"""What `img2img sample` does, as plain functions: turn `--label` values (class names, indices, `all`) into class indices, lay generated images out in a
grid with one row (or block of rows) per label, and write the grid or one file per image."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from img2img import Img2ImgError
from img2img.data import IMAGE_EXTENSIONS, grid, to_array, write_image

ALL = "all"
LISTED = 40  # classes named in an error message before "..."


def describe_classes(classes: Sequence[str]) -> str:
    if not classes:
        return "none (an unlabelled model: use --label 0)"
    shown = [f"{name} ({i})" if name != str(i) else name for i, name in enumerate(classes)]
    more = f", ... ({len(classes)} in all)" if len(shown) > LISTED else ""
    return ", ".join(shown[:LISTED]) + more


def resolve_labels(requested: Sequence[str], classes: Sequence[str]) -> list[int]:
    """Class indices for `--label` values: a class name, an index, or `all` (every class in
    order). A class name wins over an index that reads the same."""
    count = max(1, len(classes))
    indices: list[int] = []
    for item in requested:
        text = item.strip()
        if text in classes:
            indices.append(list(classes).index(text))
        elif text.lower() == ALL:
            indices.extend(range(count))
        elif text.isdigit() and int(text) < count:
            indices.append(int(text))
        else:
            raise Img2ImgError(f"unknown label '{item}'; this model's classes: "
                               f"{describe_classes(classes)} (or 'all')")
    return indices


def class_name(label: int, classes: Sequence[str]) -> str:
    return classes[label] if label < len(classes) else str(label)


def layout(images: Tensor, groups: int, per_group: int, columns: int | None) -> dict[str, Tensor]:
    """Grid columns (see `img2img.data.grid`) for `groups` consecutive runs of `per_group`
    images: each group starts a new row and wraps after `columns` images (default: one row per
    group when there are several, a near-square block for one). Gaps are black."""
    if columns is None:
        columns = per_group if groups > 1 else math.ceil(math.sqrt(per_group))
    columns = max(1, min(columns, per_group))
    blank = torch.full_like(images[0], -1.0)
    rows: list[list[Tensor]] = []
    for g in range(groups):
        mine = list(images[g * per_group:(g + 1) * per_group])
        for start in range(0, per_group, columns):
            row = mine[start:start + columns]
            rows.append(row + [blank] * (columns - len(row)))
    return {f"column_{j}": torch.stack([row[j] for row in rows]) for j in range(columns)}


def write_samples(images: Tensor, labels: Sequence[int], classes: Sequence[str], out: Path,
                  *, per_label: int, separate: bool, columns: int | None = None) -> list[Path]:
    """Write `images` ((N,C,H,W) in [-1, 1], `per_label` per entry of `labels`) as one grid file
    `out`, or with `separate` as `out/<class>_<k>.png`; returns the paths written."""
    if separate:
        if out.suffix.lower() in IMAGE_EXTENSIONS:
            raise Img2ImgError(f"--separate writes one file per image into a folder; -o {out} "
                               "looks like a file name")
        if out.exists() and not out.is_dir():
            raise Img2ImgError(f"-o {out} exists and is not a folder")
        written, counts = [], {}
        for image, label in zip(images, (lab for lab in labels for _ in range(per_label))):
            name = class_name(label, classes)
            k = counts[name] = counts.get(name, -1) + 1
            path = out / f"{name}_{k:03d}.png"
            write_image(path, to_array(image))
            written.append(path)
        return written
    if out.suffix.lower() not in IMAGE_EXTENSIONS:
        raise Img2ImgError(f"-o {out}: name the grid file with an image extension "
                           f"({', '.join(IMAGE_EXTENSIONS)}), or pass --separate for a folder")
    columns_ = layout(images, len(labels), per_label, columns)
    write_image(out, grid(columns_, channels=images.shape[1]))
    return [out]

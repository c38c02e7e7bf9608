#!/usr/bin/env python
"""Preparation helpers for the folder layouts img2img reads (see datasets/README.md):

    python datasets/prepare.py split SRC DST            side-by-side A|B images -> DST/a, DST/b
    python datasets/prepare.py join DIR DST             DIR/a + DIR/b (matching names) -> A|B images
    python datasets/prepare.py holdout SRC DST --test 0.2   -> DST/train, DST/test (pairs kept together)
    python datasets/prepare.py edges SRC DST            photos -> edges|photo pairs (Canny edge maps)

Inputs are only read; every output is written beside nothing it could overwrite."""
from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import click
import cv2
import numpy as np

from img2img.data import list_images
from img2img.data.decode import read_native
from img2img.errors import Img2ImgError
from img2img.data.images import write_image


def _fresh(folder: Path) -> Path:
    if folder.exists() and any(folder.iterdir()):
        raise click.UsageError(f"{folder} exists and is not empty; choose a new destination")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _images(folder: Path) -> list[Path]:
    try:
        images = list_images(folder)
    except Img2ImgError as exc:
        raise click.UsageError(str(exc)) from None
    if not images:
        raise click.UsageError(f"{folder} holds no images")
    return images


def _readable(paths: list[Path], failed: list[str]):
    """(path, image) for each of `paths` that decodes; the others' errors go to `failed`."""
    for path in paths:
        try:
            yield path, read_native(path)
        except Img2ImgError as exc:
            failed.append(str(exc))


def _report(done: int, failed: list[str]) -> None:
    click.echo(f"wrote {done} image(s)", err=True)
    for message in failed:
        click.echo(f"error: {message}", err=True)
    if failed:
        sys.exit(1)


@click.group()
def cli() -> None:
    """Prepare folders of images for img2img."""


@cli.command()
@click.argument("src", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("dst", type=click.Path(path_type=Path, file_okay=False))
def split(src: Path, dst: Path) -> None:
    """Split side-by-side A|B images in SRC into DST/a and DST/b with the same names."""
    images = _images(src)
    out_a, out_b = _fresh(dst / "a"), _fresh(dst / "b")
    done, failed = 0, []
    for path, image in _readable(images, failed):
        if image.shape[1] % 2:
            failed.append(f"{path}: width {image.shape[1]} is odd, so it is not A|B side by side")
            continue
        half = image.shape[1] // 2
        write_image(out_a / path.name, image[:, :half])
        write_image(out_b / path.name, image[:, half:])
        done += 1
    _report(done, failed)


@cli.command()
@click.argument("src", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("dst", type=click.Path(path_type=Path, file_okay=False))
def join(src: Path, dst: Path) -> None:
    """Join SRC/a and SRC/b images with matching names into side-by-side A|B images in DST."""
    side_a = {p.stem: p for p in _images(src / "a")}
    side_b = {p.stem: p for p in _images(src / "b")}
    out = _fresh(dst)
    done, failed = 0, [f"{side_a.get(s) or side_b.get(s)}: no partner with the same name"
                       for s in sorted(side_a.keys() ^ side_b.keys())]
    for stem in sorted(side_a.keys() & side_b.keys()):
        try:
            a, b = read_native(side_a[stem]), read_native(side_b[stem])
        except Img2ImgError as exc:
            failed.append(str(exc))
            continue
        if a.shape != b.shape or a.dtype != b.dtype:
            failed.append(f"{side_a[stem]} and {side_b[stem]} differ in size or depth "
                          f"({a.shape} vs {b.shape})")
            continue
        write_image(out / f"{stem}.png", np.concatenate([a, b], axis=1))
        done += 1
    _report(done, failed)


@cli.command()
@click.argument("src", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("dst", type=click.Path(path_type=Path, file_okay=False))
@click.option("--test", "fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True, help="share of images held out for testing")
@click.option("--seed", type=int, default=0, show_default=True)
def holdout(src: Path, dst: Path, fraction: float, seed: int) -> None:
    """Copy SRC into DST/train and DST/test. With SRC/a and SRC/b, pairs stay together."""
    sides = [s for s in ("a", "b") if (src / s).is_dir()]
    if sides == ["a", "b"]:
        stems = sorted({p.stem for p in _images(src / "a")} & {p.stem for p in _images(src / "b")})
        files = {s: {p.stem: p for p in _images(src / s)} for s in sides}
    else:
        sides, files = [""], {"": {p.stem: p for p in _images(src)}}
        stems = sorted(files[""])
    random.Random(seed).shuffle(stems)
    n_test = max(1, round(len(stems) * fraction))
    if n_test >= len(stems):
        raise click.UsageError(f"{len(stems)} image(s) are too few to hold out {fraction:.0%}")
    for split_name, chosen in (("test", stems[:n_test]), ("train", stems[n_test:])):
        for side in sides:
            out = _fresh(dst / split_name / side)
            for stem in chosen:
                shutil.copy2(files[side][stem], out / files[side][stem].name)
    click.echo(f"{len(stems) - n_test} for training, {n_test} held out, in {dst}", err=True)


def edge_map(photo: np.ndarray, low: int, high: int, blur: int) -> np.ndarray:
    """Canny edges of `photo` (HxWxC, uint8/uint16) as black lines on white, in its depth and
    channel count (without alpha)."""
    colour = photo[..., :3] if photo.shape[2] >= 3 else photo[..., :1]
    top = np.iinfo(photo.dtype).max
    eight = np.clip((colour.astype(np.float32) * (255.0 / top)).round(), 0, 255).astype(np.uint8)
    grey = cv2.cvtColor(eight, cv2.COLOR_RGB2GRAY) if eight.shape[2] == 3 else eight[..., 0]
    if blur:
        grey = cv2.GaussianBlur(grey, (blur, blur), 0)
    lines = cv2.Canny(grey, low, high) > 0
    edges = np.where(lines, 0, top).astype(photo.dtype)
    return np.repeat(edges[:, :, None], colour.shape[2], axis=2)


@cli.command()
@click.argument("src", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("dst", type=click.Path(path_type=Path, file_okay=False))
@click.option("--low", type=click.IntRange(0, 255), default=60, show_default=True,
              help="Canny's lower hysteresis threshold (on 8-bit grey)")
@click.option("--high", type=click.IntRange(1, 1020), default=150, show_default=True,
              help="Canny's upper hysteresis threshold: edges start above it")
@click.option("--blur", type=click.IntRange(0, 31), default=3, show_default=True,
              help="Gaussian blur kernel size before Canny, odd (0 = none)")
def edges(src: Path, dst: Path, low: int, high: int, blur: int) -> None:
    """Pair each photo in SRC with its Canny edge map: side-by-side edges|photo images in DST
    with the photos' names, the layout of datasets/faces_edges2photo (an alpha channel is
    dropped). The defaults made the bundled faces' edge maps."""
    if low >= high:
        raise click.UsageError(f"--low {low} must be below --high {high}")
    if blur and blur % 2 == 0:
        raise click.UsageError(f"--blur {blur}: the blur kernel size must be odd, or 0 for none")
    images = _images(src)
    out = _fresh(dst)
    done, failed = 0, []
    for path, photo in _readable(images, failed):
        colour = photo[..., :3] if photo.shape[2] >= 3 else photo[..., :1]
        pair = np.concatenate([edge_map(photo, low, high, blur), colour], axis=1)
        write_image(out / path.name, pair if pair.shape[2] > 1 else pair[..., 0])
        done += 1
    _report(done, failed)


if __name__ == "__main__":
    cli()

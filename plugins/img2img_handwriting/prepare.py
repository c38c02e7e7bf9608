"""`img2img prepare handwriting GLYPHS DST`: a paired print -> hand dataset from handwritten glyph
images alone. Each glyph's character comes from its folder (`GLYPHS/a/0.png`) or the first
character of its file name (`GLYPHS/a_0.png`); the printed counterpart is rendered in a font, and
both are normalised the same way (ink on white, ink box fitted and centred on a 64 px canvas).
Longer-named sub-folders are writers or styles: `GLYPHS/<style>/...` goes to `DST/<style>/a|b`,
the layout pix2pix reads as style labels."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import numpy as np

import img2img
from img2img.data import list_images, read_native, write_image

from .glyphs import Jitter, load_font, normalise_glyph, render_glyph
from .preset import GLYPH_SIZE, MARGIN


@dataclasses.dataclass
class Prepared:
    pairs: int = 0
    styles: list[str] = dataclasses.field(default_factory=list)
    skipped: list[tuple[Path, str]] = dataclasses.field(default_factory=list)


def glyph_files(folder: Path) -> list[tuple[str, Path]]:
    """(character, file) for the glyphs in `folder`: files named `<char>...` directly in it and
    every image inside one-character sub-folders."""
    found = [(p.stem[0], p) for p in list_images(folder)]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and len(p.name) == 1):
        found += [(sub.name, p) for p in list_images(sub)]
    return found


def style_folders(glyphs: Path) -> list[Path]:
    """Sub-folders with longer names: one writer or style each."""
    return sorted(p for p in glyphs.iterdir()
                  if p.is_dir() and len(p.name) > 1 and not p.name.startswith("."))


def _safe(char: str) -> str:
    return char if char.isalnum() and char.isascii() else f"u{ord(char):04x}"


def prepare_handwriting(glyphs: Path, dst: Path, font: Path | None = None, *,
                        size: int = GLYPH_SIZE, margin: int = MARGIN, jitter: int = 0,
                        seed: int = 0) -> Prepared:
    """Write DST/a (printed) and DST/b (handwritten) glyph pairs with matching names, or
    DST/<style>/a|b when GLYPHS holds style sub-folders. `jitter` adds that many randomly
    rotated, scaled, sheared and elastically distorted copies of every pair (one draw per pair)."""
    if not glyphs.is_dir():
        raise img2img.DataError(f"{glyphs} is not a folder of handwritten glyph images")
    styles = style_folders(glyphs)
    jobs = [(glyphs / s.name, dst / s.name) for s in styles] or [(glyphs, dst)]
    typeface = load_font(font, size)
    rng, shake = np.random.default_rng(seed), Jitter()
    outcome = Prepared(styles=[s.name for s in styles])
    for source, target in jobs:
        printed: dict[str, np.ndarray] = {}
        for char, path in glyph_files(source):
            try:
                hand = normalise_glyph(read_native(path), size, margin)
            except img2img.DataError as exc:
                outcome.skipped.append((path, str(exc)))
                continue
            if char not in printed:
                printed[char] = render_glyph(char, typeface, size, margin)
            stem = f"{_safe(char)}_{path.stem}" if path.parent != source else path.stem
            _write_pair(target, stem, printed[char], hand)
            for k in range(1, jitter + 1):
                draw = shake.draw(rng, size)
                _write_pair(target, f"{stem}-j{k}", shake.apply(printed[char], draw),
                            shake.apply(hand, draw))
            outcome.pairs += 1 + jitter
    if not outcome.pairs:
        raise img2img.DataError(f"no glyph images in {glyphs}: expected files named <char>... "
                                "or one sub-folder per character")
    return outcome


def _write_pair(target: Path, stem: str, printed: np.ndarray, hand: np.ndarray) -> None:
    for side, image in (("a", printed), ("b", hand)):
        (target / side).mkdir(parents=True, exist_ok=True)
        write_image(target / side / f"{stem}.png", image)


@click.command("handwriting", context_settings={"show_default": True})
@click.argument("glyphs", type=click.Path(file_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(file_okay=False, path_type=Path))
@click.option("--font", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="TrueType/OpenType font for the printed side (default: "
                                 "Pillow's built-in font)")
@click.option("--size", type=click.IntRange(min=16), default=GLYPH_SIZE,
              help="glyph canvas size in px")
@click.option("--padding", "margin", type=click.IntRange(min=0), default=MARGIN,
              help="paper around the fitted ink box, in px (`--margin` is the faces' "
                   "fraction of the face size)")
@click.option("--jitter", type=click.IntRange(min=0), default=0,
              help="extra copies of each pair on disk with small random rotation, scale, "
                   "shear and elastic distortion (the handwriting preset already warps every "
                   "pair in training; this is for other tools or a fixed set)")
@click.option("--seed", type=int, default=0, help="random seed of the jitter")
def prepare_command(glyphs: Path, dst: Path, font: Path | None, size: int, margin: int,
                    jitter: int, seed: int) -> None:
    """Pair handwritten glyphs in GLYPHS with printed ones rendered in a font, into DST/a
    (printed) and DST/b (handwritten); style sub-folders become DST/<style>/a|b.

    A glyph's character is its folder name (GLYPHS/a/0.png) or its file name's first character
    (GLYPHS/a_0.png). Train: img2img train pix2pix --preset handwriting --data DST
    """
    if 2 * margin >= size:
        raise click.BadParameter(f"--padding {margin} leaves no room on a {size} px canvas")
    outcome = prepare_handwriting(glyphs, dst, font, size=size, margin=margin, jitter=jitter,
                                  seed=seed)
    for path, message in outcome.skipped:
        click.echo(f"skipped {path}: {message}", err=True)
    styles = f" in {len(outcome.styles)} styles ({', '.join(outcome.styles)})" \
        if outcome.styles else ""
    click.echo(f"Wrote {outcome.pairs} print/hand pairs{styles} into {dst}", err=True)
    click.echo(str(dst))

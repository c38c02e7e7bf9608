"""`img2img write TEXT --model RUN -o line.png`: a line of handwriting from a handwriting run.
Each character is rendered in the font, fitted onto a glyph canvas as in training, translated,
and mapped back into the box the printed character occupied on the line, so the handwritten
line keeps the font's baseline, advances and spacing (spaces are advances with no glyph)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import numpy as np

from img2img import Translator
from img2img.cli import open_run, output_option, run_options
from img2img.data import write_image

from .glyphs import (
    PAPER,
    binarize,
    fade_border,
    fit,
    ink_box,
    load_font,
    render_text,
    to_grey,
    whiten_paper,
)
from .preset import MARGIN


@dataclasses.dataclass
class Line:
    image: np.ndarray  # HxW uint8, dark ink on white
    baseline: int  # row of the baseline
    boxes: list[tuple[str, int, int]]  # (character, left, right) of every written glyph


def write_line(translator: Translator, text: str, font: Path | None = None, *,
               style: str | None = None, binarized: bool = False) -> Line:
    """Handwrite `text` with `translator` (a handwriting run); whitespace only advances."""
    translator.model.resolve_label(style)  # an unknown style fails before any work
    size = translator.model.spec.size
    margin = round(MARGIN * size / 64)
    typeface = load_font(font, size)
    pad = size // 4
    text = " ".join(text.split())  # tabs and newlines are spaces: one line
    printed, baseline = render_text(text, typeface, pad)
    line = np.full_like(printed, PAPER)
    cells, canvases = [], []
    for i, char in enumerate(text):
        if char.isspace():
            continue
        cell, _ = render_text(char, typeface, pad)  # same pad: same baseline row as the line
        if ink_box(cell) is None:  # the font has no ink for it
            continue
        placement = fit(cell, size, margin)
        left = round(typeface.getlength(text[:i]))  # the cell's pad sits left of the advance
        cells.append((char, left, cell.shape, placement))
        canvases.append(placement.apply(cell))
    boxes = []
    if canvases:
        written = translator.translate_many(canvases, label=style)
        for (char, left, shape, placement), glyph in zip(cells, written):
            glyph = fade_border(whiten_paper(to_grey(glyph)), margin // 2)
            back = placement.invert(glyph, shape)
            right = min(left + shape[1], line.shape[1])
            view = line[: shape[0], left:right]
            np.minimum(view, back[:, : right - left], out=view)
            boxes.append((char, left, right))
    if binarized and line.min() < line.max():
        line = binarize(line)
    return Line(line, baseline, boxes)


@click.command("write", context_settings={"show_default": True})
@click.argument("text")
@output_option(default=Path("handwriting.png"), help="the PNG to write (one grey channel)")
@click.option("--font", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="font the printed characters are rendered in (default: "
                                 "Pillow's built-in font; best: the font the run trained on)")
@click.option("--style", default=None, metavar="NAME",
              help="the hand to write in, for runs trained on style sub-folders")
@click.option("--binarize/--no-binarize", default=False,
              help="pure black ink on white paper (Otsu threshold)")
@run_options("translate")
def write_command(text: str, model_ref: str, out: Path, font: Path | None, style: str | None,
                  binarize: bool, runs_dir: Path, device: str) -> None:
    """Write TEXT as one line of handwriting with a trained handwriting run (`img2img train
    pix2pix --preset handwriting`)."""
    if not text.strip():
        raise click.BadParameter("nothing to write", param_hint="TEXT")
    translator = open_run(model_ref, runs_dir, device, "translate")
    line = write_line(translator, text, font, style=style, binarized=binarize)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_image(out, line.image)
    click.echo(f"Wrote {len(line.boxes)} glyphs, {line.image.shape[1]}x{line.image.shape[0]} "
               f"px, with {translator.checkpoint}", err=True)
    click.echo(str(out))

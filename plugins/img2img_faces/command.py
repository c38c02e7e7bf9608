"""`img2img prepare faces SRC DST`: the click command around `prepare_faces`. It parses, runs the
preparation with a progress bar, and prints what was found: crops written, photos with no face,
with several, and files that could not be read."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from img2img import DataError

from .pipeline import DEFAULT_MARGIN, DEFAULT_SIZE, FACE_CHOICES
from .prepare import find_images, prepare_faces

LISTED = 10  # names shown per problem; the manifest lists them all


def _some(names: list[str]) -> str:
    more = f", ... ({len(names) - LISTED} more)" if len(names) > LISTED else ""
    return ", ".join(names[:LISTED]) + more


@click.command("faces", context_settings={"show_default": True})
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("dst", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", type=click.IntRange(min=16), default=DEFAULT_SIZE,
              help="side of the square crops, in pixels")
@click.option("--margin", type=click.FloatRange(0, 3), default=DEFAULT_MARGIN,
              help="margin around the face box on every side, as a fraction of its size")
@click.option("--faces", type=click.Choice(FACE_CHOICES), default="all",
              help="keep every face of a photo, or only the largest")
@click.option("--detector", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="a YuNet ONNX model for cv2.FaceDetectorYN (default: OpenCV's "
                                 "bundled Haar cascades for faces and eyes)")
def faces_command(src: Path, dst: Path, size: int, margin: float, faces: str,
                  detector: Path | None) -> None:
    """Crop aligned faces from the photos in SRC (searched recursively) into DST.

    Each face is rotated so its eyes are level (when both are found), cropped square with
    --margin around it, resized to --size and written as PNG under the same sub-folder, named
    <photo>_<face>.png. DST/manifest.json records each crop's source, face box and angle, and
    the photos with no face, several, or that could not be read.

    \b
    img2img prepare faces selfies/ data/a --size 256
    img2img train cyclegan --preset face --a data/a --b data/b
    """
    total = len(find_images(src, skip=dst))
    with tqdm(total=total, unit="image", disable=not sys.stderr.isatty()) as bar:
        report = prepare_faces(src, dst, size=size, margin=margin, faces=faces,
                               detector=detector, progress=bar)
    with_faces = report.images - len(report.no_face) - len(report.unreadable)
    click.echo(f"Found faces in {with_faces} of {report.images} image(s); wrote "
               f"{len(report.crops)} crop(s) of {size} px to {dst}", err=True)
    if report.no_face:
        click.echo(f"{len(report.no_face)} image(s) had no face: {_some(report.no_face)}",
                   err=True)
    if report.several:
        kept = "kept all" if faces == "all" else "kept the largest"
        click.echo(f"{len(report.several)} image(s) had several faces ({kept}): "
                   f"{_some(report.several)}", err=True)
    for name, message in report.unreadable:
        click.echo(f"error: {name}: {message}", err=True)
    click.echo(f"Manifest: {report.manifest}", err=True)
    if not report.crops:
        raise DataError(f"no face found in any of the {report.images} image(s) in {src}")
    click.echo(str(dst))

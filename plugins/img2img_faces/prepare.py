"""`img2img prepare faces`: turn a folder of photos into aligned square face crops for training.
Each face found is levelled by its eyes, cropped with a margin, resized and written as PNG under
the same sub-folder it came from; `manifest.json` records where each crop came from (source,
face index, box, eye angle) and which photos had no face, several, or could not be read."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from img2img import DataError, Img2ImgError
from img2img.data import IMAGE_EXTENSIONS, read_native, write_image, write_text

from .align import crop, crop_matrix
from .detect import choose, make_detector

MANIFEST = "manifest.json"


@dataclasses.dataclass
class Prepared:
    """What a preparation did: counts and the files behind them, paths relative to the source."""

    images: int = 0
    crops: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    no_face: list[str] = dataclasses.field(default_factory=list)
    several: list[str] = dataclasses.field(default_factory=list)
    unreadable: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    manifest: Path | None = None


def find_images(src: Path, skip: Path | None = None) -> list[Path]:
    """Image files under `src` (or `src` itself), sorted, leaving out anything under `skip`."""
    if src.is_file():
        return [src]
    skip = skip.resolve() if skip is not None else None
    return sorted(p for p in src.rglob("*") if p.is_file()
                  and p.suffix.lower() in IMAGE_EXTENSIONS
                  and (skip is None or not p.resolve().is_relative_to(skip)))


def _name(relative: Path, index: int, taken: set[Path]) -> Path:
    """`sub/photo_0.png`; `sub/photo.jpg_0.png` when another photo already took that name."""
    name = relative.with_name(f"{relative.stem}_{index}.png")
    if name in taken:
        name = relative.with_name(f"{relative.name}_{index}.png")
    taken.add(name)
    return name


def prepare_faces(src: Path, dst: Path, *, size: int = 256, margin: float = 0.4,
                  faces: str = "all", detector: Path | None = None,
                  progress: Any = None) -> Prepared:
    """Write the aligned `size` px crops of the faces (`all`, or the `largest` per photo) in the
    photos under `src` to `dst`, plus the manifest. Unreadable files are recorded and skipped."""
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise DataError(f"{src}: no such file or folder")
    if src.resolve() == dst.resolve():
        raise Img2ImgError(f"the destination {dst} is the source folder; choose another")
    paths = find_images(src, skip=dst)
    if not paths:
        raise DataError(f"{src} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    find = make_detector(detector)
    root = src if src.is_dir() else src.parent
    report, taken = Prepared(images=len(paths)), set()
    for path in paths:
        relative = path.relative_to(root)
        try:
            image = read_native(path)
        except Img2ImgError as exc:
            report.unreadable.append((relative.as_posix(), str(exc)))
        else:
            found = find(image)
            if not found:
                report.no_face.append(relative.as_posix())
            elif len(found) > 1:
                report.several.append(relative.as_posix())
            for index, face in enumerate(choose(found, faces)):
                output = _name(relative, index, taken)
                (dst / output).parent.mkdir(parents=True, exist_ok=True)
                write_image(dst / output, crop(image, crop_matrix(face, size, margin), size))
                report.crops.append({
                    "source": relative.as_posix(), "face": index,
                    "box": [round(v, 2) for v in face.box], "angle": round(face.angle, 2),
                    "eyes": None if face.eyes is None else
                    [[round(v, 2) for v in eye] for eye in face.eyes],
                    "output": output.as_posix()})
        if progress is not None:
            progress.update(1)
    report.manifest = _write_manifest(report, src, dst, size=size, margin=margin, faces=faces,
                                      detector=detector)
    return report


def _write_manifest(report: Prepared, src: Path, dst: Path, **settings: Any) -> Path:
    settings["detector"] = str(settings["detector"]) if settings["detector"] else "haar"
    record = {
        "source": str(src.resolve()), **settings,
        "images": report.images, "crops": report.crops,
        "no_face": report.no_face, "several_faces": report.several,
        "unreadable": [{"source": s, "error": e} for s, e in report.unreadable],
    }
    path = dst / MANIFEST
    dst.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(record, indent=2) + "\n")
    return path

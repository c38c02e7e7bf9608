"""`img2img convert`: translate files, folders and globs with a trained model. Each image keeps
its size, channels (alpha is carried over) and bit depth where the output format allows; a video
(by its extension) is translated frame by frame into a video (`inference.video`); outputs
are written atomically, an input is never overwritten, and a file that fails is reported while
the rest are still converted."""
from __future__ import annotations

import dataclasses
import glob
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..data.decode import IMAGE_EXTENSIONS, read_native
from ..data.images import write_image
from ..errors import DataError, Img2ImgError
from ..training.distributed import Processes, shard
from .translator import Translator
from .video import (
    VIDEO_EXTENSIONS, Encoding, TruncatedVideo, VideoError, VideoUsageError, check_encoding,
    is_video, translate_video,
)

EIGHT_BIT_FORMATS = (".jpg", ".jpeg", ".webp", ".bmp")
READ_AHEAD = 8  # decoded images waiting for the model: enough to overlap, few enough for memory


@dataclasses.dataclass
class Outcome:
    converted: list[tuple[Path, Path]] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    inputs: int = 0  # how many files the inputs named


def expand_inputs(inputs: list[str], outcome: Outcome) -> list[Path]:
    """Files, the images and videos directly inside folders, and glob patterns, in the order
    given."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and
                            p.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
            if not images:
                outcome.failed.append((item, "folder holds no images or videos "
                                             f"({', '.join(IMAGE_EXTENSIONS)}, "
                                             f"{', '.join(VIDEO_EXTENSIONS)})"))
            found.extend(images)
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                outcome.failed.append((item, "no file matches this pattern"))
            found.extend(matches)
        else:
            outcome.failed.append((item, "no such file or folder"))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return [Path(p) for p in unique]


def plan_outputs(inputs: list[Path], out: Path | None) -> dict[Path, Path]:
    """Where each input goes: `out` itself for one input and an image (or, for a video, any)
    suffix, else out/<name>. An image written as a video or the reverse is refused."""
    names_a_file = out is not None and not out.is_dir() and (
        out.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS or
        (len(inputs) == 1 and is_video(inputs[0]) and out.suffix != ""))
    if names_a_file and len(inputs) == 1:
        if is_video(inputs[0]) and out.suffix.lower() in IMAGE_EXTENSIONS:
            raise VideoUsageError(f"-o {out}: {inputs[0].name} is a video; name a video file "
                                  "(e.g. .mp4) or a folder")
        if not is_video(inputs[0]) and out.suffix.lower() in VIDEO_EXTENSIONS:
            raise VideoUsageError(f"-o {out}: {inputs[0].name} is an image; name an image file "
                                  "or a folder")
        return {inputs[0]: out}
    if names_a_file and len(inputs) > 1:
        what = "video" if out.suffix.lower() in VIDEO_EXTENSIONS else "image"
        given = "images" if not any(map(is_video, inputs)) else "inputs"
        raise Img2ImgError(f"-o {out} names one {what} file, but {len(inputs)} {given} were "
                           "given; pass a folder to -o")
    folder = out or Path("converted")
    plan, taken = {}, set()
    for src in inputs:
        dst = folder / src.name
        n = 2
        while dst.resolve() in taken:  # same name from two folders: keep both
            dst = folder / f"{src.stem}-{n}{src.suffix}"
            n += 1
        taken.add(dst.resolve())
        plan[src] = dst
    return plan


def for_format(image: np.ndarray, suffix: str) -> np.ndarray:
    """A translated image as the format `suffix` names can hold it: 8 bits for JPEG, WebP and
    BMP, no alpha in a JPEG (`img2img serve` answers with the same bytes)."""
    if image.dtype == np.uint16 and suffix.lower() in EIGHT_BIT_FORMATS:
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if suffix.lower() in (".jpg", ".jpeg") and image.ndim == 3 and image.shape[2] == 4:
        return image[..., :3]  # JPEG has no alpha channel
    return image


def _read(path: Path) -> np.ndarray | Exception:
    try:
        return read_native(path)
    except DataError as exc:
        return exc
    except Exception as exc:  # a hostile or truncated file must not stop the other inputs
        return DataError(f"cannot read image {path}: {type(exc).__name__}: {exc}")


def _decoded(paths: list[Path]) -> Iterator[tuple[Path, np.ndarray | Exception]]:
    """Decode ahead in a background thread so reading overlaps translating. At most READ_AHEAD
    images wait at once: `pool.map` would decode a whole folder into memory up front."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque[tuple[Path, Future]] = deque()
        for path in paths:
            pending.append((path, pool.submit(_read, path)))
            if len(pending) > READ_AHEAD:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def _groups(decoded: Iterator[tuple[Path, np.ndarray | Exception]], batch_size: int
            ) -> Iterator[list[tuple[Path, np.ndarray | Exception]]]:
    """Consecutive images of one shape and depth, up to `batch_size`; failures travel alone."""
    group: list = []
    for item in decoded:
        image = item[1]
        fits = group and not isinstance(image, Exception) and len(group) < batch_size and \
            not isinstance(group[0][1], Exception) and \
            (group[0][1].shape, group[0][1].dtype) == (image.shape, image.dtype)
        if group and not fits:
            yield group
            group = []
        group.append(item)
    if group:
        yield group


@dataclasses.dataclass(frozen=True)
class Variants:
    """Several outputs per input, for runs trained with a noise input: `count` of them from
    seeds `seed`, `seed + 1`, ... (or, with `interpolate`, a walk from seed `seed`'s noise to
    seed `seed + 1`'s), each written as `<name>_v<i>` or, with `sheet`, all side by side in one
    image at the name a plain conversion would write. `count` None: one output, seed `seed`."""

    count: int | None = None
    seed: int = 0
    interpolate: bool = False
    sheet: bool = False

    def noise(self, translator: Translator) -> list:
        if self.count is None:
            return [translator.noise(self.seed)]
        return translator.variant_noise(self.count, self.seed, self.interpolate)

    def targets(self, dst: Path) -> list[Path]:
        """The files one input's outputs go to."""
        if self.count is None or self.sheet:
            return [dst]
        return [dst.with_name(f"{dst.stem}_v{i}{dst.suffix}") for i in range(self.count)]


def convert(translator: Translator, inputs: list[str], out: Path | None = None, *,
            direction: str | None = None, size: int | None = None, label: str | None = None,
            batch_size: int = 1, progress: object = None,
            pipeline_options: dict | None = None,
            processes: Processes = Processes(), variants: Variants | None = None,
            stabilize: str | None = None, encoding: Encoding = Encoding(),
            video_progress: bool = False) -> Outcome:
    """Translate every input. A file that fails is collected in the outcome and the rest go on;
    what would fail them all (a wrong direction, -o naming one file for many) raises at once.
    A run whose preset carries a pipeline converts image by image through it, with
    `pipeline_options`. `label` is the class or style of runs trained with them. `variants`:
    several outputs per input (or one of a chosen seed) for runs trained with a noise input.
    With several `processes` (torchrun), each converts its own share of the files; outputs are
    planned over all of them, so names are the same as in one process. Videos are translated
    frame by frame with `stabilize` and written with `encoding` (see `inference.video`)."""
    translator.model.resolve_direction(direction)  # refuse up front, not once per file
    translator.model.resolve_label(label)
    noise = variants.noise(translator) if variants is not None else [None]
    how = _How(direction, size, label, tuple(noise), variants or Variants())
    outcome = Outcome()
    paths = expand_inputs(inputs, outcome)
    plan = plan_outputs(paths, out)
    outcome.inputs = len(paths)
    videos = [p for p in paths if is_video(p)]
    for video in videos:  # an output no container or encoder fits fails them all, at once
        check_encoding(plan[video], encoding)
    paths = [p for p in paths if not is_video(p)]
    inputs_set = {p.resolve() for p in paths + videos}
    if processes.distributed:
        paths, videos = shard(paths, processes), shard(videos, processes)
        if not processes.is_main:  # inputs that do not exist are reported once
            outcome.failed.clear()
    for video in videos:
        _convert_video(translator, video, plan[video], inputs_set, outcome, how, batch_size,
                       stabilize, encoding, video_progress, pipeline_options)
    for group in _groups(_decoded(paths), max(1, batch_size)):
        todo = []
        for src, image in group:
            if any(dst.resolve() in inputs_set for dst in how.variants.targets(plan[src])):
                outcome.failed.append((str(src), f"refusing to overwrite the input {plan[src]}; "
                                                 "choose another -o/--out"))
            elif isinstance(image, Exception):
                outcome.failed.append((str(src), str(image)))
            else:
                todo.append((src, image))
        if todo and translator.pipeline is not None:
            for item in todo:
                _translate(translator, [item], plan, outcome, how, pipeline_options or {})
        elif todo:
            _translate(translator, todo, plan, outcome, how)
        if progress is not None:
            progress.update(len(group))
    return outcome


def _convert_video(translator: Translator, src: Path, dst: Path, inputs: set[Path],
                   outcome: Outcome, how: _How, batch_size: int, stabilize: str | None,
                   encoding: Encoding, progress: bool, pipeline_options: dict | None) -> None:
    if dst.resolve() in inputs:
        outcome.failed.append((str(src), f"refusing to overwrite the input {dst}; "
                                         "choose another -o/--out"))
        return
    try:
        translate_video(translator, src, dst, direction=how.direction, size=how.size,
                        label=how.label, stabilize=stabilize, encoding=encoding,
                        batch_size=batch_size, progress=progress,
                        pipeline_options=pipeline_options if translator.pipeline else None)
        outcome.converted.append((src, dst))
    except TruncatedVideo as exc:  # written up to where it stopped, and reported
        outcome.converted.append((src, dst))
        outcome.failed.append((str(src), str(exc)))
    except (VideoError, RuntimeError, ValueError, OSError) as exc:
        message = str(exc) if isinstance(exc, VideoError) else f"cannot translate: {exc}"
        outcome.failed.append((str(src), message))


class _How(NamedTuple):
    """How every image of one convert call is translated."""

    direction: str | None
    size: int | None
    label: str | None
    noise: tuple = (None,)  # one output per noise (None: the run has no noise input)
    variants: Variants = Variants()


def _translate(translator: Translator, todo: list[tuple[Path, np.ndarray]],
               plan: dict[Path, Path], outcome: Outcome, how: _How,
               pipeline_options: dict | None = None) -> None:
    where = how[:3]
    try:
        outputs = []  # per noise, the results of every image
        for noise in how.noise:
            seeded = {} if noise is None else {"noise": noise}
            if pipeline_options is not None:
                src, image = todo[0]
                outputs.append([translator.convert_image(image, *where, source=src, **seeded,
                                                         **pipeline_options)])
            else:
                outputs.append(translator.translate_many([image for _, image in todo], *where,
                                                         **seeded))
    except (Img2ImgError, RuntimeError, ValueError) as exc:
        # An image the model cannot take (out of device memory, a size a network rejects)
        # fails alone, with torch's message, rather than ending a long folder conversion.
        for src, _ in todo:
            outcome.failed.append((str(src), f"cannot translate: {exc}"))
        return
    for i, (src, _) in enumerate(todo):
        results = [per_noise[i] for per_noise in outputs]
        if how.variants.sheet:  # side by side, in variant order
            sheet = np.concatenate([r if r.ndim == 3 else r[..., None] for r in results], axis=1)
            results = [sheet[..., 0] if sheet.shape[2] == 1 else sheet]
        for dst, result in zip(how.variants.targets(plan[src]), results):
            _write(dst, result, src, outcome)


def _write(dst: Path, image: np.ndarray, src: Path, outcome: Outcome) -> None:
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_image(dst, for_format(image, dst.suffix))
        outcome.converted.append((src, dst))
    except (Img2ImgError, OSError, cv2.error) as exc:
        outcome.failed.append((str(src), f"cannot write {dst}: {exc}"))

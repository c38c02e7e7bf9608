"""Translating video clips (`img2img convert clip.mp4 -o out.mp4`, `Translator.translate_video`).

Decoding and encoding are PyAV's (FFmpeg's libraries, in-process). Frames stream through three
threads, each queue bounded, so memory stays bounded at any clip length: one decodes, the
caller's translates batches of frames (through the run's preset pipeline when it has one,
with `convert`'s tiling and padding), one encodes and writes. What is kept from the input:
the frame count, every frame's timestamp (variable frame rate included), the frame rate, size
and rotation metadata, the duration; audio and subtitle streams are copied packet by packet,
not re-encoded. The output is written to a temporary file beside its place and renamed into
place when complete, so a failure leaves nothing half-written. A clip that stops decoding
part-way (truncated, damaged) is converted up to there and reported, saying where it stopped.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..data.atomic import atomic_path
from ..errors import Img2ImgError
from .stabilize import STABILIZERS, stabilizer as make_stabilizer

# Inputs with these extensions are videos to `convert`; any container FFmpeg writes is an output.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                    ".flv", ".ogv", ".wmv", ".3gp")
COPIED = ("audio", "subtitle")  # stream types copied packet for packet
QUEUE = 16  # decoded frames (and translated ones) waiting: enough to overlap, bounded
CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 30, "libvpx": 10, "libaom-av1": 30,
       "libsvtav1": 30}  # visually near-lossless defaults
# Encoder speed settings: encoding must keep up with a GPU translating frames, and at a fixed
# quality (CRF) the faster settings cost a little file size, not quality. x264's "veryfast"
# encodes about twice as fast as its default "medium" (benchmarks/README.md, Video).
SPEED = {"libx264": {"preset": "veryfast"}, "libx265": {"preset": "veryfast"},
         "libvpx-vp9": {"deadline": "good", "cpu-used": "4", "row-mt": "1"},
         "libsvtav1": {"preset": "8"}}


class VideoError(Img2ImgError):
    """A clip that cannot be converted (not a video, no video stream, no frames, an input codec
    without a decoder)."""


class VideoUsageError(VideoError):
    """An output that cannot be written as asked (extension, codec, pixel format): exit code 2."""

    exit_code = 2


class TooManyFrames(VideoError):
    """The clip has more frames than the caller allows (`max_frames`)."""


class TruncatedVideo(VideoError):
    """The clip stopped decoding part-way; `result` is what was converted (and written) up to
    there."""

    def __init__(self, message: str, result: VideoResult):
        super().__init__(message)
        self.result = result


@dataclasses.dataclass
class VideoResult:
    """A converted clip: where it was written, its frame count and duration (seconds), and the
    stabiliser's own time per frame (ms; None without one)."""

    path: Path
    frames: int
    duration: float
    seconds: float  # wall-clock time of the whole conversion
    stabilizer_ms: float | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


@dataclasses.dataclass(frozen=True)
class Encoding:
    """How translated frames are encoded: `codec` (an FFmpeg encoder; default: the container's
    own, H.264 for MP4/MOV/MKV, VP9 for WebM), `crf` (quality: lower is better, the codec's
    default scale; None: a near-lossless default), `pixel_format` (default yuv420p, what every
    player plays; yuv444p where a side is odd)."""

    codec: str | None = None
    crf: int | None = None
    pixel_format: str | None = None


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _av() -> Any:
    import av  # imported on first use: img2img starts without loading FFmpeg's libraries
    return av


def output_format(path: Path) -> tuple[str, str]:
    """(FFmpeg muxer name, its default video encoder) for an output named `path`; raises
    `VideoUsageError` when no container matches its extension."""
    av = _av()
    with tempfile.TemporaryDirectory() as tmp:  # opening for writing creates nothing until used
        try:
            probe = av.open(os.path.join(tmp, "probe" + path.suffix.lower()), "w")
        except ValueError:
            raise VideoUsageError(f"{path}: no video container has the extension "
                                  f"'{path.suffix}'; use e.g. .mp4, .mkv, .mov or .webm") from None
        try:
            name, codec = probe.format.name, probe.default_video_codec
            video_ok = bool(codec) and codec != "none"
        finally:
            probe.close()
    if not video_ok or name in ("image2", "gif", "apng"):
        raise VideoUsageError(f"{path}: '{path.suffix}' is not a video container; use e.g. .mp4, "
                              ".mkv, .mov or .webm")
    return name, ("libx264" if codec == "h264" else codec)


def check_encoding(dst: Path, encoding: Encoding) -> tuple[str, str, str]:
    """(muxer, encoder, pixel format) for writing `dst` with `encoding`, checked before any
    frame is translated: an unknown encoder, one the container cannot hold, or a pixel format
    the encoder does not take is a `VideoUsageError`."""
    av = _av()
    muxer, default = output_format(dst)
    name = encoding.codec or default
    try:
        codec = av.codec.Codec(name, "w")
    except Exception:  # av.codec.codec.UnknownCodecError, or a decoder-only name
        raise VideoUsageError(f"--codec {name}: no such video encoder in this FFmpeg build "
                              f"(e.g. libx264, libx265, libvpx-vp9, mpeg4, ffv1)") from None
    if codec.type != "video":
        raise VideoUsageError(f"--codec {name} is a {codec.type} encoder, not a video one")
    formats = [f.name for f in (codec.video_formats or ())]
    pixel_format = encoding.pixel_format or ("yuv420p" if "yuv420p" in formats or not formats
                                             else formats[0])
    if formats and pixel_format not in formats:
        raise VideoUsageError(f"--pixel-format {pixel_format}: {name} takes "
                              f"{', '.join(formats[:12])}")
    return muxer, codec.name, pixel_format


# -- reading ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Frame:
    """A decoded frame: RGB pixels and its timing in the stream's time base."""

    image: np.ndarray
    pts: int | None
    duration: int


@dataclasses.dataclass
class Stop:
    """Why decoding stopped before the end (None in `Clip.stopped`: it reached the end)."""

    reason: str


class Clip:
    """An opened input clip: its video stream, the streams copied alongside, and `items()`, which
    yields decoded `Frame`s and the copied streams' packets in file order."""

    def __init__(self, path: Path):
        av = _av()
        self.path = path
        if path.is_file() and path.stat().st_size == 0:
            raise VideoError(f"{path}: is an empty file (0 bytes)")
        try:
            self.container = av.open(str(path), metadata_errors="ignore")
        except av.error.EOFError:
            raise VideoError(f"{path}: holds no video data (an empty or truncated file)") from None
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            raise VideoError(f"{path}: not a video file FFmpeg can read, or truncated before "
                             f"its index ({_reason(exc)})") from None
        try:
            if not self.container.streams:
                raise VideoError(f"{path}: holds no streams at all (an empty clip)")
            if not self.container.streams.video:
                kinds = sorted({s.type for s in self.container.streams})
                raise VideoError(f"{path}: has no video stream (only {', '.join(kinds)})")
            self.stream = self.container.streams.video[0]
            if self.stream.codec_context is None:
                raise VideoError(f"{path}: its video codec has no decoder in this FFmpeg build")
            self.stream.thread_type = "AUTO"
            self.copied = [s for s in self.container.streams if s.type in COPIED]
        except BaseException:
            self.container.close()
            raise
        self.time_base: Fraction = self.stream.time_base or Fraction(1, 90000)
        self.rate: Fraction = (self.stream.average_rate or self.stream.guessed_rate
                               or self.stream.base_rate or Fraction(25))
        self.expected = self.stream.frames or None  # from the header, where it says
        self.expected_seconds = _stream_seconds(self.stream)
        # Read while the file is open: PyAV 18.1.1+ refuses a closed container's stream fields.
        self.start_ticks: int = self.stream.start_time or 0
        self.rotation = 0
        self.stopped: Stop | None = None
        self.decoded = 0
        self.last_time = self.last_end = 0.0
        self.previous_duration: int | None = None

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> Clip:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def frame_ticks(self) -> int:
        """One frame's duration at the nominal rate, in time-base ticks."""
        return max(1, round(1 / (self.rate * self.time_base)))

    def items(self) -> Iterator[Frame | Any]:
        """Frames, each lasting until the next one starts (the last: as long as it says), and
        the copied streams' packets."""
        held: Frame | None = None
        for item in self._decoded():
            if not isinstance(item, Frame):
                yield item
                continue
            if held is not None:
                if held.pts is not None and item.pts is not None and item.pts > held.pts:
                    held.duration = self.previous_duration = item.pts - held.pts
                yield held
            held = item
        if held is not None:
            held.duration = self._last_duration(held)
            yield held
        self._check_end()

    def _last_duration(self, frame: Frame) -> int:
        """The last frame lasts until the end the header gives the stream, where that is near
        (the decoder's own figure may be another frame's, in MP4 with B-frames), else as long
        as the frame before it, else one frame at the nominal rate."""
        typical = self.previous_duration or self.frame_ticks
        if frame.pts is not None and self.expected_seconds:
            end = self.start_ticks + round(self.expected_seconds / self.time_base)
            if 0 < end - frame.pts <= 2 * typical:
                return int(end - frame.pts)
        return typical

    def _decoded(self) -> Iterator[Frame | Any]:
        av = _av()
        streams = [self.stream, *self.copied]
        try:
            for packet in self.container.demux(streams):
                if packet.stream.index != self.stream.index:
                    if packet.dts is not None:  # demux's end-of-stream packets carry nothing
                        yield packet
                    continue
                for frame in packet.decode():  # the last, empty packet flushes the decoder
                    yield self._frame(frame)
        except (av.error.FFmpegError, EOFError) as exc:
            self.stopped = Stop(_reason(exc))
            try:  # the frames the decoder still holds
                held = list(self.stream.decode(None))
            except (av.error.FFmpegError, EOFError):
                held = []
            for frame in held:
                yield self._frame(frame)

    def _check_end(self) -> None:
        if self.stopped is None and self.expected and self.decoded < self.expected:
            self.stopped = Stop(f"the file ends there, its header promises {self.expected} "
                                "frames")
        end = self.end_time
        if self.stopped is None and self.expected_seconds and self.decoded and \
                end < self.expected_seconds - 1.5 / float(self.rate):
            self.stopped = Stop(f"the file ends there, its header says the video lasts "
                                f"{self.expected_seconds:.2f} s")

    @property
    def end_time(self) -> float:
        """When the last decoded frame ends, in seconds from the stream's start."""
        return self.last_end - float(self.start_ticks * self.time_base)

    def _frame(self, frame: Any) -> Frame:
        if self.decoded == 0:
            self.rotation = int(round(getattr(frame, "rotation", 0) or 0))
        self.decoded += 1
        duration = frame.duration or self.frame_ticks
        if frame.pts is not None:
            self.last_time = float(frame.pts * self.time_base)
            self.last_end = max(self.last_end, float((frame.pts + duration) * self.time_base))
        return Frame(frame.to_ndarray(format="rgb24"), frame.pts, duration)


def _stream_seconds(stream: Any) -> float | None:
    """How long the header says the video stream lasts (MP4 and others: its duration; Matroska:
    its DURATION tag), or None where it does not say."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    try:
        hours, minutes, seconds = str(tag).split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).rstrip(".")


# -- the three threads ------------------------------------------------------------------------------
_END = object()


class _Worker(threading.Thread):
    """A thread whose exception is raised again where `join_raising` is called."""

    def __init__(self, target: Callable[[], None], name: str):
        super().__init__(name=name, daemon=True)
        self._work, self.error = target, None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # handed to the caller
            self.error = exc

    def join_raising(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def _put(q: queue.Queue, item: Any, alive: Callable[[], bool]) -> bool:
    """Put into a bounded queue while its consumer is `alive`; False once it is not."""
    while alive():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, alive: Callable[[], bool]) -> Any:
    """The next item from a queue whose producer is `alive`; `_END` once it is not and the
    queue is empty."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if not alive():
                try:
                    return q.get_nowait()
                except queue.Empty:
                    return _END


class _Writer:
    """The output container: the encoded video stream plus copies of the input's audio and
    subtitle streams. Packet durations are the input frames' own, so the last frame lasts as
    long as it did and the duration is kept."""

    def __init__(self, target: Path, dst: Path, clip: Clip, muxer: str, codec: str,
                 pixel_format: str, crf: int | None, size: tuple[int, int]):
        av = _av()
        self.dst = dst
        self.container = av.open(str(target), "w", format=muxer)
        try:
            self._setup(clip, codec, pixel_format, crf, size)
        except BaseException:
            self.container.close()
            raise
        self.durations: dict[int, int] = {}
        self.end = 0  # when the last frame ends, in the time base
        self.first: tuple[int, int] | None = None  # the first packet's (pts, dts)

    def _setup(self, clip: Clip, codec: str, pixel_format: str, crf: int | None,
               size: tuple[int, int]) -> None:
        height, width = size
        if pixel_format in ("yuv420p", "yuvj420p", "nv12", "yuv420p10le") and \
                (height % 2 or width % 2):
            pixel_format = "yuv444p"  # 4:2:0 needs even sides; keep the size instead
        stream = self.container.add_stream(codec, rate=clip.rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
        stream.codec_context.time_base = clip.time_base
        stream.time_base = clip.time_base
        if clip.stream.sample_aspect_ratio:
            stream.codec_context.sample_aspect_ratio = clip.stream.sample_aspect_ratio
        options = dict(SPEED.get(codec, {}))
        quality = crf if crf is not None else CRF.get(codec)
        if quality is not None and codec in CRF:
            options["crf"] = str(quality)
            if codec.startswith("libvpx"):
                options["b"] = "0"  # constant quality rather than a bit-rate target
        elif crf is not None:  # codecs without crf: a fixed quantiser of the same meaning
            options["qscale"] = str(crf)
        stream.codec_context.options = options
        if clip.rotation and hasattr(stream, "set_display_rotation"):
            stream.set_display_rotation(clip.rotation)  # PyAV 17+; older ones cannot write it
        elif clip.rotation:
            stream.metadata["rotate"] = str(-clip.rotation % 360)
        if clip.stream.metadata.get("language"):
            stream.metadata["language"] = clip.stream.metadata["language"]
        self.video = stream
        supported = self.container.supported_codecs
        self.copies = {}
        for source in clip.copied:
            name = source.codec_context.name if source.codec_context is not None else "?"
            if supported and name not in supported:
                raise VideoUsageError(
                    f"the {source.type} stream #{source.index} ({name}) cannot be copied into "
                    f"{self.dst.name} ({self.container.format.name}) as it is; write a .mkv, "
                    "which holds any stream")
            if hasattr(self.container, "add_stream_from_template"):
                self.copies[source.index] = self.container.add_stream_from_template(source)
            else:  # PyAV before 14
                self.copies[source.index] = self.container.add_stream(template=source)

    def frame(self, image: np.ndarray, pts: int | None, duration: int) -> None:
        av = _av()
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        if frame.format.name != self.video.codec_context.pix_fmt:
            # Converted here, by a reformatter of its own: the encoder's, reused from frame to
            # frame, converts the same frames differently from run to run (PyAV 18, FFmpeg 8).
            frame = frame.reformat(format=self.video.codec_context.pix_fmt, threads=1)
        frame.pts, frame.time_base = pts, self.video.codec_context.time_base
        if pts is not None:
            self.durations[pts] = duration
            self.end = max(self.end, pts + duration)
        self._mux(self.video.encode(frame))

    def packet(self, packet: Any) -> None:
        packet.stream = self.copies[packet.stream.index]
        self.container.mux(packet)

    def _mux(self, packets: list[Any], last: bool = False) -> None:
        for i, packet in enumerate(packets):
            if packet.pts is not None and packet.pts in self.durations:
                packet.duration = self.durations.pop(packet.pts)
            if self.first is None and packet.pts is not None and packet.dts is not None:
                self.first = (packet.pts, packet.dts)
            if last and i == len(packets) - 1 and packet.dts is not None and self.first:
                # MP4 derives each sample's duration from the next one's decoding time, and the
                # last one's from its packet: it makes the durations add up to the clip's span.
                first_pts, first_dts = self.first
                rest = (self.end - first_pts) - (packet.dts - first_dts)
                packet.duration = max(packet.duration or 0, rest)
            self.container.mux(packet)

    def close(self, flush: bool = True) -> None:
        try:
            if flush:
                self._mux(self.video.encode(None), last=True)
        finally:
            self.container.close()


# -- the whole clip -----------------------------------------------------------------------------
def translate_video(translator: Any, src: str | Path, dst: str | Path, *,
                    direction: str | None = None, size: int | None = None,
                    label: str | None = None, stabilize: str | None = None,
                    encoding: Encoding = Encoding(), batch_size: int | None = None,
                    progress: bool | Any = False, pipeline_options: dict | None = None,
                    seed: int = 0, max_frames: int | None = None) -> VideoResult:
    """Translate the clip `src` into `dst` with `translator` (see the module's docstring).
    `stabilize`: "flow" blends each frame with the previous output along the input's motion
    (`FlowStabilizer`); `encoding`: the output's codec, quality and pixel format; `progress`:
    True for a progress bar (frames/s and ETA), or a tqdm-like object to update.
    Models that draw noise draw the same for every batch: the output is deterministic.
    `max_frames`: refuse (`TooManyFrames`, nothing written) a clip with more frames."""
    src, dst = Path(src), Path(dst)
    if stabilize not in (None, *STABILIZERS):
        raise VideoUsageError(f"--stabilize {stabilize}: choose one of {', '.join(STABILIZERS)}")
    if dst.resolve() == src.resolve():
        raise VideoUsageError(f"refusing to overwrite the input {src}; choose another -o/--out")
    muxer, codec, pixel_format = check_encoding(dst, encoding)
    translator.model.resolve_direction(direction)
    translator.model.resolve_label(label)
    batch_size = batch_size or (1 if translator.device.type == "cpu" else 8)
    started = time.perf_counter()
    with Clip(src) as clip:
        if clip.stream.width <= 0 or clip.stream.height <= 0:
            raise VideoError(f"{src}: its video stream has no frame size")
        if max_frames is not None and clip.expected and clip.expected > max_frames:
            raise TooManyFrames(f"{src}: the clip has {clip.expected} frames; at most "
                                f"{max_frames} are allowed")
        bar, own_bar = _progress(progress, clip, src)
        try:
            with atomic_path(dst) as target:
                result = _run(translator, clip, target, dst, muxer, codec, pixel_format,
                              encoding.crf, batch_size, bar, stabilize,
                              _translate_batch(translator, direction, size, label, src,
                                               pipeline_options, seed), max_frames)
        finally:
            if own_bar:
                bar.close()
    result.seconds = time.perf_counter() - started
    if clip.stopped is not None:
        where = f"frame {clip.decoded + 1} ({clip.end_time:.2f} s)"
        expected = f" of {clip.expected}" if clip.expected else ""
        raise TruncatedVideo(f"{src}: decoding stopped at {where}{expected}: "
                             f"{clip.stopped.reason}; the {clip.decoded} frame(s) before it are "
                             f"converted into {dst}", result)
    return result


def _progress(progress: Any, clip: Clip, src: Path) -> tuple[Any, bool]:
    if progress is True:
        from tqdm import tqdm

        return tqdm(total=clip.expected, unit="frame", desc=src.name, dynamic_ncols=True), True
    return progress or None, False


def _translate_batch(translator: Any, direction: str | None, size: int | None,
                     label: str | None, src: Path, pipeline_options: dict | None, seed: int
                     ) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    import torch

    pipeline = translator.pipeline is not None

    def run(images: list[np.ndarray]) -> list[np.ndarray]:
        # One noise draw per batch position, the same for every batch (fork_rng leaves the
        # caller's generators as they were).
        devices = [translator.device] if translator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            if pipeline:
                return [translator.convert_image(image, direction, size, label, source=src,
                                                 **(pipeline_options or {}))
                        for image in images]
            return translator.translate_many(images, direction, size, label)

    return run


def _run(translator: Any, clip: Clip, target: Path, dst: Path, muxer: str, codec: str,
         pixel_format: str, crf: int | None, batch_size: int, bar: Any,
         stabilize: str | None, translate: Callable[[list[np.ndarray]], list[np.ndarray]],
         max_frames: int | None = None) -> VideoResult:
    decoded: queue.Queue = queue.Queue(QUEUE)
    translated: queue.Queue = queue.Queue(QUEUE)
    stop = threading.Event()

    def running() -> bool:
        return not stop.is_set()

    # Frames are decoded up to the first, whose side data says the rotation the output keeps.
    items = clip.items()
    ahead = []
    for item in items:
        ahead.append(item)
        if isinstance(item, Frame):
            break

    def read() -> None:
        for item in itertools.chain(ahead, items):
            if not _put(decoded, item, running):
                return
        _put(decoded, _END, running)

    def write() -> None:
        ok = False
        try:
            while running():
                item = _get(translated, running)
                if item is _END:
                    ok = running()
                    break
                if isinstance(item, Frame):
                    writer.frame(item.image, item.pts, item.duration)
                else:
                    writer.packet(item)
        finally:
            writer.close(flush=ok)

    # The output is set up here, so what it cannot hold is refused before any frame is read.
    writer = _Writer(target, dst, clip, muxer, codec, pixel_format, crf,
                     (clip.stream.height, clip.stream.width))
    reader, encoder = _Worker(read, "img2img-decode"), _Worker(write, "img2img-encode")
    steady = make_stabilizer(stabilize)
    stabilizer_s = 0.0
    frames, first_pts, last_end = 0, None, 0
    batch: list[Frame] = []

    def send(item: Any) -> None:
        if not _put(translated, item, encoder.is_alive):
            encoder.join_raising()
            raise VideoError(f"{dst}: the video writer stopped")

    def flush() -> None:
        nonlocal stabilizer_s
        outputs = translate([f.image for f in batch])
        for frame, output in zip(batch, outputs):
            if output.shape[:2] != frame.image.shape[:2]:
                raise VideoError(f"{clip.path}: the model returned a {output.shape[1]}x"
                                 f"{output.shape[0]} frame for a {frame.image.shape[1]}x"
                                 f"{frame.image.shape[0]} one")
            output = _rgb8(output)
            if steady is not None:
                tick = time.perf_counter()
                output = steady(frame.image, output)
                stabilizer_s += time.perf_counter() - tick
            send(Frame(output, frame.pts, frame.duration))
        if bar is not None:
            bar.update(len(batch))
        batch.clear()

    reader.start()
    encoder.start()
    try:
        while True:
            item = _get(decoded, reader.is_alive)
            if item is _END:
                break
            if not isinstance(item, Frame):
                send(item)  # a copied stream's packet
                continue
            frames += 1
            if max_frames is not None and frames > max_frames:
                raise TooManyFrames(f"{clip.path}: the clip has more than {max_frames} frames, "
                                    "the most allowed")
            if item.pts is not None:
                first_pts = item.pts if first_pts is None else first_pts
                last_end = max(last_end, item.pts + item.duration)
            batch.append(item)
            if len(batch) >= batch_size:
                flush()
        reader.join_raising()
        if batch:
            flush()
        if frames == 0:
            raise VideoError(f"{clip.path}: the clip has no frames" + (
                f" (decoding stopped: {clip.stopped.reason})" if clip.stopped else ""))
        send(_END)
        encoder.join_raising()
    except BaseException:
        stop.set()
        reader.join()
        encoder.join()
        raise
    duration = float((last_end - (first_pts or 0)) * clip.time_base)
    return VideoResult(dst, frames, duration, 0.0,
                       None if steady is None else 1000 * stabilizer_s / frames)


def _rgb8(image: np.ndarray) -> np.ndarray:
    """A translated frame as the HxWx3 uint8 RGB the encoder takes."""
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


# -- reading frames for measurement -------------------------------------------------------------------
def read_frames(path: str | Path, limit: int | None = None) -> Iterator[np.ndarray]:
    """The RGB frames of a clip, in order (at most `limit`), streamed; raises `VideoError` for a
    file that is not a video or has no video stream."""
    with Clip(Path(path)) as clip:
        clip.copied = []
        count = 0
        for item in clip.items():
            if isinstance(item, Frame):
                yield item.image
                count += 1
                if limit is not None and count >= limit:
                    return
        if count == 0:
            raise VideoError(f"{path}: the clip has no frames")


# -- measuring flicker ------------------------------------------------------------------------------
def measure_video(translator: Any, src: str | Path, *, direction: str | None = None,
                  size: int | None = None, label: str | None = None,
                  batch_size: int | None = None, limit: int | None = None,
                  pipeline_options: dict | None = None, progress: Any = None,
                  stabilizer: Any = None) -> dict[str, Any]:
    """Translate the clip `src` frame by frame and with `--stabilize flow` (in memory, streamed:
    nothing is written) and measure the warping error E_warp (`evaluation.temporal`) of both and
    of the input itself, with the input's flow. Also the PSNR (dB) of each stabilised frame
    against its frame-by-frame output, and the time per frame of translating and of
    stabilising. `limit`: the first frames only. `stabilizer`: a `FlowStabilizer` with other
    settings (default: `--stabilize flow`'s)."""
    from ..data.flow import FlowTracker, grey
    from ..evaluation.temporal import WarpingError
    from .stabilize import FlowStabilizer

    src = Path(src)
    translator.model.resolve_direction(direction)
    translator.model.resolve_label(label)
    batch_size = batch_size or (1 if translator.device.type == "cpu" else 8)
    translate = _translate_batch(translator, direction, size, label, src, pipeline_options, 0)
    steady = stabilizer if stabilizer is not None else FlowStabilizer()
    steady.reset()
    tracker = FlowTracker()
    errors = {"input": WarpingError(), "frame_by_frame": WarpingError(),
              "stabilized": WarpingError()}
    psnrs: list[float] = []
    seconds = {"translate": 0.0, "stabilize": 0.0}
    state: dict[str, Any] = {"previous": None, "frames": 0}

    def consume(batch: list[np.ndarray]) -> None:
        tick = time.perf_counter()
        outputs = [_rgb8(o) for o in translate(batch)]
        seconds["translate"] += time.perf_counter() - tick
        for source, plain in zip(batch, outputs):
            tick = time.perf_counter()
            stable = steady(source, plain)
            seconds["stabilize"] += time.perf_counter() - tick
            current = grey(source)
            previous = state["previous"]
            track = tracker.track(previous, current) if previous is not None else None
            errors["input"].update(source, track)
            errors["frame_by_frame"].update(plain, track)
            errors["stabilized"].update(stable, track)
            mse = float(np.mean((plain.astype(np.float64) - stable) ** 2)) / 255 ** 2
            psnrs.append(100.0 if mse == 0 else 10 * np.log10(1 / mse))
            state["previous"] = current
            state["frames"] += 1
        if progress is not None:
            progress.update(len(batch))

    batch: list[np.ndarray] = []
    for frame in read_frames(src, limit):
        batch.append(frame)
        if len(batch) >= batch_size:
            consume(batch)
            batch = []
    if batch:
        consume(batch)
    frames = state["frames"]
    plain, stable = errors["frame_by_frame"].value, errors["stabilized"].value
    return {
        "clip": str(src), "checkpoint": str(translator.checkpoint), "frames": frames,
        "e_warp": {name: measure.value for name, measure in errors.items()},
        "stabilized_change": (stable - plain) / plain if plain else 0.0,
        "stabilized_psnr_db": {"min": min(psnrs), "mean": float(np.mean(psnrs))},
        "ms_per_frame": {name: 1000 * s / frames for name, s in seconds.items()},
    }

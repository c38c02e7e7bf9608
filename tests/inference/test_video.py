"""Video translation (`img2img.inference.video` behind `convert` and `Translator.translate_video`)
on clips these tests make with PyAV: a few dozen small frames with known motion and a sine
audio track. What a converted clip keeps (frame count, timestamps, frame rate, size, rotation,
duration, audio samples, subtitles), the bad inputs (one line each, nothing half-written), and
`--stabilize flow` on a static clip (exactly the frame-by-frame output of its first frame)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from img2img_pix2pix import Pix2Pix

import img2img
from img2img.cli import build_cli
from img2img.inference.video import TruncatedVideo, VideoError, VideoUsageError, read_frames
from img2img.registry.loading import load_plugins
from img2img.testing import check_model

BUILTINS = {"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix"}
RATE = 12
TIME_BASE = Fraction(1, 1000 * RATE)  # a frame is 1000 ticks; milliseconds are 12


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return check_model(Pix2Pix, workdir=tmp_path_factory.mktemp("pix2pix"))


@pytest.fixture(scope="module")
def translator(run):
    return img2img.load(run, device="cpu")


@pytest.fixture(scope="module")
def cli():
    return build_cli(load_plugins(strict=True, env=BUILTINS))


@pytest.fixture
def convert(cli, run):
    def invoke(*args: str | Path):
        return CliRunner().invoke(cli, ["convert", "--model", str(run), *map(str, args)])
    return invoke


# -- clips ----------------------------------------------------------------------------------------
def moving(i: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frame `i` of a pattern that moves 3 px a frame to the right."""
    y, x = np.mgrid[:height, :width]
    x = x - 3 * i
    return np.stack([(x * 4) % 256, (y * 5) % 256, ((x + y) * 3) % 256], -1).astype(np.uint8)


def still(i: int, height: int = 48, width: int = 64) -> np.ndarray:
    return moving(0, height, width)


def make_clip(path: Path, n: int = 24, size: tuple[int, int] = (48, 64), pts: list[int] | None = None,
              audio: bool = True, rotation: int = 0, codec: str = "libx264",
              pix_fmt: str = "yuv420p", frame=moving, subtitles: bool = False) -> Path:
    """A clip of `n` frames at RATE fps (or at `pts`, in TIME_BASE ticks: a variable frame rate),
    with a 440 Hz sine audio track as long as the video."""
    pts = pts if pts is not None else [i * 1000 for i in range(n)]
    out = av.open(str(path), "w")
    video = out.add_stream(codec, rate=RATE)
    video.height, video.width = size
    video.pix_fmt = pix_fmt
    video.codec_context.time_base = TIME_BASE
    if rotation:
        video.set_display_rotation(rotation)
    sound = out.add_stream("aac", rate=16000) if audio else None
    if sound is not None:
        sound.layout = "mono"
    text = out.add_mux_stream("subrip") if subtitles else None
    if text is not None:
        text.time_base = TIME_BASE
    for i, stamp in enumerate(pts):
        picture = av.VideoFrame.from_ndarray(frame(i, *size), format="rgb24")
        picture.pts, picture.time_base = stamp, TIME_BASE
        out.mux(video.encode(picture))
        if text is not None and i % 6 == 0:
            packet = av.Packet(f"line {i}".encode())
            packet.pts = packet.dts = stamp
            packet.duration, packet.time_base, packet.stream = 400, TIME_BASE, text
            out.mux(packet)
    out.mux(video.encode(None))
    if sound is not None:
        seconds = float((pts[-1] + 1000) * TIME_BASE)
        t = np.arange(int(16000 * seconds)) / 16000
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(wave), 1024):
            chunk = av.AudioFrame.from_ndarray(wave[None, start:start + 1024], format="flt",
                                               layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = 16000, start, Fraction(1, 16000)
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    out.close()
    return path


def probe(path: Path) -> dict:
    """What a clip is: its frames' times, rate, size, rotation, durations, audio samples."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        info = {"frames": len(frames), "times": [round(float(f.pts * f.time_base), 4)
                                                 for f in frames],
                "rate": stream.average_rate, "size": (stream.height, stream.width),
                "rotation": frames[0].rotation if frames else None,
                "duration": container.duration / 1e6 if container.duration else None,
                "video_duration": float(stream.duration * stream.time_base)
                if stream.duration else None,
                "codec": stream.codec_context.name, "kinds": [s.type for s in container.streams]}
    with av.open(str(path)) as container:
        info["samples"] = sum(f.samples for f in container.decode(audio=0)) \
            if container.streams.audio else 0
    with av.open(str(path)) as container:
        info["subtitles"] = [(bytes(p), p.pts) for p in container.demux(subtitles=0) if p.size] \
            if container.streams.subtitles else []
    return info


def decoded(path: Path) -> list[np.ndarray]:
    return list(read_frames(path))


def leftovers(folder: Path) -> list[str]:
    """Temporary files a failed write would leave behind."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# -- what is kept ---------------------------------------------------------------------------------
def test_a_clip_keeps_frames_rate_size_rotation_duration_and_audio(convert, tmp_path):
    src = make_clip(tmp_path / "clip.mp4", rotation=90)
    result = convert(src, "-o", tmp_path / "out.mp4")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "out.mp4")
    assert "Converted 1 video(s)" in result.stderr
    before, after = probe(src), probe(tmp_path / "out.mp4")
    assert after["frames"] == before["frames"] == 24
    assert after["times"] == before["times"]
    assert after["rate"] == before["rate"]
    assert after["size"] == before["size"] == (48, 64)
    assert after["rotation"] == before["rotation"] == 90
    assert abs(after["duration"] - before["duration"]) <= 1 / RATE
    assert abs(after["video_duration"] - before["video_duration"]) <= 1 / RATE
    assert after["samples"] == before["samples"] > 0  # the audio, packet for packet
    assert after["kinds"] == ["video", "audio"] and after["codec"] == "h264"
    assert leftovers(tmp_path) == []


def test_the_audio_packets_are_copied_unchanged(translator, tmp_path):
    src = make_clip(tmp_path / "clip.mp4")
    translator.translate_video(src, tmp_path / "out.mp4")

    def audio(path):
        with av.open(str(path)) as container:
            return [(bytes(p), p.pts) for p in container.demux(audio=0) if p.size]

    assert audio(tmp_path / "out.mp4") == audio(src)


def test_variable_frame_rate_is_kept(translator, tmp_path):
    stamps = [0, 40, 200, 230, 500, 510, 900, 1000, 1010]  # milliseconds
    for name in ("vfr.mkv", "vfr.mp4"):
        src = make_clip(tmp_path / name, pts=[12 * s for s in stamps])
        result = translator.translate_video(src, tmp_path / f"out-{name}")
        assert result.frames == len(stamps)
        after = probe(tmp_path / f"out-{name}")
        assert after["times"] == [s / 1000 for s in stamps]
        assert abs(after["duration"] - probe(src)["duration"]) <= 1 / RATE


def test_a_one_frame_clip(translator, tmp_path):
    src = make_clip(tmp_path / "one.mp4", n=1)
    result = translator.translate_video(src, tmp_path / "out.mp4", stabilize="flow")
    assert result.frames == 1
    assert probe(tmp_path / "out.mp4")["frames"] == 1
    assert probe(tmp_path / "out.mp4")["samples"] == probe(src)["samples"]


def test_subtitles_are_copied_and_odd_sizes_kept(translator, tmp_path):
    src = make_clip(tmp_path / "sub.mkv", size=(37, 51), pix_fmt="yuv444p", subtitles=True)
    translator.translate_video(src, tmp_path / "out.mkv")
    before, after = probe(src), probe(tmp_path / "out.mkv")
    assert after["size"] == (37, 51)
    assert after["subtitles"] == before["subtitles"]
    assert [text for text, _ in after["subtitles"]] == [b"line 0", b"line 6", b"line 12",
                                                        b"line 18"]


def test_codec_quality_and_pixel_format_are_flags(convert, tmp_path):
    src = make_clip(tmp_path / "clip.mp4", n=6)
    result = convert(src, "-o", tmp_path / "out.mkv", "--codec", "ffv1", "--pixel-format",
                     "bgr0")
    assert result.exit_code == 0, result.output
    with av.open(str(tmp_path / "out.mkv")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.format.name) == ("ffv1", "bgr0")
    small = convert(src, "-o", tmp_path / "small.mp4", "--crf", "45")
    large = convert(src, "-o", tmp_path / "large.mp4", "--crf", "5")
    assert small.exit_code == large.exit_code == 0
    assert (tmp_path / "small.mp4").stat().st_size < (tmp_path / "large.mp4").stat().st_size


def test_python_api_equals_the_command_line(convert, translator, tmp_path):
    # 96x128, not the 48x64 of the other clips: x264 encodes frames that small differently
    # from run to run when threads interleave (seen 1 run in 2 with identical input frames,
    # even with one encoder thread), and from 96x128 up the same frames give the same bytes
    # (30 of 30 runs, CPUs loaded).
    src = make_clip(tmp_path / "clip.mp4", n=10, size=(96, 128))
    assert convert(src, "-o", tmp_path / "cli.mp4", "--stabilize", "flow").exit_code == 0
    result = translator.translate_video(src, tmp_path / "api.mp4", stabilize="flow")
    assert result.path == tmp_path / "api.mp4" and result.frames == 10
    assert result.stabilizer_ms is not None and result.stabilizer_ms > 0
    for a, b in zip(decoded(tmp_path / "cli.mp4"), decoded(tmp_path / "api.mp4"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_frames_are_the_images_translations(translator, tmp_path):
    """Lossless in and out: each output frame is exactly what converting that frame as an image
    gives."""
    src = make_clip(tmp_path / "clip.mkv", n=5, codec="ffv1", pix_fmt="bgr0", audio=False)
    translator.translate_video(src, tmp_path / "out.mkv", codec="ffv1", pixel_format="bgr0")
    for frame, out in zip(decoded(src), decoded(tmp_path / "out.mkv"), strict=True):
        np.testing.assert_array_equal(out, translator(frame))


def test_folders_and_globs_mix_images_and_videos(convert, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "clip.mp4", n=4)
    make_clip(folder / "other.mkv", n=3, audio=False)
    import cv2
    cv2.imwrite(str(folder / "photo.png"), moving(0))
    result = convert(folder, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.mp4", "other.mkv",
                                                                     "photo.png"]
    assert "Converted 3 file(s)" in result.stderr
    assert probe(tmp_path / "out" / "other.mkv")["frames"] == 3
    globbed = convert(str(folder / "*.m*"), "-o", tmp_path / "globbed")
    assert globbed.exit_code == 0, globbed.output
    assert sorted(p.name for p in (tmp_path / "globbed").iterdir()) == ["clip.mp4", "other.mkv"]


def test_noise_is_drawn_once_per_clip(translator, tmp_path, monkeypatch):
    """A model that draws noise as it translates gives the same output twice (one seed per
    clip), and the caller's random state is left as it was."""
    original = type(translator.model).translate

    def noisy(self, images, direction=None):
        return original(self, images, direction) + 0.2 * torch.randn_like(images[:, :3])

    monkeypatch.setattr(type(translator.model), "translate", noisy)
    src = make_clip(tmp_path / "clip.mkv", n=4, codec="ffv1", pix_fmt="bgr0", audio=False)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    for name in ("a.mkv", "b.mkv"):
        translator.translate_video(src, tmp_path / name, codec="ffv1", pixel_format="bgr0")
    assert torch.equal(torch.get_rng_state(), state)
    for a, b in zip(decoded(tmp_path / "a.mkv"), decoded(tmp_path / "b.mkv"), strict=True):
        np.testing.assert_array_equal(a, b)


# -- stabilisation --------------------------------------------------------------------------------
def test_a_static_clip_stabilised_is_its_first_frame_converted(translator, tmp_path):
    src = make_clip(tmp_path / "still.mkv", n=12, frame=still, codec="ffv1", pix_fmt="bgr0")
    translator.translate_video(src, tmp_path / "out.mkv", stabilize="flow", codec="ffv1",
                               pixel_format="bgr0")
    first = translator(decoded(src)[0])
    frames = decoded(tmp_path / "out.mkv")
    assert len(frames) == 12
    for frame in frames:
        np.testing.assert_array_equal(frame, first)


def test_stabilising_is_deterministic_and_changes_a_moving_clip(translator, tmp_path):
    src = make_clip(tmp_path / "clip.mkv", n=10, codec="ffv1", pix_fmt="bgr0", audio=False)
    lossless = {"codec": "ffv1", "pixel_format": "bgr0"}
    translator.translate_video(src, tmp_path / "plain.mkv", **lossless)
    for name in ("a.mkv", "b.mkv"):
        translator.translate_video(src, tmp_path / name, stabilize="flow", **lossless)
    a, b, plain = (decoded(tmp_path / n) for n in ("a.mkv", "b.mkv", "plain.mkv"))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[0], plain[0])  # nothing before the first frame
    assert any(not np.array_equal(x, y) for x, y in zip(a[1:], plain[1:]))


# -- measuring flicker ---------------------------------------------------------------------------
def test_eval_video_reports_the_warping_errors(cli, run, tmp_path):
    import json

    from img2img.evaluation.temporal import warping_error

    src = make_clip(tmp_path / "clip.mkv", n=8, codec="ffv1", pix_fmt="bgr0", audio=False)
    result = CliRunner().invoke(cli, ["eval-video", str(run), str(src), "--json", "-o",
                                      str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert json.loads((tmp_path / "e.json").read_text()) == record
    assert record["frames"] == 8
    assert set(record["e_warp"]) == {"input", "frame_by_frame", "stabilized"}
    frames = decoded(src)
    assert record["e_warp"]["input"] == pytest.approx(warping_error(frames, frames))
    assert record["e_warp"]["stabilized"] < record["e_warp"]["frame_by_frame"]
    assert record["stabilized_psnr_db"]["min"] > 0
    plain = CliRunner().invoke(cli, ["eval-video", "--model", str(run), str(src), "--limit", "4"])
    assert plain.exit_code == 0, plain.output
    assert "E_warp x1e3 over 4 frames" in plain.stdout and "--stabilize flow" in plain.stdout


def test_eval_video_of_a_missing_clip_is_a_usage_error(cli, run, tmp_path):
    result = CliRunner().invoke(cli, ["eval-video", str(run), str(tmp_path / "nowhere.mp4")])
    assert result.exit_code == 2 and "no such clip" in result.stderr


# -- bad inputs -----------------------------------------------------------------------------------
def one_line_error(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith(("Using ", "Converted "))]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def no_decoder_clip(path: Path) -> Path:
    """An AVI whose video FourCC no FFmpeg decoder knows."""
    make_clip(path.with_name("mpeg4.avi"), n=4, codec="mpeg4", audio=False)
    path.write_bytes(path.with_name("mpeg4.avi").read_bytes().replace(b"FMP4", b"QQQQ"))
    return path


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        sound = out.add_stream("aac", rate=16000)
        sound.layout = "mono"
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt",
                                           layout="mono")
        chunk.sample_rate, chunk.pts = 16000, 0
        out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    return path


def no_frames(path: Path) -> Path:
    """A Matroska clip with a video stream that holds no frame (only audio packets)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=RATE)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream("aac", rate=16000)
        sound.layout = "mono"
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt",
                                           layout="mono")
        chunk.sample_rate, chunk.pts = 16000, 0
        out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    return path


def text_file(path: Path) -> Path:
    path.write_text("hello, not a video\n")
    return path


def empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("make, expected", [
    (text_file, "not a video file FFmpeg can read"),
    (audio_only, "has no video stream (only audio)"),
    (empty_file, "is an empty file"),
    (no_frames, "the clip has no frames"),
], ids=["not-a-video", "no-video-stream", "empty-file", "zero-frames"])
def test_bad_inputs_are_one_line_and_write_nothing(convert, tmp_path, make, expected):
    (tmp_path / "in").mkdir()
    src = make(tmp_path / "in" / "clip.mkv")
    result = convert(src, "-o", tmp_path / "out" / "clip.mkv")
    line = one_line_error(result)
    assert expected in line and "clip.mkv" in line
    assert result.exit_code == 1
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_a_codec_without_a_decoder_is_one_line(convert, tmp_path):
    src = no_decoder_clip(tmp_path / "odd.avi")
    line = one_line_error(convert(src, "-o", tmp_path / "out.mp4"))
    assert "no decoder" in line
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_a_truncated_clip_converts_what_decodes_and_says_where_it_stopped(convert, tmp_path):
    whole = make_clip(tmp_path / "whole.mkv", n=48)
    data = whole.read_bytes()
    src = tmp_path / "cut.mkv"
    src.write_bytes(data[:len(data) // 2])
    result = convert(src, "-o", tmp_path / "out.mkv")
    line = one_line_error(result)
    assert result.exit_code == 1
    assert "decoding stopped at frame" in line and "cut.mkv" in line
    written = probe(tmp_path / "out.mkv")["frames"]
    assert 0 < written < 48
    assert f"the {written} frame(s) before it are converted" in line


def test_a_truncated_clip_from_python_raises_with_what_was_written(translator, tmp_path):
    whole = make_clip(tmp_path / "whole.mkv", n=48, audio=False)
    data = whole.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[:len(data) // 2])
    with pytest.raises(TruncatedVideo) as caught:
        translator.translate_video(tmp_path / "cut.mkv", tmp_path / "out.mkv")
    assert caught.value.result.frames == probe(tmp_path / "out.mkv")["frames"] > 0


@pytest.mark.parametrize("out, flags, expected", [
    ("out.xyz", (), "no video container has the extension '.xyz'"),
    ("out.png", (), "is a video; name a video file"),
    ("out.mp4", ("--codec", "nonsense"), "--codec nonsense: no such video encoder"),
    ("out.mp4", ("--codec", "aac"), "is a audio encoder"),
    ("out.mp4", ("--pixel-format", "rgb8"), "--pixel-format rgb8: libx264 takes"),
], ids=["extension", "image-extension", "codec", "audio-codec", "pixel-format"])
def test_outputs_that_cannot_be_written_are_usage_errors(convert, tmp_path, out, flags, expected):
    src = make_clip(tmp_path / "clip.mp4", n=2)
    result = convert(src, "-o", tmp_path / out, *flags)
    assert expected in one_line_error(result)
    assert result.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_a_stream_the_container_cannot_hold_fails_before_writing(convert, tmp_path):
    src = make_clip(tmp_path / "sub.mkv", n=6, subtitles=True)
    line = one_line_error(convert(src, "-o", tmp_path / "out.mp4"))
    assert "subtitle stream #" in line and "write a .mkv" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.mkv"]


def test_a_failure_part_way_leaves_nothing(translator, tmp_path, monkeypatch):
    src = make_clip(tmp_path / "clip.mp4", n=12)
    calls = []

    def failing(images, *args, **kwargs):
        calls.append(len(images))
        if len(calls) == 3:
            raise RuntimeError("out of memory (simulated)")
        return [image for image in images]

    monkeypatch.setattr(translator, "translate_many", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        translator.translate_video(src, tmp_path / "out.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_the_input_is_never_overwritten(translator, tmp_path):
    src = make_clip(tmp_path / "clip.mp4", n=2)
    with pytest.raises(VideoUsageError, match="refusing to overwrite"):
        translator.translate_video(src, src)


def test_read_frames_refuses_what_is_not_a_video(tmp_path):
    (tmp_path / "x.mp4").write_text("no")
    with pytest.raises(VideoError, match="not a video file"):
        list(read_frames(tmp_path / "x.mp4"))


def test_options_of_a_pipeline_the_run_lacks_are_refused(translator, tmp_path):
    src = make_clip(tmp_path / "clip.mp4", n=2)
    with pytest.raises(img2img.Img2ImgError, match="faces"):
        translator.translate_video(src, tmp_path / "out.mp4", faces="all")


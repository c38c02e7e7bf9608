"""Video: flicker (the warping error E_warp of Lai et al. 2018) of frame-by-frame translation
against `--stabilize flow`, a model trained with `--temporal-weight` and the input clip's own,
the stabilised frames' PSNR against the frame-by-frame ones, the stabiliser's cost per frame,
and the frames/s of converting a clip against converting the same frames as images.

The clip is made from the bundled faces (nothing is downloaded): four of the 16 held-out photos
of `datasets/faces_edges2photo/test` side by side on a canvas, turned grey, and a camera that
pans across it while zooming in slowly (sub-pixel steps, so the motion is real and smooth). The
model colourises: pix2pix with `--preset fast` (U-Net-128) trained for `--steps` steps on the
128 training photos (grey -> colour pairs), once plainly and once with `--temporal-weight`
(same data, steps and seed); its held-out PSNR is measured on the 16 test photos.

Throughput: a larger rendering of the same camera path (`--throughput-size` px) converted as an
MP4 clip (decode, translate, encode H.264) and as the same frames in JPEG files (`convert` on
the folder), alternating over `--rounds`; frames/s of each, best round.

    python benchmarks/video.py                  # about 10 minutes on a 2-core CPU
    python benchmarks/video.py --smoke          # tiny: seconds
"""
from __future__ import annotations

import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import benchlib

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "datasets" / "faces_edges2photo"
FIGURE = benchlib.HERE / "figures" / "video-strip.png"
TARGETS = {"stabilize cuts E_warp by": 0.30, "stabilised frame PSNR vs frame by frame dB": 30.0,
           "temporal loss cuts E_warp by": 0.20, "temporal loss held-out PSNR loss dB": 0.3,
           "video frames/s / image frames/s": 0.90}


# -- data -----------------------------------------------------------------------------------------
def photos(folder: Path) -> list[np.ndarray]:
    """The photo (right) halves of side-by-side edges|photo JPEGs, RGB."""
    import cv2

    found = []
    for path in sorted(folder.glob("*.jpg")):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        found.append(image[:, image.shape[1] // 2:])
    return found


def grey(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def write_pairs(images: list[np.ndarray], folder: Path) -> Path:
    """grey -> colour pairs as a/ and b/ (what `train pix2pix --data` reads)."""
    import cv2

    for side in ("a", "b"):
        (folder / side).mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / "a" / f"{i:03d}.png"), cv2.cvtColor(grey(image), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folder / "b" / f"{i:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def camera(canvas: np.ndarray, frames: int, size: int) -> list[np.ndarray]:
    """A `size` px square camera panning diagonally across `canvas` and zooming in from 1x to
    1.3x over `frames` frames (smooth, sub-pixel motion; bilinear sampling)."""
    import cv2

    height, width = canvas.shape[:2]
    side = min(height, width) / 2  # the view at 1x: a quarter of a 2x2 mosaic
    out = []
    for t in np.linspace(0, 1, frames):
        zoom = 1 + 0.3 * t
        view = side / zoom
        cx = view / 2 + (width - view) * (0.15 + 0.7 * t)
        cy = view / 2 + (height - view) * (0.2 + 0.5 * t + 0.1 * math.sin(math.pi * t))
        scale = size / view
        matrix = np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]])
        out.append(cv2.warpAffine(canvas, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT))
    return out


def write_clip(frames: list[np.ndarray], path: Path, rate: int = 24, lossless: bool = True
               ) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1" if lossless else "libx264", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "bgr0" if lossless else "yuv420p"
        if not lossless:
            stream.codec_context.options = {"crf": "16"}
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts = i
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    return path


# -- models ---------------------------------------------------------------------------------------
def train(data: Path, runs: Path, steps: int, name: str, device: str, smoke: bool,
          **extra) -> Path:
    import img2img

    settings = dict(preset="fast", data=data, load_size=136, crop_size=128,
                    generator="unet-128", max_steps=steps, epochs=max(1, steps // 128 + 1),
                    sample_every=0, checkpoint_every=0, log_every=max(1, steps // 4),
                    workers=0, runs_dir=runs, name=name, device=device, seed=0,
                    progress=False)
    if smoke:
        settings.update(load_size=40, crop_size=32, generator="unet-32")
    return img2img.train("pix2pix", **settings, **extra)


def held_out_psnr(translator, tests: list[np.ndarray]) -> float:
    import torch

    from img2img.evaluation.metrics import psnr

    fakes = translator.translate_many([grey(t) for t in tests])

    def batch(images):
        return torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i in images]).float() \
            / 127.5 - 1

    return float(psnr(batch(fakes), batch(tests)).mean())


# -- measurements -----------------------------------------------------------------------------------
def flicker(translator, clip: Path, batch: int) -> dict:
    from img2img.inference.video import measure_video

    return measure_video(translator, clip, batch_size=batch)


def throughput(translator, frames: list[np.ndarray], root: Path, rounds: int, batch: int
               ) -> dict:
    """Frames/s of the clip as an MP4 through `translate_video`, and of the same frames as JPEG
    files through `convert` (what `img2img convert` runs), alternating; best of `rounds`."""
    import cv2

    from img2img.inference.convert import convert
    from img2img.inference.video import translate_video

    clip = write_clip(frames, root / "through.mp4", lossless=False)
    folder = root / "through-frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    translator.translate_many(frames[:batch])  # warm-up: kernels, allocator
    video, images = [], []
    for i in range(rounds):
        out = root / f"out-{i}"
        started = time.perf_counter()
        result = translate_video(translator, clip, out.with_suffix(".mp4"), batch_size=batch)
        video.append(result.frames / (time.perf_counter() - started))
        started = time.perf_counter()
        outcome = convert(translator, [str(folder)], out, batch_size=batch)
        assert not outcome.failed, outcome.failed
        images.append(len(outcome.converted) / (time.perf_counter() - started))
        shutil.rmtree(out)
    return {"frames": len(frames), "size": frames[0].shape[0], "rounds": rounds,
            "video_fps": [round(v, 2) for v in video], "image_fps": [round(v, 2) for v in images],
            "ratio": round(max(video) / max(images), 3)}


def strip(translator, clip: Path, out: Path, count: int = 6) -> Path:
    """`count` frames evenly apart (columns); rows: the input, the frame-by-frame output, the
    stabilised output, then the flicker of each output: |frame - previous frame warped onto it
    by the input's flow| x 8 (black: steady; untracked pixels black). As a PNG."""
    import cv2

    from img2img.data.flow import FlowTracker, grey as grey_of
    from img2img.inference.stabilize import FlowStabilizer
    from img2img.inference.video import read_frames

    frames = list(read_frames(clip))
    steady = FlowStabilizer()
    plain = translator.translate_many(frames)
    stable = [steady(f, p) for f, p in zip(frames, plain)]
    picks = np.linspace(1, len(frames) - 1, count).round().astype(int)
    tracker = FlowTracker()
    tracks = {i: tracker.track(grey_of(frames[i - 1]), grey_of(frames[i])) for i in picks}

    def flicker(images: list[np.ndarray]) -> dict[int, np.ndarray]:
        shown = {}
        for i in picks:
            moved = tracks[i].warp(images[i - 1].astype(np.float32))
            change = np.abs(images[i].astype(np.float32) - moved).mean(-1) * 8
            change[~tracks[i].valid] = 0
            shown[i] = np.repeat(np.clip(change, 0, 255).astype(np.uint8)[..., None], 3, -1)
        return shown

    rows = [np.concatenate([images[i] for i in picks], axis=1) for images in
            (frames, plain, stable, flicker(plain), flicker(stable))]
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out


# -- main -------------------------------------------------------------------------------------------
def main() -> None:
    p = benchlib.parser("video", __doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1500, help="training steps of each model")
    p.add_argument("--frames", type=int, default=48, help="frames of the flicker clip")
    p.add_argument("--size", type=int, default=128, help="side of the flicker clip, px")
    p.add_argument("--temporal-weight", type=float, default=50.0,
                   help="the second model's --temporal-weight (0: do not train it)")
    p.add_argument("--throughput-size", type=int, default=384,
                   help="side of the throughput clip, px")
    p.add_argument("--throughput-frames", type=int, default=48)
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds (best counts)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="frames translated together (default: 1 on a CPU, 8 on a GPU)")
    p.add_argument("--figure", type=Path, default=FIGURE,
                   help="where the strip of frames goes ('' for nowhere)")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.frames, args.size = 2, 6, 48
        args.throughput_size, args.throughput_frames, args.rounds = 64, 6, 1
        args.figure = args.out.with_suffix(".png")
    benchlib.setup_torch(args.threads, args.passive_wait)
    import img2img

    started, quiet = benchlib.machine(), benchlib.wait_for_quiet(args.wait_load)
    device = str(benchlib.resolve_device(args.device))
    batch = args.batch_size or (1 if device == "cpu" else 8)
    train_photos, test_photos = photos(FACES / "train"), photos(FACES / "test")
    if args.smoke:
        train_photos = train_photos[:8]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_pairs(train_photos, root / "pairs")
        canvas = grey(np.concatenate([np.concatenate(test_photos[0:2], axis=1),
                                      np.concatenate(test_photos[2:4], axis=1)], axis=0))
        clip = write_clip(camera(canvas, args.frames, args.size), root / "clip.mkv")
        models = {"plain": train(data, root / "runs", args.steps, "plain", device, args.smoke)}
        if args.temporal_weight > 0 and "temporal_weight" in img2img.TrainConfig.__dataclass_fields__:
            models["temporal"] = train(data, root / "runs", args.steps, "temporal", device,
                                       args.smoke, temporal_weight=args.temporal_weight)
        rows, measured = [], {}
        for name, run in models.items():
            translator = img2img.load(run, device=device)
            record = flicker(translator, clip, batch)
            record["held_out_psnr"] = held_out_psnr(translator, test_photos)
            measured[name] = record
        plain = measured["plain"]
        e_input = plain["e_warp"]["input"]
        base = plain["e_warp"]["frame_by_frame"]

        def row(what: str, e_warp: float, psnr: float | None = None, **more) -> dict:
            return {"output": what, "E_warp x1e3": round(1e3 * e_warp, 3),
                    "vs frame by frame": f"{100 * (e_warp - base) / base:+.0f}%",
                    "held-out PSNR dB": None if psnr is None else round(psnr, 2), **more}

        rows.append(row("input clip (the floor)", e_input))
        rows.append(row("frame by frame", base, plain["held_out_psnr"]))
        rows.append(row("--stabilize flow", plain["e_warp"]["stabilized"], plain["held_out_psnr"]))
        if "temporal" in measured:
            temporal = measured["temporal"]
            rows.append(row(f"--temporal-weight {args.temporal_weight:g}, frame by frame",
                            temporal["e_warp"]["frame_by_frame"], temporal["held_out_psnr"]))
            rows.append(row(f"--temporal-weight {args.temporal_weight:g}, --stabilize flow",
                            temporal["e_warp"]["stabilized"], temporal["held_out_psnr"]))
        benchlib.print_table(rows, list(rows[0]), f"video: E_warp on a {args.frames}-frame "
                             f"{args.size} px clip (pan and zoom over held-out faces), pix2pix "
                             f"--preset fast U-Net-128 grey -> colour, {args.steps} steps")
        translator = img2img.load(models["plain"], device=device)
        figure = strip(translator, clip, args.figure) if str(args.figure) else None
        speed = throughput(translator, camera(canvas, args.throughput_frames,
                                              args.throughput_size),
                           root, args.rounds, batch)
        speed_rows = [{"path": "video (MP4 in and out)", "frames/s": max(speed["video_fps"])},
                      {"path": "the same frames as JPEG files (convert)",
                       "frames/s": max(speed["image_fps"])},
                      {"path": "stabiliser alone (--stabilize flow, ms/frame)",
                       "frames/s": round(1000 / plain["ms_per_frame"]["stabilize"], 1)}]
        benchlib.print_table(speed_rows, ["path", "frames/s"],
                             f"throughput: {args.throughput_frames} frames of "
                             f"{args.throughput_size} px, batch {batch}, {device}; stabiliser "
                             f"{plain['ms_per_frame']['stabilize']:.1f} ms/frame at "
                             f"{args.size} px")
    cut = (base - plain["e_warp"]["stabilized"]) / base
    checks = [
        {"target": "stabilize cuts E_warp by", "limit": ">= 30%", "measured": f"{100 * cut:.0f}%",
         "met": cut >= TARGETS["stabilize cuts E_warp by"]},
        {"target": "stabilised frame PSNR vs frame by frame (worst frame)", "limit": ">= 30 dB",
         "measured": round(plain["stabilized_psnr_db"]["min"], 1),
         "met": plain["stabilized_psnr_db"]["min"] >= 30.0},
        {"target": "video frames/s / image frames/s", "limit": ">= 0.9",
         "measured": speed["ratio"], "met": speed["ratio"] >= 0.9},
    ]
    if "temporal" in measured:
        t_cut = (base - measured["temporal"]["e_warp"]["frame_by_frame"]) / base
        loss = plain["held_out_psnr"] - measured["temporal"]["held_out_psnr"]
        checks += [
            {"target": "temporal loss cuts E_warp by", "limit": ">= 20%",
             "measured": f"{100 * t_cut:.0f}%", "met": t_cut >= 0.20},
            {"target": "temporal loss held-out PSNR loss", "limit": "<= 0.3 dB",
             "measured": round(loss, 2), "met": loss <= 0.3}]
    benchlib.finish(args, "video", started, quiet, checks, rows=rows, throughput=speed,
                    measured=measured, figure=str(figure) if figure else None)


if __name__ == "__main__":
    sys.exit(main())

"""Presets may carry a convert pipeline (face paste-back, glyph layout...): `convert` on such a
run goes through it, with the pipeline's own flags; other runs refuse those flags."""
from __future__ import annotations

import types

import click
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import img2img
from img2img.cli import build_cli
from img2img.registry.loading import add_plugin, load_plugins
from img2img.testing import write_sample_images
from img2img_pix2pix import Pix2Pix


class MirrorPipeline:
    """Translate the mirror image and mirror the result back (a stand-in for real pipelines)."""

    convert_options = [click.Option(["--mirror/--no-mirror"], default=True,
                                    help="translate the mirrored image")]

    def convert(self, translate, image, *, source, mirror):
        if not mirror:
            return translate(image)
        return np.ascontiguousarray(translate(np.ascontiguousarray(image[:, ::-1]))[:, ::-1])


@img2img.hookimpl
def register_presets(register):
    register(img2img.Preset("mirror", "pix2pix", "mirror around translation",
                            pipeline=MirrorPipeline()))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    pm = load_plugins(strict=True, env={"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix"})
    add_plugin(pm, types.SimpleNamespace(register_presets=register_presets), "mirror_presets")
    folders = write_sample_images("paired", root / "data", size=40)
    runs = {}
    for preset in ("mirror", None):
        config = img2img.TrainConfig(**folders, load_size=32, crop_size=32, max_steps=1,
                                     workers=0, runs_dir=root / "runs", device="cpu",
                                     name=preset or "plain", batch_size=2)
        trainer = img2img.Trainer(Pix2Pix, Pix2Pix.Options(**Pix2Pix.smoke_options), config,
                                  preset=preset, progress=False)
        runs[preset] = trainer.fit()
    image = np.random.default_rng(0).integers(0, 256, (32, 64, 3), np.uint8)
    cv2.imwrite(str(root / "in.png"), image)
    return build_cli(pm), runs, root


def _convert(cli, run, root, *flags):
    out = root / f"out{len(flags)}{run.name}.png"
    result = CliRunner().invoke(cli, ["convert", str(root / "in.png"), "--model", str(run),
                                      "-o", str(out), *flags])
    return result, out


def test_a_preset_pipeline_runs_with_its_own_flags(setup):
    cli, runs, root = setup
    assert runs["mirror"].joinpath("config.json").read_text().count('"preset": "mirror"') == 1
    mirrored, out_m = _convert(cli, runs["mirror"], root)
    plain, out_p = _convert(cli, runs["mirror"], root, "--no-mirror")
    assert mirrored.exit_code == 0 and plain.exit_code == 0, mirrored.output + plain.output
    translator = img2img.load(runs["mirror"], device="cpu")
    image = cv2.cvtColor(cv2.imread(str(root / "in.png")), cv2.COLOR_BGR2RGB)
    expected = translator(np.ascontiguousarray(image[:, ::-1]), pipeline=False)[:, ::-1]
    got = cv2.cvtColor(cv2.imread(str(out_m)), cv2.COLOR_BGR2RGB)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert not np.array_equal(cv2.imread(str(out_m)), cv2.imread(str(out_p)))


def test_pipeline_flags_are_refused_for_runs_without_that_pipeline(setup):
    cli, runs, root = setup
    result, _ = _convert(cli, runs[None], root, "--no-mirror")
    assert result.exit_code == 1 and "--mirror does not apply to this run (pix2pix, no preset)" \
        in result.output
    assert "--mirror" in CliRunner().invoke(cli, ["convert", "--help"]).output


def test_the_python_api_runs_the_preset_pipeline_like_convert_does(setup):
    cli, runs, root = setup
    converted, out = _convert(cli, runs["mirror"], root)
    assert converted.exit_code == 0, converted.output
    pm = load_plugins(strict=True, env={"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix"})
    add_plugin(pm, types.SimpleNamespace(register_presets=register_presets), "mirror_presets")
    translator = img2img.load(runs["mirror"], device="cpu", catalog=img2img.catalog(pm))
    assert isinstance(translator.pipeline, MirrorPipeline)
    image = cv2.cvtColor(cv2.imread(str(root / "in.png")), cv2.COLOR_BGR2RGB)
    from_cli = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    # The default is what convert does (to the grey level its PNG rounding allows) ...
    assert np.abs(translator(image).astype(int) - from_cli).max() <= 1
    # ... and pipeline=False is the bare generator, unmirrored.
    assert np.abs(translator(image, pipeline=False).astype(int) - from_cli).max() > 8
    as_float = translator(image.astype(np.float32) / 255)  # float arrays in [0, 1] work too
    assert as_float.dtype == np.float32 and 0 <= as_float.min() and as_float.max() <= 1
    assert np.abs(as_float * 255 - from_cli).max() <= 2


def test_every_frame_of_a_video_goes_through_the_pipeline(setup, tmp_path):
    """A clip converted with a pipeline run: each frame is what the pipeline makes of it, with
    the pipeline's own flags, from the command line and from Python alike."""
    import av

    from img2img.inference.video import read_frames

    cli, runs, root = setup
    src = tmp_path / "clip.mkv"
    frames = [np.random.default_rng(i).integers(0, 256, (32, 64, 3), np.uint8) for i in range(3)]
    with av.open(str(src), "w") as out:
        stream = out.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "bgr0"
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = i
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    lossless = ["--codec", "ffv1", "--pixel-format", "bgr0"]
    for flags, name in (([], "mirrored.mkv"), (["--no-mirror"], "plain.mkv")):
        result = CliRunner().invoke(cli, ["convert", str(src), "--model", str(runs["mirror"]),
                                          "-o", str(tmp_path / name), *lossless, *flags])
        assert result.exit_code == 0, result.output
    from img2img.registry.catalog import build_catalog

    pm = load_plugins(strict=True, env={"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix"})
    add_plugin(pm, types.SimpleNamespace(register_presets=register_presets), "mirror_presets")
    translator = img2img.load(runs["mirror"], device="cpu", catalog=build_catalog(pm))
    assert translator.pipeline is not None
    translator.translate_video(src, tmp_path / "api.mkv", codec="ffv1", pixel_format="bgr0",
                               mirror=False)
    mirrored, plain, api = (list(read_frames(tmp_path / n))
                            for n in ("mirrored.mkv", "plain.mkv", "api.mkv"))
    for frame, m, p, a in zip(frames, mirrored, plain, api, strict=True):
        np.testing.assert_array_equal(m, translator.convert_image(frame, mirror=True))
        np.testing.assert_array_equal(p, translator(frame, pipeline=False))
        np.testing.assert_array_equal(a, p)

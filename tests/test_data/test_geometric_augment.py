"""Geometric training augmentation end to end: the `--scale-jitter`, `--rotate`, `--shear` and
`--elastic` flags, their validation, the trainer handing them to the CPU recipe or the device
augmentation, and the presets that use them (face, handwriting). The warps themselves are
tested in tests/test_data/test_augment.py (CPU) and tests/test_data/test_device_augment.py
(device)."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from img2img_pix2pix import Pix2Pix

import img2img.api
import img2img.cli
from img2img import Img2ImgError, TrainConfig, Trainer
from img2img.cli import build_cli
from img2img.registry.loading import load_plugins
from img2img.testing import write_sample_images

GEOMETRY = {"scale_jitter": 0.1, "rotate": 10.0, "shear": 5.0, "elastic": 0.3}
PLUGINS = {"IMG2IMG_LOAD_PLUGINS":
           "img2img_pix2pix,img2img_cyclegan,img2img_faces,img2img_handwriting"}


def _config(tmp_path, **overrides):
    folders = write_sample_images("paired", tmp_path / "data", n=4, size=40)
    settings = {"epochs": 1, "decay_epochs": 0, "batch_size": 2, "load_size": 36,
                "crop_size": 32, "workers": 0, "log_every": 1, "sample_every": 0,
                "checkpoint_every": 0, "device": "cpu", "runs_dir": tmp_path / "runs",
                "seed": 3, "max_steps": 2}
    settings.update(overrides)
    return TrainConfig(**folders, **settings)


@pytest.mark.parametrize(
    ("setting", "flag"),
    [({"rotate": -5.0}, "--rotate"), ({"rotate": 720.0}, "--rotate"),
     ({"scale_jitter": 0.9}, "--scale-jitter"), ({"scale_jitter": -0.1}, "--scale-jitter"),
     ({"shear": 60.0}, "--shear"), ({"elastic": 2.0}, "--elastic"),
     ({"elastic": float("nan")}, "--elastic")],
)
def test_config_rejects_out_of_range_geometry_naming_the_flag(setting, flag):
    with pytest.raises(Img2ImgError, match=re.escape(flag) + " must be between 0"):
        TrainConfig(**setting)


def test_config_defaults_are_off_and_limits_are_allowed():
    config = TrainConfig()
    assert (config.scale_jitter, config.rotate, config.shear, config.elastic) == (0, 0, 0, 0)
    TrainConfig(scale_jitter=0.5, rotate=180.0, shear=45.0, elastic=1.0)


def test_train_help_lists_the_geometry_flags():
    cli = build_cli(load_plugins(strict=True, env={"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix"}))
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for flag in ("--scale-jitter", "--rotate", "--shear", "--elastic"):
        assert re.search(re.escape(flag) + r" FLOAT .*?\[default: 0\.0\]", text), flag
    assert "5% of the image side" in text


def test_cpu_augmentation_gets_the_geometry(tmp_path):
    options = Pix2Pix.Options(**Pix2Pix.smoke_options)
    trainer = Trainer(Pix2Pix, options, _config(tmp_path, **GEOMETRY), progress=False)
    names = [type(step).__name__ for step in trainer.dataset.transform.transforms]
    assert "Affine" in names and "ElasticTransform" in names
    trainer.fit()
    assert trainer.state.step == 2


def test_device_augmentation_gets_the_geometry_and_the_loader_does_not(tmp_path):
    options = Pix2Pix.Options(**Pix2Pix.smoke_options)
    trainer = Trainer(Pix2Pix, options, _config(tmp_path, augment_on="device", **GEOMETRY),
                      progress=False)
    names = [type(step).__name__ for step in trainer.dataset.transform.transforms]
    assert "Affine" not in names and "ElasticTransform" not in names
    steps = [type(step).__name__ for step in trainer.device_augment.pair.children()]
    assert "RandomAffine" in steps and "RandomElasticTransform" in steps
    assert trainer.fixed_batch["a"].shape[-2:] == (32, 32)
    trainer.fit()
    assert trainer.state.step == 2


def _trained_config(monkeypatch, *args):
    """The TrainConfig `img2img train ARGS` hands the trainer (nothing trains)."""
    calls = []

    class Recording:
        def __init__(self, model_cls, options, config, **kwargs):
            calls.append(config)
            self.run_dir = config.runs_dir / "recorded"

        def fit(self):
            return self.run_dir

    monkeypatch.setattr(img2img.api, "Trainer", Recording)
    result = CliRunner().invoke(build_cli(load_plugins(strict=True, env=PLUGINS)),
                                ["train", *args])
    assert result.exit_code == 0, result.output
    return calls[0]


def test_handwriting_preset_jitters_rotation_scale_shear_and_elastic(monkeypatch):
    config = _trained_config(monkeypatch, "pix2pix", "--preset", "handwriting")
    assert (config.rotate, config.scale_jitter, config.shear, config.elastic) == (5, 0.08, 8, 0.3)
    assert (config.load_size, config.crop_size, config.flip) == (64, 64, False)
    typed = _trained_config(monkeypatch, "pix2pix", "--preset", "handwriting", "--rotate", "0")
    assert typed.rotate == 0 and typed.shear == 8  # a typed flag still wins


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_face_preset_uses_mild_scale_jitter_instead_of_a_large_crop(monkeypatch, model):
    config = _trained_config(monkeypatch, model, "--preset", "face")
    assert (config.load_size, config.crop_size, config.scale_jitter) == (256, 256, 0.05)
    assert (config.rotate, config.shear, config.elastic) == (0, 0, 0)
    assert config.flip and config.color_jitter == 0.1

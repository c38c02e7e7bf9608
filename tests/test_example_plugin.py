"""The example plugin in examples/img2img-colorize, installed the way a user installs it (the
README's install command does it): it loads strictly from its entry point, trains through the
command line, and converts an image with the run it trained."""
from __future__ import annotations

import importlib.metadata as md
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from img2img.cli import build_cli
from img2img.registry.loading import load_plugins

DISTRIBUTION = "img2img-colorize"

try:
    md.distribution(DISTRIBUTION)
except md.PackageNotFoundError:
    pytest.skip(f"the example plugin is not installed: pip install -e examples/{DISTRIBUTION} "
                "(the README's install command does it)", allow_module_level=True)


@pytest.fixture(scope="module")
def cli():
    # Strict: any problem with the example plugin raises here instead of being skipped.
    return build_cli(load_plugins(strict=True, env={"IMG2IMG_LOAD_PLUGINS": DISTRIBUTION}))


def colour_photos(folder: Path, n: int = 4, size: int = 40) -> Path:
    """Smooth colour gradients, a stand-in for photos."""
    folder.mkdir(parents=True)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    for i in range(n):
        image = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)),
                          np.full((size, size), 60.0 * i)], axis=-1)
        cv2.imwrite(str(folder / f"photo_{i}.jpg"), image.astype(np.uint8))
    return folder


def test_example_registers_its_model_and_preset(cli):
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0
    assert f"img2img_colorize  ({DISTRIBUTION} " in result.stdout
    assert "registers: model colorize, preset colorize/fast" in result.stdout
    models = CliRunner().invoke(cli, ["models"]).stdout
    assert models.startswith("colorize ") and "images" in models


def test_colorize_without_data_is_a_clear_error(cli, tmp_path):
    result = CliRunner().invoke(cli, ["train", "colorize", "--runs-dir", str(tmp_path),
                                      "--device", "cpu"])
    assert result.exit_code == 2 and "images data needs --data" in result.stderr


def test_train_colorize_then_convert_a_grey_photo(cli, tmp_path):
    photos = colour_photos(tmp_path / "photos")
    runner = CliRunner()
    # The preset's settings apply except where a flag is typed: tiny networks at 32 px here.
    trained = runner.invoke(cli, [
        "train", "colorize", "--data", str(photos), "--preset", "fast",
        "--generator", "unet-32", "--ngf", "8", "--ndf", "8", "--load-size", "36",
        "--crop-size", "32", "--batch-size", "2", "--max-steps", "2", "--workers", "0",
        "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), "--name", "colorize-test"])
    assert trained.exit_code == 0, trained.output
    run_dir = Path(trained.stdout.strip())
    assert run_dir == tmp_path / "runs" / "colorize-test"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "colorize"
    assert config["plugin"]["distribution"] == DISTRIBUTION
    assert config["options"]["ngf"] == 8 and config["training"]["crop_size"] == 32
    assert list((run_dir / "checkpoints").glob("step_00000002.safetensors"))

    grey = tmp_path / "old_photo.png"
    cv2.imwrite(str(grey), np.random.default_rng(0).integers(0, 256, (40, 48), np.uint8))
    out = tmp_path / "colourised.png"
    converted = runner.invoke(cli, ["convert", str(grey), "-o", str(out), "--model",
                                    str(run_dir), "--device", "cpu"])
    assert converted.exit_code == 0, converted.output
    image = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert image.shape == (40, 48, 3)  # grey in, colour out, at the input's size

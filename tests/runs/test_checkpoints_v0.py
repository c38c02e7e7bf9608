"""Checkpoints written before the core was regrouped (tests/data/checkpoint_v0, see its README)
still load, convert to exactly the bytes they converted to then, and a new run with the same
settings writes the same tensors (names and shapes): the checkpoint format did not move."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors import safe_open

from img2img.cli import build_cli
from img2img.registry.loading import load_plugins
from img2img.testing import write_sample_images

FIXTURE = Path(__file__).parents[1] / "data" / "checkpoint_v0"
CONVERTED = {  # output file: (checkpoint, extra convert arguments)
    "pix2pix_a_to_b.png": ("pix2pix", []),
    "cyclegan_a_to_b.png": ("cyclegan", []),
    "cyclegan_b_to_a.png": ("cyclegan", ["--direction", "b_to_a"]),
}
SMALL = ["--ngf", "2", "--ndf", "2", "--d-layers", "2", "--load-size", "36", "--crop-size", "32",
         "--max-steps", "2", "--batch-size", "2", "--workers", "0", "--device", "cpu",
         "--seed", "0"]
TRAINED = {  # checkpoint: the `train` arguments it was made with (data folders added below)
    "pix2pix": ["pix2pix", "--generator", "unet-32", "--ema", "0.9", *SMALL],
    "cyclegan": ["cyclegan", "--generator", "resnet-6", "--pool-size", "2", *SMALL],
}


@pytest.fixture(scope="module")
def cli():
    return build_cli(load_plugins(strict=True, env={"IMG2IMG_LOAD_PLUGINS": "img2img"}))


def _tensors(weights: Path) -> dict[str, tuple[int, ...]]:
    with safe_open(str(weights), framework="pt") as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}


@pytest.mark.parametrize("output", sorted(CONVERTED))
def test_an_old_checkpoint_converts_to_the_same_bytes(cli, tmp_path, output):
    checkpoint, extra = CONVERTED[output]
    weights = tmp_path / f"{checkpoint}.safetensors"
    shutil.copy(FIXTURE / weights.name, weights)
    out = tmp_path / output
    result = CliRunner().invoke(cli, ["convert", str(FIXTURE / "input.png"), "--model",
                                      str(weights), "--device", "cpu", "-o", str(out), *extra])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == (FIXTURE / output).read_bytes()


@pytest.mark.parametrize("checkpoint", sorted(TRAINED))
def test_a_new_run_writes_the_tensors_an_old_one_has(cli, tmp_path, checkpoint):
    kind = "paired" if checkpoint == "pix2pix" else "unpaired"
    folders = write_sample_images(kind, tmp_path / "data", n=4, size=40)
    data = [arg for name, path in folders.items() for arg in (f"--{name}", str(path))]
    result = CliRunner().invoke(cli, ["train", *TRAINED[checkpoint], *data, "--runs-dir",
                                      str(tmp_path / "runs"), "--name", checkpoint])
    assert result.exit_code == 0, result.output
    written = tmp_path / "runs" / checkpoint / "checkpoints" / "step_00000002.safetensors"
    assert _tensors(written) == _tensors(FIXTURE / f"{checkpoint}.safetensors")

"""The Python API without click: `img2img.train` (new and resumed runs, presets, settings
precedence), `img2img.evaluate_run`, `img2img.catalog()` / `list_models()` / `list_presets()`,
and that it gives the same run as the command line."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import img2img
from img2img.cli import build_cli
from img2img.registry.loading import load_plugins
from img2img.runs import checkpoints
from img2img.testing import write_sample_images

BUILTINS = {"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix,img2img_cyclegan,img2img_handwriting"}
SMALL = dict(generator="unet-32", ngf=8, ndf=8, load_size=32, crop_size=32, epochs=1,
             decay_epochs=1, batch_size=2, workers=0, log_every=1, sample_every=0,
             checkpoint_every=0, device="cpu", seed=4)


@pytest.fixture(scope="module")
def catalog():
    return img2img.catalog(load_plugins(strict=True, env=BUILTINS))


def _weights(run_dir):
    return checkpoints.load_weights(checkpoints.resolve_checkpoint(run_dir))


def _flags(settings):
    out = []
    for key, value in settings.items():
        out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def test_train_resume_and_evaluate_through_python_match_the_command_line(tmp_path, catalog):
    data = write_sample_images("paired", tmp_path / "data", n=4, size=40)["data"]
    held_out = write_sample_images("paired", tmp_path / "held", n=2, size=40, seed=8)["data"]
    runs_dir = tmp_path / "runs"
    # A preset (handwriting: grey glyphs, warps) with typed settings on top, 2 steps, then resume.
    run = img2img.train("pix2pix", preset="handwriting", data=data, runs_dir=runs_dir,
                        name="python", max_steps=2, progress=False, catalog=catalog, **SMALL)
    assert run == runs_dir / "python"
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "handwriting"
    assert config["training"]["channels"] == 1 and config["training"]["rotate"] == 5  # preset
    assert config["training"]["crop_size"] == 32 and config["options"]["ngf"] == 8  # typed wins
    resumed = img2img.train("pix2pix", resume=run, max_steps=4, runs_dir=runs_dir,
                            progress=False, catalog=catalog)
    assert resumed == run and checkpoints.read_metadata(
        checkpoints.resolve_checkpoint(run))["step"] == 4
    record, written = img2img.evaluate_run(run, held_out, device="cpu", catalog=catalog)
    assert written == run / "eval.json" and json.loads(written.read_text()) == record
    assert record["items"] == 2 and 0 < record["psnr"] < 60

    # The same run through the command line: same settings, same weights, same evaluation.
    cli = build_cli(load_plugins(strict=True, env=BUILTINS))
    runner = CliRunner()
    first = runner.invoke(cli, ["train", "pix2pix", "--preset", "handwriting", "--data",
                                str(data), "--runs-dir", str(runs_dir), "--name", "cli",
                                "--max-steps", "2", *_flags(SMALL)])
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli, ["train", "pix2pix", "--resume", str(runs_dir / "cli"),
                                 "--max-steps", "4", "--runs-dir", str(runs_dir)])
    assert second.exit_code == 0, second.output
    cli_config = json.loads((runs_dir / "cli" / "config.json").read_text())
    assert {**cli_config["training"], "name": "python"} == config["training"]
    assert cli_config["options"] == config["options"]
    ours, theirs = _weights(run), _weights(runs_dir / "cli")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    evaluated = runner.invoke(cli, ["eval", "--model", str(runs_dir / "cli"), "--data",
                                    str(held_out), "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    cli_record = json.loads((runs_dir / "cli" / "eval.json").read_text())
    assert cli_record["psnr"] == pytest.approx(record["psnr"])


def test_train_rejects_unknown_settings_and_option_changes_on_resume(tmp_path, catalog):
    with pytest.raises(img2img.Img2ImgError, match="unknown setting.*lambda_cycle.*lambda_l1"):
        img2img.train("pix2pix", lambda_cycle=3.0, catalog=catalog)
    with pytest.raises(img2img.Img2ImgError, match="unknown model 'nope'"):
        img2img.train("nope", catalog=catalog)
    with pytest.raises(img2img.Img2ImgError, match="no preset 'quick'"):
        img2img.train("pix2pix", preset="quick", catalog=catalog)
    with pytest.raises(img2img.Img2ImgError, match="--ngf: model options cannot change"):
        img2img.train("pix2pix", resume="latest", ngf=4, catalog=catalog)


def test_catalog_is_cached_and_lists_what_is_installed():
    assert img2img.catalog() is img2img.catalog()
    assert {"pix2pix", "cyclegan"} <= set(img2img.list_models())
    assert "pix2pix/handwriting" in img2img.list_presets()
    assert "handwriting" in img2img.list_presets("pix2pix")
    with pytest.raises(img2img.Img2ImgError, match="unknown model"):
        img2img.list_presets("nope")

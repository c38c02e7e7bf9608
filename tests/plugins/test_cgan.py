"""The cgan plugin: it learns what makes each class different, samples repeatably by label from
Python and through `img2img sample`, shows a fixed noise grid while training, and is refused by
`convert`; plus class-balanced sampling, the labelled loader's errors, and the digits benchmark
in smoke mode. The model contract itself is covered by tests/test_contract.py."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import img2img
from img2img.cli import build_cli
from img2img.data import SeededSampler
from img2img.registry.loading import load_plugins
from img2img.testing import write_sample_images
from img2img_cgan.model import GRID_NOISE, ConditionalGAN, mode_seeking_loss
from img2img_pix2pix import Pix2Pix

ROOT = Path(__file__).resolve().parents[2]
TINY = ConditionalGAN.Options(**ConditionalGAN.smoke_options)


def config(data: Path, runs_dir: Path, **overrides) -> img2img.TrainConfig:
    settings = dict(data=data, channels=1, load_size=32, crop_size=32, flip=False, batch_size=4,
                    max_steps=2, workers=0, log_every=1, sample_every=0, checkpoint_every=0,
                    runs_dir=runs_dir, gan_loss="hinge")
    return img2img.TrainConfig(**{**settings, **overrides})


def write_stripes(root: Path, per_class: int = 16, seed: int = 0) -> Path:
    """Grey 32 px images of horizontal or vertical stripes with random period and phase."""
    rng = np.random.default_rng(seed)
    for name in ("horizontal", "vertical"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            period = int(rng.integers(4, 9))
            wave = ((np.arange(32) + rng.integers(0, period)) % period < period / 2) * 255
            image = np.tile(wave[:, None], (1, 32)) if name == "horizontal" else \
                np.tile(wave[None, :], (32, 1))
            cv2.imwrite(str(root / name / f"{i:02d}.png"), image.astype(np.uint8))
    return root


def stripe_direction(images: torch.Tensor) -> torch.Tensor:
    """Per image: mean |vertical gradient| / mean |horizontal gradient| (> 1: horizontal)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean((1, 2, 3))
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean((1, 2, 3))
    return dy / (dx + 1e-6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny two-class cgan run (with a generator average) to sample from."""
    tmp = tmp_path_factory.mktemp("cgan")
    write_sample_images("labelled", tmp / "data", n=4, size=32, channels=1)
    trainer = img2img.Trainer(ConditionalGAN, TINY, config(tmp / "data", tmp / "runs", ema=0.9,
                                                           name="tiny-cgan"), progress=False)
    return trainer.fit()


@pytest.fixture(scope="module")
def cli():
    return build_cli(load_plugins(strict=True, env={}))


def invoke(cli, *args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def read_grey(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


# ------------------------------------------------------------------------------------ learning

def test_samples_show_the_requested_class(tmp_path):
    """Two classes that differ only in stripe direction: after 120 steps (about 20 s on a CPU),
    every sample drawn for a label has that label's direction."""
    data = write_stripes(tmp_path / "stripes")
    options = ConditionalGAN.Options(latent_dim=16, embed_dim=8, ngf=8, ndf=8)
    trainer = img2img.Trainer(ConditionalGAN, options, config(data, tmp_path / "runs", batch_size=8,
                                                           lr=1e-3, max_steps=120, log_every=40),
                              progress=False)
    trainer.fit()
    model = trainer.model.eval()
    assert model.spec.classes == ("horizontal", "vertical")
    torch.manual_seed(0)
    samples = model.sample(torch.tensor([0, 1]), 16)
    assert samples.shape == (32, 1, 32, 32)
    ratio = stripe_direction(samples)
    horizontal, vertical = ratio[:16], ratio[16:]
    assert (horizontal > 1).all() and (vertical < 1).all(), (horizontal, vertical)
    assert horizontal.mean() > 2 and vertical.mean() < 0.5


def test_mode_seeking_loss_punishes_one_image_per_class():
    noise = torch.randn(4, 8)
    labels = torch.tensor([0, 1, 0, 1])
    varied = torch.rand(4, 1, 8, 8) * 2 - 1
    collapsed = varied[[0, 1, 0, 1]] + 1e-3 * torch.randn(4, 1, 8, 8)
    assert mode_seeking_loss(collapsed, noise, labels) > 10 * mode_seeking_loss(varied, noise, labels)
    assert mode_seeking_loss(varied, noise, torch.tensor([0, 1, 2, 3])) == 0  # no pair


# ------------------------------------------------------------------------------------ sampling

def test_load_sample_by_index_is_repeatable(trained):
    generator = img2img.load(trained, device="cpu")
    torch.manual_seed(3)
    first = generator.sample([0, 1], 3)
    torch.manual_seed(3)
    again = generator.sample([0, 1], 3)
    assert first.shape == (6, 1, 32, 32) and torch.equal(first, again)
    assert 0 <= first.min() and first.max() <= 1
    assert generator.sample(1).shape == (1, 1, 32, 32)
    assert generator.model.spec.classes == ("class_0", "class_1")


def test_sample_does_not_depend_on_the_batch_around_an_image(trained):
    model = img2img.load(trained, device="cpu").model
    torch.manual_seed(5)
    together = model.sample(torch.tensor([0, 1, 1, 0]))
    torch.manual_seed(5)
    noise = torch.randn(4, model.options.latent_dim)
    alone = model.generators["noise_to_image"](noise[2:3], torch.tensor([1]))
    assert torch.allclose(together[2:3], alone, atol=1e-6)


def test_sample_rejects_a_label_out_of_range(trained):
    model = img2img.load(trained, device="cpu").model
    with pytest.raises(img2img.Img2ImgError, match="label 2 is out of range.*0..1"):
        model.sample(torch.tensor([0, 2]))


def test_checkpoint_keeps_the_generator_average(trained):
    average = img2img.load(trained, device="cpu").model.generators
    from img2img.runs.checkpoints import model_from_checkpoint
    from img2img.runs import checkpoints
    raw = model_from_checkpoint(ConditionalGAN, checkpoints.resolve_checkpoint(trained), use_average=False)
    differs = [not torch.equal(a, b) for a, b in zip(average.parameters(),
                                                       raw.generators.parameters())]
    assert any(differs)


def test_training_grid_is_fixed_noise_for_every_class(tmp_path):
    write_sample_images("labelled", tmp_path / "data", n=2, size=32, channels=1)
    trainer = img2img.Trainer(ConditionalGAN, TINY, config(tmp_path / "data", tmp_path / "runs"),
                              progress=False)
    first = read_grey(trainer.save_samples())
    torch.randn(100)  # the global RNG moving on must not change the grid
    again = read_grey(trainer.save_samples())
    assert first.shape[:2] == (2 * 32, GRID_NOISE * 32)  # a row per class, a column per noise
    assert np.array_equal(first, again)
    assert not np.array_equal(first[:32], first[32:])  # the rows are the classes


def test_convert_refuses_a_cgan_run(cli, trained, tmp_path):
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), np.zeros((32, 32), np.uint8))
    result = invoke(cli, "convert", image, "--model", trained, "--device", "cpu")
    assert result.exit_code != 0
    assert "generates images from noise, it does not translate them" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------- the sample command

def test_sample_writes_a_grid(cli, trained, tmp_path):
    out = tmp_path / "grid.png"
    result = invoke(cli, "sample", "--model", trained, "--label", "1", "-n", "4", "-o", out,
                    "--seed", "1", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert read_grey(out).shape == (64, 64)  # 4 images of one label: a 2x2 block


def test_sample_all_gives_one_row_per_class(cli, trained, tmp_path):
    out = tmp_path / "all.png"
    result = invoke(cli, "sample", "--model", trained, "--label", "all", "-n", "3", "-o", out,
                    "--seed", "1")
    assert result.exit_code == 0, result.output
    assert read_grey(out).shape == (2 * 32, 3 * 32)


def test_sample_separate_names_files_by_class(cli, trained, tmp_path):
    out = tmp_path / "separate"
    result = invoke(cli, "sample", "--model", trained, "--label", "class_1", "--label", "0",
                    "-n", "2", "--separate", "-o", out, "--seed", "4")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["class_0_000.png", "class_0_001.png", "class_1_000.png", "class_1_001.png"]
    assert read_grey(out / "class_1_000.png").shape == (32, 32)


def test_label_by_name_or_index_and_seed_repeat(cli, trained, tmp_path):
    def draw(label: str, seed: str, name: str) -> bytes:
        out = tmp_path / name
        result = invoke(cli, "sample", "--model", trained, "--label", label, "-n", "2",
                        "-o", out, "--seed", seed)
        assert result.exit_code == 0, result.output
        return out.read_bytes()

    by_name = draw("class_1", "7", "a.png")
    assert draw("1", "7", "b.png") == by_name
    assert draw("class_1", "8", "c.png") != by_name


def test_unknown_label_lists_the_classes(cli, trained, tmp_path):
    result = invoke(cli, "sample", "--model", trained, "--label", "cat", "-o", tmp_path / "x.png")
    assert result.exit_code == 1
    assert "unknown label 'cat'" in result.output and "class_0 (0), class_1 (1)" in result.output
    assert not (tmp_path / "x.png").exists()


def test_grid_needs_an_image_extension(cli, trained, tmp_path):
    result = invoke(cli, "sample", "--model", trained, "-o", tmp_path / "folder")
    assert result.exit_code == 1 and "--separate" in result.output


def test_latest_skips_newer_runs_that_cannot_sample(cli, trained, tmp_path):
    write_sample_images("paired", tmp_path / "pairs", n=2, size=32, channels=1)
    runs_dir = trained.parent
    pix2pix = img2img.Trainer(Pix2Pix, Pix2Pix.Options(generator="unet-32", ngf=4, ndf=4),
                              config(tmp_path / "pairs", runs_dir, max_steps=1, batch_size=1,
                                     name="newer-pix2pix"), progress=False).fit()
    try:
        result = invoke(cli, "sample", "--runs-dir", runs_dir, "-o", tmp_path / "x.png")
        assert result.exit_code == 0, result.output
        assert str(trained) in result.output
        result = invoke(cli, "sample", "--model", pix2pix, "-o", tmp_path / "y.png")
        assert result.exit_code == 1
        assert "'pix2pix' model, which translates images" in result.output
    finally:
        import shutil
        shutil.rmtree(pix2pix)


def test_latest_without_a_sampling_run(cli, tmp_path):
    result = invoke(cli, "sample", "--runs-dir", tmp_path / "none")
    assert result.exit_code == 1 and "no trained run of a model that samples" in result.output


# ---------------------------------------------------------------------------- labelled data

def test_cgan_on_a_folder_without_classes(cli, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    cv2.imwrite(str(flat / "1.png"), np.zeros((8, 8), np.uint8))
    result = invoke(cli, "train", "cgan", "--data", flat, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "no class folders in" in result.output


def test_cgan_on_a_class_without_images(cli, tmp_path):
    write_sample_images("labelled", tmp_path / "data", n=1, size=32)
    (tmp_path / "data" / "empty_class").mkdir()
    result = invoke(cli, "train", "cgan", "--data", tmp_path / "data",
                    "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "empty_class" in result.output


def test_cgan_size_must_be_supported(cli, tmp_path):
    write_sample_images("labelled", tmp_path / "data", n=1, size=32)
    result = invoke(cli, "train", "cgan", "--data", tmp_path / "data", "--load-size", "48",
                    "--crop-size", "48", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 1 and "32, 64, 128" in result.output


def test_cgan_options_are_checked(cli, tmp_path):
    write_sample_images("labelled", tmp_path / "data", n=1, size=32)
    result = invoke(cli, "train", "cgan", "--data", tmp_path / "data", "--ngf", "0",
                    "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "'--ngf': 0 is not in the range x>=1" in result.output
    assert not (tmp_path / "runs").exists()


# -------------------------------------------------------------------------- balanced sampling

def test_balanced_sampler_draws_classes_evenly():
    labels = [0] * 30 + [1] * 5 + [2] * 1
    sampler = SeededSampler(len(labels), seed=1, labels=labels)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
        counts = Counter(labels[i] for i, _ in epochs[-1])
        assert len(epochs[-1]) == 36 and sorted(counts.values()) == [12, 12, 12]
    assert epochs[0] != epochs[1]
    assert len({i for i, _ in epochs[0] if labels[i] == 0}) == 12  # no repeats from the big class
    again = SeededSampler(len(labels), seed=1, labels=labels)
    again.set_epoch(1, skip=10)
    assert list(again) == epochs[1][10:]  # resume mid-epoch sees the same draws


def test_balanced_sampler_splits_a_remainder_by_one_at_most():
    labels = [0] * 9 + [1] * 2
    sampler = SeededSampler(len(labels), seed=0, labels=labels)
    counts = Counter(labels[i] for i, _ in sampler)
    assert sorted(counts.values()) == [5, 6]


def test_trainer_balances_an_imbalanced_folder(tmp_path):
    write_sample_images("labelled", tmp_path / "data", n=1, size=32, channels=1)
    for i in range(1, 9):  # class_0: 9 images, class_1: 1
        cv2.imwrite(str(tmp_path / "data" / "class_0" / f"extra{i}.png"),
                    np.full((32, 32), i, np.uint8))
    balanced = img2img.Trainer(ConditionalGAN, TINY, config(tmp_path / "data", tmp_path / "runs",
                                                            balance_classes=True), progress=False)
    labels = balanced.dataset.labels
    counts = Counter(labels[i] for i, _ in balanced.sampler)
    assert counts == {0: 5, 1: 5}
    plain = img2img.Trainer(ConditionalGAN, TINY, config(tmp_path / "data", tmp_path / "runs"),
                            progress=False)
    assert Counter(labels[i] for i, _ in plain.sampler) == {0: 9, 1: 1}


def test_balance_classes_needs_labelled_data(tmp_path):
    write_sample_images("paired", tmp_path / "pairs", n=2, size=32)
    with pytest.raises(img2img.Img2ImgError, match="--balance-classes needs labelled data"):
        img2img.Trainer(Pix2Pix, Pix2Pix.Options(generator="unet-32", ngf=4, ndf=4),
                        config(tmp_path / "pairs", tmp_path / "runs", balance_classes=True),
                        progress=False)


def test_balance_classes_flag(cli):
    result = invoke(cli, "train", "cgan", "--help")
    assert "--balance-classes" in result.output and "--ema" in result.output


# ------------------------------------------------------------------------------- benchmark

def test_digits_benchmark_runs_in_smoke_mode(tmp_path):
    out = tmp_path / "result.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cgan_digits.py"),
                             "--smoke", "--threads", "1", "--out", str(out),
                             "--runs-dir", str(tmp_path / "runs")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "recognised as the requested class" in result.stdout and "|" in result.stdout
    record = json.loads(out.read_text())
    assert record["smoke"] is True and record["steps"] == 3 and record["machine"]["cores"] >= 1
    assert 0 <= record["recognised"] <= 1 and set(record["ema"]["per_class"]) == set("0123456789")
    assert record["judge_held_out_accuracy"] > 0.5


def test_a_run_recorded_with_the_old_option_name_loads():
    """cgan's noise length was `noise_dim` until every model's noise input took that name."""
    from img2img.runs.checkpoints import from_record

    options = from_record(ConditionalGAN.Options, {"noise_dim": 32, "ngf": 4}, "model options")
    assert options.latent_dim == 32 and options.ngf == 4

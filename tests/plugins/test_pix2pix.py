"""pix2pix: the published network sizes and loss terms, learning a paired mapping through the real
trainer, and inference with per-image batch-norm statistics (an image converts the same alone or
batched)."""
from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import img2img
from img2img import ImageSpec, TrainConfig, Trainer
from img2img.networks import PerSampleNorm2d
from img2img_pix2pix import Pix2Pix


def smooth_images(rng: np.random.Generator, n: int, size: int = 32) -> np.ndarray:
    """(n, size, size, 3) float32 RGB in [0, 1]: random 4x4 colour fields, upsampled smoothly."""
    coarse = rng.uniform(0, 1, (n, 4, 4, 3)).astype(np.float32)
    return np.stack([np.clip(cv2.resize(c, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)
                     for c in coarse])


def recolour(a: np.ndarray) -> np.ndarray:
    """The per-pixel mapping to learn: reverse the channel order and invert."""
    return 1 - a[..., ::-1]


def to_model(images: np.ndarray) -> torch.Tensor:
    """(N,H,W,3) RGB in [0, 1] -> (N,3,H,W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2) * 2 - 1


def write_pairs(root, a: np.ndarray) -> None:
    for domain, images in (("a", a), ("b", recolour(a))):
        (root / domain).mkdir(parents=True)
        for i, image in enumerate(images):
            bgr = (image[..., ::-1] * 255).round().astype(np.uint8)
            cv2.imwrite(str(root / domain / f"{i:03d}.png"), bgr)


def train(tmp_path, options, steps: int, *, seed: int = 0, n: int = 8, size: int = 32,
          **settings) -> Trainer:
    write_pairs(tmp_path / "data", smooth_images(np.random.default_rng(seed), n, size))
    config = TrainConfig(data=tmp_path / "data", epochs=1000, decay_epochs=0, max_steps=steps,
                         batch_size=2, load_size=size, crop_size=size, workers=0,
                         log_every=50, sample_every=0, checkpoint_every=0, device="cpu",
                         runs_dir=tmp_path / "runs", name="run", seed=seed, **settings)
    return Trainer(Pix2Pix, options, config, progress=False)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_default_networks_have_the_published_sizes():
    with torch.device("meta"):  # shapes only: no 54M-parameter allocation on the CPU
        model = Pix2Pix(Pix2Pix.Options(), spec=ImageSpec(3, 256))
    assert {k: n_params(g) for k, g in model.generators.items()} == {"a_to_b": 54_413_955}
    assert {k: n_params(d) for k, d in model.discriminators.items()} == {"b": 2_768_705}


def test_translates_in_one_direction():
    assert Pix2Pix.directions == ("a_to_b",)
    model = Pix2Pix(Pix2Pix.Options(**Pix2Pix.smoke_options), spec=ImageSpec(3, 32))
    with pytest.raises(img2img.Img2ImgError, match="a_to_b"):
        model.translate(torch.zeros(1, 3, 32, 32), "b_to_a")


def test_loss_terms_are_the_published_ones():
    # Non-saturating GAN on a conditional discriminator that sees (a, b) stacked, plus 100 x L1.
    torch.manual_seed(0)
    model = Pix2Pix(Pix2Pix.Options(**Pix2Pix.smoke_options), spec=ImageSpec(3, 32))
    g, d = model.generators["a_to_b"], model.discriminators["b"]
    first_conv = next(m for m in d.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 6  # conditional: judges a and b together
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    batch = {"a": a, "b": b}
    model.eval()  # deterministic: no dropout, per-image statistics
    with torch.no_grad():
        fakes = model.generate(batch)
        terms = model.generator_losses(batch, fakes)
        d_terms = model.discriminator_losses(batch, fakes)
        fake_b = g(a)
        fake_logits, real_logits = d(torch.cat([a, fake_b], 1)), d(torch.cat([a, b], 1))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert torch.equal(fakes["fake_b"], fake_b)
    expected = {"gan": bce(fake_logits, torch.ones_like(fake_logits)),
                "l1": 100 * (fake_b - b).abs().mean()}
    expected_d = {"real": 0.5 * bce(real_logits, torch.ones_like(real_logits)),
                  "fake": 0.5 * bce(fake_logits, torch.zeros_like(fake_logits))}
    for got, want in ((terms, expected), (d_terms, expected_d)):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert torch.allclose(got[key], value, rtol=1e-5, atol=1e-7), key


def test_learns_a_per_pixel_colour_mapping(tmp_path):
    seed = 0
    options = Pix2Pix.Options(generator="unet-32", ngf=16, ndf=16)
    trainer = train(tmp_path, options, steps=200, seed=seed, n=32, lr=5e-4)
    untrained = copy.deepcopy(trainer.model.generators["a_to_b"]).eval()
    run_dir = trainer.fit()

    held_out = smooth_images(np.random.default_rng(seed + 1000), 16)  # never trained on
    a, b = to_model(held_out), to_model(recolour(held_out))
    translator = img2img.load(run_dir, device="cpu")
    with torch.no_grad():
        learned = (translator.translate(a) - b).abs().mean().item()
        before = (untrained(a) - b).abs().mean().item()
    identity = (a - b).abs().mean().item()
    # Measured (seeds 0-2): learned 0.080-0.087, untrained 0.43-0.44, identity 0.66-0.68.
    assert learned < identity / 4, (learned, identity)
    assert learned < before / 2, (learned, before)


def test_eval_translation_is_deterministic_and_the_same_alone_or_batched(tmp_path):
    # unet-64 is the smallest U-Net with dropout layers; default norm ("batch") and dropout on.
    options = Pix2Pix.Options(generator="unet-64", ngf=8, ndf=8)
    assert options.norm == "batch" and options.dropout
    trainer = train(tmp_path, options, steps=2, n=4, size=64)
    trainer.fit()
    model = trainer.model.eval()
    x = to_model(smooth_images(np.random.default_rng(7), 2, 64))
    with torch.no_grad():
        batched = model.translate(x)
        alone = torch.cat([model.translate(x[:1]), model.translate(x[1:])])
        again = model.translate(x)
    assert torch.allclose(batched, alone, atol=1e-5), (batched - alone).abs().max()
    assert torch.equal(batched, again)


def _with_plain_batch_norm(net: nn.Module) -> nn.Module:
    """A copy of `net` whose per-sample norms are ordinary BatchNorm2d with the same tensors."""
    net = copy.deepcopy(net)
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, PerSampleNorm2d):
                bn = nn.BatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
                bn.load_state_dict(child.state_dict())
                setattr(module, name, bn)
    return net


def test_eval_uses_each_images_own_statistics_as_in_training(tmp_path):
    options = Pix2Pix.Options(generator="unet-32", ngf=8, ndf=8, dropout=False)
    trainer = train(tmp_path, options, steps=3, n=4)
    trainer.fit()
    generator = trainer.model.generators["a_to_b"]
    x = to_model(smooth_images(np.random.default_rng(7), 1))

    trained_way = copy.deepcopy(generator).train()  # batch norm at batch size 1, as in training
    with torch.no_grad():
        expected = trained_way(x)
        trainer.model.eval()
        got = trainer.model.translate(x)
        running_averages = _with_plain_batch_norm(generator).eval()(x)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    # Plain eval-mode batch norm (running averages) gives something else, so the check has teeth.
    assert (running_averages - expected).abs().max() > 0.05


def test_demo_data_is_package_data_of_the_plugin():
    """`demo --data` defaults to the sample inside the plugin package (a link to datasets/ in a
    checkout), which is what the wheel ships."""
    from importlib import resources

    from img2img_pix2pix.demo import bundled_data

    data = bundled_data()
    assert data == Path(str(resources.files("img2img_pix2pix"))) / "faces_edges2photo"
    checkout = Path(__file__).parents[2] / "datasets" / "faces_edges2photo"
    assert data.resolve() == checkout.resolve()
    assert [len(list((data / split).glob("*.jpg"))) for split in ("train", "test")] == [128, 16]
    assert "CC BY 4.0" in (data / "LICENCE.md").read_text(encoding="utf-8")


def test_demo_trains_converts_and_says_where_to_look(tmp_path):
    """The README's first command, cut to 2 steps: it must run end to end on the bundled data."""
    import json

    from click.testing import CliRunner

    from img2img.cli import build_cli

    out, runs = tmp_path / "converted", tmp_path / "runs"
    result = CliRunner().invoke(build_cli(), ["demo", "--steps", "2", "--out", str(out),
                                       "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    comparison = cv2.imread(str(out / "comparison.png"))
    assert comparison is not None and comparison.shape[0] > 0
    assert len(list(out.glob("*.png"))) > 1  # the translated test images too
    assert str(out / "comparison.png") in result.output
    assert list(runs.glob("*/checkpoints/*.safetensors"))
    # The run records the settings the demo's figures were measured with (benchmarks/README.md)
    config = json.loads(next(runs.glob("*/config.json")).read_text())
    assert config["preset"] == "fast" and config["options"]["dropout"] is False
    assert config["options"]["lambda_l1"] == 500 and config["training"]["load_size"] == 136
    assert config["training"]["workers"] == 0


def test_shortened_demo_beats_a_flat_image_on_the_held_out_faces(tmp_path):
    """The demo at a fraction of its length already draws more of each unseen face than a flat
    image of the mean colour: higher PSNR and lower L1 on the 16 test pairs (scores.json)."""
    import json

    from click.testing import CliRunner

    from img2img.cli import build_cli

    out = tmp_path / "converted"
    result = CliRunner().invoke(build_cli(), ["demo", "--steps", "400", "--out", str(out),
                                              "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "scores.json").read_text())
    assert scores["images"] == 16
    assert scores["psnr"] > scores["flat_psnr"] and scores["l1"] < scores["flat_l1"], scores
    assert "Held-out score on 16 unseen faces" in result.output
    assert (out / "comparison.png").is_file()


def test_demo_run_twice_keeps_the_first_result(tmp_path, monkeypatch):
    """A second demo with the default output folder writes next to the first one."""
    from click.testing import CliRunner

    from img2img.cli import build_cli

    monkeypatch.chdir(tmp_path)
    first = tmp_path / "converted" / "demo"
    first.mkdir(parents=True)
    (first / "comparison.png").write_bytes(b"the first demo's result")
    result = CliRunner().invoke(build_cli(), ["demo", "--steps", "1", "--runs-dir", "runs"])
    assert result.exit_code == 0, result.output
    assert (first / "comparison.png").read_bytes() == b"the first demo's result"
    assert (tmp_path / "converted" / "demo-2" / "comparison.png").exists()
    assert "Keeping the previous demo in converted/demo" in result.stderr

"""The training-recipe building blocks every model can use: resize-convolution upsampling, the
multi-scale PatchGAN, discriminator feature matching, DiffAugment, TTUR and learning-rate
warm-up."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from img2img.errors import SettingsError
from img2img.networks import (MultiScaleDiscriminator, NetworkOptions, PatchDiscriminator,
                              ResnetGenerator, UnetGenerator)
from img2img.networks.losses import Adversary, feature_matching, gradient_penalty
from img2img.training import diffaugment
from img2img.training.schedules import warmup_factor
from img2img.training.settings import TrainConfig


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# -- resize-convolution upsampling ---------------------------------------------------------------
def test_resize_convolution_resnet_keeps_the_published_parameter_count():
    published = ResnetGenerator(3, 3, 64, 9, "instance")
    resized = ResnetGenerator(3, 3, 64, 9, "instance", upsample="resize")
    assert count(published) == count(resized) == 11_378_179
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in resized.modules())
    assert resized.required_multiple == published.required_multiple == 4
    assert resized(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_resize_convolution_unet_has_three_by_three_decoder_convs_and_the_same_multiple():
    published = UnetGenerator(3, 3, 8, 64, "batch")
    resized = UnetGenerator(3, 3, 8, 64, "batch", upsample="resize")
    assert count(published) == 54_413_955  # U-Net-256, batch norm
    # Decoder convs go from 4x4 to 3x3 kernels: the same order of size, about 3/4 of it.
    assert 0.6 * count(published) < count(resized) < count(published)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in resized.modules())
    assert resized.required_multiple == published.required_multiple == 256
    small = UnetGenerator(3, 3, 5, 8, "batch", upsample="resize")
    assert small(torch.zeros(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_upsample_option_reaches_the_generator_and_rejects_unknown_modes():
    net = NetworkOptions(generator="resnet-6", ngf=4, upsample="resize").make_generator(3, 3, 32)
    assert any(isinstance(m, nn.Upsample) for m in net.modules())
    with pytest.raises(ValueError, match="upsampling"):
        ResnetGenerator(3, 3, 4, 1, upsample="bilinear-ish")


# -- multi-scale discriminator -------------------------------------------------------------------
def test_multi_scale_discriminator_returns_one_map_per_scale():
    net = NetworkOptions(ndf=4, d_scales=3).make_discriminator(6)
    assert isinstance(net, MultiScaleDiscriminator) and len(net.scales) == 3
    maps = net(torch.randn(2, 6, 128, 128))
    assert [tuple(m.shape) for m in maps] == [(2, 1, 14, 14), (2, 1, 6, 6), (2, 1, 2, 2)]
    assert isinstance(NetworkOptions(ndf=4).make_discriminator(6), PatchDiscriminator)


def test_losses_over_scales_are_the_mean_of_each_scale():
    adversary = Adversary("lsgan")
    maps = [torch.full((2, 1, 4, 4), 0.5), torch.full((2, 1, 2, 2), -1.0)]
    expected = (adversary.generator_loss(maps[0]) + adversary.generator_loss(maps[1])) / 2
    assert torch.allclose(adversary.generator_loss(maps), expected)
    # One map in a list is exactly the single-map loss.
    assert torch.allclose(adversary.generator_loss(maps[:1]), adversary.generator_loss(maps[0]))
    net = MultiScaleDiscriminator(2, lambda: PatchDiscriminator(3, 4, 2))
    real, fake = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    terms = Adversary("hinge").discriminator_losses(net, real, fake)
    assert set(terms) == {"real", "fake"} and all(t.dim() == 0 for t in terms.values())
    penalty = gradient_penalty(net, real, fake)  # the penalty sums the maps of every scale
    assert penalty.dim() == 0 and penalty.item() > 0


# -- feature matching ----------------------------------------------------------------------------
def test_feature_matching_is_zero_for_identical_inputs_and_positive_otherwise():
    torch.manual_seed(0)
    for net in (PatchDiscriminator(3, 4, 2), MultiScaleDiscriminator(2, lambda: PatchDiscriminator(3, 4, 2))):
        real = torch.randn(2, 3, 32, 32)
        assert feature_matching(net, real, real.clone()).item() == 0.0
        fake = torch.randn(2, 3, 32, 32, requires_grad=True)
        loss = feature_matching(net, real, fake)
        assert loss.item() > 0
        loss.backward()
        assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_feature_matching_needs_a_features_method():
    with pytest.raises(TypeError, match="features"):
        feature_matching(nn.Conv2d(3, 1, 3), torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


# -- DiffAugment ---------------------------------------------------------------------------------
def test_diffaugment_is_differentiable_and_keeps_a_pair_aligned():
    torch.manual_seed(0)
    image = torch.rand(4, 3, 32, 32, requires_grad=True)
    pair = torch.cat([image, image], dim=1)  # a conditional discriminator's (condition, image)
    out = diffaugment.augment(pair, diffaugment.POLICIES, channels=3)
    assert out.shape == pair.shape
    # Every transform is drawn per image and shared by the image's channels: both halves match.
    assert torch.equal(out[:, :3], out[:, 3:])
    assert not torch.equal(out[:, :3], image)
    out.sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_translation_moves_content_by_at_most_an_eighth_and_cutout_zeros_a_square():
    torch.manual_seed(1)
    x = torch.zeros(16, 1, 32, 32)
    x[:, :, 16, 16] = 1.0
    shifted = diffaugment.translation(x)
    for image in shifted:
        ys, xs = torch.nonzero(image[0], as_tuple=True)
        assert len(ys) == 1 and abs(int(ys) - 16) <= 4 and abs(int(xs) - 16) <= 4
    assert len({tuple(torch.nonzero(i[0])[0].tolist()) for i in shifted}) > 1  # per image
    cut = diffaugment.cutout(torch.ones(16, 1, 32, 32))
    zeros = (cut == 0).sum(dim=(1, 2, 3))
    assert (zeros > 0).all() and (zeros <= 16 * 16).all()


def test_installed_hook_augments_real_and_fake_inputs_only_while_training():
    net = PatchDiscriminator(3, 4, 2)
    seen = []
    net.model[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    handles = diffaugment.install([net], ("translation", "cutout"))
    x = torch.rand(2, 3, 32, 32)
    net.train()(x)
    net.train()(x)  # a fake batch: its own random draw, the same policy
    assert not torch.equal(seen[0], x) and not torch.equal(seen[0], seen[1])
    net.eval()(x)
    assert torch.equal(seen[2], x)
    for handle in handles:
        handle.remove()
    net.train()(x)
    assert torch.equal(seen[3], x)


def test_policy_parsing_and_config_validation():
    assert diffaugment.parse_policy("color, cutout") == ("color", "cutout")
    assert diffaugment.parse_policy("none") == () == diffaugment.parse_policy("")
    with pytest.raises(SettingsError, match="--diff-augment.*blur"):
        TrainConfig(diff_augment="color,blur")


# -- TTUR and warm-up ----------------------------------------------------------------------------
def test_warmup_rises_linearly_then_stays_at_one():
    config = TrainConfig(warmup_steps=4)
    assert [warmup_factor(config, s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(TrainConfig(), 0) == 1.0


def test_trainer_applies_ttur_and_warmup(tmp_path):
    import img2img
    from img2img.testing import write_sample_images

    folders = write_sample_images("paired", tmp_path / "data", n=4, size=32)
    trainer = img2img.Trainer(
        img2img.catalog().model("pix2pix"),
        img2img.catalog().model("pix2pix").Options(generator="unet-32", ngf=4, ndf=4,
                                                   d_layers=2, d_scales=2, feature_matching=10.0,
                                                   upsample="resize"),
        TrainConfig(**folders, load_size=32, crop_size=32, lr=1e-3, lr_d=4e-3, warmup_steps=4,
                    diff_augment="color,translation,cutout", max_steps=2, workers=0,
                    sample_every=0, checkpoint_every=0, runs_dir=tmp_path / "runs"),
        progress=False)
    trainer.fit()
    g_lr = trainer.optimizers["g"].param_groups[0]["lr"]
    d_lr = trainer.optimizers["d"].param_groups[0]["lr"]
    assert g_lr == pytest.approx(1e-3 * 2 / 4) and d_lr == pytest.approx(4e-3 * 2 / 4)
    logged = (trainer.run_dir / "metrics.jsonl").read_text()
    assert "g/fm" in logged


def test_crops_too_small_for_the_discriminator_are_refused_before_a_run_folder(tmp_path):
    import img2img
    from img2img.testing import write_sample_images

    folders = write_sample_images("paired", tmp_path / "data", n=2, size=32)
    pix2pix = img2img.catalog().model("pix2pix")
    assert PatchDiscriminator(3, 4, 3).minimum_size == 24
    assert MultiScaleDiscriminator(2, lambda: PatchDiscriminator(3, 4, 3)).minimum_size == 48
    with pytest.raises(SettingsError, match="--crop-size 32 is too small.*needs at least 48 px"):
        img2img.Trainer(pix2pix, pix2pix.Options(generator="unet-32", ngf=4, ndf=4, d_scales=2),
                        TrainConfig(**folders, load_size=32, crop_size=32, workers=0,
                                    runs_dir=tmp_path / "runs"), progress=False)
    assert not (tmp_path / "runs").exists()

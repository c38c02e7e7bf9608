"""`--temporal-weight` (`img2img.training.temporal`): the warps, the loss (zero for a generator
that commutes with warps, positive for one that does not), and the trainer adding it to every
model that translates, without model code."""
from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import img2img
from img2img.cli import build_cli
from img2img.model import ImageSpec
from img2img.registry.loading import load_plugins
from img2img.runs import folders as runs
from img2img.testing import check_model
from img2img.training.temporal import TemporalLoss, inside, random_warps, warp


def test_warps_without_motion_are_the_identity():
    x = torch.rand(3, 3, 24, 32)
    matrices = random_warps(3, 24, 32, shift=0, rotate=0, zoom=0, device=x.device)
    assert torch.allclose(warp(x, matrices), x, atol=1e-5)
    assert inside(matrices, 24, 32, x.dtype).all()


def test_a_warp_moves_by_whole_pixels_as_asked():
    x = torch.rand(1, 1, 16, 16)
    matrices = random_warps(1, 16, 16, shift=3, rotate=0, zoom=0, device=x.device,
                            generator=torch.Generator().manual_seed(0))
    dx, dy = (matrices[0, 0, 2] * 16 / 2).item(), (matrices[0, 1, 2] * 16 / 2).item()
    assert abs(dx) <= 3 and abs(dy) <= 3
    shifted = random_warps(1, 16, 16, shift=0, rotate=0, zoom=0, device=x.device)
    shifted[0, 0, 2] = 2 * 2 / 16  # sample 2 px to the right
    moved = warp(x, shifted)
    assert torch.allclose(moved[..., :-2], x[..., 2:], atol=1e-5)
    assert inside(shifted, 16, 16, x.dtype)[..., -2:].sum() == 0  # came from outside


class Toy(img2img.Model):
    """A one-direction model whose generator is a given module (not trained here)."""

    name = "toy"
    directions = ("a_to_b",)

    def __init__(self, generator: nn.Module):
        self.__dict__["given"] = generator  # read by build_generators, before nn.Module is set up
        super().__init__(spec=ImageSpec(3, 32))

    def build_generators(self):
        return {"a_to_b": self.__dict__["given"]}

    def build_discriminators(self):
        return {}

    def generate(self, batch):
        return {}

    def generator_losses(self, batch, fakes):
        return {}

    def discriminator_losses(self, batch, fakes):
        return {}


def test_a_generator_that_commutes_with_warps_costs_nothing():
    loss = TemporalLoss(1.0)
    batch = {"a": torch.rand(4, 3, 32, 32) * 2 - 1}
    pointwise = Toy(nn.Conv2d(3, 3, 1))  # linear, per pixel: commutes with any resampling
    assert loss(pointwise, batch)["temporal"].item() < 1e-5


def test_a_generator_that_draws_a_fixed_pattern_is_penalised_and_gets_gradients():
    class Pattern(nn.Module):
        def __init__(self):
            super().__init__()
            self.pattern = nn.Parameter(torch.randn(1, 3, 32, 32))

        def forward(self, x):
            return x + self.pattern  # the same texture wherever the content moves: flicker

    model = Toy(Pattern())
    term = TemporalLoss(2.0)(model, {"a": torch.rand(4, 3, 32, 32)})["temporal"]
    assert term.item() > 0.1
    term.backward()
    assert model.generators["a_to_b"].pattern.grad.abs().sum() > 0


def test_models_without_directions_get_no_term():
    class Noise(Toy):
        directions = ()

    assert TemporalLoss(1.0)(Noise(nn.Identity()), {"image": torch.rand(2, 3, 8, 8)}) == {}


@pytest.mark.parametrize("name", ["pix2pix", "cyclegan", "cut"])
def test_every_model_trains_with_the_temporal_loss(name, tmp_path):
    cls = img2img.catalog().model(name)
    run = check_model(cls, workdir=tmp_path, temporal_weight=1.0)
    records = runs.read_metrics(run)
    assert all(math.isfinite(r["g/temporal"]) and r["g/temporal"] > 0 for r in records)


def test_the_flag_is_a_training_setting():
    cli = build_cli(load_plugins(strict=True, env={"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix"}))
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--help"])
    assert "--temporal-weight" in result.output
    bad = CliRunner().invoke(cli, ["train", "pix2pix", "--temporal-weight", "-1"])
    assert bad.exit_code == 2

"""The discriminator's accuracy and r_t from logits, with each GAN kind's threshold, summed on
the device over a log interval; and output diversity, which is 0 for a constant generator."""
from __future__ import annotations

import pytest
import torch

from img2img.health import SignalMeter, decisions, diversity, output_spread, real_sign
from img2img.health.keys import D_ACC_FAKE, D_ACC_REAL, R_T


def test_accuracy_and_r_t_use_zero_as_the_threshold_of_vanilla_hinge_and_wgan():
    real = torch.tensor([2.0, 0.3, -1.0, 0.0])   # right, right, wrong, undecided
    fake = torch.tensor([-2.0, 0.4, -0.1, -5.0])  # right, wrong, right, right
    for kind in ("vanilla", "hinge", "wgan-gp"):
        found = decisions(real, fake, kind)
        assert found[D_ACC_REAL].item() == pytest.approx(0.5)
        assert found[D_ACC_FAKE].item() == pytest.approx(0.75)
        assert found[R_T].item() == pytest.approx((1 + 1 - 1 + 0) / 4)


def test_lsgan_decides_at_one_half():
    real = torch.tensor([0.9, 0.4])  # 0.4 is below lsgan's 0.5: judged fake
    fake = torch.tensor([0.1, 0.45])
    found = decisions(real, fake, "lsgan")
    assert found[D_ACC_REAL].item() == pytest.approx(0.5)
    assert found[D_ACC_FAKE].item() == pytest.approx(1.0)
    assert real_sign(real, "lsgan").item() == pytest.approx(0.0)
    assert real_sign(real, "vanilla").item() == pytest.approx(1.0)


def test_patch_maps_and_scales_count_like_the_losses_do():
    big = torch.ones(2, 1, 4, 4)          # every patch real
    small = -torch.ones(2, 1, 2, 2)       # every patch fake
    found = decisions([big, small], [small, small], "vanilla")
    assert found[D_ACC_REAL].item() == pytest.approx(0.5)  # scales weigh equally, not by size
    assert found[R_T].item() == pytest.approx(0.0)


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown GAN loss 'relativistic'"):
        decisions(torch.ones(1), torch.ones(1), "relativistic")


def test_the_meter_averages_calls_stays_on_the_device_and_restarts():
    meter = SignalMeter()
    meter.observe(torch.ones(3), -torch.ones(3), "vanilla")
    meter.observe(-torch.ones(3), -torch.ones(3), "vanilla")
    assert meter.calls == 2
    means = meter.means()
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in means.values())
    assert means[D_ACC_REAL].item() == pytest.approx(0.5)
    assert means[D_ACC_FAKE].item() == pytest.approx(1.0)
    assert means[R_T].item() == pytest.approx(0.0)
    assert meter.calls == 0 and meter.means() == {}
    meter.observe(torch.ones(3), torch.ones(3), "vanilla")
    assert meter.means()[D_ACC_FAKE].item() == 0.0


def test_logits_that_need_grad_are_observed_without_keeping_the_graph():
    logits = torch.randn(4, requires_grad=True) * 2
    found = decisions(logits, -logits, "vanilla")
    assert not any(v.requires_grad for v in found.values())


def test_diversity_is_zero_for_a_constant_generator_and_one_for_the_identity():
    torch.manual_seed(0)
    inputs = torch.rand(4, 3, 8, 8) * 2 - 1
    assert diversity(torch.full((4, 3, 8, 8), 0.3), inputs) == 0.0
    assert diversity(inputs.clone(), inputs) == pytest.approx(1.0)
    assert diversity(inputs * 0.5, inputs) == pytest.approx(0.5)
    grey = inputs.mean(1, keepdim=True)  # colour outputs of grey inputs: compared per element
    assert diversity(grey.expand(-1, 3, -1, -1), grey) == pytest.approx(1.0)


def test_diversity_says_none_when_there_is_nothing_to_compare():
    one = torch.rand(1, 3, 8, 8)
    assert diversity(one, one) is None
    same = torch.zeros(3, 1, 4, 4)
    assert diversity(torch.rand(3, 1, 4, 4), same) is None
    with pytest.raises(ValueError, match="2 outputs for 3 inputs"):
        diversity(torch.rand(2, 1, 4, 4), torch.rand(3, 1, 4, 4))


def test_output_spread_of_noise_samples():
    assert output_spread(torch.zeros(4, 1, 4, 4)) == 0.0
    opposite = torch.stack([torch.ones(1, 4, 4), -torch.ones(1, 4, 4)])
    assert output_spread(opposite) == pytest.approx(2.0)
    assert output_spread(torch.zeros(1, 1, 4, 4)) is None

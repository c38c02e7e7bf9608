"""Quality metrics on inputs with known answers."""
from __future__ import annotations

import math

import pytest
import torch

from img2img import metrics


def _smooth(n: int, size: int = 32, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=g)
    images = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear")
    return (images * 2 - 1 + shift).clamp(-1, 1)


def test_psnr_of_identical_and_known_noise():
    x = _smooth(4)
    assert (metrics.psnr(x, x) > 100).all()
    g = torch.Generator().manual_seed(1)
    # Images within [-0.5, 0.5] plus noise of std 0.1 ([-1, 1] units; 0.05 in [0, 1] units)
    # stay unclamped, so the MSE is 0.0025 and the PSNR 26.02 dB.
    expected = 10 * math.log10(1 / 0.0025)
    measured = metrics.psnr(x * 0.5, x * 0.5 + 0.1 * torch.randn(x.shape, generator=g))
    assert measured.mean().item() == pytest.approx(expected, abs=0.2)


def test_ssim_and_l1_order_images_by_degradation():
    x = _smooth(2, size=64)
    g = torch.Generator().manual_seed(2)
    slight = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    heavy = (x + 0.4 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    assert metrics.ssim(x, x).allclose(torch.ones(2), atol=1e-4)
    assert (metrics.ssim(x, slight) > metrics.ssim(x, heavy)).all()
    assert (metrics.ssim(x, heavy) < 0.8).all()
    assert metrics.l1(x, x).eq(0).all()
    assert metrics.l1(-torch.ones(1, 3, 8, 8), torch.ones(1, 3, 8, 8)).item() == pytest.approx(1)


def test_swd_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    a, b = _smooth(16, seed=1), _smooth(16, seed=2)
    same = metrics.swd(a, b)["swd"]
    shifted = metrics.swd(a, _smooth(16, seed=2, shift=0.4))["swd"]
    far = metrics.swd(a, _smooth(16, seed=2, shift=0.8))["swd"]
    noise = metrics.swd(a, torch.rand(16, 3, 32, 32) * 2 - 1)["swd"]
    assert same < shifted < far
    assert same < 0.25 * noise


def test_frechet_distance_matches_the_closed_form_on_gaussians():
    g = torch.Generator().manual_seed(0)
    d, n = 4, 200_000
    scale_a = torch.tensor([1.0, 2.0, 0.5, 1.5])
    scale_b = torch.tensor([0.5, 1.0, 1.0, 3.0])
    mu_b = torch.tensor([1.0, 0.0, -2.0, 0.5])
    a = torch.randn(n, d, generator=g, dtype=torch.float64) * scale_a
    b = torch.randn(n, d, generator=g, dtype=torch.float64) * scale_b + mu_b
    # Independent axes: FID = |mu|^2 + sum (s_a - s_b)^2 with s the standard deviations.
    expected = float(mu_b.pow(2).sum() + (scale_a - scale_b).pow(2).sum())
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=0.02)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_with_correlated_covariances():
    g = torch.Generator().manual_seed(3)
    mix = torch.randn(3, 3, generator=g, dtype=torch.float64)
    a = torch.randn(100_000, 3, generator=g, dtype=torch.float64) @ mix
    b = torch.randn(100_000, 3, generator=g, dtype=torch.float64) @ (mix * 1.5)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # b's covariance is 2.25 x a's, so (S_a S_b)^1/2 = 1.5 S_a and the trace term is
    # Tr(S_a) (1 + 2.25 - 3) = 0.25 Tr(S_a).
    expected = float((a.mean(0) - b.mean(0)).pow(2).sum() + 0.25 * cov_a.trace())
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=0.03)
    assert float(cov_b.trace()) == pytest.approx(2.25 * float(cov_a.trace()), rel=0.03)


def test_kernel_distance_is_unbiased_near_zero_and_positive_for_a_shift():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(600, 8, generator=g)
    b = torch.randn(600, 8, generator=g)
    assert abs(metrics.kernel_distance(a, b, subset_size=300)) < 0.02
    assert metrics.kernel_distance(a, b + 1.0, subset_size=300) > 0.2

"""Quality metrics on inputs with known answers."""
from __future__ import annotations

import math

import pytest
import torch

from img2img.evaluation import metrics


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

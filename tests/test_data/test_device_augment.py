"""Tests for img2img.data.device_augment: the paired crop shares its geometry, varies between
samples and refuses mismatched pairs; the device's geometric jitter keeps pairs aligned with
replicated edges and moves pixels as far as the CPU recipe's."""
from __future__ import annotations

import pytest
import torch

from img2img.data.device_augment import DeviceAugment, PairedAugment


def test_paired_augment_same_geometry():
    torch.manual_seed(0)
    augment = PairedAugment(16)
    a = torch.rand(4, 3, 32, 40)
    b = a[:, :1] * 0.5 - 0.25  # an affine function of a's first channel, with a different C
    out_a, out_b = augment(a, b)
    assert out_a.shape == (4, 3, 16, 16) and out_b.shape == (4, 1, 16, 16)
    # Bilinear resampling is linear, so the same geometry keeps the relation exactly.
    assert torch.allclose(out_b, out_a[:, :1] * 0.5 - 0.25, atol=1e-5)


def test_paired_augment_varies_between_samples():
    torch.manual_seed(1)
    augment = PairedAugment(8, scale=(0.2, 0.5))
    x = torch.rand(1, 1, 32, 32).expand(6, 1, 32, 32).contiguous()
    out, _ = augment(x, x.clone())
    assert not all(torch.equal(out[0], out[i]) for i in range(1, 6))


def test_paired_augment_rejects_mismatched_sizes():
    with pytest.raises(ValueError):
        PairedAugment(8)(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 20))


# -- DeviceAugment's geometric jitter -------------------------------------------------------------
WARP = {"rotate": 20.0, "scale_jitter": 0.2, "shear": 15.0, "elastic": 0.8}


def _bright(batch: int, size: int) -> torch.Tensor:
    """Bright texture in [0.5, 1] (model-range inputs would do as well): no warp may add black."""
    generator = torch.Generator().manual_seed(2)
    return 0.5 + 0.5 * torch.rand(batch, 3, size, size, generator=generator)


@pytest.mark.parametrize("setting", [{"rotate": 30.0}, {"scale_jitter": 0.3}, {"shear": 20.0},
                                     {"elastic": 1.0}, WARP])
def test_device_warp_keeps_pairs_aligned_with_replicated_edges(setting):
    torch.manual_seed(0)
    a = _bright(4, 40)
    b = a[:, :1] * 0.5 - 0.25  # an affine function of a's first channel, with a different C
    out = DeviceAugment(40, 32, flip=True, **setting)({"a": a, "b": b}, paired=True)
    assert out["a"].shape == (4, 3, 32, 32) and out["b"].shape == (4, 1, 32, 32)
    assert torch.allclose(out["b"], out["a"][:, :1] * 0.5 - 0.25, atol=1e-5)
    assert out["a"].min() >= 0.5 - 1e-5, "the border must extend the image, not fill it with zeros"
    plain = DeviceAugment(40, 40, flip=False)({"a": a}, paired=False)["a"]
    warped = DeviceAugment(40, 40, flip=False, **setting)({"a": a}, paired=False)["a"]
    assert (warped - plain).abs().mean() > 0.02


def test_device_warp_draws_per_sample_and_per_image_when_unpaired():
    torch.manual_seed(0)
    x = _bright(1, 32).expand(4, 3, 32, 32).contiguous()
    out = DeviceAugment(32, 32, flip=False, **WARP)({"a": x, "b": x.clone()}, paired=False)
    assert not torch.allclose(out["a"], out["b"])
    assert not all(torch.allclose(out["a"][0], out["a"][i]) for i in range(1, 4))


def test_device_elastic_strength_matches_the_cpu_recipe():
    torch.manual_seed(0)
    size = 64
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    coords = torch.stack([xs, ys])[None].repeat(8, 1, 1, 1)
    moved = DeviceAugment(size, size, flip=False, elastic=0.5)({"a": coords}, paired=False)["a"]
    mean = (moved - coords).norm(dim=1).mean().item()
    assert mean == pytest.approx(0.5 * size / 20, rel=0.15)  # as test_augment.py measures

"""Tests for img2img.ops: value ranges, channel matching, padding, resizing, paired augmentation."""
from __future__ import annotations

import pytest
import torch

from img2img.data.ops import (
    PairedAugment, match_channels, pad_to_multiple, resize, to_model_range, to_uint8, to_unit_range,
    unpad,
)


def test_uint8_round_trip_is_exact():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    y = to_model_range(x)
    assert y.dtype == torch.float32 and y.min() == -1 and y.max() == 1
    assert torch.equal(to_uint8(y), x)


def test_unit_range_round_trip_and_clamp():
    x = torch.rand(2, 3, 4, 4)
    assert torch.allclose(to_unit_range(to_model_range(x)), x, atol=1e-6)
    assert to_unit_range(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 1.0]
    assert to_uint8(torch.tensor([-1.5, 0.0, 1.5])).tolist() == [0, 128, 255]


def test_match_channels_grey_and_rgb():
    grey = torch.rand(2, 1, 5, 5) * 2 - 1
    rgb = match_channels(grey, 3)
    assert rgb.shape == (2, 3, 5, 5) and torch.equal(rgb[:, 1], grey[:, 0])
    assert torch.allclose(match_channels(rgb, 1), grey, atol=1e-6)
    assert match_channels(rgb, 3) is rgb


def test_match_channels_on_model_range_agrees_with_unit_range():
    rgb = torch.rand(1, 3, 4, 4)
    via_unit = to_model_range(match_channels(rgb, 1))
    assert torch.allclose(match_channels(to_model_range(rgb), 1), via_unit, atol=1e-6)
    red = torch.zeros(1, 3, 1, 1)
    red[:, 0] = 1.0
    assert 0.2 < match_channels(red, 1).item() < 0.35  # luminance weights, not a plain mean


def test_match_channels_rejects_other_counts():
    with pytest.raises(ValueError):
        match_channels(torch.zeros(1, 4, 2, 2), 3)


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (3, 2), (7, 9), (17, 33)])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "constant"])
def test_pad_unpad_round_trip(size, mode):
    x = torch.rand(2, 3, *size)
    padded, padding = pad_to_multiple(x, 16, mode=mode)
    assert padded.shape[-2] % 16 == 0 and padded.shape[-1] % 16 == 0
    assert padded.shape[-2] - size[0] < 16 and padded.shape[-1] - size[1] < 16
    assert torch.equal(unpad(padded, padding), x)


def test_reflect_pad_larger_than_image_mirrors():
    x = torch.tensor([0.0, 1.0, 2.0]).view(1, 1, 1, 3)
    padded, padding = pad_to_multiple(x, 8)
    assert padding == (0, 5, 0, 7)
    assert padded[0, 0, 0].tolist() == [0, 1, 2, 1, 0, 1, 2, 1]
    assert torch.equal(padded[0, 0, 5], padded[0, 0, 0])


def test_no_padding_needed_returns_input():
    x = torch.rand(1, 3, 8, 16)
    padded, padding = pad_to_multiple(x, 8)
    assert padded is x and padding == (0, 0, 0, 0)


def test_resize_antialiased():
    stripes = torch.zeros(1, 1, 60, 60)
    stripes[..., ::2] = 1.0
    small = resize(stripes, 12)
    assert small.shape == (1, 1, 12, 12)
    # Antialiasing averages the 1-pixel stripes to grey; plain bilinear at a factor of 5 lands
    # on pixel centres and returns stripes of 0 and 1.
    assert torch.allclose(small, torch.full_like(small, 0.5), atol=0.15)
    assert resize(stripes, (32, 16)).shape == (1, 1, 32, 16)


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
    from img2img.data.ops import DeviceAugment

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
    from img2img.data.ops import DeviceAugment

    torch.manual_seed(0)
    x = _bright(1, 32).expand(4, 3, 32, 32).contiguous()
    out = DeviceAugment(32, 32, flip=False, **WARP)({"a": x, "b": x.clone()}, paired=False)
    assert not torch.allclose(out["a"], out["b"])
    assert not all(torch.allclose(out["a"][0], out["a"][i]) for i in range(1, 4))


def test_device_elastic_strength_matches_the_cpu_recipe():
    from img2img.data.ops import DeviceAugment

    torch.manual_seed(0)
    size = 64
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    coords = torch.stack([xs, ys])[None].repeat(8, 1, 1, 1)
    moved = DeviceAugment(size, size, flip=False, elastic=0.5)({"a": coords}, paired=False)["a"]
    mean = (moved - coords).norm(dim=1).mean().item()
    assert mean == pytest.approx(0.5 * size / 20, rel=0.15)  # as test_augment.py measures

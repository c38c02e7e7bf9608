"""Tests for img2img.data.ops: value ranges, channel matching, padding, resizing."""
from __future__ import annotations

import pytest
import torch

from img2img.data.ops import (
    match_channels, pad_to_multiple, resize, to_model_range, to_uint8, to_unit_range, unpad,
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

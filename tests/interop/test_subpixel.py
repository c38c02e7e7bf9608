"""Transposed convolutions written as sub-pixel convolutions for export (`subpixel.py`): the same
output to float rounding for every upsampling geometry generators use and more (kernel, stride,
padding, output padding, non-square), any input size; layers it cannot express are left alone."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from img2img.interop.subpixel import SubpixelConvTranspose2d, rewritable, rewrite_transposed

GEOMETRIES = [
    dict(kernel_size=4, stride=2, padding=1),  # the U-Net's
    dict(kernel_size=3, stride=2, padding=1, output_padding=1),  # the ResNet's
    dict(kernel_size=2, stride=2),
    dict(kernel_size=5, stride=2, padding=2, output_padding=1),
    dict(kernel_size=8, stride=4, padding=2),
    dict(kernel_size=(4, 3), stride=2, padding=1, output_padding=(0, 1)),
    dict(kernel_size=(4, 6), stride=(2, 3), padding=(1, 2), output_padding=(0, 1)),
    dict(kernel_size=4, stride=2, padding=1, bias=False),
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("size", [(1, 1), (3, 4), (6, 9)])
def test_the_subpixel_form_gives_the_transposed_convolutions_output(geometry, size):
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(5, 7, **geometry)
    x = torch.randn(2, 5, *size)
    with torch.no_grad():
        expected, got = layer(x), SubpixelConvTranspose2d(layer)(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("geometry", [
    dict(kernel_size=3, stride=2, padding=1),  # 2H - 1 rows: the phases differ in length
    dict(kernel_size=4, stride=2, padding=1, groups=2),
    dict(kernel_size=4, stride=2, padding=1, dilation=2),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=1, stride=2, output_padding=1),  # a phase with no taps
], ids=str)
def test_layers_it_cannot_express_are_left_alone(geometry):
    layer = nn.ConvTranspose2d(4, 6, **geometry)
    assert not rewritable(layer)
    net = nn.Sequential(layer)
    assert rewrite_transposed(net) == 0 and net[0] is layer
    with pytest.raises(ValueError, match="not a rewritable"):
        SubpixelConvTranspose2d(layer)


def test_rewrite_replaces_nested_layers_in_place():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1),
                        nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(8, 4, 4, 2, 1)),
                        nn.ConvTranspose2d(4, 3, 3, 2, 1, output_padding=1))
    x = torch.randn(1, 3, 5, 7)
    with torch.no_grad():
        expected = net(x)
        assert rewrite_transposed(net) == 2
        assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
        torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-5)

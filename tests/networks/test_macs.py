"""Counting MACs and parameters (`img2img.networks.macs`): a convolution's count by hand, the
published ResNet-9 at 256 px, and the `--macs` syntax."""
from __future__ import annotations

import pytest
from torch import nn

from img2img.networks import ResnetGenerator
from img2img.networks.macs import count_macs, count_parameters, format_count, parse_count


def test_a_convolution_counts_one_mac_per_weight_and_output_pixel():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, (3, 16, 16)) == 8 * 3 * 9 * 16 * 16
    assert count_parameters(conv) == 8 * 3 * 9 + 8
    assert conv.training  # the count leaves the module's mode as it was


def test_a_narrower_resnet_costs_about_the_square_of_the_width_ratio_less():
    wide = count_macs(ResnetGenerator(3, 3, 64, 9), (3, 256, 256))
    narrow = count_macs(ResnetGenerator(3, 3, 16, 9), (3, 256, 256))
    assert 45e9 < wide < 60e9  # the published ResNet-9: ~50-57 G, by who counts what
    assert 12 < wide / narrow < 16  # 16x in the blocks, less in the 3-channel stem and head


@pytest.mark.parametrize("text,value", [("5G", 5e9), ("800M", 8e8), ("2.5e9", 2.5e9),
                                        ("12k", 12e3)])
def test_counts_parse_and_print(text, value):
    assert parse_count(text) == value
    assert parse_count(format_count(value)) == pytest.approx(value, rel=1e-2)


@pytest.mark.parametrize("text", ["lots", "-1G", "0", ""])
def test_what_is_no_count_is_refused(text):
    with pytest.raises(ValueError):
        parse_count(text)

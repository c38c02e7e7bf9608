"""The PatchGAN discriminator of pix2pix and CycleGAN: a fully convolutional stack whose every
output logit judges one overlapping patch of the input (70x70 with the published three layers).
Optional spectral norm on every conv serves the models that stabilise the critic that way.

`MultiScaleDiscriminator` (pix2pixHD, Wang et al. 2018) runs N such PatchGANs on the input at full,
half, quarter ... resolution and returns one logit map per scale; `features()` on either hands
back the activations the feature-matching loss compares."""
from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from img2img.networks.norm import conv_needs_bias, norm_layer

_KERNEL = 4


def _strides(n_layers: int) -> list[int]:
    # n_layers stride-2 convs, then a stride-1 conv and the stride-1 logit conv.
    return [2] * n_layers + [1, 1]


def receptive_field(n_layers: int = 3) -> int:
    """Side in pixels of the input patch one output logit of `PatchDiscriminator` sees."""
    field = 1
    for stride in reversed(_strides(n_layers)):
        field = (field - 1) * stride + _KERNEL
    return field


class PatchDiscriminator(nn.Module):
    """Maps `(B, in_channels, H, W)` to a `(B, 1, H', W')` map of real/fake logits (no sigmoid),
    about H/2**n_layers - 2 per side. For conditional GANs pass the concatenated pair as input.

    Widths double from ndf each layer, capped at 8ndf. The first conv has no norm and keeps its
    bias; the others drop their bias under batch norm.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3,
                 norm: str = "instance", spectral_norm: bool = False):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"PatchDiscriminator needs n_layers >= 1, got {n_layers}")
        self.n_layers = n_layers
        wrap = _spectral_norm if spectral_norm else (lambda conv: conv)
        bias = conv_needs_bias(norm)

        layers: list[nn.Module] = [wrap(nn.Conv2d(in_channels, ndf, _KERNEL, 2, 1)), nn.LeakyReLU(0.2, True)]
        width = ndf
        for i, stride in enumerate(_strides(n_layers)[1:-1], start=1):
            out_width = ndf * min(2 ** i, 8)
            layers += [wrap(nn.Conv2d(width, out_width, _KERNEL, stride, 1, bias=bias)),
                       norm_layer(norm, out_width), nn.LeakyReLU(0.2, True)]
            width = out_width
        layers.append(wrap(nn.Conv2d(width, 1, _KERNEL, 1, 1)))
        self.model = nn.Sequential(*layers)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.n_layers)

    @property
    def minimum_size(self) -> int:
        """Smallest input side it trains on: the map its last normalisation sees must keep more
        than one value per channel (2x2), which takes 3 * 2**n_layers px."""
        return 3 * 2 ** self.n_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activation after every LeakyReLU, then the logit map (what `forward` returns)."""
        found = []
        for layer in self.model:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                found.append(x)
        return found + [x]


class MultiScaleDiscriminator(nn.Module):
    """`scales` independent PatchGANs; scale k judges the input average-pooled k times by 2 (3x3,
    stride 2, padding not counted, as pix2pixHD). `forward` returns the list of logit maps, full
    resolution first, which every `Adversary` loss accepts in place of one map."""

    def __init__(self, scales: int, make: Callable[[], PatchDiscriminator]):
        super().__init__()
        if scales < 1:
            raise ValueError(f"MultiScaleDiscriminator needs scales >= 1, got {scales}")
        self.scales = nn.ModuleList(make() for _ in range(scales))

    @property
    def receptive_field(self) -> int:
        """Side, in input pixels, of the patch the coarsest scale's logits see."""
        first = self.scales[0]
        return first.receptive_field * 2 ** (len(self.scales) - 1)

    @property
    def minimum_size(self) -> int:
        """Smallest input side the coarsest scale still trains on."""
        return self.scales[0].minimum_size * 2 ** (len(self.scales) - 1)

    def _pyramid(self, x: torch.Tensor) -> Iterator[tuple[nn.Module, torch.Tensor]]:
        for k, net in enumerate(self.scales):
            if k:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            yield net, x

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [net(scaled) for net, scaled in self._pyramid(x)]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every scale's `PatchDiscriminator.features`, concatenated, full resolution first."""
        return [f for net, scaled in self._pyramid(x) for f in net.features(scaled)]

"""The U-Net generator of pix2pix (Isola et al. 2017): `num_downs` stride-2 4x4 conv levels down to
1x1 at the published size, mirrored by transposed convs, each level's input concatenated onto its
decoder output. Layer for layer it matches the published code, built outward from the bottleneck.

`upsample="resize"` swaps each 4x4 transposed conv for a nearest 2x resize and a 3x3 conv (Odena
et al. 2016, against checkerboard artefacts): 9/16 of the decoder's weights, same size multiple.

A conditioning input (`net(x, condition)`, a `(B, bottleneck_channels)` vector per image) is added
at every position of the bottleneck: equivalent to concatenating it there, as conditional
U-Nets do with a class or style embedding (pix2pix's handwriting styles)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from img2img.networks.features import forward_capturing
from img2img.networks.norm import conv_needs_bias, norm_layer
from img2img.networks.resnet import upsampling_conv


class Bottleneck(nn.Module):
    """The innermost point of a U-Net: its input, plus the conditioning vector when given."""

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if condition is None:
            return x
        return x + condition.to(x.dtype).reshape(*condition.shape[:2], 1, 1)


class UnetLevel(nn.Module):
    """One resolution level: `down`, the coarser levels in `inner`, then `up`.

    Every level but the outermost returns `cat([x, up(inner(down(x)))])`, the skip connection
    that lets the decoder copy low-level detail straight across.
    """

    def __init__(self, down: nn.Sequential, inner: nn.Module, up: nn.Sequential, is_outermost: bool):
        super().__init__()
        self.down, self.inner, self.up = down, inner, up
        self.is_outermost = is_outermost

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        y = self.up(self.inner(self.down(x), condition))
        return y if self.is_outermost else torch.cat([x, y], dim=1)


def _down(in_ch: int, out_ch: int, norm: str, has_act: bool, has_norm: bool) -> nn.Sequential:
    # The activation sits before the conv, so the skip connection carries the pre-activation input.
    layers: list[nn.Module] = [nn.LeakyReLU(0.2)] if has_act else []
    layers.append(nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=conv_needs_bias(norm)))
    if has_norm:
        layers.append(norm_layer(norm, out_ch))
    return nn.Sequential(*layers)


def _up(in_ch: int, out_ch: int, norm: str, dropout: bool, upsample: str) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(),
        upsampling_conv(in_ch, out_ch, 4, upsample, conv_needs_bias(norm), (1, 0)),
        norm_layer(norm, out_ch),
        *([nn.Dropout(0.5)] if dropout else []),
    )


class UnetGenerator(nn.Module):
    """Maps `(B, in_channels, H, W)` in [-1, 1] to `(B, out_channels, H, W)` in [-1, 1].

    H and W must be multiples of `required_multiple` (= 2 ** num_downs) so every level halves
    evenly; num_downs=8 takes 256 px to a 1x1 bottleneck. Widths are ngf, 2ngf, 4ngf, then 8ngf.
    With `dropout`, the 8ngf levels between the bottleneck and the 4ngf level get Dropout(0.5)
    in their decoder, as the published code does (the paper's three for num_downs=8); pix2pix
    keeps it on at test time as its only source of noise.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_downs: int = 8,
                 ngf: int = 64, norm: str = "batch", dropout: bool = True,
                 upsample: str = "transposed"):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"UnetGenerator needs num_downs >= 5, got {num_downs}")
        self.required_multiple = 2 ** num_downs
        widths = [ngf * min(2 ** i, 8) for i in range(num_downs)]  # encoder output width per level

        # Bottleneck: no norm after its down conv (a 1x1 map at the published size).
        self.bottleneck_channels = widths[-1]  # the width a conditioning vector has
        level: nn.Module = UnetLevel(_down(widths[-2], widths[-1], norm, True, False), Bottleneck(),
                                     _up(widths[-1], widths[-2], norm, False, upsample), is_outermost=False)
        for i in range(num_downs - 2, 0, -1):
            has_dropout = dropout and i >= 4  # the extra 8ngf levels only
            level = UnetLevel(_down(widths[i - 1], widths[i], norm, True, True), level,
                              _up(widths[i] * 2, widths[i - 1], norm, has_dropout, upsample), is_outermost=False)
        # Outermost: no activation or norm on the input; the head keeps its bias and ends in tanh.
        head = nn.Sequential(nn.ReLU(), upsampling_conv(widths[0] * 2, out_channels, 4, upsample, True, (1, 0)),
                             nn.Tanh())
        self.model = UnetLevel(_down(in_channels, widths[0], norm, False, False), level, head,
                               is_outermost=True)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """`condition`: (B, bottleneck_channels), added at the bottleneck (None: nothing)."""
        h, w = x.shape[-2:]
        if h % self.required_multiple or w % self.required_multiple:
            raise ValueError(f"UnetGenerator needs H and W divisible by {self.required_multiple}, "
                             f"got {h}x{w}")
        return self.model(x, condition)

    # Named encoder features (img2img.networks.features): what CUT's PatchNCE compares.
    def _levels(self) -> list[UnetLevel]:
        levels, level = [], self.model
        while isinstance(level, UnetLevel):
            levels.append(level)
            level = level.inner
        return levels

    @property
    def feature_layers(self) -> dict[str, int]:
        """`input`, then `down1` .. `downN`: each encoder level's output (conv and norm), the
        maps its skip connection and the next level receive."""
        layers = {"input": self.model.down[0].in_channels}
        for i, level in enumerate(self._levels(), 1):
            conv = next(m for m in level.down if isinstance(m, nn.Conv2d))
            layers[f"down{i}"] = conv.out_channels
        return layers

    @property
    def default_feature_layers(self) -> tuple[str, ...]:
        """The input and the first four encoder levels: as many layers as CUT's ResNet choice,
        at 1, 1/2, 1/4, 1/8 and 1/16 resolution, where there are still many patches to
        contrast."""
        return tuple(list(self.feature_layers)[:5])

    def encoder_features(self, x: torch.Tensor, layers: Sequence[str]) -> list[torch.Tensor]:
        wanted, found = set(layers), {"input": x}
        for i, level in enumerate(self._levels(), 1):
            if len(found.keys() & wanted) == len(wanted):
                break
            x = level.down(x)
            found[f"down{i}"] = x
        return [found[name] for name in layers]

    def forward_with_features(self, x: torch.Tensor, layers: Sequence[str]
                              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return forward_capturing(self, x, layers, {f"down{i}": level.down
                                                   for i, level in enumerate(self._levels(), 1)})

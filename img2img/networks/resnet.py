"""The ResNet generator of CycleGAN (Zhu et al. 2017, after Johnson et al. 2016): a 7x7 stem, two
stride-2 downsamplings, a stack of residual blocks at quarter resolution, two transposed-conv
upsamplings and a 7x7 head with tanh. Layer for layer it matches the published code.

`upsample="resize"` swaps each transposed conv for a nearest-neighbour 2x resize and a 3x3 conv
(Odena et al. 2016, against checkerboard artefacts); the parameter count is unchanged."""
from __future__ import annotations

import torch
from torch import nn

from img2img.networks.norm import conv_needs_bias, norm_layer

UPSAMPLING = ("transposed", "resize")


def upsampling_conv(in_channels: int, out_channels: int, kernel: int, mode: str, bias: bool,
                    transposed_padding: tuple[int, int]) -> nn.Module:
    """A 2x upsampling conv: the published transposed conv (`kernel`, stride 2, the given padding
    and output padding), or with `mode=\"resize\"` a nearest 2x resize then a 3x3 conv."""
    if mode == "transposed":
        padding, output_padding = transposed_padding
        return nn.ConvTranspose2d(in_channels, out_channels, kernel, stride=2, padding=padding,
                                  output_padding=output_padding, bias=bias)
    if mode != "resize":
        raise ValueError(f"unknown upsampling {mode!r}; choose one of {', '.join(UPSAMPLING)}")
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias))


class ResnetBlock(nn.Module):
    """`x + F(x)` where F is two reflection-padded 3x3 convs keeping the channel count."""

    def __init__(self, channels: int, norm: str = "instance", dropout: bool = False):
        super().__init__()
        bias = conv_needs_bias(norm)
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
                  norm_layer(norm, channels), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
                   norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Maps `(B, in_channels, H, W)` in [-1, 1] to `(B, out_channels, H, W)` in [-1, 1].

    H and W must be multiples of `required_multiple`, or the two upsamplings would not restore
    the input size.
    """

    required_multiple = 4
    minimum_size = 8  # the reflection padding needs at least 2 px at quarter resolution

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64,
                 n_blocks: int = 9, norm: str = "instance", dropout: bool = False,
                 upsample: str = "transposed"):
        super().__init__()
        bias = conv_needs_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias),
                                   norm_layer(norm, ngf), nn.ReLU(inplace=True)]
        width = ngf
        for _ in range(2):
            layers += [nn.Conv2d(width, width * 2, 3, stride=2, padding=1, bias=bias),
                       norm_layer(norm, width * 2), nn.ReLU(inplace=True)]
            width *= 2
        layers += [ResnetBlock(width, norm, dropout) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [upsampling_conv(width, width // 2, 3, upsample, bias, (1, 1)),
                       norm_layer(norm, width // 2), nn.ReLU(inplace=True)]
            width //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.required_multiple or w % self.required_multiple:
            raise ValueError(f"ResnetGenerator needs H and W divisible by {self.required_multiple}, "
                             f"got {h}x{w}")
        return self.model(x)

    # Named encoder features (img2img.networks.features): what CUT's PatchNCE compares.
    @property
    def feature_layers(self) -> dict[str, int]:
        from img2img.networks import features
        return features.resnet_feature_layers(self)

    @property
    def default_feature_layers(self) -> tuple[str, ...]:
        from img2img.networks import features
        return features.resnet_default_layers(self)

    def encoder_features(self, x: torch.Tensor, layers) -> list[torch.Tensor]:
        from img2img.networks import features
        return features.resnet_features(self, x, layers)

    def forward_with_features(self, x: torch.Tensor, layers):
        from img2img.networks import features
        return features.resnet_forward_with_features(self, x, layers)

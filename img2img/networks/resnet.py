"""The ResNet generator of CycleGAN (Zhu et al. 2017, after Johnson et al. 2016): a 7x7 stem, two
stride-2 downsamplings, a stack of residual blocks at quarter resolution, two transposed-conv
upsamplings and a 7x7 head with tanh. Layer for layer it matches the published code.

`upsample="resize"` swaps each transposed conv for a nearest-neighbour 2x resize and a 3x3 conv
(Odena et al. 2016, against checkerboard artefacts); the parameter count is unchanged."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from img2img.networks.features import forward_capturing
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
    STEM_NORM = 2  # model[2], the stem's norm: the declared noise input shifts its output

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

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.required_multiple or w % self.required_multiple:
            raise ValueError(f"ResnetGenerator needs H and W divisible by {self.required_multiple}, "
                             f"got {h}x{w}")
        if noise is None:
            return self.model(x)
        for i, module in enumerate(self.model):
            x = self._noisy(module(x), i, noise)
        return x

    # A noise input (img2img.networks.noise), declared rather than tiled channels.
    def add_noise_input(self, noise_dim: int) -> None:
        """Take `noise=` (`(B, noise_dim)`) from now on. Noise tiled into extra input channels
        would reach only the 7x7 stem, whose instance norm subtracts each channel's spatial mean:
        a spatially constant input is erased exactly, and the noise would never reach the
        output. So a learned linear map of the noise shifts each stem channel after that norm,
        before its ReLU (weights N(0, 0.1), no bias)."""
        stem = self.model[self.STEM_NORM - 1]
        self.noise_shift = nn.Linear(noise_dim, stem.out_channels, bias=False).to(stem.weight)
        nn.init.normal_(self.noise_shift.weight, 0.0, 0.1)

    def _noisy(self, x: torch.Tensor, index: int, noise: torch.Tensor | None) -> torch.Tensor:
        """`x`, the output of `model[index]`, shifted by the noise after the stem's norm."""
        if noise is None or index != self.STEM_NORM:
            return x
        shift = self.noise_shift(noise.to(self.noise_shift.weight.dtype))
        return x + shift.to(x.dtype)[:, :, None, None]

    # Named encoder features (img2img.networks.features): what CUT's PatchNCE compares.
    def _feature_modules(self) -> dict[str, nn.Module]:
        """`down1`, `down2` (the second and third convs of `model`) and `block1` .. `blockN`
        (its residual blocks): the module whose output each feature is."""
        convs = [m for m in self.model if isinstance(m, nn.Conv2d)]
        blocks = [m for m in self.model if isinstance(m, ResnetBlock)]
        named: dict[str, nn.Module] = {f"down{i}": conv for i, conv in enumerate(convs[1:3], 1)}
        named.update({f"block{i}": block for i, block in enumerate(blocks, 1)})
        return named

    @property
    def feature_layers(self) -> dict[str, int]:
        """`input`, `down1`, `down2` (each downsampling conv's output, before its norm), then
        `block1` .. `blockN` (each residual block's output)."""
        modules = self._feature_modules()
        stem = next(m for m in self.model if isinstance(m, nn.Conv2d))
        width = modules["down2"].out_channels  # the residual blocks keep it
        return {"input": stem.in_channels,
                **{name: getattr(m, "out_channels", width) for name, m in modules.items()}}

    @property
    def default_feature_layers(self) -> tuple[str, ...]:
        """CUT's choice for ResNet-9 (Park et al. 2020): the input pixels, both downsampling
        convs, the first and the middle (fifth) residual block; the same places for other
        depths."""
        blocks = len(self.feature_layers) - 3
        return ("input", "down1", "down2", "block1", f"block{(blocks + 1) // 2}")

    def encoder_features(self, x: torch.Tensor, layers: Sequence[str],
                         noise: torch.Tensor | None = None) -> list[torch.Tensor]:
        names = {id(m): name for name, m in self._feature_modules().items()}
        wanted, found = set(layers), {"input": x}
        for i, module in enumerate(self.model):
            if len(found.keys() & wanted) == len(wanted):
                break  # the rest of the network is not needed
            x = self._noisy(module(x), i, noise)
            name = names.get(id(module))
            if name in wanted:
                found[name] = x
        return [found[name] for name in layers]

    def forward_with_features(self, x: torch.Tensor, layers: Sequence[str],
                              noise: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return forward_capturing(self, x, layers, self._feature_modules(), noise=noise)

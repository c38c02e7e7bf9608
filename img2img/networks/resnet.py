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
        return self.model(x) if noise is None else self._noisy_forward(x, noise)

    # A noise input (img2img.networks.noise), declared rather than tiled channels.
    NOISE_BRANCH_WIDTH = 16

    def add_noise_input(self, noise_dim: int) -> None:
        """Take `noise=` (`(B, noise_dim)`) from now on, through a branch beside the last layer.
        Tiled noise channels would reach only the 7x7 stem, whose instance norm subtracts each
        channel's spatial mean: a spatially constant input is erased exactly. So a small branch
        (two 3x3 convolutions, weights N(0, 0.02)) reads the decoder's last features, detached,
        and gives `noise_dim` maps per output channel; the noise weighs them, and their sum is
        added to the last convolution's output before its tanh. That sum is linear in the
        noise, so zero noise gives exactly the network without the branch (the output without a
        seed); and as the branch reads its features detached, what the noisy outputs' losses
        (the mode-seeking term's) send back through it trains the branch alone, and reaches the
        network's own weights only through the tanh's slope. Noise shifting the stem instead
        made the seeds differ only by changing weights the output without a seed shares
        (benchmarks/README.md, "Several outputs per input", has the injections compared)."""
        final = self.model[-2]
        width, hidden = final.in_channels, self.NOISE_BRANCH_WIDTH
        self.noise_branch = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(width, hidden, 3), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(hidden, noise_dim * final.out_channels, 3),
        ).to(final.weight)
        for conv in self.noise_branch[1::3]:
            nn.init.normal_(conv.weight, 0.0, 0.02)
            nn.init.zeros_(conv.bias)

    def _noisy_forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        features = self.model[:-3](x)
        before_tanh = self.model[-2](self.model[-3](features))
        maps = self.noise_branch(features.detach()).unflatten(1, (noise.shape[1], -1))
        noise = noise.to(maps.dtype)[:, :, None, None, None]
        return torch.tanh(before_tanh + (noise * maps).sum(dim=1).to(before_tanh.dtype))

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
        """The named features of `x` (see `feature_layers`). The noise input joins after the
        decoder, so these encoder features do not depend on `noise` (taken for the interface)."""
        names = {id(m): name for name, m in self._feature_modules().items()}
        wanted, found = set(layers), {"input": x}
        for module in self.model:
            if len(found.keys() & wanted) == len(wanted):
                break  # the rest of the network is not needed
            x = module(x)
            name = names.get(id(module))
            if name in wanted:
                found[name] = x
        return [found[name] for name in layers]

    def forward_with_features(self, x: torch.Tensor, layers: Sequence[str],
                              noise: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return forward_capturing(self, x, layers, self._feature_modules(), noise=noise)

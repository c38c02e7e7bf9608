"""The class-conditional networks of the cgan plugin. The generator turns noise plus a learned
class embedding into an image through nearest-neighbour upsampling and 3x3 convolutions, with
class-conditional batch norm (de Vries et al. 2017; Dumoulin et al. 2017) after each of them.
The discriminator is the "standard CNN" of Miyato et al. 2018 with spectral normalisation on
every layer and a projection head for the label (Miyato & Koyama 2018)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

SIZES = (32, 64, 128)
BASE = 4  # both networks work from / down to a 4x4 map
MAX_WIDTH_FACTOR = 8


def levels(size: int) -> int:
    """How many 2x steps lie between a 4x4 map and `size` px."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size}")
    return int(math.log2(size // BASE))


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift are looked up per class instead of shared, so the label
    steers every layer of the generator. Starts as plain batch norm (scale 1, shift 0)."""

    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.scale = nn.Embedding(classes, channels)
        self.shift = nn.Embedding(classes, channels)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        """x (B,C,H,W), labels (B,) int64 -> (B,C,H,W)."""
        scale = self.scale(labels)[:, :, None, None]
        shift = self.shift(labels)[:, :, None, None]
        return self.norm(x) * scale + shift


class UpBlock(nn.Module):
    """2x nearest-neighbour upsampling, 3x3 conv, conditional batch norm, ReLU. Resize then
    convolve rather than a transposed convolution, which draws checkerboards (Odena et al. 2016)."""

    def __init__(self, in_channels: int, out_channels: int, classes: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)
        self.norm = ConditionalBatchNorm2d(out_channels, classes)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        return torch.relu(self.norm(self.conv(self.up(x)), labels))


class ConditionalGenerator(nn.Module):
    """(noise (B, noise_dim), labels (B,) int64) -> images (B, channels, size, size) in [-1, 1].

    Widths run from `width * 8` at 4x4 down to `width` at full size, halving with each step (as
    the "standard CNN" generator: 512, 256, 128, 64 at 32 px for width 64)."""

    def __init__(self, noise_dim: int, embed_dim: int, classes: int, channels: int, size: int,
                 width: int):
        super().__init__()
        steps = levels(size)
        widths = [width * min(2 ** (steps - i), MAX_WIDTH_FACTOR) for i in range(steps + 1)]
        self.noise_dim = noise_dim
        self.embed = nn.Embedding(classes, embed_dim)
        self.project = nn.Linear(noise_dim + embed_dim, widths[0] * BASE * BASE, bias=False)
        self.project_norm = ConditionalBatchNorm2d(widths[0], classes)
        self.blocks = nn.ModuleList(UpBlock(widths[i], widths[i + 1], classes)
                                    for i in range(steps))
        self.head = nn.Conv2d(widths[-1], channels, 3, 1, 1)

    def forward(self, noise: Tensor, labels: Tensor) -> Tensor:
        x = self.project(torch.cat([noise, self.embed(labels)], dim=1))
        x = torch.relu(self.project_norm(x.view(x.shape[0], -1, BASE, BASE), labels))
        for block in self.blocks:
            x = block(x, labels)
        return torch.tanh(self.head(x))


class MinibatchStd(nn.Module):
    """Appends one channel: the standard deviation of every feature across a group of up to
    `group` images, averaged (Karras et al. 2018). A generator that ignores its noise and draws
    one image per class makes that channel near zero, which the discriminator then spots."""

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        group = next(g for g in range(min(self.group, b), 0, -1) if b % g == 0)
        grouped = x.float().view(group, b // group, c, h, w)
        std = (grouped.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))
        feature = std.to(x.dtype).view(1, b // group, 1, 1, 1).expand(group, -1, 1, h, w)
        return torch.cat([x, feature.reshape(b, 1, h, w)], dim=1)


class ProjectionDiscriminator(nn.Module):
    """(images (B, channels, size, size), labels (B,)) -> one logit per image, shape (B,).

    Features phi(x): per 2x step a 3x3 conv and a 4x4 stride-2 conv, then the minibatch
    standard deviation and a 3x3 conv at 4x4, LeakyReLU(0.1) after each, summed over space. Logit = psi(phi(x)) + <embed(y), phi(x)>: the
    projection of Miyato & Koyama 2018, which conditions on the label through an inner product
    rather than by concatenating it to the input. Every layer, the embedding included, is
    spectrally normalised (Miyato et al. 2018) so the critic stays 1-Lipschitz-ish per layer."""

    def __init__(self, channels: int, classes: int, size: int, width: int):
        super().__init__()
        steps = levels(size)
        widths = [channels] + [width * min(2 ** i, MAX_WIDTH_FACTOR) for i in range(steps + 1)]
        layers: list[nn.Module] = []
        for i in range(steps):
            layers += [spectral_norm(nn.Conv2d(widths[i], widths[i + 1], 3, 1, 1)),
                       nn.LeakyReLU(0.1),
                       spectral_norm(nn.Conv2d(widths[i + 1], widths[i + 1], 4, 2, 1)),
                       nn.LeakyReLU(0.1)]
        layers += [MinibatchStd(), spectral_norm(nn.Conv2d(widths[steps] + 1, widths[-1], 3, 1, 1)),
                   nn.LeakyReLU(0.1)]
        self.features = nn.Sequential(*layers)
        self.linear = spectral_norm(nn.Linear(widths[-1], 1))
        self.embed = spectral_norm(nn.Embedding(classes, widths[-1]))

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        phi = self.features(images).sum(dim=(2, 3))
        return self.linear(phi).squeeze(1) + (self.embed(labels) * phi).sum(dim=1)


def _raw_weight(module: nn.Module) -> Tensor:
    # Under spectral norm `weight` is recomputed on access; the trainable tensor is `original`.
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


@torch.no_grad()
def init_weights(network: nn.Module) -> nn.Module:
    """Glorot-uniform convolutions, linear layers and projection embeddings, zero biases (the
    initialisation of the spectral-norm reference code); conditional batch norms keep scale 1 and
    shift 0, and the generator's input class embedding keeps N(0, 1), the scale of the noise."""
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(_raw_weight(module))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding) and isinstance(network, ProjectionDiscriminator):
            nn.init.xavier_uniform_(_raw_weight(module))
    return network

"""Generators by name, so model plugins can offer the same `--generator` choice: `unet-N` is the
U-Net whose bottleneck is 1x1 at N px (log2 N downsamplings), `resnet-K` the ResNet generator with
K residual blocks. Also checks the training size against what the network needs."""
from __future__ import annotations

from torch import nn

from img2img.errors import Img2ImgError
from img2img.networks.init import init_weights
from img2img.networks.resnet import ResnetGenerator
from img2img.networks.unet import UnetGenerator

GENERATORS = ("unet-32", "unet-64", "unet-128", "unet-256", "resnet-6", "resnet-9")


def build_generator(kind: str, in_channels: int, out_channels: int, *, ngf: int, norm: str,
                    dropout: bool, size: int | None = None) -> nn.Module:
    """A freshly initialised (normal 0, 0.02) generator; `size` is the training crop size."""
    family, _, number = kind.partition("-")
    if kind not in GENERATORS:
        raise Img2ImgError(f"--generator '{kind}' is unknown; choose one of {', '.join(GENERATORS)}")
    if family == "unet":
        net: nn.Module = UnetGenerator(in_channels, out_channels, int(number).bit_length() - 1,
                                       ngf, norm, dropout)
    else:
        net = ResnetGenerator(in_channels, out_channels, ngf, int(number), norm, dropout)
    multiple = net.required_multiple
    if size is not None and size % multiple:
        raise Img2ImgError(f"--crop-size {size} does not suit --generator {kind}, which needs a "
                           f"multiple of {multiple}; use --crop-size {max(multiple, size // multiple * multiple)} "
                           "or a smaller generator")
    return init_weights(net)

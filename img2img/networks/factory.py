"""Generators by name, so model plugins can offer the same `--generator` choice: `unet-N` is the
U-Net whose bottleneck is 1x1 at N px (log2 N downsamplings), `resnet-K` the ResNet generator with
K residual blocks. Also checks the training size against what the network needs."""
from __future__ import annotations

from torch import nn

from img2img.errors import Img2ImgError, SettingsError
from img2img.networks.init import init_weights
from img2img.networks.resnet import ResnetGenerator
from img2img.networks.unet import UnetGenerator

GENERATORS = ("unet-32", "unet-64", "unet-128", "unet-256", "resnet-6", "resnet-9")


def build_generator(kind: str, in_channels: int, out_channels: int, *, ngf: int, norm: str,
                    dropout: bool, size: int | None = None,
                    upsample: str = "transposed") -> nn.Module:
    """A freshly initialised (normal 0, 0.02) generator; `size` is the training crop size."""
    family, _, number = kind.partition("-")
    if kind not in GENERATORS:
        raise Img2ImgError(f"--generator '{kind}' is unknown; choose one of {', '.join(GENERATORS)}")
    if family == "unet":
        net: nn.Module = UnetGenerator(in_channels, out_channels, int(number).bit_length() - 1,
                                       ngf, norm, dropout, upsample)
    else:
        net = ResnetGenerator(in_channels, out_channels, ngf, int(number), norm, dropout, upsample)
    multiple = net.required_multiple
    if size is not None and size % multiple:
        lower = max(multiple, size // multiple * multiple)
        # A smaller U-Net needs a smaller multiple; a ResNet's multiple (4) is the same for all.
        other = " or a smaller U-Net (--generator unet-N)" if family == "unet" else ""
        raise SettingsError(f"--crop-size {size} does not suit --generator {kind}, which needs "
                            f"a multiple of {multiple}; use --crop-size {lower} or "
                            f"{lower + multiple}{other}")
    return init_weights(net)

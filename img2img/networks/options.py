"""The network options that pix2pix-style models share (generator kind, widths, PatchGAN depth,
normalisation, dropout, batch-norm statistics at inference) as one frozen base for a model's
`Options`, with the two networks they describe. A model subclasses it, changes defaults with
`img2img.new_default`, and adds its own loss weights."""
from __future__ import annotations

import dataclasses

from torch import nn

from img2img.fields import option
from img2img.networks.factory import GENERATORS, build_generator
from img2img.networks.init import init_weights
from img2img.networks.norm import NORMS, per_sample_batch_norm
from img2img.networks.patchgan import MultiScaleDiscriminator, PatchDiscriminator
from img2img.networks.resnet import UPSAMPLING

BATCH_STATS = ("per-image", "running")


@dataclasses.dataclass(frozen=True)
class NetworkOptions:
    """Defaults are pix2pix's (Isola et al. 2017): a U-Net-256 with batch norm and dropout, and
    a 70x70 PatchGAN (3 layers), both 64 filters wide."""

    generator: str = option("unet-256", "generator network (unet-N fits N px crops; resnet-N has N "
                                        "residual blocks)", choices=GENERATORS)
    ngf: int = option(64, "generator width (filters in the first layer)", min=1)
    ndf: int = option(64, "discriminator width", min=1)
    d_layers: int = option(3, "PatchGAN layers (3 = 70x70 patches, 5 = 286x286)", min=1, max=6)
    norm: str = option("batch", "normalisation layers", choices=NORMS)
    dropout: bool = option(True, "dropout in the generator while training (U-Net decoder, ResNet "
                                 "blocks)")
    batch_stats: str = option("per-image", "batch norm at inference: each image's own statistics "
                                           "(as in training at batch size 1, and the reference's "
                                           "test.py), or the running averages (its --eval)",
                              choices=BATCH_STATS)
    upsample: str = option("transposed", "generator upsampling: transposed convs (published), or "
                                         "resize = nearest 2x resize then a 3x3 conv, which avoids "
                                         "checkerboard artefacts (Odena et al. 2016)",
                           choices=UPSAMPLING)
    d_scales: int = option(1, "discriminator scales: N PatchGANs judging the image at full, 1/2, "
                              "1/4 ... resolution (pix2pixHD; 1 = the published single PatchGAN)",
                           min=1, max=4)
    spectral_norm: bool = option(False, "spectral normalisation on every discriminator conv "
                                        "(Miyato et al. 2018), which bounds the critic and often "
                                        "steadies training")

    def make_generator(self, in_channels: int, out_channels: int, size: int | None) -> nn.Module:
        """The generator these options describe, for `size` px crops (U-Nets check it fits)."""
        net = build_generator(self.generator, in_channels, out_channels, ngf=self.ngf,
                              norm=self.norm, dropout=self.dropout, size=size,
                              upsample=self.upsample)
        return per_sample_batch_norm(net) if self.batch_stats == "per-image" else net

    def make_discriminator(self, in_channels: int) -> nn.Module:
        """The PatchGAN these options describe (with `d_scales` > 1 a `MultiScaleDiscriminator`
        of that many), initialised as the reference does."""
        def patchgan() -> PatchDiscriminator:
            return PatchDiscriminator(in_channels, self.ndf, self.d_layers, self.norm,
                                      spectral_norm=self.spectral_norm)
        net = patchgan() if self.d_scales == 1 else MultiScaleDiscriminator(self.d_scales, patchgan)
        return init_weights(net)

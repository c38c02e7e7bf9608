"""The colorize model: a generator that turns the grey version of a photo back into colour. It
trains on one folder of colour photos and makes its own input from each photo, so no pairs are
needed. Losses follow the conditional-GAN recipe of Isola et al. 2017 (who list colourisation
among its uses): a PatchGAN judges (grey, colour) pairs, plus L1 to the real photo.

Domain `a` is the grey image, domain `b` the colour one, so the generator is `a_to_b` and the
discriminator judges `b`, like every other img2img model."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

import img2img
from img2img import new_default, option
from img2img.networks import NetworkOptions

# ITU-R BT.601 luma: the grey a black-and-white photo or a photo editor's "desaturate" gives.
GREY_WEIGHTS = (0.299, 0.587, 0.114)


def to_grey(images: Tensor) -> Tensor:
    """(B,3,H,W) colour -> (B,1,H,W) grey; (B,1,H,W) is returned as it is.

    Valid in [-1, 1] as well as [0, 1]: the weights sum to 1, so the weighted sum commutes with
    the affine map between the two ranges."""
    if images.shape[-3] == 1:
        return images
    if images.shape[-3] != 3:
        raise img2img.Img2ImgError(f"colorize expects 1 or 3 channels, got {images.shape[-3]}")
    weights = images.new_tensor(GREY_WEIGHTS).view(3, 1, 1)
    return (images * weights).sum(dim=-3, keepdim=True)


@dataclass(frozen=True)
class Options(NetworkOptions):  # img2img's shared U-Net + PatchGAN options
    dropout: bool = new_default(NetworkOptions, "dropout", False)
    lambda_l1: float = option(100.0, "weight of the L1 loss to the real colours", min=0)


class Colorize(img2img.Model):
    name = "colorize"
    data = "images"
    summary = "grey -> colour photos (trains on any folder of colour photos)"
    Options = Options
    directions = ("a_to_b",)
    smoke_options = {"generator": "unet-32", "ngf": 8, "ndf": 8}

    def build_generators(self):
        if self.spec.channels != 3:
            raise img2img.Img2ImgError("colorize learns colour: train it on colour photos with "
                                       f"--channels 3 (got --channels {self.spec.channels})")
        # make_generator keeps batch statistics per image at inference too (see pix2pix).
        return {"a_to_b": self.options.make_generator(1, 3, self.spec.size)}

    def build_discriminators(self):
        return {"b": self.options.make_discriminator(1 + 3)}

    def _critic(self, grey: Tensor):
        discriminator = self.discriminators["b"]
        return lambda colour: discriminator(torch.cat([grey, colour], dim=1))

    def generate(self, batch):
        return {"fake_b": self.generators["a_to_b"](to_grey(batch["image"]))}

    def generator_losses(self, batch, fakes):
        grey, fake = to_grey(batch["image"]), fakes["fake_b"]
        return {"gan": self.adversary.generator_loss(self._critic(grey)(fake)),
                "l1": self.options.lambda_l1 * F.l1_loss(fake, batch["image"])}

    def discriminator_losses(self, batch, fakes):
        grey = to_grey(batch["image"])
        return self.adversary.discriminator_losses(self._critic(grey), batch["image"],
                                                   fakes["fake_b"])

    def translate(self, images, direction=None):
        """Colour (B,3,H,W) is made grey first, so old photos with a tint convert too."""
        self.resolve_direction(direction)
        return self.generators["a_to_b"](to_grey(images))

    def visuals(self, batch, fakes):
        return {"a": to_grey(batch["image"]), "fake_b": fakes["fake_b"], "b": batch["image"]}

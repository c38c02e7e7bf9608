"""Pix2Pix: a U-Net generator with dropout and batch norm, a conditional 70x70 PatchGAN that
judges (a, b) pairs, the non-saturating GAN loss plus L1 weighted 100 (Isola et al. 2017).

Inference: the paper trains at batch size 1, where batch norm's statistics are each image's own.
At inference (eval mode) every batch-norm layer keeps using per-image statistics with its learned
scale and shift, never the running averages the network was not trained with, so a converted
image is the same whether it is translated alone or batched (`--batch-stats running` chooses the
averages instead); dropout is off, so output is deterministic.

Styles: trained on paired data with style sub-folders (DATA/<style>/a, DATA/<style>/b), the U-Net
gains a learned embedding per style added at its bottleneck (equivalent to joining a one-hot label
there), so one model writes in several hands; `translate(..., label=)` (the core's `--style`)
picks one. Without style folders the networks are exactly the published ones."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import img2img
from img2img import option
from img2img.networks import NetworkOptions, UnetGenerator, feature_matching


class StyledUnet(nn.Module):
    """A U-Net whose bottleneck also sees a learned embedding of an integer style label (its
    conditioning input)."""

    def __init__(self, unet: UnetGenerator, styles: int):
        super().__init__()
        self.unet = unet
        self.embedding = nn.Embedding(styles, unet.bottleneck_channels)
        self.required_multiple = unet.required_multiple

    def forward(self, x: Tensor, style: Tensor | None = None) -> Tensor:
        if style is None:
            style = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return self.unet(x, self.embedding(style.to(x.device)))


@dataclass(frozen=True)
class Options(NetworkOptions):  # the published networks: NetworkOptions' defaults are pix2pix's
    lambda_l1: float = option(100.0, "weight of the L1 loss to the target", min=0)
    feature_matching: float = option(0.0, "weight of the discriminator feature-matching loss "
                                          "between (a, fake b) and (a, b) (pix2pixHD uses 10; 0 = "
                                          "off, the published recipe)", min=0)


class Pix2Pix(img2img.Model):
    name = "pix2pix"
    data = "paired"
    summary = "paired translation a -> b (U-Net + conditional PatchGAN, GAN + L1)"
    Options = Options
    training_defaults = {"gan_loss": "vanilla"}
    directions = ("a_to_b",)
    smoke_options = {"generator": "unet-32", "ngf": 8, "ndf": 8}
    target_terms = ("l1", "fm")  # both pull the output towards the one real b

    def build_generators(self):
        o, c = self.options, self.spec.channels
        net = o.make_generator(c, c, self.spec.size)
        if self.spec.classes:  # style sub-folders in the data: one embedding per style
            if not isinstance(net, UnetGenerator):
                raise img2img.Img2ImgError(f"style labels need a U-Net generator, not "
                                           f"--generator {o.generator}")
            net = StyledUnet(net, len(self.spec.classes))
        return {"a_to_b": net}

    def _generator(self, a: Tensor, style: Tensor | None) -> Tensor:
        net = self.generators["a_to_b"]
        return net(a) if not self.spec.classes else net(a, style)

    def build_discriminators(self):
        return {"b": self.options.make_discriminator(2 * self.spec.channels)}

    def _critic(self, a: Tensor):
        discriminator = self.discriminators["b"]
        return lambda b: discriminator(torch.cat([a, b], dim=1))

    def generate(self, batch):
        return {"fake_b": self._generator(batch["a"], batch.get("label"))}

    def generator_losses(self, batch, fakes):
        fake_b, a = fakes["fake_b"], batch["a"]
        terms = {
            "gan": self.adversary.generator_loss(self._critic(a)(fake_b)),
            "l1": self.options.lambda_l1 * F.l1_loss(fake_b, batch["b"]),
        }
        if self.options.feature_matching:
            terms["fm"] = self.options.feature_matching * feature_matching(
                self.discriminators["b"], torch.cat([a, batch["b"]], 1), torch.cat([a, fake_b], 1))
        return terms

    def discriminator_losses(self, batch, fakes):
        return self.adversary.discriminator_losses(self._critic(batch["a"]), batch["b"],
                                                   fakes["fake_b"])

    def visuals(self, batch, fakes):
        return {"a": batch["a"], "fake_b": fakes["fake_b"], "b": batch["b"]}

"""cgan: a class-conditional GAN that draws an image of a requested class from noise. Generator
with class-conditional batch norm, projection discriminator with spectral norm (Miyato & Koyama
2018), hinge loss by default (any core GAN loss with --gan-loss), plus a mode-seeking term (Mao
et al. 2019): without it the small networks this runs on a CPU learn one image per class.

It samples, it does not translate: `directions` is empty, so `convert` refuses a cgan run and
`img2img sample` (this plugin's command) or `img2img.load(run).sample(labels, n)` draw images."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

import img2img
from img2img import option

from .networks import SIZES, ConditionalGenerator, ProjectionDiscriminator, init_weights

GRID_NOISE = 8      # columns of the training sample grid: fixed noise vectors
GRID_CLASSES = 16   # at most this many classes (rows) in the training sample grid
SAMPLE_CHUNK = 64   # images per generator call in sample(), so memory stays bounded


@dataclass(frozen=True)
class Options:
    # Runs recorded before the rename load as they were (img2img.runs reads this).
    renamed_fields: ClassVar[dict[str, str]] = {"noise_dim": "latent_dim"}
    latent_dim: int = option(128, "length of the noise vector (called --noise-dim until that "
                                  "name went to every model's noise input)", min=1)
    embed_dim: int = option(128, "length of the learned class embedding fed to the generator with "
                                 "the noise", min=1)
    ngf: int = option(64, "generator width: channels at full size, doubling per 2x step down to "
                          "4x4 (max 8x)", min=1)
    ndf: int = option(64, "discriminator width: channels of its first layer, doubling per 2x step "
                          "(max 8x)", min=1)
    lambda_ms: float = option(0.1, "weight of the mode-seeking term, which rewards different "
                                   "images for different noise of one class (0 = off)", min=0)


class ConditionalGAN(img2img.Model):
    """Noise + class label -> image. Batches hold `image` (B,C,H,W) in [-1, 1] and `label` (B,)."""

    name = "cgan"
    data = "labelled"
    summary = ("class-conditional generation: noise + label -> image (conditional batch norm, "
               "projection discriminator with spectral norm, hinge loss)")
    Options = Options
    # Setting C of Miyato et al. 2018 (Adam 2e-4, betas 0.5/0.999, one D step per G step), where
    # spectral norm was the most robust. Labels must not flip (a mirrored 7 is no 7) and need no
    # crop jitter; the generator average (--ema) gives the steadier samples.
    training_defaults = {"gan_loss": "hinge", "batch_size": 64, "load_size": 32, "crop_size": 32,
                         "flip": False, "lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "ema": 0.999}
    directions = ()
    smoke_options = {"latent_dim": 16, "embed_dim": 8, "ngf": 4, "ndf": 4}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Drawn from its own generator, not the global RNG: the same noise in every grid, so
        # progress is comparable step to step and between runs.
        self.grid_noise = torch.randn(GRID_NOISE, self.options.latent_dim,
                                      generator=torch.Generator().manual_seed(0))

    @property
    def num_classes(self) -> int:
        return max(1, len(self.spec.classes))

    def _check_settings(self) -> None:
        # Widths and weights are checked from their declared ranges (img2img.fields).
        if self.spec.size not in SIZES:
            raise img2img.Img2ImgError(
                f"cgan trains at {', '.join(map(str, SIZES))} px; --crop-size is "
                f"{self.spec.size} (set --load-size and --crop-size to one of them)")

    def build_generators(self):
        self._check_settings()
        o, s = self.options, self.spec
        net = ConditionalGenerator(o.latent_dim, o.embed_dim, self.num_classes, s.channels,
                                   s.size, o.ngf)
        return {"noise_to_image": init_weights(net)}

    def build_discriminators(self):
        s = self.spec
        return {"image": init_weights(ProjectionDiscriminator(s.channels, self.num_classes,
                                                              s.size, self.options.ndf))}

    def generate(self, batch):
        labels = batch["label"]
        noise = torch.randn(labels.shape[0], self.options.latent_dim, device=labels.device)
        return {"fake": self.generators["noise_to_image"](noise, labels), "noise": noise}

    def generator_losses(self, batch, fakes):
        fake, labels = fakes["fake"], batch["label"]
        terms = {"gan": self.adversary.generator_loss(self.discriminators["image"](fake, labels))}
        if self.options.lambda_ms > 0:
            terms["ms"] = self.options.lambda_ms * mode_seeking_loss(fake, fakes["noise"], labels)
        return terms

    def discriminator_losses(self, batch, fakes):
        discriminator, labels = self.discriminators["image"], batch["label"]
        return self.adversary.discriminator_losses(lambda x: discriminator(x, labels),
                                                   batch["image"], fakes["fake"])

    @torch.no_grad()
    def sample(self, labels: Tensor, n: int | None = None) -> Tensor:
        """Images (N,C,H,W) in [-1, 1] for class indices `labels` (an int or (L,) tensor): one per
        label, or `n` per label (label-major: n of the first, then n of the second, ...).

        The noise is drawn on the CPU from torch's global generator, so `torch.manual_seed`
        gives the same images on any device and in any batch size; eval mode uses batch norm's
        running statistics, so each image is independent of the others."""
        labels = torch.as_tensor(labels).to("cpu", torch.int64).reshape(-1)
        if n is not None:
            if n < 1:
                raise img2img.Img2ImgError(f"n must be at least 1, got {n}")
            labels = labels.repeat_interleave(n)
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if len(bad):
            raise img2img.Img2ImgError(f"label {int(bad[0])} is out of range: this model knows "
                                       f"{self.num_classes} class(es), 0..{self.num_classes - 1}")
        generator = self.generators["noise_to_image"]
        device = next(generator.parameters()).device
        noise = torch.randn(len(labels), self.options.latent_dim)
        parts = [generator(noise[i:i + SAMPLE_CHUNK].to(device), labels[i:i + SAMPLE_CHUNK].to(device))
                 for i in range(0, len(labels), SAMPLE_CHUNK)]
        return torch.cat(parts) if parts else noise.new_zeros(0, self.spec.channels,
                                                              self.spec.size, self.spec.size)

    def visuals(self, batch, fakes):
        """One row per class (at most 16, spread over the classes), one column per fixed noise
        vector: the same grid every time, so the steps compare."""
        device = batch["label"].device
        shown = torch.linspace(0, self.num_classes - 1, min(self.num_classes, GRID_CLASSES))
        labels = shown.round().long().unique().to(device)
        noise = self.grid_noise.to(device)
        images = self.generators["noise_to_image"](noise.repeat_interleave(len(labels), 0),
                                                   labels.repeat(len(noise)))
        return {f"noise_{j}": images[j * len(labels):(j + 1) * len(labels)]
                for j in range(len(noise))}


def mode_seeking_loss(images: Tensor, noise: Tensor, labels: Tensor) -> Tensor:
    """Mode seeking (Mao et al. 2019) over every pair of fakes of one class in the batch: the
    reciprocal of how far apart their images are per unit of noise distance, so a generator that
    draws one image per class whatever the noise pays for it. Zero when no class repeats."""
    same = (labels[:, None] == labels[None, :]).triu(diagonal=1)
    first, second = same.nonzero(as_tuple=True)
    if len(first) == 0:
        return images.new_zeros((), dtype=torch.float32)
    apart = (images[first] - images[second]).abs().float().mean(dim=(1, 2, 3))
    ratio = apart / (noise[first] - noise[second]).abs().mean(dim=1)
    return 1.0 / (ratio.mean() + 1e-5)

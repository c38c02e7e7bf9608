"""CUT and FastCUT (Park, Efros, Zhang, Zhu 2020, contrastive unpaired translation): one
generator a -> b, one 70x70 PatchGAN judging b, least-squares GAN loss, and PatchNCE between the
input and the output read from the generator's own encoder, instead of CycleGAN's inverse
generator and cycle loss.

Published defaults: ResNet-9 with instance norm and anti-aliased down/upsampling, PatchNCE at the
input, both downsampling convs and the first and fifth residual blocks (the generator names
them; U-Nets and plugins' generators offer their own), 256 patches per layer, a two-layer
256-unit projection head, temperature 0.07, no image pool. CUT: NCE weight 1 plus the identity
term (b through the generator, against b), the two NCE terms averaged; 200 + 200 epochs.
FastCUT: NCE weight 10, no identity term, flip equivariance; 150 + 50 epochs.

The projection head is an auxiliary network (`build_auxiliary`): the trainer optimises it with
the generator and checkpoints it, and translation never touches it. The generator loss arrives
in two groups (the fake's GAN + NCE terms, then the identity term) so that only one generator
pass holds activations at a time; the input's features are only targets (PatchNCE does not
backpropagate through its keys), so they are computed without a graph."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

import img2img
from img2img import new_default, option
from img2img.networks import (
    NetworkOptions, ResnetGenerator, antialias_resnet, encoder_features, feature_layers,
    forward_and_features, resolve_layers,
)

from .patchnce import ProjectionHead, patch_nce_loss


@dataclass(frozen=True)
class Options(NetworkOptions):
    generator: str = new_default(NetworkOptions, "generator", "resnet-9")
    norm: str = new_default(NetworkOptions, "norm", "instance")
    dropout: bool = new_default(NetworkOptions, "dropout", False)
    antialias: bool = option(True, "anti-aliased down/upsampling in ResNet generators: stride-1 "
                                   "conv then a [1,3,3,1] blur-pool, blur-upsample then a 3x3 conv "
                                   "(Zhang 2019; U-Nets are built as published)")
    lambda_gan: float = option(1.0, "weight of the GAN loss", min=0)
    lambda_nce: float = option(1.0, "weight of the PatchNCE loss (0 = off)", min=0)
    nce_identity: bool = option(True, "also PatchNCE between b and the generator's output for b; "
                                      "the two NCE terms are then averaged")
    nce_layers: str = option("", "comma-separated encoder layers PatchNCE compares (empty = the "
                                 "generator's choice; ResNet: input,down1,down2,block1,block5; "
                                 "U-Net: input,down1..down4)")
    nce_patches: int = option(256, "patches sampled per layer and image", min=1)
    nce_head_units: int = option(256, "width of the two-layer projection head", min=1)
    nce_temperature: float = option(0.07, "temperature of the PatchNCE softmax", gt=0)
    flip_equivariance: bool = option(False, "every other step on average, translate the "
                                            "horizontally flipped input and compare its features "
                                            "flipped back (FastCUT)")
    recompute: bool = option(False, "keep none of the generator's activations while the GAN and "
                                    "PatchNCE terms run and recompute them for its backward pass "
                                    "(activation checkpointing): less memory for one more "
                                    "generator forward per term")


@dataclass(frozen=True)
class FastOptions(Options):
    lambda_nce: float = new_default(Options, "lambda_nce", 10.0)
    nce_identity: bool = new_default(Options, "nce_identity", False)
    flip_equivariance: bool = new_default(Options, "flip_equivariance", True)


class CUT(img2img.Model):
    name = "cut"
    data = "unpaired"
    summary = "unpaired translation a -> b (one ResNet generator, GAN + patchwise contrastive loss)"
    Options = Options
    training_defaults = {"gan_loss": "lsgan", "epochs": 200, "decay_epochs": 200}
    directions = ("a_to_b",)
    fakes_per_group = True  # each group makes its own output: one generator graph at a time
    smoke_options = {"generator": "resnet-6", "ngf": 8, "ndf": 8, "nce_patches": 16,
                     "nce_head_units": 16}
    target_terms = ("nce_idt",)  # G(b) keeps b's patches: b is already in the output domain

    def build_generators(self):
        c = self.spec.channels
        net = self.options.make_generator(c, c, self.spec.size)
        if self.options.antialias and isinstance(net, ResnetGenerator):
            antialias_resnet(net)
        return {"a_to_b": net}

    def build_discriminators(self):
        return {"b": self.options.make_discriminator(self.spec.channels)}

    def build_auxiliary(self):
        if self.options.lambda_nce == 0:
            return {}
        known = feature_layers(self.generators["a_to_b"])
        return {"projection": ProjectionHead({n: known[n] for n in self.nce_layers},
                                             self.options.nce_head_units)}

    @functools.cached_property
    def nce_layers(self) -> tuple[str, ...]:
        """The generator's feature layers PatchNCE compares (checked against what it has; the
        generator and options never change, so once)."""
        return resolve_layers(self.generators["a_to_b"], self.options.nce_layers)

    def generate(self, batch):
        g = self.generators["a_to_b"]
        fakes = {"fake_b": g(batch["a"])}
        if self.options.nce_identity and "b" in batch:
            fakes["idt_b"] = g(batch["b"])
        return fakes

    def _flip(self) -> bool:
        """FastCUT's coin, drawn from the seeded torch generator so a resumed run redraws it."""
        o = self.options
        return o.flip_equivariance and self.generators.training and bool(torch.rand(()) < 0.5)

    def _output(self, fakes, name: str, source, flip: bool):
        """The generator's output for `source` (flipped first if `flip`), made once per step
        (`fake`), whether it is flipped, and the source's NCE features read during the same pass
        (None where that pass saw the flipped image or `generate` made the output)."""
        made_here = {}

        def make():
            x = source.flip(3) if flip else source
            # A flipped pass sees the flipped image, whose features are not the source's.
            layers = self.nce_layers if self.options.lambda_nce > 0 and not flip else ()
            if self.options.recompute and torch.is_grad_enabled():
                made, made_here["features"] = checkpoint(self._translate, x, layers,
                                                         use_reentrant=False)
            else:
                made, made_here["features"] = self._translate(x, layers)
            return made

        output = self.fake(fakes, name, make)
        return output, flip and bool(made_here), made_here.get("features")

    def _translate(self, x, layers):
        """The generator's output for `x` and, when `layers` are named, their features of `x`
        read in the same pass (else None)."""
        g = self.generators["a_to_b"]
        return forward_and_features(g, x, layers) if layers else (g(x), None)

    def patch_nce(self, source, output, flipped: bool = False, source_features=None):
        """PatchNCE between `source` and the generator's `output` for it (for a flipped
        source, the output's features are flipped back), averaged over the layers.
        `source_features`: the source's features where they are already known."""
        g, head, o = self.generators["a_to_b"], self.auxiliary["projection"], self.options
        layers = self.nce_layers
        with torch.no_grad():  # targets only: the loss never backpropagates through keys
            if source_features is None:
                source_features = encoder_features(g, source, layers)
            keys, ids = head(source_features, o.nce_patches)
        queries = encoder_features(g, output, layers)
        if flipped:
            queries = [q.flip(3) for q in queries]
        queries, _ = head(queries, o.nce_patches, ids)
        total = sum(patch_nce_loss(q, k, o.nce_temperature) for q, k in zip(queries, keys))
        return total / len(layers)

    def generator_losses(self, batch, fakes):
        o = self.options
        flip = self._flip()
        identity = o.nce_identity and o.lambda_nce > 0
        nce_weight = o.lambda_nce * (0.5 if identity else 1.0)  # the two terms are averaged
        fake_b, flipped, known = self._output(fakes, "fake_b", batch["a"], flip)
        terms = {"gan": o.lambda_gan * self.adversary.generator_loss(
            self.discriminators["b"](fake_b))}
        if o.lambda_nce > 0:
            terms["nce"] = nce_weight * self.patch_nce(batch["a"], fake_b, flipped, known)
        yield terms
        del fake_b, terms, known
        if identity:
            idt_b, flipped, known = self._output(fakes, "idt_b", batch["b"], flip)
            yield {"nce_idt": nce_weight * self.patch_nce(batch["b"], idt_b, flipped, known)}

    def discriminator_losses(self, batch, fakes):
        return self.adversary.discriminator_losses(self.discriminators["b"], batch["b"],
                                                   fakes["fake_b"])

    def visuals(self, batch, fakes):
        shown = {"a": batch["a"], "fake_b": fakes["fake_b"], "b": batch["b"]}
        if "idt_b" in fakes:
            shown["idt_b"] = fakes["idt_b"]
        return shown


class FastCUT(CUT):
    name = "fastcut"
    summary = ("unpaired translation a -> b, CUT's lighter variant (NCE x10, no identity term, "
               "flip equivariance)")
    Options = FastOptions
    training_defaults = {"gan_loss": "lsgan", "epochs": 150, "decay_epochs": 50}

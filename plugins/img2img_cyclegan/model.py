"""CycleGAN: two ResNet generators (a -> b, b -> a) with instance norm, two 70x70 PatchGANs,
least-squares GAN loss, cycle-consistency loss weighted 10 each way, identity loss at 0.5 of the
cycle weight, and a pool of 50 past fakes per discriminator (Zhu et al. 2017).

The generator loss arrives in four groups (a-cycle, b-cycle, each identity term) and each group
makes the fake it uses (`fakes_per_group`); the trainer backpropagates each group as it comes, so
at most two generator passes hold activations at once instead of six. The gradient is the same
as one backward of the summed loss."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

import img2img
from img2img import new_default, option
from img2img.networks import ImagePool, NetworkOptions


@dataclass(frozen=True)
class Options(NetworkOptions):  # both directions use the same networks
    generator: str = new_default(NetworkOptions, "generator", "resnet-9")
    norm: str = new_default(NetworkOptions, "norm", "instance")
    dropout: bool = new_default(NetworkOptions, "dropout", False)
    # With --norm batch, runs from before this option converted with the running averages.
    batch_stats: str = new_default(NetworkOptions, "batch_stats", "running")
    lambda_cycle: float = option(10.0, "weight of the cycle-consistency loss (each direction)",
                                 min=0)
    lambda_identity: float = option(0.5, "weight of the identity loss, relative to --lambda-cycle "
                                         "(0 = off)", min=0)
    pool_size: int = option(50, "past fakes kept for the discriminators (0 = none)", min=0)


class CycleGAN(img2img.Model):
    name = "cyclegan"
    data = "unpaired"
    summary = "unpaired translation a <-> b (two ResNet generators, cycle + identity losses)"
    Options = Options
    training_defaults = {"gan_loss": "lsgan"}
    directions = ("a_to_b", "b_to_a")
    fakes_per_group = True  # each group makes its own fake: one fake's graph alive at a time
    smoke_options = {"generator": "resnet-6", "ngf": 8, "ndf": 8, "pool_size": 4}
    target_terms = ("idt_a", "idt_b")  # G(x) = x for an image already in the output domain

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pools = {d: ImagePool(self.options.pool_size) for d in ("a", "b")}

    def build_generators(self):
        o, c = self.options, self.spec.channels
        return {name: o.make_generator(c, c, self.spec.size) for name in ("a_to_b", "b_to_a")}

    def build_discriminators(self):
        return {d: self.options.make_discriminator(self.spec.channels) for d in ("a", "b")}

    def generate(self, batch):
        return {"fake_b": self.generators["a_to_b"](batch["a"]),
                "fake_a": self.generators["b_to_a"](batch["b"])}

    def generator_losses(self, batch, fakes):
        g, d, o = self.generators, self.discriminators, self.options
        gan = self.adversary.generator_loss
        # Each group uses its own fake's graph only, so each can be freed after its backward.
        fake_b = self.fake(fakes, "fake_b", lambda: g["a_to_b"](batch["a"]))
        yield {"gan_a_to_b": gan(d["b"](fake_b)),
               "cycle_a": o.lambda_cycle * F.l1_loss(g["b_to_a"](fake_b), batch["a"])}
        del fake_b
        fake_a = self.fake(fakes, "fake_a", lambda: g["b_to_a"](batch["b"]))
        yield {"gan_b_to_a": gan(d["a"](fake_a)),
               "cycle_b": o.lambda_cycle * F.l1_loss(g["a_to_b"](fake_a), batch["b"])}
        del fake_a
        weight = o.lambda_cycle * o.lambda_identity
        if weight > 0:
            yield {"idt_a": weight * F.l1_loss(g["b_to_a"](batch["a"]), batch["a"])}
            yield {"idt_b": weight * F.l1_loss(g["a_to_b"](batch["b"]), batch["b"])}

    def discriminator_losses(self, batch, fakes):
        terms = {}
        for domain in ("a", "b"):
            fake = self.pools[domain].query(fakes[f"fake_{domain}"])
            found = self.adversary.discriminator_losses(self.discriminators[domain],
                                                        batch[domain], fake)
            terms.update({f"{domain}_{k}": v for k, v in found.items()})
        return terms

    def visuals(self, batch, fakes):
        g = self.generators
        return {"a": batch["a"], "fake_b": fakes["fake_b"], "rec_a": g["b_to_a"](fakes["fake_b"]),
                "b": batch["b"], "fake_a": fakes["fake_a"], "rec_b": g["a_to_b"](fakes["fake_a"])}

    def extra_state(self):
        return {f"pool_{d}.{k}": v for d, pool in self.pools.items()
                for k, v in pool.state_dict().items()}

    def load_extra_state(self, state):
        for d, pool in self.pools.items():
            prefix = f"pool_{d}."
            pool.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                  if k.startswith(prefix)})

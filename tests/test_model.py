"""The model contract's base class itself: a `Model` is an `nn.Module` whose networks are its
sub-modules (so torch moves them, buffers included, switches their mode and names them in
`state_dict()` as checkpoints do), and the fake a training step makes once (`fake`,
`fakes_per_group`), so a model's loss groups need no `generator_step` of their own."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

import img2img


class Counter(nn.Module):
    """A 1x1 conv with a buffer: what batch-norm statistics are to the real networks."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, x):
        return self.conv(x)


class Tiny(img2img.Model):
    name = "tiny"
    directions = ("a_to_b",)

    def build_generators(self):
        return {"a_to_b": Counter()}

    def build_discriminators(self):
        return {"b": nn.Conv2d(3, 1, 1)}

    def build_auxiliary(self):
        return {"head": nn.Linear(2, 2)}

    def generate(self, batch):
        return {"fake_b": self.generators["a_to_b"](batch["a"])}

    def generator_losses(self, batch, fakes):
        made = []
        fake_b = self.fake(fakes, "fake_b", lambda: made.append(1) or
                           self.generators["a_to_b"](batch["a"]))
        self.made = len(made)
        yield {"l1": fake_b.abs().mean()}

    def discriminator_losses(self, batch, fakes):
        return {"fake": self.discriminators["b"](fakes["fake_b"]).mean()}


class PerGroup(Tiny):
    fakes_per_group = True


def test_a_model_is_a_module_whose_state_dict_has_the_checkpoint_keys():
    model = Tiny()
    assert isinstance(model, nn.Module)
    assert sorted(model.state_dict()) == [
        "auxiliary.head.bias", "auxiliary.head.weight", "discriminators.b.bias",
        "discriminators.b.weight", "generators.a_to_b.conv.bias", "generators.a_to_b.conv.weight",
        "generators.a_to_b.seen"]
    networks = [model.generators, model.discriminators, model.auxiliary]
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for net in networks for p in net.parameters())


def test_torch_moves_every_network_and_buffer_and_switches_their_mode():
    model = Tiny().to(torch.float64)  # a dtype stands in for a device on a CPU-only machine
    assert model.generators["a_to_b"].seen.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model.eval() is model and not any(m.training for m in model.modules())
    assert all(m.training for m in model.train().modules())


def test_the_fake_is_made_once_per_step_and_kept_detached():
    model, batch = PerGroup(), {"a": torch.rand(2, 3, 4, 4), "b": torch.rand(2, 3, 4, 4)}
    fakes, groups = model.generator_step(batch)
    assert fakes == {}  # nothing made before the group that needs it
    (terms,) = list(groups)
    assert model.made == 1 and terms["l1"].requires_grad
    assert set(fakes) == {"fake_b"} and not fakes["fake_b"].requires_grad


def test_a_fake_from_generate_is_used_as_it_is():
    model, batch = Tiny(), {"a": torch.rand(2, 3, 4, 4), "b": torch.rand(2, 3, 4, 4)}
    fakes, groups = model.generator_step(batch)  # without fakes_per_group: generate first
    made_by_generate = fakes["fake_b"]
    list(groups)
    assert model.made == 0 and fakes["fake_b"] is made_by_generate


def test_options_declared_with_option_and_new_default():
    @dataclasses.dataclass(frozen=True)
    class Base:
        norm: str = img2img.option("batch", "normalisation", choices=("batch", "instance"))
        weight: float = img2img.option(1.0, "loss weight", min=0)

    @dataclasses.dataclass(frozen=True)
    class Derived(Base):
        norm: str = img2img.new_default(Base, "norm", "instance")

    fields = {f.name: f for f in dataclasses.fields(Derived)}
    assert Derived().norm == "instance" and Base().norm == "batch"
    assert dict(fields["norm"].metadata) == {"help": "normalisation",
                                             "choices": ("batch", "instance")}
    assert dict(fields["weight"].metadata) == {"help": "loss weight", "min": 0}

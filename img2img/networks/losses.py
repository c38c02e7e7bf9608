"""Adversarial objectives shared by every model plugin: the generator and discriminator losses of
each GAN kind, the WGAN-GP gradient penalty, the R1 penalty, and the history pool of generated
images. Models compose these; none of them calls backward() -- the trainer does."""
from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GAN_LOSSES = ("vanilla", "lsgan", "hinge", "wgan-gp")
log = logging.getLogger("img2img")

# A critic maps images to logits: one map, or a list of maps (a multi-scale discriminator).
Logits = Union[Tensor, Sequence[Tensor]]
Critic = Callable[[Tensor], Logits]


def eager() -> AbstractContextManager:
    """Run torch.compile'd networks eagerly inside. A gradient penalty differentiates the
    critic's input gradient again (double backward), which AOTAutograd, the autograd of every
    compiled module, refuses; only the penalty's critic forward needs to run eagerly."""
    return torch.compiler.set_stance("force_eager")


def _scales(logits: Logits) -> list[Tensor]:
    return [logits] if isinstance(logits, Tensor) else list(logits)


def _mean_over_scales(logits: Logits, loss: Callable[[Tensor], Tensor]) -> Tensor:
    """`loss` of each scale's map, averaged: one scale gives exactly the single-map loss."""
    maps = _scales(logits)
    return sum(loss(m.float()) for m in maps) / len(maps)


class Adversary:
    """One GAN objective: what the generator minimises and what the discriminator minimises.

    `kind` is one of `GAN_LOSSES`. `gp_weight` scales the WGAN-GP gradient penalty (used only by
    "wgan-gp"); `r1_weight` > 0 adds the R1 penalty on real images to any kind.

    The trainer sets two attributes for fp16: `scaler`, its gradient scaler, through which the
    penalties' input gradients go (PyTorch's AMP recipe), and `penalty_in_float32` when a
    discriminator has batch or instance norm: their double backward computes (1/std)^3 in the
    input's precision, which overflows fp16 (NaN in every first-layer gradient, whatever the
    scale), so the penalties' critic forward then runs outside autocast.

    `observers` are called as `observer(real_logits, fake_logits, kind)` with the detached
    logits (one list of maps per call) of every `discriminator_losses` call: the trainer's
    health signals and adaptive augmentation read the discriminator's decisions there, so
    every model that judges through its Adversary gets them without code of its own.
    """

    def __init__(self, kind: str = "vanilla", gp_weight: float = 10.0, r1_weight: float = 0.0):
        if kind not in GAN_LOSSES:
            raise ValueError(f"unknown GAN loss {kind!r}; choose one of: {', '.join(GAN_LOSSES)}")
        if gp_weight < 0 or r1_weight < 0:
            raise ValueError(f"penalty weights must be >= 0, got gp_weight={gp_weight}, "
                             f"r1_weight={r1_weight}")
        self.kind = kind
        self.gp_weight = float(gp_weight)
        self.r1_weight = float(r1_weight)
        self.scaler: torch.amp.GradScaler | None = None
        self.penalty_in_float32 = False
        self.observers: list[Callable[[list[Tensor], list[Tensor], str], None]] = []

    def prepare(self, discriminators: nn.Module, scaler: torch.amp.GradScaler,
                model: str) -> None:
        """Fit the penalties to the discriminators they judge and to the trainer's `scaler`
        (see the class docstring); warn where WGAN-GP's penalty cannot hold."""
        norms = [m for m in discriminators.modules()
                 if isinstance(m, nn.modules.batchnorm._NormBase)]  # batch and instance norm
        self.scaler = scaler
        self.penalty_in_float32 = scaler.is_enabled() and bool(norms)
        if self.kind == "wgan-gp" and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                          for m in norms):
            # A per-sample gradient norm; batch norm makes each sample's output depend on the
            # others in its batch, so the penalty no longer constrains what it should.
            log.warning("--gan-loss wgan-gp with batch norm in the %s discriminator: the "
                        "gradient penalty is per sample and batch norm couples a batch's "
                        "samples (Gulrajani et al. 2017 use none); use a discriminator without "
                        "batch norm (the PatchGAN's --norm instance or none, or "
                        "--spectral-norm) or another --gan-loss", model)

    def __repr__(self) -> str:
        return (f"Adversary(kind={self.kind!r}, gp_weight={self.gp_weight}, "
                f"r1_weight={self.r1_weight})")

    def generator_loss(self, fake_logits: Logits) -> Tensor:
        """Scalar loss for the generator given the discriminator's logits on fakes (any shape,
        e.g. a PatchGAN map (B,1,h,w); every element counts equally). A list of maps (one per
        scale) gives the mean of their losses."""
        return _mean_over_scales(fake_logits, self._generator_loss)

    def _generator_loss(self, logits: Tensor) -> Tensor:
        # Losses are taken in float32: squaring half-precision logits can overflow under autocast.
        if self.kind == "vanilla":
            # Non-saturating form (Goodfellow et al. 2014): maximise log D(G(z)).
            return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        if self.kind == "lsgan":
            return (logits - 1).pow(2).mean()
        return -logits.mean()  # hinge and wgan-gp share the generator side

    def discriminator_losses(self, critic: Critic, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """Already-weighted scalar terms for the discriminator: "real", "fake", plus "gp"
        (wgan-gp with gp_weight > 0) and "r1" (r1_weight > 0).

        `critic` maps images to logits, so conditional discriminators fit in a lambda.
        `fake` must already be detached from the generator.
        """
        penalised = self._penalised(critic)
        if self.r1_weight > 0:
            # The fake pass first: a compiled critic updates batch-norm running statistics with
            # a visible in-place copy, which would invalidate what the eager real pass saved
            # for R1's gradient. R1 differentiates through the real input: a leaf of its own.
            fake_logits = _scales(critic(fake))
            real = real.detach().requires_grad_(True)
            real_logits = _scales(penalised(real))
        else:
            real_logits, fake_logits = _scales(critic(real)), _scales(critic(fake))
        if self.observers:
            seen = [m.detach() for m in real_logits], [m.detach() for m in fake_logits]
            for observer in self.observers:
                observer(*seen, self.kind)
        per_scale = [self._real_fake_terms(r.float(), f.float())
                     for r, f in zip(real_logits, fake_logits)]
        terms = {name: sum(t[name] for t in per_scale) / len(per_scale) for name in per_scale[0]}
        if self.kind == "wgan-gp" and self.gp_weight > 0:
            terms["gp"] = self.gp_weight * gradient_penalty(penalised, real, fake, self.scaler)
        if self.r1_weight > 0:
            # Mescheder et al. 2018 write the penalty as gamma/2 * E||grad D||^2.
            terms["r1"] = self.r1_weight / 2 * r1_penalty(real_logits, real, self.scaler)
        return terms

    def _penalised(self, critic: Critic) -> Critic:
        """`critic` as the penalties run it: uncompiled, since they differentiate it twice, and
        outside autocast with `penalty_in_float32`."""
        def run(images: Tensor) -> Logits:
            full = torch.autocast(images.device.type, enabled=False) \
                if self.penalty_in_float32 else nullcontext()
            with eager(), full:
                return critic(images)
        return run

    def _real_fake_terms(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        if self.kind == "vanilla":
            # pix2pix and CycleGAN halve the D loss so D learns slower relative to G.
            real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
            return {"real": 0.5 * real, "fake": 0.5 * fake}
        if self.kind == "lsgan":
            return {"real": 0.5 * (real_logits - 1).pow(2).mean(),
                    "fake": 0.5 * fake_logits.pow(2).mean()}
        if self.kind == "hinge":
            return {"real": F.relu(1 - real_logits).mean(), "fake": F.relu(1 + fake_logits).mean()}
        return {"real": -real_logits.mean(), "fake": fake_logits.mean()}


def _per_sample_norm(grads: Tensor) -> Tensor:
    # The 1e-12 keeps sqrt's derivative finite when a sample's gradient is exactly zero.
    return (grads.float().flatten(1).pow(2).sum(1) + 1e-12).sqrt()


def _input_gradient(outputs: Logits, inputs: Tensor,
                    scaler: torch.amp.GradScaler | None = None) -> Tensor | None:
    """d outputs.sum() / d inputs with a graph (summed over every map of a list), in float32, or
    None when outputs do not depend on inputs. Taken outside autocast, as PyTorch's AMP recipe
    for gradient penalties asks; with an enabled `scaler` (fp16) the recipe's scaling too."""
    maps = [m for m in _scales(outputs) if m.requires_grad]
    if not maps:
        return None
    if scaler is None or not scaler.is_enabled():
        with torch.autocast(inputs.device.type, enabled=False):
            (grads,) = torch.autograd.grad(sum(m.sum() for m in maps), inputs,
                                           create_graph=True, allow_unused=True)
        return None if grads is None else grads.float()
    # Scaled, small half-precision gradients do not flush to zero on their way back through the
    # critic. The sum becomes a mean first (the count is multiplied back in float32): scaling a
    # gradient of 1 per element by the scaler's initial 65536 would overflow fp16 (max 65504).
    count = sum(m.numel() for m in maps)
    scale = scaler.scale(torch.ones((), device=inputs.device))  # a tensor: no host sync
    mean = sum(m.float().sum() for m in maps) / count
    with torch.autocast(inputs.device.type, enabled=False):
        (grads,) = torch.autograd.grad(mean * scale, inputs, create_graph=True, allow_unused=True)
    # An overflow leaves inf here, so the step's gradients are inf and the scaler skips the step
    # and lowers its scale, as for any other overflow.
    return None if grads is None else grads.float() * (count / scale)


def gradient_penalty(critic: Critic, real: Tensor, fake: Tensor,
                     scaler: torch.amp.GradScaler | None = None) -> Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017): mean over samples of (||grad critic(x)||_2 - 1)^2
    at random points x on the lines between real and fake images (B,C,H,W).

    The critic may return one logit per sample or a patch map (B,1,h,w); the map is summed, so the
    gradient is that of the whole map. Differentiable w.r.t. the critic's parameters. The critic
    runs uncompiled here (see `eager`); `scaler` is the fp16 gradient scaler, if any.
    """
    real, fake = real.detach(), fake.detach()
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device)
    interp = (eps * real + (1 - eps) * fake).to(real.dtype).requires_grad_(True)
    with eager():
        logits = critic(interp)
    grads = _input_gradient(logits, interp, scaler)
    if grads is None:
        # A critic that ignores its input has gradient norm 0 everywhere: penalty exactly 1.
        return torch.ones((), device=real.device)
    return (_per_sample_norm(grads) - 1).pow(2).mean()


def r1_penalty(real_logits: Logits, real: Tensor,
               scaler: torch.amp.GradScaler | None = None) -> Tensor:
    """R1 penalty (Mescheder et al. 2018): mean over samples of ||d real_logits.sum() / d real||^2.

    `real` must require grad and `real_logits` must have been computed from it, by a critic run
    under `eager()` if it is compiled; the result is differentiable w.r.t. the critic's
    parameters. Unweighted: the caller applies gamma/2. `scaler`: the fp16 gradient scaler.
    """
    if not real.requires_grad:
        raise ValueError("r1_penalty needs `real` to require grad; run the critic on "
                         "real.detach().requires_grad_(True)")
    grads = _input_gradient(real_logits, real, scaler)
    if grads is None:
        return torch.zeros((), device=real.device)
    return grads.flatten(1).pow(2).sum(1).mean()


def feature_matching(discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """Discriminator feature matching (pix2pixHD, Wang et al. 2018): the mean over layers of the
    L1 distance between the discriminator's activations on `real` and on `fake`, each layer
    weighted equally (pix2pixHD's 1/number-of-layers, averaged over scales too). The real side is
    a fixed target (no gradient); the loss trains the generator only, through `fake`.

    `discriminator` needs a `features(x)` method returning a list of activations, as
    `PatchDiscriminator` and `MultiScaleDiscriminator` have; for a conditional discriminator
    pass the same concatenated (condition, image) inputs its `forward` takes."""
    extract = getattr(discriminator, "features", None)
    if extract is None:
        raise TypeError(f"{type(discriminator).__name__} has no features() method; feature "
                        "matching needs one (PatchDiscriminator and MultiScaleDiscriminator have it)")
    with torch.no_grad():
        targets = extract(real)
    found = extract(fake)
    return sum(F.l1_loss(f.float(), t.float()) for f, t in zip(found, targets)) / len(found)


class ImagePool:
    """History of generated images shown to the discriminator (Shrivastava et al. 2017; CycleGAN
    keeps 50). Until the pool is full every image is stored and returned; afterwards each image
    is, with probability 0.5, swapped for a random stored one. `size` 0 passes images through.

    Randomness comes from torch's global RNG, so `torch.manual_seed` makes it repeatable, and the
    trainer's per-step seeding (`img2img.rng`) makes a resumed run draw as an uninterrupted one.
    """

    def __init__(self, size: int = 50):
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = int(size)
        self._images: list[Tensor] = []

    def __len__(self) -> int:
        return len(self._images)

    def query(self, images: Tensor) -> Tensor:
        """Return a batch (B,C,H,W) of the same shape, mixing `images` with stored ones."""
        if self.size == 0:
            return images
        images = images.detach()
        picked = []
        for image in images:
            # Clone: a view would keep the caller's whole batch alive inside the pool.
            if len(self._images) < self.size:
                self._images.append(image.clone())
                picked.append(image)
            elif torch.rand(()).item() < 0.5:
                index = int(torch.randint(self.size, ()).item())
                picked.append(self._images[index].to(images.device))
                self._images[index] = image.clone()
            else:
                picked.append(image)
        return torch.stack(picked)

    def state_dict(self) -> dict[str, Tensor]:
        """The stored images as one tensor (N,C,H,W); an empty pool gives no key."""
        if not self._images:
            return {}
        return {"images": torch.stack(self._images)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Replace the pool's contents with what `state_dict()` produced."""
        images = state.get("images")
        if images is None or images.shape[0] == 0:
            self._images = []
            return
        if images.shape[0] > self.size:
            raise ValueError(f"pool state holds {images.shape[0]} images but the pool's size is "
                             f"{self.size}")
        self._images = [image.clone() for image in images]

"""Cheap health signals computed from tensors the trainer already has: the discriminator's
accuracy on real and fake images and StyleGAN2-ADA's sign statistic r_t, from the logits of each
discriminator step, and the diversity of the generator's outputs on the fixed sample batch.
Per-step work stays on the device; the host sees the numbers only when the trainer logs them."""
from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
from torch import Tensor

from .keys import D_ACC_FAKE, D_ACC_REAL, R_T

# Logits as `img2img.networks.Adversary` takes them: one map, or one map per scale.
Logits = Union[Tensor, Sequence[Tensor]]

KINDS = ("vanilla", "lsgan", "hinge", "wgan-gp")


def threshold(kind: str) -> float:
    """The logit at which the discriminator of `kind` is undecided: 0 for vanilla (sigmoid 0.5),
    hinge and wgan-gp (the sign of the critic), 0.5 for lsgan (halfway between its targets 0
    and 1)."""
    if kind not in KINDS:
        raise ValueError(f"unknown GAN loss {kind!r}; choose one of: {', '.join(KINDS)}")
    return 0.5 if kind == "lsgan" else 0.0


def _maps(logits: Logits) -> list[Tensor]:
    maps = [logits] if isinstance(logits, Tensor) else list(logits)
    if not maps:
        raise ValueError("no logits given (an empty list of discriminator outputs)")
    return [m.detach().float() for m in maps]


def _mean_over_scales(logits: Logits, value: Callable[[Tensor], Tensor]) -> Tensor:
    # Every scale counts equally, as in the losses of `img2img.networks.Adversary`.
    maps = _maps(logits)
    return sum(value(m).float().mean() for m in maps) / len(maps)


def real_sign(real_logits: Logits, kind: str) -> Tensor:
    """E[sign(D(real) - threshold)] over every element of every map (0-dim, on the device):
    r_t of StyleGAN2-ADA (Karras et al. 2020). Near 1 the discriminator is sure of every real
    image, which on a small dataset means it has memorised them."""
    cut = threshold(kind)
    return _mean_over_scales(real_logits, lambda m: torch.sign(m - cut))


def decisions(real_logits: Logits, fake_logits: Logits, kind: str) -> dict[str, Tensor]:
    """The discriminator's accuracy on real and on fake logits, and r_t, as 0-dim tensors on
    the logits' device (no host synchronisation). A logit exactly at the threshold counts as
    wrong on both sides."""
    cut = threshold(kind)
    with torch.no_grad():
        return {D_ACC_REAL: _mean_over_scales(real_logits, lambda m: m > cut),
                D_ACC_FAKE: _mean_over_scales(fake_logits, lambda m: m < cut),
                R_T: real_sign(real_logits, kind)}


class SignalMeter:
    """Sums `decisions` over every discriminator call of a log interval, on the device.

    Call `observe(real_logits, fake_logits, kind)` wherever real and fake logits meet (the core
    `Adversary.discriminator_losses` has both), and `means()` when the trainer logs: it returns
    the mean over the calls since the last `means()` and starts a new interval. A model with two
    discriminators (CycleGAN) contributes two calls per step, weighted equally.
    """

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._calls = 0  # counted on the host: no synchronisation needed to divide by it

    def observe(self, real_logits: Logits, fake_logits: Logits, kind: str) -> None:
        found = decisions(real_logits, fake_logits, kind)
        for key, value in found.items():
            self._sums[key] = self._sums[key] + value if key in self._sums else value
        self._calls += 1

    @property
    def calls(self) -> int:
        """Discriminator calls observed since the last `means()`."""
        return self._calls

    def means(self) -> dict[str, Tensor]:
        """{health/d_acc_real, health/d_acc_fake, health/r_t: 0-dim tensor}; empty when nothing
        was observed. Resets the sums."""
        found = {key: value / self._calls for key, value in self._sums.items()}
        self._sums, self._calls = {}, 0
        return found


def _mean_pairwise_distance(batch: Tensor) -> float | None:
    """Mean over pairs i < j of the mean absolute difference per element of items i and j, for
    a batch (B, ...) with B >= 2; None below two items."""
    b = batch.shape[0]
    if b < 2:
        return None
    flat = batch.detach().float().reshape(b, -1)
    distances = torch.cdist(flat, flat, p=1) / flat.shape[1]
    upper = torch.triu_indices(b, b, offset=1, device=flat.device)
    return float(distances[upper[0], upper[1]].mean())


def output_spread(outputs: Tensor) -> float | None:
    """How different the outputs (B, C, H, W) are from one another: the mean pairwise mean
    absolute difference per pixel (images in [-1, 1], so 0 = identical, 2 = opposite). The
    diversity of a noise model: outputs for B noise vectors of one class. None when B < 2."""
    return _mean_pairwise_distance(outputs)


def diversity(outputs: Tensor, inputs: Tensor) -> float | None:
    """Output spread divided by input spread, for the outputs (B, C, H, W) of the inputs
    (B, C', H', W') of the fixed sample batch: about 1 when outputs differ as much as their
    inputs, 0 when every input gives the same output (collapse). One host synchronisation; call
    it at sample time. None when B < 2 or the inputs are all identical (nothing to compare)."""
    if outputs.shape[0] != inputs.shape[0]:
        raise ValueError(f"{outputs.shape[0]} outputs for {inputs.shape[0]} inputs; diversity "
                         "needs the outputs of exactly these inputs")
    spread_in = _mean_pairwise_distance(inputs)
    if spread_in is None or spread_in == 0:
        return None
    return _mean_pairwise_distance(outputs) / spread_in

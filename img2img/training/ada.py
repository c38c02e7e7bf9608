"""Adaptive discriminator augmentation (StyleGAN2-ADA, Karras et al. 2020) over the DiffAugment
ops: each op is applied to each image the discriminator sees with probability p, and p follows
the overfitting sign r_t = E[sign(D(real))] towards a target. Everything per step stays on the
device; p is exact across checkpoint and resume."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from ..health.signals import Logits, real_sign
from . import diffaugment

TARGET = 0.6    # the paper's r_t target: above it the discriminator is overfitting
INTERVAL = 4    # steps between adjustments, as in the paper's code (ada_interval)
# Images over which p can move from 0 to 1. The paper uses 500k for runs of ~25M images (2%);
# img2img runs see ~10^5 images, so 10k keeps p able to react within a run.
KIMG = 10.0
P_MAX = 0.95    # p stays below 1: the discriminator always sees some images as they are


def augment_with_probability(x: Tensor, p: Tensor | float,
                             policy: Iterable[str] = diffaugment.POLICIES,
                             channels: int = 3) -> Tensor:
    """Apply each op of `policy` in turn to each image of x (B, C, H, W) with probability p,
    drawn per image and per op. Every op runs on the whole batch and `torch.where` picks, so
    the random draws and the work do not depend on p (no host synchronisation, same RNG
    stream whatever p is) and the gradient reaches x through either branch."""
    if isinstance(p, Tensor):
        p = p.to(x.device)
    for name in policy:
        changed = diffaugment.augment(x, (name,), channels)
        chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
        x = torch.where(chosen, changed, x)
    return x


class AdaptiveAugment:
    """The controller: `observe(real_logits, kind)` after each discriminator call on reals,
    `update()` once per training step; every `interval` steps
    p += sign(r_t - target) x batch_size x interval / (kimg x 1000), clipped to [0, P_MAX].
    `batch_size` is the global batch (all processes). `install(discriminators)` augments the
    input of each discriminator while it trains, in the discriminator and generator steps alike.
    """

    def __init__(self, batch_size: int, policy: Iterable[str] = diffaugment.POLICIES,
                 channels: int = 3, target: float = TARGET, interval: int = INTERVAL,
                 kimg: float = KIMG, device: torch.device | str = "cpu"):
        if batch_size < 1 or interval < 1 or kimg <= 0 or not 0 < target < 1:
            raise ValueError(f"need batch_size, interval >= 1, kimg > 0 and 0 < target < 1; "
                             f"got {batch_size}, {interval}, {kimg}, {target}")
        self.policy = diffaugment.parse_policy(",".join(policy))
        if not self.policy:
            raise ValueError(f"adaptive augmentation needs at least one of "
                             f"{', '.join(diffaugment.POLICIES)}")
        self.channels, self.target, self.interval = channels, target, interval
        self.rate = batch_size * interval / (kimg * 1000)
        self.p = torch.zeros((), device=device)
        self._sum = torch.zeros((), device=device)  # signs of the interval's real logits
        self._calls = 0
        self._steps = 0

    def observe(self, real_logits: Logits, kind: str) -> None:
        with torch.no_grad():
            self._sum = self._sum + real_sign(real_logits, kind).to(self._sum.device)
        self._calls += 1

    def update(self, all_reduce: Callable[[Tensor], Tensor] | None = None) -> None:
        """Count a step; at the end of each interval move p by the sign of r_t - target.
        `all_reduce` (the mean of a tensor over processes, for a distributed run, where every
        process makes the same number of calls) keeps p the same everywhere."""
        self._steps += 1
        if self._steps % self.interval or self._calls == 0:
            return
        r_t = self._sum / self._calls  # a host number divides without a synchronisation
        if all_reduce is not None:
            r_t = all_reduce(r_t)
        with torch.no_grad():
            self.p = (self.p + torch.sign(r_t - self.target) * self.rate).clamp(0.0, P_MAX)
        self._sum, self._calls = torch.zeros_like(self._sum), 0

    def augment(self, x: Tensor) -> Tensor:
        return augment_with_probability(x, self.p, self.policy, self.channels)

    def install(self, discriminators: Iterable[nn.Module]) -> list[Any]:
        """A forward pre-hook on each network that augments its first (image) argument while
        the network is in training mode; returns the handles (`handle.remove()`)."""
        def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            if not module.training or not args or not isinstance(args[0], Tensor):
                return None
            return (self.augment(args[0]), *args[1:])
        return [net.register_forward_pre_hook(hook) for net in discriminators]

    def state_dict(self) -> dict[str, Any]:
        """p and the interval's partial sums as plain numbers: float32 values are exact as
        Python floats, so a resumed run continues bit for bit."""
        return {"p": float(self.p), "sum": float(self._sum), "calls": self._calls,
                "steps": self._steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        device = self.p.device
        self.p = torch.tensor(float(state["p"]), dtype=torch.float32, device=device)
        self._sum = torch.tensor(float(state["sum"]), dtype=torch.float32, device=device)
        self._calls, self._steps = int(state["calls"]), int(state["steps"])

"""Differentiable augmentation of the discriminator's inputs (DiffAugment, Zhao et al. 2020).

On datasets of a few dozen images a discriminator memorises the real set within minutes and
stops teaching the generator anything. DiffAugment shows the discriminator every image, real and
generated, through the same family of random transforms, in the discriminator step and the
generator step alike, and keeps every transform differentiable so the generator's gradient
flows through it. It is separate from the data augmentation of the loader (`--flip`,
`--scale-jitter`, ...), which changes what the generator learns to produce.

Policies, with the paper's strengths:

* `color`: per image, brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5);
* `translation`: per image, an integer shift of up to 1/8 of each side, zeros shifted in;
* `cutout`: per image, a square of half the side at a random place set to zero.

Each transform draws its parameters per image (independently for the real and the fake batch,
as the method does). Within one image every channel gets the same geometry, so a conditional
discriminator's (condition, image) pair stays aligned; colour changes apply to each group of
`channels` channels on its own (the condition and the image are each a colour image).

`install(discriminators, policy, channels)` adds the augmentation as a forward pre-hook to each
discriminator network: every model gets it without changing its code, state dicts are untouched,
and it runs only while the network is in training mode."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

POLICIES = ("color", "translation", "cutout")


def parse_policy(text: str) -> tuple[str, ...]:
    """`"color,translation,cutout"` -> the tuple; `"none"` or `""` -> (). Raises ValueError
    naming the unknown part."""
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    if parts in ((), ("none",)):
        return ()
    unknown = [p for p in parts if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {', '.join(unknown)!s}; use a comma-"
                         f"separated list of {', '.join(POLICIES)}, or none")
    return parts


def _uniform(x: Tensor, low: float, high: float) -> Tensor:
    return torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).uniform_(low, high)


def _per_group(x: Tensor, channels: int, change: Callable[[Tensor], Tensor]) -> Tensor:
    if x.shape[1] % channels:
        channels = x.shape[1]
    return torch.cat([change(group) for group in x.split(channels, dim=1)], dim=1)


def color(x: Tensor, channels: int = 3) -> Tensor:
    """Random brightness, saturation and contrast per image (inputs in [-1, 1])."""
    brightness = _uniform(x, -0.5, 0.5)
    saturation = _uniform(x, 0.0, 2.0)
    contrast = _uniform(x, 0.5, 1.5)

    def change(group: Tensor) -> Tensor:
        group = group + brightness
        mean = group.mean(dim=1, keepdim=True)
        group = (group - mean) * saturation + mean
        mean = group.mean(dim=(1, 2, 3), keepdim=True)
        return (group - mean) * contrast + mean
    return _per_group(x, channels, change)


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by a random whole number of pixels, up to `ratio` of each side, filling
    with zeros. Gathers from a zero-padded copy, so the gradient reaches every kept pixel."""
    b, _, h, w = x.shape
    dy_max, dx_max = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-dy_max, dy_max + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-dx_max, dx_max + 1, (b, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + dy_max)  # (b, h, 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + dx_max)  # (b, 1, w)
    padded = F.pad(x, (dx_max, dx_max, dy_max, dy_max))
    width = w + 2 * dx_max
    index = (rows * width + cols).view(b, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, index).view_as(x)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero a square of `ratio` of each side at a random place in each image (it may overhang
    the border, as in the paper)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device) - cw // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def augment(x: Tensor, policy: Iterable[str], channels: int = 3) -> Tensor:
    """Apply the transforms of `policy` in order (see the module docstring)."""
    for name in policy:
        if name == "color":
            x = color(x, channels)
        elif name == "translation":
            x = translation(x)
        elif name == "cutout":
            x = cutout(x)
        else:
            raise ValueError(f"unknown DiffAugment policy {name!r}; choose from {POLICIES}")
    return x


class _PreHook:
    def __init__(self, policy: tuple[str, ...], channels: int):
        self.policy, self.channels = policy, channels

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not module.training or not args or not isinstance(args[0], Tensor):
            return None
        return (augment(args[0], self.policy, self.channels), *args[1:])


def install(discriminators: Iterable[nn.Module], policy: tuple[str, ...],
            channels: int = 3) -> list[Any]:
    """Augment the image input (the first argument) of each network while it trains; returns
    the hook handles (`handle.remove()` takes one off)."""
    if not policy:
        return []
    hook = _PreHook(tuple(policy), channels)
    return [net.register_forward_pre_hook(hook) for net in discriminators]

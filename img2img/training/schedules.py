"""The learning-rate schedule every model trains with: constant for `--epochs`, then down to zero
over `--decay-epochs` (linearly, as published, or along a cosine), times a linear warm-up over
the first `--warmup-steps` steps. The trainer multiplies each optimiser's base rate by these."""
from __future__ import annotations

import math

from .settings import TrainConfig


def warmup_factor(config: TrainConfig, step: int) -> float:
    """(step + 1) / warmup_steps during the warm-up, then 1."""
    if step >= config.warmup_steps:
        return 1.0
    return (step + 1) / config.warmup_steps


def lr_factor(config: TrainConfig, epoch: int) -> float:
    """Constant for `epochs`, then down to zero over `decay_epochs` (the published recipe)."""
    done = epoch - config.epochs + 1
    if done <= 0:
        return 1.0
    fraction = done / (config.decay_epochs + 1)
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * fraction))
    return 1.0 - fraction

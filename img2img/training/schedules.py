"""The learning-rate schedule every model trains with: constant for `--epochs`, then down to zero
over `--decay-epochs` (linearly, as published, or along a cosine), times a linear warm-up over
the first `--warmup-steps` steps. With a `--time-budget` the same shape is laid over the budget
(`budget_factor`): the epochs then give only the shares of constant and decaying rate. The
trainer multiplies each optimiser's base rate by these."""
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


def budget_factor(config: TrainConfig, fraction: float) -> float:
    """The schedule's shape over a run fitted to its time budget, `fraction` (0 to 1) through
    it: constant for the first epochs / (epochs + decay epochs) of the run, then down to zero
    at its end (no decay epochs: constant to the end)."""
    if config.decay_epochs == 0:
        return 1.0
    constant = config.epochs / config.total_epochs
    if fraction <= constant:
        return 1.0
    decayed = min(1.0, (fraction - constant) / (1 - constant))
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * decayed))
    return 1.0 - decayed

"""Exponential moving average of the generator weights, a trainer feature every model gets with
`--ema DECAY`. The averaged copy is what sample grids, `convert` and `sample` use when a
checkpoint has one: averaged weights give steadier, often better images than the last step's."""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn

from ..model import Model
from ..runs.checkpoints import EMA_PREFIX


class GeneratorAverage:
    """`ema = decay * ema + (1 - decay) * current` after every generator step; buffers (e.g.
    batch-norm statistics) are copied as they are."""

    def __init__(self, generators: nn.ModuleDict, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--ema must be between 0 and 1 (exclusive), got {decay}")
        self.decay = decay
        self.average = copy.deepcopy(generators).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, generators: nn.ModuleDict) -> None:
        averaged = list(self.average.parameters())
        current = [p.detach() for p in generators.parameters()]
        torch._foreach_lerp_(averaged, current, 1.0 - self.decay)
        for mine, theirs in zip(self.average.buffers(), generators.buffers()):
            mine.copy_(theirs)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"{EMA_PREFIX}{k}": v for k, v in self.average.state_dict().items()}


@contextlib.contextmanager
def using(model: Model, generators: nn.ModuleDict | None) -> Iterator[Model]:
    """Run `model` with other generator weights (the average) for the duration of the block."""
    if generators is None:
        yield model
        return
    original, model.generators = model.generators, generators
    try:
        yield model
    finally:
        model.generators = original

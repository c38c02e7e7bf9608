"""The step guard: before any optimiser steps, it decides whether this step's losses and
gradients are all finite. A step that is not is skipped (no weight, optimiser state or EMA
changes), counted and logged once; too many in a row stop the run with a clear error."""
from __future__ import annotations

import logging
import math
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor

from ..errors import Img2ImgError
from .advice import NON_FINITE, suggestions

log = logging.getLogger(__name__)

MAX_CONSECUTIVE = 20  # skips in a row before the run stops: a transient spike rarely lasts 20


class NonFiniteSteps(Img2ImgError):
    """Too many steps in a row had a non-finite loss or gradient."""


def _finite(tensors: list[Tensor]) -> Tensor:
    """1.0 if every element of every tensor is finite, else 0.0 (0-dim float32, on the first
    tensor's device). It runs the element-wise check GradScaler runs before its steps (one fused
    pass per device and dtype, with a scale of exactly 1.0, which changes no value): no norm that
    could overflow, so huge finite gradients pass, and several times faster on CPUs than the
    infinity norm (measured: 17 ms against 260 ms for the 54M gradients of pix2pix)."""
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.device, tensor.dtype), []).append(tensor)
    device = tensors[0].device
    found = torch.zeros((), device=device)
    for (where, _), group in groups.items():
        flag = torch.zeros(1, device=where)
        torch._amp_foreach_non_finite_check_and_unscale_(group, flag, torch.ones(1, device=where))
        found = found + flag[0].to(device)
    return (found == 0).float()


class StepGuard:
    """Skips steps whose losses or gradients are not finite.

    Per step: `finite = guard.measure(losses, gradients)` (on the device, no synchronisation;
    a distributed trainer may all-reduce it with MIN so every process agrees), then
    `guard.allows(step, finite)`, the step's one host synchronisation, True to apply the
    update. `check(step, losses, gradients)` does both. After `max_consecutive` skips in a row,
    `allows` raises NonFiniteSteps.
    """

    def __init__(self, max_consecutive: int = MAX_CONSECUTIVE,
                 config: Mapping[str, Any] | None = None):
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.config = config  # the run's settings record, so advice names flags with values
        self.skipped = 0      # cumulative, checkpointed: logged as health/skipped
        self.consecutive = 0
        self._first_of_run: int | None = None
        self._names: list[str] = []

    def measure(self, losses: Mapping[str, Tensor],
                gradients: Mapping[str, Iterable[Tensor | None]]) -> Tensor:
        """One flag per loss term and per network, 1.0 where finite, stacked (N,) float32 on the
        device. `losses`: the step's terms by logged name ("g/gan"); `gradients`: each network's
        parameter gradients by name ("grad/d.b"), None entries ignored."""
        names, values = [], []
        for name, loss in losses.items():
            names.append(name)
            values.append(loss.detach().float().reshape(()))
        for name, grads in gradients.items():
            present = [g.detach() for g in grads if g is not None]
            if present:
                names.append(name)
                values.append(torch.where(_finite(present) > 0, 0.0, math.nan))
        self._names = names
        if not values:
            return torch.ones(0)
        device = values[0].device
        return torch.stack([v.to(device) for v in values]).isfinite().float()

    def allows(self, step: int, finite: Tensor) -> bool:
        """True if every flag of `finite` (from `measure`) is set. Otherwise counts and logs the
        skip of `step` and returns False, or raises NonFiniteSteps after too many in a row."""
        flags = finite.tolist()  # the one host synchronisation of the step
        bad = [name for name, ok in zip(self._names, flags) if not ok]
        if not bad:
            self.consecutive, self._first_of_run = 0, None
            return True
        self.skipped += 1
        self.consecutive += 1
        if self._first_of_run is None:
            self._first_of_run = step
        log.warning("step %d skipped: non-finite %s; no weight or optimiser state changed "
                    "(%d skipped so far)", step, ", ".join(bad), self.skipped)
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteSteps(
                f"training stopped at step {step}: {self.consecutive} steps in a row "
                f"({self._first_of_run}-{step}) had a non-finite {', '.join(bad)} "
                f"({self.skipped} skipped in all); try "
                + "; or ".join(suggestions(NON_FINITE, self.config)))
        return False

    def check(self, step: int, losses: Mapping[str, Tensor],
              gradients: Mapping[str, Iterable[Tensor | None]]) -> bool:
        """`allows(step, measure(losses, gradients))`."""
        return self.allows(step, self.measure(losses, gradients))

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "consecutive": self.consecutive,
                "first_of_run": -1 if self._first_of_run is None else self._first_of_run}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.skipped = int(state["skipped"])
        self.consecutive = int(state["consecutive"])
        first = int(state.get("first_of_run", -1))
        self._first_of_run = None if first < 0 else first

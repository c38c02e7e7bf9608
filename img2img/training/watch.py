"""Training health, wired into the loop: `HealthWatch` gathers the discriminator's decisions
from every `Adversary` call, decides with the step guard whether a step's update is applied,
drives adaptive augmentation (`--ada`), judges each log record for divergence, measures output
diversity at sample time, and keeps the last healthy point to roll back to. Every model gets it
from the trainer; the building blocks live in `img2img.health`."""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..health import (
    ADA_P, DIVERSITY, OK, ROLLBACKS, SKIPPED, Decision, DivergenceMonitor, SignalMeter,
    StepGuard, diversity, output_spread,
)
from ..health.keys import PREFIX
from ..model import Model
from . import diffaugment
from .ada import AdaptiveAugment

log = logging.getLogger("img2img")

Observed = tuple[list[Tensor], list[Tensor], str]

# Healthy log records between two copies of the run: a rollback returns to the older of the last
# two, 5-10 records back, since the damage of a divergence often precedes the record that shows
# it (a point copied just before that record may already be wrecked).
SPACING = 5


class HealthWatch:
    """One per trainer. Per step: the Adversary's observer collects the step's logits
    (`observe`); `flags(losses, gradients)` then `allows(step, flags)` decide whether the
    update is applied (only then do the logits count towards the signals and --ada); `stepped()`
    after the step. Per log record: `values()` for the record, then `judge(record)`."""

    def __init__(self, *, max_rollbacks: int, ada: bool,
                 policy: tuple[str, ...], channels: int, global_batch: int,
                 device: torch.device):
        self.guard = StepGuard()
        self.monitor = DivergenceMonitor(max_rollbacks=max_rollbacks)
        self.meter = SignalMeter()
        self.ada = AdaptiveAugment(global_batch, policy or diffaugment.POLICIES, channels,
                                   device=device) if ada else None
        self._pending: list[Observed] = []
        self._points: list[dict[str, Any]] = []  # the last two healthy copies, oldest first
        self._healthy_records = 0

    # -- per step -------------------------------------------------------------------------------
    def observe(self, real: list[Tensor], fake: list[Tensor], kind: str) -> None:
        """The Adversary's observer: keep the logits until the step is judged."""
        self._pending.append((real, fake, kind))

    def flags(self, losses: Mapping[str, Tensor],
              gradients: Mapping[str, Iterable[Tensor | None]]) -> Tensor:
        """Finiteness of the step's loss terms and gradients, on the device (see StepGuard)."""
        return self.guard.measure(losses, gradients)

    def allows(self, step: int, flags: Tensor) -> bool:
        """Whether the step's update may be applied (NonFiniteSteps after too many skips). Only
        an applied step's decisions count towards the logged signals and --ada."""
        pending, self._pending = self._pending, []
        if not self.guard.allows(step, flags):
            return False
        for real, fake, kind in pending:
            self.meter.observe(real, fake, kind)
            if self.ada is not None:
                self.ada.observe(real, kind)
        return True

    def stepped(self, all_reduce: Callable[[Tensor], Tensor] | None) -> None:
        """After an applied step: --ada moves its probability every few steps."""
        if self.ada is not None:
            self.ada.update(all_reduce)

    # -- per log record -------------------------------------------------------------------------
    def signals(self) -> dict[str, Tensor]:
        """The interval's mean discriminator decisions (tensors, to be averaged over processes
        with the losses); the meter starts a new interval."""
        return self.meter.means()

    def counts(self) -> dict[str, float]:
        found: dict[str, float] = {SKIPPED: self.guard.skipped,
                                   ROLLBACKS: self.monitor.rollbacks}
        if self.ada is not None:
            found[ADA_P] = round(float(self.ada.p), 5)
        return found

    def judge(self, record: Mapping[str, Any]) -> Decision:
        decision = self.monitor.check(record)
        if decision.action == OK and decision.message:
            log.warning("%s", decision.message)  # a first divergent record, being watched
        return decision

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain numbers and containers, for the checkpoint's training state."""
        return {"guard": self.guard.state_dict(), "monitor": self.monitor.state_dict(),
                **({"ada": self.ada.state_dict()} if self.ada is not None else {})}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not state:  # a checkpoint from before the health watch: start counting afresh
            return
        self.guard.load_state_dict(state["guard"])
        self.monitor.load_state_dict(state["monitor"])
        if self.ada is not None and "ada" in state:
            self.ada.load_state_dict(state["ada"])

    def advise(self, record: Mapping[str, Any]) -> None:
        """The run's settings record, so the advice in messages names flags with values."""
        self.guard.config = self.monitor.config = record

    def rewind(self, state: Mapping[str, Any]) -> None:
        """After a rollback to a point whose watch state was `state`: its histories and --ada
        probability, but the counts of skips and rollbacks (and what diverged) go on."""
        self._pending = []
        self.meter.means()  # the abandoned interval's decisions
        self.monitor.rewind(state["monitor"])
        self.guard.consecutive = 0
        if self.ada is not None and "ada" in state:
            self.ada.load_state_dict(state["ada"])

    def due(self, start: bool = False) -> bool:
        """Whether to copy the run now: at the start, then every SPACING healthy records."""
        if start:
            return True
        self._healthy_records += 1
        return self._healthy_records % SPACING == 0

    def keep(self, point: dict[str, Any]) -> None:
        self._points = [*self._points[-1:], point]

    def rollback_point(self) -> dict[str, Any] | None:
        """The older of the last two copies (None before the first), which from now on is the
        only one: the newer may hold the damage."""
        if not self._points:
            return None
        self._points = self._points[:1]
        self._healthy_records = 0
        return self._points[0]

    @property
    def healthy(self) -> bool:
        """Whether the run stands where a rollback may return to."""
        return self.monitor.healthy and self.guard.consecutive == 0


def install(watch: HealthWatch, adversary: Any, discriminators: Iterable[nn.Module]) -> None:
    """Observe every discriminator call of `adversary`; with --ada, augment what the
    discriminators see (in place of a fixed --diff-augment)."""
    adversary.observers.append(watch.observe)
    if watch.ada is not None:
        watch.ada.install(discriminators)


# -- the point to roll back to ------------------------------------------------------------------
def _copy(value: Any) -> Any:
    """A deep copy of a state dict whose tensors are cloned where they lie (no host trip)."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    return copy.deepcopy(value)


def take_snapshot(model: Model, optimizers: Mapping[str, torch.optim.Optimizer],
                  scaler: torch.amp.GradScaler, average: nn.Module | None,
                  extra: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a rollback restores, copied on the device: the networks, the optimisers'
    state (learning rates included), the scaler, the generator average and `extra` (the
    training state and the health watch's own)."""
    return _copy({"model": model.state_dict(), "model_extra": model.extra_state(),
                  "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                  "scaler": scaler.state_dict(),
                  "average": average.state_dict() if average is not None else None,
                  "extra": dict(extra)})


def restore_snapshot(snapshot: Mapping[str, Any], model: Model,
                     optimizers: Mapping[str, torch.optim.Optimizer],
                     scaler: torch.amp.GradScaler, average: nn.Module | None) -> dict[str, Any]:
    """Put `snapshot` back (copied, so it can serve again); returns its `extra`."""
    saved = _copy(snapshot)
    model.load_state_dict(saved["model"])
    model.load_extra_state(saved["model_extra"])
    for key, optimizer in optimizers.items():
        optimizer.load_state_dict(saved["optimizers"][key])
    if saved["scaler"]:
        scaler.load_state_dict(saved["scaler"])
    if average is not None and saved["average"] is not None:
        average.load_state_dict(saved["average"])
    return saved["extra"]


# -- output diversity at sample time ------------------------------------------------------------
def _source(batch: Mapping[str, Tensor], direction: str) -> Tensor | None:
    """The inputs of `direction` in a batch: the key before "_to_" ("a_to_b" reads "a"), else
    the one image input of single-input data ("image")."""
    key = direction.split("_to_")[0]
    if key in batch and batch[key].dim() == 4:
        return batch[key]
    images = [v for k, v in batch.items() if v.dim() == 4]
    return images[0] if len(images) == 1 else None


@torch.no_grad()
def measure_diversity(model: Model, batch: Mapping[str, Tensor]) -> dict[str, float]:
    """`health/diversity` (`.<direction>` for a model with several) on the fixed sample batch:
    how different the outputs are relative to their inputs; for a model that generates from
    noise, the spread of its outputs for noise vectors of one class. Empty when nothing can be
    compared (a batch of one)."""
    found: dict[str, float] = {}
    if not model.directions:
        n = next(iter(batch.values())).shape[0]
        label = torch.zeros(max(n, 2), dtype=torch.long, device=next(model.parameters()).device)
        spread = output_spread(model.sample(label))
        return {} if spread is None else {DIVERSITY: round(spread, 5)}
    label = batch.get("label") if model.spec.classes else None
    for direction in model.directions:
        inputs = _source(batch, direction)
        if inputs is None:
            continue
        outputs = model.translate(inputs, direction, label=label) if label is not None \
            else model.translate(inputs, direction)
        value = diversity(outputs.float(), inputs.float())
        if value is not None:
            key = DIVERSITY if len(model.directions) == 1 else f"{DIVERSITY}.{direction}"
            found[key] = round(value, 5)
    return found


def plugin_signals(model: Model) -> dict[str, Tensor]:
    """What the model's own `health_signals()` returns, as `health/<name>` float tensors."""
    return {name if name.startswith(PREFIX) else PREFIX + name:
            torch.as_tensor(value).detach().float().reshape(())
            for name, value in (model.health_signals() or {}).items()}

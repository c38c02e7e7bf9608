"""Where a run stands and how it survives a stop: `TrainingState` (steps done, the epoch and the
position in it, the best evaluation so far), the one object the trainer counts in, and the
functions that write it into a checkpoint with everything exact resume needs (optimisers,
scaler, random numbers, the model's extra state), read it back, resolve the settings of a
resumed run, create a new run folder (rank 0 only) and start from another run's weights."""
from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import Img2ImgError
from ..model import Model
from ..runs import checkpoints, folders as runs
from ..runs.checkpoints import (
    average_tensors, from_record, load_networks, network_tensors,
)
from . import distributed, speed
from .ema import GeneratorAverage
from .settings import TrainConfig, split_settings

log = logging.getLogger("img2img")


@dataclasses.dataclass
class TrainingState:
    """Where training stands: steps done in all, the epoch it is in, batches done in that epoch
    (so a resumed run continues mid-epoch with the same order), and the best evaluation of the
    primary metric so far (None before the first)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best: float | None = None
    # The health watch's counts and histories (skips, rollbacks, --ada's probability): plain
    # numbers, saved with the checkpoint so a resumed run judges and augments as before.
    health: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Seconds of training so far (the loop's wall time), which a --time-budget counts against.
    elapsed: float = 0.0


def new_run(config: TrainConfig, record: Mapping[str, Any], model: str,
            processes: distributed.Processes) -> Path:
    """Rank 0 creates the run folder and its config.json; every rank gets its path."""
    run_dir = None
    if processes.is_main:
        run_dir = runs.create_run(config.runs_dir, config.name or runs.default_run_name(model))
        runs.write_config(run_dir, record)
    return distributed.broadcast_object(run_dir) if processes.distributed else run_dir


def start_from(model: Model, ref: Path, runs_dir: Path, announce: bool) -> None:
    """Start from the networks of another run (or an imported one); the optimisers, the
    schedule and the step count start afresh. Networks it lacks keep their fresh init."""
    weights, fresh = checkpoints.load_initial_weights(model, ref, runs_dir)
    if announce:
        print(f"Starting from the weights of {weights}", file=sys.stderr)
        for network in fresh:
            print(f"note: {weights} has no trained {network}; it starts from a fresh "
                  "initialisation", file=sys.stderr)


def resume_settings(model_cls: type[Model], ref: str | Path, overrides: Mapping[str, Any]
                    ) -> tuple[Any, TrainConfig, Path, str | None]:
    """(options, settings, weights, preset) of a run resumed from `ref` (a run folder, a
    checkpoint, or "latest": the newest run of this model under `runs_dir`). Settings come from
    the checkpoint; training settings in `overrides` (e.g. a larger `max_steps`) win; model
    options cannot change (the networks were built with the checkpoint's own)."""
    options_given, training = split_settings(model_cls, overrides)
    if options_given:
        flags = ", ".join("--" + o.replace("_", "-") for o in sorted(options_given))
        raise Img2ImgError(f"{flags}: model options cannot change when resuming (the "
                           "checkpoint's networks were built with its own options)")
    runs_dir = Path(training.get("runs_dir", TrainConfig.runs_dir))
    weights = checkpoints.resolve_checkpoint(ref, runs_dir, model=model_cls.name)
    meta = checkpoints.read_metadata(weights)
    if meta.get("model") != model_cls.name:
        raise Img2ImgError(f"--resume {ref}: {weights} is a '{meta.get('model')}' "
                           f"checkpoint, not '{model_cls.name}'")
    options = from_record(model_cls.Options, meta["options"], "model options")
    saved = from_record(TrainConfig, meta["training"], "training settings")
    if distributed.from_environment().is_main:
        print(f"Resuming {weights}", file=sys.stderr)
    return options, dataclasses.replace(saved, **training), weights, meta.get("preset")


def save(run_dir: Path, state: TrainingState, model: Model,
         optimizers: Mapping[str, torch.optim.Optimizer], scaler: torch.amp.GradScaler,
         ema: GeneratorAverage | None, record: Mapping[str, Any], *, world: int, items: int,
         keep: int) -> Path:
    """A checkpoint at `state.step`: the networks (and their average) as weights, the rest as
    training state. `world` and `items` (the training set's size) are kept to check a resume."""
    saved = {
        "step": state.step, "epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch,
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "scaler": scaler.state_dict(),
        "model": model.extra_state(), "best": state.best, "health": state.health,
        "world_size": world, "items": items, "elapsed": state.elapsed,
    }
    tensors = network_tensors(model)
    if ema is not None:
        tensors.update(ema.tensors())
    return checkpoints.save_checkpoint(run_dir, state.step, tensors,
                                       {**record, "step": state.step}, saved, keep=keep)


def restore(weights: Path, model: Model, optimizers: Mapping[str, torch.optim.Optimizer],
            scaler: torch.amp.GradScaler, ema: GeneratorAverage | None, *,
            device: torch.device, world: int, items: int, is_main: bool) -> TrainingState:
    """Load what `save` wrote into the networks, optimisers and scaler, and return the state training continues from. Rank 0 also drops the log lines
    after the checkpoint (those steps are redone) and what a killed save left behind."""
    tensors = checkpoints.load_weights(weights, device)
    load_networks(model, tensors, weights)
    if ema is not None and average_tensors(tensors):
        ema.average.load_state_dict(average_tensors(tensors))
    saved = checkpoints.load_state(weights)
    _check_resumable(saved, weights, world, items)
    for key, optimizer in optimizers.items():
        optimizer.load_state_dict(saved["optimizers"][key])
        speed.match_parameter_layouts(optimizer)  # saved under another --channels-last?
    if saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    model.load_extra_state({k: v.to(device) for k, v in saved["model"].items()})
    state = TrainingState(saved["step"], saved["epoch"], saved["batch_in_epoch"],
                          saved.get("best"), saved.get("health") or {},
                          float(saved.get("elapsed", 0.0)))
    if is_main:
        run_dir = checkpoints.run_dir_of(weights)
        runs.drop_metrics_after(run_dir, state.step)
        checkpoints.clean_leftovers(run_dir)
    # No generator state to restore: each step reseeds from (seed, rank, step) (training.rng).
    return state


def _check_resumable(saved: Mapping[str, Any], weights: Path, world: int, items: int) -> None:
    saved_world = saved.get("world_size", 1)
    if saved_world != world:
        raise Img2ImgError(
            f"{weights} was trained on {saved_world} process(es); resume it on the same "
            f"number (torchrun --nproc-per-node/--nnodes), not {world}: the "
            "global batch and each process's share of an epoch depend on it")
    saved_items = saved.get("items", items)
    if saved_items != items:
        log.warning("the training data has %d items now, %d when %s was saved: the run "
                    "continues, but not exactly as it would have", items, saved_items,
                    weights.name)

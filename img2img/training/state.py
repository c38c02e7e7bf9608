"""What makes a Trainer's run resumable and safe to stop: creating the run folder (rank 0 only),
saving and restoring checkpoints, `Trainer.resume`, starting from another run's weights
(`--init-from`), and saving a checkpoint before an error between steps ends the run."""
from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..runs import checkpoints, folders as runs
from . import distributed
from ..runs.checkpoints import (
    average_tensors, capture_rng, from_record, load_networks, network_tensors, restore_rng,
)
from .settings import TrainConfig, split_settings
from ..errors import CheckpointError, Img2ImgError
from ..model import Model

if TYPE_CHECKING:
    from .trainer import Trainer

log = logging.getLogger("img2img")


class Resumable:
    """Mixed into `Trainer`; uses its model, optimisers, scaler, config and counters."""

    def _new_run(self, config: TrainConfig, model: str) -> Path:
        run_dir = None
        if self.processes.is_main:
            run_dir = runs.create_run(config.runs_dir, config.name or runs.default_run_name(model))
            runs.write_config(run_dir, self.record)
        return distributed.broadcast_object(run_dir) if self.processes.distributed else run_dir


    def _init_from(self, ref: Path) -> None:
        """Start from the networks of another run (or an imported one); the optimisers, the
        schedule and the step count start afresh. Networks it lacks keep their fresh init."""
        weights, fresh = checkpoints.load_initial_weights(self.model, ref, self.config.runs_dir)
        if self.processes.is_main:
            print(f"Starting from the weights of {weights}", file=sys.stderr)
            for network in fresh:
                print(f"note: {weights} has no trained {network}; it starts from a fresh "
                      "initialisation", file=sys.stderr)


    @classmethod
    def resume(cls, model_cls: type[Model], ref: str | Path = "latest", *,
               plugin: Mapping[str, str] | None = None, progress: bool | None = None,
               **overrides: Any) -> "Trainer":
        """A trainer that continues a run exactly where it stopped: `ref` is a run folder, a
        checkpoint, or "latest" (the newest run of this model under `runs_dir`). Settings come
        from the checkpoint; training settings in `overrides` (e.g. a larger `max_steps`) win;
        model options cannot change (the networks were built with the checkpoint's own)."""
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
        return cls(model_cls, options, dataclasses.replace(saved, **training),
                   resume_from=weights, plugin=plugin, preset=meta.get("preset"),
                   progress=progress)


    def _stop_on_error(self, exc: Exception) -> None:
        """Between steps the state is sound: save it, then name the cause and how to resume.
        Within a step (or when saving is what failed) the error stands as it is."""
        sound = not self._in_step and self.processes.is_main and not isinstance(
            exc, (distributed.LostPeer, CheckpointError))
        if not sound:
            raise exc
        weights = self.save_checkpoint()
        cause = str(exc) if isinstance(exc, Img2ImgError) else f"{type(exc).__name__}: {exc}"
        error = type(exc) if isinstance(exc, Img2ImgError) else Img2ImgError
        raise error(f"training stopped at step {self.step}: {cause}. Saved {weights.name}; "
                    f"continue with: img2img train {self.model.name} --resume {self.run_dir}") \
            from exc


    def save_checkpoint(self) -> Path:
        state = {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict(), "rng": capture_rng(),
            "model": self.model.extra_state(), "best": self.best,
            "world_size": self.processes.world, "items": len(self.dataset),
        }
        meta = {**self.record, "step": self.step}
        tensors = network_tensors(self.model)
        if self.ema is not None:
            tensors.update(self.ema.tensors())
        return checkpoints.save_checkpoint(self.run_dir, self.step, tensors, meta, state,
                                    keep=self.config.keep_checkpoints)


    def _restore(self, weights: Path) -> None:
        tensors = checkpoints.load_weights(weights, self.device)
        load_networks(self.model, tensors, weights)
        if self.ema is not None and average_tensors(tensors):
            self.ema.average.load_state_dict(average_tensors(tensors))
        state = checkpoints.load_state(weights)
        saved_world = state.get("world_size", 1)
        if saved_world != self.processes.world:
            raise Img2ImgError(
                f"{weights} was trained on {saved_world} process(es); resume it on the same "
                f"number (torchrun --nproc-per-node/--nnodes), not {self.processes.world}: the "
                "global batch and each process's share of an epoch depend on it")
        saved_items = state.get("items", len(self.dataset))
        if saved_items != len(self.dataset):
            log.warning("the training data has %d items now, %d when %s was saved: the run "
                        "continues, but not exactly as it would have", len(self.dataset),
                        saved_items, weights.name)
        for key, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.model.load_extra_state({k: v.to(self.device) for k, v in state["model"].items()})
        self.step, self.epoch = state["step"], state["epoch"]
        if self.processes.is_main:  # steps after the checkpoint are redone: log each once
            runs.drop_metrics_after(self.run_dir, self.step)
            checkpoints.clean_leftovers(self.run_dir)  # what a killed save left behind
        self.batch_in_epoch = state["batch_in_epoch"]
        self.best = state.get("best")
        restore_rng(state["rng"])
